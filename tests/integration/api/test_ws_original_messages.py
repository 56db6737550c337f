"""Every message type the original's clients send, as they send it (with the original's `id`,
`source` and `timestamp`), through a real uvicorn: each gets the original's answer.

``ORIGINAL_MESSAGES`` is the table of docs/api.md ("Every message the original's clients
send"); ``test_the_docs_table_lists_exactly_these_messages`` keeps the two the same.
"""

from __future__ import annotations

import re
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from emp_queue import JobQueue, JobSpec, WorkerCapabilities
from tests.integration.api.conftest import ApiKeys, bearer
from tests.integration.api.test_websockets import (
    assert_quiet,
    client_socket,
    monitor_url,
    receive,
    send,
)

API_DOC = Path(__file__).resolve().parents[3] / "docs" / "api.md"
ORIGINAL = {"id": "original-7", "source": "emp-monitor", "timestamp": 1732850000123}

# (socket, message type, fields beyond the original's envelope; "{job}" is a waiting job's id)
# → the type of the answer.
ORIGINAL_MESSAGES: dict[tuple[str, str], tuple[dict[str, Any], str]] = {
    ("client", "submit_job"): (
        {"job_type": "sim", "priority": 60, "payload": {"prompt": "a cat"}, "step_number": 1},
        "job_submitted",
    ),
    ("client", "subscribe_progress"): ({"job_id": "{job}"}, "subscribed"),
    ("client", "unsubscribe_progress"): ({"job_id": "{job}"}, "unsubscribed"),
    ("client", "get_job_status"): ({"job_id": "{job}"}, "job_status"),
    ("client", "cancel_job"): ({"job_id": "{job}", "reason": "not needed"}, "job_cancelled"),
    ("client", "delegated_job_result"): ({"job_id": "{job}", "result": {"ok": 1}}, "complete_job"),
    ("client", "heartbeat"): ({}, "heartbeat_ack"),
    ("monitor", "monitor_connect"): ({"request_full_state": False}, "monitor_connected"),
    ("monitor", "subscribe"): ({"topics": ["jobs", "workers"]}, "subscribed"),
    ("monitor", "request_full_state"): ({}, "full_state_snapshot"),
    ("monitor", "heartbeat"): ({"monitor_id": "m1"}, "heartbeat_ack"),
}


def with_job(fields: dict[str, Any], job_id: str) -> dict[str, Any]:
    return {k: job_id if v == "{job}" else v for k, v in fields.items()}


@pytest.mark.parametrize(("socket", "message_type"), sorted(ORIGINAL_MESSAGES))
async def test_each_original_message_gets_the_originals_answer(
    socket: str, message_type: str, live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    waiting = await job_queue.submit(JobSpec(service_required="sim", customer_id="acme"))
    fields, answer = ORIGINAL_MESSAGES[(socket, message_type)]
    async with AsyncExitStack() as stack:
        if socket == "client":
            ws = await stack.enter_async_context(client_socket(live_url, api_keys.admin))
        else:
            ws = await stack.enter_async_context(connect(monitor_url(live_url, api_keys.admin)))
            await send(ws, "subscribe", topics=["machines"])  # keep job events out of the way
            assert (await receive(ws))["type"] == "subscribed"
        await send(ws, message_type, **ORIGINAL, **with_job(fields, waiting.id))
        reply = await receive(ws)

    assert reply["type"] == answer, reply
    assert isinstance(reply["timestamp"], int)


async def test_heartbeat_is_acknowledged_with_the_senders_id_on_both_sockets(
    live_url: str, api_keys: ApiKeys
) -> None:
    async with connect(monitor_url(live_url, api_keys.admin)) as monitor:
        await send(monitor, "heartbeat", id="hb-1", source="monitor", load=0.4)
        monitor_ack = await receive(monitor)
    async with client_socket(live_url, api_keys.acme, name="c9") as client:
        await send(client, "heartbeat")
        client_ack = await receive(client)
        await assert_quiet(client)

    assert monitor_ack == {
        "type": "heartbeat_ack",
        "monitor_id": "m1",
        "message_id": "hb-1",
        "timestamp": monitor_ack["timestamp"],
    }
    assert (client_ack["type"], client_ack["client_id"]) == ("heartbeat_ack", "c9")
    assert client_ack["message_id"] is None


async def test_get_job_status_answers_the_job_as_rest_shows_it_and_only_to_its_customer(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    job = await job_queue.submit(
        JobSpec(service_required="sim", customer_id="acme", payload={"prompt": "a cat"})
    )
    async with client_socket(live_url, api_keys.acme) as ws:
        await send(ws, "get_job_status", job_id=job.id, id=41)
        status = await receive(ws)
        await assert_quiet(ws)  # asking for the status does not follow the job
    async with client_socket(live_url, api_keys.globex, name="c2") as ws:
        await send(ws, "get_job_status", job_id=job.id)
        foreign = await receive(ws)
        await send(ws, "get_job_status", job_id="no-such-job")
        missing = await receive(ws)
    async with httpx.AsyncClient(base_url=live_url, headers=bearer(api_keys.acme)) as http:
        shown_by_rest = (await http.get(f"/api/jobs/{job.id}")).json()

    assert (status["type"], status["job_id"], status["message_id"]) == ("job_status", job.id, 41)
    assert status["job"] == shown_by_rest
    assert status["job"]["payload"] == {"prompt": "a cat"}
    assert (foreign["type"], foreign["code"]) == ("error", "not_found")
    assert (missing["type"], missing["code"]) == ("error", "not_found")


async def test_unsubscribing_stops_a_jobs_events(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", WorkerCapabilities(services=["sim"]))
    followed = await job_queue.submit(JobSpec(service_required="sim", customer_id="acme"))
    async with client_socket(live_url, api_keys.acme) as ws:
        await send(ws, "subscribe_progress", job_id=followed.id)
        assert (await receive(ws))["type"] == "subscribed"
        await send(ws, "unsubscribe_progress", job_id=followed.id, id="u-1")
        unsubscribed = await receive(ws)
        [claimed] = await job_queue.claim("w1")
        await job_queue.complete("w1", followed.id, claimed.attempt, {"n": 1})
        await assert_quiet(ws)

    assert unsubscribed["type"] == "unsubscribed"
    assert (unsubscribed["job_id"], unsubscribed["message_id"]) == (followed.id, "u-1")


async def test_the_originals_source_field_is_accepted_and_still_bounded(
    live_url: str, api_keys: ApiKeys
) -> None:
    async with client_socket(live_url, api_keys.acme) as ws:
        await send(ws, "submit_job", source="emprops-api", job_type="sim", message_id="s-1")
        submitted = await receive(ws)
        await send(ws, "heartbeat", source="x" * 201)
        too_long = await receive(ws)

    assert (submitted["type"], submitted["job_id"]) == ("job_submitted", "s-1")
    assert (too_long["type"], too_long["code"]) == ("error", "invalid_message")
    assert too_long["detail"][0]["field"] == "heartbeat.source"


def test_the_docs_table_lists_exactly_these_messages() -> None:
    section = API_DOC.read_text().split("### Every message the original's clients send", 1)[1]
    table = section.split("\n## ", 1)[0]
    rows = re.findall(r"^\| (client|monitor) \| `(\w+)` \|[^|]*\| `(\w+)`", table, re.MULTILINE)
    documented = {(socket, message): answer for socket, message, answer in rows}

    assert documented == {key: answer for key, (_, answer) in ORIGINAL_MESSAGES.items()}


async def test_cancels_and_delivered_results_over_the_socket_are_audited(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    cancelled = await job_queue.submit(JobSpec(service_required="sim", customer_id="acme"))
    delivered = await job_queue.submit(JobSpec(service_required="sim", customer_id="acme"))
    async with client_socket(live_url, api_keys.admin, name="ops-1") as ws:
        await send(ws, "cancel_job", job_id=cancelled.id)
        assert (await receive(ws))["type"] == "job_cancelled"
        await send(ws, "delegated_job_result", job_id=delivered.id, result={"ok": 1})
        assert (await receive(ws))["type"] == "complete_job"
    async with httpx.AsyncClient(base_url=live_url, headers=bearer(api_keys.admin)) as http:
        entries = (await http.get("/api/audit", params={"action": "job."})).json()["entries"]

    assert [(e["action"], e["target"]) for e in entries[:2]] == [
        ("job.deliver", delivered.id),
        ("job.cancel", cancelled.id),
    ]
    assert entries[0]["source"] == "127.0.0.1 (socket ops-1)"
    assert entries[0]["role"] == "admin"
