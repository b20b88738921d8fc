"""Small GFN2-xTB data sets for the ANI and committee tests and the speed benchmark.

Generated on the fly (seconds): Langevin MD of a short alkane with tblite, every `stride`-th
frame kept as a labeled frame (SinglePointCalculator). Nothing is cached in the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.optimize import BFGS


def alkane(n_carbons: int) -> Atoms:
    """All-trans n-alkane (rarelearn.molecules.build_alkane, or a local zigzag builder)."""
    try:
        from rarelearn.molecules import build_alkane

        return build_alkane(n_carbons)
    except ImportError:
        return _zigzag_alkane(n_carbons)


def _zigzag_alkane(n: int) -> Atoms:
    cc, ch = 1.53, 1.09
    half = np.radians(109.5) / 2
    dx, dz = cc * np.sin(half), cc * np.cos(half) / 2
    carbons = [np.array([i * dx, 0.0, dz if i % 2 else -dz]) for i in range(n)]
    pos, sym = list(carbons), ["C"] * n
    for i, p in enumerate(carbons):
        s = 1 if i % 2 else -1
        for sy in (1.0, -1.0):
            v = np.array([0.0, sy * np.sin(np.radians(54.75)), s * np.cos(np.radians(54.75))])
            pos.append(p + ch * v)
            sym.append("H")
        if i in (0, n - 1):
            v = np.array([-1.0 if i == 0 else 1.0, 0.0, s * 0.33])
            pos.append(p + ch * v / np.linalg.norm(v))
            sym.append("H")
    return Atoms(sym, positions=pos)


def xtb_calculator():
    """GFN2-xTB through tblite, quiet."""
    from tblite.ase import TBLite

    return TBLite(method="GFN2-xTB", verbosity=0)


def label(atoms: Atoms, calc=None) -> Atoms:
    """A labeled copy of `atoms` (energy and forces from GFN2-xTB)."""
    calc = calc or xtb_calculator()
    work = atoms.copy()
    work.calc = calc
    out = atoms.copy()
    out.calc = SinglePointCalculator(
        out, energy=work.get_potential_energy(), forces=work.get_forces()
    )
    return out


def xtb_md_frames(
    n_carbons: int = 3,
    n_frames: int = 300,
    temperature_K: float = 500.0,
    stride: int = 4,
    seed: int = 0,
) -> list[Atoms]:
    """Labeled frames from a short GFN2-xTB Langevin MD (0.5 fs) of an n-alkane.

    Runs in a child process with OMP_NUM_THREADS=1: tblite's OpenMP threads fight with
    torch's on a busy 2-core machine (measured 1.9 ms vs 590 ms per propane call).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "frames.extxyz"
        code = (
            f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            "from _ani_data import _md_frames; from ase.io import write; "
            f"write({str(out)!r}, _md_frames({n_carbons}, {n_frames}, {temperature_K}, "
            f"{stride}, {seed}))"
        )
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        frames = read(out, ":")
    for i, f in enumerate(frames):
        f.info["id"] = i
    return frames


def _md_frames(
    n_carbons: int, n_frames: int, temperature_K: float, stride: int, seed: int
) -> list[Atoms]:
    atoms = alkane(n_carbons)
    atoms.calc = xtb_calculator()
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=200)
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    dyn = Langevin(
        atoms, 0.5 * units.fs, temperature_K=temperature_K, friction=0.02, rng=rng, fixcm=False
    )
    frames: list[Atoms] = []

    def record() -> None:
        frame = atoms.copy()
        frame.calc = SinglePointCalculator(
            frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces()
        )
        frames.append(frame)

    dyn.attach(record, interval=stride)
    dyn.run(stride * n_frames - 1)
    return frames[:n_frames]


def stretched(atoms: Atoms, factor: float = 1.35) -> Atoms:
    """The chain stretched along its long axis (a geometry far from equilibrium MD)."""
    out = atoms.copy()
    pos = out.positions - out.positions.mean(axis=0)
    _, _, vt = np.linalg.svd(pos)
    axis = vt[0]
    along = pos @ axis
    out.positions = out.positions + np.outer(along * (factor - 1.0), axis)
    return out
