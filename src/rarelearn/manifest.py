"""Checksums of a run folder: ``manifest.json`` records what every written file should hold.

A file that loads without error may still hold garbled bytes (a flipped bit inside an npz,
a trajectory or data.db); only a record of what was written tells it from a result. Every
file a writer puts into a folder it holds the lock of (`rarelearn.lock`) goes through
`replace` (or `replace_folder`): its SHA-256 and size are entered in ``manifest.json``
(relative path -> entry), itself written atomically, and only then is the file moved into
place. A kill between the two leaves the old file under an entry that names it as
``previous``, so a file is intact when it matches the entry's ``sha256`` or ``previous``.

``data.db`` is appended to while a stage runs, so its entry (`record`, at each stage's end)
also holds the number of stored rows, the highest row id and a digest of those rows: later it
is intact when its bytes are the recorded ones, or when rows were added since and the rows up
to the recorded id are unchanged (SQLite's own quick check passing). Flipped bytes with no
row added are always a change; a flip after labels were added is caught when it touches a
recorded row or the database structure.

`verify` compares a folder with its manifest; ``rarelearn check`` reports every file that
changed, and a resume (`require_intact`) refuses to build on one. ``config.toml`` is the
user's to edit: a change is reported, never refused. A folder written before manifests has
none ("no checksums recorded") and gains one at its next write.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarelearn.lock import held_root

MANIFEST = "manifest.json"
#: Files the user may edit on purpose: a changed checksum is reported, not refused.
EDITABLE = ("config.toml",)
_CHUNK = 1 << 20


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(root: Path) -> dict[str, dict[str, Any]] | None:
    """The manifest of run folder ``root`` (None when it has none or it is unreadable)."""
    try:
        value = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    files = value.get("files") if isinstance(value, dict) else None
    return files if isinstance(files, dict) else None


def _write_manifest(root: Path, files: dict[str, dict[str, Any]]) -> None:
    path = root / MANIFEST
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({"version": 1, "files": files}, indent=1, sort_keys=True))
    os.replace(temporary, path)


def _enter(root: Path, entries: dict[str, dict[str, Any]]) -> None:
    files = read_manifest(root) or {}
    for name, entry in entries.items():
        old = files.get(name)
        entry["previous"] = old.get("sha256") if isinstance(old, dict) else None
        files[name] = entry
    _write_manifest(root, files)


def _entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256(path), "size": path.stat().st_size}


def replace(temporary: Path, path: Path) -> None:
    """`os.replace` of a finished temporary file onto ``path``, its checksum recorded first
    when this process holds the lock of a run folder containing ``path``."""
    root = held_root(path)
    if root is not None:
        _enter(root, {Path(path).resolve().relative_to(root).as_posix(): _entry(temporary)})
    os.replace(temporary, path)


def replace_folder(temporary: Path, folder: Path) -> None:
    """Rename a finished temporary folder onto ``folder`` (absent), every file in it recorded
    under its final name first."""
    root = held_root(folder)
    if root is not None:
        target = Path(folder).resolve().relative_to(root)
        _enter(
            root,
            {
                (target / file.relative_to(temporary)).as_posix(): _entry(file)
                for file in sorted(Path(temporary).rglob("*"))
                if file.is_file()
            },
        )
    Path(temporary).rename(folder)


def _rows(path: Path, max_id: int | None = None) -> tuple[int, int, str]:
    """(rows, highest id, digest of the rows up to ``max_id``) of an ASE SQLite database."""
    with closing(
        sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=60)
    ) as db:
        count, highest = db.execute("SELECT count(*), max(id) FROM systems").fetchone()
        limit = highest if max_id is None else max_id
        digest = hashlib.sha256()
        for row in db.execute("SELECT * FROM systems WHERE id <= ? ORDER BY id", (limit or 0,)):
            digest.update(repr(row).encode())
        if max_id is not None:
            (verdict,) = db.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(verdict)
    return int(count), int(highest or 0), digest.hexdigest()


def record(path: Path) -> None:
    """Record a file written in place (``data.db`` at a stage's end) in its run folder's
    manifest; a database entry also holds its rows (see the module docstring)."""
    root = held_root(path)
    if root is None or not Path(path).is_file():
        return
    entry = _entry(Path(path))
    if Path(path).name == "data.db":
        try:
            entry["rows"], entry["max_id"], entry["rows_sha256"] = _rows(Path(path))
        except sqlite3.Error:
            return  # unreadable now: `rarelearn check` and the store name it
    _enter(root, {Path(path).resolve().relative_to(root).as_posix(): entry})


@dataclass(frozen=True)
class Finding:
    """One recorded file compared with its entry: ``state`` is ``ok``, ``grown`` (data.db
    with rows added since), ``edited`` (an editable file changed), ``changed`` or
    ``missing``."""

    name: str
    state: str
    detail: str = ""


def _database(path: Path, entry: dict[str, Any]) -> Finding:
    name = path.name
    if "max_id" not in entry:
        return Finding(name, "changed", "its bytes differ from the recorded SHA-256")
    try:
        count, _, digest = _rows(path, int(entry["max_id"]))
    except (sqlite3.Error, ValueError, TypeError) as exc:
        return Finding(name, "changed", f"it no longer reads as a database ({exc})")
    if digest != entry.get("rows_sha256"):
        return Finding(name, "changed", "rows recorded at a stage's end hold other bytes now")
    if count <= int(entry.get("rows", 0)):
        return Finding(name, "changed", "its bytes differ from the recorded SHA-256, no row added")
    return Finding(name, "grown", f"{count - int(entry['rows'])} rows added since")


def _compare(root: Path, name: str, entry: dict[str, Any]) -> Finding:
    path = root / name
    if not path.is_file():
        return Finding(name, "missing")
    size = path.stat().st_size
    if sha256(path) in (entry.get("sha256"), entry.get("previous")):
        return Finding(name, "ok")
    if path.name == "data.db":
        journal = path.with_name(path.name + "-journal")
        if journal.is_file() and journal.stat().st_size:
            # a writer killed mid-transaction: SQLite rolls it back at the next open for writing
            return Finding(name, "grown", "an interrupted write awaits its rollback")
        return _database(path, entry) if size else Finding(name, "changed", "it is empty")
    if name in EDITABLE:
        return Finding(name, "edited", "edited since it was written")
    return Finding(
        name,
        "changed",
        "its SHA-256 differs from the one recorded when it was written "
        f"({size} bytes now, {entry.get('size')} then)",
    )


def verify(root: Path) -> list[Finding] | None:
    """Every recorded file of run folder ``root`` against its entry; None without manifest.
    A recorded file that is gone is ``missing`` (the run's own checks decide what that means).
    Safe while the writer runs: a file that differs is compared again with a fresh manifest
    (it may have been replaced, and recorded, while it was read)."""
    files = read_manifest(root)
    if files is None:
        return None
    findings = []
    for name, entry in sorted(files.items()):
        finding = _compare(root, name, entry)
        if finding.state == "changed":
            fresh = (read_manifest(root) or {}).get(name)
            if isinstance(fresh, dict) and fresh != entry:
                finding = _compare(root, name, fresh)
        findings.append(finding)
    return findings


def require_intact(root: Path) -> None:
    """Refuse to build on a file that changed after it was written (a resume): the first one
    is a DamagedFileError naming it, with the advice `rarelearn check` gives."""
    from rarelearn.runfolder import damaged

    for finding in verify(root) or ():
        if finding.state == "changed":
            raise damaged(root / finding.name, f"changed after it was written: {finding.detail}")


__all__ = [
    "EDITABLE",
    "MANIFEST",
    "Finding",
    "read_manifest",
    "record",
    "replace",
    "replace_folder",
    "require_intact",
    "sha256",
    "verify",
]
