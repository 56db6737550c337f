-- release.lua: a draining worker hands an unfinished job straight back to the queue.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] worker id, ARGV[5] job id, ARGV[6] attempt, ARGV[7] reason.
-- Reply: the job's new status ("pending" or "unworkable"); it keeps its position and its
--   failure count (a release is not a failure), and the attempt token moves on.
-- Errors: "STALE <reason>" when the attempt is not the job's current one.

local worker_id, id, attempt, reason = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local job = load_state(id)
local problem = check_attempt(job, worker_id, attempt)
if problem then return redis.error_reply('STALE ' .. problem) end
local status = requeue(id, job, now_ms(), 0, reason, nil)
finish_run()
return status
