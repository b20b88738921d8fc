"""Where work runs: in this process, in local worker processes, or on a Dask cluster.

One small interface (`Executor`) with three implementations, so the campaign can label frames
and train committee members the same way on a laptop and on a cluster. Only picklable things
travel to workers: module-level functions, labeler specs, frames as `ase.Atoms`. Results come
back to the coordinating process, which alone writes the campaign store; workers never touch it.

Faults: a worker that dies mid-task loses nothing. The process pool resubmits the tasks of a
broken pool to a fresh pool, Dask reschedules them on another worker; each task is retried a
bounded number of times, and `map` returns exactly one result per item, in order. A lost Dask
scheduler is different: its tasks are gone, so the Dask executor stops with one
`SchedulerLostError` (within `SCHEDULER_TIMEOUT_S`) instead of hanging on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Protocol, Self

from rarelearn.errors import ConfigError, RarelearnError

if TYPE_CHECKING:
    import ase

    from rarelearn.labeling import LabelerSpec, LabelResult

__all__ = [
    "DEFAULT_RETRIES",
    "SCHEDULER_TIMEOUT_S",
    "DaskExecutor",
    "Executor",
    "InProcessExecutor",
    "LocalProcessExecutor",
    "ResultFuture",
    "SchedulerLostError",
    "label_parallel",
    "make_executor",
]

DEFAULT_RETRIES = 2
"""Extra attempts a task gets after a lost worker or an exception, before `map` gives up."""

SCHEDULER_TIMEOUT_S = 20.0
"""Seconds a Dask scheduler may go without answering while tasks wait before it counts as lost.

A killed scheduler closes its connections and is noticed at once; this bounds the other case,
a scheduler (or its node, or the network to it) that stops answering without closing anything.
"""

_SCHEDULER_CHECK_S = 5.0
"""While Dask tasks run, the scheduler is asked whether it is alive this often."""

_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_MISSING = object()


class ResultFuture(Protocol):
    """What `Executor.submit` returns: a handle whose `result()` blocks for the value."""

    def result(self, timeout: float | None = None) -> Any: ...


class Executor(ABC):
    """Runs module-level functions on picklable items somewhere; use as a context manager."""

    @property
    @abstractmethod
    def workers(self) -> int:
        """Number of tasks that can run at the same time (used to size chunks)."""

    @abstractmethod
    def map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], *, retries: int = DEFAULT_RETRIES
    ) -> list[Any]:
        """Return `[fn(item) for item in items]`, computed by the workers, in input order.

        A task whose worker died or that raised is run again, at most `retries` more times;
        after that the exception propagates (lost workers as `RarelearnError`).
        """

    @abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> ResultFuture:
        """Start `fn(*args, **kwargs)` on a worker now and return a future (no retries)."""

    @abstractmethod
    def close(self) -> None:
        """Release workers and connections; the executor cannot be used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class InProcessExecutor(Executor):
    """Runs every task in the calling process, one after the other (tests, debugging)."""

    @property
    def workers(self) -> int:
        return 1

    def map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], *, retries: int = DEFAULT_RETRIES
    ) -> list[Any]:
        results = []
        for item in items:
            for attempt in range(retries + 1):
                try:
                    results.append(fn(item))
                    break
                except Exception:
                    if attempt == retries:
                        raise
        return results

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def close(self) -> None:
        """Nothing to release: tasks ran in this process."""


def _init_worker(threads: int | None, coordinator: int) -> None:
    """Worker initializer: cap OpenMP/BLAS threads before any numeric library is imported,
    and end the worker when the process that started the pool is gone."""
    if threads is not None:
        for name in _THREAD_ENV:
            os.environ[name] = str(threads)
    threading.Thread(target=_exit_with, args=(coordinator,), daemon=True).start()


def _exit_with(coordinator: int, every_s: float = 2.0) -> None:
    """Exit when process `coordinator` no longer exists.

    A worker's parent is the forkserver, not the coordinator, so the OS's parent-death signal
    cannot tell it; without this, a campaign killed with SIGTERM or SIGKILL left its workers
    computing on until they finished (measured: minutes of both cores after a study was killed).
    """
    while True:
        time.sleep(every_s)
        try:
            os.kill(coordinator, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # the pid now belongs to another user's process
            os._exit(1)


def _default_start_method() -> str:
    # Forking a process that has imported torch (or holds OpenMP threads) can deadlock;
    # forkserver and spawn start clean interpreters.
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class LocalProcessExecutor(Executor):
    """A pool of local worker processes (spawn or forkserver, never fork).

    The pool is started on first use and kept warm between calls. When a worker dies the whole
    pool is broken; `map` then starts a fresh pool and resubmits every unfinished task. The
    pool cannot tell which task killed it, so each unfinished task counts one attempt.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        start_method: str | None = None,
        threads_per_worker: int | None = 1,
    ) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"executor workers must be >= 1, got {workers}")
        method = start_method or _default_start_method()
        if method == "fork":
            raise ConfigError(
                "the 'fork' start method is unsafe with torch; use spawn or forkserver"
            )
        self._workers = workers or os.cpu_count() or 1
        self._context = multiprocessing.get_context(method)
        self._threads = threads_per_worker
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False

    @property
    def workers(self) -> int:
        return self._workers

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._closed:
            raise RarelearnError("this executor has been closed")
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=self._context,
                initializer=_init_worker,
                initargs=(self._threads, os.getpid()),
            )
        return self._pool

    def _drop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], *, retries: int = DEFAULT_RETRIES
    ) -> list[Any]:
        items = list(items)
        results: list[Any] = [_MISSING] * len(items)
        attempts = [0] * len(items)
        pending = list(range(len(items)))
        while pending:
            pool = self._get_pool()
            try:
                futures = {pool.submit(fn, items[i]): i for i in pending}
            except BrokenProcessPool:
                self._drop_pool()
                continue
            wait(futures)
            pending, broken, give_up = [], False, None
            for future, i in futures.items():
                exc = future.exception()
                if exc is None:
                    results[i] = future.result()
                    continue
                broken = broken or isinstance(exc, BrokenProcessPool)
                attempts[i] += 1
                if attempts[i] > retries:
                    give_up = give_up or (i, exc)
                pending.append(i)
            if broken:
                self._drop_pool()
            if give_up is not None:
                i, exc = give_up
                if isinstance(exc, BrokenProcessPool):
                    raise RarelearnError(
                        f"task {i} lost its worker process {attempts[i]} times; giving up"
                    ) from exc
                raise exc
            pending.sort()
        return results

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        try:
            return self._get_pool().submit(fn, *args, **kwargs)
        except BrokenProcessPool:
            self._drop_pool()
            return self._get_pool().submit(fn, *args, **kwargs)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._closed = True


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise RarelearnError(
            "the Dask executor needs dask.distributed: pip install 'rarelearn[dask]'"
        ) from exc
    return distributed


class SchedulerLostError(RarelearnError):
    """The Dask scheduler went away while this process used it; its tasks are lost.

    Everything finished before is kept (a campaign stores labels and replicas as they
    arrive), so the remedy is to start the scheduler again and rerun the same command.
    """


@contextlib.contextmanager
def _quiet_distributed() -> Iterator[None]:
    """Silence distributed's client logs (a reconnect attempt cancelled by `close()` is logged
    with a traceback) while an executor whose scheduler is lost shuts down."""
    loggers = [logging.getLogger(name) for name in ("distributed.client", "distributed.utils")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _unfinished(futures: list[Any]) -> int:
    """Dask futures without a result yet (pending, failed or cancelled)."""
    return sum(future.status != "finished" for future in futures)


class _DaskFuture:
    """`DaskExecutor.submit`'s handle: `result()` waits like `map` (a lost scheduler raises
    `SchedulerLostError` instead of hanging)."""

    def __init__(self, executor: DaskExecutor, future: Any) -> None:
        self._executor = executor
        self.future = future

    def result(self, timeout: float | None = None) -> Any:
        self._executor._wait([self.future], timeout)
        try:
            return self.future.result()
        except (asyncio.CancelledError, CancelledError, OSError, TimeoutError) as exc:
            self._executor._raise_if_lost(exc, 1)
            raise


class DaskExecutor(Executor):
    """Tasks on a Dask cluster: an existing scheduler at `address`, or a LocalCluster.

    With an address (`tcp://host:8786`) the executor connects to a scheduler started by hand
    or by dask-jobqueue; an unreachable scheduler raises `RarelearnError` after
    `connect_timeout_s`. Without one it starts a LocalCluster of `workers` processes with one
    thread each on loopback (dashboard on a free loopback port, see `client.dashboard_link`),
    and shuts it down on `close()`. A worker lost mid-task makes the
    scheduler run the task elsewhere (up to `distributed.scheduler.allowed-failures` times);
    `retries` re-runs tasks that raised. A scheduler lost mid-task (killed, or silent for
    `scheduler_timeout_s`) raises `SchedulerLostError` naming its address.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        connect_timeout_s: float = 10.0,
        threads_per_worker: int = 1,
        scheduler_timeout_s: float = SCHEDULER_TIMEOUT_S,
    ) -> None:
        distributed = _import_distributed()
        self._cluster = None
        self._scheduler_timeout_s = scheduler_timeout_s
        self._lost = False
        if address is None:
            self._cluster = distributed.LocalCluster(
                n_workers=workers or os.cpu_count() or 1,
                threads_per_worker=threads_per_worker,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
            )
            target: Any = self._cluster
        else:
            target = address
        try:
            self._client = distributed.Client(target, timeout=connect_timeout_s)
        except (OSError, TimeoutError) as exc:
            if self._cluster is not None:
                self._cluster.close()
            raise RarelearnError(
                f"cannot reach the Dask scheduler at {address} within {connect_timeout_s:g} s "
                f"({type(exc).__name__}: {exc}); is `dask scheduler` running there?"
            ) from exc
        self.address: str = self._client.scheduler.address

    @property
    def client(self) -> Any:
        """The `distributed.Client`, for what this interface does not cover."""
        return self._client

    @property
    def workers(self) -> int:
        info = self._identity(0)
        return max(1, sum(w.get("nthreads", 1) for w in info["workers"].values()))

    # ------------------------------------------------------------ scheduler loss
    def _lost_error(self, detail: str, pending: int) -> SchedulerLostError:
        """The one message a lost scheduler gives: where it was, what is kept, what to do."""
        self._lost = True
        waiting = f" with {pending} task{'s' if pending != 1 else ''} unfinished" if pending else ""
        return SchedulerLostError(
            f"lost the Dask scheduler at {self.address}{waiting} ({detail}). "
            "Labels and reference replicas computed before are kept in the campaign's store "
            "and run folder; once the scheduler (and its workers) is running again, rerun the "
            "same command to continue the campaign."
        )

    def _check_connected(self, pending: int) -> None:
        """`SchedulerLostError` if the client has lost its scheduler connection (it is then
        reconnecting or closed; submitting would block for the reconnect window)."""
        status = self._client.status
        if self._lost or status != "running":
            raise self._lost_error(f"connection closed; client status {status!r}", pending)

    def _identity(self, pending: int) -> dict[str, Any]:
        """The scheduler's `identity` (workers included), or `SchedulerLostError` when the
        client has lost its connection or the scheduler does not answer in time."""
        self._check_connected(pending)
        try:
            return self._client.sync(
                self._client.scheduler.identity,
                n_workers=-1,
                callback_timeout=self._scheduler_timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            raise self._lost_error(
                f"no answer within {self._scheduler_timeout_s:g} s: {type(exc).__name__}", pending
            ) from exc

    def _raise_if_lost(self, exc: BaseException, pending: int) -> None:
        """Turn `exc` into `SchedulerLostError` when the scheduler is gone; else return."""
        reasons = {getattr(exc, "reason", None)}
        reasons.update(g.reason for g in getattr(exc, "error_groups", ()))
        if "scheduler-connection-lost" in reasons:
            raise self._lost_error("connection closed", pending) from exc
        self._identity(pending)

    def _wait(self, futures: list[Any], timeout: float | None = None) -> None:
        """Wait for `futures`, asking the scheduler every `_SCHEDULER_CHECK_S` (at most
        `scheduler_timeout_s`) whether it is alive; `TimeoutError` after `timeout`."""
        distributed = _import_distributed()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = min(_SCHEDULER_CHECK_S, self._scheduler_timeout_s)
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            try:
                with self._client.as_current():
                    distributed.wait(futures, timeout=step)
                return
            except TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
            except CancelledError as exc:
                self._raise_if_lost(exc, _unfinished(futures))
                return
            self._identity(_unfinished(futures))

    # ---------------------------------------------------------------- interface
    def map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], *, retries: int = DEFAULT_RETRIES
    ) -> list[Any]:
        from distributed.scheduler import KilledWorker

        items = list(items)
        if not items:
            return []
        self._check_connected(len(items))
        futures = self._client.map(fn, items, retries=retries, pure=False)
        try:
            self._wait(futures)
            return self._client.gather(futures)
        except KilledWorker as exc:
            raise RarelearnError(
                f"a task killed every Dask worker it ran on; giving up ({exc})"
            ) from exc
        except (asyncio.CancelledError, CancelledError, OSError, TimeoutError) as exc:
            self._raise_if_lost(exc, _unfinished(futures))
            raise
        finally:
            for future in futures:
                future.release()

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> ResultFuture:
        self._check_connected(1)
        return _DaskFuture(self, self._client.submit(fn, *args, pure=False, **kwargs))

    def close(self) -> None:
        with _quiet_distributed() if self._lost else contextlib.nullcontext():
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()


_KINDS = {
    "inprocess": "inprocess",
    "serial": "inprocess",
    "local": "local",
    "processes": "local",
    "dask": "dask",
}


def make_executor(
    kind: str = "local",
    workers: int | None = None,
    address: str | None = None,
    connect_timeout_s: float = 10,
) -> Executor:
    """Build an executor by name: `inprocess`, `local` (process pool) or `dask`.

    `workers` defaults to the number of CPU cores; `address` (Dask only) is a running
    scheduler, without it a LocalCluster is started.
    """
    canonical = _KINDS.get(kind.lower())
    if canonical is None:
        raise ConfigError(f"unknown executor {kind!r}; choose one of inprocess, local, dask")
    if address is not None and canonical != "dask":
        raise ConfigError(f"executor address {address!r} needs executor kind 'dask', not {kind!r}")
    if canonical == "inprocess":
        return InProcessExecutor()
    if canonical == "local":
        return LocalProcessExecutor(workers)
    return DaskExecutor(address, workers=workers, connect_timeout_s=connect_timeout_s)


def _label_chunk(task: tuple[LabelerSpec, list[ase.Atoms], list[int]]) -> list[LabelResult]:
    """Worker side of `label_parallel`: build the calculator once, label one chunk."""
    from rarelearn.labeling import label_frames

    spec, frames, indices = task
    return label_frames(spec, frames, indices)


def label_parallel(
    spec: LabelerSpec,
    frames: Sequence[ase.Atoms],
    executor: Executor,
    chunk_size: int = 32,
    *,
    indices: Sequence[int] | None = None,
    retries: int = DEFAULT_RETRIES,
) -> list[LabelResult]:
    """Label `frames` with `spec` on the executor's workers, in chunks of <= `chunk_size`.

    Chunks amortise the per-task overhead (~1 ms) and the calculator set-up; they shrink so
    that every worker gets work. Frames travel without their calculators. Results come back
    in input order carrying `indices` (default 0..n-1); per-frame failures are results with
    `error`, not exceptions, so they are never retried.
    """
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    index_list = list(range(len(frames))) if indices is None else [int(i) for i in indices]
    if len(index_list) != len(frames):
        raise ValueError(f"{len(index_list)} indices for {len(frames)} frames")
    if not frames:
        return []
    size = max(1, min(chunk_size, math.ceil(len(frames) / max(1, executor.workers))))
    tasks = [
        (
            spec,
            [atoms.copy() for atoms in frames[start : start + size]],
            index_list[start : start + size],
        )
        for start in range(0, len(frames), size)
    ]
    results: list[LabelResult] = []
    for (_, _, chunk_indices), chunk in zip(
        tasks, executor.map(_label_chunk, tasks, retries=retries), strict=True
    ):
        got = [r.index for r in chunk]
        if got != chunk_indices:
            raise RarelearnError(f"labeling chunk returned indices {got}, expected {chunk_indices}")
        results.extend(chunk)
    return results
