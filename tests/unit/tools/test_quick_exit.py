from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tools.quick_exit import install

ROOT = Path(__file__).resolve().parents[3]

WORKER = """
import atexit, sys
from tools.quick_exit import install
assert install({"PYTEST_XDIST_WORKER": "gw0"})
atexit.register(lambda: print("a later handler ran first"))
class Finalized:
    def __del__(self):
        print("finalized")  # module teardown: skipped by the quick exit
kept = Finalized()
print("buffered", end="")
sys.exit(3)
"""


def test_outside_xdist_nothing_is_installed() -> None:
    assert install({}) is False


def test_a_worker_runs_the_other_handlers_flushes_and_skips_the_teardown() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WORKER], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.stdout == "buffereda later handler ran first\n"
    assert done.returncode == 0
