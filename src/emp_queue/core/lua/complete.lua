-- complete.lua: record results, exactly once per job.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] worker id, ARGV[5..] triples of job id, attempt, result JSON.
-- Reply: per job "ok", or "STALE <reason>" when that attempt no longer owns the job
--   (cancelled, superseded by a newer attempt, already finished): nothing is recorded then.
-- Errors: none.

local worker_id = ARGV[4]
local now = now_ms()
local replies = {}
for i = 5, #ARGV, 3 do
  local id, attempt, result = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local job = load_state(id, FINISH_FIELDS)
  local problem = check_attempt(job, worker_id, attempt)
  if problem then
    replies[#replies + 1] = 'STALE ' .. problem
  else
    account_attempt(job, worker_id, now, true, #result, result)
    finish(id, job, 'completed', {'result', result, 'progress', 100}, now)
    local duration_ms = job.assigned_at and now - tonumber(job.assigned_at) or nil
    note_run_time(job.class, duration_ms)
    emit('complete_job', id, {worker_id = worker_id, attempt = attempt, service = job.service,
      duration_ms = duration_ms,
      wait_ms = job.assigned_at and tonumber(job.assigned_at) - tonumber(job.created_at) or nil})
    replies[#replies + 1] = 'ok'
  end
end
flush_usage()
flush_run_times()
finish_run()
return replies
