"""Settings of the machine agent: ``EMP_MACHINE_*``, plus the few names operators already use
(``WORKERS``, ``EMP_HEALTH_PORT``, ``EMP_DRAIN_GRACE_S``, ``EMP_SERVICE_MAPPING``)."""

from __future__ import annotations

import re
import socket
from enum import StrEnum
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from emp_queue.core.settings import default_data_dir
from emp_queue.models import NAME_PATTERN


class ServicesMode(StrEnum):
    REAL = "real"
    """The real binaries (ComfyUI, Ollama...)."""
    FAKE = "fake"
    """The protocol fakes from ``emp_queue.testing.fakes``: a whole machine without a GPU."""


def default_machine_id() -> str:
    """The host name, cut to the characters a machine id allows."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64]
    return cleaned or "machine"


def default_log_dir() -> Path:
    return default_data_dir() / "machine" / "logs"


class MachineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMP_MACHINE_", extra="ignore")

    machine_id: str = Field(
        default_factory=default_machine_id,
        validation_alias=AliasChoices("EMP_MACHINE_ID", "machine_id"),
        description="Unique id of this machine in the fleet (default: the host name).",
    )
    workers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("WORKERS", "workers"),
        description="TYPE:COUNT[,TYPE:COUNT...]; COUNT may be 'auto'.",
    )
    services: ServicesMode = Field(
        default=ServicesMode.REAL, description="'real' binaries or protocol 'fake's."
    )
    service_mapping: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("EMP_SERVICE_MAPPING", "service_mapping"),
        description="JSON file replacing the packaged service mapping.",
    )
    log_dir: Path = Field(
        default_factory=default_log_dir, description="Rotating log files, one per service."
    )
    log_file_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    log_file_backups: int = Field(default=3, ge=0)
    status_interval_s: float = Field(default=10.0, gt=0)
    health_host: str = Field(
        default="127.0.0.1",
        validation_alias=AliasChoices("EMP_HEALTH_HOST", "health_host"),
        description="Health API address; anything but loopback needs EMP_MACHINE_HEALTH_KEY.",
    )
    health_port: int = Field(
        default=9090,
        ge=0,
        le=65535,
        validation_alias=AliasChoices("EMP_HEALTH_PORT", "health_port"),
        description="Health API port; 0 picks a free one.",
    )
    health_key: SecretStr | None = Field(
        default=None, description="Bearer key the health API requires."
    )
    drain_grace_s: float = Field(
        default=30.0,
        ge=0,
        validation_alias=AliasChoices("EMP_DRAIN_GRACE_S", "drain_grace_s"),
        description="Time running jobs get to finish on SIGTERM before they are handed back.",
    )
    stop_grace_s: float = Field(
        default=10.0, gt=0, description="SIGTERM → SIGKILL delay for a daemon."
    )
    restart_backoff_s: float = Field(default=1.0, gt=0, description="First restart delay.")
    restart_backoff_max_s: float = Field(default=60.0, gt=0)
    crash_loop_count: int = Field(default=5, ge=1, description="Crashes within the window …")
    crash_loop_window_s: float = Field(default=120.0, gt=0, description="… mark it failed.")
    worker_start_timeout_s: float = Field(default=60.0, gt=0)
    placement_interval_s: float = Field(
        default=0.0,
        ge=0,
        description=(
            "Predictive placement (machine/placement_loop.py): read the fleet's model demand at "
            "boot and this often, download models in demand within the budgets, report each "
            "decision as a machine_placement event; 0 turns it off."
        ),
    )
    placement_disk_gb: float = Field(
        default=100.0, gt=0, description="Placement: disk the placed models may use in all."
    )
    placement_vram_gb: float = Field(
        default=0.0,
        ge=0,
        description="Placement: GPU memory models may use; 0: the detected GPUs' memory.",
    )
    worker_command: list[str] | None = Field(
        default=None,
        description="JSON list launching 'emp' (the worker's arguments are appended); "
        "default: this Python running emp_queue.",
    )

    @field_validator("machine_id")
    @classmethod
    def _check_machine_id(cls, value: str) -> str:
        # The id is part of Redis keys and of worker ids.
        if not re.fullmatch(NAME_PATTERN, value):
            raise ValueError(f"machine id {value!r} must be 1-64 characters from A-Z a-z 0-9 _ . -")
        return value
