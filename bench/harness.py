"""What every benchmark of the core needs: a private Valkey, percentiles, a results record.

with private_valkey() as url: ...
save(RESULTS, stamped(results, "python -m bench.x"))
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.docs_section import write_section
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


@dataclass(frozen=True)
class BenchReport:
    """Where a benchmark's results go: its JSON file and its section of docs/benchmarks.md."""

    module: str
    results: Path
    section: str
    heading: str


def run_bench(
    report: BenchReport,
    description: str | None,
    measure: Callable[[str, bool], dict[str, Any]],
    markdown: Callable[[dict[str, Any]], str],
) -> None:
    """Parse ``--quick``/``--write-docs``, run ``measure(url, quick)`` on a private Valkey,
    save the stamped results, print the table and (full runs only) write it to the docs."""
    parser = argparse.ArgumentParser(prog=f"python -m {report.module}", description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    with private_valkey() as url:
        results = measure(url, args.quick)
    command = f"python -m {report.module}" + (" --quick" if args.quick else "")
    save(report.results, stamped(results, command))
    text = markdown(results)
    print(text)
    if args.write_docs and not args.quick:
        write_section(report.section, report.heading, text)
