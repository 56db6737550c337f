"""What a ``comfyui`` job's payload holds, and the ids that make a resubmit idempotent.

The payload format is documented in :mod:`emp_queue.connectors.comfyui`.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from emp_queue.connectors.base import job_fault, parse_payload
from emp_queue.errors import JobFailedError

OutputType = Literal["output", "temp", "input"]
"""The ``type`` of a file ComfyUI wrote: saved output, temporary preview, or input folder."""

PROMPT_ID_NAMESPACE = uuid.UUID("5b1f3c52-6d0e-4f8a-9a51-2c4d1e7b9f30")
"""uuid5 namespace of our prompt ids: the same job attempt always gets the same prompt id."""


class InputFile(BaseModel):
    """One file to put in ComfyUI's input folder before the workflow runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._()-]{0,199}$")
    """The file name the workflow refers to (e.g. ``LoadImage.image``). It is uploaded under a
    name of the job's own (:func:`job_input_name`) and the workflow's references follow."""
    data_base64: str | None = None
    url: str | None = Field(default=None, pattern=r"^https?://")
    upload: str | None = Field(default=None, max_length=512)
    """The ``ref`` of a file the job's customer uploaded (``POST /api/uploads``)."""
    type: Literal["input", "temp", "output"] = "input"
    subfolder: str = Field(default="", pattern=r"^[A-Za-z0-9_-]*(/[A-Za-z0-9_-]+)*$")

    @model_validator(mode="after")
    def _one_source(self) -> InputFile:
        if [self.data_base64, self.url, self.upload].count(None) != 2:
            raise ValueError("give exactly one of data_base64, url or upload")
        return self

    @property
    def path(self) -> str:
        """How a workflow names the file: ``subfolder/name``, or ``name`` at the top."""
        return f"{self.subfolder}/{self.name}" if self.subfolder else self.name

    def decoded(self) -> bytes:
        """The inline bytes; a malformed base64 string is the job's fault."""
        try:
            return base64.b64decode(self.data_base64 or "", validate=True)
        except (binascii.Error, ValueError) as error:
            raise job_fault(f"inputs: {self.name!r} has invalid data_base64: {error}") from error


class ComfyUIPayload(BaseModel):
    """``{"workflow": graph}`` (or ``{"prompt": graph}``), input files, output file types."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    workflow: dict[str, dict[str, Any]] = Field(min_length=1)
    inputs: list[InputFile] = Field(default_factory=list, max_length=64)
    output_types: list[OutputType] | None = None
    """Which files of the history's outputs to store; ``None``: the connector's setting."""

    @model_validator(mode="before")
    @classmethod
    def _prompt_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "prompt" in data:
            if "workflow" in data:
                raise ValueError("give the graph as `workflow` or `prompt`, not both")
            data = {("workflow" if k == "prompt" else k): v for k, v in data.items()}
        return data

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> ComfyUIPayload:
        """The validated payload; anything malformed is the job's fault."""
        return parse_payload(cls, payload, "comfyui")

    def class_types(self) -> dict[str, str]:
        """Node id → class_type, for progress messages."""
        return {node: str(spec.get("class_type", "?")) for node, spec in self.workflow.items()}


def job_input_name(name: str, prompt_id: str) -> str:
    """The name an input is uploaded under: unique to the job's attempt, so two jobs that both
    send ``in.png`` cannot overwrite each other's file while they run."""
    return f"emp-{prompt_id.replace('-', '')[:12]}-{name}"


def with_renamed_inputs(
    workflow: dict[str, dict[str, Any]], renames: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """The workflow with every node input that names an uploaded file (``in.png``,
    ``sub/in.png``, ``in.png [input]``) pointing at its uploaded name instead."""

    def renamed(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        path, bracket, annotation = value.partition(" [")
        if path not in renames:
            return value
        return renames[path] + bracket + annotation

    return {
        node_id: {**node, "inputs": {k: renamed(v) for k, v in node["inputs"].items()}}
        if isinstance(node.get("inputs"), dict)
        else node
        for node_id, node in workflow.items()
    }


def prompt_id_for(job_id: str, attempt: int) -> str:
    """Our prompt id for one attempt: stable, so submitting it twice cannot run it twice."""
    return str(uuid.uuid5(PROMPT_ID_NAMESPACE, f"{job_id}:{attempt}"))


def validation_fault(body: Any) -> JobFailedError | None:
    """The job fault for ComfyUI's 400 answer to ``POST /prompt``, if it is the usual shape."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return None
    error: dict[str, Any] = body["error"]
    kind = str(error.get("type", "unknown"))
    node_errors = body.get("node_errors") if isinstance(body.get("node_errors"), dict) else {}
    parts = [str(error.get("message") or "rejected")]
    if error.get("details"):
        parts.append(str(error["details"]))
    for node_id, node in (node_errors or {}).items():
        for problem in (node.get("errors") or [])[:3] if isinstance(node, dict) else []:
            parts.append(
                f"node {node_id} ({node.get('class_type', '?')}): "
                f"{problem.get('message', '?')}: {problem.get('details', '')}"
            )
    return job_fault(
        f"ComfyUI rejected the workflow ({kind}): " + "; ".join(parts)[:2000],
        error_type=kind,
        node_errors=node_errors or {},
    )
