"""Settings of the core engine, read from ``EMP_*`` environment variables.

Built once in a process's ``main()`` and passed down; nothing here reads the
environment at import time.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from emp_queue.core.derivation import PayloadFormat
from emp_queue.core.keys import validate_namespace
from emp_queue.core.pools import DEFAULT_DELAY_MS, DEFAULT_FALLBACK, PoolRules


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("emp-job-queue", appauthor=False))


class CoreSettings(BaseSettings):
    """Where the queue lives and how long it keeps things."""

    model_config = SettingsConfigDict(env_prefix="EMP_", extra="ignore")

    redis_url: str | None = Field(
        default=None,
        description="Redis 7+/Valkey 8+ server URL. Unset: start (or reuse) the embedded Valkey.",
    )
    namespace: str = Field(
        default="emp",
        description="Prefix of every key this queue owns.",
        json_schema_extra={"env_source": "QUEUE_NAMESPACE"},
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the embedded Valkey keeps its AOF files and pid/port records.",
    )
    retention_s: int = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="How long terminal jobs are kept.",
        json_schema_extra={"env_source": "QUEUE_RETENTION_S"},
    )
    lease_s: float = Field(
        default=30.0,
        gt=0,
        description="Lease granted by a claim.",
        json_schema_extra={"env_source": "QUEUE_LEASE_S"},
    )
    retry_window_s: float | None = Field(
        default=600.0,
        gt=0,
        description="A job still failing with service or worker faults this long after its "
        "first failure is dead-lettered, attempts left or not.",
    )
    worker_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="A worker silent for this long is removed.",
        json_schema_extra={"env_source": "QUEUE_WORKER_TIMEOUT_S"},
    )
    max_lost_leases: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Leases a job may lose (its worker killed, preempted, vanished) before it "
        "is dead-lettered; the one that reaches this count ends it. Separate from a job's "
        "max_attempts, which counts only its own failures.",
    )
    events_maxlen: int = Field(
        default=100_000,
        gt=0,
        description="Approximate length the event stream is trimmed to.",
        json_schema_extra={"env_source": "QUEUE_EVENTS_MAXLEN"},
    )
    derive_service_formats: dict[str, PayloadFormat] = Field(
        default_factory=dict,
        description="Services (beyond comfyui, a1111, ollama, openai) whose payloads name "
        'their models, as JSON: {"comfyui-sdxl": "comfyui"}.',
    )
    derive_loader_inputs: dict[str, list[str]] = Field(
        default_factory=dict,
        description="ComfyUI loader nodes (beyond the built-in table) and the inputs that "
        'name model files, as JSON: {"MyLoader": ["model_file"]}.',
    )
    redis_wait_replicas: int = Field(
        default=0,
        ge=0,
        description="Durability: submit, complete, fail, cancel, deliver and retry are "
        "acknowledged only once this many replicas have the write (WAIT). 0: off.",
    )
    redis_wait_timeout_ms: int = Field(
        default=1000,
        gt=0,
        description="How long a write waits for EMP_REDIS_WAIT_REPLICAS replicas before it is "
        "reported as not confirmed (a 503 from the API, a retried completion in a worker).",
    )

    fair_share_half_life_s: float = Field(
        default=60.0,
        gt=0,
        description="Fair share: a customer's recent claims count half after this long.",
    )
    fair_share_window_s: float = Field(
        default=600.0,
        ge=0,
        description=(
            "Fair share: a job submitted this much later than the first job in plain order "
            "(same priority) no longer overtakes it; 0 turns fair share off."
        ),
    )
    affinity_window_s: float = Field(
        default=30.0,
        ge=0,
        description=(
            "Model affinity: a job submitted up to this much later than the first job in plain "
            "order (same priority, and after fair share) goes first when the claiming worker "
            "holds its models better (loaded, then installed); 0 turns affinity off."
        ),
    )
    affinity_hold_s: float = Field(
        default=2.0,
        ge=0,
        description=(
            "Model affinity hold: a job whose models another free worker has loaded (and the "
            "claiming worker has not) is left to that worker until this long after the job's "
            "order time (submit time); 0 turns the hold off."
        ),
    )
    affinity_busy_hold_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Model affinity hold for busy owners: as EMP_AFFINITY_HOLD_S while only busy "
            "workers have the job's models loaded (a bet that one is free soon); 0: off."
        ),
    )

    pools_enabled: bool = Field(
        default=True,
        description="Pools with fallback: a job waits for a worker of its pool, then falls back "
        "along EMP_POOL_FALLBACK. false: no job waits for its pool (a list of pools in a job's "
        "requirements stays a hard requirement).",
    )
    pools_automatic: bool = Field(
        default=True,
        description="A job without a pool requirement gets the pool its class's measured run "
        "time falls in (fast, standard, heavy).",
    )
    pool_fast_max_s: float = Field(
        default=30.0, gt=0, description="Automatic pools: classes running up to this are fast."
    )
    pool_standard_max_s: float = Field(
        default=180.0,
        gt=0,
        description="Automatic pools: classes running up to this (and over the fast limit) are "
        "standard, longer ones heavy.",
    )
    pool_fallback: dict[str, list[str]] = Field(
        default_factory=lambda: {pool: list(order) for pool, order in DEFAULT_FALLBACK.items()},
        description='The pools a job of each pool falls back to, in order, as JSON: {"fast": '
        '["standard", "heavy"], "heavy": ["standard"]}. A pool not named has no fallback.',
    )
    pool_fallback_delay_s: dict[str, float] = Field(
        default_factory=lambda: {pool: ms / 1000 for pool, ms in DEFAULT_DELAY_MS.items()},
        description="How long a job of each pool waits before the next pool of its fallback "
        'order may take it, as JSON: {"fast": 10}; the k-th fallback pool after k times that '
        "(30 s for a pool not named).",
    )

    @field_validator("pool_fallback_delay_s")
    @classmethod
    def _check_delays(cls, value: dict[str, float]) -> dict[str, float]:
        negative = {pool: delay for pool, delay in value.items() if delay < 0}
        if negative:
            raise ValueError(f"fallback delays must be >= 0 s, not {negative}")
        return value

    @model_validator(mode="after")
    def _check_pool_limits(self) -> CoreSettings:
        if self.pool_standard_max_s < self.pool_fast_max_s:
            raise ValueError(
                f"EMP_POOL_STANDARD_MAX_S ({self.pool_standard_max_s}) is below "
                f"EMP_POOL_FAST_MAX_S ({self.pool_fast_max_s}); raise it or lower the fast limit"
            )
        return self

    def pool_rules(self) -> PoolRules:
        return PoolRules(
            enabled=self.pools_enabled,
            automatic=self.pools_automatic,
            fast_max_ms=round(self.pool_fast_max_s * 1000),
            standard_max_ms=round(self.pool_standard_max_s * 1000),
            fallback={pool: tuple(order) for pool, order in self.pool_fallback.items()},
            delay_ms={pool: round(s * 1000) for pool, s in self.pool_fallback_delay_s.items()},
        )

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        return validate_namespace(value)
