"""The tables of a campaign and of a study: Markdown for the docs, a narrow one for a terminal.

`folder_markdown` is what ``rarelearn report FOLDER --markdown`` prints and what the results
pages in ``docs/`` embed: a campaign's iteration table (with its baselines) from
``summary.json``, or a study's table from ``study.json``. Wall times are left out, since they
differ from run to run where every other number repeats. `closing_table` is the table
``rarelearn run`` prints when it ends: eight columns that fit 80 terminal columns without
cutting a number, the bonds as the bond most pulls broke and its share. Both mark a row whose
pulls broke a bond that no reference pull broke with `FOREIGN_BOND_MARK`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from rarelearn.errors import RarelearnError
from rarelearn.pulls import bond_counts_text
from rarelearn.runfolder import read_json
from rarelearn.units import EV_TO_KCAL_MOL

#: Appended to the bonds of a row whose pulls broke a bond no reference pull broke.
FOREIGN_BOND_MARK = "!"

#: Width of the terminal the closing table must fit without cutting or wrapping a cell.
TERMINAL_WIDTH = 80


def _number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, NaN, a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fixed(value: Any, digits: int, scale: float = 1.0, sign: bool = False) -> str:
    """A number to ``digits`` decimals (times ``scale``), or "-" when there is none."""
    number = _number(value)
    if number is None:
        return "-"
    return f"{number * scale:{'+' if sign else ''}.{digits}f}"


def majority_bond(counts: dict[str, int] | None) -> str:
    """The bond most pulls broke and its share of the pulls: "C2-C3 9/10" ("-": unknown)."""
    if not counts:
        return "-"
    bond, n = max(counts.items(), key=lambda item: item[1])
    return f"{bond} {n}/{sum(counts.values())}"


def foreign_bonds(counts: dict[str, int] | None, reference: dict[str, int] | None) -> list[str]:
    """The bonds the pulls broke that no reference pull broke ("none" is not a bond).

    Empty when either side's bonds are unknown (run folders from before they were recorded).
    """
    if not counts or not reference:
        return []
    return [bond for bond in counts if bond != "none" and bond not in reference]


def _error_kcal_mol(
    row: dict[str, Any], key: str = "ea_error_signed_eV", half_key: str = "ea_error_ci95_eV"
) -> str:
    """Signed Ea error with its 95 % half-width, kcal/mol: "-8.3 +- 2.5"."""
    error = _fixed(row.get(key), 1, EV_TO_KCAL_MOL, sign=True)
    half = _number(row.get(half_key))
    if error == "-" or half is None:
        return error
    return f"{error} +- {half * EV_TO_KCAL_MOL:.1f}"


def _pulls_broke(row: dict[str, Any]) -> str:
    broke = row.get("broke")
    if not isinstance(broke, list) or not broke:
        return "-"
    return f"{sum(bool(b) for b in broke)}/{len(broke)}"


def _shown_baselines(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Baselines that are not a copy of an iteration row (equilibrium_only is iteration 0)."""
    rows = [{k: v for k, v in r.items() if k != "note"} for r in summary.get("iterations", [])]
    shown = {}
    for name, row in (summary.get("baselines") or {}).items():
        if isinstance(row, dict) and {k: v for k, v in row.items() if k != "note"} not in rows:
            shown[name] = row
    return shown


def validated(summary: dict[str, Any]) -> bool:
    """Whether the campaign has reference pulls to compare with (older folders always had)."""
    return summary.get("validated", True) is not False


def unvalidated_line(summary: dict[str, Any]) -> str:
    """The first line of a campaign without reference pulls: what is and is not known."""
    line = (
        "NOT VALIDATED against a reference (no reference pulls; `rarelearn validate RUN` runs them)"
    )
    if summary.get("self_consistency"):
        line += f". Self-consistency: {summary['self_consistency']}"
    return line


def reference_line(summary: dict[str, Any]) -> str:
    """The reference's Ea (mean +- standard error of its replicas) and the bonds it broke."""
    if not validated(summary):
        return "No reference pulls: each committee's Ea against the one before it, no error"
    n_ref = len(summary.get("ea_ref_replicas_eV") or [None])
    line = f"Ea_ref = {_fixed(summary.get('ea_ref_eV'), 3)} eV"
    sem = _number(summary.get("ea_ref_sem_eV"))
    if sem is not None:
        line += f" +- {sem:.3f} (mean +- standard error of {n_ref} replicas)"
    if summary.get("broken_bonds_ref"):
        line += f"; bonds broken: {bond_counts_text(summary['broken_bonds_ref'])}"
    return line


# --------------------------------------------------------------------------------------------
# The closing table of `rarelearn run`
# --------------------------------------------------------------------------------------------

_CLOSING_COLUMNS = ("iter", "labels", "Ea eV", "error", "+-95%", "broke", "bond", "MAE", "sel")
#: Without reference pulls: the change from the previous committee instead of the error.
_UNVALIDATED_COLUMNS = ("iter", "labels", "Ea eV", "change", "+-95%", "broke", "bond", "MAE", "sel")


def closing_table(summary: dict[str, Any]) -> Table:
    """The table `rarelearn run` prints at its end, at most `TERMINAL_WIDTH` columns wide.

    Per iteration (and baseline that is not a copy of an iteration): labels, the NNP's Ea,
    the Ea error and its 95 % half-width (kcal/mol), the pulls that broke, the bond most
    pulls broke with its share (`FOREIGN_BOND_MARK` when some pull broke a bond no reference
    pull broke), the unseen MAE (kcal/mol) and the frames selected. Every other number is in
    the report and in ``rarelearn report RUN --markdown``.
    """
    reference = summary.get("broken_bonds_ref")
    checked = validated(summary)
    caption = (
        f"error, +-95%, MAE (unseen): kcal/mol; bond: the one most pulls broke; "
        f"{FOREIGN_BOND_MARK}: a pull broke a bond no reference pull broke"
    )
    if not checked:
        caption = (
            "change: Ea minus the previous committee's, +-95%: kcal/mol; "
            "bond: the one most pulls broke"
        )
    table = Table(
        title=reference_line({k: v for k, v in summary.items() if k != "broken_bonds_ref"}),
        caption=caption,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        collapse_padding=True,
        title_justify="left",
        caption_justify="left",
    )
    columns = _CLOSING_COLUMNS if checked else _UNVALIDATED_COLUMNS
    for name in columns:
        table.add_column(
            name, justify="left" if name in ("iter", "bond") else "right", no_wrap=True
        )

    error_key, half_key = "ea_error_signed_eV", "ea_error_ci95_eV"
    if not checked:
        error_key, half_key = "ea_change_eV", "ea_change_ci95_eV"

    def cells(name: str, row: dict[str, Any]) -> list[str]:
        half = _number(row.get(half_key))
        bond = majority_bond(row.get("broken_bonds_nnp"))
        if foreign_bonds(row.get("broken_bonds_nnp"), reference):
            bond += f" {FOREIGN_BOND_MARK}"
        return [
            name,
            str(row.get("n_labels", "-")),
            _fixed(row.get("ea_nnp_eV"), 3),
            _fixed(row.get(error_key), 1, EV_TO_KCAL_MOL, sign=True),
            "-" if half is None else f"{half * EV_TO_KCAL_MOL:.1f}",
            _pulls_broke(row),
            bond,
            _fixed(row.get("mae_unseen_kcal_mol"), 2),
            str(row.get("n_selected", "-")),
        ]

    for row in summary.get("iterations", []):
        table.add_row(*cells(str(row["iteration"]), row))
    for name, row in _shown_baselines(summary).items():
        table.add_row(*cells(name, row))
    return table


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table ("|" inside a cell escaped)."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def _slash(values: Any, digits: int) -> str:
    """A list of numbers as "a / b / c" ("-" when there is none)."""
    if not isinstance(values, list) or not values:
        return "-"
    return " / ".join(_fixed(v, digits) for v in values)


def _validated_cells(row: dict[str, Any], single: float | None) -> list[str]:
    """The paired error and the single-pull error of a validated row."""
    return [
        _error_kcal_mol(row, "ea_error_paired_eV", "ea_error_paired_ci95_eV"),
        "-" if single is None else f"{abs(single) * EV_TO_KCAL_MOL:.1f}",
    ]


def _unvalidated_cells(row: dict[str, Any]) -> list[str]:
    """What a row without a reference has in their place: the rupture force (mean +-
    standard error) and the rupture-region labels' difference from the model (+- 95 %)."""
    force = _fixed(row.get("rupture_force_nnp_eV_A"), 2)
    sem = _number(row.get("rupture_force_nnp_sem_eV_A"))
    if force != "-" and sem is not None:
        force += f" +- {sem:.2f}"
    labels = _error_kcal_mol(
        row, "rupture_energy_difference_eV", "rupture_energy_difference_ci95_eV"
    )
    if row.get("tail_energy_difference_eV") is not None:
        tail = _error_kcal_mol(row, "tail_energy_difference_eV", "tail_energy_difference_ci95_eV")
        labels += f"; after the snap {tail}"
    if row.get("rupture_unphysical_pulls"):
        labels += f" (unphysical: {row['rupture_unphysical_pulls']})"
    return [force, labels]


def campaign_markdown(summary: dict[str, Any]) -> str:
    """A campaign's reference line and iteration table (baselines below), as Markdown."""
    reference = summary.get("broken_bonds_ref")
    checked = validated(summary)
    header = [
        "iteration",
        "labels",
        "Ea NNP (eV)",
        "error +- 95 % (kcal/mol)" if checked else "change +- 95 % (kcal/mol)",
        "paired +- 95 %" if checked else "rupture force (eV/A)",
        "single pull" if checked else "rupture labels: model - labeler (kcal/mol)",
        "members' Ea (eV)",
        "pulls broke",
        "bonds broken",
        "breaking d (A)",
        "unseen MAE",
        "train / val MAE",
        "selected",
    ]
    # the 0 K check's column only where it ran (`rarelearn.cogef_check`)
    cold = any(
        r.get("cogef_peak_force_ref_eV_A") is not None for r in summary.get("iterations", [])
    )
    if cold:
        header.append("0 K barrier error (kcal/mol)")
    marked = False
    change_keys = ("ea_change_eV", "ea_change_ci95_eV")

    def cells(name: str, row: dict[str, Any]) -> list[str]:
        nonlocal marked
        bonds = bond_counts_text(row.get("broken_bonds_nnp"))
        if foreign_bonds(row.get("broken_bonds_nnp"), reference):
            bonds += f" {FOREIGN_BOND_MARK}"
            marked = True
        single = _number(row.get("ea_error_single_eV"))
        train = _fixed(row.get("train_mae_kcal_mol"), 2)
        val = _fixed(row.get("val_mae_kcal_mol"), 2)
        return [
            name,
            str(row.get("n_labels", "-")),
            _fixed(row.get("ea_nnp_eV"), 3),
            _error_kcal_mol(row) if checked else _error_kcal_mol(row, *change_keys),
            *(_validated_cells(row, single) if checked else _unvalidated_cells(row)),
            _slash(row.get("ea_members_eV"), 2),
            _pulls_broke(row),
            bonds,
            _fixed(row.get("breaking_distance_nnp_A"), 2),
            _fixed(row.get("mae_unseen_kcal_mol"), 2),
            f"{train} / {val}",
            str(row.get("n_selected", "-")),
            *([_fixed(row.get("cogef_ea_error_eV"), 1, EV_TO_KCAL_MOL, sign=True)] if cold else []),
        ]

    rows = [cells(str(r["iteration"]), r) for r in summary.get("iterations", [])]
    rows += [cells(name, r) for name, r in _shown_baselines(summary).items()]
    parts = [reference_line(summary) + ".", "", markdown_table(header, rows)]
    if not checked:
        parts = [unvalidated_line(summary) + ".", "", *parts]
    if marked:
        parts += ["", f"{FOREIGN_BOND_MARK}: some pull broke a bond no reference pull broke."]
    stop = summary.get("stop_reason")
    if stop is not None:
        converged = summary.get("converged_iteration")
        at = f" (converged at iteration {converged})" if converged is not None else ""
        parts += ["", f"Stop reason: {stop}{at}."]
    final = final_line(summary)
    if final is not None:
        parts += ["", final + "."]
    return "\n".join(parts) + "\n"


def final_line(summary: dict[str, Any]) -> str | None:
    """The final check's verdict (`rarelearn.final`) in one sentence; None where none ran."""
    final = summary.get("final")
    if not final:
        return None
    share = _number(final.get("reference_bond_share"))
    verdict = "inside" if final.get("inside_tolerance") else "not inside"
    bound = f" +-{final['tolerance_kcal_mol']:g} kcal/mol"
    return (
        f"Final check: iteration {final['iteration']}'s committee ({final['n_labels']} labels), "
        f"{final['replicas']} pulls a side: Ea error {_error_kcal_mol(final)} kcal/mol (95 %), "
        f"rupture force {_fixed(final.get('rupture_force_nnp_eV_A'), 2)} eV/A (reference "
        f"{_fixed(final.get('rupture_force_ref_eV_A'), 2)}), "
        f"{'-' if share is None else f'{share:.0%}'} of its pulls on the reference's bonds "
        f"({bond_counts_text(final.get('broken_bonds_nnp'))}): {verdict}{bound}"
    )


def _label(row: dict[str, Any]) -> str:
    """A pull-study row's variant: its chain or pulling speed."""
    if "chain" in row:
        return f"C{row['chain']}"
    return f"{row.get('pull_speed_A_per_ps', '-')}"


def _mean_sem(row: dict[str, Any], side: str) -> str:
    mean = _fixed(row.get(f"ea_{side}_mean_eV"), 3)
    sem = _number(row.get(f"ea_{side}_sem_eV"))
    return mean if sem is None else f"{mean} +- {sem:.3f}"


def _recipes_markdown(recipes: dict[str, Any]) -> str:
    """A convergence study's verdict per recipe: every seed's final error, mean, spread."""
    header = [
        "recipe",
        "seeds",
        "final error per seed (kcal/mol)",
        "mean",
        "spread between seeds",
        "seeds meeting the goal",
        "goal met",
    ]
    table = [
        [
            name,
            ", ".join(str(s) for s in recipe.get("seeds", [])),
            _slash(recipe.get("final_error_kcal_mol"), 1),
            _fixed(recipe.get("mean_error_kcal_mol"), 1, sign=True),
            _fixed(recipe.get("spread_between_seeds_kcal_mol"), 1),
            f"{recipe.get('seeds_meeting_goal', '-')}/{len(recipe.get('seeds', []))}",
            "yes" if recipe.get("goal_met") else "no",
        ]
        for name, recipe in recipes.items()
    ]
    checked = {name: r["final_check"] for name, r in recipes.items() if r.get("final_check")}
    if checked:
        header += ["final check: pulls a side", "error +- 95 % per seed", "meeting", "goal"]
        for row, name in zip(table, recipes, strict=True):
            check = checked.get(name)
            if check is None:
                row += ["-"] * 4
                continue
            errors = [
                f"{e:+.1f}" + ("" if h is None else f" +- {h:.1f}")
                for e, h in zip(check["error_kcal_mol"], check["ci95_kcal_mol"], strict=True)
            ]
            row += [
                "/".join(str(n) for n in sorted(set(check["replicas"]))),
                " / ".join(errors),
                f"{check['seeds_meeting_goal']}/{len(check['seeds'])}",
                "yes" if check["goal_met"] else "no",
            ]
    return markdown_table(header, table)


def _finals_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A convergence study's last row of every campaign: the error with its interval, the
    share of pulls on the reference's bonds, the bond most pulls broke, the rupture force."""
    last: dict[str, dict[str, Any]] = {}
    for row in rows:
        name = str(row["campaign"])
        if name not in last or row["iteration"] > last[name]["iteration"]:
            last[name] = row
    header = [
        "recipe",
        "seed",
        "iteration",
        "labels",
        "Ea error +- 95 % (kcal/mol)",
        "on the reference's bonds",
        "bond most broken",
        "rupture force error +- 95 % (eV/A)",
        "Ea at the snap error +- 95 % (kcal/mol)",
        "work after the snap, NNP / reference (eV)",
    ]
    # the 0 K check's column only where it ran (`rarelearn.cogef_check`)
    cold = any(row.get("cogef_ea_ref_eV") is not None for row in last.values())
    if cold:
        header.append("0 K barrier error (kcal/mol)")
    table = []
    for row in last.values():
        after = [_fixed(row.get(f"work_after_snap_{side}_eV"), 2) for side in ("nnp", "ref")]
        share = _number(row.get("reference_bond_share"))
        force = _number(row.get("rupture_force_error_eV_A"))
        force_half = _number(row.get("rupture_force_error_ci95_eV_A"))
        table.append(
            [
                str(row.get("recipe", "-")),
                str(row.get("seed", "-")),
                str(row["iteration"]),
                str(row.get("n_labels", "-")),
                _error_kcal_mol(row, "ea_error_eV"),
                "-" if share is None else f"{share:.0%}",
                majority_bond(row.get("broken_bonds_nnp")),
                "-"
                if force is None
                else f"{force:+.3f}" + ("" if force_half is None else f" +- {force_half:.3f}"),
                _error_kcal_mol(row, "ea_at_snap_error_eV", "ea_at_snap_error_ci95_eV"),
                " / ".join(after),
                *(
                    [_fixed(row.get("cogef_ea_error_eV"), 1, EV_TO_KCAL_MOL, sign=True)]
                    if cold
                    else []
                ),
            ]
        )
    return markdown_table(header, table)


def study_markdown(study: dict[str, Any]) -> str:
    """A study's table as Markdown: Ea error per campaign and iteration (ensemble, selection,
    convergence, with each recipe's verdict over seeds), or both sides' Ea per chain or
    pulling speed (transfer, speeds)."""
    rows = study.get("rows") or []
    name = study.get("study")
    if any("campaign" in row for row in rows):
        campaigns: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            campaigns.setdefault(str(row["campaign"]), []).append(row)
        iterations = sorted({int(r["iteration"]) for r in rows})
        header = [
            "campaign",
            *(f"iteration {i}" for i in iterations),
            "labels at last",
            "unseen MAE at last",
        ]
        table = []
        for campaign, its in campaigns.items():
            by_iteration = {int(r["iteration"]): r for r in its}
            last = by_iteration[max(by_iteration)]
            errors = [
                _error_kcal_mol(by_iteration[i], "ea_error_eV") if i in by_iteration else "-"
                for i in iterations
            ]
            table.append(
                [
                    campaign,
                    *errors,
                    str(last.get("n_labels", "-")),
                    _fixed(last.get("mae_unseen_kcal_mol"), 2),
                ]
            )
        note = "Ea error (NNP mean - reference mean) +- 95 % (Welch), kcal/mol; MAE in kcal/mol."
        text = f"Study {name}. {note}\n\n{markdown_table(header, table)}\n"
        if isinstance(study.get("recipes"), dict):
            text += f"\nThe last row of every campaign:\n\n{_finals_markdown(rows)}\n"
            text += f"\nPer recipe, over seeds:\n\n{_recipes_markdown(study['recipes'])}\n"
        if isinstance(study.get("self_consistency"), dict):
            signals = _self_consistency_markdown(study["self_consistency"])
            text += f"\nSignals without a reference, against the error:\n\n{signals}\n"
        return text
    first = "chain" if any("chain" in r for r in rows) else "speed (A/ps)"
    header = [
        first,
        "Ea ref (eV)",
        "Ea NNP (eV)",
        "error +- 95 % (kcal/mol)",
        "breaking d ref / NNP (A)",
        "bonds broken, ref / NNP",
        "agree",
    ]
    table = [
        [
            _label(r),
            _mean_sem(r, "ref"),
            _mean_sem(r, "nnp"),
            _error_kcal_mol(r, "ea_error_eV"),
            f"{_fixed(r.get('breaking_distance_ref_A'), 2)} / "
            f"{_fixed(r.get('breaking_distance_nnp_A'), 2)}",
            f"{bond_counts_text(r.get('broken_bonds_ref'))} / "
            f"{bond_counts_text(r.get('broken_bonds_nnp'))}",
            "yes" if r.get("agree") else "no",
        ]
        for r in rows
    ]
    note = "Ea: replica mean +- standard error; agree: the 95 % interval contains zero."
    return f"Study {name}. {note}\n\n{markdown_table(header, table)}\n"


def _share(value: Any, n: Any) -> str:
    return "-" if value is None else f"{value:.0%} of {n}"


def _self_consistency_markdown(signals: dict[str, Any]) -> str:
    """Per recipe: where the self-consistency rule would stop each seed and the error there,
    and how each signal that needs no reference tracks the error (`self_consistency_summary`)."""
    header = [
        "recipe",
        "self rule stops (seed: iteration, error +- 95 %)",
        "its passes with the error inside the tolerance",
        "rank corr. abs(change), abs(error)",
        "abs(error) within 2 x members' spread",
        "snap sign right",
        "rank corr. snap steps, error",
    ]
    # the 0 K check's column only where it ran (`rarelearn.cogef_check`)
    cold = any(signal.get("n_cogef_rows") for signal in signals.values())
    if cold:
        header.append("0 K barrier error vs error: r, mean abs(difference) (kcal/mol)")
    table = []
    for recipe, signal in signals.items():
        stops = []
        for seed, at in signal["self_stop"].items():
            if at is None:
                stops.append(f"{seed}: never")
                continue
            half = at.get("ea_error_ci95_kcal_mol")
            interval = "" if half is None else f" +- {half:.1f}"
            stops.append(f"{seed}: {at['iteration']}, {at['ea_error_kcal_mol']:+.1f}{interval}")
        table.append(
            [
                recipe,
                "; ".join(stops),
                f"{signal['self_passes_within_tolerance']} of {signal['self_passes']}",
                _fixed(signal.get("change_error_rank_correlation"), 2)
                + f" ({signal['n_changes']} iterations)",
                _share(signal.get("members_cover"), signal.get("n_members_rows")),
                _share(signal.get("snap_sign_agrees"), signal.get("n_snap_rows")),
                _fixed(signal.get("snap_error_rank_correlation"), 2)
                + f" ({signal.get('n_snap_steps', 0)} iterations)",
            ]
        )
        if cold:
            table[-1].append(
                _fixed(signal.get("cogef_error_correlation"), 2)
                + ", "
                + _fixed(signal.get("cogef_error_mean_difference_kcal_mol"), 1)
                + f" ({signal.get('n_cogef_rows', 0)} iterations)"
            )
    return markdown_table(header, table)


def folder_markdown(folder: Path | str) -> str:
    """The Markdown tables of a run folder (``summary.json``) or a study (``study.json``)."""
    folder = Path(folder)
    if (folder / "study.json").is_file():
        return study_markdown(read_json(folder / "study.json", ["study", "rows"]))
    if (folder / "summary.json").is_file():
        return campaign_markdown(read_json(folder / "summary.json", ["iterations"]))
    raise RarelearnError(
        f"{folder} holds neither summary.json (a run folder) nor study.json (a study folder)"
    )
