-- pools.lua: pools with fallback, and the run-time estimates that decide automatic pools;
-- loaded after customers.lua (core/scripts.py). Python twin: emp_queue/core/pools.py.
--
--   <prefix>class:<cid>  hash  run_ms: moving estimate of the class's run time (ms),
--                              kept by complete.lua (note_run_time / flush_run_times)
--
-- Pool rules reach claim.lua as JSON (ARGV[11], PoolRules.script_argument(); "" = off):
--   {auto, fast_max_ms, standard_max_ms, fallback: {pool: [pool, ...]}, delay_ms: {pool: ms},
--    default_delay_ms}
-- A job's pool is its "pool" requirement when that is one name, else (auto) the pool its
-- class's run time falls in, else none. A worker of the k-th pool of the job's pool's fallback
-- order may take it once it waited k x delay_ms[pool]; a worker without pool at once, and so
-- does a worker whose pool is outside the scheme for a job whose pool was only measured.

-- Decoded rules, kept between runs by their JSON text (decode_kept, matching.lua; a process sends
-- one text).
local function pool_rules(raw)
  if raw == nil or raw == '' then return nil end
  return decode_kept(raw)
end

-- The pool of a class and how it was decided ('requirement', 'measured', 'unmeasured', 'off').
local function class_pool(cid, rules)
  local desc = load_desc(cid)
  local requested = desc and desc.req and desc.req.pool
  if rules == nil or type(requested) == 'table' then return nil, 'off' end
  if type(requested) == 'string' then return requested, 'requirement' end
  if not rules.auto then return nil, 'unmeasured' end
  local run_ms = tonumber(redis.call('HGET', KEY.class(cid), 'run_ms'))
  if run_ms == nil then return nil, 'unmeasured' end
  if run_ms <= rules.fast_max_ms then return 'fast', 'measured' end
  if run_ms <= rules.standard_max_ms then return 'standard', 'measured' end
  return 'heavy', 'measured'
end

-- Is pool one of the pool scheme's (an automatic pool, or named in the fallback table)?
local AUTOMATIC_POOLS = {fast = true, standard = true, heavy = true}

local function in_scheme(pool, rules)
  local scheme = rules.scheme
  if scheme == nil then
    scheme = {}
    for name in pairs(AUTOMATIC_POOLS) do scheme[name] = true end
    for name, order in pairs(rules.fallback) do
      scheme[name] = true
      for _, other in ipairs(order) do scheme[other] = true end
    end
    rules.scheme = scheme -- kept with the decoded rules
  end
  return scheme[pool] == true
end

-- How long (ms after its order time) a job of class cid waits before a worker of worker_pool
-- may take it: nil at once, math.huge never. A worker whose pool is outside the scheme (a
-- pool named after a GPU type or a region, say) is not bound by automatic pools: it takes a
-- job whose pool was only measured at once, and a job that names a pool never.
local function pool_wait_ms(cid, worker_pool, rules)
  if worker_pool == nil then return nil end
  local job_pool, source = class_pool(cid, rules)
  if job_pool == nil or job_pool == worker_pool then return nil end
  if source == 'measured' and not in_scheme(worker_pool, rules) then return nil end
  local order = rules.fallback[job_pool]
  if type(order) ~= 'table' then return math.huge end
  for k, pool in ipairs(order) do
    if pool == worker_pool then
      return k * (tonumber(rules.delay_ms[job_pool]) or rules.default_delay_ms)
    end
  end
  return math.huge
end

-- Run-time estimates: an exponential moving average per class, weight RUN_ALPHA per job.
-- A run's completions of one class are summed in memory and stored once (flush_run_times).
local RUN_ALPHA = 0.2
local run_notes, run_note_order = {}, {}

local function begin_pools_run()
  run_notes, run_note_order = {}, {}
end

local function note_run_time(cid, ms)
  if cid == nil or ms == nil then return end
  local note = run_notes[cid]
  if note == nil then
    note = {n = 0, sum = 0}
    run_notes[cid] = note
    run_note_order[#run_note_order + 1] = cid
  end
  note.n, note.sum = note.n + 1, note.sum + ms
end

local function flush_run_times()
  for _, cid in ipairs(run_note_order) do
    local note = run_notes[cid]
    local mean = note.sum / note.n
    local key = KEY.class(cid)
    local old = tonumber(redis.call('HGET', key, 'run_ms'))
    local estimate = mean
    if old then
      local keep = (1 - RUN_ALPHA) ^ note.n
      estimate = old * keep + mean * (1 - keep)
    end
    redis.call('HSET', key, 'run_ms', string.format('%.0f', estimate))
  end
  run_notes, run_note_order = {}, {}
end
