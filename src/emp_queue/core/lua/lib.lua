-- lib.lua: the shared part of the emp function library. The loader (core/scripts.py)
-- appends every operation file as a function of its own, registered as
-- "<library>_<operation>"; the helpers below are created once, when the library loads,
-- and begin_run() resets the per-run state at the start of each call.
--
-- Every operation receives the same KEYS, in this order:
--   KEYS[1]  seq          string   monotonic submit sequence
--   KEYS[2]  events       stream   every transition and progress report
--   KEYS[3]  stats        hash     "<service>|<status>" -> job count
--   KEYS[4]  services     set      services that ever had a job
--   KEYS[5]  unworkable   set      classes no live worker can run
--   KEYS[6]  active       zset     assigned/in-progress job id -> lease deadline (ms)
--   KEYS[7]  scheduled    zset     job id waiting for its retry backoff -> not-before (ms)
--   KEYS[8]  deadlines    zset     waiting job id -> queue TTL deadline (ms)
--   KEYS[9]  terminal     zset     finished job id -> finish time (ms), for retention
--   KEYS[10] dead         zset     dead-lettered job id -> time (ms)
--   KEYS[11] workers      zset     live worker id -> last heartbeat (ms)
--   KEYS[12] fingerprints hash     capability fingerprint -> live workers having it
--   KEYS[13] notify       channel  (pub/sub) receives the last event id of each script run
--   KEYS[14] jobs         zset     every job id -> its submit sequence (listing, newest first)
--   KEYS[15] served       set      services that ever had a registered worker
--   KEYS[16] totals       hash     fleet-wide counters and time histograms (see count_event)
-- and ARGV[1] = key prefix ("{ns}:"), ARGV[2] = events stream max length,
-- ARGV[3] = retention (ms). Script arguments start at ARGV[4].
--
-- Per-entity keys are derived from the prefix (one hash tag, so one cluster slot):
--   <prefix>job:<id>              hash  the job record
--   <prefix>class:<cid>           hash  desc (JSON: service, customer, req), service
--   <prefix>class:<cid>:pending   zset  "<seq>|<id>" -> score, the class's waiting jobs
--   <prefix>classes:<service>     zset  class id -> score of its best waiting job
--   <prefix>workflow:<wid>        hash  workflow record
--   <prefix>workflow:<wid>:pending zset as class pending, for workflow-pinned workers
--   <prefix>workflow:<wid>:jobs   zset  job id -> submit sequence, every job of the workflow
--   <prefix>worker:<id>           hash  worker record
--   <prefix>worker:<id>:jobs      set   ids of the jobs the worker holds
--   <prefix>worker:<id>:control   channel cancel notices for the worker
--   <prefix>worker:<id>:wake      channel "there is work for you" (see "Waking idle workers")
--   <prefix>waiter:<token>        channel "<job id> <status> <record as a JSON array>" when a
--                                       job with that notify token finishes (finish_notices.py)
--   <prefix>idle:<fp>             zset  idle worker id -> its free slots, per fingerprint
--   <prefix>idle-fps:<service>    set   fingerprints of the service with idle workers
--   <prefix>caps:<fp>             string capabilities JSON
--   <prefix>match:<fp>            hash  class id -> "1"/"0" (cached match result)
--   <prefix>nodes:<nfp>           set   node class names of a NodeClasses fingerprint
--   <prefix>ready:<service>|<model> zset worker id -> when it was last seen free with the model
--                                       loaded (the affinity hold reads it; see claim.lua)
--   <prefix>loaded:<service>|<model> zset live worker id -> registration time, every worker with
--                                       the model loaded, free or busy (the busy hold)
--   <prefix>arrivals:<minute>     hash  class id -> jobs submitted in that minute (epoch ms /
--                                       60000), kept 62 min (arrival rates, core/demand.py)
--   <prefix>scheduled-watch       string "<worker id>|<due ms>": the one idle worker that wakes
--                                       when the scheduled set's head is due (waits.lua)

-- Set by begin_run() for each call.
local K, PREFIX, EVENTS_MAXLEN, RETENTION_MS
-- Defined in wake.lua, which is loaded after this file: who is woken for new work, and who
-- is told to watch the scheduled set.
local note_new_work, wake_idle_workers, forget_idle_worker, wake_a_watcher
-- Defined in waits.lua: a job was added to the scheduled set (the watch may need moving); a
-- worker that leaves hands on the watch of that set, if it held it.
local note_scheduled, hand_on_watch
-- Defined in customers.lua: jobs of a customer that stopped running, and the wake-up of the
-- work its running cap held back.
local note_released, wake_capped

-- The names of per-entity keys (the list above), as KEY.<name>(...): one table rather than a
-- local function each, because a Lua function (the library's main chunk is one) may have at
-- most 200 local variables, and every helper of every file loaded below is one of them
-- (tests/integration/test_scripts_headroom.py keeps a margin).
local KEY = {}
function KEY.job(id) return PREFIX .. 'job:' .. id end
function KEY.class(cid) return PREFIX .. 'class:' .. cid end
function KEY.class_pending(cid) return PREFIX .. 'class:' .. cid .. ':pending' end
function KEY.service_classes(service) return PREFIX .. 'classes:' .. service end
function KEY.workflow(wid) return PREFIX .. 'workflow:' .. wid end
function KEY.workflow_pending(wid) return PREFIX .. 'workflow:' .. wid .. ':pending' end
function KEY.workflow_jobs(wid) return PREFIX .. 'workflow:' .. wid .. ':jobs' end
function KEY.worker(id) return PREFIX .. 'worker:' .. id end
function KEY.worker_jobs(id) return PREFIX .. 'worker:' .. id .. ':jobs' end
function KEY.worker_control(id) return PREFIX .. 'worker:' .. id .. ':control' end
function KEY.caps(fp) return PREFIX .. 'caps:' .. fp end
function KEY.match(fp) return PREFIX .. 'match:' .. fp end
function KEY.nodes(fp) return PREFIX .. 'nodes:' .. fp end
function KEY.ready(service, model) return PREFIX .. 'ready:' .. service .. '|' .. model end
function KEY.loaded(service, model) return PREFIX .. 'loaded:' .. service .. '|' .. model end
function KEY.arrivals(minute) return PREFIX .. 'arrivals:' .. minute end
function KEY.worker_wake(id) return PREFIX .. 'worker:' .. id .. ':wake' end
function KEY.idle(fp) return PREFIX .. 'idle:' .. fp end
function KEY.idle_fps(service) return PREFIX .. 'idle-fps:' .. service end
function KEY.waiter(token) return PREFIX .. 'waiter:' .. token end

-- The server's clock, read once per run: time stands still during a run, as it does for Redis.
local NOW_MS = nil
local function now_ms()
  if NOW_MS == nil then
    local t = redis.call('TIME')
    NOW_MS = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return NOW_MS
end

local function hgetall_map(key)
  local flat = redis.call('HGETALL', key)
  local map = {}
  for i = 1, #flat, 2 do map[flat[i]] = flat[i + 1] end
  return map
end

-- The fields scripts read to decide a transition (everything but the client's data).
local STATE_FIELDS = {'status', 'attempt', 'worker_id', 'service', 'class', 'workflow_id',
  'current_step', 'total_steps', 'assigned_at', 'created_at', 'seq', 'oseq', 'score', 'failures',
  'lost_leases', 'max_attempts', 'not_before', 'avoid', 'queue_ttl_s', 'customer_id',
  'dependents', 'notify'}

-- What complete.lua and progress.lua need: fewer fields, less work on the hot path.
local FINISH_FIELDS = {'status', 'attempt', 'worker_id', 'service', 'class', 'workflow_id',
  'current_step', 'total_steps', 'assigned_at', 'created_at', 'customer_id', 'dependents', 'seq',
  'notify'}

local function load_state(id, fields)
  fields = fields or STATE_FIELDS
  local values = redis.call('HMGET', KEY.job(id), unpack(fields))
  local state = {}
  for i, name in ipairs(fields) do
    if values[i] then state[name] = values[i] end
  end
  return state
end

-- Batched writes ------------------------------------------------------------------
-- Set and sorted-set writes that many jobs of one run share (ZADD active, ZREM active,
-- SREM worker jobs, ...) are collected and sent as one command each by finish_run().
-- Only keys that the rest of a run does not read back are batched.
local batched, batched_order = {}, {}

local function batch(command, key, ...)
  local id = command .. ' ' .. key
  local entry = batched[id]
  if entry == nil then
    entry = {command = command, key = key, args = {}}
    batched[id] = entry
    batched_order[#batched_order + 1] = id
  end
  local args = entry.args
  for i = 1, select('#', ...) do args[#args + 1] = select(i, ...) end
end

local function flush_batched()
  for _, id in ipairs(batched_order) do
    local entry = batched[id]
    local args = entry.args
    for start = 1, #args, 4000 do
      redis.call(entry.command, entry.key, unpack(args, start, math.min(start + 3999, #args)))
    end
  end
  batched, batched_order = {}, {}
end

-- Statistics ------------------------------------------------------------------
-- Counts change in memory during a run and reach their hash once, in finish_run().
local function new_counts() return {deltas = {}, order = {}} end
local stat_counts, total_counts = new_counts(), new_counts()

local function bump(counts, field, delta)
  if counts.deltas[field] == nil then
    counts.deltas[field] = 0
    counts.order[#counts.order + 1] = field
  end
  counts.deltas[field] = counts.deltas[field] + delta
end

-- True when a field was created (its total is now its delta): the hash may be new.
local function flush_counts(counts, key)
  local created = false
  for _, field in ipairs(counts.order) do
    local delta = counts.deltas[field]
    if delta ~= 0 and redis.call('HINCRBY', key, field, delta) == delta then created = true end
  end
  return created
end

local function add_stat(field, delta) bump(stat_counts, field, delta) end

local function count_status(service, old_status, new_status)
  if old_status then add_stat(service .. '|' .. old_status, -1) end
  if new_status then add_stat(service .. '|' .. new_status, 1) end
end

-- Per-customer counts for fair share and caps (customers.lua reads them), in the hash
-- customers:counts: "running|<customer>", "running|<customer>|<service>", "waiting|<customer>".
-- A job without customer counts under the customer "". Deltas of a run reach the hash in
-- finish_run(); customers.lua adds the deltas still in memory when it reads a count.
local customer_counts = new_counts()
local RUNNING_STATUS = {assigned = true, in_progress = true}
local WAITING_STATUS = {pending = true, unworkable = true}

local function count_customer(job, old_status, new_status)
  local customer = job.customer_id or ''
  local was, is = RUNNING_STATUS[old_status or ''], RUNNING_STATUS[new_status or '']
  if was ~= is then
    local delta = is and 1 or -1
    bump(customer_counts, 'running|' .. customer, delta)
    bump(customer_counts, 'running|' .. customer .. '|' .. job.service, delta)
    if was then note_released(customer) end
  end
  was, is = WAITING_STATUS[old_status or ''], WAITING_STATUS[new_status or '']
  if was ~= is then bump(customer_counts, 'waiting|' .. customer, is and 1 or -1) end
end

-- Fleet totals, read by the API's /metrics: "claimed|<service>", "completed|<service>",
-- "failed|<service>|<failure class>", and for the wait and run times "<name>|<service>|<i>"
-- (jobs whose time fell in bucket i, not cumulative; i = #TIME_BUCKETS_MS + 1 for longer)
-- with "<name>_ms|<service>" (sum of the times). The bounds are TIME_BUCKETS in
-- emp_queue/core/totals.py, in ms.
local TIME_BUCKETS_MS = {50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000,
  300000, 600000, 1800000, 3600000}

local function observe_time(name, service, ms)
  local bucket = #TIME_BUCKETS_MS + 1
  for i, bound in ipairs(TIME_BUCKETS_MS) do
    if ms <= bound then bucket = i; break end
  end
  bump(total_counts, name .. '|' .. service .. '|' .. bucket, 1)
  bump(total_counts, name .. '_ms|' .. service, ms)
end

local function count_event(event_type, data)
  local service = data.service or 'unknown'
  if event_type == 'job_assigned' then
    bump(total_counts, 'claimed|' .. service, 1)
  elseif event_type == 'complete_job' then
    bump(total_counts, 'completed|' .. service, 1)
    if data.wait_ms then observe_time('wait', service, data.wait_ms) end
    if data.duration_ms then observe_time('run', service, data.duration_ms) end
  elseif event_type == 'job_failed' then
    bump(total_counts, 'failed|' .. service .. '|' .. (data.failure_class or 'unknown'), 1)
  end
end

-- Events ----------------------------------------------------------------------
local last_event_id = nil

local function emit(event_type, job_id, data)
  data.ts = now_ms()
  count_event(event_type, data)
  last_event_id = redis.call('XADD', K.events, 'MAXLEN', '~', EVENTS_MAXLEN, '*',
    'type', event_type, 'job_id', job_id or '', 'data', cjson.encode(data))
  return last_event_id
end


-- Matching (the Lua twin of emp_queue/core/matching.py) -------------------------
local function is_array(t) return type(t) == 'table' and t[1] ~= nil end

local function same_scalar(a, b) return type(a) == type(b) and a == b end

local function contains(list, value)
  for _, item in ipairs(list) do
    if same_scalar(item, value) then return true end
  end
  return false
end

local satisfies
satisfies = function(required, actual)
  if type(required) == 'table' then
    if is_array(required) then
      if type(actual) == 'table' then
        if not is_array(actual) then return false end
        for _, item in ipairs(required) do
          if not contains(actual, item) then return false end
        end
        return true
      end
      return contains(required, actual)
    end
    if type(actual) ~= 'table' or is_array(actual) then return false end
    for key, value in pairs(required) do
      if not satisfies(value, actual[key]) then return false end
    end
    return true
  end
  if type(required) == 'number' then
    return type(actual) == 'number' and actual >= required
  end
  if is_array(actual) then return contains(actual, required) end
  return same_scalar(required, actual)
end

local hits
hits = function(forbidden, actual)
  if actual == nil then return false end
  if type(forbidden) == 'table' then
    if is_array(forbidden) then
      if type(actual) == 'table' then
        if not is_array(actual) then return false end
        for _, item in ipairs(forbidden) do
          if contains(actual, item) then return true end
        end
        return false
      end
      return contains(forbidden, actual)
    end
    if type(actual) ~= 'table' or is_array(actual) then return false end
    for key, value in pairs(forbidden) do
      if hits(value, actual[key]) then return true end
    end
    return false
  end
  return satisfies(forbidden, actual)
end

local function list_has(list, value)
  return type(list) == 'table' and contains(list, value)
end

local function customer_ok(desc, caps)
  local access = caps.customer_access or {}
  local customer = desc.customer
  if customer ~= nil and list_has(access.denied_customers, customer) then return false end
  if access.allowed_customers ~= nil and not list_has(access.allowed_customers, customer) then
    return false
  end
  if access.isolation == 'strict' and access.allowed_customers == nil then return false end
  if desc.req.customer_isolation == 'strict' and access.isolation ~= 'strict' then
    return false
  end
  return true
end

-- A worker's models of one service, as lists (missing levels are empty).
local function service_models(desc, caps)
  local per_service = caps.models and caps.models[desc.service]
  if type(per_service) ~= 'table' then return {}, {}, {} end
  local function list(value) return type(value) == 'table' and value or {} end
  return list(per_service.loaded), list(per_service.installed), list(per_service.fetchable)
end

-- A model is workable when the worker has it installed or can fetch it.
local function models_ok(desc, caps)
  local required = desc.req.models
  if required == nil then return true end
  local _, installed, fetchable = service_models(desc, caps)
  for _, model in ipairs(required) do
    if not contains(installed, model) and not contains(fetchable, model) then return false end
  end
  return true
end

-- A worker that publishes no node classes is not judged on them (it cannot tell).
local function nodes_ok(desc, caps)
  local required = desc.req.nodes
  if required == nil or caps.nodes == nil then return true end
  local set = KEY.nodes(caps.nodes.fingerprint)
  for _, node in ipairs(required) do
    if redis.call('SISMEMBER', set, node) == 0 then return false end
  end
  return true
end

-- Affinity (the Lua twin of model_tier in core/matching.py): 0 when every model the
-- class needs is loaded on the worker (or it needs none), 1 when each is at least
-- installed, 2 when some must be fetched first.
local function model_tier(desc, caps)
  local required = desc and desc.req and desc.req.models
  if required == nil then return 0 end
  local loaded, installed = service_models(desc, caps)
  local tier = 0
  for _, model in ipairs(required) do
    if not contains(loaded, model) then
      if not contains(installed, model) then return 2 end
      tier = 1
    end
  end
  return tier
end

-- Workflow pins are not part of a class: pinned workers claim from the
-- workflow's own index instead (see claim.lua).
local function class_matches_caps(desc, caps)
  local req = desc.req
  if not list_has(caps.services, desc.service) then return false end
  if req.hardware ~= nil and not satisfies(req.hardware, caps.hardware or {}) then
    return false
  end
  if not models_ok(desc, caps) then return false end
  if not nodes_ok(desc, caps) then return false end
  if not customer_ok(desc, caps) then return false end
  -- One pool name is the job's pool, applied by the claim with fallback (pools.lua); a list
  -- of pools is a hard requirement.
  if is_array(req.pool) and not satisfies(req.pool, caps.pool) then return false end
  if req.positive_requirements ~= nil
    and not satisfies(req.positive_requirements, caps.labels or {}) then
    return false
  end
  if req.negative_requirements ~= nil and hits(req.negative_requirements, caps.labels or {}) then
    return false
  end
  return true
end

local caps_cache = {}
local desc_cache = {}

-- Capabilities and pool rules decoded, kept between runs by their JSON text (a changed text is
-- decoded afresh), at most 256 texts: a fleet has few capability sets. The decoded tables are
-- shared: only read, never changed (pools.lua adds the scheme it derives from the rules, which
-- the text decides). Class descriptors are not kept: thousands of them (the affinity
-- benchmark's 1,000 classes) made the library's heap large enough that the claim p99 doubled.
local decoded_json, decoded_json_size = {}, 0

local function decode_kept(raw)
  local doc = decoded_json[raw]
  if doc == nil then
    if decoded_json_size >= 256 then decoded_json, decoded_json_size = {}, 0 end
    doc = cjson.decode(raw)
    decoded_json[raw], decoded_json_size = doc, decoded_json_size + 1
  end
  return doc
end

local function load_caps(fp)
  if caps_cache[fp] == nil then
    local raw = redis.call('GET', KEY.caps(fp))
    caps_cache[fp] = raw and decode_kept(raw) or false
  end
  return caps_cache[fp]
end

local desc_text_cache = {} -- class id -> its descriptor's JSON text, or false (this run)

-- A class's descriptor as stored (JSON), read once per run.
local function load_desc_text(cid)
  if desc_text_cache[cid] == nil then
    desc_text_cache[cid] = redis.call('HGET', KEY.class(cid), 'desc') or false
  end
  return desc_text_cache[cid]
end

local function load_desc(cid)
  if desc_cache[cid] == nil then
    local raw = load_desc_text(cid)
    desc_cache[cid] = raw and cjson.decode(raw) or false
  end
  return desc_cache[cid]
end

-- Cached: classes and capability sets are both content-addressed, so a stored
-- answer never goes stale.
local function class_matches(cid, fp)
  local cached = redis.call('HGET', KEY.match(fp), cid)
  if cached then return cached == '1' end
  local caps = load_caps(fp)
  local desc = load_desc(cid)
  local ok = caps and desc and class_matches_caps(desc, caps) or false
  redis.call('HSET', KEY.match(fp), cid, ok and '1' or '0')
  return ok
end

-- Affinity hold --------------------------------------------------------------------
-- A worker is *ready* with a model when its last claim left it wanting more jobs (it is free)
-- and it has the model loaded. claim.lua keeps ready:<service>|<model> up to date at the end
-- of each claim; a worker that leaves or changes its capabilities is removed from them.
-- loaded:<service>|<model> lists every live worker with the model loaded, free or busy
-- (register_worker.lua adds, a change of capabilities or a departure removes).
local function each_loaded(caps, fn)
  if type(caps) ~= 'table' or type(caps.models) ~= 'table' then return end
  for service, levels in pairs(caps.models) do
    if type(levels) == 'table' and type(levels.loaded) == 'table' then
      for _, model in ipairs(levels.loaded) do fn(service, model) end
    end
  end
end

-- Add the worker to (present) or remove it from index_key(service, model) of each model
-- it has loaded.
local function note_models(index_key, worker_id, caps, present, now)
  each_loaded(caps, function(service, model)
    if present then
      redis.call('ZADD', index_key(service, model), now, worker_id)
    else
      redis.call('ZREM', index_key(service, model), worker_id)
    end
  end)
end

local function note_ready(worker_id, caps, ready, now)
  note_models(KEY.ready, worker_id, caps, ready, now)
end

local function note_loaded(worker_id, caps, present, now)
  note_models(KEY.loaded, worker_id, caps, present, now)
end

-- Is every model of the class loaded on a worker of the index (KEY.ready: free workers,
-- KEY.loaded: all) other than worker_id that can run it? At most 8 workers of the first
-- model are looked at (cost per class, not per worker).
local function loaded_elsewhere(cid, worker_id, index_key, may_take)
  local desc = load_desc(cid)
  local required = desc and desc.req and desc.req.models
  if required == nil or #required == 0 then return false end
  local candidates = redis.call('ZRANGE', index_key(desc.service, required[1]), 0, 7)
  for _, other in ipairs(candidates) do
    if other ~= worker_id then
      local all = true
      for i = 2, #required do
        if not redis.call('ZSCORE', index_key(desc.service, required[i]), other) then
          all = false
          break
        end
      end
      if all then
        local other_fp = redis.call('HGET', KEY.worker(other), 'fingerprint')
        if other_fp and class_matches(cid, other_fp) and (may_take == nil or may_take(cid, other_fp))
        then
          return true
        end
      end
    end
  end
  return false
end

-- Deferral (Python twin: core/deferral.py): 0, or the time (ms) from which the claiming
-- worker may take the job -- before that, the job is left to other workers.
--   job: {cid, score (band * 2^42 + order ms), tier (model_tier for the claiming worker),
--         pool_wait_ms (pools.lua: how long after its order time this worker's pool waits)}
--   ctx: {worker_id, hold_ms, busy_hold_ms, ready = {}, loaded = {} (per-run caches:
--         cid -> loaded_elsewhere), pool}
-- Rules:
-- * affinity hold: a job whose models this worker lacks in VRAM (tier > 0), while a ready
--   (free) worker has them all loaded, is left to that worker until hold_ms after its order
--   time; while any other worker, free or busy, has them all loaded, until busy_hold_ms after
--   it (a busy worker may be free soon; the claim cannot tell when: busy_hold_ms is the bet).
--   The later of the two applies.
-- * pool fallback (#15): a job of another pool is left to workers of its own pool (and the
--   pools before this one in its fallback order) until pool_wait_ms after its order time
--   (math.huge: never).
local ORDER_SCALE = 4398046511104 -- 2^42: score = band * 2^42 + order ms (submit.lua)
local function held_by(job, ctx, hold, cache, index_key, now)
  if hold <= 0 then return 0 end
  local hold_end = job.score % ORDER_SCALE + hold
  if hold_end <= now then return 0 end
  local held = cache[job.cid]
  if held == nil then
    held = loaded_elsewhere(job.cid, ctx.worker_id, index_key,
      ctx.owner_may_take and function(cid, fp) return ctx.owner_may_take(job, fp) end)
    cache[job.cid] = held
  end
  return held and hold_end or 0
end

local function deferred_until(job, ctx, now)
  local until_ms = 0
  if job.tier > 0 then
    until_ms = math.max(held_by(job, ctx, ctx.hold_ms, ctx.ready, KEY.ready, now),
      held_by(job, ctx, ctx.busy_hold_ms or 0, ctx.loaded or {}, KEY.loaded, now))
  end
  if job.pool_wait_ms then
    local pool_end = job.score % ORDER_SCALE + job.pool_wait_ms
    if pool_end > now then until_ms = math.max(until_ms, pool_end) end
  end
  return until_ms
end

local function any_live_worker_matches(cid)
  local fps = redis.call('HKEYS', K.fingerprints)
  for _, fp in ipairs(fps) do
    if class_matches(cid, fp) then return true end
  end
  return false
end

-- Waiting jobs ------------------------------------------------------------------
-- Ties on score go by the order sequence: the job's own, or for a later workflow step the
-- workflow's first job's (stored as oseq), so steps keep the workflow's place exactly.
local function queue_member(job, id)
  return string.format('%012d', tonumber(job.oseq or job.seq)) .. '|' .. id
end

-- classes:<service> holds one entry per workable class with waiting jobs: the member
-- "<order seq of its best job>|<cid>" scored by that job's score, so the index orders
-- classes exactly as their best jobs (score, then sequence: no ties to scan through).
-- The class hash remembers its entry ('head') to replace it.
local function class_entry(head_member, cid) return string.sub(head_member, 1, 12) .. '|' .. cid end
local function cid_of_entry(entry) return string.sub(entry, 14) end

local function set_class_entry(cid, service, score, entry)
  local ckey = KEY.class(cid)
  local old = redis.call('HGET', ckey, 'head')
  if old == entry then return end
  local index = KEY.service_classes(service)
  if old then redis.call('ZREM', index, old) end
  if entry then
    redis.call('ZADD', index, score, entry)
    redis.call('HSET', ckey, 'head', entry)
  else
    redis.call('HDEL', ckey, 'head')
  end
end

local function refresh_class_head(cid, service)
  local head = redis.call('ZRANGE', KEY.class_pending(cid), 0, 0, 'WITHSCORES')
  if head[1] == nil then
    set_class_entry(cid, service, nil, nil)
    redis.call('SREM', K.unworkable, cid)
    -- Kept as long as the finished jobs of the class that still name it.
    redis.call('PEXPIRE', KEY.class(cid), RETENTION_MS + 60000, 'NX')
    redis.call('PEXPIRE', KEY.class(cid), RETENTION_MS + 60000, 'GT')
    return
  end
  if redis.call('SISMEMBER', K.unworkable, cid) == 0 then
    set_class_entry(cid, service, head[2], class_entry(head[1], cid))
  end
end

-- Classes that gained waiting jobs in this run; their index entries are brought up to date
-- once, by refresh_dirty_classes() (finish_run() calls it; claim.lua before reading).
local dirty_classes = {}
local workable_in_run = {}

local function refresh_dirty_classes()
  for cid, service in pairs(dirty_classes) do refresh_class_head(cid, service) end
  dirty_classes = {}
end

-- Defined in listing.lua: the listing indexes follow every status change (note_listing) and
-- are written once per run (flush_listing, from finish_run).
local note_listing, flush_listing

local function set_status(key, job, new_status, extra)
  local fields = {'status', new_status}
  if extra then
    for i = 1, #extra do fields[#fields + 1] = extra[i] end
  end
  redis.call('HSET', key, unpack(fields))
  count_status(job.service, job.status, new_status)
  count_customer(job, job.status, new_status)
  note_listing(key, job, job.status, new_status)
  job.status = new_status
end

-- Put a job (whose record exists) into its class's waiting index.
local function index_waiting(id, job)
  local cid = job.class
  local member = queue_member(job, id)
  local score = job.score
  redis.call('ZADD', KEY.class_pending(cid), score, member)
  if job.workflow_id then
    redis.call('ZADD', KEY.workflow_pending(job.workflow_id), score, member)
  end
  local workable = workable_in_run[cid]
  if workable == nil then
    redis.call('PERSIST', KEY.class(cid))
    workable = redis.call('SISMEMBER', K.unworkable, cid) == 0
    if workable and not redis.call('HGET', KEY.class(cid), 'head') then
      -- A class seen for the first time (or again after it emptied): decide once.
      workable = any_live_worker_matches(cid)
      if not workable then redis.call('SADD', K.unworkable, cid) end
    end
    workable_in_run[cid] = workable
  end
  if workable then dirty_classes[cid] = job.service end
  return workable
end

local function unindex_waiting(id, job)
  local member = queue_member(job, id)
  redis.call('ZREM', KEY.class_pending(job.class), member)
  if job.workflow_id then redis.call('ZREM', KEY.workflow_pending(job.workflow_id), member) end
  redis.call('ZREM', K.scheduled, id)
  redis.call('ZREM', K.deadlines, id)
  refresh_class_head(job.class, job.service)
end

-- Make a waiting job claimable now: pending, or unworkable if no live worker fits.
local function enqueue(id, job, event_type, data)
  local key = KEY.job(id)
  local workable = index_waiting(id, job)
  local status = workable and 'pending' or 'unworkable'
  if workable then note_new_work(job, 1, id) end
  set_status(key, job, status, nil)
  data.status = status
  emit(event_type, id, data)
  return status
end

-- Terminal states -----------------------------------------------------------------
local extended_classes = {}
-- Defined in waits.lua: starts or cancels the jobs waiting for one that just finished.
local release_dependents

local function finish(id, job, status, extra, now)
  local key = KEY.job(id)
  local fields = {'finished_at', now}
  if extra then
    for i = 1, #extra do fields[#fields + 1] = extra[i] end
  end
  set_status(key, job, status, fields)
  batch('ZREM', K.active, id)
  if job.worker_id then batch('SREM', KEY.worker_jobs(job.worker_id), id) end
  batch('ZADD', K.terminal, now, id)
  if not extended_classes[job.class] then
    extended_classes[job.class] = true
    redis.call('PEXPIRE', KEY.class(job.class), RETENTION_MS + 60000, 'GT')
  end
  if job.workflow_id then
    local wkey = KEY.workflow(job.workflow_id)
    -- A workflow whose next step never comes expires a retention after its last job ended;
    -- submitting a step makes it permanent again (submit.lua).
    redis.call('PEXPIRE', wkey, RETENTION_MS)
    redis.call('PEXPIRE', KEY.workflow_jobs(job.workflow_id), RETENTION_MS)
    if status == 'completed' then
      local step, steps = tonumber(job.current_step), tonumber(job.total_steps)
      if step and steps and step >= steps then
        redis.call('HSET', wkey, 'status', 'completed', 'finished_at', now)
        emit('workflow_completed', id, {workflow_id = job.workflow_id})
      end
    elseif status ~= 'cancelled' then
      redis.call('HSET', wkey, 'status', 'failed', 'finished_at', now)
      emit('workflow_failed', id, {workflow_id = job.workflow_id, status = status})
    end
  end
  if job.dependents then release_dependents(id, status, now) end
  -- The caller that submitted it waits for this: the finished record goes along, so it need
  -- not read it back (one HGETALL and one PUBLISH, for such jobs only).
  if job.notify then
    redis.call('PUBLISH', KEY.waiter(job.notify),
      id .. ' ' .. status .. ' ' .. cjson.encode(redis.call('HGETALL', key)))
  end
end

-- Ends a job from outside its worker (cancel.lua, deliver.lua): a waiting job leaves its
-- queue, a running one ends now and its worker is told to stop (its late answers are then
-- refused as stale). Returns the previous status and the job; for a job that had already
-- finished, nil, nil and its status; for an unknown job, nothing.
local function end_from_outside(id, status, extra, now)
  local job = load_state(id)
  if job.status == nil then return nil, nil, nil end
  local previous = job.status
  if previous == 'pending' or previous == 'unworkable' or previous == 'scheduled'
      or previous == 'blocked' then
    unindex_waiting(id, job)
  elseif previous ~= 'assigned' and previous ~= 'in_progress' then
    return nil, nil, previous
  end
  finish(id, job, status, extra, now)
  if job.worker_id then
    redis.call('PUBLISH', KEY.worker_control(job.worker_id),
      cjson.encode({action = 'cancel', job_id = id, attempt = tonumber(job.attempt)}))
  end
  return previous, job
end

-- Worker fencing ------------------------------------------------------------------
-- A worker-side change is accepted only from the worker holding the current attempt.
local function check_attempt(job, worker_id, attempt)
  if job.status == nil then return 'not_found' end
  if job.status == 'cancelled' then return 'cancelled' end
  if job.status ~= 'assigned' and job.status ~= 'in_progress' then
    if tonumber(job.attempt) ~= attempt then return 'superseded' end
    return 'not_running:' .. job.status
  end
  if tonumber(job.attempt) ~= attempt or job.worker_id ~= worker_id then return 'superseded' end
  return nil
end

-- Requeue after a failure, a lost lease or a release ------------------------------
local function requeue(id, job, now, delay_ms, reason, extra)
  local key = KEY.job(id)
  local attempt = tonumber(job.attempt) + 1
  redis.call('ZREM', K.active, id)
  if job.worker_id then redis.call('SREM', KEY.worker_jobs(job.worker_id), id) end
  local fields = {'attempt', attempt}
  if extra then
    for i = 1, #extra do fields[#fields + 1] = extra[i] end
  end
  redis.call('HSET', key, unpack(fields))
  redis.call('HDEL', key, 'worker_id', 'assigned_at', 'started_at', 'progress', 'message')
  job.attempt = attempt
  for i = 1, #fields - 1, 2 do
    if fields[i] == 'avoid' then job.avoid = fields[i + 1] end
  end
  local previous_worker = job.worker_id
  job.worker_id = nil
  if delay_ms > 0 then
    local not_before = now + delay_ms
    redis.call('HSET', key, 'not_before', not_before)
    redis.call('ZADD', K.scheduled, not_before, id)
    note_scheduled(job, not_before)
    set_status(key, job, 'pending', nil)
    emit('job_status_changed', id, {status = 'pending', attempt = attempt, reason = reason,
      not_before = not_before, previous_worker = previous_worker})
    return 'pending'
  end
  return enqueue(id, job, 'job_status_changed',
    {attempt = attempt, reason = reason, previous_worker = previous_worker})
end

-- Scheduled retries whose backoff elapsed go back to their original position; jobs
-- submitted for later (status scheduled, see waits.lua) become claimable.
local function promote_due(now, limit)
  local due = redis.call('ZRANGEBYSCORE', K.scheduled, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    redis.call('ZREM', K.scheduled, id)
    local job = load_state(id)
    if job.status == 'pending' then
      enqueue(id, job, 'job_status_changed', {reason = 'backoff_elapsed'})
    elseif job.status == 'scheduled' then
      enqueue(id, job, 'job_status_changed', {reason = 'run_at_reached'})
    end
  end
  return #due
end

-- Workability -------------------------------------------------------------------
local function each_waiting(cid, fn)
  local members = redis.call('ZRANGE', KEY.class_pending(cid), 0, -1)
  for _, member in ipairs(members) do
    local id = string.sub(member, 14)
    local key = KEY.job(id)
    local job = load_state(id)
    fn(id, key, job)
  end
end

local function make_workable(cid)
  redis.call('SREM', K.unworkable, cid)
  workable_in_run[cid] = nil
  each_waiting(cid, function(id, key, job)
    if job.status == 'unworkable' then
      note_new_work(job, 1, id)
      set_status(key, job, 'pending', nil)
      emit('job_status_changed', id, {status = 'pending', reason = 'worker_available'})
    end
  end)
  refresh_class_head(cid, redis.call('HGET', KEY.class(cid), 'service'))
end

local function make_unworkable(cid, service)
  redis.call('SADD', K.unworkable, cid)
  workable_in_run[cid] = nil
  set_class_entry(cid, service, nil, nil)
  each_waiting(cid, function(id, key, job)
    if job.status == 'pending' then
      set_status(key, job, 'unworkable', nil)
      emit('job_status_changed', id, {status = 'unworkable', reason = 'no_live_worker'})
    end
  end)
end

local function acquire_fingerprint(fp, caps_json)
  redis.call('SET', KEY.caps(fp), caps_json)
  if redis.call('HINCRBY', K.fingerprints, fp, 1) == 1 then
    for _, cid in ipairs(redis.call('SMEMBERS', K.unworkable)) do
      if class_matches(cid, fp) then make_workable(cid) end
    end
  end
end

local function release_fingerprint(fp)
  if redis.call('HINCRBY', K.fingerprints, fp, -1) > 0 then return end
  redis.call('HDEL', K.fingerprints, fp)
  local caps = load_caps(fp)
  if caps then
    for _, service in ipairs(caps.services) do
      for _, entry in ipairs(redis.call('ZRANGE', KEY.service_classes(service), 0, -1)) do
        local cid = cid_of_entry(entry)
        if class_matches(cid, fp) and not any_live_worker_matches(cid) then
          make_unworkable(cid, service)
        end
      end
    end
  end
  redis.call('DEL', KEY.caps(fp), KEY.match(fp))
  caps_cache[fp] = nil
end

local function remove_worker(worker_id, reason)
  local wkey = KEY.worker(worker_id)
  local fp = redis.call('HGET', wkey, 'fingerprint')
  if not fp then return 0 end
  local machine_id = redis.call('HGET', wkey, 'machine_id')
  note_ready(worker_id, load_caps(fp), false, 0)
  note_loaded(worker_id, load_caps(fp), false, 0)
  redis.call('ZREM', K.workers, worker_id)
  redis.call('DEL', wkey)
  -- It may have been woken for work it will now never claim: hand that on.
  forget_idle_worker(worker_id, fp, true)
  hand_on_watch(worker_id)
  release_fingerprint(fp)
  emit('worker_disconnected', nil, {worker_id = worker_id, machine_id = machine_id,
    reason = reason})
  return 1
end

-- Every script ends with this: batched writes, counts, then one notice per run
-- (listeners read the stream from their last id), and idle workers woken for new work.
local function finish_run()
  refresh_dirty_classes()
  wake_capped()
  wake_idle_workers()
  flush_batched()
  flush_listing()
  flush_counts(stat_counts, K.stats)
  flush_counts(total_counts, K.totals)
  flush_counts(customer_counts, PREFIX .. 'customers:counts')
  stat_counts, total_counts, customer_counts = new_counts(), new_counts(), new_counts()
  if last_event_id then redis.call('PUBLISH', K.notify, last_event_id) end
end

-- Every operation starts with this: bind this call's keys and arguments, forget the last run.
local function begin_run(keys, args)
  -- The keys of one namespace never change: the table is built again only for another one.
  if K == nil or K.seq ~= keys[1] then K = {
    seq = keys[1], events = keys[2], stats = keys[3], services = keys[4],
    unworkable = keys[5], active = keys[6], scheduled = keys[7], deadlines = keys[8],
    terminal = keys[9], dead = keys[10], workers = keys[11], fingerprints = keys[12],
    notify = keys[13], jobs = keys[14], served = keys[15], totals = keys[16],
  } end
  PREFIX, EVENTS_MAXLEN, RETENTION_MS = args[1], tonumber(args[2]), tonumber(args[3])
  NOW_MS = nil
  batched, batched_order = {}, {}
  last_event_id = nil
  stat_counts, total_counts, customer_counts = new_counts(), new_counts(), new_counts()
  caps_cache, desc_cache, desc_text_cache = {}, {}, {}
  dirty_classes, workable_in_run, extended_classes = {}, {}, {}
end
