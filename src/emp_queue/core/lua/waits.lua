-- waits.lua: jobs that are not claimable yet, and queues an operator paused; loaded after
-- lib.lua and customers.lua (core/scripts.py), so it uses their helpers.
--
--   scheduled (KEYS[7])            zset  job id -> not-before (ms): retries in backoff and
--                                        jobs submitted with run_at / delay_s (status
--                                        "scheduled"); promote_due (transitions.lua) enqueues them
--   <prefix>job:<id>:dependents    set   ids of the blocked jobs waiting for job <id>
--   <prefix>job:<id> .dependents   "1"   the job has dependents (read with its state)
--   <prefix>job:<id> .waiting_on   count of its dependencies not completed yet (blocked job)
--   <prefix>queue_control          hash  "service:<name>" / "pool:<name>" -> "paused" or
--                                        "draining" (core/queue_control.py writes it)

function KEY.dependents(id) return PREFIX .. 'job:' .. id .. ':dependents' end
function KEY.queue_control() return PREFIX .. 'queue_control' end

-- The scheduled set's watch. Nothing publishes when a scheduled job becomes due: a claim
-- promotes it (promote_due), and the promotion wakes the idle workers that can take it
-- (wake.lua). One idle worker is told the head's due time with its claim and claims then —
-- the watcher, <prefix>scheduled-watch — rather than every idle worker (a herd at every due
-- moment). The watch expires WATCH_GRACE_MS after its due time: a watcher that died leaves
-- the job to the next claim or the sweep (every few seconds), and the next claim left wanting
-- watches again. A job scheduled before the watched moment (or with nobody watching) wakes
-- one idle worker now, whose claim watches the new head. Decision 0072.
local WATCH_GRACE_MS = 2000
local watch_cache -- this run's view of the watch: {worker, due} (told: a worker was woken in
                  -- this run to watch), false when nobody watches

function KEY.scheduled_watch() return PREFIX .. 'scheduled-watch' end

local function read_watch()
  if watch_cache == nil then
    local raw = redis.call('GET', KEY.scheduled_watch())
    local sep = raw and string.find(raw, '|', 1, true)
    watch_cache = sep and {worker = string.sub(raw, 1, sep - 1),
      due = tonumber(string.sub(raw, sep + 1))} or false
  end
  return watch_cache
end

-- A claim left wanting: true when this worker is (now) the one to claim at `due`.
local function watch_scheduled(worker_id, due, now)
  local watch = read_watch()
  if watch and watch.worker and watch.worker ~= worker_id and watch.due <= due then
    return false
  end
  redis.call('SET', KEY.scheduled_watch(), worker_id .. '|' .. due, 'PX',
    due - now + WATCH_GRACE_MS)
  watch_cache = {worker = worker_id, due = due}
  return true
end

note_scheduled = function(job, not_before)
  local watch = read_watch()
  if watch and watch.due <= not_before then return end
  if watch and watch.told then
    -- A worker was told in this run already: its claim, after the run, reads the new head.
    watch.due = not_before
    return
  end
  watch_cache = {told = true, due = not_before}
  if watch and watch.worker and
      redis.call('PUBLISH', KEY.worker_wake(watch.worker), '1') > 0 then
    return -- the watcher claims now and watches the new head
  end
  -- Nobody watches (or the watcher is gone): an idle worker claims now and becomes the watcher
  -- (one that may take the job if any is idle).
  redis.call('DEL', KEY.scheduled_watch())
  wake_a_watcher(job)
end

-- The watcher leaves (shut down, evicted, swept) or its slots filled: an idle worker is woken
-- now and watches instead (one that may take the head's job, if any), rather than the job
-- waiting for a sweep.
hand_on_watch = function(worker_id)
  local watch = read_watch()
  if not (watch and watch.worker == worker_id) then return end
  redis.call('DEL', KEY.scheduled_watch())
  watch_cache = false
  local head = redis.call('ZRANGE', K.scheduled, 0, 0, 'WITHSCORES')
  if head[1] == nil then return end
  local job = load_state(head[1], {'class', 'workflow_id'})
  if job.class then note_scheduled(job, tonumber(head[2])) end
end

-- A job submitted for later: status scheduled until promote_due reaches its time.
local function schedule_job(id, job, not_before, data)
  local key = KEY.job(id)
  redis.call('HSET', key, 'not_before', not_before)
  redis.call('ZADD', K.scheduled, not_before, id)
  note_scheduled(job, not_before)
  set_status(key, job, 'scheduled', nil)
  data.status, data.not_before = 'scheduled', not_before
  emit('job_submitted', id, data)
  return 'scheduled'
end

local FAILED_END = {failed = true, cancelled = true, timeout = true, expired = true}

-- The jobs of a workflow's step (for after_previous_step), in submit order.
local function step_jobs(wid, step)
  local ids = {}
  for _, id in ipairs(redis.call('ZRANGE', KEY.workflow_jobs(wid), 0, -1)) do
    if tonumber(redis.call('HGET', KEY.job(id), 'current_step')) == step then
      ids[#ids + 1] = id
    end
  end
  return ids
end

-- Dependencies unknown to this customer (checked before a job is stored): the first such id.
local function unknown_dependency(deps, customer)
  for _, dep in ipairs(deps) do
    local owner = redis.call('HMGET', KEY.job(dep), 'status', 'customer_id')
    if not owner[1] or (owner[2] or '') ~= (customer or '') then return dep end
  end
  return nil
end

-- A freshly stored job that waits for others: blocked until they complete, pending at once
-- when they all have, cancelled at once when one ended otherwise.
local function wait_for(id, job, deps, now, data)
  local open = 0
  for _, dep in ipairs(deps) do
    local status = redis.call('HGET', KEY.job(dep), 'status')
    if FAILED_END[status] then
      set_status(KEY.job(id), job, 'blocked', nil)
      data.status = 'blocked'
      emit('job_submitted', id, data)
      finish(id, job, 'cancelled',
        {'message', 'job ' .. dep .. ' it depends on ended ' .. status .. '; not run'}, now)
      emit('job_cancelled', id, {previous_status = 'blocked', reason = 'dependency_' .. status,
        dependency = dep, service = job.service})
      return 'cancelled'
    elseif status ~= 'completed' then
      open = open + 1
      redis.call('SADD', KEY.dependents(dep), id)
      redis.call('HSET', KEY.job(dep), 'dependents', '1')
    end
  end
  if open == 0 then return enqueue(id, job, 'job_submitted', data) end
  redis.call('HSET', KEY.job(id), 'waiting_on', open)
  set_status(KEY.job(id), job, 'blocked', nil)
  data.status = 'blocked'
  emit('job_submitted', id, data)
  return 'blocked'
end

release_dependents = function(id, status, now)
  local key = KEY.dependents(id)
  for _, dep in ipairs(redis.call('SMEMBERS', key)) do
    local job = load_state(dep)
    if job.status == 'blocked' then
      if status == 'completed' then
        if redis.call('HINCRBY', KEY.job(dep), 'waiting_on', -1) <= 0 then
          redis.call('HDEL', KEY.job(dep), 'waiting_on')
          enqueue(dep, job, 'job_status_changed', {reason = 'dependencies_completed'})
        end
      else
        finish(dep, job, 'cancelled',
          {'message', 'job ' .. id .. ' it depends on ended ' .. status .. '; not run'}, now)
        emit('job_cancelled', dep, {previous_status = 'blocked', reason = 'dependency_' .. status,
          dependency = id, service = job.service})
      end
    end
  end
  redis.call('DEL', key)
end

-- Queue control: one HGET per service per submit run, one HMGET per claim for the worker's
-- services and pool.
local draining_cache = {}
local function begin_waits_run() draining_cache, watch_cache = {}, nil end
local function service_draining(service)
  if draining_cache[service] == nil then
    draining_cache[service] =
      redis.call('HGET', KEY.queue_control(), 'service:' .. service) == 'draining'
  end
  return draining_cache[service]
end

local function paused_services(services, pool)
  local fields = {}
  for i, service in ipairs(services) do fields[i] = 'service:' .. service end
  fields[#fields + 1] = 'pool:' .. (pool or '')
  local states = redis.call('HMGET', KEY.queue_control(), unpack(fields))
  local paused = {}
  for i, service in ipairs(services) do
    if states[i] == 'paused' or states[#fields] == 'paused' then paused[service] = true end
  end
  return paused
end
