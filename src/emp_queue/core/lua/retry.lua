-- retry.lua: put a finished, unsuccessful job (failed, dead-lettered, timeout, expired,
-- cancelled) back in the queue, with a fresh failure budget and a new attempt.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] job id, ARGV[5] reason.
-- Reply: the new status ("pending" or "unworkable").
-- Errors: "NOT_FOUND <id>", "NOT_RETRYABLE <status>".

local id, reason = ARGV[4], ARGV[5]
local key = KEY.job(id)
local job = load_state(id)
if job.status == nil then return redis.error_reply('NOT_FOUND ' .. id) end
local s = job.status
if s ~= 'failed' and s ~= 'timeout' and s ~= 'expired' and s ~= 'cancelled' then
  return redis.error_reply('NOT_RETRYABLE ' .. s)
end
redis.call('ZREM', K.terminal, id)
redis.call('ZREM', K.dead, id)
local attempt = tonumber(job.attempt) + 1
redis.call('HDEL', key, 'dead', 'finished_at', 'error', 'result', 'worker_id', 'assigned_at',
  'started_at', 'progress', 'message', 'not_before', 'avoid')
redis.call('HSET', key, 'attempt', attempt, 'failures', 0, 'lost_leases', 0)
job.attempt = attempt
if job.workflow_id then
  redis.call('HSET', KEY.workflow(job.workflow_id), 'status', 'running')
  redis.call('PERSIST', KEY.workflow(job.workflow_id))
  redis.call('PERSIST', KEY.workflow_jobs(job.workflow_id))
end
local status = enqueue(id, job, 'job_status_changed', {reason = reason, attempt = attempt})
return status
