"""Peak memory of training one ANI member on 64 frames of an n-alkane (one batch of 64).

    python benchmarks/training_memory.py 40     # C40H82: the baseline path beyond 64 atoms

Prints the process's peak RSS and how far the fit raised it above what it was before the fit
(random labels: only the memory is measured). Run one chain per process: the peak is the
process's own.
"""

from __future__ import annotations

import resource
import sys

import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator

from rarelearn.molecules import build_alkane
from rarelearn.potentials.ani import ANIModel, ANISettings


def main(chain: int) -> None:
    """Fit one member for one epoch and print its peak memory."""
    base = build_alkane(chain)
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(64):
        atoms = base.copy()
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        forces = rng.normal(0.0, 0.1, atoms.positions.shape)
        atoms.calc = SinglePointCalculator(atoms, energy=float(rng.normal()), forces=forces)
        frames.append(atoms)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ANIModel.fit(frames, ANISettings(epochs=1, batch_size=64, device="cpu"), seed=0)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"C{chain} ({len(base)} atoms): peak RSS {after:.0f} MB, "
        f"{after - before:.0f} MB above the {before:.0f} MB before the fit"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
