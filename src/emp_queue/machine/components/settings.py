"""Settings of the component manager, read from ``EMP_COMPONENTS_*``."""

from __future__ import annotations

import sys
from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return platformdirs.user_data_path("emp-job-queue", appauthor=False) / "comfyui"


def default_cache_dir() -> Path:
    return platformdirs.user_cache_path("emp-job-queue", appauthor=False) / "models"


class ComponentSettings(BaseSettings):
    """Where custom nodes and models go, and how hard the manager may push the machine."""

    model_config = SettingsConfigDict(env_prefix="EMP_COMPONENTS_", extra="ignore", frozen=True)

    manifest: str | None = Field(
        default=None,
        description="Manifest to install: a .json/.toml file path or an http(s) URL. "
        "Unset: nothing to install.",
    )
    nodes_dir: Path = Field(
        default_factory=lambda: default_data_dir() / "custom_nodes",
        description="Where custom nodes are cloned (ComfyUI's custom_nodes folder).",
    )
    models_dir: Path = Field(
        default_factory=lambda: default_data_dir() / "models",
        description="Where models appear under their manifest `dest` (ComfyUI's models folder).",
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        description="Content-addressed download cache (by SHA-256), reused across restarts.",
    )
    state_file: Path | None = Field(
        default=None,
        description="Record of installed nodes. Unset: <nodes_dir>/.emp-components.json.",
    )
    parallelism: int = Field(
        default=5, ge=1, le=32, description="Node installs and model downloads run at once."
    )
    disk_reserve_gb: float = Field(
        default=2.0, ge=0, description="Free disk space that downloads must leave untouched."
    )
    download_attempts: int = Field(
        default=3, ge=1, description="Tries per model in one run; each resumes the last."
    )
    download_retry_delay_s: float = Field(
        default=1.0, ge=0, description="Pause before a download resumes after a failure."
    )
    http_timeout_s: float = Field(
        default=60.0, gt=0, description="Limit for connecting and for each read of a download."
    )
    pip_python: Path = Field(
        default_factory=lambda: Path(sys.executable),
        description="Interpreter whose pip installs the nodes' requirements.txt.",
    )
    pip_extra_args: list[str] = Field(
        default_factory=list,
        description='Extra pip install arguments, as JSON (e.g. ["--no-cache-dir"]).',
    )
    git_executable: str = Field(default="git", description="The git command.")

    @property
    def resolved_state_file(self) -> Path:
        return self.state_file or self.nodes_dir / ".emp-components.json"
