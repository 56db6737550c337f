-- claim.lua: lease the best jobs this worker can run, atomically.
-- core/scripts.py runs this file once, when the library loads, as a function: it returns
-- run(ARGV), the library function run_claim that the claim operation and complete_claim.lua
-- call.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] worker id, ARGV[5] how many jobs at most (<= 1000), ARGV[6] lease (ms),
-- ARGV[7] grace (ms) during which a retried job is left to workers other than the one it failed on.
-- ARGV[8] fair-share half-life of recent claims (ms), ARGV[9] fair-share window (ms): how much
-- later than the first job in plain order a job may be submitted and still overtake it.
-- ARGV[10] affinity window (ms): as ARGV[9], for a job whose models the worker holds better
-- (0: affinity off). The window looked at is the larger of the two.
-- ARGV[11] affinity hold (ms): a job whose models this worker lacks in VRAM, while another
-- free worker has them all loaded, is left to that worker until this long after its order time
-- (0: no hold). See deferred_until in matching.lua.
-- ARGV[12] pool rules, JSON (pools.lua; "" = pools off).
-- ARGV[13] busy hold (ms): as ARGV[11], while only busy workers have the models loaded.
-- Reply: {lease_until, due_in_ms, {id, class descriptor, flat record}, ...}; due_in_ms: how
--   soon a job this claim saw but left (deferred_until) becomes claimable by this worker, or,
--   when it took fewer jobs than asked, the first scheduled job becomes due; 0 when none:
--   nothing publishes that moment, so the worker wakes itself.
-- Errors: "WORKER_NOT_REGISTERED <id>".
--
-- Cost depends on the number of job classes, not jobs: waiting jobs are indexed per
-- class (jobs a worker either can or cannot run), classes per service by their best
-- job, and the match of a class against a capability set is cached. Within a class,
-- jobs are read a page at a time and removed from the index once, at the end.
--
-- Which job next (docs/matching.md, "Whose job next"; Python twin: core/fair_share.py):
-- 1. eligible: the class matches the worker, its customer is under its running caps, and the
--    job is not deferred for this worker (deferred_until in matching.lua: the affinity hold, pool
--    fallback; a class's jobs go in plain order, so its next job decides for the whole class);
-- 2. F = the first eligible job in plain order (priority, then submit order);
-- 3. the window: eligible jobs of F's priority whose order time is at most the window after
--    F's (at most WINDOW_CLASSES classes of it, found among WINDOW_ENTRIES index entries);
-- 4. of the window, the job whose customer has the lowest share goes; ties: the job whose
--    models the worker holds best (loaded, installed, fetchable: model_tier), then plain order.


-- Per-claim state: set by run() at the start of each claim. The helpers below are created once,
-- when the library loads (core/scripts.py runs this file as a function that returns run):
-- creating them on every claim, two dozen closures, cost about a tenth of a claim.
local worker_id, want, lease_ms, avoid_grace_ms, half_life_ms, window_ms, affinity_ms
local hold_ms, rules, busy_hold_ms, now, lease_until, PAGE
local fp, pinned_workflow, caps, worker_pool, defer_ctx
local claimed, taken, services
local streams, paused, known_matches, candidates, window_classes, window_entries
-- A worker that just failed many jobs of a class leaves at most this many to others per claim.
local MAX_SKIPS_PER_CLASS = 16
-- Fair share looks at most at this many classes (and index entries) beyond those plain order
-- needs, per claim.
local WINDOW_CLASSES, WINDOW_ENTRIES = 32, 128
local PRIORITY_SCALE = 4398046511104 -- 2^42, as in submit.lua: score = band * 2^42 + order ms
local FIRST = 2 -- claimed[FIRST + 1 ..] are the jobs taken
-- Classes read from a service's class index per page (a class's own jobs are read PAGE at a
-- time: a few more than the claim wants).
local CLASSES_PER_PAGE = 32

-- `count` members of a sorted set from `offset` on, as ZRANGE WITHSCORES replies them (member,
-- score, member, ...), and whether that was the end of it (fewer than asked).
local function read_page(key, offset, count)
  local page = redis.call('ZRANGE', key, offset, offset + count - 1, 'WITHSCORES')
  return page, #page < count * 2
end

local function left_for_others(job)
  return job.avoid == worker_id and job.not_before
    and now < tonumber(job.not_before) + avoid_grace_ms
end

local function record_of(job)
  local flat = {}
  for name, value in pairs(job) do
    flat[#flat + 1] = name
    flat[#flat + 1] = value
  end
  return flat
end

local function take(member, job)
  local id = member_id(member)
  local cid = job.class
  taken[cid] = taken[cid] or {}
  table.insert(taken[cid], member)
  services[cid] = job.service
  if job.workflow_id then redis.call('ZREM', KEY.workflow_pending(job.workflow_id), member) end
  if job.queue_ttl_s then redis.call('ZREM', K.deadlines, id) end
  set_status(KEY.job(id), job, 'assigned', {'worker_id', worker_id, 'assigned_at', now})
  took_new_work(id)
  job.worker_id, job.assigned_at = worker_id, tostring(now)
  batch('ZADD', K.active, lease_until, id)
  batch('SADD', KEY.worker_jobs(worker_id), id)
  emit('job_assigned', id, {worker_id = worker_id, attempt = tonumber(job.attempt),
    service = job.service})
  note_customer_claim(job.customer_id or '', now, half_life_ms)
  claimed[#claimed + 1] = {id, load_desc_text(cid), record_of(job)}
end

-- A stale index entry (its job gone or no longer waiting) is dropped, never claimed.
local function drop(member, cid)
  taken[cid] = taken[cid] or {}
  table.insert(taken[cid], member)
end

-- A candidate is a matching class read page by page; .member/.score is its next job.
local function fill(c)
  if c.i > #c.page then
    if c.exhausted then return false end
    c.page, c.exhausted = read_page(KEY.class_pending(c.cid), c.offset, PAGE)
    c.offset = c.offset + PAGE
    c.i = 1
    if #c.page == 0 then return false end
  end
  c.member, c.score = c.page[c.i], tonumber(c.page[c.i + 1])
  return true
end

local function advance(c)
  c.i = c.i + 2
  return fill(c)
end

-- The order sequence of a candidate's next job; a class brought in by the fair-share window
-- is read only when needed (c.member nil), its index entry tells the sequence meanwhile.
local function seq_of(c) return c.member and member_seq(c.member) or c.seq end

local function better(a, b)
  if b == nil then return true end
  if a.score ~= b.score then return a.score < b.score end
  local sa, sb = seq_of(a), seq_of(b)
  if sa ~= sb then return sa < sb end
  if not a.member then fill(a) end
  if not b.member then fill(b) end
  return (a.member or '') < (b.member or '')
end

local function peek(stream)
  if stream.i > #stream.page then
    if stream.done then return nil end
    stream.page, stream.done = read_page(stream.key, stream.pos, CLASSES_PER_PAGE)
    stream.pos = stream.pos + CLASSES_PER_PAGE
    stream.i = 1
    if #stream.page == 0 then return nil end
    -- The cached match results of the page's classes, in one call rather than one per class.
    local cids = {}
    for i = 1, #stream.page, 2 do cids[#cids + 1] = member_id(stream.page[i]) end
    local cached = redis.call('HMGET', KEY.match(fp), unpack(cids))
    for i, cid in ipairs(cids) do
      if cached[i] then known_matches[cid] = cached[i] == '1' end
    end
  end
  return stream.page[stream.i], tonumber(stream.page[stream.i + 1])
end

-- Does a class whose best job is (score, entry) come after the candidate c?
local function after(score, entry, c)
  if score ~= c.score then return score > c.score end
  return member_seq(entry) > seq_of(c)
end


-- The earliest time a deferred candidate becomes claimable by this worker (claimed[2]).
local function note_due(due)
  if due > now and due ~= math.huge and (claimed[2] == 0 or due < claimed[2]) then
    claimed[2] = due
  end
end

local function eligible(c)
  if running_cap_reached(c.customer, c.service) ~= nil then
    note_capped(c.customer, c.cid)
    return false
  end
  local due = deferred_until(c, defer_ctx, now)
  note_due(due)
  return due <= now
end

local function best_candidate()
  local best = nil
  for _, c in pairs(candidates) do
    if eligible(c) and better(c, best) then best = c end
  end
  return best
end

local function next_stream_entry()
  local chosen, chosen_score, chosen_entry = nil, nil, nil
  for _, stream in ipairs(streams) do
    local entry, score = peek(stream)
    if entry and (chosen_score == nil or score < chosen_score
        or (score == chosen_score and entry < chosen_entry)) then
      chosen, chosen_score, chosen_entry = stream, score, entry
    end
  end
  return chosen, chosen_score, chosen_entry
end

-- Take the next class of the merged streams in as a candidate if it matches the worker.
-- A lazy candidate's jobs are read when it is chosen or tied (its score is its index entry's).
local function bring_in(stream, entry, score, lazy)
  stream.i = stream.i + 2
  local cid = member_id(entry)
  if candidates[cid] ~= nil then return nil end
  local matches = known_matches[cid]
  if matches == nil then matches = class_matches(cid, fp) end
  if not matches then return nil end
  local customer, service = class_owner(cid)
  local c = {cid = cid, page = {}, i = 1, offset = 0, skips = 0, customer = customer,
    service = service, score = score, seq = member_seq(entry)}
  c.tier = (affinity_ms > 0 or hold_ms > 0 or busy_hold_ms > 0)
    and model_tier(load_desc(cid), caps) or 0
  if worker_pool then c.pool_wait_ms = pool_wait_ms(cid, worker_pool, rules) end
  -- A class deferred for this worker at its best job is not read until it is due.
  -- (eligible() notes when it is due, unless its customer is capped: then it is not.)
  if deferred_until(c, defer_ctx, now) > now then lazy = true end
  if not lazy and not fill(c) then return nil end
  candidates[cid] = c
  return c
end

-- Bring in every class whose best job could beat the current best candidate.
local function discover(best)
  while true do
    local chosen, chosen_score, chosen_entry = next_stream_entry()
    if chosen == nil or (best and after(chosen_score, chosen_entry, best)) then return best end
    local c = bring_in(chosen, chosen_entry, chosen_score, false)
    if c and eligible(c) and better(c, best) then best = c end
  end
end

-- Bring in the classes whose best job is at most limit (the fair-share window): at most
-- WINDOW_CLASSES matching classes, looking at most at WINDOW_ENTRIES index entries per claim.
local function discover_window(limit)
  while window_classes > 0 and window_entries > 0 do
    local chosen, chosen_score, chosen_entry = next_stream_entry()
    if chosen == nil or chosen_score > limit then return end
    window_entries = window_entries - 1
    if bring_in(chosen, chosen_entry, chosen_score, true) then
      window_classes = window_classes - 1
    end
  end
end

-- The order within the window: lower share first, then better affinity, then plain order.
-- A job beyond the fair-share window cannot overtake by share (its share counts as
-- infinite), nor beyond the affinity window by affinity (its tier counts as the worst).
local function preferred(a, a_key, b, b_key)
  if a_key[1] ~= b_key[1] then return a_key[1] < b_key[1] end
  if a_key[2] ~= b_key[2] then return a_key[2] < b_key[2] end
  return better(a, b)
end

-- Nothing can overtake the first job when no other class is in play: no other candidate, and
-- every service index read to its end (one class of work: the shares need not be read).
local function alone(first)
  for _, c in pairs(candidates) do
    if c ~= first then return false end
  end
  for _, stream in ipairs(streams) do
    if not stream.done or stream.i <= #stream.page then return false end
  end
  return true
end

local function choose_from_window()
  local first = discover(best_candidate())
  if first == nil or alone(first) then return first end
  local fair = window_ms > 0
  local first_share = fair and customer_share(first.customer, now, half_life_ms) or 0
  -- No share is below 0 and no tier below 0: nothing can overtake such a first job.
  if first_share <= 0 and (affinity_ms <= 0 or first.tier == 0) then return first end
  local band_end = (math.floor(first.score / PRIORITY_SCALE) + 1) * PRIORITY_SCALE - 1
  local fair_limit = math.min(first.score + (fair and window_ms or 0), band_end)
  local affinity_limit = math.min(first.score + affinity_ms, band_end)
  local limit = math.max(fair_limit, affinity_limit)
  discover_window(limit)
  if fair then
    local owners_in_window = {}
    for _, c in pairs(candidates) do
      if c.score <= fair_limit then owners_in_window[#owners_in_window + 1] = c.customer end
    end
    prefetch_customers(owners_in_window, now, half_life_ms)
  end
  local function key_of(c)
    local share = 0
    if fair then
      share = c.score <= fair_limit and customer_share(c.customer, now, half_life_ms)
        or math.huge
    end
    local tier = (affinity_ms > 0 and c.score <= affinity_limit) and c.tier or 2
    return {share, tier}
  end
  local chosen, chosen_key = first, key_of(first)
  for _, c in pairs(candidates) do
    if c ~= first and c.score <= limit and eligible(c) then
      local key = key_of(c)
      if preferred(c, key, chosen, chosen_key) then chosen, chosen_key = c, key end
    end
  end
  return chosen
end

local function choose()
  while true do
    local chosen = choose_from_window()
    if chosen == nil or chosen.member or fill(chosen) then return chosen end
    candidates[chosen.cid] = nil -- its index entry was stale: the class has no waiting job
  end
end

local function claim_from_classes()
  while #claimed - FIRST < want do
    local best = choose()
    if best == nil then return end
    local job = hgetall_map(KEY.job(member_id(best.member)))
    if job.status ~= 'pending' then
      drop(best.member, best.cid)
    elseif left_for_others(job) then
      best.skips = best.skips + 1
    else
      take(best.member, job)
    end
    if best.skips >= MAX_SKIPS_PER_CLASS or not advance(best) then candidates[best.cid] = nil end
  end
end

-- A worker pinned to a workflow only runs that workflow's jobs: read its own index.
local function claim_pinned()
  local members = redis.call('ZRANGE', KEY.workflow_pending(pinned_workflow), 0, -1)
  for _, member in ipairs(members) do
    if #claimed - FIRST >= want then return end
    local job = hgetall_map(KEY.job(member_id(member)))
    if job.status == 'pending' and not paused[job.service] and class_matches(job.class, fp)
        and not left_for_others(job) and running_cap_reached(job.customer_id or '', job.service) == nil then
      take(member, job)
    end
  end
end

-- One claim (ARGV as the header says); its reply.
local function run(ARGV)
  worker_id = ARGV[4]
  want = tonumber(ARGV[5])
  lease_ms = tonumber(ARGV[6])
  avoid_grace_ms = tonumber(ARGV[7])
  half_life_ms = tonumber(ARGV[8])
  window_ms = tonumber(ARGV[9])
  affinity_ms = tonumber(ARGV[10])
  hold_ms = tonumber(ARGV[11] or '0')
  rules = pool_rules(ARGV[12])
  busy_hold_ms = tonumber(ARGV[13] or '0')
  now = now_ms()
  lease_until = now + lease_ms
  PAGE = math.max(4, math.min(want + 2, 256))

  local worker = redis.call('HMGET', KEY.worker(worker_id), 'fingerprint', 'workflow_id',
    'capacity')
  fp, pinned_workflow = worker[1], worker[2]
  if not fp then return redis.error_reply('WORKER_NOT_REGISTERED ' .. worker_id) end
  -- A worker that takes jobs in its wake notices never holds more than its capacity: its own
  -- claim may be on its way while a run hands it jobs (wake.lua, decision 0073).
  if worker[3] then
    flush_batched() -- the jobs this run finished leave the worker's set (batched, lib.lua)
    local room = tonumber(worker[3]) - redis.call('SCARD', KEY.worker_jobs(worker_id))
    want = math.max(0, math.min(want, room))
  end
  caps = load_caps(fp)
  worker_pool = rules and caps and type(caps.pool) == 'string' and caps.pool or nil
  redis.call('ZADD', K.workers, 'XX', now, worker_id)
  promote_due(now, 100)
  refresh_dirty_classes()

  defer_ctx = {worker_id = worker_id, hold_ms = hold_ms, busy_hold_ms = busy_hold_ms,
    ready = {}, loaded = {}, pool = worker_pool}
  -- The affinity hold leaves a job only to an owner whose pool may take it now (pools.lua).
  if rules then
    defer_ctx.owner_may_take = function(job, other_fp)
      local other = load_caps(other_fp)
      local other_pool = other and type(other.pool) == 'string' and other.pool or nil
      local wait = pool_wait_ms(job.cid, other_pool, rules)
      return wait == nil or job.score % PRIORITY_SCALE + wait <= now
    end
  end

  claimed = {lease_until, 0}
  taken = {}      -- class id -> members taken from its index (removed at the end)
  services = {}   -- class id -> service, for the classes this claim touched

  -- Service class indexes read in pages, in order of their best job; paused services and a
  -- paused pool (queue control, waits.lua) offer nothing.
  streams = {}
  paused = paused_services(caps and caps.services or {}, caps and caps.pool)
  for _, service in ipairs(caps and caps.services or {}) do
    if not paused[service] then
      streams[#streams + 1] = {key = KEY.service_classes(service), pos = 0, page = {}, i = 1}
    end
  end
  known_matches = {} -- class id -> match result read with a page of the index
  candidates = {}
  window_classes, window_entries = WINDOW_CLASSES, WINDOW_ENTRIES

  if pinned_workflow then claim_pinned() else claim_from_classes() end
  -- A worker left wanting more jobs is free: the affinity hold leaves it its loaded models' jobs.
  if hold_ms > 0 then note_ready(worker_id, caps, #claimed - FIRST < want, now) end

  for cid, members in pairs(taken) do
    redis.call('ZREM', KEY.class_pending(cid), unpack(members))
    if services[cid] then
      refresh_class_head(cid, services[cid])
    else
      services[cid] = redis.call('HGET', KEY.class(cid), 'service')
      if services[cid] then refresh_class_head(cid, services[cid]) end
    end
  end
  set_idle(worker_id, fp, want - (#claimed - FIRST)) -- free slots left: woken for new work (wake.lua)
  if #claimed - FIRST < want then
    -- Nothing publishes when a scheduled job (a backoff, run_at) becomes due: one idle worker
    -- watches the head and claims then (its claim promotes the job and wakes those that can
    -- take it; waits.lua), without asking for the moment apart.
    local head = redis.call('ZRANGE', K.scheduled, 0, 0, 'WITHSCORES')
    if head[2] then
      local due = math.max(tonumber(head[2]), now + 1)
      if watch_scheduled(worker_id, due, now) then note_due(due) end
    end
  elseif #claimed > FIRST then
    -- A watcher whose slots this claim filled (with the job it watched, or other work) may be
    -- busy long past the due moment: another idle worker watches from now on.
    hand_on_watch(worker_id)
  end
  if claimed[2] > 0 then claimed[2] = claimed[2] - now end
  return claimed
end

claim_for = run
return run
