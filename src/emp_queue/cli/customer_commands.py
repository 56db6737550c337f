"""``emp customers`` (policies) and ``emp usage``, through the API (``EMP_API_URL``; an admin
``EMP_API_KEY`` to change policies)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from emp_queue.cli.client_commands import _client

customers_app = typer.Typer(
    help="Customer policies: weight (fair share), running and waiting caps.", no_args_is_help=True
)


def _service_caps(values: list[str]) -> dict[str, int]:
    caps = {}
    for value in values:
        service, _, cap = value.partition("=")
        if not service or not cap.isdigit():
            raise typer.BadParameter(
                f"{value!r}: write SERVICE=N, e.g. comfyui=2", param_hint="--max-running-service"
            )
        caps[service] = int(cap)
    return caps


def _table(views: list[dict[str, Any]]) -> Table:
    table = Table("customer", "weight", "running", "max running", "waiting", "max waiting")
    for view in views:
        policy = view["policy"]
        by_service = ", ".join(f"{s} {n}" for s, n in policy["max_running_by_service"].items())
        caps = " ".join(
            part for part in (str(policy["max_running"] or "—"), by_service and f"({by_service})")
        )
        table.add_row(
            view["customer_id"],
            f"{policy['weight']:g}",
            str(view["running"]),
            caps,
            str(view["waiting"]),
            str(policy["max_pending"] or "—"),
        )
    return table


@customers_app.command("set")
def set_policy(
    customer_id: Annotated[str, typer.Argument(help="The customer's id.")],
    weight: Annotated[float, typer.Option(help="Share relative to other customers.")] = 1.0,
    max_running: Annotated[
        int | None, typer.Option(help="Most jobs running at once (all services).")
    ] = None,
    max_running_service: Annotated[
        list[str] | None,
        typer.Option(help="SERVICE=N: most jobs running at once for one service (repeatable)."),
    ] = None,
    max_pending: Annotated[
        int | None, typer.Option(help="Most waiting jobs; more submits get 429.")
    ] = None,
) -> None:
    """Replace a customer's policy (admin key); an option left out means no limit."""
    policy = {
        "weight": weight,
        "max_running": max_running,
        "max_running_by_service": _service_caps(max_running_service or []),
        "max_pending": max_pending,
    }
    with _client() as client:
        Console().print(_table([client.set_customer(customer_id, policy)]))


@customers_app.command("show")
def show(
    customer_id: Annotated[
        str | None, typer.Argument(help="One customer; all customers with a policy if left out.")
    ] = None,
) -> None:
    """A customer's policy and what it runs and has waiting now."""
    with _client() as client:
        views = [client.customer(customer_id)] if customer_id else client.customers()
    Console().print(_table(views) if views else "No customer has a policy.")


def usage(
    customer: Annotated[
        str | None, typer.Option(help="One customer (a client key: its own).")
    ] = None,
    service: Annotated[str | None, typer.Option(help="One service.")] = None,
    days: Annotated[float, typer.Option(help="How far back, in days.")] = 1.0,
    by_day: Annotated[
        bool, typer.Option("--by-day", help="One row per day, not per hour.")
    ] = False,
) -> None:
    """What customers used: attempts, wait, run and GPU time, output, per service and pool."""
    to_ms = int(time.time() * 1000)
    with _client() as client:
        rows = client.usage(
            customer=customer,
            service=service,
            from_ms=to_ms - int(days * 86_400_000),
            to_ms=to_ms,
            granularity="day" if by_day else "hour",
        )
    table = Table("from (UTC)", "customer", "service", "pool", "jobs", "ok", "wait s", "run s",
                  "GPU s", "load s", "tokens in/out", "output")  # fmt: skip
    for row in rows:
        start = time.strftime("%Y-%m-%d %H:%M", time.gmtime(row["start_ms"] / 1000))
        table.add_row(
            start, row["customer_id"] or "—", row["service"], row["pool"] or "—",
            str(row["jobs"]), str(row["completed"]), f"{row['wait_s']:.1f}",
            f"{row['run_s']:.1f}", f"{row['gpu_s']:.1f}", f"{row['model_load_s']:.1f}",
            f"{row['tokens_in']:,}/{row['tokens_out']:,}", f"{row['output_bytes']:,} B",
        )  # fmt: skip
    Console().print(table if rows else "No usage in that period.")
