"""Replay a campaign's snap tests with its committee: where the model leaves the labeler.

A snap test is the labeler continuing an NNP pull from ``window_A`` before the model's snap
(`rarelearn.snap`). This script runs the committee's driver (the campaign's: best member or
mean) from the same start states under the same moving spring, so both sides start from one
state, and prints for iteration N (default: the last with snap tests) of each campaign given:

1. per test, each side's steps to its snap (the replay must snap where the campaign's own pull
   did: checked) and the first step where the labeler's breaking bond differs in length
   between the two by more than ``--apart`` (0.02 A), with its length there;
2. binned by that bond's length, the force with which the bond holds the fragment that breaks
   off (minus the fragment's net force along the bond; `rarelearn.molecules.fragment_of`),
   model minus labeler, on the labeler's own frames (stored forces, no calculation) and on the
   model's replayed frames (labeler computed every ``--every`` steps from ``--from-step``).
   Positive: at that geometry the model holds the fragment harder than the labeler.

    python scripts/snap_replay.py STUDY/campaigns/snap-long-seed1

Used for docs/convergence.md ("Replayed: where the model leaves the labeler").
"""

from __future__ import annotations

import argparse
from itertools import pairwise
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed

from rarelearn.campaign import labeler_of, load_committee
from rarelearn.committee import Committee
from rarelearn.config import load_resolved
from rarelearn.dynamics import SMDTrace, run_smd
from rarelearn.molecules import fragment_of
from rarelearn.report.tables import markdown_table
from rarelearn.snap import load_snap_starts, segment_settings

#: bond-length bins (A) of the force table
EDGES = (1.8, 1.95, 2.05, 2.15, 2.3, 2.5)


def bond_lengths(positions: np.ndarray, bond: tuple[int, int]) -> np.ndarray:
    """Length of ``bond`` in each frame of ``positions`` (frames, atoms, 3)."""
    return np.linalg.norm(positions[:, bond[1]] - positions[:, bond[0]], axis=-1)


def holding_force(
    positions: np.ndarray, forces: np.ndarray, bond: tuple[int, int], side: list[int]
) -> np.ndarray:
    """Per frame, minus the net force on ``side`` (the fragment on ``bond[1]``'s side) along the
    bond, pointing from ``bond[0]`` to ``bond[1]``: positive while the bond holds it back."""
    axis = positions[:, bond[1]] - positions[:, bond[0]]
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    return -np.einsum("fk,fk->f", forces[:, side].sum(axis=1), axis)


def first_apart(model: np.ndarray, labeler: np.ndarray, apart_A: float) -> int | None:
    """First step where the two bond lengths differ by more than ``apart_A`` (None: never, over
    the steps both sides have)."""
    n = min(len(model), len(labeler))
    far = np.nonzero(np.abs(model[:n] - labeler[:n]) > apart_A)[0]
    return int(far[0]) if len(far) else None


def binned(lengths: np.ndarray, values: np.ndarray) -> list[list[str]]:
    """Rows (bin, frames, mean +- standard deviation) of ``values`` by bond length."""
    rows = []
    for low, high in pairwise(EDGES):
        inside = values[(lengths >= low) & (lengths < high)]
        if len(inside):
            rows.append(
                [
                    f"{low:.2f}-{high:.2f}",
                    str(len(inside)),
                    f"{inside.mean():+.3f} +- {inside.std():.3f}",
                ]
            )
    return rows


def replay(run: Path, iteration: int | None, apart_A: float, every: int, from_step: int) -> str:
    config = load_resolved(run)
    if iteration is None:
        tested = sorted(p.parent for p in (run / "iterations").glob("*/snap_starts.traj"))
        if not tested:
            raise SystemExit(f"{run}: no iteration with snap tests")
        folder = tested[-1]
    else:
        folder = run / "iterations" / f"{iteration:03d}"
    committee = load_committee(folder / "committee")
    mode = "mean" if config.committee.driver == "mean" else "best"
    model_calculator = committee.calculator(mode=mode, force_uq=False)
    labeler = labeler_of(config).build(reuse_wavefunction=True)
    settings = segment_settings(config.reference.smd, config.snap)
    tests, on_labeler, on_model = [], [], []
    for start in load_snap_starts(folder / "snap_starts.traj"):
        labeled = SMDTrace.load(folder / "snap" / f"{start.replica:03d}.npz")
        if (
            labeled.broken_bond is None
            or labeled.positions_A is None
            or labeled.forces_eV_per_A is None
        ):
            tests.append([str(start.replica), "labeler held", "", "", ""])
            continue
        bond = labeled.broken_bond
        side = fragment_of(start.bond_reference, bond)
        model = run_smd(
            start.start,
            model_calculator,
            settings,
            rest_length_A=start.rest_length_A,
            bond_reference=start.bond_reference,
        )
        assert model.positions_A is not None
        r_labeler = bond_lengths(labeled.positions_A, bond)
        r_model = bond_lengths(model.positions_A, bond)
        apart = first_apart(r_model, r_labeler, apart_A)
        same = "yes" if model.broken_frame == start.model_steps else "NO"
        tests.append(
            [
                str(start.replica),
                f"{labeled.broken_frame} / {model.broken_frame} ({model.broken_bond_label()})",
                same,
                "-" if apart is None else str(apart),
                "-" if apart is None else f"{r_labeler[apart]:.3f} / {r_model[apart]:.3f}",
            ]
        )
        on_labeler.append(
            np.stack(
                [
                    r_labeler,
                    holding_force(
                        labeled.positions_A, predicted(committee, mode, labeled), bond, side
                    )
                    - holding_force(labeled.positions_A, labeled.forces_eV_per_A, bond, side),
                ],
                axis=1,
            )
        )
        end = model.broken_frame if model.broken_frame is not None else model.n_frames - 1
        steps, frames, labeler_forces = [], [], []
        for step in range(from_step, end + 1, every):
            frame = model.frame(step)
            try:
                labeler_forces.append(labeler.get_forces(frame))
            except CalculationFailed:  # an unconverged SCF: that frame is left out
                labeler.reset()
                continue
            steps.append(step)
            frames.append(frame)
        if not steps:
            continue
        model_forces = predicted_frames(committee, mode, frames)
        positions = model.positions_A[steps]
        on_model.append(
            np.stack(
                [
                    r_model[steps],
                    holding_force(positions, model_forces, bond, side)
                    - holding_force(positions, np.array(labeler_forces), bond, side),
                ],
                axis=1,
            )
        )
    out = [
        f"{run.name}, iteration {int(folder.name)} ({mode} drives)",
        "",
        markdown_table(
            [
                "replica",
                "steps to the snap, labeler / model (bond)",
                "replays the campaign's pull",
                f"first step {apart_A} A apart",
                "bond length there, labeler / model (A)",
            ],
            tests,
        ),
    ]
    for name, rows in (("labeler's frames", on_labeler), ("model's replayed frames", on_model)):
        if rows:
            data = np.concatenate(rows)
            out += [
                "",
                markdown_table(
                    ["bond length (A)", "frames", f"holding force, model - labeler, {name} (eV/A)"],
                    binned(data[:, 0], data[:, 1]),
                ),
            ]
    return "\n".join(out)


def predicted(committee: Committee, mode: str, trace: SMDTrace) -> np.ndarray:
    """The committee driver's forces on every frame of a stored trace."""
    return predicted_frames(committee, mode, [trace.frame(k) for k in range(trace.n_frames)])


def predicted_frames(committee: Committee, mode: str, frames: list[Atoms]) -> np.ndarray:
    forces = np.asarray(committee.predict(frames).forces)
    return forces.mean(axis=0) if mode == "mean" else forces[committee.best_index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--iteration", type=int)
    parser.add_argument("--apart", type=float, default=0.02, help="A (default 0.02)")
    parser.add_argument("--every", type=int, default=20, help="steps between labeled frames")
    parser.add_argument("--from-step", type=int, default=150)
    args = parser.parse_args()
    for run in args.runs:
        print(replay(run, args.iteration, args.apart, args.every, args.from_step))
        print()


if __name__ == "__main__":
    main()
