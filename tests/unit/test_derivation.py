import pytest

from emp_queue.core.derivation import (
    DerivationRules,
    derive,
    derive_for_job,
    job_class,
    merge,
)
from emp_queue.core.requirements import REQUIREMENT_KEYS
from emp_queue.errors import InvalidJobError

RULES = DerivationRules()

SDXL_WITH_LORA_AND_UPSCALE = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl_base.safetensors"}},
    "5": {
        "class_type": "LoraLoader",
        "inputs": {"lora_name": "styles/ink.safetensors", "model": ["4", 0], "clip": ["4", 1]},
    },
    "6": {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}},
    "7": {
        "class_type": "DualCLIPLoader",
        "inputs": {"clip_name1": "t5.sft", "clip_name2": "l.sft"},
    },
    "8": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "canny.pth"}},
    "9": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x_ultra.pth"}},
    "10": {"class_type": "KSampler", "inputs": {"seed": 1, "model": ["5", 0]}},
    "11": {"class_type": "SaveImage", "inputs": {"filename_prefix": "out.safetensors"}},
}


def test_a_workflow_names_every_loader_file_and_its_node_classes() -> None:
    derived = derive("comfyui", {"workflow": SDXL_WITH_LORA_AND_UPSCALE}, RULES)
    assert derived["models"] == [
        "4x_ultra.pth",
        "canny.pth",
        "l.sft",
        "sdxl_base.safetensors",
        "sdxl_vae.safetensors",
        "styles/ink.safetensors",
        "t5.sft",
    ]
    # SaveImage's prefix looks like a file but is not a loader input: it is not a model.
    assert "out.safetensors" not in derived["models"]
    assert derived["nodes"] == [
        "CheckpointLoaderSimple",
        "ControlNetLoader",
        "DualCLIPLoader",
        "KSampler",
        "LoraLoader",
        "SaveImage",
        "UpscaleModelLoader",
        "VAELoader",
    ]


def test_the_prompt_alias_and_linked_loader_inputs() -> None:
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ["9", 0]}},
        "2": {"class_type": "EmptyLatentImage", "inputs": {}},
        "3": "not a node",
    }
    assert derive("comfyui", {"prompt": graph}, RULES) == {
        "nodes": ["CheckpointLoaderSimple", "EmptyLatentImage"]
    }


def test_loader_inputs_and_services_extend_by_config() -> None:
    graph = {"1": {"class_type": "MyLoader", "inputs": {"weights": "mine.safetensors"}}}
    plain = derive("comfyui-sdxl", {"workflow": graph}, RULES)
    assert plain == {}
    rules = DerivationRules.extended({"comfyui-sdxl": "comfyui"}, {"MyLoader": ["weights"]})
    assert derive("comfyui-sdxl", {"workflow": graph}, rules)["models"] == ["mine.safetensors"]
    # The built-in table stays: extending one loader keeps its own inputs.
    extended = DerivationRules.extended(None, {"LoraLoader": ["extra_lora"]})
    assert extended.loader_inputs["LoraLoader"] == ("lora_name", "extra_lora")


@pytest.mark.parametrize(
    ("service", "payload", "models"),
    [
        ("openai", {"model": "gpt-4o-mini", "messages": []}, ["gpt-4o-mini"]),
        ("ollama", {"model": "llama3", "prompt": "hi"}, ["llama3:latest"]),
        ("ollama", {"model": "qwen2:7b", "prompt": "hi"}, ["qwen2:7b"]),
        ("a1111", {"model": "sdxl.safetensors", "prompt": "x"}, ["sdxl.safetensors"]),
        (
            "a1111",
            {"prompt": "x", "override_settings": {"sd_model_checkpoint": "v15.ckpt"}},
            ["v15.ckpt"],
        ),
    ],
)
def test_a_request_names_its_model(
    service: str, payload: dict[str, object], models: list[str]
) -> None:
    assert derive(service, payload, RULES) == {"models": models}


@pytest.mark.parametrize(
    ("service", "payload"),
    [
        ("openai", {"messages": []}),
        ("ollama", {"model": ""}),
        ("a1111", {"override_settings": {"sd_model_checkpoint": 3}}),
        ("rest", {"model": "whatever"}),
    ],
)
def test_no_model_named_derives_nothing(service: str, payload: dict[str, object]) -> None:
    assert derive(service, payload, RULES) == {}


def test_merge_is_a_union_with_the_explicit_requirements() -> None:
    explicit = {"models": ["b", "a"], "pool": "fast"}
    assert merge(explicit, {"models": ["a", "c"]}) == {"models": ["a", "b", "c"], "pool": "fast"}
    assert merge({}, {"models": ["x"]}) == {"models": ["x"]}


def test_a_job_opts_out_with_derive_false() -> None:
    payload = {"model": "gpt-4o"}
    assert derive_for_job("openai", payload, {"derive": False}, RULES) == {}
    assert derive_for_job("openai", payload, {"derive": True}, RULES) == {"models": ["gpt-4o"]}
    opted_out = job_class("openai", None, {"derive": False}, {})
    assert dict(opted_out.requirements) == {}


def test_the_class_enforces_known_keys_and_records_every_derived_one() -> None:
    derived = derive("comfyui", {"workflow": SDXL_WITH_LORA_AND_UPSCALE}, RULES)
    cls = job_class("comfyui", "acme", {"models": ["extra.pt"]}, derived)
    assert cls.requirements["models"] == sorted([*derived["models"], "extra.pt"])
    assert dict(cls.derived) == derived
    assert cls.descriptor()["derived"] == derived
    # `nodes` is enforced once the matcher knows the key (workers publishing node classes).
    assert ("nodes" in cls.requirements) == ("nodes" in REQUIREMENT_KEYS)


def test_derive_must_be_a_boolean() -> None:
    with pytest.raises(InvalidJobError, match=r"requirements\.derive: expected true or false"):
        job_class("openai", None, {"derive": "no"}, {})
