-- claim.lua: lease the best jobs this worker can run, atomically.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] worker id, ARGV[5] how many jobs at most, ARGV[6] lease (ms),
-- ARGV[7] grace (ms) during which a retried job is left to workers other than the one it failed on.
-- Reply: {lease_until, {id, desc, flat record}, ...}; no jobs -> {lease_until}.
-- Errors: "WORKER_NOT_REGISTERED <id>".
--
-- Cost depends on the number of job classes, not jobs: waiting jobs are indexed per
-- class (jobs a worker either can or cannot run), classes per service by their best
-- job, and the match of a class against a capability set is cached.

local worker_id = ARGV[4]
local want = tonumber(ARGV[5])
local lease_ms = tonumber(ARGV[6])
local avoid_grace_ms = tonumber(ARGV[7])
local now = now_ms()
local lease_until = now + lease_ms

local worker = redis.call('HMGET', worker_key(worker_id), 'fingerprint', 'workflow_id')
local fp, pinned_workflow = worker[1], worker[2]
if not fp then return redis.error_reply('WORKER_NOT_REGISTERED ' .. worker_id) end
redis.call('ZADD', K.workers, 'XX', now, worker_id)
promote_due(now, 100)

local claimed = {lease_until}
local touched_classes = {}

local function left_for_others(job)
  return job.avoid == worker_id and job.not_before
    and now < tonumber(job.not_before) + avoid_grace_ms
end

local function take(member, job)
  local id = string.sub(member, 14)
  local key = job_key(id)
  redis.call('ZREM', class_pending_key(job.class), member)
  if job.workflow_id then redis.call('ZREM', workflow_pending_key(job.workflow_id), member) end
  redis.call('ZREM', K.deadlines, id)
  set_status(key, job, 'assigned', {'worker_id', worker_id, 'assigned_at', now})
  redis.call('ZADD', K.active, lease_until, id)
  redis.call('SADD', worker_jobs_key(worker_id), id)
  emit('job_assigned', id, {worker_id = worker_id, attempt = tonumber(job.attempt),
    service = job.service})
  touched_classes[job.class] = job.service
  claimed[#claimed + 1] = {id, redis.call('HGET', class_key(job.class), 'desc'),
    redis.call('HGETALL', key)}
end

-- Per class, how many leading jobs this claim left for other workers (they stay in front).
local skipped = {}

-- A candidate is a matching class with its best waiting job this worker may take.
local function head_of(cid)
  local skip = skipped[cid] or 0
  local head = redis.call('ZRANGE', class_pending_key(cid), skip, skip, 'WITHSCORES')
  if head[1] == nil then return nil end
  return {cid = cid, member = head[1], score = tonumber(head[2])}
end

local function better(a, b)
  if b == nil then return true end
  if a.score ~= b.score then return a.score < b.score end
  return a.member < b.member
end

-- Service class indexes read in pages, in order of their best job.
local PAGE = 32
local streams = {}
local caps = load_caps(fp)
for _, service in ipairs(caps and caps.services or {}) do
  streams[#streams + 1] = {key = service_classes_key(service), pos = 0, page = {}, i = 1}
end

local function peek(stream)
  if stream.i > #stream.page then
    if stream.done then return nil end
    stream.page = redis.call('ZRANGE', stream.key, stream.pos, stream.pos + PAGE - 1, 'WITHSCORES')
    stream.pos = stream.pos + PAGE
    stream.i = 1
    if #stream.page < PAGE * 2 then stream.done = true end
    if #stream.page == 0 then return nil end
  end
  return stream.page[stream.i], tonumber(stream.page[stream.i + 1])
end

local candidates = {}

local function best_candidate()
  local best = nil
  for _, c in pairs(candidates) do
    if better(c, best) then best = c end
  end
  return best
end

-- Bring in every class whose best job could beat the current best candidate.
local function discover(best)
  while true do
    local chosen, chosen_score = nil, nil
    for _, stream in ipairs(streams) do
      local cid, score = peek(stream)
      if cid and (chosen_score == nil or score < chosen_score) then
        chosen, chosen_score = stream, score
      end
    end
    if chosen == nil or (best and chosen_score > best.score) then return best end
    local cid = chosen.page[chosen.i]
    chosen.i = chosen.i + 2
    if candidates[cid] == nil and class_matches(cid, fp) then
      local head = head_of(cid)
      if head then
        candidates[cid] = head
        if better(head, best) then best = head end
      end
    end
  end
end

local function claim_from_classes()
  while #claimed - 1 < want do
    local best = discover(best_candidate())
    if best == nil then return end
    local job = hgetall_map(job_key(string.sub(best.member, 14)))
    if left_for_others(job) then
      skipped[best.cid] = (skipped[best.cid] or 0) + 1
    else
      take(best.member, job)
    end
    candidates[best.cid] = head_of(best.cid)
  end
end

-- A worker pinned to a workflow only runs that workflow's jobs: read its own index.
local function claim_pinned()
  local members = redis.call('ZRANGE', workflow_pending_key(pinned_workflow), 0, -1)
  for _, member in ipairs(members) do
    if #claimed - 1 >= want then return end
    local job = hgetall_map(job_key(string.sub(member, 14)))
    if job.status == 'pending' and class_matches(job.class, fp) and not left_for_others(job) then
      take(member, job)
    end
  end
end

if pinned_workflow then claim_pinned() else claim_from_classes() end

for cid, service in pairs(touched_classes) do refresh_class_head(cid, service) end
flush_notify()
return claimed
