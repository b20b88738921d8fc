"""One writer per run folder: a lock file the campaign holds while it runs.

`RUN/.rarelearn.lock` is locked with `fcntl.flock` by the process that writes the folder, and
holds who that is (host, process id, since when, the command) and a heartbeat the holder
refreshes every `HEARTBEAT_S` seconds. The kernel releases a flock when its process dies (a
kill -9, a crash, a reboot), so a stale lock is taken over without clean-up. Network file
systems do not always carry a flock from one host to another, so the file's content decides
too: a lock that names another host whose heartbeat is fresh (younger than `STALE_AFTER_S`)
is never taken, whatever flock says; a heartbeat that old means its holder is gone.

Only writers lock: ``report``, ``compare`` and ``check`` read a folder while a campaign runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from rarelearn.errors import RarelearnError

LOCK_FILE = ".rarelearn.lock"
#: Seconds between the holder's heartbeats.
HEARTBEAT_S = 30.0
#: A lock naming another host is stale once its heartbeat is this old (four missed beats).
STALE_AFTER_S = 4 * HEARTBEAT_S


#: Run folders this process holds the lock of (resolved paths): where `runfolder.replace`
#: records checksums. Only the one writer of a folder touches its manifest.
_HELD: set[Path] = set()


def held_root(path: str | os.PathLike[str]) -> Path | None:
    """The run folder holding ``path`` whose lock this process holds, if any."""
    resolved = Path(path).resolve()
    return next((folder for folder in resolved.parents if folder in _HELD), None)


class CampaignLockedError(RarelearnError):
    """The run folder is being written by another process."""


def _now() -> float:
    return time.time()


def _utc(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _read_holder(handle: TextIO) -> dict[str, Any] | None:
    handle.seek(0)
    try:
        holder = json.loads(handle.read())
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _describe(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "another process (its lock file holds no readable details)"
    since = holder.get("since")
    when = _utc(since) if isinstance(since, (int, float)) else "an unknown time"
    return (
        f"process {holder.get('pid')} on host {holder.get('host')} since {when} "
        f"({holder.get('command', 'rarelearn')})"
    )


class CampaignLock:
    """The lock of one run folder, held from `acquire` to `release` (or a `with` block)."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.host = socket.gethostname()
        self._handle: TextIO | None = None
        self._since = 0.0
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self) -> CampaignLock:
        """Take the lock or raise `CampaignLockedError` naming its holder (nothing written)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 (kept open: the flock lives with it)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(handle)
            handle.close()
            raise CampaignLockedError(self._refusal(holder)) from None
        holder = _read_holder(handle)
        if (
            holder is not None
            and holder.get("host") != self.host
            and _now() - float(holder.get("heartbeat", 0.0)) < STALE_AFTER_S
        ):
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()
            raise CampaignLockedError(self._refusal(holder))
        if holder is not None and holder.get("pid") is not None:
            print(
                f"rarelearn: taking over the lock of {self.run_dir} left by "
                f"{_describe(holder)}: that process is gone",
                file=sys.stderr,
            )
        self._handle = handle
        _HELD.add(self.run_dir.resolve())
        self._since = _now()
        self._write()
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="lock-heartbeat", daemon=True)
        self._beat.start()
        return self

    def _refusal(self, holder: dict[str, Any] | None) -> str:
        other_host = holder is not None and holder.get("host") != self.host
        advice = (
            "If that host is gone for good, delete the lock file by hand."
            if other_host
            else "Wait for it to finish or stop it; rerunning then resumes the campaign."
        )
        return (
            f"{self.run_dir} is being written by {_describe(holder)}; one writer at a time "
            f"(lock: {self.path}). {advice} Read-only commands (report, compare, check) "
            "work meanwhile."
        )

    def _write(self) -> None:
        assert self._handle is not None
        payload = {
            "host": self.host,
            "pid": os.getpid(),
            "since": self._since,
            "heartbeat": _now(),
            "command": " ".join(["rarelearn", *sys.argv[1:]]),
        }
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(json.dumps(payload))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError, ValueError):
                self._write()

    def release(self) -> None:
        """Give the lock back: the file is emptied (no holder) and unlocked."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if self._handle is not None:
            with contextlib.suppress(OSError, ValueError):
                self._handle.seek(0)
                self._handle.truncate()
                self._handle.flush()
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
            _HELD.discard(self.run_dir.resolve())

    def __enter__(self) -> CampaignLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


__all__ = [
    "HEARTBEAT_S",
    "LOCK_FILE",
    "STALE_AFTER_S",
    "CampaignLock",
    "CampaignLockedError",
    "held_root",
]
