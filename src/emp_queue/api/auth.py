"""Who is calling: the bearer key's role and customer, and its request budget.

A key's record is cached in the process for ``key_cache_s`` (a revoked key stops working
within that time), and its request budget is leased from Redis in chunks
(:mod:`emp_queue.api.rate_limit`), so authenticating a request rarely touches Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from emp_queue.api.audit import PRINCIPAL_SCOPE_KEY
from emp_queue.api.key_store import ApiKey as ApiKeyRecord
from emp_queue.api.key_store import Role, decode_key, hash_secret
from emp_queue.api.rate_limit import RateLimiter
from emp_queue.api.settings import ApiSettings
from emp_queue.core.keys import Keys

if TYPE_CHECKING:
    from emp_queue.api.state import ApiState

KEY_DESCRIPTION = "An API key from `emp keys create`, sent as `Authorization: Bearer <key>`."


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    key_id: str | None
    role: Role
    customer_id: str | None

    def sees_customer(self, customer_id: str | None) -> bool:
        return self.role is not Role.CLIENT or customer_id == self.customer_id


ANONYMOUS_ADMIN = Principal(key_id=None, role=Role.ADMIN, customer_id=None)


def unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, {"WWW-Authenticate": "Bearer"})


class Authenticator:
    """Resolves a bearer key to a :class:`Principal`, charging it one request."""

    def __init__(self, redis: Redis, keys: Keys, settings: ApiSettings) -> None:
        self._redis = redis
        self._keys = keys
        self._cache_s = settings.key_cache_s
        self._limiter = (
            RateLimiter(redis, keys, settings.rate_limit_burst, settings.rate_window_ms)
            if settings.rate_window_ms
            else None
        )
        self._known: dict[str, tuple[float, ApiKeyRecord | None]] = {}

    async def authenticate(self, secret: str) -> Principal:
        key_hash = hash_secret(secret)
        key = await self._key(key_hash)
        if key is None:
            raise unauthorized("this API key is unknown or revoked; create one: emp keys create")
        if key.expired(int(time.time() * 1000)):
            assert key.expires_at_ms is not None
            ended = datetime.fromtimestamp(key.expires_at_ms / 1000, UTC)
            raise unauthorized(
                f"API key {key.key_id} expired at {ended:%Y-%m-%d %H:%M:%S} UTC; use the key "
                "that replaced it, or create one: emp keys create"
            )
        principal = Principal(key.key_id, key.role, key.customer_id)
        if self._limiter is not None:
            retry_after_s = await self._limiter.charge(key_hash)
            if retry_after_s is not None:
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    f"API key {principal.key_id} made more than {self._limiter.burst} requests "
                    f"in {self._limiter.window_ms} ms; retry after {retry_after_s:g} s",
                    {"Retry-After": f"{retry_after_s:g}"},
                )
        return principal

    async def _key(self, key_hash: str) -> ApiKeyRecord | None:
        now = time.monotonic()
        cached = self._known.get(key_hash)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = await self._redis.hgetall(self._keys.api_key(key_hash))
        key = decode_key(record) if record else None
        if len(self._known) > 10_000:  # bound the cache against a flood of random keys
            self._known.clear()
        if self._cache_s:
            self._known[key_hash] = (now + self._cache_s, key)
        return key


class ApiKey(SecurityBase):
    """The bearer key as one dependency: read from the header, resolved to its
    :class:`Principal`, charged one request and checked against ``roles`` (any role when
    none is given). It declares the OpenAPI security scheme, as ``HTTPBearer`` would.

    One dependency instead of a chain (header → key → role) is deliberate: FastAPI's cost
    per dependency is a large share of a small request's time (docs/benchmarks.md).
    """

    def __init__(self, *roles: Role) -> None:
        self.model = HTTPBearerModel(description=KEY_DESCRIPTION)
        self.scheme_name = "ApiKey"
        self.roles = frozenset(roles)
        self.allowed = ", ".join(role.value for role in roles)

    async def __call__(self, request: Request) -> Principal:
        principal = await authenticated(request, bearer_secret(request))
        if self.roles and principal.role not in self.roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"a {principal.role.value} key may not do this; it needs a key with role "
                f"{self.allowed}",
            )
        return principal


def bearer_secret(request: HTTPConnection) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, if there is one."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    secret = secret.strip()
    return secret if scheme.lower() == "bearer" and secret else None


async def authenticated(request: HTTPConnection, secret: str | None) -> Principal:
    state: ApiState = request.app.state.emp
    if secret is None:
        if not state.settings.dev_anonymous:
            raise unauthorized("this route needs an API key: Authorization: Bearer <key>")
        principal = ANONYMOUS_ADMIN
    else:
        principal = await state.authenticator.authenticate(secret)
    # For the audit log (api/audit.py), which records who made an operator request.
    setattr(request.state, PRINCIPAL_SCOPE_KEY, principal)
    return principal


CLIENT_OR_ADMIN_KEY = ApiKey(Role.CLIENT, Role.ADMIN)

Caller = Annotated[Principal, Depends(ApiKey())]
ClientOrAdmin = Annotated[Principal, Depends(CLIENT_OR_ADMIN_KEY)]
Operator = Annotated[Principal, Depends(ApiKey(Role.WORKER, Role.ADMIN))]
Admin = Annotated[Principal, Depends(ApiKey(Role.ADMIN))]
