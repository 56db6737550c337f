"""Settings of webhook delivery, read from ``EMP_WEBHOOKS_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from emp_queue.errors import ConfigurationError


class WebhookSettings(BaseSettings):
    """How deliveries are sent, retried and guarded."""

    model_config = SettingsConfigDict(env_prefix="EMP_WEBHOOKS_", extra="ignore")

    dispatch: bool = Field(
        default=True,
        description="Whether an API replica also delivers webhooks (off: run "
        "`emp webhooks dispatch` somewhere instead).",
    )
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="Private, loopback or link-local targets allowed anyway: host names or "
        'networks (e.g. ["127.0.0.1/32", "hooks.internal"]). Empty: only public addresses.',
    )
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="Per-attempt time limit.")
    max_payload_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        description="Largest body sent; a larger job result is left out of the payload "
        "(result_omitted: true) and read with GET /api/jobs/{id}.",
    )
    retry_base_s: float = Field(
        default=5.0, gt=0, description="Delay before the first retry; doubled on each one."
    )
    retry_max_delay_s: float = Field(
        default=3600.0, gt=0, description="Longest delay between two attempts."
    )
    retry_window_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="How long a delivery is retried after its first attempt before it is "
        "given up (status failed; redeliver it by hand).",
    )
    breaker_failures: int = Field(
        default=5,
        ge=1,
        description="Consecutive failures of one endpoint that open its circuit breaker.",
    )
    breaker_open_s: float = Field(
        default=30.0,
        gt=0,
        description="How long an open breaker holds deliveries back before one probe is sent.",
    )
    concurrency: int = Field(
        default=64, ge=1, le=1024, description="Requests one dispatcher has in flight at once."
    )
    batch: int = Field(
        default=256, ge=1, le=10_000, description="Deliveries claimed (or events read) at once."
    )
    idle_poll_s: float = Field(
        default=0.25, gt=0, le=60, description="How often an idle dispatcher looks for due work."
    )
    retention_s: int = Field(
        default=7 * 24 * 3600, gt=0, description="How long finished delivery records are kept."
    )

    @model_validator(mode="after")
    def _check_delays(self) -> WebhookSettings:
        if self.retry_max_delay_s < self.retry_base_s:
            raise ConfigurationError(
                f"EMP_WEBHOOKS_RETRY_MAX_DELAY_S={self.retry_max_delay_s:g} is below "
                f"EMP_WEBHOOKS_RETRY_BASE_S={self.retry_base_s:g}; raise the maximum or lower "
                "the base"
            )
        return self

    @property
    def lease_ms(self) -> int:
        """How long a claimed delivery is hidden from other dispatchers: one attempt and
        its bookkeeping, with room to spare. A dispatcher that dies gives it back then."""
        return round((self.timeout_s * 2 + 5) * 1000)
