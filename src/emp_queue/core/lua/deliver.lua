-- deliver.lua: a result delivered from outside the worker fleet (the original protocol's
-- delegated_job_result, sent by an admin). The job completes now, exactly once: a waiting
-- job leaves its queue; a running job's worker is told to stop (as on cancel) and its own
-- late result is then refused as stale.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] job id, ARGV[5] result JSON, ARGV[6] who delivered it.
-- Reply: {"completed", previous status} or {"unchanged", current status} for a finished job.
-- Errors: "NOT_FOUND <id>".

local id, result, delegate = ARGV[4], ARGV[5], ARGV[6]
local now = now_ms()
local fields = {'result', result, 'progress', 100, 'message', 'result delivered by ' .. delegate}
local previous, job, finished = end_from_outside(id, 'completed', fields, now)
if previous == nil then
  if finished == nil then return redis.error_reply('NOT_FOUND ' .. id) end
  return {'unchanged', finished}
end
emit('complete_job', id, {delegate = delegate, previous_status = previous,
  worker_id = job.worker_id, service = job.service,
  wait_ms = now - tonumber(job.created_at)})
return {'completed', previous}
