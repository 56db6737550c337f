"""What a broker error means to the person who has to act on it.

A Redis/Valkey server that answers can still refuse a command: out of memory under
``maxmemory``, unable to save its snapshot (``MISCONF``), a replica that takes no writes
(``READONLY``: a plain URL pointed at a replica; through Sentinel it is a reconnect, see
``topology.py``), a script running past ``busy-reply-threshold`` (``BUSY``), too few replicas
for ``min-replicas-to-write`` (``NOREPLICAS``). Each is the operator's to fix, none is the
request's fault, and each passes once fixed: the API answers them 503 like an unreachable
broker, the CLI prints one line, workers keep their results and send them again.
"""

from __future__ import annotations

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Replies redis-py passes through as a plain ResponseError, by their leading word.
REFUSAL_PREFIXES: tuple[tuple[str, str], ...] = (
    (
        "MISCONF",
        "it refuses writes because it cannot save its snapshot to disk (MISCONF); fix its disk "
        "or persistence settings (INFO persistence says what failed)",
    ),
    (
        "BUSY",
        "it is busy running a long script (BUSY); it answers again when the script ends",
    ),
    (
        "NOREPLICAS",
        "fewer replicas than its min-replicas-to-write are connected (NOREPLICAS); bring the "
        "replicas back or lower that setting",
    ),
)
OUT_OF_MEMORY = (
    "it is out of memory (used memory > maxmemory) and refuses writes; raise its maxmemory, or "
    "keep less: a shorter EMP_RETENTION_S, a smaller EMP_EVENTS_MAXLEN"
)
READ_ONLY = (
    "it is a read-only replica (READONLY); point EMP_REDIS_URL at the primary, or at the "
    "Sentinels (redis+sentinel://...) so that a failover is followed"
)


def refusal(error: ResponseError) -> str | None:
    """Why the broker refused, and what to do, when ``error`` is a refusal; None for any other
    error reply (a script's own error, a bug)."""
    if isinstance(error, OutOfMemoryError):
        return OUT_OF_MEMORY
    if isinstance(error, ReadOnlyError):
        return READ_ONLY
    text = str(error)
    for prefix, meaning in REFUSAL_PREFIXES:
        if text.startswith(prefix):
            return meaning
    return None


def describe(error: RedisError) -> str:
    """One sentence for a person: what went wrong with the queue's Redis/Valkey server."""
    reply = str(error).rstrip(".")
    if isinstance(error, AuthenticationError | AuthorizationError):  # before: connection errors
        return (
            f"the queue's Redis/Valkey server refused the credentials ({reply}); put its user "
            "and password in EMP_REDIS_URL (redis://user:password@host:port/db)"
        )
    if isinstance(error, NoPermissionError):
        return (
            f"the user in EMP_REDIS_URL may not do what the queue needs ({reply}); its ACL must "
            "allow the queue's commands (data commands, FCALL and FUNCTION LOAD, MULTI, pub/sub) "
            "on the namespace's keys and channels, {<namespace>}:* (docs/redis.md)"
        )
    if reply.startswith("DB index is out of range"):
        return (
            f"the queue's Redis/Valkey server has no such database ({reply}): the number at the "
            "end of EMP_REDIS_URL (/0) must be below the server's `databases` setting"
        )
    if isinstance(error, RedisConnectionError | RedisTimeoutError):
        return (
            f"the queue's Redis/Valkey server did not answer ({reply}); start it, or check "
            "EMP_REDIS_URL (unset: the embedded Valkey under EMP_DATA_DIR)"
        )
    if isinstance(error, ResponseError):
        meaning = refusal(error)
        if meaning is not None:
            return f"the queue's Redis/Valkey server refused the command: {meaning} ({reply})"
    return f"the queue's Redis/Valkey server answered with an error: {reply}"
