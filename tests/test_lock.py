"""One writer per run folder: a second writer is refused with the holder named and nothing
written; a lock left by a killed process is taken over; a fresh lock from another host is
never taken; read-only commands ignore the lock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rarelearn.lock import LOCK_FILE, STALE_AFTER_S, CampaignLock, CampaignLockedError

TESTS = Path(__file__).parent

HOLD = """
import sys, time
from rarelearn.lock import CampaignLock
lock = CampaignLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def _hold(run_dir: Path) -> subprocess.Popen:
    """A real second process that takes the lock and keeps it until killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "locked"
    return process


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_a_second_campaign_is_refused_naming_the_holder_and_writes_nothing(tmp_path) -> None:
    from test_campaign import _env, _write_config

    run_dir = tmp_path / "run"
    holder = _hold(run_dir)
    try:
        before = sorted(p.name for p in run_dir.iterdir())
        config = str(_write_config(tmp_path))
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "rarelearn.cli",
                "--quiet",
                "run",
                "--config",
                config,
                "--out",
                str(run_dir),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=_env(0.0),  # the config's labeler is importable, as for a user
        )
        assert result.returncode == 2, result.stderr
        assert f"process {holder.pid} on host {socket.gethostname()} since" in result.stderr
        assert "Traceback" not in result.stderr
        assert sorted(p.name for p in run_dir.iterdir()) == before == [LOCK_FILE]
    finally:
        _kill(holder)


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path) -> None:
    first = _hold(tmp_path)
    _kill(first)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == first.pid
    second = _hold(tmp_path)
    try:
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == second.pid
        with pytest.raises(CampaignLockedError, match=f"process {second.pid}"):
            CampaignLock(tmp_path).acquire()
    finally:
        _kill(second)
        assert second.stderr is not None
        assert f"left by process {first.pid}" in second.stderr.read()


def _foreign_lock(run_dir: Path, heartbeat_age_s: float) -> None:
    now = time.time()
    holder = {"host": "elsewhere", "pid": 4242, "since": now - 3600}
    holder["heartbeat"] = now - heartbeat_age_s
    (run_dir / LOCK_FILE).write_text(json.dumps(holder))


def test_a_fresh_lock_from_another_host_is_never_taken(tmp_path) -> None:
    """Network file systems may not carry the flock between hosts: the content decides."""
    _foreign_lock(tmp_path, heartbeat_age_s=5.0)
    with pytest.raises(CampaignLockedError, match=r"host elsewhere.*delete the lock file by hand"):
        CampaignLock(tmp_path).acquire()
    _foreign_lock(tmp_path, heartbeat_age_s=STALE_AFTER_S + 60)
    with CampaignLock(tmp_path):
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
        assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released: no holder


def test_one_process_cannot_hold_a_folder_twice(tmp_path) -> None:
    with CampaignLock(tmp_path), pytest.raises(CampaignLockedError, match=str(os.getpid())):
        CampaignLock(tmp_path).acquire()
    with CampaignLock(tmp_path):
        pass
