"""The monitor for a fleet, in a real browser against a real local stack: the machines table
(search, filters, grouping by pool), the per-service table as `emp queues` counts, empty
states, log lines read as time/level/service/message, durations, the audit log, and phone
widths."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, expect
from tests.e2e.monitor.stack import MACHINE_ID, SERVICE, Stack, log_in

from emp_queue.core.queue_control import ControlTarget, QueueState, set_state
from emp_queue.machine_models import (
    GpuInfo,
    MachineHardware,
    MachinePhase,
    MachineRecord,
    ServiceState,
    ServiceStatus,
)
from emp_queue.models import EventType, JobSpec, WorkerCapabilities

pytestmark = pytest.mark.requires_tool("chromium")

FLEET = 40
EU = 25
EMP = Path(sys.executable).parent / "emp"


REBUILT_MS = 1000
"""Past the machine list's rebuild throttle (400 ms, views/machines.js) and its next frame."""


def fleet_machine(index: int) -> MachineRecord:
    """fleet-000…039: two RTX 4090 each; fleet-007 failed; fleet-003's second service down."""
    failed_service = index == 3
    return MachineRecord(
        machine_id=f"fleet-{index:03d}",
        phase=MachinePhase.FAILED if index == 7 else MachinePhase.READY,
        hardware=MachineHardware(
            gpus=[
                GpuInfo(
                    index=g,
                    name="NVIDIA RTX 4090",
                    memory_gb=24.0,
                    memory_used_gb=5.0,
                    utilization_percent=30 + 20 * g,
                )
                for g in range(2)
            ],
            gpu_mode="nvml",
        ),
        services=[
            ServiceState(name="comfyui-0", kind="daemon", status=ServiceStatus.RUNNING),
            ServiceState(
                name="comfyui-1",
                kind="daemon",
                status=ServiceStatus.FAILED if failed_service else ServiceStatus.RUNNING,
            ),
        ],
        workers=[f"fleet-{index:03d}-w0"],
    )


async def publish_fleet(stack: Stack) -> None:
    for index in range(FLEET):
        pool = "eu-4090" if index < EU else "us-4090"
        await stack.queue.register_worker(
            f"fleet-{index:03d}-w0",
            WorkerCapabilities(services=["comfyui"], pool=pool),
            machine_id=f"fleet-{index:03d}",
        )
        await stack.machines.publish(fleet_machine(index), EventType.MACHINE_STARTUP_COMPLETE)


async def test_the_fleet_is_a_table_searched_filtered_and_grouped_by_pool(
    page: Page, stack: Stack
) -> None:
    await publish_fleet(stack)
    await log_in(page, stack)
    count = page.locator("#machines-count")
    await expect(count).to_have_text(f"({FLEET + 1})")
    row = page.locator(".machine-row[data-machine='fleet-003']")
    for shown in ("eu-4090", "2 \u00d7 RTX 4090", "10 / 48 GB · 40% busy", "1/2", "ready"):
        await expect(row).to_contain_text(shown)
    eu = page.locator(".group-row[data-pool='eu-4090']")
    await expect(eu).to_contain_text("25 machines · 50 GPUs · 0 jobs running · 1 not ready")
    await eu.click()  # collapsed: the next pools come into view
    await expect(page.locator(".machine-row[data-machine='fleet-003']")).to_have_count(0)
    await expect(page.locator(".group-row[data-pool='us-4090']")).to_contain_text("15 machines")
    await expect(page.locator(".group-row[data-pool='no pool']")).to_contain_text("1 machine ")
    await eu.click()

    await page.locator("#machines-search").fill("fleet-03")
    await expect(count).to_have_text(f"(10 of {FLEET + 1})")
    await expect(page.locator(".machine-row[data-machine='fleet-031']")).to_be_visible()
    await page.locator("#machines-search").fill("")
    await page.locator("#machines-state").select_option("failed")
    await expect(count).to_have_text(f"(1 of {FLEET + 1})")
    await expect(page.locator(".machine-row")).to_have_count(1)
    await expect(page.locator(".machine-row[data-machine='fleet-007']")).to_contain_text("failed")
    await page.locator("#machines-state").select_option("")
    await page.locator("#machines-pool").select_option("us-4090")
    await expect(count).to_have_text(f"(15 of {FLEET + 1})")
    await page.locator(".group-row[data-pool='us-4090']").click()  # collapse the pool
    await expect(page.locator(".machine-row")).to_have_count(0)
    await page.locator("#machines-search").fill("nothing-like-this")
    await expect(page.locator(".empty")).to_have_text("No machine matches the search and filters.")

    await page.locator("#machines-search").fill("")
    await page.locator("#machines-pool").select_option("")
    await page.locator(".machine-row[data-machine='fleet-012']").click()
    card = page.locator("#machine-detail article.machine[data-machine='fleet-012']")
    await expect(card.locator("tr[data-service='comfyui-1']")).to_contain_text("running")


async def test_durations_never_show_sixty_of_a_unit(page: Page, stack: Stack) -> None:
    await log_in(page, stack)
    await expect(page.locator("#connection")).to_have_text("live")
    shown = await page.evaluate(
        """async () => {
          const { duration } = await import("/monitor/static/js/dom.js");
          return [999.4, 999.6, 59_940, 59_960, 359_600, 3_599_600, 7_199_999, 5_430_000]
            .map(duration);
        }"""
    )
    assert shown == [
        "999 ms",
        "1.0 s",
        "59.9 s",
        "1 min 0 s",
        "6 min 0 s",
        "1 h 0 min",
        "2 h 0 min",
        "1 h 31 min",
    ]


async def emp_queues(stack: Stack) -> str:
    env = {**os.environ, "EMP_API_URL": stack.url, "EMP_API_KEY": stack.admin_key,
           "COLUMNS": "240"}  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        str(EMP), "queues", env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    return out.decode()


async def test_the_per_service_table_counts_every_status_as_emp_queues_does(
    page: Page, stack: Stack
) -> None:
    long_job = {"steps": 400, "step_delay_s": 0.1}
    for _ in range(3):
        job = await stack.queue.submit(JobSpec(service_required=SERVICE, payload=long_job))
        await stack.queue.cancel(job.id)
    await log_in(page, stack)
    await page.get_by_role("link", name="Jobs").click()
    row = page.locator(f"#queues tr[data-service='{SERVICE}']")
    await expect(row.locator("td[data-status='cancelled']")).to_have_text("3", timeout=10_000)

    printed = next(line for line in (await emp_queues(stack)).splitlines() if SERVICE in line)
    counted = {status: int(n) for status, n in re.findall(r"([a-z_]+) (\d+)", printed)}
    for status in ("pending", "scheduled", "blocked", "unworkable", "assigned", "in_progress",
                   "completed", "failed", "cancelled", "timeout", "expired"):  # fmt: skip
        cell = row.locator(f"td[data-status='{status}']")
        await expect(cell).to_have_text(str(counted.get(status, 0)))
    assert counted["cancelled"] == 3
    headers = await page.locator("table.queues th").all_inner_texts()
    assert {"cancelled", "timed out", "expired"} <= set(headers)


async def test_a_paused_queue_is_marked_in_the_per_service_table(page: Page, stack: Stack) -> None:
    await stack.queue.submit(JobSpec(service_required=SERVICE, delay_s=600))
    await set_state(
        stack.queue.redis, stack.queue.keys, ControlTarget.SERVICE, SERVICE, QueueState.PAUSED
    )
    await log_in(page, stack)
    await page.get_by_role("link", name="Jobs").click()
    row = page.locator(f"#queues tr[data-service='{SERVICE}']")
    await expect(row).to_have_attribute("data-state", "paused", timeout=10_000)
    await expect(row.locator("td").first).to_contain_text("paused")
    await expect(row.locator("td[data-status='scheduled']")).to_have_text("1")
    assert "paused" in (await emp_queues(stack))


async def test_an_empty_running_section_says_what_is_empty(page: Page, stack: Stack) -> None:
    await log_in(page, stack)
    await page.get_by_role("link", name="Jobs").click()
    empty = page.locator("#running-empty")
    await expect(empty).to_contain_text("No job is running")
    await expect(page.locator(".active-jobs")).to_be_hidden()
    box = await empty.bounding_box()
    assert box is not None
    assert box["height"] < 80


async def test_a_log_line_reads_time_level_service_message_and_opens_the_rest(
    page: Page, stack: Stack
) -> None:
    await log_in(page, stack)
    await page.locator("#nav").get_by_role("link", name="Logs").click()
    await page.locator("#logs-text").fill("worker_started")
    await page.locator("#logs-search").click()
    row = page.locator(".log-row").first
    await expect(row).to_be_visible(timeout=15_000)
    cells = await row.locator(":scope > span").all_inner_texts()
    assert re.fullmatch(r"\d\d:\d\d:\d\d", cells[0]), cells
    assert cells[1] == "info"
    assert cells[2].startswith("worker-")
    assert cells[3].startswith("worker_started")
    assert "{" not in cells[3]

    await row.click()
    detail = page.locator("#log-detail")
    await expect(detail).to_contain_text("worker_id")
    await expect(detail).to_contain_text(MACHINE_ID)
    await expect(detail.locator("pre.json")).to_contain_text('"event": "worker_started"')


async def test_every_view_fits_a_phone_screen(browser: Browser, stack: Stack) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    try:
        await log_in(page, stack)
        await expect(page.locator("#connection")).to_have_text("live")
        job = await stack.queue.submit(JobSpec(service_required=SERVICE))
        for route, ready in (
            ("machines", "article.machine"),
            ("jobs", "#queues tr"),
            (f"jobs/{job.id}", "#job-status"),
            ("submit", "#submit-button"),
            ("logs", ".log-row"),
            ("charts", "svg.chart"),
            ("audit", "#audit-rows tr"),
            ("webhooks", "table.subscriptions"),
        ):
            await page.goto(f"{stack.monitor}#/{route}")
            await expect(page.locator(ready).first).to_be_visible(timeout=15_000)
            width = await page.evaluate("document.documentElement.scrollWidth")
            links = await page.locator("#nav a").evaluate_all(
                "links => links.map(a => a.getBoundingClientRect().right)"
            )
            assert width <= 390, f"#/{route} is {width} px wide"
            assert max(links) <= 390, f"#/{route}: the nav is cut off ({links})"
    finally:
        await context.close()


async def test_the_audit_view_shows_who_did_what(page: Page, stack: Stack) -> None:
    job = await stack.queue.submit(JobSpec(service_required=SERVICE, payload={"steps": 400}))
    headers = {"Authorization": f"Bearer {stack.admin_key}"}
    async with httpx.AsyncClient(base_url=stack.url, headers=headers) as http:
        assert (await http.post(f"/api/jobs/{job.id}/cancel")).status_code == 200
    await log_in(page, stack)
    await page.get_by_role("link", name="Audit").click()
    cancel = page.locator("#audit-rows tr[data-action='job.cancel']")
    await expect(cancel).to_contain_text(job.id)
    await expect(cancel).to_contain_text("(admin)")
    await expect(cancel).to_contain_text("200")
    await page.locator("#audit-action").select_option("key.")
    await expect(page.locator("#audit-rows tr[data-action='job.cancel']")).to_have_count(0)
    await expect(page.locator("#audit-rows tr[data-action='key.create']").first).to_be_visible()


async def test_a_machine_announced_while_the_list_is_on_its_way_stays_listed(
    page: Page, stack: Stack
) -> None:
    # The list is read before the machine exists and reaches the page after its event: the
    # older list must not drop it (CI once lost fleet-041 to this race).
    held: asyncio.Queue[Route] = asyncio.Queue()
    await page.route("**/api/machines", held.put)
    await log_in(page, stack)
    route = await asyncio.wait_for(held.get(), timeout=30)
    stale = await route.fetch()
    listed = len((await stale.json())["machines"])
    await stack.machines.publish(fleet_machine(41))
    row = page.locator(".machine-row[data-machine='fleet-041']")
    await expect(row).to_be_visible()
    await route.fulfill(response=stale)
    await page.wait_for_function("() => window.empMonitorStats().arrived.machines")
    assert await page.evaluate("() => window.empMonitorStats().machines") == listed + 1
    await expect(row).to_be_visible()


async def test_a_worker_that_left_while_the_list_was_on_its_way_stays_gone(
    page: Page, stack: Stack
) -> None:
    held: asyncio.Queue[Route] = asyncio.Queue()
    await log_in(page, stack)
    await page.wait_for_function("() => window.empMonitorStats().workers > 0")
    await page.route("**/api/workers", held.put)
    stats = "() => window.empMonitorStats()"
    # A new worker makes the page read the list again (held here, read before it leaves).
    await stack.queue.register_worker("ghost-0", WorkerCapabilities(services=["comfyui"]))
    route = await asyncio.wait_for(held.get(), timeout=30)
    stale = await route.fetch()
    listed = [w["worker_id"] for w in (await stale.json())["workers"]]
    assert "ghost-0" in listed
    removed = (await page.evaluate(stats))["workersRemoved"]
    assert await stack.queue.deregister_worker("ghost-0", "shutdown")
    await page.wait_for_function(f"() => window.empMonitorStats().workersRemoved > {removed}")
    lists = (await page.evaluate(stats))["workerLists"]
    await route.fulfill(response=stale)
    await page.wait_for_function(f"() => window.empMonitorStats().workerLists > {lists}")
    assert (await page.evaluate(stats))["workers"] == len(listed) - 1


async def test_a_machine_card_lists_its_placement_decisions(page: Page, stack: Stack) -> None:
    await log_in(page, stack)
    record = fleet_machine(41)
    await stack.machines.publish(record)
    await page.locator(".machine-row[data-machine='fleet-041']").click()
    card = page.locator("#machine-detail article.machine[data-machine='fleet-041']")
    await expect(card).to_be_visible()
    decision = {
        "action": "download",
        "service": "comfyui",
        "model": "flux.safetensors",
        "size_bytes": 12_000_000_000,
        "reason": "3 waiting, 0 workers have it loaded, 0.60 jobs/min over 5 min",
    }
    for status in ("started", "done"):
        await stack.machines.publish(
            record, EventType.MACHINE_PLACEMENT, status=status, detail="", **decision
        )
    placement = card.locator("details.placement")
    await expect(placement).to_contain_text("Model placement (2 latest)")
    await placement.locator("summary").click()
    await expect(placement).to_contain_text("download flux.safetensors")
    await expect(placement).to_contain_text("3 waiting, 0 workers have it loaded")


async def test_a_click_survives_a_rebuild_between_press_and_release(
    page: Page, stack: Stack
) -> None:
    # The list is rebuilt on events (several times a second under load). A press and a
    # release that straddled a rebuild lost the click: the row under the pointer had been
    # replaced, so the click went to the list (CI once failed on this).
    await log_in(page, stack)
    record = fleet_machine(42)
    await stack.machines.publish(record)
    row = page.locator(".machine-row[data-machine='fleet-042']")
    await expect(row).to_be_visible()
    box = await row.bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    seen = await page.evaluate("() => window.empMonitorStats().eventsSeen")
    await page.mouse.down()
    await stack.machines.publish(record)  # an update: the list is built again
    await page.wait_for_function(f"() => window.empMonitorStats().eventsSeen > {seen}")
    await page.wait_for_timeout(REBUILT_MS)
    await page.mouse.up()
    card = page.locator("#machine-detail article.machine[data-machine='fleet-042']")
    await expect(card).to_be_visible()
