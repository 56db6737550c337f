"""Level guessing, restart backoff, hardware mock mode and settings names."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from emp_queue.hardware import (
    GpuDetectionError,
    GpuMode,
    HardwareSettings,
    detect_hardware,
    with_fresh_gpu_readings,
)
from emp_queue.machine.logs import guess_level
from emp_queue.machine.settings import MachineSettings
from emp_queue.machine.supervisor import RestartPolicy


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ('{"event": "job_claimed", "level": "info"}', "info"),
        ('{"event": "x", "level": "warning"}', "warning"),
        ('{"msg": "load", "level": "WARN"}', "warning"),
        ('{"levelname": "ERROR", "message": "x"}', "error"),
        ('{"severity": "critical"}', "critical"),
        ("Traceback (most recent call last):", "error"),
        ("torch.cuda.OutOfMemoryError: CUDA out of memory", "error"),
        ("WARNING: the model is big", "warning"),
        ("FATAL: cannot start", "critical"),
        ("Prompt executed in 2.1 seconds", "info"),
        ('{"not": "a level"}', "info"),
        ("{broken json", "info"),
    ],
)
def test_guess_level(line: str, level: str) -> None:
    assert guess_level(line) == level


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RestartPolicy(backoff_s=0.5, backoff_max_s=3.0)
    assert [policy.delay_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_mock_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMP_GPU_MODE", "mock")
    monkeypatch.setenv("EMP_MOCK_GPUS", "2")
    monkeypatch.setenv("EMP_MOCK_GPU_MEMORY_GB", "80")
    monkeypatch.setenv("EMP_MOCK_GPU_NAME", "H100")
    found = detect_hardware(HardwareSettings())
    assert [(g.index, g.name, g.memory_gb) for g in found.gpus] == [
        (0, "H100", 80),
        (1, "H100", 80),
    ]
    assert found.gpu_mode == "mock"
    assert found.cpu_cores >= 1
    assert found.ram_gb > 0


def test_auto_without_nvml_has_no_gpus_but_nvml_mode_says_why() -> None:
    # This test machine has no NVIDIA driver.
    assert detect_hardware(HardwareSettings(gpu_mode=GpuMode.AUTO)).gpus == []
    with pytest.raises(GpuDetectionError, match="NVML"):
        detect_hardware(HardwareSettings(gpu_mode=GpuMode.NVML))


def test_settings_read_the_operator_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKERS", "comfyui:2")
    monkeypatch.setenv("EMP_HEALTH_PORT", "9191")
    monkeypatch.setenv("EMP_DRAIN_GRACE_S", "45")
    monkeypatch.setenv("EMP_MACHINE_ID", "gpu-box-1")
    monkeypatch.setenv("EMP_MACHINE_STATUS_INTERVAL_S", "5")
    monkeypatch.setenv("EMP_MACHINE_SERVICES", "fake")
    settings = MachineSettings()
    assert settings.workers == "comfyui:2"
    assert settings.health_port == 9191
    assert settings.drain_grace_s == 45
    assert settings.machine_id == "gpu-box-1"
    assert settings.status_interval_s == 5
    assert settings.services == "fake"


def test_machine_id_must_fit_in_keys() -> None:
    with pytest.raises(ValueError, match="machine id 'a b'"):
        MachineSettings(machine_id="a b")


class FakeNvml:
    """``pynvml`` as the driver answers it: two GPUs whose VRAM in use moves between reads."""

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        self.used = [2 * 1024**3, 30 * 1024**3]
        self.busy: list[int | None] = [97, None]  # GPU 1 has no utilisation counter

    def nvmlInit(self) -> None:  # noqa: N802 - NVML's names
        pass

    def nvmlShutdown(self) -> None:  # noqa: N802
        pass

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:  # noqa: N802
        return b"NVIDIA H200"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(total=141 * 1024**3, used=self.used[handle])

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:  # noqa: N802
        busy = self.busy[handle]
        if busy is None:
            raise self.NVMLError("Not Supported")
        return SimpleNamespace(gpu=busy, memory=0)


def test_nvml_gpus_report_vram_and_utilisation_and_a_refresh_reads_them_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    found = detect_hardware(HardwareSettings(gpu_mode=GpuMode.NVML))
    nvml.used = [40 * 1024**3, 0]
    nvml.busy = [3, None]
    refreshed = with_fresh_gpu_readings(found)
    mocked = detect_hardware(HardwareSettings(gpu_mode=GpuMode.MOCK, mock_gpus=1))

    assert [(g.memory_gb, g.memory_used_gb) for g in found.gpus] == [(141.0, 2.0), (141.0, 30.0)]
    assert [g.utilization_percent for g in found.gpus] == [97.0, None]
    assert [g.memory_used_gb for g in refreshed.gpus] == [40.0, 0.0]
    assert [g.utilization_percent for g in refreshed.gpus] == [3.0, None]
    assert with_fresh_gpu_readings(mocked) == mocked
    assert mocked.gpus[0].memory_used_gb is None
    assert mocked.gpus[0].utilization_percent is None
