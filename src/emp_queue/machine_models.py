"""The machine record: what an agent publishes about its machine, and what the monitor shows.

One JSON document per machine, rewritten on every status (every 10 s and on each change);
``machine_*`` events carry the same document, so a monitor never needs a second read.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from emp_queue.models import NAME_PATTERN


class MachinePhase(StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class ServiceStatus(StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"


class GpuInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0)
    name: str
    memory_gb: float = Field(ge=0)
    memory_used_gb: float | None = Field(default=None, ge=0)
    """VRAM in use when the record was published (NVML); None where unknown (mock GPUs)."""
    utilization_percent: float | None = Field(default=None, ge=0, le=100)
    """Share of the last sample period (NVML's, 1/6 s to 1 s) in which a kernel ran, when the
    record was published; None where unknown (mock GPUs, or a GPU NVML has no figure for)."""


class MachineHardware(BaseModel):
    model_config = ConfigDict(frozen=True)

    gpus: list[GpuInfo] = Field(default_factory=list)
    cpu_cores: int = Field(default=0, ge=0)
    ram_gb: float = Field(default=0, ge=0)
    gpu_mode: str = "none"
    """How the GPUs were found: ``nvml``, ``mock`` or ``none``."""


class StartupStep(BaseModel):
    name: str
    status: StepStatus = StepStatus.PENDING
    duration_ms: int | None = None
    detail: str | None = None


class ServiceState(BaseModel):
    name: str
    """Unique on the machine: ``comfyui-0``, ``ollama``, ``worker-comfyui-0``..."""
    kind: str
    """``daemon`` (an AI service) or ``worker`` (an ``emp worker`` process)."""
    status: ServiceStatus = ServiceStatus.PENDING
    pid: int | None = None
    port: int | None = None
    gpu: int | None = None
    restarts: int = 0
    detail: str | None = None


class MachineRecord(BaseModel):
    machine_id: str = Field(pattern=NAME_PATTERN)
    phase: MachinePhase = MachinePhase.STARTING
    hardware: MachineHardware = Field(default_factory=MachineHardware)
    steps: list[StartupStep] = Field(default_factory=list)
    services: list[ServiceState] = Field(default_factory=list)
    workers: list[str] = Field(default_factory=list)
    """Ids of the ``emp worker`` processes this machine runs."""
    worker_types: dict[str, int] = Field(default_factory=dict)
    """The ``WORKERS`` spec, resolved: worker type → count."""
    pool: str | None = None
    """``EMP_WORKER_POOL`` of the machine (its workers' pool), known before they register."""
    health_url: str | None = None
    started_at: int = 0
    updated_at: int = 0
    startup_ms: int | None = None
    version: str | None = None
    online: bool = True
    """Computed when read: False once the machine has been silent past the timeout."""


class LogLine(BaseModel):
    """One line a service on a machine logged, as shipped to the machine's log stream."""

    model_config = ConfigDict(frozen=True)

    id: str = ""
    """The stream entry id (set when read back)."""
    ts: int
    """Milliseconds since the epoch."""
    machine_id: str
    service: str
    level: str = "info"
    message: str
