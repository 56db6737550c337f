"""The pieces placement's executors and LRU rest on: the ComfyUI warm-up graph, what a
ComfyUI's newest prompt says is loaded, and a worker's published last use of each model."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from emp_queue import WorkerCapabilities
from emp_queue.connectors.comfyui_discovery import models_by_input, models_in_prompt, newest_prompt
from emp_queue.core.matching import capabilities_document, capabilities_fingerprint
from emp_queue.machine.placement_services import warmup_prompt
from emp_queue.models import ServiceModels
from emp_queue.testing.fakes.comfyui import DEFAULT_MODELS
from emp_queue.testing.fakes.comfyui_graph import object_info, validate_prompt
from emp_queue.worker.capabilities import with_last_used

CKPT = "sd_xl_base_1.0.safetensors"


def test_the_warm_up_prompt_is_valid_and_reaches_a_preview_output() -> None:
    graph = warmup_prompt(CKPT, seed=7)
    assert validate_prompt(graph, DEFAULT_MODELS).outputs == ["6"]
    assert graph["3"]["inputs"] == {"width": 64, "height": 64, "batch_size": 1}
    assert graph["4"]["inputs"]["steps"] == 1
    assert graph["6"]["class_type"] == "PreviewImage"  # nothing is saved to the output folder


def test_the_newest_history_prompt_names_the_loaded_models() -> None:
    by_input = models_by_input(object_info(DEFAULT_MODELS))
    graph = warmup_prompt(CKPT, seed=1)
    history = {
        "older": {"prompt": [1, "older", warmup_prompt("v1-5-pruned-emaonly.safetensors", 1)]},
        "newest": {"prompt": [2, "newest", graph, {}, ["6"]], "outputs": {}},
    }
    newest = newest_prompt(history)
    assert newest is not None
    assert newest[0] == "newest"
    assert models_in_prompt(newest[1], by_input, [CKPT]) == [CKPT]
    assert models_in_prompt(newest[1], by_input, []) == []  # deleted since: not loaded
    assert newest_prompt({}) is None
    assert newest_prompt({"x": {"status": {}}}) is None


def test_last_use_is_published_for_present_models_only_and_left_out_when_unknown() -> None:
    caps = WorkerCapabilities.model_validate(
        {"services": ["comfyui"], "models": {"comfyui": {"installed": ["a", "b"], "loaded": ["a"]}}}
    )
    assert "last_used" not in capabilities_document(caps)["models"]["comfyui"]
    plain = capabilities_fingerprint(caps)
    assert capabilities_fingerprint(with_last_used(caps, {})) == plain  # no churn without use

    used = with_last_used(caps, {("comfyui", "a"): 100, ("comfyui", "gone"): 50, ("x", "b"): 9})
    assert used.models["comfyui"].last_used == {"a": 100}
    assert capabilities_document(used)["models"]["comfyui"]["last_used"] == {"a": 100}


def test_an_older_workers_models_parse_and_a_negative_time_is_refused() -> None:
    assert ServiceModels.model_validate({"installed": ["a"]}).last_used is None
    assert ServiceModels.model_validate({"last_used": {}}).last_used is None
    with pytest.raises(ValidationError, match="never negative"):
        ServiceModels.model_validate({"last_used": {"a": -1}})
