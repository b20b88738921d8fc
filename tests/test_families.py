"""Every model family behind one interface: a tiny campaign each, the committee calculator in
ASE (extxyz, MD with a trajectory), backend settings, and a missing optional package."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import units
from ase.io import read, write
from ase.io.trajectory import Trajectory
from ase.md.verlet import VelocityVerlet

from _ani_data import xtb_md_frames
from rarelearn import cli
from rarelearn.committee import Committee
from rarelearn.config import from_dict, preset
from rarelearn.errors import ConfigError
from rarelearn.potentials import families

FAMILY_SETTINGS = {
    "ani": {"epochs": 4, "layers": {"H": [16, 8], "C": [16, 8]}},
    "schnet": {"epochs": 3, "hidden_channels": 16, "num_filters": 16, "num_interactions": 2},
    "mace": {
        "epochs": 3,
        "num_channels": 8,
        "radial_mlp": [8],
        "num_interactions": 1,
    },
}

TINY = """
name = "tiny-{backend}"
iterations = 2
seed = 1
baselines = false
[system]
chain = 3
[reference]
replicas = 2
[reference.equilibrium]
n_frames = 40
equilibration_steps = 20
[reference.smd]
n_steps = 500
relax_steps = 30
pull_speed_A_per_ps = 10.0
[committee]
backend = "{backend}"
n_members = 2
[selection]
n_reference_steps = 100
max_selected = 4
post_break_cap = 2
[executor]
kind = "inprocess"
chunk_size = 2
"""


def _tiny_toml(backend: str) -> str:
    section = "\n".join(
        f"{key} = {json.dumps(value)}" for key, value in FAMILY_SETTINGS[backend].items()
    )
    layers = FAMILY_SETTINGS[backend].get("layers")
    if layers:  # a TOML inline table, not JSON
        section = section.replace(
            f"layers = {json.dumps(layers)}", "layers = {H = [16, 8], C = [16, 8]}"
        )
    return TINY.format(backend=backend) + f"[committee.{backend}]\n{section}\n"


@pytest.mark.parametrize(
    "backend",
    # MACE end to end takes ~25 s; tests/test_mace.py checks the family on its own
    ["schnet", pytest.param("mace", marks=pytest.mark.slow)],
)
def test_tiny_campaign_end_to_end(tmp_path: Path, backend: str) -> None:
    """`rarelearn run` with committee.backend trains, pulls, selects, labels and reports."""
    config = tmp_path / "tiny.toml"
    config.write_text(_tiny_toml(backend))
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "rarelearn.cli", "--quiet", "run", "--config", str(config),
         "--out", str(run_dir)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = summary["iterations"]
    assert [row["iteration"] for row in rows] == [0, 1]
    assert rows[1]["n_labels"] > rows[0]["n_labels"]
    assert all(np.isfinite(row["ea_nnp_eV"]) for row in rows)
    committee_json = json.loads((run_dir / "iterations/001/committee/committee.json").read_text())
    assert committee_json["backend"] == backend
    member = json.loads((run_dir / "iterations/001/committee/member_0/model.json").read_text())
    assert member["kind"] == backend
    assert summary["model"] == {"backend": backend, "n_members": 2}
    assert f"2 {backend} members" in (run_dir / "report.html").read_text()
    assert f"committee of 2 {backend} members" in result.stdout


@pytest.fixture(scope="module")
def propane_frames() -> list:
    return xtb_md_frames(n_carbons=3, n_frames=48, stride=4, seed=5)


@pytest.mark.parametrize("backend", ["ani", "schnet", "mace"])
def test_committee_calculator_writes_extxyz_and_runs_ase_md(
    tmp_path: Path, propane_frames: list, backend: str
) -> None:
    """The committee is an ASE calculator whose results ASE's own writers accept: an extxyz
    round trip keeps energy, forces and the committee's keys; an ASE MD run with a trajectory
    conserves energy over a short NVE run."""
    settings_class = families.settings_class(backend)
    settings = settings_class.from_dict(FAMILY_SETTINGS[backend])
    committee = Committee.train(propane_frames, n_members=3, settings=settings, seed=2)
    atoms = propane_frames[0].copy()
    atoms.calc = committee.calculator(force_uq=True)
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    results = atoms.calc.results
    assert results["member_energies"].shape == (3,)
    assert "energies" not in results  # ASE: one energy per atom; not the members'
    assert results["energy_std"] == pytest.approx(np.std(results["member_energies"]))
    assert results["forces_std"].shape == (len(atoms),)

    path = tmp_path / "frame.extxyz"
    write(path, atoms, format="extxyz")
    back = read(path, format="extxyz")
    assert back.get_potential_energy() == pytest.approx(energy, abs=1e-6)
    np.testing.assert_allclose(back.get_forces(), forces, atol=1e-6)

    traj_path = tmp_path / "md.traj"
    dyn = VelocityVerlet(atoms, timestep=0.25 * units.fs)
    with Trajectory(traj_path, "w", atoms) as traj:
        dyn.attach(traj.write, interval=5)
        start = atoms.get_total_energy()
        dyn.run(40)
    frames = read(traj_path, ":")
    assert len(frames) == 9
    assert abs(atoms.get_total_energy() - start) < 0.01  # eV, 40 steps of 0.25 fs
    write(tmp_path / "md.extxyz", frames, format="extxyz")
    assert len(read(tmp_path / "md.extxyz", ":")) == 9


def test_backend_is_validated_and_each_section_names_its_setting() -> None:
    values = preset("quick")
    values["committee"] = {"backend": "painn"}
    with pytest.raises(ConfigError, match=r"committee\.backend must be one of ani, schnet, mace"):
        from_dict(values)
    values["committee"] = {"backend": "mace", "mace": {"max_L": -1}}
    with pytest.raises(ConfigError, match=r"committee\.mace\.max_L"):
        from_dict(values)
    values["committee"] = {"schnet": {"cutoff": "far"}}
    with pytest.raises(ConfigError, match=r"committee\.schnet\.cutoff must be"):
        from_dict(values)
    values["committee"] = {"backend": "schnet", "schnet": {"epochs": 7}}
    config = from_dict(values)
    assert config.committee.model.epochs == 7
    assert from_dict(values | {"committee": {}}).committee.backend == "ani"


def test_missing_family_package_is_one_message_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A family whose library is absent: the install command, exit 2, nothing written."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "mace" else real_find_spec(name, *args)

    monkeypatch.setattr(families.importlib.util, "find_spec", find_spec)
    config = tmp_path / "mace.toml"
    config.write_text('[committee]\nbackend = "mace"\n')
    out = tmp_path / "run"
    assert cli.main(["run", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "needs the package(s) mace" in err
    assert 'pip install -e ".[mace]"' in err
    assert not out.exists()


def test_generic_member_evaluator_equals_ani_fast_evaluator(propane_frames: list) -> None:
    """The evaluator every family gets (each member's own energies_forces) and ANI's fast one
    (shared AEV, stacked networks, TorchScript) give the same committee answer."""
    from rarelearn.potentials.evaluator import MemberEvaluator

    settings = families.settings_class("ani").from_dict(FAMILY_SETTINGS["ani"])
    committee = Committee.train(propane_frames, n_members=3, settings=settings, seed=4)
    frame = propane_frames[7]
    fast = committee.evaluator(frame.numbers)
    generic = MemberEvaluator(committee.members, frame.numbers, fast.best, threads=1)
    for kind in ("best", "mean", "all"):
        a, b = fast(frame.positions, forces=kind), generic(frame.positions, forces=kind)
        np.testing.assert_allclose(a.energies, b.energies, atol=1e-4)
        np.testing.assert_allclose(a.forces, b.forces, atol=1e-4)
    replicas = np.array([f.positions for f in propane_frames[:4]])
    a, b = fast.batch(replicas), generic.batch(replicas)
    np.testing.assert_allclose(a.energies, b.energies, atol=1e-4)
    np.testing.assert_allclose(a.forces, b.forces, atol=1e-4)
    np.testing.assert_allclose(a.energy_std, b.energy_std, atol=1e-5)
