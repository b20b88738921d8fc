"""Ea split at the snap, and the force the broken-off fragment feels afterwards, per campaign.

For the last iteration of each campaign given (or ``--iteration N``), prints one Markdown row:
the Ea error (max W, the campaign's number), the error of W at each pull's first broken frame,
and each side's rise of W after that frame (`rarelearn.pulls.snap_work_keys`, from the stored
``replicas.npz``: no calculation); where the campaign labeled post-snap frames
(``selection.tail_frames``), their row's model-minus-labeler energy change from the start
(``tail_energy_difference_eV``) beside it. With ``--fragment-forces``, a second table checks why the
rises differ against the labeler itself: on frames of replica 0's NNP pull after its snap, the
net force along the line between the two fragments' centres on the fragment that broke off
(topology of the start state minus the broken bond), from the labeler (GFN2-xTB) and from the
committee (best member, mean). Negative: the fragments attract each other. With ``--timing``,
a table of when the pulls snap: the spring's rest length at each pull's first broken frame (its
travel), NNP minus reference, beside the error of W at a fixed rest length before any pull
snaps; then, over every iteration from 1 on of the campaigns given, the straight-line fit of the
W-at-snap error against that travel error (slope in eV/A: a rupture force, if the error is all
timing).

    python scripts/snap_split.py STUDY/campaigns/snap-seed* --fragment-forces --timing

Used for docs/convergence.md ("Work after the snap", "Where the barrier error sits").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, Calculator

from rarelearn.campaign import labeler_of, load_committee
from rarelearn.committee import Committee
from rarelearn.config import load_resolved
from rarelearn.dynamics import SMDTrace
from rarelearn.molecules import fragment_of
from rarelearn.pulls import ReplicaPulls, finite_sample, snap_work_keys
from rarelearn.report.tables import markdown_table
from rarelearn.runfolder import read_json
from rarelearn.statistics import Sample, welch
from rarelearn.threads import torch_threads
from rarelearn.units import EV_TO_KCAL_MOL

#: Frames after replica 0's snap at which the fragment's force is compared (steps).
OFFSETS = (50, 150, 300, 600, 1000, 1500)
WALK = 10
#: W is compared at the reference's mean travel at its snap minus this much (A): before the
#: earliest snaps measured (0.14 A early), where every pull of both sides is intact.
BEFORE_SNAP_A = 0.25


def last_iteration(run: Path) -> int:
    return max(int(p.name) for p in (run / "iterations").iterdir() if p.name.isdigit())


def split_row(run: Path, iteration: int) -> list[str]:
    folder = run / "iterations" / f"{iteration:03d}"
    model = ReplicaPulls.load(folder / "replicas.npz")
    reference = ReplicaPulls.load(run / "reference" / "replicas.npz")
    keys = snap_work_keys(model, reference)
    ea = (
        model.activation_energy_eV.mean() - reference.activation_energy_eV.mean()
    ) * EV_TO_KCAL_MOL
    at_snap = keys["ea_at_snap_error_eV"] * EV_TO_KCAL_MOL
    half = keys["ea_at_snap_error_ci95_eV"] * EV_TO_KCAL_MOL
    return [
        run.name,
        str(iteration),
        f"{ea:+.1f}",
        f"{at_snap:+.1f} +- {half:.1f}",
        f"{keys['work_after_snap_nnp_eV']:.3f}",
        f"{keys['work_after_snap_ref_eV']:.3f}",
        tail_difference(folder),
    ]


def tail_difference(folder: Path) -> str:
    """The iteration's post-snap labels: model minus labeler energy change from each pull's
    start (kcal/mol, +- 95 % over pulls); "-" where none were labeled."""
    metrics = folder / "metrics.json"
    row = read_json(metrics) if metrics.is_file() else {}
    if row.get("tail_energy_difference_eV") is None:
        return "-"
    text = f"{row['tail_energy_difference_eV'] * EV_TO_KCAL_MOL:+.1f}"
    half = row.get("tail_energy_difference_ci95_eV")
    return text if half is None else f"{text} +- {half * EV_TO_KCAL_MOL:.1f}"


def work_at_travel(pulls: ReplicaPulls, travel_A: float) -> np.ndarray:
    """Per pull, W at the first frame whose rest length reaches ``travel_A`` (NaN for a pull
    that stopped before it)."""
    work = np.full(pulls.n, np.nan)
    for r in range(pulls.n):
        reached = np.flatnonzero(pulls.rest_length_A[r] >= travel_A)
        if reached.size:
            work[r] = pulls.work_eV[r, reached[0]]
    return work


def finite(values: np.ndarray) -> Sample:
    """`finite_sample`, refusing a side on which no pull has the quantity."""
    sample = finite_sample(values)
    if sample is None:
        raise SystemExit("--timing needs pulls that broke on both sides")
    return sample


def timing(
    model: ReplicaPulls, reference: ReplicaPulls
) -> tuple[float, float, float, float, float]:
    """Travel at the snap error (A) and its 95 % half-width, W at the snap error (eV), W error
    at the fixed travel before the snaps (eV) and its half-width."""
    reference_travel = finite(reference.at_snap(reference.rest_length_A))
    travel = welch(finite(model.at_snap(model.rest_length_A)), reference_travel)
    at_snap = snap_work_keys(model, reference)["ea_at_snap_error_eV"]
    fixed = reference_travel.mean - BEFORE_SNAP_A
    before = welch(finite(work_at_travel(model, fixed)), finite(work_at_travel(reference, fixed)))
    return travel.estimate, travel.half_width, at_snap, before.estimate, before.half_width


def timing_tables(chosen: dict[Path, int]) -> str:
    rows, points = [], []
    for run, last in chosen.items():
        reference = ReplicaPulls.load(run / "reference" / "replicas.npz")
        for iteration in range(1, last + 1):
            model = ReplicaPulls.load(run / "iterations" / f"{iteration:03d}" / "replicas.npz")
            travel, travel_half, at_snap, before, before_half = timing(model, reference)
            points.append((travel, at_snap))
            if iteration == last:
                rows.append(
                    [
                        run.name,
                        str(iteration),
                        f"{travel:+.3f} +- {travel_half:.3f}",
                        f"{at_snap * EV_TO_KCAL_MOL:+.1f}",
                        f"{before * EV_TO_KCAL_MOL:+.2f} +- {before_half * EV_TO_KCAL_MOL:.2f}",
                    ]
                )
    header = [
        "campaign",
        "iteration",
        "travel at the snap error +- 95 % (A)",
        "W at the snap error (kcal/mol)",
        f"W error {BEFORE_SNAP_A} A of travel before the reference's snap +- 95 % (kcal/mol)",
    ]
    travel, at_snap = np.array(points).T
    slope, intercept = np.polyfit(travel, at_snap, 1)
    residual = (at_snap - (slope * travel + intercept)) * EV_TO_KCAL_MOL
    correlation = np.corrcoef(travel, at_snap)[0, 1]
    fit = (
        f"Over {len(points)} iterations: W at the snap error = {slope:.2f} eV/A x travel error "
        f"{intercept * EV_TO_KCAL_MOL:+.1f} kcal/mol, r = {correlation:.3f}, "
        f"residual standard deviation {residual.std(ddof=2):.1f} kcal/mol."
    )
    return markdown_table(header, rows) + "\n\n" + fit


def labeled_force(
    labeler: Calculator, atoms: Atoms, side: list[int], axis: np.ndarray | None
) -> float | None:
    """The labeler's net force on ``side`` along ``axis`` (None where its SCF failed)."""
    try:
        forces = labeler.get_forces(atoms)
    except CalculationFailed:
        labeler.reset()
        return None
    return None if axis is None else float(forces[side].sum(axis=0) @ axis)


def fragment_rows(run: Path, iteration: int) -> list[list[str]]:
    folder = run / "iterations" / f"{iteration:03d}"
    trace = SMDTrace.load(folder / "smd.npz")
    if trace.broken_frame is None or trace.broken_bond is None:
        return [[run.name, "-", "replica 0 broke no bond", "", "", "", ""]]
    committee: Committee = load_committee(folder / "committee")
    # from scratch, the SCF of separated radicals often fails to converge: walk the pull from
    # before the snap, every WALK-th frame, each SCF started from the previous one's (as the
    # labeler's own dynamics do)
    labeler = labeler_of(load_resolved(run)).build(reuse_wavefunction=True)
    side = fragment_of(trace.frame(0), trace.broken_bond)
    rows = []
    walked = trace.broken_frame - WALK * 5
    for offset in OFFSETS:
        index = trace.broken_frame + offset
        if index >= trace.n_frames:
            break
        for previous in range(walked, index, WALK):
            labeled_force(labeler, trace.frame(previous), side, None)
        walked = index
        atoms = trace.frame(index)
        rest = [i for i in range(len(atoms)) if i not in side]
        axis = atoms.positions[side].mean(axis=0) - atoms.positions[rest].mean(axis=0)
        axis /= np.linalg.norm(axis)
        gap = min(atoms.get_distances(i, rest).min() for i in side)
        prediction = committee.predict([atoms])
        best = prediction.forces[committee.best_index][0][side].sum(axis=0) @ axis
        mean = prediction.forces.mean(axis=0)[0][side].sum(axis=0) @ axis
        labeled = labeled_force(labeler, atoms, side, axis)
        rows.append(
            [
                run.name,
                f"+{offset}",
                f"{gap:.2f}",
                "SCF not converged" if labeled is None else f"{labeled:+.3f}",
                f"{best:+.3f}",
                f"{mean:+.3f}",
                f"{len(side)} atoms ({trace.broken_bond[0]}-{trace.broken_bond[1]})",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs", type=Path, nargs="+", help="campaign run folders, or study folders (each campaign)"
    )
    parser.add_argument("--iteration", type=int, help="default: each campaign's last")
    parser.add_argument("--fragment-forces", action="store_true")
    parser.add_argument("--timing", action="store_true")
    args = parser.parse_args()
    runs = []
    for folder in args.runs:
        if (folder / "iterations").is_dir():
            runs.append(folder)
        elif (folder / "campaigns").is_dir():
            found = (folder / "campaigns").iterdir()
            runs += sorted(p for p in found if (p / "iterations").is_dir())
        else:
            parser.error(f"{folder} is neither a campaign run folder nor a study folder")
    chosen = {
        run: last_iteration(run) if args.iteration is None else args.iteration for run in runs
    }
    header = [
        "campaign",
        "iteration",
        "Ea error (kcal/mol)",
        "W at the snap error +- 95 % (kcal/mol)",
        "work after the snap, NNP (eV)",
        "work after the snap, reference (eV)",
        "post-snap labels, model - labeler +- 95 % (kcal/mol)",
    ]
    rows = [split_row(run, i) for run, i in chosen.items()]
    if all(row[-1] == "-" for row in rows):  # no campaign labeled post-snap frames
        header, rows = header[:-1], [row[:-1] for row in rows]
    print(markdown_table(header, rows))
    if args.fragment_forces:
        header = [
            "campaign",
            "steps after the snap",
            "closest contact (A)",
            "labeler (eV/A)",
            "best member (eV/A)",
            "committee mean (eV/A)",
            "fragment",
        ]
        with torch_threads(1):
            rows = [row for run, i in chosen.items() for row in fragment_rows(run, i)]
        print()
        print(markdown_table(header, rows))
    if args.timing:
        print()
        print(timing_tables(chosen))


if __name__ == "__main__":
    main()
