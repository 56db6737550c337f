-- complete_claim.lua: complete.lua, then claim.lua, in one call: a busy worker whose jobs ended
-- records them and takes the next in one round trip and one script run (one set of counter,
-- listing and notice writes for both; decision 0070).
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] worker id, ARGV[5..13] as claim.lua's ARGV[5..13], ARGV[14..] triples of job id,
-- attempt, result JSON (as complete.lua's ARGV[5..]).
-- Reply: {completions, claim}: completions as complete.lua's reply; claim as claim.lua's reply,
--   or 0 when the worker is not registered (the results are recorded all the same: a worker
--   swept while its job ran may still complete it; nothing is claimed).
-- Errors: none.

local replies = complete_attempts(ARGV[4], ARGV, 14)
flush_usage()
flush_run_times()
local claimed = run_claim(ARGV)
if type(claimed) == 'table' and claimed.err then
  return {replies, 0}
end
return {replies, claimed}
