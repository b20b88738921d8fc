"""Labeling throughput (frames/s) with 1 and 2 local workers: process pool and Dask LocalCluster.

GFN2-xTB on rattled hexane frames, one thread per worker. Workers are started and warmed up
(tblite imported, one chunk labeled) before the clock starts, so the figures are steady-state
throughput; the ratio 2 workers / 1 worker shows how well labeling scales on this machine.

    python benchmarks/labeling_throughput.py [--frames 240] [--chunk-size 16] [--repeat 3]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from ase import Atoms

from rarelearn.executors import DaskExecutor, Executor, LocalProcessExecutor, label_parallel
from rarelearn.labeling import LabelerSpec, make_labeler
from rarelearn.molecules import build_alkane


def hexane_frames(n: int, seed: int = 0) -> list[Atoms]:
    """`n` hexane geometries rattled by 0.05 A around the all-trans structure."""
    rng = np.random.default_rng(seed)
    template = build_alkane(6)
    frames = []
    for _ in range(n):
        atoms = template.copy()
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        frames.append(atoms)
    return frames


def throughput(
    executor: Executor, spec: LabelerSpec, frames: list[Atoms], chunk_size: int, repeat: int
) -> float:
    """Best frames per second over `repeat` labeling passes, after a warm-up on every worker.

    The best pass, not the mean, because other processes on a shared machine only slow passes.
    """
    label_parallel(spec, frames[: 2 * executor.workers], executor, chunk_size=1)
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        results = label_parallel(spec, frames, executor, chunk_size=chunk_size)
        elapsed = time.perf_counter() - start
        failed = sum(not r.ok for r in results)
        if failed:
            raise RuntimeError(f"{failed} of {len(frames)} frames failed to label")
        best = max(best, len(frames) / elapsed)
    return best


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Measure and print frames/s for each executor and worker count, and the 2/1 ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="passes; the best one counts")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    spec = make_labeler("GFN2-xTB")
    frames = hexane_frames(args.frames)
    factories: dict[str, Callable[[int], Executor]] = {
        "process pool": LocalProcessExecutor,
        "dask": lambda n: DaskExecutor(workers=n, threads_per_worker=1),
    }
    figures: dict[str, float] = {}
    print(f"GFN2-xTB labels of hexane (C6H14), {args.frames} frames, chunk size {args.chunk_size}")
    for name, factory in factories.items():
        for workers in (1, 2):
            with factory(workers) as executor:
                rate = throughput(executor, spec, frames, args.chunk_size, args.repeat)
            figures[f"{name}, {workers} worker(s)"] = rate
            print(f"  {name:12s} {workers} worker(s): {rate:7.1f} frames/s")
        ratio = figures[f"{name}, 2 worker(s)"] / figures[f"{name}, 1 worker(s)"]
        figures[f"{name}, ratio 2/1"] = ratio
        print(f"  {name:12s} speed-up 2 vs 1 worker: {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
