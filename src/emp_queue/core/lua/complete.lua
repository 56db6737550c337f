-- complete.lua: record results, exactly once per job.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] worker id, ARGV[5..] triples of job id, attempt, result JSON.
-- Reply: per job "ok", or "STALE <reason>" when that attempt no longer owns the job
--   (cancelled, superseded by a newer attempt, already finished): nothing is recorded then.
-- Errors: none.

local replies = complete_attempts(ARGV[4], ARGV, 5)
flush_usage()
flush_run_times()
return replies
