"""Systems to pull: n-alkanes built from scratch, any ASE-readable structure, the pulled atoms."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.io import read
from ase.neighborlist import NeighborList, natural_cutoffs
from ase.optimize import BFGS

from rarelearn.errors import RarelearnError

MIN_CHAIN_LENGTH = 2
MAX_CHAIN_LENGTH = 100

_CC_BOND_A = 1.53
_CH_BOND_A = 1.09
_CCC_ANGLE_DEG = 112.0
_HCH_ANGLE_DEG = 107.0
_TETRAHEDRAL_DEG = 109.47


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def build_alkane(n_carbons: int) -> Atoms:
    """An all-trans n-alkane CnH2n+2 in the xy-plane; carbons first (0..n-1, in chain order).

    ASE's ``molecule`` database stops at butane, hence this builder: a planar zigzag backbone
    (C-C 1.53 A, C-C-C 112 deg), CH2 hydrogens on the bisector plane, staggered CH3 ends.
    """
    if not isinstance(n_carbons, int | np.integer) or isinstance(n_carbons, bool):
        raise RarelearnError(f"chain length must be an integer, got {n_carbons!r}")
    if not MIN_CHAIN_LENGTH <= n_carbons <= MAX_CHAIN_LENGTH:
        raise RarelearnError(
            f"unknown chain length {n_carbons}: rarelearn builds n-alkanes with "
            f"{MIN_CHAIN_LENGTH} to {MAX_CHAIN_LENGTH} carbons"
        )
    half_angle = np.radians(_CCC_ANGLE_DEG / 2.0)
    step_x = _CC_BOND_A * np.sin(half_angle)
    step_y = _CC_BOND_A * np.cos(half_angle)
    carbons = np.array([[i * step_x, (i % 2) * step_y, 0.0] for i in range(n_carbons)])
    z_axis = np.array([0.0, 0.0, 1.0])
    hydrogens: list[np.ndarray] = []
    for i, carbon in enumerate(carbons):
        neighbours = [carbons[j] for j in (i - 1, i + 1) if 0 <= j < n_carbons]
        if len(neighbours) == 2:
            away = _unit(2 * carbon - neighbours[0] - neighbours[1])
            half_hch = np.radians(_HCH_ANGLE_DEG / 2.0)
            for sign in (1.0, -1.0):
                direction = np.cos(half_hch) * away + sign * np.sin(half_hch) * z_axis
                hydrogens.append(carbon + _CH_BOND_A * direction)
            continue
        axis = _unit(carbon - neighbours[0])
        # The in-plane methyl hydrogen is anti to the next carbon along the chain (staggered).
        in_plane = np.array([0.0, 1.0 if i % 2 else -1.0, 0.0])
        in_plane = _unit(in_plane - np.dot(in_plane, axis) * axis)
        out_of_plane = np.cross(axis, in_plane)
        tilt = np.radians(180.0 - _TETRAHEDRAL_DEG)
        for phi in (0.0, 2 * np.pi / 3, 4 * np.pi / 3):
            radial = np.cos(phi) * in_plane + np.sin(phi) * out_of_plane
            direction = np.cos(tilt) * axis + np.sin(tilt) * radial
            hydrogens.append(carbon + _CH_BOND_A * direction)
    symbols = ["C"] * n_carbons + ["H"] * len(hydrogens)
    atoms = Atoms(symbols, positions=np.vstack([carbons, *hydrogens]))
    atoms.positions -= atoms.get_center_of_mass()
    atoms.info["name"] = f"C{n_carbons}H{2 * n_carbons + 2}"
    return atoms


def read_structure(path: str | Path) -> Atoms:
    """Read the last image of any ASE-readable structure file, with a clear error when it fails."""
    path = Path(path)
    if not path.is_file():
        raise RarelearnError(f"structure file not found: {path}")
    try:
        atoms = read(path, index=-1)
    except Exception as exc:  # ASE raises many exception types for unreadable files
        raise RarelearnError(f"cannot read structure file {path}: {exc}") from exc
    if not isinstance(atoms, Atoms) or len(atoms) < 2:
        raise RarelearnError(f"structure file {path} holds no molecule with at least two atoms")
    if not np.isfinite(atoms.positions).all():
        atom = int(np.flatnonzero(~np.isfinite(atoms.positions).all(axis=1))[0])
        raise RarelearnError(
            f"structure file {path}: atom {atom} has a non-finite coordinate "
            f"{atoms.positions[atom].tolist()}; fix its position in the file"
        )
    if (atoms.numbers < 1).any():
        atom = int(np.flatnonzero(atoms.numbers < 1)[0])
        raise RarelearnError(
            f"structure file {path}: atom {atom} is a dummy atom ({atoms[atom].symbol!r}), "
            "not an element; give every atom a chemical symbol"
        )
    atoms.info.setdefault("name", path.stem)
    return atoms


def relax(atoms: Atoms, calculator: Calculator, fmax: float = 0.01, steps: int = 500) -> Atoms:
    """Return a copy of ``atoms`` relaxed with ``calculator`` (ASE's BFGS)."""
    relaxed = atoms.copy()
    relaxed.calc = calculator
    BFGS(relaxed, logfile=None).run(fmax=fmax, steps=steps)
    relaxed.calc = None
    return relaxed


@dataclass(frozen=True)
class PulledAtoms:
    """Two atoms, or two groups pulled by their centres of mass, between which the spring acts."""

    group_a: tuple[int, ...]
    group_b: tuple[int, ...]

    @classmethod
    def pair(cls, first: int, second: int) -> PulledAtoms:
        return cls((int(first),), (int(second),))

    def validate(self, n_atoms: int) -> None:
        """Reject empty, overlapping or out-of-range groups with a clear message."""
        if not self.group_a or not self.group_b:
            raise RarelearnError("each pulled group needs at least one atom index")
        for index in (*self.group_a, *self.group_b):
            if not 0 <= index < n_atoms:
                raise RarelearnError(
                    f"pulled-atom index {index} is out of range for a structure of {n_atoms} atoms "
                    f"(valid: 0 to {n_atoms - 1})"
                )
        for group in (self.group_a, self.group_b):
            if len(set(group)) != len(group):
                raise RarelearnError(
                    f"pulled group {list(group)} lists an atom twice (it would weigh twice in "
                    "the centre of mass); give each atom once"
                )
        if set(self.group_a) & set(self.group_b):
            raise RarelearnError("the two pulled groups share atoms")

    def to_list(self) -> list[list[int]]:
        return [list(self.group_a), list(self.group_b)]

    def labels(self, symbols: Sequence[str]) -> list[str]:
        """Each group by element and index: "C0", or "centre of C0 H12 H13 H14"."""
        named = [[f"{symbols[i]}{i}" for i in group] for group in (self.group_a, self.group_b)]
        return [names[0] if len(names) == 1 else "centre of " + " ".join(names) for names in named]

    @classmethod
    def from_list(cls, groups: list[list[int]]) -> PulledAtoms:
        if len(groups) != 2:
            raise RarelearnError(
                f"pulled atoms need two groups of atom indices, e.g. [[0], [5]]; got {groups!r}"
            )
        return cls(tuple(int(i) for i in groups[0]), tuple(int(i) for i in groups[1]))


def describe_system(atoms: Atoms, pulled: PulledAtoms) -> dict[str, Any]:
    """The molecule and what is pulled, for summaries and reports (JSON-ready)."""
    return {
        "formula": atoms.get_chemical_formula(mode="hill"),
        "n_atoms": len(atoms),
        "pulled_atoms": pulled.to_list(),
        "pulled": pulled.labels(atoms.get_chemical_symbols()),
    }


def bonded_pairs(atoms: Atoms) -> list[tuple[int, int]]:
    """Covalently bonded pairs (i < j) from ASE's natural covalent radii."""
    neighbours = NeighborList(natural_cutoffs(atoms), self_interaction=False, bothways=False)
    neighbours.update(atoms)
    pairs = []
    for i in range(len(atoms)):
        for j in neighbours.get_neighbors(i)[0]:
            pairs.append((min(i, int(j)), max(i, int(j))))
    return sorted(set(pairs))


def fragment_of(atoms: Atoms, bond: tuple[int, int]) -> list[int]:
    """The atoms on ``bond[1]``'s side of ``bond``: what breaks off with it, in the bonding graph
    of ``atoms`` (natural covalent radii) without that bond. Refused for a bond in a ring."""
    neighbours = NeighborList(natural_cutoffs(atoms), self_interaction=False, bothways=True)
    neighbours.update(atoms)
    side, todo = {bond[1]}, [bond[1]]
    while todo:
        atom = todo.pop()
        for other in neighbours.get_neighbors(atom)[0]:
            if {atom, int(other)} != set(bond) and int(other) not in side:
                side.add(int(other))
                todo.append(int(other))
    if bond[0] in side:
        raise ValueError(f"bond {bond} lies in a ring: breaking it frees no fragment")
    return sorted(side)


def default_pulled_atoms(atoms: Atoms) -> PulledAtoms:
    """The two ends of the heavy-atom skeleton: the non-hydrogen pair most bonds apart (ties:
    farthest in space). For an n-alkane the terminal carbons; for CH3-S-S-CH3 or a PEG chain
    CH3-(O-CH2-CH2)n-O-CH3 the two methyl carbons."""
    symbols = atoms.get_chemical_symbols()
    heavy = [i for i, symbol in enumerate(symbols) if symbol != "H"]
    if len(heavy) < 2:
        raise RarelearnError(
            f"cannot choose pulled atoms: {atoms.get_chemical_formula()} has fewer than two "
            "non-hydrogen atoms; give two atom indices or groups with --pull (or "
            "[system] pull in the config)"
        )
    graph: dict[int, list[int]] = {i: [] for i in heavy}
    for i, j in bonded_pairs(atoms):
        if i in graph and j in graph:
            graph[i].append(j)
            graph[j].append(i)
    best = (-1, -1.0, heavy[0], heavy[1])
    for start in heavy:
        hops = {start: 0}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for neighbour in graph[node]:
                if neighbour not in hops:
                    hops[neighbour] = hops[node] + 1
                    queue.append(neighbour)
        for end, n_hops in hops.items():
            if end <= start:
                continue
            candidate = (n_hops, atoms.get_distance(start, end), start, end)
            if candidate[:2] > best[:2]:
                best = candidate
    return PulledAtoms.pair(best[2], best[3])


#: The steered MD's own floors (`SMDSettings.min_distance_A`, `isolated_atom_A`): a start
#: structure that breaks them would stop the pull at its first step.
MIN_DISTANCE_A = 0.5
ISOLATED_ATOM_A = 4.0


def check_structure(
    atoms: Atoms, min_distance_A: float = MIN_DISTANCE_A, isolated_atom_A: float = ISOLATED_ATOM_A
) -> None:
    """Refuse a structure no pull can start from, naming the atoms at fault.

    Two atoms closer than `min_distance_A` (xTB returns an energy for a 0.3 A C-C contact, and
    the pull would report Ea = 0), or an atom with no other atom within `isolated_atom_A`
    (a stray atom, a unit mix-up, a fragment far away). Same floors as the steered MD.
    """
    if len(atoms) < 2:
        raise RarelearnError(f"the structure has {len(atoms)} atom(s); a pull needs at least two")
    positions = atoms.get_positions()
    if not np.all(np.isfinite(positions)):
        raise RarelearnError("the structure has non-finite coordinates (nan or inf)")
    distances = atoms.get_all_distances()
    np.fill_diagonal(distances, np.inf)
    symbols = atoms.get_chemical_symbols()
    i, j = np.unravel_index(np.argmin(distances), distances.shape)
    if distances[i, j] < min_distance_A:
        raise RarelearnError(
            f"atoms {symbols[i]}{i} and {symbols[j]}{j} are {distances[i, j]:.3f} A apart, "
            f"closer than {min_distance_A} A: not a molecule a pull can start from (check the "
            "structure file and its units, Angstrom)"
        )
    nearest = distances.min(axis=1)
    k = int(np.argmax(nearest))
    if nearest[k] > isolated_atom_A:
        raise RarelearnError(
            f"atom {symbols[k]}{k} has no other atom within {isolated_atom_A} A (nearest "
            f"{nearest[k]:.2f} A): an isolated atom or a separate fragment (check the structure "
            "file and its units, Angstrom)"
        )
