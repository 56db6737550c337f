"""The monitor in a real browser against a real local stack: what an operator sees and does."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from playwright.async_api import Page, expect
from tests.e2e.monitor.stack import MACHINE_ID, SERVICE, WORKER_ID, Stack, log_in

from emp_queue.models import JobSpec, JobStatus

pytestmark = pytest.mark.requires_tool("chromium")

IMAGE_JOB = {"steps": 20, "step_delay_s": 0.1, "image": {"width": 64, "height": 64}}


async def test_page_holds_no_secret_and_needs_no_key(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as http:
        page = await http.get("/monitor")
        script = await http.get("/monitor/static/js/main.js")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert script.status_code == 200
    for body in (page.text, script.text):
        assert "redis://" not in body
        assert stack.admin_key not in body


async def test_a_wrong_key_is_refused_with_a_message(page: Page, stack: Stack) -> None:
    await page.goto(stack.monitor)
    await page.get_by_label("Admin key").fill("emp_not-a-real-key")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#login-error")).to_contain_text("not valid")
    await expect(page.locator("#app")).to_be_hidden()


async def test_submitted_job_appears_moves_and_shows_its_image(page: Page, stack: Stack) -> None:
    await log_in(page, stack)
    await expect(page.locator("#connection")).to_have_text("live")
    await page.get_by_role("link", name="Submit").click()
    await page.get_by_label("Service", exact=True).fill(SERVICE)
    payload = page.get_by_label("Payload (JSON object, sent to the service)")
    await payload.fill("{not json")
    await expect(page.locator("#payload-status")).to_contain_text("Invalid JSON")
    await expect(page.locator("#submit-button")).to_be_disabled()
    await payload.fill(json.dumps(IMAGE_JOB))
    await page.locator("#submit-button").click()
    link = page.locator("#submit-result a.mono")
    await expect(link).to_have_count(1)
    job_id = await link.inner_text()

    await page.get_by_role("link", name="Jobs").click()
    row = page.locator(f".active-row[data-job='{job_id}']")
    await expect(row).to_be_visible()
    await expect(row.get_by_role("progressbar")).to_have_attribute(
        "aria-valuenow", re.compile(r"^([1-9]\d?)$")
    )

    await row.get_by_role("link", name=job_id).click()
    await expect(page.locator("#job-status")).to_have_text("completed", timeout=15_000)
    image = page.locator("#job-outputs img.output-image")
    await expect(image).to_have_attribute("src", re.compile(r"^blob:"))
    assert await image.evaluate("img => img.complete && img.naturalWidth") == 64
    await expect(page.locator("#job-timeline li[data-type='complete_job']")).to_have_count(1)


async def test_cancel_a_running_job_from_its_page(page: Page, stack: Stack) -> None:
    job = await stack.queue.submit(
        JobSpec(service_required=SERVICE, payload={"steps": 300, "step_delay_s": 0.1})
    )
    await log_in(page, stack)
    await page.goto(f"{stack.monitor}#/jobs/{job.id}")
    await expect(page.locator("#job-status")).to_have_text("in_progress")
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.locator("#job-status")).to_have_text("cancelled")
    assert (await stack.queue.get(job.id)).status is JobStatus.CANCELLED


async def test_find_a_line_a_service_logged_by_searching(page: Page, stack: Stack) -> None:
    # Every worker logs "worker_started" when it registers; the agent ships its lines.
    await log_in(page, stack)
    await page.locator("#nav").get_by_role("link", name="Logs").click()
    await page.locator("#logs-text").fill("worker_started")
    await page.locator("#logs-search").click()
    rows = page.locator(".log-row")
    await expect(rows.first).to_be_visible(timeout=15_000)
    await expect(rows.first.locator(".message")).to_contain_text("worker_started")
    services = await page.locator(".log-row").all_inner_texts()
    assert any(f"worker-{SERVICE}-0" in row for row in services), services


async def test_restart_a_service_and_watch_its_status_cycle(page: Page, stack: Stack) -> None:
    await log_in(page, stack)
    card = page.locator(f"article.machine[data-machine='{MACHINE_ID}']")
    await expect(card.locator(f".card-worker[data-worker='{WORKER_ID}']")).to_be_visible()
    row = card.locator("tr[data-service='comfyui-0']")
    await expect(row).to_contain_text("running")
    # Record every status the row shows from now on (the cycle may be shorter than a poll).
    await page.evaluate(
        """() => {
          window.seenStatuses = [];
          const record = () => {
            const row = document.querySelector("tr[data-service='comfyui-0']");
            const badge = row && row.querySelector("td:nth-child(3)");
            if (badge) window.seenStatuses.push(badge.textContent.trim());
          };
          new MutationObserver(record).observe(document.body,
            {subtree: true, childList: true, characterData: true});
        }"""
    )
    await row.get_by_role("button", name="Restart").click()
    await expect(page.locator(".notice").first).to_contain_text("Restart of comfyui-0 sent")
    await expect(row.locator("td:nth-child(4)")).to_have_text("1", timeout=20_000)
    await expect(row).to_contain_text("running", timeout=20_000)
    seen = await page.evaluate("() => window.seenStatuses")
    assert any(status != "running" for status in seen), seen
    assert seen[-1] == "running", seen
