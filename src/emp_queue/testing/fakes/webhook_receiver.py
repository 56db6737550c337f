"""A webhook receiver: records every POST it gets and answers with a status a test picks.

Serve it with :meth:`WebhookReceiver.running`; stop and start it again on the same port to
play an endpoint that goes down and comes back.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from fastapi import FastAPI, Request, Response

from emp_queue.testing.fakes.server import FakeService


@dataclass(frozen=True)
class ReceivedWebhook:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class WebhookReceiver(FakeService):
    service_name = "webhook receiver"

    def __init__(self, status_code: int = 204) -> None:
        super().__init__()
        self.status_code = status_code
        self.location: str | None = None
        self.received: list[ReceivedWebhook] = []
        self._arrived = asyncio.Condition()

    def add_routes(self, app: FastAPI) -> None:
        @app.post("/{path:path}")
        async def receive(path: str, request: Request) -> Response:
            body = await request.body()
            self.received.append(
                ReceivedWebhook(
                    "/" + path, dict(request.headers), body, time.monotonic(), self.status_code
                )
            )
            async with self._arrived:
                self._arrived.notify_all()
            headers = {"location": self.location} if self.location else None
            return Response(status_code=self.status_code, headers=headers)

    def accepted_ids(self) -> set[str]:
        """The webhook-ids of the requests answered with a success."""
        return {item.webhook_id for item in self.received if 200 <= item.answered < 300}

    async def wait_for_accepted(self, count: int, timeout_s: float) -> set[str]:
        """Wait until ``count`` distinct webhook-ids were answered with a success."""
        async with asyncio.timeout(timeout_s), self._arrived:
            await self._arrived.wait_for(lambda: len(self.accepted_ids()) >= count)
        return self.accepted_ids()
