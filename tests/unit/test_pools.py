"""The pool rules (core/pools.py): a class's pool, the wait before a worker of another pool."""

from __future__ import annotations

import json
from math import inf

from emp_queue.core.pools import (
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


def test_the_wait_grows_along_the_fallback_order() -> None:
    assert pool_wait_ms("fast", "fast", RULES) == 0
    assert pool_wait_ms("fast", None, RULES) == 0
    assert pool_wait_ms(None, "heavy", RULES) == 0
    assert pool_wait_ms("fast", "standard", RULES) == 10_000
    assert pool_wait_ms("fast", "heavy", RULES) == 20_000
    assert pool_wait_ms("heavy", "standard", RULES) == 60_000
    assert pool_wait_ms("heavy", "fast", RULES) == inf
    assert pool_wait_ms("gpu-a", "fast", RULES) == inf
    assert fallback_schedule("fast", RULES) == [("standard", 10_000), ("heavy", 20_000)]
    assert fallback_schedule("gpu-a", RULES) == []


def test_the_script_argument_and_the_order_time() -> None:
    document = json.loads(RULES.script_argument())
    assert document["fallback"]["fast"] == ["standard", "heavy"]
    assert document["delay_ms"]["heavy"] == 60_000
    assert PoolRules(enabled=False).script_argument() == ""
    assert order_ms(50 * 2**42 + 1_700_000_000_123) == 1_700_000_000_123
