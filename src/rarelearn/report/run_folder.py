"""What a report reads from a run folder: summary.json, its rows, the reference, baselines.

Reads only the run-folder contract (docs/architecture.md); optional pieces that are missing
or unreadable become notes instead of errors. The row helpers read every generation of the
iteration-row keys (rows from before the replica statistics included).
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rarelearn.errors import RarelearnError
from rarelearn.runfolder import read_json
from rarelearn.units import EV_TO_KCAL_MOL


@dataclass
class Run:
    """Everything the report needs from one run folder, with notes on what was unreadable."""

    run_dir: Path
    summary: dict[str, Any]
    ea_ref_eV: float
    rows: list[dict[str, Any]]
    baselines: dict[str, dict[str, Any]]
    iteration_dirs: dict[int, Path]
    reference: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)


def num(value: Any) -> float:
    """A JSON value as float; NaN for None, strings and other non-numbers."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def optional_json(path: Path, notes: list[str]) -> Any | None:
    """Read an optional JSON file; None (and a note) if it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        notes.append(f"{path.name} in {path.parent} could not be read ({exc}); ignored.")
        return None


def optional_npz(path: Path, keys: Iterable[str], notes: list[str]) -> dict[str, np.ndarray] | None:
    """Read the given keys of an optional npz; None if missing, unreadable or lacking a key."""
    if not path.is_file():
        return None
    keys = tuple(keys)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                notes.append(f"{path} lacks key(s) {', '.join(missing)}; ignored.")
                return None
            return {k: np.asarray(data[k]) for k in keys}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        notes.append(f"{path} could not be read ({exc}); ignored.")
        return None


def _iteration_dirs(run_dir: Path) -> dict[int, Path]:
    """Map iteration number -> ``iterations/NNN`` folder, for folders with numeric names."""
    root = run_dir / "iterations"
    if not root.is_dir():
        return {}
    return {int(p.name): p for p in sorted(root.iterdir()) if p.is_dir() and p.name.isdigit()}


def _baseline_rows(run_dir: Path, summary: dict[str, Any], notes: list[str]) -> dict[str, dict]:
    """Baseline metrics by name: summary["baselines"] (dict or list), else their metrics.json."""
    rows: dict[str, dict[str, Any]] = {}
    raw = summary.get("baselines") or {}
    if isinstance(raw, dict):
        rows.update({str(k): v for k, v in raw.items() if isinstance(v, dict)})
    elif isinstance(raw, list):
        rows.update({str(v["name"]): v for v in raw if isinstance(v, dict) and "name" in v})
    root = run_dir / "baselines"
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if folder.name not in rows:
                metrics = optional_json(folder / "metrics.json", notes)
                rows[folder.name] = metrics if isinstance(metrics, dict) else {}
    return rows


def load_run(run_dir: Path | str) -> Run:
    """Read summary.json and the optional pieces of a run folder; errors name the folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RarelearnError(f"run folder {run_dir} does not exist (or is not a folder)")
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise RarelearnError(
            f"{summary_path} not found: {run_dir} is not a rarelearn run folder, or the "
            "campaign has not written its summary yet"
        )
    summary = read_json(summary_path)

    notes: list[str] = []
    iteration_dirs = _iteration_dirs(run_dir)
    rows_by_iteration: dict[int, dict[str, Any]] = {}
    for row in summary.get("iterations") or []:
        if isinstance(row, dict) and math.isfinite(num(row.get("iteration"))):
            rows_by_iteration[int(num(row["iteration"]))] = row
    for number, folder in iteration_dirs.items():
        if number not in rows_by_iteration:
            metrics = optional_json(folder / "metrics.json", notes)
            if isinstance(metrics, dict):
                rows_by_iteration[number] = {"iteration": number, **metrics}
    rows = [rows_by_iteration[k] for k in sorted(rows_by_iteration)]

    reference = optional_json(run_dir / "reference" / "reference.json", notes)
    reference = reference if isinstance(reference, dict) else None
    ea_ref = num(summary.get("ea_ref_eV"))
    if not math.isfinite(ea_ref) and reference is not None:
        ea_ref = num(reference.get("ea_ref_eV"))
    return Run(
        run_dir=run_dir,
        summary=summary,
        ea_ref_eV=ea_ref,
        rows=rows,
        baselines=_baseline_rows(run_dir, summary, notes),
        iteration_dirs=iteration_dirs,
        reference=reference,
        notes=notes,
    )


def ea_error_kcal_mol(row: dict[str, Any], ea_ref_eV: float) -> float:
    """|Ea error| of a row in kcal/mol, from whichever of the contract keys is present."""
    value = num(row.get("ea_error_kcal_mol"))
    if not math.isfinite(value):
        value = num(row.get("ea_error_eV")) * EV_TO_KCAL_MOL
    if not math.isfinite(value):
        value = (num(row.get("ea_nnp_eV")) - ea_ref_eV) * EV_TO_KCAL_MOL
    return abs(value)


def column(rows: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([num(r.get(key)) for r in rows], dtype=float)


def signed_error_kcal_mol(row: dict[str, Any], ea_ref_eV: float) -> float:
    """Signed Ea error (NNP mean - reference mean) of a row in kcal/mol.

    Older rows have no ``ea_error_signed_eV``: the sign then comes from ``ea_nnp_eV`` minus
    the row's (else the run's) reference Ea; ``ea_error_eV`` (absolute) is the last resort.
    """
    value = num(row.get("ea_error_signed_eV"))
    if not math.isfinite(value):
        ref = num(row.get("ea_ref_eV"))
        value = num(row.get("ea_nnp_eV")) - (ref if math.isfinite(ref) else ea_ref_eV)
    if not math.isfinite(value):
        value = num(row.get("ea_error_eV"))
    if not math.isfinite(value):
        return num(row.get("ea_error_kcal_mol"))
    return value * EV_TO_KCAL_MOL


def ci95_kcal_mol(row: dict[str, Any]) -> float:
    """Half-width of the row's 95 % interval of the Ea error in kcal/mol (NaN if absent)."""
    return num(row.get("ea_error_ci95_eV")) * EV_TO_KCAL_MOL


def lower_bound(row: dict[str, Any]) -> bool:
    """True if some NNP pull of the row did not break a bond: its Ea is only a lower bound."""
    broke = row.get("broke")
    if isinstance(broke, bool):
        return not broke
    if isinstance(broke, list) and broke:
        return not all(bool(b) for b in broke)
    return False


#: Ea tolerance (kcal/mol) of run folders whose summary.json has no ``stop`` block.
DEFAULT_TOLERANCE_KCAL_MOL = 1.0


def tolerance_kcal_mol(run: Run) -> float:
    """The campaign's Ea tolerance (summary["stop"]), else the 1 kcal/mol default."""
    stop = run.summary.get("stop")
    value = num(stop.get("tolerance_kcal_mol")) if isinstance(stop, dict) else math.nan
    return value if math.isfinite(value) and value > 0 else DEFAULT_TOLERANCE_KCAL_MOL


def finite_list(value: Any) -> list[float]:
    """The finite numbers of a JSON list (empty for anything else)."""
    if not isinstance(value, list):
        return []
    return [x for x in (num(v) for v in value) if math.isfinite(x)]


def reference_stats(run: Run) -> tuple[float, float, int]:
    """Reference Ea (eV) as replica mean, its standard error and the replica count.

    From summary.json (``ea_ref_eV``, ``ea_ref_sem_eV``, ``ea_ref_replicas_eV``). Run folders
    from before the replica statistics give (their single Ea, NaN, 0): count 0 means the Ea is
    not a replica mean (there, several replicas only had replica 0 compared).
    """
    values = finite_list(run.summary.get("ea_ref_replicas_eV"))
    sem = num(run.summary.get("ea_ref_sem_eV"))
    if not math.isfinite(sem) and len(values) >= 2:
        sem = float(np.std(values, ddof=1) / math.sqrt(len(values)))
    return run.ea_ref_eV, sem, len(values)


def replica_band(data: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """Per-step statistics of R replica work curves, or None for fewer than two replicas.

    Replicas are aligned by SMD step (every pull moves the spring by the same rest length per
    step). A step counts while at least two replicas still run (NaN padding marks the others).
    Returns ``distance_A`` (mean over those replicas), ``mean_eV``, ``min_eV``, ``max_eV`` and
    ``count`` per kept step, plus ``n_replicas``.
    """
    d = np.asarray(data["distance_A"], dtype=float)
    w = np.asarray(data["work_eV"], dtype=float)
    if d.ndim != 2 or d.shape != w.shape or d.shape[0] < 2:
        return None
    ok = np.isfinite(d) & np.isfinite(w)
    count = ok.sum(axis=0)
    keep = count >= 2
    if not keep.any():
        return None
    n = count[keep]
    return {
        "distance_A": np.where(ok, d, 0.0).sum(axis=0)[keep] / n,
        "mean_eV": np.where(ok, w, 0.0).sum(axis=0)[keep] / n,
        "min_eV": np.where(ok, w, np.inf).min(axis=0)[keep],
        "max_eV": np.where(ok, w, -np.inf).max(axis=0)[keep],
        "count": n,
        "n_replicas": np.array(d.shape[0]),
    }


# --------------------------------------------------------------------------------------------
# Figures
