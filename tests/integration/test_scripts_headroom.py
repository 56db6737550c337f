"""The function library keeps room for more helpers.

Every helper of ``core/lua`` (lib.lua and the files loaded after it) is a local variable of the
library's main chunk, and Lua refuses a function with more than 200 of them: the library then
fails to load with "main function has more than 200 local variables", far from the helper that
tipped it over. This loads the library with a margin of extra locals under a name of its own,
so the suite fails while there is still room to regroup helpers (as ``KEY`` in lib.lua does).
"""

from __future__ import annotations

import contextlib
import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from emp_queue.core.scripts import SHARED_BODIES, library_source

HEADROOM = 15


async def test_the_library_loads_with_room_for_more_helpers(redis_client: Redis) -> None:
    name, source = library_source()
    after_helpers = f"local run_{SHARED_BODIES[0]} = "
    assert after_helpers in source
    padding = "".join(f"local headroom_{i} = {i}\n" for i in range(HEADROOM))
    probe = f"emp_headroom_{uuid.uuid4().hex[:12]}"
    padded = source.replace(name, probe).replace(after_helpers, padding + after_helpers, 1)
    try:
        await redis_client.function_load(padded)
    except ResponseError as error:
        pytest.fail(
            f"the Lua library has fewer than {HEADROOM} local variables to spare ({error}): "
            "group helpers into tables, as KEY in lib.lua groups the key names"
        )
    finally:
        with contextlib.suppress(ResponseError):
            await redis_client.function_delete(probe)
