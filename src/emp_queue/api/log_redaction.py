"""No API key in the server's own log lines.

uvicorn logs every WebSocket handshake with its query string (``WebSocket /ws/client/c1?token=…
[accepted]``) even with the access log off, and the access log has the query of every request
(``/assets/…?token=`` from an ``<img>``). This filter, on uvicorn's loggers, rewrites those
lines before any handler sees them: a ``token=`` value and anything shaped like a key become
``[redacted]``.
"""

from __future__ import annotations

import logging
import re

from emp_queue.api.key_store import KEY_PREFIX

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
_SECRETS = re.compile(
    r"(?P<param>token=)[^&\s\"']+|" + re.escape(KEY_PREFIX) + r"[A-Za-z0-9_\-]{16,}"
)


def redact(text: str) -> str:
    return _SECRETS.sub(lambda m: (m.group("param") or KEY_PREFIX) + "[redacted]", text)


class KeyRedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_keys_in_server_logs() -> None:
    """Install the filter on uvicorn's loggers (once; call after uvicorn configured them)."""
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, KeyRedactingFilter) for f in logger.filters):
            logger.addFilter(KeyRedactingFilter())
