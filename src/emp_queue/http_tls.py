"""One TLS context per process for every outgoing HTTPS client.

httpx gives each new client its own ``ssl.SSLContext`` and loads certifi's CA bundle into it:
about 20 ms of CPU per client (measured: 435 clients took 8.9 s of the integration tier's
CPU). Connectors open their clients per job, so every job paid it once or twice. A context is
safe to share between clients, tasks and threads, so the process builds one per ``trust_env``
setting, the first time it is asked for, the way httpx would (with ``trust_env``, the
``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` of that moment; otherwise certifi's bundle).

Every ``httpx`` client the package builds passes ``verify=tls_context(...)`` (a unit test
checks that).
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def tls_context(*, trust_env: bool = True) -> ssl.SSLContext:
    """The shared context for clients built with this ``trust_env``."""
    return httpx.create_ssl_context(trust_env=trust_env)
