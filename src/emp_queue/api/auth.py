"""Who is calling: the bearer key's role and customer, and its request budget.

A key's record is cached in the process for ``key_cache_s`` (a revoked key stops working
within that time), and its request budget is leased from Redis in chunks
(:mod:`emp_queue.api.rate_limit`), so authenticating a request rarely touches Redis.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis

from emp_queue.api.key_store import Role, decode_key, hash_secret
from emp_queue.api.rate_limit import RateLimiter
from emp_queue.api.settings import ApiSettings
from emp_queue.core.keys import Keys

if TYPE_CHECKING:
    from emp_queue.api.state import ApiState

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `emp keys create`, sent as `Authorization: Bearer <key>`.",
)


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
        self._known: dict[str, tuple[float, Principal | None]] = {}

    async def authenticate(self, secret: str) -> Principal:
        key_hash = hash_secret(secret)
        principal = await self._principal(key_hash)
        if principal is None:
            raise unauthorized("this API key is unknown or revoked; create one: emp keys create")
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

    async def _principal(self, key_hash: str) -> Principal | None:
        now = time.monotonic()
        cached = self._known.get(key_hash)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = await self._redis.hgetall(self._keys.api_key(key_hash))
        principal = None
        if record:
            key = decode_key(record)
            principal = Principal(key.key_id, key.role, key.customer_id)
        if len(self._known) > 10_000:  # bound the cache against a flood of random keys
            self._known.clear()
        if self._cache_s:
            self._known[key_hash] = (now + self._cache_s, principal)
        return principal


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    state: ApiState = request.app.state.emp
    if credentials is None:
        if state.settings.dev_anonymous:
            return ANONYMOUS_ADMIN
        raise unauthorized("this route needs an API key: Authorization: Bearer <key>")
    return await state.authenticator.authenticate(credentials.credentials)


def require(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting only keys with one of ``roles``."""
    allowed = ", ".join(role.value for role in roles)

    async def check(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
        if principal.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"a {principal.role.value} key may not do this; it needs a key with role {allowed}",
            )
        return principal

    return check


Caller = Annotated[Principal, Depends(authenticated)]
ClientOrAdmin = Annotated[Principal, Depends(require(Role.CLIENT, Role.ADMIN))]
Operator = Annotated[Principal, Depends(require(Role.WORKER, Role.ADMIN))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
