"""Replicated brokers on loopback, from the embedded ``valkey-server``: for failover tests.

:class:`SentinelSet` runs a primary, its replicas and three sentinels (``valkey-server
--sentinel``); :class:`LoopbackCluster` runs a Valkey Cluster of N primaries. Both are
real processes in a directory of their own, stopped (SIGKILL) on exit.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from emp_queue.core.broker import free_loopback_port, valkey_binary
from emp_queue.errors import BrokerError

START_TIMEOUT_S = 30.0
CLUSTER_SLOTS = 16384


class _Processes:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.binary = valkey_binary()

    def spawn(self, port: int, *args: str, config: str | None = None) -> int:
        command = [str(self.binary)]
        if config is not None:
            path = self.directory / f"{port}.conf"
            path.write_text(config)
            command.append(str(path))
        command += [
            "--bind", "127.0.0.1", "--port", str(port), "--dir", str(self.directory),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--logfile", str(self.directory / f"{port}.log"), *args,
        ]  # fmt: skip
        self.processes[port] = subprocess.Popen(command, start_new_session=True)
        self._until(lambda: _ping(port), f"valkey on port {port} did not answer", port)
        return port

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for port in list(self.processes):
            self.kill(port)

    def _until(self, condition: object, message: str, port: int | None = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not condition():  # type: ignore[operator]
            if port is not None and self.processes[port].poll() is not None:
                raise BrokerError(f"{message}: it exited; see {self.directory / f'{port}.log'}")
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"{message} within {START_TIMEOUT_S} s (logs in {self.directory})"
                )
            time.sleep(0.05)


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True)


def _ping(port: int) -> bool:
    try:
        with _client(port) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


class _Loopback:
    """Started on entering, every process SIGKILLed on leaving."""

    _procs: _Processes

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        self._procs.stop_all()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()


class SentinelSet(_Loopback):
    """A primary, ``replicas`` replicas and ``sentinels`` sentinels that promote on failure."""

    def __init__(
        self,
        directory: Path,
        *,
        master: str = "emp",
        replicas: int = 2,
        sentinels: int = 3,
        down_after_ms: int = 1000,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.master = master
        self._down_after_ms = down_after_ms
        self._replica_count = replicas
        self._sentinel_count = sentinels
        self._procs = _Processes(directory)
        self.data_ports: list[int] = []
        self.sentinel_ports: list[int] = []

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{nodes}/{self.master}/0"

    def start(self) -> Self:
        primary = self._procs.spawn(free_loopback_port())
        self.data_ports.append(primary)
        for _ in range(self._replica_count):
            self.data_ports.append(
                self._procs.spawn(free_loopback_port(), "--replicaof", "127.0.0.1", str(primary))
            )
        self._procs._until(self._replicas_online, "the replicas did not finish their first sync")
        for _ in range(self._sentinel_count):
            port = free_loopback_port()
            config = (
                f"sentinel monitor {self.master} 127.0.0.1 {primary} 2\n"
                f"sentinel down-after-milliseconds {self.master} {self._down_after_ms}\n"
                f"sentinel failover-timeout {self.master} 10000\n"
                f"sentinel parallel-syncs {self.master} 1\n"
            )
            self.sentinel_ports.append(self._procs.spawn(port, "--sentinel", config=config))
        self._procs._until(self._sentinels_agree, "the sentinels did not discover each other")
        return self

    def primary_port(self) -> int:
        """The primary's port as the sentinels report it now."""
        for port in self.sentinel_ports:
            try:
                with _client(port) as client:
                    _host, found = client.sentinel_get_master_addr_by_name(self.master)
                    return int(found)
            except (redis.RedisError, TypeError):
                continue
        raise BrokerError(f"no sentinel of {self.url} answered")

    def kill_primary(self) -> int:
        """SIGKILL the current primary; its port."""
        port = self.primary_port()
        self._procs.kill(port)
        return port

    def wait_promotion(self, old_port: int, timeout_s: float = 60.0) -> int:
        """Block until a replica is promoted and answers as the primary; its port."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            port = self.primary_port()
            if port != old_port and _role(port) == "master":
                return port
            time.sleep(0.02)
        raise BrokerError(f"no replica was promoted within {timeout_s} s")

    def _replicas_online(self) -> bool:
        with _client(self.data_ports[0]) as client:
            info = client.info("replication")
        return bool(
            sum(1 for key, value in info.items() if key.startswith("slave") and
                isinstance(value, dict) and value.get("state") == "online")
            == self._replica_count
        )  # fmt: skip

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            with _client(port) as client:
                state = client.sentinel_master(self.master)
            if int(state["num-other-sentinels"]) != self._sentinel_count - 1:
                return False
            if int(state["num-slaves"]) != self._replica_count:
                return False
        return True


def _role(port: int) -> str:
    try:
        with _client(port) as client:
            return str(client.execute_command("ROLE")[0])
    except redis.RedisError:
        return ""


class LoopbackCluster(_Loopback):
    """A Valkey Cluster of ``primaries`` nodes, the slots split evenly between them."""

    def __init__(self, directory: Path, *, primaries: int = 3) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._count = primaries
        self._procs = _Processes(directory)
        self.ports: list[int] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self) -> Self:
        buses: dict[int, int] = {}
        for _ in range(self._count):
            port, buses[port] = free_loopback_port(), free_loopback_port()
            # The bus port is given: the default (port + 10000) may be out of range.
            cluster = ["--cluster-enabled", "yes", "--cluster-port", str(buses[port])]
            cluster += ["--cluster-config-file", f"nodes-{port}.conf"]
            cluster += ["--cluster-node-timeout", "2000"]
            self.ports.append(self._procs.spawn(port, *cluster))
        share = CLUSTER_SLOTS // self._count
        for index, port in enumerate(self.ports):
            last = CLUSTER_SLOTS - 1 if index == self._count - 1 else (index + 1) * share - 1
            with _client(port) as client:
                client.execute_command("CLUSTER ADDSLOTSRANGE", index * share, last)
        with _client(self.ports[0]) as client:
            for port in self.ports[1:]:
                client.execute_command("CLUSTER MEET", "127.0.0.1", port, buses[port])
        self._procs._until(self._healthy, "the cluster did not reach cluster_state:ok")
        return self

    def owner(self, slot: int) -> int:
        """The port of the primary that owns ``slot``."""
        with _client(self.ports[0]) as client:
            for start, end, node, *_ in client.execute_command("CLUSTER SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(node[1])
        raise BrokerError(f"no node owns slot {slot}")

    def _healthy(self) -> bool:
        for port in self.ports:
            with _client(port) as client:
                info = client.execute_command("CLUSTER INFO")
            if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != self._count:
                return False
        return True


class FreezableValkey(_Loopback):
    """One server of the test's own that can be frozen (SIGSTOP) and thawed (SIGCONT): a
    stopped server keeps its socket open and never replies, as a stalled primary does.
    Never point a freeze at a shared server: every other user of it would stall too."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._procs = _Processes(directory)
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Self:
        self.port = self._procs.spawn(free_loopback_port())
        return self

    def freeze(self) -> None:
        self._procs.processes[self.port].send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._procs.processes[self.port].send_signal(signal.SIGCONT)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def stop(self) -> None:
        if self.port in self._procs.processes:
            self.thaw()  # a stopped process takes SIGKILL, but its socket lingers otherwise
        super().stop()
