"""Where the server's time goes in the scripts of one dispatched job.

    python -m bench.script_profile [--quick] [--write-docs]

The dispatch-latency scenario (``bench/dispatch_latency.py``: one real worker process, idle
between jobs, the caller's ``submit_and_wait``, 5 to 20 ms apart) on a private Valkey whose
library is an instrumented copy of the queue's, loaded under the queue's own library name
before either process starts, so both call it (they load the library only when a function is
missing). Each operation's function, and in the second run each helper function of the
library, notes ``os.clock()`` on the way in and out; a function of the library reads the
totals back.

- Run 1, operations only: what each script run costs the server (two stamps per run), the
  ``redis.call`` commands it makes (``INFO commandstats``) and an empty ``FCALL``.
- Run 2, helpers too: each helper's time, callees included. ``os.clock()`` is a system call
  (the process's CPU clock): each stamp pair inflates every helper above it, so read these as
  shares; the run's total against run 1's says how much the stamps cost.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.dispatch_latency import paced_job, queue_with_idle_worker
from bench.harness import BenchReport, run_bench
from emp_queue.core.broker import connect
from emp_queue.core.replies import as_text
from emp_queue.core.scripts import HELPERS, SHARED_BODIES, library_source

REPORT = BenchReport(
    module="bench.script_profile",
    results=Path(__file__).parent / "results" / "script_profile.json",
    section="script-profile-bench",
    heading="Script time per dispatched job (issue 18)",
)
WARM_UP_JOBS = 50
TOP_HELPERS = 20
OCCASIONAL_RUNS = 0.05
"""Script runs rarer than this per job (a heartbeat now and then) are left out of the table."""

# The stamps, the totals and the functions that read them; PROF is a local of the library's
# chunk (a function library may not set globals), so the wrappers below reach it.
PROFILE_HEAD = """local PROF = {}
local function __done(t0, name, ...)
  local p = PROF[name]
  if p == nil then p = {0, 0}; PROF[name] = p end
  p[1] = p[1] + 1
  p[2] = p[2] + (os.clock() - t0)
  return ...
end
local function __timed(name, f)
  return function(...) return __done(os.clock(), name, f(...)) end
end"""
PROFILE_TAIL = """redis.register_function{{function_name='{library}_profile', flags={{'no-writes'}},
  callback=function(KEYS, ARGV)
    local out = {{}}
    for name, p in pairs(PROF) do
      out[#out + 1] = {{name, p[1], string.format('%.3f', p[2] * 1e6)}}
    end
    if ARGV[1] == 'reset' then PROF = {{}} end
    return out
  end}}
redis.register_function{{function_name='{library}_noop', flags={{'no-writes'}},
  callback=function(KEYS, ARGV) return 1 end}}"""
FRAME_OPEN = re.compile(r"redis\.register_function\('(?P<function>[^']+)', function\(KEYS, ARGV\)")
FRAME_CLOSE = "\nreturn reply\nend)"
HELPER_NAMES = re.compile(r"^local (?:function )?([a-z_]+(?:, [a-z_]+)*)\s*(?:\(|$)", re.M)


def helper_names() -> list[str]:
    """The library-level functions of the helper files (forward declarations included) and
    the shared operation bodies."""
    names: list[str] = []
    for match in HELPER_NAMES.finditer(helper_sources()):
        names += [name for name in match.group(1).split(", ") if name not in names]
    return [*names, *(f"run_{operation}" for operation in SHARED_BODIES)]


def helper_sources() -> str:
    return "\n".join(
        (resources.files("emp_queue.core") / "lua" / f"{part}.lua").read_text(encoding="utf-8")
        for part in HELPERS
    )


def instrumented_source(helpers: Sequence[str]) -> tuple[str, str]:
    """The queue's library (same name) with its operations timed, and ``helpers`` too."""
    library, source = library_source()
    shebang, _, body = source.partition("\n")
    first_frame = FRAME_OPEN.search(body)
    if first_frame is None or body.count(FRAME_CLOSE) != len(FRAME_OPEN.findall(body)):
        raise RuntimeError(
            "the library's operation frame (core/scripts.py OPERATION_FRAME) no longer looks "
            "as this profiler expects; update FRAME_OPEN/FRAME_CLOSE"
        )
    shared, frames = body[: first_frame.start()], body[first_frame.start() :]
    wraps = [f"if {name} then {name} = __timed('{name}', {name}) end" for name in helpers]
    frames = FRAME_OPEN.sub(
        lambda m: (
            f"redis.register_function('{m['function']}', __timed('op:"
            f"{m['function'].removeprefix(library + '_')}', function(KEYS, ARGV)"
        ),
        frames,
    ).replace(FRAME_CLOSE, FRAME_CLOSE + ")")
    parts = [shebang, PROFILE_HEAD, shared, *wraps, frames, PROFILE_TAIL.format(library=library)]
    return library, "\n".join(parts)


async def profiled_run(url: str, helpers: Sequence[str], jobs: int) -> dict[str, Any]:
    library, source = instrumented_source(helpers)
    loader = connect(url)  # before the worker starts: both processes find this library
    await loader.function_load(source, replace=True)
    await loader.aclose()
    async with queue_with_idle_worker(url) as queue:
        redis = queue.redis
        for _ in range(WARM_UP_JOBS):
            await paced_job(queue)
        await redis.fcall(f"{library}_profile", 0, "reset")
        await redis.config_resetstat()
        for _ in range(jobs):
            await paced_job(queue)
        totals = await redis.fcall(f"{library}_profile", 0, "reset")
        commands = await redis.info("commandstats")
        noop_us = await empty_call_us(redis, f"{library}_noop")
    return {
        "functions": {
            as_text(name): {"calls_per_job": int(calls) / jobs, "us_per_job": float(us) / jobs}
            for name, calls, us in totals
        },
        "fcall_us_per_job": commands["cmdstat_fcall"]["usec"] / jobs,
        "commands": inner_commands(commands, jobs),
        "empty_fcall_us": noop_us,
    }


def inner_commands(commandstats: dict[str, Any], jobs: int) -> dict[str, dict[str, float]]:
    """The commands the scripts ran, per job (calls and server time)."""
    skipped = {"fcall", "info", "config|resetstat", "function|load"}
    return {
        name.removeprefix("cmdstat_"): {
            "calls_per_job": stats["calls"] / jobs,
            "us_per_job": stats["usec"] / jobs,
        }
        for name, stats in commandstats.items()
        if name.removeprefix("cmdstat_") not in skipped
    }


async def empty_call_us(redis: Redis, function: str, calls: int = 1000) -> float:
    await redis.config_resetstat()
    for _ in range(calls):
        await redis.fcall(function, 0)
    stats = await redis.info("commandstats")
    return float(stats["cmdstat_fcall"]["usec_per_call"])


def measure(url: str, quick: bool) -> dict[str, Any]:
    jobs = 100 if quick else 400
    return {
        "jobs": jobs,
        "operations": asyncio.run(profiled_run(url, [], jobs)),
        "helpers": asyncio.run(profiled_run(url, helper_names(), jobs)),
    }


def markdown(results: dict[str, Any]) -> str:
    ops, helpers = results["operations"], results["helpers"]
    operations = sorted(
        (
            item
            for item in ops["functions"].items()
            if item[0].startswith("op:") and item[1]["calls_per_job"] >= OCCASIONAL_RUNS
        ),
        key=lambda item: -item[1]["us_per_job"],
    )
    commands = ops["commands"]
    command_calls = sum(entry["calls_per_job"] for entry in commands.values())
    command_us = sum(entry["us_per_job"] for entry in commands.values())
    lines = [
        f"Measured {results['date']} on {results['machine']} with `{results['command']}` "
        f"({results['jobs']} jobs after {WARM_UP_JOBS} to warm up).",
        "",
        "| script run (dispatch path) | runs per job | server µs per job |",
        "|---|---|---|",
        *(
            f"| {name.removeprefix('op:')} | {entry['calls_per_job']:.2f} "
            f"| {entry['us_per_job']:.1f} |"
            for name, entry in operations
        ),
        "",
        f"FCALL per job in `INFO commandstats`: {ops['fcall_us_per_job']:.1f} µs, of which the "
        f"{command_calls:.0f} `redis.call` commands per job took {command_us:.1f} µs; an empty "
        f"FCALL of the same library takes {ops['empty_fcall_us']:.2f} µs.",
        "",
        f"Helpers, callees included (run 2: FCALL {helpers['fcall_us_per_job']:.1f} µs per job "
        f"with every helper stamped, against {ops['fcall_us_per_job']:.1f} without):",
        "",
        "| helper | calls per job | µs per job |",
        "|---|---|---|",
    ]
    ranked = sorted(
        (item for item in helpers["functions"].items() if not item[0].startswith("op:")),
        key=lambda item: -item[1]["us_per_job"],
    )
    lines += [
        f"| {name} | {entry['calls_per_job']:.2f} | {entry['us_per_job']:.1f} |"
        for name, entry in ranked[:TOP_HELPERS]
    ]
    return "\n".join(lines)


def main() -> None:
    run_bench(REPORT, __doc__, measure, markdown)


if __name__ == "__main__":
    main()
