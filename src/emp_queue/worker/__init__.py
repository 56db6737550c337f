"""The worker runtime: claims matching jobs and runs them through a handler."""

from emp_queue.worker.runtime import JobContext, JobHandler, Worker, WorkerSettings

__all__ = ["JobContext", "JobHandler", "Worker", "WorkerSettings"]
