-- wake.lua: waking idle workers, as many as there is new work, instead of every idle worker
-- on every notice. Loaded after lib.lua, transitions.lua and customers.lua (core/scripts.py);
-- those call note_new_work, wake_idle_workers, forget_idle_worker and wake_a_watcher, which
-- lib.lua declares.
--
--   <prefix>idle:<fp>           zset     idle worker id -> its free slots
--   <prefix>idle-fps:<service>  set      fingerprints serving the service that have idle workers
--   <prefix>worker:<id>:wake    channel  a notice to that one worker: claim now ("1"), or the
--                                        jobs this run claimed for it (wake_worker below)
--
-- A worker is idle when its last claim left slots free: claim.lua lists it with set_idle (a
-- claim that fills its slots takes it off). A run that makes jobs claimable wakes, per class,
-- listed workers whose capabilities match, until their free slots cover the class's new jobs:
-- each is taken off its list and told on its own channel, and it claims (and is listed again
-- when it finds less than it can take) — or, when it registered its claim settings, this run
-- claims for it and the notice carries the claim (decision 0073). PUBLISH returns how many
-- listened: a worker no one listens for (dead, or its connection being re-established) is
-- dropped and the next one tried. A listed worker that cannot claim now (service down,
-- draining, claims held) leaves the lists and hands its wake-ups on (decline_wake.lua); a
-- worker removed by the sweep hands on too. Why, and what is left to the idle poll:
-- docs/decisions/0048-wake-one-idle-worker.md.

-- class|workflow -> {cid, workflow, jobs, avoid}: the jobs this run made claimable; job id ->
-- its group, for those noted one by one (a claim in the same run may take them itself).
local new_work, new_work_order, new_job_groups = {}, {}, {}

local function begin_wake_run()
  new_work, new_work_order, new_job_groups = {}, {}, {}
end

note_new_work = function(job, count, id)
  if count <= 0 then return end
  local group_id = job.class .. '|' .. (job.workflow_id or '')
  local group = new_work[group_id]
  if group == nil then
    group = {cid = job.class, workflow = job.workflow_id, jobs = 0, avoid = {}}
    new_work[group_id] = group
    new_work_order[#new_work_order + 1] = group_id
  end
  group.jobs = group.jobs + count
  if id then new_job_groups[id] = group end
  -- Not the worker the job was taken from: claim.lua leaves it the job only after the avoid
  -- grace, and that worker wakes itself for that moment (worker/runtime.py).
  if job.avoid and job.avoid ~= '' then group.avoid[job.avoid] = true end
end

-- The claim of this run took a job the run made claimable (a due job its claim promoted, a
-- dependent a completion released): nobody needs waking for that one.
local function took_new_work(id)
  local group = new_job_groups[id]
  if group then
    group.jobs = group.jobs - 1
    new_job_groups[id] = nil
  end
end

local function unlist_fingerprint(fp)
  local caps = load_caps(fp)
  for _, service in ipairs(caps and caps.services or {}) do
    redis.call('SREM', KEY.idle_fps(service), fp)
  end
end

-- The worker's last claim left `free` slots free (0: none, or it may not claim now).
local function set_idle(worker_id, fp, free)
  local key = KEY.idle(fp)
  if free > 0 then
    if redis.call('ZADD', key, free, worker_id) == 1 then
      local caps = load_caps(fp)
      for _, service in ipairs(caps and caps.services or {}) do
        redis.call('SADD', KEY.idle_fps(service), fp)
      end
    end
  elseif redis.call('ZREM', key, worker_id) == 1 and redis.call('EXISTS', key) == 0 then
    unlist_fingerprint(fp)
  end
end

-- Every waiting job of the services' best classes counts as new work again: for wake-ups
-- that a worker could not act on (it declined, or it was removed after being woken).
local WAKE_CLASSES_PER_SERVICE = 32
local function wake_for_waiting(services)
  for _, service in ipairs(services) do
    local entries = redis.call('ZRANGE', KEY.service_classes(service), 0,
      WAKE_CLASSES_PER_SERVICE - 1)
    for _, entry in ipairs(entries) do
      local cid = member_id(entry)
      note_new_work({class = cid}, redis.call('ZCARD', KEY.class_pending(cid)))
    end
  end
end

forget_idle_worker = function(worker_id, fp, woken_work)
  set_idle(worker_id, fp, 0)
  if woken_work then
    local caps = load_caps(fp)
    wake_for_waiting(caps and caps.services or {})
  end
end

-- Which fingerprint first: pinned to the job's workflow, then in the pool the job asks for
-- (or in none: a worker of another pool may have to wait for the job, pools.lua), then the
-- models best at hand (model_tier); nil when the fingerprint cannot take the class's jobs
-- (no match, pinned to another workflow, its service or pool paused).
local function wake_rank(fp, group, desc)
  local caps = load_caps(fp)
  if not caps then return nil end
  local pinned = caps.workflow_id ~= nil
  if pinned and caps.workflow_id ~= group.workflow then return nil end
  if not class_matches(group.cid, fp) then return nil end
  if paused_services({desc.service}, caps.pool)[desc.service] then return nil end
  local wanted_pool = desc.req and desc.req.pool
  local other_pool = type(wanted_pool) == 'string' and type(caps.pool) == 'string'
    and caps.pool ~= wanted_pool
  return (pinned and 0 or 6) + (other_pool and 3 or 0) + model_tier(desc, caps)
end

-- A hand-over notice larger than this names the claimed jobs instead of carrying them, and
-- the worker reads them (JobQueue.handed_over): the server disconnects a pub/sub client whose
-- unread messages pass its client-output-buffer-limit (32 MB at once, or 8 MB for a minute, by
-- default), and a batch of jobs with large payloads would pass it in one notice.
local NOTICE_MAX_BYTES = 1048576

-- A claim reply with each job as {id} only.
local function ids_only(reply)
  local brief = {reply[1], reply[2]}
  for i = 3, #reply do brief[i] = {reply[i][1]} end
  return brief
end

-- Wake one listed worker with `free` slots: a worker that takes jobs in its notices (it
-- registered its claim settings, register_worker.lua) gets the claim this run makes for it,
-- so it need not claim itself (decision 0073); any other is told "1" and claims. Returns
-- whether someone listened, and how many of the slots are now covered: all of them for a
-- plain notice, the jobs handed over for a hand-over (fewer than free: nothing more here for
-- that worker, whose claim listed it again).
local function wake_worker(worker_id, free)
  local channel = KEY.worker_wake(worker_id)
  local settings = redis.call('HGET', KEY.worker(worker_id), 'handoff')
  if not settings then return redis.call('PUBLISH', channel, '1') > 0, free end
  -- Claim only for a worker that listens: a job handed to no one would wait for its lease.
  if redis.call('PUBSUB', 'NUMSUB', channel)[2] == 0 then return false, 0 end
  local argv = {'', '', '', worker_id, free}
  for _, value in ipairs(decode_kept(settings)) do argv[#argv + 1] = value end
  local reply = claim_for(argv)
  if reply.err then return false, 0 end
  local notice = cjson.encode({free, reply})
  if #notice > NOTICE_MAX_BYTES then notice = cjson.encode({free, ids_only(reply)}) end
  redis.call('PUBLISH', channel, notice)
  return true, #reply - 2
end

-- Wake workers of one fingerprint until their free slots cover `left` jobs; what is left.
local function wake_from(fp, left, avoid)
  local key = KEY.idle(fp)
  local kept = {}
  while left > 0 do
    local top = redis.call('ZPOPMAX', key)
    if top[1] == nil then break end
    if avoid[top[1]] then
      kept[#kept + 1] = top
    else
      local free = tonumber(top[2])
      local listened, covered = wake_worker(top[1], free)
      if listened then left = left - covered end
      -- A hand-over that took fewer jobs than the worker had slots: the others of this
      -- fingerprint would find no more.
      if listened and covered < free then break end
    end
  end
  for _, entry in ipairs(kept) do redis.call('ZADD', key, entry[2], entry[1]) end
  if #kept == 0 and redis.call('EXISTS', key) == 0 then unlist_fingerprint(fp) end
  return left
end

-- Tell one idle worker of the fingerprint to claim now, without taking it off its list (its
-- claim lists it again anyway); false when none listens.
local function tell_one(fp)
  for _, worker_id in ipairs(redis.call('ZREVRANGE', KEY.idle(fp), 0, 2)) do
    if redis.call('PUBLISH', KEY.worker_wake(worker_id), '1') > 0 then return true end
  end
  return false
end

-- One idle worker is told to claim now and so to watch the scheduled set (waits.lua): one that
-- may take `job` when there is one (at the due time its claim then takes it), else any idle
-- worker (any claim promotes due jobs, and the promotion wakes who can take them).
wake_a_watcher = function(job)
  local desc = load_desc(job.class)
  if desc then
    for _, fp in ipairs(redis.call('SMEMBERS', KEY.idle_fps(desc.service))) do
      if class_matches(job.class, fp) and tell_one(fp) then return true end
    end
  end
  for _, service in ipairs(redis.call('SMEMBERS', K.served)) do
    for _, fp in ipairs(redis.call('SMEMBERS', KEY.idle_fps(service))) do
      if tell_one(fp) then return true end
    end
  end
  return false
end

local function wake_for(group)
  local desc = load_desc(group.cid)
  if not desc then return end
  local ranked = {}
  for _, fp in ipairs(redis.call('SMEMBERS', KEY.idle_fps(desc.service))) do
    local rank = wake_rank(fp, group, desc)
    if rank then ranked[#ranked + 1] = {rank, fp} end
  end
  table.sort(ranked, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  local left = group.jobs
  for _, entry in ipairs(ranked) do
    if left <= 0 then return end
    left = wake_from(entry[2], left, group.avoid)
  end
end

wake_idle_workers = function()
  for _, group_id in ipairs(new_work_order) do wake_for(new_work[group_id]) end
  new_work, new_work_order = {}, {}
end
