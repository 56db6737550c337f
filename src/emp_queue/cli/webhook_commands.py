"""``emp webhooks``: subscriptions and deliveries through the API, and a standalone dispatcher.

``dispatch`` talks to Redis (it is a server part, like ``emp api``); the others talk to the
API (``EMP_API_URL``, ``EMP_API_KEY``) like the client commands.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from emp_queue.client.settings import ClientSettings
from emp_queue.errors import EmpError

webhooks_app = typer.Typer(
    name="webhooks",
    help="Webhook subscriptions, deliveries and the dispatcher.",
    no_args_is_help=True,
)

EVENTS_HELP = (
    "An event to receive (repeatable): job.completed, job.failed, job.cancelled, job.progress, "
    "workflow.completed, workflow.failed. Default: the first three."
)


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    settings = ClientSettings()
    headers = {}
    if settings.api_key is not None:
        headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
    try:
        response = httpx.request(
            method, settings.api_url + path, json=body, headers=headers, timeout=30
        )
    except httpx.TransportError as error:
        raise EmpError(
            f"the API at {settings.api_url} did not answer ({error}); is `emp api` running? "
            "(EMP_API_URL)"
        ) from None
    if response.status_code >= 400:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        raise EmpError(f"{method} {path} answered {response.status_code}: {message}")
    return response.json() if response.content else None


@webhooks_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="Where deliveries are POSTed.")],
    event: Annotated[list[str] | None, typer.Option(help=EVENTS_HELP)] = None,
    customer: Annotated[
        str | None, typer.Option(help="Admin keys: one customer's jobs only (default: all).")
    ] = None,
    description: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Subscribe URL to job events; prints the secret that verifies the signatures."""
    body: dict[str, Any] = {"url": url, "customer_id": customer, "description": description}
    if event:
        body["events"] = event
    created = _call("POST", "/api/webhooks", body)
    typer.echo(f"subscription {created['id']} for {', '.join(created['events'])}")
    typer.echo(f"secret (verifies webhook-signature): {created['secret']}")


@webhooks_app.command("list")
def list_subscriptions() -> None:
    """Every subscription this key can see."""
    table = Table("id", "customer", "url", "events", "created")
    for item in _call("GET", "/api/webhooks")["subscriptions"]:
        table.add_row(
            item["id"], item["customer_id"] or "(all)", item["url"], " ".join(item["events"]),
            str(item["created_at"]),
        )  # fmt: skip
    Console().print(table)


@webhooks_app.command("remove")
def remove(subscription_id: Annotated[str, typer.Argument(help="sub_… from `list`.")]) -> None:
    """Delete a subscription; its deliveries not yet sent are given up."""
    _call("DELETE", f"/api/webhooks/{subscription_id}")
    typer.echo(f"removed {subscription_id}")


@webhooks_app.command("secret")
def secret() -> None:
    """The secret that signs deliveries to this customer's job ``webhook`` URLs."""
    typer.echo(_call("GET", "/api/webhooks/job-secret")["secret"])


@webhooks_app.command("log")
def log(
    job: Annotated[str | None, typer.Option(help="A job's deliveries.")] = None,
    subscription: Annotated[str | None, typer.Option(help="A subscription's deliveries.")] = None,
) -> None:
    """Deliveries with their status, attempts, last answer and next retry."""
    if (job is None) == (subscription is None):
        raise typer.BadParameter("give exactly one of --job or --subscription")
    path = f"/api/jobs/{job}/webhooks" if job else f"/api/webhooks/{subscription}/deliveries"
    table = Table("id", "event", "status", "attempts", "last", "next retry (ms)", "url")
    for item in _call("GET", path)["deliveries"]:
        last = item["last_error"] or str(item["last_status_code"] or "")
        table.add_row(
            item["id"], item["event"], item["status"], str(item["attempts"]), last,
            str(item["next_at"] or ""), item["url"],
        )  # fmt: skip
    Console().print(table)


@webhooks_app.command("show")
def show(delivery_id: Annotated[str, typer.Argument(help="msg_… from `log`.")]) -> None:
    """One delivery: its body and every attempt."""
    typer.echo(json.dumps(_call("GET", f"/api/webhook-deliveries/{delivery_id}"), indent=2))


@webhooks_app.command("redeliver")
def redeliver(delivery_id: Annotated[str, typer.Argument(help="msg_… from `log`.")]) -> None:
    """Send a delivery again now (same webhook-id, fresh retry window)."""
    item = _call("POST", f"/api/webhook-deliveries/{delivery_id}/redeliver")
    typer.echo(f"{item['id']} is {item['status']} again")


@webhooks_app.command("dispatch")
def dispatch() -> None:
    """Deliver webhooks from Redis until SIGINT/SIGTERM: for deployments whose API replicas
    run with EMP_WEBHOOKS_DISPATCH=false, or to add delivery capacity. Settings: EMP_WEBHOOKS_*."""
    from emp_queue.core.broker import broker_url
    from emp_queue.core.settings import CoreSettings
    from emp_queue.webhooks.settings import WebhookSettings

    core = CoreSettings()
    settings = WebhookSettings()
    with broker_url(core) as url:
        asyncio.run(_dispatch(url, core, settings))


async def _dispatch(url: str, core: Any, settings: Any) -> None:
    from emp_queue.core.broker import connect
    from emp_queue.core.queue import JobQueue
    from emp_queue.telemetry.tracing import process_tracing

    redis = connect(url)
    try:
        with process_tracing("emp-webhooks") as tracing:
            await _run_dispatcher(
                redis, JobQueue.from_settings(redis, core), core, settings, tracing
            )
    finally:
        await redis.aclose()


async def _run_dispatcher(redis: Any, queue: Any, core: Any, settings: Any, tracing: Any) -> None:
    from emp_queue.webhooks.dispatcher import WebhookDispatcher

    dispatcher = WebhookDispatcher(redis, queue, settings, tracing=tracing)
    loop = asyncio.get_running_loop()
    for received in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(received, dispatcher.close)  # the loops act on the flag
    await dispatcher.prepare()
    typer.echo(
        f"dispatching webhooks of namespace {core.namespace!r} as {dispatcher.intake.consumer}"
    )
    await dispatcher.run()
