"""The placement planner: what a machine fetches, loads and evicts for the fleet's demand."""

from __future__ import annotations

from collections import OrderedDict

from emp_queue.core.demand import ModelDemand
from emp_queue.machine.placement import Action, Holding, PlacementDecision, plan_placement

GB = 1_000_000_000


def demand(model: str, pending: int = 0, loaded_on: int = 0, rate: float = 0.0) -> ModelDemand:
    return ModelDemand("sim", model, pending, loaded_on, 0, arrivals_per_min_5m=rate)


def holding(loaded: dict[str, int], installed: dict[str, int], **fetchable: int) -> Holding:
    return Holding(
        "sim",
        vram_bytes=24 * GB,
        disk_bytes=40 * GB,
        loaded=OrderedDict(loaded),
        installed=OrderedDict(installed),
        fetchable=fetchable,
    )


def steps(decisions: list[PlacementDecision]) -> list[tuple[str, str]]:
    return [(str(d.action), d.model) for d in decisions]


def test_unmet_demand_is_downloaded_then_loaded() -> None:
    machine = holding({}, {}, flux=12 * GB)
    decisions = plan_placement([demand("flux", pending=3)], machine)
    assert steps(decisions) == [("download", "flux"), ("load", "flux")]
    assert "3 waiting" in decisions[-1].reason


def test_least_recently_used_idle_models_make_room() -> None:
    machine = holding(
        {"old": 10 * GB, "recent": 10 * GB}, {"old": 10 * GB, "recent": 10 * GB, "flux": 12 * GB}
    )
    decisions = plan_placement([demand("flux", pending=2)], machine)
    assert steps(decisions) == [("unload", "old"), ("load", "flux")]


def test_a_model_somebody_waits_for_is_never_evicted() -> None:
    machine = holding({"busy": 20 * GB}, {"busy": 20 * GB, "flux": 12 * GB})
    assert plan_placement([demand("flux", pending=5), demand("busy", pending=1)], machine) == []


def test_a_model_worth_more_than_the_newcomer_stays() -> None:
    machine = holding({"popular": 20 * GB}, {"popular": 20 * GB, "rare": 12 * GB})
    rates = [demand("popular", loaded_on=1, rate=10.0), demand("rare", rate=0.5)]
    assert plan_placement(rates, machine) == []
    # The same model loaded on 100 workers is worth little here: a rarer one takes its place.
    rates = [demand("popular", loaded_on=100, rate=10.0), demand("rare", rate=0.5)]
    assert steps(plan_placement(rates, machine)) == [("unload", "popular"), ("load", "rare")]


def test_nothing_without_demand_or_without_a_source() -> None:
    machine = holding({}, {})
    assert plan_placement([demand("nowhere", pending=4)], machine) == []
    assert plan_placement([demand("flux")], holding({}, {}, flux=GB)) == []


def test_disk_room_spares_loaded_models() -> None:
    machine = holding({"hot": 20 * GB}, {"hot": 20 * GB, "stale": 20 * GB}, big=20 * GB)
    decisions = plan_placement([demand("big", pending=1)], machine)
    assert steps(decisions)[:2] == [("delete", "stale"), ("download", "big")]
    assert Action.LOAD in {d.action for d in decisions}


def test_the_least_recently_used_model_by_reported_last_use_is_evicted_first() -> None:
    # Listed "a" before "b", but "b" was used longer ago: "b" goes.
    machine = holding({"a": 10 * GB, "b": 10 * GB}, {"a": 10 * GB, "b": 10 * GB, "c": 12 * GB})
    machine.last_used = {"a": 2_000.0, "b": 1_000.0}
    assert steps(plan_placement([demand("c", pending=2)], machine)) == [
        ("unload", "b"),
        ("load", "c"),
    ]


def test_a_model_without_a_known_last_use_counts_as_the_oldest_and_ties_keep_the_order() -> None:
    machine = holding(
        {"used": 8 * GB, "x": 8 * GB, "y": 8 * GB},
        {"used": 8 * GB, "x": 8 * GB, "y": 8 * GB, "new": 12 * GB},
    )
    machine.last_used = {"used": 5.0}
    assert list(machine.lru_order(machine.loaded)) == ["x", "y", "used"]
    assert steps(plan_placement([demand("new", pending=1)], machine)) == [
        ("unload", "x"),
        ("unload", "y"),
        ("load", "new"),
    ]
    machine.last_used = {"used": 5.0, "x": 7.0, "y": 7.0}  # a tie: listing order decides
    assert list(machine.lru_order(machine.loaded)) == ["used", "x", "y"]
