"""The moving harmonic spring of steered MD, as an ASE calculator term.

U = k/2 (d - R0)^2 with d the distance between the centres of mass of the two pulled groups.
Summed with any calculator (``SpringSum`` in the steered-MD loop, or ASE's ``SumCalculator``);
an observer moves R0 each step.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from rarelearn.molecules import PulledAtoms


class MovingSpring(Calculator):
    """Harmonic spring between two atom groups whose rest length ``rest_length`` can move."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, pulled: PulledAtoms, spring_constant: float, rest_length: float) -> None:
        super().__init__()
        self.pulled = pulled
        self.spring_constant = float(spring_constant)
        self._rest_length = float(rest_length)
        self._group_a = np.array(pulled.group_a)
        self._group_b = np.array(pulled.group_b)
        self._weight_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def rest_length(self) -> float:
        return self._rest_length

    @rest_length.setter
    def rest_length(self, value: float) -> None:
        self._rest_length = float(value)
        self.reset()

    def _weights(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        """Mass weights of both groups, cached while the masses stay the same (every MD step)."""
        masses = atoms.arrays.get("masses")
        if masses is None:
            masses = atoms.get_masses()
        cached = self._weight_cache
        if cached is not None and np.array_equal(cached[0], masses):
            return cached[1], cached[2]
        weights_a = masses[self._group_a] / masses[self._group_a].sum()
        weights_b = masses[self._group_b] / masses[self._group_b].sum()
        self._weight_cache = (masses.copy(), weights_a, weights_b)
        return weights_a, weights_b

    def axis(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        """Spring distance d (A) and the unit vector from group A's centre to group B's."""
        weights_a, weights_b = self._weights(atoms)
        positions = atoms.positions
        separation = weights_b @ positions[self._group_b] - weights_a @ positions[self._group_a]
        distance = float(np.linalg.norm(separation))
        return distance, separation / distance

    def energy_and_forces(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        """Spring energy (eV) and forces (eV/A) of ``atoms`` without ASE's calculator caching.

        The force on a group's centre is shared among its atoms by mass, as the centre is.
        """
        distance, unit = self.axis(atoms)
        return self.energy(distance), self.forces_along(atoms, distance, unit)

    def forces_along(self, atoms: Atoms, distance: float, unit: np.ndarray) -> np.ndarray:
        """Spring forces (eV/A) for an axis already computed by `axis` (the batched replicas
        need them twice per step, before and after the rest length moves)."""
        weights_a, weights_b = self._weights(atoms)
        tension = self.spring_constant * (distance - self._rest_length)
        forces = np.zeros((len(atoms), 3))
        forces[self._group_a] += tension * unit * weights_a[:, None]
        forces[self._group_b] -= tension * unit * weights_b[:, None]
        return forces

    def energy(self, distance: float, rest_length: float | None = None) -> float:
        """Spring energy (eV) at distance d for rest length R0 (default: the current one)."""
        rest = self._rest_length if rest_length is None else rest_length
        return 0.5 * self.spring_constant * (distance - rest) ** 2

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        energy, forces = self.energy_and_forces(self.atoms)
        self.results = {"energy": energy, "forces": forces}


class SpringSum(Calculator):
    """A calculator plus a `MovingSpring`, summed like ASE's ``SumCalculator`` but leaner.

    ASE's ``SumCalculator`` copies the atoms and compares them property by property (with
    ``np.allclose``) once per sub-calculator and per property, which costs about as much as an
    NNP force call. Here the state check is an exact comparison of positions, numbers, cell and
    pbc, the spring is evaluated directly and the sub-calculator is asked once for energy and
    once for forces. ``results`` carries ``energy_contributions`` and ``forces_contributions``
    (calculator first, spring second) like ``SumCalculator``; sums are bit-identical to it.
    """

    implemented_properties = ["energy", "forces"]

    def __init__(self, base: Calculator, spring: MovingSpring) -> None:
        super().__init__()
        self.base = base
        self.spring = spring
        self._state: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._base_cache: tuple[tuple[np.ndarray, ...], float, np.ndarray] | None = None

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """Changes since the last calculation: exact comparison of what the sum depends on."""
        state = self._state
        if state is None:
            return list(all_changes)
        changes = []
        if not np.array_equal(state[0], atoms.positions):
            changes.append("positions")
        if not np.array_equal(state[1], atoms.numbers):
            changes.append("numbers")
        if not np.array_equal(state[2], atoms.cell.array):
            changes.append("cell")
        if not np.array_equal(state[3], atoms.pbc):
            changes.append("pbc")
        return changes

    def get_property(
        self, name: str, atoms: Atoms | None = None, allow_calculation: bool = True
    ) -> object:
        """ASE's `get_property` with the cheap state check and without copying the atoms."""
        if atoms is None:
            atoms = self.atoms
        elif self.check_state(atoms):
            self.results = {}
        if name not in self.results:
            if not allow_calculation:
                return None
            self.calculate(atoms, [name], all_changes)
        result = self.results[name]
        return result.copy() if isinstance(result, np.ndarray) else result

    def reset(self) -> None:
        """Forget results (the spring moved, or the system changed)."""
        super().reset()
        self._state = None

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        """Energy and forces of the calculator plus the spring, for ``atoms``."""
        assert atoms is not None
        self.atoms = atoms
        state = (
            atoms.positions.copy(),
            atoms.numbers.copy(),
            atoms.cell.array.copy(),
            atoms.pbc.copy(),
        )
        cached = self._base_cache
        if cached is not None and all(
            np.array_equal(old, new) for old, new in zip(cached[0], state, strict=True)
        ):
            # Only the spring moved: the calculator's answer for these positions still holds,
            # and asking again would cost ASE's check_state (np.allclose per property) twice.
            base_energy, base_forces = cached[1], cached[2]
        else:
            # Forces first: one calculation gives both for nearly every calculator; the energy
            # is then read from its results rather than asked for, which would repeat ASE's
            # state check (np.allclose per property, ~0.08 ms a step) for nothing.
            base_forces = self.base.get_property("forces", atoms)
            base_energy = self.base.results.get("energy")
            if base_energy is None:
                base_energy = self.base.get_property("energy", atoms)
            self._base_cache = (state, base_energy, base_forces)
        spring_energy, spring_forces = self.spring.energy_and_forces(atoms)
        self.results = {
            "energy": base_energy + spring_energy,
            "forces": base_forces + spring_forces,
            "energy_contributions": [base_energy, spring_energy],
            "forces_contributions": [base_forces, spring_forces],
        }
        self._state = state
