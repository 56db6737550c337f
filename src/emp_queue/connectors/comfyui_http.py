"""ComfyUI's HTTP API as the connector uses it, with every answer turned into a failure class.

Where a prompt is: ComfyUI keeps its queue and history in memory, and ``/history/{id}`` answers
``{}`` both for a prompt still running and for one it never heard of. Only ``/queue`` tells those
apart, so :meth:`ComfyUIHttp.locate` asks ``/queue`` first and ``/history`` second: ComfyUI moves
a finished prompt from one to the other under one lock, so a prompt in neither was lost (a
restart) rather than caught in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx

from emp_queue.connectors.base import service_fault
from emp_queue.connectors.comfyui_payload import validation_fault
from emp_queue.connectors.http import raise_for_response, transport_fault

SERVICE = "ComfyUI"


class Place(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    LOST = "lost"


@dataclass(frozen=True)
class Located:
    place: Place
    entry: dict[str, Any] | None = None
    """The history entry, when the prompt finished."""


@dataclass(frozen=True)
class FileRef:
    """One file a prompt wrote, as ``/history`` lists it (``/view`` takes the same three)."""

    node: str
    kind: str  # the output key: images, gifs, video, audio...
    filename: str
    subfolder: str
    type: str


def _check(response: httpx.Response) -> None:
    if response.status_code in (401, 403):
        raise service_fault(
            f"ComfyUI refused our credentials ({response.status_code}); check "
            "EMP_COMFYUI_USERNAME/EMP_COMFYUI_PASSWORD or EMP_COMFYUI_TOKEN",
            status=response.status_code,
        )
    raise_for_response(response, SERVICE)


def _json(response: httpx.Response) -> Any:
    _check(response)
    try:
        return response.json()
    except ValueError as error:
        raise service_fault(
            f"ComfyUI answered {response.request.url.path} with something that is not JSON"
        ) from error


class ComfyUIHttp:
    """Thin wrapper of one ``httpx.AsyncClient``: calls, their timeouts, their failures."""

    def __init__(self, client: httpx.AsyncClient, transfer_timeout_s: float) -> None:
        self.client = client
        self.transfer_timeout = httpx.Timeout(transfer_timeout_s)

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self.client.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise transport_fault(error, SERVICE) from error

    async def get_json(self, path: str) -> Any:
        return _json(await self._request("GET", path))

    async def submit(self, graph: dict[str, Any], client_id: str, prompt_id: str) -> Any:
        """``POST /prompt``; a 400 is the job's fault with ComfyUI's node errors in details."""
        body = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}
        try:
            response = await self.client.post("/prompt", json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise transport_fault(error, SERVICE) from error
        except httpx.TransportError as error:
            # The prompt may have arrived before the answer was lost; our own prompt id makes
            # asking safe, and a second POST would queue it twice.
            if (await self.locate(prompt_id)).place is Place.LOST:
                raise transport_fault(error, SERVICE) from error
            return {"prompt_id": prompt_id, "node_errors": {}}
        if response.status_code == 400:
            try:
                fault = validation_fault(response.json())
            except ValueError:
                fault = None
            if fault is not None:
                raise fault
        return _json(response)

    async def locate(self, prompt_id: str) -> Located:
        """Where ``prompt_id`` is now (see the module docstring for why in this order)."""
        queue = await self.get_json("/queue")
        for key, place in (("queue_running", Place.RUNNING), ("queue_pending", Place.QUEUED)):
            items = queue.get(key) if isinstance(queue, dict) else None
            for item in items or []:
                if isinstance(item, list) and len(item) > 1 and item[1] == prompt_id:
                    return Located(place)
        entry = await self.history(prompt_id)
        return Located(Place.FINISHED, entry) if entry is not None else Located(Place.LOST)

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The prompt's history entry, or ``None`` while it runs or when ComfyUI lost it."""
        body = await self.get_json(f"/history/{prompt_id}")
        entry = body.get(prompt_id) if isinstance(body, dict) else None
        return entry if isinstance(entry, dict) else None

    async def download(self, ref: FileRef) -> tuple[bytes, str | None]:
        """A file's bytes and the content type ComfyUI gave it."""
        params = {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}
        response = await self._request("GET", "/view", params=params, timeout=self.transfer_timeout)
        if response.status_code == 404:
            raise service_fault(
                f"ComfyUI lists output {ref.filename!r} of node {ref.node} but /view has no such "
                "file (was the output folder cleaned?)",
                node=ref.node,
            )
        _check(response)
        return response.content, response.headers.get("content-type")

    async def upload(self, name: str, data: bytes, kind: str, subfolder: str) -> str:
        """``POST /upload/image`` with overwrite (a retried attempt replaces its own file);
        returns the name ComfyUI stored it under."""
        response = await self._request(
            "POST",
            "/upload/image",
            files={"image": (name, data)},
            data={"type": kind, "subfolder": subfolder, "overwrite": "true"},
            timeout=self.transfer_timeout,
        )
        answer = _json(response)
        stored = answer.get("name") if isinstance(answer, dict) else None
        return stored if isinstance(stored, str) and stored else name

    async def cancel(self, prompt_id: str) -> None:
        """Drop the prompt from the queue if it waits there, then interrupt it if it runs.

        In this order a prompt that starts between the two calls is still interrupted.
        """
        _check(await self._request("POST", "/queue", json={"delete": [prompt_id]}))
        _check(await self._request("POST", "/interrupt", json={"prompt_id": prompt_id}))


def output_files(entry: dict[str, Any], types: set[str]) -> list[FileRef]:
    """Every file of the listed ``type``s in a history entry's outputs, node by node."""
    refs: list[FileRef] = []
    outputs = entry.get("outputs")
    for node, output in (outputs or {}).items() if isinstance(outputs, dict) else []:
        for kind, items in output.items() if isinstance(output, dict) else []:
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and isinstance(item.get("filename"), str):
                    ref = FileRef(
                        str(node),
                        str(kind),
                        item["filename"],
                        str(item.get("subfolder") or ""),
                        str(item.get("type") or "output"),
                    )
                    if ref.type in types:
                        refs.append(ref)
    return refs
