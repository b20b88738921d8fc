"""Figures and a self-contained offline HTML report from a run folder (PROTOCOL section 6).

:func:`build_report` reads only the run-folder contract (docs/architecture.md), so a report
can be rebuilt at any time, also while a campaign is still running. Optional inputs that are
missing (no baselines, no iterations yet, no ``unseen.npz``) skip their figure with a note in
the HTML instead of failing. Run folders with replica statistics (``ea_error_signed_eV``,
``ea_error_ci95_eV``, ``replicas.npz``, the ``stop`` and ``resolution`` blocks) get interval
bars, replica bands and a one-sentence verdict; older folders still get every figure. The
HTML embeds every PNG as a base64 data URI and uses inline CSS only, so the single file works
offline and can be mailed around.

Matplotlib is driven through ``Figure`` + the Agg canvas directly, never through ``pyplot``,
so importing this module does not change the backend or global state of a user's session.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib import cm as mcm
from matplotlib import colors as mcolors
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rarelearn import __version__
from rarelearn.errors import RarelearnError
from rarelearn.pulls import bond_counts_text
from rarelearn.runfolder import ROW_KEYS, read_json
from rarelearn.units import EV_TO_KCAL_MOL

#: Resolution of every saved figure.
FIGURE_DPI = 200


_STYLE = {
    "font.size": 10,
    "axes.labelsize": 11,
    "axes.titlesize": 11,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.5,
    "savefig.dpi": FIGURE_DPI,
}

_ITERATION_CMAP = "viridis"
_BASELINE_COLORS = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink")


# --------------------------------------------------------------------------------------------
# Reading the run folder
# --------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """Everything the report needs from one run folder, with notes on what was unreadable."""

    run_dir: Path
    summary: dict[str, Any]
    ea_ref_eV: float
    rows: list[dict[str, Any]]
    baselines: dict[str, dict[str, Any]]
    iteration_dirs: dict[int, Path]
    reference: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)


def _num(value: Any) -> float:
    """A JSON value as float; NaN for None, strings and other non-numbers."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _read_json(path: Path, notes: list[str]) -> Any | None:
    """Read an optional JSON file; None (and a note) if it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        notes.append(f"{path.name} in {path.parent} could not be read ({exc}); ignored.")
        return None


def _read_npz(path: Path, keys: Iterable[str], notes: list[str]) -> dict[str, np.ndarray] | None:
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
                metrics = _read_json(folder / "metrics.json", notes)
                rows[folder.name] = metrics if isinstance(metrics, dict) else {}
    return rows


def _load_run(run_dir: Path | str) -> _Run:
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
        if isinstance(row, dict) and math.isfinite(_num(row.get("iteration"))):
            rows_by_iteration[int(_num(row["iteration"]))] = row
    for number, folder in iteration_dirs.items():
        if number not in rows_by_iteration:
            metrics = _read_json(folder / "metrics.json", notes)
            if isinstance(metrics, dict):
                rows_by_iteration[number] = {"iteration": number, **metrics}
    rows = [rows_by_iteration[k] for k in sorted(rows_by_iteration)]

    reference = _read_json(run_dir / "reference" / "reference.json", notes)
    reference = reference if isinstance(reference, dict) else None
    ea_ref = _num(summary.get("ea_ref_eV"))
    if not math.isfinite(ea_ref) and reference is not None:
        ea_ref = _num(reference.get("ea_ref_eV"))
    return _Run(
        run_dir=run_dir,
        summary=summary,
        ea_ref_eV=ea_ref,
        rows=rows,
        baselines=_baseline_rows(run_dir, summary, notes),
        iteration_dirs=iteration_dirs,
        reference=reference,
        notes=notes,
    )


def _ea_error_kcal_mol(row: dict[str, Any], ea_ref_eV: float) -> float:
    """|Ea error| of a row in kcal/mol, from whichever of the contract keys is present."""
    value = _num(row.get("ea_error_kcal_mol"))
    if not math.isfinite(value):
        value = _num(row.get("ea_error_eV")) * EV_TO_KCAL_MOL
    if not math.isfinite(value):
        value = (_num(row.get("ea_nnp_eV")) - ea_ref_eV) * EV_TO_KCAL_MOL
    return abs(value)


def _column(rows: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([_num(r.get(key)) for r in rows], dtype=float)


def _signed_error_kcal_mol(row: dict[str, Any], ea_ref_eV: float) -> float:
    """Signed Ea error (NNP mean - reference mean) of a row in kcal/mol.

    Older rows have no ``ea_error_signed_eV``: the sign then comes from ``ea_nnp_eV`` minus
    the row's (else the run's) reference Ea; ``ea_error_eV`` (absolute) is the last resort.
    """
    value = _num(row.get("ea_error_signed_eV"))
    if not math.isfinite(value):
        ref = _num(row.get("ea_ref_eV"))
        value = _num(row.get("ea_nnp_eV")) - (ref if math.isfinite(ref) else ea_ref_eV)
    if not math.isfinite(value):
        value = _num(row.get("ea_error_eV"))
    if not math.isfinite(value):
        return _num(row.get("ea_error_kcal_mol"))
    return value * EV_TO_KCAL_MOL


def _ci95_kcal_mol(row: dict[str, Any]) -> float:
    """Half-width of the row's 95 % interval of the Ea error in kcal/mol (NaN if absent)."""
    return _num(row.get("ea_error_ci95_eV")) * EV_TO_KCAL_MOL


def _lower_bound(row: dict[str, Any]) -> bool:
    """True if some NNP pull of the row did not break a bond: its Ea is only a lower bound."""
    broke = row.get("broke")
    if isinstance(broke, bool):
        return not broke
    if isinstance(broke, list) and broke:
        return not all(bool(b) for b in broke)
    return False


#: Ea tolerance (kcal/mol) of run folders whose summary.json has no ``stop`` block.
DEFAULT_TOLERANCE_KCAL_MOL = 1.0


def _tolerance_kcal_mol(run: _Run) -> float:
    """The campaign's Ea tolerance (summary["stop"]), else the 1 kcal/mol default."""
    stop = run.summary.get("stop")
    value = _num(stop.get("tolerance_kcal_mol")) if isinstance(stop, dict) else math.nan
    return value if math.isfinite(value) and value > 0 else DEFAULT_TOLERANCE_KCAL_MOL


def _finite_list(value: Any) -> list[float]:
    """The finite numbers of a JSON list (empty for anything else)."""
    if not isinstance(value, list):
        return []
    return [x for x in (_num(v) for v in value) if math.isfinite(x)]


def _reference_stats(run: _Run) -> tuple[float, float, int]:
    """Reference Ea (eV) as replica mean, its standard error and the replica count.

    From summary.json (``ea_ref_eV``, ``ea_ref_sem_eV``, ``ea_ref_replicas_eV``). Run folders
    from before the replica statistics give (their single Ea, NaN, 0): count 0 means the Ea is
    not a replica mean (there, several replicas only had replica 0 compared).
    """
    values = _finite_list(run.summary.get("ea_ref_replicas_eV"))
    sem = _num(run.summary.get("ea_ref_sem_eV"))
    if not math.isfinite(sem) and len(values) >= 2:
        sem = float(np.std(values, ddof=1) / math.sqrt(len(values)))
    return run.ea_ref_eV, sem, len(values)


def _replica_band(data: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
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
# --------------------------------------------------------------------------------------------


@dataclass
class _FigureResult:
    """One figure of the report: a written PNG, or the reason it was skipped."""

    name: str
    title: str
    caption: str
    path: Path | None = None
    skipped: str | None = None


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=FIGURE_DPI, bbox_inches="tight", metadata={"Software": "rarelearn"})
    return path


class _PlainLogFormatter(ticker.LogFormatter):
    """Matplotlib's choice of which log ticks to label, written as plain numbers (0.6, 2, 10)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def _log_y(ax: Any) -> None:
    """Log y axis labelled with plain numbers rather than powers of ten."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogFormatter())
    ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))


def _iteration_colors(numbers: Sequence[int]) -> tuple[dict[int, Any], Any]:
    """Colormap color per iteration number, plus a ScalarMappable for a colorbar."""
    cmap = matplotlib.colormaps[_ITERATION_CMAP]
    lo, hi = (min(numbers), max(numbers)) if numbers else (0, 1)
    norm = mcolors.Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1)
    mappable = mcm.ScalarMappable(norm=norm, cmap=cmap)
    return {n: cmap(norm(n)) for n in numbers}, mappable


def _add_baseline_lines(ax: Any, run: _Run, key_fn: Any) -> None:
    """Horizontal dashed line per baseline whose value (from ``key_fn(row)``) is finite."""
    for k, (name, row) in enumerate(run.baselines.items()):
        value = key_fn(row)
        if math.isfinite(value) and value > 0:
            color = _BASELINE_COLORS[k % len(_BASELINE_COLORS)]
            ax.axhline(value, color=color, ls="--", lw=1.3, label=f"baseline: {name}")


def _replica_files(run: _Run) -> tuple[dict | None, int | None, dict | None]:
    """Replica bands of the reference and of the last iteration that has ``replicas.npz``."""
    keys = ("distance_A", "work_eV")
    path = run.run_dir / "reference" / "replicas.npz"
    data = _read_npz(path, keys, run.notes)
    reference = _replica_band(data) if data is not None else None
    for n in sorted(run.iteration_dirs, reverse=True):
        data = _read_npz(run.iteration_dirs[n] / "replicas.npz", keys, run.notes)
        if data is not None:
            return reference, n, _replica_band(data)
    return reference, None, None


def _draw_band(ax: Any, band: dict[str, np.ndarray], color: Any, label: str, z: float) -> None:
    """Min-max envelope (filled) and mean (dashed) of replica work curves."""
    ax.fill_between(
        band["distance_A"],
        band["min_eV"],
        band["max_eV"],
        color=color,
        alpha=0.28,
        lw=0,
        zorder=z,
        label=label,
    )
    ax.plot(band["distance_A"], band["mean_eV"], color=color, ls="--", lw=1.0, zorder=z + 0.1)


def _figure_work(run: _Run, fig_dir: Path) -> _FigureResult:
    result = _FigureResult(
        "work.png",
        "Work along the pull, W(d)",
        "Work done by the spring versus spring distance: reference method (black), the best "
        "committee member of each active-learning iteration (colour), baselines (dashed). "
        "The activation energy is max W.",
    )
    keys = ("distance_A", "work_eV")
    reference = _read_npz(run.run_dir / "reference" / "smd.npz", keys, run.notes)
    iterations = {
        n: t
        for n, folder in run.iteration_dirs.items()
        if (t := _read_npz(folder / "smd.npz", keys, run.notes)) is not None
    }
    baselines = {
        name: t
        for name in run.baselines
        if (t := _read_npz(run.run_dir / "baselines" / name / "smd.npz", keys, run.notes))
    }
    ref_band, final, nnp_band = _replica_files(run)
    if reference is None and not iterations and not baselines and not ref_band and not nnp_band:
        result.skipped = "no SMD trace (reference, iteration or baseline smd.npz) found."
        return result

    fig = _new_figure(6.4, 4.4)
    ax = fig.add_subplot()
    colors, mappable = _iteration_colors(sorted(iterations))
    with_legend = len(iterations) <= 6
    single = " (replica 0)" if ref_band or nnp_band else ""
    if ref_band is not None:
        r = int(ref_band["n_replicas"])
        _draw_band(ax, ref_band, "0.45", f"reference, {r} replicas", 1.0)
    if nnp_band is not None:
        r = int(nnp_band["n_replicas"])
        _draw_band(ax, nnp_band, "tab:blue", f"iteration {final} NNP, {r} replicas", 1.2)
    for n, trace in sorted(iterations.items()):
        ax.plot(
            trace["distance_A"],
            trace["work_eV"],
            color=colors[n],
            lw=1.2,
            zorder=2,
            label=f"iteration {n}{single}" if with_legend else None,
        )
    for k, (name, trace) in enumerate(baselines.items()):
        color = _BASELINE_COLORS[k % len(_BASELINE_COLORS)]
        ax.plot(trace["distance_A"], trace["work_eV"], color=color, ls="--", zorder=2, label=name)
    if reference is not None:
        ax.plot(
            reference["distance_A"],
            reference["work_eV"],
            color="black",
            lw=2.2,
            zorder=3,
            label=f"reference{single}",
        )
    if math.isfinite(run.ea_ref_eV):
        label = "$E_a$ (reference mean)" if ref_band is not None else "$E_a$ (reference)"
        ax.axhline(run.ea_ref_eV, color="0.4", ls=":", lw=1.0, label=label)
    if not with_legend:
        fig.colorbar(mappable, ax=ax, label="iteration")
    ax.set_xlabel("spring distance $d$ (Å)")
    ax.set_ylabel("work $W$ (eV)")
    ax.legend(loc="upper left", frameon=False)
    if ref_band is not None or nnp_band is not None:
        sides = []
        if ref_band is not None:
            sides.append(f"the {int(ref_band['n_replicas'])} reference replicas (grey)")
        if nnp_band is not None:
            sides.append(
                f"the {int(nnp_band['n_replicas'])} NNP replicas of iteration {final} (blue)"
            )
        result.caption = (
            "Work done by the spring versus spring distance. Bands: min-max envelope of W over "
            f"{' and '.join(sides)} at each SMD step, plotted against the mean distance of the "
            "replicas at that step (steps are aligned: every pull moves the spring equally; a "
            "step counts while at least two replicas still run); dashed line in each band: "
            "replica mean. Solid lines: the single pull (replica 0) of the reference (black), "
            "of the best committee member of each iteration (colour) and of the baselines "
            "(dashed). The activation energy of a pull is its max W."
        )
    result.path = _save(fig, fig_dir / result.name)
    return result


def _symlog_y(ax: Any, linthresh: float) -> None:
    """Symmetric log y axis, linear within +-linthresh, labelled with plain numbers."""
    ax.set_yscale("symlog", linthresh=linthresh, linscale=1.0)
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda y, _pos: f"{y:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _symlog_ticks(ax: Any, linthresh: float) -> None:
    """Major ticks at 0, +-linthresh and the powers of ten beyond it, within the y limits.

    Matplotlib's symlog locator also ticks the decades inside the linear region, which
    crowd around 0 when the tolerance is a few kcal/mol.
    """
    lo, hi = ax.get_ylim()
    top = max(abs(lo), abs(hi))
    decades = [10.0**k for k in range(-6, 10) if 1.5 * linthresh < 10.0**k <= top]
    ticks = [0.0, linthresh, -linthresh, *decades, *(-d for d in decades)]
    ax.yaxis.set_major_locator(ticker.FixedLocator(sorted(t for t in ticks if lo <= t <= hi)))


def _pad_y(ax: Any, low: float, high: float, fraction: float = 0.06) -> None:
    """Widen the y limits to cover [low, high] and pad them in the axis' own (scaled) units.

    Matplotlib's margins on a symlog axis leave the outermost markers on the frame.
    """
    lo, hi = ax.get_ylim()
    scale = ax.yaxis.get_transform()
    a, b = scale.transform([min(lo, low), max(hi, high)])
    pad = fraction * (b - a)
    ax.set_ylim(*scale.inverted().transform([a - pad, b + pad]))


def _figure_ea_error(run: _Run, fig_dir: Path) -> _FigureResult:
    tolerance = _tolerance_kcal_mol(run)
    result = _FigureResult("ea_error.png", "Activation-energy error per iteration", "")
    if not run.rows:
        result.skipped = "no iterations yet."
        return result
    iters = _column(run.rows, "iteration")
    signed = np.array([_signed_error_kcal_mol(r, run.ea_ref_eV) for r in run.rows])
    ci95 = np.array([_ci95_kcal_mol(r) for r in run.rows])
    single = np.abs(_column(run.rows, "ea_error_single_eV")) * EV_TO_KCAL_MOL
    lower = np.array([_lower_bound(r) for r in run.rows], dtype=bool)
    ok = np.isfinite(signed)
    if not ok.any():
        result.skipped = "no iteration row has a finite Ea error."
        return result
    bars = ok & np.isfinite(ci95)
    faded = np.isfinite(single)
    means = any("ea_error_signed_eV" in r or "n_replicas" in r for r in run.rows)
    open_ = ok & lower

    fig = _new_figure(6.4, 4.4)
    ax = fig.add_subplot()
    ax.axhspan(
        -tolerance,
        tolerance,
        color="tab:green",
        alpha=0.18,
        lw=0,
        zorder=0,
        label=f"tolerance ±{tolerance:g} kcal/mol",
    )
    ax.axhline(0.0, color="0.3", lw=0.8, zorder=0.5)
    ax.plot(iters[ok], signed[ok], "-", color="tab:blue", lw=1.0, alpha=0.5, zorder=1)
    if bars.any():
        ax.errorbar(
            iters[bars],
            signed[bars],
            yerr=ci95[bars],
            fmt="none",
            ecolor="tab:blue",
            elinewidth=1.4,
            capsize=4,
            zorder=2,
        )
    label = "NNP mean − reference mean" if means else "NNP − reference"
    label += " (95 % CI)" if bars.any() else ""
    filled = ok & ~lower
    ax.plot(iters[filled], signed[filled], "o", color="tab:blue", ms=6, zorder=3, label=label)
    if open_.any():
        ax.plot(
            iters[open_],
            signed[open_],
            "^",
            mfc="white",
            mec="tab:blue",
            mew=1.6,
            ms=8,
            zorder=3,
            label="lower bound: not every pull broke",
        )
    if faded.any():
        ax.plot(
            iters[faded] + 0.2,
            single[faded],
            "o",
            mfc="none",
            mec="tab:blue",
            mew=1.2,
            ms=6,
            alpha=0.4,
            zorder=2,
            label="single pull |error| (replica 0)",
        )
    for k, (name, row) in enumerate(run.baselines.items()):
        value = _signed_error_kcal_mol(row, run.ea_ref_eV)
        if math.isfinite(value):
            color = _BASELINE_COLORS[k % len(_BASELINE_COLORS)]
            ax.axhline(value, color=color, ls="--", lw=1.3, label=f"baseline: {name}")
    converged = _num(run.summary.get("converged_iteration"))
    if math.isfinite(converged):
        ax.axvline(converged, color="tab:green", ls=":", lw=1.3, label="converged")
    _symlog_y(ax, tolerance)
    _pad_y(ax, -2.0 * tolerance, 2.0 * tolerance)
    _symlog_ticks(ax, tolerance)
    ax.set_xlabel("iteration")
    ax.set_ylabel("$E_a^{\\mathrm{NNP}} - E_a^{\\mathrm{ref}}$ (kcal/mol)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(loc="outside lower center", ncols=2, frameon=False)

    replicas = _num(run.rows[-1].get("n_replicas"))
    per_side = f" ({int(replicas)} replicas per side)" if math.isfinite(replicas) else ""
    what = (
        f"mean Ea of the NNP pulls minus mean Ea of the reference pulls{per_side}"
        if means
        else "Ea of the NNP pull minus Ea of the reference pull"
    )
    caption = [
        f"Signed activation-energy error per iteration: {what}, in kcal/mol, on a symmetric "
        f"log scale that is linear within ±{tolerance:g} kcal/mol."
    ]
    if bars.any():
        caption.append("Bars: 95 % (Welch) confidence interval of that difference.")
    else:
        caption.append(
            "No confidence intervals in this run folder (single replica or older format): "
            "points without bars."
        )
    if faded.any():
        caption.append(
            "Hollow faded circles (shifted right): the single-pull error "
            "|Ea(NNP) - Ea(reference)| of replica 0, the paper's metric (absolute, so >= 0)."
        )
    caption.append(f"Shaded band: the ±{tolerance:g} kcal/mol tolerance.")
    if run.baselines:
        caption.append("Dashed lines: baselines.")
    if open_.any():
        caption.append(
            f"Open triangles ({int(open_.sum())} iteration(s)): not every NNP pull broke a "
            "bond, so the NNP Ea is a lower bound rather than a barrier."
        )
    if math.isfinite(converged):
        caption.append(f"Dotted vertical line: converged at iteration {int(converged)}.")
    if (~ok).any():
        caption.append(f"{int((~ok).sum())} iteration(s) without an Ea error not shown.")
    result.caption = " ".join(caption)
    result.path = _save(fig, fig_dir / result.name)
    return result


def _figure_mae_unseen(run: _Run, fig_dir: Path) -> _FigureResult:
    result = _FigureResult(
        "mae_unseen.png",
        "Error on the unseen reference-SMD frames",
        "Relative-energy MAE (each series shifted by its mean) of the best member on the "
        "unseen reference-SMD frames per iteration; "
        "the dotted line marks 1 kcal/mol, dashed lines the baselines.",
    )
    if not run.rows:
        result.skipped = "no iterations yet."
        return result
    iters = _column(run.rows, "iteration")
    mae = _column(run.rows, "mae_unseen_kcal_mol")
    ok = np.isfinite(mae)
    if not ok.any():
        result.skipped = "no iteration row has mae_unseen_kcal_mol."
        return result
    fig = _new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    ax.plot(iters[ok], mae[ok], "s-", color="tab:green", label="active learning")
    _add_baseline_lines(ax, run, lambda row: _num(row.get("mae_unseen_kcal_mol")))
    ax.axhline(1.0, color="black", ls=":", lw=1.2, label="1 kcal/mol")
    if np.all(mae[ok] > 0):
        _log_y(ax)
    ax.set_xlabel("iteration")
    ax.set_ylabel("MAE on unseen SMD frames (kcal/mol)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(frameon=False)
    result.path = _save(fig, fig_dir / result.name)
    return result


#: Frames of the running mean that smooths the energy drift along the unseen pull.
DRIFT_WINDOW = 100
#: Leading frames of the unseen pull whose mean error is the drift's zero.
DRIFT_START_FRAMES = 200


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each run of ``window`` consecutive values (cumulative sum; n - window + 1 of them).

    A window longer than the series shrinks to the series (one value).
    """
    values = np.asarray(values, dtype=float)
    window = max(1, min(int(window), values.size))
    total = np.concatenate(([0.0], np.cumsum(values)))
    return (total[window:] - total[:-window]) / window


def _energy_drift(
    e_ref: np.ndarray,
    e_pred: np.ndarray,
    window: int = DRIFT_WINDOW,
    start: int = DRIFT_START_FRAMES,
) -> np.ndarray:
    """NNP energy error along a pull relative to its start, smoothed (eV).

    ``(e_pred - e_ref) - mean(e_pred - e_ref over the first start frames)``, then a running
    mean over ``window`` frames: element k averages frames k .. k + window - 1.
    """
    error = np.asarray(e_pred, dtype=float) - np.asarray(e_ref, dtype=float)
    error = error - error[: max(1, start)].mean()
    return _running_mean(error, window)


def _figure_unseen_drift(run: _Run, fig_dir: Path) -> _FigureResult:
    result = _FigureResult(
        "unseen_drift.png",
        "Energy drift along the unseen reference pull",
        "",
    )
    if not run.iteration_dirs:
        result.skipped = "no iterations yet."
        return result
    path = run.run_dir / "reference" / "smd.npz"
    reference = _read_npz(path, ("distance_A",), run.notes)
    if reference is None:
        result.skipped = "no readable reference/smd.npz (the unseen reference pull)."
        return result
    d = np.ravel(reference["distance_A"]).astype(float)
    # the break: smd.npz's broken_frame (-1: none); older folders: reference.json's distance
    broken = _read_npz(path, ("broken_frame",), [])
    frame = int(broken["broken_frame"]) if broken is not None else -1
    d_break = float(d[frame]) if 0 <= frame < d.size else math.nan
    if broken is None and run.reference is not None:
        d_break = _num(run.reference.get("breaking_distance_A"))
        beyond = np.flatnonzero(d >= d_break) if math.isfinite(d_break) else []
        frame = int(beyond[0]) if len(beyond) else -1

    drifts: dict[int, np.ndarray] = {}
    for n, folder in sorted(run.iteration_dirs.items()):
        data = _read_npz(folder / "unseen.npz", ("e_ref_eV", "e_pred_eV"), run.notes)
        if data is None:
            continue
        e_ref = np.ravel(data["e_ref_eV"]).astype(float)
        e_pred = np.ravel(data["e_pred_eV"]).astype(float)
        if e_ref.size != d.size or e_pred.size != d.size:
            run.notes.append(
                f"iteration {n}: unseen.npz has {e_ref.size}/{e_pred.size} energies but the "
                f"reference pull has {d.size} frames; left out of the drift figure."
            )
        elif not (np.isfinite(e_ref).all() and np.isfinite(e_pred).all()):
            run.notes.append(
                f"iteration {n}: unseen.npz holds non-finite energies; left out of the drift "
                "figure."
            )
        elif d.size:
            drifts[n] = _energy_drift(e_ref, e_pred)
    if not drifts:
        result.skipped = (
            f"no iteration has a readable unseen.npz matching the {d.size} frames of the "
            "reference pull."
        )
        return result

    window = min(DRIFT_WINDOW, d.size)
    x = _running_mean(d, window)
    final = max(drifts)
    fig = _new_figure(6.4, 4.4)
    ax = fig.add_subplot()
    colors, mappable = _iteration_colors(sorted(drifts))
    with_legend = len(drifts) <= 6
    ax.axhline(0.0, color="0.3", lw=0.8, zorder=0.5)
    for n, drift in drifts.items():
        ax.plot(
            x,
            drift,
            color=colors[n],
            lw=2.4 if n == final else 1.2,
            zorder=3 if n == final else 2,
            label=f"iteration {n}" if with_legend else None,
        )
    if math.isfinite(d_break):
        ax.axvline(d_break, color="black", ls=":", lw=1.2, label="reference break")
    if not with_legend:
        fig.colorbar(mappable, ax=ax, label="iteration")
    ax.secondary_yaxis(
        "right",
        functions=(lambda e: e * EV_TO_KCAL_MOL, lambda k: k / EV_TO_KCAL_MOL),
    ).set_ylabel("kcal/mol")
    ax.set_xlabel("spring distance $d$ of the reference pull (Å)")
    ax.set_ylabel("NNP energy error relative to the start (eV)")
    ax.legend(loc="upper left", frameon=False)

    start = min(DRIFT_START_FRAMES, d.size)
    caption = [
        "Energy error of the best committee member along the unseen reference pull (replica "
        "0), relative to the start of the pull: (E_NNP - E_ref) minus its mean over the first "
        f"{start} frames, in eV (kcal/mol on the right axis), against the reference's spring "
        f"distance; error and distance are running means over {window} frames. One line per "
        f"iteration (colour), the final iteration ({final}) thick; solid grey line: zero."
    ]
    if math.isfinite(d_break):
        caption.append(f"Dotted vertical line: the reference's bond break at {d_break:.2f} Å.")
        if frame - window >= 0:  # the window of the frames just before the break
            value = float(drifts[final][frame - window])
            caption.append(
                f"Over the {window} frames before it the final iteration has drifted by "
                f"{value:+.3f} eV ({value * EV_TO_KCAL_MOL:+.2f} kcal/mol)."
            )
    elif broken is not None:
        caption.append("The reference pull did not break a bond.")
    caption.append(
        "A positive drift before the break means the model overestimates the strain energy of "
        "the stretched chain, and with it the barrier Ea (max of the spring's work). The "
        "relative-energy MAE on the unseen frames (previous figure) averages over every frame "
        "and so hides this systematic drift."
    )
    result.caption = " ".join(caption)
    result.path = _save(fig, fig_dir / result.name)
    return result


def _figure_train_val(run: _Run, fig_dir: Path) -> _FigureResult:
    result = _FigureResult(
        "train_val_mae.png",
        "Training and validation error per iteration",
        "Relative-energy MAE of the best committee member on its training and validation split.",
    )
    if not run.rows:
        result.skipped = "no iterations yet."
        return result
    iters = _column(run.rows, "iteration")
    series = {
        "train": (_column(run.rows, "train_mae_kcal_mol"), "o-", "tab:blue"),
        "validation": (_column(run.rows, "val_mae_kcal_mol"), "s--", "tab:orange"),
    }
    if not any(np.isfinite(v).any() for v, _, _ in series.values()):
        result.skipped = "no iteration row has train_mae_kcal_mol or val_mae_kcal_mol."
        return result
    fig = _new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    for label, (values, style, color) in series.items():
        ok = np.isfinite(values)
        if ok.any():
            ax.plot(iters[ok], values[ok], style, color=color, label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel("energy MAE (kcal/mol)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(frameon=False)
    result.path = _save(fig, fig_dir / result.name)
    return result


def _figure_parity(run: _Run, fig_dir: Path) -> _FigureResult:
    result = _FigureResult(
        "parity.png",
        "Parity on the unseen reference-SMD frames",
        "Relative energies (each set shifted by its own mean) of the best member of the final "
        "iteration against the reference method, coloured by frame index along the pull.",
    )
    if not run.iteration_dirs:
        result.skipped = "no iterations yet."
        return result
    final = max(run.iteration_dirs)
    data = _read_npz(run.iteration_dirs[final] / "unseen.npz", ("e_ref_eV", "e_pred_eV"), run.notes)
    if data is None:
        result.skipped = f"iteration {final} has no readable unseen.npz."
        return result
    e_ref = np.ravel(data["e_ref_eV"]).astype(float)
    e_pred = np.ravel(data["e_pred_eV"]).astype(float)
    ok = np.isfinite(e_ref) & np.isfinite(e_pred)
    if e_ref.shape != e_pred.shape or not ok.any():
        result.skipped = f"iteration {final}: unseen.npz arrays are empty or differ in length."
        return result
    frame = np.arange(e_ref.size)[ok]
    x = (e_ref[ok] - e_ref[ok].mean()) * EV_TO_KCAL_MOL
    y = (e_pred[ok] - e_pred[ok].mean()) * EV_TO_KCAL_MOL
    mae = float(np.mean(np.abs(y - x)))
    rmse = float(np.sqrt(np.mean((y - x) ** 2)))

    fig = _new_figure(5.2, 4.6)
    ax = fig.add_subplot()
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", lw=1.0, label="y = x")
    points = ax.scatter(x, y, c=frame, s=6, cmap="plasma", alpha=0.8, linewidths=0)
    fig.colorbar(points, ax=ax, label="frame index")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("$E_{\\mathrm{ref}} - \\langle E_{\\mathrm{ref}} \\rangle$ (kcal/mol)")
    ax.set_ylabel("$E_{\\mathrm{NNP}} - \\langle E_{\\mathrm{NNP}} \\rangle$ (kcal/mol)")
    ax.set_title(f"iteration {final}, {x.size} frames", loc="left")
    ax.text(
        0.97,
        0.04,
        f"MAE {mae:.2f} kcal/mol\nRMSE {rmse:.2f} kcal/mol",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
    )
    ax.legend(loc="upper left", frameon=False)
    result.caption += f" Iteration {final}; MAE {mae:.3f} kcal/mol, RMSE {rmse:.3f} kcal/mol."
    result.path = _save(fig, fig_dir / result.name)
    return result


def _figure_uq(run: _Run, fig_dir: Path) -> _FigureResult:
    result = _FigureResult(
        "uq.png",
        "Committee uncertainty along each iteration's SMD",
        "Committee energy standard deviation (UQ) per SMD frame versus spring distance, with "
        "the selection threshold (dashed) and the frames selected for labeling (red).",
    )
    traces: dict[int, tuple[dict[str, np.ndarray], dict[str, Any] | None]] = {}
    for n, folder in run.iteration_dirs.items():
        trace = _read_npz(folder / "smd.npz", ("distance_A", "uq_eV"), run.notes)
        if trace is not None:
            selection = _read_json(folder / "selection.json", run.notes)
            traces[n] = (trace, selection if isinstance(selection, dict) else None)
    if not traces:
        result.skipped = "no iteration smd.npz with uq_eV found."
        return result

    n_panels = len(traces)
    ncols = 1 if n_panels <= 4 else 2
    nrows = math.ceil(n_panels / ncols)
    fig = _new_figure(6.4 if ncols == 1 else 10.0, 1.0 + 1.9 * nrows)
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
    for ax, (n, (trace, selection)) in zip(axes, sorted(traces.items()), strict=False):
        d = np.asarray(trace["distance_A"], dtype=float)
        uq = np.asarray(trace["uq_eV"], dtype=float)
        ax.plot(d, uq, color="tab:blue", lw=0.8, label="UQ")
        threshold = _num(selection.get("threshold_eV")) if selection else math.nan
        if math.isfinite(threshold):
            ax.axhline(threshold, color="black", ls="--", lw=1.0, label="threshold")
        picked = [int(i) for i in (selection or {}).get("selected", []) if 0 <= int(i) < uq.size]
        if picked:
            ax.plot(d[picked], uq[picked], "o", color="tab:red", ms=3, label="selected")
        finite = uq[np.isfinite(uq)]
        if finite.size and np.all(finite > 0):
            ax.set_yscale("log")
        ax.set_title(f"iteration {n}", loc="left")
        ax.set_ylabel("UQ (eV)")
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    for ax in axes[max(0, n_panels - ncols) : n_panels]:
        ax.set_xlabel("spring distance $d$ (Å)")
        ax.xaxis.set_tick_params(labelbottom=True)
    axes[0].legend(loc="upper left", frameon=False, ncols=3)
    result.path = _save(fig, fig_dir / result.name)
    return result


_FIGURES = (
    _figure_work,
    _figure_ea_error,
    _figure_mae_unseen,
    _figure_unseen_drift,
    _figure_train_val,
    _figure_parity,
    _figure_uq,
)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f2f2f2; } td.name, th.name { text-align: left; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #444; max-width: 800px; }
.skipped { color: #8a5a00; background: #fff6e0; padding: 0.4em 0.8em; border-radius: 4px; }
.scroll { overflow-x: auto; } pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
.muted { color: #666; font-size: 0.9em; }
.headline { font-size: 1.1em; font-weight: 600; }
"""


def _fmt(value: Any) -> str:
    """A table cell: integers as-is, floats to 4 significant digits, missing as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.4g}"
    if isinstance(value, list) and all(
        v is None or isinstance(v, bool | int | float | str) for v in value
    ):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict | list):
        return html.escape(json.dumps(value))
    return html.escape(str(value))


def _table(rows: Sequence[dict[str, Any]], first: Sequence[str], name_key: str | None) -> str:
    """HTML table: ``first`` columns in order, then any other scalar keys the rows carry."""
    columns = list(first)
    for row in rows:
        for key, value in row.items():
            if key not in columns and not isinstance(value, dict | list):
                columns.append(key)
    head = "".join(
        f'<th class="name">{html.escape(c)}</th>' if c == name_key else f"<th>{html.escape(c)}</th>"
        for c in columns
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="name">{_fmt(row.get(c))}</td>'
            if c == name_key
            else f"<td>{_fmt(row.get(c))}</td>"
            for c in columns
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _display_row(row: dict[str, Any]) -> dict[str, Any]:
    """An iteration row for the table; the per-replica ``broke`` list as a count "k/R" and
    the bonds the pulls broke as "S1-S2 15/16"."""
    shown = dict(row)
    broke = row.get("broke")
    if isinstance(broke, list) and broke:
        shown["pulls_broke"] = f"{sum(bool(b) for b in broke)}/{len(broke)}"
    if isinstance(row.get("broken_bonds_nnp"), dict):
        shown["bonds_broken"] = bond_counts_text(row["broken_bonds_nnp"])
    return shown


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _headline(run: _Run) -> list[str]:
    """The verdict at the top of the report: final Ea error, convergence, labels; resolution.

    Plain-text sentences (escaped by the caller); empty while there are no iterations.
    """
    if not run.rows:
        return []
    last = run.rows[-1]
    error = _signed_error_kcal_mol(last, run.ea_ref_eV)
    ci95 = _ci95_kcal_mol(last)
    if not math.isfinite(error):
        text = "Final Ea error not available"
    elif math.isfinite(ci95):
        text = f"Final Ea error {error:+.2f} ± {ci95:.2f} kcal/mol (95 %)"
    else:
        text = f"Final Ea error {error:+.2f} kcal/mol (no confidence interval)"
    converged = _num(run.summary.get("converged_iteration"))
    reason = run.summary.get("stop_reason")
    if math.isfinite(converged):
        text += f", converged at iteration {int(converged)}"
    elif reason == "converged":
        text += ", converged"
    elif reason == "running":
        text += ", not converged yet (campaign still running)"
    elif reason:
        text += f", not converged ({reason})"
    else:
        text += ", not converged (no stop reason recorded)"
    labels = _num(last.get("n_labels"))
    if math.isfinite(labels):
        text += f", after {int(labels)} labels"
    sentences = [text + "."]
    resolution = run.summary.get("resolution")
    if isinstance(resolution, dict) and resolution.get("resolvable") is False:
        half = _num(resolution.get("ci95_kcal_mol"))
        half = half if math.isfinite(half) else ci95
        tolerance = _num(resolution.get("tolerance_kcal_mol"))
        tolerance = tolerance if math.isfinite(tolerance) else _tolerance_kcal_mol(run)
        needed = _num(resolution.get("replicas_needed"))
        if math.isfinite(half):
            sentence = (
                f"The 95 % interval (±{half:.2f} kcal/mol) is wider than the ±{tolerance:g} "
                "kcal/mol tolerance"
            )
        else:
            sentence = (
                "There is no 95 % interval (one replica per side), so the "
                f"±{tolerance:g} kcal/mol tolerance cannot be resolved"
            )
        if math.isfinite(needed):
            sentence += f": about {int(needed)} replicas per side would resolve it"
        sentences.append(sentence + ".")
    return sentences


def _overview(run: _Run) -> str:
    items = [("run folder", html.escape(str(run.run_dir.resolve())))]
    system = run.summary.get("system")
    if isinstance(system, dict):
        items.append(("molecule", html.escape(f"{system['formula']} ({system['n_atoms']} atoms)")))
        items.append(("pulled", html.escape(" ↔ ".join(system["pulled"]))))
    model = run.summary.get("model")
    if isinstance(model, dict):
        committee = f"{model.get('n_members')} {model.get('backend')} members"
        items.append(("committee", html.escape(committee)))
    if isinstance(run.summary.get("broken_bonds_ref"), dict):
        items.append(
            (
                "bond broken (reference pulls)",
                html.escape(bond_counts_text(run.summary["broken_bonds_ref"])),
            )
        )
    if run.rows and isinstance(run.rows[-1].get("broken_bonds_nnp"), dict):
        items.append(
            (
                f"bond broken (NNP pulls, iteration {_fmt(run.rows[-1].get('iteration'))})",
                html.escape(bond_counts_text(run.rows[-1]["broken_bonds_nnp"])),
            )
        )
    ea_ref, sem, n_ref = _reference_stats(run)
    if math.isfinite(ea_ref):
        value = f"{ea_ref:.4f} eV ({ea_ref * EV_TO_KCAL_MOL:.2f} kcal/mol)"
        if n_ref and math.isfinite(sem):
            value = (
                f"{ea_ref:.4f} ± {sem:.4f} eV "
                f"({ea_ref * EV_TO_KCAL_MOL:.2f} ± {sem * EV_TO_KCAL_MOL:.2f} kcal/mol), "
                f"mean ± sem of {n_ref} replicas"
            )
        elif n_ref:
            value += f", mean of {n_ref} replica{'s' if n_ref != 1 else ''}"
        items.append(("reference E<sub>a</sub>", value))
    if run.reference:
        for key, value in run.reference.items():
            if key != "ea_ref_eV" and not isinstance(value, dict | list):
                items.append((html.escape(f"reference: {key}"), _fmt(value)))
    items.append(("iterations", str(len(run.rows))))
    if run.rows:
        last = run.rows[-1]
        error = _signed_error_kcal_mol(last, run.ea_ref_eV)
        ci95 = _ci95_kcal_mol(last)
        if math.isfinite(error):
            value = f"{error:+.3f} kcal/mol ({error / EV_TO_KCAL_MOL:+.4f} eV)"
            if math.isfinite(ci95):
                value = (
                    f"{error:+.3f} ± {ci95:.3f} kcal/mol (95 %) "
                    f"({error / EV_TO_KCAL_MOL:+.4f} ± {ci95 / EV_TO_KCAL_MOL:.4f} eV)"
                )
            name = f"E<sub>a</sub> error (NNP − reference), iteration {_fmt(last.get('iteration'))}"
            items.append((name, value))
        single = _num(last.get("ea_error_single_eV"))
        if math.isfinite(single):
            items.append(
                (
                    "single-pull |E<sub>a</sub> error| (replica 0)",
                    f"{abs(single) * EV_TO_KCAL_MOL:.3f} kcal/mol",
                )
            )
        replicas = last.get("n_replicas")
        if replicas is not None:
            items.append(("NNP replicas per iteration", _fmt(replicas)))
        if _lower_bound(last):
            broke = last.get("broke")
            n_broke = sum(bool(b) for b in broke) if isinstance(broke, list) else 0
            total = len(broke) if isinstance(broke, list) else 1
            items.append(
                ("NNP pulls that broke", f"{n_broke} of {total}: E<sub>a</sub> is a lower bound")
            )
        n_labels = last.get("n_labels")
        if n_labels is not None:
            items.append(("labels used", _fmt(n_labels)))
    stop = run.summary.get("stop")
    if isinstance(stop, dict):
        items.append(
            (
                "stop rule",
                f"tolerance ±{_fmt(stop.get('tolerance_kcal_mol'))} kcal/mol, "
                f"patience {_fmt(stop.get('patience'))}",
            )
        )
    if run.summary.get("stop_reason") is not None:
        items.append(("stop reason", _fmt(run.summary.get("stop_reason"))))
    if "converged_iteration" in run.summary:
        items.append(("converged at iteration", _fmt(run.summary.get("converged_iteration"))))
    resolution = run.summary.get("resolution")
    if isinstance(resolution, dict):
        items.append(
            (
                "resolution",
                f"95 % half-width {_fmt(_num(resolution.get('ci95_kcal_mol')))} kcal/mol; "
                f"{_fmt(resolution.get('replicas_needed'))} replicas per side needed; "
                f"resolvable: {_fmt(resolution.get('resolvable'))}",
            )
        )
    rows = "".join(f'<tr><th class="name">{k}</th><td class="name">{v}</td></tr>' for k, v in items)
    return f"<table>{rows}</table>"


def _render_html(run: _Run, figures: Sequence[_FigureResult]) -> str:
    title = f"rarelearn report: {run.run_dir.resolve().name}"
    headline = " ".join(_headline(run))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="headline">{html.escape(headline)}</p>' if headline else "",
        f'<p class="muted">Generated by rarelearn {html.escape(__version__)} from the run '
        "folder; self-contained, works offline.</p>",
        "<h2>Overview</h2>",
        _overview(run),
        "<h2>Figures</h2>",
    ]
    for fig in figures:
        if fig.path is not None:
            parts.append(
                f'<figure id="{html.escape(fig.name)}"><h3>{html.escape(fig.title)}</h3>'
                f'<img src="{_data_uri(fig.path)}" alt="{html.escape(fig.title)}">'
                f"<figcaption>{html.escape(fig.caption)} "
                f"(<code>figures/{html.escape(fig.name)}</code>)</figcaption></figure>"
            )
        else:
            parts.append(
                f"<h3>{html.escape(fig.title)}</h3>"
                f'<p class="skipped">Figure skipped: {html.escape(fig.skipped or "")}</p>'
            )
    parts.append("<h2>Iterations</h2>")
    if run.rows:
        parts.append(_table([_display_row(r) for r in run.rows], ROW_KEYS, None))
    else:
        parts.append('<p class="skipped">No iterations yet.</p>')
    parts.append("<h2>Baselines</h2>")
    if run.baselines:
        baseline_rows = [{"name": name, **row} for name, row in run.baselines.items()]
        first = ["name", *[k for k in ROW_KEYS if k != "iteration"]]
        parts.append(_table(baseline_rows, first, "name"))
    else:
        parts.append('<p class="skipped">No baselines in this run.</p>')
    if run.notes:
        parts.append("<h2>Notes</h2><ul>")
        parts.extend(f"<li>{html.escape(note)}</li>" for note in run.notes)
        parts.append("</ul>")
    config = run.summary.get("config")
    if config:
        parts.append("<h2>Configuration</h2><details><summary>settings used</summary><pre>")
        parts.append(html.escape(json.dumps(config, indent=2, default=str)))
        parts.append("</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def build_report(run_dir: Path | str) -> Path:
    """Write ``figures/*.png`` and a self-contained ``report.html`` for a run folder.

    Reads summary.json (required), reference/, iterations/NNN/ and baselines/<name>/ per the
    run-folder contract. Figures whose inputs are missing are skipped and the HTML says why;
    a stale PNG of a skipped figure is removed so the folder matches the report. Returns the
    path of ``report.html``. Raises RarelearnError if the folder or summary.json is missing.
    """
    with matplotlib.rc_context(_STYLE):
        run = _load_run(run_dir)
        fig_dir = run.run_dir / "figures"
        fig_dir.mkdir(parents=True, exist_ok=True)
        figures = [make(run, fig_dir) for make in _FIGURES]
    for fig in figures:
        if fig.path is None:
            (fig_dir / fig.name).unlink(missing_ok=True)
    out = run.run_dir / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(_render_html(run, figures), encoding="utf-8")
    os.replace(tmp, out)
    return out


def compare_runs(
    run_dirs: Sequence[Path | str],
    out_png: Path | str,
    labels: Sequence[str] | None = None,
) -> Path:
    """Side-by-side figure of several runs (e.g. random vs inherited, 3/5/7 members).

    Left: |Ea error| per iteration (log, kcal/mol, 1 kcal/mol line); right: MAE on the unseen
    SMD frames per iteration. ``labels`` default to the run folder names. Returns ``out_png``.
    Raises RarelearnError if a folder or its summary.json is missing.
    """
    if not run_dirs:
        raise RarelearnError("compare_runs needs at least one run folder")
    runs = [_load_run(d) for d in run_dirs]
    labels = list(labels) if labels is not None else [r.run_dir.resolve().name for r in runs]
    if len(labels) != len(runs):
        raise RarelearnError(f"got {len(labels)} labels for {len(runs)} run folders")
    out_png = Path(out_png)
    with matplotlib.rc_context(_STYLE):
        fig = _new_figure(11.0, 4.2)
        ax_ea, ax_mae = fig.subplots(1, 2)
        colors = matplotlib.colormaps["tab10"]
        for k, (run, label) in enumerate(zip(runs, labels, strict=True)):
            color = colors(k % 10)
            iters = _column(run.rows, "iteration")
            errors = np.array([_ea_error_kcal_mol(r, run.ea_ref_eV) for r in run.rows])
            mae = _column(run.rows, "mae_unseen_kcal_mol")
            ok = np.isfinite(errors) & (errors > 0)
            ax_ea.plot(iters[ok], errors[ok], "o-", color=color, ms=4, label=label)
            ok = np.isfinite(mae) & (mae > 0)
            ax_mae.plot(iters[ok], mae[ok], "s-", color=color, ms=4, label=label)
        for ax, ylabel in (
            (ax_ea, "$|E_a - E_a^{\\mathrm{ref}}|$ (kcal/mol)"),
            (ax_mae, "MAE on unseen SMD frames (kcal/mol)"),
        ):
            ax.axhline(1.0, color="black", ls=":", lw=1.2, label="1 kcal/mol")
            _log_y(ax)
            ax.set_xlabel("iteration")
            ax.set_ylabel(ylabel)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.legend(frameon=False)
        ax_ea.set_title("activation-energy error", loc="left")
        ax_mae.set_title("error on unseen reference-SMD frames", loc="left")
        return _save(fig, out_png)
