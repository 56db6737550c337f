"""Webhook pieces without I/O: backoff, the SSRF guard's address rules, payloads."""

from __future__ import annotations

import ipaddress

import pytest

from emp_queue.errors import ConfigurationError, WebhookTargetRefusedError
from emp_queue.models import Event, Job, JobStatus
from emp_queue.webhooks.guard import TargetGuard, is_public
from emp_queue.webhooks.intake import milestone_of, payload
from emp_queue.webhooks.models import WebhookEvent, delivery_id
from emp_queue.webhooks.schedule import next_attempt_at, retry_delay_ms
from emp_queue.webhooks.settings import WebhookSettings

SETTINGS = WebhookSettings(retry_base_s=5, retry_max_delay_s=3600, retry_window_s=86400)


@pytest.mark.parametrize("failures", [1, 2, 5, 10, 30, 200])
def test_backoff_doubles_within_half_to_full_delay_and_caps(failures: int) -> None:
    full_ms = min(3600, 5 * 2 ** (failures - 1)) * 1000
    delays = [retry_delay_ms(failures, SETTINGS) for _ in range(200)]
    assert all(full_ms / 2 <= delay <= full_ms for delay in delays)
    assert len(set(delays)) > 1, "no jitter"


def test_retries_stop_at_the_end_of_the_window() -> None:
    start = 1_000_000
    assert next_attempt_at(3, start, start + 60_000, SETTINGS) is not None
    assert next_attempt_at(30, start, start + 86_400_000 - 1000, SETTINGS) is None


def test_a_maximum_below_the_base_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="RETRY_MAX_DELAY_S"):
        WebhookSettings(retry_base_s=10, retry_max_delay_s=1)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_only_global_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


async def test_the_allowlist_names_networks_and_hosts() -> None:
    guard = TargetGuard(["127.0.0.1/32", "hooks.internal", "10.1.0.0/16"])
    await guard.check("http://127.0.0.1:8080/hook")
    await guard.check("https://hooks.internal/x")
    await guard.check("http://10.1.200.3/")
    with pytest.raises(WebhookTargetRefusedError, match=r"10\.2\.0\.1"):
        await guard.check("http://10.2.0.1/")
    with pytest.raises(WebhookTargetRefusedError, match="http:// or https://"):
        await guard.check("file:///etc/passwd")


def test_delivery_ids_are_stable_and_distinct() -> None:
    assert delivery_id("1-0", "job") == delivery_id("1-0", "job")
    assert delivery_id("1-0", "job") != delivery_id("1-0", "sub:sub_1")
    assert delivery_id("1-0", "job").startswith("msg_")


def job(result: object = None) -> Job:
    return Job(
        id="j1",
        service_required="sim",
        priority=50,
        payload={},
        requirements={},
        max_attempts=3,
        status=JobStatus.COMPLETED,
        attempt=1,
        seq=1,
        created_at=1,
        result=result,
    )


def test_progress_milestones() -> None:
    assert milestone_of(Event("1-0", "update_job_progress", "j1", {"progress": 24.9})) is None
    assert milestone_of(Event("1-0", "update_job_progress", "j1", {"progress": 50})) == 50
    assert milestone_of(Event("1-0", "update_job_progress", "j1", {"progress": 99})) == 75
    assert milestone_of(Event("1-0", "update_job_progress", "j1", {})) is None


def test_a_payload_over_the_limit_leaves_the_result_out() -> None:
    event = Event("1-0", "complete_job", "j1", {"ts": 1_700_000_000_000})
    small = payload(WebhookEvent.JOB_COMPLETED, event, job({"a": 1}), 1024)
    large = payload(WebhookEvent.JOB_COMPLETED, event, job("x" * 5000), 1024)
    assert b'"result":{"a":1}' in small
    assert b"2023-11-14T22:13:20.000+00:00" in small
    assert len(large) < 1024
    assert b'"result_omitted":true' in large
