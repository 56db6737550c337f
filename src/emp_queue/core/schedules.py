"""Recurring schedules: a cron expression and a job template; every tick submits one job.

At most one job per tick, however many API replicas run the loop: the job's id is derived
from the schedule and the tick (``<schedule id>.<tick ms>``), and submitting an existing id
returns that job instead of adding one (submit.lua is idempotent by id). Ticks missed while
no replica ran are not caught up: the next pass submits the latest due tick only.

Cron syntax and time zones through ``cronsim`` (docs/decisions/0049-cronsim-for-schedules.md).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator
from redis.asyncio import Redis
from redis.exceptions import RedisError

from emp_queue.core.keys import Keys
from emp_queue.core.queue import JobQueue
from emp_queue.core.replies import as_text
from emp_queue.errors import EmpError, InvalidJobError, JobNotFoundError
from emp_queue.loops import stopped_within
from emp_queue.models import NAME_PATTERN, JobSpec

log = structlog.get_logger(__name__)

MAX_SCHEDULES = 10_000
"""Schedules one namespace holds at most: each pass of the loop reads them all."""
MAX_TICKS_WALKED = 10_000
"""Ticks walked to find the latest due one (a minutely schedule down a week: 10,080)."""
_TEMPLATE_EXCLUDED = ("id", "run_at", "delay_s", "depends_on", "after_previous_step")


def next_tick_ms(cron: str, timezone: str, after_ms: int) -> int:
    """The first tick of ``cron`` (in ``timezone``) strictly after ``after_ms``."""
    start = datetime.fromtimestamp(after_ms / 1000, ZoneInfo(timezone))
    return round(next(CronSim(cron, start)).timestamp() * 1000)


def latest_due_tick_ms(cron: str, timezone: str, after_ms: int, now_ms: int) -> int | None:
    """The latest tick in (``after_ms``, ``now_ms``], or None when none is due."""
    start = datetime.fromtimestamp(after_ms / 1000, ZoneInfo(timezone))
    latest = None
    for count, moment in enumerate(CronSim(cron, start)):
        tick = round(moment.timestamp() * 1000)
        if tick > now_ms or count >= MAX_TICKS_WALKED:
            break
        latest = tick
    return latest


class ScheduleSpec(BaseModel):
    """What a client sends to create a schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = Field(default=None, pattern=NAME_PATTERN)
    cron: str = Field(
        max_length=200,
        description='Five fields, minute hour day month weekday: "*/15 * * * *", "0 9 * * 1-5".',
    )
    timezone: str = Field(default="UTC", max_length=64, description="IANA zone of the cron.")
    job: JobSpec = Field(
        description="The job each tick submits (no id, run_at, delay_s or depends_on: the id "
        "is `<schedule id>.<tick ms>`)."
    )

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str) -> str:
        try:
            CronSim(cron, datetime.now(UTC))
        except CronSimError as error:
            raise ValueError(
                f"{cron!r} is not a cron expression cronsim reads ({error}); write five "
                'fields: minute hour day month weekday, e.g. "*/15 * * * *"'
            ) from None
        return cron

    @field_validator("timezone")
    @classmethod
    def _valid_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{zone!r} is no IANA time zone; e.g. UTC, Europe/Paris") from None
        return zone

    @field_validator("job")
    @classmethod
    def _a_template(cls, job: JobSpec) -> JobSpec:
        given = [name for name in _TEMPLATE_EXCLUDED if getattr(job, name) not in (None, False)]
        if given:
            raise ValueError(
                f"the job template sets {', '.join(given)}; each tick chooses the id and runs "
                "at once: drop them"
            )
        return job


class Schedule(BaseModel):
    """A stored schedule, as the API shows it."""

    model_config = ConfigDict(frozen=True)

    id: str
    cron: str
    timezone: str
    job: JobSpec
    customer_id: str | None = None
    created_at: int
    last_tick_ms: int | None = None
    last_job_id: str | None = None
    next_tick_ms: int | None = None
    last_error: str | None = None


class ScheduleExistsError(EmpError):
    """A schedule with this id exists; delete it first or choose another id."""


class ScheduleStore:
    """Schedules of one namespace, in two hashes (``Keys.schedules``, ``schedules_fired``)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def create(self, spec: ScheduleSpec, schedule_id: str) -> Schedule:
        if await self.redis.hlen(self.keys.schedules) >= MAX_SCHEDULES:
            raise InvalidJobError(
                f"this namespace holds {MAX_SCHEDULES} schedules already; delete some first"
            )
        now_ms = int(time.time() * 1000)
        schedule = Schedule(
            id=schedule_id,
            cron=spec.cron,
            timezone=spec.timezone,
            job=spec.job,
            customer_id=spec.job.customer_id,
            created_at=now_ms,
        )
        created = await self.redis.hsetnx(
            self.keys.schedules, schedule_id, schedule.model_dump_json(exclude_none=True)
        )
        if not created:
            raise ScheduleExistsError(
                f"schedule {schedule_id!r} exists; delete it first or choose another id"
            )
        return self._with_times(schedule, {})

    async def all(self) -> list[Schedule]:
        raw: Any = await self.redis.hgetall(self.keys.schedules)
        fired: Any = await self.redis.hgetall(self.keys.schedules_fired)
        fired_text = {as_text(k): as_text(v) for k, v in fired.items()}
        schedules = [Schedule.model_validate_json(value) for value in raw.values()]
        return sorted((self._with_times(s, fired_text) for s in schedules), key=lambda s: s.id)

    async def get(self, schedule_id: str) -> Schedule:
        raw, fired = await self._read(schedule_id)
        if raw is None:
            raise JobNotFoundError(f"no schedule {schedule_id!r}")
        return self._with_times(Schedule.model_validate_json(raw), fired)

    async def delete(self, schedule_id: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.schedules, schedule_id)
            pipe.hdel(self.keys.schedules_fired, schedule_id)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def record(self, schedule_id: str, tick_ms: int, job_id: str, error: str | None) -> None:
        value = f"{tick_ms}|{job_id}|{error or ''}"
        await self.redis.hset(self.keys.schedules_fired, schedule_id, value)

    async def _read(self, schedule_id: str) -> tuple[Any, dict[str, str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.schedules, schedule_id)
            pipe.hget(self.keys.schedules_fired, schedule_id)
            raw, fired = await pipe.execute()
        return raw, {} if fired is None else {schedule_id: as_text(fired)}

    @staticmethod
    def _with_times(schedule: Schedule, fired: dict[str, str]) -> Schedule:
        last_tick, last_job, error = None, None, None
        if schedule.id in fired:
            tick, last_job, error = fired[schedule.id].split("|", 2)
            last_tick = int(tick)
        after = max(last_tick or 0, schedule.created_at)
        return schedule.model_copy(
            update={
                "last_tick_ms": last_tick,
                "last_job_id": last_job,
                "last_error": error or None,
                "next_tick_ms": next_tick_ms(schedule.cron, schedule.timezone, after),
            }
        )


def tick_job_id(schedule_id: str, tick_ms: int) -> str:
    return f"{schedule_id}.{tick_ms}"


class ScheduleRunner:
    """Submits the due tick of every schedule; run by each API replica every second or so."""

    def __init__(self, store: ScheduleStore, queue: JobQueue) -> None:
        self.store = store
        self.queue = queue

    async def run_due(self, now_ms: int | None = None) -> list[str]:
        """Submit one job per schedule whose tick is due; the ids of the jobs submitted (or
        found already submitted by another replica)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        submitted = []
        for schedule in await self.store.all():
            after = max(schedule.last_tick_ms or 0, schedule.created_at)
            tick = latest_due_tick_ms(schedule.cron, schedule.timezone, after, now_ms)
            if tick is None:
                continue
            job_id = tick_job_id(schedule.id, tick)
            error = None
            try:
                await self.queue.submit(schedule.job.model_copy(update={"id": job_id}))
                submitted.append(job_id)
            except EmpError as refused:
                error = str(refused)
                log.warning("schedule_tick_refused", schedule_id=schedule.id, error=error)
            await self.store.record(schedule.id, tick, job_id, error)
        return submitted

    async def run_forever(self, interval_s: float, stopping: asyncio.Event) -> None:
        """``run_due`` every ``interval_s`` until ``stopping``; a Redis outage is logged."""
        while not stopping.is_set():
            try:
                await self.run_due()
            except RedisError as error:
                log.warning("schedule_pass_failed", error=str(error))
            await stopped_within(stopping, interval_s)
