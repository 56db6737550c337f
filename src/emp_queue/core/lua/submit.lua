-- submit.lua: add jobs, idempotently by id.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4]: JSON array of jobs, each
--   {id, class, desc, service, priority, workflow_datetime?, queue_ttl_ms?, run_at?, delay_ms?,
--    depends_on?, after_step?, fields: {name: string}}
--   where fields holds the record fields computed in Python (payload, ctx, ...); run_at (ms)
--   or delay_ms make it scheduled, depends_on (ids) or after_step (the workflow's step whose
--   jobs it waits for) blocked (waits.lua).
-- Reply: per job, {id, 1, status, seq, created_at, not_before if scheduled} when created, {id, 0} when it existed,
--   {id, 2, cap} when refused: its customer already has cap waiting jobs (customers.lua),
--   {id, 3, dependency} when refused: depends_on names a job this customer does not have,
--   {id, 4, service} when refused: an operator is draining its service (waits.lua).
-- Errors: none beyond Redis's own.

local jobs = cjson.decode(ARGV[4])
local now = now_ms()
local replies = {}
local PRIORITY_SCALE = 4398046511104 -- 2^42 ms: priority outranks any time up to year 2109
local arrivals = {} -- class id -> jobs created in this run (arrival rates, core/demand.py)

for _, spec in ipairs(jobs) do
  local key = KEY.job(spec.id)
  local existed = redis.call('EXISTS', key) == 1
  local full = not existed and pending_cap_reached(spec.fields.customer_id or '') or nil
  local unknown = not existed and not full and spec.depends_on
    and unknown_dependency(spec.depends_on, spec.fields.customer_id) or nil
  local draining = not existed and service_draining(spec.service)
  if existed then
    replies[#replies + 1] = {spec.id, 0}
  elseif full then
    replies[#replies + 1] = {spec.id, 2, full}
  elseif unknown then
    replies[#replies + 1] = {spec.id, 3, unknown}
  elseif draining then
    replies[#replies + 1] = {spec.id, 4, spec.service}
  else
    local not_before = spec.run_at or (spec.delay_ms and now + spec.delay_ms) or nil
    if not_before and not_before <= now then not_before = nil end
    local seq = redis.call('INCR', K.seq)
    local order_ms, order_seq = now, seq
    local wid = spec.fields.workflow_id
    if wid then
      local wkey = KEY.workflow(wid)
      if redis.call('HSETNX', wkey, 'created_at', now) == 1 then
        redis.call('HSET', wkey, 'status', 'running', 'first_job', spec.id, 'seq', seq)
        if spec.fields.total_steps then
          redis.call('HSET', wkey, 'total_steps', spec.fields.total_steps)
        end
        emit('workflow_submitted', spec.id, {workflow_id = wid})
      end
      local position = redis.call('HMGET', wkey, 'created_at', 'seq')
      order_ms, order_seq = tonumber(position[1]), tonumber(position[2] or seq)
    end
    if not_before and not wid then order_ms = not_before end
    if spec.workflow_datetime then order_ms = spec.workflow_datetime end
    local score = string.format('%.0f', (100 - spec.priority) * PRIORITY_SCALE + order_ms)
    local fields = {'class', spec.class, 'service', spec.service, 'seq', seq, 'score', score,
      'attempt', 1, 'created_at', now}
    if order_seq ~= seq then
      fields[#fields + 1] = 'oseq'
      fields[#fields + 1] = order_seq
    end
    for name, value in pairs(spec.fields) do
      fields[#fields + 1] = name
      fields[#fields + 1] = value
    end
    redis.call('HSET', key, unpack(fields))
    batch('ZADD', K.jobs, seq, spec.id)
    if wid then
      redis.call('ZADD', KEY.workflow_jobs(wid), seq, spec.id)
      redis.call('PERSIST', KEY.workflow(wid))
      redis.call('PERSIST', KEY.workflow_jobs(wid))
    end
    redis.call('SADD', K.services, spec.service)
    if redis.call('HSETNX', KEY.class(spec.class), 'desc', spec.desc) == 1 then
      redis.call('HSET', KEY.class(spec.class), 'service', spec.service)
    end
    if spec.queue_ttl_ms then
      redis.call('ZADD', K.deadlines, (not_before or now) + spec.queue_ttl_ms, spec.id)
    end
    local job = {class = spec.class, service = spec.service, seq = seq, score = score,
      workflow_id = wid, oseq = order_seq ~= seq and order_seq or nil,
      customer_id = spec.fields.customer_id, notify = spec.fields.notify}
    local data = {service = spec.service, priority = spec.priority,
      customer_id = spec.fields.customer_id, workflow_id = wid}
    local deps = spec.depends_on
    if spec.after_step and wid then deps = step_jobs(wid, spec.after_step) end
    local status
    if deps then
      status = wait_for(spec.id, job, deps, now, data)
    elseif not_before then
      status = schedule_job(spec.id, job, not_before, data)
    else
      status = enqueue(spec.id, job, 'job_submitted', data)
    end
    replies[#replies + 1] = {spec.id, 1, status, seq, now}
    arrivals[spec.class] = (arrivals[spec.class] or 0) + 1
    if status == 'scheduled' then replies[#replies][6] = not_before end
  end
end
-- Arrivals per class and minute, kept an hour: one write per class per run, not per job.
if next(arrivals) then
  local key = KEY.arrivals(math.floor(now / 60000))
  for cid, count in pairs(arrivals) do redis.call('HINCRBY', key, cid, count) end
  redis.call('PEXPIRE', key, 3720000)
end
return replies
