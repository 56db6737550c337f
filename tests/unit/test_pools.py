"""The pool rules (core/pools.py): a class's pool, the wait before a worker of another pool."""

from __future__ import annotations

import json
from math import inf

from emp_queue.core.deferral import WorkerContext, deferred_until
from emp_queue.core.fair_share import WaitingJob, next_job
from emp_queue.core.pools import (
    PoolChoice,
    PoolRules,
    PoolSource,
    class_pool,
    fallback_schedule,
    order_ms,
    pool_wait_ms,
)

RULES = PoolRules()


def test_a_pool_from_the_requirement_or_the_measured_run_time() -> None:
    assert class_pool({"pool": "gpu-a"}, 5.0, RULES).pool == "gpu-a"
    assert class_pool({"pool": "gpu-a"}, None, RULES).source is PoolSource.REQUIREMENT
    assert class_pool({}, None, RULES).source is PoolSource.UNMEASURED
    assert class_pool({}, 30_000, RULES).pool == "fast"
    assert class_pool({}, 30_001, RULES).pool == "standard"
    assert class_pool({}, 180_000, RULES).pool == "standard"
    measured = class_pool({}, 180_001, RULES)
    assert (measured.pool, measured.source) == ("heavy", PoolSource.MEASURED)
    assert class_pool({"pool": ["fast", "heavy"]}, None, RULES).source is PoolSource.OFF
    assert class_pool({}, 5.0, PoolRules(automatic=False)).pool is None
    assert class_pool({"pool": "fast"}, 5.0, PoolRules(enabled=False)).pool is None


def named(pool: str | None) -> PoolChoice:
    return PoolChoice(pool, PoolSource.REQUIREMENT)


def test_the_wait_grows_along_the_fallback_order() -> None:
    assert pool_wait_ms(named("fast"), "fast", RULES) == 0
    assert pool_wait_ms(named("fast"), None, RULES) == 0
    assert pool_wait_ms(named(None), "heavy", RULES) == 0
    assert pool_wait_ms(named("fast"), "standard", RULES) == 10_000
    assert pool_wait_ms(named("fast"), "heavy", RULES) == 20_000
    assert pool_wait_ms(named("heavy"), "standard", RULES) == 60_000
    assert pool_wait_ms(named("heavy"), "fast", RULES) == inf
    assert pool_wait_ms(named("gpu-a"), "fast", RULES) == inf
    assert fallback_schedule("fast", RULES) == [("standard", 10_000), ("heavy", 20_000)]
    assert fallback_schedule("gpu-a", RULES) == []


def test_a_pool_outside_the_scheme_is_bound_by_named_pools_only() -> None:
    measured = class_pool({}, 1_000, RULES)
    assert pool_wait_ms(measured, "us-4090", RULES) == 0
    assert pool_wait_ms(measured, "heavy", RULES) == 20_000
    assert pool_wait_ms(named("fast"), "us-4090", RULES) == inf
    assert RULES.in_scheme("standard")
    assert not RULES.in_scheme("us-4090")
    assert PoolRules(fallback={"us-4090": ("eu-a100",)}).in_scheme("eu-a100")


def test_the_script_argument_and_the_order_time() -> None:
    document = json.loads(RULES.script_argument())
    assert document["fallback"]["fast"] == ["standard", "heavy"]
    assert document["delay_ms"]["heavy"] == 60_000
    assert PoolRules(enabled=False).script_argument() == ""
    assert order_ms(50 * 2**42 + 1_700_000_000_123) == 1_700_000_000_123


def test_the_python_twin_defers_a_job_of_another_pool_until_its_wait_ends() -> None:
    order = 1_700_000_000_000
    job = WaitingJob("j", "acme", "sim", 50 * 2**42 + order, f"{1:012d}|j", pool_wait_ms=10_000)
    worker = WorkerContext()
    assert deferred_until(job, worker, order + 9_999) == order + 10_000
    assert deferred_until(job, worker, order + 10_000) == 0
    never = WaitingJob("n", "acme", "sim", 50 * 2**42 + order, f"{2:012d}|n", pool_wait_ms=inf)
    assert deferred_until(never, worker, order + 10**9) == inf
    # Deferred jobs are not eligible; their class's later jobs wait with them.
    later = WaitingJob("k", "acme", "sim", 50 * 2**42 + order + 1, f"{3:012d}|k", job_class="c")
    first = WaitingJob(
        "f", "acme", "sim", 50 * 2**42 + order, f"{4:012d}|f", pool_wait_ms=5, job_class="c"
    )
    assert next_job([first, later], {}, 0, now_ms=order) is None
    assert next_job([first, later], {}, 0, now_ms=order + 5) == first
