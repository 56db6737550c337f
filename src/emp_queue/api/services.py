"""Which services a job may name: the configured ones, and those some worker ever served.

A job naming anything else is refused with the known names, so a typo ("comfyiu") is a 422
at submit time instead of a job that waits forever. The served set only grows, so a name
seen once is known for good; only an unknown name costs a Redis read.
"""

from __future__ import annotations

from collections.abc import Iterable

from emp_queue.core.queue import JobQueue
from emp_queue.errors import UnknownServiceError


class ServiceCatalog:
    def __init__(self, queue: JobQueue, configured: Iterable[str]) -> None:
        self._queue = queue
        self._configured = frozenset(configured)
        self._known: set[str] = set(self._configured)

    async def check(self, services: Iterable[str]) -> None:
        """Raise :class:`UnknownServiceError` naming the known services for any unknown one."""
        unknown = set(services) - self._known
        if not unknown:
            return
        self._known |= await self._queue.served_services()
        unknown -= self._known
        if unknown:
            known = ", ".join(sorted(self._known)) or "none yet"
            names = ", ".join(repr(name) for name in sorted(unknown))
            raise UnknownServiceError(
                f"unknown service {names}; known services: {known}. No worker has ever "
                "served it: check the name, or list it in EMP_API_SERVICES to accept jobs "
                "before its first worker connects"
            )
