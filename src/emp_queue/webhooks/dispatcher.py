"""The webhook dispatcher: records deliveries from events and sends the due ones.

Runs inside every API replica (unless ``EMP_WEBHOOKS_DISPATCH=false``) and as
``emp webhooks dispatch``; any number of them share the work through Redis. Its two loops
end on a flag (decision 0007): :meth:`WebhookDispatcher.close` sets it, and the owner waits
for :meth:`run` with a bound before cancelling.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from emp_queue.core.queue import JobQueue
from emp_queue.errors import WebhookTargetRefusedError
from emp_queue.telemetry.tracing import mark_failed
from emp_queue.webhooks.breaker import BreakerState, CircuitBreakers, endpoint_of
from emp_queue.webhooks.guard import TargetGuard
from emp_queue.webhooks.intake import EventIntake
from emp_queue.webhooks.models import Attempt, Delivery, DeliveryStatus, Subscription
from emp_queue.webhooks.schedule import next_attempt_at
from emp_queue.webhooks.sender import WebhookSender, http_session
from emp_queue.webhooks.settings import WebhookSettings
from emp_queue.webhooks.store import Outcome, WebhookStore, now_ms

if TYPE_CHECKING:
    from emp_queue.telemetry.tracing import JobTracing

log = structlog.get_logger(__name__)

SUBSCRIPTIONS_CACHE_S = 1.0
SECRET_CACHE_S = 60.0


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class WebhookDispatcher:
    """One dispatcher: an intake loop and a delivery loop over one Redis."""

    def __init__(
        self,
        redis: Redis,
        queue: JobQueue,
        settings: WebhookSettings,
        *,
        consumer: str | None = None,
        tracing: JobTracing | None = None,
    ) -> None:
        self.settings = settings
        self.tracing = tracing
        self.store = WebhookStore(redis, queue.keys, retention_s=settings.retention_s)
        self.intake = EventIntake(
            redis,
            queue,
            self.store,
            consumer=consumer or consumer_name(),
            batch=settings.batch,
            max_payload_bytes=settings.max_payload_bytes,
        )
        self.breakers = CircuitBreakers(
            redis,
            queue.keys,
            threshold=settings.breaker_failures,
            open_s=settings.breaker_open_s,
            probe_ms=settings.lease_ms,
        )
        self._guard = TargetGuard(settings.allow_hosts)
        self._closed = asyncio.Event()
        self._wake = asyncio.Event()
        self._subscriptions: tuple[float, list[Subscription]] = (0.0, [])
        self._secrets: dict[str, tuple[float, str]] = {}
        self._limit = asyncio.Semaphore(settings.concurrency)

    async def prepare(self) -> None:
        """Join the event stream's consumer group now, so that no event after this call is
        missed; a Redis outage is logged and the intake loop tries again."""
        try:
            await self.intake.ensure_group()
        except RedisError as error:
            log.warning("webhook_group_failed", error=str(error))

    def close(self) -> None:
        """Ask both loops to finish their current batch and return."""
        self._closed.set()
        self._wake.set()

    async def run(self) -> None:
        async with http_session(self.settings) as session:
            sender = WebhookSender(session, self._guard)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._intake_loop(), name="webhooks-intake")
                tasks.create_task(self._delivery_loop(sender), name="webhooks-delivery")

    async def _intake_loop(self) -> None:
        block_ms = round(self.settings.idle_poll_s * 1000)
        group_ready = False
        while not self._closed.is_set():
            try:
                if not group_ready:
                    await self.intake.ensure_group()
                    group_ready = True
                events = await self.intake.read(block_ms)
                if events and await self.intake.take(events, await self.subscriptions()):
                    self._wake.set()
            except RedisError as error:
                log.warning("webhook_intake_failed", error=str(error))
                await self._pause(self.settings.idle_poll_s)

    async def _delivery_loop(self, sender: WebhookSender) -> None:
        while not self._closed.is_set():
            try:
                sent = await self.deliver_due(sender)
            except RedisError as error:
                log.warning("webhook_delivery_failed", error=str(error))
                sent = 0
            if not sent:
                await self._pause(self.settings.idle_poll_s)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        if not self._closed.is_set():
            self._wake.clear()

    async def subscriptions(self) -> list[Subscription]:
        fetched_at, current = self._subscriptions
        if time.monotonic() - fetched_at > SUBSCRIPTIONS_CACHE_S:
            current = await self.store.subscriptions()
            self._subscriptions = (time.monotonic(), current)
        return current

    async def deliver_due(self, sender: WebhookSender) -> int:
        """Claim one batch of due deliveries, try each, record the outcomes; how many."""
        now = now_ms()
        batch = await self.store.claim(now, self.settings.lease_ms, self.settings.batch)
        if not batch:
            return 0
        states = await self.breakers.states(endpoint_of(delivery.url) for delivery in batch)
        held, sending = await self._admit(batch, states, now)
        outcomes = await asyncio.gather(
            *(self._attempt(sender, delivery, states) for delivery in sending)
        )
        await self.store.record([*held, *outcomes])
        return len(batch)

    async def _admit(
        self, batch: Sequence[Delivery], states: dict[str, BreakerState], now: int
    ) -> tuple[list[Outcome], list[Delivery]]:
        """Split a batch into deliveries held back by open breakers and those to send (one
        probe per half-open endpoint among all dispatchers)."""
        held: list[Outcome] = []
        sending: list[Delivery] = []
        probing: dict[str, bool] = {}
        for delivery in batch:
            endpoint = endpoint_of(delivery.url)
            state = states[endpoint]
            if state.open_until is not None:
                if state.open_until <= now and endpoint not in probing:
                    probing[endpoint] = await self.breakers.take_probe(endpoint)
                    if probing[endpoint]:
                        sending.append(delivery)
                        continue
                hold_until = self.breakers.hold_until(state, now)
                held.append(Outcome(delivery, None, DeliveryStatus.PENDING, hold_until))
                continue
            sending.append(delivery)
        return held, sending

    async def _attempt(
        self, sender: WebhookSender, delivery: Delivery, states: dict[str, BreakerState]
    ) -> Outcome:
        secret = await self._secret_of(delivery)
        if secret is None:
            problem = f"subscription {delivery.subscription_id!r} was deleted"
            return self._given_up(delivery, problem)
        try:
            async with self._limit:
                attempt = await self._send(sender, delivery, secret)
        except WebhookTargetRefusedError as refused:
            return self._given_up(delivery, str(refused))
        endpoint = endpoint_of(delivery.url)
        if attempt.ok:
            await self.breakers.succeeded(endpoint, states[endpoint])
            return Outcome(delivery, attempt, DeliveryStatus.DELIVERED, None)
        await self.breakers.failed(endpoint, attempt.at)
        window_start = delivery.window_start or attempt.at
        next_at = next_attempt_at(delivery.attempts + 1, window_start, attempt.at, self.settings)
        status = DeliveryStatus.PENDING if next_at is not None else DeliveryStatus.FAILED
        log.info(
            "webhook_attempt_failed",
            delivery_id=delivery.id,
            url=delivery.url,
            attempt=delivery.attempts + 1,
            error=attempt.error,
            next_at=next_at,
        )
        return Outcome(delivery, attempt, status, next_at)

    async def _send(self, sender: WebhookSender, delivery: Delivery, secret: str) -> Attempt:
        if self.tracing is None:
            return await sender.send(delivery, secret)
        attributes = {
            "emp.delivery_id": delivery.id,
            "emp.job_id": delivery.job_id or "",
            "emp.webhook_event": delivery.event.value,
            "emp.attempt": delivery.attempts + 1,
            "url.full": delivery.url,
        }
        with self.tracing.delivery(delivery.traceparent, attributes) as (span, traceparent):
            attempt = await sender.send(delivery, secret, traceparent)
            if attempt.status_code is not None:
                span.set_attribute("http.response.status_code", attempt.status_code)
            if not attempt.ok:
                mark_failed(span, attempt.error)
        return attempt

    def _given_up(self, delivery: Delivery, problem: str) -> Outcome:
        log.warning("webhook_given_up", delivery_id=delivery.id, url=delivery.url, error=problem)
        attempt = Attempt(now_ms(), None, problem, 0.0)
        return Outcome(delivery, attempt, DeliveryStatus.FAILED, None)

    async def _secret_of(self, delivery: Delivery) -> str | None:
        if delivery.subscription_id is not None:
            for subscription in await self.subscriptions():
                if subscription.id == delivery.subscription_id:
                    return subscription.secret
            self._subscriptions = (0.0, [])  # it may be newer than the cache: look again
            for subscription in await self.subscriptions():
                if subscription.id == delivery.subscription_id:
                    return subscription.secret
            return None
        owner = delivery.customer_id or ""
        cached = self._secrets.get(owner)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        secret = await self.store.job_secret(delivery.customer_id)
        self._secrets[owner] = (time.monotonic() + SECRET_CACHE_S, secret)
        return secret
