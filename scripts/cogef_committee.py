"""The 0 K check of committees trained outside a campaign (``scripts/retrain.py``).

Each committee folder's driver (the campaign's: best member or mean) is scanned by COGEF with
the campaign's own 0 K check settings and seed, from the campaign's first reference start
state, and compared with the campaign's labeler scan (``RUN/cogef/labeler.npz``, which the
campaign made with ``[cogef] enabled``): the row keys the campaign would write, beside each
committee's validation errors. A screen of a
training lever without 10 K pulls: over ten committees the 0 K barrier error tracked the 10 K
Ea error with r = 0.99 (docs/convergence.md).

    python scripts/cogef_committee.py RUN OUT1/committee OUT2/committee ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from rarelearn.campaign import load_committee, system_of
from rarelearn.cogef import CogefCurve
from rarelearn.cogef_check import cogef_pair, cogef_row, model_curve, reach_A
from rarelearn.config import load_resolved
from rarelearn.report.tables import markdown_table
from rarelearn.runfolder import read_traj
from rarelearn.threads import torch_threads
from rarelearn.units import EV_TO_KCAL_MOL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a campaign run folder that ran the 0 K check")
    parser.add_argument("committees", type=Path, nargs="+", help="committee folders")
    args = parser.parse_args()
    config = load_resolved(args.run)
    labeler_file = args.run / "cogef" / "labeler.json"
    if not labeler_file.is_file():
        parser.error(f"{args.run} has no labeler scan: it ran without [cogef] enabled")
    facts = json.loads(labeler_file.read_text())
    labeler = CogefCurve.load(args.run / "cogef" / "labeler.npz")
    _, pulled = system_of(config)
    pair = cogef_pair(pulled)
    start = read_traj(args.run / "reference" / "start_states.traj")[0]
    reach = reach_A(start, pair, config.reference.smd)
    k_spring = config.reference.smd.spring_constant_eV_per_A2
    rows = []
    with torch_threads(1), TemporaryDirectory() as scratch:
        for n, folder in enumerate(args.committees):
            committee = load_committee(folder)
            calculator = committee.calculator(
                "best", force_uq=False, driver=config.committee.driver
            )
            curve, model_facts = model_curve(
                Path(scratch) / f"{n}.npz",
                Path(scratch) / f"{n}.json",
                start,
                pair,
                calculator,
                config.cogef,
                facts["fine_above_eV_per_A"],
                config.seed,
                reach,
            )
            failures = {"model": model_facts["failed"]} if curve is None else {}
            row = cogef_row(curve, labeler, k_spring, failures)
            error = row["cogef_ea_error_eV"]
            force = row["cogef_peak_force_error_eV_A"]
            rows.append(
                [
                    str(folder),
                    "-" if error is None else f"{error * EV_TO_KCAL_MOL:+.1f}",
                    "-" if force is None else f"{force:+.3f}",
                    row["cogef_bond_nnp"] or "-",
                    f"{np.mean([m['val_energy_mae_eV'] for m in committee.metrics]) * 1000:.0f}",
                    f"{np.mean([m['val_force_mae_eV_A'] for m in committee.metrics]):.4f}",
                    row["cogef_note"] or "",
                ]
            )
    header = [
        "committee",
        "0 K barrier error (kcal/mol)",
        "peak force error (eV/A)",
        "bond",
        "validation energy MAE (meV, members' mean)",
        "validation force MAE (eV/A, members' mean)",
        "",
    ]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
