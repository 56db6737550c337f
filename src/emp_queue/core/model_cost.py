"""What a job's models cost before it runs: nothing when loaded, a load from disk, or a
download then a load. Estimated from the model sizes workers report (``ServiceModels.sizes``)
and two rates: disk to GPU memory and source to disk (defaults 2 GB/s and 100 MB/s).
``explain`` shows it; ``GET /api/demand`` uses the same rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from emp_queue.core.matching import JobClass, model_tier
from emp_queue.models import WorkerCapabilities

LOAD_BYTES_PER_S = 2_000_000_000
DOWNLOAD_BYTES_PER_S = 100_000_000


@dataclass(frozen=True)
class ModelCost:
    """What the job's models cost before it runs, on the best placed matching worker."""

    tier: int
    """0 all loaded there, 1 all installed (a load), 2 some to download first."""
    load_s: float | None
    download_s: float | None
    basis: str


def model_cost(
    job_class: JobClass,
    matching: Sequence[WorkerCapabilities],
    *,
    load_bytes_per_s: float = LOAD_BYTES_PER_S,
    download_bytes_per_s: float = DOWNLOAD_BYTES_PER_S,
) -> ModelCost | None:
    """None when the job needs no model or no worker matches."""
    needed = list(job_class.requirements.get("models", []))
    if not needed or not matching:
        return None
    tiers = [model_tier(job_class, caps) for caps in matching]
    tier = min(tiers)
    best = sum(1 for t in tiers if t == tier)
    if tier == 0:
        return ModelCost(0, 0.0, 0.0, f"every model loaded on {best} matching workers")
    held = [caps.models.get(job_class.service) for caps in matching]
    missing = [m for m in needed if not any(h is not None and m in h.loaded for h in held)]
    sizes = [max((h.sizes.get(m, 0) for h in held if h is not None), default=0) for m in missing]
    known = all(sizes)
    load_s = sum(sizes) / load_bytes_per_s if known else None
    download_s = (sum(sizes) / download_bytes_per_s if known else None) if tier == 2 else 0.0
    what = "installed (a load from disk)" if tier == 1 else "to download, then load"
    figures = (
        f"≈ {load_s:.0f} s load" + (f" + {download_s:.0f} s download" if tier == 2 else "")
        if load_s is not None and download_s is not None
        else "size not reported"
    )
    return ModelCost(
        tier,
        load_s,
        download_s,
        f"{', '.join(missing)} {what} on the best of {len(matching)} matching workers "
        f"({best} alike): {figures} (at 2 GB/s load, 100 MB/s download)",
    )
