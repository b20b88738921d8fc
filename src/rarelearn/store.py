"""The campaign's labeled frames, with provenance, in an ASE database (SQLite or PostgreSQL).

Only the coordinating process writes here. Every row carries ``campaign`` (so several campaigns
can share one PostgreSQL database) and a ``batch``/``task`` pair naming the unit of work that
produced it, so a resumed campaign can tell which labels are already stored and never stores a
label twice.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db import connect

from rarelearn.errors import RarelearnError
from rarelearn.labeling import LabelResult
from rarelearn.runfolder import damaged

SOURCES = ("equilibrium", "reference_smd", "active", "augmented")
_UID_STRIDE = 1_000_000


def uid(stage: int, task: int) -> int:
    """Deterministic frame id: stage 0 equilibrium, 1 reference SMD, i + 2 AL iteration i.

    Unlike database row ids it does not depend on insertion order or on the database engine,
    so splits and training order are the same after a resume or on PostgreSQL.
    """
    if not 0 <= task < _UID_STRIDE:
        raise ValueError(f"task {task} out of range for a uid")
    return stage * _UID_STRIDE + task


_PASSWORD_VARIABLES = ("RARELEARN_DB_PASSWORD", "PGPASSWORD")


def resolve_database_url(url: str) -> str:
    """Add the password from the environment to a PostgreSQL URL that has none.

    The password never appears in the configuration written to the run folder.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or parts.password is not None:
        return url
    password = next((os.environ[v] for v in _PASSWORD_VARIABLES if os.environ.get(v)), None)
    if password is None or parts.username is None:
        return url
    host = parts.hostname or "localhost"
    netloc = f"{parts.username}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _clean_provenance(provenance: dict[str, Any]) -> dict[str, Any]:
    """Key-value pairs ASE's database accepts: drop None, turn numpy scalars into Python ones."""
    clean = {}
    for key, value in provenance.items():
        if value is None:
            continue
        clean[key] = value.item() if hasattr(value, "item") else value
    return clean


def _create_sqlite(path: Path) -> None:
    """Create an empty ASE database atomically.

    ASE creates its tables one statement at a time outside a transaction, so a kill in between
    leaves a database that ASE can no longer open. Build it beside the target, then rename.
    """
    partial = path.with_name(path.name + ".partial")
    for leftover in (partial, partial.with_name(partial.name + "-journal")):
        leftover.unlink(missing_ok=True)
    connect(partial, type="db").count()  # the first connection creates the schema
    os.replace(partial, path)


class StoreLockedError(RarelearnError):
    """Another coordinator is writing this campaign in the shared database."""


class StoreWriterLock:
    """A PostgreSQL session advisory lock on one campaign of a shared store.

    The server releases it when the session ends (`release`, or the process dies: a killed
    coordinator leaves no stale lock), and it is the same lock whichever machine asks, so two
    coordinators on two hosts never write one campaign. The holder names itself in its
    session's ``application_name`` (host, process id); the session start is its "since".
    """

    def __init__(self, url: str, campaign: str) -> None:
        import psycopg2

        digest = hashlib.blake2b(f"rarelearn:{campaign}".encode(), digest_size=8).digest()
        self.key = int.from_bytes(digest, "big", signed=True)
        name = f"rarelearn {socket.gethostname()} pid {os.getpid()}"[:63]
        self.connection = psycopg2.connect(resolve_database_url(url), application_name=name)
        self.connection.autocommit = True
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
            (granted,) = cursor.fetchone()
            if granted:
                return
            unsigned = self.key & 0xFFFFFFFFFFFFFFFF
            cursor.execute(
                "SELECT a.application_name, a.client_addr, a.backend_start FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
                "AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
                (unsigned >> 32, unsigned & 0xFFFFFFFF),
            )
            holder = cursor.fetchone()
        self.connection.close()
        who = "another session"
        if holder is not None:
            application, address, started = holder
            where = f" from {address}" if address else ""
            who = f"{application or 'a client'}{where} since {started:%Y-%m-%d %H:%M:%S %Z}"
        raise StoreLockedError(
            f"campaign {campaign!r} in the database {url} is being written by {who}; one "
            "coordinator per campaign. Wait for it to finish or stop it (its lock ends with its "
            "session), or give this campaign another name."
        )

    def release(self) -> None:
        """End the session: the server drops the lock."""
        if not self.connection.closed:
            self.connection.close()


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _is_damage(error: Exception, reads: bool) -> bool:
    """Whether a database error means the SQLite file is damaged (truncated, garbled)."""
    if isinstance(error, sqlite3.OperationalError):  # locked, disk I/O: not damage
        return "could not decode" in str(error).lower()  # garbled text
    if isinstance(error, sqlite3.DatabaseError):  # malformed, not a database
        return True
    return reads and isinstance(error, ValueError)  # ASE decoding a garbled row (JSON, blobs)


def _names_damage(reads: bool = True) -> Callable[[_Method], _Method]:
    """A damaged SQLite file becomes a DamagedFileError naming it and what to do; other errors
    (locked, disk I/O, PostgreSQL, a caller's mistake) pass unchanged. ``reads``: the method
    only reads, so a ValueError can only come from decoding what is stored."""

    def decorate(method: _Method) -> _Method:
        @functools.wraps(method)
        def guarded(self: CampaignStore, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except (sqlite3.DatabaseError, ValueError) as exc:
                if self.sqlite_path is None or not _is_damage(exc, reads):
                    raise
                raise damaged(self.sqlite_path, exc) from exc

        return cast(_Method, guarded)

    return decorate


class CampaignStore:
    """Labeled frames of one campaign; a path means SQLite, a ``postgresql://`` URL PostgreSQL."""

    def __init__(self, location: str | Path, campaign: str = "default") -> None:
        self.campaign = campaign
        #: the SQLite file (None for PostgreSQL): named when it turns out to be damaged
        self.sqlite_path: Path | None = None
        text = str(location)
        if "://" in text:
            self.url = text
            try:
                self.db = connect(resolve_database_url(text), type="postgresql")
                self.db.count()
            except Exception as exc:  # psycopg2 missing, server down, bad credentials
                raise RarelearnError(f"cannot open the database {text}: {exc}") from exc
        else:
            path = Path(location)
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                _create_sqlite(path)
            elif path.stat().st_size == 0:  # never written so: _create_sqlite writes the schema
                raise damaged(path, "the file is empty")
            self.url = str(path)
            self.db = connect(path, type="db")
            self.sqlite_path = path
            self.count()  # a malformed file fails here, before any work

    @_names_damage(reads=False)
    def add_labeled(
        self,
        frames: Sequence[Atoms],
        results: Sequence[LabelResult],
        provenance: dict[str, Any] | Sequence[dict[str, Any]],
    ) -> list[int]:
        """Store good labels as labeled frames, failures with their reason; one transaction."""
        if isinstance(provenance, dict):
            provenance = [provenance] * len(frames)
        if not len(frames) == len(results) == len(provenance):
            raise ValueError("frames, results and provenance differ in length")
        ids = []
        with self.db:
            for atoms, result, extra in zip(frames, results, provenance, strict=True):
                row = atoms.copy()
                row.info = {}
                keys = _clean_provenance(
                    {**extra, **(result.metadata or {}), "campaign": self.campaign}
                )
                if result.ok:
                    row.calc = SinglePointCalculator(
                        row, energy=result.energy, forces=result.forces
                    )
                    ids.append(self.db.write(row, failed=False, **keys))
                else:
                    ids.append(self.db.write(row, failed=True, error=result.error, **keys))
        return ids

    def add_frames(
        self, frames: Sequence[Atoms], provenance: dict[str, Any] | Sequence[dict[str, Any]]
    ) -> list[int]:
        """Store frames that already carry their label (a SinglePointCalculator)."""
        results = [
            LabelResult(i, energy=a.get_potential_energy(), forces=a.get_forces())
            for i, a in enumerate(frames)
        ]
        return self.add_labeled(frames, results, provenance)

    def _select(self, **selection: Any) -> Iterable[Any]:
        return self.db.select(campaign=self.campaign, sort="id", **selection)

    @_names_damage()
    def labeled(
        self, sources: Sequence[str] | None = None, max_iteration: int | None = None
    ) -> list[Atoms]:
        """Good labeled frames (optionally of some sources / up to an iteration), in stored order.

        Each frame's ``info`` holds its provenance and ``id``, the stable row id used in splits.
        """
        frames = []
        for row in self._select(failed=False):
            if sources is not None and row.get("source") not in sources:
                continue
            if max_iteration is not None and row.get("iteration", -1) > max_iteration:
                continue
            atoms = row.toatoms()
            atoms.info = {**row.key_value_pairs, "id": row.id}
            frames.append(atoms)
        return frames

    @_names_damage(reads=False)
    def keep_first(self, batch: str, n_tasks: int) -> int:
        """Delete the rows of ``batch`` from task ``n_tasks`` on (a study campaign that trains
        on the first frames of the shared equilibrium MD); how many were deleted."""
        doomed = [row.id for row in self._select(batch=batch) if int(row.get("task", 0)) >= n_tasks]
        if doomed:
            self.db.delete(doomed)
        return len(doomed)

    @_names_damage()
    def task_energies(self, batch: str) -> dict[int, float | None]:
        """Energy of every stored task of ``batch`` (None where its label failed)."""
        return {
            int(row.task): None if row.failed else float(row.energy)
            for row in self._select(batch=batch)
            if "task" in row
        }

    def writer_lock(self) -> StoreWriterLock | None:
        """Lock this campaign for writing in a shared (PostgreSQL) store; None for SQLite,
        whose file lives in the run folder that `rarelearn.lock` already guards."""
        if "://" not in self.url:
            return None
        return StoreWriterLock(self.url, self.campaign)

    @_names_damage()
    def count(self, **selection: Any) -> int:
        """Number of rows of this campaign matching ``selection`` (ASE key=value filters)."""
        return self.db.count(campaign=self.campaign, **selection)

    @_names_damage()
    def tasks_done(self, batch: str) -> set[int]:
        """Task numbers of ``batch`` already stored (good or failed): a resume skips them."""
        return {int(row.task) for row in self._select(batch=batch) if "task" in row}

    @_names_damage()
    def failures(self) -> list[dict[str, Any]]:
        """Provenance and reason of every failed label."""
        return [dict(row.key_value_pairs, id=row.id) for row in self._select(failed=True)]

    @_names_damage()
    def label_counts(self) -> Counter[tuple[str, int, bool]]:
        """Rows of this campaign by (source, iteration, failed), read without their arrays:
        what `rarelearn check` compares with the iterations' records."""
        counts: Counter[tuple[str, int, bool]] = Counter()
        for row in self.db.select(campaign=self.campaign, include_data=False):
            key = (str(row.get("source")), int(row.get("iteration", -1)), bool(row.get("failed")))
            counts[key] += 1
        return counts
