"""Figures and ``report.html`` of a study folder, from its ``study.json`` and pull files.

- ensemble, selection: the Ea error (NNP replica mean minus reference replica mean) with its
  95 % interval as a band, per iteration (ensemble) or against the labels used (selection),
  and the MAE on the unseen reference pull per iteration;
- transfer, speeds: Ea of both methods per variant with their standard errors, the breaking
  distances, and W(d) per variant, NNP over reference (paper Fig. 7b);
- convergence: beside the per-iteration errors, each seed's final Ea error with its interval,
  per recipe, the spread between seeds drawn as a band (what a user of the recipe is exposed
  to), and pulls breaking bonds the reference does not marked.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from rarelearn.pulls import REPLICAS_FILE, ReplicaPulls
from rarelearn.runfolder import read_json
from rarelearn.units import EV_TO_KCAL_MOL


def build_study_report(folder: Path) -> Path:
    """Write ``figures/*.png`` and ``report.html``; return the report's path."""
    study = read_json(folder / "study.json", ["study", "rows"])
    figures_dir = folder / "figures"
    figures_dir.mkdir(exist_ok=True)
    rows = study["rows"]
    if study["study"] in ("ensemble", "selection"):
        figures = [
            _ea_error_figure(rows, figures_dir, by_labels=study["study"] == "selection"),
            _mae_figure(rows, figures_dir),
        ]
        sentences = _campaign_sentences(rows)
    elif study["study"] == "convergence":
        recipes = study.get("recipes", {})
        figures = [
            _final_error_figure(recipes, figures_dir),
            _ea_error_figure(rows, figures_dir, by_labels=True),
        ]
        sentences = convergence_sentences(recipes)
    else:
        key = "chain" if study["study"] == "transfer" else "pull_speed_A_per_ps"
        figures = [_ea_figure(rows, key, figures_dir), _work_figure(rows, key, folder, figures_dir)]
        sentences = _pull_sentences(rows, key, study["study"])
    path = folder / "report.html"
    path.write_text(_html(study, figures, sentences))
    return path


def _campaigns(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["campaign"], []).append(row)
    return grouped


def _ea_error_figure(rows: list[dict[str, Any]], folder: Path, by_labels: bool) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.5), constrained_layout=True)
    for name, part in _campaigns(rows).items():
        x = np.array([r["n_labels"] if by_labels else r["iteration"] for r in part], float)
        y = np.array([r["ea_error_eV"] for r in part], float) * EV_TO_KCAL_MOL
        half = (
            np.array(
                [np.nan if r["ea_error_ci95_eV"] is None else r["ea_error_ci95_eV"] for r in part],
                float,
            )
            * EV_TO_KCAL_MOL
        )
        (line,) = ax.plot(x, y, "o-", ms=4, label=name)
        ax.fill_between(x, y - half, y + half, color=line.get_color(), alpha=0.15, lw=0)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.axhspan(-1.0, 1.0, color="0.85", zorder=0, label="±1 kcal/mol")
    ax.set_xlabel("labels used (reference calculations)" if by_labels else "iteration")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("Ea error, NNP − reference (kcal/mol)")
    ax.legend(fontsize=8)
    name = "ea_error_vs_labels.png" if by_labels else "ea_error.png"
    fig.savefig(folder / name, dpi=130)
    plt.close(fig)
    return folder / name


def _final_error_figure(recipes: dict[str, Any], folder: Path) -> Path:
    """Each seed's final Ea error with its 95 % interval, one column of points per recipe;
    the band is the mean +- one standard deviation between seeds. A hollow marker: fewer
    than the stop rule's share of the pulls broke a bond the reference breaks."""
    fig, ax = plt.subplots(
        figsize=(max(5.0, 1.8 * len(recipes) + 2.0), 4.5), constrained_layout=True
    )
    checked = False
    for k, result in enumerate(recipes.values()):
        errors = np.array(result["final_error_kcal_mol"], float)
        half = np.array([np.nan if h is None else h for h in result["final_ci95_kcal_mol"]], float)
        shares = result["final_reference_bond_share"]
        minimum = result["goal"]["min_reference_bond_share"]
        x = k + np.linspace(-0.25, 0.25, len(errors)) if len(errors) > 1 else np.array([k])
        spread = result["spread_between_seeds_kcal_mol"]
        if spread is not None:
            mean = result["mean_error_kcal_mol"]
            ax.fill_between(
                [k - 0.35, k + 0.35], mean - spread, mean + spread, color="tab:blue", alpha=0.12
            )
        for xi, error, h, share, seed in zip(x, errors, half, shares, result["seeds"], strict=True):
            right = share is not None and share >= minimum
            ax.errorbar(
                xi,
                error,
                yerr=h,
                fmt="o",
                color="tab:blue",
                mfc="tab:blue" if right else "white",
                capsize=3,
            )
            ax.annotate(
                f"{seed}", (xi, error), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
        check = result.get("final_check")
        if check:
            checked = True
            for xi, error, h, share in zip(
                x + 0.06,
                check["error_kcal_mol"],
                check["ci95_kcal_mol"],
                check["reference_bond_share"],
                strict=True,
            ):
                right = share is not None and share >= minimum
                ax.errorbar(
                    xi,
                    error,
                    yerr=np.nan if h is None else h,
                    fmt="s",
                    color="tab:orange",
                    mfc="tab:orange" if right else "white",
                    capsize=3,
                )
    ax.plot([], [], "o", color="tab:blue", label="last row (the loop's pulls)")
    if checked:
        replicas = sorted(
            {n for r in recipes.values() for n in r.get("final_check", {}).get("replicas", [])}
        )
        ax.plot(
            [],
            [],
            "s",
            color="tab:orange",
            label="final check, " + "/".join(str(n) for n in replicas) + " pulls a side",
        )
    tolerance = next(iter(recipes.values()))["goal"]["tolerance_kcal_mol"] if recipes else 1.0
    ax.axhspan(-tolerance, tolerance, color="0.85", zorder=0, label=f"±{tolerance:g} kcal/mol")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xticks(range(len(recipes)), list(recipes))
    ax.set_ylabel("final Ea error, NNP − reference (kcal/mol)")
    ax.set_title("final error per seed (labels: seed; hollow: wrong bonds)", fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(folder / "final_error_per_seed.png", dpi=130)
    plt.close(fig)
    return folder / "final_error_per_seed.png"


def convergence_sentences(recipes: dict[str, Any]) -> list[str]:
    """One sentence per recipe: its seeds' final errors, their spread, the goal's verdict."""
    sentences = []
    for recipe, result in recipes.items():
        seeds = len(result["seeds"])
        spread = result["spread_between_seeds_kcal_mol"]
        within = result["mean_ci95_within_campaign_kcal_mol"]
        finals = ", ".join(
            f"{e:+.1f}" + ("" if h is None else f" ± {h:.1f}")
            for e, h in zip(
                result["final_error_kcal_mol"], result["final_ci95_kcal_mol"], strict=True
            )
        )
        spread_text = "no spread (one seed)" if spread is None else f"± {spread:.1f} between seeds"
        within_text = (
            "" if within is None else f", against ± {within:.1f} within one campaign (95 %)"
        )
        sentences.append(
            f"{recipe}: final errors {finals} kcal/mol over {seeds} seeds; mean "
            f"{result['mean_error_kcal_mol']:+.1f} {spread_text} (standard deviation)"
            f"{within_text}; mean |error| {result['mean_abs_error_kcal_mol']:.1f}; "
            f"{result['seeds_meeting_goal']} of {seeds} seeds meet the goal "
            f"(interval inside ± {result['goal']['tolerance_kcal_mol']:g} kcal/mol, at least "
            f"{result['goal']['min_reference_bond_share']:.0%} of the pulls on the reference's "
            f"bonds, at most {result['goal']['max_labels']} labels)."
        )
        check = result.get("final_check")
        if check:
            errors = ", ".join(
                f"{e:+.1f}" + ("" if h is None else f" ± {h:.1f}")
                for e, h in zip(check["error_kcal_mol"], check["ci95_kcal_mol"], strict=True)
            )
            pulls = "/".join(str(n) for n in sorted(set(check["replicas"])))
            sentences.append(
                f"{recipe}, final check at {pulls} pulls a side: {errors} kcal/mol; mean "
                f"|error| {check['mean_abs_error_kcal_mol']:.1f}; {check['seeds_meeting_goal']} "
                f"of {len(check['seeds'])} seeds meet the goal"
                + (" (met)." if check["goal_met"] else " (not met).")
            )
    return sentences


def _mae_figure(rows: list[dict[str, Any]], folder: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.0), constrained_layout=True)
    for name, part in _campaigns(rows).items():
        ax.plot(
            [r["iteration"] for r in part],
            [r["mae_unseen_kcal_mol"] for r in part],
            "s-",
            ms=4,
            label=name,
        )
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("MAE on the unseen reference pull (kcal/mol)")
    ax.legend(fontsize=8)
    fig.savefig(folder / "mae_unseen.png", dpi=130)
    plt.close(fig)
    return folder / "mae_unseen.png"


def _ea_figure(rows: list[dict[str, Any]], key: str, folder: Path) -> Path:
    fig, (ax_ea, ax_d) = plt.subplots(1, 2, figsize=(10.0, 4.0), constrained_layout=True)
    x = np.array([r[key] for r in rows], float)
    for side, color, marker in (("ref", "black", "o"), ("nnp", "tab:blue", "s")):
        mean = np.array([r[f"ea_{side}_mean_eV"] for r in rows], float)
        sem = np.array(
            [np.nan if r[f"ea_{side}_sem_eV"] is None else r[f"ea_{side}_sem_eV"] for r in rows],
            float,
        )
        label = "reference" if side == "ref" else "NNP"
        ax_ea.errorbar(x, mean, yerr=sem, fmt=marker + "-", color=color, capsize=3, label=label)
        distance = np.array(
            [
                np.nan
                if r[f"breaking_distance_{side}_A"] is None
                else r[f"breaking_distance_{side}_A"]
                for r in rows
            ],
            float,
        )
        ax_d.plot(x, distance, marker + "-", color=color, label=label)
    xlabel = "carbons in the chain" if key == "chain" else "pulling speed (Å/ps)"
    ax_ea.set_xlabel(xlabel)
    ax_ea.set_ylabel("Ea, replica mean ± sem (eV)")
    ax_d.set_xlabel(xlabel)
    ax_d.set_ylabel("mean breaking distance (Å)")
    ax_ea.legend()
    fig.savefig(folder / "ea.png", dpi=130)
    plt.close(fig)
    return folder / "ea.png"


def _work_figure(rows: list[dict[str, Any]], key: str, study_dir: Path, folder: Path) -> Path:
    n = len(rows)
    columns = min(n, 4)
    lines = -(-n // columns)
    fig, axes = plt.subplots(
        lines, columns, figsize=(3.2 * columns, 2.8 * lines), constrained_layout=True, squeeze=False
    )
    for ax, row in zip(axes.flat, rows, strict=False):
        name = f"C{row[key]}" if key == "chain" else f"v{row[key]:g}"
        sides = (
            (study_dir / "references" / name / "reference", "black"),
            (study_dir / "nnp" / name, "tab:blue"),
        )
        for side, color in sides:
            pulls = ReplicaPulls.load(side / REPLICAS_FILE)
            for r in range(pulls.n):
                ax.plot(pulls.distance_A[r], pulls.work_eV[r], color=color, lw=0.6, alpha=0.5)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("d (Å)", fontsize=8)
        ax.set_ylabel("W (eV)", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle("W(d): reference (black) and NNP (blue), every replica")
    fig.savefig(folder / "work.png", dpi=130)
    plt.close(fig)
    return folder / "work.png"


def _campaign_sentences(rows: list[dict[str, Any]]) -> list[str]:
    sentences = []
    for name, part in _campaigns(rows).items():
        last = part[-1]
        error = last["ea_error_eV"] * EV_TO_KCAL_MOL
        half = last["ea_error_ci95_eV"]
        interval = "no interval" if half is None else f"± {half * EV_TO_KCAL_MOL:.1f}"
        sentences.append(
            f"{name}: final Ea error {error:+.1f} {interval} kcal/mol (95 %) after "
            f"{last['n_labels']} labels, unseen MAE {last['mae_unseen_kcal_mol']:.2f} kcal/mol."
        )
    return sentences


def _pull_sentences(rows: list[dict[str, Any]], key: str, study: str) -> list[str]:
    agree = [r for r in rows if r["agree"]]
    sentences = [
        f"NNP and reference Ea agree within the 95 % interval for {len(agree)} of "
        f"{len(rows)} variants."
    ]
    if study == "speeds" and len(rows) > 1:
        ordered = sorted(rows, key=lambda r: r[key])
        for side, name in (("ref", "reference"), ("nnp", "NNP")):
            ea = [r[f"ea_{side}_mean_eV"] for r in ordered]
            distance = [r[f"breaking_distance_{side}_A"] for r in ordered]
            rising_ea = all(b > a for a, b in itertools.pairwise(ea))
            known = all(d is not None for d in distance)
            rising_d = known and all(b > a for a, b in itertools.pairwise(distance))
            sentences.append(
                f"{name}: Ea {'rises' if rising_ea else 'does not rise monotonically'} and the "
                f"breaking distance {'grows' if rising_d else 'does not grow monotonically'} with "
                "the pulling speed (the expected trend: both increase; differences within the "
                "replicas' standard errors are not a trend)."
            )
    for row in rows:
        # by element pair: C0-C1 and C4-C5 of hexane are the same bond by symmetry
        ref, nnp = _kinds(row["broken_bonds_ref"]), _kinds(row["broken_bonds_nnp"])
        if ref != nnp:
            sentences.append(
                f"{key} {row[key]}: the reference broke {', '.join(ref) or 'no bond'}, the NNP "
                f"{', '.join(nnp) or 'no bond'} ({_cell(row['broken_bonds_ref'])} against "
                f"{_cell(row['broken_bonds_nnp'])})."
            )
    return sentences


def _kinds(counts: dict[str, int] | None) -> list[str]:
    """Element pairs of the bonds broken ("S1-S2" -> "S-S"), sorted; "none" left out."""
    kinds = set()
    for label in counts or {}:
        if label != "none":
            kinds.add("-".join(sorted(part.rstrip("0123456789") for part in label.split("-"))))
    return sorted(kinds)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return html.escape(", ".join(f"{k} {v}" for k, v in value.items()))
    return html.escape("-" if value is None else str(value))


def _html(study: dict[str, Any], figures: list[Path], sentences: list[str]) -> str:
    rows = study["rows"]
    columns = list(rows[0]) if rows else []
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows
    )
    images = "".join(
        f'<figure><img src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode("ascii")}" alt="{path.name}">'
        f"<figcaption>figures/{path.name}</figcaption></figure>"
        for path in figures
    )
    text = "".join(f"<li>{html.escape(s)}</li>" for s in sentences)
    config = html.escape(json.dumps(study.get("config", {}), indent=2))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>rarelearn study: {html.escape(study['study'])}</title><style>"
        "body{font-family:sans-serif;margin:2em auto;max-width:80em}"
        "table{border-collapse:collapse;font-size:85%}td,th{border:1px solid #ccc;"
        "padding:2px 6px;text-align:right}img{max-width:100%}</style></head><body>"
        f"<h1>rarelearn study: {html.escape(study['study'])}</h1>"
        f"<p>Wall time of the last invocation: {study.get('wall_s', '-')} s. Every Ea is a "
        "replica mean; intervals are 95 % (Welch).</p>"
        f"<ul>{text}</ul><h2>Figures</h2>{images}<h2>Rows</h2>"
        f'<div style="overflow-x:auto"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
        f"<h2>Configuration</h2><details><pre>{config}</pre></details></body></html>\n"
    )
