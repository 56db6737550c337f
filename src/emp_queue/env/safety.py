"""Safety checks: no placeholder secrets outside local/test, no production hosts elsewhere."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

_PLACEHOLDER_RE = re.compile(
    r"change[-_ ]?me|replace[-_ ]?me|<[^<>]+>|\bplaceholder\b|\btodo\b|\bfixme\b|^x{3,}$",
    re.IGNORECASE,
)
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s,;'\"]+")
_BARE_HOST_RE = re.compile(r"^((?:[A-Za-z0-9-]+\.)+[A-Za-z0-9-]+)(?::\d+)?$")


def placeholder_reason(value: str) -> str | None:
    """Why ``value`` is not a real secret, or ``None`` if it may be one."""
    if not value.strip():
        return "is empty"
    if _PLACEHOLDER_RE.search(value):
        return "looks like a placeholder (changeme, REPLACE_ME, <...>, TODO, xxx)"
    return None


def hosts_in(value: str) -> set[str]:
    """Host names a value points at: those of its URLs, or the value itself if a bare host."""
    hosts = {
        host.lower()
        for match in _URL_RE.finditer(value)
        if (host := urlsplit(match.group(0)).hostname)
    }
    bare = _BARE_HOST_RE.fullmatch(value.strip())
    if bare:
        hosts.add(bare.group(1).lower())
    return hosts


def production_hosts_hit(value: str, patterns: Iterable[str]) -> list[str]:
    """Hosts in ``value`` that match one of the production host ``patterns`` (fnmatch)."""
    pattern_list = [pattern.lower() for pattern in patterns]
    return sorted(
        host
        for host in hosts_in(value)
        if any(fnmatch.fnmatchcase(host, pattern) for pattern in pattern_list)
    )


def production_patterns(hosts_by_profile: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """Pattern → the profile that declares it."""
    return {
        pattern: profile
        for profile, patterns in sorted(hosts_by_profile.items())
        for pattern in patterns
    }
