"""A molecular PySCF calculator for ASE (optional extra: ``pip install rarelearn[pyscf]``).

Written here because PySCF ships an ASE interface only for periodic systems (``pyscf.pbc``);
this is the small molecular counterpart: Kohn-Sham DFT energy and analytic gradient.
"""

from __future__ import annotations

from typing import Any

from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.units import Bohr, Hartree

from rarelearn.errors import LabelingError


class SCFNotConvergedError(RuntimeError):
    """PySCF returned without a converged SCF (PySCF itself never raises on this)."""


class PySCFCalculator(Calculator):
    """Restricted (or unrestricted for open shells) Kohn-Sham DFT with PySCF."""

    implemented_properties = ["energy", "forces"]

    def __init__(
        self,
        xc: str = "B3LYP",
        basis: str = "6-31G*",
        charge: int = 0,
        spin: int = 0,
        max_cycle: int = 100,
        conv_tol: float = 1e-9,
        **kwargs: Any,
    ) -> None:
        try:
            import pyscf  # noqa: F401
        except ImportError as exc:
            raise LabelingError("method pyscf needs PySCF: pip install 'rarelearn[pyscf]'") from exc
        super().__init__(**kwargs)
        self.settings = dict(
            xc=xc, basis=basis, charge=charge, spin=spin, max_cycle=max_cycle, conv_tol=conv_tol
        )

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        from pyscf import dft, gto

        super().calculate(atoms, properties, system_changes)
        settings = self.settings
        molecule = gto.M(
            atom=[
                (s, tuple(p))
                for s, p in zip(
                    self.atoms.get_chemical_symbols(), self.atoms.positions, strict=True
                )
            ],
            unit="Angstrom",
            basis=settings["basis"],
            charge=settings["charge"],
            spin=settings["spin"],
            verbose=0,
        )
        solver = dft.RKS(molecule) if settings["spin"] == 0 else dft.UKS(molecule)
        solver.xc = settings["xc"]
        solver.max_cycle = settings["max_cycle"]
        solver.conv_tol = settings["conv_tol"]
        energy = solver.kernel()
        if not solver.converged:
            self.results["converged"] = False
            raise SCFNotConvergedError("PySCF SCF did not converge")
        gradient = solver.nuc_grad_method().kernel()
        self.results["energy"] = float(energy) * Hartree
        self.results["forces"] = -gradient * Hartree / Bohr
        self.results["converged"] = True
