"""Plain thermostatted MD that samples labeled frames (the initial training set at 500 K)."""

from __future__ import annotations

from collections.abc import Callable

from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator

from rarelearn.dynamics.thermostats import Thermostat, draw_velocities, make_integrator
from rarelearn.errors import ConfigError


def run_md(
    atoms: Atoms,
    calculator: Calculator,
    thermostat: Thermostat,
    timestep_fs: float,
    n_frames: int,
    seed: int,
    equilibration_steps: int = 0,
    sample_every: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[Atoms]:
    """Run MD and return ``n_frames`` snapshots labeled with the calculator's energy and forces.

    The MD's own energies and forces are the labels, so the reference calculator is called once
    per step and never again for these frames.
    """
    if n_frames < 1 or sample_every < 1 or equilibration_steps < 0 or timestep_fs <= 0:
        raise ConfigError(
            "MD needs n_frames >= 1, sample_every >= 1, equilibration_steps >= 0 "
            "and timestep_fs > 0"
        )
    system = atoms.copy()
    system.calc = calculator
    draw_velocities(system, thermostat.temperature_K, seed)
    integrator = make_integrator(system, thermostat, timestep_fs, seed)
    total_steps = equilibration_steps + n_frames * sample_every
    frames: list[Atoms] = []

    def sample() -> None:
        step = integrator.nsteps
        if step <= equilibration_steps or (step - equilibration_steps) % sample_every:
            return
        frame = system.copy()
        frame.calc = SinglePointCalculator(
            frame,
            energy=system.get_potential_energy(),
            forces=system.get_forces().copy(),
        )
        frames.append(frame)

    integrator.attach(sample, interval=1)
    for _ in integrator.irun(total_steps):
        if progress is not None and integrator.nsteps % 25 == 0:
            progress(integrator.nsteps, total_steps)
    return frames
