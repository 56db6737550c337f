"""Which hosts the REST connectors may call: the guard against server-side request forgery.

A REST job names its own URL, so without a guard any job could make a worker call its cloud
metadata endpoint, the machine's health API or anything else on the worker's network. Only
hosts the operator listed are reachable, checked on every request *including each redirect*.

Rules (``EMP_REST_ALLOWED_HOSTS``): ``api.example.com`` (any port), ``api.example.com:8443``
(that port only), ``*.example.com`` (any subdomain, not the domain itself), ``127.0.0.1``,
``[::1]:8080``, and ``*`` (every host: an explicit opt-out for trusted job sources). The host
of ``EMP_REST_BASE_URL`` is always allowed. The check is by name: a listed name that resolves
to an internal address is the operator's choice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from emp_queue.connectors.base import job_fault
from emp_queue.errors import ConfigurationError

ALLOWED_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True)
class HostRule:
    host: str
    port: int | None
    """``None``: any port."""
    subdomains: bool

    @classmethod
    def parse(cls, rule: str) -> HostRule:
        text = rule.strip().lower()
        if not text:
            raise ConfigurationError("EMP_REST_ALLOWED_HOSTS has an empty entry")
        if text == "*":
            return cls("", None, subdomains=True)
        try:
            url = httpx.URL(f"http://{text}")
        except httpx.InvalidURL as error:
            raise ConfigurationError(
                f"EMP_REST_ALLOWED_HOSTS entry {rule!r} is not a host or host:port"
            ) from error
        host = url.host
        if url.path not in ("", "/") or url.query or url.userinfo:
            raise ConfigurationError(
                f"EMP_REST_ALLOWED_HOSTS entry {rule!r} must be a host or host:port, not a URL"
            )
        if host.startswith("*."):
            return cls(host[2:], url.port, subdomains=True)
        if "*" in host:
            raise ConfigurationError(
                f"EMP_REST_ALLOWED_HOSTS entry {rule!r}: '*' is allowed only as '*.domain' or '*'"
            )
        return cls(host, url.port, subdomains=False)

    def allows(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.subdomains:
            return not self.host or host.endswith(f".{self.host}")
        return host == self.host


class HostAllowlist:
    """The operator's list of reachable hosts; :meth:`check` refuses any other URL."""

    def __init__(self, rules: Iterable[str], base_url: str | None) -> None:
        self.rules = [HostRule.parse(rule) for rule in rules]
        if base_url is not None:
            url = httpx.URL(base_url)
            if url.scheme not in ALLOWED_SCHEMES or not url.host:
                raise ConfigurationError(
                    f"EMP_REST_BASE_URL {base_url!r} must be an http:// or https:// URL"
                )
            self.rules.append(HostRule(url.host, _port(url), subdomains=False))
        if not self.rules:
            raise ConfigurationError(
                "the rest connectors may call no host: set EMP_REST_BASE_URL or "
                "EMP_REST_ALLOWED_HOSTS (a JSON list such as '[\"api.example.com\"]')"
            )

    @property
    def allows_everything(self) -> bool:
        return any(rule.subdomains and not rule.host for rule in self.rules)

    def check(self, url: httpx.URL) -> None:
        """Raise a job fault unless ``url`` is http(s) to an allowed host."""
        if url.scheme not in ALLOWED_SCHEMES:
            raise job_fault(f"URL scheme {url.scheme!r} is not allowed; use http or https")
        host = url.host.lower()
        if not any(rule.allows(host, _port(url)) for rule in self.rules):
            raise job_fault(
                f"host {url.netloc.decode()!r} is not in this worker's EMP_REST_ALLOWED_HOSTS; "
                "ask the operator to allow it or send the job to a worker that does",
                host=host,
            )


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)
