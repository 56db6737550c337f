-- evict_worker.lua: an operator removes a worker (or its whole machine). The worker is
-- deregistered and the lease of every job it holds ends now, so the sweep that follows
-- requeues them at once instead of after the lease runs out.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] worker id, ARGV[5] reason.
-- Reply: the number of leases ended.
-- Errors: none (an unknown worker ends no lease).

local worker_id = ARGV[4]
local ended = 0
for _, id in ipairs(redis.call('SMEMBERS', KEY.worker_jobs(worker_id))) do
  if redis.call('ZSCORE', K.active, id) then
    redis.call('ZADD', K.active, 0, id)
    ended = ended + 1
  end
end
remove_worker(worker_id, ARGV[5])
return ended
