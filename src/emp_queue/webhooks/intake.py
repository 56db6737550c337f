"""Turns queue events into delivery records, through a Redis consumer group.

Every dispatcher reads the event stream as one consumer of the group ``webhooks``: each
event goes to one of them, and stays pending in the group until the deliveries it causes
are recorded (then it is acknowledged). A dispatcher that dies between reading and
recording leaves its events pending; another takes them over after ``RECLAIM_IDLE_MS``.
Recording is idempotent (the delivery id is derived from the event and the target), so an
event read twice sends nothing twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from emp_queue.core.events import decode_event
from emp_queue.core.queue import JobQueue
from emp_queue.models import Event, Job
from emp_queue.webhooks.models import (
    JOB_WEBHOOK_EVENTS,
    NewDelivery,
    Subscription,
    WebhookEvent,
    delivery_id,
)
from emp_queue.webhooks.store import WebhookStore

GROUP = "webhooks"
RECLAIM_IDLE_MS = 60_000
PROGRESS_MILESTONES = (25, 50, 75)
"""``job.progress`` is sent when a job's progress first reaches one of these percentages."""

STREAM_EVENTS = {
    "complete_job": WebhookEvent.JOB_COMPLETED,
    "job_failed": WebhookEvent.JOB_FAILED,
    "job_cancelled": WebhookEvent.JOB_CANCELLED,
    "update_job_progress": WebhookEvent.JOB_PROGRESS,
    "workflow_completed": WebhookEvent.WORKFLOW_COMPLETED,
    "workflow_failed": WebhookEvent.WORKFLOW_FAILED,
}


def webhook_event_of(event: Event) -> WebhookEvent | None:
    if event.type == "job_status_changed" and event.data.get("status") == "expired":
        return WebhookEvent.JOB_FAILED
    return STREAM_EVENTS.get(event.type)


def milestone_of(event: Event) -> int | None:
    progress = event.data.get("progress")
    if not isinstance(progress, int | float):
        return None
    reached = [milestone for milestone in PROGRESS_MILESTONES if progress >= milestone]
    return reached[-1] if reached else None


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def status_of(kind: WebhookEvent, event: Event, job: Job) -> str:
    if kind is WebhookEvent.JOB_COMPLETED:
        return "completed"
    if kind is WebhookEvent.JOB_CANCELLED:
        return "cancelled"
    if kind is WebhookEvent.JOB_FAILED:
        return str(event.data.get("status", "failed"))
    return job.status.value


def payload(kind: WebhookEvent, event: Event, job: Job, max_bytes: int) -> bytes:
    """The body: ``{"type", "timestamp", "data"}`` as the Standard Webhooks spec suggests."""
    data: dict[str, Any] = {
        "job_id": job.id,
        "status": status_of(kind, event, job),
        "service": job.service_required,
        "customer_id": job.customer_id,
        "workflow_id": job.workflow_id,
        "attempt": event.data.get("attempt", job.attempt),
        "created_at": job.created_at,
    }
    if kind is WebhookEvent.JOB_COMPLETED:
        data["result"] = job.result
    elif kind is WebhookEvent.JOB_FAILED:
        data["error"] = event.data.get("error")
        data["failure_class"] = event.data.get("failure_class")
    elif kind is WebhookEvent.JOB_PROGRESS:
        data["progress"] = event.data.get("progress")
        data["message"] = event.data.get("message")
    elif kind is WebhookEvent.JOB_CANCELLED:
        data["reason"] = event.data.get("reason")
    when = int(event.data.get("ts") or time.time() * 1000)
    body = {"type": kind.value, "timestamp": iso_ms(when), "data": data}
    encoded = json.dumps(body, separators=(",", ":"), default=str).encode()
    if len(encoded) > max_bytes:  # too big to send: the receiver reads the job instead
        data.pop("result", None)
        data["error"] = None if data.get("error") is None else {"message": "(too large)"}
        data["result_omitted"] = True
        encoded = json.dumps(body, separators=(",", ":"), default=str).encode()
    return encoded


class EventIntake:
    """One consumer of the ``webhooks`` group: reads events, records their deliveries."""

    def __init__(
        self,
        redis: Redis,
        queue: JobQueue,
        store: WebhookStore,
        *,
        consumer: str,
        batch: int,
        max_payload_bytes: int,
        reclaim_idle_ms: int = RECLAIM_IDLE_MS,
    ) -> None:
        self._redis = redis
        self._queue = queue
        self._store = store
        self._stream = queue.keys.events
        self.consumer = consumer
        self._batch = batch
        self._max_payload_bytes = max_payload_bytes
        self._reclaim_idle_ms = reclaim_idle_ms
        self._last_reclaim = 0.0

    async def ensure_group(self) -> None:
        """Create the group at the stream's end if it does not exist (events from before the
        first dispatcher ever started are not delivered)."""
        try:
            await self._redis.xgroup_create(self._stream, GROUP, id="$", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def read(self, block_ms: int) -> list[Event]:
        """Events this consumer should handle: abandoned ones first, then new ones."""
        now = time.monotonic()
        if now - self._last_reclaim > self._reclaim_idle_ms / 1000 / 4:
            self._last_reclaim = now
            reply: Any = await self._redis.xautoclaim(
                self._stream, GROUP, self.consumer, self._reclaim_idle_ms, "0-0", count=self._batch
            )
            entries = [(entry_id, fields) for entry_id, fields in reply[1] if fields]
            if entries:
                return [decode_event(entry_id, fields) for entry_id, fields in entries]
        reply = await self._redis.xreadgroup(
            GROUP, self.consumer, {self._stream: ">"}, count=self._batch, block=block_ms
        )
        if not reply:
            return []
        return [decode_event(entry_id, fields) for entry_id, fields in reply[0][1]]

    async def take(self, events: Sequence[Event], subscriptions: Sequence[Subscription]) -> int:
        """Record the deliveries ``events`` cause, then acknowledge them; how many were new."""
        wanted = [(event, kind) for event in events if (kind := webhook_event_of(event))]
        job_ids = sorted({event.job_id for event, _ in wanted if event.job_id})
        jobs = {job.id: job for job in await self._queue.get_many(job_ids)}
        deliveries: list[NewDelivery] = []
        for event, kind in wanted:
            job = jobs.get(event.job_id or "")
            if job is not None:
                deliveries.extend(self._deliveries(event, kind, job, subscriptions))
        recorded = await self._store.enqueue(deliveries)
        if events:
            await self._redis.xack(self._stream, GROUP, *(event.id for event in events))
        return recorded

    def _deliveries(
        self, event: Event, kind: WebhookEvent, job: Job, subscriptions: Sequence[Subscription]
    ) -> list[NewDelivery]:
        targets: list[tuple[str, str, str | None]] = []  # (target key, URL, subscription)
        if job.webhook and kind in JOB_WEBHOOK_EVENTS:
            targets.append(("job", job.webhook, None))
        for subscription in subscriptions:
            if subscription.wants(job.customer_id, kind):
                targets.append(("sub:" + subscription.id, subscription.url, subscription.id))
        if not targets:
            return []
        if kind is WebhookEvent.JOB_PROGRESS:
            milestone = milestone_of(event)
            if milestone is None:
                return []
            # One delivery per milestone and attempt, however many reports cross it.
            occurrence = [job.id, str(event.data.get("attempt", "")), f"progress:{milestone}"]
        else:
            occurrence = [event.id]
        body = payload(kind, event, job, self._max_payload_bytes)
        created_at = int(time.time() * 1000)
        return [
            NewDelivery(
                id=delivery_id(*occurrence, target),
                event=kind,
                url=url,
                body=body,
                created_at=created_at,
                job_id=job.id,
                customer_id=job.customer_id,
                subscription_id=subscription_id,
                traceparent=job.traceparent,
            )
            for target, url, subscription_id in targets
        ]
