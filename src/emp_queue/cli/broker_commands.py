"""``emp broker``, ``emp stats``, ``emp events``: look at (or host) a queue from a terminal."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from emp_queue.core.broker import EmbeddedValkey, broker_url, connect
from emp_queue.core.events import NEW_EVENTS_ONLY, STREAM_START
from emp_queue.core.queue import JobQueue
from emp_queue.core.settings import CoreSettings
from emp_queue.core.topology import CLUSTER_SCHEME, cluster_slot_ranges, spread_namespaces
from emp_queue.errors import ConfigurationError


def broker() -> None:
    """Run the embedded Valkey in the foreground (Ctrl-C stops it) so several processes share it."""
    settings = CoreSettings()
    if settings.redis_url:
        raise ConfigurationError(
            f"EMP_REDIS_URL is set ({settings.redis_url}); unset it to run the embedded Valkey"
        )
    server = EmbeddedValkey(settings.data_dir)
    url = server.start()
    if not server.owned:
        typer.echo(f"An embedded Valkey is already running at {url}; nothing to do.")
        return
    typer.echo(f"Embedded Valkey at {url} (data in {settings.data_dir}). Ctrl-C stops it.")
    typer.echo(f"Other processes find it on their own, or use: export EMP_REDIS_URL={url}")
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        signal.sigwait(stop_signals)
    finally:
        server.stop()


def shards(
    namespaces: Annotated[int, typer.Option(min=1, help="How many namespaces to name.")] = 3,
    prefix: Annotated[str, typer.Option(help="Names are <prefix>-<n>.")] = "emp",
) -> None:
    """Namespace names spread evenly over the primaries of the cluster in EMP_REDIS_URL."""
    settings = CoreSettings()
    if not settings.redis_url or not settings.redis_url.startswith(CLUSTER_SCHEME):
        raise ConfigurationError(
            "emp shards reads a cluster: set EMP_REDIS_URL=redis+cluster://host:port,..."
        )
    ranges = asyncio.run(cluster_slot_ranges(settings.redis_url))
    table = Table("EMP_NAMESPACE", "slot", "primary")
    for index, slot, owner in spread_namespaces(ranges, prefix, namespaces):
        table.add_row(f"{prefix}-{index}", str(slot), owner)
    Console().print(table)


def stats() -> None:
    """Job counts per service and status."""
    settings = CoreSettings()
    with broker_url(settings) as url:
        counts = asyncio.run(_stats(url, settings))
    table = Table("service", "status", "jobs", title=f"namespace {settings.namespace}")
    for service, by_status in sorted(counts.items()):
        for status, count in sorted(by_status.items()):
            table.add_row(service, status, str(count))
    Console().print(table if counts else "No jobs.")


async def _stats(url: str, settings: CoreSettings) -> dict[str, dict[str, int]]:
    redis = connect(url, namespace=settings.namespace)
    try:
        return await JobQueue.from_settings(redis, settings).stats()
    finally:
        await redis.aclose()


def events(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events.")
    ] = False,
    after: Annotated[str | None, typer.Option(help="Start after this event id.")] = None,
) -> None:
    """Print the event stream as JSON lines (resumable with --after)."""
    settings = CoreSettings()
    start = after or (NEW_EVENTS_ONLY if follow else STREAM_START)
    with broker_url(settings) as url:
        asyncio.run(_events(url, settings, start, follow))


async def _events(url: str, settings: CoreSettings, start: str, follow: bool) -> None:
    redis = connect(url, namespace=settings.namespace)
    log = JobQueue.from_settings(redis, settings).events
    try:
        if follow:
            async for event in log.follow(start):
                typer.echo(json.dumps(vars(event)))
        else:
            cursor = start
            while batch := await log.read(cursor):
                for event in batch:
                    typer.echo(json.dumps(vars(event)))
                cursor = batch[-1].id
    finally:
        await redis.aclose()
