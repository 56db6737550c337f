-- release.lua: a worker hands an unfinished job straight back to the queue.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] worker id, ARGV[5] job id, ARGV[6] attempt, ARGV[7] reason,
-- ARGV[8] (optional) outage budget: how many hand-backs for a service outage a job gets free.
-- Reply: the job's new status ("pending" or "unworkable"); it keeps its position and its
--   failure count (a release is not a failure), and the attempt token moves on.
--   With a budget, "budget_spent" when the job used it up: nothing changes (the caller
--   reports a failure instead, so a job that kills its service cannot loop forever).
-- Errors: "STALE <reason>" when the attempt is not the job's current one.

local worker_id, id, attempt, reason = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local budget = tonumber(ARGV[8] or '')
local job = load_state(id)
local problem = check_attempt(job, worker_id, attempt)
if problem then return redis.error_reply('STALE ' .. problem) end
local extra = nil
if budget then
  local used = tonumber(redis.call('HGET', KEY.job(id), 'outage_releases') or '0')
  if used >= budget then return 'budget_spent' end
  extra = {'outage_releases', used + 1}
end
local status = requeue(id, job, now_ms(), 0, reason, extra)
return status
