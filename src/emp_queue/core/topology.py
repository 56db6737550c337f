"""Finding the primary: one server, a Sentinel-watched primary, or the cluster node of a namespace.

``EMP_REDIS_URL`` takes three forms:

* ``redis://``, ``rediss://``, ``unix://`` — one server, as redis-py reads it.
* ``redis+sentinel://[user:password@]h1:26379,h2:26379/<master>/<db>`` — the sentinels are
  asked for ``<master>``'s address each time a connection opens.
* ``redis+cluster://[user:password@]h1:7000,h2:7001/`` — a Redis/Valkey Cluster. Every key of
  a namespace lives in one hash slot (``{<namespace>}:``), so a process of that namespace
  talks only to the primary that owns the slot, found with ``CLUSTER SLOTS`` from the nodes
  the URL names.

In the last two forms a connection re-resolves the primary whenever it (re)connects, and a
reply that says the node is no longer the primary (``READONLY``, ``MOVED``, a demoted
primary unblocking its clients) closes the connection and surfaces as a
``redis.exceptions.ConnectionError``: the caller's usual outage handling retries, and the
retry reaches the new primary. Nothing needs a restart after a failover.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError, ResponseError

from emp_queue.errors import ConfigurationError

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
LOOKUP_TIMEOUT_S = 1.0
"""How long one sentinel or cluster node may take to answer where the primary is."""

URL_OPTIONS = {
    "max_connections": int,
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "sentinel_username": str,
    "sentinel_password": str,
}
_NOT_PRIMARY_REPLIES = ("MOVED ", "UNBLOCKED force unblock")


@dataclass(frozen=True)
class ReplicatedUrl:
    """A parsed ``redis+sentinel://`` or ``redis+cluster://`` URL."""

    scheme: str
    nodes: tuple[tuple[str, int], ...]
    master: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def is_replicated(url: str) -> bool:
    return url.startswith((SENTINEL_SCHEME + "://", CLUSTER_SCHEME + "://"))


def _nodes(netloc: str, url: str) -> tuple[tuple[str, int], ...]:
    hosts = netloc.rpartition("@")[2]
    nodes = []
    for part in hosts.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(
                f"EMP_REDIS_URL {url!r} names the node {part!r}; write each node as host:port, "
                "separated by commas"
            )
        nodes.append((host.strip("[]"), int(port)))
    return tuple(nodes)


def parse_replicated_url(url: str) -> ReplicatedUrl:
    split = urlsplit(url)
    userinfo = split.netloc.rpartition("@")[0]
    username, _, password = userinfo.partition(":")
    options: dict[str, Any] = {}
    for name, value in parse_qsl(split.query):
        if name not in URL_OPTIONS:
            raise ConfigurationError(
                f"EMP_REDIS_URL option {name!r} is unknown; use {', '.join(URL_OPTIONS)}"
            )
        try:
            options[name] = URL_OPTIONS[name](value)
        except ValueError as error:
            raise ConfigurationError(f"EMP_REDIS_URL option {name}={value!r}: {error}") from error
    parts = [unquote(part) for part in split.path.split("/") if part]
    master, db = "", 0
    if split.scheme == SENTINEL_SCHEME:
        if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise ConfigurationError(
                f"EMP_REDIS_URL {url!r} lacks the master's name: write "
                "redis+sentinel://h1:26379,h2:26379/<master>/<db>"
            )
        master, db = parts[0], int(parts[1]) if len(parts) == 2 else 0
    elif parts:
        raise ConfigurationError(
            f"EMP_REDIS_URL {url!r} has a path; a cluster has no databases: write "
            "redis+cluster://h1:7000,h2:7001"
        )
    return ReplicatedUrl(
        scheme=split.scheme,
        nodes=_nodes(split.netloc, url),
        master=master,
        db=db,
        username=unquote(username) or None,
        password=unquote(password) or None,
        options=options,
    )


class Locator(Protocol):
    async def primary(self) -> tuple[str, int]:
        """The primary's address now; raises ``redis.exceptions.ConnectionError`` if unknown."""

    def describe(self) -> str: ...


def _lookup_client(host: str, port: int, **auth: str | None) -> Redis:
    return Redis(
        host=host,
        port=port,
        socket_timeout=LOOKUP_TIMEOUT_S,
        socket_connect_timeout=LOOKUP_TIMEOUT_S,
        **auth,  # type: ignore[arg-type]
    )


async def _ask_each(
    nodes: Sequence[tuple[str, int]], question: str, auth: dict[str, str | None]
) -> list[tuple[tuple[str, int], Any]]:
    """``question`` to each node in a random order until one answers; the answers given."""
    errors = []
    for host, port in random.sample(list(nodes), len(nodes)):
        client = _lookup_client(host, port, **auth)
        try:
            reply = await client.execute_command(*question.split())  # type: ignore[no-untyped-call]
            return [((host, port), reply)]
        except RedisError as error:
            errors.append(f"{host}:{port}: {error}")
        finally:
            await client.aclose()
    raise RedisConnectionError(f"no node answered {question!r}: {'; '.join(errors)}")


@dataclass(frozen=True)
class SentinelLocator:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    username: str | None = None
    password: str | None = None

    async def primary(self) -> tuple[str, int]:
        auth = {"username": self.username, "password": self.password}
        [(_, address)] = await _ask_each(
            self.sentinels, f"SENTINEL GET-MASTER-ADDR-BY-NAME {self.master}", auth
        )
        if not address:
            raise RedisConnectionError(
                f"the sentinels {self.describe()} do not monitor a master named {self.master!r}"
            )
        host, port = address
        return _text(host), int(port)

    def describe(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.sentinels)


@dataclass(frozen=True)
class ClusterLocator:
    seeds: tuple[tuple[str, int], ...]
    slot: int
    username: str | None = None
    password: str | None = None

    async def primary(self) -> tuple[str, int]:
        auth = {"username": self.username, "password": self.password}
        [(asked, ranges)] = await _ask_each(self.seeds, "CLUSTER SLOTS", auth)
        for start, end, owner, *_replicas in ranges:
            if int(start) <= self.slot <= int(end):
                host = _text(owner[0]) or asked[0]  # an empty host means "the node you asked"
                return host, int(owner[1])
        raise RedisConnectionError(f"no primary of the cluster at {self.describe()} owns slot "
                                   f"{self.slot}; check CLUSTER SLOTS")  # fmt: skip

    def describe(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.seeds)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class LocatedConnection(Connection):
    """A connection to wherever the locator says the primary is, asked at every (re)connect."""

    def __init__(self, *, locator: Locator, **kwargs: Any) -> None:
        self.locator = locator
        super().__init__(**kwargs)

    async def _connect(self) -> None:
        self.host, self.port = await self.locator.primary()
        await super()._connect()  # type: ignore[no-untyped-call]

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 (redis-py's signature)
        *,
        disconnect_on_error: bool = True,
        push_request: bool | None = False,
    ) -> Any:
        try:
            return await super().read_response(
                disable_decoding=disable_decoding,
                timeout=timeout,
                disconnect_on_error=disconnect_on_error,
                push_request=push_request,
            )
        except ResponseError as error:
            if not isinstance(error, ReadOnlyError) and not str(error).startswith(
                _NOT_PRIMARY_REPLIES
            ):
                raise
            # This node is no longer the primary (demoted, or the slot moved): the next
            # connect asks again.
            await self.disconnect()
            raise RedisConnectionError(
                f"{self.host}:{self.port} is no longer the primary ({error}); "
                f"reconnecting through {self.locator.describe()}"
            ) from error


def locator_for(parsed: ReplicatedUrl, namespace: str | None) -> Locator:
    if parsed.scheme == SENTINEL_SCHEME:
        return SentinelLocator(
            parsed.nodes,
            parsed.master,
            parsed.options.get("sentinel_username"),
            parsed.options.get("sentinel_password"),
        )
    if namespace is None:
        raise ConfigurationError(
            "a redis+cluster:// EMP_REDIS_URL needs the namespace to find its slot's primary; "
            "pass it to connect()"
        )
    return ClusterLocator(parsed.nodes, namespace_slot(namespace), parsed.username, parsed.password)


def namespace_slot(namespace: str) -> int:
    """The cluster hash slot every key of ``namespace`` lives in."""
    slot: int = key_slot(("{" + namespace + "}").encode())
    return slot


SlotRange = tuple[int, int, str]
"""First slot, last slot, and the ``host:port`` of the primary that owns them."""


async def cluster_slot_ranges(url: str) -> list[SlotRange]:
    """Who owns which slots now, from the nodes a ``redis+cluster://`` URL names."""
    parsed = parse_replicated_url(url)
    if parsed.scheme != CLUSTER_SCHEME:
        raise ConfigurationError(f"EMP_REDIS_URL {url!r} is not a redis+cluster:// URL")
    auth = {"username": parsed.username, "password": parsed.password}
    [(asked, ranges)] = await _ask_each(parsed.nodes, "CLUSTER SLOTS", auth)
    return [
        (int(start), int(end), f"{_text(owner[0]) or asked[0]}:{int(owner[1])}")
        for start, end, owner, *_ in ranges
    ]


def spread_namespaces(ranges: Sequence[SlotRange], prefix: str, count: int) -> list[SlotRange]:
    """``count`` namespace names ``<prefix>-<n>``, as evenly over the primaries as they divide:
    each as (name's slot, slot, owner) — the first item is the name's index ``n``."""
    primaries = sorted({owner for *_, owner in ranges})
    wanted = {owner: count // len(primaries) + (index < count % len(primaries))
              for index, owner in enumerate(primaries)}  # fmt: skip
    chosen: list[SlotRange] = []
    index = 0
    while len(chosen) < count:
        slot = namespace_slot(f"{prefix}-{index}")
        owner = next(owner for start, end, owner in ranges if start <= slot <= end)
        if wanted[owner] > 0:
            wanted[owner] -= 1
            chosen.append((index, slot, owner))
        index += 1
    return chosen
