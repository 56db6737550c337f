-- deregister_worker.lua: a worker leaves. Jobs it still holds come back when their
-- leases expire (a leaving worker should release them first, see release.lua), or now, when
-- the worker says it is gone for good.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] worker id, ARGV[5] reason, ARGV[6] "1": requeue now whatever it still holds, as a
-- release does (a job handed over in a wake notice it never read, decision 0073, or one whose
-- release failed); "" or absent: leave those to their leases.
-- Reply: 1 when the worker was registered, 0 otherwise.
-- Errors: none.

local worker_id = ARGV[4]
if ARGV[6] == '1' then
  local now = now_ms()
  for _, id in ipairs(redis.call('SMEMBERS', KEY.worker_jobs(worker_id))) do
    local job = load_state(id)
    if RUNNING_STATUS[job.status] and job.worker_id == worker_id then
      requeue(id, job, now, 0, 'worker_left')
    end
  end
end
local removed = remove_worker(worker_id, ARGV[5])
return removed
