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


#: How a closed-shell molecule is treated (`PySCFCalculator(broken_symmetry=...)`).
BROKEN_SYMMETRY = ("auto", "never")


class PySCFCalculator(Calculator):
    """Kohn-Sham DFT with PySCF that can describe a bond breaking into two radicals.

    A pulled bond breaks homolytically; restricted KS (both spins in one orbital) cannot
    describe the two radicals: for ethane at C-C 4 A with PBE/6-31G* it lies 22.7 kcal/mol
    above two methyl doublets in the same geometry. So for a closed shell (``spin = 0``) the
    default ``broken_symmetry = "auto"`` runs restricted KS, then unrestricted KS from a
    broken-symmetry guess (the restricted HOMO and LUMO mixed by +45 degrees for alpha and
    -45 degrees for beta spin, the standard guess for a stretched singlet), and keeps the lower
    energy. Near equilibrium the unrestricted SCF returns to the restricted solution (same
    energy, <S^2> = 0) and the restricted one is kept; a stretched bond gives the
    broken-symmetry singlet (<S^2> near 1). `results` carry ``spin_state`` (``restricted``,
    ``broken-symmetry`` or ``unrestricted`` for an open shell) and ``s_squared``; the labels
    record them. ``"never"`` keeps restricted KS only (half the cost). Open shells
    (``spin > 0``) use unrestricted KS. ``density_fit`` fits the Coulomb term with PySCF's
    default auxiliary basis (faster for larger molecules, ~1e-5 Ha of fitting error).
    """

    implemented_properties = ["energy", "forces"]

    def __init__(
        self,
        xc: str = "B3LYP",
        basis: str = "6-31G*",
        charge: int = 0,
        spin: int = 0,
        max_cycle: int = 100,
        conv_tol: float = 1e-9,
        broken_symmetry: str = "auto",
        density_fit: bool = False,
        **kwargs: Any,
    ) -> None:
        try:
            import pyscf  # noqa: F401
        except ImportError as exc:
            raise LabelingError("method pyscf needs PySCF: pip install 'rarelearn[pyscf]'") from exc
        if broken_symmetry not in BROKEN_SYMMETRY:
            raise LabelingError(
                f"pyscf option broken_symmetry must be one of {BROKEN_SYMMETRY}, "
                f"got {broken_symmetry!r}"
            )
        super().__init__(**kwargs)
        self.settings = dict(
            xc=xc,
            basis=basis,
            charge=charge,
            spin=spin,
            max_cycle=max_cycle,
            conv_tol=conv_tol,
            broken_symmetry=broken_symmetry,
            density_fit=density_fit,
        )

    def _molecule(self) -> Any:
        from pyscf import gto

        settings = self.settings
        return gto.M(
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

    def _solver(self, solver: Any) -> Any:
        if self.settings["density_fit"]:
            solver = solver.density_fit()  # RI-J: cheaper Coulomb for larger molecules
        solver.xc = self.settings["xc"]
        solver.max_cycle = self.settings["max_cycle"]
        solver.conv_tol = self.settings["conv_tol"]
        return solver

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        from pyscf import dft

        super().calculate(atoms, properties, system_changes)
        molecule = self._molecule()
        if self.settings["spin"] != 0:
            solver, energy = _converged(self._solver(dft.UKS(molecule)))
            state = "unrestricted"
        else:
            solver, energy = _converged(self._solver(dft.RKS(molecule)))
            state = "restricted"
            if self.settings["broken_symmetry"] == "auto":
                guess = _broken_symmetry_guess(molecule, solver)
                broken, broken_energy = _converged(self._solver(dft.UKS(molecule)), guess)
                # keep it only when it is a lower, different solution (not the restricted
                # one), or the only converged one
                if broken.converged and (not solver.converged or broken_energy < energy - 1e-7):
                    solver, energy, state = broken, broken_energy, "broken-symmetry"
        if not solver.converged:
            self.results["converged"] = False
            raise SCFNotConvergedError("PySCF SCF did not converge")
        gradient = solver.nuc_grad_method().kernel()
        self.results["energy"] = float(energy) * Hartree
        self.results["forces"] = -gradient * Hartree / Bohr
        self.results["converged"] = True
        self.results["spin_state"] = state
        self.results["s_squared"] = float(solver.spin_square()[0]) if state != "restricted" else 0.0


def _converged(solver: Any, guess: Any = None) -> tuple[Any, float]:
    """Run the SCF; if DIIS does not converge (it can wander for a stretched bond, whose
    occupied and virtual orbitals come close: an SCF of the ethane-at-4-A test failed to
    converge in 2 of about 10 runs, never when repeated alone), go on with PySCF's
    second-order solver from where it stopped. Returns the solver that ran last and its
    energy."""
    energy = solver.kernel(dm0=guess)
    if solver.converged:
        return solver, float(energy)
    second_order = solver.newton()
    energy = second_order.kernel(dm0=solver.make_rdm1())
    return second_order, float(energy)


def _broken_symmetry_guess(molecule: Any, restricted: Any) -> Any:
    """Alpha and beta densities from the restricted orbitals with HOMO and LUMO mixed by
    +45 and -45 degrees: each spin localises on one fragment of a stretched bond."""
    import numpy as np

    coefficients = restricted.mo_coeff
    n_occupied = molecule.nelectron // 2
    homo, lumo = coefficients[:, n_occupied - 1], coefficients[:, n_occupied]
    densities = []
    for sign in (1.0, -1.0):
        orbitals = coefficients[:, :n_occupied].copy()
        orbitals[:, -1] = (homo + sign * lumo) / np.sqrt(2.0)
        densities.append(orbitals @ orbitals.T)
    return np.array(densities)
