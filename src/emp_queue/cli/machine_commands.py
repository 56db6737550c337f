"""``emp machine`` (run the machine agent) and ``emp machine plan`` (show what it would run)."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Annotated

import structlog
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from emp_queue.connectors.a1111 import A1111Config
from emp_queue.connectors.comfyui import ComfyUIConfig
from emp_queue.core.broker import broker_url, connect
from emp_queue.core.settings import CoreSettings
from emp_queue.env.pack import load_boot_env
from emp_queue.hardware import HardwareSettings, detect_hardware
from emp_queue.machine.agent import MachineAgent
from emp_queue.machine.components import (
    ComponentKind,
    ComponentManager,
    ComponentSettings,
    ComponentStep,
)
from emp_queue.machine.mapping import load_mapping
from emp_queue.machine.model_files import ModelFiles
from emp_queue.machine.placement_deletes import A1111Files, A1111FilesSettings, OllamaDelete
from emp_queue.machine.placement_loop import Executors, ManifestDownloads, OllamaPreload
from emp_queue.machine.placement_pull import OllamaPull
from emp_queue.machine.placement_services import A1111Checkpoints, ComfyUIWarmup
from emp_queue.machine.plan import MachinePlan, PlanContext, build_plan, parse_workers
from emp_queue.machine.settings import MachineSettings
from emp_queue.machine.startup import ComponentInstallers
from emp_queue.machine_models import MachineHardware
from emp_queue.settings_env import invalid_settings

log = structlog.get_logger(__name__)

machine_app = typer.Typer(
    help="The machine agent: WORKERS → supervised services and workers.",
    invoke_without_command=True,
)


def component_installers(settings: ComponentSettings) -> ComponentInstallers:
    """The custom-nodes and models steps from EMP_COMPONENTS_MANIFEST; skipped without one."""
    if not settings.manifest:
        return ComponentInstallers()
    manager = ComponentManager(settings)
    return ComponentInstallers(
        custom_nodes=ComponentStep(manager, ComponentKind.CUSTOM_NODE),
        models=ComponentStep(manager, ComponentKind.MODEL),
    )


def placement_executor(settings: ComponentSettings) -> Executors:
    """Placement downloads Ollama models through Ollama (``POST /api/pull``) and other
    services' models from what EMP_COMPONENTS_MANIFEST names (nothing without one), deletes
    evicted ComfyUI models from EMP_COMPONENTS_MODELS_DIR, A1111 checkpoints from
    EMP_A1111_MODELS_DIR and Ollama models through Ollama, and loads and unloads models
    through the machine's Ollama, ComfyUI and A1111 (EMP_OLLAMA_URL, EMP_COMFYUI_URL with its
    credentials, EMP_A1111_URL; default their usual ports)."""
    ollama = os.environ.get("EMP_OLLAMA_URL", "http://127.0.0.1:11434")
    try:
        comfyui, a1111, a1111_files = ComfyUIConfig(), A1111Config(), A1111FilesSettings()
    except ValidationError as error:
        raise invalid_settings(error, "for placement") from None
    manager = ComponentManager(settings)
    return Executors(
        ManifestDownloads(manager, settings),
        OllamaPull(ollama),
        OllamaPreload(ollama),
        OllamaDelete(ollama),
        ComfyUIWarmup(comfyui.url, headers=comfyui.auth_headers()),
        A1111Checkpoints(a1111.url),
        A1111Files(a1111.url, a1111_files.models_dir),
        ModelFiles(manager, settings),
    )


def _settings() -> tuple[MachineSettings, HardwareSettings]:
    try:
        return MachineSettings(), HardwareSettings()
    except ValidationError as error:
        raise invalid_settings(error, "of the machine") from None


@machine_app.callback(invoke_without_command=True)
def machine(ctx: typer.Context) -> None:
    """Run this machine: start its services and workers, serve the health API, drain on
    SIGTERM (WORKERS, EMP_MACHINE_*, EMP_HEALTH_PORT; the queue from EMP_REDIS_URL)."""
    packed = load_boot_env(os.environ)
    if packed is not None:
        log.info(
            "env_bundle_loaded",
            profile=packed.profile,
            service=packed.service,
            variables=sorted(packed.public),
            secrets=len(packed.secret),
        )
    if ctx.invoked_subcommand is not None:
        return
    settings, hardware_settings = _settings()
    core = CoreSettings()
    with broker_url(core) as url:
        asyncio.run(_run_agent(settings, hardware_settings, core, url))


async def _run_agent(
    settings: MachineSettings, hardware_settings: HardwareSettings, core: CoreSettings, url: str
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for received in (signal.SIGINT, signal.SIGTERM):
        # Only recorded here; the agent drains and stops everything in order.
        loop.add_signal_handler(received, stop.set)
    redis = connect(url, namespace=core.namespace)
    try:
        agent = MachineAgent(
            settings,
            redis=redis,
            redis_url=url,
            core=core,
            hardware_settings=hardware_settings,
            installers=component_installers(ComponentSettings()),
            placement_executor=placement_executor(ComponentSettings()),
        )
        runner = asyncio.create_task(agent.run(stop))
        ready = asyncio.create_task(agent.ready.wait())
        await asyncio.wait({runner, ready}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            record = agent.snapshot()
            typer.echo(
                f"machine {record.machine_id} ready in {record.startup_ms} ms: "
                f"{len(record.services)} process(es), health API on {record.health_url}",
                err=True,
            )
        else:
            ready.cancel()
        await runner
    finally:
        await redis.aclose()
    typer.echo(f"machine {settings.machine_id} stopped", err=True)


@machine_app.command("plan")
def plan(
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Print what `emp machine` would run here: services, ports, GPUs, workers."""
    settings, hardware_settings = _settings()
    mapping = load_mapping(settings.service_mapping)
    requests = parse_workers(settings.workers, mapping)
    hardware = detect_hardware(hardware_settings)
    context = PlanContext(settings.machine_id, settings.services, dict(os.environ))
    machine_plan = build_plan(requests, hardware, mapping, context)
    if as_json:
        typer.echo(machine_plan.model_dump_json(indent=2))
        return
    _print_plan(machine_plan, hardware)


def _print_plan(machine_plan: MachinePlan, hardware: MachineHardware) -> None:
    console = Console()
    gpus = ", ".join(f"{g.index}: {g.name} {g.memory_gb:g} GB" for g in hardware.gpus) or "none"
    console.print(
        f"machine [bold]{machine_plan.machine_id}[/] — {machine_plan.services_mode} services; "
        f"GPUs ({hardware.gpu_mode}): {gpus}; {hardware.cpu_cores} cores, {hardware.ram_gb} GB RAM"
    )
    services = Table(title="Services (started first, in this order)")
    for column in ("name", "port", "GPU", "command", "ready when"):
        services.add_column(column)
    for daemon in machine_plan.daemons:
        services.add_row(
            daemon.name,
            str(daemon.port),
            _gpu(daemon.gpu),
            " ".join(daemon.command),
            f"GET {daemon.ready_url} → 2xx",
        )
    workers = Table(title="Workers (each after its service)")
    for column in ("name", "worker id", "connector", "GPU", "after", "environment"):
        workers.add_column(column)
    for worker in machine_plan.workers:
        workers.add_row(
            worker.name,
            worker.worker_id,
            worker.connector,
            _gpu(worker.gpu),
            worker.depends_on or "—",
            " ".join(f"{key}={value}" for key, value in worker.env.items()),
        )
    if machine_plan.daemons:
        console.print(services)
    console.print(workers)


def _gpu(index: int | None) -> str:
    return "—" if index is None else str(index)
