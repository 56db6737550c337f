"""What the webhook pieces exchange: event kinds, subscriptions, deliveries and attempts."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from emp_queue.core.replies import as_text

SECRET_PREFIX = "whsec_"
ANY_CUSTOMER = "*"
"""Owner of the job-webhook secret for jobs submitted without a customer (admin keys)."""


class WebhookEvent(StrEnum):
    """What a subscription can ask for (its event filter); also the payload's ``type``."""

    JOB_COMPLETED = "job.completed"
    JOB_FAILED = "job.failed"
    JOB_CANCELLED = "job.cancelled"
    JOB_PROGRESS = "job.progress"
    WORKFLOW_COMPLETED = "workflow.completed"
    WORKFLOW_FAILED = "workflow.failed"


JOB_WEBHOOK_EVENTS = frozenset(
    {WebhookEvent.JOB_COMPLETED, WebhookEvent.JOB_FAILED, WebhookEvent.JOB_CANCELLED}
)
"""What a job's own ``webhook`` URL is told: how the job ended."""


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    """Not yet delivered: due now, or waiting for its next retry."""
    DELIVERED = "delivered"
    FAILED = "failed"
    """Given up: the retry window ended, or the target was refused. Redeliver by hand."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def delivery_id(*parts: str) -> str:
    """The stable ``webhook-id``: the same event for the same target always gets the same."""
    return "msg_" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Subscription:
    """A customer's standing order: these events of its jobs, to this URL."""

    id: str
    customer_id: str | None
    """``None``: an admin's subscription, told about every customer's jobs."""
    url: str
    events: frozenset[WebhookEvent]
    secret: str
    created_at: int
    description: str | None = None

    def wants(self, customer_id: str | None, event: WebhookEvent) -> bool:
        return event in self.events and self.customer_id in (None, customer_id)

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "customer_id": self.customer_id,
                "url": self.url,
                "events": sorted(self.events),
                "secret": self.secret,
                "created_at": self.created_at,
                "description": self.description,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Subscription:
        data = json.loads(raw)
        return cls(
            id=data["id"],
            customer_id=data["customer_id"],
            url=data["url"],
            events=frozenset(WebhookEvent(event) for event in data["events"]),
            secret=data["secret"],
            created_at=data["created_at"],
            description=data.get("description"),
        )


@dataclass(frozen=True)
class NewDelivery:
    """A delivery about to be recorded (by the intake, before anything is sent)."""

    id: str
    event: WebhookEvent
    url: str
    body: bytes
    created_at: int
    job_id: str | None
    customer_id: str | None
    subscription_id: str | None
    traceparent: str | None = None
    """The job's trace context: each attempt is a span of the job's trace."""

    def fields(self) -> list[str | bytes | int]:
        return [
            "event", self.event.value, "url", self.url, "body", self.body,
            "created_at", self.created_at, "job_id", self.job_id or "",
            "customer_id", self.customer_id or "", "subscription_id", self.subscription_id or "",
            "status", DeliveryStatus.PENDING.value, "attempts", 0,
            "traceparent", self.traceparent or "",
        ]  # fmt: skip


@dataclass(frozen=True)
class Delivery:
    """A delivery as recorded: what is sent, and how its attempts went so far."""

    id: str
    event: WebhookEvent
    url: str
    body: bytes
    created_at: int
    job_id: str | None
    customer_id: str | None
    subscription_id: str | None
    status: DeliveryStatus
    attempts: int
    window_start: int | None = None
    next_at: int | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    last_latency_ms: float | None = None
    delivered_at: int | None = None
    traceparent: str | None = None

    @classmethod
    def from_record(cls, delivery_id: str, record: dict[Any, Any]) -> Delivery:
        values = {as_text(key): value for key, value in record.items()}

        def text(name: str) -> str | None:
            value = values.get(name)
            return as_text(value) or None if value is not None else None

        def number(name: str) -> int | None:
            value = text(name)
            return int(value) if value is not None else None

        latency = text("last_latency_ms")
        return cls(
            id=delivery_id,
            event=WebhookEvent(as_text(values["event"])),
            url=text("url") or "",
            body=bytes(values.get("body", b"")),
            created_at=number("created_at") or 0,
            job_id=text("job_id"),
            customer_id=text("customer_id"),
            subscription_id=text("subscription_id"),
            status=DeliveryStatus(as_text(values["status"])),
            attempts=number("attempts") or 0,
            window_start=number("window_start"),
            next_at=number("next_at"),
            last_status_code=number("last_status_code"),
            last_error=text("last_error"),
            last_latency_ms=float(latency) if latency is not None else None,
            delivered_at=number("delivered_at"),
            traceparent=text("traceparent"),
        )


@dataclass(frozen=True)
class Attempt:
    """One try at sending a delivery."""

    at: int
    status_code: int | None
    error: str | None
    latency_ms: float

    def to_json(self) -> str:
        return json.dumps(
            {
                "at": self.at,
                "status_code": self.status_code,
                "error": self.error,
                "latency_ms": self.latency_ms,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Attempt:
        data = json.loads(raw)
        return cls(data["at"], data["status_code"], data["error"], data["latency_ms"])

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
