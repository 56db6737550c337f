"""How an Ollama pull's status lines become placement progress and bytes fetched."""

from __future__ import annotations

import pytest

from emp_queue.connectors.ollama_stream import PullProgress
from emp_queue.errors import JobFailedError
from emp_queue.machine.placement_pull import BEFORE_SUCCESS, PullShare


def layer(digest: str, completed: int, total: int) -> dict[str, object]:
    return {"status": f"pulling {digest}", "digest": digest, "total": total, "completed": completed}


def reported(share: PullShare, lines: list[dict[str, object]]) -> list[float]:
    out: list[float] = []
    for line in lines:
        share.add(line)
        if (fraction := share.due()) is not None:
            out.append(round(fraction, 3))
    return out


def test_the_fraction_covers_every_layer_grows_and_reaches_one_only_on_success() -> None:
    share = PullShare(PullProgress("m"), expected_bytes=1000)
    lines = [
        {"status": "pulling manifest"},
        layer("a", 0, 900),
        layer("a", 450, 900),
        layer("a", 900, 900),
        # The second layer appears: the denominator was already the model's size, no drop.
        layer("b", 0, 100),
        layer("b", 100, 100),
        {"status": "verifying sha256 digest"},
        {"status": "writing manifest"},
    ]

    fractions = reported(share, lines)

    assert fractions == [0.45, 0.9]  # 0.99 is less than a step past 0.9
    assert share.fraction == BEFORE_SUCCESS
    assert share.add({"status": "success"})
    assert share.due() == 1.0
    assert share.fetched_bytes == 1000


def test_a_layer_announced_late_never_makes_the_reported_fraction_go_down() -> None:
    # The plan knew no size: the denominator is the layers seen so far.
    share = PullShare(PullProgress("m"), expected_bytes=0)

    fractions = reported(share, [layer("a", 500, 500), layer("b", 0, 500), layer("b", 400, 500)])

    assert fractions == [BEFORE_SUCCESS]
    assert share.fraction == pytest.approx(0.9)
    assert fractions == sorted(fractions)


def test_bytes_left_by_an_earlier_pull_are_not_counted_as_fetched() -> None:
    share = PullShare(PullProgress("m"), expected_bytes=1000)
    for line in (layer("a", 600, 900), layer("a", 900, 900), layer("b", 100, 100)):
        share.add(line)

    assert share.fetched_bytes == 300


def test_an_error_line_is_raised_in_ollamas_words() -> None:
    share = PullShare(PullProgress("no-such"), expected_bytes=0)
    share.add({"status": "pulling manifest"})

    with pytest.raises(JobFailedError, match="pull model manifest: file does not exist"):
        share.add({"error": "pull model manifest: file does not exist"})
