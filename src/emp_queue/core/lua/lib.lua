-- lib.lua: the first part of the shared helpers of the emp function library (keys, batched
-- writes, counts, events; matching.lua, transitions.lua and the others follow, in the order
-- core/scripts.py loads them). The loader appends every operation file as a function of its
-- own, registered as "<library>_<operation>"; the helpers are created once, when the library
-- loads, and begin_run() (transitions.lua) resets the per-run state at the start of each
-- call.
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
--   <prefix>worker:<id>           hash  worker record; capacity and handoff (claim.lua's
--                                       ARGV[6..13], JSON) when it takes jobs in its notices
--   <prefix>worker:<id>:jobs      set   ids of the jobs the worker holds
--   <prefix>worker:<id>:control   channel cancel notices for the worker
--   <prefix>worker:<id>:wake      channel "1": claim now; or "[asked, claim reply]": jobs claimed
--                                       for it by the run that woke it (wake.lua)
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
-- Defined in claim.lua: one claim (its ARGV as claim.lua documents), for the hand-over of
-- jobs in a wake notice (wake.lua).
local claim_for

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
