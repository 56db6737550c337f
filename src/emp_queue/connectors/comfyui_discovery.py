"""What a ComfyUI offers, read from ``/object_info`` and ``/system_stats``.

ComfyUI has no "list every model" call that covers custom nodes; ``/object_info`` does, in its
own way: every loader node lists the files it can load as the options of an enumerated input
(``CheckpointLoaderSimple.ckpt_name``, ``LoraLoader.lora_name``, ``VAELoader.vae_name``, a
custom node's ``unet_name``...). Options that look like model files are the models installed.
ComfyUI does not say which models sit in GPU memory; it keeps the last prompt's models
cached until memory is needed, so the connector reports as ``loaded`` the installed models
the newest prompt in ``/history?max_items=1`` names in its loader inputs when that prompt is
not its own last job's (a placement warm-up, another client: :func:`models_in_prompt`), else
the models its last job named that are installed (``ComfyUIConnector.discover``). After a
``POST /free`` the report lags: it names the last prompt's models until the next one runs.
"""

from __future__ import annotations

from typing import Any

from emp_queue.connectors.base import Discovery
from emp_queue.models import ServiceModels

MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")
_GIB = 1024**3


def combo_options(spec: Any) -> list[str]:
    """The options of an enumerated input, in the old (``[[...], {}]``) or COMBO form."""
    if not isinstance(spec, list) or not spec:
        return []
    first = spec[0]
    if isinstance(first, list):
        return [str(option) for option in first]
    if first == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return [str(option) for option in spec[1].get("options") or []]
    return []


def models_by_input(object_info: Any) -> dict[str, list[str]]:
    """``"Node.input"`` → model files it can load, for every loader input that lists some."""
    found: dict[str, list[str]] = {}
    for node_name, node in (object_info or {}).items() if isinstance(object_info, dict) else []:
        inputs = node.get("input") if isinstance(node, dict) else None
        for group in ("required", "optional"):
            specs = (inputs or {}).get(group) if isinstance(inputs, dict) else None
            for input_name, spec in (specs or {}).items() if isinstance(specs, dict) else []:
                files = [o for o in combo_options(spec) if o.lower().endswith(MODEL_EXTENSIONS)]
                if files:
                    found[f"{node_name}.{input_name}"] = files
    return found


def gpu_memory_gb(stats: Any) -> float | None:
    """The largest GPU's ``vram_total`` in GiB (one ComfyUI uses one device)."""
    devices = stats.get("devices") if isinstance(stats, dict) else None
    totals = [
        float(device["vram_total"])
        for device in devices or []
        if isinstance(device, dict)
        and device.get("type") != "cpu"
        and isinstance(device.get("vram_total"), int | float)
    ]
    return round(max(totals) / _GIB, 2) if totals else None


def discovery(object_info: Any, stats: Any, client_id: str) -> Discovery:
    by_input = models_by_input(object_info)
    installed = sorted({name for names in by_input.values() for name in names})
    system = stats.get("system") if isinstance(stats, dict) else None
    version = (system or {}).get("comfyui_version") if isinstance(system, dict) else None
    devices = stats.get("devices") if isinstance(stats, dict) else None
    return Discovery(
        models=ServiceModels(installed=installed),
        version=str(version) if version is not None else None,
        gpu_memory_gb=gpu_memory_gb(stats),
        node_classes=tuple(object_info) if isinstance(object_info, dict) else (),
        details={
            "client_id": client_id,
            "models_by_input": by_input,
            "node_classes": len(object_info) if isinstance(object_info, dict) else 0,
            "devices": [d.get("name") for d in devices or [] if isinstance(d, dict)],
            "pytorch_version": (system or {}).get("pytorch_version")
            if isinstance(system, dict)
            else None,
        },
    )


def newest_prompt(history: Any) -> tuple[str, dict[str, Any]] | None:
    """(prompt id, API graph) of the newest ``/history?max_items=1`` entry, if it has one."""
    if not isinstance(history, dict) or not history:
        return None
    prompt_id, entry = list(history.items())[-1]
    queued = entry.get("prompt") if isinstance(entry, dict) else None
    graph = queued[2] if isinstance(queued, list) and len(queued) > 2 else None
    return (str(prompt_id), graph) if isinstance(graph, dict) else None


def models_in_prompt(
    graph: dict[str, Any], by_input: dict[str, list[str]], installed: list[str]
) -> list[str]:
    """The installed model files ``graph``'s nodes name in their loader inputs."""
    named: list[str] = []
    for node in graph.values():
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            continue
        for input_name, value in node["inputs"].items():
            files = by_input.get(f"{node.get('class_type')}.{input_name}", [])
            if isinstance(value, str) and value in files and value in installed:
                named.append(value)
    return sorted(set(named))
