-- fail.lua: a worker reports a failure; the failure class decides what happens.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] worker id, ARGV[5] job id, ARGV[6] attempt, ARGV[7] failure class,
-- ARGV[8] error JSON, ARGV[9] backoff base (ms), ARGV[10] backoff cap (ms),
-- ARGV[11] jitter in [0, 1) drawn by the caller,
-- ARGV[12] retry window (ms, 0 = none): a job still failing this long after its first
--   retryable failure is dead-lettered whatever attempts it has left.
-- Reply: the job's new status ("failed", "timeout", or "pending" for a scheduled retry).
-- Errors: "STALE <reason>" when the attempt is not the job's current one.
--
-- job_fault fails at once; timeout ends as "timeout"; worker/service/broker faults
-- retry after exponential backoff with jitter until max_attempts (or the retry window), then
-- dead-letter.

local worker_id, id, attempt = ARGV[4], ARGV[5], tonumber(ARGV[6])
local failure_class, err = ARGV[7], ARGV[8]
local base_ms, cap_ms, jitter = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local window_ms = tonumber(ARGV[12] or '0')
local key = KEY.job(id)
local job = load_state(id)
local problem = check_attempt(job, worker_id, attempt)
if problem then return redis.error_reply('STALE ' .. problem) end
local now = now_ms()
account_attempt(job, worker_id, now, false, 0)
flush_usage()

if failure_class == 'job_fault' or failure_class == 'timeout' then
  local status = failure_class == 'timeout' and 'timeout' or 'failed'
  finish(id, job, status, {'error', err}, now)
  emit('job_failed', id, {worker_id = worker_id, attempt = attempt, status = status,
    failure_class = failure_class, error = cjson.decode(err), dead_letter = false,
    service = job.service})
  return status
end

local failures = tonumber(job.failures or '0') + 1
local first_failed = tonumber(redis.call('HGET', key, 'first_failed_at') or now)
local out_of_time = window_ms > 0 and now - first_failed >= window_ms
if failures >= tonumber(job.max_attempts) or out_of_time then
  finish(id, job, 'failed', {'error', err, 'failures', failures, 'dead', 1}, now)
  redis.call('ZADD', K.dead, now, id)
  emit('job_failed', id, {worker_id = worker_id, attempt = attempt, status = 'failed',
    failure_class = failure_class, error = cjson.decode(err), dead_letter = true,
    service = job.service, retry_window_exhausted = out_of_time})
  return 'failed'
end

local delay = math.min(cap_ms, base_ms * 2 ^ (failures - 1)) * (0.5 + 0.5 * jitter)
local status = requeue(id, job, now, math.floor(delay), 'retry',
  {'failures', failures, 'error', err, 'avoid', worker_id, 'first_failed_at', first_failed})
return status
