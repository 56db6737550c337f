"""What every benchmark of the core needs: a private Valkey, percentiles, a results record.

with private_valkey() as url: ...
save(RESULTS, stamped(results, "python -m bench.x"))
"""

from __future__ import annotations

import contextlib
import json
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emp_queue.core.broker import EmbeddedValkey


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text()
        models = [
            line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line
        ]
        if models:
            return f"{len(models)} x {models[0]}"
    return "unknown CPU"


@contextlib.contextmanager
def private_valkey() -> Iterator[str]:
    """A Valkey of its own (the embedded binary, no persistence): its URL, stopped after."""
    with (
        tempfile.TemporaryDirectory() as data_dir,
        EmbeddedValkey(Path(data_dir), persistent=False) as server,
    ):
        yield server.url


def stamped(results: dict[str, Any], command: str) -> dict[str, Any]:
    """The results with the date, the machine and the command that produced them."""
    results["date"] = time.strftime("%Y-%m-%d")
    results["machine"] = f"{platform.machine()}, {platform.python_version()}, " + cpu_name()
    results["command"] = command
    return results


def save(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
