"""Children of the machine agent get only what they need: none of the agent's own settings
(its health key among them) reach a worker or a service daemon (issue 13, finding 13)."""

from __future__ import annotations

from emp_queue.machine.plan import DaemonPlan, WorkerPlan
from emp_queue.machine.processes import daemon_spec, worker_spec

AGENT_ENVIRON = {
    "PATH": "/usr/bin",
    "EMP_REDIS_URL": "redis://127.0.0.1:6379/0",
    "OPENAI_API_KEY": "sk-for-the-connector",
    "EMP_MACHINE_HEALTH_KEY": "health-secret",
    "EMP_MACHINE_ID": "m1",
}


async def nothing() -> None:
    return None


async def never_ready() -> bool:
    return False


def test_workers_and_daemons_do_not_inherit_the_agents_settings() -> None:
    worker = WorkerPlan(
        name="worker-sim-0", worker_id="m1-sim-0", worker_type="sim", connector="simulation",
        services=["sim"], gpu=None, depends_on=None, concurrency=1, env={"X": "1"},
        arguments=["worker"],
    )  # fmt: skip
    daemon = DaemonPlan(
        name="comfyui", daemon="comfyui", port=8188, gpu=None, command=["comfy"], cwd=None,
        env={}, url="http://127.0.0.1:8188", url_env="EMP_COMFYUI_URL",
        ready_url="http://127.0.0.1:8188/", start_timeout_s=1,
    )  # fmt: skip
    worker_env = worker_spec(
        worker, launcher=["emp"], environ=AGENT_ENVIRON, probe=never_ready,
        before_start=nothing, after_crash=nothing, start_timeout_s=1, stop_grace_s=1,
    ).env  # fmt: skip
    daemon_env = daemon_spec(daemon, AGENT_ENVIRON, None, 1).env  # type: ignore[arg-type]

    for env in (worker_env, daemon_env):
        assert not [name for name in env if name.startswith("EMP_MACHINE_")]
        assert "health-secret" not in env.values()
        assert env["OPENAI_API_KEY"] == "sk-for-the-connector"
    assert worker_env["X"] == "1"
