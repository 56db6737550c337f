-- webhook_enqueue.lua: record one webhook delivery and make it due, once per delivery id.
-- Loaded on its own by emp_queue.webhooks.store (not part of the queue's function library).
-- KEYS[1] the delivery record (hash), KEYS[2] the due set (zset: id -> due ms),
--   KEYS[3] the job's delivery log (zset), KEYS[4] the subscription's log (zset; may equal
--   KEYS[3] for a job's own webhook).
-- ARGV[1] delivery id, ARGV[2] now (ms), ARGV[3] log retention (ms),
--   ARGV[4] longest subscription log, ARGV[5..] field/value pairs of the record.
-- Reply: 1 when recorded, 0 when a delivery with this id exists already (the event was
--   read twice: the record, its attempts and its webhook-id stay as they are).
-- Errors: none.

if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local id, now, retention_ms, log_max = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], now, id)
redis.call('ZADD', KEYS[3], now, id)
redis.call('PEXPIRE', KEYS[3], retention_ms)
if KEYS[4] ~= KEYS[3] then
  redis.call('ZADD', KEYS[4], now, id)
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(log_max + 1))
end
return 1
