-- cancel.lua: cancel a job. Waiting jobs end at once; a running job ends as cancelled
-- now and its worker is told on its control channel (and by its next heartbeat).
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] job id, ARGV[5] reason.
-- Reply: {"cancelled", previous status} or {"unchanged", current status} for a finished job.
-- Errors: "NOT_FOUND <id>".

local id, reason = ARGV[4], ARGV[5]
local previous, job, finished = end_from_outside(id, 'cancelled', {'message', reason}, now_ms())
if previous == nil then
  if finished == nil then return redis.error_reply('NOT_FOUND ' .. id) end
  return {'unchanged', finished}
end
emit('job_cancelled', id, {previous_status = previous, worker_id = job.worker_id,
  reason = reason, service = job.service})
return {'cancelled', previous}
