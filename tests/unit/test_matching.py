from typing import Any

import pytest

from emp_queue.core.matching import JobClass, hits, matches, mismatches, satisfies
from emp_queue.models import WorkerCapabilities


@pytest.mark.parametrize(
    ("required", "actual", "expected"),
    [
        (["a", "b"], ["a", "b", "c"], True),  # list ⊆ list
        (["a", "d"], ["a", "b", "c"], False),
        (["eu", "us"], "eu", True),  # value ∈ list
        (["eu", "us"], "asia", False),
        ("fp8", ["fp16", "fp8"], True),  # required value among the worker's list
        (24, 24, True),  # number ≥
        (24, 23.5, False),
        (24, "48", False),
        (True, True, True),  # bool equality, never confused with numbers
        (True, 1, False),
        (1, True, False),
        ("A100", "A100", True),
        ("A100", "a100", False),
        ({"region": {"country": "DE"}}, {"region": {"country": "DE", "city": "X"}}, True),
        ({"region": {"country": "DE"}}, {"region": {"country": "FR"}}, False),
        ({"region": {"country": "DE"}}, {"region": "DE"}, False),
        ("x", None, False),
    ],
)
def test_positive_label_rules(required: Any, actual: Any, expected: bool) -> None:
    assert satisfies(required, actual) is expected


@pytest.mark.parametrize(
    ("forbidden", "actual", "expected"),
    [
        (["spot", "shared"], ["shared"], True),  # any overlap rejects
        (["spot", "shared"], ["dedicated"], False),
        (["spot"], "spot", True),
        ({"a": 1, "b": "x"}, {"a": 0, "b": "x"}, True),  # any leaf rejects
        ({"a": 1, "b": "x"}, {"a": 0, "b": "y"}, False),
        ("x", None, False),
    ],
)
def test_negative_label_rules(forbidden: Any, actual: Any, expected: bool) -> None:
    assert hits(forbidden, actual) is expected


def worker(**fields: Any) -> WorkerCapabilities:
    return WorkerCapabilities.model_validate({"services": ["comfyui"], **fields})


def job(requirements: dict[str, Any] | None = None, customer: str | None = None) -> JobClass:
    return JobClass("comfyui", customer, requirements or {})


def test_service_must_be_served() -> None:
    assert not matches(JobClass("ollama", None, {}), worker())
    assert mismatches(JobClass("ollama", None, {}), worker()) == ["service 'ollama' is not served"]


def test_hardware_minimums_and_gpu_model() -> None:
    big = worker(hardware={"gpu_memory_gb": 80, "gpu_model": "A100", "gpu_count": 2})
    assert matches(job({"hardware": {"gpu_memory_gb": 48, "gpu_count": 2}}), big)
    assert matches(job({"hardware": {"gpu_model": ["A100", "H100"]}}), big)
    assert not matches(job({"hardware": {"gpu_model": "H100"}}), big)
    assert not matches(job({"hardware": {"gpu_memory_gb": 96}}), big)
    assert not matches(job({"hardware": {"gpu_model": "A100"}}), worker())


def test_models_must_be_installed_for_the_jobs_service() -> None:
    caps = worker(
        models={"comfyui": {"installed": ["sdxl"], "loaded": []}, "ollama": {"installed": ["flux"]}}
    )
    assert matches(job({"models": ["sdxl"]}), caps)
    assert mismatches(job({"models": ["flux", "sdxl"]}), caps) == [
        "models neither installed nor fetchable: flux"
    ]


def test_customer_lists_are_always_enforced() -> None:
    deny = worker(customer_access={"denied_customers": ["acme"]})
    assert not matches(job(customer="acme"), deny)
    assert matches(job(customer="globex"), deny)
    allow = worker(customer_access={"allowed_customers": ["acme"]})
    assert matches(job(customer="acme"), allow)
    assert not matches(job(customer="globex"), allow)
    assert not matches(job(), allow), "an allow-listed worker takes no anonymous jobs"


def test_strict_isolation_both_ways() -> None:
    dedicated = worker(customer_access={"isolation": "strict", "allowed_customers": ["acme"]})
    shared = worker()
    strict_job = job({"customer_isolation": "strict"}, customer="acme")
    assert matches(strict_job, dedicated)
    assert not matches(strict_job, shared)
    assert not matches(job(customer="acme"), worker(customer_access={"isolation": "strict"}))


def test_pool_and_workflow_pin() -> None:
    assert matches(job({"pool": "fast"}), worker(pool="fast"))
    assert matches(job({"pool": ["fast", "standard"]}), worker(pool="standard"))
    assert not matches(job({"pool": ["fast", "standard"]}), worker(pool="heavy"))
    assert not matches(job({"pool": ["fast"]}), worker())
    # One pool name is the job's pool, with fallback in the claim (core/pools.py), not a match.
    assert matches(job({"pool": "fast"}), worker(pool="heavy"))
    pinned = worker(workflow_id="wf-1")
    assert matches(job(), pinned, workflow_id="wf-1")
    assert not matches(job(), pinned, workflow_id="wf-2")
    assert not matches(job(), pinned)


def test_positive_and_negative_requirements_together() -> None:
    caps = worker(labels={"region": "eu", "features": ["lora", "controlnet"], "spot": True})
    assert matches(
        job({"positive_requirements": {"features": ["lora"], "region": ["eu", "us"]}}), caps
    )
    assert not matches(job({"negative_requirements": {"spot": True}}), caps)
    assert matches(job({"negative_requirements": {"features": ["ipadapter"]}}), caps)


def test_class_id_is_content_addressed() -> None:
    a = JobClass("comfyui", "acme", {"models": ["x"], "pool": "fast"})
    b = JobClass("comfyui", "acme", {"pool": "fast", "models": ["x"]})
    assert a.class_id == b.class_id
    assert a.class_id != JobClass("comfyui", "globex", a.requirements).class_id
