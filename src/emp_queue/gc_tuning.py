"""Long-running processes take what they built at start-up out of the garbage collector's way.

A full collection walks every object the collector tracks. In ``emp api`` that is about
100,000 objects from imports and the app itself, and on the benchmark machine each walk took
40-60 ms: a pause for every request in flight, and about a sixth of the CPU under load
(docs/benchmarks.md). ``gc.freeze()`` moves those objects to a permanent generation, so
collections only walk what the process created since. Garbage is collected first, so nothing
unreachable is kept for good.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Call once, when start-up is done and before the process begins its steady work."""
    gc.collect()
    gc.freeze()
