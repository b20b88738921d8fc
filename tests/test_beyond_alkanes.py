"""A campaign on a molecule that is not an alkane: dimethyl disulfide, pulled at its carbons.

The shipped example structure, the loop end to end on tiny settings, and the physics the
example exists for: GFN2-xTB breaks the S-S bond (the weakest bond between the pulled carbons),
and the summary, CLI and report name it by element and index.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

TINY_DISULFIDE = """
name = "tiny-disulfide"
iterations = 2
seed = 3
baselines = false
[system]
structure = "{structure}"
[reference]
replicas = 3
[reference.equilibrium]
n_frames = 60
equilibration_steps = 20
[reference.smd]
n_steps = 500
relax_steps = 50
pull_speed_A_per_ps = 10.0
until_broken = true
post_break_steps = 100
max_steps = 3000
[committee]
n_members = 2
[committee.ani]
epochs = 8
default_layers = [16, 8]
[selection]
n_reference_steps = 20
max_selected = 6
post_break_cap = 3
[executor]
kind = "inprocess"
chunk_size = 4
"""


@pytest.fixture(scope="module")
def disulfide_run(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("disulfide")
    config = folder / "disulfide.toml"
    config.write_text(TINY_DISULFIDE.format(structure=EXAMPLES / "dimethyl_disulfide.xyz"))
    command = ["run", "--config", str(config), "--out", str(folder / "run")]
    result = subprocess.run(
        [sys.executable, "-m", "rarelearn.cli", "--quiet", *command],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return folder / "run", result.stdout


def test_disulfide_campaign_runs_and_names_the_s_s_bond(disulfide_run) -> None:
    run_dir, stdout = disulfide_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["system"]["formula"] == "C2H6S2"
    assert summary["system"]["pulled"] == ["C0", "C3"]  # default: the skeleton's two ends
    assert [row["iteration"] for row in summary["iterations"]] == [0, 1]
    assert summary["iterations"][1]["n_labels"] > summary["iterations"][0]["n_labels"]
    # every reference replica breaks the disulfide bond, not a C-S bond
    assert summary["broken_bonds_ref"] == {"S1-S2": 3}
    for row in summary["iterations"]:
        assert sum(row["broken_bonds_nnp"].values()) == 3
    assert "C2H6S2 (10 atoms), pulled: C0 <-> C3" in stdout
    assert "the reference broke S1-S2 3/3 pulls" in stdout
    report = (run_dir / "report.html").read_text()
    assert "S1-S2 3/3" in report
    assert "C0 ↔ C3" in report


def test_disulfide_committee_is_an_ase_calculator_with_sulfur(disulfide_run) -> None:
    """The trained committee evaluates the S-containing molecule from ASE, UQ included."""
    from ase.io import read

    from rarelearn.campaign import load_committee

    run_dir, _ = disulfide_run
    committee = load_committee(run_dir / "iterations" / "001" / "committee")
    atoms = read(EXAMPLES / "dimethyl_disulfide.xyz")
    atoms.calc = committee.calculator("best")
    assert atoms.get_forces().shape == (10, 3)
    assert len(atoms.calc.results["member_energies"]) == 2


@pytest.mark.parametrize("name", ["disulfide.toml", "peg.toml"])
def test_example_configs_find_their_structure_from_any_folder(tmp_path, monkeypatch, name) -> None:
    """A relative `structure` is looked up next to the TOML first, so the shipped examples run
    from any working directory; the molecule and pulled atoms are the documented ones."""
    from rarelearn.campaign import system_of
    from rarelearn.config import load_config

    monkeypatch.chdir(tmp_path)
    config = load_config(EXAMPLES / name)
    atoms, pulled = system_of(config)
    symbols = atoms.get_chemical_symbols()
    ends = [f"{symbols[i]}{i}" for i in (*pulled.group_a, *pulled.group_b)]
    expected = {"disulfide.toml": ("C2H6S2", ["C0", "C3"]), "peg.toml": ("C8H18O4", ["C0", "C11"])}
    assert (atoms.get_chemical_formula(mode="hill"), ends) == expected[name]
    assert Path(config.system.structure).is_absolute()
