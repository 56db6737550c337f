"""``WORKERS`` + hardware + service mapping → the machine's process plan.

The plan is pure data (no I/O): which daemons run on which port and GPU with which
command, which ``emp worker`` processes run in front of them, and in what order they start.
``emp machine plan`` prints it; the agent executes it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from emp_queue.errors import ConfigurationError
from emp_queue.machine.mapping import DaemonSpec, ServiceMapping, WorkerTypeSpec
from emp_queue.machine.settings import ServicesMode
from emp_queue.machine_models import MachineHardware
from emp_queue.models import NAME_PATTERN

LOOPBACK = "127.0.0.1"


class WorkersSpecError(ConfigurationError):
    """``WORKERS`` cannot be read; write it as ``TYPE:COUNT[@POOL][,TYPE:COUNT[@POOL]...]``."""


@dataclass(frozen=True)
class WorkerRequest:
    worker_type: str
    count: int | None
    """``None`` is ``auto``: one per GPU for GPU-bound types, one otherwise."""
    pool: str | None = None
    """The pool of this type's workers (``@POOL``); None: the machine's (``EMP_POOL``)."""


def parse_workers(spec: str | None, mapping: ServiceMapping) -> list[WorkerRequest]:
    """``comfyui:2@heavy,ollama:1,simulation:auto`` → requests, in the order written."""
    known = ", ".join(sorted(mapping.worker_types))
    if spec is None or not spec.strip():
        raise WorkersSpecError(
            f"WORKERS is not set; for example WORKERS=simulation:1 (types: {known})"
        )
    requests: list[WorkerRequest] = []
    for raw in spec.split(","):
        token = raw.strip()
        worker_type, colon, rest = token.partition(":")
        count_text, at, pool = rest.partition("@")
        worker_type, count_text, pool = worker_type.strip(), count_text.strip(), pool.strip()
        if not colon or not worker_type or not count_text:
            raise WorkersSpecError(
                f"WORKERS token {token!r} is not TYPE:COUNT[@POOL] (in {spec!r}); "
                "COUNT is a positive number or 'auto'"
            )
        if at and not re.fullmatch(NAME_PATTERN, pool):
            raise WorkersSpecError(
                f"WORKERS token {token!r} names pool {pool!r}; a pool is 1-64 letters, digits, "
                "'.', '_' or '-'"
            )
        if worker_type not in mapping.worker_types:
            raise WorkersSpecError(
                f"WORKERS names unknown worker type {worker_type!r}; known types: {known} "
                "(add one through EMP_SERVICE_MAPPING)"
            )
        if any(r.worker_type == worker_type for r in requests):
            raise WorkersSpecError(f"WORKERS names {worker_type!r} twice; give one count")
        requests.append(WorkerRequest(worker_type, _count(token, count_text), pool or None))
    return requests


def _count(token: str, text: str) -> int | None:
    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise WorkersSpecError(
            f"WORKERS token {token!r} has count {text!r}; use a positive number or 'auto'"
        )
    return int(text)


class DaemonPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    daemon: str
    port: int
    gpu: int | None
    command: list[str]
    cwd: str | None
    env: dict[str, str]
    url: str
    url_env: str
    """Environment variable that carries ``url`` to the workers."""
    ready_url: str
    start_timeout_s: float


class WorkerPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    worker_id: str
    worker_type: str
    connector: str
    services: list[str]
    gpu: int | None
    depends_on: str | None
    """The daemon it talks to, started (and ready) before it."""
    concurrency: int
    env: dict[str, str]
    arguments: list[str]
    """Arguments of ``emp``: ``worker --connector ...``."""


class MachinePlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    machine_id: str
    services_mode: ServicesMode
    gpu_count: int
    worker_types: dict[str, int]
    daemons: list[DaemonPlan]
    """In start order; stopped in reverse."""
    workers: list[WorkerPlan]


@dataclass(frozen=True)
class PlanContext:
    machine_id: str
    services_mode: ServicesMode
    environ: Mapping[str, str]
    python: str = sys.executable


def build_plan(
    requests: Sequence[WorkerRequest],
    hardware: MachineHardware,
    mapping: ServiceMapping,
    context: PlanContext,
) -> MachinePlan:
    gpu_count = len(hardware.gpus)
    daemons: dict[str, DaemonPlan] = {}
    workers: list[WorkerPlan] = []
    resolved: dict[str, int] = {}
    for request in requests:
        spec = mapping.worker_types[request.worker_type]
        daemon_spec = mapping.daemons[spec.daemon] if spec.daemon else None
        count = _resolve_count(request, spec, daemon_spec, gpu_count)
        resolved[request.worker_type] = count
        for index in range(count):
            gpu = index % gpu_count if _binds_gpu(spec, daemon_spec) else None
            daemon = None
            if spec.daemon and daemon_spec and _runs_here(daemon_spec, context):
                daemon = _daemon(spec.daemon, daemon_spec, index, gpu, context)
                daemons.setdefault(daemon.name, daemon)
            workers.append(
                _worker(request.worker_type, spec, index, gpu, daemon, context, request.pool)
            )
    return MachinePlan(
        machine_id=context.machine_id,
        services_mode=context.services_mode,
        gpu_count=gpu_count,
        worker_types=resolved,
        daemons=list(daemons.values()),
        workers=workers,
    )


def _binds_gpu(spec: WorkerTypeSpec, daemon: DaemonSpec | None) -> bool:
    # A shared daemon (Ollama) schedules the GPUs itself; its workers are not pinned.
    return spec.gpu_bound and (daemon is None or daemon.per_gpu)


def _resolve_count(
    request: WorkerRequest, spec: WorkerTypeSpec, daemon: DaemonSpec | None, gpu_count: int
) -> int:
    name = request.worker_type
    if request.count is None and spec.gpu_bound and gpu_count == 0:
        raise ConfigurationError(
            f"WORKERS asks for {name}:auto (one per GPU) but no GPU was detected; give a "
            "count, or simulate GPUs with EMP_GPU_MODE=mock EMP_MOCK_GPUS=N"
        )
    if _binds_gpu(spec, daemon) and gpu_count == 0:
        raise ConfigurationError(
            f"worker type {name!r} runs one service per GPU but no GPU was detected; "
            "check the NVIDIA driver (EMP_GPU_MODE=nvml shows why) or simulate GPUs with "
            "EMP_GPU_MODE=mock EMP_MOCK_GPUS=N"
        )
    if request.count is not None:
        return request.count
    return gpu_count if spec.gpu_bound else 1


def _runs_here(daemon: DaemonSpec, context: PlanContext) -> bool:
    if context.services_mode is ServicesMode.FAKE:
        return daemon.fake is not None
    return bool(daemon.command)


def _daemon(
    kind: str, spec: DaemonSpec, index: int, gpu: int | None, context: PlanContext
) -> DaemonPlan:
    instance = index if spec.per_gpu else 0
    port = spec.base_port + instance
    name = f"{kind}-{instance}" if spec.per_gpu else kind
    fields = {"port": str(port), "gpu": "" if gpu is None else str(gpu), "python": context.python}
    env = {key: value.format_map(fields) for key, value in spec.env.items()}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    cwd: str | None = None
    if context.services_mode is ServicesMode.FAKE:
        command = [context.python, "-m", "emp_queue.testing.fakes", str(spec.fake)]
        command += ["--host", LOOPBACK, "--port", str(port)]
    else:
        command = [part.format_map(fields) for part in spec.command]
        cwd = _cwd(name, spec, context)
    base = f"http://{LOOPBACK}:{port}"
    return DaemonPlan(
        name=name,
        daemon=kind,
        port=port,
        gpu=gpu,
        command=command,
        cwd=cwd,
        env=env,
        url=base + spec.url_suffix,
        url_env=spec.url_env,
        ready_url=base + spec.ready_path,
        start_timeout_s=spec.start_timeout_s,
    )


def _cwd(name: str, spec: DaemonSpec, context: PlanContext) -> str | None:
    if spec.cwd_env is None:
        return None
    value = context.environ.get(spec.cwd_env)
    if not value:
        raise ConfigurationError(
            f"{name} runs from the directory in {spec.cwd_env}, which is not set; point it at "
            "the installation, or run protocol fakes with EMP_MACHINE_SERVICES=fake"
        )
    return str(Path(value))


def _worker(
    worker_type: str,
    spec: WorkerTypeSpec,
    index: int,
    gpu: int | None,
    daemon: DaemonPlan | None,
    context: PlanContext,
    pool: str | None = None,
) -> WorkerPlan:
    worker_id = f"{context.machine_id}-{worker_type}-{index}"
    env: dict[str, str] = {}
    if pool is not None:
        env["EMP_WORKER_POOL"] = pool
    if daemon is not None:
        env[daemon.url_env] = daemon.url
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        env["EMP_WORKER_GPU_INDEX"] = str(gpu)
    arguments = ["worker", "--connector", spec.connector, "--worker-id", worker_id]
    arguments += ["--machine-id", context.machine_id, "--concurrency", str(spec.concurrency)]
    for service in spec.services:
        arguments += ["--service", service]
    return WorkerPlan(
        name=f"worker-{worker_type}-{index}",
        worker_id=worker_id,
        worker_type=worker_type,
        connector=spec.connector,
        services=list(spec.services),
        gpu=gpu,
        depends_on=daemon.name if daemon else None,
        concurrency=spec.concurrency,
        env=env,
        arguments=arguments,
    )
