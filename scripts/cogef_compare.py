"""A campaign's committees against its labeler on the 0 K pull (COGEF), beside its 10 K rows.

For every iteration of each run folder given, the committee's driver (best member or mean, as
the campaign drove its pulls) and the labeler each relax the campaign's molecule and stretch
the pulled pair by COGEF, with the functions and settings of the campaign's own 0 K check
(`rarelearn.cogef_check`; a campaign that ran it has its scans read back, not redone), so the
numbers are the row keys such a campaign writes. Printed per iteration, model minus labeler:
the peak resisting force, where it lies, and the barrier a quasi-static pull with the
campaign's spring measures; beside them the row's own Ea error (replica mean, 95 % interval)
and rupture-force error from its 10 K steered pulls. Then, over every iteration printed, how
the 0 K barrier error tracks the 10 K one (Pearson r, slope). The labeler's own 0 K numbers
are printed against its reference pulls, beside a labeler scan in fine steps throughout (the
grid's own error).

    python scripts/cogef_compare.py STUDY/campaigns/snap-seed0 STUDY/campaigns/snap-seed1

``--symmetry`` prints instead the labeler's curve under three ways of breaking a symmetric
chain's symmetry. ``--save DIR`` keeps the scans as ``DIR/<run>/labeler.npz`` and
``DIR/<run>/<iteration>.npz`` (and is where a rerun reads them back).
Used for docs/convergence.md ("The 0 K pull: where the barrier error lies").
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path
from tempfile import mkdtemp

import numpy as np
from ase import Atoms

from rarelearn.campaign import labeler_of, load_committee, system_of
from rarelearn.cogef import cogef_scan
from rarelearn.cogef_check import (
    CogefSettings,
    cogef_pair,
    cogef_row,
    labeler_curve,
    model_curve,
    reach_A,
    scan_side,
)
from rarelearn.config import load_resolved
from rarelearn.errors import RarelearnError
from rarelearn.molecules import relax
from rarelearn.report.tables import markdown_table
from rarelearn.runfolder import read_traj
from rarelearn.threads import torch_threads
from rarelearn.units import EV_TO_KCAL_MOL


def pulled_start(run: Path) -> tuple[Atoms, tuple[int, int]]:
    """``run``'s first reference start state (10 K) and its pulled pair. Each side relaxes
    it with its own potential: a built chain can sit on a symmetric saddle, whose energy the
    scan would release on the way (0.2 eV for hexane)."""
    _, pulled = system_of(load_resolved(run))
    start = read_traj(run / "reference" / "start_states.traj")[0]
    return start, cogef_pair(pulled)


def symmetry(run: Path, step_A: float) -> str:
    """The labeler's curve under three ways of breaking the chain's symmetry: how far past the
    peak its equivalent bonds stretch together, and what that does to the barrier."""
    config = load_resolved(run)
    k = config.reference.smd.spring_constant_eV_per_A2
    start, pair = pulled_start(run)
    calculator = labeler_of(config).build(reuse_wavefunction=True)
    relaxed = relax(start, calculator, 1e-3, 3000)
    rows = []
    for noise, lead in ((1e-3, False), (1e-2, False), (3e-3, True)):
        curve = cogef_scan(
            relaxed, calculator, pair, step_A=step_A, symmetry_noise_A=noise, lead_bond=lead
        )
        intact = int(np.nonzero(curve.force_eV_per_A > 0.5 * curve.peak()[0])[0][-1])
        bonds, ratio = curve.bond_stretch(intact)
        image = curve.image(intact)
        longest, second = (image.get_distance(*bonds[t]) for t in np.argsort(ratio)[::-1][:2])
        barrier, _ = curve.ea_quasi_static(k)
        rows.append(
            [
                f"shake {noise} A" + (", most stretched bond led" if lead else ""),
                f"{curve.peak()[0]:.3f}",
                f"{curve.distance_A[intact]:.3f}",
                f"{barrier:.3f}",
                f"{longest:.3f} / {second:.3f}",
            ]
        )
    return markdown_table(
        [
            "symmetry broken by",
            "peak force (eV/A)",
            "last intact d (A)",
            "quasi-static Ea (eV)",
            "there: the two most stretched bonds (A)",
        ],
        rows,
    )


def compare(runs: list[Path], step_A: float, save_dir: Path | None) -> str:
    rows, pairs, out = [], [], []
    for run in runs:
        config = load_resolved(run)
        k = config.reference.smd.spring_constant_eV_per_A2
        start, pair = pulled_start(run)
        reach = reach_A(start, pair, config.reference.smd)
        build = partial(labeler_of(config).build, reuse_wavefunction=True)
        # the campaign's own scans where it ran the 0 K check, else scans saved here
        own = config.cogef.enabled
        settings = config.cogef if own else CogefSettings(step_A=step_A)
        folder = run / "cogef" if own else (save_dir or Path(mkdtemp())) / run.name
        labeler, facts = labeler_curve(folder, start, pair, build, settings, config.seed, reach)
        if labeler is None:
            raise SystemExit(f"{run}: the labeler's scan failed: {facts['failed']}")
        fine = scan_side(start, pair, build(), CogefSettings(step_A=step_A), 0.0, 0, reach)
        f_ref, d_ref = labeler.peak()
        try:
            ea_ref, _ = labeler.ea_quasi_static(k)
        except RarelearnError as exc:
            raise SystemExit(f"{run}: no 0 K barrier to compare with: {exc}") from None
        out.append(
            f"{run.name}: the labeler's quasi-static Ea from a scan in fine steps throughout, "
            f"{fine.ea_quasi_static(k)[0]:.3f} eV, and in the models' steps (coarse below "
            f"{facts['fine_above_eV_per_A']:.2f} eV/A), {ea_ref:.3f} eV: the scan's own "
            "reproducibility"
        )
        reference = json.loads((run / "reference" / "reference.json").read_text())
        out.append(
            f"{run.name}: labeler at 0 K: peak force {f_ref:.3f} eV/A at d = {d_ref:.3f} A, "
            f"quasi-static Ea {ea_ref:.3f} eV; its 10 K pulls: rupture force "
            f"{reference['rupture_force_mean_eV_A']:.3f} +- "
            f"{reference['rupture_force_sem_eV_A']:.3f} eV/A, Ea "
            f"{reference['activation_energy_mean_eV']:.3f} +- "
            f"{reference['activation_energy_sem_eV']:.3f} eV (standard errors)"
        )
        summary = json.loads((run / "summary.json").read_text())
        for row in summary["iterations"]:
            iteration = row["iteration"]
            here = run / "iterations" / f"{iteration:03d}"
            where = (here / "cogef") if own else (folder / f"{iteration:03d}")
            committee = load_committee(here / "committee")
            calculator = committee.calculator(
                "best", force_uq=False, driver=config.committee.driver
            )
            with torch_threads(1):
                model, model_facts = model_curve(
                    where.with_suffix(".npz"),
                    where.with_suffix(".json"),
                    start,
                    pair,
                    calculator,
                    settings,
                    facts["fine_above_eV_per_A"],
                    config.seed,
                    reach,
                )
            failures = {} if model is not None else {"model": model_facts["failed"]}
            cold_row = cogef_row(model, labeler, k, failures)
            if cold_row["cogef_ea_error_eV"] is None:
                out.append(f"{run.name} iteration {iteration}: {cold_row['cogef_note']}")
                continue
            cold = cold_row["cogef_ea_error_eV"] * EV_TO_KCAL_MOL
            warm = row["ea_error_signed_eV"] * EV_TO_KCAL_MOL
            pairs.append((cold, warm))
            rows.append(
                [
                    run.name,
                    str(iteration),
                    str(row["n_labels"]),
                    f"{cold_row['cogef_peak_force_error_eV_A']:+.3f}",
                    f"{model.peak()[1] - d_ref:+.3f}",
                    f"{cold:+.1f}",
                    f"{warm:+.1f} +- {row['ea_error_ci95_eV'] * EV_TO_KCAL_MOL:.1f}",
                    f"{row['rupture_force_error_eV_A']:+.3f}",
                    cold_row["cogef_bond_nnp"] or "-",
                ]
            )
    out += [
        "",
        markdown_table(
            [
                "campaign",
                "iteration",
                "labels",
                "0 K peak force, model - labeler (eV/A)",
                "where, model - labeler (A)",
                "0 K quasi-static Ea error (kcal/mol)",
                "10 K Ea error, 95 % (kcal/mol)",
                "10 K rupture force error (eV/A)",
                "0 K bond broken",
            ],
            rows,
        ),
    ]
    if len(pairs) >= 3:
        cold, warm = np.array(pairs).T
        r = float(np.corrcoef(cold, warm)[0, 1])
        slope, intercept = np.polyfit(cold, warm, 1)
        out += [
            "",
            f"{len(pairs)} committees: 10 K Ea error = {slope:.2f} x 0 K error "
            f"{intercept:+.1f} kcal/mol, Pearson r = {r:.2f}; mean |10 K - 0 K| "
            f"{np.abs(warm - cold).mean():.1f} kcal/mol",
        ]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--step", type=float, default=0.02, help="COGEF step (A), default 0.02")
    parser.add_argument("--save", type=Path, help="folder for each curve's npz")
    parser.add_argument(
        "--symmetry", action="store_true", help="only the labeler, three symmetry breakings"
    )
    args = parser.parse_args()
    if args.symmetry:
        print(symmetry(args.runs[0], args.step))
    else:
        print(compare(args.runs, args.step, args.save))


if __name__ == "__main__":
    main()
