"""The service mapping: which connector, services and daemon each worker type needs.

Data, not code: the default ships as ``service_mapping.json`` in this package and an
operator replaces it with ``EMP_SERVICE_MAPPING=path.json`` (same schema) to add a worker
type, move a port or change a daemon's command.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from emp_queue.errors import ConfigurationError


class DaemonSpec(BaseModel):
    """An AI service process the machine runs for its workers (ComfyUI, Ollama...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_gpu: bool
    """One instance per GPU-bound worker, pinned to its GPU; otherwise one shared instance."""
    base_port: int = Field(ge=1, le=65535)
    """Port of instance 0; instance ``i`` listens on ``base_port + i``."""
    command: list[str] = Field(default_factory=list)
    """The real service's command; ``{port}``, ``{gpu}`` and ``{python}`` are filled in.
    Empty: the service is remote (a hosted API) and only its fake runs on the machine."""
    cwd_env: str | None = None
    """Environment variable naming the directory the real command runs in."""
    env: dict[str, str] = Field(default_factory=dict)
    fake: str | None = None
    """Name of the protocol fake (``python -m emp_queue.testing.fakes NAME``)."""
    ready_path: str = Field(pattern=r"^/")
    """HTTP path that answers 2xx once the service can take work."""
    url_env: str
    """Environment variable through which a worker's connector reaches the service."""
    url_suffix: str = ""
    start_timeout_s: float = Field(default=60.0, gt=0)


class WorkerTypeSpec(BaseModel):
    """A ``WORKERS`` type: what its ``emp worker`` processes run and what they need."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connector: str
    services: list[str] = Field(min_length=1)
    gpu_bound: bool
    """``auto`` means one per GPU; a per-GPU daemon pins each worker to one GPU."""
    daemon: str | None = None
    concurrency: int = Field(default=1, ge=1)


class ServiceMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    worker_types: dict[str, WorkerTypeSpec] = Field(min_length=1)
    daemons: dict[str, DaemonSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _daemons_exist(self) -> ServiceMapping:
        for name, spec in self.worker_types.items():
            if spec.daemon is not None and spec.daemon not in self.daemons:
                raise ValueError(
                    f"worker type {name!r} needs daemon {spec.daemon!r}, which is not among "
                    f"the daemons ({', '.join(sorted(self.daemons)) or 'none'})"
                )
        return self

    def shifted(self, port_offset: int) -> ServiceMapping:
        """The same mapping with every daemon's ports moved by ``port_offset``
        (several local stacks, or tests, on one host)."""
        daemons = {
            name: spec.model_copy(update={"base_port": spec.base_port + port_offset})
            for name, spec in self.daemons.items()
        }
        return self.model_copy(update={"daemons": daemons})


def load_mapping(path: Path | None = None) -> ServiceMapping:
    """The mapping in ``path``, or the packaged default."""
    if path is None:
        text = resources.files(__package__).joinpath("service_mapping.json").read_text()
        return ServiceMapping.model_validate_json(text)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigurationError(
            f"EMP_SERVICE_MAPPING={path} cannot be read: {error.strerror}"
        ) from error
    try:
        return ServiceMapping.model_validate_json(text)
    except ValidationError as error:
        raise ConfigurationError(
            f"EMP_SERVICE_MAPPING={path} is not a valid service mapping:\n{error}"
        ) from error
