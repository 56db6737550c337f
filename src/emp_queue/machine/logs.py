"""Where the services' output goes: a rotating file per service, and the machine's log stream.

Lines arrive from the supervisor's pipe readers, which must never wait: a child blocked
on a full pipe stalls. So the file write is a plain append and shipping is a bounded
buffer that a background task flushes to Redis in batches; when Redis is unreachable
for long, the oldest lines are dropped (and counted), never the child.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import re
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path

import structlog
from redis.exceptions import RedisError

from emp_queue.core.machines import MachineRegistry
from emp_queue.machine_models import LogLine

log = structlog.get_logger(__name__)

_LEVEL_ALIASES = {
    "warn": "warning",
    "fatal": "critical",
    "err": "error",
    "trace": "debug",
    "notice": "info",
}
_KNOWN_LEVELS = ("debug", "info", "warning", "error", "critical")
_KEYWORDS = (
    (re.compile(r"\b(CRITICAL|FATAL|PANIC)\b", re.IGNORECASE), "critical"),
    (re.compile(r"\b(ERROR|Traceback|Exception)\b|\w+Error:", re.IGNORECASE), "error"),
    (re.compile(r"\bWARN(ING)?\b", re.IGNORECASE), "warning"),
    (re.compile(r"\bDEBUG\b"), "debug"),
)


def guess_level(line: str) -> str:
    """The level a line was logged at: a JSON ``level``/``levelname``/``severity`` field
    (structlog, Ollama's slog), otherwise the first telling keyword, otherwise ``info``."""
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            document = json.loads(stripped)
        except ValueError:
            document = None
        if isinstance(document, dict):
            for field in ("level", "levelname", "severity", "lvl"):
                value = document.get(field)
                if isinstance(value, str):
                    name = value.lower()
                    name = _LEVEL_ALIASES.get(name, name)
                    if name in _KNOWN_LEVELS:
                        return name
    for pattern, level in _KEYWORDS:
        if pattern.search(line):
            return level
    return "info"


class ServiceLogFiles:
    """``<log_dir>/<service>.log``, rotated by size, and the last lines of each."""

    def __init__(self, log_dir: Path, *, max_bytes: int, backups: int) -> None:
        self.log_dir = log_dir
        self.max_bytes = max_bytes
        self.backups = backups
        self._handlers: dict[str, RotatingFileHandler] = {}

    def path(self, service: str) -> Path:
        return self.log_dir / f"{service}.log"

    def write(self, service: str, line: str) -> None:
        handler = self._handlers.get(service)
        if handler is None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            handler = RotatingFileHandler(
                self.path(service), maxBytes=self.max_bytes, backupCount=self.backups
            )
            handler.setFormatter(logging.Formatter("%(message)s"))
            self._handlers[service] = handler
        # A standalone handler: no logger registry, so services never leak into the
        # process's own logging configuration.
        handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))

    def tail(self, service: str, lines: int) -> list[str]:
        """The last ``lines`` lines of the current file (read backwards, not whole)."""
        path = self.path(service)
        if lines <= 0 or not path.exists():
            return []
        block = 64 * 1024
        with path.open("rb") as handle:
            handle.seek(0, 2)
            position = handle.tell()
            data = b""
            while position > 0 and data.count(b"\n") <= lines:
                step = min(block, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
        text = data.decode(errors="replace").splitlines()
        return text[-lines:]

    def close(self) -> None:
        for handler in self._handlers.values():
            handler.close()
        self._handlers.clear()


class LogShipper:
    """Batches log lines to the machine's Redis log stream."""

    def __init__(
        self,
        registry: MachineRegistry,
        machine_id: str,
        *,
        buffer_lines: int = 10_000,
        batch_lines: int = 500,
        flush_interval_s: float = 0.5,
    ) -> None:
        self.registry = registry
        self.machine_id = machine_id
        self.batch_lines = batch_lines
        self.flush_interval_s = flush_interval_s
        self._buffer: collections.deque[LogLine] = collections.deque(maxlen=buffer_lines)
        self._wake = asyncio.Event()
        self._closed = False
        self.dropped = 0

    def offer(self, service: str, message: str, level: str | None = None) -> None:
        """Queue one line; never waits. A full buffer drops its oldest line."""
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(
            LogLine(
                ts=int(time.time() * 1000),
                machine_id=self.machine_id,
                service=service,
                level=level or guess_level(message),
                message=message,
            )
        )
        if len(self._buffer) >= self.batch_lines:
            self._wake.set()

    async def run(self) -> None:
        """Flush every interval (or when a batch is full) until :meth:`close`."""
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def close(self) -> None:
        """Ship what is left; :meth:`run` returns after its current flush."""
        self._closed = True
        self._wake.set()
        await self.flush()

    async def flush(self) -> None:
        while self._buffer:
            batch = [
                self._buffer.popleft() for _ in range(min(self.batch_lines, len(self._buffer)))
            ]
            try:
                await self.registry.ship_logs(batch)
            except (RedisError, OSError) as error:
                # Put them back for the next tick; the bounded buffer caps the backlog.
                self._buffer.extendleft(reversed(batch))
                log.warning("machine_log_ship_failed", error=str(error), pending=len(self._buffer))
                return
