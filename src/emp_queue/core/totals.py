"""Fleet-wide job totals: claims, completions, failures, and wait/run time histograms.

The scripts count them in one Redis hash as the events happen (``count_event`` in
``lua/lib.lua``), so every reader sees the same totals, however many API replicas there are
and whenever they started; nothing follows the event stream to count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from emp_queue.core.replies import as_text

# Seconds: from sub-second API calls to hour-long video renders. lib.lua holds them in ms.
TIME_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass
class TimeHistogram:
    """Jobs per bucket (not cumulative; the last counts times above every bound)."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(TIME_BUCKETS) + 1))
    sum_s: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.buckets)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, jobs at most le)`` pairs, ``+Inf`` last, as Prometheus expects them."""
        pairs, running = [], 0
        for bound, jobs in zip((*map(str, TIME_BUCKETS), "+Inf"), self.buckets, strict=True):
            running += jobs
            pairs.append((bound, running))
        return pairs


@dataclass
class FleetTotals:
    claimed: dict[str, int] = field(default_factory=dict)
    completed: dict[str, int] = field(default_factory=dict)
    failed: dict[tuple[str, str], int] = field(default_factory=dict)
    wait: dict[str, TimeHistogram] = field(default_factory=lambda: defaultdict(TimeHistogram))
    run: dict[str, TimeHistogram] = field(default_factory=lambda: defaultdict(TimeHistogram))

    @classmethod
    def from_hash(cls, record: Mapping[bytes | str, bytes | str]) -> FleetTotals:
        totals = cls()
        for raw_field, raw_value in record.items():
            name, _, rest = as_text(raw_field).partition("|")
            value = int(raw_value)
            if name in ("claimed", "completed"):
                getattr(totals, name)[rest] = value
            elif name == "failed":
                service, _, failure_class = rest.rpartition("|")
                totals.failed[(service, failure_class)] = value
            elif name in ("wait", "run"):
                service, _, bucket = rest.rpartition("|")
                getattr(totals, name)[service].buckets[int(bucket) - 1] = value
            elif name in ("wait_ms", "run_ms"):
                getattr(totals, name.removesuffix("_ms"))[rest].sum_s = value / 1000
        return totals
