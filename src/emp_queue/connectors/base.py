"""The connector interface: how a worker hands a job to one external AI service.

A connector is small on purpose. The worker owns everything generic — claiming, leases,
heartbeats, cancel, timeouts, drain, retries — and a connector only knows its service:

* ``Config`` — a pydantic-settings model read from ``EMP_<KIND>_*`` environment variables
  (the machine agent sets them per process), or built directly in tests;
* ``start()`` / ``close()`` — open and release clients and sockets (once per process);
* ``discover()`` — what the service really offers now: models installed and loaded,
  versions, hardware it reports; the worker publishes this as its capabilities;
* ``check_health()`` — does the service answer right now? The worker stops claiming while
  it does not (``docs/worker.md``, service health);
* ``run(job)`` — do one job and return its JSON result. Report progress with
  ``job.progress()``, put any output bigger than a few kilobytes in the asset store with
  ``job.store()``. Fail with :class:`~emp_queue.errors.JobFailedError` and a failure class
  (see :func:`job_fault` / :func:`service_fault`); any other exception counts as a worker
  fault. Cancellation and timeouts arrive as ``asyncio.CancelledError`` inside ``run``:
  stop the remote work (interrupt, close the stream) and re-raise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from emp_queue.errors import JobFailedError
from emp_queue.models import FailureClass, Job, ServiceModels

if TYPE_CHECKING:
    from emp_queue.storage import StoredAsset


class ConnectorConfig(BaseSettings):
    """Base of every connector's settings; subclasses set ``env_prefix``."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Discovery:
    """What a connector found its service offering, for the worker's capabilities."""

    models: ServiceModels = field(default_factory=ServiceModels)
    version: str | None = None
    gpu_memory_gb: float | None = None
    """Total GPU memory the service reports (ComfyUI ``/system_stats``), when it does."""
    details: dict[str, Any] = field(default_factory=dict)
    node_classes: tuple[str, ...] = ()
    """Node classes the service can run (ComfyUI), matched against a job's ``nodes``."""


class RunningJob(Protocol):
    """What ``Connector.run`` gets: the job, and ways to report progress and store outputs."""

    @property
    def job(self) -> Job: ...

    @property
    def attempt(self) -> int: ...

    @property
    def payload(self) -> dict[str, Any]: ...

    async def progress(self, fraction: float | None, message: str | None = None) -> None:
        """Report progress in [0, 1] (``None`` for a message only); cheap to call often."""

    async def store(
        self, data: bytes, *, content_type: str, filename: str | None = None
    ) -> StoredAsset:
        """Upload one output to the job's asset store; put ``asset.as_result()`` in the result."""

    async def read_upload(self, ref: str) -> bytes:
        """The bytes of a file the job's customer uploaded (``POST /api/uploads``), named by
        the ``ref`` its payload carries; a reference to another customer's upload, or to one
        that is gone, is a job fault."""


class Connector(ABC):
    """One external service, as one worker process sees it."""

    kind: ClassVar[str]
    """The connector's name in ``emp worker --connector`` and in ``WORKERS``."""
    Config: ClassVar[type[ConnectorConfig]] = ConnectorConfig

    def __init__(self, config: ConnectorConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    async def start(self) -> None:
        """Open clients and sockets; raise :class:`ServiceUnavailableError` if unreachable."""
        return

    async def close(self) -> None:
        """Release what ``start`` opened."""
        return

    async def discover(self) -> Discovery:
        """What the service offers now (models, version). Called at start and periodically."""
        return Discovery()

    async def check_health(self) -> None:
        """Raise :class:`~emp_queue.errors.JobFailedError` when the service does not answer.

        Called about once a second while the worker is idle or its service is down, and after
        a job's service fault, so keep it cheap and harmless to running jobs: never a request
        that interrupts or queues behind work. The default rediscovers; override it with a
        lighter probe when discovery is heavy or disturbs the service.
        """
        await self.discover()

    @abstractmethod
    async def run(self, job: RunningJob) -> dict[str, Any]:
        """Run one job; return its JSON result (assets as URLs, never raw bytes)."""


class ServiceUnavailableError(JobFailedError):
    """The service cannot be reached or is not ready: a service fault, retried elsewhere."""

    def __init__(self, message: str, details: dict[str, object] | None = None) -> None:
        super().__init__(message, failure_class=FailureClass.SERVICE_FAULT, details=details)


PayloadT = TypeVar("PayloadT", bound=BaseModel)


def validation_problems(error: ValidationError, root: str = "payload") -> str:
    """``field.path: problem; ...`` for every problem pydantic found."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or root}: {e['msg']}" for e in error.errors())


def parse_payload(model: type[PayloadT], payload: Any, kind: str) -> PayloadT:
    """``payload`` validated as ``model``; a malformed one is the job's fault, field by field."""
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        raise job_fault(f"invalid {kind} payload: {validation_problems(error)}") from error


def job_fault(message: str, **details: object) -> JobFailedError:
    """The job itself is bad (invalid input, refused content): fail it, do not retry."""
    return JobFailedError(message, failure_class=FailureClass.JOB_FAULT, details=details)


def service_fault(message: str, **details: object) -> JobFailedError:
    """The service misbehaved (5xx, lost work, broken stream): retry the job elsewhere."""
    return JobFailedError(message, failure_class=FailureClass.SERVICE_FAULT, details=details)
