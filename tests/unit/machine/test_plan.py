"""Plan generation: WORKERS specs , GPU counts , service modes, and the errors users see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emp_queue.errors import ConfigurationError
from emp_queue.machine.mapping import load_mapping
from emp_queue.machine.plan import (
    MachinePlan,
    PlanContext,
    WorkerRequest,
    WorkersSpecError,
    build_plan,
    parse_workers,
)
from emp_queue.machine.settings import ServicesMode
from emp_queue.machine_models import GpuInfo, MachineHardware

MAPPING = load_mapping()


def hardware(gpus: int) -> MachineHardware:
    return MachineHardware(
        gpus=[GpuInfo(index=i, name="Mock", memory_gb=24) for i in range(gpus)], gpu_mode="mock"
    )


def plan(
    spec: str,
    gpus: int,
    mode: ServicesMode = ServicesMode.FAKE,
    environ: dict[str, str] | None = None,
) -> MachinePlan:
    context = PlanContext("m1", mode, environ or {}, python="/py")
    return build_plan(parse_workers(spec, MAPPING), hardware(gpus), MAPPING, context)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("comfyui:2", [WorkerRequest("comfyui", 2)]),
        (" ollama:1 , openai:4 ", [WorkerRequest("ollama", 1), WorkerRequest("openai", 4)]),
        ("simulation:auto", [WorkerRequest("simulation", None)]),
        ("rest-async:3,gemini:1", [WorkerRequest("rest-async", 3), WorkerRequest("gemini", 1)]),
        (
            "comfyui:2@heavy,ollama:auto@fast",
            [WorkerRequest("comfyui", 2, "heavy"), WorkerRequest("ollama", None, "fast")],
        ),
    ],
)
def test_workers_spec_is_parsed_in_order(spec: str, expected: list[WorkerRequest]) -> None:
    assert parse_workers(spec, MAPPING) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("comfyui", r"token 'comfyui' is not TYPE:COUNT"),
        ("comfyui:2,", r"token '' is not TYPE:COUNT"),
        (":2", r"token ':2' is not TYPE:COUNT"),
        ("comfyui:0", r"'comfyui:0' has count '0'"),
        ("comfyui:-1", r"'comfyui:-1' has count '-1'"),
        ("comfyui:two", r"'comfyui:two' has count 'two'"),
        ("comfyui:1,comfyui:2", r"names 'comfyui' twice"),
        ("comfyui:1@", r"names pool ''"),
        ("comfyui:1@a b", r"names pool 'a b'"),
        ("", r"WORKERS is not set"),
        ("   ", r"WORKERS is not set"),
    ],
)
def test_bad_syntax_names_the_bad_token(spec: str, message: str) -> None:
    with pytest.raises(WorkersSpecError, match=message):
        parse_workers(spec, MAPPING)


def test_a_worker_type_pool_reaches_its_workers_only() -> None:
    workers = plan("simulation:2@fast,rest:1", 0).workers
    assert [w.env.get("EMP_WORKER_POOL") for w in workers] == ["fast", "fast", None]


def test_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(WorkersSpecError) as caught:
        parse_workers("comfyui:1,stablediffusion:2", MAPPING)
    message = str(caught.value)
    assert "'stablediffusion'" in message
    for known in ("a1111", "comfyui", "gemini", "ollama", "openai", "rest", "simulation"):
        assert known in message


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_comfyui_auto_runs_one_instance_per_gpu(gpus: int) -> None:
    result = plan("comfyui:auto", gpus)
    assert [(d.name, d.port, d.gpu) for d in result.daemons] == [
        (f"comfyui-{i}", 8188 + i, i) for i in range(gpus)
    ]
    assert [d.env["CUDA_VISIBLE_DEVICES"] for d in result.daemons] == [str(i) for i in range(gpus)]
    for i, worker in enumerate(result.workers):
        assert worker.depends_on == f"comfyui-{i}"
        assert worker.env["EMP_COMFYUI_URL"] == f"http://127.0.0.1:{8188 + i}"
        assert worker.env["CUDA_VISIBLE_DEVICES"] == worker.env["EMP_WORKER_GPU_INDEX"] == str(i)
    assert result.worker_types == {"comfyui": gpus}


@pytest.mark.parametrize(("count", "gpus"), [(3, 2), (4, 1), (1, 4)])
def test_explicit_gpu_counts_spread_over_the_gpus(count: int, gpus: int) -> None:
    result = plan(f"a1111:{count}", gpus)
    assert [d.gpu for d in result.daemons] == [i % gpus for i in range(count)]
    assert [d.port for d in result.daemons] == [7860 + i for i in range(count)]
    assert [w.gpu for w in result.workers] == [i % gpus for i in range(count)]


@pytest.mark.parametrize("gpus", [0, 1, 3])
def test_ollama_shares_one_daemon_on_11434(gpus: int) -> None:
    result = plan("ollama:2", gpus)
    assert [(d.name, d.port, d.gpu) for d in result.daemons] == [("ollama", 11434, None)]
    assert result.daemons[0].env == {"OLLAMA_HOST": "127.0.0.1:11434"}
    assert {w.depends_on for w in result.workers} == {"ollama"}
    assert all(w.gpu is None and "CUDA_VISIBLE_DEVICES" not in w.env for w in result.workers)


@pytest.mark.parametrize(("gpus", "workers"), [(0, 1), (1, 1), (2, 1), (4, 1)])
def test_non_gpu_auto_is_one(gpus: int, workers: int) -> None:
    assert len(plan("simulation:auto,openai:auto", gpus).workers) == 2 * workers


@pytest.mark.parametrize("gpus", [1, 2])
def test_ollama_auto_is_one_worker_per_gpu(gpus: int) -> None:
    assert plan("ollama:auto", gpus).worker_types == {"ollama": gpus}


def test_mixed_spec_orders_daemons_before_their_workers() -> None:
    result = plan("comfyui:2,ollama:1,openai:4,simulation:auto", 2)
    assert [d.name for d in result.daemons] == ["comfyui-0", "comfyui-1", "ollama", "openai"]
    assert result.worker_types == {"comfyui": 2, "ollama": 1, "openai": 4, "simulation": 1}
    assert len(result.workers) == 8
    names = {d.name for d in result.daemons}
    assert all(w.depends_on in names | {None} for w in result.workers)
    assert len({w.worker_id for w in result.workers}) == 8
    openai = [w for w in result.workers if w.worker_type == "openai"]
    assert {w.env["EMP_OPENAI_BASE_URL"] for w in openai} == {"http://127.0.0.1:8000/v1"}


def test_fake_mode_runs_protocol_fakes() -> None:
    daemon = plan("comfyui:1", 1).daemons[0]
    assert daemon.command == [
        "/py", "-m", "emp_queue.testing.fakes", "comfyui", "--host", "127.0.0.1", "--port", "8188"
    ]  # fmt: skip
    assert daemon.ready_url == "http://127.0.0.1:8188/system_stats"


def test_real_mode_runs_the_binaries_from_their_directories() -> None:
    environ = {"EMP_COMFYUI_DIR": "/opt/ComfyUI"}
    result = plan("comfyui:1,ollama:1", 1, ServicesMode.REAL, environ)
    comfyui, ollama = result.daemons
    assert comfyui.command == ["/py", "main.py", "--listen", "127.0.0.1", "--port", "8188"]
    assert comfyui.cwd == "/opt/ComfyUI"
    assert ollama.command == ["ollama", "serve"]


def test_real_mode_openai_has_no_local_daemon() -> None:
    result = plan("openai:2,simulation:1", 0, ServicesMode.REAL)
    assert result.daemons == []
    assert all(w.depends_on is None and w.env == {} for w in result.workers)


def test_real_mode_without_the_install_directory_says_which_variable() -> None:
    with pytest.raises(ConfigurationError, match="EMP_COMFYUI_DIR, which is not set"):
        plan("comfyui:1", 1, ServicesMode.REAL)


@pytest.mark.parametrize("spec", ["comfyui:1", "comfyui:auto", "a1111:2"])
def test_per_gpu_types_need_a_gpu(spec: str) -> None:
    with pytest.raises(ConfigurationError, match="EMP_GPU_MODE=mock EMP_MOCK_GPUS=N"):
        plan(spec, 0)


def test_worker_arguments_are_those_of_emp_worker() -> None:
    worker = plan("comfyui:1", 1).workers[0]
    assert worker.arguments == [
        "worker", "--connector", "comfyui", "--worker-id", "m1-comfyui-0",
        "--machine-id", "m1", "--concurrency", "1", "--service", "comfyui",
    ]  # fmt: skip


def test_mapping_override_adds_a_type(tmp_path: Path) -> None:
    document = MAPPING.model_dump()
    document["worker_types"]["flux"] = {
        "connector": "comfyui", "services": ["flux"], "gpu_bound": True, "daemon": "comfyui"
    }  # fmt: skip
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(document))
    mapping = load_mapping(path)
    assert parse_workers("flux:1", mapping) == [WorkerRequest("flux", 1)]


def test_mapping_override_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    path.write_text('{"worker_types": {"x": {"connector": "c", "services": ["x"], '
                    '"gpu_bound": false, "daemon": "nope"}}}')  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"(?s)mapping.json is not a valid .*'nope'"):
        load_mapping(path)
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_mapping(tmp_path / "missing.json")
