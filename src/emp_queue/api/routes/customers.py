"""Customer policies (weight and caps: admin keys set them, a client key reads its own) and
their usage."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel

from emp_queue.api.auth import Admin, ClientOrAdmin
from emp_queue.api.error_handlers import KEYED_ERRORS
from emp_queue.api.state import State
from emp_queue.api.strict_json import StrictJsonRoute
from emp_queue.core.customers import CustomerPolicy, CustomerView
from emp_queue.core.usage import DAY_MS, Granularity, UsageRow
from emp_queue.models import NAME_PATTERN

router = APIRouter(
    prefix="/api", tags=["customers"], responses=KEYED_ERRORS, route_class=StrictJsonRoute
)


class UsageOut(BaseModel):
    from_ms: int
    to_ms: int
    granularity: Granularity
    rows: list[UsageRow]


CustomerId = Annotated[str, Path(pattern=NAME_PATTERN, description="The customer's id.")]


@router.put("/customers/{customer_id}", summary="Set a customer's policy")
async def set_customer(
    customer_id: CustomerId, policy: CustomerPolicy, _caller: Admin, state: State
) -> CustomerView:
    """Replace the customer's weight and caps (admin keys only); the next claim and submit
    apply them. Fields left out mean no limit (weight: 1)."""
    return await state.queue.set_customer_policy(customer_id, policy)


@router.get("/customers/{customer_id}", summary="A customer's policy and counts")
async def get_customer(
    customer_id: CustomerId, caller: ClientOrAdmin, state: State
) -> CustomerView:
    """The policy (the default one when none was set), running and waiting jobs, recent
    claims. A client key reads its own customer only."""
    if not caller.sees_customer(customer_id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this key belongs to customer {caller.customer_id!r} and reads only its policy",
        )
    return await state.queue.customer(customer_id)


@router.get("/customers", summary="Customers with a policy")
async def list_customers(_caller: Admin, state: State) -> list[CustomerView]:
    """Every customer an admin set a policy for, with its counts (admin keys only)."""
    return [await state.queue.customer(c) for c in await state.queue.customers_with_policies()]


@router.delete("/customers/{customer_id}", summary="Remove a customer's policy")
async def delete_customer(customer_id: CustomerId, _caller: Admin, state: State) -> CustomerView:
    """Back to the default policy: weight 1, no caps (admin keys only)."""
    await state.queue.delete_customer_policy(customer_id)
    return await state.queue.customer(customer_id)


@router.get("/usage", summary="Usage per customer, service and pool")
async def get_usage(
    caller: ClientOrAdmin,
    state: State,
    customer: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    service: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    from_ms: Annotated[
        int | None, Query(alias="from", ge=0, description="ms; default: a day before 'to'")
    ] = None,
    to_ms: Annotated[int | None, Query(alias="to", ge=0, description="ms; default now")] = None,
    granularity: Granularity = Granularity.HOUR,
) -> UsageOut:
    """Attempts, completions, wait, run and GPU seconds and output bytes, per customer,
    service and pool, by hour or day (UTC). A client key sees its own customer only."""
    if caller.customer_id is not None:
        if customer not in (None, caller.customer_id):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this key reads customer {caller.customer_id!r}'s usage only, not {customer!r}",
            )
        customer = caller.customer_id
    end = to_ms if to_ms is not None else int(time.time() * 1000)
    start = from_ms if from_ms is not None else end - DAY_MS
    rows = await state.queue.usage(
        from_ms=start, to_ms=end, granularity=granularity, customer_id=customer, service=service
    )
    return UsageOut(from_ms=start, to_ms=end, granularity=granularity, rows=rows)
