"""Cost against molecule size: the committee's calculator against GFN2-xTB, C2 to C40.

    python benchmarks/size.py [--json FILE] [--sizes 2 4 6 11 20 30 40]

For each all-trans n-alkane, in one run (so the figures are like for like on a busy machine):
- NNP: a committee of 3 members (untrained weights; the cost does not depend on them),
  energy + forces + UQ per frame through `committee.calculator("best")` as a user calls it
  (the forces of every member, for the force spread), one torch thread;
- the same call (forces of every member) and the steered-MD force call (every member's
  energy, the driver's forces) on the evaluator, along each AEV path: the static tables (up
  to `MAX_STATIC_ATOMS` atoms) and TorchANI's neighbour list, which the calculator takes
  beyond them;
- GFN2-xTB through the campaign's labeler (`rarelearn.labeling`: tblite, one thread, a fresh
  SCF per frame);
- the ratio xTB / NNP per size (above 1: the NNP is the cheaper).
Frames are the builder's (unrelaxed) geometry with 0.03 A of noise; timings are medians of five
repeats, with fewer calls for larger molecules.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from rarelearn.committee import Committee
from rarelearn.labeling import make_labeler
from rarelearn.molecules import build_alkane
from rarelearn.potentials import ANIModel, ANISettings
from rarelearn.potentials.ani.aev import MAX_STATIC_ATOMS

SIZES = (2, 4, 6, 11, 20, 30, 40)
N_FRAMES = 8
PATH_COLUMNS = tuple(
    f"nnp_{call}_ms_{path}"
    for call in ("all_forces", "smd_force_call")
    for path in ("static", "neighbor_list")
)


def _median_ms(fn: Callable[[int], object], budget_s: float = 0.3, repeats: int = 5) -> float:
    """Median over `repeats` of the mean milliseconds per call of ``fn(k)`` (k counts calls),
    with as many calls per repeat as fit in about `budget_s` (at least 2)."""
    began = time.perf_counter()
    fn(0)
    n = max(2, min(200, int(budget_s / max(time.perf_counter() - began, 1e-6))))
    out = []
    for _ in range(repeats):
        began = time.perf_counter()
        for k in range(n):
            fn(k)
        out.append((time.perf_counter() - began) / n)
    return statistics.median(out) * 1e3


def _frames(n_carbons: int) -> list[Atoms]:
    rng = np.random.default_rng(n_carbons)
    frames = []
    for _ in range(N_FRAMES):
        atoms = build_alkane(n_carbons)
        atoms.positions += rng.normal(0.0, 0.03, atoms.positions.shape)
        frames.append(atoms)
    return frames


def _calculator_ms(committee: Committee, frames: list[Atoms]) -> float:
    """E + F + UQ (every member's forces) per frame through the ASE calculator."""
    atoms = frames[0].copy()
    atoms.calc = committee.calculator("best")
    atoms.calc.prepare(atoms.numbers)

    def call(k: int) -> None:
        atoms.positions = frames[k % len(frames)].positions
        atoms.get_forces()
        assert "forces_std" in atoms.calc.results

    return _median_ms(call)


def _evaluator_ms(committee: Committee, frames: list[Atoms], path: str, forces: str) -> float:
    evaluator = committee.evaluator(frames[0].numbers, aev_path=path)
    return _median_ms(lambda k: evaluator(frames[k % len(frames)].positions, forces=forces))


def _xtb_ms(frames: list[Atoms]) -> float:
    atoms = frames[0].copy()
    atoms.calc = make_labeler("GFN2-xTB").build()

    def call(k: int) -> None:
        atoms.positions = frames[k % len(frames)].positions
        atoms.get_forces()

    return _median_ms(call)


def bench_size(committee: Committee, n_carbons: int) -> dict[str, float | int | str]:
    """Every figure of one chain length."""
    frames = _frames(n_carbons)
    n_atoms = len(frames[0])
    static = n_atoms <= MAX_STATIC_ATOMS
    out: dict[str, float | int | str] = {
        "molecule": frames[0].get_chemical_formula(mode="hill"),
        "atoms": n_atoms,
        "calculator_path": "static" if static else "neighbor_list",
        "nnp_ms": _calculator_ms(committee, frames),
    }
    for path in ("static", "neighbor_list") if static else ("neighbor_list",):
        out[f"nnp_all_forces_ms_{path}"] = _evaluator_ms(committee, frames, path, "all")
        out[f"nnp_smd_force_call_ms_{path}"] = _evaluator_ms(committee, frames, path, "best")
    out["xtb_ms"] = _xtb_ms(frames)
    out["xtb_over_nnp"] = float(out["xtb_ms"]) / float(out["nnp_ms"])
    return out


def _cell(row: dict[str, float | int | str], key: str) -> str:
    return f"{row[key]:9.2f}" if key in row else f"{'-':>9s}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="carbons")
    args = parser.parse_args()
    began = time.perf_counter()
    load_before = os.getloadavg()[0]
    torch.set_num_threads(1)
    members = [ANIModel.untrained(["H", "C"], ANISettings(), seed=seed) for seed in range(3)]
    committee = Committee(members=members, splits=[{"train": [], "val": []}] * 3)
    rows = []
    for n in args.sizes:
        rows.append(bench_size(committee, n))
        print(f"C{n} done ({time.perf_counter() - began:.0f} s)", flush=True)
    print(
        "ms per frame; NNP: 3 members, E+F+UQ (every member's forces); all/SMD: evaluator's\n"
        "every-member forces / SMD force call per AEV path (st: static tables, nl: neighbour "
        "list)"
    )
    header = (
        f"{'molecule':>9s} {'atoms':>5s} {'path':>6s} {'NNP':>9s} {'xTB':>9s} {'xTB/NNP':>8s}"
        f" {'all st':>9s} {'all nl':>9s} {'SMD st':>9s}"
        f" {'SMD nl':>9s}"
    )
    print(header)
    for row in rows:
        path = "static" if row["calculator_path"] == "static" else "nl"
        print(
            f"{row['molecule']:>9s} {row['atoms']:5d} {path:>6s} {row['nnp_ms']:9.2f}"
            f" {row['xtb_ms']:9.2f} {row['xtb_over_nnp']:7.2f}x "
            + " ".join(_cell(row, key) for key in PATH_COLUMNS)
        )
    wall = time.perf_counter() - began
    load_after = os.getloadavg()[0]
    print(f"wall {wall:.0f} s; load average {load_before:.1f} before, {load_after:.1f} after")
    if args.json is not None:
        result = {
            "sizes": rows,
            "threads": 1,
            "members": committee.n_members,
            "max_static_atoms": MAX_STATIC_ATOMS,
            "wall_s": wall,
            "load_average": [load_before, load_after],
        }
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
