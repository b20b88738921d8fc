"""Figures of one campaign (``figures/*.png``) and of several campaigns side by side.

Matplotlib is driven through ``Figure`` + the Agg canvas directly, never through ``pyplot``,
so importing this module does not change the backend or global state of a user's session.
Each figure function takes a `Run` and the figures folder and returns a `FigureResult`: a
written PNG, or the reason it was skipped (its inputs are missing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib import cm as mcm
from matplotlib import colors as mcolors
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rarelearn.errors import RarelearnError
from rarelearn.report.run_folder import (
    Run,
    ci95_kcal_mol,
    column,
    ea_error_kcal_mol,
    load_run,
    lower_bound,
    num,
    optional_json,
    optional_npz,
    replica_band,
    signed_error_kcal_mol,
    tolerance_kcal_mol,
)
from rarelearn.units import EV_TO_KCAL_MOL

#: Resolution of every saved figure.
FIGURE_DPI = 200


STYLE = {
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


@dataclass
class FigureResult:
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


def _add_baseline_lines(ax: Any, run: Run, key_fn: Any) -> None:
    """Horizontal dashed line per baseline whose value (from ``key_fn(row)``) is finite."""
    for k, (name, row) in enumerate(run.baselines.items()):
        value = key_fn(row)
        if math.isfinite(value) and value > 0:
            color = _BASELINE_COLORS[k % len(_BASELINE_COLORS)]
            ax.axhline(value, color=color, ls="--", lw=1.3, label=f"baseline: {name}")


def _replica_files(run: Run) -> tuple[dict | None, int | None, dict | None]:
    """Replica bands of the reference and of the last iteration that has ``replicas.npz``."""
    keys = ("distance_A", "work_eV")
    path = run.run_dir / "reference" / "replicas.npz"
    data = optional_npz(path, keys, run.notes)
    reference = replica_band(data) if data is not None else None
    for n in sorted(run.iteration_dirs, reverse=True):
        data = optional_npz(run.iteration_dirs[n] / "replicas.npz", keys, run.notes)
        if data is not None:
            return reference, n, replica_band(data)
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


def _figure_work(run: Run, fig_dir: Path) -> FigureResult:
    result = FigureResult(
        "work.png",
        "Work along the pull, W(d)",
        "Work done by the spring versus spring distance: reference method (black), the best "
        "committee member of each active-learning iteration (colour), baselines (dashed). "
        "The activation energy is max W.",
    )
    keys = ("distance_A", "work_eV")
    reference = optional_npz(run.run_dir / "reference" / "smd.npz", keys, run.notes)
    iterations = {
        n: t
        for n, folder in run.iteration_dirs.items()
        if (t := optional_npz(folder / "smd.npz", keys, run.notes)) is not None
    }
    baselines = {
        name: t
        for name in run.baselines
        if (t := optional_npz(run.run_dir / "baselines" / name / "smd.npz", keys, run.notes))
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


def _figure_ea_error(run: Run, fig_dir: Path) -> FigureResult:
    tolerance = tolerance_kcal_mol(run)
    result = FigureResult("ea_error.png", "Activation-energy error per iteration", "")
    if not run.rows:
        result.skipped = "no iterations yet."
        return result
    iters = column(run.rows, "iteration")
    signed = np.array([signed_error_kcal_mol(r, run.ea_ref_eV) for r in run.rows])
    ci95 = np.array([ci95_kcal_mol(r) for r in run.rows])
    single = np.abs(column(run.rows, "ea_error_single_eV")) * EV_TO_KCAL_MOL
    lower = np.array([lower_bound(r) for r in run.rows], dtype=bool)
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
        value = signed_error_kcal_mol(row, run.ea_ref_eV)
        if math.isfinite(value):
            color = _BASELINE_COLORS[k % len(_BASELINE_COLORS)]
            ax.axhline(value, color=color, ls="--", lw=1.3, label=f"baseline: {name}")
    converged = num(run.summary.get("converged_iteration"))
    if math.isfinite(converged):
        ax.axvline(converged, color="tab:green", ls=":", lw=1.3, label="converged")
    _symlog_y(ax, tolerance)
    _pad_y(ax, -2.0 * tolerance, 2.0 * tolerance)
    _symlog_ticks(ax, tolerance)
    ax.set_xlabel("iteration")
    ax.set_ylabel("$E_a^{\\mathrm{NNP}} - E_a^{\\mathrm{ref}}$ (kcal/mol)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(loc="outside lower center", ncols=2, frameon=False)

    replicas = num(run.rows[-1].get("n_replicas"))
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


def _figure_mae_unseen(run: Run, fig_dir: Path) -> FigureResult:
    result = FigureResult(
        "mae_unseen.png",
        "Error on the unseen reference-SMD frames",
        "Relative-energy MAE (each series shifted by its mean) of the best member on the "
        "unseen reference-SMD frames per iteration; "
        "the dotted line marks 1 kcal/mol, dashed lines the baselines.",
    )
    if not run.rows:
        result.skipped = "no iterations yet."
        return result
    iters = column(run.rows, "iteration")
    mae = column(run.rows, "mae_unseen_kcal_mol")
    ok = np.isfinite(mae)
    if not ok.any():
        result.skipped = "no iteration row has mae_unseen_kcal_mol."
        return result
    fig = _new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    ax.plot(iters[ok], mae[ok], "s-", color="tab:green", label="active learning")
    _add_baseline_lines(ax, run, lambda row: num(row.get("mae_unseen_kcal_mol")))
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


def _figure_unseen_drift(run: Run, fig_dir: Path) -> FigureResult:
    result = FigureResult(
        "unseen_drift.png",
        "Energy drift along the unseen reference pull",
        "",
    )
    if not run.iteration_dirs:
        result.skipped = "no iterations yet."
        return result
    path = run.run_dir / "reference" / "smd.npz"
    reference = optional_npz(path, ("distance_A",), run.notes)
    if reference is None:
        result.skipped = "no readable reference/smd.npz (the unseen reference pull)."
        return result
    d = np.ravel(reference["distance_A"]).astype(float)
    # the break: smd.npz's broken_frame (-1: none); older folders: reference.json's distance
    broken = optional_npz(path, ("broken_frame",), [])
    frame = int(broken["broken_frame"]) if broken is not None else -1
    d_break = float(d[frame]) if 0 <= frame < d.size else math.nan
    if broken is None and run.reference is not None:
        d_break = num(run.reference.get("breaking_distance_A"))
        beyond = np.flatnonzero(d >= d_break) if math.isfinite(d_break) else []
        frame = int(beyond[0]) if len(beyond) else -1

    drifts: dict[int, np.ndarray] = {}
    for n, folder in sorted(run.iteration_dirs.items()):
        data = optional_npz(folder / "unseen.npz", ("e_ref_eV", "e_pred_eV"), run.notes)
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


def _figure_train_val(run: Run, fig_dir: Path) -> FigureResult:
    result = FigureResult(
        "train_val_mae.png",
        "Training and validation error per iteration",
        "Relative-energy MAE of the best committee member on its training and validation split.",
    )
    if not run.rows:
        result.skipped = "no iterations yet."
        return result
    iters = column(run.rows, "iteration")
    series = {
        "train": (column(run.rows, "train_mae_kcal_mol"), "o-", "tab:blue"),
        "validation": (column(run.rows, "val_mae_kcal_mol"), "s--", "tab:orange"),
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


def _figure_parity(run: Run, fig_dir: Path) -> FigureResult:
    result = FigureResult(
        "parity.png",
        "Parity on the unseen reference-SMD frames",
        "Relative energies (each set shifted by its own mean) of the best member of the final "
        "iteration against the reference method, coloured by frame index along the pull.",
    )
    if not run.iteration_dirs:
        result.skipped = "no iterations yet."
        return result
    final = max(run.iteration_dirs)
    data = optional_npz(
        run.iteration_dirs[final] / "unseen.npz", ("e_ref_eV", "e_pred_eV"), run.notes
    )
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


def _figure_uq(run: Run, fig_dir: Path) -> FigureResult:
    result = FigureResult(
        "uq.png",
        "Committee uncertainty along each iteration's SMD",
        "Committee energy standard deviation (UQ) per SMD frame versus spring distance, with "
        "the selection threshold (dashed) and the frames selected for labeling (red).",
    )
    traces: dict[int, tuple[dict[str, np.ndarray], dict[str, Any] | None]] = {}
    for n, folder in run.iteration_dirs.items():
        trace = optional_npz(folder / "smd.npz", ("distance_A", "uq_eV"), run.notes)
        if trace is not None:
            selection = optional_json(folder / "selection.json", run.notes)
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
        threshold = num(selection.get("threshold_eV")) if selection else math.nan
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


FIGURES = (
    _figure_work,
    _figure_ea_error,
    _figure_mae_unseen,
    _figure_unseen_drift,
    _figure_train_val,
    _figure_parity,
    _figure_uq,
)


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
    runs = [load_run(d) for d in run_dirs]
    labels = list(labels) if labels is not None else [r.run_dir.resolve().name for r in runs]
    if len(labels) != len(runs):
        raise RarelearnError(f"got {len(labels)} labels for {len(runs)} run folders")
    out_png = Path(out_png)
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(11.0, 4.2)
        ax_ea, ax_mae = fig.subplots(1, 2)
        colors = matplotlib.colormaps["tab10"]
        for k, (run, label) in enumerate(zip(runs, labels, strict=True)):
            color = colors(k % 10)
            iters = column(run.rows, "iteration")
            errors = np.array([ea_error_kcal_mol(r, run.ea_ref_eV) for r in run.rows])
            mae = column(run.rows, "mae_unseen_kcal_mol")
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
