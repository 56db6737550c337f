-- customers.lua: customer policies, fair share and caps; loaded right after lib.lua
-- (core/scripts.py), so it may use lib's helpers and its functions serve every operation.
-- The Python twin of the rules is emp_queue/core/fair_share.py; the agreement test in
-- tests/integration/test_fair_share_agreement.py holds the two together.
--
--   <prefix>customer:<id>       hash  policy: weight, max_running, max_pending,
--                                     max_running:<service> (absent = no limit, weight 1)
--   <prefix>customers           set   customers that have a policy
--   <prefix>customers:counts    hash  "running|<c>", "running|<c>|<service>", "waiting|<c>"
--                                     (kept by set_status in lib.lua)
--   <prefix>customers:usage     hash  "<c>" -> recent claims, decayed; "t|<c>" -> when (ms)
--
-- A customer's share is (running jobs + recent claims) / weight; recent claims halve every
-- half-life. Per-run caches are reset by begin_customers_run(), which the loader calls
-- after begin_run().

local function customer_key(id) return PREFIX .. 'customer:' .. id end
local function customers_counts_key() return PREFIX .. 'customers:counts' end
local function customers_usage_key() return PREFIX .. 'customers:usage' end

-- Policies change rarely: they are kept between runs, per namespace, and dropped when
-- customers:version (a fresh token written with every policy change, core/customers.py)
-- differs. Counts and recent claims are read afresh in every run.
local policy_caches, policy_namespaces = {}, 0
local policies, count_cache, usage_cache, share_cache = nil, {}, {}, {}

local function begin_customers_run()
  policies, count_cache, usage_cache, share_cache = nil, {}, {}, {}
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
    policy = customer ~= '' and hgetall_map(customer_key(customer)) or {}
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
    stored = tonumber(redis.call('HGET', customers_counts_key(), field) or '0')
    count_cache[field] = stored
  end
  return math.max(0, stored + (customer_counts.deltas[field] or 0))
end

-- Recent claims of a customer at time now: the stored value halved every half-life since.
local function customer_usage(customer, now, half_life_ms)
  local usage = usage_cache[customer]
  if usage == nil then
    local stored = redis.call('HMGET', customers_usage_key(), customer, 't|' .. customer)
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
  local counts = redis.call('HMGET', customers_counts_key(), unpack(fields))
  local usage_fields = {}
  for i, customer in ipairs(names) do
    count_cache[fields[i]] = tonumber(counts[i] or '0')
    usage_fields[#usage_fields + 1] = customer
    usage_fields[#usage_fields + 1] = 't|' .. customer
  end
  local stored = redis.call('HMGET', customers_usage_key(), unpack(usage_fields))
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
  redis.call('HSET', customers_usage_key(), customer, string.format('%.17g', usage),
    't|' .. customer, now)
end

-- The running cap that stops one more job of this customer and service, as
-- {scope, cap} (scope "all" or the service), or nil when none does.
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
