"""Impossible start structures are refused before any work, by every command that takes one,
with one message naming the atoms at fault."""

from __future__ import annotations

import subprocess
import sys

import pytest
from ase import Atoms
from ase.io import write

from rarelearn.errors import RarelearnError
from rarelearn.molecules import build_alkane, check_structure


def test_real_molecules_pass() -> None:
    for n in (2, 6, 11):
        check_structure(build_alkane(n))


def test_atoms_closer_than_the_smd_floor_are_refused_naming_them() -> None:
    ethane = build_alkane(2)
    ethane.positions[1] = ethane.positions[0] + [0.3, 0.0, 0.0]
    with pytest.raises(RarelearnError, match=r"atoms C0 and C1 are 0\.300 A apart"):
        check_structure(ethane)


def test_an_isolated_atom_is_refused_naming_it() -> None:
    ethane = build_alkane(2)
    stray = ethane + Atoms("O", positions=[[30.0, 0.0, 0.0]])
    with pytest.raises(RarelearnError, match=r"atom O8 has no other atom within 4\.0 A"):
        check_structure(stray)


def test_single_atoms_and_non_finite_coordinates_are_refused() -> None:
    with pytest.raises(RarelearnError, match="at least two"):
        check_structure(Atoms("C", positions=[[0, 0, 0]]))
    ethane = build_alkane(2)
    ethane.positions[3, 1] = float("nan")
    with pytest.raises(RarelearnError, match="non-finite"):
        check_structure(ethane)


@pytest.mark.parametrize("command", ["smd", "reference", "run"])
def test_every_command_refuses_a_collapsed_structure_before_any_work(tmp_path, command) -> None:
    """The issue's case: two carbons 0.3 A apart gave 'Ea = 0.000 eV, no bond broke', exit 0."""
    ethane = build_alkane(2)
    ethane.positions[1] = ethane.positions[0] + [0.3, 0.0, 0.0]
    structure = tmp_path / "collapsed.xyz"
    write(structure, ethane)
    out = tmp_path / "out"
    args = {
        "smd": ["smd", "--model", str(tmp_path), "--structure", str(structure)],
        "reference": ["reference", "--structure", str(structure)],
        "run": ["run", "--config", str(_config(tmp_path, structure))],
    }[command]
    result = subprocess.run(
        [sys.executable, "-m", "rarelearn.cli", "--quiet", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "atoms C0 and C1 are 0.300 A apart" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def _config(folder, structure) -> str:
    path = folder / "collapsed.toml"
    path.write_text(f'[system]\nstructure = "{structure}"\n')
    return str(path)


def test_an_element_outside_ani_2x_is_refused_before_any_work(tmp_path) -> None:
    """Silicon is not an ANI-2x element: the campaign refuses it naming the element and the
    elements the family covers, before anything is written."""
    silane = Atoms(
        "SiH4",
        positions=[
            [0, 0, 0],
            [0.88, 0.88, 0.88],
            [-0.88, -0.88, 0.88],
            [-0.88, 0.88, -0.88],
            [0.88, -0.88, -0.88],
        ],
    )
    structure = tmp_path / "silane.xyz"
    write(structure, silane)
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rarelearn.cli",
            "--quiet",
            "run",
            "--config",
            _config(tmp_path, structure),
            "--out",
            str(out),
            "--no-baselines",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "element(s) Si cannot be handled by the ANI model family" in result.stderr
    assert "H, C, N, O, F, S, Cl" in result.stderr
    assert not out.exists()
