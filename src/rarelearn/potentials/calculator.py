"""ASE calculator over one trained model of any family (`Potential.calculator`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from rarelearn.potentials.base import Potential


class ModelCalculator(Calculator):
    """Energy (eV) and forces (eV/A) of one `Potential`, for ASE dynamics and optimisers."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model: Potential, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        """Fill `results` for `atoms`."""
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        energy, forces = self.model.energy_and_forces(self.atoms)
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
