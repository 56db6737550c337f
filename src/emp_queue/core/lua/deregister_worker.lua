-- deregister_worker.lua: a worker leaves. Jobs it still holds come back when their
-- leases expire (a leaving worker should release them first, see release.lua).
-- KEYS: the common keys (see lib.lua).
-- ARGV[4] worker id, ARGV[5] reason.
-- Reply: 1 when the worker was registered, 0 otherwise.
-- Errors: none.

local removed = remove_worker(ARGV[4], ARGV[5])
return removed
