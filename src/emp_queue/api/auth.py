"""Who is calling: the bearer key's role and customer, and its request budget.

A key's record is cached in the process for ``key_cache_s`` (a revoked key stops working
within that time), and its request budget is leased from Redis in chunks
(:mod:`emp_queue.api.rate_limit`), so authenticating a request rarely touches Redis.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from emp_queue.api.audit import PRINCIPAL_SCOPE_KEY
from emp_queue.api.key_scope import Access, check_request
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
    key_hash: str | None = None
    """The SHA-256 of the key (None: anonymous development mode), to look it up again."""
    access: Access = Access.FULL
    services: frozenset[str] = frozenset()
    """What the key may do within its role (api/key_scope.py)."""

    def sees_customer(self, customer_id: str | None) -> bool:
        return self.role is not Role.CLIENT or customer_id == self.customer_id


ANONYMOUS_ADMIN = Principal(key_id=None, role=Role.ADMIN, customer_id=None)


def unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, {"WWW-Authenticate": "Bearer"})


def too_many(message: str, retry_after_s: float) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS, message, {"Retry-After": f"{retry_after_s:g}"}
    )


class FailedAuthThrottle:
    """Unknown keys per client address in a fixed window: past the limit, an address is
    refused without a Redis lookup until the window ends (guessing keys costs the guesser)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._windows: dict[str, tuple[int, int]] = {}

    def _window(self) -> int:
        return int(time.monotonic() // self.window_s)

    def retry_after_s(self, address: str) -> float | None:
        window, failures = self._windows.get(address, (-1, 0))
        if window != self._window() or failures < self.limit:
            return None
        return max(1.0, (window + 1) * self.window_s - time.monotonic())

    def record(self, address: str) -> None:
        current = self._window()
        window, failures = self._windows.get(address, (current, 0))
        if len(self._windows) > 10_000:  # bound the table against many addresses
            self._windows.clear()
        self._windows[address] = (current, failures + 1 if window == current else 1)


class StreamSlots:
    """Open event streams and WebSockets per key, on this replica."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def check(self, principal: Principal) -> None:
        """429 when the key already has ``limit`` streams open."""
        if self._open.get(principal.key_hash or "anonymous", 0) >= self.limit:
            raise too_many(
                f"API key {principal.key_id} already has {self.limit} event streams and "
                "WebSockets open on this server; close one first (EMP_API_MAX_STREAMS_PER_KEY)",
                1,
            )

    @contextlib.contextmanager
    def hold(self, principal: Principal) -> Iterator[None]:
        """One stream of ``principal`` for the block; 429 when its key has ``limit`` open."""
        self.check(principal)
        name = principal.key_hash or "anonymous"
        self._open[name] = self._open.get(name, 0) + 1
        try:
            yield
        finally:
            self._open[name] -= 1
            if not self._open[name]:
                del self._open[name]


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
        self._failures = FailedAuthThrottle(settings.auth_failures_per_minute, 60.0)
        self.streams = StreamSlots(settings.max_streams_per_key)
        self._known: dict[str, tuple[float, ApiKeyRecord | None]] = {}

    async def authenticate(self, secret: str, address: str | None = None) -> Principal:
        """The key's caller, charged one request; ``address`` (the client's) is throttled
        when it sends too many unknown keys."""
        if address is not None and (wait_s := self._failures.retry_after_s(address)) is not None:
            raise too_many(
                f"{self._failures.limit} unknown API keys came from {address} within a minute; "
                f"retry after {wait_s:.0f} s with a valid key",
                round(wait_s),
            )
        key_hash = hash_secret(secret)
        key = await self._key(key_hash)
        if key is None:
            if address is not None:
                self._failures.record(address)
            raise unauthorized("this API key is unknown or revoked; create one: emp keys create")
        if key.expired(int(time.time() * 1000)):
            assert key.expires_at_ms is not None
            ended = datetime.fromtimestamp(key.expires_at_ms / 1000, UTC)
            raise unauthorized(
                f"API key {key.key_id} expired at {ended:%Y-%m-%d %H:%M:%S} UTC; use the key "
                "that replaced it, or create one: emp keys create"
            )
        principal = Principal(
            key.key_id, key.role, key.customer_id, key_hash, key.access, frozenset(key.services)
        )
        await self.charge(principal)
        return principal

    async def charge(self, principal: Principal) -> None:
        """Spend one request of the key's budget (every REST request, every WebSocket
        message); 429 when it is spent."""
        if self._limiter is None or principal.key_hash is None:
            return
        retry_after_s = await self._limiter.charge(principal.key_hash)
        if retry_after_s is not None:
            raise too_many(
                f"API key {principal.key_id} made more than {self._limiter.burst} requests "
                f"in {self._limiter.window_ms} ms; retry after {retry_after_s:g} s",
                retry_after_s,
            )

    async def is_current(self, principal: Principal) -> bool:
        """Whether the key still exists and has not expired: False within ``key_cache_s`` of
        its revocation."""
        if principal.key_hash is None:
            return True
        key = await self._key(principal.key_hash)
        return key is not None and not key.expired(int(time.time() * 1000))

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
        check_request(principal.access, request.method, request.url.path)
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
        address = request.client.host if request.client is not None else None
        principal = await state.authenticator.authenticate(secret, address)
    # For the audit log (api/audit.py), which records who made an operator request.
    setattr(request.state, PRINCIPAL_SCOPE_KEY, principal)
    return principal


CLIENT_OR_ADMIN_KEY = ApiKey(Role.CLIENT, Role.ADMIN)

Caller = Annotated[Principal, Depends(ApiKey())]
ClientOrAdmin = Annotated[Principal, Depends(CLIENT_OR_ADMIN_KEY)]
Operator = Annotated[Principal, Depends(ApiKey(Role.WORKER, Role.ADMIN))]
Admin = Annotated[Principal, Depends(ApiKey(Role.ADMIN))]
