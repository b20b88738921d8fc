"""Executors: order, exactly-once results under worker kills, bounded failures, clear errors.

The Dask tests run a real LocalCluster on loopback (2 worker processes, 1 thread each); the
kill tests SIGKILL a worker's OS process while it is inside a labeling chunk.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from rarelearn.errors import ConfigError, RarelearnError
from rarelearn.executors import (
    DaskExecutor,
    InProcessExecutor,
    LocalProcessExecutor,
    label_parallel,
    make_executor,
)
from rarelearn.labeling import (
    LabelerSpec,
    LabelResult,
    attach_label,
    label_frames,
    make_labeler,
)
from rarelearn.molecules import build_alkane


def _frames(n: int, seed: int = 0) -> list[Atoms]:
    """Rattled ethane and propane, alternating: cheap xTB frames that differ from each other."""
    rng = np.random.default_rng(seed)
    templates = [build_alkane(2), build_alkane(3)]
    frames = []
    for i in range(n):
        atoms = templates[i % 2].copy()
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        frames.append(atoms)
    return frames


class _MarkedCalculator(Calculator):
    """Wraps a calculator; each evaluation leaves a file `<pid>-<uuid>` in `marker_dir` and then
    sleeps `delay_s`, so a test can count evaluations and land a kill mid-chunk."""

    implemented_properties = ("energy", "forces")

    def __init__(self, inner: Calculator, marker_dir: str, delay_s: float) -> None:
        super().__init__()
        self.inner = inner
        self.marker_dir = marker_dir
        self.delay_s = delay_s

    def calculate(
        self, atoms: Atoms | None = None, properties: Any = ("energy",), system_changes=all_changes
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        Path(self.marker_dir, f"{os.getpid()}-{uuid.uuid4().hex}").touch()
        time.sleep(self.delay_s)
        frame = self.atoms.copy()
        frame.calc = self.inner
        self.results = {"energy": frame.get_potential_energy(), "forces": frame.get_forces()}


@dataclass(frozen=True)
class MarkedSpec:
    """A labeler spec whose calculator marks every frame evaluation (see _MarkedCalculator)."""

    inner: LabelerSpec
    marker_dir: str
    delay_s: float = 0.0

    @property
    def name(self) -> str:
        return self.inner.name

    def build(self) -> Calculator:
        return _MarkedCalculator(self.inner.build(), self.marker_dir, self.delay_s)


def _evaluations(marker_dir: Path) -> list[int]:
    """Worker pid of every frame evaluation so far (one entry per evaluation)."""
    return [int(p.name.split("-")[0]) for p in marker_dir.iterdir()]


class _Killer(threading.Thread):
    """Kills (SIGKILL) the worker process that evaluates the first frame, once, mid-chunk."""

    def __init__(self, marker_dir: Path, delay_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.marker_dir = marker_dir
        self.delay_s = delay_s
        self.killed: int | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            pids = _evaluations(self.marker_dir)
            if pids:
                time.sleep(self.delay_s)
                os.kill(pids[0], signal.SIGKILL)
                self.killed = pids[0]
                return
            time.sleep(0.005)


def _square(x: int) -> int:
    return x * x


def _die(_: object) -> None:
    os._exit(3)


_flaky_calls: dict[int, int] = {}


def _fail_first_time(x: int) -> int:
    _flaky_calls[x] = _flaky_calls.get(x, 0) + 1
    if _flaky_calls[x] == 1:
        raise ValueError(f"transient failure on {x}")
    return x


@pytest.fixture(scope="module")
def spec() -> LabelerSpec:
    return make_labeler("GFN2-xTB")


@pytest.fixture(scope="module")
def frames() -> list[Atoms]:
    return _frames(16)


@pytest.fixture(scope="module")
def reference(spec: LabelerSpec, frames: list[Atoms]) -> list[LabelResult]:
    return label_frames(spec, frames)


@pytest.fixture(scope="module")
def dask_executor():
    pytest.importorskip("distributed")
    with DaskExecutor(workers=2, threads_per_worker=1) as executor:
        yield executor


@pytest.fixture(scope="module")
def process_executor():
    with LocalProcessExecutor(2) as executor:
        yield executor


def _assert_same_labels(results: list[LabelResult], reference: list[LabelResult]) -> None:
    """Same indices in the same order, each exactly once, and the same numbers."""
    assert [r.index for r in results] == [r.index for r in reference]
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    np.testing.assert_allclose(
        [r.energy for r in results], [r.energy for r in reference], rtol=0, atol=1e-8
    )
    for got, want in zip(results, reference, strict=True):
        np.testing.assert_allclose(got.forces, want.forces, rtol=0, atol=1e-7)


def test_map_keeps_order_on_every_executor(dask_executor, process_executor) -> None:
    items = list(range(23))
    want = [x * x for x in items]
    assert InProcessExecutor().map(_square, items) == want
    assert process_executor.map(_square, items) == want
    assert dask_executor.map(_square, items) == want
    assert process_executor.submit(_square, 7).result(timeout=30) == 49
    assert dask_executor.submit(_square, 8).result(timeout=30) == 64


def test_inprocess_retries_exceptions_a_bounded_number_of_times() -> None:
    _flaky_calls.clear()
    assert InProcessExecutor().map(_fail_first_time, [1, 2], retries=1) == [1, 2]
    _flaky_calls.clear()
    with pytest.raises(ValueError, match="transient"):
        InProcessExecutor().map(_fail_first_time, [1], retries=0)


@pytest.mark.parametrize("kind", ["inprocess", "local", "dask"])
def test_label_parallel_equals_in_process_labels(
    kind: str, spec, frames, reference, dask_executor, process_executor
) -> None:
    executor = {
        "inprocess": InProcessExecutor(),
        "local": process_executor,
        "dask": dask_executor,
    }[kind]
    results = label_parallel(spec, frames, executor, chunk_size=3)
    _assert_same_labels(results, reference)


@pytest.mark.parametrize("kind", ["local", "dask"])
def test_committee_trains_on_workers_like_in_process(
    kind: str, spec, frames, reference, dask_executor, process_executor
) -> None:
    committee = pytest.importorskip("rarelearn.committee", reason="rarelearn.committee missing")
    from rarelearn.labeling import attach_label
    from rarelearn.potentials.ani import ANISettings

    labeled = [attach_label(a, r) for a, r in zip(frames, reference, strict=True)]
    settings = ANISettings(
        layers={"H": (16,), "C": (16,)},
        default_layers=(16,),
        epochs=3,
        batch_size=8,
        plateau_patience=None,
        threads=1,
    )
    executor = {"local": process_executor, "dask": dask_executor}[kind]
    trained = [
        committee.Committee.train(labeled, n_members=2, settings=settings, seed=5, executor=ex)
        for ex in (executor, InProcessExecutor())
    ]
    remote, local = (c.predict(labeled) for c in trained)
    assert trained[0].splits == trained[1].splits
    assert remote.energies.shape == (2, len(labeled))
    # Members differ from each other (different seeds and splits) ...
    assert not np.allclose(remote.energies[0], remote.energies[1])
    # ... but each equals its in-process twin.
    np.testing.assert_allclose(remote.energies, local.energies, rtol=0, atol=1e-6)
    for got, want in zip(remote.forces, local.forces, strict=True):  # per frame: sizes differ
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_label_parallel_keeps_caller_indices_and_records_failures(
    spec, frames, process_executor, tmp_path: Path
) -> None:
    bad = build_alkane(2)
    bad.positions[1] = bad.positions[0] + [0.2, 0.0, 0.0]  # C-C overlap: a per-frame failure
    batch = [*frames[:5], bad, *frames[5:8]]
    indices = [100 + 3 * i for i in range(len(batch))]
    marked = MarkedSpec(spec, str(tmp_path))
    results = label_parallel(marked, batch, process_executor, chunk_size=4, indices=indices)
    assert [r.index for r in results] == indices
    assert [r.ok for r in results] == [True] * 5 + [False] + [True] * 3
    assert "overlap" in results[5].error
    # Each good frame evaluated once: the failed frame is a result, its chunk is not retried.
    assert len(_evaluations(tmp_path)) == len(batch) - 1


def test_process_pool_survives_a_killed_worker(spec, frames, reference, tmp_path: Path) -> None:
    marked = MarkedSpec(spec, str(tmp_path), delay_s=0.1)
    killer = _Killer(tmp_path)
    with LocalProcessExecutor(2) as executor:
        executor.map(_square, [0, 1])  # start the pool before the clock matters
        killer.start()
        results = label_parallel(marked, frames, executor, chunk_size=4)
        killer.stop.set()
        assert executor.map(_square, [3]) == [9]  # the replacement pool keeps working
    assert killer.killed is not None
    # The killed chunk (and any other in the broken pool) ran again.
    assert len(_evaluations(tmp_path)) > len(frames)
    _assert_same_labels(results, reference)


def test_dask_survives_a_killed_worker(
    spec, frames, reference, dask_executor, tmp_path: Path
) -> None:
    marked = MarkedSpec(spec, str(tmp_path), delay_s=0.1)
    worker_pids = set(dask_executor.client.run(os.getpid).values())
    killer = _Killer(tmp_path)
    killer.start()
    results = label_parallel(marked, frames, dask_executor, chunk_size=4)
    killer.stop.set()
    assert killer.killed in worker_pids
    assert len(_evaluations(tmp_path)) > len(frames)
    _assert_same_labels(results, reference)


def _raise_os_error(x: int) -> None:
    raise OSError(f"reference program not found for {x}")


def test_dask_task_errors_are_not_a_lost_scheduler(dask_executor) -> None:
    """A task that raises OSError (or a timeout) on a live scheduler keeps its own error;
    `SchedulerLostError` is for a scheduler that is gone."""
    with pytest.raises(OSError, match="reference program not found for 1"):
        dask_executor.map(_raise_os_error, [1], retries=0)
    with pytest.raises(OSError, match="reference program not found for 2"):
        dask_executor.submit(_raise_os_error, 2).result(timeout=30)
    assert dask_executor.map(_square, [4]) == [16]


def test_process_pool_gives_up_on_a_task_that_always_kills_its_worker() -> None:
    start = time.monotonic()
    with (
        LocalProcessExecutor(1) as executor,
        pytest.raises(RarelearnError, match="lost its worker process 2 times"),
    ):
        executor.map(_die, [0], retries=1)
    assert time.monotonic() - start < 30


def test_dask_gives_up_on_a_task_that_kills_its_workers() -> None:
    dask = pytest.importorskip("dask")
    start = time.monotonic()
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        DaskExecutor(workers=1) as executor,
        pytest.raises(RarelearnError, match="killed every Dask worker"),
    ):
        executor.map(_die, [0])
    assert time.monotonic() - start < 60


def test_unreachable_scheduler_is_a_clear_error_in_bounded_time() -> None:
    pytest.importorskip("distributed")
    start = time.monotonic()
    with pytest.raises(RarelearnError, match=r"cannot reach the Dask scheduler at tcp://127"):
        make_executor("dask", address="tcp://127.0.0.1:1", connect_timeout_s=2)
    assert time.monotonic() - start < 10


def test_missing_dask_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(RarelearnError, match=r"rarelearn\[dask\]"):
        make_executor("dask")


def test_make_executor_validates_its_arguments() -> None:
    assert isinstance(make_executor("inprocess"), InProcessExecutor)
    with make_executor("local", workers=2) as executor:
        assert isinstance(executor, LocalProcessExecutor)
        assert executor.workers == 2
    with pytest.raises(ConfigError, match="unknown executor"):
        make_executor("threads")
    with pytest.raises(ConfigError, match="needs executor kind 'dask'"):
        make_executor("local", address="tcp://127.0.0.1:8786")
    with pytest.raises(ConfigError, match="fork"):
        LocalProcessExecutor(2, start_method="fork")


def _marked_call(args: tuple[Any, Any, str]) -> Any:
    """Leave `<pid>-<uuid>` in the marker folder, then run the task (a member's training)."""
    fn, item, marker_dir = args
    Path(marker_dir, f"{os.getpid()}-{uuid.uuid4().hex}").touch()
    return fn(item)


class _MarkingExecutor:
    """An executor whose tasks mark the worker they run on, so a test can kill it mid-task."""

    def __init__(self, inner: LocalProcessExecutor, marker_dir: Path) -> None:
        self.inner = inner
        self.marker_dir = str(marker_dir)

    def map(self, fn, items):
        return self.inner.map(_marked_call, [(fn, item, self.marker_dir) for item in items])


@pytest.mark.slow  # kills a worker mid-fit; executor retries are covered by the cheaper label tests
def test_member_training_survives_a_killed_worker(tmp_path: Path) -> None:
    """`committee.parallel`: a worker SIGKILLed while it trains a member is replaced, the
    member is trained again, and the committee is the one trained in this process, bit for
    bit (features per frame and one torch thread per member on both paths)."""
    import torch

    from rarelearn.committee import Committee
    from rarelearn.potentials import ANISettings

    raw = [a for a in _frames(80, seed=3) if len(a) == 11]  # 40 propanes
    labels = label_frames(make_labeler("GFN2-xTB"), raw)
    propane = [attach_label(a, r) for a, r in zip(raw, labels, strict=True)]
    settings = ANISettings(epochs=150)  # ~3 s per member: the kill lands mid-training
    killer = _Killer(tmp_path, delay_s=0.5)
    with LocalProcessExecutor(2) as executor:
        executor.map(_square, [0, 1])
        killer.start()
        remote = Committee.train(
            propane, 2, settings, seed=1, executor=_MarkingExecutor(executor, tmp_path)
        )
        killer.stop.set()
    assert killer.killed is not None
    assert len(_evaluations(tmp_path)) > 2  # the killed member's task ran again
    local = Committee.train(propane, 2, settings, seed=1)
    assert remote.metrics == local.metrics
    for a, b in zip(remote.members, local.members, strict=True):
        sa, sb = a.networks.state_dict(), b.networks.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_local_workers_end_when_the_coordinator_is_killed(tmp_path) -> None:
    """SIGKILL of the process that started the pool ends its workers within seconds (their
    parent is the forkserver, so only the watchdog of `_init_worker` can tell)."""
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "worker.pid"
    script = (
        "import os\n"
        "from rarelearn.executors import LocalProcessExecutor\n"
        "LocalProcessExecutor(1).map(os.system, "
        f"['echo $PPID > {pid_file}; sleep 30'])\n"
    )
    coordinator = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.2)
        worker = int(pid_file.read_text())
        os.kill(worker, 0)  # alive while the coordinator is
        coordinator.send_signal(signal.SIGKILL)
        coordinator.wait()
        deadline = time.monotonic() + 15
        while True:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, "the worker outlived its coordinator"
            time.sleep(0.2)
    finally:
        coordinator.kill()
