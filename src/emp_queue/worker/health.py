"""``ServiceHealth``: does the worker's service answer? The worker claims only while it does.

A worker whose service is down must not claim jobs only to fail them (three jobs
dead-lettered during a 60 s ComfyUI restart). The probe (the connector's ``check_health``)
runs every ``interval_s`` and at once after a job's service fault; ``failures_to_down``
failed probes in a row mark the service down, one answer marks it up again. Each change
calls ``on_change`` — the worker then stops or resumes claiming, hands back what it holds
and tells the registry (``service_down``) with an immediate heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from emp_queue.errors import JobFailedError

log = structlog.get_logger(__name__)

Probe = Callable[[], Awaitable[None]]


class ServiceHealth:
    """The service's state as the last probes saw it; starts up (the worker only starts
    once its connector's ``start()`` reached the service)."""

    def __init__(
        self,
        probe: Probe,
        *,
        interval_s: float = 1.0,
        timeout_s: float = 2.0,
        failures_to_down: int = 2,
    ) -> None:
        self._probe = probe
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.failures_to_down = failures_to_down
        self.is_up = True
        self.last_error: str | None = None
        self.on_change: Callable[[bool], None] = lambda _up: None
        self._failures = 0
        self._probe_now = asyncio.Event()
        self._lock = asyncio.Lock()

    def probe_soon(self) -> None:
        """Probe now instead of at the next tick (a job just had a service fault)."""
        self._probe_now.set()

    async def check(self) -> bool:
        """Probe once (a concurrent caller waits for the same probe); True when up."""
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._probe()
            except (JobFailedError, TimeoutError) as error:
                self._failed(str(error) or f"no answer within {self.timeout_s:g} s")
            except Exception as error:  # a connector bug in the probe: the service is unknown
                log.exception("health_probe_crashed")
                self._failed(f"the health probe crashed: {type(error).__name__}: {error}")
            else:
                self._failures = 0
                if not self.is_up:
                    self._change(up=True)
            return self.is_up

    def _failed(self, reason: str) -> None:
        self._failures += 1
        self.last_error = reason
        if self.is_up and self._failures >= self.failures_to_down:
            self._change(up=False)

    async def confirm_down(self) -> bool:
        """After a service fault: probe until the verdict is certain; True when down."""
        for _ in range(self.failures_to_down):
            await self.check()
            if not self.is_up:
                return True
            if self._failures == 0:
                return False  # it answered: the fault was the job's run, not an outage
            await asyncio.sleep(min(self.interval_s, 0.5))
        return not self.is_up

    def _change(self, *, up: bool) -> None:
        self.is_up = up
        if up:
            log.info("service_up")
        else:
            log.warning("service_down", error=self.last_error)
        self.on_change(up)

    async def watch(self, closed: asyncio.Event) -> None:
        """Probe every ``interval_s`` (or when asked) until ``closed`` is set."""
        while not closed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._probe_now.wait()
            self._probe_now.clear()
            if not closed.is_set():
                await self.check()
