"""COGEF: a molecule's force-extension curve at 0 K, and the spring barrier it implies.

Beyer's COGEF (Constrained Geometries simulate External Force, J. Chem. Phys. 112, 7307
(2000)) holds the distance ``d`` between the two pulled atoms fixed, relaxes everything else,
and steps ``d``. The relaxed energy ``E(d)`` is the molecule's energy along a pull at 0 K; its
slope ``F(d) = dE/dd`` is the force with which the molecule resists, read here from the
forces on the two pulled atoms at each relaxed geometry (not a finite difference). Its peak is
the largest load the molecule carries: the rupture force of a pull in the stiff, slow limit.

A spring of constant ``k`` whose rest length ``R0`` grows slowly holds the molecule where
``F(d) = k (R0 - d)``, so ``R0 = d + F(d)/k``; the work it has done is the molecule's energy
change plus the spring's energy, ``W(d) = E(d) - E(d0) + F(d)^2 / 2k``. ``dW/dd = F dR0/dd``
vanishes where ``dR0/dd = 1 + F'/k = 0``: the molecule snaps there, and ``W`` has its largest
value on the stable branch. That maximum is the barrier a 0 K quasi-static steered pull
measures (`ea_quasi_static`), a deterministic counterpart of the noisy 10 K ``Ea``: the same
number for a model and for its labeler, free of thermal noise, tells whether a model's barrier
error lies in its energy landscape at all.

The ``cogef`` package of M. Walter does this, but the package index reachable here does not
carry it, so the scan is written here on ASE's ``FixBondLength`` constraint and ``BFGS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.constraints import FixBondLength
from ase.optimize import BFGS

from rarelearn import manifest
from rarelearn.dynamics import SMDSettings
from rarelearn.errors import RarelearnError
from rarelearn.molecules import bonded_pairs
from rarelearn.runfolder import load_npz

#: A bond this many times its start length counts as broken (the steered MD's default).
BREAK_FACTOR = SMDSettings.break_factor


@dataclass(frozen=True)
class CogefCurve:
    """Relaxed energies and resisting forces at each distance of the pulled pair."""

    pair: tuple[int, int]
    distance_A: np.ndarray
    energy_eV: np.ndarray
    force_eV_per_A: np.ndarray
    positions_A: np.ndarray
    numbers: np.ndarray
    #: why the scan ended before the molecule broke ("" if it did not)
    stopped_reason: str = ""

    def __post_init__(self) -> None:
        if len(self.distance_A) < 3:
            raise RarelearnError("a COGEF curve needs at least three relaxed points")

    def peak(self) -> tuple[float, float]:
        """The largest resisting force (eV/A) and the distance (A) where it lies, from the
        parabola through the grid's largest force and its two neighbours."""
        k = int(np.argmax(self.force_eV_per_A))
        k = min(max(k, 1), len(self.distance_A) - 2)
        distance, force = _parabola_top(
            self.distance_A[k - 1 : k + 2], self.force_eV_per_A[k - 1 : k + 2]
        )
        return force, distance

    def spring_work_eV(self, k_spring: float) -> np.ndarray:
        """``W(d) = E(d) - E(d0) + (F(d)^2 - F(d0)^2) / 2k``: the work a slow spring of constant
        ``k_spring`` (eV/A^2) has done from the first distance until the pair is at d."""
        if k_spring <= 0:
            raise RarelearnError(f"the spring constant must be positive, got {k_spring}")
        spring = self.force_eV_per_A**2 / (2.0 * k_spring)
        return self.energy_eV - self.energy_eV[0] + spring - spring[0]

    def ea_quasi_static(self, k_spring: float) -> tuple[float, float]:
        """The barrier a 0 K quasi-static pull with a spring of ``k_spring`` measures (eV), and
        the distance (A) at which the molecule snaps: the largest ``W`` on the stable branch,
        refined by a parabola where ``W`` is stationary there (the grid then costs second
        order); where the chain gives way at fixed d before that (a jump), the last intact
        point, which the scan bisects."""
        work = self.spring_work_eV(k_spring)
        travel = self.distance_A + self.force_eV_per_A / k_spring
        unstable = np.nonzero(np.diff(travel) <= 0)[0]
        if not len(unstable):
            if self.broken_bond() is not None:
                raise RarelearnError(
                    "the bond gave way smoothly: its force never fell faster than the spring "
                    "stiffens, so a quasi-static pull under this spring does not snap"
                )
            raise RarelearnError(
                "the scan ended before the molecule snapped under this spring; scan farther"
            )
        end = int(unstable[0]) + 1
        top = int(np.argmax(work[: end + 1]))
        top = min(max(top, 1), len(work) - 2)
        snap_A, work_eV = _parabola_top(self.distance_A[top - 1 : top + 2], work[top - 1 : top + 2])
        return work_eV, snap_A

    def broken_bond(self) -> tuple[int, int] | None:
        """The bond of the first image longest (relative to its start) in the last image, if it
        is over ``BREAK_FACTOR`` times its start length."""
        bonds, ratio = self.bond_stretch(-1)
        if not bonds:
            return None
        worst = int(np.argmax(ratio))
        return bonds[worst] if ratio[worst] > BREAK_FACTOR else None

    def bond_stretch(self, index: int) -> tuple[list[tuple[int, int]], np.ndarray]:
        """The first image's bonds and each one's length in image ``index`` over its length
        in the first image."""
        bonds = bonded_pairs(self.image(0))
        if not bonds:
            return [], np.empty(0)
        start = _lengths(self.positions_A[0], bonds)
        return bonds, _stretch(self.positions_A[index], bonds, start)

    def broken_bond_label(self) -> str | None:
        """The broken bond by element and index, "C4-C5" (None: no bond broke)."""
        bond = self.broken_bond()
        if bond is None:
            return None
        symbols = self.image(0).get_chemical_symbols()
        return f"{symbols[bond[0]]}{bond[0]}-{symbols[bond[1]]}{bond[1]}"

    def image(self, index: int) -> Atoms:
        return Atoms(numbers=self.numbers, positions=self.positions_A[index])

    def save(self, path: Path) -> None:
        """Write the curve as an npz file, atomically (recorded in a run folder's manifest)."""
        temporary = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            temporary,
            pair=np.array(self.pair),
            distance_A=self.distance_A,
            energy_eV=self.energy_eV,
            force_eV_per_A=self.force_eV_per_A,
            positions_A=self.positions_A,
            numbers=self.numbers,
            stopped_reason=np.array(self.stopped_reason),
        )
        manifest.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> CogefCurve:
        """Read what `save` wrote; DamagedFileError (naming the file) if it cannot be read."""
        data = load_npz(path, keys=_CURVE_KEYS)
        return cls(
            pair=(int(data["pair"][0]), int(data["pair"][1])),
            distance_A=data["distance_A"],
            energy_eV=data["energy_eV"],
            force_eV_per_A=data["force_eV_per_A"],
            positions_A=data["positions_A"],
            numbers=data["numbers"],
            stopped_reason=str(data["stopped_reason"]),
        )


_CURVE_KEYS = (
    "pair",
    "distance_A",
    "energy_eV",
    "force_eV_per_A",
    "positions_A",
    "numbers",
    "stopped_reason",
)


def _parabola_top(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Where the parabola through three points peaks and its value there; the middle point
    when the three do not bend down (a peak at the scan's edge) or a neighbour lies more than
    10 % below it (the bond broke between: the top is the last point before the break, known
    to the grid's step)."""
    a, b, c = np.polyfit(x - x[1], y, 2)
    if a >= 0 or min(y[0], y[2]) < y[1] - 0.1 * abs(y[1]):
        return float(x[1]), float(y[1])
    shift = float(np.clip(-b / (2 * a), x[0] - x[1], x[2] - x[1]))
    return float(x[1] + shift), float(c + b * shift + a * shift**2)


def _lengths(positions: np.ndarray, bonds: list[tuple[int, int]]) -> np.ndarray:
    """Each bond's length in ``positions``."""
    first, second = np.array(bonds).T
    return np.linalg.norm(positions[second] - positions[first], axis=1)


def _stretch(
    positions: np.ndarray, bonds: list[tuple[int, int]], start_lengths: np.ndarray
) -> np.ndarray:
    """Each bond's length in ``positions`` over its start length."""
    return _lengths(positions, bonds) / start_lengths


#: One relaxed point of a scan: distance (A), energy (eV), resisting force (eV/A), positions
Point = tuple[float, float, float, np.ndarray]


class _ScanEndedError(Exception):
    """A relaxation that failed or did not converge: the scan ends with the points so far."""


def _stretch_leading_bond(
    positions: np.ndarray,
    bonds: list[tuple[int, int]],
    start_lengths: np.ndarray,
    pair: tuple[int, int],
    delta_A: float,
) -> None:
    """Lengthen the bond most stretched (relative to its start) by ``delta_A`` in place,
    moving its atoms that are not pulled: before the peak the relaxation takes it back; past
    the peak it starts the relaxation on the branch where that bond alone gives way."""
    a, b = bonds[int(np.argmax(_stretch(positions, bonds, start_lengths)))]
    axis = (positions[b] - positions[a]) / np.linalg.norm(positions[b] - positions[a])
    if a in pair and b in pair:
        return
    if a in pair:
        positions[b] += axis * delta_A
    elif b in pair:
        positions[a] -= axis * delta_A
    else:
        positions[a] -= axis * delta_A / 2
        positions[b] += axis * delta_A / 2


def resisting_force(forces: np.ndarray, positions: np.ndarray, pair: tuple[int, int]) -> float:
    """The force (eV/A) with which the molecule pulls the pair together along its axis: the
    mean of the two atoms' force components towards each other."""
    i, j = pair
    axis = positions[j] - positions[i]
    axis /= np.linalg.norm(axis)
    return float((forces[i] - forces[j]) @ axis / 2.0)


def cogef_scan(
    atoms: Atoms,
    calculator: Calculator,
    pair: tuple[int, int],
    *,
    step_A: float = 0.02,
    coarse_step_A: float | None = None,
    fine_above_eV_per_A: float = 0.0,
    fmax: float = 1e-3,
    max_distance_A: float | None = None,
    stop_force_fraction: float = 0.5,
    max_relax_steps: int = 2000,
    symmetry_noise_A: float = 3e-3,
    lead_bond: bool = True,
    refine_break: int = 3,
    seed: int = 0,
    on_point: Callable[[int, float, float], None] | None = None,
) -> CogefCurve:
    """Relax ``atoms`` with the pair's distance fixed, step it by ``step_A`` and relax again,
    until a bond has broken (``BREAK_FACTOR``) and the resisting force has fallen below
    ``stop_force_fraction`` of its peak, or the distance reaches ``max_distance_A``.

    Below ``fine_above_eV_per_A`` of resisting force the steps are ``coarse_step_A`` (if
    given): the barrier needs the energy at the start and fine points near the peak only, and
    the relaxed energy is a function of ``d`` alone, so the path between is not needed finely.

    Each step moves the two atoms apart by half a step each along their axis, shakes every
    other atom by ``symmetry_noise_A`` (seeded) and, in fine steps (with ``lead_bond``),
    lengthens the most stretched bond by one more step. A symmetric chain would otherwise
    stretch its equivalent bonds past the peak together, a saddle that BFGS does not leave
    from a small shake (``scripts/cogef_compare.py --symmetry`` measures what that does to
    hexane's barrier). Where the bond gives way (at fixed d the stretched state ends with a
    jump), ``refine_break`` bisections place the last intact point to ``step_A / 2**n``: the
    barrier is the work there, so the grid would cost up to ``F_max * step_A`` (0.09 eV for a
    C-C bond at 0.02 A). A relaxation that does not converge in ``max_relax_steps`` or a
    calculator that fails ends the scan with the points so far (``stopped_reason`` says
    which).
    """
    i, j = pair
    if i == j or not (0 <= i < len(atoms) and 0 <= j < len(atoms)):
        raise RarelearnError(f"COGEF pulls two distinct atoms of the structure, got {pair}")
    if step_A <= 0 or (coarse_step_A is not None and coarse_step_A <= 0):
        raise RarelearnError(f"COGEF steps must be positive, got {step_A}, {coarse_step_A} A")
    rng = np.random.default_rng(seed)
    work = atoms.copy()
    work.calc = calculator
    bonds = bonded_pairs(work)
    start_lengths = _lengths(work.positions, bonds) if bonds else np.empty(0)
    points: list[Point] = []
    reason = ""

    def stepped(from_positions: np.ndarray, step: float, lead: bool) -> np.ndarray:
        """``from_positions`` with the pair ``step`` further apart, the other atoms shaken and,
        with ``lead``, the most stretched bond ``step`` longer."""
        axis = from_positions[j] - from_positions[i]
        axis /= np.linalg.norm(axis)
        moved = from_positions + rng.normal(scale=symmetry_noise_A, size=from_positions.shape)
        moved[i] = from_positions[i] - axis * step / 2
        moved[j] = from_positions[j] + axis * step / 2
        if lead and bonds:
            _stretch_leading_bond(moved, bonds, start_lengths, pair, step)
        return moved

    def relaxed(at: np.ndarray) -> Point:
        """(d, E, resisting force, positions) relaxed at fixed d from ``at``; raises
        _ScanEndedError when the calculator fails or the relaxation does not converge."""
        work.set_constraint()
        work.positions = at
        work.set_constraint(FixBondLength(i, j))
        try:
            converged = BFGS(work, logfile=None).run(fmax=fmax, steps=max_relax_steps)
            raw_forces = work.get_forces(apply_constraint=False)
            energy = work.get_potential_energy()
        except Exception as exc:  # a failed SCF or an NNP error ends the scan, points kept
            raise _ScanEndedError(
                f"the calculator failed at d = {work.get_distance(i, j):.3f} A: {exc}"
            ) from exc
        if not converged:
            raise _ScanEndedError(
                f"relaxation did not converge at d = {work.get_distance(i, j):.3f} A"
            )
        distance = work.get_distance(i, j)
        force = resisting_force(raw_forces, work.positions, pair)
        return distance, energy, force, work.positions.copy()

    def broke(point: Point) -> bool:
        """Whether a bond broke at ``point``: over ``BREAK_FACTOR`` and the force fallen."""
        peak = max([p[2] for p in points] + [point[2]])
        if point[2] >= stop_force_fraction * peak or not bonds:
            return False
        return bool(np.any(_stretch(point[3], bonds, start_lengths) > BREAK_FACTOR))

    def refined_break(intact: Point, broken: Point) -> list[Point]:
        """Intact points between the last intact and the first broken one, by bisection of
        the distance (``refine_break`` halvings): where the bond gives way at fixed d, known
        to ``step / 2**refine_break`` instead of one step."""
        found, low = [], intact
        high_d = broken[0]
        for _ in range(refine_break):
            increment = (high_d - low[0]) / 2
            trial = relaxed(stepped(low[3], increment, lead_bond))
            if broke(trial):
                high_d = trial[0]
            else:
                found.append(trial)
                low = trial
        return found

    at = atoms.positions.copy()
    try:
        while True:
            point = relaxed(at)
            points.append(point)
            if on_point is not None:
                on_point(len(points) - 1, point[0], point[2])
            if broke(point):
                if len(points) >= 2:
                    points[-1:-1] = refined_break(points[-2], point)
                break
            step = step_A
            force = point[2]
            rising = force >= max(p[2] for p in points)
            if coarse_step_A is not None and force < fine_above_eV_per_A and rising:
                step = coarse_step_A
            if max_distance_A is not None and point[0] + step > max_distance_A:
                break
            at = stepped(point[3], step, lead_bond and step == step_A)
    except _ScanEndedError as end:
        reason = str(end)

    if len(points) < 3:
        raise RarelearnError(f"COGEF scan ended after {len(points)} point(s): {reason}")
    return CogefCurve(
        pair=(i, j),
        distance_A=np.array([p[0] for p in points]),
        energy_eV=np.array([p[1] for p in points]),
        force_eV_per_A=np.array([p[2] for p in points]),
        positions_A=np.array([p[3] for p in points]),
        numbers=atoms.numbers.copy(),
        stopped_reason=reason,
    )
