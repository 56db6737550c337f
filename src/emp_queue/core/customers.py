"""Customer policies (weight, running and waiting caps) and what the scripts count per customer.

Policies live in Redis (``customer:<id>`` hashes, listed in the ``customers`` set), so every
worker's claim and every API replica's submit read the same ones; ``lua/customers.lua`` reads
them atomically in the scripts. An absent field means no limit; an absent policy means weight 1
and no limits. Counts (running jobs overall and per service, waiting jobs) and recent claims
are kept by the scripts in ``customers:counts`` and ``customers:usage``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from emp_queue.core.keys import Keys
from emp_queue.core.replies import as_text
from emp_queue.models import ServiceName

SERVICE_CAP_PREFIX = "max_running:"


class CustomerPolicy(BaseModel):
    """What an admin sets for one customer (``PUT /api/customers/{id}``, ``emp customers set``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: Annotated[float, Field(gt=0, le=1000)] = Field(
        default=1.0,
        description="Share of the fleet relative to other customers (2 = twice a weight-1 one).",
    )
    max_running: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Most jobs of the customer running at once, all services."
    )
    max_running_by_service: dict[ServiceName, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, description="Most jobs running at once, per service."
    )
    max_pending: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Most waiting jobs; a submit beyond it is refused (429)."
    )

    def to_hash(self) -> dict[str, str]:
        fields = {"weight": repr(float(self.weight))}
        if self.max_running is not None:
            fields["max_running"] = str(self.max_running)
        if self.max_pending is not None:
            fields["max_pending"] = str(self.max_pending)
        for service, cap in self.max_running_by_service.items():
            fields[SERVICE_CAP_PREFIX + service] = str(cap)
        return fields

    @classmethod
    def from_hash(cls, raw: dict[Any, Any]) -> CustomerPolicy:
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        by_service = {
            name.removeprefix(SERVICE_CAP_PREFIX): int(value)
            for name, value in fields.items()
            if name.startswith(SERVICE_CAP_PREFIX)
        }
        return cls(
            weight=float(fields.get("weight", 1.0)),
            max_running=int(fields["max_running"]) if "max_running" in fields else None,
            max_pending=int(fields["max_pending"]) if "max_pending" in fields else None,
            max_running_by_service=by_service,
        )


def decayed_usage(stored: float, stamp_ms: int | None, now_ms: int, half_life_ms: float) -> float:
    """Recent claims at ``now_ms`` of a value stored at ``stamp_ms``, as ``customers.lua`` reads
    it: halved every half-life."""
    since = 0 if stamp_ms is None else now_ms - stamp_ms
    if stored > 0 and since > 0:
        return float(stored * 2.0 ** (-since / half_life_ms))
    return stored


class CustomerView(BaseModel):
    """A customer's policy with what it has now (``GET /api/customers/{id}``)."""

    customer_id: str
    policy: CustomerPolicy
    has_policy: bool
    running: int
    running_by_service: dict[str, int]
    waiting: int
    recent_claims: float = Field(description="Claims of the last half-life or so, decayed.")

    def running_cap_reached(self, service: str) -> str | None:
        """Why one more job of this service would wait for the customer's cap, or None."""
        service_cap = self.policy.max_running_by_service.get(service)
        if service_cap is not None and self.running_by_service.get(service, 0) >= service_cap:
            return (
                f"customer {self.customer_id} is at its cap of {service_cap} running {service} jobs"
            )
        cap = self.policy.max_running
        if cap is not None and self.running >= cap:
            return f"customer {self.customer_id} is at its cap of {cap} running jobs"
        return None


async def set_policy(redis: Redis, keys: Keys, customer_id: str, policy: CustomerPolicy) -> None:
    """Replace the customer's policy (atomically: a claim sees the old or the new one)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.customer(customer_id))
        pipe.hset(keys.customer(customer_id), mapping=policy.to_hash())  # type: ignore[arg-type]
        pipe.sadd(keys.customers, customer_id)
        pipe.set(keys.customers_version, uuid.uuid4().hex)
        await pipe.execute()


async def delete_policy(redis: Redis, keys: Keys, customer_id: str) -> bool:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.customer(customer_id))
        pipe.srem(keys.customers, customer_id)
        pipe.set(keys.customers_version, uuid.uuid4().hex)
        deleted, _, _ = await pipe.execute()
    return bool(deleted)


async def view(redis: Redis, keys: Keys, customer_id: str, half_life_ms: float) -> CustomerView:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.customer(customer_id))
        pipe.hgetall(keys.customer_counts)
        pipe.hmget(keys.customer_usage, customer_id, f"t|{customer_id}")
        pipe.time()
        raw_policy, raw_counts, (raw_usage, raw_stamp), (seconds, micros) = await pipe.execute()
    counts = {as_text(k): int(v) for k, v in raw_counts.items()}
    prefix = f"running|{customer_id}|"
    return CustomerView(
        customer_id=customer_id,
        policy=CustomerPolicy.from_hash(raw_policy) if raw_policy else CustomerPolicy(),
        has_policy=bool(raw_policy),
        running=max(0, counts.get(f"running|{customer_id}", 0)),
        running_by_service={
            name.removeprefix(prefix): n
            for name, n in counts.items()
            if name.startswith(prefix) and n > 0
        },
        waiting=max(0, counts.get(f"waiting|{customer_id}", 0)),
        recent_claims=decayed_usage(
            float(as_text(raw_usage)) if raw_usage else 0.0,
            int(raw_stamp) if raw_stamp else None,
            int(seconds) * 1000 + int(micros) // 1000,
            half_life_ms,
        ),
    )


async def with_policies(redis: Redis, keys: Keys) -> list[str]:
    members: Any = await redis.smembers(keys.customers)
    return sorted(as_text(m) for m in members)


class CustomerFigures(BaseModel):
    """Every customer's counts now and totals since the start (for ``/metrics``)."""

    running: dict[str, int]
    waiting: dict[str, int]
    totals: dict[str, dict[str, int]]


async def figures(redis: Redis, keys: Keys) -> CustomerFigures:
    """Read ``customers:counts`` and ``customers:totals`` (customer ``""``: jobs without one)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.customer_counts)
        pipe.hgetall(keys.customer_totals)
        raw_counts, raw_totals = await pipe.execute()
    running: dict[str, int] = {}
    waiting: dict[str, int] = {}
    for field, value in raw_counts.items():
        kind, _, rest = as_text(field).partition("|")
        if kind == "running" and "|" not in rest:
            running[rest] = max(0, int(value))
        elif kind == "waiting":
            waiting[rest] = max(0, int(value))
    totals: dict[str, dict[str, int]] = {}
    for field, value in raw_totals.items():
        customer, _, measure = as_text(field).rpartition("|")
        totals.setdefault(customer, {})[measure] = int(value)
    return CustomerFigures(running=running, waiting=waiting, totals=totals)
