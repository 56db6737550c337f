"""The machine agent's predictive placement: read the fleet's demand at boot and every
interval, plan with :mod:`emp_queue.machine.placement`, carry the decisions out and report
each one as a ``machine_placement`` event (the monitor's machine topic).

What the machine holds is what its own live workers report (``ServiceModels``: loaded,
installed, fetchable, sizes, ``last_used``), so the plan follows the workers' view. "Least
recently used" is the latest ``last_used`` any worker of this machine reports for the model
(a worker records when each job that needed the model finished), or the time this loop itself
loaded or downloaded it, whichever is later; a model with neither is the oldest, and ties keep
the workers' (name) order (:meth:`Holding.lru_order`). The demand is the one
``GET /api/demand`` serves (:func:`emp_queue.core.demand.model_demand`), read straight from
the broker the agent already talks to.

Carrying out is the executors': :class:`ManifestDownloads` downloads models the component
manifest names (with progress events), ``placement_pull`` Ollama models through Ollama's
``POST /api/pull``; :class:`OllamaPreload` loads and unloads Ollama
models through Ollama's own API (a generate call without a prompt, ``keep_alive``);
``placement_services`` loads and unloads ComfyUI (warm-up prompt, ``POST /free``) and A1111
(checkpoint switch, unload-checkpoint) models; ``model_files.ModelFiles`` deletes a model's
files from the service's model folder, ``placement_deletes`` Ollama models (``DELETE
/api/delete``) and A1111 checkpoints (``EMP_A1111_MODELS_DIR``). :class:`Executors` sends
each decision to the first that takes it. Before an unload or a delete, the loop asks the
broker again (:func:`needed`): a model that jobs now wait for, that a job running on this
machine needs or (for a delete) that a live worker of this machine has loaded stays, reported
as not done with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import structlog

from emp_queue.core.demand import model_demand
from emp_queue.core.inspection import workers
from emp_queue.http_tls import tls_context
from emp_queue.machine.components.fetch import fetch_model, find_model
from emp_queue.machine.placement import (
    Action,
    Holding,
    Outcome,
    PlacementDecision,
    plan_placement,
)
from emp_queue.models import EventType

if TYPE_CHECKING:
    from emp_queue.core.queue import JobQueue
    from emp_queue.machine.components.manager import ComponentManager
    from emp_queue.machine.components.settings import ComponentSettings

log = structlog.get_logger(__name__)

Publish = Callable[..., Awaitable[None]]
"""``publish(EventType.MACHINE_PLACEMENT, **fields)``: the agent's machine event."""


Progress = Callable[[float], Coroutine[Any, Any, None]]


class PlacementExecutor(Protocol):
    async def carry_out(self, decision: PlacementDecision, progress: Progress) -> Outcome:
        """Do it; what happened."""


class SpecificExecutor(PlacementExecutor, Protocol):
    def takes(self, decision: PlacementDecision) -> bool:
        """Whether this executor carries out ``decision`` (the others do not see it)."""


@dataclass(frozen=True)
class Budgets:
    vram_bytes: int
    disk_bytes: int


async def machine_holdings(
    queue: JobQueue,
    machine_id: str,
    budgets: Budgets,
    placed: Mapping[tuple[str, str], float] | None = None,
) -> list[Holding]:
    """Per service, the models this machine's live workers report, merged; a model's last use
    is the latest any of them reports, or its time in ``placed`` ((service, model) → Unix
    seconds this loop loaded or downloaded it), whichever is later."""
    holdings: dict[str, Holding] = {}
    last_used: dict[str, dict[str, float]] = {}
    for info in await workers(queue):
        if info.machine_id != machine_id:
            continue
        for service, models in info.capabilities.models.items():
            holding = holdings.setdefault(
                service, Holding(service, budgets.vram_bytes, budgets.disk_bytes, fetchable={})
            )
            sizes = models.sizes
            for name in models.loaded:
                holding.loaded[name] = sizes.get(name, 0)
            for name in models.installed:
                holding.installed[name] = sizes.get(name, 0)
            fetchable = dict(holding.fetchable)
            fetchable.update({name: sizes[name] for name in models.fetchable if name in sizes})
            holding.fetchable = fetchable
            used = last_used.setdefault(service, {})
            for name, when in (models.last_used or {}).items():
                used[name] = max(used.get(name, 0.0), float(when))
    for (service, name), placed_at in (placed or {}).items():
        used = last_used.setdefault(service, {})
        used[name] = max(used.get(name, 0.0), placed_at)
    for service, holding in holdings.items():
        holding.last_used = last_used.get(service, {})
    return list(holdings.values())


async def needed(queue: JobQueue, machine_id: str, decision: PlacementDecision) -> str | None:
    """Why the model of an unload or delete must stay after all (None: nothing needs it):
    jobs wait for it now, a job running on this machine needs it, or (delete) a live worker of
    this machine has it loaded. Asked just before carrying the decision out."""
    for demand in await model_demand(queue):
        same = (demand.service, demand.model) == (decision.service, decision.model)
        if same and demand.pending:
            return f"{demand.pending} job(s) wait for it now"
    running: list[str] = []
    for info in await workers(queue):
        if info.machine_id != machine_id:
            continue
        held = info.capabilities.models.get(decision.service)
        if decision.action is Action.DELETE and held and decision.model in held.loaded:
            return f"worker {info.worker_id} has it loaded"
        running += info.running
    for job in await queue.get_many(running):
        if job.service_required == decision.service and decision.model in job.requirements.get(
            "models", []
        ):
            return f"job {job.id} running on this machine needs it"
    return None


class PlacementLoop:
    def __init__(
        self,
        queue: JobQueue,
        machine_id: str,
        budgets: Budgets,
        executor: PlacementExecutor,
        publish: Publish,
        *,
        interval_s: float,
    ) -> None:
        self.queue = queue
        self.machine_id = machine_id
        self.budgets = budgets
        self.executor = executor
        self.publish = publish
        self.interval_s = interval_s
        self.clock = time.time
        self.placed: dict[tuple[str, str], float] = {}
        """(service, model) → when this loop loaded or downloaded it: a use, for the LRU."""

    async def step(self) -> list[PlacementDecision]:
        """One round: plan for every service of this machine, carry out, report."""
        demand = await model_demand(self.queue)
        decisions: list[PlacementDecision] = []
        holdings = await machine_holdings(self.queue, self.machine_id, self.budgets, self.placed)
        for holding in holdings:
            failed: PlacementDecision | None = None
            for decision in plan_placement(demand, holding):
                decisions.append(decision)
                # The steps up to a load make room for it: once one is not done, the rest
                # of that chain would overrun a budget, so they are reported, not tried.
                skip = None
                if failed is not None:
                    skip = f"skipped: the {failed.action} of {failed.model} was not done"
                outcome = await self.carry_out(decision, skip=skip)
                if not outcome.done and failed is None:
                    failed = decision
                if decision.action is Action.LOAD:
                    failed = None
        return decisions

    async def carry_out(self, decision: PlacementDecision, *, skip: str | None = None) -> Outcome:
        """Carry one decision out (an unload or delete only if :func:`needed` finds nothing
        that needs the model) and report it: started, progress, then done or not_done.
        ``skip``: report it not done for that reason, without trying."""
        fields: dict[str, Any] = {
            "action": str(decision.action),
            "service": decision.service,
            "model": decision.model,
            "size_bytes": decision.size_bytes,
            "reason": decision.reason,
        }
        await self.publish(EventType.MACHINE_PLACEMENT, status="started", **fields)

        async def progress(fraction: float) -> None:
            await self.publish(
                EventType.MACHINE_PLACEMENT, status="progress", progress=fraction, **fields
            )

        try:
            outcome = Outcome(False, skip) if skip else await self._guarded(decision, progress)
        except (OSError, httpx.HTTPError, ValueError) as error:
            outcome = Outcome(False, f"{type(error).__name__}: {error}")
        if outcome.done and decision.action in (Action.LOAD, Action.DOWNLOAD):
            self.placed[(decision.service, decision.model)] = self.clock()
        status = "done" if outcome.done else "not_done"
        extra = dict(outcome.fields)
        log.info("machine_placement", status=status, detail=outcome.detail, **fields, **extra)
        await self.publish(
            EventType.MACHINE_PLACEMENT, status=status, detail=outcome.detail, **fields, **extra
        )
        return outcome

    async def _guarded(self, decision: PlacementDecision, progress: Progress) -> Outcome:
        if decision.action in (Action.UNLOAD, Action.DELETE):
            reason = await needed(self.queue, self.machine_id, decision)
            if reason is not None:
                return Outcome(False, f"kept: {reason}")
        return await self.executor.carry_out(decision, progress)

    async def run(self, stopping: asyncio.Event) -> None:
        """At once (boot), then every interval until ``stopping`` is set."""
        while not stopping.is_set():
            try:
                await self.step()
            except Exception as error:  # a broker blip must not end placement for good
                log.warning("machine_placement_failed", error=str(error))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await stopping.wait()


class ManifestDownloads:
    """Downloads the models the component manifest names; nothing else is done."""

    def __init__(self, manager: ComponentManager, settings: ComponentSettings) -> None:
        self.manager = manager
        self.settings = settings

    async def carry_out(self, decision: PlacementDecision, progress: Progress) -> Outcome:
        if decision.action is not Action.DOWNLOAD:
            return Outcome(
                False, f"no way to {decision.action} a model of {decision.service} on request"
            )
        spec = find_model(await self.manager.manifest(), decision.model)
        if spec is None:
            return Outcome(False, "the component manifest has no source for it")
        return Outcome(*await fetch_model(self.settings, spec, progress))


class OllamaPreload:
    """Loads (``keep_alive``) and unloads (``keep_alive: 0``) models of the ``ollama``
    service: Ollama's generate call without a prompt only loads the model."""

    service = "ollama"

    def __init__(self, url: str, keep_alive: str = "30m", timeout_s: float = 600.0) -> None:
        self.url = url.rstrip("/")
        self.keep_alive = keep_alive
        self.timeout_s = timeout_s

    def takes(self, decision: PlacementDecision) -> bool:
        return decision.service == self.service and decision.action in (Action.LOAD, Action.UNLOAD)

    async def carry_out(self, decision: PlacementDecision, progress: Progress) -> Outcome:
        keep: str | int = self.keep_alive if decision.action is Action.LOAD else 0
        async with httpx.AsyncClient(
            timeout=self.timeout_s, trust_env=False, verify=tls_context(trust_env=False)
        ) as client:
            response = await client.post(
                f"{self.url}/api/generate", json={"model": decision.model, "keep_alive": keep}
            )
        if response.status_code != 200:
            return Outcome(False, f"ollama answered {response.status_code}: {response.text[:200]}")
        what = f"loaded (keep_alive {keep})" if keep else "unloaded"
        return Outcome(True, f"{what} through {self.url}/api/generate")


class Executors:
    """Each decision to the first executor that takes it (``takes``), else the fallback."""

    def __init__(self, fallback: PlacementExecutor, *specific: SpecificExecutor) -> None:
        self.fallback = fallback
        self.specific = specific

    async def carry_out(self, decision: PlacementDecision, progress: Progress) -> Outcome:
        for executor in self.specific:
            if executor.takes(decision):
                return await executor.carry_out(decision, progress)
        return await self.fallback.carry_out(decision, progress)
