"""Webhook subscriptions and deliveries in Redis; every key comes from :class:`Keys`.

Two small Lua operations keep the records consistent across dispatchers: recording a
delivery once per id (``webhook_enqueue.lua``) and claiming due deliveries under a lease
(``webhook_claim.lua``). They are loaded on their own, not as part of the queue's function
library: they touch none of the queue's keys.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis

from emp_queue.core.keys import Keys
from emp_queue.core.replies import as_text
from emp_queue.errors import WebhookNotFoundError
from emp_queue.webhooks.models import (
    ANY_CUSTOMER,
    Attempt,
    Delivery,
    DeliveryStatus,
    NewDelivery,
    Subscription,
    WebhookEvent,
    new_secret,
)

SUBSCRIPTION_LOG_MAX = 1000
ATTEMPTS_KEPT = 50


def _lua(name: str) -> str:
    return (resources.files("emp_queue.core") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Outcome:
    """What became of one attempt, and what happens next."""

    delivery: Delivery
    attempt: Attempt | None
    """``None`` when nothing was sent (held back by an open circuit breaker)."""
    status: DeliveryStatus
    next_at: int | None
    """When it is due again (pending), ``None`` when it is finished."""


class WebhookStore:
    """Reads and writes one namespace's webhook records."""

    def __init__(self, redis: Redis, keys: Keys, *, retention_s: int) -> None:
        self._redis = redis
        self.keys = keys
        self._retention_ms = retention_s * 1000
        self._enqueue = redis.register_script(_lua("webhook_enqueue"))
        self._claim = redis.register_script(_lua("webhook_claim"))

    # Subscriptions -------------------------------------------------------------
    async def add_subscription(
        self,
        *,
        customer_id: str | None,
        url: str,
        events: frozenset[WebhookEvent],
        description: str | None = None,
    ) -> Subscription:
        subscription = Subscription(
            id="sub_" + secrets.token_hex(8),
            customer_id=customer_id,
            url=url,
            events=events,
            secret=new_secret(),
            created_at=now_ms(),
            description=description,
        )
        await self._redis.hset(
            self.keys.webhook_subscriptions, subscription.id, subscription.to_json()
        )
        return subscription

    async def subscriptions(self) -> list[Subscription]:
        records = await self._redis.hvals(self.keys.webhook_subscriptions)
        found = [Subscription.from_json(record) for record in records]
        return sorted(found, key=lambda subscription: subscription.created_at)

    async def subscription(self, subscription_id: str) -> Subscription:
        record = await self._redis.hget(self.keys.webhook_subscriptions, subscription_id)
        if record is None:
            raise WebhookNotFoundError(
                f"no webhook subscription {subscription_id!r}; list them: emp webhooks list"
            )
        return Subscription.from_json(record)

    async def remove_subscription(self, subscription_id: str) -> None:
        """Deliveries already recorded for it are given up when they next come due."""
        if not await self._redis.hdel(self.keys.webhook_subscriptions, subscription_id):
            raise WebhookNotFoundError(
                f"no webhook subscription {subscription_id!r}; list them: emp webhooks list"
            )

    async def job_secret(self, customer_id: str | None) -> str:
        """The secret signing deliveries to ``customer_id``'s job webhooks, made on first use."""
        key = self.keys.webhook_job_secret(customer_id or ANY_CUSTOMER)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(key, new_secret(), nx=True)
            pipe.get(key)
            _, secret = await pipe.execute()
        return as_text(secret)

    # Deliveries ----------------------------------------------------------------
    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> int:
        """Record each delivery (once per id) and make it due now; how many were new."""
        if not deliveries:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for delivery in deliveries:
                job_log = self.keys.webhook_job_log(delivery.job_id or "-")
                sub_log = (
                    self.keys.webhook_subscription_log(delivery.subscription_id)
                    if delivery.subscription_id
                    else job_log
                )
                await self._enqueue(
                    keys=[self.keys.webhook_delivery(delivery.id), self.keys.webhook_due,
                          job_log, sub_log],
                    args=[delivery.id, delivery.created_at, self._retention_ms,
                          SUBSCRIPTION_LOG_MAX, *delivery.fields()],
                    client=pipe,
                )  # fmt: skip
            replies = await pipe.execute()
        return sum(int(reply) for reply in replies)

    async def claim(self, now: int, lease_ms: int, limit: int) -> list[Delivery]:
        """Due deliveries, hidden from other dispatchers for ``lease_ms``."""
        ids = [as_text(raw) for raw in await self._claim(
            keys=[self.keys.webhook_due], args=[now, lease_ms, limit]
        )]  # fmt: skip
        deliveries = await self.get_many(ids)
        gone = {delivery.id for delivery in deliveries}.symmetric_difference(ids)
        if gone:  # expired records cannot be sent: forget them
            await self._redis.zrem(self.keys.webhook_due, *gone)
        return deliveries

    async def get_many(self, delivery_ids: Sequence[str]) -> list[Delivery]:
        if not delivery_ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for delivery_id in delivery_ids:
                pipe.hgetall(self.keys.webhook_delivery(delivery_id))
            records = await pipe.execute()
        return [
            Delivery.from_record(delivery_id, record)
            for delivery_id, record in zip(delivery_ids, records, strict=True)
            if record
        ]

    async def get(self, delivery_id: str) -> Delivery:
        found = await self.get_many([delivery_id])
        if not found:
            raise WebhookNotFoundError(
                f"no webhook delivery {delivery_id!r} (unknown, or expired after "
                f"{self._retention_ms // 1000} s)"
            )
        return found[0]

    async def attempts(self, delivery_id: str) -> list[Attempt]:
        raw = await self._redis.lrange(self.keys.webhook_attempts(delivery_id), 0, -1)
        return [Attempt.from_json(item) for item in raw]

    async def job_log(self, job_id: str, limit: int = 100) -> list[Delivery]:
        ids: Any = await self._redis.zrange(self.keys.webhook_job_log(job_id), 0, limit - 1)
        return await self.get_many([as_text(raw) for raw in ids])

    async def subscription_log(self, subscription_id: str, limit: int = 100) -> list[Delivery]:
        key = self.keys.webhook_subscription_log(subscription_id)
        ids: Any = await self._redis.zrange(key, 0, limit - 1, desc=True)
        return await self.get_many([as_text(raw) for raw in ids])

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        """Write each attempt and the delivery's new state, in one round trip."""
        if not outcomes:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for outcome in outcomes:
                self._record_one(pipe, outcome)
            await pipe.execute()

    def _record_one(self, pipe: Any, outcome: Outcome) -> None:
        delivery, attempt = outcome.delivery, outcome.attempt
        key = self.keys.webhook_delivery(delivery.id)
        if attempt is None:  # held back: no attempt, only a later due time
            pipe.hset(key, "next_at", outcome.next_at or 0)
            pipe.zadd(self.keys.webhook_due, {delivery.id: outcome.next_at or 0})
            return
        attempts_key = self.keys.webhook_attempts(delivery.id)
        fields: dict[str, str | int | float] = {
            "status": outcome.status.value,
            "attempts": delivery.attempts + 1,
            "window_start": delivery.window_start or attempt.at,
            "next_at": outcome.next_at or "",
            "last_status_code": attempt.status_code or "",
            "last_error": attempt.error or "",
            "last_latency_ms": attempt.latency_ms,
        }
        if outcome.status is DeliveryStatus.DELIVERED:
            fields["delivered_at"] = attempt.at
        pipe.hset(key, mapping=fields)
        pipe.rpush(attempts_key, attempt.to_json())
        pipe.ltrim(attempts_key, -ATTEMPTS_KEPT, -1)
        pipe.hincrby(self.keys.webhook_totals, outcome_label(outcome), 1)
        if outcome.next_at is not None:
            pipe.zadd(self.keys.webhook_due, {delivery.id: outcome.next_at})
        else:
            pipe.zrem(self.keys.webhook_due, delivery.id)
            pipe.pexpire(key, self._retention_ms)
            pipe.pexpire(attempts_key, self._retention_ms)

    async def redeliver(self, delivery_id: str) -> Delivery:
        """Send a delivery again now, with its retry window started afresh."""
        delivery = await self.get(delivery_id)
        key = self.keys.webhook_delivery(delivery_id)
        now = now_ms()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping={"status": DeliveryStatus.PENDING.value, "next_at": now})
            pipe.hdel(key, "window_start")
            pipe.persist(key)
            pipe.persist(self.keys.webhook_attempts(delivery_id))
            pipe.zadd(self.keys.webhook_due, {delivery_id: now})
            await pipe.execute()
        return await self.get(delivery.id)

    async def totals(self) -> dict[str, int]:
        raw = await self._redis.hgetall(self.keys.webhook_totals)
        return {as_text(name): int(count) for name, count in raw.items()}

    async def due_count(self) -> int:
        return int(await self._redis.zcard(self.keys.webhook_due))


def outcome_label(outcome: Outcome) -> str:
    """The ``outcome`` label of ``emp_webhook_deliveries_total``."""
    if outcome.status is DeliveryStatus.DELIVERED:
        return "delivered"
    if outcome.status is DeliveryStatus.FAILED:
        return "given_up"
    return "retry"
