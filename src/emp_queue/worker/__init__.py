"""The worker runtime: claims matching jobs and runs them through a handler."""

from emp_queue.worker.context import JobContext, JobHandler
from emp_queue.worker.runtime import Worker
from emp_queue.worker.settings import WorkerSettings

__all__ = ["JobContext", "JobHandler", "Worker", "WorkerSettings"]
