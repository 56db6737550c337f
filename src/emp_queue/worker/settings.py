"""Worker settings: ``emp worker``'s, read from ``EMP_WORKER_*`` (the machine agent sets them per
process), and those of a :class:`~emp_queue.worker.runtime.Worker` run in code."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from emp_queue.models import NAME_PATTERN

# The defaults of a worker, here once: `emp worker` reads them from the environment
# (WorkerProcessSettings), code that runs a Worker itself gets them in WorkerSettings.
CONCURRENCY = 1
PREFETCH = 0
HEARTBEAT_INTERVAL_S = 5.0
SWEEP_INTERVAL_S = 15.0
IDLE_POLL_S = 30.0
DRAIN_GRACE_S = 30.0
OUTAGE_HAND_BACKS = 3


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class WorkerProcessSettings(BaseSettings):
    """One worker process: which connector, which services, how many jobs at once."""

    model_config = SettingsConfigDict(env_prefix="EMP_WORKER_", extra="ignore")

    connector: str = Field(
        default="simulation", description="Connector kind (`emp worker --help`)."
    )
    services: list[str] = Field(
        default_factory=list,
        description="Services this worker serves (default: the connector's name).",
    )
    worker_id: str = Field(default_factory=default_worker_id, pattern=NAME_PATTERN)
    machine_id: str | None = Field(default=None, pattern=NAME_PATTERN)
    concurrency: int = Field(default=CONCURRENCY, ge=1, le=1000)
    prefetch: int = Field(default=PREFETCH, ge=0, le=1000)
    heartbeat_interval_s: float = Field(default=HEARTBEAT_INTERVAL_S, gt=0, le=3600)
    sweep_interval_s: float = Field(
        default=SWEEP_INTERVAL_S,
        gt=0,
        le=3600,
        description="Housekeeping (lease expiry); the API sweeps too.",
    )
    idle_poll_s: float = Field(
        default=IDLE_POLL_S,
        gt=0,
        le=3600,
        description="Safety claim while idle; new work wakes the worker at once anyway.",
    )
    drain_grace_s: float = Field(default=DRAIN_GRACE_S, ge=0, le=86_400)
    capabilities_refresh_s: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="How often models and versions are rediscovered.",
    )
    start_timeout_s: float = Field(
        default=60.0, ge=0, le=86_400, description="How long to wait for the service to answer."
    )
    health_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="How often the service is probed; it is marked down after 2 failed probes.",
    )
    health_timeout_s: float = Field(
        default=2.0, gt=0, le=600, description="A probe not answered in this time failed."
    )
    outage_hand_backs: int = Field(
        default=OUTAGE_HAND_BACKS,
        ge=0,
        le=100,
        description="Times a job is handed back free when the service goes down under it.",
    )
    progress_interval_s: float = Field(
        default=0.1, ge=0, le=60, description="Progress reports closer than this are merged."
    )
    gpu_index: int | None = Field(
        default=None, ge=0, description="The GPU this worker is bound to (its service's GPU)."
    )
    pool: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        validation_alias=AliasChoices("pool", "EMP_WORKER_POOL", "EMP_POOL"),
        description="The worker's pool (docs/matching.md, Pools with fallback); EMP_POOL is "
        "accepted too.",
    )
    isolation: Literal["none", "loose", "strict"] = "none"
    allowed_customers: list[str] | None = None
    denied_customers: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)

    @property
    def served(self) -> list[str]:
        return self.services or [self.connector]


@dataclass(frozen=True)
class WorkerSettings:
    """How a :class:`~emp_queue.worker.runtime.Worker` runs, for code that runs one itself; the
    defaults are ``emp worker``'s (the constants above)."""

    concurrency: int = CONCURRENCY
    """Jobs run at once: 1 for a GPU-bound service, many for API-bound ones."""
    prefetch: int = PREFETCH
    """Claimed jobs kept ready beyond the running ones, so a freed slot starts the next job
    without waiting for Redis. Worth it for many short jobs; keep 0 for long GPU jobs (a
    prefetched job waits here instead of going to an idle worker)."""
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    idle_poll_s: float = IDLE_POLL_S
    """The safety claim of an idle worker; new work wakes it at once anyway."""
    sweep_interval_s: float = SWEEP_INTERVAL_S
    drain_grace_s: float = DRAIN_GRACE_S
    machine_id: str | None = None
    outage_hand_backs: int = OUTAGE_HAND_BACKS
    """Times a job is handed back free because the service went down; then outages count
    as failures (a job that crashes its service must not loop forever)."""
