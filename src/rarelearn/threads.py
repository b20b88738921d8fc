"""Independent jobs of one process side by side in threads, one torch thread each.

A campaign's NNP work (training the members of a committee, pulling replicas and members)
is many independent jobs that read the same large inputs: the committee's AEVs and
Jacobians (~0.6 MB per frame), its weights, the start states. Threads share them where
processes would copy them, and torch releases the interpreter lock inside its operations, so
two threads keep two cores busy (a committee of 3 trained on 2 cores: 1.9x one core).

Every job runs on exactly one torch thread, so what it computes does not depend on how many
jobs run beside it or on how many cores the machine has: results are bit-identical whatever
`threads` is (tests/test_threads.py, tests/test_committee.py). More jobs than cores share the
cores when they are few (for jobs of equal length that finishes sooner than a pool of one
thread per core, which would leave a core idle while the last job runs alone); many jobs run
one thread per core.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

import torch

T = TypeVar("T")


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op threads (None: leave as is).

    Single-frame evaluation is a chain of tiny kernels; splitting them over threads only adds
    synchronisation, and on a shared machine it is much slower (measured ~10x with busy cores).
    """
    if n is None or n == torch.get_num_threads():
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def side_by_side_threads(n_jobs: int, threads: int | None = None) -> int:
    """How many threads run `n_jobs` jobs: `threads` (at most one per job), or with None
    every job at once when there are fewer than two per core, else one thread per core.

    A few jobs of equal length finish sooner all at once (3 members on 2 cores: 1.8x one
    core, where 2 threads give at most 1.5x); many jobs at once slow each other down (13
    batches of pulls on 2 cores: 0.73 ms per replica step all at once, 0.48 ms two at a time).
    """
    if threads is None:
        cores = available_cores()
        if cores == 1:
            return 1
        return max(1, n_jobs) if n_jobs < 2 * cores else cores
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    return max(1, min(threads, n_jobs))


class CancelledError(Exception):
    """Raised inside a job whose batch was cancelled (another job failed or was interrupted)."""


class ProgressSum:
    """Progress of several jobs (reported from their threads) as one callback over the sum.

    ``reporter(k)`` gives job k's callback ``(done, total)``; it raises `CancelledError` once
    `cancel` is set, so long jobs that report often stop early when the batch is abandoned.
    """

    def __init__(self, progress: Callable[[int, int], None] | None, totals: Sequence[int]) -> None:
        self.progress = progress
        self.totals = list(totals)
        self.done = [0] * len(self.totals)
        self.lock = threading.Lock()
        self.cancelled = threading.Event()

    def reporter(self, job: int) -> Callable[[int, int], None]:
        """Callback for job ``job``."""

        def report(done: int, _total: int = 0) -> None:
            if self.cancelled.is_set():
                raise CancelledError(
                    "cancelled: another job of the batch failed or was interrupted"
                )
            with self.lock:
                self.done[job] = done
                if self.progress is not None:
                    self.progress(sum(self.done), sum(self.totals))

        return report

    def cancel(self) -> None:
        """Make every job stop at its next report."""
        self.cancelled.set()


def run_side_by_side(
    jobs: Sequence[Callable[[], T]],
    threads: int | None = None,
    progress: ProgressSum | None = None,
) -> list[T]:
    """Run independent jobs, each on one torch thread, `side_by_side_threads` at a time;
    results in job order. The first failure (or an interrupt) cancels the jobs that report
    to `progress` and is re-raised once the running jobs have stopped."""
    n_threads = side_by_side_threads(len(jobs), threads)
    with torch_threads(1):
        if n_threads == 1:
            return [job() for job in jobs]

        def run(job: Callable[[], T]) -> T:
            torch.set_num_threads(1)  # per thread: OpenMP's thread count is thread-local
            return job()

        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            futures = [pool.submit(run, job) for job in jobs]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in futures if f in done and f.exception() is not None]
                if failed:
                    raise failed[0].exception()  # type: ignore[misc]
                return [future.result() for future in futures]
            except BaseException:
                if progress is not None:
                    progress.cancel()
                for future in futures:
                    future.cancel()
                raise


__all__ = [
    "CancelledError",
    "ProgressSum",
    "available_cores",
    "run_side_by_side",
    "side_by_side_threads",
]
