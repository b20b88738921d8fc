"""Jobs side by side in threads: results in order, one torch thread per job, a failure
re-raised after cancelling the jobs that report progress."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from rarelearn.threads import CancelledError, ProgressSum, run_side_by_side, side_by_side_threads


def test_results_come_back_in_job_order_from_one_torch_thread_each() -> None:
    def job(k: int):
        def run():
            time.sleep(0.01 * (5 - k))  # finish in reverse order
            return k, torch.get_num_threads(), threading.get_ident()

        return run

    results = run_side_by_side([job(k) for k in range(5)], threads=5)
    assert [r[0] for r in results] == list(range(5))
    assert all(r[1] == 1 for r in results)
    assert len({r[2] for r in results}) > 1


def test_one_thread_runs_jobs_in_order_in_this_thread() -> None:
    order = []
    results = run_side_by_side([lambda k=k: order.append(k) or k for k in range(4)], threads=1)
    assert results == order == [0, 1, 2, 3]


def test_a_failure_is_re_raised_and_cancels_jobs_that_report_progress() -> None:
    progress = ProgressSum(None, [1000, 1])
    steps = []

    def long_job():
        report = progress.reporter(0)
        for step in range(1000):
            time.sleep(0.002)
            report(step)
            steps.append(step)

    def failing_job():
        time.sleep(0.02)
        raise ValueError("reference calculation failed")

    with pytest.raises(ValueError, match="reference calculation failed"):
        run_side_by_side([long_job, failing_job], threads=2, progress=progress)
    assert len(steps) < 1000


def test_progress_sums_the_jobs_reports() -> None:
    seen = []
    progress = ProgressSum(lambda done, total: seen.append((done, total)), [10, 20])
    progress.reporter(0)(4)
    progress.reporter(1)(7)
    assert seen[-1] == (11, 30)
    progress.cancel()
    with pytest.raises(CancelledError):
        progress.reporter(0)(5)


def test_thread_count_is_checked() -> None:
    assert side_by_side_threads(3, 8) == 3
    assert side_by_side_threads(3, 1) == 1
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        side_by_side_threads(3, 0)
