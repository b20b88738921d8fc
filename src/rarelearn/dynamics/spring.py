"""The moving harmonic spring of steered MD, as an ASE calculator term.

U = k/2 (d - R0)^2 with d the distance between the centres of mass of the two pulled groups.
Summed with any calculator through ASE's ``SumCalculator``; an observer moves R0 each step.
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

    @property
    def rest_length(self) -> float:
        return self._rest_length

    @rest_length.setter
    def rest_length(self, value: float) -> None:
        self._rest_length = float(value)
        self.reset()

    def axis(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        """Spring distance d (A) and the unit vector from group A's centre to group B's."""
        masses = atoms.get_masses()
        positions = atoms.positions
        weights_a = masses[self._group_a] / masses[self._group_a].sum()
        weights_b = masses[self._group_b] / masses[self._group_b].sum()
        separation = weights_b @ positions[self._group_b] - weights_a @ positions[self._group_a]
        distance = float(np.linalg.norm(separation))
        return distance, separation / distance

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
        distance, unit = self.axis(self.atoms)
        tension = self.spring_constant * (distance - self._rest_length)
        masses = self.atoms.get_masses()
        forces = np.zeros((len(self.atoms), 3))
        # The force on a group's centre is shared among its atoms by mass, as the centre is.
        forces[self._group_a] += (
            tension * unit * (masses[self._group_a] / masses[self._group_a].sum())[:, None]
        )
        forces[self._group_b] -= (
            tension * unit * (masses[self._group_b] / masses[self._group_b].sum())[:, None]
        )
        self.results = {"energy": self.energy(distance), "forces": forces}
