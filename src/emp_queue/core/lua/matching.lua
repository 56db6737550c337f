-- matching.lua: which workers' capabilities satisfy which classes of jobs (the Lua twin of
-- emp_queue/core/matching.py), the decoded capabilities and class descriptors they are read
-- from, and when a job is deferred for a worker (the affinity hold, pools). Loaded right
-- after lib.lua (core/scripts.py).

-- Matching (the Lua twin of emp_queue/core/matching.py) -------------------------
local function is_array(t) return type(t) == 'table' and t[1] ~= nil end

local function same_scalar(a, b) return type(a) == type(b) and a == b end

local function contains(list, value)
  for _, item in ipairs(list) do
    if same_scalar(item, value) then return true end
  end
  return false
end

local satisfies
satisfies = function(required, actual)
  if type(required) == 'table' then
    if is_array(required) then
      if type(actual) == 'table' then
        if not is_array(actual) then return false end
        for _, item in ipairs(required) do
          if not contains(actual, item) then return false end
        end
        return true
      end
      return contains(required, actual)
    end
    if type(actual) ~= 'table' or is_array(actual) then return false end
    for key, value in pairs(required) do
      if not satisfies(value, actual[key]) then return false end
    end
    return true
  end
  if type(required) == 'number' then
    return type(actual) == 'number' and actual >= required
  end
  if is_array(actual) then return contains(actual, required) end
  return same_scalar(required, actual)
end

local hits
hits = function(forbidden, actual)
  if actual == nil then return false end
  if type(forbidden) == 'table' then
    if is_array(forbidden) then
      if type(actual) == 'table' then
        if not is_array(actual) then return false end
        for _, item in ipairs(forbidden) do
          if contains(actual, item) then return true end
        end
        return false
      end
      return contains(forbidden, actual)
    end
    if type(actual) ~= 'table' or is_array(actual) then return false end
    for key, value in pairs(forbidden) do
      if hits(value, actual[key]) then return true end
    end
    return false
  end
  return satisfies(forbidden, actual)
end

local function list_has(list, value)
  return type(list) == 'table' and contains(list, value)
end

local function customer_ok(desc, caps)
  local access = caps.customer_access or {}
  local customer = desc.customer
  if customer ~= nil and list_has(access.denied_customers, customer) then return false end
  if access.allowed_customers ~= nil and not list_has(access.allowed_customers, customer) then
    return false
  end
  if access.isolation == 'strict' and access.allowed_customers == nil then return false end
  if desc.req.customer_isolation == 'strict' and access.isolation ~= 'strict' then
    return false
  end
  return true
end

-- A worker's models of one service, as lists (missing levels are empty).
local function service_models(desc, caps)
  local per_service = caps.models and caps.models[desc.service]
  if type(per_service) ~= 'table' then return {}, {}, {} end
  local function list(value) return type(value) == 'table' and value or {} end
  return list(per_service.loaded), list(per_service.installed), list(per_service.fetchable)
end

-- A model is workable when the worker has it installed or can fetch it.
local function models_ok(desc, caps)
  local required = desc.req.models
  if required == nil then return true end
  local _, installed, fetchable = service_models(desc, caps)
  for _, model in ipairs(required) do
    if not contains(installed, model) and not contains(fetchable, model) then return false end
  end
  return true
end

-- A worker that publishes no node classes is not judged on them (it cannot tell).
local function nodes_ok(desc, caps)
  local required = desc.req.nodes
  if required == nil or caps.nodes == nil then return true end
  local set = KEY.nodes(caps.nodes.fingerprint)
  for _, node in ipairs(required) do
    if redis.call('SISMEMBER', set, node) == 0 then return false end
  end
  return true
end

-- Affinity (the Lua twin of model_tier in core/matching.py): 0 when every model the
-- class needs is loaded on the worker (or it needs none), 1 when each is at least
-- installed, 2 when some must be fetched first.
local function model_tier(desc, caps)
  local required = desc and desc.req and desc.req.models
  if required == nil then return 0 end
  local loaded, installed = service_models(desc, caps)
  local tier = 0
  for _, model in ipairs(required) do
    if not contains(loaded, model) then
      if not contains(installed, model) then return 2 end
      tier = 1
    end
  end
  return tier
end

-- Workflow pins are not part of a class: pinned workers claim from the
-- workflow's own index instead (see claim.lua).
local function class_matches_caps(desc, caps)
  local req = desc.req
  if not list_has(caps.services, desc.service) then return false end
  if req.hardware ~= nil and not satisfies(req.hardware, caps.hardware or {}) then
    return false
  end
  if not models_ok(desc, caps) then return false end
  if not nodes_ok(desc, caps) then return false end
  if not customer_ok(desc, caps) then return false end
  -- One pool name is the job's pool, applied by the claim with fallback (pools.lua); a list
  -- of pools is a hard requirement.
  if is_array(req.pool) and not satisfies(req.pool, caps.pool) then return false end
  if req.positive_requirements ~= nil
    and not satisfies(req.positive_requirements, caps.labels or {}) then
    return false
  end
  if req.negative_requirements ~= nil and hits(req.negative_requirements, caps.labels or {}) then
    return false
  end
  return true
end

local caps_cache = {}
local desc_cache = {}

-- Capabilities and pool rules decoded, kept between runs by their JSON text (a changed text is
-- decoded afresh), at most 256 texts: a fleet has few capability sets. The decoded tables are
-- shared: only read, never changed (pools.lua adds the scheme it derives from the rules, which
-- the text decides). Class descriptors are not kept: thousands of them (the affinity
-- benchmark's 1,000 classes) made the library's heap large enough that the claim p99 doubled.
local decoded_json, decoded_json_size = {}, 0

local function decode_kept(raw)
  local doc = decoded_json[raw]
  if doc == nil then
    if decoded_json_size >= 256 then decoded_json, decoded_json_size = {}, 0 end
    doc = cjson.decode(raw)
    decoded_json[raw], decoded_json_size = doc, decoded_json_size + 1
  end
  return doc
end

local function load_caps(fp)
  if caps_cache[fp] == nil then
    local raw = redis.call('GET', KEY.caps(fp))
    caps_cache[fp] = raw and decode_kept(raw) or false
  end
  return caps_cache[fp]
end

local desc_text_cache = {} -- class id -> its descriptor's JSON text, or false (this run)

-- A class's descriptor as stored (JSON), read once per run.
local function load_desc_text(cid)
  if desc_text_cache[cid] == nil then
    desc_text_cache[cid] = redis.call('HGET', KEY.class(cid), 'desc') or false
  end
  return desc_text_cache[cid]
end

local function load_desc(cid)
  if desc_cache[cid] == nil then
    local raw = load_desc_text(cid)
    desc_cache[cid] = raw and cjson.decode(raw) or false
  end
  return desc_cache[cid]
end

-- Cached: classes and capability sets are both content-addressed, so a stored
-- answer never goes stale.
local function class_matches(cid, fp)
  local cached = redis.call('HGET', KEY.match(fp), cid)
  if cached then return cached == '1' end
  local caps = load_caps(fp)
  local desc = load_desc(cid)
  local ok = caps and desc and class_matches_caps(desc, caps) or false
  redis.call('HSET', KEY.match(fp), cid, ok and '1' or '0')
  return ok
end

-- Affinity hold --------------------------------------------------------------------
-- A worker is *ready* with a model when its last claim left it wanting more jobs (it is free)
-- and it has the model loaded. claim.lua keeps ready:<service>|<model> up to date at the end
-- of each claim; a worker that leaves or changes its capabilities is removed from them.
-- loaded:<service>|<model> lists every live worker with the model loaded, free or busy
-- (register_worker.lua adds, a change of capabilities or a departure removes).
local function each_loaded(caps, fn)
  if type(caps) ~= 'table' or type(caps.models) ~= 'table' then return end
  for service, levels in pairs(caps.models) do
    if type(levels) == 'table' and type(levels.loaded) == 'table' then
      for _, model in ipairs(levels.loaded) do fn(service, model) end
    end
  end
end

-- Add the worker to (present) or remove it from index_key(service, model) of each model
-- it has loaded.
local function note_models(index_key, worker_id, caps, present, now)
  each_loaded(caps, function(service, model)
    if present then
      redis.call('ZADD', index_key(service, model), now, worker_id)
    else
      redis.call('ZREM', index_key(service, model), worker_id)
    end
  end)
end

local function note_ready(worker_id, caps, ready, now)
  note_models(KEY.ready, worker_id, caps, ready, now)
end

local function note_loaded(worker_id, caps, present, now)
  note_models(KEY.loaded, worker_id, caps, present, now)
end

-- Is every model of the class loaded on a worker of the index (KEY.ready: free workers,
-- KEY.loaded: all) other than worker_id that can run it? At most 8 workers of the first
-- model are looked at (cost per class, not per worker).
local function loaded_elsewhere(cid, worker_id, index_key, may_take)
  local desc = load_desc(cid)
  local required = desc and desc.req and desc.req.models
  if required == nil or #required == 0 then return false end
  local candidates = redis.call('ZRANGE', index_key(desc.service, required[1]), 0, 7)
  for _, other in ipairs(candidates) do
    if other ~= worker_id then
      local all = true
      for i = 2, #required do
        if not redis.call('ZSCORE', index_key(desc.service, required[i]), other) then
          all = false
          break
        end
      end
      if all then
        local other_fp = redis.call('HGET', KEY.worker(other), 'fingerprint')
        if other_fp and class_matches(cid, other_fp) and (may_take == nil or may_take(cid, other_fp))
        then
          return true
        end
      end
    end
  end
  return false
end

-- Deferral (Python twin: core/deferral.py): 0, or the time (ms) from which the claiming
-- worker may take the job -- before that, the job is left to other workers.
--   job: {cid, score (band * 2^42 + order ms), tier (model_tier for the claiming worker),
--         pool_wait_ms (pools.lua: how long after its order time this worker's pool waits)}
--   ctx: {worker_id, hold_ms, busy_hold_ms, ready = {}, loaded = {} (per-run caches:
--         cid -> loaded_elsewhere), pool}
-- Rules:
-- * affinity hold: a job whose models this worker lacks in VRAM (tier > 0), while a ready
--   (free) worker has them all loaded, is left to that worker until hold_ms after its order
--   time; while any other worker, free or busy, has them all loaded, until busy_hold_ms after
--   it (a busy worker may be free soon; the claim cannot tell when: busy_hold_ms is the bet).
--   The later of the two applies.
-- * pool fallback (#15): a job of another pool is left to workers of its own pool (and the
--   pools before this one in its fallback order) until pool_wait_ms after its order time
--   (math.huge: never).
local ORDER_SCALE = 4398046511104 -- 2^42: score = band * 2^42 + order ms (submit.lua)
local function held_by(job, ctx, hold, cache, index_key, now)
  if hold <= 0 then return 0 end
  local hold_end = job.score % ORDER_SCALE + hold
  if hold_end <= now then return 0 end
  local held = cache[job.cid]
  if held == nil then
    held = loaded_elsewhere(job.cid, ctx.worker_id, index_key,
      ctx.owner_may_take and function(cid, fp) return ctx.owner_may_take(job, fp) end)
    cache[job.cid] = held
  end
  return held and hold_end or 0
end

local function deferred_until(job, ctx, now)
  local until_ms = 0
  if job.tier > 0 then
    until_ms = math.max(held_by(job, ctx, ctx.hold_ms, ctx.ready, KEY.ready, now),
      held_by(job, ctx, ctx.busy_hold_ms or 0, ctx.loaded or {}, KEY.loaded, now))
  end
  if job.pool_wait_ms then
    local pool_end = job.score % ORDER_SCALE + job.pool_wait_ms
    if pool_end > now then until_ms = math.max(until_ms, pool_end) end
  end
  return until_ms
end

local function any_live_worker_matches(cid)
  local fps = redis.call('HKEYS', K.fingerprints)
  for _, fp in ipairs(fps) do
    if class_matches(cid, fp) then return true end
  end
  return false
end
