"""Markdown table of `rarelearn smd --start` results: one row per pull set, against its reference.

    python scripts/pulls_table.py DIR [DIR ...] [--tolerance 4]

Each DIR holds the ``smd.json`` of ``rarelearn smd --model ITERATION --start REF --out DIR``,
or is a campaign's final check, ``RUN/final/NNN`` (``rarelearn run --final-replicas``).
Used to read final committees against a reference with more replicas than the campaign had
(``rarelearn reference --extend``): the error with Welch's 95 % interval (the campaign rows'),
the paired one (pull r and reference pull r share their start state), the barrier at the snap,
the work after it, and whether the whole Welch interval lies inside the tolerance.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rarelearn.final import checked_run
from rarelearn.units import EV_TO_KCAL_MOL


def _kcal(value: float | None, half_width: float | None = None) -> str:
    if value is None:
        return "n/a"
    text = f"{value * EV_TO_KCAL_MOL:+.1f}"
    if half_width is not None:
        text += f" +- {half_width * EV_TO_KCAL_MOL:.1f}"
    return text


def name(folder: Path) -> str:
    """A pull set's name: its folder's, or for a campaign's final check (``RUN/final/NNN``,
    `rarelearn run --final-replicas`) its campaign's and the iteration checked."""
    run = checked_run(folder)
    return f"{run.name}, iteration {int(folder.name)}" if run else folder.name


def row(folder: Path, tolerance_kcal_mol: float) -> str:
    """One table row from ``folder/smd.json``."""
    result = json.loads((folder / "smd.json").read_text())
    error, half_width = result["ea_error_signed_eV"], result["ea_error_ci95_eV"]
    edge = (abs(error) + half_width) * EV_TO_KCAL_MOL
    inside = "yes" if edge <= tolerance_kcal_mol else f"no ({edge:.1f})"
    force, force_half_width = (
        result["rupture_force_error_eV_A"],
        result["rupture_force_error_ci95_eV_A"],
    )
    bonds = ", ".join(f"{bond} {n}" for bond, n in sorted(result["broken_bonds"].items()))
    cells = [
        name(folder),
        str(result["n_replicas"]),
        _kcal(error, half_width),
        _kcal(result["ea_error_paired_eV"], result["ea_error_paired_ci95_eV"]),
        inside,
        _kcal(result["ea_at_snap_error_eV"], result["ea_at_snap_error_ci95_eV"]),
        f"{result['work_after_snap_nnp_eV']:.2f} / {result['work_after_snap_ref_eV']:.2f}",
        f"{force:+.3f} +- {force_half_width:.3f}",
        f"{result['reference_bond_share']:.0%} ({bonds})",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--tolerance", type=float, default=4.0, help="kcal/mol")
    args = parser.parse_args()
    header = [
        "pulls",
        "pulls a side",
        "Ea error +- 95 % (Welch, kcal/mol)",
        "paired +- 95 %",
        f"whole interval inside +-{args.tolerance:g}",
        "Ea at the snap error +- 95 %",
        "work after the snap, NNP / reference (eV)",
        "rupture force error +- 95 % (eV/A)",
        "on the reference's bonds",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for folder in args.folders:
        print(row(folder, args.tolerance))


if __name__ == "__main__":
    main()
