"""Reference-side costs: labeler frames/s, and what steered MD adds over bare calculator calls.

    python benchmarks/smd_overhead.py [--chain 6] [--steps 1000] [--repeat 5]

Measured in one run: the same SMD geometries are replayed as bare energy+force calls with the
same calculator settings (wavefunction reuse, one thread), so the difference is integration,
the spring, the observer's bookkeeping and ASE's plumbing. Goal: under 10 %.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from rarelearn.dynamics import SMDSettings, relax_start_state, run_smd
from rarelearn.labeling import label_frames, make_labeler
from rarelearn.molecules import build_alkane, default_pulled_atoms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", type=int, default=6)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    spec = make_labeler("GFN2-xTB")
    atoms = build_alkane(args.chain)
    settings = SMDSettings(n_steps=args.steps, relax_steps=200)
    start = relax_start_state(atoms, spec.build(True), default_pulled_atoms(atoms), settings, 0)

    smd_times, bare_times = [], []
    for _ in range(args.repeat):
        began = time.perf_counter()
        trace = run_smd(start, spec.build(True), settings)
        smd_times.append(time.perf_counter() - began)
        replay = atoms.copy()
        replay.calc = spec.build(True)
        began = time.perf_counter()
        for positions in trace.positions_A:
            replay.positions = positions
            replay.get_potential_energy()
            replay.get_forces()
        bare_times.append(time.perf_counter() - began)
    frames = [trace.frame(i) for i in range(0, trace.n_frames, max(1, trace.n_frames // 200))]
    began = time.perf_counter()
    label_frames(spec, frames)
    label_rate = len(frames) / (time.perf_counter() - began)

    smd = statistics.median(smd_times) / trace.n_frames * 1e3
    bare = statistics.median(bare_times) / trace.n_frames * 1e3
    figures = {
        "molecule": atoms.get_chemical_formula(mode="hill"),
        "labeler_frames_per_s": label_rate,
        "smd_step_ms": smd,
        "bare_calculator_ms": bare,
        "smd_overhead_fraction": smd / bare - 1.0,
    }
    print(f"{figures['molecule']} GFN2-xTB, {trace.n_frames} frames, median of {args.repeat}")
    print(f"labeler (fresh SCF per frame):   {label_rate:8.1f} frames/s")
    print(f"bare E+F calls along the SMD:    {bare:8.3f} ms/frame")
    print(f"steered MD step:                 {smd:8.3f} ms/step")
    print(f"integration + bookkeeping:       {100 * figures['smd_overhead_fraction']:8.1f} %")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)


if __name__ == "__main__":
    main()
