"""What this machine has: GPUs (through NVML, or mocked), CPU cores and RAM.

Shared by the machine agent (which plans one service per GPU) and the worker (which
advertises its hardware to the matcher). NVML comes from the optional ``nvidia-ml-py``
package (``pip install 'emp-job-queue[gpu]'``), imported only when GPUs are looked for,
so a CPU-only box never needs it.
"""

from __future__ import annotations

import importlib
from enum import StrEnum
from typing import Any

import psutil
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from emp_queue.errors import ConfigurationError
from emp_queue.machine_models import GpuInfo, MachineHardware

GIB = 1024**3


class GpuMode(StrEnum):
    AUTO = "auto"
    """NVML when it answers; otherwise no GPUs."""
    NVML = "nvml"
    """NVML is required: a machine without it is misconfigured."""
    MOCK = "mock"
    """``EMP_MOCK_GPUS`` pretend GPUs, for tests and the local simulation stack."""
    NONE = "none"


class HardwareSettings(BaseSettings):
    """``EMP_GPU_MODE`` and the mock GPUs' shape."""

    model_config = SettingsConfigDict(env_prefix="EMP_", extra="ignore")

    gpu_mode: GpuMode = GpuMode.AUTO
    mock_gpus: int = Field(default=1, ge=0, le=64)
    mock_gpu_memory_gb: float = Field(default=24.0, gt=0)
    mock_gpu_name: str = "Mock GPU"


class GpuDetectionError(ConfigurationError):
    """``EMP_GPU_MODE=nvml`` but NVML is missing or fails; install the NVIDIA driver and
    ``emp-job-queue[gpu]``, or use ``EMP_GPU_MODE=auto``."""


def detect_hardware(settings: HardwareSettings) -> MachineHardware:
    """This machine's hardware, GPUs found according to ``settings.gpu_mode``."""
    gpus, mode = _gpus(settings)
    return MachineHardware(
        gpus=gpus,
        cpu_cores=psutil.cpu_count(logical=True) or 1,
        ram_gb=round(psutil.virtual_memory().total / GIB, 1),
        gpu_mode=mode,
    )


def _gpus(settings: HardwareSettings) -> tuple[list[GpuInfo], str]:
    if settings.gpu_mode is GpuMode.NONE:
        return [], "none"
    if settings.gpu_mode is GpuMode.MOCK:
        return mock_gpus(settings), "mock"
    try:
        return nvml_gpus(), "nvml"
    except GpuDetectionError:
        if settings.gpu_mode is GpuMode.NVML:
            raise
        return [], "none"


def mock_gpus(settings: HardwareSettings) -> list[GpuInfo]:
    return [
        GpuInfo(index=i, name=settings.mock_gpu_name, memory_gb=settings.mock_gpu_memory_gb)
        for i in range(settings.mock_gpus)
    ]


def nvml_gpus() -> list[GpuInfo]:
    """The GPUs NVML reports, in NVML index order (the order ``CUDA_VISIBLE_DEVICES`` uses
    when ``CUDA_DEVICE_ORDER=PCI_BUS_ID``)."""
    try:
        nvml: Any = importlib.import_module("pynvml")
    except ImportError as error:
        raise GpuDetectionError(
            "NVML bindings are not installed; pip install 'emp-job-queue[gpu]'"
        ) from error
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as error:
        raise GpuDetectionError(f"NVML did not initialise: {error}") from error
    try:
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                GpuInfo(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    memory_gb=round(memory.total / GIB, 1),
                    memory_used_gb=round(memory.used / GIB, 1),
                    utilization_percent=_utilization(nvml, handle),
                )
            )
        return gpus
    except nvml.NVMLError as error:
        raise GpuDetectionError(f"NVML failed while listing GPUs: {error}") from error
    finally:
        nvml.nvmlShutdown()


def _utilization(nvml: Any, handle: Any) -> float | None:
    """NVML's GPU utilisation; None on a GPU that has no such counter (some MIG slices and
    older boards answer NOT_SUPPORTED) rather than failing the whole listing."""
    try:
        return float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except nvml.NVMLError:
        return None


def with_fresh_gpu_readings(hardware: MachineHardware) -> MachineHardware:
    """``hardware`` with each GPU's VRAM in use and utilisation read again from NVML (the
    monitor's "VRAM" column, the ``emp_machine_gpu_*`` series); unchanged for mock GPUs or
    none. NVML answers from the driver in microseconds."""
    if hardware.gpu_mode != "nvml":
        return hardware
    fresh = {gpu.index: gpu for gpu in nvml_gpus()}
    gpus = [
        gpu.model_copy(
            update={
                "memory_used_gb": reading.memory_used_gb if reading else None,
                "utilization_percent": reading.utilization_percent if reading else None,
            }
        )
        for gpu in hardware.gpus
        for reading in [fresh.get(gpu.index)]
    ]
    return hardware.model_copy(update={"gpus": gpus})
