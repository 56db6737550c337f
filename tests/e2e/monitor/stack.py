"""The local stack the monitor's browser tests drive, and their shared steps.

The real local stack (``emp up`` in this test's event loop): the API on a loopback port, and
a machine agent running the protocol fakes (ComfyUI) and real ``emp worker`` processes
(simulation, comfyui) on a mock GPU, shipping their logs and status. Debian's Chromium is
driven headless by Playwright.
"""

from __future__ import annotations

from dataclasses import dataclass

from playwright.async_api import Page

from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue

CHROMIUM = "/usr/bin/chromium"
MACHINE_ID = "gpu-box-1"
SERVICE = "simulation"
WORKER_ID = f"{MACHINE_ID}-{SERVICE}-0"
WORKERS = "simulation:1,comfyui:1"


@dataclass(frozen=True)
class Stack:
    url: str
    admin_key: str
    queue: JobQueue
    machines: MachineRegistry

    @property
    def monitor(self) -> str:
        return f"{self.url}/monitor"


async def log_in(page: Page, stack: Stack) -> None:
    await page.goto(stack.monitor)
    await page.get_by_label("Admin key").fill(stack.admin_key)
    await page.get_by_role("button", name="Log in").click()
