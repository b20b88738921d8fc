"""Steered MD: relax at low temperature, then pull two atom groups apart with a moving spring.

The spring is a calculator term (``MovingSpring``) summed with any ASE calculator (``SpringSum``,
a lean ``SumCalculator``); an observer attached to the ASE integrator records each frame and then
advances the rest length. The work is accumulated as the exact change of spring energy when R0
moves (dW = U(d, R0 + v dt) - U(d, R0)), the discrete form of W = integral k (R0 - d) v dt, so
that in NVE the total energy changes by W.
Per step that is k (R0 - d) dR0 + k dR0^2 / 2 (the midpoint rule in R0). It follows the
continuous-time work closely (tests/test_analytic_work.py: 1e-5 eV against the exact solution
of a harmonic bond); a left-rectangle sum of the recorded spring forces would instead fall
short by k L dR0 / 2 over a pull of length L (0.016 eV for the paper's settings).
Ea = max W over the recorded pull: after a break W still creeps up against the fragments'
attraction, so Ea depends slightly on how long the pull runs past the break (`n_steps`,
`post_break_steps`); every NNP pull reuses the reference's settings, so it cancels in the error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from rarelearn import manifest
from rarelearn.dynamics.spring import MovingSpring, SpringSum
from rarelearn.dynamics.thermostats import Thermostat, draw_velocities, make_integrator
from rarelearn.errors import ConfigError, RarelearnError
from rarelearn.molecules import PulledAtoms, bonded_pairs
from rarelearn.runfolder import damaged, load_npz, read_traj
from rarelearn.units import speed_a_per_ps_to_a_per_fs

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class SMDSettings:
    """Every number of the steered-MD protocol (PROTOCOL section 2); defaults are the paper's."""

    spring_constant_eV_per_A2: float = 10.0
    pull_speed_A_per_ps: float = 1.0
    n_steps: int = 6500
    timestep_fs: float = 0.5
    relax_steps: int = 2000
    thermostat: Thermostat = field(default_factory=Thermostat)
    #: A bond counts as broken once it is longer than this factor times its start length
    #: (C-C: 1.6 x 1.53 A = 2.45 A, well past the force maximum near 1.9-2.0 A).
    break_factor: float = 1.6
    #: Run past ``n_steps`` until the bond breaks, then ``post_break_steps`` more (longer chains
    #: need a longer pull), never beyond ``max_steps`` (which cannot shorten ``n_steps``).
    until_broken: bool = False
    post_break_steps: int = 1000
    max_steps: int = 40000
    #: The run stops (keeping the frames so far) when atoms come closer than this ...
    min_distance_A: float = 0.5
    #: ... or an atom drifts farther than this from every other atom (the model blew up).
    isolated_atom_A: float = 4.0

    def validate(self) -> None:
        """Reject impossible settings with a message naming the setting."""
        positive = {
            "spring_constant_eV_per_A2": self.spring_constant_eV_per_A2,
            "pull_speed_A_per_ps": self.pull_speed_A_per_ps,
            "timestep_fs": self.timestep_fs,
            "break_factor": self.break_factor,
            "min_distance_A": self.min_distance_A,
            "isolated_atom_A": self.isolated_atom_A,
        }
        for name, value in positive.items():
            if not np.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a positive number, got {value}")
        for name in ("n_steps", "relax_steps", "post_break_steps", "max_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0 or (name == "n_steps" and value == 0):
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
        if self.break_factor <= 1.0:
            raise ConfigError(
                f"break_factor must be > 1 (a bond at its start length would count as broken), "
                f"got {self.break_factor}"
            )
        if self.min_distance_A >= self.isolated_atom_A:
            raise ConfigError(
                f"min_distance_A ({self.min_distance_A}) must be below isolated_atom_A "
                f"({self.isolated_atom_A}): every pull would stop at its first step"
            )
        self.thermostat.validate()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SMDSettings:
        values = dict(values)
        values["thermostat"] = Thermostat(**values.get("thermostat", {}))
        return cls(**values)

    def with_changes(self, **changes: Any) -> SMDSettings:
        return replace(self, **changes)


@dataclass
class StartState:
    """The relaxed state every SMD of a campaign starts from: positions, momenta, pulled atoms."""

    atoms: Atoms
    pulled: PulledAtoms

    def save(self, path: Path) -> None:
        atoms = self.atoms.copy()
        atoms.info["pulled"] = self.pulled.to_list()
        write(path, atoms, format="traj")

    @classmethod
    def load(cls, path: Path) -> StartState:
        """Read what `save` wrote; DamagedFileError (naming the file) if it cannot be read."""
        atoms = read_traj(path, index=-1)
        if "pulled" not in atoms.info:
            raise damaged(path, "lacks the pulled atoms")
        pulled = PulledAtoms.from_list(atoms.info.pop("pulled"))
        return cls(atoms=atoms, pulled=pulled)


def relax_start_state(
    atoms: Atoms,
    calculator: Calculator,
    pulled: PulledAtoms,
    settings: SMDSettings,
    seed: int,
    progress: ProgressCallback | None = None,
) -> StartState:
    """Draw velocities at T (seeded) and run ``relax_steps`` thermostatted steps without spring."""
    pulled.validate(len(atoms))
    relaxed = atoms.copy()
    relaxed.calc = calculator
    draw_velocities(relaxed, settings.thermostat.temperature_K, seed)
    integrator = make_integrator(relaxed, settings.thermostat, settings.timestep_fs, seed)
    for step, _ in enumerate(integrator.irun(settings.relax_steps)):
        if progress is not None and step % 25 == 0:
            progress(step, settings.relax_steps)
    state = relaxed.copy()
    state.set_momenta(relaxed.get_momenta())
    return StartState(atoms=state, pulled=pulled)


#: Arrays every saved trace holds (positions, forces, kinetic energy and UQ are optional).
#: `SMDTrace.stopped_reason` of a pull that ran its course.
COMPLETED = "completed"
#: `SMDTrace.stopped_reason` of an ``until_broken`` pull that reached ``max_steps`` without a
#: break: its max W is a lower bound of Ea, as for a pull that stopped early, but nothing went
#: wrong in it (its frames are as good as a completed pull's).
STEP_LIMIT = "max_steps reached without a break"


def stopped_early(reason: str) -> bool:
    """Whether a pull stopped before its end (blew up, atoms too close, calculator failed):
    its last frames are suspect. A completed pull or one at its step limit did not."""
    return reason not in (COMPLETED, STEP_LIMIT)


_TRACE_KEYS = (
    "time_fs",
    "distance_A",
    "rest_length_A",
    "spring_force_eV_per_A",
    "work_eV",
    "energy_eV",
    "numbers",
    "broken_frame",
    "broken_bond",
    "stopped_reason",
)


@dataclass
class SMDTrace:
    """Per-frame record of one steered MD, and what it says about the bond that broke."""

    time_fs: np.ndarray
    distance_A: np.ndarray
    rest_length_A: np.ndarray
    spring_force_eV_per_A: np.ndarray
    work_eV: np.ndarray
    energy_eV: np.ndarray
    #: (frames, atoms, 3); None for a trace saved without its frames (replica summaries).
    positions_A: np.ndarray | None
    numbers: np.ndarray
    #: Kinetic energy, so that total-energy bookkeeping (NVE: dE_total = W) can be checked.
    kinetic_eV: np.ndarray | None = None
    #: Forces of the calculator alone (without the spring): reference labels for free.
    forces_eV_per_A: np.ndarray | None = None
    uq_eV: np.ndarray | None = None
    broken_frame: int | None = None
    broken_bond: tuple[int, int] | None = None
    stopped_reason: str = "completed"

    @property
    def n_frames(self) -> int:
        return len(self.time_fs)

    @property
    def activation_energy_eV(self) -> float:
        """Ea: the maximum work done by the spring along the pull."""
        return float(np.max(self.work_eV))

    @property
    def breaking_distance_A(self) -> float | None:
        """Spring distance at the frame where the first bond broke (None: no bond broke)."""
        return None if self.broken_frame is None else float(self.distance_A[self.broken_frame])

    def frame(self, index: int, labeled: bool = False) -> Atoms:
        """Frame ``index`` as ASE Atoms with the spring distance in ``info``.

        ``labeled=True`` attaches the calculator's own energy and forces of that frame.
        """
        if self.positions_A is None:
            raise ValueError("this trace was saved without its frames (positions)")
        atoms = Atoms(numbers=self.numbers, positions=self.positions_A[index])
        atoms.info["spring_distance"] = float(self.distance_A[index])
        if labeled:
            if self.forces_eV_per_A is None:
                raise ValueError("this trace has no forces recorded")
            atoms.calc = SinglePointCalculator(
                atoms,
                energy=float(self.energy_eV[index]),
                forces=self.forces_eV_per_A[index].copy(),
            )
        return atoms

    def broken_bond_label(self) -> str | None:
        """The bond that broke by element and index, "S1-S2" (None: no bond broke)."""
        if self.broken_bond is None:
            return None
        symbols = Atoms(numbers=self.numbers).get_chemical_symbols()
        i, j = self.broken_bond
        return f"{symbols[i]}{i}-{symbols[j]}{j}"

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures of merit."""
        bond = None
        if self.broken_bond is not None:
            bond = {"atoms": list(self.broken_bond), "label": self.broken_bond_label()}
        return {
            "activation_energy_eV": self.activation_energy_eV,
            "breaking_distance_A": self.breaking_distance_A,
            "broken_bond": bond,
            "broken_frame": self.broken_frame,
            "max_work_frame": int(np.argmax(self.work_eV)),
            "peak_spring_force_eV_per_A": float(np.max(self.spring_force_eV_per_A)),
            "n_frames": self.n_frames,
            "stopped_reason": self.stopped_reason,
        }

    def save(self, path: Path, frames: bool = True) -> None:
        """Write ``smd.npz`` (keys in docs/architecture.md) atomically.

        ``frames=False`` leaves out positions and forces (a replica's work curve and figures
        of merit: a few kB instead of MB).
        """
        arrays = {
            "time_fs": self.time_fs,
            "distance_A": self.distance_A,
            "rest_length_A": self.rest_length_A,
            "spring_force_eV_per_A": self.spring_force_eV_per_A,
            "work_eV": self.work_eV,
            "energy_eV": self.energy_eV,
            "numbers": self.numbers,
            "broken_frame": np.array(-1 if self.broken_frame is None else self.broken_frame),
            "broken_bond": np.array(self.broken_bond or (-1, -1)),
            "stopped_reason": np.array(self.stopped_reason),
        }
        if self.uq_eV is not None:
            arrays["uq_eV"] = self.uq_eV
        saved = ("positions_A", "forces_eV_per_A", "kinetic_eV") if frames else ("kinetic_eV",)
        for key in saved:
            if getattr(self, key) is not None:
                arrays[key] = getattr(self, key)
        temporary = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(temporary, **arrays)
        manifest.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> SMDTrace:
        """Read ``smd.npz``; DamagedFileError (naming the file) if it cannot be read."""
        data = load_npz(path, keys=_TRACE_KEYS)
        broken_frame = int(data["broken_frame"])
        bond = tuple(int(i) for i in data["broken_bond"])
        return cls(
            time_fs=data["time_fs"],
            distance_A=data["distance_A"],
            rest_length_A=data["rest_length_A"],
            spring_force_eV_per_A=data["spring_force_eV_per_A"],
            work_eV=data["work_eV"],
            energy_eV=data["energy_eV"],
            positions_A=data.get("positions_A"),
            numbers=data["numbers"],
            uq_eV=data.get("uq_eV"),
            forces_eV_per_A=data.get("forces_eV_per_A"),
            kinetic_eV=data.get("kinetic_eV"),
            broken_frame=None if broken_frame < 0 else broken_frame,
            broken_bond=None if bond[0] < 0 else (bond[0], bond[1]),
            stopped_reason=str(data["stopped_reason"]),
        )


class _Recorder:
    """Records each integrated frame of one SMD, checks it, then moves the spring on.

    Shared by `run_smd` (as an ASE observer) and the batched replicas loop
    (`rarelearn.dynamics.replicas`): `record` takes the frame held in ``atoms`` with the
    calculator's own energy and forces, `trace` builds the `SMDTrace`.
    """

    def __init__(
        self,
        atoms: Atoms,
        spring: MovingSpring,
        settings: SMDSettings,
        capacity: int,
        bond_reference: Atoms | None = None,
    ) -> None:
        self.atoms, self.spring = atoms, spring
        self.settings = settings
        self.step_A = (
            speed_a_per_ps_to_a_per_fs(settings.pull_speed_A_per_ps) * settings.timestep_fs
        )
        n_atoms = len(atoms)
        self.distance = np.empty(capacity)
        self.rest_length = np.empty(capacity)
        self.work = np.empty(capacity)
        self.energy = np.empty(capacity)
        self.uq = np.full(capacity, np.nan)
        self.positions = np.empty((capacity, n_atoms, 3))
        self.forces = np.empty((capacity, n_atoms, 3))
        self.kinetic = np.empty(capacity)
        self.n_frames = 0
        self.accumulated_work = 0.0
        self.stop_reason: str | None = None
        self.broken_frame: int | None = None
        self.broken_bond: tuple[int, int] | None = None
        # bonds and their rest lengths come from the unstretched geometry: the start of the
        # pull, or ``bond_reference`` for a pull continued from a loaded state (snap tests)
        unstretched = atoms if bond_reference is None else bond_reference
        heavy = [i for i, z in enumerate(unstretched.numbers) if z > 1]
        pairs = [
            p for p in bonded_pairs(unstretched) if p[0] in heavy and p[1] in heavy
        ] or bonded_pairs(unstretched)
        self.bond_i = np.array([p[0] for p in pairs], dtype=int)
        self.bond_j = np.array([p[1] for p in pairs], dtype=int)
        start = unstretched.positions
        self.bond_limit = settings.break_factor * np.linalg.norm(
            start[self.bond_j] - start[self.bond_i], axis=1
        )
        self.diagonal = np.eye(n_atoms, dtype=bool)

    def record(
        self, energy: float, forces: np.ndarray, uq: float | None, distance: float | None = None
    ) -> None:
        """Store the frame in ``atoms`` (calculator energy/forces without the spring);
        ``distance``: the spring distance of this frame, if the caller has it already."""
        index = self.n_frames
        positions = self.atoms.positions
        if distance is None:
            distance = self.spring.axis(self.atoms)[0]
        self.distance[index] = distance
        self.rest_length[index] = self.spring.rest_length
        self.work[index] = self.accumulated_work
        self.energy[index] = energy
        self.positions[index] = positions
        self.forces[index] = forces
        self.kinetic[index] = self.atoms.get_kinetic_energy()
        if uq is not None:
            self.uq[index] = float(uq)
        self.n_frames += 1
        self._check(index, positions, energy)
        old_rest = self.spring.rest_length
        new_rest = old_rest + self.step_A
        self.accumulated_work += self.spring.energy(distance, new_rest) - self.spring.energy(
            distance, old_rest
        )
        self.spring.rest_length = new_rest

    def done(self, step: int) -> bool:
        """Whether the run should end after ``step`` (a stop, or broken plus the margin)."""
        if self.stop_reason is not None:
            return True
        settings = self.settings
        if settings.until_broken and step >= settings.n_steps:
            broken = self.broken_frame
            return broken is not None and step >= broken + settings.post_break_steps
        return False

    def fail(self, exc: Exception) -> None:
        """A calculator raised mid-pull: keep what was computed, say why it stopped."""
        if self.n_frames == 0:
            raise RarelearnError(f"the calculator failed at the start of the SMD: {exc}") from exc
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        self.stop_reason = (
            f"calculator failed after {self.n_frames} frames: "
            + (f"{type(exc).__name__}: {message}"[:300])
        )

    def _check(self, index: int, positions: np.ndarray, energy: float) -> None:
        if self.broken_frame is None and len(self.bond_i):
            lengths = np.linalg.norm(positions[self.bond_j] - positions[self.bond_i], axis=1)
            stretched = lengths / self.bond_limit
            worst = int(np.argmax(stretched))
            if stretched[worst] > 1.0:
                self.broken_frame = index
                self.broken_bond = (int(self.bond_i[worst]), int(self.bond_j[worst]))
        if not np.isfinite(energy) or not np.all(np.isfinite(positions)):
            self.stop_reason = "non-finite energy or positions"
            return
        # nearest-neighbour distance of every atom; sqrt after the min (monotonic: same values)
        deltas = positions[:, None, :] - positions[None, :, :]
        squared = np.einsum("ijk,ijk->ij", deltas, deltas)
        squared[self.diagonal] = np.inf
        nearest = np.sqrt(squared.min(axis=1))
        if nearest.min() < self.settings.min_distance_A:
            self.stop_reason = f"atoms closer than {self.settings.min_distance_A} A"
        elif nearest.max() > self.settings.isolated_atom_A:
            self.stop_reason = (
                f"an atom is farther than {self.settings.isolated_atom_A} A from all others"
            )

    def trace(self) -> SMDTrace:
        """The recorded frames as an `SMDTrace` (a last non-finite frame is dropped)."""
        n = self.n_frames
        if self.stop_reason is not None and n and not np.isfinite(self.energy[n - 1]):
            n -= 1
        if n < 1:
            raise RarelearnError(
                "steered MD produced no usable frame: the first energy is not finite"
            )
        settings = self.settings
        rest = self.rest_length[:n]
        distance = self.distance[:n]
        uq = self.uq[:n]
        broken = self.broken_frame
        return SMDTrace(
            time_fs=np.arange(n) * settings.timestep_fs,
            distance_A=distance.copy(),
            rest_length_A=rest.copy(),
            spring_force_eV_per_A=settings.spring_constant_eV_per_A2 * (rest - distance),
            work_eV=self.work[:n].copy(),
            energy_eV=self.energy[:n].copy(),
            positions_A=self.positions[:n].copy(),
            forces_eV_per_A=self.forces[:n].copy(),
            kinetic_eV=self.kinetic[:n].copy(),
            numbers=self.atoms.numbers.copy(),
            uq_eV=None if np.all(np.isnan(uq)) else uq.copy(),
            broken_frame=broken if broken is not None and broken < n else None,
            # a break seen only in a dropped (non-finite) last frame is no break
            broken_bond=self.broken_bond if broken is not None and broken < n else None,
            stopped_reason=self.stop_reason or self._end_reason(broken is not None),
        )

    def _end_reason(self, broke: bool) -> str:
        """Why a pull that did not stop early ended: ``until_broken`` without a break ran to
        ``max_steps`` (`STEP_LIMIT`); otherwise it completed."""
        return STEP_LIMIT if self.settings.until_broken and not broke else COMPLETED


def start_spring(
    start: StartState, settings: SMDSettings, rest_length_A: float | None = None
) -> tuple[Atoms, MovingSpring]:
    """A copy of the start atoms (with momenta) and the spring at rest at their distance, or
    at ``rest_length_A`` (a loaded spring: a pull continued from one of its frames)."""
    settings.validate()
    start.pulled.validate(len(start.atoms))
    atoms = start.atoms.copy()
    atoms.set_momenta(start.atoms.get_momenta())
    spring = MovingSpring(start.pulled, settings.spring_constant_eV_per_A2, rest_length=0.0)
    spring.rest_length = spring.axis(atoms)[0] if rest_length_A is None else rest_length_A
    return atoms, spring


def step_budget(settings: SMDSettings) -> int:
    """Integration steps a run may take (``until_broken`` may run up to ``max_steps``)."""
    if settings.until_broken:
        return max(settings.max_steps, settings.n_steps)
    return settings.n_steps


def run_smd(
    start: StartState,
    calculator: Calculator,
    settings: SMDSettings,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    *,
    rest_length_A: float | None = None,
    bond_reference: Atoms | None = None,
) -> SMDTrace:
    """Pull ``start.pulled`` apart from ``start`` with ``calculator`` and record every frame.

    The run stops early, keeping the frames so far, if the energy becomes non-finite, atoms
    collide or an atom flies off (an NNP outside its domain), or the calculator raises (a
    reference SCF that fails mid-pull); ``stopped_reason`` says why.

    A pull continued from one of another pull's frames passes that frame's spring rest length
    (``rest_length_A``) and the other pull's unstretched start (``bond_reference``), against
    which bonds count as broken; its work starts again from zero.
    """
    atoms, spring = start_spring(start, settings, rest_length_A)
    combined = SpringSum(calculator, spring)
    atoms.calc = combined
    integrator = make_integrator(atoms, settings.thermostat, settings.timestep_fs, seed)
    budget = step_budget(settings)
    recorder = _Recorder(
        atoms, spring, settings, capacity=budget + 1, bond_reference=bond_reference
    )

    def observe() -> None:
        recorder.record(
            float(combined.results["energy_contributions"][0]),
            combined.results["forces_contributions"][0],
            calculator.results.get("energy_std"),
        )
        # The sum caches on the atoms alone; forget it so the next force call adds the moved
        # spring (the calculator's own cache stays valid).
        combined.reset()

    integrator.attach(observe, interval=1)
    try:
        for _ in integrator.irun(budget):
            step = recorder.n_frames - 1
            if recorder.done(step):
                break
            if progress is not None and step % 25 == 0:
                progress(step, budget)
    except Exception as exc:  # a reference program failing mid-pull: keep what was computed
        recorder.fail(exc)
    return recorder.trace()
