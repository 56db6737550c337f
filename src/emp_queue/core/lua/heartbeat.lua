-- heartbeat.lua: a worker is alive; renew the leases of the attempts it runs.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] worker id, ARGV[5] lease (ms), ARGV[6] worker status ("" = unchanged),
-- ARGV[7..] pairs of job id, attempt the worker is running.
-- Reply: {revoked, unheard}: revoked = {{job id, reason}, ...} for attempts the worker must
--   abandon (reason: cancelled | superseded | not_found | not_running:<status>); unheard =
--   {{job id, attempt}, ...}: jobs assigned to the worker that it did not list — claimed for
--   it in a wake notice it never read, or by a claim whose reply never reached it (a dropped
--   connection, a failover); it takes them up (decision 0073) unless it already knew of them.
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

local revoked, listed = {}, {}
for i = 7, #ARGV, 2 do
  local id, attempt = ARGV[i], tonumber(ARGV[i + 1])
  listed[id] = true
  local state = redis.call('HMGET', KEY.job(id), 'status', 'attempt', 'worker_id')
  local problem = check_attempt({status = state[1], attempt = state[2], worker_id = state[3]},
    worker_id, attempt)
  if problem then
    revoked[#revoked + 1] = {id, problem}
  else
    redis.call('ZADD', K.active, 'XX', now + lease_ms, id)
  end
end

local unheard = {}
for _, id in ipairs(redis.call('SMEMBERS', KEY.worker_jobs(worker_id))) do
  if not listed[id] then
    local state = redis.call('HMGET', KEY.job(id), 'status', 'worker_id', 'attempt')
    if state[1] == 'assigned' and state[2] == worker_id then
      unheard[#unheard + 1] = {id, tonumber(state[3])}
    end
  end
end
return {revoked, unheard}
