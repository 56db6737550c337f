from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from tools.slow_first import chunk_sizes, slow_first


def test_chunk_sizes_match_xdists_first_hand_out() -> None:
    assert chunk_sizes(10, 3) == [3, 3, 4]
    assert chunk_sizes(906, 8) == [113, 113, 113, 113, 113, 113, 114, 114]
    assert chunk_sizes(2, 4) == [0, 0, 1, 1]


def test_each_chunk_starts_with_its_slow_tests_and_the_rest_keep_their_order() -> None:
    items = [f"t{index}" for index in range(20)]
    slow = {"t3", "t7", "t19"}
    ordered = slow_first(items, slow.__contains__, workers=4)
    starts = [0, 5, 10, 15]
    assert [ordered[start] for start in starts[:3]] == ["t3", "t7", "t19"]
    assert [item for item in ordered if item not in slow] == [
        item for item in items if item not in slow
    ]


def test_an_undistributed_run_keeps_the_order() -> None:
    items = ["a", "b", "c"]
    assert slow_first(items, lambda item: item == "c", workers=0) == items


@given(
    count=st.integers(0, 60),
    workers=st.integers(2, 9),
    slow=st.sets(st.integers(0, 59), max_size=12),
)
def test_nothing_is_lost_or_repeated(count: int, workers: int, slow: set[int]) -> None:
    items = list(range(count))
    ordered = slow_first(items, slow.__contains__, workers)
    assert sorted(ordered) == items
