"""Where a committee's 0 K barrier error lies: on the labeler's path, or off it, on its own.

For each campaign that ran the 0 K check (``[cogef] enabled``) and each of its iterations, the
committee's driver and the labeler are compared on two paths of relaxed geometries: the
labeler's COGEF scan (``cogef/labeler.npz``) and the driver's own (``iterations/NNN/cogef.npz``).
On each path, the energy change from its first point to its quasi-static snap point (the top
of W under the campaign's spring), driver minus labeler, in kcal/mol; and the largest
|difference| of that change over the path's points up to the snap. A committee that has
learned the labeler's path is near zero on it; its 0 K barrier error (the row's
``cogef_ea_error_eV``, beside) then comes from the geometries its own relaxation visits.

    python scripts/cogef_paths.py STUDY/campaigns/snap-cogef-seed0 ...   (or a study folder)

The labeler is evaluated on the driver's path here (about 60 single points an iteration;
seconds with GFN2-xTB), from scratch at each point as labels are.
Used for docs/convergence.md ("Measured: the 0 K pull's labels").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator

from rarelearn.campaign import labeler_of, load_committee
from rarelearn.cogef import CogefCurve
from rarelearn.config import load_resolved
from rarelearn.errors import RarelearnError
from rarelearn.report.tables import markdown_table
from rarelearn.threads import torch_threads
from rarelearn.units import EV_TO_KCAL_MOL


def energies(curve: CogefCurve, calculator: Calculator, upto: int) -> np.ndarray:
    """``calculator``'s energies (eV) of the curve's first ``upto + 1`` relaxed points."""
    values = []
    for k in range(upto + 1):
        image = curve.image(k)
        image.calc = calculator
        values.append(image.get_potential_energy())
    return np.array(values)


def snap_index(curve: CogefCurve, k_spring: float) -> int | None:
    """The curve's point nearest its quasi-static snap, None where it does not snap."""
    try:
        _, snap_A = curve.ea_quasi_static(k_spring)
    except RarelearnError:
        return None
    return int(np.argmin(np.abs(curve.distance_A - snap_A)))


def path_error(
    curve: CogefCurve, model: Calculator, labeler: Calculator | None, k_spring: float
) -> tuple[str, str]:
    """Driver minus labeler on ``curve``'s points: the change to the snap point and the largest
    |difference| up to it (kcal/mol); the labeler's energies are the curve's own where
    ``labeler`` is None (its own scan)."""
    top = snap_index(curve, k_spring)
    if top is None:
        return "-", "-"
    predicted = energies(curve, model, top)
    labels = curve.energy_eV[: top + 1] if labeler is None else energies(curve, labeler, top)
    difference = (predicted - predicted[0]) - (labels - labels[0])
    difference *= EV_TO_KCAL_MOL
    return f"{difference[-1]:+.1f}", f"{np.abs(difference).max():.1f}"


def campaign_rows(run: Path) -> list[list[str]]:
    config = load_resolved(run)
    if not (run / "cogef" / "labeler.npz").is_file():
        raise SystemExit(f"{run}: no labeler scan (the campaign ran without [cogef])")
    k_spring = config.reference.smd.spring_constant_eV_per_A2
    labeler_path = CogefCurve.load(run / "cogef" / "labeler.npz")
    labeler = labeler_of(config).build()
    rows = []
    for row in json.loads((run / "summary.json").read_text())["iterations"]:
        folder = run / "iterations" / f"{row['iteration']:03d}"
        committee = load_committee(folder / "committee")
        model = committee.calculator("best", force_uq=False, driver=config.committee.driver)
        on_labeler = path_error(labeler_path, model, None, k_spring)
        own_path = ("-", "-")
        if (folder / "cogef.npz").is_file():
            own_path = path_error(CogefCurve.load(folder / "cogef.npz"), model, labeler, k_spring)
        error = row.get("cogef_ea_error_eV")
        rows.append(
            [
                run.name,
                str(row["iteration"]),
                "-" if error is None else f"{error * EV_TO_KCAL_MOL:+.1f}",
                *on_labeler,
                *own_path,
                f"{row['ea_error_signed_eV'] * EV_TO_KCAL_MOL:+.1f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="campaign or study folders")
    args = parser.parse_args()
    runs = []
    for folder in args.runs:
        if (folder / "campaigns").is_dir():
            runs += sorted(p for p in (folder / "campaigns").iterdir() if p.is_dir())
        else:
            runs.append(folder)
    header = [
        "campaign",
        "iteration",
        "0 K barrier error (row)",
        "on the labeler's path: change to its snap",
        "largest",
        "on the driver's path: change to its snap",
        "largest",
        "10 K Ea error",
    ]
    with torch_threads(1):
        rows = [row for run in runs for row in campaign_rows(run)]
    print("Driver minus labeler, kcal/mol.")
    print()
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
