"""``emp api`` (serve the API) and ``emp keys create|list|revoke`` (its API keys)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
import uvicorn
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from emp_queue.api.app import create_app
from emp_queue.api.key_scope import Access
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.api.log_redaction import redact_keys_in_server_logs
from emp_queue.api.settings import ApiSettings, is_loopback
from emp_queue.core.broker import broker_url, connect
from emp_queue.core.keys import Keys
from emp_queue.core.settings import CoreSettings
from emp_queue.gc_tuning import freeze_startup_heap
from emp_queue.telemetry.tracing import JobTracing, process_tracing

T = TypeVar("T")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

keys_app = typer.Typer(help="API keys: create, list, rotate, revoke.", no_args_is_help=True)


class ApiServer(uvicorn.Server):
    """uvicorn's server, except that it does not re-raise the stop signal after a graceful
    shutdown: ``emp api`` then closes its Redis client (and stops an embedded Valkey it
    started) and exits 0 instead of dying by the signal halfway through its cleanup."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        original = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def api() -> None:
    """Serve the REST/SSE API (EMP_API_HOST, EMP_API_PORT; the queue from EMP_REDIS_URL)."""
    settings = ApiSettings()
    core_settings = CoreSettings()
    with broker_url(core_settings) as url, asyncio.Runner(loop_factory=uvicorn_loop()) as runner:
        runner.run(_serve(url, settings, core_settings))


def uvicorn_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop uvicorn picks when it runs an app itself: uvloop when installed (it is
    a dependency), else asyncio's. ``emp api`` owns its loop (to close Redis after the server
    stops) and runs on the same one, so it is served as ``uvicorn module:app`` would be."""
    return uvicorn.Config("emp_queue.api.app:create_app", loop="auto").get_loop_factory()


async def _serve(url: str, settings: ApiSettings, core_settings: CoreSettings) -> None:
    redis = connect(url, namespace=core_settings.namespace)
    try:
        with process_tracing("emp-api") as tracing:
            await _serve_app(redis, settings, core_settings, url, tracing)
    finally:
        await redis.aclose()


async def _serve_app(
    redis: Redis,
    settings: ApiSettings,
    core_settings: CoreSettings,
    url: str,
    tracing: JobTracing | None,
) -> None:
    await _first_start(ApiKeyStore(redis, Keys(core_settings.namespace)), settings)
    app = create_app(settings, core_settings, redis, tracing=tracing)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=settings.access_log,
        lifespan="on",
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    redact_keys_in_server_logs()  # uvicorn.Config set its loggers up just now
    app.openapi()  # built now, with the rest of the start-up heap, rather than on demand
    freeze_startup_heap()
    typer.echo(f"emp api on http://{settings.host}:{settings.port} (queue at {url})")
    await ApiServer(config).serve()


async def _first_start(store: ApiKeyStore, settings: ApiSettings) -> None:
    """A namespace without keys gets an admin key, printed once, when serving on loopback."""
    if await store.any_exists():
        return
    if not is_loopback(settings.host):
        typer.echo("No API key exists yet; create one with: emp keys create --role admin", err=True)
        return
    issued = await store.create(Role.ADMIN, label="first start")
    typer.echo(f"First start: created admin key {issued.key.key_id}. It is shown only now:")
    typer.echo(f"  {issued.secret}")


def _with_store(action: Callable[[ApiKeyStore], Awaitable[T]]) -> T:
    settings = CoreSettings()

    async def run(url: str) -> T:
        redis: Redis = connect(url, namespace=settings.namespace)
        try:
            return await action(ApiKeyStore(redis, Keys(settings.namespace)))
        finally:
            await redis.aclose()

    with broker_url(settings) as url:
        return asyncio.run(run(url))


@keys_app.command("create")
def create_key(
    role: Annotated[Role, typer.Option(help="client, worker or admin.")],
    customer: Annotated[
        str | None, typer.Option(help="The customer a client key acts for (client keys only).")
    ] = None,
    label: Annotated[str | None, typer.Option(help="A note to recognise the key by.")] = None,
    expires_in_s: Annotated[
        float | None,
        typer.Option(help="Seconds until the key is refused (86400 = a day); default never."),
    ] = None,
    access: Annotated[
        Access, typer.Option(help="full, read (GET only) or submit (submit and read).")
    ] = Access.FULL,
    service: Annotated[
        list[str] | None,
        typer.Option(help="A service it may submit jobs for; repeatable. Default: any."),
    ] = None,
) -> None:
    """Create a key and print it: it is shown this once and stored only hashed."""
    issued = _with_store(
        lambda store: store.create(
            role,
            customer_id=customer,
            label=label,
            expires_in_s=expires_in_s,
            access=access,
            services=tuple(service or ()),
        )
    )
    typer.echo(f"Created {role.value} key {issued.key.key_id}. Copy it now, it is not shown again:")
    typer.echo(issued.secret)


@keys_app.command("rotate")
def rotate_key(
    key_id: Annotated[str, typer.Argument(help="The id `emp keys list` shows.")],
    overlap_s: Annotated[
        float, typer.Option(min=0, help="Seconds the old key keeps working after this.")
    ] = 3600.0,
) -> None:
    """Replace a key: a new one with the same role, customer and lifetime; the old one keeps
    working for the overlap, then is refused."""
    issued, old = _with_store(lambda store: store.rotate(key_id, overlap_s=overlap_s))
    assert old.expires_at_ms is not None
    ends = datetime.fromtimestamp(old.expires_at_ms / 1000, UTC)
    typer.echo(
        f"Key {old.key_id} works until {ends:%Y-%m-%d %H:%M:%S} UTC. New {old.role.value} key "
        f"{issued.key.key_id}; copy it now, it is not shown again:"
    )
    typer.echo(issued.secret)


@keys_app.command("list")
def list_keys() -> None:
    """Every key's id, role, customer, label and creation time (never the key itself)."""
    keys = _with_store(lambda store: store.list())
    table = Table("id", "role", "access", "customer", "label", "created", "expires")
    for key in keys:
        created = datetime.fromtimestamp(key.created_at_ms / 1000, UTC)
        expires = (
            datetime.fromtimestamp(key.expires_at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            if key.expires_at_ms is not None
            else "never"
        )
        scope = key.access.value + (f" ({', '.join(key.services)})" if key.services else "")
        table.add_row(
            key.key_id,
            key.role.value,
            scope,
            key.customer_id or "",
            key.label or "",
            created.strftime("%Y-%m-%d %H:%M:%S UTC"),
            expires,
        )
    Console().print(table if keys else "No API keys.")


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The id `emp keys list` shows.")],
) -> None:
    """Revoke a key: requests with it are refused (401) from now on."""
    key = _with_store(lambda store: store.revoke(key_id))
    typer.echo(f"Revoked {key.role.value} key {key.key_id}.")
