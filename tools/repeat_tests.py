"""Run the unit and integration tiers N times in random order and report seeds and failures.

    .venv/bin/python -m tools.repeat_tests --runs 10 > /tmp/flake-report.md

Each run picks a fresh seed (``--randomly-seed=N`` reproduces
it); the report is a Markdown table for docs/testing.md.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass

from tools.dev_test import ROOT, TIERS, pytest_command, pytest_env

SUMMARY = re.compile(r"^=*\s*(\d+ (?:passed|failed).*?) in [\d.]+s")


@dataclass(frozen=True)
class Outcome:
    run: int
    tier: str
    seed: int
    summary: str
    failed: list[str]
    seconds: float


def run_tier(run: int, tier: str, seed: int) -> Outcome:
    command = pytest_command(TIERS[tier], ["-q", f"--randomly-seed={seed}", "-rf"])
    started = time.monotonic()
    env = pytest_env(dict(os.environ))
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    lines = done.stdout.splitlines()
    summary = next((m.group(1) for line in lines if (m := SUMMARY.search(line))), "no summary")
    failed = [line.removeprefix("FAILED ") for line in lines if line.startswith("FAILED ")]
    return Outcome(run, tier, seed, summary, failed, time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tiers", nargs="+", default=["unit", "integration"])
    args = parser.parse_args()
    print("| run | tier | seed | result | time | failures |")
    print("|---|---|---|---|---|---|")
    failures = 0
    for run in range(1, args.runs + 1):
        for tier in args.tiers:
            outcome = run_tier(run, tier, random.randrange(2**32))
            failures += len(outcome.failed)
            print(
                f"| {outcome.run} | {outcome.tier} | {outcome.seed} | {outcome.summary} "
                f"| {outcome.seconds:.0f} s | {'; '.join(outcome.failed) or '-'} |",
                flush=True,
            )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
