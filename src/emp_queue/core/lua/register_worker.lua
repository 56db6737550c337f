-- register_worker.lua: a worker joins (or updates its capabilities).
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] worker id, ARGV[5] capability fingerprint, ARGV[6] capabilities JSON,
-- ARGV[7] machine id ("" = none), ARGV[8] workflow pin ("" = none), ARGV[9] status,
-- ARGV[10] capacity, ARGV[11] claim settings (claim.lua's ARGV[6..13] as a JSON array): a worker
-- that gives them takes jobs in its wake notices (wake.lua, decision 0073) and never holds more
-- than its capacity; "" and "" for one that claims only itself.
-- ARGV[12..] the node class names of caps.nodes (ComfyUI), stored once per node fingerprint.
-- Reply: 1 when the worker is new, 0 when it was already registered.
-- Errors: none.
--
-- A capability set no other live worker has may make unworkable jobs workable again.

local worker_id, fp, caps_json = ARGV[4], ARGV[5], ARGV[6]
local machine_id, pin, status = ARGV[7], ARGV[8], ARGV[9]
local now = now_ms()
local wkey = KEY.worker(worker_id)
local previous_fp = redis.call('HGET', wkey, 'fingerprint')
local caps = cjson.decode(caps_json)

-- The node set first: matching the new fingerprint (below) tests membership in it.
if caps.nodes and #ARGV >= 12 then
  local set = KEY.nodes(caps.nodes.fingerprint)
  if redis.call('EXISTS', set) == 0 then
    for first = 12, #ARGV, 500 do
      redis.call('SADD', set, unpack(ARGV, first, math.min(first + 499, #ARGV)))
    end
  end
end

if previous_fp ~= fp then
  -- Ready again (for the affinity hold) with its new models at its next claim.
  if previous_fp then
    note_ready(worker_id, load_caps(previous_fp), false, 0)
    note_loaded(worker_id, load_caps(previous_fp), false, 0)
  end
  note_loaded(worker_id, caps, true, now)
  acquire_fingerprint(fp, caps_json)
  if previous_fp then
    forget_idle_worker(worker_id, previous_fp, false) -- its next claim lists it under fp
    release_fingerprint(previous_fp)
  end
end
redis.call('HSET', wkey, 'fingerprint', fp, 'last_seen', now, 'status', status)
redis.call('HSETNX', wkey, 'registered_at', now)
if machine_id ~= '' then redis.call('HSET', wkey, 'machine_id', machine_id) end
if pin ~= '' then redis.call('HSET', wkey, 'workflow_id', pin) else redis.call('HDEL', wkey, 'workflow_id') end
if ARGV[10] ~= '' then
  redis.call('HSET', wkey, 'capacity', ARGV[10], 'handoff', ARGV[11])
else
  redis.call('HDEL', wkey, 'capacity', 'handoff')
end
redis.call('ZADD', K.workers, now, worker_id)

for _, service in ipairs(caps.services) do redis.call('SADD', K.served, service) end
if previous_fp then
  emit('worker_status_changed', nil, {worker_id = worker_id, status = status,
    capabilities_changed = previous_fp ~= fp})
else
  emit('worker_connected', nil, {worker_id = worker_id, machine_id = machine_id,
    services = caps.services, status = status})
end
return previous_fp and 0 or 1
