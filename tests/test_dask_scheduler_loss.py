"""A Dask scheduler lost mid-run: one clear `SchedulerLostError` in bounded time, no hang, and
the same work finishes once a scheduler is back on the same address.

Each test starts its own `dask scheduler` and `dask worker` as subprocesses on loopback (their
own process groups, killed at the end) and SIGKILLs or SIGSTOPs the scheduler while a labeling
chunk is inside a worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rarelearn.errors import RarelearnError
from rarelearn.executors import DaskExecutor, SchedulerLostError, label_parallel
from rarelearn.labeling import LabelResult, label_frames, make_labeler
from test_executors import MarkedSpec, _assert_same_labels, _evaluations, _frames

pytest.importorskip("distributed")

TESTS = Path(__file__).parent
KILLED_BOUND_S = 10.0
"""A killed scheduler closes its sockets: the error must come well inside this."""


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


class LoopbackCluster:
    """`dask scheduler` and `dask worker` subprocesses on 127.0.0.1, each in its own process
    group so that the test can kill exactly them (and the worker's nanny children)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: list[subprocess.Popen] = []
        self.scheduler: subprocess.Popen | None = None
        self.address = ""

    def _spawn(self, args: list[str], log: str, env: dict[str, str]) -> subprocess.Popen:
        with open(self.folder / log, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def start(self, port: int = 0, timeout_s: float = 60.0, **worker_env: str) -> str:
        """Start a scheduler (on `port`, 0: any free one) and one single-threaded worker
        (`worker_env` added to its environment)."""
        info = self.folder / f"scheduler-{len(self.processes)}.json"
        self.scheduler = self._spawn(
            [
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                "127.0.0.1:0",
                "--scheduler-file",
                str(info),
            ],
            "scheduler.log",
            _env(),
        )
        deadline = time.monotonic() + timeout_s
        while not info.is_file() or not info.read_text().strip():
            assert self.scheduler.poll() is None, (self.folder / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        self.address = json.loads(info.read_text())["address"]
        self._spawn(
            [
                "distributed.cli.dask_worker",
                self.address,
                "--nworkers",
                "1",
                "--nthreads",
                "1",
                "--no-dashboard",
            ],
            "worker.log",
            _env(**worker_env),
        )
        return self.address

    def signal_scheduler(self, signum: int) -> None:
        assert self.scheduler is not None
        os.killpg(self.scheduler.pid, signum)

    def stop(self) -> None:
        """SIGKILL every process group this cluster started and reap them."""
        for process in self.processes:
            if process.poll() is None:
                for signum in (signal.SIGCONT, signal.SIGKILL):
                    try:
                        os.killpg(process.pid, signum)
                    except ProcessLookupError:
                        break
            process.wait(timeout=30)
        self.processes.clear()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LoopbackCluster]:
    folder = tmp_path / "cluster"
    folder.mkdir()
    started = LoopbackCluster(folder)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def frames():
    return _frames(8)


@pytest.fixture(scope="module")
def reference(frames) -> list[LabelResult]:
    return label_frames(make_labeler("GFN2-xTB"), frames)


def _connect(address: str, **options: Any) -> DaskExecutor:
    executor = DaskExecutor(address=address, connect_timeout_s=30, **options)
    executor.client.wait_for_workers(1, timeout=60)
    return executor


class Guarded(threading.Thread):
    """Runs `call` in a daemon thread; `outcome()` fails the test (instead of hanging it) when
    the call has not returned after `timeout_s`."""

    def __init__(self, call: Callable[[], Any], timeout_s: float) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.timeout_s = timeout_s
        self.result: dict[str, Any] = {}
        self.start()

    def run(self) -> None:
        try:
            self.result["value"] = self.call()
        except BaseException as exc:
            self.result["error"] = exc
        self.result["at"] = time.monotonic()

    def outcome(self) -> dict[str, Any]:
        self.join(self.timeout_s)
        assert not self.is_alive(), f"still waiting after {self.timeout_s} s"
        return self.result


def _lose_scheduler_mid_labeling(
    cluster: LoopbackCluster,
    executor: DaskExecutor,
    frames,
    marker_dir: Path,
    signum: int = signal.SIGKILL,
    timeout_s: float = 60.0,
) -> tuple[dict[str, Any], float]:
    """Label slowly on `executor`, send `signum` to the scheduler once a worker is inside a
    chunk; return the outcome of `label_parallel` and the time of the signal."""
    marker_dir.mkdir()
    spec = MarkedSpec(make_labeler("GFN2-xTB"), str(marker_dir), delay_s=0.5)
    labeling = Guarded(lambda: label_parallel(spec, frames, executor, chunk_size=2), timeout_s)
    deadline = time.monotonic() + 60
    while not _evaluations(marker_dir):
        assert time.monotonic() < deadline, "no labeling chunk started"
        time.sleep(0.01)
    cluster.signal_scheduler(signum)
    signalled_at = time.monotonic()
    return labeling.outcome(), signalled_at


def test_a_killed_scheduler_stops_labeling_with_one_clear_error(
    cluster: LoopbackCluster, frames, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    address = cluster.start()
    executor = _connect(address)
    outcome, killed_at = _lose_scheduler_mid_labeling(
        cluster, executor, frames, tmp_path / "marks", timeout_s=KILLED_BOUND_S + 30
    )
    error = outcome.get("error")
    assert isinstance(error, SchedulerLostError), repr(error)
    assert isinstance(error, RarelearnError)
    message = str(error)
    assert f"lost the Dask scheduler at {address}" in message
    assert "kept in the campaign's store" in message
    assert "rerun the same command" in message
    assert 0 < outcome["at"] - killed_at < KILLED_BOUND_S
    # Later calls fail at once with the same message instead of waiting to reconnect.
    start = time.monotonic()
    with pytest.raises(SchedulerLostError, match=address):
        _ = executor.workers
    with pytest.raises(SchedulerLostError, match=address):
        executor.submit(sum, [1, 2])
    assert time.monotonic() - start < 1.0
    executor.close()
    # No traceback from distributed's logs: the CLI shows the one message.
    assert "Traceback" not in capfd.readouterr().err


def test_a_frozen_scheduler_is_lost_after_the_timeout(
    cluster: LoopbackCluster, frames, tmp_path: Path
) -> None:
    """SIGSTOP: nothing closes, the scheduler just stops answering (a lost node, a cut network);
    the executor notices within `scheduler_timeout_s` plus one check interval."""
    address = cluster.start()
    executor = _connect(address, scheduler_timeout_s=2.0)
    outcome, stopped_at = _lose_scheduler_mid_labeling(
        cluster, executor, frames, tmp_path / "marks", signal.SIGSTOP, timeout_s=30
    )
    error = outcome.get("error")
    assert isinstance(error, SchedulerLostError), repr(error)
    assert address in str(error)
    assert "no answer within 2 s" in str(error)
    assert 2.0 <= outcome["at"] - stopped_at < 2 * 2.0 + 2
    executor.close()


def test_rerun_after_the_scheduler_is_back_gives_the_same_labels(
    cluster: LoopbackCluster, frames, reference, tmp_path: Path
) -> None:
    address = cluster.start()
    executor = _connect(address)
    outcome, _ = _lose_scheduler_mid_labeling(cluster, executor, frames, tmp_path / "marks")
    assert isinstance(outcome.get("error"), SchedulerLostError), repr(outcome.get("error"))
    executor.close()
    cluster.stop()  # the old worker too: a restarted scheduler gets fresh workers

    port = int(address.rsplit(":", 1)[1])
    assert cluster.start(port=port) == address
    with _connect(address) as again:
        outcome = Guarded(
            lambda: label_parallel(make_labeler("GFN2-xTB"), frames, again, chunk_size=2), 120
        ).outcome()
    assert "error" not in outcome, repr(outcome.get("error"))
    _assert_same_labels(outcome["value"], reference)


@pytest.mark.slow
def test_campaign_stops_with_exit_2_and_the_rerun_matches_an_uninterrupted_run(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    """`rarelearn run` on Dask: the scheduler is SIGKILLed while iteration 0 labels; the command
    exits 2 with the one message, and once a scheduler is back on the same address the same
    command finishes the campaign with the summary of an uninterrupted in-process run."""
    from test_campaign import TINY, _comparable, _labels_stored, _run_cli, _wait_for

    (tmp_path / "plain.toml").write_text(TINY)
    plain = _run_cli(
        ["run", "--config", str(tmp_path / "plain.toml"), "--out", str(tmp_path / "a")]
    )
    output, _ = plain.communicate(timeout=600)
    assert plain.returncode == 0, output

    address = cluster.start(RARELEARN_TEST_LABEL_DELAY="0.3")
    on_dask = TINY.replace('kind = "inprocess"', f'kind = "dask"\naddress = "{address}"')
    (tmp_path / "dask.toml").write_text(on_dask)
    run_dir = tmp_path / "b"
    command = ["run", "--config", str(tmp_path / "dask.toml"), "--out", str(run_dir)]
    process = _run_cli(command, delay=0.3)
    assert _wait_for(process, lambda: _labels_stored(run_dir, "iteration000") > 0)
    cluster.signal_scheduler(signal.SIGKILL)
    killed_at = time.monotonic()
    output, _ = process.communicate(timeout=120)
    assert time.monotonic() - killed_at < KILLED_BOUND_S + 10  # + the interpreter's exit
    assert process.returncode == 2, output
    assert f"rarelearn: error: lost the Dask scheduler at {address}" in output
    assert "Traceback" not in output
    labeled_before = _labels_stored(run_dir, "iteration000")
    assert labeled_before > 0

    cluster.stop()
    assert cluster.start(port=int(address.rsplit(":", 1)[1])) == address
    process = _run_cli(command)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    resumed = json.loads((run_dir / "summary.json").read_text())
    uninterrupted = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert _comparable(resumed) == _comparable(uninterrupted)
