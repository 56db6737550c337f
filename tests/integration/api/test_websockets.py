"""The original's WebSocket protocol through a real uvicorn: clients, monitors, auth, resume."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from emp_queue import JobQueue, JobSpec, WorkerCapabilities
from tests.integration.api.conftest import ApiKeys, bearer

SIM = WorkerCapabilities(services=["sim"])
QUIET_S = 0.3


def ws_url(live_url: str, path: str, **query: str) -> str:
    return f"ws://{live_url.removeprefix('http://')}{path}?{urlencode(query)}"


async def receive(ws: ClientConnection, timeout_s: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def send(ws: ClientConnection, message_type: str, **fields: Any) -> None:
    await ws.send(json.dumps({"type": message_type, "timestamp": 1, **fields}))


async def assert_quiet(ws: ClientConnection) -> None:
    """Nothing more arrives: no duplicate, no event the socket should not get."""
    try:
        extra = await receive(ws, QUIET_S)
    except TimeoutError:
        return
    pytest.fail(f"unexpected message {extra}")


@asynccontextmanager
async def client_socket(
    live_url: str, key: str, name: str = "c1", **query: str
) -> AsyncIterator[ClientConnection]:
    async with connect(client_url(live_url, key, name, **query)) as ws:
        assert (await receive(ws))["type"] == "connection_established"
        yield ws


def client_url(live_url: str, key: str, name: str = "c1", **query: str) -> str:
    return ws_url(live_url, f"/ws/client/{name}", token=key, **query)


def monitor_url(live_url: str, key: str, **query: str) -> str:
    return ws_url(live_url, "/ws/monitor/m1", token=key, **query)


async def close_code(url: str) -> tuple[int, dict[str, Any]]:
    """The error a refused socket sends, and its close code."""
    async with connect(url) as ws:
        error = await receive(ws)
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, error


async def test_a_job_submitted_over_the_socket_reports_its_whole_life(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", SIM)
    async with client_socket(live_url, api_keys.acme) as ws:
        await send(ws, "submit_job", message_id="m-1", service_required="sim", priority=70)
        submitted = await receive(ws)
        [claimed] = await job_queue.claim("w1")
        for progress in (0.0, 50.0):
            await job_queue.report_progress("w1", "m-1", claimed.attempt, progress)
        await job_queue.complete("w1", "m-1", claimed.attempt, {"image": "a.png"})
        events = [await receive(ws) for _ in range(5)]
        await assert_quiet(ws)

    assert submitted["type"] == "job_submitted"
    assert (submitted["job_id"], submitted["message_id"], submitted["status"]) == (
        "m-1",
        "m-1",
        "pending",
    )
    assert [e["type"] for e in events] == [
        "job_assigned",
        "job_status_changed",
        "update_job_progress",
        "update_job_progress",
        "complete_job",
    ]
    assert [e["progress"] for e in events[2:4]] == [0.0, 50.0]
    assert events[-1]["result"] == {"image": "a.png"}
    assert {e["job_id"] for e in events} == {"m-1"}
    assert all(isinstance(e["timestamp"], int) and "-" in e["event_id"] for e in events)
    assert (await job_queue.get("m-1")).customer_id == "acme"


async def test_resubmitting_a_message_is_idempotent(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    async with client_socket(live_url, api_keys.acme) as ws:
        for _ in range(2):
            await send(ws, "submit_job", message_id="m-2", service_required="sim")
        replies = [await receive(ws) for _ in range(2)]
        await assert_quiet(ws)

    assert [(r["type"], r["job_id"]) for r in replies] == [("job_submitted", "m-2")] * 2
    stream = await job_queue.events.read(count=1000)
    assert [e.type for e in stream if e.job_id == "m-2"] == ["job_submitted"]
    assert len((await job_queue.list_jobs(customer_id="acme")).jobs) == 1


async def test_subscribing_follows_a_job_submitted_over_rest(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", SIM)
    async with httpx.AsyncClient(base_url=live_url, headers=bearer(api_keys.acme)) as http:
        response = await http.post("/api/jobs", json={"service_required": "sim"})
    job_id = response.json()["id"]
    async with client_socket(live_url, api_keys.acme) as ws:
        await send(ws, "subscribe_progress", job_id=job_id)
        subscribed = await receive(ws)
        [claimed] = await job_queue.claim("w1")
        await job_queue.report_progress("w1", job_id, claimed.attempt, 0.0)
        await job_queue.complete("w1", job_id, claimed.attempt, 7)
        types = [(await receive(ws))["type"] for _ in range(4)]

    assert (subscribed["type"], subscribed["job_id"], subscribed["status"]) == (
        "subscribed",
        job_id,
        "pending",
    )
    assert types == ["job_assigned", "job_status_changed", "update_job_progress", "complete_job"]


async def test_cancelling_reports_cancelled_once_and_never_failed(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", SIM)
    async with client_socket(live_url, api_keys.acme) as ws:
        await send(ws, "submit_job", message_id="m-3", service_required="sim")
        assert (await receive(ws))["type"] == "job_submitted"
        await job_queue.claim("w1")
        assert (await receive(ws))["type"] == "job_assigned"
        await send(ws, "cancel_job", job_id="m-3", reason="user changed their mind")
        cancelled = await receive(ws)
        await assert_quiet(ws)
        await send(ws, "cancel_job", job_id="m-3")
        again = await receive(ws)
        # A job this socket never followed: cancelling it is answered all the same.
        other = await job_queue.submit(JobSpec(service_required="sim", customer_id="acme"))
        await send(ws, "cancel_job", job_id=other.id)
        other_cancelled = await receive(ws)

    assert cancelled["type"] == "job_cancelled"
    assert (cancelled["job_id"], cancelled["reason"]) == ("m-3", "user changed their mind")
    assert (await job_queue.get("m-3")).status == "cancelled"
    assert (again["type"], again["code"]) == ("error", "invalid_transition")
    assert (other_cancelled["type"], other_cancelled["job_id"]) == ("job_cancelled", other.id)


async def test_bad_messages_get_errors_and_the_socket_stays_usable(
    live_url: str, api_keys: ApiKeys
) -> None:
    async with client_socket(live_url, api_keys.acme) as ws:
        await ws.send("not json")
        not_json = await receive(ws)
        await send(ws, "make_coffee")
        unknown = await receive(ws)
        await send(ws, "submit_job", message_id="m-4", service_required="sim", priority=500)
        out_of_range = await receive(ws)
        await ws.send('{"type": "submit_job", "service_required": "sim", "payload": {"x": NaN}}')
        not_finite = await receive(ws)
        await send(ws, "subscribe_progress", job_id="no-such-job")
        missing = await receive(ws)
        await send(ws, "submit_job", message_id="m-4", service_required="sim")
        accepted = await receive(ws)

    assert (not_json["type"], not_json["code"]) == ("error", "invalid_json")
    assert unknown["code"] == "invalid_message"
    assert unknown["detail"][0]["field"] == "type"
    assert "make_coffee" in unknown["error"]
    assert out_of_range["code"] == "invalid_message"
    assert [d["field"] for d in out_of_range["detail"]] == ["priority"]
    assert out_of_range["message_id"] == "m-4"
    assert not_finite["code"] == "invalid_json"
    assert missing["code"] == "not_found"
    assert (accepted["type"], accepted["job_id"]) == ("job_submitted", "m-4")


@pytest.mark.parametrize(
    ("path", "key_name"),
    [
        ("/ws/client/c1", None),
        ("/ws/client/c1", "not-a-key"),
        ("/ws/client/c1", "worker"),
        ("/ws/monitor/m1", "acme"),
        ("/ws/monitor/m1", "worker"),
    ],
)
async def test_missing_invalid_or_insufficient_keys_close_with_1008(
    live_url: str, api_keys: ApiKeys, path: str, key_name: str | None
) -> None:
    query = {} if key_name is None else {"token": getattr(api_keys, key_name, key_name)}

    code, error = await close_code(ws_url(live_url, path, **query))

    assert code == 1008
    assert error["type"] == "error"
    assert error["code"] in {"unauthorized", "forbidden"}


async def test_a_client_sees_only_its_own_customers_jobs(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", SIM)
    theirs = await job_queue.submit(
        JobSpec(id="acme-1", service_required="sim", customer_id="acme")
    )
    async with client_socket(live_url, api_keys.globex) as ws:
        await send(ws, "subscribe_progress", job_id=theirs.id)
        subscribe = await receive(ws)
        await send(ws, "cancel_job", job_id=theirs.id)
        cancel = await receive(ws)
        await send(ws, "submit_job", message_id="g-1", service_required="sim", customer_id="acme")
        foreign_customer = await receive(ws)
        await send(ws, "submit_job", message_id=theirs.id, service_required="sim")
        taken_id = await receive(ws)
        await job_queue.claim("w1")
        await assert_quiet(ws)

    assert [m["code"] for m in (subscribe, cancel, foreign_customer, taken_id)] == [
        "not_found",
        "not_found",
        "forbidden",
        "conflict",
    ]
    assert (await job_queue.get(theirs.id)).status == "assigned"
    assert subscribe["error"] == cancel["error"]  # the same answer as for a job that is not there


async def test_a_delegated_result_completes_the_job_once(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    running = await job_queue.submit(JobSpec(service_required="sim"))
    await job_queue.register_worker("w1", WorkerCapabilities(services=["sim"]))
    [claimed] = await job_queue.claim("w1")
    waiting = await job_queue.submit(JobSpec(service_required="sim"))
    async with client_socket(live_url, api_keys.acme) as ws:
        await send(ws, "delegated_job_result", job_id=waiting.id, result={"success": True})
        as_client = await receive(ws)
    async with client_socket(live_url, api_keys.admin) as ws:
        await send(ws, "delegated_job_result", job_id=waiting.id, result={"image": "done"})
        first = await receive(ws)
        await send(ws, "delegated_job_result", job_id=claimed.job.id, result={"n": 2})
        second = await receive(ws)
        await send(ws, "delegated_job_result", job_id=waiting.id, result={"again": True})
        again = await receive(ws)

    assert as_client["code"] == "forbidden"
    assert first["type"] == "complete_job"
    assert first["result"] == {"image": "done"}
    assert second["type"] == "complete_job"
    assert again["code"] == "invalid_transition"
    done = await job_queue.get(waiting.id)
    assert done.status == "completed"
    assert done.result == {"image": "done"}
    assert "delivered by client" in (done.message or "")
    # The worker that held the running job learns it was taken away; its result is refused.
    [outcome] = await job_queue.complete_many("w1", [(claimed.job.id, claimed.attempt, {})])
    assert not outcome.accepted
    assert (await job_queue.get(claimed.job.id)).result == {"n": 2}
    assert running.id == claimed.job.id


async def test_the_full_state_snapshot_describes_workers_queues_and_recent_jobs(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", SIM)
    pending = [await job_queue.submit(JobSpec(service_required="sim")) for _ in range(3)]
    cancelled = await job_queue.submit(JobSpec(service_required="sim"))
    await job_queue.cancel(cancelled.id)
    async with connect(monitor_url(live_url, api_keys.admin)) as ws:
        await send(ws, "request_full_state", jobs_per_status=2)
        snapshot = await receive(ws)

    data = snapshot["data"]
    assert snapshot["type"] == "full_state_snapshot"
    assert [w["worker_id"] for w in data["workers"]] == ["w1"]
    assert [q["service"] for q in data["queues"]] == ["sim"]
    assert [j["id"] for j in data["jobs"]["pending"]] == [pending[2].id, pending[1].id]
    assert [j["id"] for j in data["jobs"]["cancelled"]] == [cancelled.id]
    assert data["jobs"]["completed"] == []
    assert data["last_event_id"] == await job_queue.events.latest_id()


async def test_monitor_subscriptions_filter_events(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    async with connect(monitor_url(live_url, api_keys.admin)) as ws:
        await send(ws, "subscribe", topics=["nonsense"])
        unknown = await receive(ws)
        await send(ws, "subscribe", topics=["workers"])
        subscribed = await receive(ws)
        job = await job_queue.submit(JobSpec(service_required="sim"))
        await job_queue.register_worker("w1", SIM)
        await job_queue.claim("w1")
        worker_event = await receive(ws)
        await assert_quiet(ws)
        await send(ws, "subscribe", topics=["job_cancelled", "machines"])
        await receive(ws)
        await job_queue.events.append("machine_startup", {"machine_id": "gpu-1"})
        await job_queue.cancel(job.id)
        later = [await receive(ws) for _ in range(2)]

    assert unknown["code"] == "unknown_topic"
    assert (subscribed["type"], subscribed["topics"]) == ("subscribed", ["workers"])
    assert (worker_event["type"], worker_event["worker_id"]) == ("worker_connected", "w1")
    assert [(e["type"], e.get("job_id")) for e in later] == [
        ("machine_startup", None),
        ("job_cancelled", job.id),
    ]


async def test_a_reconnecting_monitor_resumes_without_gap_or_duplicate(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    start = await job_queue.events.latest_id()
    total = 120

    async def produce() -> None:
        for n in range(total):
            if n % 2:
                await job_queue.submit(JobSpec(service_required="sim"))
            else:
                await job_queue.events.append("machine_update", {"machine_id": "gpu-1", "n": n})
            await asyncio.sleep(0.002)

    received: list[dict[str, Any]] = []
    async with asyncio.TaskGroup() as tasks:
        async with connect(monitor_url(live_url, api_keys.admin)) as ws:
            producer = tasks.create_task(produce())
            received += [await receive(ws) for _ in range(25)]
        # Disconnected while the producer keeps going.
        await asyncio.sleep(0.05)
        resume_url = monitor_url(live_url, api_keys.admin, last_event_id=received[-1]["event_id"])
        async with connect(resume_url) as ws:
            await producer
            last = await job_queue.events.latest_id()
            while received[-1]["event_id"] != last:
                received.append(await receive(ws))
            await assert_quiet(ws)

    expected = await job_queue.events.read(start, count=10_000)
    assert [m["event_id"] for m in received] == [e.id for e in expected]
    assert [m["type"] for m in received] == [e.type for e in expected]
    assert len(expected) == total


async def test_a_malformed_resume_id_closes_with_1008(live_url: str, api_keys: ApiKeys) -> None:
    code, error = await close_code(monitor_url(live_url, api_keys.admin, last_event_id="x"))

    assert code == 1008
    assert error["code"] == "invalid_request"


async def test_a_reconnecting_client_resumes_its_jobs_without_gap_or_duplicate(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", SIM)
    async with client_socket(live_url, api_keys.acme) as ws:
        await send(ws, "submit_job", message_id="resume-1", service_required="sim")
        submitted = await receive(ws)
        [claimed] = await job_queue.claim("w1")
        assigned = await receive(ws)
    # Away: progress and the end happen while no socket follows the job.
    for percent in (25, 50, 75):
        await job_queue.report_progress("w1", claimed.job.id, claimed.attempt, percent)
    await job_queue.complete("w1", claimed.job.id, claimed.attempt, {"ok": True})
    theirs = await job_queue.submit(JobSpec(service_required="sim", customer_id="globex"))

    query = {"last_event_id": assigned["event_id"], "jobs": f"resume-1,{theirs.id}"}
    async with client_socket(live_url, api_keys.acme, **query) as ws:
        replayed = [await receive(ws) for _ in range(5)]
        await assert_quiet(ws)

    assert submitted["type"] == "job_submitted"
    assert [m["type"] for m in replayed] == [
        "job_status_changed",
        "update_job_progress",
        "update_job_progress",
        "update_job_progress",
        "complete_job",
    ]
    progress = [m["progress"] for m in replayed if m["type"] == "update_job_progress"]
    assert progress == [25, 50, 75]
    assert replayed[-1]["type"] == "complete_job"
    assert replayed[-1]["result"] == {"ok": True}
    # Another customer's job named in ?jobs= stays hidden, as an unknown job would.
    assert all(m.get("job_id") == "resume-1" for m in replayed)


async def test_a_malformed_client_resume_closes_with_1008(live_url: str, api_keys: ApiKeys) -> None:
    bad_id = client_url(live_url, api_keys.acme, last_event_id="yesterday")
    jobs_alone = client_url(live_url, api_keys.acme, jobs="a,b")
    assert (await close_code(bad_id))[0] == 1008
    code, message = await close_code(jobs_alone)
    assert code == 1008
    assert "last_event_id" in message["error"]
