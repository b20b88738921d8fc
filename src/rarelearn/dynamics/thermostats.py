"""Thermostats and the ASE integrators they select: Berendsen (paper), Langevin, NVE (checks)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from ase import Atoms, units
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.md import MolecularDynamics
from ase.md.nvtberendsen import NVTBerendsen
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet

from rarelearn.errors import ConfigError

THERMOSTATS = ("berendsen", "langevin", "nve")


@dataclass(frozen=True)
class Thermostat:
    """How temperature is controlled: ``berendsen`` (paper), ``langevin`` or ``nve`` (checks)."""

    kind: str = "berendsen"
    temperature_K: float = 10.0
    #: Berendsen coupling time; 100 fs is LAMMPS' usual 200 x dt at 0.5 fs halved.
    tau_fs: float = 100.0
    #: Langevin friction.
    friction_per_fs: float = 0.01

    def validate(self) -> None:
        if self.kind not in THERMOSTATS:
            raise ConfigError(f"thermostat {self.kind!r} unknown; choose one of {THERMOSTATS}")
        if self.temperature_K < 0:
            raise ConfigError(f"temperature must be >= 0 K, got {self.temperature_K}")
        if self.tau_fs <= 0 or self.friction_per_fs <= 0:
            raise ConfigError("thermostat tau_fs and friction_per_fs must be positive")

    def to_dict(self) -> dict:
        return asdict(self)


def make_integrator(
    atoms: Atoms, thermostat: Thermostat, timestep_fs: float, seed: int
) -> MolecularDynamics:
    """The ASE integrator for ``thermostat``; seeded where it draws random numbers."""
    thermostat.validate()
    dt = timestep_fs * units.fs
    if thermostat.kind == "berendsen":
        return NVTBerendsen(
            atoms, dt, temperature_K=thermostat.temperature_K, taut=thermostat.tau_fs * units.fs
        )
    if thermostat.kind == "langevin":
        # ASE 3.28+ asks for FixCom instead of fixcm=True, which biases small systems.
        atoms.set_constraint(FixCom())
        return Langevin(
            atoms,
            dt,
            temperature_K=thermostat.temperature_K,
            friction=thermostat.friction_per_fs / units.fs,
            rng=np.random.default_rng(seed),
            fixcm=False,
        )
    return VelocityVerlet(atoms, dt)


def draw_velocities(atoms: Atoms, temperature_K: float, seed: int) -> None:
    """Maxwell-Boltzmann velocities at T, without centre-of-mass drift or rotation, seeded."""
    MaxwellBoltzmannDistribution(
        atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed), force_temp=True
    )
    Stationary(atoms)
    ZeroRotation(atoms)
