"""The Lua claim and the Python fair-share rule (core/fair_share.py) take jobs in one order.

Random customers (weights, running caps overall and per service, jobs already running
elsewhere, recent claims), random waiting jobs (priorities, order times inside and outside
the window, several classes per customer); one worker claims them all in one script run, and
the order must be the one ``claim_order`` computes from the state the claim saw.
Jobs also name a model the worker has loaded, installed or can fetch (or none), so the
affinity tie-break and its own window are held to the Python rule too, and so is the affinity
hold (core/deferral.py): when a second worker has "warm" and "cold" loaded, jobs naming them
are left to it until HOLD_MS (it is free: its last claim found nothing) or BUSY_HOLD_MS (it
has not claimed: busy, as far as the claim knows) after their order time (order times
straddle the claim's now).
Pools: the worker has a pool (or none), each class a pool by requirement, by a measured run time
or none, and jobs are up to 12 s old, so the pool fallback delays (core/pools.py) hold some back
and not others.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emp_queue import Job, JobQueue, JobSpec, WorkerCapabilities
from emp_queue.core.broker import connect
from emp_queue.core.customers import CustomerPolicy, decayed_usage
from emp_queue.core.deferral import WorkerContext
from emp_queue.core.fair_share import CustomerState, WaitingJob, claim_order
from emp_queue.core.matching import JobClass, model_tier
from emp_queue.core.pools import PoolRules, class_pool, pool_wait_ms
from emp_queue.core.replies import as_text
from emp_queue.testing import delete_namespace, unique_namespace

CUSTOMERS = ["acme", "globex", "initech", "umbrella"]
WINDOW_MS = 40
AFFINITY_WINDOW_MS = 60
# The worker's models: loaded, installed, fetchable; a job names one of them or none.
WORKER_MODELS = {"loaded": ["hot"], "installed": ["hot", "warm"], "fetchable": ["cold"]}
READY_MODELS = {"loaded": ["warm", "cold"], "installed": ["warm", "cold"]}
HOLD_MS = 50
BUSY_HOLD_MS = 30
LEASE_S = 30.0
POOLS = PoolRules(delay_ms={"fast": 2_000, "standard": 3_000, "heavy": 5_000})
# A class's pool: a requirement, a measured run time (ms; fast up to 30 s, standard up to
# 3 min) or neither.
CLASS_POOLS = st.sampled_from([None, "fast", "heavy", "standard", 1_000, 60_000, 600_000])

POLICIES = st.fixed_dictionaries(
    {
        "weight": st.sampled_from([0.5, 1.0, 1.0, 2.0, 3.0]),
        "max_running": st.one_of(st.none(), st.integers(0, 6)),
        "sim_cap": st.one_of(st.none(), st.integers(0, 4)),
    }
)
JOBS = st.lists(
    st.tuples(
        st.sampled_from(CUSTOMERS),
        st.sampled_from([40, 50, 50, 50]),  # priority
        st.integers(0, 120),  # order time offset (ms): the window is 40 ms
        st.sampled_from(["a", "b"]),  # two classes per customer
        st.sampled_from([None, "hot", "warm", "cold"]),  # the model the job names
        st.sampled_from([0, 0, 1_500, 2_500, 4_500, 7_000, 12_000]),  # age (ms) at submit
    ),
    min_size=1,
    max_size=14,
)
ELSEWHERE = st.lists(st.sampled_from(CUSTOMERS), max_size=6)  # jobs running on another worker


async def lua_and_python(
    url: str,
    policies: dict[str, dict[str, Any]],
    jobs: list[Any],
    elsewhere: list[str],
    ready_worker: str | None,
    pools: tuple[str | None, dict[str, Any]] = (None, {}),
) -> tuple[list[str], list[str]]:
    worker_pool, class_pools = pools
    redis = connect(url)
    namespace = unique_namespace("fair")
    try:
        queue = JobQueue(
            redis,
            namespace=namespace,
            lease_s=LEASE_S,
            fair_share_window_s=0.04,
            affinity_window_s=AFFINITY_WINDOW_MS / 1000,
            affinity_hold_s=HOLD_MS / 1000,
            affinity_busy_hold_s=BUSY_HOLD_MS / 1000,
            pools=POOLS,
        )
        seconds, micros = await redis.time()
        base_ms = seconds * 1000 + micros // 1000 - 60  # order times from 60 ms ago
        for customer, p in policies.items():
            caps = {} if p["sim_cap"] is None else {"sim": p["sim_cap"]}
            policy = CustomerPolicy(
                weight=p["weight"], max_running=p["max_running"], max_running_by_service=caps
            )
            await queue.set_customer_policy(customer, policy)
        # Running jobs of another service count against the overall cap, and as recent claims.
        await queue.register_worker("other", WorkerCapabilities(services=["other"]))
        await queue.submit_many(
            [JobSpec(service_required="other", customer_id=c) for c in elsewhere]
        )
        await queue.claim("other", count=len(elsewhere) or 1)
        worker = WorkerCapabilities.model_validate(
            {
                "services": ["sim"],
                "labels": {"v": ["a", "b"]},
                "models": {"sim": WORKER_MODELS},
                "pool": worker_pool,
            }
        )
        await queue.register_worker("w", worker)
        if ready_worker:  # "warm" and "cold" loaded; free once its claim finds nothing
            ready = {
                "services": ["sim"],
                "labels": {"v": ["a", "b"]},
                "models": {"sim": READY_MODELS},
            }
            await queue.register_worker("r", WorkerCapabilities.model_validate(ready))
            if ready_worker == "free":
                assert await queue.claim("r") == []
        submitted = await queue.submit_many(
            [
                JobSpec(
                    service_required="sim",
                    customer_id=customer,
                    priority=priority,
                    workflow_datetime=base_ms - age + offset,
                    requirements={
                        "positive_requirements": {"v": variant},
                        **({"models": [model]} if model else {}),
                        **({"pool": pool} if isinstance(pool, str) else {}),
                    },
                )
                for customer, priority, offset, variant, model, age in jobs
                for pool in [class_pools.get(f"{customer}|{variant}|{model}")]
            ]
        )
        run_ms: dict[str, int] = {}  # measured run times, set as complete.lua would
        for job, (customer, _, _, variant, model, _) in zip(submitted, jobs, strict=True):
            class_id = class_of(job)
            measured = class_pools.get(f"{customer}|{variant}|{model}")
            if isinstance(measured, int):
                run_ms[class_id] = measured
                await queue.redis.hset(queue.keys.job_class(class_id), "run_ms", measured)
        states = await states_before_claim(queue, policies)
        claimed = await queue.claim("w", count=len(jobs))
        now_ms = claimed[0].lease_until_ms - round(LEASE_S * 1000) if claimed else 0
        waiting = [
            WaitingJob(
                job.id,
                job.customer_id or "",
                "sim",
                (100 - job.priority) * 2**42 + base_ms - age + offset,
                f"{job.seq:012d}|{job.id}",
                model_tier(JobClass("sim", job.customer_id, job.requirements), worker),
                loaded_elsewhere=ready_worker == "free" and model in READY_MODELS["loaded"],
                loaded_anywhere=ready_worker is not None and model in READY_MODELS["loaded"],
                job_class=f"{job.customer_id}|{variant}|{model}",
                pool_wait_ms=pool_wait_ms(
                    class_pool(job.requirements, run_ms.get(class_of(job)), POOLS),
                    worker_pool,
                    POOLS,
                ),
            )
            for job, (_, _, offset, variant, model, age) in zip(submitted, jobs, strict=True)
        ]
        for state, stamp in states.values():
            state.usage = decayed_usage(state.usage, stamp, now_ms, queue.fair_share_half_life_ms)
        expected = claim_order(
            waiting,
            {c: state for c, (state, _) in states.items()},
            count=len(jobs),
            window_ms=WINDOW_MS,
            affinity_window_ms=AFFINITY_WINDOW_MS,
            worker=WorkerContext(hold_ms=HOLD_MS, busy_hold_ms=BUSY_HOLD_MS),
            now_ms=now_ms,
        )
        return [c.job.id for c in claimed], expected
    finally:
        await delete_namespace(redis, namespace)
        await redis.aclose()


def class_of(job: Job) -> str:
    return JobClass("sim", job.customer_id, job.requirements).class_id


async def states_before_claim(
    queue: JobQueue, policies: dict[str, dict[str, Any]]
) -> dict[str, tuple[CustomerState, int | None]]:
    """Each customer's state as stored (usage not yet decayed) and when its usage was stored."""
    counts = {
        as_text(k): int(v)
        for k, v in (await queue.redis.hgetall(queue.keys.customer_counts)).items()
    }
    usage = {
        as_text(k): as_text(v)
        for k, v in (await queue.redis.hgetall(queue.keys.customer_usage)).items()
    }
    states = {}
    for customer in CUSTOMERS:
        view = await queue.customer(customer)
        state = CustomerState(
            policy=view.policy,
            running=counts.get(f"running|{customer}", 0),
            running_by_service={"sim": counts.get(f"running|{customer}|sim", 0)},
            usage=float(usage.get(customer, "0")),
        )
        stamp = usage.get(f"t|{customer}")
        states[customer] = (state, int(stamp) if stamp else None)
    assert set(policies) <= set(states)
    return states


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policies=st.dictionaries(st.sampled_from(CUSTOMERS), POLICIES, max_size=4),
    jobs=JOBS,
    elsewhere=ELSEWHERE,
    ready_worker=st.sampled_from([None, "free", "busy"]),
    worker_pool=st.sampled_from([None, "fast", "standard", "heavy", "us-4090"]),
    class_pools=st.fixed_dictionaries(
        {
            f"{c}|{v}|{m}": CLASS_POOLS
            for c in CUSTOMERS
            for v in ["a", "b"]
            for m in [None, "hot", "warm", "cold"]
        }
    ),
)
def test_lua_claim_order_agrees_with_the_python_rule(
    redis_url: str,
    policies: dict[str, dict[str, Any]],
    jobs: list[tuple[str, int, int, str, str | None, int]],
    elsewhere: list[str],
    ready_worker: str | None,
    worker_pool: str | None,
    class_pools: dict[str, Any],
) -> None:
    claimed, expected = asyncio.run(
        lua_and_python(
            redis_url, policies, jobs, elsewhere, ready_worker, (worker_pool, class_pools)
        )
    )
    assert claimed == expected
