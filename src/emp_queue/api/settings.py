"""Settings of the API server, read from ``EMP_API_*`` environment variables."""

from __future__ import annotations

import ipaddress

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from emp_queue.errors import ConfigurationError
from emp_queue.storage.settings import StorageSettings
from emp_queue.storage.uploads import CONTENT_CHECKS
from emp_queue.webhooks.settings import WebhookSettings

LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiSettings(BaseSettings):
    """Where the API listens, and the limits it applies to every caller."""

    model_config = SettingsConfigDict(env_prefix="EMP_API_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Interface to bind.")
    port: int = Field(default=3331, ge=0, le=65535, description="TCP port (0: any free port).")
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024, gt=0, description="Largest request body accepted (else 413)."
    )
    rate_limit_per_s: float | None = Field(
        default=50.0,
        gt=0,
        description="Sustained requests per second allowed per API key (None: no limit).",
    )
    metrics_per_customer: bool = Field(
        default=True,
        description="/metrics has per-customer series (emp_customer_*); turn off when "
        "customers are too many for Prometheus labels.",
    )
    rate_limit_burst: int = Field(
        default=100,
        ge=1,
        description="Requests a key may make at once before the per-second rate applies.",
    )
    shutdown_grace_s: int = Field(
        default=5,
        ge=1,
        description="On SIGTERM/SIGINT, how long requests still open (event streams, "
        "WebSockets) may go on before they are closed; their clients resume elsewhere.",
    )
    access_log: bool = Field(
        default=False,
        description="Log one line per request (uvicorn's access log). Off by default: the "
        "line costs about a tenth of a small request's time, and a proxy in front usually "
        "logs requests already.",
    )
    key_cache_s: float = Field(
        default=2.0,
        ge=0,
        description="How long a replica trusts a key it looked up; a revoked key stops working "
        "within this time (0: look every key up on every request).",
    )
    auth_failures_per_minute: int = Field(
        default=60,
        ge=1,
        description="Unknown API keys one client address may send per minute; past it the "
        "address gets 429 without a key lookup until the minute ends.",
    )
    max_streams_per_key: int = Field(
        default=32,
        ge=1,
        description="Event streams and WebSockets one API key may hold open on one replica "
        "(more: 429, or close code 1013 on a socket).",
    )
    revocation_check_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often an open event stream or WebSocket checks that its key still "
        "exists: a revoked key's connections close within key_cache_s + this.",
    )
    answer_timeout_s: float | None = Field(
        default=3.0,
        gt=0,
        description="How long a request may wait for its answer to start (receiving its body "
        "does not count) before the API answers 503 broker_unavailable: a frozen Redis makes "
        "requests wait, not fail. Keep it below your clients' timeout (None: no bound).",
    )
    sweep_interval_s: float | None = Field(
        default=5.0,
        gt=0,
        description="How often this replica runs the queue's housekeeping (None: never).",
    )
    schedule_interval_s: float | None = Field(
        default=1.0,
        gt=0,
        description="How often this replica submits the due ticks of recurring schedules "
        "(None: never). Replicas may all run it: a tick's job id is fixed, so it is stored once.",
    )
    services: list[str] = Field(
        default_factory=list,
        description="Services accepted before any worker serving them has connected "
        "(others: only services some worker ever served; anything else is a 422).",
    )
    machine_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="A machine silent this long is shown offline (agents report every 10 s).",
    )
    scaling_window_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="GET /api/scaling: arrival and completion rates are taken over this window.",
    )
    scaling_drain_s: float = Field(
        default=300.0,
        gt=0,
        description="GET /api/scaling: machines are wanted to drain the waiting jobs within this.",
    )
    scaling_max_machines: int | None = Field(
        default=None,
        ge=0,
        description="GET /api/scaling: the most machines one pool is told to run for a service.",
    )
    storage: StorageSettings = Field(
        default_factory=StorageSettings,
        description="The asset store (EMP_STORAGE_*): the API serves its local directory.",
    )
    webhooks: WebhookSettings = Field(
        default_factory=WebhookSettings,
        description="Webhook delivery (EMP_WEBHOOKS_*): this replica dispatches unless off.",
    )
    assets_max_age_s: int = Field(
        default=3600,
        ge=0,
        description="How long a browser may cache a served asset (Cache-Control: private).",
    )
    asset_url_ttl_s: int = Field(
        default=300,
        gt=0,
        le=7 * 24 * 3600,
        description="Lifetime of the signed download URLs GET /api/assets/... issues for "
        "outputs in S3, GCS or Azure.",
    )
    max_upload_bytes: int = Field(
        default=25 * 1024 * 1024,
        gt=0,
        description="Largest file POST /api/uploads stores (else 413); this route is not "
        "bound by max_body_bytes.",
    )
    upload_types: list[str] = Field(
        default_factory=lambda: sorted(CONTENT_CHECKS),
        min_length=1,
        description="Media types POST /api/uploads accepts (each checked against the bytes).",
    )
    dev_anonymous: bool = Field(
        default=False,
        description="Development only: requests without a key act as admin. Loopback hosts only.",
    )

    @model_validator(mode="after")
    def _anonymous_only_on_loopback(self) -> ApiSettings:
        if self.dev_anonymous and not is_loopback(self.host):
            raise ConfigurationError(
                f"EMP_API_DEV_ANONYMOUS=true lets anyone act as admin, so it is refused with "
                f"EMP_API_HOST={self.host!r}; bind to 127.0.0.1 or turn the flag off"
            )
        return self

    @model_validator(mode="after")
    def _known_upload_types(self) -> ApiSettings:
        unknown = set(self.upload_types) - CONTENT_CHECKS.keys()
        if unknown:
            raise ConfigurationError(
                f"EMP_API_UPLOAD_TYPES names {', '.join(sorted(unknown))}, which uploads cannot "
                f"check; choose from {', '.join(sorted(CONTENT_CHECKS))}"
            )
        return self

    @property
    def rate_window_ms(self) -> int:
        """Length of one rate-limit window: the time the sustained rate takes to fill a burst."""
        if self.rate_limit_per_s is None:
            return 0
        return max(1, round(self.rate_limit_burst / self.rate_limit_per_s * 1000))
