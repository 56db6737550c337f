"""The machine agent's predictive placement: read the fleet's demand at boot and every
interval, plan with :mod:`emp_queue.machine.placement`, carry the decisions out and report
each one as a ``machine_placement`` event (the monitor's machine topic).

What the machine holds is what its own live workers report (``ServiceModels``: loaded,
installed, fetchable, sizes), so the plan follows the workers' view. Workers do not report
when each model was last used, so "least recently used" here is the order they report (by
name); the fleet simulator, which knows the order, passes it. The demand is the one
``GET /api/demand`` serves (:func:`emp_queue.core.demand.model_demand`), read straight from
the broker the agent already talks to.

Carrying out is the executor's: :class:`ManifestDownloads` downloads models the component
manifest names (with progress events); :class:`OllamaPreload` loads and unloads Ollama
models through Ollama's own API (a generate call without a prompt, ``keep_alive``);
:class:`Executors` sends each decision to the first that takes it. What none takes (a
ComfyUI load: ComfyUI loads on the first prompt; deleting files) is reported as not done;
the next job of that model then loads it, and the claim's affinity and holds route that job
here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import structlog

from emp_queue.core.demand import model_demand
from emp_queue.core.inspection import workers
from emp_queue.machine.components.fetch import fetch_model, find_model
from emp_queue.machine.placement import Action, Holding, PlacementDecision, plan_placement
from emp_queue.models import EventType

if TYPE_CHECKING:
    from emp_queue.core.queue import JobQueue
    from emp_queue.machine.components.manager import ComponentManager
    from emp_queue.machine.components.settings import ComponentSettings

log = structlog.get_logger(__name__)

Publish = Callable[..., Awaitable[None]]
"""``publish(EventType.MACHINE_PLACEMENT, **fields)``: the agent's machine event."""


class PlacementExecutor(Protocol):
    async def carry_out(
        self, decision: PlacementDecision, progress: Callable[[float], Coroutine[Any, Any, None]]
    ) -> tuple[bool, str]:
        """Do it; (done?, what happened)."""


@dataclass(frozen=True)
class Budgets:
    vram_bytes: int
    disk_bytes: int


async def machine_holdings(queue: JobQueue, machine_id: str, budgets: Budgets) -> list[Holding]:
    """Per service, the models this machine's live workers report, merged."""
    holdings: dict[str, Holding] = {}
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
    return list(holdings.values())


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

    async def step(self) -> list[PlacementDecision]:
        """One round: plan for every service of this machine, carry out, report."""
        demand = await model_demand(self.queue)
        decisions: list[PlacementDecision] = []
        for holding in await machine_holdings(self.queue, self.machine_id, self.budgets):
            for decision in plan_placement(demand, holding):
                decisions.append(decision)
                await self._carry_out(decision)
        return decisions

    async def _carry_out(self, decision: PlacementDecision) -> None:
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
            done, detail = await self.executor.carry_out(decision, progress)
        except (OSError, httpx.HTTPError, ValueError) as error:
            done, detail = False, f"{type(error).__name__}: {error}"
        status = "done" if done else "not_done"
        log.info("machine_placement", status=status, detail=detail, **fields)
        await self.publish(EventType.MACHINE_PLACEMENT, status=status, detail=detail, **fields)

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

    async def carry_out(
        self, decision: PlacementDecision, progress: Callable[[float], Coroutine[Any, Any, None]]
    ) -> tuple[bool, str]:
        if decision.action is not Action.DOWNLOAD:
            return False, f"no way to {decision.action} a model of {decision.service} on request"
        spec = find_model(await self.manager.manifest(), decision.model)
        if spec is None:
            return False, "the component manifest has no source for it"
        return await fetch_model(self.settings, spec, progress)


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

    async def carry_out(
        self, decision: PlacementDecision, progress: Callable[[float], Coroutine[Any, Any, None]]
    ) -> tuple[bool, str]:
        keep: str | int = self.keep_alive if decision.action is Action.LOAD else 0
        async with httpx.AsyncClient(timeout=self.timeout_s, trust_env=False) as client:
            response = await client.post(
                f"{self.url}/api/generate", json={"model": decision.model, "keep_alive": keep}
            )
        if response.status_code != 200:
            return False, f"ollama answered {response.status_code}: {response.text[:200]}"
        what = f"loaded (keep_alive {keep})" if keep else "unloaded"
        return True, f"{what} through {self.url}/api/generate"


class Executors:
    """Each decision to the first executor that takes it (``takes``), else the fallback."""

    def __init__(self, fallback: PlacementExecutor, *specific: OllamaPreload) -> None:
        self.fallback = fallback
        self.specific = specific

    async def carry_out(
        self, decision: PlacementDecision, progress: Callable[[float], Coroutine[Any, Any, None]]
    ) -> tuple[bool, str]:
        for executor in self.specific:
            if executor.takes(decision):
                return await executor.carry_out(decision, progress)
        return await self.fallback.carry_out(decision, progress)
