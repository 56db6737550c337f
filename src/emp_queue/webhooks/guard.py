"""The SSRF guard: a webhook may only reach public addresses, unless an allowlist names it.

A target's host is resolved and every address it resolves to is checked, so a public name
pointing at 127.0.0.1 is refused too. Resolutions are cached briefly: a dispatcher sends
thousands of deliveries a second to few hosts. Redirects are never followed by the sender,
so a public endpoint cannot bounce a delivery inward.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Sequence

import httpx

from emp_queue.errors import ConfigurationError, WebhookTargetRefusedError

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
RESOLUTION_CACHE_S = 30.0


def is_public(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def parse_allowlist(entries: Sequence[str]) -> tuple[frozenset[str], tuple[IpNetwork, ...]]:
    names: set[str] = set()
    networks: list[IpNetwork] = []
    for entry in entries:
        entry = entry.strip().lower()
        if not entry:
            raise ConfigurationError("EMP_WEBHOOKS_ALLOW_HOSTS has an empty entry; remove it")
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry)
    return frozenset(names), tuple(networks)


class TargetGuard:
    """Refuses webhook URLs that would reach inside the network."""

    def __init__(self, allow_hosts: Sequence[str]) -> None:
        self._names, self._networks = parse_allowlist(allow_hosts)
        self._resolved: dict[str, tuple[float, list[IpAddress]]] = {}

    async def check(self, url: str) -> None:
        """Return if ``url`` may be called; raise :class:`WebhookTargetRefusedError` if not,
        or ``OSError`` if its host does not resolve (now: it may later)."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as error:
            raise WebhookTargetRefusedError(f"webhook URL {url!r} is not a URL: {error}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise WebhookTargetRefusedError(
                f"webhook URL {url!r} must be an absolute http:// or https:// URL"
            )
        host = parsed.host.lower()
        if host in self._names:
            return
        for address in await self._addresses(host):
            if not is_public(address) and not any(address in net for net in self._networks):
                raise WebhookTargetRefusedError(
                    f"webhook URL {url!r} reaches {address}, a private, loopback or link-local "
                    "address; use a public address or add the host or network to "
                    "EMP_WEBHOOKS_ALLOW_HOSTS"
                )

    async def _addresses(self, host: str) -> list[IpAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        now = time.monotonic()
        cached = self._resolved.get(host)
        if cached is not None and cached[0] > now:
            return cached[1]
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if len(self._resolved) > 10_000:
            self._resolved.clear()
        self._resolved[host] = (now + RESOLUTION_CACHE_S, addresses)
        return addresses
