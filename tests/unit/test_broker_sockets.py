"""The client from ``connect``: no per-command timer, the kernel finds a dead server
(decision 0071); the URL's own options still win."""

from __future__ import annotations

import socket

from emp_queue.core.broker import CONNECT_TIMEOUT_S, DEAD_PEER_S, connect


def test_connections_have_no_command_timeout_and_keepalive() -> None:
    kwargs = connect("redis://127.0.0.1:1/0").connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] is None
    assert kwargs["socket_connect_timeout"] == CONNECT_TIMEOUT_S
    assert kwargs["socket_keepalive"] is True
    options = kwargs["socket_keepalive_options"]
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        assert options[socket.TCP_USER_TIMEOUT] == DEAD_PEER_S * 1000
    if hasattr(socket, "TCP_KEEPIDLE"):
        idle = options[socket.TCP_KEEPIDLE]
        probes = options[socket.TCP_KEEPCNT] * options[socket.TCP_KEEPINTVL]
        assert idle + probes <= DEAD_PEER_S


def test_the_urls_socket_timeout_overrides() -> None:
    kwargs = connect("redis://127.0.0.1:1/0?socket_timeout=2").connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 2.0


def test_replicated_urls_get_the_same_options() -> None:
    client = connect("redis+sentinel://127.0.0.1:1/mymaster/0")
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] is None
    assert kwargs["socket_keepalive"] is True
