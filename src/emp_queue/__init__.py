"""emp-job-queue: a distributed AI workload broker.

The public API is what this module exports; ``tests/unit/test_public_api.py`` pins it.
"""

from emp_queue.core.queue import Backoff, JobQueue, Revocation, SweepReport
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

__version__ = "0.1.0"

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
