"""The fake ComfyUI's node catalogue, prompt validation and execution order.

Validation follows ComfyUI's ``execution.validate_prompt``: an unknown ``class_type`` is an
``invalid_prompt``, a graph without output nodes is ``prompt_no_outputs``, and per-node problems
(``value_not_in_list`` for a model file that is not installed, ``required_input_missing``,
``custom_validation_failed`` for an image that was never uploaded...) are listed under
``node_errors`` with the top-level type ``prompt_outputs_failed_validation``. When at least one
output node is valid, ComfyUI accepts the prompt and runs only the valid outputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

JsonDict = dict[str, Any]

INPUT_FILES = "@input"  # pseudo model folder: files uploaded through /upload/image
EXISTING_FILES = "@files"  # "<type>:<subfolder/name>" of every file, for LoadImage's own check


@dataclass(frozen=True)
class InputSpec:
    kind: str  # a socket type (MODEL, LATENT...), a primitive (INT, FLOAT, STRING) or COMBO
    choices_from: str | None = None  # model folder, or INPUT_FILES, for a COMBO
    choices: tuple[str, ...] = ()  # fixed options of a COMBO


@dataclass(frozen=True)
class NodeSpec:
    inputs: Mapping[str, InputSpec]
    outputs: tuple[str, ...] = ()
    output_node: bool = False
    category: str = "sampling"


_SAMPLERS = ("euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde")
_SCHEDULERS = ("normal", "karras", "exponential", "simple")

NODE_CATALOGUE: Mapping[str, NodeSpec] = {
    "CheckpointLoaderSimple": NodeSpec(
        {"ckpt_name": InputSpec("COMBO", choices_from="checkpoints")},
        ("MODEL", "CLIP", "VAE"),
        category="loaders",
    ),
    "LoraLoader": NodeSpec(
        {
            "model": InputSpec("MODEL"),
            "clip": InputSpec("CLIP"),
            "lora_name": InputSpec("COMBO", choices_from="loras"),
            "strength_model": InputSpec("FLOAT"),
            "strength_clip": InputSpec("FLOAT"),
        },
        ("MODEL", "CLIP"),
        category="loaders",
    ),
    "VAELoader": NodeSpec(
        {"vae_name": InputSpec("COMBO", choices_from="vae")}, ("VAE",), category="loaders"
    ),
    "CLIPTextEncode": NodeSpec(
        {"text": InputSpec("STRING"), "clip": InputSpec("CLIP")},
        ("CONDITIONING",),
        category="conditioning",
    ),
    "EmptyLatentImage": NodeSpec(
        {"width": InputSpec("INT"), "height": InputSpec("INT"), "batch_size": InputSpec("INT")},
        ("LATENT",),
        category="latent",
    ),
    "KSampler": NodeSpec(
        {
            "model": InputSpec("MODEL"),
            "seed": InputSpec("INT"),
            "steps": InputSpec("INT"),
            "cfg": InputSpec("FLOAT"),
            "sampler_name": InputSpec("COMBO", choices=_SAMPLERS),
            "scheduler": InputSpec("COMBO", choices=_SCHEDULERS),
            "positive": InputSpec("CONDITIONING"),
            "negative": InputSpec("CONDITIONING"),
            "latent_image": InputSpec("LATENT"),
            "denoise": InputSpec("FLOAT"),
        },
        ("LATENT",),
    ),
    "VAEDecode": NodeSpec(
        {"samples": InputSpec("LATENT"), "vae": InputSpec("VAE")}, ("IMAGE",), category="latent"
    ),
    "VAEEncode": NodeSpec(
        {"pixels": InputSpec("IMAGE"), "vae": InputSpec("VAE")}, ("LATENT",), category="latent"
    ),
    "LoadImage": NodeSpec(
        {"image": InputSpec("COMBO", choices_from=INPUT_FILES)}, ("IMAGE", "MASK"), category="image"
    ),
    "SaveImage": NodeSpec(
        {"images": InputSpec("IMAGE"), "filename_prefix": InputSpec("STRING")},
        output_node=True,
        category="image",
    ),
    "PreviewImage": NodeSpec({"images": InputSpec("IMAGE")}, output_node=True, category="image"),
}

SAMPLER_CLASSES = frozenset({"KSampler"})


class PromptValidationError(Exception):
    """The prompt failed validation; ``body`` is ComfyUI's 400 response body."""

    def __init__(self, error: JsonDict, node_errors: JsonDict) -> None:
        super().__init__(error["message"])
        self.body: JsonDict = {"error": error, "node_errors": node_errors}


@dataclass
class ValidatedPrompt:
    outputs: list[str]
    node_errors: JsonDict = field(default_factory=dict)


def _error(kind: str, message: str, details: str = "", **extra: Any) -> JsonDict:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def annotated_file(value: Any) -> str:
    """``"sub/a.png [output]"`` → ``"output:sub/a.png"``; no annotation means the input folder."""
    path, _, annotation = str(value).partition(" [")
    kind = annotation.removesuffix("]") if annotation.endswith("]") else "input"
    return f"{kind}:{path}"


def combo_options(spec: InputSpec, choices: Mapping[str, Sequence[str]]) -> list[str]:
    if spec.choices_from is not None:
        return list(choices.get(spec.choices_from, ()))
    return list(spec.choices)


class _Validator:
    def __init__(self, prompt: JsonDict, choices: Mapping[str, Sequence[str]]) -> None:
        self.prompt = prompt
        self.choices = choices
        self.results: dict[str, bool] = {}
        self.errors: dict[str, list[JsonDict]] = {}

    def node(self, node_id: str) -> bool:
        if node_id in self.results:
            return self.results[node_id]
        self.results[node_id] = True  # a cycle would recurse forever; ComfyUI breaks it too
        node = self.prompt[node_id]
        spec = NODE_CATALOGUE[node["class_type"]]
        inputs = node.get("inputs") or {}
        errors: list[JsonDict] = []
        valid = True
        for name, input_spec in spec.inputs.items():
            if name not in inputs:
                errors.append(
                    _error(
                        "required_input_missing", "Required input is missing", name, input_name=name
                    )
                )
                continue
            value = inputs[name]
            if _is_link(value):
                valid = self._link(name, value, input_spec, errors) and valid
            else:
                self._literal(name, value, input_spec, errors)
        self.results[node_id] = valid and not errors
        if errors:
            self.errors[node_id] = errors
        return self.results[node_id]

    def _link(self, name: str, link: list[Any], spec: InputSpec, errors: list[JsonDict]) -> bool:
        source_id = str(link[0])
        source = self.prompt.get(source_id)
        if source is None:
            errors.append(
                _error(
                    "exception_during_inner_validation",
                    "Exception when validating inner node",
                    f"'{source_id}'",
                    input_name=name,
                    exception_message=repr(source_id),
                )
            )
            return False
        outputs = NODE_CATALOGUE[source["class_type"]].outputs
        index = link[1]
        received = outputs[index] if 0 <= index < len(outputs) else None
        if received != spec.kind:
            errors.append(
                _error(
                    "return_type_mismatch",
                    "Return type mismatch between linked nodes",
                    f"{name}, received_type({received}) mismatch input_type({spec.kind})",
                    input_name=name,
                    received_type=received,
                    linked_node=link,
                )
            )
            return False
        return self.node(source_id)

    def _literal(self, name: str, value: Any, spec: InputSpec, errors: list[JsonDict]) -> None:
        if spec.kind in ("INT", "FLOAT"):
            try:
                float(value) if spec.kind == "FLOAT" else int(value)
            except (TypeError, ValueError):
                errors.append(
                    _error(
                        "invalid_input_type",
                        f"Failed to convert an input value to a {spec.kind} value",
                        f"{name}, {value}",
                        input_name=name,
                        received_value=value,
                    )
                )
        elif spec.kind == "COMBO":
            options = combo_options(spec, self.choices)
            if value in options:
                return
            if spec.choices_from == INPUT_FILES and annotated_file(value) in self.choices.get(
                EXISTING_FILES, ()
            ):
                return  # as LoadImage.VALIDATE_INPUTS: any existing "sub/name [type]" will do
            if spec.choices_from == INPUT_FILES:
                errors.append(
                    _error(
                        "custom_validation_failed",
                        "Custom validation failed for node",
                        f"{name} - Invalid image file: {value}",
                        input_name=name,
                    )
                )
            else:
                errors.append(
                    _error(
                        "value_not_in_list",
                        "Value not in list",
                        f"{name}: '{value}' not in {options}",
                        input_name=name,
                        input_config=[options],
                        received_value=value,
                    )
                )
        elif spec.kind != "STRING":
            errors.append(
                _error(
                    "required_input_missing",
                    "Required input is missing",
                    f"{name} must be linked to a {spec.kind} output",
                    input_name=name,
                )
            )


def validate_prompt(prompt: Any, choices: Mapping[str, Sequence[str]]) -> ValidatedPrompt:
    """Check ``prompt`` as ComfyUI does; PromptValidationError carries the 400 body."""
    if not isinstance(prompt, dict):
        raise PromptValidationError(
            _error(
                "invalid_prompt", "Invalid prompt: the prompt must be an object of node id to node"
            ),
            {},
        )
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            raise PromptValidationError(
                _error(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'",
                ),
                {},
            )
        if node["class_type"] not in NODE_CATALOGUE:
            class_type = node["class_type"]
            raise PromptValidationError(
                _error(
                    "missing_node_type",
                    f"Node '{class_type}' not found. The custom node may not be installed.",
                    f"Node ID '#{node_id}'",
                    node_id=node_id,
                    class_type=class_type,
                    node_title=class_type,
                ),
                {},
            )
    output_ids = [i for i, n in prompt.items() if NODE_CATALOGUE[n["class_type"]].output_node]
    if not output_ids:
        raise PromptValidationError(_error("prompt_no_outputs", "Prompt has no outputs"), {})
    validator = _Validator(prompt, choices)
    good = [output_id for output_id in output_ids if validator.node(output_id)]
    node_errors = {
        node_id: {
            "errors": errors,
            "dependent_outputs": output_ids,
            "class_type": prompt[node_id]["class_type"],
        }
        for node_id, errors in validator.errors.items()
    }
    if not good:
        # As ComfyUI 0.27: the top-level details are empty, the reasons are in node_errors.
        raise PromptValidationError(
            _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", ""),
            node_errors,
        )
    return ValidatedPrompt(outputs=good, node_errors=node_errors)


def execution_order(prompt: JsonDict, outputs: Sequence[str]) -> list[str]:
    """Node ids the outputs depend on, each after the nodes that feed it."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(node_id: str) -> None:
        if node_id in seen:
            return
        seen.add(node_id)
        for value in (prompt[node_id].get("inputs") or {}).values():
            if _is_link(value):
                visit(str(value[0]))
        order.append(node_id)

    for output_id in outputs:
        visit(output_id)
    return order


def node_signatures(prompt: JsonDict, order: Sequence[str]) -> dict[str, str]:
    """A cache key per node: its class, literal inputs and the keys of the nodes feeding it."""
    signatures: dict[str, str] = {}
    for node_id in order:
        node = prompt[node_id]
        inputs = {
            name: signatures[str(value[0])] + f":{value[1]}" if _is_link(value) else value
            for name, value in sorted((node.get("inputs") or {}).items())
        }
        text = json.dumps([node["class_type"], inputs], sort_keys=True, default=str)
        signatures[node_id] = hashlib.sha256(text.encode()).hexdigest()
    return signatures


def object_info(choices: Mapping[str, Sequence[str]]) -> JsonDict:
    """``GET /object_info``: every node class, with model files as COMBO options."""
    info: JsonDict = {}
    for name, spec in NODE_CATALOGUE.items():
        required: JsonDict = {}
        for input_name, input_spec in spec.inputs.items():
            options = combo_options(input_spec, choices)
            if input_spec.kind == "COMBO" and input_spec.choices_from is not None:
                # ComfyUI 0.27's form, used by the loaders; fixed lists keep the legacy form.
                required[input_name] = ["COMBO", {"options": options, "multiselect": False}]
            elif input_spec.kind == "COMBO":
                required[input_name] = [options, {}]
            else:
                required[input_name] = [input_spec.kind, {}]
        info[name] = {
            "input": {"required": required, "optional": {}},
            "input_order": {"required": list(spec.inputs)},
            "output": list(spec.outputs),
            "output_is_list": [False] * len(spec.outputs),
            "output_name": list(spec.outputs),
            "name": name,
            "display_name": name,
            "description": "",
            "python_module": "nodes",
            "category": spec.category,
            "output_node": spec.output_node,
        }
    return info
