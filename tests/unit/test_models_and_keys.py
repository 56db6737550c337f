import pytest
from pydantic import ValidationError

import emp_queue
from emp_queue.core.keys import Keys
from emp_queue.errors import ConfigurationError
from emp_queue.models import JobSpec, JobStatus, WorkerCapabilities


def test_public_api_is_pinned() -> None:
    assert sorted(emp_queue.__all__) == sorted(
        [
            "Backoff", "BrokerError", "ClaimedJob", "ConfigurationError", "CustomerAccess",
            "EmpError", "EventType", "FailureClass", "Hardware", "InvalidJobError",
            "InvalidTransitionError", "Job", "JobError", "JobNotFoundError", "JobQueue",
            "JobSpec", "JobStatus", "Revocation", "ServiceModels", "StaleAttemptError",
            "SweepReport", "UnknownRequirementError", "WorkerCapabilities",
            "WorkerNotRegisteredError", "__version__",
        ]
    )  # fmt: skip
    assert all(hasattr(emp_queue, name) for name in emp_queue.__all__)


def test_every_error_derives_from_one_root() -> None:
    for name in emp_queue.__all__:
        value = getattr(emp_queue, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, emp_queue.EmpError)


def test_keys_share_one_hash_tag() -> None:
    keys = Keys("prod")
    assert keys.job("j1") == "{prod}:job:j1"
    assert keys.class_pending("c1") == "{prod}:class:c1:pending"
    assert all(k.startswith("{prod}:") for k in (keys.events, keys.stats, keys.worker("w")))


@pytest.mark.parametrize("bad", ["", "has space", "a{b}", "x" * 65, "star*"])
def test_bad_namespace_is_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="namespace"):
        Keys(bad)


def test_job_spec_rejects_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="servce_required"):
        JobSpec.model_validate({"servce_required": "x"})
    with pytest.raises(ValidationError, match="priority"):
        JobSpec(service_required="sim", priority=101)
    with pytest.raises(ValidationError, match="id"):
        JobSpec(id="has|pipe", service_required="sim")


def test_effective_priority_prefers_the_workflow_priority() -> None:
    assert JobSpec(service_required="s", priority=10).effective_priority == 10
    assert JobSpec(service_required="s", priority=10, workflow_priority=70).effective_priority == 70


def test_worker_labels_are_checked() -> None:
    with pytest.raises(ValidationError, match=r"labels\.x"):
        WorkerCapabilities(services=["s"], labels={"x": None})


def test_terminal_statuses() -> None:
    assert JobStatus.CANCELLED.is_terminal
    assert not JobStatus.UNWORKABLE.is_terminal
    assert JobStatus.UNWORKABLE.is_waiting
