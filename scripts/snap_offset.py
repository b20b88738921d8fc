"""Snap tests read two ways, and the test itself checked with the model as its own labeler.

For every iteration of the given campaigns that ran snap tests (`[snap]`), prints:

- the signed Ea error (NNP minus reference, kcal/mol) and the rupture-force error of the full
  pulls (eV/A), where the campaign has reference pulls;
- the snap tests' labeler-minus-model steps to the snap (the row's own number) and the same
  tests in force units: the labeler's peak spring force in the test minus the model's peak
  spring force in the pull it continued (eV/A);
- with ``--self-seeds N``, the test repeated with the committee's driving member in place of
  the labeler under N thermostat seeds: labeler-minus-model steps when the "labeler" is the
  model, which a sound test puts at zero whatever the seed.

    python scripts/snap_offset.py STUDY/campaigns/snap-seed* --self-seeds 2

Used for docs/convergence.md ("Why the snap steps are offset").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from rarelearn.campaign import load_committee
from rarelearn.config import load_resolved
from rarelearn.dynamics import SMDTrace, run_smd
from rarelearn.snap import SnapStart, load_snap_starts, segment_settings
from rarelearn.threads import torch_threads
from rarelearn.units import EV_TO_KCAL_MOL


def force_difference(folder: Path, starts: list[SnapStart], model_peaks: list[float]) -> float:
    """Mean over the tests where the labeler snapped: its peak spring force minus the model's
    peak spring force in the pull the test continued (eV/A)."""
    differences = []
    for snap in starts:
        trace = SMDTrace.load(folder / "snap" / f"{snap.replica:03d}.npz")
        if trace.broken_frame is not None:
            differences.append(
                float(np.max(trace.spring_force_eV_per_A)) - model_peaks[snap.replica]
            )
    return float(np.mean(differences)) if differences else float("nan")


def self_offset(run: Path, folder: Path, starts: list[SnapStart], seeds: int) -> float:
    """Mean steps to the snap of the test run by the driving member itself, minus the
    model's own steps (the test's offset at zero model error)."""
    config = load_resolved(run)
    calculator = load_committee(folder / "committee").calculator("best", force_uq=False)
    settings = segment_settings(config.reference.smd, config.snap)
    offsets = []
    with torch_threads(1):
        for snap in starts:
            if snap.model_steps is None:
                continue
            for seed in range(seeds):
                trace = run_smd(
                    snap.start,
                    calculator,
                    settings,
                    seed,
                    rest_length_A=snap.rest_length_A,
                    bond_reference=snap.bond_reference,
                )
                if trace.broken_frame is not None:
                    offsets.append(trace.broken_frame - snap.model_steps)
    return float(np.mean(offsets)) if offsets else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="campaign run folders")
    parser.add_argument("--self-seeds", type=int, default=0, help="self-test seeds (0: none)")
    args = parser.parse_args()
    rows = []
    print("run | iteration | Ea error | RF error | steps | force difference | self steps")
    for run in args.runs:
        summary = json.loads((run / "summary.json").read_text())
        for row in summary["iterations"]:
            folder = run / "iterations" / f"{row['iteration']:03d}"
            if row.get("snap_steps_difference_mean") is None or not (folder / "snap").is_dir():
                continue
            starts = load_snap_starts(folder / "snap_starts.traj")
            force = force_difference(folder, starts, row["rupture_force_nnp_replicas_eV_A"])
            error = None
            if row.get("ea_ref_eV") is not None:
                error = (row["ea_nnp_eV"] - row["ea_ref_eV"]) * EV_TO_KCAL_MOL
            self_steps = (
                self_offset(run, folder, starts, args.self_seeds) if args.self_seeds else None
            )
            rows.append((error, row["snap_steps_difference_mean"], force))
            print(
                f"{run.name} | {row['iteration']} | "
                + (f"{error:+.1f}" if error is not None else "-")
                + f" | {row.get('rupture_force_error_eV_A') or float('nan'):+.3f}"
                + f" | {row['snap_steps_difference_mean']:+.0f} | {force:+.3f}"
                + (f" | {self_steps:+.1f}" if self_steps is not None else "")
            )
    known = np.array([r for r in rows if r[0] is not None and np.isfinite(r[2])])
    if len(known) > 2:
        print(
            f"rank correlation with the Ea error over {len(known)} iterations: "
            f"steps {spearmanr(known[:, 0], known[:, 1])[0]:+.2f}, "
            f"force {spearmanr(known[:, 0], known[:, 2])[0]:+.2f}"
        )


if __name__ == "__main__":
    main()
