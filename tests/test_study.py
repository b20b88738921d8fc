"""`rarelearn study` on tiny settings: complete folders, one shared reference, resumable."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rarelearn.cli import main
from test_campaign import TINY as CAMPAIGN_TINY
from test_campaign import _env

#: test_campaign's tiny propane campaign, 2 iterations, on two worker processes, plus the
#: [study] table of each study's tiny variant.
TINY = (
    CAMPAIGN_TINY.replace("iterations = 3", "iterations = 2\nbaselines = false").replace(
        'kind = "inprocess"', 'kind = "local"\nworkers = 2'
    )
    + """
[study]
members = [2, 3]
strategies = ["random"]
chains = [2, 3]
speeds = [10.0, 20.0]
replicas = 2
"""
)


def _study(name: str, config: Path, out: Path, *extra: str) -> subprocess.Popen:
    options = ["--preset", "paper", "--config", str(config), "--out", str(out), *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "rarelearn.cli", "--quiet", "study", name, *options],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output
    return output


def _without_wall_times(study: dict) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in study["rows"]]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("study") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def ensemble(config) -> Path:
    out = config.parent / "ensemble"
    _finish(_study("ensemble", config, out))
    return out


def test_ensemble_writes_a_complete_study_folder_on_one_shared_reference(ensemble) -> None:
    study = json.loads((ensemble / "study.json").read_text())
    assert study["study"] == "ensemble"
    assert {row["campaign"] for row in study["rows"]} == {"m2-random", "m3-random"}
    assert len(study["rows"]) == 4  # two campaigns x two iterations
    required = {"campaign", "n_members", "strategy", "iteration", "n_labels", "ea_error_eV"}
    required |= {"ea_error_ci95_eV", "mae_unseen_kcal_mol", "wall_s"}
    assert all(required <= set(row) for row in study["rows"])
    for name in ("ea_error.png", "mae_unseen.png"):
        assert (ensemble / "figures" / name).stat().st_size > 0
    assert "m3-random" in (ensemble / "report.html").read_text()
    # one reference for all: every campaign's replicas are the shared ones, byte for byte
    shared = (ensemble / "shared" / "reference" / "replicas.npz").read_bytes()
    for campaign in ("m2-random", "m3-random"):
        folder = ensemble / "campaigns" / campaign
        assert (folder / "reference" / "replicas.npz").read_bytes() == shared
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["config"]["committee"]["n_members"] == int(campaign[1])
    first = [row for row in study["rows"] if row["iteration"] == 0]
    assert first[0]["n_labels"] == first[1]["n_labels"]  # the same initial training set


def test_a_killed_study_resumes_to_the_same_rows_without_redoing_work(ensemble, config) -> None:
    out = config.parent / "killed"
    process = _study("ensemble", config, out)
    marker = out / "campaigns" / "m2-random" / "iterations" / "000" / "metrics.json"
    deadline = time.monotonic() + 600
    while not marker.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, "the study finished before it could be killed"
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    shared = out / "shared" / "reference" / "replicas.npz"
    shared_written = shared.stat().st_mtime_ns
    _finish(_study("ensemble", config, out))
    resumed = json.loads((out / "study.json").read_text())
    complete = json.loads((ensemble / "study.json").read_text())
    assert _without_wall_times(resumed) == _without_wall_times(complete)
    assert shared.stat().st_mtime_ns == shared_written  # the reference was not recomputed
    # a finished study run again does not rerun its campaigns
    summary = out / "campaigns" / "m3-random" / "summary.json"
    finished = summary.stat().st_mtime_ns
    _finish(_study("ensemble", config, out))
    assert summary.stat().st_mtime_ns == finished


def test_another_configuration_in_the_same_folder_is_refused(ensemble, config) -> None:
    process = _study("transfer", config, ensemble, "--model", str(ensemble))
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "another study or configuration" in output


@pytest.mark.parametrize("name", ["transfer", "speeds"])
def test_pull_studies_write_rows_for_every_variant(ensemble, config, name) -> None:
    out = config.parent / name
    model = ensemble / "campaigns" / "m2-random"
    _finish(_study(name, config, out, "--model", str(model)))
    study = json.loads((out / "study.json").read_text())
    key = "chain" if name == "transfer" else "pull_speed_A_per_ps"
    assert [row[key] for row in study["rows"]] == ([2, 3] if name == "transfer" else [10.0, 20.0])
    for row in study["rows"]:
        assert row["ea_ref_sem_eV"] is not None and row["ea_nnp_mean_eV"] is not None
        assert row["broken_bond_ref"].startswith("C")  # xTB breaks a C-C or C-H bond
        assert isinstance(row["agree"], bool)
        variant = f"C{row[key]}" if name == "transfer" else f"v{row[key]:g}"
        reference = json.loads(
            (out / "references" / variant / "reference" / "reference.json").read_text()
        )
        assert reference["n_replicas"] == 2
        assert reference["activation_energy_mean_eV"] == pytest.approx(row["ea_ref_mean_eV"])
    for figure in ("ea.png", "work.png"):
        assert (out / "figures" / figure).stat().st_size > 0


def test_selection_study_spends_the_same_budget_every_way(config) -> None:
    """Each campaign labels as many frames as its own UQ rule accepts: at iteration 0, where
    all start from the same committee, the three strategies spend the same budget; a fourth
    campaign trains the UQ frames from scratch (the base warm-starts)."""
    toml = config.read_text().replace("[committee]\n", "[committee]\nwarm_start = true\n")
    warm = config.parent / "warm.toml"
    warm.write_text(toml)
    out = config.parent / "selection"
    _finish(_study("selection", warm, out))
    study = json.loads((out / "study.json").read_text())
    by_campaign: dict[str, list[dict]] = {}
    for row in study["rows"]:
        by_campaign.setdefault(row["campaign"], []).append(row)
    assert set(by_campaign) == {
        "select-uq",
        "select-random",
        "select-reference",
        "select-uq-scratch",
    }
    first = {name: rows[0]["n_selected"] for name, rows in by_campaign.items()}
    assert first["select-random"] == first["select-reference"] == first["select-uq"] > 0
    settings = json.loads((out / "campaigns" / "select-uq-scratch" / "summary.json").read_text())
    assert settings["config"]["committee"]["warm_start"] is False
    assert (out / "figures" / "ea_error_vs_labels.png").stat().st_size > 0


def test_convergence_study_runs_recipes_over_seeds_on_one_reference(config) -> None:
    """Two recipes x two seeds, one iteration each: every campaign keeps its seed and recipe,
    the seeds give other committees, a recipe that only changes the selection gives the same
    first row as the protocol for the same seed, and the summary sets the spread between seeds
    beside the interval of one campaign."""
    toml = config.read_text().replace("iterations = 2", "iterations = 1")
    # a Langevin thermostat, so that a pull depends on its seed
    langevin = '[reference.smd]\nthermostat = { kind = "langevin", temperature_K = 10.0 }\n'
    toml = toml.replace("[reference.smd]\n", langevin)
    toml += 'seeds = [0, 1]\nrecipes = ["protocol", "force-uq"]\n'
    path = config.parent / "convergence.toml"
    path.write_text(toml)
    out = config.parent / "convergence"
    output = _finish(_study("convergence", path, out))
    assert "between seeds" in output
    study = json.loads((out / "study.json").read_text())
    rows = {(row["recipe"], row["seed"]): row for row in study["rows"]}
    assert set(rows) == {(r, s) for r in ("protocol", "force-uq") for s in (0, 1)}
    for row in rows.values():
        assert row["rupture_force_error_eV_A"] is not None
        assert 0.0 <= row["reference_bond_share"] <= 1.0
    assert rows["protocol", 0]["ea_error_eV"] != rows["protocol", 1]["ea_error_eV"]
    assert rows["protocol", 0]["ea_error_eV"] == rows["force-uq", 0]["ea_error_eV"]
    summary = json.loads((out / "campaigns" / "force-uq-seed1" / "summary.json").read_text())
    assert summary["config"]["seed"] == 1
    assert summary["config"]["selection"]["uq"] == "force"
    protocol = study["recipes"]["protocol"]
    errors = [rows["protocol", s]["ea_error_eV"] * 23.0605 for s in (0, 1)]
    assert protocol["final_error_kcal_mol"] == pytest.approx(errors, rel=1e-4)
    assert protocol["spread_between_seeds_kcal_mol"] == pytest.approx(
        abs(errors[0] - errors[1]) / 2**0.5, rel=1e-4
    )
    assert protocol["seeds_meeting_goal"] == 0  # a tiny campaign is far from the reference
    assert (out / "figures" / "final_error_per_seed.png").stat().st_size > 0
    # the shared reference was pulled under the study's seed, the campaign under its own:
    # `smd --start` pulls with the campaign's seed and reproduces its row; another seed, other
    # thermostat noise
    campaign = out / "campaigns" / "protocol-seed1"
    model = campaign / "iterations" / "000"
    argv = ["--quiet", "smd", "--model", str(model), "--start", str(campaign), "--out"]
    assert main([*argv, str(config.parent / "again")]) == 0
    again = json.loads((config.parent / "again" / "smd.json").read_text())
    assert again["seed"] == 1
    assert again["ea_error_signed_eV"] == rows["protocol", 1]["ea_error_eV"]
    assert main([*argv, str(config.parent / "other"), "--seed", "7"]) == 0
    other = json.loads((config.parent / "other" / "smd.json").read_text())
    assert other["seed"] == 7 and other["ea_error_signed_eV"] != again["ea_error_signed_eV"]


def test_a_studys_final_check_extends_the_shared_reference_once(config) -> None:
    """``[final] replicas = 4`` in a convergence study: the shared reference is extended once
    (``shared/final``) and every campaign checks its last committee against that copy; the
    checks and their verdict per recipe are in study.json and its Markdown report."""
    toml = config.read_text().replace("iterations = 2", "iterations = 1")
    toml = toml.replace("[study]\n", "[final]\nreplicas = 4\n\n[study]\n")
    toml += 'seeds = [0, 1]\nrecipes = ["protocol"]\n'
    path = config.parent / "final.toml"
    path.write_text(toml)
    out = config.parent / "final"
    _finish(_study("convergence", path, out))
    study = json.loads((out / "study.json").read_text())
    shared = (out / "shared" / "final" / "reference" / "replicas.npz").read_bytes()
    checks = {check["seed"]: check for check in study["final_checks"]}
    assert set(checks) == {0, 1}
    rows = {row["seed"]: row for row in study["rows"]}
    for seed, check in checks.items():
        campaign = out / "campaigns" / f"protocol-seed{seed}"
        assert (campaign / "final" / "reference" / "replicas.npz").read_bytes() == shared
        final = json.loads((campaign / "summary.json").read_text())["final"]
        assert check == {
            "campaign": f"protocol-seed{seed}",
            "recipe": "protocol",
            "seed": seed,
            **final,
        }
        assert (final["replicas"], final["n_labels"]) == (4, rows[seed]["n_labels"])
    verdict = study["recipes"]["protocol"]["final_check"]
    errors = [checks[s]["ea_error_signed_eV"] * 23.0605 for s in (0, 1)]
    assert verdict["error_kcal_mol"] == pytest.approx(errors, rel=1e-4)
    assert verdict["seeds_meeting_goal"] == sum(checks[s]["inside_tolerance"] for s in (0, 1))
    assert verdict["replicas"] == [4, 4]
    assert "protocol, final check at 4 pulls a side" in (out / "report.html").read_text()
    assert main(["report", str(out), "--markdown"]) == 0


#: eV per kcal/mol, written out so the tests do not reuse the code's constant
KCAL_EV = 1 / 23.0605


def _signal_row(seed: int, i: int, error: float, change: float | None, **keys) -> dict:
    """A study row of recipe "r" for the self-consistency signals: the Ea error (interval
    +-2.0) and its change from the row before (+-2.5), kcal/mol in, eV out; ``keys`` added."""
    return {
        "recipe": "r",
        "seed": seed,
        "iteration": i,
        "n_labels": 100 * (i + 1),
        "ea_error_eV": error * KCAL_EV,
        "ea_error_ci95_eV": 2.0 * KCAL_EV,
        "ea_change_eV": None if change is None else change * KCAL_EV,
        "ea_change_ci95_eV": None if change is None else 2.5 * KCAL_EV,
        **keys,
    }


def test_self_consistency_summary_tests_each_signal_against_the_error() -> None:
    """Hand-made rows of one recipe and two seeds: where the self rule would stop and the
    error there, how often it passes with the error inside the tolerance, and the signals."""
    from rarelearn.config import load_config
    from rarelearn.study.convergence import self_consistency_summary

    stop = load_config(preset_name="quick").stop  # 4 kcal/mol, patience 2

    def row(seed, i, error, change, members_std=None, snap=None):
        return _signal_row(
            seed,
            i,
            error,
            change,
            ea_members_std_eV=None if members_std is None else members_std * KCAL_EV,
            snap_steps_difference_mean=snap,
        )

    rows = [
        # seed 0 settles at a small error: the rule stops at iteration 2 (streak 1, 2)
        row(0, 0, -30.0, None, 10.0, 300.0),
        row(0, 1, 1.0, 1.0, 1.0, None),
        row(0, 2, 0.5, -0.5, 1.0, None),
        # seed 1 settles far off: the rule stops there too (a false stop), snap says too strong
        row(1, 0, 20.0, None, 2.0, -100.0),
        row(1, 1, 12.0, -8.0, 2.0, -50.0),
        row(1, 2, 12.5, 0.5, 2.0, -40.0),
        row(1, 3, 12.0, -0.5, 2.0, 30.0),
    ]
    summary = self_consistency_summary(rows, stop)["r"]
    assert summary["self_stop"]["0"]["iteration"] == 2
    assert summary["self_stop"]["0"]["ea_error_kcal_mol"] == pytest.approx(0.5, rel=1e-4)
    assert summary["self_stop"]["1"]["iteration"] == 3
    assert summary["self_stop"]["1"]["ea_error_kcal_mol"] == pytest.approx(12.0, rel=1e-4)
    assert summary["self_passes"] == 4  # 0/1, 0/2, 1/2, 1/3
    assert summary["self_passes_within_tolerance"] == 2
    assert summary["n_changes"] == 5
    assert summary["members_cover"] == pytest.approx(2 / 7)  # 0/0 and 0/2: |error| <= 2 std
    # resolved errors with snap tests: 0/0 (+300, error -30: agrees), 1/0, 1/1, 1/2 (labeler
    # earlier, error positive: agree), 1/3 (labeler later, error positive: disagrees)
    assert summary["n_snap_rows"] == 5
    assert summary["snap_sign_agrees"] == pytest.approx(4 / 5)


def test_the_0K_check_keeps_the_self_rule_from_a_false_stop() -> None:
    """The false stop above (seed 1, steady 12 kcal/mol off) with the 0 K barrier 11 kcal/mol
    off: the self rule no longer stops it; seed 0 (0 K error within the tolerance) still stops.
    The summary relates the 0 K error to the 10 K one."""
    from rarelearn.config import load_config
    from rarelearn.study.convergence import self_consistency_summary

    stop = load_config(preset_name="quick").stop  # 4 kcal/mol, patience 2

    def row(seed, i, error, change, cold):
        return _signal_row(
            seed, i, error, change, cogef_ea_ref_eV=6.9, cogef_ea_error_eV=cold * KCAL_EV
        )

    rows = [
        row(0, 0, -30.0, None, -28.0),
        row(0, 1, 1.0, 1.0, 2.0),
        row(0, 2, 0.5, -0.5, -1.0),
        row(1, 0, 20.0, None, 17.0),
        row(1, 1, 12.0, -8.0, 11.0),
        row(1, 2, 12.5, 0.5, 11.0),
        row(1, 3, 12.0, -0.5, 10.5),
    ]
    summary = self_consistency_summary(rows, stop)["r"]
    assert summary["self_stop"]["0"]["iteration"] == 2
    assert summary["self_stop"]["1"] is None
    assert summary["self_passes"] == 2 and summary["self_passes_within_tolerance"] == 2
    assert summary["n_cogef_rows"] == 7
    # |10 K - 0 K|: 2, 1, 1.5, 3, 1, 1.5, 1.5 kcal/mol
    assert summary["cogef_error_mean_difference_kcal_mol"] == pytest.approx(11.5 / 7, rel=1e-4)
    assert summary["cogef_error_correlation"] > 0.99


def test_the_final_check_example_is_a_valid_study() -> None:
    """examples/convergence-final.toml: a convergence study whose campaigns end with the final
    check at 64 pulls a side, on the quick preset's 16 reference replicas."""
    from rarelearn.study.settings import load_study_config

    example = Path(__file__).resolve().parent.parent / "examples" / "convergence-final.toml"
    config = load_study_config("convergence", "quick", example)
    assert config.base.final.replicas == 64 and config.base.reference.replicas == 16
    assert "snap-force-post-snap-budget" in config.study.recipes


def test_a_recipe_asking_fewer_equilibrium_frames_trains_on_the_shared_mds_first_ones(
    tmp_path,
) -> None:
    """A study campaign whose recipe asks fewer equilibrium frames than the shared reference
    holds gets the shared MD's first frames: label for label, and reference.json for
    reference.json, what its own reference computes. Any other change of ``[reference]``, or
    more frames than were shared, is refused before anything is made."""
    from rarelearn.campaign import labeler_of, open_store, system_of
    from rarelearn.errors import ConfigError
    from rarelearn.executors import make_executor
    from rarelearn.progress import StageProgress
    from rarelearn.reference import run_reference
    from rarelearn.study.campaigns import (
        campaign_config,
        check_shared_reference,
        seed_campaign,
        shared_reference,
    )
    from rarelearn.study.settings import load_study_config

    toml = CAMPAIGN_TINY.replace("replicas = 3\n", "replicas = 2\npulls = false\n")
    path = tmp_path / "tiny.toml"
    path.write_text(toml + '[study]\nrecipes = ["protocol"]\n')
    config = load_study_config("convergence", "paper", path)
    fewer = {"labels": {}, "settings": {"reference": {"equilibrium": {"n_frames": 40}}}}
    for refused in (
        {"reference": {"equilibrium": {"n_frames": 61}}},
        {"reference": {"replicas": 3}},
        {"reference": {"equilibrium": {"sample_every": 2, "n_frames": 40}}},
    ):
        with pytest.raises(ConfigError, match="share one reference"):
            check_shared_reference(config, {"fewer": fewer, "other": {"settings": refused}})
    check_shared_reference(config, {"fewer": fewer})

    with StageProgress(quiet=True) as progress:
        shared = shared_reference(config, tmp_path / "study", make_executor("inprocess"), progress)
        campaign = campaign_config(config, fewer, tmp_path / "campaign")
        seed_campaign(shared, tmp_path / "campaign", campaign)
        atoms, pulled = system_of(campaign)
        own = tmp_path / "own"
        run_reference(
            atoms,
            pulled,
            labeler_of(campaign),
            campaign.reference,
            own,
            open_store(campaign, own),
            progress,
        )

    def equilibrium(folder: Path) -> list:
        return open_store(campaign, folder).labeled(sources=["equilibrium"])

    copied, computed = equilibrium(tmp_path / "campaign"), equilibrium(own)
    assert len(equilibrium(shared)) == 60 and len(copied) == len(computed) == 40
    for a, b in zip(copied, computed, strict=True):
        assert a.info["uid"] == b.info["uid"]
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())
        assert a.get_potential_energy() == b.get_potential_energy()
    reference = json.loads((tmp_path / "campaign" / "reference" / "reference.json").read_text())
    assert reference == json.loads((own / "reference" / "reference.json").read_text())
    assert reference["n_equilibrium_frames"] == 40
