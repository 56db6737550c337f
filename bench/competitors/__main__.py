"""``python -m bench.competitors``: run the competitor queues one after another, print a table."""

from __future__ import annotations

import argparse
import dataclasses
import json

from rich.console import Console
from rich.table import Table

from bench.competitors import COMPETITORS, ThroughputResult, reset_server, run_competitor


def _systems(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = sorted(set(names) - set(COMPETITORS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown systems {unknown}; choose from {COMPETITORS}")
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.competitors", description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per system")
    parser.add_argument("--systems", type=_systems, default=COMPETITORS, help="comma-separated")
    parser.add_argument(
        "--owned",
        action="store_true",
        help="the server is private to this run: FLUSHALL it before each system",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _table(results: list[ThroughputResult]) -> Table:
    table = Table(title="Competitor throughput (one worker process each)")
    for column in ("system", "jobs", "submit s", "drain s", "jobs/s", "status"):
        table.add_column(column, justify="left" if column in ("system", "status") else "right")
    for r in results:
        ok = r.status == "ok"
        table.add_row(
            r.system,
            str(r.jobs),
            f"{r.submit_s:.2f}" if ok else "-",
            f"{r.drain_s:.2f}" if ok else "-",
            f"{r.jobs_per_s:,.0f}" if ok else "-",
            r.status,
        )
    return table


def main() -> None:
    args = _parser().parse_args()
    results: list[ThroughputResult] = []
    for name in args.systems:
        if args.owned:
            reset_server(args.redis_url, owned=True)
        results.append(run_competitor(name, args.redis_url, args.jobs, args.batch, args.timeout))
    if args.json:
        rows = [{**dataclasses.asdict(r), "jobs_per_s": r.jobs_per_s} for r in results]
        print(json.dumps(rows, indent=2))
    else:
        Console().print(_table(results))


if __name__ == "__main__":
    main()
