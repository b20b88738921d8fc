"""Peak memory of training one ANI member on 64 frames of an n-alkane (one batch of 64).

    python benchmarks/training_memory.py 40     # C40H82: the baseline path beyond 64 atoms
    python benchmarks/training_memory.py 2      # C2H6: the fit's fixed cost, for comparison

Prints how far the fit raised the process's RSS above what it was before the fit, overall
(the kernel's peak) and per phase (sampled every 2 ms in a thread): the features (AEVs, and
Jacobians on the fast path) and the training loop. Random labels: only memory is measured.
Run one chain per process: the peak is the process's own.
"""

from __future__ import annotations

import resource
import sys
import threading
import time

import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator

from rarelearn.molecules import build_alkane
from rarelearn.potentials.ani import ANIModel, ANISettings


def rss_mb() -> float:
    """The process's resident memory now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


class PeakSampler:
    """Largest RSS seen since the last `reset`, sampled in a daemon thread."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.002)

    def reset(self) -> float:
        """Return the peak so far and start a new phase."""
        peak, self.peak = max(self.peak, rss_mb()), rss_mb()
        return peak


def main(chain: int) -> None:
    """Fit one member for one epoch and print its peak memory, overall and per phase."""
    base = build_alkane(chain)
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(64):
        atoms = base.copy()
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        forces = rng.normal(0.0, 0.1, atoms.positions.shape)
        atoms.calc = SinglePointCalculator(atoms, energy=float(rng.normal()), forces=forces)
        frames.append(atoms)
    settings = ANISettings(epochs=1, batch_size=64, device="cpu")
    sampler = PeakSampler()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sampler.reset()
    model = ANIModel.untrained(["H", "C"], settings, 0, None)
    features = model.training_features(frames)
    features_peak = sampler.reset()
    model.train_on(features, range(56), range(56, 64), 0)
    training_peak = sampler.reset()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"C{chain} ({len(base)} atoms): peak RSS {after:.0f} MB, "
        f"{after - before:.0f} MB above the {before:.0f} MB before the fit "
        f"(features {features_peak - before:+.0f} MB, training {training_peak - before:+.0f} MB)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
