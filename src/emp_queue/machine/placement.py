"""Predictive model placement: which models a machine should fetch, load and evict next.

A pure planner (no I/O): the machine agent and the fleet simulator (``bench/fleet_sim``)
feed it the fleet's demand (:func:`emp_queue.core.demand.model_demand`, what
``GET /api/demand`` serves) and what the machine holds, and carry out its decisions.

Value of a model to this machine: waiting jobs no worker has it loaded for (``unmet``) come
first; then its arrival rate over the last 5 minutes shared among the workers holding it
loaded (``rate / (loaded_on + 1)`` for a model this machine would add, ``rate / loaded_on``
for one it holds). The planner loads the most valuable model it does not hold when it can
make room by evicting, least recently used first, only models nobody waits for
(``pending == 0``) that are worth at most half as much (``HYSTERESIS``); a model not on disk
is downloaded first (within the disk budget, by the same rule). Least recently used is
:meth:`Holding.lru_order`: the workers' reported ``last_used`` times, a model with none
counting as the oldest (ties and unknowns keep the order given: by name from the agent, the
simulator's own order in ``bench/fleet_sim``). Every decision carries its reason, for the
event the agent publishes.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from emp_queue.core.demand import ModelDemand

__all__ = ["Action", "Holding", "Outcome", "PlacementDecision", "plan_placement"]

HYSTERESIS = 2.0
"""A model is evicted for a newcomer worth at least this many times more (no churn between
models of about the same value)."""


class Action(enum.StrEnum):
    DOWNLOAD = "download"  # source -> disk
    LOAD = "load"  # disk -> GPU memory
    UNLOAD = "unload"  # out of GPU memory
    DELETE = "delete"  # off the disk


@dataclass(frozen=True)
class PlacementDecision:
    action: Action
    service: str
    model: str
    size_bytes: int
    reason: str


@dataclass(frozen=True)
class Outcome:
    """What carrying a decision out did: done or not, in words, and fields for its event
    (``freed_bytes`` of a delete)."""

    done: bool
    detail: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Holding:
    """One service's models on one machine, with their sizes."""

    service: str
    vram_bytes: int
    disk_bytes: int
    loaded: OrderedDict[str, int] = field(default_factory=OrderedDict)
    installed: OrderedDict[str, int] = field(default_factory=OrderedDict)
    fetchable: Mapping[str, int] = field(default_factory=dict)
    """Models it can download, with their size."""
    last_used: Mapping[str, float] = field(default_factory=dict)
    """When each model was last used here (any clock, larger is later); see :func:`lru_order`."""

    def lru_order(self, held: Mapping[str, int]) -> OrderedDict[str, int]:
        """``held`` least recently used first: models without a known last use first (never
        used here, as far as anyone reports), then by last use; ties keep ``held``'s order."""
        known = self.last_used
        ranked = sorted(
            enumerate(held.items()),
            key=lambda item: (item[1][0] in known, known.get(item[1][0], 0.0), item[0]),
        )
        return OrderedDict(entry for _, entry in ranked)

    def size(self, model: str) -> int | None:
        for known in (self.loaded, self.installed, self.fetchable):
            if model in known:
                return known[model]
        return None


def _value(demand: ModelDemand | None, adding: bool) -> float:
    if demand is None:
        return 0.0
    holders = demand.loaded_on + (1 if adding else 0)
    return demand.unmet * 1_000_000.0 + demand.arrivals_per_min_5m / max(1, holders)


def _room(
    held: OrderedDict[str, int],
    budget: int,
    need: int,
    worth: float,
    demand: Mapping[str, ModelDemand],
    keep: Iterable[str] = (),
) -> list[str] | None:
    """Models to evict (LRU first) so that ``need`` bytes fit, or None when that would mean
    evicting one somebody waits for, or one worth more than 1 / HYSTERESIS of the newcomer."""
    free = budget - sum(held.values())
    victims: list[str] = []
    kept = set(keep)
    for model, size in held.items():
        if free >= need:
            break
        own = demand.get(model)
        if model in kept or (own is not None and own.pending > 0):
            continue
        if _value(own, False) * HYSTERESIS >= worth:
            continue
        victims.append(model)
        free += size
    return victims if free >= need else None


def plan_placement(
    demand: Iterable[ModelDemand], holding: Holding, *, limit: int = 1
) -> list[PlacementDecision]:
    """Up to ``limit`` models to load next, each with the downloads and evictions it needs."""
    own = {d.model: d for d in demand if d.service == holding.service}
    loaded = holding.lru_order(holding.loaded)
    installed = holding.lru_order(holding.installed)
    decisions: list[PlacementDecision] = []
    ranked = sorted(own.values(), key=lambda d: (-_value(d, True), d.model))
    for wanted in ranked:
        if len([d for d in decisions if d.action is Action.LOAD]) >= limit:
            break
        worth = _value(wanted, True)
        size = holding.size(wanted.model)
        if worth <= 0 or wanted.model in loaded or size is None:
            continue
        steps: list[PlacementDecision] = []
        why = (
            f"{wanted.pending} waiting, {wanted.loaded_on} workers have it loaded, "
            f"{wanted.arrivals_per_min_5m:.2f} jobs/min over 5 min"
        )
        if wanted.model not in installed:
            disk_victims = _room(
                installed, holding.disk_bytes, size, worth, own, keep=loaded.keys()
            )
            if disk_victims is None:
                continue
            steps += _evictions(
                Action.DELETE, holding.service, disk_victims, installed, wanted.model
            )
            steps.append(
                PlacementDecision(Action.DOWNLOAD, holding.service, wanted.model, size, why)
            )
        vram_victims = _room(loaded, holding.vram_bytes, size, worth, own)
        if vram_victims is None:
            continue
        steps += _evictions(Action.UNLOAD, holding.service, vram_victims, loaded, wanted.model)
        steps.append(PlacementDecision(Action.LOAD, holding.service, wanted.model, size, why))
        for step in steps:
            if step.action is Action.DELETE:
                installed.pop(step.model)
            elif step.action is Action.DOWNLOAD:
                installed[step.model] = step.size_bytes
            elif step.action is Action.UNLOAD:
                loaded.pop(step.model)
            else:
                loaded[step.model] = step.size_bytes
        decisions += steps
    return decisions


def _evictions(
    action: Action, service: str, victims: list[str], sizes: Mapping[str, int], newcomer: str
) -> list[PlacementDecision]:
    """Delete or unload each victim to make room for ``newcomer``."""
    why = f"least recently used, nobody waits for it; room for {newcomer}"
    return [PlacementDecision(action, service, victim, sizes[victim], why) for victim in victims]
