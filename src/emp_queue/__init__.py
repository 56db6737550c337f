"""emp-job-queue: a distributed AI workload broker.

The public API is what this module exports; ``tests/unit/test_public_api.py`` pins it.

The queue's names (:class:`JobQueue` and its companions) are imported on first use: the plain
``emp-job-queue`` install is the client (SDK and CLI) and has no Redis client; they come with
``emp-job-queue[server]`` (docs/decisions/0023-client-without-the-server.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from emp_queue.errors import (
    BrokerError,
    ConfigurationError,
    EmpError,
    InvalidJobError,
    InvalidTransitionError,
    JobNotFoundError,
    StaleAttemptError,
    UnknownRequirementError,
    WorkerNotRegisteredError,
)
from emp_queue.models import (
    ClaimedJob,
    CustomerAccess,
    EventType,
    FailureClass,
    Hardware,
    Job,
    JobError,
    JobSpec,
    JobStatus,
    ServiceModels,
    WorkerCapabilities,
)

if TYPE_CHECKING:
    from emp_queue.core.queue import Backoff, JobQueue, SweepReport
    from emp_queue.core.worker_calls import Revocation

__version__ = "0.1.0"

SERVER_NAMES = {
    "Backoff": "emp_queue.core.queue",
    "JobQueue": "emp_queue.core.queue",
    "Revocation": "emp_queue.core.worker_calls",
    "SweepReport": "emp_queue.core.queue",
}
"""The names that need the server's dependencies, and the module of each."""

__all__ = [
    "Backoff",
    "BrokerError",
    "ClaimedJob",
    "ConfigurationError",
    "CustomerAccess",
    "EmpError",
    "EventType",
    "FailureClass",
    "Hardware",
    "InvalidJobError",
    "InvalidTransitionError",
    "Job",
    "JobError",
    "JobNotFoundError",
    "JobQueue",
    "JobSpec",
    "JobStatus",
    "Revocation",
    "ServiceModels",
    "StaleAttemptError",
    "SweepReport",
    "UnknownRequirementError",
    "WorkerCapabilities",
    "WorkerNotRegisteredError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name not in SERVER_NAMES:
        raise AttributeError(f"module 'emp_queue' has no attribute {name!r}")
    from emp_queue.server_parts import require_server_parts

    require_server_parts(f"emp_queue.{name}")
    return getattr(importlib.import_module(SERVER_NAMES[name]), name)
