-- busy.lua: what a busy worker's calls share; loaded last (core/scripts.py), after every
-- helper it uses. complete.lua and complete_claim.lua record results with complete_attempts;
-- claim.lua's body is the library function run_claim(ARGV) (core/scripts.py wraps it), which
-- claim.lua and complete_claim.lua call.

-- Record the results in args[first..] (triples of job id, attempt, result JSON), exactly once
-- per job: per job "ok", or "STALE <reason>" when that attempt no longer owns the job
-- (cancelled, superseded by a newer attempt, already finished): nothing is recorded then.
-- The caller flushes (flush_usage, flush_run_times; finish_run follows every operation).
local function complete_attempts(worker_id, args, first)
  local now = now_ms()
  local replies = {}
  for i = first, #args, 3 do
    local id, attempt, result = args[i], tonumber(args[i + 1]), args[i + 2]
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
  return replies
end
