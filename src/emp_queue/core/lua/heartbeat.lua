-- heartbeat.lua: a worker is alive; renew the leases of the attempts it runs.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] worker id, ARGV[5] lease (ms), ARGV[6] worker status ("" = unchanged),
-- ARGV[7..] pairs of job id, attempt the worker is running.
-- Reply: {{job id, reason}, ...} for attempts the worker must abandon
--   (reason: cancelled | superseded | not_found | not_running:<status>).
-- Errors: "WORKER_NOT_REGISTERED <id>".

local worker_id = ARGV[4]
local lease_ms = tonumber(ARGV[5])
local status = ARGV[6]
local now = now_ms()
local wkey = KEY.worker(worker_id)
if redis.call('EXISTS', wkey) == 0 then
  return redis.error_reply('WORKER_NOT_REGISTERED ' .. worker_id)
end
redis.call('ZADD', K.workers, 'XX', now, worker_id)
redis.call('HSET', wkey, 'last_seen', now)
if status ~= '' then
  local previous = redis.call('HGET', wkey, 'status')
  if previous ~= status then
    redis.call('HSET', wkey, 'status', status)
    emit('worker_status_changed', nil, {worker_id = worker_id, status = status,
      previous = previous})
  end
end

local revoked = {}
for i = 7, #ARGV, 2 do
  local id, attempt = ARGV[i], tonumber(ARGV[i + 1])
  local state = redis.call('HMGET', KEY.job(id), 'status', 'attempt', 'worker_id')
  local problem = check_attempt({status = state[1], attempt = state[2], worker_id = state[3]},
    worker_id, attempt)
  if problem then
    revoked[#revoked + 1] = {id, problem}
  else
    redis.call('ZADD', K.active, 'XX', now + lease_ms, id)
  end
end
return revoked
