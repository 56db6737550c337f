-- delete.lua: delete one finished job now, as retention would later: its record, its entries
-- in the listing, finished, dead-letter and workflow indexes, and its count. Its events stay
-- in the stream until the stream is trimmed (EMP_EVENTS_MAXLEN); `job_deleted` follows them.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] job id.
-- Reply: {service, status, result JSON or ""}.
-- Errors: "NOT_FOUND <id>", "NOT_FINISHED <status>".

local FINISHED = {completed = true, failed = true, cancelled = true, timeout = true,
  expired = true}
local id = ARGV[4]
local key = KEY.job(id)
local state = redis.call('HMGET', key, 'service', 'status', 'result', 'workflow_id', 'customer_id')
local service, status = state[1], state[2]
if not service then return redis.error_reply('NOT_FOUND ' .. id) end
if not FINISHED[status] then return redis.error_reply('NOT_FINISHED ' .. status) end
count_status(service, status, nil)
note_listing(key, {service = service, customer_id = state[5]}, status, nil)
redis.call('UNLINK', key)
redis.call('ZREM', K.terminal, id)
redis.call('ZREM', K.dead, id)
if state[4] then redis.call('ZREM', KEY.workflow_jobs(state[4]), id) end
batch('ZREM', K.jobs, id)
emit('job_deleted', id, {service = service, status = status})
return {service, status, state[3] or ''}
