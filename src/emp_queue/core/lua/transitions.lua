-- transitions.lua: a job's moves between the waiting indexes, running and its end (enqueue,
-- finish, requeue, promote_due), workability, workers leaving, and the start and end of
-- every run (begin_run, finish_run). Loaded after lib.lua and matching.lua
-- (core/scripts.py).

-- Waiting jobs ------------------------------------------------------------------
-- Ties on score go by the order sequence: the job's own, or for a later workflow step the
-- workflow's first job's (stored as oseq), so steps keep the workflow's place exactly.
local function queue_member(job, id)
  return string.format('%012d', tonumber(job.oseq or job.seq)) .. '|' .. id
end

-- classes:<service> holds one entry per workable class with waiting jobs: the member
-- "<order seq of its best job>|<cid>" scored by that job's score, so the index orders
-- classes exactly as their best jobs (score, then sequence: no ties to scan through).
-- The class hash remembers its entry ('head') to replace it.
-- Waiting index members and class index entries are "<order seq, 12 digits>|<id>" (a job id,
-- a class id); ORDER_DIGITS, index_member and member_id in core/keys.py are the Python twins.
local function member_seq(member) return string.sub(member, 1, 12) end
local function member_id(member) return string.sub(member, 14) end
local function class_entry(head_member, cid) return member_seq(head_member) .. '|' .. cid end

local function set_class_entry(cid, service, score, entry)
  local ckey = KEY.class(cid)
  local old = redis.call('HGET', ckey, 'head')
  if old == entry then return end
  local index = KEY.service_classes(service)
  if old then redis.call('ZREM', index, old) end
  if entry then
    redis.call('ZADD', index, score, entry)
    redis.call('HSET', ckey, 'head', entry)
  else
    redis.call('HDEL', ckey, 'head')
  end
end

local function refresh_class_head(cid, service)
  local head = redis.call('ZRANGE', KEY.class_pending(cid), 0, 0, 'WITHSCORES')
  if head[1] == nil then
    set_class_entry(cid, service, nil, nil)
    redis.call('SREM', K.unworkable, cid)
    -- Kept as long as the finished jobs of the class that still name it.
    redis.call('PEXPIRE', KEY.class(cid), RETENTION_MS + 60000, 'NX')
    redis.call('PEXPIRE', KEY.class(cid), RETENTION_MS + 60000, 'GT')
    return
  end
  if redis.call('SISMEMBER', K.unworkable, cid) == 0 then
    set_class_entry(cid, service, head[2], class_entry(head[1], cid))
  end
end

-- Classes that gained waiting jobs in this run; their index entries are brought up to date
-- once, by refresh_dirty_classes() (finish_run() calls it; claim.lua before reading).
local dirty_classes = {}
local workable_in_run = {}

local function refresh_dirty_classes()
  for cid, service in pairs(dirty_classes) do refresh_class_head(cid, service) end
  dirty_classes = {}
end

-- Defined in listing.lua: the listing indexes follow every status change (note_listing) and
-- are written once per run (flush_listing, from finish_run).
local note_listing, flush_listing

local function set_status(key, job, new_status, extra)
  local fields = {'status', new_status}
  if extra then
    for i = 1, #extra do fields[#fields + 1] = extra[i] end
  end
  redis.call('HSET', key, unpack(fields))
  count_status(job.service, job.status, new_status)
  count_customer(job, job.status, new_status)
  note_listing(key, job, job.status, new_status)
  job.status = new_status
end

-- Put a job (whose record exists) into its class's waiting index.
local function index_waiting(id, job)
  local cid = job.class
  local member = queue_member(job, id)
  local score = job.score
  redis.call('ZADD', KEY.class_pending(cid), score, member)
  if job.workflow_id then
    redis.call('ZADD', KEY.workflow_pending(job.workflow_id), score, member)
  end
  local workable = workable_in_run[cid]
  if workable == nil then
    redis.call('PERSIST', KEY.class(cid))
    workable = redis.call('SISMEMBER', K.unworkable, cid) == 0
    if workable and not redis.call('HGET', KEY.class(cid), 'head') then
      -- A class seen for the first time (or again after it emptied): decide once.
      workable = any_live_worker_matches(cid)
      if not workable then redis.call('SADD', K.unworkable, cid) end
    end
    workable_in_run[cid] = workable
  end
  if workable then dirty_classes[cid] = job.service end
  return workable
end

local function unindex_waiting(id, job)
  local member = queue_member(job, id)
  redis.call('ZREM', KEY.class_pending(job.class), member)
  if job.workflow_id then redis.call('ZREM', KEY.workflow_pending(job.workflow_id), member) end
  redis.call('ZREM', K.scheduled, id)
  redis.call('ZREM', K.deadlines, id)
  refresh_class_head(job.class, job.service)
end

-- Make a waiting job claimable now: pending, or unworkable if no live worker fits.
local function enqueue(id, job, event_type, data)
  local key = KEY.job(id)
  local workable = index_waiting(id, job)
  local status = workable and 'pending' or 'unworkable'
  if workable then note_new_work(job, 1, id) end
  set_status(key, job, status, nil)
  data.status = status
  emit(event_type, id, data)
  return status
end

-- Terminal states -----------------------------------------------------------------
local extended_classes = {}
-- Defined in waits.lua: starts or cancels the jobs waiting for one that just finished.
local release_dependents

local function finish(id, job, status, extra, now)
  local key = KEY.job(id)
  local fields = {'finished_at', now}
  if extra then
    for i = 1, #extra do fields[#fields + 1] = extra[i] end
  end
  set_status(key, job, status, fields)
  batch('ZREM', K.active, id)
  if job.worker_id then batch('SREM', KEY.worker_jobs(job.worker_id), id) end
  batch('ZADD', K.terminal, now, id)
  if not extended_classes[job.class] then
    extended_classes[job.class] = true
    redis.call('PEXPIRE', KEY.class(job.class), RETENTION_MS + 60000, 'GT')
  end
  if job.workflow_id then
    local wkey = KEY.workflow(job.workflow_id)
    -- A workflow whose next step never comes expires a retention after its last job ended;
    -- submitting a step makes it permanent again (submit.lua).
    redis.call('PEXPIRE', wkey, RETENTION_MS)
    redis.call('PEXPIRE', KEY.workflow_jobs(job.workflow_id), RETENTION_MS)
    if status == 'completed' then
      local step, steps = tonumber(job.current_step), tonumber(job.total_steps)
      if step and steps and step >= steps then
        redis.call('HSET', wkey, 'status', 'completed', 'finished_at', now)
        emit('workflow_completed', id, {workflow_id = job.workflow_id})
      end
    elseif status ~= 'cancelled' then
      redis.call('HSET', wkey, 'status', 'failed', 'finished_at', now)
      emit('workflow_failed', id, {workflow_id = job.workflow_id, status = status})
    end
  end
  if job.dependents then release_dependents(id, status, now) end
  -- The caller that submitted it waits for this: the finished record goes along, so it need
  -- not read it back (one HGETALL and one PUBLISH, for such jobs only).
  if job.notify then
    redis.call('PUBLISH', KEY.waiter(job.notify),
      id .. ' ' .. status .. ' ' .. cjson.encode(redis.call('HGETALL', key)))
  end
end

-- Ends a job from outside its worker (cancel.lua, deliver.lua): a waiting job leaves its
-- queue, a running one ends now and its worker is told to stop (its late answers are then
-- refused as stale). Returns the previous status and the job; for a job that had already
-- finished, nil, nil and its status; for an unknown job, nothing.
local function end_from_outside(id, status, extra, now)
  local job = load_state(id)
  if job.status == nil then return nil, nil, nil end
  local previous = job.status
  if previous == 'pending' or previous == 'unworkable' or previous == 'scheduled'
      or previous == 'blocked' then
    unindex_waiting(id, job)
  elseif previous ~= 'assigned' and previous ~= 'in_progress' then
    return nil, nil, previous
  end
  finish(id, job, status, extra, now)
  if job.worker_id then
    redis.call('PUBLISH', KEY.worker_control(job.worker_id),
      cjson.encode({action = 'cancel', job_id = id, attempt = tonumber(job.attempt)}))
  end
  return previous, job
end

-- Worker fencing ------------------------------------------------------------------
-- A worker-side change is accepted only from the worker holding the current attempt.
local function check_attempt(job, worker_id, attempt)
  if job.status == nil then return 'not_found' end
  if job.status == 'cancelled' then return 'cancelled' end
  if job.status ~= 'assigned' and job.status ~= 'in_progress' then
    if tonumber(job.attempt) ~= attempt then return 'superseded' end
    return 'not_running:' .. job.status
  end
  if tonumber(job.attempt) ~= attempt or job.worker_id ~= worker_id then return 'superseded' end
  return nil
end

-- Requeue after a failure, a lost lease or a release ------------------------------
local function requeue(id, job, now, delay_ms, reason, extra)
  local key = KEY.job(id)
  local attempt = tonumber(job.attempt) + 1
  redis.call('ZREM', K.active, id)
  if job.worker_id then redis.call('SREM', KEY.worker_jobs(job.worker_id), id) end
  local fields = {'attempt', attempt}
  if extra then
    for i = 1, #extra do fields[#fields + 1] = extra[i] end
  end
  redis.call('HSET', key, unpack(fields))
  redis.call('HDEL', key, 'worker_id', 'assigned_at', 'started_at', 'progress', 'message')
  job.attempt = attempt
  for i = 1, #fields - 1, 2 do
    if fields[i] == 'avoid' then job.avoid = fields[i + 1] end
  end
  local previous_worker = job.worker_id
  job.worker_id = nil
  if delay_ms > 0 then
    local not_before = now + delay_ms
    redis.call('HSET', key, 'not_before', not_before)
    redis.call('ZADD', K.scheduled, not_before, id)
    note_scheduled(job, not_before)
    set_status(key, job, 'pending', nil)
    emit('job_status_changed', id, {status = 'pending', attempt = attempt, reason = reason,
      not_before = not_before, previous_worker = previous_worker})
    return 'pending'
  end
  return enqueue(id, job, 'job_status_changed',
    {attempt = attempt, reason = reason, previous_worker = previous_worker})
end

-- Scheduled retries whose backoff elapsed go back to their original position; jobs
-- submitted for later (status scheduled, see waits.lua) become claimable.
local function promote_due(now, limit)
  local due = redis.call('ZRANGEBYSCORE', K.scheduled, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    redis.call('ZREM', K.scheduled, id)
    local job = load_state(id)
    if job.status == 'pending' then
      enqueue(id, job, 'job_status_changed', {reason = 'backoff_elapsed'})
    elseif job.status == 'scheduled' then
      enqueue(id, job, 'job_status_changed', {reason = 'run_at_reached'})
    end
  end
  return #due
end

-- Workability -------------------------------------------------------------------
local function each_waiting(cid, fn)
  local members = redis.call('ZRANGE', KEY.class_pending(cid), 0, -1)
  for _, member in ipairs(members) do
    local id = member_id(member)
    local key = KEY.job(id)
    local job = load_state(id)
    fn(id, key, job)
  end
end

local function make_workable(cid)
  redis.call('SREM', K.unworkable, cid)
  workable_in_run[cid] = nil
  each_waiting(cid, function(id, key, job)
    if job.status == 'unworkable' then
      note_new_work(job, 1, id)
      set_status(key, job, 'pending', nil)
      emit('job_status_changed', id, {status = 'pending', reason = 'worker_available'})
    end
  end)
  refresh_class_head(cid, redis.call('HGET', KEY.class(cid), 'service'))
end

local function make_unworkable(cid, service)
  redis.call('SADD', K.unworkable, cid)
  workable_in_run[cid] = nil
  set_class_entry(cid, service, nil, nil)
  each_waiting(cid, function(id, key, job)
    if job.status == 'pending' then
      set_status(key, job, 'unworkable', nil)
      emit('job_status_changed', id, {status = 'unworkable', reason = 'no_live_worker'})
    end
  end)
end

local function acquire_fingerprint(fp, caps_json)
  redis.call('SET', KEY.caps(fp), caps_json)
  if redis.call('HINCRBY', K.fingerprints, fp, 1) == 1 then
    for _, cid in ipairs(redis.call('SMEMBERS', K.unworkable)) do
      if class_matches(cid, fp) then make_workable(cid) end
    end
  end
end

local function release_fingerprint(fp)
  if redis.call('HINCRBY', K.fingerprints, fp, -1) > 0 then return end
  redis.call('HDEL', K.fingerprints, fp)
  local caps = load_caps(fp)
  if caps then
    for _, service in ipairs(caps.services) do
      for _, entry in ipairs(redis.call('ZRANGE', KEY.service_classes(service), 0, -1)) do
        local cid = member_id(entry)
        if class_matches(cid, fp) and not any_live_worker_matches(cid) then
          make_unworkable(cid, service)
        end
      end
    end
  end
  redis.call('DEL', KEY.caps(fp), KEY.match(fp))
  caps_cache[fp] = nil
end

local function remove_worker(worker_id, reason)
  local wkey = KEY.worker(worker_id)
  local fp = redis.call('HGET', wkey, 'fingerprint')
  if not fp then return 0 end
  local machine_id = redis.call('HGET', wkey, 'machine_id')
  note_ready(worker_id, load_caps(fp), false, 0)
  note_loaded(worker_id, load_caps(fp), false, 0)
  redis.call('ZREM', K.workers, worker_id)
  redis.call('DEL', wkey)
  -- It may have been woken for work it will now never claim: hand that on.
  forget_idle_worker(worker_id, fp, true)
  hand_on_watch(worker_id)
  release_fingerprint(fp)
  emit('worker_disconnected', nil, {worker_id = worker_id, machine_id = machine_id,
    reason = reason})
  return 1
end

-- Every operation ends with this (the loader, core/scripts.py, runs it after the body,
-- whatever way the body returned): batched writes, counts, then one notice per run (listeners
-- read the stream from their last id), and idle workers woken for new work.
local function finish_run()
  refresh_dirty_classes()
  wake_capped()
  wake_idle_workers()
  flush_batched()
  flush_listing()
  flush_counts(stat_counts, K.stats)
  flush_counts(total_counts, K.totals)
  flush_counts(customer_counts, PREFIX .. 'customers:counts')
  stat_counts, total_counts, customer_counts = new_counts(), new_counts(), new_counts()
  if last_event_id then redis.call('PUBLISH', K.notify, last_event_id) end
  last_event_id = nil
end

-- Every operation starts with this: bind this call's keys and arguments, forget the last run.
local function begin_run(keys, args)
  -- The keys of one namespace never change: the table is built again only for another one.
  if K == nil or K.seq ~= keys[1] then K = {
    seq = keys[1], events = keys[2], stats = keys[3], services = keys[4],
    unworkable = keys[5], active = keys[6], scheduled = keys[7], deadlines = keys[8],
    terminal = keys[9], dead = keys[10], workers = keys[11], fingerprints = keys[12],
    notify = keys[13], jobs = keys[14], served = keys[15], totals = keys[16],
  } end
  PREFIX, EVENTS_MAXLEN, RETENTION_MS = args[1], tonumber(args[2]), tonumber(args[3])
  NOW_MS = nil
  batched, batched_order = {}, {}
  last_event_id = nil
  stat_counts, total_counts, customer_counts = new_counts(), new_counts(), new_counts()
  caps_cache, desc_cache, desc_text_cache = {}, {}, {}
  dirty_classes, workable_in_run, extended_classes = {}, {}, {}
end
