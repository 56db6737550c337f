-- cancel.lua: cancel a job. Waiting jobs end at once; a running job ends as cancelled
-- now and its worker is told on its control channel (and by its next heartbeat).
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] job id, ARGV[5] reason.
-- Reply: {"cancelled", previous status} or {"unchanged", current status} for a finished job.
-- Errors: "NOT_FOUND <id>".

local id, reason = ARGV[4], ARGV[5]
local key = job_key(id)
local job = load_state(id)
if job.status == nil then return redis.error_reply('NOT_FOUND ' .. id) end
local previous = job.status
local now = now_ms()
if previous == 'pending' or previous == 'unworkable' then
  unindex_waiting(id, job)
elseif previous ~= 'assigned' and previous ~= 'in_progress' then
  return {'unchanged', previous}
end
local worker_id = job.worker_id
finish(id, job, 'cancelled', {'message', reason}, now)
if worker_id then
  redis.call('PUBLISH', worker_control_key(worker_id),
    cjson.encode({action = 'cancel', job_id = id, attempt = tonumber(job.attempt)}))
end
emit('job_cancelled', id, {previous_status = previous, worker_id = worker_id, reason = reason,
  service = job.service})
finish_run()
return {'cancelled', previous}
