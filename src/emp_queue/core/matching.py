"""The matching rule, in Python: the reference the Lua claim must agree with.

``mismatches`` lists every rule a worker fails for a job class (empty = match);
``claim.lua`` implements the same rule in ``lua/matching.lua`` and the property tests
in ``tests/integration/test_matching_agreement.py`` hold the two together.

Label rules (``positive_requirements`` and ``hardware``), by the type of the
required value:
- object: the worker's value is an object satisfying every field, recursively;
- list: a worker list must contain every element (list ⊆ list); a worker
  scalar must be one of the elements (value ∈ list);
- number: the worker's value is a number ≥ it;
- string/bool: equal, or an element of the worker's list.
``negative_requirements`` reject a worker when *any* leaf rule holds for it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from emp_queue.labels import is_number
from emp_queue.models import WorkerCapabilities


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class JobClass:
    """Everything the matcher reads from a job. Jobs of one class match the same workers.

    ``derived`` records what :mod:`emp_queue.core.derivation` read from the payload (for
    ``explain``); the part the matcher enforces is already merged into ``requirements``.
    """

    service: str
    customer_id: str | None
    requirements: Mapping[str, Any]
    derived: Mapping[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_descriptor(cls, descriptor_json: str | bytes) -> JobClass:
        descriptor = json.loads(descriptor_json)
        return cls(
            descriptor["service"],
            descriptor.get("customer"),
            descriptor.get("req", {}),
            descriptor.get("derived", {}),
        )

    def descriptor(self) -> dict[str, Any]:
        descriptor: dict[str, Any] = {"service": self.service, "req": dict(self.requirements)}
        if self.customer_id is not None:
            descriptor["customer"] = self.customer_id
        if self.derived:
            descriptor["derived"] = dict(self.derived)
        return descriptor

    @functools.cached_property
    def descriptor_json(self) -> str:
        return canonical_json(self.descriptor())

    @functools.cached_property
    def class_id(self) -> str:
        return hashlib.sha1(self.descriptor_json.encode()).hexdigest()[:16]


def capabilities_document(capabilities: WorkerCapabilities) -> dict[str, Any]:
    """The capabilities as the Lua matcher reads them (no nulls: Lua cannot hold them)."""
    return capabilities.model_dump(mode="json", exclude_none=True)


def capabilities_fingerprint(capabilities: WorkerCapabilities) -> str:
    document = canonical_json(capabilities_document(capabilities))
    return hashlib.sha1(document.encode()).hexdigest()[:16]


def _same_scalar(a: object, b: object) -> bool:
    if is_number(a) and is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _contains(items: Sequence[object], value: object) -> bool:
    return any(_same_scalar(item, value) for item in items)


def satisfies(required: object, actual: object) -> bool:
    """Positive rule: every leaf of ``required`` holds for ``actual``."""
    if isinstance(required, Mapping):
        if not isinstance(actual, Mapping):
            return False
        return all(satisfies(value, actual.get(key)) for key, value in required.items())
    if isinstance(required, list):
        if isinstance(actual, list):
            return all(_contains(actual, item) for item in required)
        if isinstance(actual, Mapping):
            return False
        return _contains(required, actual)
    if is_number(required):
        return is_number(actual) and actual >= required  # type: ignore[operator]
    if isinstance(actual, list):
        return _contains(actual, required)
    return _same_scalar(required, actual)


def hits(forbidden: object, actual: object) -> bool:
    """Negative rule: some leaf of ``forbidden`` holds for ``actual``."""
    if actual is None:
        return False
    if isinstance(forbidden, Mapping):
        if not isinstance(actual, Mapping):
            return False
        return any(hits(value, actual.get(key)) for key, value in forbidden.items())
    if isinstance(forbidden, list):
        if isinstance(actual, list):
            return any(_contains(actual, item) for item in forbidden)
        if isinstance(actual, Mapping):
            return False
        return _contains(forbidden, actual)
    return satisfies(forbidden, actual)


def _customer_mismatch(job_class: JobClass, capabilities: WorkerCapabilities) -> str | None:
    access = capabilities.customer_access
    customer = job_class.customer_id
    if customer is not None and customer in access.denied_customers:
        return f"customer {customer!r} is denied by the worker"
    if access.allowed_customers is not None and customer not in access.allowed_customers:
        return f"customer {customer!r} is not in the worker's allowed customers"
    if access.isolation == "strict" and access.allowed_customers is None:
        return "the worker is strictly isolated but lists no allowed customers"
    if job_class.requirements.get("customer_isolation") == "strict" and access.isolation != (
        "strict"
    ):
        return "the job needs a strictly isolated worker"
    return None


def rule_failures(
    job_class: JobClass,
    capabilities: WorkerCapabilities,
    workflow_id: str | None = None,
    node_classes: frozenset[str] | None = None,
) -> list[tuple[str, str]]:
    """(rule, reason) for every rule the worker fails; rules: service, workflow_pin,
    hardware, models, nodes, customer, pool, positive_requirements, negative_requirements.
    ``nodes`` is judged only with the worker's ``node_classes`` (its published set, which
    lives in Redis, not in the capabilities) and only for a worker that publishes one."""
    failures: list[tuple[str, str]] = []
    req = job_class.requirements
    if job_class.service not in capabilities.services:
        failures.append(("service", f"service {job_class.service!r} is not served"))
    if capabilities.workflow_id is not None and capabilities.workflow_id != workflow_id:
        failures.append(
            ("workflow_pin", f"the worker is pinned to workflow {capabilities.workflow_id!r}")
        )
    hardware = capabilities.hardware.model_dump(exclude_none=True)
    for key, wanted in req.get("hardware", {}).items():
        if not satisfies(wanted, hardware.get(key)):
            have = hardware.get(key)
            failures.append(("hardware", f"hardware {key} is {have!r}, the job needs {wanted!r}"))
    if "models" in req:
        service_models = capabilities.models.get(job_class.service)
        workable = [*service_models.installed, *service_models.fetchable] if service_models else []
        missing = [m for m in req["models"] if m not in workable]
        if missing:
            failures.append(
                ("models", f"models neither installed nor fetchable: {', '.join(missing)}")
            )
    if "nodes" in req and capabilities.nodes is not None and node_classes is not None:
        absent = [n for n in req["nodes"] if n not in node_classes]
        if absent:
            failures.append(("nodes", f"node classes not installed: {', '.join(absent)}"))
    customer_reason = _customer_mismatch(job_class, capabilities)
    if customer_reason:
        failures.append(("customer", customer_reason))
    # One pool name is the job's pool, applied by the claim with fallback (core/pools.py).
    if isinstance(req.get("pool"), list) and not satisfies(req["pool"], capabilities.pool):
        failures.append(("pool", f"pool {capabilities.pool!r} is not {req['pool']!r}"))
    if "positive_requirements" in req and not satisfies(
        req["positive_requirements"], capabilities.labels
    ):
        failures.append(("positive_requirements", "labels miss a positive requirement"))
    if "negative_requirements" in req and hits(req["negative_requirements"], capabilities.labels):
        failures.append(("negative_requirements", "labels hit a negative requirement"))
    return failures


def mismatches(
    job_class: JobClass, capabilities: WorkerCapabilities, workflow_id: str | None = None
) -> list[str]:
    """Every rule the worker fails for a job of this class; empty when it may run the job."""
    return [reason for _rule, reason in rule_failures(job_class, capabilities, workflow_id)]


def matches(
    job_class: JobClass, capabilities: WorkerCapabilities, workflow_id: str | None = None
) -> bool:
    return not mismatches(job_class, capabilities, workflow_id)


def model_tier(job_class: JobClass, capabilities: WorkerCapabilities) -> int:
    """Affinity of a worker for a job class: 0 when every model it needs is loaded (or it
    needs none), 1 when each is at least installed, 2 when some must be fetched first.
    ``claim.lua`` prefers lower tiers (``model_tier`` in ``matching.lua``)."""
    held = capabilities.models.get(job_class.service)
    tier = 0
    for model in job_class.requirements.get("models", []):
        if held is None or model not in held.loaded:
            if held is None or model not in held.installed:
                return 2
            tier = 1
    return tier
