"""The Lua claim and the Python reference predicate agree on random jobs and workers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emp_queue import JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.core.broker import connect
from emp_queue.core.matching import JobClass, matches
from emp_queue.core.pools import PoolRules
from emp_queue.core.requirements import validate_requirements
from emp_queue.testing import delete_namespace, unique_namespace

WORDS = st.sampled_from(["a", "b", "c", "fast", "sdxl", "flux", "eu", "us"])
NUMBERS = st.one_of(
    st.integers(-5, 50), st.floats(-5, 50, allow_nan=False).map(lambda f: round(f, 2))
)
SCALARS = st.one_of(WORDS, NUMBERS, st.booleans())
LABEL_KEYS = st.sampled_from(["region", "tier", "gpu", "tags", "features", "vram", "spot"])


def label_values(depth: int = 2) -> st.SearchStrategy[Any]:
    leaf = st.one_of(SCALARS, st.lists(SCALARS, min_size=1, max_size=4))
    if depth == 0:
        return leaf
    nested = st.dictionaries(LABEL_KEYS, label_values(depth - 1), min_size=1, max_size=3)
    return st.one_of(leaf, nested)


LABELS = st.dictionaries(LABEL_KEYS, label_values(), max_size=4)
RULES = st.dictionaries(LABEL_KEYS, label_values(), min_size=1, max_size=3)
CUSTOMERS = st.sampled_from(["acme", "globex", "initech"])
SERVICES = st.sampled_from(["comfyui", "ollama"])
MODELS = st.lists(st.sampled_from(["sdxl", "flux", "llama3", "qwen"]), max_size=3, unique=True)


ACCESS = st.fixed_dictionaries(
    {
        "isolation": st.sampled_from(["none", "loose", "strict"]),
        "allowed_customers": st.one_of(st.none(), st.lists(CUSTOMERS, unique=True)),
        "denied_customers": st.lists(CUSTOMERS, unique=True),
    }
)


def sometimes() -> st.SearchStrategy[bool]:
    return st.integers(0, 3).map(lambda n: n == 0)


@st.composite
def requirements(draw: st.DrawFn) -> dict[str, Any]:
    req: dict[str, Any] = {}
    if draw(sometimes()):
        req["hardware"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "gpu_count": st.integers(0, 4),
                    "gpu_memory_gb": st.sampled_from([8, 16, 24, 24.5, 80]),
                    "gpu_model": st.one_of(
                        st.sampled_from(["A100", "4090"]),
                        st.lists(st.sampled_from(["A100", "4090", "H100"]), min_size=1),
                    ),
                    "ram_gb": st.integers(0, 64),
                },
            ).filter(bool)
        )
    if draw(sometimes()):
        req["models"] = draw(MODELS.filter(bool))
    if draw(sometimes()):
        req["customer_isolation"] = draw(st.sampled_from(["none", "loose", "strict"]))
    if draw(sometimes()):
        req["pool"] = draw(
            st.one_of(st.sampled_from(["fast", "heavy"]), st.just(["fast", "standard"]))
        )
    if draw(sometimes()):
        req["positive_requirements"] = draw(RULES)
    if draw(sometimes()):
        req["negative_requirements"] = draw(RULES)
    return req


@st.composite
def capabilities(draw: st.DrawFn, wanted: dict[str, Any]) -> WorkerCapabilities:
    """Random capabilities; half of the time built to meet ``wanted`` so both outcomes occur."""
    generous = draw(st.booleans())
    models = draw(MODELS)
    if generous:
        models = sorted({*models, *wanted.get("models", [])})
    # A model is workable installed or fetchable: split the worker's models between the two.
    fetched = set(draw(st.lists(st.sampled_from(models), unique=True))) if models else set()
    service_models = {
        s: {"installed": sorted(set(models) - fetched), "fetchable": sorted(fetched)}
        for s in draw(st.lists(SERVICES, unique=True))
    }
    labels = draw(LABELS)
    if generous:
        labels = {**labels, **wanted.get("positive_requirements", {})}
    return WorkerCapabilities.model_validate(
        {
            "services": ["comfyui", "ollama"]
            if generous
            else draw(st.lists(SERVICES, min_size=1, unique=True)),
            "hardware": {
                "gpu_count": draw(st.integers(0, 4)),
                "gpu_memory_gb": draw(st.sampled_from([0, 8, 24, 24.5, 80])),
                "gpu_model": draw(st.one_of(st.none(), st.sampled_from(["A100", "4090", "H100"]))),
                "ram_gb": draw(st.integers(0, 64)),
            },
            "models": service_models,
            "customer_access": {} if generous and draw(st.booleans()) else draw(ACCESS),
            "pool": draw(st.one_of(st.none(), st.sampled_from(["fast", "standard", "heavy"]))),
            "labels": labels,
        }
    )


async def lua_claims(url: str, spec: JobSpec, caps: WorkerCapabilities) -> tuple[bool, JobStatus]:
    redis = connect(url)
    namespace = unique_namespace("agree")
    try:
        # One pool name is applied by the claim with fallback (test_fair_share_agreement.py),
        # not by the match: pools off here, so the claim shows the match alone.
        queue = JobQueue(redis, namespace=namespace, pools=PoolRules(enabled=False))
        await queue.register_worker("w", caps)
        job = await queue.submit(spec)
        claimed = await queue.claim("w")
        return bool(claimed), job.status
    finally:
        await delete_namespace(redis, namespace)
        await redis.aclose()


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    service=SERVICES,
    customer=st.one_of(st.none(), CUSTOMERS),
    req_and_caps=requirements().flatmap(lambda r: st.tuples(st.just(r), capabilities(r))),
)
def test_lua_claim_agrees_with_python_predicate(
    redis_url: str,
    service: str,
    customer: str | None,
    req_and_caps: tuple[dict[str, Any], WorkerCapabilities],
) -> None:
    req, caps = req_and_caps
    spec = JobSpec(service_required=service, customer_id=customer, requirements=req)
    expected = matches(JobClass(service, customer, validate_requirements(req, service)), caps)
    claimed, status_at_submit = asyncio.run(lua_claims(redis_url, spec, caps))
    assert claimed == expected
    # The only live worker decides workability too: the same rule, run at submit.
    assert status_at_submit == (JobStatus.PENDING if expected else JobStatus.UNWORKABLE)
