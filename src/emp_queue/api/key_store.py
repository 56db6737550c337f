"""API keys: created once, stored only as their SHA-256 under the queue namespace.

A key is ``emp_`` + 43 URL-safe characters from :func:`secrets.token_urlsafe`; whoever holds it
acts with its role. Redis holds the hash, never the key, so a copy of the database cannot be
used to call the API. Its id (the first 12 hex digits of the hash) is what lists and revocations
name.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis

from emp_queue.api.audit import AuditLog, local_actor
from emp_queue.api.key_scope import Access
from emp_queue.core.keys import Keys
from emp_queue.core.replies import as_text
from emp_queue.errors import ConfigurationError, EmpError

KEY_PREFIX = "emp_"
KEY_ID_LENGTH = 12


class Role(StrEnum):
    CLIENT = "client"
    """Submits, reads and cancels its own customer's jobs."""
    WORKER = "worker"
    """Worker and machine operations: the fleet's views, deregistering workers."""
    ADMIN = "admin"
    """Everything."""


class ApiKeyNotFoundError(EmpError):
    """No API key has this id; ``emp keys list`` shows the ids that exist."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    role: Role
    customer_id: str | None
    label: str | None
    created_at_ms: int
    expires_at_ms: int | None = None
    """Refused from this moment on (None: never)."""
    access: Access = Access.FULL
    services: tuple[str, ...] = ()
    """Services it may submit jobs for; empty: any (api/key_scope.py)."""

    def expired(self, now_ms: int) -> bool:
        return self.expires_at_ms is not None and now_ms >= self.expires_at_ms


@dataclass(frozen=True)
class IssuedKey:
    """A freshly created key: ``secret`` is shown once and never stored."""

    key: ApiKey
    secret: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def decode_key(record: dict[Any, Any]) -> ApiKey:
    fields = {as_text(k): as_text(v) for k, v in record.items()}
    return ApiKey(
        key_id=fields["key_id"],
        role=Role(fields["role"]),
        customer_id=fields.get("customer_id") or None,
        label=fields.get("label") or None,
        created_at_ms=int(fields["created_at_ms"]),
        expires_at_ms=int(fields["expires_at_ms"]) if fields.get("expires_at_ms") else None,
        access=Access(fields.get("access") or Access.FULL),
        services=tuple(fields["services"].split(",")) if fields.get("services") else (),
    )


class ApiKeyStore:
    """Creates, lists, revokes and looks up the API keys of one namespace."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._audit = AuditLog(redis, keys)

    async def create(
        self,
        role: Role,
        *,
        customer_id: str | None = None,
        label: str | None = None,
        expires_in_s: float | None = None,
        access: Access = Access.FULL,
        services: tuple[str, ...] = (),
        source: str = "emp keys create",
    ) -> IssuedKey:
        """A new key; with ``expires_in_s`` it is refused (401) once that time has passed."""
        if role is Role.CLIENT and not customer_id:
            raise ConfigurationError(
                "a client key acts for one customer; give it one (--customer acme)"
            )
        if role is not Role.CLIENT and customer_id:
            raise ConfigurationError(
                f"a {role} key sees every customer; --customer only applies to client keys"
            )
        if expires_in_s is not None and expires_in_s <= 0:
            raise ConfigurationError(
                f"a key's lifetime must be positive, not {expires_in_s:g} s; "
                "leave it out for a key that never expires"
            )
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key_hash = hash_secret(secret)
        now_ms = int(time.time() * 1000)
        expires_at_ms = None if expires_in_s is None else now_ms + round(expires_in_s * 1000)
        key = ApiKey(
            key_hash[:KEY_ID_LENGTH],
            role,
            customer_id,
            label,
            now_ms,
            expires_at_ms,
            access,
            tuple(sorted(set(services))),
        )
        record: dict[Any, str] = {
            "key_id": key.key_id,
            "role": role.value,
            "customer_id": customer_id or "",
            "label": label or "",
            "created_at_ms": str(key.created_at_ms),
            "expires_at_ms": "" if expires_at_ms is None else str(expires_at_ms),
            "access": access.value,
            "services": ",".join(key.services),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.api_key(key_hash), mapping=record)
            pipe.hset(self._keys.api_keys, key.key_id, key_hash)
            await pipe.execute()
        detail = {
            "role": role.value,
            "customer_id": customer_id,
            "label": label,
            "expires_at_ms": expires_at_ms,
            "access": access.value,
            "services": list(key.services),
        }
        await self._audit.append(
            "key.create", key.key_id, actor=local_actor(), source=source, detail=detail
        )
        return IssuedKey(key, secret)

    async def list(self) -> list[ApiKey]:
        index: dict[Any, Any] = await self._redis.hgetall(self._keys.api_keys)
        if not index:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key_hash in index.values():
                pipe.hgetall(self._keys.api_key(as_text(key_hash)))
            records = await pipe.execute()
        keys = [decode_key(record) for record in records if record]
        return sorted(keys, key=lambda k: k.created_at_ms)

    async def rotate(
        self, key_id: str, *, overlap_s: float, source: str = "emp keys rotate"
    ) -> tuple[IssuedKey, ApiKey]:
        """A new key with the old one's role, customer, label and lifetime; the old key keeps
        working for ``overlap_s`` more seconds (never longer than it would have), so clients
        can switch over without a refused request. Returns the new key and the old one."""
        if overlap_s < 0:
            raise ConfigurationError(f"the overlap must be 0 s or more, not {overlap_s:g} s")
        old = await self._find(key_id)
        now_ms = int(time.time() * 1000)
        if old.expired(now_ms):
            raise ConfigurationError(
                f"API key {key_id} has already expired; create a new one (emp keys create)"
            )
        lifetime_ms = None if old.expires_at_ms is None else old.expires_at_ms - old.created_at_ms
        issued = await self.create(
            old.role,
            customer_id=old.customer_id,
            label=old.label,
            expires_in_s=None if lifetime_ms is None else lifetime_ms / 1000,
            access=old.access,
            services=old.services,
            source=source,
        )
        ends_ms = now_ms + round(overlap_s * 1000)
        if old.expires_at_ms is not None:
            ends_ms = min(ends_ms, old.expires_at_ms)
        key_hash = await self._redis.hget(self._keys.api_keys, key_id)
        if key_hash is not None:
            await self._redis.hset(
                self._keys.api_key(as_text(key_hash)), "expires_at_ms", str(ends_ms)
            )
        detail = {"new_key_id": issued.key.key_id, "old_expires_at_ms": ends_ms}
        await self._audit.append(
            "key.rotate", key_id, actor=local_actor(), source=source, detail=detail
        )
        return issued, replace(old, expires_at_ms=ends_ms)

    async def _find(self, key_id: str) -> ApiKey:
        key_hash = await self._redis.hget(self._keys.api_keys, key_id)
        record: dict[Any, Any] = (
            await self._redis.hgetall(self._keys.api_key(as_text(key_hash))) if key_hash else {}
        )
        if not record:
            raise ApiKeyNotFoundError(
                f"no API key with id {key_id!r} in namespace {self._keys.namespace!r}; "
                "`emp keys list` shows the ids"
            )
        return decode_key(record)

    async def revoke(self, key_id: str, *, source: str = "emp keys revoke") -> ApiKey:
        key_hash = await self._redis.hget(self._keys.api_keys, key_id)
        record: dict[Any, Any] = {}
        if key_hash is not None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(self._keys.api_key(as_text(key_hash)))
                pipe.delete(self._keys.api_key(as_text(key_hash)))
                pipe.hdel(self._keys.api_keys, key_id)
                record, _, _ = await pipe.execute()
        if not record:
            raise ApiKeyNotFoundError(
                f"no API key with id {key_id!r} in namespace {self._keys.namespace!r}; "
                "`emp keys list` shows the ids"
            )
        revoked = decode_key(record)
        detail = {"role": revoked.role.value, "customer_id": revoked.customer_id}
        await self._audit.append(
            "key.revoke", key_id, actor=local_actor(), source=source, detail=detail
        )
        return revoked

    async def is_valid(self, secret: str) -> bool:
        """Whether ``secret`` is a key of this namespace that has not been revoked."""
        return bool(await self._redis.exists(self._keys.api_key(hash_secret(secret))))

    async def any_exists(self) -> bool:
        return bool(await self._redis.hlen(self._keys.api_keys))
