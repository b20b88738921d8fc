"""Alkane builder, structure reading and pulled-atom choice."""

from pathlib import Path

import numpy as np
import pytest
from ase.build import molecule
from ase.io import write

from rarelearn.errors import RarelearnError
from rarelearn.molecules import (
    PulledAtoms,
    bonded_pairs,
    build_alkane,
    default_pulled_atoms,
    fragment_of,
    read_structure,
)


@pytest.mark.parametrize("n", [2, 3, 6, 11, 40])
def test_alkane_formula_bonds_and_geometry(n):
    atoms = build_alkane(n)
    assert atoms.get_chemical_formula(mode="hill") == f"C{n}H{2 * n + 2}"
    # A tree of 3n+2 atoms has 3n+1 bonds; a clash or a missing hydrogen changes the count.
    assert len(bonded_pairs(atoms)) == 3 * n + 1
    distances = atoms.get_all_distances()
    np.fill_diagonal(distances, np.inf)
    assert distances.min() == pytest.approx(1.09, abs=0.01)
    assert all(atoms.get_distance(i, i + 1) == pytest.approx(1.53, abs=1e-6) for i in range(n - 1))


@pytest.mark.parametrize("n", [0, 1, 101, 2.5])
def test_unknown_chain_length_is_rejected(n):
    with pytest.raises(RarelearnError, match="chain length"):
        build_alkane(n)


def test_default_pulled_atoms_are_terminal_carbons_also_after_shuffling(tmp_path):
    atoms = build_alkane(6)
    assert default_pulled_atoms(atoms) == PulledAtoms.pair(0, 5)
    order = np.random.default_rng(1).permutation(len(atoms))
    shuffled = atoms[order]
    pulled = default_pulled_atoms(shuffled)
    original = sorted(int(order[i]) for i in (*pulled.group_a, *pulled.group_b))
    assert original == [0, 5]


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("name", "ends"),
    [("dimethyl_disulfide.xyz", ["C0", "C3"]), ("triglyme.xyz", ["C0", "C11"])],
)
def test_default_pulled_atoms_are_the_skeleton_ends_beyond_alkanes(name, ends):
    """Hetero-atoms in the backbone (S-S, C-O-C) do not cut the skeleton: the methyl carbons."""
    atoms = read_structure(EXAMPLES / name)
    pulled = default_pulled_atoms(atoms)
    symbols = atoms.get_chemical_symbols()
    assert [f"{symbols[i]}{i}" for i in (*pulled.group_a, *pulled.group_b)] == ends


def test_default_pulled_atoms_need_two_heavy_atoms():
    with pytest.raises(RarelearnError, match=r"fewer than two non-hydrogen atoms.*--pull"):
        default_pulled_atoms(molecule("CH4"))


def test_read_structure_round_trip_and_errors(tmp_path):
    path = tmp_path / "propane.xyz"
    write(path, build_alkane(3))
    assert read_structure(path).get_chemical_formula(mode="hill") == "C3H8"
    with pytest.raises(RarelearnError, match="not found"):
        read_structure(tmp_path / "missing.xyz")
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text("this is not\na structure\n")
    with pytest.raises(RarelearnError, match="cannot read"):
        read_structure(garbage)


def test_pulled_atoms_validation():
    with pytest.raises(RarelearnError, match="out of range"):
        PulledAtoms.pair(0, 20).validate(20)
    with pytest.raises(RarelearnError, match="share"):
        PulledAtoms((0, 1), (1, 2)).validate(20)
    PulledAtoms((0, 1), (4, 5)).validate(20)


def test_fragment_of_a_terminal_bond_is_the_methyl_and_a_ring_bond_is_refused():
    hexane = build_alkane(6)
    carbons = [i for i, z in enumerate(hexane.numbers) if z == 6]
    methyl = fragment_of(hexane, (carbons[1], carbons[0]))
    assert hexane[methyl].get_chemical_formula() == "CH3"
    rest = fragment_of(hexane, (carbons[0], carbons[1]))
    assert sorted(methyl + rest) == list(range(len(hexane)))
    with pytest.raises(ValueError, match="ring"):
        fragment_of(molecule("C6H6"), (0, 1))
