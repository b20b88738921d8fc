"""Steered-MD replicas integrated side by side, with one batched force call per step.

A neural network potential costs little more for 16 frames than for one (the per-call cost is
framework overhead; see benchmarks/speed.py), so replicas of a steered MD (different start
states, the paper's spread over replicas) run as one batch: the positions of every replica go
to the force field together. ASE's integrators move one Atoms object at a time, so the
velocity-Verlet step with Berendsen scaling is written out here over arrays of replicas. It is
ASE's `NVTBerendsen.step` (and `VelocityVerlet.step` for NVE) operation for operation, and
each replica's frames are recorded, checked and turned into an `SMDTrace` by the same
`_Recorder` as `run_smd`; a test holds the two to the same trajectory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator

from rarelearn.dynamics.smd import (
    ProgressCallback,
    SMDSettings,
    SMDTrace,
    StartState,
    _Recorder,
    start_spring,
    step_budget,
)
from rarelearn.dynamics.thermostats import draw_velocities
from rarelearn.errors import ConfigError
from rarelearn.molecules import PulledAtoms

#: Thermostats the batched loop reproduces (Langevin draws per-replica noise: use `run_smd`).
BATCH_THERMOSTATS = ("berendsen", "nve")


@dataclass
class ReplicaForces:
    """What a batched force field returns for R replicas of N atoms."""

    energy: np.ndarray  # (R,) eV
    forces: np.ndarray  # (R, N, 3) eV/A
    uq: np.ndarray | None = None  # (R,) eV, the committee's energy std


#: positions (R, N, 3) in Angstrom -> energies, forces (and UQ) of every replica.
BatchForceField = Callable[[np.ndarray], ReplicaForces]


@dataclass
class _Replicas:
    """Positions and momenta (R, N, 3) of replicas, stepped like ASE's integrators."""

    positions: np.ndarray
    momenta: np.ndarray
    masses: np.ndarray  # (N, 1)
    settings: SMDSettings

    def step(
        self,
        active: np.ndarray,
        forces: np.ndarray,
        force_field: BatchForceField,
        extra_forces: Callable[[int], np.ndarray] | None = None,
    ) -> ReplicaForces:
        """One `NVTBerendsen.step` (or `VelocityVerlet.step`) of the ``active`` replicas.

        ``forces`` (R, N, 3) are the total forces at the current positions. Returns the force
        field's result at the new positions; the second half-kick adds ``extra_forces(r)``
        (the spring) to its forces.
        """
        dt = self.settings.timestep_fs * units.fs
        berendsen = self.settings.thermostat.kind == "berendsen"
        p = self.momenta[active]
        if berendsen:
            p = _berendsen_scaled(p, self.masses, self.settings, dt)
        p = p + 0.5 * dt * forces[active]
        if berendsen:  # ASE's NVTBerendsen keeps the centre of mass still (fixcm)
            p = p - p.sum(axis=1, keepdims=True) / float(p.shape[1])
        self.positions[active] = self.positions[active] + dt * p / self.masses
        self.momenta[active] = p
        result = force_field(self.positions[active])
        for row, r in enumerate(active):
            kick = (
                result.forces[row] if extra_forces is None else result.forces[row] + extra_forces(r)
            )
            self.momenta[r] = self.momenta[r] + 0.5 * dt * kick
        return result


def _check_batchable(states: Sequence[Atoms], settings: SMDSettings) -> None:
    kind = settings.thermostat.kind
    if kind not in BATCH_THERMOSTATS:
        raise ConfigError(
            f"batched replicas support the {' and '.join(BATCH_THERMOSTATS)} thermostats, "
            f"not {kind!r}; run the replicas one by one with run_smd"
        )
    if not states:
        raise ConfigError("batched replicas need at least one start state")
    numbers = states[0].numbers
    if any(not np.array_equal(a.numbers, numbers) for a in states):
        raise ConfigError("batched replicas must all be the same molecule (same atoms, order)")


def relax_replicas(
    atoms: Atoms,
    force_field: BatchForceField,
    pulled: PulledAtoms,
    settings: SMDSettings,
    seeds: Sequence[int],
    progress: ProgressCallback | None = None,
) -> list[StartState]:
    """`relax_start_state` for several seeds at once: velocities drawn at T with each seed,
    then ``relax_steps`` thermostatted steps without the spring, all replicas in one batch."""
    pulled.validate(len(atoms))
    states = []
    for seed in seeds:
        state = atoms.copy()
        draw_velocities(state, settings.thermostat.temperature_K, seed)
        states.append(state)
    _check_batchable(states, settings)
    replicas = _Replicas(
        positions=np.stack([a.positions for a in states]),
        momenta=np.stack([a.get_momenta() for a in states]),
        masses=atoms.get_masses()[:, None],
        settings=settings,
    )
    active = np.arange(len(states))
    forces = np.array(force_field(replicas.positions).forces)
    for step in range(settings.relax_steps):
        if progress is not None and step % 25 == 0:
            progress(step, settings.relax_steps)
        forces[active] = replicas.step(active, forces, force_field).forces
    starts = []
    for k, state in enumerate(states):
        state.positions = replicas.positions[k]
        state.set_momenta(replicas.momenta[k], apply_constraint=False)
        starts.append(StartState(atoms=state, pulled=pulled))
    return starts


def run_smd_replicas(
    starts: Sequence[StartState],
    force_field: BatchForceField,
    settings: SMDSettings,
    progress: ProgressCallback | None = None,
) -> list[SMDTrace]:
    """Pull every start state with ``settings``, all replicas in one force call per step.

    Each replica stops on its own (blow-up, or ``until_broken`` plus the margin) and leaves
    the batch; a force-field exception stops every replica still running, keeping the frames.
    """
    _check_batchable([s.atoms for s in starts], settings)
    pairs = [start_spring(s, settings) for s in starts]
    budget = step_budget(settings)
    recorders = [_Recorder(a, sp, settings, capacity=budget + 1) for a, sp in pairs]
    replicas = _Replicas(
        positions=np.stack([a.positions for a, _ in pairs]),
        momenta=np.stack([a.get_momenta() for a, _ in pairs]),
        masses=pairs[0][0].get_masses()[:, None],
        settings=settings,
    )
    total_forces = np.empty_like(replicas.positions)
    active = np.arange(len(starts))

    def spring_forces(r: int) -> np.ndarray:
        """Spring forces on replica ``r`` at its current positions and rest length."""
        atoms, spring = pairs[r]
        atoms.positions = replicas.positions[r]
        axes[r] = spring.axis(atoms)
        return spring.forces_along(atoms, *axes[r])

    def record(result: ReplicaForces) -> None:
        """Record the current frame of the active replicas; set forces for the next step
        (the spring's axis at these positions is the one `spring_forces` has just found)."""
        for row, r in enumerate(active):
            atoms, spring = pairs[r]
            atoms.positions = replicas.positions[r]
            atoms.set_momenta(replicas.momenta[r], apply_constraint=False)
            uq = None if result.uq is None else float(result.uq[row])
            distance, unit = axes[r]
            recorders[r].record(float(result.energy[row]), result.forces[row], uq, distance)
            total_forces[r] = result.forces[row] + spring.forces_along(atoms, distance, unit)

    axes: dict[int, tuple[float, np.ndarray]] = {}
    for r in active:
        spring_forces(r)
    try:
        record(force_field(replicas.positions))
    except Exception as exc:
        for rec in recorders:
            rec.fail(exc)
    for step in range(budget):
        active = np.array([r for r in active if not recorders[r].done(step)], dtype=int)
        if not len(active):
            break
        if progress is not None and step % 25 == 0:
            progress(step, budget)
        try:
            result = replicas.step(active, total_forces, force_field, spring_forces)
        except Exception as exc:
            for r in active:
                recorders[r].fail(exc)
            break
        record(result)
    return [rec.trace() for rec in recorders]


def _berendsen_scaled(
    momenta: np.ndarray, masses: np.ndarray, settings: SMDSettings, dt: float
) -> np.ndarray:
    """ASE's `NVTBerendsen.scale_velocities` for every replica: rescale towards T, by a factor
    clipped to [0.9, 1.1]. The temperature counts 3N degrees of freedom, as Atoms does."""
    kinetic = 0.5 * np.einsum("rij,rij->r", momenta, momenta / masses)
    temperature = 2.0 * kinetic / (3 * momenta.shape[1] * units.kB)
    tau = settings.thermostat.tau_fs * units.fs
    scale = np.sqrt(1.0 + (settings.thermostat.temperature_K / temperature - 1.0) * dt / tau)
    return np.clip(scale, 0.9, 1.1)[:, None, None] * momenta


def frame_by_frame(calculator: Calculator, numbers: Sequence[int]) -> BatchForceField:
    """Any ASE calculator as a batched force field, one frame after another (no speed-up:
    for calculators without a batch path, and the reference the batched loop is tested on)."""
    atoms = Atoms(numbers=list(numbers))
    atoms.calc = calculator

    def evaluate(positions: np.ndarray) -> ReplicaForces:
        energies, forces, uqs = [], [], []
        for frame in positions:
            atoms.positions = frame
            forces.append(atoms.get_forces())
            energies.append(atoms.get_potential_energy())
            uqs.append(calculator.results.get("energy_std", np.nan))
        uq = np.array(uqs, dtype=float)
        return ReplicaForces(
            np.array(energies), np.array(forces), None if np.all(np.isnan(uq)) else uq
        )

    return evaluate
