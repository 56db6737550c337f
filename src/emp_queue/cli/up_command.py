"""``emp up`` (the all-in-one local stack) and ``emp demo`` (the mixed demo batch)."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.panel import Panel

from emp_queue.api.settings import ApiSettings
from emp_queue.client.async_client import AsyncClient
from emp_queue.client.settings import ClientSettings
from emp_queue.core.broker import broker_url
from emp_queue.core.settings import CoreSettings
from emp_queue.settings_env import invalid_settings
from emp_queue.stack.demo_runner import DemoOutcome, run_demo
from emp_queue.stack.local import LocalStack, LocalStackSettings, StackInfo


def up(
    demo: Annotated[
        bool, typer.Option("--demo", help="Submit the mixed demo batch once the stack is up.")
    ] = False,
    exit_after_demo: Annotated[
        bool, typer.Option("--exit", help="With --demo: stop the stack when the demo is done.")
    ] = False,
) -> None:
    """Run everything locally: broker, API with the monitor, and a simulated GPU machine.

    The machine's services are protocol fakes of ComfyUI, Ollama and OpenAI on mock GPUs,
    served by real workers. Ctrl-C stops it all.
    """
    try:
        core, api, stack_settings = CoreSettings(), ApiSettings(), LocalStackSettings()
    except ValidationError as error:
        raise invalid_settings(error) from None
    console = Console()
    with broker_url(core) as url:
        stack = LocalStack(core, api, stack_settings, url)
        failed = asyncio.run(_run(stack, console, demo=demo, exit_after_demo=exit_after_demo))
    console.print("Stopped: broker, API, machine and workers.")
    if failed:
        raise typer.Exit(1)


async def _run(stack: LocalStack, console: Console, *, demo: bool, exit_after_demo: bool) -> bool:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for received in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(received, stop.set)
    outcome: list[DemoOutcome] = []

    async def on_ready(info: StackInfo) -> None:
        console.print(_banner(info))
        if not demo:
            return
        async with AsyncClient(info.api_url, info.admin_key) as client:
            result = await run_demo(client, info.services, console)
        outcome.append(result)
        summary = f"Demo: {result.completed}/{len(result.jobs)} jobs completed in "
        summary += f"{result.elapsed_s:.1f} s."
        if exit_after_demo:
            console.print(f"{summary} Stopping.")
            stop.set()
        else:
            console.print(f"{summary} Open the monitor to look around; Ctrl-C stops.")

    console.print("Starting the API and the local machine ...")
    await stack.run(stop, on_ready)
    return bool(outcome) and outcome[0].completed < len(outcome[0].jobs)


def _banner(info: StackInfo) -> Panel:
    lines = [
        f"API      {info.api_url}   (OpenAPI: {info.api_url}/docs)",
        f"Monitor  {info.monitor_url}",
        f"Admin key  {info.admin_key}",
        f"Services   {', '.join(sorted(info.services))}",
        f"Machine ready in {info.startup_ms} ms.",
        "",
        "In another terminal:",
        f"  export EMP_API_URL={info.api_url}",
        f"  export EMP_API_KEY={info.admin_key}",
        "  emp demo      # or: emp submit simulation --payload '{\"steps\": 20}' --wait",
    ]
    return Panel("\n".join(lines), title="emp up", expand=False)


def demo() -> None:
    """Submit the mixed demo batch to a running stack (EMP_API_URL, EMP_API_KEY) and show
    a progress bar per job until every job is done."""
    settings = ClientSettings()
    console = Console()

    async def main() -> DemoOutcome:
        key = settings.api_key.get_secret_value() if settings.api_key else None
        async with AsyncClient(settings.api_url, key) as client:
            services = {queue["service"] for queue in await client.queues()}
            services |= {s for w in await client.workers() for s in w["capabilities"]["services"]}
            return await run_demo(client, services, console)

    result = asyncio.run(main())
    done = f"{result.completed}/{len(result.jobs)}"
    console.print(f"{done} jobs completed in {result.elapsed_s:.1f} s")
    if result.completed < len(result.jobs):
        raise typer.Exit(1)
