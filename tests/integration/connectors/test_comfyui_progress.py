"""Pure parts of the comfyui connector: progress aggregation, error classes, settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from emp_queue.connectors.comfyui import DEFAULT_SERVICE_ERROR_MARKERS, ComfyUIConfig
from emp_queue.connectors.comfyui_prompt import (
    BEFORE_DONE_CEILING,
    ProgressTracker,
    execution_error_fault,
)
from emp_queue.connectors.comfyui_socket import Message
from emp_queue.models import FailureClass

GRAPH = {
    "4": "CheckpointLoaderSimple",
    "5": "EmptyLatentImage",
    "3": "KSampler",
    "8": "VAEDecode",
}


def test_progress_combines_finished_nodes_with_the_running_node_and_never_goes_back() -> None:
    tracker = ProgressTracker(GRAPH)
    seen: list[float] = []

    def feed(kind: str, **data: object) -> None:
        tracker.apply(Message(kind, {"prompt_id": "p", **data}))
        seen.append(tracker.fraction())

    feed("execution_cached", nodes=["4"])
    feed("executing", node="5")
    feed("executing", node="3")  # 5 finished: an old ComfyUI says nothing else
    feed("progress", node="3", value=5, max=10)
    state = {"value": 2, "max": 10, "state": "running", "display_node_id": "3"}
    feed("progress_state", nodes={"3": state})  # late and older: must not pull back
    feed("progress_state", nodes={"3.0.1": {**state, "value": 8}})  # an expanded subgraph node
    feed("progress_state", nodes={"elsewhere": {"value": 1, "max": 1, "state": "finished"}})

    assert seen == pytest.approx([0.25, 0.25, 0.5, 0.625, 0.625, 0.7, 0.7])
    assert tracker.describe() == "KSampler (node 3) step 5/10"
    feed("executed", node="3")
    feed("progress_state", nodes={"8": {"value": 1, "max": 1, "state": "finished"}})
    assert seen[-1] == BEFORE_DONE_CEILING, "1.0 is kept for the stored outputs"


@pytest.mark.parametrize(
    ("exception_type", "message", "failure_class"),
    [
        ("torch.cuda.OutOfMemoryError", "CUDA out of memory.", FailureClass.SERVICE_FAULT),
        ("RuntimeError", "MPS backend out of memory", FailureClass.SERVICE_FAULT),
        ("OSError", "[Errno 28] No space left on device", FailureClass.SERVICE_FAULT),
        ("KeyError", "'clip'", FailureClass.JOB_FAULT),
        ("Exception", "mat1 and mat2 shapes cannot be multiplied", FailureClass.JOB_FAULT),
    ],
)
def test_execution_error_rule(
    exception_type: str, message: str, failure_class: FailureClass
) -> None:
    data = {"node_id": "3", "node_type": "KSampler", "exception_type": exception_type}
    fault = execution_error_fault(
        {**data, "exception_message": message, "traceback": ["line 1\n", "line 2\n"]},
        DEFAULT_SERVICE_ERROR_MARKERS,
    )
    assert fault.failure_class == failure_class
    assert fault.details["traceback"] == "line 1\nline 2\n"
    assert "node 3 (KSampler)" in str(fault)


def test_settings_come_from_emp_comfyui_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMP_COMFYUI_URL", "https://gpu.example.com/comfy/")
    monkeypatch.setenv("EMP_COMFYUI_TOKEN", "s3cr3t-value")
    monkeypatch.setenv("EMP_COMFYUI_OUTPUT_TYPES", '["output", "temp"]')

    config = ComfyUIConfig()

    assert config.auth_headers() == {"Authorization": "Bearer s3cr3t-value"}
    assert config.output_types == ["output", "temp"]
    assert config.socket_url("abc") == "wss://gpu.example.com/comfy/ws?clientId=abc"
    assert "s3cr3t-value" not in repr(config)


def test_defaults_point_at_a_local_comfyui_without_auth() -> None:
    config = ComfyUIConfig()
    assert config.url == "http://127.0.0.1:8188"
    assert config.auth_headers() == {}
    assert config.socket_url("c1") == "ws://127.0.0.1:8188/ws?clientId=c1"


@pytest.mark.parametrize(
    "settings",
    [
        {"username": "emp"},
        {"password": "x"},
        {"username": "emp", "password": "x", "token": "t"},
        {"url": "ftp://host"},
    ],
)
def test_contradictory_settings_are_refused(settings: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        ComfyUIConfig.model_validate(settings)
