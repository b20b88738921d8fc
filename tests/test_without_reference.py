"""Campaigns without reference pulls: sampling apart from labeling, the self-consistency stop
rule, `rarelearn validate` afterwards.

One tiny campaign (propane; GFN1-xTB samples, GFN2-xTB labels) runs without reference pulls
and is then validated; its twin with the reference pulls on shows that validation computes
what the campaign would have computed with them.
"""

import hashlib
import json
import shutil
import signal

import numpy as np
import pytest
from ase.db import connect

from rarelearn.cli import main
from rarelearn.config import load_config
from rarelearn.consistency import changes, converged_iteration, self_consistent
from rarelearn.labeling import LabelerSpec
from rarelearn.runfolder import ROW_KEYS
from rarelearn.statistics import Sample, welch
from rarelearn.units import EV_TO_KCAL_MOL
from test_campaign import TESTS, TINY, _comparable, _labels_stored, _run_cli, _wait_for

WITHOUT = (
    TINY.replace("[reference]\n", "[reference]\npulls = false\n")
    .replace("iterations = 3", "iterations = 2")
    .replace("baseline_smd_every = 10", "baselines = false")
    + '[sampling]\nmethod = "GFN1-xTB"\n'
)
WITH = WITHOUT.replace("pulls = false", "pulls = true")

#: Keys that name the reference: None in a campaign without its pulls.
REFERENCE_KEYS = (
    "ea_ref_eV",
    "ea_error_eV",
    "ea_error_signed_eV",
    "ea_error_ci95_eV",
    "rupture_force_ref_eV_A",
    "rupture_force_error_eV_A",
    "reference_bond_share",
    "mae_unseen_kcal_mol",
)


def _campaign(folder, toml, name):
    (folder / f"{name}.toml").write_text(toml)
    process = _run_cli(
        ["run", "--config", str(folder / f"{name}.toml"), "--out", str(folder / name)]
    )
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output
    return folder / name, output


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("without_reference")
    without, output = _campaign(folder, WITHOUT, "without")
    with_pulls, _ = _campaign(folder, WITH, "with")
    return {"without": without, "with": with_pulls, "output": output, "folder": folder}


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_without_pulls_rows_carry_what_is_known_and_say_unvalidated(runs):
    run = runs["without"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["validated"] is False
    assert summary["stop_rule"] == "self"
    assert summary["stop_reason"] in ("self-consistent", "max_iterations")
    assert not (run / "reference" / "smd.npz").exists()
    assert (run / "reference" / "start_states.traj").is_file()
    rows = summary["iterations"]
    assert [list(row) for row in rows] == [list(ROW_KEYS)] * len(rows)
    for row in rows:
        assert all(row[key] is None for key in REFERENCE_KEYS)
        assert row["ea_nnp_eV"] is not None and row["ea_nnp_sem_eV"] is not None
        assert row["rupture_force_nnp_eV_A"] is not None
    assert rows[0]["ea_change_eV"] is None
    # the change is the Welch difference of the two committees' replica means
    expected = welch(
        Sample.of(rows[1]["ea_nnp_replicas_eV"]), Sample.of(rows[0]["ea_nnp_replicas_eV"])
    )
    assert rows[1]["ea_change_eV"] == pytest.approx(expected.estimate)
    assert rows[1]["ea_change_ci95_eV"] == pytest.approx(expected.half_width)
    # the CLI's and the report's first words say so
    closing = [line for line in runs["output"].splitlines() if not line[:4].isdigit()]
    assert closing[0].startswith("NOT VALIDATED"), runs["output"]
    assert "NOT VALIDATED" in (run / "report.html").read_text()
    assert main(["check", str(run)]) == 0  # start states only, no unseen set: nothing missing


def test_markdown_of_a_run_without_pulls_shows_what_it_knows(runs, capsys):
    assert main(["report", str(runs["without"]), "--markdown"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("NOT VALIDATED")
    assert "change +- 95 % (kcal/mol)" in text and "rupture force (eV/A)" in text
    assert "error +- 95 %" not in text


def test_sampled_frames_are_labeled_by_the_labeler_with_provenance(runs):
    run = runs["without"]
    db = connect(run / "data.db")
    frames = list(db.select(batch="equilibrium"))
    assert len(frames) == 60
    assert {row.get("sampler") for row in frames} == {"GFN1-xTB"}
    assert {row.get("labeler") for row in frames} == {"failing_calculator:SlowStartXTB"}
    gfn2, gfn1 = LabelerSpec("GFN2-xTB").build(), LabelerSpec("GFN1-xTB").build()
    for row in frames[:3]:
        atoms = row.toatoms()
        stored = atoms.get_potential_energy()
        atoms.calc = gfn2
        assert stored == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
        atoms.calc = gfn1
        assert abs(stored - atoms.get_potential_energy()) > 1.0  # GFN1 is another scale


def test_validate_fills_the_errors_without_recomputing_an_nnp_pull(runs, tmp_path, capsys):
    run = tmp_path / "validated"
    shutil.copytree(runs["without"], run)
    before = json.loads((run / "summary.json").read_text())["iterations"]
    pulls = sorted(run.glob("iterations/*/replicas.npz"))
    digests = [_digest(p) for p in pulls]
    assert main(["--quiet", "validate", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["validated"] is True
    assert summary["reference"]["validated_later"] is True
    assert [_digest(p) for p in pulls] == digests
    for old, new in zip(before, summary["iterations"], strict=True):
        assert new["ea_nnp_replicas_eV"] == old["ea_nnp_replicas_eV"]
        assert new["ea_error_signed_eV"] == pytest.approx(new["ea_nnp_eV"] - new["ea_ref_eV"])
        assert new["ea_error_ci95_eV"] is not None and new["mae_unseen_kcal_mol"] is not None
    # the twin campaign that ran its reference pulls from the same start states agrees:
    # same NNP side, the same reference pulls
    twin = json.loads((runs["with"] / "summary.json").read_text())
    assert [r["ea_nnp_replicas_eV"] for r in twin["iterations"]] == [
        r["ea_nnp_replicas_eV"] for r in summary["iterations"]
    ]
    np.testing.assert_allclose(summary["ea_ref_replicas_eV"], twin["ea_ref_replicas_eV"], atol=1e-8)
    # a second validate is a resume: nothing to pull, the same rows
    assert main(["--quiet", "validate", str(run)]) == 0
    again = json.loads((run / "summary.json").read_text())
    assert again["iterations"] == summary["iterations"]
    assert "against the reference stop rule" in capsys.readouterr().out
    assert main(["check", str(run)]) == 0


@pytest.mark.slow  # ~1 min; keeps the default suite under 10 minutes (run with -m slow)
def test_a_campaign_killed_while_labeling_sampled_frames_resumes_to_the_same_rows(runs, tmp_path):
    """Killed in the middle of the labeler's pass over the sampled equilibrium frames: the
    resume labels the rest (none twice) and ends with the uninterrupted campaign's rows."""
    config = tmp_path / "without.toml"
    config.write_text(WITHOUT)
    run = tmp_path / "run"
    process = _run_cli(["run", "--config", str(config), "--out", str(run)], delay=0.2)
    reached = _wait_for(process, lambda: 0 < _labels_stored(run, "equilibrium") < 60)
    assert reached, process.communicate(timeout=60)[0][-2000:]
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    stored = _labels_stored(run, "equilibrium")
    assert 0 < stored < 60
    process = _run_cli(["run", "--out", str(run)])
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output
    resumed = json.loads((run / "summary.json").read_text())
    uninterrupted = json.loads((runs["without"] / "summary.json").read_text())
    assert _comparable(resumed) == _comparable(uninterrupted)
    uids = [row.uid for row in connect(run / "data.db").select()]
    assert len(uids) == len(set(uids))


def test_validate_refuses_what_it_cannot_do(runs, tmp_path, capsys):
    assert main(["validate", str(runs["with"])]) == 2
    assert "ran its reference pulls itself" in capsys.readouterr().err
    assert main(["validate", str(runs["without"]), "--replicas", "9"]) == 2
    assert "--replicas" in capsys.readouterr().err
    assert main(["validate", str(tmp_path)]) == 2
    assert "not a campaign run folder" in capsys.readouterr().err


def test_unknown_sampling_method_is_refused_before_any_work(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[sampling]\nmethod = 'GFN9-xTB'\n")
    out = tmp_path / "never"
    assert main(["run", "--config", str(path), "--out", str(out)]) == 2
    assert "sampling.method" in capsys.readouterr().err
    assert not out.exists()


def _row(i, ea, replicas_spread=0.01, **extra):
    values = [ea - replicas_spread, ea, ea + replicas_spread]
    return {"iteration": i, "ea_nnp_replicas_eV": values, **extra}


def test_self_rule_needs_a_small_change_for_patience_iterations():
    stop = load_config(preset_name="paper").stop  # 1 kcal/mol, patience 2
    eas = [2.0, 2.5, 2.51, 2.505, 2.50]
    rows = []
    for i, ea in enumerate(eas):
        row = _row(i, ea)
        row.update(changes(rows[-1] if rows else None, row))
        rows.append(row)
    passes = [self_consistent(r, stop) for r in rows]
    assert passes == [False, False, True, True, True]
    assert converged_iteration(rows[:3], stop, "self") is None  # a streak of one
    assert converged_iteration(rows[:4], stop, "self") == 2
    # a wide interval does not pass, however small the change
    wide = _row(5, 2.50, replicas_spread=0.2)
    wide.update(changes(rows[-1], wide))
    assert abs(wide["ea_change_eV"]) * EV_TO_KCAL_MOL < 0.5
    assert not self_consistent(wide, stop)


def test_self_rule_reads_the_rupture_labels_where_measured():
    stop = load_config(preset_name="paper").stop
    row = {"ea_change_eV": 0.0, "ea_change_ci95_eV": 0.01}
    assert self_consistent(row, stop)
    measured = dict(row, rupture_labels=10, rupture_unphysical_pulls=[])
    agree = dict(
        measured, rupture_energy_difference_eV=0.01, rupture_energy_difference_ci95_eV=0.01
    )
    assert self_consistent(agree, stop)
    off = dict(agree, rupture_energy_difference_eV=0.2)
    assert not self_consistent(off, stop)
    unphysical = dict(agree, rupture_unphysical_pulls=[3])
    assert not self_consistent(unphysical, stop)
    # post-snap labels: judged on their own where they are the only ones, beside otherwise
    tail_only = dict(measured, tail_energy_difference_eV=0.01, tail_energy_difference_ci95_eV=0.01)
    assert self_consistent(tail_only, stop)
    assert not self_consistent(dict(tail_only, tail_energy_difference_eV=0.2), stop)
    assert not self_consistent(dict(agree, tail_energy_difference_eV=0.2), stop)
    assert not self_consistent(dict(agree, tail_energy_difference_eV=0.0), stop)  # no interval
    both = dict(agree, tail_energy_difference_eV=0.0, tail_energy_difference_ci95_eV=0.01)
    assert self_consistent(both, stop)
    assert not self_consistent(measured, stop)  # labels but no difference measured


def test_dft_example_samples_with_xtb_and_labels_with_pyscf(tmp_path):
    """The shipped DFT example's settings on a tiny scale (PBE/STO-3G, 2 frames, 2 start
    states): GFN2-xTB samples, PySCF labels every equilibrium frame, no reference pull runs."""
    from dataclasses import replace

    from rarelearn.campaign import labeler_of, sampler_of, system_of
    from rarelearn.dynamics import SMDSettings
    from rarelearn.labeling import label_frames
    from rarelearn.progress import StageProgress
    from rarelearn.reference import EquilibriumSettings, run_reference
    from rarelearn.store import CampaignStore

    config = load_config(TESTS.parent / "examples" / "dft-ethane.toml")
    assert (config.labeler.method, config.sampling.method) == ("pyscf", "GFN2-xTB")
    assert config.reference.pulls is False and config.stop.resolved_rule(False) == "self"
    spec = replace(labeler_of(config), options={**config.labeler.options, "basis": "sto-3g"})
    spec.check()
    settings = replace(
        config.reference,
        equilibrium=EquilibriumSettings(n_frames=2, equilibration_steps=10, sample_every=5),
        smd=SMDSettings(relax_steps=20),
        replicas=2,
    )
    atoms, pulled = system_of(config)
    store = CampaignStore(tmp_path / "data.db")
    with StageProgress(quiet=True) as progress:
        summary = run_reference(
            atoms, pulled, spec, settings, tmp_path, store, progress, sampler=sampler_of(config)
        )
    assert summary["validated"] is False and summary["sampler"] == "GFN2-xTB"
    frames = store.labeled(["equilibrium"])
    assert len(frames) == 2 and {a.info["sampler"] for a in frames} == {"GFN2-xTB"}
    expected = label_frames(spec, frames[:1])[0]
    assert frames[0].get_potential_energy() == pytest.approx(expected.energy, abs=1e-6)
    assert len(list((tmp_path / "reference").glob("**/*.npz"))) == 0  # no pull ran
