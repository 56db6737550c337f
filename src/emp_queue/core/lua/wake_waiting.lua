-- wake_waiting.lua: wake idle workers for the jobs already waiting in some services' queues,
-- as if they had just been submitted (wake.lua) — after an operator resumed a paused service
-- or pool (core/queue_control.py), whose jobs no run made claimable.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4..] service names; none: every service that ever had a job.
-- Reply: the number of services looked at.
-- Errors: none.

local services = {}
for i = 4, #ARGV do services[#services + 1] = ARGV[i] end
if #services == 0 then services = redis.call('SMEMBERS', K.services) end
wake_for_waiting(services)
return #services
