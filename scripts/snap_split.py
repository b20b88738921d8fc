"""Ea split at the snap, and the force the broken-off fragment feels afterwards, per campaign.

For the last iteration of each campaign given (or ``--iteration N``), prints one Markdown row:
the Ea error (max W, the campaign's number), the error of W at each pull's first broken frame,
and each side's rise of W after that frame (`rarelearn.pulls.snap_work_keys`, from the stored
``replicas.npz``: no calculation). With ``--fragment-forces``, a second table checks why the
rises differ against the labeler itself: on frames of replica 0's NNP pull after its snap, the
net force along the line between the two fragments' centres on the fragment that broke off
(topology of the start state minus the broken bond), from the labeler (GFN2-xTB) and from the
committee (best member, mean). Negative: the fragments attract each other.

    python scripts/snap_split.py STUDY/campaigns/snap-seed* --fragment-forces

Used for docs/convergence.md ("Work after the snap").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, Calculator
from ase.neighborlist import NeighborList, natural_cutoffs

from rarelearn.campaign import labeler_of, load_committee
from rarelearn.committee import Committee
from rarelearn.config import load_resolved
from rarelearn.dynamics import SMDTrace
from rarelearn.pulls import ReplicaPulls, snap_work_keys
from rarelearn.threads import torch_threads
from rarelearn.units import EV_TO_KCAL_MOL

#: Frames after replica 0's snap at which the fragment's force is compared (steps).
OFFSETS = (50, 150, 300, 600, 1000, 1500)
WALK = 10


def last_iteration(run: Path) -> int:
    return max(int(p.name) for p in (run / "iterations").iterdir() if p.name.isdigit())


def split_row(run: Path, iteration: int) -> list[str]:
    model = ReplicaPulls.load(run / "iterations" / f"{iteration:03d}" / "replicas.npz")
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
    ]


def fragment(start: Atoms, bond: tuple[int, int]) -> list[int]:
    """Atoms on the second atom's side of ``bond`` in the start state's topology."""
    neighbours = NeighborList(natural_cutoffs(start), self_interaction=False, bothways=True)
    neighbours.update(start)
    side, todo = {bond[1]}, [bond[1]]
    while todo:
        atom = todo.pop()
        for other in neighbours.get_neighbors(atom)[0]:
            if {atom, int(other)} != set(bond) and int(other) not in side:
                side.add(int(other))
                todo.append(int(other))
    if bond[0] in side:
        raise ValueError(f"bond {bond} lies in a ring: breaking it frees no fragment")
    return sorted(side)


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
    side = fragment(trace.frame(0), trace.broken_bond)
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


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="campaign run folders")
    parser.add_argument("--iteration", type=int, help="default: each campaign's last")
    parser.add_argument("--fragment-forces", action="store_true")
    args = parser.parse_args()
    chosen = {run: args.iteration or last_iteration(run) for run in args.runs}
    header = [
        "campaign",
        "iteration",
        "Ea error (kcal/mol)",
        "W at the snap error +- 95 % (kcal/mol)",
        "work after the snap, NNP (eV)",
        "work after the snap, reference (eV)",
    ]
    print(table(header, [split_row(run, i) for run, i in chosen.items()]))
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
        print(table(header, rows))


if __name__ == "__main__":
    main()
