"""Cross-check of the reference SMD against an independent implementation of the same protocol.

    python benchmarks/independent_reference.py RUN_OR_REFERENCE_DIR [--steps 6500]

Reads the start state and settings rarelearn saved (``reference/start_state.traj`` and
``reference/reference.json``) and pulls again with code that shares nothing with
``rarelearn.dynamics``: a hand-written velocity Verlet with Berendsen velocity scaling, the
spring force written out, and the work as the trapezoid integral of k (R0 - d) v dt, calling
tblite's own ASE calculator directly. Prints both activation energies and breaking distances.
"""

from __future__ import annotations

import os

# One OpenMP thread, set before tblite loads: on a busy 2-core machine two threads were
# measured up to 100x slower per call, and one thread makes the run reproducible.
os.environ["OMP_NUM_THREADS"] = "1"

import argparse
import json
from pathlib import Path

import numpy as np
from ase import units
from ase.io import read
from tblite.ase import TBLite


def pull(atoms, pulled, settings: dict, n_steps: int) -> dict:
    """Independent SMD: returns Ea (max work) and the spring distance where the force peaks."""
    i, j = pulled[0][0], pulled[1][0]
    k = settings["spring_constant_eV_per_A2"]
    dt = settings["timestep_fs"] * units.fs
    speed = settings["pull_speed_A_per_ps"] / 1000.0 / units.fs  # A per ASE time unit
    target_t = settings["temperature_K"]
    tau = settings["thermostat"]["tau_fs"] * units.fs
    masses = atoms.get_masses()[:, None]
    calc = TBLite(method="GFN2-xTB", verbosity=0)
    atoms.calc = calc
    positions = atoms.positions.copy()
    momenta = atoms.get_momenta().copy()
    rest = float(np.linalg.norm(positions[j] - positions[i]))

    def forces_at(x: np.ndarray, rest_length: float) -> tuple[np.ndarray, float, float]:
        atoms.positions = x
        f = atoms.get_forces().copy()
        vector = x[j] - x[i]
        distance = float(np.linalg.norm(vector))
        tension = k * (distance - rest_length)
        f[i] += tension * vector / distance
        f[j] -= tension * vector / distance
        return f, distance, k * (rest_length - distance)

    forces, distance, spring_force = forces_at(positions, rest)
    work, works, distances, spring_forces = 0.0, [0.0], [distance], [spring_force]
    n_dof = 3 * len(atoms) - 3
    for _ in range(n_steps):
        kinetic = 0.5 * float(np.sum(momenta**2 / masses))
        temperature = 2 * kinetic / (n_dof * units.kB)
        momenta *= np.sqrt(1 + dt / tau * (target_t / max(temperature, 1e-12) - 1))
        momenta += 0.5 * dt * forces
        momenta -= momenta.sum(axis=0) / len(atoms)
        positions = positions + dt * momenta / masses
        rest += speed * dt
        forces, distance, new_force = forces_at(positions, rest)
        momenta += 0.5 * dt * forces
        work += 0.5 * (spring_force + new_force) * speed * dt
        spring_force = new_force
        works.append(work)
        distances.append(distance)
        spring_forces.append(spring_force)
    peak = int(np.argmax(spring_forces))
    return {
        "activation_energy_eV": float(np.max(works)),
        "peak_force_distance_A": distances[peak],
        "peak_spring_force_eV_per_A": spring_forces[peak],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a run folder or a `rarelearn reference` --out")
    parser.add_argument("--steps", type=int, help="pull steps (default: as the reference)")
    args = parser.parse_args()
    reference_dir = args.folder / "reference"
    settings = json.loads((reference_dir / "reference.json").read_text())
    atoms = read(reference_dir / "start_state.traj")
    pulled = atoms.info["pulled"]
    independent = pull(atoms, pulled, settings, args.steps or settings["n_steps"])
    print(
        f"rarelearn:   Ea = {settings['activation_energy_eV']:.3f} eV, "
        f"peak force {settings['peak_spring_force_eV_per_A']:.3f} eV/A"
    )
    print(
        f"independent: Ea = {independent['activation_energy_eV']:.3f} eV, "
        f"peak force {independent['peak_spring_force_eV_per_A']:.3f} eV/A "
        f"at d = {independent['peak_force_distance_A']:.2f} A"
    )
    if "activation_energy_std_eV" in settings:
        print(f"replica spread of the reference: {settings['activation_energy_std_eV']:.3f} eV")


if __name__ == "__main__":
    main()
