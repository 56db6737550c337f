"""Requirements read from the job itself: the models and nodes its payload names.

A ComfyUI workflow names its model files in its loader nodes (``CheckpointLoaderSimple``'s
``ckpt_name``, ``LoraLoader``'s ``lora_name`` ...) and its node classes in ``class_type``;
an LLM request names its model; an A1111 request may override the checkpoint. The client
need not repeat them as requirements: at submit, :func:`derive` reads them and
:func:`merge` adds them to the explicit requirements, so the job only goes to a worker
that has them. ``{"derive": false}`` in a job's requirements turns this off for that job.

Which payload format a service speaks is :attr:`DerivationRules.service_formats` (the
connector names by default; a deployment that names its services otherwise maps them in
``EMP_DERIVE_SERVICE_FORMATS``). Loader inputs beyond :data:`COMFYUI_LOADER_INPUTS` are
added with ``EMP_DERIVE_LOADER_INPUTS``. Everything here is pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from emp_queue.core.matching import JobClass
from emp_queue.core.requirements import REQUIREMENT_KEYS, validate_requirements

PayloadFormat = Literal["comfyui", "a1111", "ollama", "openai"]

OPT_OUT_KEY = "derive"
"""The requirement key a job sets to ``false`` to keep only its explicit requirements."""

# Loader node class -> the inputs that name a model file. Core ComfyUI loaders and the
# common custom ones (GGUF, IP-Adapter, InstantID ...); extend with EMP_DERIVE_LOADER_INPUTS.
COMFYUI_LOADER_INPUTS: Mapping[str, tuple[str, ...]] = {
    "CheckpointLoaderSimple": ("ckpt_name",),
    "CheckpointLoader": ("ckpt_name",),
    "ImageOnlyCheckpointLoader": ("ckpt_name",),
    "unCLIPCheckpointLoader": ("ckpt_name",),
    "LoraLoader": ("lora_name",),
    "LoraLoaderModelOnly": ("lora_name",),
    "VAELoader": ("vae_name",),
    "UNETLoader": ("unet_name",),
    "UnetLoaderGGUF": ("unet_name",),
    "CLIPLoader": ("clip_name",),
    "CLIPLoaderGGUF": ("clip_name",),
    "DualCLIPLoader": ("clip_name1", "clip_name2"),
    "DualCLIPLoaderGGUF": ("clip_name1", "clip_name2"),
    "TripleCLIPLoader": ("clip_name1", "clip_name2", "clip_name3"),
    "QuadrupleCLIPLoader": ("clip_name1", "clip_name2", "clip_name3", "clip_name4"),
    "CLIPVisionLoader": ("clip_name",),
    "ControlNetLoader": ("control_net_name",),
    "DiffControlNetLoader": ("control_net_name",),
    "UpscaleModelLoader": ("model_name",),
    "StyleModelLoader": ("style_model_name",),
    "GLIGENLoader": ("gligen_name",),
    "HypernetworkLoader": ("hypernetwork_name",),
    "PhotoMakerLoader": ("photomaker_model_name",),
    "IPAdapterModelLoader": ("ipadapter_file",),
    "InstantIDModelLoader": ("instantid_file",),
}

DEFAULT_SERVICE_FORMATS: Mapping[str, PayloadFormat] = {
    "comfyui": "comfyui",
    "a1111": "a1111",
    "ollama": "ollama",
    "openai": "openai",
}


@dataclass(frozen=True)
class DerivationRules:
    """Which services' payloads are read, and which ComfyUI inputs name model files."""

    service_formats: Mapping[str, PayloadFormat] = field(
        default_factory=lambda: dict(DEFAULT_SERVICE_FORMATS)
    )
    loader_inputs: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(COMFYUI_LOADER_INPUTS)
    )

    @classmethod
    def extended(
        cls,
        service_formats: Mapping[str, PayloadFormat] | None = None,
        loader_inputs: Mapping[str, list[str]] | None = None,
    ) -> DerivationRules:
        """The defaults plus a deployment's own services and loader nodes."""
        formats: dict[str, PayloadFormat] = {**DEFAULT_SERVICE_FORMATS, **(service_formats or {})}
        loaders = dict(COMFYUI_LOADER_INPUTS)
        for node, inputs in (loader_inputs or {}).items():
            loaders[node] = tuple(dict.fromkeys([*loaders.get(node, ()), *inputs]))
        return cls(formats, loaders)


def _comfyui_graph(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    graph = payload.get("workflow", payload.get("prompt"))
    return graph if isinstance(graph, Mapping) else {}


def comfyui_requirements(
    payload: Mapping[str, Any], loader_inputs: Mapping[str, tuple[str, ...]]
) -> dict[str, list[str]]:
    """The model files a workflow's loaders name, and its node class types.

    An input linked to another node (``["4", 0]``) names no file and is skipped.
    """
    models: set[str] = set()
    nodes: set[str] = set()
    for node in _comfyui_graph(payload).values():
        if not isinstance(node, Mapping) or not isinstance(node.get("class_type"), str):
            continue
        class_type = node["class_type"]
        nodes.add(class_type)
        inputs = node.get("inputs")
        if not isinstance(inputs, Mapping):
            continue
        for name in loader_inputs.get(class_type, ()):
            value = inputs.get(name)
            if isinstance(value, str) and value:
                models.add(value)
    derived: dict[str, list[str]] = {}
    if models:
        derived["models"] = sorted(models)
    if nodes:
        derived["nodes"] = sorted(nodes)
    return derived


def ollama_model_name(name: str) -> str:
    """Ollama lists models with their tag: ``llama3`` is ``llama3:latest``."""
    return name if ":" in name else f"{name}:latest"


def _named_model(payload: Mapping[str, Any]) -> str | None:
    model = payload.get("model")
    return model if isinstance(model, str) and model else None


def a1111_checkpoint(payload: Mapping[str, Any]) -> str | None:
    """Our ``model`` field, else A1111's own ``override_settings.sd_model_checkpoint``."""
    model = _named_model(payload)
    if model is not None:
        return model
    overrides = payload.get("override_settings")
    if isinstance(overrides, Mapping):
        return _named_model({"model": overrides.get("sd_model_checkpoint")})
    return None


def derive(
    service: str, payload: Mapping[str, Any], rules: DerivationRules
) -> dict[str, list[str]]:
    """Requirements the payload implies for ``service`` (empty when it implies none)."""
    payload_format = rules.service_formats.get(service)
    if payload_format == "comfyui":
        return comfyui_requirements(payload, rules.loader_inputs)
    if payload_format == "a1111":
        model = a1111_checkpoint(payload)
    elif payload_format in ("ollama", "openai"):
        model = _named_model(payload)
        if model is not None and payload_format == "ollama":
            model = ollama_model_name(model)
    else:
        return {}
    return {"models": [model]} if model is not None else {}


def merge(explicit: Mapping[str, Any], derived: Mapping[str, list[str]]) -> dict[str, Any]:
    """The explicit requirements with the derived lists added (a union, sorted)."""
    merged = dict(explicit)
    for key, values in derived.items():
        present = merged.get(key)
        merged[key] = sorted({*(present if isinstance(present, list) else []), *values})
    return merged


def derive_for_job(
    service: str,
    payload: Mapping[str, Any],
    requirements: Mapping[str, Any],
    rules: DerivationRules,
) -> dict[str, list[str]]:
    """:func:`derive`, unless the job opted out with ``{"derive": false}``."""
    if requirements.get(OPT_OUT_KEY) is False:
        return {}
    return derive(service, payload, rules)


def job_class(
    service: str,
    customer_id: str | None,
    requirements: Mapping[str, Any],
    derived: Mapping[str, list[str]],
) -> JobClass:
    """The validated class of a job: explicit requirements plus the derived ones the matcher
    knows (a derived key it does not know yet, such as ``nodes`` before workers publish them,
    is kept for ``explain`` only)."""
    enforced = {key: values for key, values in derived.items() if key in REQUIREMENT_KEYS}
    normal = validate_requirements(merge(requirements, enforced), service)
    return JobClass(service, customer_id, normal, dict(derived))
