-- decline_wake.lua: a worker that cannot claim now (its service is down, it is draining, its
-- claims are held) leaves the idle lists and hands the wake-ups it may have been sent to other
-- idle workers (wake.lua). Its next claim lists it again.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] worker id.
-- Reply: 1 when the worker is registered, 0 otherwise.
-- Errors: none.

local fp = redis.call('HGET', KEY.worker(ARGV[4]), 'fingerprint')
if fp then forget_idle_worker(ARGV[4], fp, true) end
return fp and 1 or 0
