"""ASE calculator over a committee: the driving energy and forces, with the committee's UQ.

Results follow ASE's meaning of keys: ``energy``, ``free_energy`` and ``forces`` are the
driving model's; the committee's own values have keys ASE does not define (as MACE's
committee calculator does): ``member_energies`` (one per member, eV), ``energy_std`` (eV,
ddof=0: the paper's UQ) and ``forces_std`` (per-atom spread, eV/A). ``energies`` is not
used: in ASE it means one energy per atom, and a per-member array under it breaks ASE's
extxyz and trajectory writers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from rarelearn.potentials.evaluator import CommitteeEvaluator

if TYPE_CHECKING:
    from rarelearn.committee.committee import Committee


class CommitteeCalculator(Calculator):
    """ASE calculator over a committee.

    `energy` and `forces` come from the best member (``mode="best"``; another member with
    ``driver``, or the members' mean with ``driver="mean"``; ``driver="best"``, the setting's
    own word, is the default) or the committee mean (``mode="mean"``). `results` also holds
    `member_energies` (every member, eV), `energy_std` (eV, ddof=0: the paper's UQ) and, with
    `force_uq`, `forces_std` (per-atom spread, eV/A), which needs every member's forces and so
    costs more per step. Not `energies`: in ASE that key means one energy per atom, and a
    per-member array under it breaks ASE's extxyz and trajectory writers.
    """

    implemented_properties = ["energy", "free_energy", "forces", "energy_std", "forces_std"]

    def __init__(
        self,
        committee: Committee,
        mode: str = "best",
        force_uq: bool = True,
        driver: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if driver == "best":  # `committee.driver`'s name for the default
            driver = None
        if mode not in ("best", "mean"):
            raise ValueError(f"mode must be 'best' or 'mean', not {mode!r}")
        if mode == "mean" and driver is not None:
            raise ValueError("driver is for mode 'best'; mode 'mean' is driven by the mean")
        self.driver = driver if driver in (None, "mean") else committee.member_index(driver)
        self.committee = committee
        self.mode = mode
        self.force_uq = force_uq
        self._evaluator: CommitteeEvaluator | None = None

    def prepare(self, numbers: Sequence[int]) -> None:
        """Build the evaluator for a molecule now (it compiles TorchScript): before handing
        the calculator to another thread, or to keep the compile out of a timed run."""
        self._get_evaluator(numbers)

    def _get_evaluator(self, numbers: Sequence[int]) -> CommitteeEvaluator:
        key = tuple(int(z) for z in numbers)
        if self._evaluator is None or self._evaluator.numbers != key:
            self._evaluator = self.committee.evaluator(key, driver=self.driver)
        return self._evaluator

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """Changes since the last calculation, by exact comparison of what the model reads.

        ASE's default compares every per-atom array with `np.allclose` (tolerance 1e-15, so
        in effect exact); on a 20-atom molecule that costs a large part of an MD step.
        """
        old = self.atoms
        if old is None:
            return list(all_changes)
        changes = []
        if not np.array_equal(old.positions, atoms.positions):
            changes.append("positions")
        if not np.array_equal(old.numbers, atoms.numbers):
            changes.append("numbers")
        if not np.array_equal(old.cell.array, atoms.cell.array):
            changes.append("cell")
        if not np.array_equal(old.pbc, atoms.pbc):
            changes.append("pbc")
        return changes

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        """Fill `results` for `atoms`."""
        if atoms is not None and (self.atoms is None or self.check_state(atoms)):
            # `get_property` has just stored a copy of `atoms`; copy only when called directly
            super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        ev = self._get_evaluator(self.atoms.numbers)
        kind = "all" if self.force_uq else self.mode
        res = ev(self.atoms.positions, forces=kind)
        if self.mode == "mean":
            energy = float(res.energies.mean())
            forces = res.member_forces.mean(axis=0) if res.member_forces is not None else res.forces
        else:
            energy = float(ev.driving_energy(res.energies))
            forces = res.forces
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": forces,
            "member_energies": res.energies,
            "energy_std": res.energy_std,
        }
        if res.force_std is not None:
            self.results["forces_std"] = res.force_std
