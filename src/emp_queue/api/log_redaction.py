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
    """Redacts the message and each of its arguments in place: formatters such as uvicorn's
    access formatter read the arguments one by one, so they must keep their shape."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


def redact_keys_in_server_logs() -> None:
    """Install the filter on uvicorn's loggers (once; call after uvicorn configured them)."""
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, KeyRedactingFilter) for f in logger.filters):
            logger.addFilter(KeyRedactingFilter())
