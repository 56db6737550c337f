"""Read-side views of a queue: listings, workers, depths, workflows and "why is it waiting".

Everything here reads indexes (never the keyspace) and changes nothing; ``JobQueue``
exposes these through its own methods.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emp_queue.core import listing
from emp_queue.core.eta import StartEstimate, estimate_start
from emp_queue.core.keys import index_member, member_id, scoped_workflow_id
from emp_queue.core.matching import JobClass, rule_failures
from emp_queue.core.model_cost import ModelCost, model_cost
from emp_queue.core.pools import PoolExplanation, explain_pool
from emp_queue.core.queue_control import ControlTarget, QueueState, control_of, controls
from emp_queue.core.replies import as_text
from emp_queue.errors import InvalidJobError, JobNotFoundError
from emp_queue.models import Job, JobStatus, WorkerCapabilities

if TYPE_CHECKING:
    from emp_queue.core.queue import JobQueue

PRIORITY_SCALE = 2**42  # as in submit.lua: score = (100 - priority) * 2^42 + order_ms
MAX_SCAN_PER_PAGE = 5_000
_FILTER_FIELDS = ("status", "service", "customer_id", "workflow_id")


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


@dataclass(frozen=True)
class RequirementCount:
    requirement: str
    satisfied_by: int


@dataclass(frozen=True)
class Explanation:
    """Why a job waits: who could run it, what each rule filters out, where it stands."""

    job_id: str
    status: JobStatus
    live_workers: int
    serving_service: int
    matching_workers: int
    requirements: list[RequirementCount]
    nearest_miss: tuple[str, list[str]] | None
    position: int | None
    derived_requirements: dict[str, list[str]]
    """What submit read from the payload (models, nodes); already part of the requirements."""
    service_down_workers: int = 0
    """Matching workers whose service does not answer: they claim nothing until it does, and
    the job waits for them (or another matching worker) instead of failing."""
    customer_cap: str | None = None
    """Set while the job waits because its customer runs as many jobs as its policy allows."""
    estimated_start: StartEstimate | None = None
    """When the job should start (seconds from now) and what that rests on (core/eta.py)."""
    held: tuple[str, ...] = ()
    """Why the job is kept waiting on purpose: scheduled, blocked on other jobs, its service
    or the pools of all its matching workers paused (docs/scheduling.md)."""
    pool: PoolExplanation | None = None
    """The waiting job's pool, how it was decided and when other pools may take it."""
    model_cost: ModelCost | None = None
    """What its models cost before it runs on the best placed matching worker (load or
    download, from the sizes workers report: core/demand.py)."""


@dataclass(frozen=True)
class WorkerInfo:
    worker_id: str
    machine_id: str | None
    status: str
    last_seen_ms: int
    capabilities: WorkerCapabilities
    running: list[str]


@dataclass(frozen=True)
class QueueDepth:
    service: str
    counts: dict[str, int]
    oldest_wait_ms: int | None
    state: QueueState = QueueState.OPEN
    """Queue control: paused or draining by an operator (core/queue_control.py)."""


@dataclass(frozen=True)
class WorkflowState:
    workflow_id: str
    status: str
    total_steps: int | None
    created_at: int
    jobs: list[Job]


def _parse_cursor(cursor: str | None) -> str:
    if cursor is None:
        return "+inf"
    if not cursor.isdigit():
        raise InvalidJobError(f"cursor {cursor!r} is not one this API returned; start without one")
    return f"({cursor}"


async def list_jobs(
    queue: JobQueue,
    *,
    filters: dict[str, str],
    cursor: str | None,
    limit: int,
) -> JobPage:
    """Newest first. Status, service and customer filters read the listing indexes
    (core/listing.py), no filter the submit-sequence index: flat cost, no empty page while
    jobs match. With a workflow, the workflow's own index, its jobs checked against
    the other filters (at most MAX_SCAN_PER_PAGE per page)."""
    if not 1 <= limit <= 1000:
        raise InvalidJobError(f"limit {limit} is outside 1-1000")
    if "workflow_id" not in filters:
        keys = await listing.index_keys(queue, filters) if filters else [queue.keys.jobs]
        ids, next_seq = await listing.page_from_indexes(queue, keys, _parse_cursor(cursor), limit)
        jobs = await queue.get_many(ids)
        return JobPage(jobs, None if next_seq is None else str(next_seq))
    index = (
        queue.keys.workflow_jobs(filters["workflow_id"])
        if "workflow_id" in filters
        else (queue.keys.jobs)
    )
    upper = _parse_cursor(cursor)
    found: list[str] = []
    scanned = 0
    last_seq: int | None = None
    while len(found) < limit and scanned < MAX_SCAN_PER_PAGE:
        batch: Any = await queue.redis.zrevrangebyscore(
            index, upper, "-inf", start=0, num=min(500, limit * 4), withscores=True
        )
        if not batch:
            return JobPage(await queue.get_many(found), None)
        ids = [as_text(member) for member, _ in batch]
        async with queue.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(queue.keys.job(job_id), *_FILTER_FIELDS)
            rows = await pipe.execute()
        for job_id, (_, seq), row in zip(ids, batch, rows, strict=True):
            scanned += 1
            last_seq = int(seq)
            values = dict(zip(_FILTER_FIELDS, row, strict=True))
            if all(as_text(values.get(k) or b"") == v for k, v in filters.items()):
                found.append(job_id)
                if len(found) == limit:
                    break
        upper = f"({last_seq}"
    return JobPage(await queue.get_many(found), str(last_seq) if last_seq is not None else None)


async def workers(queue: JobQueue) -> list[WorkerInfo]:
    entries: Any = await queue.redis.zrange(queue.keys.workers, 0, -1, withscores=True)
    ids = [as_text(member) for member, _ in entries]
    async with queue.redis.pipeline(transaction=False) as pipe:
        for worker_id in ids:
            pipe.hgetall(queue.keys.worker(worker_id))
            pipe.smembers(queue.keys.worker_jobs(worker_id))
        replies = await pipe.execute()
    infos = []
    for index, (worker_id, (_, last_seen)) in enumerate(zip(ids, entries, strict=True)):
        record = {as_text(k): as_text(v) for k, v in replies[2 * index].items()}
        if "fingerprint" not in record:
            continue  # removed between the two reads
        capabilities = await capabilities_of(queue, record["fingerprint"])
        if capabilities is None:
            continue
        infos.append(
            WorkerInfo(
                worker_id=worker_id,
                machine_id=record.get("machine_id"),
                status=record.get("status", "idle"),
                last_seen_ms=int(last_seen),
                capabilities=capabilities,
                running=sorted(as_text(j) for j in replies[2 * index + 1]),
            )
        )
    return infos


async def capabilities_of(queue: JobQueue, fingerprint: str) -> WorkerCapabilities | None:
    raw = await queue.redis.get(queue.keys.capabilities(fingerprint))
    return WorkerCapabilities.model_validate_json(raw) if raw else None


async def _node_classes(
    queue: JobQueue, required: list[str] | None, live: Sequence[WorkerInfo]
) -> dict[str, frozenset[str]]:
    """For each published node set among ``live``, which of the ``required`` classes it has."""
    fingerprints = sorted({i.capabilities.nodes.fingerprint for i in live if i.capabilities.nodes})
    if not required or not fingerprints:
        return {}
    async with queue.redis.pipeline(transaction=False) as pipe:
        for fingerprint in fingerprints:
            pipe.smismember(queue.keys.node_classes(fingerprint), required)
        replies = await pipe.execute()
    return {
        fingerprint: frozenset(n for n, present in zip(required, reply, strict=True) if present)
        for fingerprint, reply in zip(fingerprints, replies, strict=True)
    }


def _scoped_workflow(job: Job) -> str | None:
    return None if job.workflow_id is None else scoped_workflow_id(job.customer_id, job.workflow_id)


async def explain(queue: JobQueue, job_id: str, *, own_customer_only: bool = False) -> Explanation:
    """``own_customer_only``: count only the job's own customer's jobs in ``position``, so a
    client learns nothing of other customers' volume."""
    job = await queue.get(job_id)
    job_class = JobClass(job.service_required, job.customer_id, job.requirements)
    live = await workers(queue)
    scoped_workflow = _scoped_workflow(job)
    nodes = await _node_classes(queue, job.requirements.get("nodes"), live)
    failures = {
        info.worker_id: rule_failures(
            job_class,
            info.capabilities,
            scoped_workflow,
            nodes.get(info.capabilities.nodes.fingerprint) if info.capabilities.nodes else None,
        )
        for info in live
    }
    rules = ["service", *[k for k in job.requirements if k != "customer_isolation"], "customer"]
    counts = [
        RequirementCount(rule, sum(1 for f in failures.values() if rule not in {r for r, _ in f}))
        for rule in rules
    ]
    matching_infos = [info for info in live if not failures[info.worker_id]]
    matching = [info.capabilities for info in matching_infos]
    nearest = None
    if not matching and failures:
        worker_id, fails = min(failures.items(), key=lambda item: len(item[1]))
        nearest = (worker_id, [reason for _, reason in fails])
    customer_cap = None
    if job.status.is_waiting:
        customer = await queue.customer(job.customer_id or "")
        customer_cap = customer.running_cap_reached(job.service_required)
    position = await _position(queue, job, matching, own_customer_only)
    answering = [info for info in matching_infos if info.status != "service_down"]
    return Explanation(
        held=await _held(queue, job, matching),
        pool=await _pool(queue, job) if job.status.is_waiting else None,
        estimated_start=await _estimate(queue, job.service_required, position, answering),
        customer_cap=customer_cap,
        job_id=job.id,
        status=job.status,
        live_workers=len(live),
        serving_service=sum(1 for i in live if job.service_required in i.capabilities.services),
        matching_workers=len(matching),
        requirements=counts,
        nearest_miss=nearest,
        position=position,
        derived_requirements=await _derived(queue, job.id),
        service_down_workers=sum(1 for info in matching_infos if info.status == "service_down"),
        model_cost=model_cost(job_class, matching) if job.status.is_waiting else None,
    )


async def _held(
    queue: JobQueue, job: Job, matching: Sequence[WorkerCapabilities]
) -> tuple[str, ...]:
    reasons: list[str] = []
    if job.status is JobStatus.SCHEDULED and job.not_before is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(job.not_before / 1000))
        reasons.append(f"scheduled: not claimable before {when} (not_before {job.not_before})")
    if job.status is JobStatus.BLOCKED:
        waiting_on = await queue.redis.hget(queue.keys.job(job.id), "waiting_on")
        reasons.append(
            f"blocked: waits for {as_text(waiting_on) if waiting_on else 'its'} unfinished "
            f"dependencies among {', '.join(job.depends_on or ['the previous step'])}"
        )
    if job.status.is_terminal:
        return tuple(reasons)
    service = await control_of(queue.redis, queue.keys, ControlTarget.SERVICE, job.service_required)
    if service is not None and service.state is QueueState.PAUSED:
        reasons.append(service.describe())
    pools = {caps.pool for caps in matching}
    paused_pools = [
        c
        for c in await controls(queue.redis, queue.keys)
        if c.target is ControlTarget.POOL and c.state is QueueState.PAUSED and c.name in pools
    ]
    if pools and len(paused_pools) == len(pools):
        reasons.extend(c.describe() for c in paused_pools)
    return tuple(reasons)


async def _pool(queue: JobQueue, job: Job) -> PoolExplanation:
    class_id, score = await queue.redis.hmget(queue.keys.job(job.id), ["class", "score"])
    run_ms = None
    if class_id is not None:
        stored = await queue.redis.hget(queue.keys.job_class(as_text(class_id)), "run_ms")
        run_ms = float(stored) if stored is not None else None
    order = int(as_text(score)) if score is not None else 0
    return explain_pool(job.requirements, run_ms, order, queue.pools)


async def _estimate(
    queue: JobQueue, service: str, position: int | None, answering: Sequence[WorkerInfo]
) -> StartEstimate | None:
    if position is None:
        return None
    run = (await queue.totals()).run.get(service)
    mean_run_s = run.sum_s / run.count if run is not None and run.count else None
    idle = sum(1 for info in answering if not info.running)
    return estimate_start(
        position, idle, len(answering) - idle, mean_run_s, run.count if run is not None else 0
    )


async def _derived(queue: JobQueue, job_id: str) -> dict[str, list[str]]:
    class_id = await queue.redis.hget(queue.keys.job(job_id), "class")
    if class_id is None:
        return {}
    descriptor = await queue.redis.hget(queue.keys.job_class(as_text(class_id)), "desc")
    return dict(JobClass.from_descriptor(descriptor).derived) if descriptor else {}


async def _position(
    queue: JobQueue, job: Job, matching: Sequence[WorkerCapabilities], own_customer_only: bool
) -> int | None:
    """Waiting jobs ahead of this one that its matching workers could run instead: those of
    a better score, and of an equal score (same priority, same millisecond) those submitted
    before it — the order claim.lua takes them in."""
    if not job.status.is_waiting or not matching:
        return None
    raw_score, raw_class, raw_oseq = await queue.redis.hmget(
        queue.keys.job(job.id), "score", "class", "oseq"
    )
    if raw_score is None or raw_class is None:
        return None
    score, own_class = float(raw_score), as_text(raw_class)
    member = index_member(int(raw_oseq or job.seq), job.id)
    entries: Any = await queue.redis.zrange(queue.keys.service_classes(job.service_required), 0, -1)
    others = sorted({member_id(entry) for entry in entries} - {own_class})
    async with queue.redis.pipeline(transaction=False) as pipe:
        for class_id in others:
            pipe.hget(queue.keys.job_class(class_id), "desc")
        descriptors = await pipe.execute()
    scoped_workflow = _scoped_workflow(job)
    classes = [
        (class_id, JobClass.from_descriptor(descriptor))
        for class_id, descriptor in zip(others, descriptors, strict=True)
        if descriptor
    ]
    runnable = [
        class_id
        for class_id, job_class in classes
        if (not own_customer_only or job_class.customer_id == job.customer_id)
        and any(not rule_failures(job_class, caps, scoped_workflow) for caps in matching)
    ]
    async with queue.redis.pipeline(transaction=False) as pipe:
        for class_id in runnable:
            pipe.zcount(queue.keys.class_pending(class_id), "-inf", f"({score}")
            pipe.zrangebyscore(queue.keys.class_pending(class_id), score, score)
        pipe.zrank(queue.keys.class_pending(own_class), member)
        *replies, own_rank = await pipe.execute()
    better, tied = replies[0::2], replies[1::2]
    # Members are "<12-digit order seq>|<id>": on equal scores the lower sequence goes first.
    earlier = sum(1 for members in tied for entry in members if as_text(entry) < member)
    return int(sum(better)) + earlier + int(own_rank or 0)


async def queue_depths(queue: JobQueue) -> list[QueueDepth]:
    stats = await queue.stats()
    now_ms = int(time.time() * 1000)
    states = {
        c.name: c.state
        for c in await controls(queue.redis, queue.keys)
        if c.target is ControlTarget.SERVICE
    }
    depths = []
    for service, counts in sorted(stats.items()):
        heads: Any = await queue.redis.zrange(
            queue.keys.service_classes(service), 0, -1, withscores=True
        )
        orders = [int(score) % PRIORITY_SCALE for _, score in heads]
        oldest = now_ms - min(orders) if orders else None
        depths.append(QueueDepth(service, counts, oldest, states.get(service, QueueState.OPEN)))
    return depths


async def workflow(queue: JobQueue, workflow_id: str, customer_id: str | None) -> WorkflowState:
    scoped = scoped_workflow_id(customer_id, workflow_id)
    record = {
        as_text(k): as_text(v)
        for k, v in (await queue.redis.hgetall(queue.keys.workflow(scoped))).items()
    }
    if not record:
        raise JobNotFoundError(f"no workflow {workflow_id!r} (unknown, or expired after retention)")
    ids: Any = await queue.redis.zrange(queue.keys.workflow_jobs(scoped), 0, -1)
    return WorkflowState(
        workflow_id=workflow_id,
        status=record.get("status", "running"),
        total_steps=int(record["total_steps"]) if "total_steps" in record else None,
        created_at=int(record["created_at"]),
        jobs=await queue.get_many([as_text(i) for i in ids]),
    )
