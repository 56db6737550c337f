"""Pools with fallback: which pool a job belongs to, and how long it waits for other pools.

The Python twin of the pool part of ``lua/pools.lua``; ``claim.lua`` applies it through
``deferred_until`` (``matching.lua``), and ``tests/integration/test_fair_share_agreement.py``
holds the two together.

- A worker's pool is its capabilities' ``pool`` (``EMP_WORKER_POOL``); a worker without one
  takes jobs of every pool, at once.
- A job's pool is its ``pool`` requirement when that is one name (a *list* of names stays a
  hard requirement, ``matching.py``); else, when automatic pools are on, the pool its class's
  measured run time falls in (``fast`` up to ``fast_max_ms``, ``standard`` up to
  ``standard_max_ms``, else ``heavy``); a class not measured yet has no pool.
- A worker of the job's pool takes it at once. The worker of the k-th pool of the job's
  pool's fallback order takes it once the job has waited ``k * delay_ms[pool]`` (counted from
  its order time, the time part of its score); a worker of any other pool never does —
  except that a worker whose pool is outside the scheme (not fast, standard or heavy, not named
  in the fallback table: a pool named after a GPU type or a region) is not bound by *measured*
  pools: it takes such a job at once, as a worker without a pool does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from math import inf
from typing import Any

__all__ = [
    "NEVER",
    "PoolChoice",
    "PoolExplanation",
    "PoolRules",
    "PoolSource",
    "class_pool",
    "explain_pool",
    "fallback_schedule",
    "order_ms",
    "pool_wait_ms",
]

NEVER = inf
"""The wait of a job for a worker whose pool its fallback order never reaches."""

PRIORITY_SCALE = 2**42

DEFAULT_FALLBACK: dict[str, tuple[str, ...]] = {
    "fast": ("standard", "heavy"),
    "standard": ("heavy",),
    "heavy": ("standard",),
}
DEFAULT_DELAY_MS: dict[str, int] = {"fast": 10_000, "standard": 30_000, "heavy": 60_000}
DEFAULT_POOL_DELAY_MS = 30_000
AUTOMATIC_POOLS = frozenset({"fast", "standard", "heavy"})


class PoolSource(StrEnum):
    """How a job's pool was decided."""

    REQUIREMENT = "requirement"
    MEASURED = "measured"
    UNMEASURED = "unmeasured"
    """Automatic pools are on but the class has no measured run time yet: no pool."""
    OFF = "off"
    """Pools are off, or the requirement names several pools (a hard requirement)."""


@dataclass(frozen=True)
class PoolChoice:
    pool: str | None
    source: PoolSource
    run_ms: float | None = None


@dataclass(frozen=True)
class PoolRules:
    """The pool configuration; ``enabled=False`` turns pools off (no job waits for its pool)."""

    enabled: bool = True
    automatic: bool = True
    fast_max_ms: int = 30_000
    standard_max_ms: int = 180_000
    fallback: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_FALLBACK)
    delay_ms: Mapping[str, int] = field(default_factory=lambda: DEFAULT_DELAY_MS)

    def delay_of(self, pool: str) -> int:
        return self.delay_ms.get(pool, DEFAULT_POOL_DELAY_MS)

    def in_scheme(self, pool: str) -> bool:
        """Is ``pool`` an automatic pool or named in the fallback table?"""
        named = {name for order in self.fallback.values() for name in order}
        return pool in AUTOMATIC_POOLS or pool in self.fallback or pool in named

    def script_argument(self) -> str:
        """The rules as ``claim.lua`` reads them (ARGV[11]); ``""`` when pools are off."""
        if not self.enabled:
            return ""
        document: dict[str, Any] = {
            "auto": self.automatic,
            "fast_max_ms": self.fast_max_ms,
            "standard_max_ms": self.standard_max_ms,
            "fallback": {pool: list(order) for pool, order in self.fallback.items() if order},
            "delay_ms": {pool: self.delay_of(pool) for pool in self.fallback},
            "default_delay_ms": DEFAULT_POOL_DELAY_MS,
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":"))


def order_ms(score: int) -> int:
    """The order time (ms) of a waiting job: its score without the priority band."""
    return score % PRIORITY_SCALE


def class_pool(
    requirements: Mapping[str, Any], run_ms: float | None, rules: PoolRules
) -> PoolChoice:
    """The pool of a job class and how it was decided."""
    requested = requirements.get("pool")
    if not rules.enabled or isinstance(requested, list):
        return PoolChoice(None, PoolSource.OFF, run_ms)
    if isinstance(requested, str):
        return PoolChoice(requested, PoolSource.REQUIREMENT, run_ms)
    if not rules.automatic or run_ms is None:
        return PoolChoice(None, PoolSource.UNMEASURED, run_ms)
    if run_ms <= rules.fast_max_ms:
        return PoolChoice("fast", PoolSource.MEASURED, run_ms)
    if run_ms <= rules.standard_max_ms:
        return PoolChoice("standard", PoolSource.MEASURED, run_ms)
    return PoolChoice("heavy", PoolSource.MEASURED, run_ms)


def pool_wait_ms(choice: PoolChoice, worker_pool: str | None, rules: PoolRules) -> float:
    """How long a job of the class pool ``choice`` waits (from its order time) before a worker
    of ``worker_pool`` may take it: 0 at once, :data:`NEVER` never. A worker whose pool is
    outside the scheme (see :meth:`PoolRules.in_scheme`) takes a job whose pool was only
    measured at once: it named its pool after something else (a GPU type, a region)."""
    job_pool = choice.pool
    if job_pool is None or worker_pool is None or job_pool == worker_pool:
        return 0
    if choice.source is PoolSource.MEASURED and not rules.in_scheme(worker_pool):
        return 0
    order = rules.fallback.get(job_pool, ())
    if worker_pool not in order:
        return NEVER
    return (order.index(worker_pool) + 1) * rules.delay_of(job_pool)


def fallback_schedule(job_pool: str, rules: PoolRules) -> list[tuple[str, int]]:
    """The pools a job of ``job_pool`` falls back to, each with the wait before it may."""
    delay = rules.delay_of(job_pool)
    return [(pool, (k + 1) * delay) for k, pool in enumerate(rules.fallback.get(job_pool, ()))]


@dataclass(frozen=True)
class PoolExplanation:
    """A waiting job's pool for ``explain``: which, how decided, when other pools may take it."""

    pool: str | None
    source: PoolSource
    run_ms: float | None
    fallback: list[tuple[str, int]]
    """(pool, time in ms since the epoch from which its workers may take the job)."""

    def summary(self, now_ms: int) -> str:
        if self.pool is None:
            reason = {
                PoolSource.OFF: "pools do not apply to it",
                PoolSource.UNMEASURED: "its class has no measured run time yet",
            }.get(self.source, "")
            return f"no pool ({reason}): a worker of any pool may take it"
        how = "named in its requirements"
        if self.source is PoolSource.MEASURED and self.run_ms is not None:
            how = f"its class runs about {self.run_ms / 1000:.1f} s"
        steps = [
            f"{pool} workers {'now' if at <= now_ms else f'in {(at - now_ms) / 1000:.0f} s'}"
            for pool, at in self.fallback
        ]
        tail = "; then " + ", ".join(steps) if steps else "; no other pool takes it"
        return f"pool {self.pool} ({how}): {self.pool} workers and workers without pool{tail}"


def explain_pool(
    requirements: Mapping[str, Any], run_ms: float | None, score: int, rules: PoolRules
) -> PoolExplanation:
    choice = class_pool(requirements, run_ms, rules)
    fallback = []
    if choice.pool is not None:
        fallback = [
            (p, order_ms(score) + wait) for p, wait in fallback_schedule(choice.pool, rules)
        ]
    return PoolExplanation(choice.pool, choice.source, run_ms, fallback)
