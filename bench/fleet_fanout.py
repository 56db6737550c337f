"""Event fan-out to many monitors: each event's lag from the broker to every monitor socket.

Used by ``bench/fleet_scale.py`` (``--monitors``): an ``emp api`` process on loopback (its
one event reader per replica fans events out to the sockets, decision 0009), N monitor
WebSockets (``/ws/monitor/<id>``, as the monitor page opens) in this process, and a producer
submitting ``rate`` jobs/s that one simulated worker runs. An event's lag is its arrival at a
socket minus its ``ts`` (the Redis clock when the script wrote it; same host, same clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from bench.failover import api_process
from bench.harness import percentile
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.core.broker import connect
from emp_queue.core.queue import JobQueue

NAMESPACE = "fanout"


@dataclass
class FanoutLag:
    p50_ms: float
    p99_ms: float
    max_ms: float
    delivered_pct: float
    """Events each monitor received, as a share of the events any monitor received (mean)."""
    events_per_s: float
    """Events any monitor received, per second of production."""


class MonitorClient:
    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.lags_ms: list[float] = []
        self.seen: set[str] = set()

    async def read(self) -> None:
        with contextlib.suppress(Exception):  # ends when the socket closes
            async for raw in self.socket:
                message = json.loads(raw)
                event_id, ts = message.get("event_id"), message.get("timestamp")
                if event_id and isinstance(ts, int | float):
                    self.lags_ms.append(time.time() * 1000 - ts)
                    self.seen.add(event_id)


async def _wait_ready(base_url: str, log: Path) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/ready", timeout=1)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    text = await asyncio.to_thread(log.read_text)
    raise AssertionError(f"emp api was not ready within 60 s; its log: {text[-2000:]}")


async def measure_fanout(url: str, monitors: int, seconds: float, rate: float) -> FanoutLag:
    from bench.fleet_scale import Fleet, produce

    redis = connect(url)
    queue = JobQueue(redis, namespace=NAMESPACE)
    # A key per monitor, as each operator has: the API caps the streams one key holds open.
    store = ApiKeyStore(redis, queue.keys)
    keys = [await store.create(Role.ADMIN, label=f"fanout-{i}") for i in range(monitors)]
    clients: list[MonitorClient] = []
    readers: list[asyncio.Task[None]] = []
    fleet = Fleet(url, NAMESPACE, 40)
    with (
        tempfile.TemporaryDirectory(prefix="emp-fanout-") as directory,
        api_process(url, NAMESPACE, False, Path(directory)) as base_url,
    ):
        try:
            await _wait_ready(base_url, Path(directory) / "api.log")
            ws_base = base_url.replace("http://", "ws://")
            for index in range(monitors):
                socket = await ws_connect(
                    f"{ws_base}/ws/monitor/m{index}?token={keys[index].secret}", max_size=None
                )
                clients.append(MonitorClient(socket))
            readers = [asyncio.create_task(client.read()) for client in clients]
            await fleet.add(1, "sim", "fan")
            await fleet.start(housekeeping=False)
            _, elapsed = await produce(fleet.queue, seconds, "fan", rate)
            await asyncio.sleep(2.0)  # the last events arrive
        finally:
            for client in clients:
                await client.socket.close()
            await asyncio.gather(*readers, return_exceptions=True)
            await fleet.close()
            await redis.aclose()
    lags = [lag for client in clients for lag in client.lags_ms]
    every = set().union(*(client.seen for client in clients))
    delivered = [len(client.seen) / len(every) for client in clients] if every else [0.0]
    return FanoutLag(
        percentile(lags, 0.5),
        percentile(lags, 0.99),
        max(lags, default=float("nan")),
        100 * sum(delivered) / len(delivered),
        len(every) / elapsed,
    )
