-- progress.lua: a worker reports progress (the first report marks the job in_progress).
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] worker id, ARGV[5] job id, ARGV[6] attempt, ARGV[7] lease (ms),
-- ARGV[8] progress 0-100 ("" = none), ARGV[9] message ("" = none).
-- Reply: "ok".
-- Errors: "STALE <reason>" when the attempt is not the job's current one.

local worker_id, id, attempt = ARGV[4], ARGV[5], tonumber(ARGV[6])
local lease_ms = tonumber(ARGV[7])
local progress, message = ARGV[8], ARGV[9]
local key = KEY.job(id)
local job = load_state(id, FINISH_FIELDS)
local problem = check_attempt(job, worker_id, attempt)
if problem then return redis.error_reply('STALE ' .. problem) end
local now = now_ms()
if job.status == 'assigned' then
  set_status(key, job, 'in_progress', {'started_at', now})
  emit('job_status_changed', id, {status = 'in_progress', worker_id = worker_id,
    attempt = attempt})
end
local data = {worker_id = worker_id, attempt = attempt}
if progress ~= '' then
  redis.call('HSET', key, 'progress', progress)
  data.progress = tonumber(progress)
end
if message ~= '' then
  redis.call('HSET', key, 'message', message)
  data.message = message
end
redis.call('ZADD', K.active, 'XX', now + lease_ms, id)
emit('update_job_progress', id, data)
return 'ok'
