"""Usage per customer, service and pool, by hour or day, read from what the scripts recorded.

``complete.lua`` and ``fail.lua`` add every attempt that ends through them to the hash
``usage:<hour start ms>`` (see ``lua/customers.lua``): attempts, completions, wait, run and
GPU time, output bytes, per ``<customer>|<service>|<pool>``. Each hour is kept
``USAGE_RETENTION_S`` after it ended, so a report reaches back that far.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from emp_queue.core.keys import Keys
from emp_queue.core.replies import as_text
from emp_queue.errors import InvalidQueryError

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
USAGE_RETENTION_S = 35 * 24 * 3600
"""How long an hour's usage is kept after it ended (``USAGE_RETENTION_MS`` in customers.lua)."""
MEASURES = (
    "jobs",
    "completed",
    "wait_ms",
    "run_ms",
    "gpu_ms",
    "output_bytes",
    "tokens_in",
    "tokens_out",
    "model_load_ms",
)


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"


class UsageRow(BaseModel):
    """What one customer used of one service on one pool in one hour or day (UTC)."""

    start_ms: int = Field(description="Start of the hour or day (UTC), ms since the epoch.")
    customer_id: str | None
    service: str
    pool: str | None
    jobs: int = Field(description="Attempts that ended (completed or failed).")
    completed: int
    wait_s: float = Field(description="Sum of the waits from submit to assignment.")
    run_s: float = Field(description="Sum of the times from assignment to the end.")
    gpu_s: float = Field(description="Run time times the GPUs of the worker that ran it.")
    output_bytes: int = Field(description="Size of the results (JSON).")
    tokens_in: int = Field(
        default=0, description="Prompt tokens, where the connector reports them (LLM services)."
    )
    tokens_out: int = Field(default=0, description="Generated tokens, where reported.")
    model_load_s: float = Field(
        default=0.0, description="Time spent loading models, where the service reports it."
    )


def _hours(from_ms: int, to_ms: int) -> Iterable[int]:
    return range(from_ms // HOUR_MS * HOUR_MS, to_ms, HOUR_MS)


async def usage(
    redis: Redis,
    keys: Keys,
    *,
    from_ms: int,
    to_ms: int,
    granularity: Granularity = Granularity.HOUR,
    customer_id: str | None = None,
    service: str | None = None,
) -> list[UsageRow]:
    """Rows of every customer/service/pool that used anything in ``[from_ms, to_ms)``, oldest
    first; ``customer_id``/``service`` keep only theirs (``""`` is jobs without customer)."""
    if to_ms <= from_ms:
        raise InvalidQueryError(f"usage: 'to' ({to_ms}) must be after 'from' ({from_ms})")
    if to_ms - from_ms > (USAGE_RETENTION_S * 1000 + 2 * DAY_MS):
        raise InvalidQueryError(
            f"usage: at most {USAGE_RETENTION_S // 86400 + 2} days at once (usage is kept "
            f"{USAGE_RETENTION_S // 86400} days); narrow 'from' and 'to'"
        )
    hours = list(_hours(from_ms, to_ms))
    async with redis.pipeline(transaction=False) as pipe:
        for hour in hours:
            pipe.hgetall(keys.usage_hour(hour))
        replies = await pipe.execute()
    totals: dict[tuple[int, str, str, str], dict[str, int]] = {}
    for hour, raw in zip(hours, replies, strict=True):
        start = hour if granularity is Granularity.HOUR else hour // DAY_MS * DAY_MS
        for field, value in raw.items():
            customer, svc, pool, measure = as_text(field).split("|")
            if customer_id is not None and customer != customer_id:
                continue
            if service is not None and svc != service:
                continue
            row = totals.setdefault((start, customer, svc, pool), dict.fromkeys(MEASURES, 0))
            row[measure] = row.get(measure, 0) + int(value)
    return [_row(key, measures) for key, measures in sorted(totals.items())]


def _row(key: tuple[int, str, str, str], m: dict[str, Any]) -> UsageRow:
    start, customer, service, pool = key
    return UsageRow(
        start_ms=start,
        customer_id=customer or None,
        service=service,
        pool=pool or None,
        jobs=m["jobs"],
        completed=m["completed"],
        wait_s=m["wait_ms"] / 1000,
        run_s=m["run_ms"] / 1000,
        gpu_s=m["gpu_ms"] / 1000,
        output_bytes=m["output_bytes"],
        tokens_in=m["tokens_in"],
        tokens_out=m["tokens_out"],
        model_load_s=m["model_load_ms"] / 1000,
    )
