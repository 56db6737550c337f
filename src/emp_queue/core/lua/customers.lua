-- customers.lua: customer policies, fair share and caps; loaded right after lib.lua
-- (core/scripts.py), so it may use lib's helpers and its functions serve every operation.
-- The Python twin of the rules is emp_queue/core/fair_share.py; the agreement test in
-- tests/integration/test_fair_share_agreement.py holds the two together.
--
--   <prefix>customer:<id>       hash  policy: weight, max_running, max_pending,
--                                     max_running:<service> (absent = no limit, weight 1)
--   <prefix>customers           set   customers that have a policy
--   <prefix>customers:counts    hash  "running|<c>", "running|<c>|<service>", "waiting|<c>"
--                                     (kept by set_status in transitions.lua)
--   <prefix>customers:usage     hash  "<c>" -> recent claims, decayed; "t|<c>" -> when (ms)
--   <prefix>customers:totals    hash  "<c>|jobs", "<c>|completed", "<c>|run_ms", "<c>|gpu_ms"
--                                     since the start (Prometheus counters)
--   <prefix>usage:<hour ms>     hash  usage accounting per hour (see account_attempt)
--
-- A customer's share is (running jobs + recent claims) / weight; recent claims halve every
-- half-life. Per-run caches are reset by begin_customers_run(), which the loader calls
-- after begin_run().

function KEY.customer(id) return PREFIX .. 'customer:' .. id end
function KEY.customers_counts() return PREFIX .. 'customers:counts' end
function KEY.customers_usage() return PREFIX .. 'customers:usage' end

-- Policies change rarely: they are kept between runs, per namespace, and dropped when
-- customers:version (a fresh token written with every policy change, core/customers.py)
-- differs. Counts and recent claims are read afresh in every run.
local policy_caches, policy_namespaces = {}, 0
local policies, count_cache, usage_cache, share_cache = nil, {}, {}, {}

-- Usage accounting (below): per-hour deltas by key, and per-customer totals in .totals.
local usage_deltas, usage_keys, worker_usage_cache = {totals = new_counts()}, {}, {}

-- Work a running cap held back (KEY.capped below): classes noted in this run, and how many
-- jobs of each customer stopped running in it.
local capped_in_run, released_in_run = {}, {}

local function begin_customers_run()
  policies, count_cache, usage_cache, share_cache = nil, {}, {}, {}
  usage_deltas, usage_keys, worker_usage_cache = {totals = new_counts()}, {}, {}
  capped_in_run, released_in_run = {}, {}
end

local function customer_policy(customer)
  if policies == nil then
    local version = redis.call('GET', PREFIX .. 'customers:version') or ''
    local cache = policy_caches[PREFIX]
    if cache == nil or cache.version ~= version or cache.size > 10000 then
      if cache == nil then policy_namespaces = policy_namespaces + 1 end
      if policy_namespaces > 64 then policy_caches, policy_namespaces = {}, 1 end
      cache = {version = version, policies = {}, size = 0}
      policy_caches[PREFIX] = cache
    end
    policies = cache
  end
  local policy = policies.policies[customer]
  if policy == nil then
    policy = customer ~= '' and hgetall_map(KEY.customer(customer)) or {}
    policy.weight = tonumber(policy.weight) or 1
    policies.policies[customer] = policy
    policies.size = policies.size + 1
  end
  return policy
end

-- A count of customers:counts as it stands in this run (stored value + deltas not yet flushed).
local function customer_count(field)
  local stored = count_cache[field]
  if stored == nil then
    stored = tonumber(redis.call('HGET', KEY.customers_counts(), field) or '0')
    count_cache[field] = stored
  end
  return math.max(0, stored + (customer_counts.deltas[field] or 0))
end

-- Recent claims of a customer at time now: the stored value halved every half-life since.
local function customer_usage(customer, now, half_life_ms)
  local usage = usage_cache[customer]
  if usage == nil then
    local stored = redis.call('HMGET', KEY.customers_usage(), customer, 't|' .. customer)
    usage = tonumber(stored[1] or '0')
    local since = now - tonumber(stored[2] or tostring(now))
    if usage > 0 and since > 0 then usage = usage * 2 ^ (-since / half_life_ms) end
    usage_cache[customer] = usage
  end
  return usage
end

-- Read the counts and recent claims of several customers at once (two calls, not 2 per customer).
local function prefetch_customers(customers, now, half_life_ms)
  local fields, names = {}, {}
  for _, customer in ipairs(customers) do
    if usage_cache[customer] == nil then
      names[#names + 1] = customer
      fields[#fields + 1] = 'running|' .. customer
    end
  end
  if #names == 0 then return end
  local counts = redis.call('HMGET', KEY.customers_counts(), unpack(fields))
  local usage_fields = {}
  for i, customer in ipairs(names) do
    count_cache[fields[i]] = tonumber(counts[i] or '0')
    usage_fields[#usage_fields + 1] = customer
    usage_fields[#usage_fields + 1] = 't|' .. customer
  end
  local stored = redis.call('HMGET', KEY.customers_usage(), unpack(usage_fields))
  for i, customer in ipairs(names) do
    local usage = tonumber(stored[2 * i - 1] or '0')
    local since = now - tonumber(stored[2 * i] or tostring(now))
    if usage > 0 and since > 0 then usage = usage * 2 ^ (-since / half_life_ms) end
    usage_cache[customer] = usage
  end
end

local function customer_share(customer, now, half_life_ms)
  local share = share_cache[customer]
  if share == nil then
    share = (customer_count('running|' .. customer) + customer_usage(customer, now, half_life_ms))
      / customer_policy(customer).weight
    share_cache[customer] = share
  end
  return share
end

-- A claim of one job of the customer: its recent usage grows by one (stored at once, exactly).
local function note_customer_claim(customer, now, half_life_ms)
  local usage = customer_usage(customer, now, half_life_ms) + 1
  usage_cache[customer] = usage
  share_cache[customer] = nil
  redis.call('HSET', KEY.customers_usage(), customer, string.format('%.17g', usage),
    't|' .. customer, now)
end

-- The running cap that stops one more job of this customer and service, as
-- {scope, cap} (scope "all" or the service), or nil when none does.
-- How many more jobs of the service the customer may run now (math.huge: no cap applies).
local function running_room(customer, service)
  local policy = customer_policy(customer)
  local room = math.huge
  local cap = tonumber(policy['max_running:' .. service])
  if cap then room = cap - customer_count('running|' .. customer .. '|' .. service) end
  cap = tonumber(policy.max_running)
  if cap then room = math.min(room, cap - customer_count('running|' .. customer)) end
  return room
end

local function running_cap_reached(customer, service)
  local policy = customer_policy(customer)
  local cap = tonumber(policy['max_running:' .. service])
  if cap and customer_count('running|' .. customer .. '|' .. service) >= cap then
    return {service, cap}
  end
  cap = tonumber(policy.max_running)
  if cap and customer_count('running|' .. customer) >= cap then return {'all', cap} end
  return nil
end

-- Work held back by a running cap, and its wake-up. A claim that passes over a class because
-- its customer is at a running cap notes the class in
--   <prefix>capped:<customer>  set  class ids
-- When jobs of that customer stop running, the run takes as many of those classes as jobs
-- stopped (SPOP) and wakes idle workers for them (wake.lua), unless the customer is still at
-- its cap for the class's service (another job of it was claimed in the same run, say): then
-- the class goes back. Without it, a capped customer's waiting jobs waited for the idle
-- workers' safety claim (EMP_WORKER_IDLE_POLL_S, 30 s); decision 0048.
function KEY.capped(customer) return PREFIX .. 'capped:' .. customer end

local function note_capped(customer, cid)
  local noted = capped_in_run[customer]
  if noted == nil then
    noted = {}
    capped_in_run[customer] = noted
  end
  if not noted[cid] then
    noted[cid] = true
    redis.call('SADD', KEY.capped(customer), cid)
  end
end

note_released = function(customer)
  released_in_run[customer] = (released_in_run[customer] or 0) + 1
end

local function has_running_cap(policy)
  if policy.running_capped == nil then
    local capped = policy.max_running ~= nil
    for field in pairs(policy) do
      if string.sub(field, 1, 12) == 'max_running:' then capped = true end
    end
    policy.running_capped = capped
  end
  return policy.running_capped
end

wake_capped = function()
  for customer, count in pairs(released_in_run) do
    if customer ~= '' and has_running_cap(customer_policy(customer)) then
      for _, cid in ipairs(redis.call('SPOP', KEY.capped(customer), count)) do
        local desc = load_desc(cid)
        if desc and running_cap_reached(customer, desc.service) ~= nil then
          redis.call('SADD', KEY.capped(customer), cid)
        elseif desc then
          note_new_work({class = cid}, 1)
        end
      end
    end
  end
  released_in_run = {}
end

-- The waiting cap that refuses one more job of this customer, or nil.
local function pending_cap_reached(customer)
  if customer == '' then return nil end
  local cap = tonumber(customer_policy(customer).max_pending)
  if cap and customer_count('waiting|' .. customer) >= cap then return cap end
  return nil
end

-- A class's customer and service. Class ids are content-addressed (a hash of the descriptor),
-- so the answer never changes and is kept between runs (up to 100,000 classes).
local owners, owners_size = {}, 0

local function class_owner(cid)
  local owner = owners[cid]
  if owner == nil then
    local desc = load_desc(cid)
    if not desc then return '', '' end
    if owners_size >= 100000 then owners, owners_size = {}, 0 end
    owner = {desc.customer or '', desc.service}
    owners[cid], owners_size = owner, owners_size + 1
  end
  return owner[1], owner[2]
end

-- Usage accounting ------------------------------------------------------------------
-- Every attempt that ends by complete or fail adds to <prefix>usage:<hour start ms>, a hash of
-- "<customer>|<service>|<pool>|<measure>" -> total, measures: jobs (attempts), completed,
-- wait_ms (submit to assignment), run_ms (assignment to end), gpu_ms (run_ms x the GPUs of
-- the worker), output_bytes (the result's JSON), and where the connector reports them in the
-- result's "usage" object (result_usage): tokens_in, tokens_out, model_load_ms. Each hour's
-- hash expires USAGE_RETENTION_MS after the hour ends. Totals reach Redis once per run
-- (flush_usage, before finish_run).
local USAGE_RETENTION_MS = 35 * 24 * 3600 * 1000
local HOUR_MS = 3600 * 1000

local function worker_usage_profile(worker_id)
  local profile = worker_usage_cache[worker_id]
  if profile == nil then
    local fp = redis.call('HGET', KEY.worker(worker_id), 'fingerprint')
    local caps = fp and load_caps(fp) or {}
    profile = {pool = caps.pool or '', gpus = (caps.hardware or {}).gpu_count or 0}
    worker_usage_cache[worker_id] = profile
  end
  return profile
end

-- A connector's usage report, read from the result only when it has one (the JSON is decoded
-- only then): the names of Ollama, OpenAI (chat, responses, images) and Gemini, unified.
local USAGE_NAMES = {
  tokens_in = {'prompt_tokens', 'input_tokens', 'prompt_eval_count', 'promptTokenCount'},
  tokens_out = {'completion_tokens', 'output_tokens', 'eval_count', 'candidatesTokenCount'},
  model_load_ms = {'load_duration_ms'},
}

local function result_usage(result)
  if result == nil or not string.find(result, '"usage"', 1, true) then return nil end
  local ok, doc = pcall(cjson.decode, result)
  if not ok or type(doc) ~= 'table' or type(doc.usage) ~= 'table' then return nil end
  local found = {}
  for measure, names in pairs(USAGE_NAMES) do
    for _, name in ipairs(names) do
      local value = doc.usage[name]
      if type(value) == 'number' and value >= 0 then
        found[measure] = math.floor(value + 0.5)
        break
      end
    end
  end
  return found
end

local function account_attempt(job, worker_id, now, completed, output_bytes, result)
  if not job.assigned_at then return end
  local profile = worker_usage_profile(worker_id)
  local hour = math.floor(now / HOUR_MS) * HOUR_MS
  local key = PREFIX .. 'usage:' .. string.format('%.0f', hour)
  if usage_deltas[key] == nil then
    usage_deltas[key] = new_counts()
    usage_keys[#usage_keys + 1] = {key, hour}
  end
  local counts = usage_deltas[key]
  local customer = job.customer_id or ''
  local base = customer .. '|' .. job.service .. '|' .. profile.pool .. '|'
  local run_ms = now - tonumber(job.assigned_at)
  bump(counts, base .. 'jobs', 1)
  if completed then bump(counts, base .. 'completed', 1) end
  -- Totals since the start, per customer, for Prometheus counters (customers:totals).
  local totals = usage_deltas.totals
  bump(totals, customer .. '|jobs', 1)
  if completed then bump(totals, customer .. '|completed', 1) end
  bump(totals, customer .. '|run_ms', run_ms)
  bump(totals, customer .. '|gpu_ms', run_ms * profile.gpus)
  bump(counts, base .. 'wait_ms', tonumber(job.assigned_at) - tonumber(job.created_at))
  bump(counts, base .. 'run_ms', run_ms)
  if profile.gpus > 0 then bump(counts, base .. 'gpu_ms', run_ms * profile.gpus) end
  if output_bytes and output_bytes > 0 then bump(counts, base .. 'output_bytes', output_bytes) end
  for measure, value in pairs(result_usage(result) or {}) do
    if value > 0 then bump(counts, base .. measure, value) end
  end
end

local function flush_usage()
  for _, entry in ipairs(usage_keys) do
    -- Usage measures only grow: a hash that was just created has a field that was; its
    -- expiry (the same for every field of the hour) is set then, not on every job.
    if flush_counts(usage_deltas[entry[1]], entry[1]) then
      redis.call('PEXPIREAT', entry[1], entry[2] + HOUR_MS + USAGE_RETENTION_MS)
    end
  end
  flush_counts(usage_deltas.totals, PREFIX .. 'customers:totals')
  usage_deltas, usage_keys, worker_usage_cache = {totals = new_counts()}, {}, {}
end
