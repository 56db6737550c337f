"""A listening address taken before a server starts, or a plain reason why it cannot be.

The API (``api/serving.py``) and the machine's health API (``machine/health.py``) bind their
socket themselves, so that "port in use" reaches the caller as an error that names the
address and the setting that chose it, rather than a server exiting inside a task.
"""

from __future__ import annotations

import socket

from emp_queue.errors import CannotListenError


def bound_socket(host: str, port: int, port_setting: str = "") -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: any free port), not yet listening;
    :class:`CannotListenError` naming ``port_setting`` when the address is taken or not this
    machine's."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        where = f" ({port_setting})" if port_setting else ""
        raise CannotListenError(
            f"cannot listen on {host}:{port}{where}: {error.strerror}; stop what uses the port "
            "or choose another (0: any free port)"
        ) from error
    return sock
