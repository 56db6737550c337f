-- lift_caps.lua: wake idle workers for the work a customer's running cap held back, after an
-- operator changed the customer's policy (core/queue.py: set_customer_policy,
-- delete_customer_policy). A raised or removed cap frees places without any job of the
-- customer stopping, so no run wakes anyone for them (customers.lua: wake_capped), and the
-- held-back jobs would wait for the idle workers' safety claim.
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] customer id.
-- Reply: the number of classes idle workers were woken for.
-- Errors: none.

local customer = ARGV[4]
local key = KEY.capped(customer)
local cids = redis.call('SMEMBERS', key)
redis.call('DEL', key)
local woken = 0
for _, cid in ipairs(cids) do
  local desc = load_desc(cid)
  if desc then
    -- As many wake-ups as places now free for the class's service (each class counted
    -- alone against a cap shared by several: a spare wake-up costs an empty claim, a missing
    -- one leaves a job to the safety claim).
    local room = running_room(customer, desc.service)
    if room <= 0 then
      redis.call('SADD', key, cid) -- still held back: the cap was lowered or kept
    else
      local waiting = redis.call('ZCARD', KEY.class_pending(cid))
      if waiting > 0 then
        note_new_work({class = cid}, math.min(waiting, room))
        woken = woken + 1
      end
    end
  end
end
return woken
