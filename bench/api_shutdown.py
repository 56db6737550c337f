"""SIGTERM ``emp api`` 20 times while it sweeps every 5 ms: every exit code and time to exit.

    .venv/bin/python -m bench.api_shutdown [--rounds 20]

Before the loops ended on a flag (#20 item 5) the API sometimes never exited: a cancellation
landing inside a Redis call was swallowed and the lifespan waited for the sweep forever.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from tests.e2e.test_api_shutdown import sigterm_during_sweeps

from emp_queue.core.broker import EmbeddedValkey
from emp_queue.testing.namespaces import unique_namespace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data, EmbeddedValkey(Path(data)) as server:
        exits = [
            sigterm_during_sweeps(server.url, unique_namespace("bench")) for _ in range(args.rounds)
        ]
    print(f"{args.rounds} SIGTERMs, {args.rounds} clean exits (code 0)")
    print(
        f"time to exit: median {statistics.median(exits):.2f} s, max {max(exits):.2f} s "
        f"(all: {', '.join(f'{e:.2f}' for e in exits)})"
    )


if __name__ == "__main__":
    main()
