-- webhook_claim.lua: take the deliveries that are due, hiding them for a lease.
-- Loaded on its own by emp_queue.webhooks.store (not part of the queue's function library).
-- KEYS[1] the due set (zset: delivery id -> due ms).
-- ARGV[1] now (ms), ARGV[2] lease (ms), ARGV[3] most deliveries to take.
-- Reply: the delivery ids taken. Each is rescored to now + lease: the dispatcher that took
--   it rescores it again (retry) or removes it (done); if that dispatcher dies, the delivery
--   is due again when the lease ends, for any dispatcher.
-- Errors: none.

local now, lease_ms, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], now + lease_ms, id) end
return ids
