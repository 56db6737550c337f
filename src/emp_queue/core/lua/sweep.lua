-- sweep.lua: the housekeeping every process runs; idempotent and safe to run concurrently
-- (each run is atomic, and a second run finds nothing left to do).
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] most items per category per run, ARGV[5] worker silence timeout (ms),
-- ARGV[6] lost-lease budget: the lease a job loses that brings its count to this ends it.
-- Reply: {promoted, requeued, dead_lettered, expired, workers_removed, purged}.
-- Errors: none.
--
-- 1. retries whose backoff elapsed return to their position;
-- 2. leases that expired (the worker vanished) requeue with attempt + 1; a lost lease is what
--    happened to the job, not what it did: it counts in lost_leases against its own budget
--    (ARGV[6]), never in failures against max_attempts;
-- 3. waiting jobs past their queue TTL end as "expired";
-- 4. workers silent past the timeout are removed (their leases then expire, see 2);
-- 5. terminal jobs past retention are deleted with their index entries and counts.

local limit = tonumber(ARGV[4])
local worker_timeout_ms = tonumber(ARGV[5])
local max_lost_leases = tonumber(ARGV[6])
local now = now_ms()

local promoted = promote_due(now, limit)

local requeued, dead_lettered = 0, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.active, '-inf', now, 'LIMIT', 0, limit)) do
  local key = KEY.job(id)
  local job = load_state(id)
  if job.status == 'assigned' or job.status == 'in_progress' then
    local lost = tonumber(job.lost_leases or '0') + 1
    local message = 'lease expired: worker ' .. tostring(job.worker_id) .. ' stopped renewing it'
    if lost >= max_lost_leases then
      message = message .. '; the job lost its lease ' .. lost .. ' times, its budget ' ..
        '(EMP_MAX_LOST_LEASES=' .. max_lost_leases .. '): look for what kills its workers'
    end
    local err = cjson.encode({failure_class = 'worker_fault', message = message})
    if lost >= max_lost_leases then
      finish(id, job, 'failed', {'error', err, 'lost_leases', lost, 'dead', 1}, now)
      redis.call('ZADD', K.dead, now, id)
      emit('job_failed', id, {status = 'failed', failure_class = 'worker_fault',
        error = cjson.decode(err), dead_letter = true, service = job.service})
      dead_lettered = dead_lettered + 1
    else
      requeue(id, job, now, 0, 'lease_expired',
        {'lost_leases', lost, 'error', err, 'avoid', job.worker_id or '', 'not_before', now})
      requeued = requeued + 1
    end
  else
    redis.call('ZREM', K.active, id)
  end
end

local expired = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.deadlines, '-inf', now, 'LIMIT', 0, limit)) do
  local job = load_state(id)
  if job.status == 'pending' or job.status == 'unworkable' or job.status == 'blocked'
      or job.status == 'scheduled' then
    unindex_waiting(id, job)
    finish(id, job, 'expired', nil, now)
    emit('job_status_changed', id, {status = 'expired', reason = 'queue_ttl',
      service = job.service})
    expired = expired + 1
  else
    redis.call('ZREM', K.deadlines, id)
  end
end

local removed = 0
local silent = redis.call('ZRANGEBYSCORE', K.workers, '-inf', now - worker_timeout_ms,
  'LIMIT', 0, limit)
for _, worker_id in ipairs(silent) do
  removed = removed + remove_worker(worker_id, 'heartbeat_timeout')
end

local purged = 0
local old = redis.call('ZRANGEBYSCORE', K.terminal, '-inf', now - RETENTION_MS, 'LIMIT', 0, limit)
for _, id in ipairs(old) do
  local key = KEY.job(id)
  local state = redis.call('HMGET', key, 'service', 'status', 'customer_id', 'seq')
  if state[1] then
    count_status(state[1], state[2], nil)
    note_listing(key, {service = state[1], customer_id = state[3], seq = state[4]}, state[2], nil)
  end
  redis.call('UNLINK', key)
  redis.call('ZREM', K.terminal, id)
  redis.call('ZREM', K.dead, id)
  batch('ZREM', K.jobs, id)
  purged = purged + 1
end
return {promoted, requeued, dead_lettered, expired, removed, purged}
