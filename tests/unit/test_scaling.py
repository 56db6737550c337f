"""The scaling decision: machines wanted from depth, rates, service time, booting machines."""

from __future__ import annotations

from emp_queue.core.inspection import WorkerInfo
from emp_queue.core.scaling import (
    PoolCapacity,
    ScalingDecision,
    ScalingPolicy,
    ServiceLoad,
    capacities,
    decide,
)
from emp_queue.machine_models import MachinePhase, MachineRecord
from emp_queue.models import WorkerCapabilities

POLICY = ScalingPolicy(window_s=60, drain_s=300)


def one(
    loads: dict[str, ServiceLoad],
    capacity: dict[tuple[str, str], PoolCapacity],
    policy: ScalingPolicy = POLICY,
) -> ScalingDecision:
    [decision] = decide(loads, capacity, policy)
    return decision


def test_a_backlog_wants_the_machines_that_drain_it_in_time() -> None:
    # 600 waiting, 10 s a job, one slot: a machine does 0.1 jobs/s, 30 in 300 s → 20 machines.
    load = ServiceLoad("comfyui", waiting=600, mean_run_s=10.0)
    decision = one({"comfyui": load}, {("gpu", "comfyui"): PoolCapacity(ready=2, slots=2)})
    assert (decision.pool, decision.machines_wanted, decision.change) == ("gpu", 20, 18)
    assert any("600 jobs waiting: 20 machines drain them" in line for line in decision.reasoning)


def test_arrivals_want_the_machines_that_keep_up_booting_ones_counted() -> None:
    # 0.5 jobs/s, 10 s a job, two slots a machine: 0.2 jobs/s each → 2.5 → 3 machines.
    load = ServiceLoad("sim", arrivals_per_s=0.5, running=2, mean_run_s=10.0)
    decision = one({"sim": load}, {("p", "sim"): PoolCapacity(ready=1, booting=2, slots=2)})
    assert (decision.machines_wanted, decision.machines_booting, decision.change) == (3, 2, 0)
    assert decision.inputs["machine_jobs_per_s"] == 0.2
    assert any("2 machine(s) booting" in line for line in decision.reasoning)


def test_no_work_scales_to_zero_but_running_jobs_keep_a_machine() -> None:
    idle = one({"sim": ServiceLoad("sim", mean_run_s=5)}, {("p", "sim"): PoolCapacity(1, 0, 1)})
    busy = one({"sim": ServiceLoad("sim", running=1, mean_run_s=5)},
               {("p", "sim"): PoolCapacity(1, 0, 1)})  # fmt: skip
    assert (idle.machines_wanted, idle.change) == (0, -1)
    assert busy.machines_wanted == 1


def test_jobs_no_worker_can_run_want_a_machine_that_has_what_they_need() -> None:
    load = ServiceLoad("comfyui", unworkable=4, unworkable_needs=[{"models": ["flux-dev"]}])
    decision = one({"comfyui": load}, {})
    assert (decision.pool, decision.machines_ready, decision.machines_wanted) == ("default", 0, 1)
    assert any("flux-dev" in line and "no live worker" in line for line in decision.reasoning)
    assert any("assumed" in line for line in decision.reasoning)  # nothing completed yet


def test_pools_serving_one_service_share_its_demand_by_their_machines() -> None:
    load = ServiceLoad("sim", waiting=300, mean_run_s=10.0)
    capacity = {("a", "sim"): PoolCapacity(ready=3, slots=3), ("b", "sim"): PoolCapacity(1, 0, 1)}
    wanted = {d.pool: d.machines_wanted for d in decide({"sim": load}, capacity, POLICY)}
    assert wanted == {"a": 8, "b": 3}  # 225 and 75 waiting jobs: 7.5 and 2.5 machines


def test_the_cap_bounds_what_is_asked_for() -> None:
    load = ServiceLoad("sim", waiting=10_000, mean_run_s=10.0)
    decision = one({"sim": load}, {}, ScalingPolicy(max_machines=5))
    assert decision.machines_wanted == 5
    assert any("EMP_API_SCALING_MAX_MACHINES=5" in line for line in decision.reasoning)


def worker(worker_id: str, machine: str, pool: str | None, *services: str) -> WorkerInfo:
    capabilities = WorkerCapabilities(services=list(services), pool=pool)
    return WorkerInfo(worker_id, machine, "idle", 0, capabilities, [])


def test_capacity_counts_ready_and_booting_machines_per_pool() -> None:
    machines = [
        MachineRecord(machine_id="m1", phase=MachinePhase.READY),
        MachineRecord(
            machine_id="m2", phase=MachinePhase.STARTING, pool="gpu", worker_types={"comfyui": 2}
        ),
        MachineRecord(machine_id="m3", phase=MachinePhase.READY, online=False),
        MachineRecord(machine_id="m4", phase=MachinePhase.DRAINING),
    ]
    workers = [
        worker("w1", "m1", "gpu", "comfyui"),
        worker("w2", "m1", "gpu", "comfyui", "sim"),
        worker("w4", "m4", "gpu", "comfyui"),
    ]
    found = capacities(machines, workers)
    assert found == {
        ("gpu", "comfyui"): PoolCapacity(ready=1, booting=1, slots=2),
        ("gpu", "sim"): PoolCapacity(ready=1, booting=0, slots=1),
    }
