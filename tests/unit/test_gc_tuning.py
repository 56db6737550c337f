"""freeze_startup_heap: what exists at start-up leaves the collector's generations."""

import gc

from emp_queue.gc_tuning import freeze_startup_heap


def test_the_startup_heap_is_frozen_and_later_objects_are_still_collected() -> None:
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1, "objects made after the freeze are collected as usual"
    finally:
        gc.unfreeze()
