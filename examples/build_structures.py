"""Build the example molecules of `examples/` and relax them with GFN2-xTB.

Writes ``dimethyl_disulfide.xyz`` (CH3-S-S-CH3) and ``triglyme.xyz`` (CH3-(O-CH2-CH2)3-O-CH3, a
short poly(ethylene glycol) chain), heavy atoms first in chain order, then hydrogens. The
shipped files are this script's output; a campaign reads them and downloads nothing:

    python examples/build_structures.py

Geometries start from internal coordinates (bond, angle, dihedral; placed by the NeRF rule:
each new atom from the three before it) and are relaxed with tblite's GFN2-xTB through ASE's
BFGS to 0.01 eV/A. ASE's g2 collection has CH3SCH3 but neither molecule, hence the builder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.optimize import BFGS
from tblite.ase import TBLite

HERE = Path(__file__).resolve().parent

#: Bond lengths (A) and angles (degrees) of the starting guesses; the relaxation refines them.
BOND_A = {"CH": 1.09, "CS": 1.82, "SS": 2.04, "CO": 1.42, "CC": 1.52}
TETRAHEDRAL = 109.47


def place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float, dihedral: float):
    """Position of atom d bonded to c with |cd| = bond, angle bcd and dihedral abcd (degrees)."""
    angle, dihedral = np.radians(angle), np.radians(dihedral)
    bc = (c - b) / np.linalg.norm(c - b)
    normal = np.cross(b - a, bc)
    normal /= np.linalg.norm(normal)
    local = np.array(
        [
            -bond * np.cos(angle),
            bond * np.sin(angle) * np.cos(dihedral),
            bond * np.sin(angle) * np.sin(dihedral),
        ]
    )
    frame = np.column_stack([bc, np.cross(normal, bc), normal])
    return c + frame @ local


def bond(x: str, y: str) -> float:
    return BOND_A.get(x + y) or BOND_A[y + x]


def zigzag(backbone: list[str], angles: list[float], dihedrals: list[float]) -> list[np.ndarray]:
    """Heavy-atom backbone: atom k placed from k-3..k-1 with angle[k] and dihedral[k]."""
    positions = [np.zeros(3), np.array([bond(backbone[0], backbone[1]), 0.0, 0.0])]
    theta = np.radians(180.0 - angles[2])
    positions.append(
        positions[1]
        + bond(backbone[1], backbone[2]) * np.array([np.cos(theta), np.sin(theta), 0.0])
    )
    for k in range(3, len(backbone)):
        positions.append(
            place(
                *positions[k - 3 : k], bond(backbone[k - 1], backbone[k]), angles[k], dihedrals[k]
            )
        )
    return positions


def hydrogenate(backbone: list[str], heavy: list[np.ndarray]) -> list[np.ndarray]:
    """Hydrogens on every carbon: CH3 at chain ends (staggered), CH2 inside the chain."""
    hydrogens = []
    last = len(backbone) - 1
    for k, symbol in enumerate(backbone):
        if symbol != "C":
            continue
        if k in (0, last):
            inner = 1 if k == 0 else last - 1
            further = 2 if k == 0 else last - 2
            for dihedral in (60.0, 180.0, 300.0):
                hydrogens.append(
                    place(
                        heavy[further], heavy[inner], heavy[k], BOND_A["CH"], TETRAHEDRAL, dihedral
                    )
                )
        else:
            for dihedral in (120.0, 240.0):
                hydrogens.append(
                    place(heavy[k + 1], heavy[k - 1], heavy[k], BOND_A["CH"], TETRAHEDRAL, dihedral)
                )
    return hydrogens


def molecule(backbone: list[str], angles: list[float], dihedrals: list[float]) -> Atoms:
    heavy = zigzag(backbone, angles, dihedrals)
    hydrogens = hydrogenate(backbone, heavy)
    return Atoms(backbone + ["H"] * len(hydrogens), positions=np.array(heavy + hydrogens))


def relaxed(atoms: Atoms) -> Atoms:
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    BFGS(atoms, logfile=None).run(fmax=0.01, steps=500)
    atoms.calc = None
    return atoms


def dimethyl_disulfide() -> Atoms:
    """CH3-S-S-CH3 with C-S-S 103 degrees and the C-S-S-C dihedral near 85 degrees."""
    return molecule(["C", "S", "S", "C"], [0, 0, 103.0, 103.0], [0, 0, 0, 85.0])


def triglyme() -> Atoms:
    """CH3-(O-CH2-CH2)3-O-CH3, all-trans backbone (C-O-C 112, O-C-C 109 degrees)."""
    backbone = ["C", "O"] + ["C", "C", "O"] * 3 + ["C"]
    angles = [0.0, 0.0] + [
        112.0 if backbone[k - 1] == "O" else TETRAHEDRAL for k in range(2, len(backbone))
    ]
    return molecule(backbone, angles, [180.0] * len(backbone))


if __name__ == "__main__":
    for name, build in (("dimethyl_disulfide", dimethyl_disulfide), ("triglyme", triglyme)):
        atoms = relaxed(build())
        path = HERE / f"{name}.xyz"
        atoms.write(path, comment=f"{name} {atoms.get_chemical_formula()}, GFN2-xTB relaxed")
        print(f"{path}: {atoms.get_chemical_formula()}, {len(atoms)} atoms")
