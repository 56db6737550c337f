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
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis

from emp_queue.api.audit import AuditLog, local_actor
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
        source: str = "emp keys create",
    ) -> IssuedKey:
        if role is Role.CLIENT and not customer_id:
            raise ConfigurationError(
                "a client key acts for one customer; give it one (--customer acme)"
            )
        if role is not Role.CLIENT and customer_id:
            raise ConfigurationError(
                f"a {role} key sees every customer; --customer only applies to client keys"
            )
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key_hash = hash_secret(secret)
        key = ApiKey(key_hash[:KEY_ID_LENGTH], role, customer_id, label, int(time.time() * 1000))
        record: dict[Any, str] = {
            "key_id": key.key_id,
            "role": role.value,
            "customer_id": customer_id or "",
            "label": label or "",
            "created_at_ms": str(key.created_at_ms),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.api_key(key_hash), mapping=record)
            pipe.hset(self._keys.api_keys, key.key_id, key_hash)
            await pipe.execute()
        detail = {"role": role.value, "customer_id": customer_id, "label": label}
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
