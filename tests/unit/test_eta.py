from emp_queue.core.eta import estimate_start


def test_an_idle_matching_worker_starts_the_job_now() -> None:
    estimate = estimate_start(1, idle_workers=2, busy_workers=1, mean_run_s=None, completed=0)
    assert estimate is not None
    assert estimate.in_s == 0.0
    assert "2 matching workers idle" in estimate.basis


def test_later_positions_wait_rounds_of_the_mean_run_time() -> None:
    # 7 ahead, 1 idle takes the first; 6 left for 3 workers: 2 full rounds after the first.
    estimate = estimate_start(7, idle_workers=1, busy_workers=2, mean_run_s=10.0, completed=40)
    assert estimate is not None
    assert estimate.in_s == 5.0 + 2 * 10.0
    assert "7 jobs ahead for 3 matching workers (1 idle)" in estimate.basis
    assert "10.0 s over 40 completed jobs" in estimate.basis


def test_no_estimate_without_workers_or_a_measured_pace() -> None:
    assert estimate_start(0, idle_workers=0, busy_workers=0, mean_run_s=5.0, completed=3) is None
    assert estimate_start(0, idle_workers=0, busy_workers=2, mean_run_s=None, completed=0) is None
