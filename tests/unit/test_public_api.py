"""The public API is exactly what ``emp_queue`` exports: changing it is a deliberate edit here."""

import emp_queue

PUBLIC = {
    "Backoff", "BrokerError", "ClaimedJob", "ConfigurationError", "CustomerAccess", "EmpError",
    "EventType", "FailureClass", "Hardware", "InvalidJobError", "InvalidTransitionError", "Job",
    "JobError", "JobNotFoundError", "JobQueue", "JobSpec", "JobStatus", "Revocation",
    "ServiceModels", "StaleAttemptError", "SweepReport", "UnknownRequirementError",
    "WorkerCapabilities", "WorkerNotRegisteredError", "__version__",
}  # fmt: skip


def test_the_package_exports_exactly_the_public_api() -> None:
    assert set(emp_queue.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(emp_queue, name) is not None


def test_every_exported_exception_derives_from_the_one_root() -> None:
    exported = [getattr(emp_queue, name) for name in PUBLIC]
    exceptions = [e for e in exported if isinstance(e, type) and issubclass(e, BaseException)]
    assert len(exceptions) == 9
    assert all(issubclass(error, emp_queue.EmpError) for error in exceptions)
