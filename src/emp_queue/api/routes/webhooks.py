"""Webhooks: a customer's subscriptions, the deliveries' log, manual redelivery.

A client key manages its own customer's subscriptions and sees its own deliveries; an
admin key sees all, and may subscribe to every customer's jobs. docs/webhooks.md.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from emp_queue.api.auth import ClientOrAdmin, Principal
from emp_queue.api.error_handlers import JOB_ERRORS
from emp_queue.api.routes.jobs import VisibleJob
from emp_queue.api.state import State
from emp_queue.errors import WebhookNotFoundError, WebhookTargetRefusedError
from emp_queue.models import NAME_PATTERN
from emp_queue.webhooks.models import (
    JOB_WEBHOOK_EVENTS,
    Attempt,
    Delivery,
    Subscription,
    WebhookEvent,
)

router = APIRouter(prefix="/api", tags=["webhooks"], responses=JOB_ERRORS)

SubscriptionId = Annotated[str, Path(pattern=r"^sub_[0-9a-f]{16}$")]
DeliveryId = Annotated[str, Path(pattern=r"^msg_[0-9a-f]{32}$")]


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="Where deliveries are POSTed.")
    events: list[WebhookEvent] = Field(
        default_factory=lambda: sorted(JOB_WEBHOOK_EVENTS),
        min_length=1,
        description="The events wanted (default: how jobs end).",
    )
    customer_id: Annotated[str, Field(pattern=NAME_PATTERN)] | None = Field(
        default=None,
        description="Admin keys only: one customer's jobs (default: every customer's). A "
        "client key always subscribes to its own customer's jobs.",
    )
    description: str | None = Field(default=None, max_length=200)


class SubscriptionOut(BaseModel):
    id: str
    customer_id: str | None
    url: str
    events: list[WebhookEvent]
    description: str | None
    created_at: int
    secret: str | None = Field(
        description="Verifies the deliveries' signatures (left out of listings)."
    )


class AttemptOut(BaseModel):
    at: int
    status_code: int | None
    error: str | None
    latency_ms: float


class DeliveryOut(BaseModel):
    id: str = Field(description="Sent as the webhook-id header: the same on every attempt.")
    event: WebhookEvent
    url: str
    job_id: str | None
    subscription_id: str | None
    status: str
    attempts: int
    created_at: int
    next_at: int | None
    last_status_code: int | None
    last_error: str | None
    last_latency_ms: float | None
    delivered_at: int | None
    payload: Any = None
    attempt_log: list[AttemptOut] | None = None


class DeliveriesOut(BaseModel):
    deliveries: list[DeliveryOut]


class SubscriptionsOut(BaseModel):
    subscriptions: list[SubscriptionOut]


class SecretOut(BaseModel):
    secret: str = Field(description="Signs the deliveries to this customer's job webhooks.")


def subscription_out(subscription: Subscription, *, with_secret: bool) -> SubscriptionOut:
    return SubscriptionOut(
        id=subscription.id,
        customer_id=subscription.customer_id,
        url=subscription.url,
        events=sorted(subscription.events),
        description=subscription.description,
        created_at=subscription.created_at,
        secret=subscription.secret if with_secret else None,
    )


def delivery_out(delivery: Delivery, attempts: list[Attempt] | None = None) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        event=delivery.event,
        url=delivery.url,
        job_id=delivery.job_id,
        subscription_id=delivery.subscription_id,
        status=delivery.status.value,
        attempts=delivery.attempts,
        created_at=delivery.created_at,
        next_at=delivery.next_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        last_latency_ms=delivery.last_latency_ms,
        delivered_at=delivery.delivered_at,
        payload=json.loads(delivery.body) if attempts is not None else None,
        attempt_log=None if attempts is None else [AttemptOut(**vars(a)) for a in attempts],
    )


def not_found(error: WebhookNotFoundError) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, str(error))


async def own_subscription(state: State, caller: Principal, subscription_id: str) -> Subscription:
    try:
        subscription = await state.webhooks.subscription(subscription_id)
    except WebhookNotFoundError as error:
        raise not_found(error) from None
    if caller.customer_id is not None and subscription.customer_id != caller.customer_id:
        raise not_found(WebhookNotFoundError(f"no webhook subscription {subscription_id!r}"))
    return subscription


async def own_delivery(state: State, caller: Principal, delivery_id: str) -> Delivery:
    try:
        delivery = await state.webhooks.get(delivery_id)
    except WebhookNotFoundError as error:
        raise not_found(error) from None
    if not caller.sees_customer(delivery.customer_id):
        raise not_found(WebhookNotFoundError(f"no webhook delivery {delivery_id!r}"))
    return delivery


@router.post(
    "/webhooks",
    status_code=status.HTTP_201_CREATED,
    summary="Subscribe to job events",
)
async def create_subscription(
    body: SubscriptionIn, caller: ClientOrAdmin, state: State
) -> SubscriptionOut:
    """Deliveries of the chosen events to ``url``, signed with the returned ``secret``.
    Private, loopback and link-local targets are refused (422) unless allowlisted."""
    customer_id = caller.customer_id or body.customer_id
    if caller.customer_id is not None and body.customer_id not in (None, caller.customer_id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this key subscribes for customer {caller.customer_id!r}, not "
            f"{body.customer_id!r}; drop customer_id",
        )
    try:
        await state.webhook_guard.check(body.url)
    except WebhookTargetRefusedError as refused:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(refused)) from None
    except OSError as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"webhook URL {body.url!r} does not resolve ({error}); check the host name",
        ) from None
    subscription = await state.webhooks.add_subscription(
        customer_id=customer_id,
        url=body.url,
        events=frozenset(body.events),
        description=body.description,
    )
    return subscription_out(subscription, with_secret=True)


@router.get("/webhooks", summary="List subscriptions")
async def list_subscriptions(caller: ClientOrAdmin, state: State) -> SubscriptionsOut:
    """The caller's customer's subscriptions (an admin: all), without their secrets."""
    found = [
        subscription_out(subscription, with_secret=False)
        for subscription in await state.webhooks.subscriptions()
        if caller.customer_id in (None, subscription.customer_id)
    ]
    return SubscriptionsOut(subscriptions=found)


@router.get("/webhooks/job-secret", summary="The secret of job webhooks")
async def job_secret(caller: ClientOrAdmin, state: State) -> SecretOut:
    """Verifies deliveries to the ``webhook`` URL of this customer's jobs (an admin key: of
    jobs submitted without a customer)."""
    return SecretOut(secret=await state.webhooks.job_secret(caller.customer_id))


@router.get("/webhooks/{subscription_id}", summary="Get a subscription")
async def get_subscription(
    subscription_id: SubscriptionId, caller: ClientOrAdmin, state: State
) -> SubscriptionOut:
    subscription = await own_subscription(state, caller, subscription_id)
    return subscription_out(subscription, with_secret=True)


@router.delete("/webhooks/{subscription_id}", summary="Delete a subscription")
async def delete_subscription(
    subscription_id: SubscriptionId, caller: ClientOrAdmin, state: State
) -> SubscriptionOut:
    """Stops the subscription and answers what it was; its deliveries not yet sent are
    given up."""
    subscription = await own_subscription(state, caller, subscription_id)
    try:
        await state.webhooks.remove_subscription(subscription_id)
    except WebhookNotFoundError as error:  # deleted by a concurrent request
        raise not_found(error) from None
    return subscription_out(subscription, with_secret=False)


@router.get("/webhooks/{subscription_id}/deliveries", summary="A subscription's deliveries")
async def subscription_deliveries(
    subscription_id: SubscriptionId,
    caller: ClientOrAdmin,
    state: State,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeliveriesOut:
    """The latest deliveries first: status, attempts, last answer, next retry."""
    await own_subscription(state, caller, subscription_id)
    deliveries = await state.webhooks.subscription_log(subscription_id, limit)
    return DeliveriesOut(deliveries=[delivery_out(delivery) for delivery in deliveries])


@router.get("/jobs/{job_id}/webhooks", summary="A job's webhook deliveries")
async def job_deliveries(job: VisibleJob, state: State) -> DeliveriesOut:
    """Every delivery about the job (its own webhook and subscriptions), oldest first."""
    deliveries = await state.webhooks.job_log(job.id)
    return DeliveriesOut(deliveries=[delivery_out(delivery) for delivery in deliveries])


@router.get("/webhook-deliveries/{delivery_id}", summary="Get a delivery")
async def get_delivery(delivery_id: DeliveryId, caller: ClientOrAdmin, state: State) -> DeliveryOut:
    """The delivery with its body and every attempt."""
    delivery = await own_delivery(state, caller, delivery_id)
    return delivery_out(delivery, await state.webhooks.attempts(delivery_id))


@router.post("/webhook-deliveries/{delivery_id}/redeliver", summary="Send a delivery again")
async def redeliver(delivery_id: DeliveryId, caller: ClientOrAdmin, state: State) -> DeliveryOut:
    """Due again now, with the same webhook-id and a fresh retry window."""
    await own_delivery(state, caller, delivery_id)
    delivery = await state.webhooks.redeliver(delivery_id)
    return delivery_out(delivery, await state.webhooks.attempts(delivery_id))
