"""``Client``: the same API as ``AsyncClient`` for code without an event loop.

It owns a private event loop (``asyncio.Runner``) and drives an ``AsyncClient`` on it, so
both behave identically; do not call it from inside a running event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from os import PathLike
from types import TracebackType
from typing import Any

import httpx

from emp_queue.client.async_client import AsyncClient, Page
from emp_queue.models import Event, Job, JobSpec


class Client:
    """Blocking client: ``with Client(url, key) as client: client.submit(...)``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._runner = asyncio.Runner()
        self._client = AsyncClient(base_url, api_key, timeout_s=timeout_s, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()

    def submit(self, spec: JobSpec | Mapping[str, Any]) -> Job:
        return self._runner.run(self._client.submit(spec)).job

    def submit_batch(self, specs: Sequence[JobSpec | Mapping[str, Any]]) -> list[Job]:
        return [handle.job for handle in self._runner.run(self._client.submit_batch(specs))]

    def upload(
        self,
        data: bytes | PathLike[str],
        *,
        content_type: str | None = None,
        filename: str | None = None,
        customer: str | None = None,
    ) -> dict[str, Any]:
        """See :meth:`AsyncClient.upload`."""
        return self._runner.run(
            self._client.upload(
                data, content_type=content_type, filename=filename, customer=customer
            )
        )

    def get(self, job_id: str) -> Job:
        return self._runner.run(self._client.get(job_id))

    def list_jobs(self, *, cursor: str | None = None, limit: int = 50, **filters: str) -> Page:
        return self._runner.run(self._client.list_jobs(cursor=cursor, limit=limit, **filters))

    def cancel(self, job_id: str, reason: str | None = None) -> Job:
        return self._runner.run(self._client.cancel(job_id, reason))

    def retry(self, job_id: str) -> Job:
        return self._runner.run(self._client.retry(job_id))

    def explain(self, job_id: str) -> dict[str, Any]:
        return self._runner.run(self._client.explain(job_id))

    def workers(self) -> list[dict[str, Any]]:
        return self._runner.run(self._client.workers())

    def queues(self) -> list[dict[str, Any]]:
        return self._runner.run(self._client.queues())

    def create_schedule(
        self,
        cron: str,
        job: JobSpec | Mapping[str, Any],
        *,
        schedule_id: str | None = None,
        timezone: str = "UTC",
    ) -> dict[str, Any]:
        """See :meth:`AsyncClient.create_schedule`."""
        return self._runner.run(
            self._client.create_schedule(cron, job, schedule_id=schedule_id, timezone=timezone)
        )

    def schedules(self) -> list[dict[str, Any]]:
        return self._runner.run(self._client.schedules())

    def delete_schedule(self, schedule_id: str) -> bool:
        return self._runner.run(self._client.delete_schedule(schedule_id))

    def queue_controls(self) -> list[dict[str, Any]]:
        return self._runner.run(self._client.queue_controls())

    def control_queue(
        self, target: str, name: str, action: str, reason: str | None = None
    ) -> dict[str, Any]:
        """See :meth:`AsyncClient.control_queue`."""
        return self._runner.run(self._client.control_queue(target, name, action, reason))

    def customer(self, customer_id: str) -> dict[str, Any]:
        return self._runner.run(self._client.customer(customer_id))

    def set_customer(self, customer_id: str, policy: Mapping[str, Any]) -> dict[str, Any]:
        return self._runner.run(self._client.set_customer(customer_id, policy))

    def usage(self, **query: Any) -> list[dict[str, Any]]:
        """See :meth:`AsyncClient.usage`."""
        return self._runner.run(self._client.usage(**query))

    def customers(self) -> list[dict[str, Any]]:
        return self._runner.run(self._client.customers())

    def machines(self) -> list[dict[str, Any]]:
        return self._runner.run(self._client.machines())

    def remove_machine(self, machine_id: str) -> int:
        return self._runner.run(self._client.remove_machine(machine_id))

    def wait(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        return self._runner.run(self._client.wait(job_id, timeout_s=timeout_s))

    def events(self, job_id: str, *, after: str | None = None) -> Iterator[Event]:
        stream = self._client.events(job_id, after=after)

        async def next_event() -> Event | None:
            return await anext(stream, None)

        try:
            while (event := self._runner.run(next_event())) is not None:
                yield event
        finally:
            self._runner.run(self._close(stream))

    @staticmethod
    async def _close(stream: AsyncIterator[Event]) -> None:
        if isinstance(stream, AsyncGenerator):
            await stream.aclose()
