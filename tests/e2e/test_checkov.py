"""checkov scans deploy/kubernetes/ offline. It is a program with a venv of its own
(.tools/checkov, installed by ./dev test from tools/checkov-requirements.txt, decision 0021) and
takes seconds to start, so it runs with the e2e tier, not the unit tier."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tests.unit.test_kubernetes import BASE, ROOT

CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"


def test_checkov_finds_nothing(tmp_path: Path) -> None:
    if not CHECKOV.exists():
        pytest.skip("checkov is not installed in .tools/checkov; ./dev test installs it")
    result = subprocess.run(
        [str(CHECKOV), "-d", str(BASE), "--framework", "kubernetes", "--skip-download",
         "--quiet", "--compact", "--output", "json"],
        capture_output=True, text=True, timeout=300, check=False,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "BC_SKIP_MAPPING": "TRUE"},
    )  # fmt: skip
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert (summary["failed"], summary["parsing_errors"]) == (0, 0), failed
    assert summary["passed"] > 100
