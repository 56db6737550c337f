-- listing.lua: the indexes GET /api/jobs pages through (core/listing.py reads them); loaded
-- after lib.lua. Each job is in one status index at a time, so a job costs one entry (two
-- more with a customer), and every filter of the list route is a merge of a few of these:
--   <prefix>list:ss:<status>|<service>              zset  job id -> submit seq (every job)
--   <prefix>list:ssc:<status>|<service>|<customer>  zset  job id -> submit seq (with customer)
--   <prefix>list:c:<customer>                       zset  job id -> submit seq (with customer)
-- set_status (transitions.lua) notes each move; a run's moves are netted per index and member (a job
-- may enter and leave an index in one run) and written once by finish_run.

local listing_moves, listing_keys = {}, {}

local function begin_listing_run() listing_moves, listing_keys = {}, {} end

local function listing_move(key, id, score)
  local entry = listing_moves[key]
  if entry == nil then
    entry = {}
    listing_moves[key] = entry
    listing_keys[#listing_keys + 1] = key
  end
  entry[id] = score
end

local function status_indexes(job, status)
  local keys = {PREFIX .. 'list:ss:' .. status .. '|' .. job.service}
  if job.customer_id and job.customer_id ~= '' then
    keys[2] = PREFIX .. 'list:ssc:' .. status .. '|' .. job.service .. '|' .. job.customer_id
  end
  return keys
end

-- old nil: a new job (it also enters its customer's index); new nil: the job is deleted.
note_listing = function(key, job, old, new)
  if old == new then return end
  local id = string.sub(key, #PREFIX + 5)
  local customer = job.customer_id ~= '' and job.customer_id or nil
  if old then
    for _, index in ipairs(status_indexes(job, old)) do listing_move(index, id, false) end
    if new == nil and customer then listing_move(PREFIX .. 'list:c:' .. customer, id, false) end
  end
  if new then
    local seq = job.seq or redis.call('ZSCORE', K.jobs, id)
    for _, index in ipairs(status_indexes(job, new)) do listing_move(index, id, seq) end
    if old == nil and customer then listing_move(PREFIX .. 'list:c:' .. customer, id, seq) end
  end
end

flush_listing = function()
  for _, key in ipairs(listing_keys) do
    local adds, removes = {}, {}
    for id, score in pairs(listing_moves[key]) do
      if score then
        adds[#adds + 1] = score
        adds[#adds + 1] = id
      else
        removes[#removes + 1] = id
      end
    end
    for start = 1, #removes, 4000 do
      redis.call('ZREM', key, unpack(removes, start, math.min(start + 3999, #removes)))
    end
    for start = 1, #adds, 4000 do
      redis.call('ZADD', key, unpack(adds, start, math.min(start + 3999, #adds)))
    end
  end
  listing_moves, listing_keys = {}, {}
end
