"""The bridge between the worker runtime and a connector: a claimed job as a ``RunningJob``."""

from __future__ import annotations

import time
from typing import Any

from emp_queue.storage import AssetStorage, StoredAsset
from emp_queue.worker.context import JobContext


class ConnectorJob:
    """A claimed job as a connector sees it: payload, throttled progress, asset storage.

    Progress reports closer together than ``progress_interval_s`` are merged (the latest
    wins) so a connector may report every token; the first report, 100 % and a message-only
    report (no fraction) with a new message always go out — report a milestone that must
    not be merged away ("KSampler started") that way.
    """

    def __init__(
        self, context: JobContext, storage: AssetStorage, progress_interval_s: float
    ) -> None:
        self._context = context
        self._storage = storage
        self._interval_s = progress_interval_s
        self._last_sent = 0.0
        self._last_message: str | None = None
        self._stored = 0

    @property
    def job(self) -> Any:
        return self._context.job

    @property
    def attempt(self) -> int:
        return self._context.attempt

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = self._context.job.payload
        return payload

    async def progress(self, fraction: float | None, message: str | None = None) -> None:
        now = time.monotonic()
        final = fraction is not None and fraction >= 1.0
        news = message is not None and message != self._last_message and fraction is None
        if not (final or news or now - self._last_sent >= self._interval_s):
            return
        self._last_sent = now
        self._last_message = message
        percent = None if fraction is None else round(min(max(fraction, 0.0), 1.0) * 100, 2)
        await self._context.report_progress(percent, message)

    async def store(
        self, data: bytes, *, content_type: str, filename: str | None = None
    ) -> StoredAsset:
        job = self._context.job
        index, self._stored = self._stored, self._stored + 1
        with self._context.span("job.upload", **{"emp.bytes": len(data), "emp.index": index}):
            return await self._storage.store(
                job.id, job.ctx, data, content_type=content_type, filename=filename, index=index
            )

    async def read_upload(self, ref: str) -> bytes:
        with self._context.span("job.read_upload"):
            return await self._storage.read_upload(ref, self._context.job.customer_id)
