"""Nothing is lost when the receiver is down for 30 s (issue 17): a scenario of real time, so it
runs with the e2e tier."""

from __future__ import annotations

import asyncio

import pytest
from tests.integration.webhooks.conftest import Dispatching, complete_jobs

from emp_queue import JobQueue
from emp_queue.testing.fakes.webhook_receiver import WebhookReceiver
from emp_queue.webhooks.models import DeliveryStatus

DOWN_S = 30.0
JOBS = 20


@pytest.mark.timeout(120)
async def test_receiver_down_for_30_s_then_up_gets_every_delivery(
    job_queue: JobQueue, dispatcher_for: Dispatching
) -> None:
    receiver = WebhookReceiver()
    async with receiver.running() as url:  # learn a free port, then leave it closed
        port = int(url.rsplit(":", 1)[1])
    async with dispatcher_for() as dispatcher:
        job_ids = await complete_jobs(job_queue, JOBS, webhook=url + "/hook")
        await asyncio.sleep(DOWN_S)
        logs = [await dispatcher.store.job_log(job_id) for job_id in job_ids]
        assert all(log[0].status is DeliveryStatus.PENDING for log in logs)
        tried = [log[0] for log in logs if log[0].attempts]
        # Its breaker opened after 5 failures: the rest waited without an attempt since.
        assert sum(delivery.attempts for delivery in tried) >= 5
        assert all("ClientConnectorError" in (delivery.last_error or "") for delivery in tried)

        async with receiver.running(port=port):
            accepted = await receiver.wait_for_accepted(JOBS, timeout_s=20)

        delivered = [(await dispatcher.store.job_log(job_id))[0] for job_id in job_ids]
    assert accepted == {log[0].id for log in logs}
    assert {delivery.status for delivery in delivered} == {DeliveryStatus.DELIVERED}
