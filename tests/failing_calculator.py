"""A deliberately unreliable ASE calculator for labeling-failure tests (used as module:Class)."""

import numpy as np
from ase.calculators.calculator import Calculator, all_changes


class FlakyCalculator(Calculator):
    """Harmonic pair energy that raises when atom 0 has x > 5 and returns NaN when its y > 5."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        x, y, _ = self.atoms.positions[0]
        if x > 5.0:
            raise RuntimeError("reference program crashed")
        energy = 0.5 * float(np.sum(self.atoms.positions**2))
        if y > 5.0:
            energy = float("nan")
        self.results = {"energy": energy, "forces": -self.atoms.positions.copy()}
