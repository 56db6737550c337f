"""Figures of one policy's run, the comparison table and the plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.fleet_sim.fleet import Tally


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def jain(values: list[float]) -> float:
    """Jain's fairness index: 1 when all values are equal, 1/n when one takes everything."""
    square_sum = sum(v * v for v in values)
    return sum(values) ** 2 / (len(values) * square_sum) if square_sum else 1.0


@dataclass(frozen=True)
class PolicyResult:
    key: str
    label: str
    jobs: int
    loads_per_1000: float
    downloads_per_1000: float
    loading_share: float
    wait_p50_s: float
    wait_p95_s: float
    wait_max_s: float
    per_customer: dict[str, tuple[float, float, float]]  # p50, p95, max
    jain_mean_wait: float
    jobs_per_gpu_hour: float
    makespan_s: float
    waits: list[float]

    @classmethod
    def of(
        cls, key: str, label: str, tally: Tally, machines: int, makespan_s: float
    ) -> PolicyResult:
        records = [r for r in tally.records.values() if r.started_s is not None]
        waits = [r.started_s - r.submitted_s for r in records if r.started_s is not None]
        customers = sorted({r.job.customer for r in records})
        per_customer = {}
        means = []
        for customer in customers:
            own = [
                r.started_s - r.submitted_s
                for r in records
                if r.job.customer == customer and r.started_s is not None
            ]
            per_customer[customer] = (percentile(own, 0.5), percentile(own, 0.95), max(own))
            means.append(sum(own) / len(own))
        jobs = len(records)
        loads = tally.loads + tally.preloads
        return cls(
            key=key,
            label=label,
            jobs=jobs,
            loads_per_1000=1000 * loads / jobs,
            downloads_per_1000=1000 * tally.downloads / jobs,
            loading_share=tally.loading_s / (machines * makespan_s),
            wait_p50_s=percentile(waits, 0.5),
            wait_p95_s=percentile(waits, 0.95),
            wait_max_s=max(waits),
            per_customer=per_customer,
            jain_mean_wait=jain(means),
            jobs_per_gpu_hour=jobs / (machines * makespan_s / 3600),
            makespan_s=makespan_s,
            waits=waits,
        )


def table(results: list[PolicyResult]) -> str:
    lines = [
        "| Policy | Loads / 1k jobs | Downloads / 1k jobs | GPU time loading | Wait p50 | p95 | "
        "max | Jain (mean wait per customer) | Jobs / GPU-hour |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| ({r.key}) {r.label} | {r.loads_per_1000:.0f} | {r.downloads_per_1000:.0f} | "
            f"{r.loading_share:.1%} | {r.wait_p50_s:.1f} s | {r.wait_p95_s:.1f} s | "
            f"{r.wait_max_s:.1f} s | {r.jain_mean_wait:.3f} | {r.jobs_per_gpu_hour:.1f} |"
        )
    lines += ["", "| Policy | " + " | ".join(
        f"{customer} p50 / p95 / max" for customer in results[0].per_customer
    ) + " |", "|---|" + "---|" * len(results[0].per_customer)]  # fmt: skip
    for r in results:
        cells = [
            f"{p50:.1f} / {p95:.1f} / {top:.1f} s" for p50, p95, top in r.per_customer.values()
        ]
        lines.append(f"| ({r.key}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: list[PolicyResult], folder: Path) -> list[Path]:
    """Wait distributions (CDF) and loads per 1,000 jobs, one PNG each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    cdf_path, loads_path = folder / "fleet_sim_wait_cdf.png", folder / "fleet_sim_loads.png"
    figure, axes = plt.subplots(figsize=(7, 4))
    for r in results:
        ordered = sorted(r.waits)
        axes.plot(ordered, [i / len(ordered) for i in range(1, len(ordered) + 1)], label=r.key)
    axes.set_xscale("symlog", linthresh=1)
    axes.set_xlabel("wait until the job runs (simulated s)")
    axes.set_ylabel("share of jobs")
    axes.legend(title="policy")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(cdf_path, dpi=100)
    plt.close(figure)
    figure, axes = plt.subplots(figsize=(7, 4))
    keys = [r.key for r in results]
    axes.bar(keys, [r.loads_per_1000 for r in results], label="model loads")
    axes.bar(keys, [r.downloads_per_1000 for r in results], label="of which downloads", alpha=0.7)
    axes.set_ylabel("per 1,000 jobs")
    axes.set_xlabel("policy")
    axes.legend()
    figure.tight_layout()
    figure.savefig(loads_path, dpi=100)
    plt.close(figure)
    return [cdf_path, loads_path]
