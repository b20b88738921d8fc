"""``rarelearn check RUN``: read a run folder end to end and say what is sound and what is not.

Every file is read the way the campaign and the report read it (JSON parsed, npz and traj
loaded, committees loaded, config.toml parsed, data.db opened and counted), and the store's
labels are compared with what the iterations say they used. A problem gives the same message
(the file, why, what to do) as ``rarelearn run`` would. Read-only, and safe while a campaign
runs: every file is written atomically, leftovers (``.tmp``, ``.partial``) are skipped, and
the files are read before the store, so labels stored after a file was written never look
missing.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarelearn.errors import RarelearnError

#: Files of a finished iteration (its metrics.json written) besides metrics.json itself.
ITERATION_FILES = ("committee", "smd.npz", "replicas.npz", "members.json", "unseen.npz")


@dataclass
class Item:
    """One checked thing: ``problem`` is None when it is sound, else the message to print."""

    name: str
    problem: str | None = None
    detail: str = ""

    def line(self) -> str:
        if self.problem is not None:
            return f"BAD  {self.problem}"
        return f"ok   {self.name}" + (f": {self.detail}" if self.detail else "")


class _Checker:
    """Collects items while reading one run folder."""

    def __init__(self, run_dir: Path, report: Callable[[Item], None]) -> None:
        self.run_dir = run_dir
        self.report = report
        self.items: list[Item] = []

    def add(self, item: Item) -> Item:
        self.items.append(item)
        self.report(item)
        return item

    def read(self, path: Path, reader: Callable[[Path], Any], detail: Callable[[Any], str]) -> Any:
        """Read ``path`` with ``reader``; a RarelearnError is the item's problem. The value
        read (None on a problem)."""
        name = str(path.relative_to(self.run_dir))
        try:
            value = reader(path)
        except RarelearnError as exc:
            self.add(Item(name, problem=str(exc)))
            return None
        self.add(Item(name, detail=detail(value)))
        return value

    def missing(self, path: Path) -> None:
        from rarelearn.runfolder import damaged

        self.add(Item(str(path.relative_to(self.run_dir)), problem=str(damaged(path, "missing"))))


def _nothing(_: Any) -> str:
    return ""


def check_run(run_dir: Path, report: Callable[[Item], None] = lambda item: None) -> list[Item]:
    """Every item of the run folder ``run_dir``, each passed to ``report`` as it is checked."""
    from rarelearn.campaign import ROW_REQUIRED, SELECTION_KEYS, load_committee
    from rarelearn.config import load_resolved
    from rarelearn.dynamics import SMDTrace, StartState
    from rarelearn.final import check_folders
    from rarelearn.pulls import REPLICAS_FILE, START_STATES_FILE, ReplicaPulls, load_start_states
    from rarelearn.runfolder import load_npz, read_json

    if not run_dir.is_dir():
        raise RarelearnError(f"run folder not found: {run_dir}")
    checker = _Checker(run_dir, report)
    config = None
    if (run_dir / "config.toml").is_file():
        config = checker.read(
            run_dir / "config.toml",
            lambda p: load_resolved(p.parent),
            lambda c: f"campaign {c.name}",
        )
    else:
        checker.missing(run_dir / "config.toml")

    def committee(path: Path) -> Any:
        return checker.read(path, load_committee, lambda c: f"{c.n_members} members")

    def trace(path: Path) -> Any:
        return checker.read(path, SMDTrace.load, lambda t: f"{t.n_frames} frames")

    def pulls(path: Path) -> Any:
        return checker.read(path, ReplicaPulls.load, lambda p: f"{p.n} pulls")

    def unseen(path: Path) -> Any:
        return checker.read(
            path,
            lambda p: load_npz(p, ["e_ref_eV", "e_pred_eV"]),
            lambda d: f"{len(d['e_pred_eV'])} predictions",
        )

    # reference stage: reference.json is written last, so it marks the stage done
    reference_dir = run_dir / "reference"
    reference = None
    if (reference_dir / "reference.json").is_file():
        reference = checker.read(reference_dir / "reference.json", read_json, _nothing)
        # a campaign without reference pulls (not validated yet) has start states only
        names = (START_STATES_FILE, REPLICAS_FILE, "smd.npz", "start_state.traj")
        if isinstance(reference, dict) and reference.get("validated") is False:
            names = (START_STATES_FILE, "start_state.traj")
        for name in names:
            if not (reference_dir / name).is_file():
                checker.missing(reference_dir / name)
    unvalidated = isinstance(reference, dict) and reference.get("validated") is False
    if (reference_dir / START_STATES_FILE).is_file():
        checker.read(
            reference_dir / START_STATES_FILE, load_start_states, lambda s: f"{len(s)} states"
        )
    if (reference_dir / REPLICAS_FILE).is_file():
        pulls(reference_dir / REPLICAS_FILE)
    if (reference_dir / "smd.npz").is_file():
        trace(reference_dir / "smd.npz")
    starts = [reference_dir / "start_state.traj"]
    starts += sorted((reference_dir / "replicas").glob("start_*.traj"))
    for path in starts:
        if path.is_file():
            checker.read(path, StartState.load, _nothing)
    for path in sorted((reference_dir / "replicas").glob("smd_*.npz")):
        if ".tmp" not in path.name:
            trace(path)

    # iterations and baselines: every file present; a finished one must hold them all
    rows: dict[int, dict] = {}
    folders = sorted(p for p in (run_dir / "iterations").glob("[0-9]*") if p.name.isdigit())
    baselines = sorted(p for p in (run_dir / "baselines").glob("*") if p.is_dir())
    for folder in [*folders, *baselines]:
        row = None
        if (folder / "metrics.json").is_file():
            row = checker.read(
                folder / "metrics.json",
                lambda p: read_json(p, ROW_REQUIRED if p.parent in folders else ()),
                lambda r: f"{r.get('n_labels')} labels",
            )
            for name in ITERATION_FILES:
                optional = (name == "members.json" and folder not in folders) or (
                    name == "unseen.npz" and unvalidated  # no unseen set without a reference
                )
                if not (folder / name).exists() and not optional:
                    checker.missing(folder / name)
        if row is not None and folder in folders:
            rows[int(folder.name)] = row
        for name, read in (
            ("timing.json", lambda p: checker.read(p, read_json, _nothing)),
            ("members.json", lambda p: checker.read(p, read_json, _nothing)),
            ("selection.json", lambda p: checker.read(p, _selection(SELECTION_KEYS), _nothing)),
            ("smd.npz", trace),
            ("replicas.npz", pulls),
            ("unseen.npz", unseen),
            ("committee", committee),
        ):
            if (folder / name).exists():
                read(folder / name)

    # the final check (`rarelearn.final`): its extended reference and the committee's pulls
    final_dir = run_dir / "final"
    for path, read in (
        (
            final_dir / "reference" / "reference.json",
            lambda p: checker.read(p, read_json, _nothing),
        ),
        (
            final_dir / "reference" / START_STATES_FILE,
            lambda p: checker.read(p, load_start_states, lambda s: f"{len(s)} states"),
        ),
        (final_dir / "reference" / REPLICAS_FILE, pulls),
    ):
        if path.is_file():
            read(path)
    for folder in check_folders(run_dir):
        if (folder / "smd.json").is_file():
            checker.read(folder / "smd.json", read_json, _nothing)
        for name, read in (("smd.npz", trace), (REPLICAS_FILE, pulls)):
            if (folder / name).is_file():
                read(folder / name)

    summary = None
    if (run_dir / "summary.json").is_file():
        summary = checker.read(
            run_dir / "summary.json",
            _summary,
            lambda s: f"{len(s['iterations'])} iterations, {s.get('stop_reason')}",
        )
    if summary is not None:
        _compare_summary(checker, summary, rows)

    name = config.name if config is not None else _summary_name(summary)
    _check_store(checker, config, name, reference, rows)
    _check_checksums(checker)
    return checker.items


def _check_checksums(checker: _Checker) -> None:
    """Every file recorded in manifest.json against its checksum (`rarelearn.manifest`): a
    file changed after it was written is BAD with the advice its reader gives; config.toml,
    the user's to edit, is reported."""
    from rarelearn.manifest import MANIFEST, verify
    from rarelearn.runfolder import damaged

    run_dir = checker.run_dir
    findings = verify(run_dir)
    if findings is None and (run_dir / MANIFEST).is_file():
        reason = "not a manifest a writer can read"
        advice = "Delete it: the next run records the checksums of what it writes."
        checker.add(Item(MANIFEST, problem=f"{run_dir / MANIFEST} is damaged ({reason}). {advice}"))
        return
    if findings is None:
        checker.add(Item(MANIFEST, detail="no checksums recorded (a folder from before them)"))
        return
    named = [item.name for item in checker.items if item.problem is not None]
    for finding in findings:
        if any(finding.name == n or finding.name.startswith(n + "/") for n in named):
            continue  # its reader named it already, with the same advice
        if finding.state == "changed":
            reason = f"changed after it was written: {finding.detail}"
            checker.add(Item(finding.name, problem=str(damaged(run_dir / finding.name, reason))))
        elif finding.state == "edited":
            checker.add(Item(finding.name, detail=f"{finding.detail} (checksum differs)"))
    counts = Counter(finding.state for finding in findings)
    grown = [f.detail for f in findings if f.state == "grown"]
    detail = f"{counts['ok'] + counts['grown']} of {len(findings)} recorded files as written"
    if grown:
        detail += f"; data.db: {grown[0]}"
    if counts["missing"]:
        detail += f"; {counts['missing']} recorded files gone (deleted to be recomputed?)"
    checker.add(Item(MANIFEST, detail=detail))


def _selection(keys: tuple[str, ...]) -> Callable[[Path], Any]:
    from rarelearn.runfolder import damaged, read_json
    from rarelearn.selection import Selection

    def read(path: Path) -> Any:
        try:
            return Selection.from_dict(read_json(path, keys))
        except (TypeError, ValueError) as exc:  # a value of the wrong kind
            raise damaged(path, exc) from exc

    return read


def _summary(path: Path) -> dict[str, Any]:
    """summary.json, with its list of iteration rows."""
    from rarelearn.runfolder import damaged, read_json

    summary = read_json(path, ["iterations"])
    if not isinstance(summary["iterations"], list):
        raise damaged(path, "its iterations are not a list")
    return summary


def _summary_name(summary: dict | None) -> str | None:
    config = (summary or {}).get("config")
    return config.get("name") if isinstance(config, dict) else None


def _compare_summary(checker: _Checker, summary: dict, rows: dict[int, dict]) -> None:
    """summary.json's rows against the iterations' metrics.json (both written by the campaign)."""
    from rarelearn.runfolder import damaged

    path = checker.run_dir / "summary.json"
    compared = 0
    for row in summary["iterations"]:
        i = row.get("iteration") if isinstance(row, dict) else None
        if i not in rows:
            continue
        if json.dumps(rows[i], sort_keys=True) != json.dumps(row, sort_keys=True):  # NaN == NaN
            problem = damaged(path, f"its row of iteration {i} differs from that metrics.json")
            checker.add(Item("summary.json rows", problem=str(problem)))
            return
        compared += 1
    checker.add(Item("summary.json rows", detail=f"{compared} match the iterations' metrics.json"))


def _sqlite_problem(path: Path) -> str | None:
    """SQLite's own page check on a read-only connection: None when sound, else why not."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=20)) as connection:
            rows = connection.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc) or type(exc).__name__
    result = "; ".join(str(row[0]) for row in rows[:3])
    return None if result == "ok" else result


def _check_store(
    checker: _Checker,
    config: Any,
    campaign: str | None,
    reference: dict | None,
    rows: dict[int, dict],
) -> None:
    """data.db opens, its label counts are readable and match what the run folder says."""
    from rarelearn.runfolder import damaged
    from rarelearn.store import CampaignStore

    run_dir = checker.run_dir
    url = config.store.url if config is not None else ""
    path = run_dir / "data.db"
    if not url:
        if not path.is_file():
            if reference is not None or rows:
                checker.missing(path)
            return
        problem = _sqlite_problem(path)
        if problem is not None:
            checker.add(Item("data.db", problem=str(damaged(path, problem))))
            return
    if campaign is None:
        checker.add(Item("data.db", detail="opens (labels not compared: no campaign name)"))
        return
    try:
        store = CampaignStore(url or path, campaign=campaign)
        counts = store.label_counts()
        store.labeled()  # decodes every good frame (positions, labels) once
        store.failures()
    except RarelearnError as exc:
        checker.add(Item("data.db", problem=str(exc)))
        return
    checker.add(Item("data.db", detail=_describe_counts(counts)))
    _compare_labels(checker, path, counts, reference, rows)


def _describe_counts(counts: Counter[tuple[str, int, bool]]) -> str:
    by_source: Counter[str] = Counter()
    for (source, iteration, failed), n in counts.items():
        if not failed:
            by_source[source if iteration < 0 else f"{source} of iteration {iteration}"] += n
    failed = sum(n for (_, _, bad), n in counts.items() if bad)
    labels = ", ".join(f"{n} {name}" for name, n in sorted(by_source.items()))
    return f"{sum(by_source.values())} labels ({labels}), {failed} failed"


#: Row keys counting the labels an iteration adds beside its selection (snap tests,
#: rupture-region and post-snap frames, the 0 K scans' points).
RECIPE_LABEL_KEYS = ("snap_labels", "rupture_labels", "cogef_labels")


def _compare_labels(
    checker: _Checker,
    path: Path,
    counts: Counter[tuple[str, int, bool]],
    reference: dict | None,
    rows: dict[int, dict],
) -> None:
    """What the reference and each finished iteration say against what the store holds."""
    from rarelearn.campaign import TRAINING_SOURCES

    run_dir = checker.run_dir
    advice = (
        f"data.db and the run folder disagree: restore data.db from a copy, or delete "
        f"{run_dir / 'iterations'}, {run_dir / 'baselines'} and {run_dir / 'summary.json'} and "
        f"rerun `rarelearn run --out {run_dir}` to redo the iterations with the labels it holds."
    )

    def stored(source: str, iteration: int, failed: bool | None = False) -> int:
        return sum(
            n
            for (s, i, bad), n in counts.items()
            if s == source and i == iteration and (failed is None or bad == failed)
        )

    if reference is not None:
        for source, key in (("equilibrium", "n_equilibrium_frames"), ("reference_smd", "n_frames")):
            expected, found = reference.get(key), stored(source, -1)
            if expected is not None and expected != found:
                problem = f"{path}: {found} {source} labels, reference.json says {expected}"
                checker.add(Item(f"{source} labels", problem=f"{problem}. {advice}"))
    for i, row in sorted(rows.items()):
        name = f"iterations/{i:03d} labels"
        training = sum(
            n
            for (source, iteration, failed), n in counts.items()
            if source in TRAINING_SOURCES and not failed and iteration <= i - 1
        )
        problems = []
        if row.get("n_labels") != training:
            problems.append(
                f"metrics.json says n_labels = {row.get('n_labels')}, data.db gives {training} "
                f"training frames up to iteration {i - 1}"
            )
        selected = row.get("n_selected", 0) + row.get("n_augmented", 0)
        # the recipes' labels are stored as the iteration's active and augmented frames too
        recipes = sum(row.get(key) or 0 for key in RECIPE_LABEL_KEYS)
        labeled = stored("active", i, None) + stored("augmented", i, None)
        failures = stored("active", i, True) + stored("augmented", i, True)
        # rupture_labels counts good labels only: its failures are among the stored failed
        if not selected + recipes <= labeled <= selected + recipes + failures:
            problems.append(
                f"{selected} frames selected and {recipes} recipe labels "
                f"({', '.join(RECIPE_LABEL_KEYS)}), data.db holds {labeled} of them"
            )
        if row.get("n_label_failures", 0) != failures:
            problems.append(
                f"{row.get('n_label_failures')} label failures recorded, data.db holds {failures}"
            )
        if problems:
            text = f"{run_dir / 'iterations' / f'{i:03d}'}: {'; '.join(problems)}. {advice}"
            checker.add(Item(name, problem=text))
        else:
            checker.add(Item(name, detail=f"{training} training labels, {selected} selected"))


def run_check(run_dir: Path) -> bool:
    """Print one line per item and a verdict; True when the whole folder is sound."""
    items = check_run(run_dir, report=lambda item: print(item.line(), flush=True))
    bad = [item for item in items if item.problem is not None]
    if bad:
        print(f"{run_dir}: {len(bad)} of {len(items)} items are not sound (see BAD lines above)")
    else:
        print(f"{run_dir} is sound ({len(items)} items checked)")
    return not bad
