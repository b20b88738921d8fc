"""The campaign end to end: run folder contract, resume after kill -9, config and CLI errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.db import connect
from ase.io import read

from rarelearn.campaign import ROW_KEYS, converged_iteration
from rarelearn.cli import main
from rarelearn.config import load_config, load_resolved
from rarelearn.dynamics import SMDTrace
from rarelearn.errors import ConfigError, RarelearnError
from rarelearn.lock import LOCK_FILE, CampaignLock

TESTS = Path(__file__).parent

TINY = """
name = "tiny"
iterations = 3
seed = 1
baseline_smd_every = 10
[system]
chain = 3
[labeler]
method = "failing_calculator:SlowStartXTB"
[reference]
replicas = 3
[reference.equilibrium]
n_frames = 60
equilibration_steps = 20
[reference.smd]
n_steps = 500
relax_steps = 50
pull_speed_A_per_ps = 10.0
[committee]
n_members = 2
[committee.ani]
epochs = 4
layers = {H = [16, 8], C = [16, 8]}
[selection]
n_reference_steps = 100
max_selected = 6
post_break_cap = 3
[executor]
kind = "inprocess"
chunk_size = 2
"""


def _write_config(folder: Path) -> Path:
    path = folder / "tiny.toml"
    path.write_text(TINY)
    return path


def _env(delay: float = 0.0) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["RARELEARN_TEST_LABEL_DELAY"] = str(delay)
    return env


def _run_cli(args, delay=0.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rarelearn.cli", "--quiet", *args],
        env=_env(delay),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _comparable(summary: dict) -> dict:
    """Summary without wall times (the only thing a resume may change)."""
    rows = [{k: v for k, v in row.items() if k != "wall_s"} for row in summary["iterations"]]
    baselines = {
        name: {k: v for k, v in row.items() if k != "wall_s"}
        for name, row in summary["baselines"].items()
    }
    return {"iterations": rows, "baselines": baselines, "ea_ref_eV": summary["ea_ref_eV"]}


def test_run_folder_is_complete(finished_run):
    for name in [
        "config.toml",
        "data.db",
        "summary.json",
        "report.html",
        "reference/reference.json",
        "reference/smd.npz",
        "reference/start_state.traj",
        "reference/start_states.traj",
        "reference/replicas.npz",
        "baselines/smd_only/metrics.json",
        "figures/work.png",
        "figures/ea_error.png",
        "figures/parity.png",
    ]:
        assert (finished_run / name).is_file(), name
    for i in range(3):
        folder = finished_run / "iterations" / f"{i:03d}"
        for name in [
            "committee/committee.json",
            "smd.npz",
            "replicas.npz",
            "members.json",
            "unseen.npz",
            "metrics.json",
        ]:
            assert (folder / name).is_file(), f"{folder}/{name}"
    summary = json.loads((finished_run / "summary.json").read_text())
    assert [tuple(row) for row in summary["iterations"]] == [ROW_KEYS] * 3
    assert set(summary["baselines"]) == {"equilibrium_only", "smd_only"}
    assert summary["config"]["name"] == "tiny"
    first, second = summary["iterations"][:2]
    assert (
        second["n_labels"]
        == first["n_labels"] + first["n_selected"] * 3 - first["n_label_failures"]
    )
    assert first["n_selected"] > 0
    # Ea is a replica statistic: three reference replicas, each NNP pull from one of them.
    reference = json.loads((finished_run / "reference" / "reference.json").read_text())
    replicas = summary["ea_ref_replicas_eV"]
    assert len(replicas) == 3 == len(read(finished_run / "reference/start_states.traj", ":"))
    assert replicas == reference["activation_energy_replicas_eV"]
    assert replicas[0] == reference["activation_energy_eV"]  # replica 0: the unseen set's pull
    assert summary["ea_ref_eV"] == pytest.approx(np.mean(replicas), abs=1e-12)
    assert summary["ea_ref_sem_eV"] == pytest.approx(np.std(replicas, ddof=1) / np.sqrt(3))
    assert summary["stop_reason"] in ("converged", "max_iterations")
    for row in summary["iterations"]:
        assert row["n_replicas"] == len(row["ea_nnp_replicas_eV"]) == len(row["broke"]) == 3
        assert row["ea_nnp_eV"] == pytest.approx(np.mean(row["ea_nnp_replicas_eV"]), abs=1e-12)
        assert row["ea_error_signed_eV"] == pytest.approx(row["ea_nnp_eV"] - row["ea_ref_eV"])
        assert row["ea_error_ci95_eV"] > 0
        assert len(row["ea_members_eV"]) == 2
        assert row["ea_members_eV"][_best_index(finished_run, row)] == row["ea_nnp_replicas_eV"][0]
        assert row["ea_error_single_eV"] == pytest.approx(
            abs(row["ea_nnp_replicas_eV"][0] - replicas[0])
        )
    # The molecule, its pulled atoms and the bond each pull broke, by element and index.
    assert summary["system"] == {
        "formula": "C3H8",
        "n_atoms": 11,
        "pulled_atoms": [[0], [2]],
        "pulled": ["C0", "C2"],
    }
    labels = reference["broken_bond_replicas"]
    assert [label is None for label in labels] == [
        d is None for d in reference["breaking_distance_replicas_A"]
    ]
    assert summary["broken_bonds_ref"] == reference["broken_bonds"]
    assert sum(summary["broken_bonds_ref"].values()) == 3
    main = SMDTrace.load(finished_run / "reference" / "smd.npz")
    if main.broken_frame is not None:
        # the named bond is the one stretched past break_factor x its start length
        i, j = (int(part[1:]) for part in labels[0].split("-"))
        start, broken = main.positions_A[0], main.positions_A[main.broken_frame]
        stretch = np.linalg.norm(broken[i] - broken[j]) / np.linalg.norm(start[i] - start[j])
        assert stretch > summary["config"]["reference"]["smd"]["break_factor"]
    for row in summary["iterations"]:
        counts = row["broken_bonds_nnp"]
        assert sum(counts.values()) == 3
        assert counts.get("none", 0) == row["breaking_distance_nnp_replicas_A"].count(None)
    # Every label has provenance; the equilibrium frames are the training set of iteration 0.
    db = connect(finished_run / "data.db")
    sources = {row.source for row in db.select()}
    assert sources == {"equilibrium", "reference_smd", "active", "augmented"}
    assert db.count(source="equilibrium") == first["n_labels"]
    # The resolved configuration reloads to the same campaign.
    assert load_resolved(finished_run).to_dict()["committee"] == summary["config"]["committee"]


def _best_index(run_dir: Path, row: dict) -> int:
    folder = run_dir / "iterations" / f"{row['iteration']:03d}" / "committee"
    return json.loads((folder / "committee.json").read_text())["best_index"]


def test_smd_start_reproduces_the_rows_replica_pulls(finished_run, tmp_path, capsys):
    """`rarelearn smd --start RUN` pulls from the reference start states as the campaign did."""
    summary = json.loads((finished_run / "summary.json").read_text())
    row = summary["iterations"][-1]
    model = finished_run / "iterations" / f"{row['iteration']:03d}"
    out = tmp_path / "again"
    code = main(
        ["--quiet", "smd", "--model", str(model), "--start", str(finished_run), "--out", str(out)]
    )
    assert code == 0
    result = json.loads((out / "smd.json").read_text())
    assert list(result["activation_energy_replicas_eV"]) == row["ea_nnp_replicas_eV"]
    assert result["ea_error_signed_eV"] == row["ea_error_signed_eV"]
    assert "kcal/mol (95 %)" in capsys.readouterr().out
    code = main(
        [
            "smd",
            "--model",
            str(model),
            "--start",
            str(finished_run),
            "--chain",
            "4",
            "--out",
            str(tmp_path / "no"),
        ]
    )
    assert code == 2
    assert "--chain cannot be combined with --start" in capsys.readouterr().err
    assert (
        main(
            ["smd", "--model", str(model), "--start", str(tmp_path), "--out", str(tmp_path / "no")]
        )
        == 2
    )
    assert "no reference start states" in capsys.readouterr().err


def _row(iteration: int, signed_kcal: float, half_width_kcal: float | None) -> dict:
    to_eV = 1.0 / 23.0605
    return {
        "iteration": iteration,
        "ea_error_signed_eV": signed_kcal * to_eV,
        "ea_error_ci95_eV": None if half_width_kcal is None else half_width_kcal * to_eV,
    }


def test_convergence_needs_the_interval_inside_the_tolerance_for_patience_iterations():
    config = load_config(preset_name="paper")  # tolerance 1 kcal/mol, patience 2
    assert converged_iteration([_row(0, 0.2, 0.7)], config) is None  # one is not a streak
    rows = [_row(0, -30.0, 2.0), _row(1, 0.2, 0.7), _row(2, -0.1, 0.8)]
    assert converged_iteration(rows, config) == 1
    # 0.5 + 0.7 > 1: the interval straddles the tolerance, which breaks the streak
    rows = [_row(1, 0.2, 0.7), _row(2, 0.5, 0.7), _row(3, 0.0, 0.9)]
    assert converged_iteration(rows, config) is None
    rows = [_row(1, 0.2, 0.7), _row(2, 0.0, None)]
    assert converged_iteration(rows, config) is None  # one replica: no interval, no claim


def test_report_and_model_smd_from_the_run_folder(finished_run, tmp_path, capsys):
    (finished_run / "report.html").unlink()
    assert main(["report", str(finished_run)]) == 0
    assert (finished_run / "report.html").is_file()
    figure = tmp_path / "compare.png"
    assert main(["compare", str(finished_run), str(finished_run), "--out", str(figure)]) == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "smd"
    model = finished_run / "iterations" / "002"
    arguments = ["--quiet", "smd", "--model", str(model), "--chain", "3", "--steps", "200"]
    arguments += ["--relax-steps", "20", "--replicas", "2", "--out", str(out)]
    assert main(arguments) == 0
    result = json.loads((out / "smd.json").read_text())
    assert len(result["activation_energy_replicas_eV"]) == 2
    # A 4-epoch model may blow up early: the trace is then shorter, but always consistent.
    assert 1 <= result["n_frames"] <= 201
    assert len(result["uq_eV"]) == len(result["distance_A"]) == result["n_frames"]
    # One writer per folder: an smd into a folder another writer holds is refused untouched.
    written = {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK_FILE}
    with CampaignLock(out):
        assert main([*arguments[:-1], str(out)]) == 2
    assert "one writer at a time" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK_FILE} == written


def _wait_for(process, condition, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    process.kill()  # not left running (and holding its folder) past the test
    output, _ = process.communicate(timeout=60)
    raise TimeoutError(
        f"the campaign never reached the kill point in {timeout} s: {output[-2000:]}"
    )


def _labels_stored(run_dir: Path, batch: str) -> int:
    try:
        return connect(run_dir / "data.db").count(batch=batch)
    except Exception:  # the writer may hold the lock for a moment
        return 0


def _differing_row_keys(a: dict, b: dict) -> list[tuple]:
    """(iteration, key) of every row value two summaries disagree on, and top-level keys."""
    rows = [
        (i, key)
        for i, (row_a, row_b) in enumerate(zip(a["iterations"], b["iterations"], strict=False))
        for key in sorted(set(row_a) | set(row_b))
        if row_a.get(key) != row_b.get(key)
    ]
    keys = sorted((set(a) | set(b)) - {"iterations"})
    top = [key for key in keys if a.get(key) != b.get(key)]
    return rows + [("summary", key) for key in top]


def test_resume_after_kill_at_every_stage_gives_the_same_summary(finished_run, tmp_path):
    config = _write_config(tmp_path)
    run_dir = tmp_path / "run"
    kill_points = [
        ("during the reference MD", lambda: (run_dir / "data.db").is_file(), 0.0),
        ("after iteration 0 training", lambda: (run_dir / "iterations/000/committee").is_dir(), 0),
        ("after iteration 0 SMD", lambda: (run_dir / "iterations/000/smd.npz").is_file(), 0.0),
        (
            "in the middle of labeling",
            lambda: _labels_stored(run_dir, "iteration000") > 0,
            0.3,
        ),
        ("in iteration 2", lambda: (run_dir / "iterations/001/metrics.json").is_file(), 0.0),
    ]
    killed, missed = [], []
    for name, condition, delay in kill_points:
        process = _run_cli(["run", "--config", str(config), "--out", str(run_dir)], delay)
        reached = _wait_for(process, condition)
        if reached:
            process.send_signal(signal.SIGKILL)
            killed.append(name)
        output, _ = process.communicate(timeout=60)
        if not reached:  # it ended first: say how, so that a rare miss explains itself
            missed.append(f"{name}: exit {process.returncode}: {output[-2000:]}")
    assert len(killed) >= 4, f"killed only at {killed}; the others ended first: {missed}"
    labeled_before = _labels_stored(run_dir, "iteration000")
    process = _run_cli(["run", "--out", str(run_dir)])
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    assert "resuming" in output
    resumed = json.loads((run_dir / "summary.json").read_text())
    reference = json.loads((finished_run / "summary.json").read_text())
    differing = _differing_row_keys(_comparable(resumed), _comparable(reference))
    assert _comparable(resumed) == _comparable(reference), (
        f"after kills {killed}: rows differ at {differing}: {output[-2000:]}"
    )
    # Labels finished before a kill were kept and none was stored twice.
    db = connect(run_dir / "data.db")
    uids = [row.uid for row in db.select()]
    assert len(uids) == len(set(uids))
    assert labeled_before > 0


def test_extending_a_finished_campaign_equals_running_it_longer(finished_run, tmp_path):
    """`run --iterations 3` on a finished 2-iteration campaign: its formerly last iteration
    selects and labels, and the result is the uninterrupted 3-iteration campaign's."""
    config, run_dir = _write_config(tmp_path), tmp_path / "run"
    first = _run_cli(["run", "--config", str(config), "--out", str(run_dir), "--iterations", "2"])
    output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output
    short = json.loads((run_dir / "summary.json").read_text())
    assert short["stop_reason"] == "max_iterations"
    assert short["iterations"][-1]["n_selected"] == 0  # the last iteration labels nothing
    shorter = _run_cli(["run", "--out", str(run_dir), "--iterations", "1"])
    output, _ = shorter.communicate(timeout=60)
    assert shorter.returncode == 2 and "can extend a campaign but not shorten it" in output
    longer = _run_cli(["run", "--out", str(run_dir), "--iterations", "3"])
    output, _ = longer.communicate(timeout=600)
    assert longer.returncode == 0, output
    assert "from 2 to 3 iterations" in output
    extended = json.loads((run_dir / "summary.json").read_text())
    reference = json.loads((finished_run / "summary.json").read_text())
    assert extended["iterations"][1]["n_selected"] > 0
    assert _comparable(extended) == _comparable(reference)
    assert load_resolved(run_dir).iterations == 3


def test_bad_config_is_rejected_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[committee]\nn_memers = 3\n")
    out = tmp_path / "never"
    assert main(["run", "--config", str(bad), "--out", str(out)]) == 2
    assert "committee.n_memers" in capsys.readouterr().err
    assert not out.exists()


def test_unknown_labeler_option_is_refused_before_any_work(tmp_path, capsys):
    """PySCF's calculator would hand an unknown option on to ASE unnoticed mid-campaign."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[labeler]\nmethod = 'pyscf'\n[labeler.options]\ngrid = 3\n")
    out = tmp_path / "never"
    assert main(["run", "--config", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown pyscf option(s) ['grid']" in err and "'xc'" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("toml", "setting"),
    [
        ("iterations = 0", "iterations"),
        ("[committee]\nn_members = 1", "committee.n_members"),
        ("[committee]\nstrategy = 'fancy'", "committee.strategy"),
        ("[committee.ani]\nlr_schedule = 'step'", "committee.ani.lr_schedule"),
        ("[committee.ani]\nweight_decay = -1e-5", "committee.ani.weight_decay"),
        ("[committee.ani]\nmin_lr = -1e-5", "committee.ani.min_lr"),
        ("[committee.ani]\njacobian_cache_mb = -1.0", "committee.ani.jacobian_cache_mb"),
        ("[committee.ani]\nactivation = 'relu'", "committee.ani.activation"),
        ("[committee]\ndriver = 'worst'", "committee.driver"),
        ("[stop]\ntolerance_kcal_mol = 0", "stop.tolerance_kcal_mol"),
        ("[stop]\npatience = 1.5", "stop.patience"),
        ("[stop]\npatiense = 2", "stop.patiense"),
        ("[reference]\nreplicas = 0", "replicas"),
        ("[reference.smd]\npull_speed_A_per_ps = -1.0", "pull_speed_A_per_ps"),
        ("[selection]\nn_sigma = -2.0", "n_sigma"),
        ("[executor]\nkind = 'slurm'", "executor.kind"),
        ("[store]\nurl = 'postgresql://me:secret@db/x'", "password"),
        ("[system]\nchain = 6\nstructure = 'x.xyz'", "system"),
        ("iterations = [", "not valid TOML"),
        # campaigns without reference pulls (docs/dft.md)
        ("[reference]\npulls = false\n[stop]\nrule = 'reference'", "stop.rule"),
        ("[stop]\nrule = 'vibes'", "stop.rule"),
        (
            "[reference]\npulls = false\nreplicas = 3\n[selection]\nstrategy = 'reference'",
            "selection.strategy",
        ),
        ("[sampling]\noptions = {accuracy = 2.0}", "sampling.options"),
        ("[sampling]\nmethod = ''", "sampling.method"),
        ("[reference]\npulls = 'no'", "pulls"),
        ("[stop]\nsnap_tolerance_steps = 0", "stop.snap_tolerance_steps"),
    ],
)
def test_each_bad_setting_is_named(tmp_path, toml, setting):
    path = tmp_path / "c.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=setting):
        load_config(path)


def test_presets_differ_and_paper_matches_the_protocol():
    paper = load_config(preset_name="paper")
    assert paper.iterations == 10
    assert paper.reference.equilibrium.n_frames == 2000
    assert paper.reference.smd.n_steps == 6500
    assert paper.committee.n_members == 3 and paper.committee.ani.epochs == 300
    assert paper.selection.post_break_cap == 50 and paper.selection.n_copies == 2
    quick = load_config()
    assert quick.name == "quick" and quick.committee.ani.epochs == 60
    assert quick.snap.replicas == 8 and paper.snap.replicas == 0
    # the quick preset's measured departures (docs/convergence.md); the paper preset keeps
    # the paper's force weight, copies and no post-snap labels
    assert paper.committee.ani.force_weight == 0.1 and paper.selection.tail_frames == 0
    assert quick.committee.ani.force_weight == 1.0 and quick.selection.tail_frames == 2


def test_long_preset_is_the_snap_recipe_with_longer_fits():
    """`--preset long` is the quick preset's snap recipe (without its lean post-snap settings)
    with 150-epoch fits, under its own name (its folder); the command line offers exactly the
    presets the configuration knows."""
    from rarelearn import cli, config

    quick, long = load_config().to_dict(), load_config(preset_name="long").to_dict()
    assert long["committee"]["ani"]["epochs"] == 150 and long["name"] == "long"
    snap = config.from_dict(config.SNAP_PRESET).to_dict()
    long["committee"]["ani"]["epochs"], long["name"] = 60, "quick"
    assert long == snap
    lean = config.merge_settings(config.SNAP_PRESET, config.LEAN_POST_SNAP)
    assert config.from_dict(lean).to_dict() == quick
    assert quick["selection"]["tail_frames"] == 2 and quick["selection"]["n_copies"] == 1
    assert quick["committee"]["ani"]["force_weight"] == 1.0 and quick["snap"]["n_copies"] == 0
    assert cli.PRESETS == config.PRESETS
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        load_config(preset_name="fast")


def test_cli_errors_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    code = main(
        ["smd", "--model", str(tmp_path / "nomodel"), "--chain", "3", "--out", str(tmp_path / "o")]
    )
    assert code == 2
    assert "model folder not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["smd", "--model", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "not a committee folder" in capsys.readouterr().err


def test_documented_example_is_the_paper_preset():
    """examples/paper.toml documents every setting; it must stay equal to the preset."""
    example = load_config(TESTS.parent / "examples" / "paper.toml")
    assert example.to_dict() == load_config(preset_name="paper").to_dict()


def test_documented_example_names_every_setting():
    """Each setting of the configuration appears in examples/paper.toml, set or (where TOML has
    no empty value) as a commented ``# key =`` line under its table; the other model
    families' tables have their own examples (schnet.toml, mace.toml)."""
    text = (TESTS.parent / "examples" / "paper.toml").read_text()
    tables: dict[str, set[str]] = {"": set()}
    table = ""
    for line in text.splitlines():
        header = re.match(r"\[([\w.]+)\]", line)
        if header:
            table = header.group(1)
            tables.setdefault(table, set())
            continue
        key = re.match(r"(?:# )?(\w+) *=", line)
        if key:
            tables[table].add(key.group(1))

    def missing(settings: dict, prefix: str) -> list[str]:
        names = []
        for key, value in settings.items():
            name = f"{prefix}.{key}" if prefix else key
            if name in ("committee.schnet", "committee.mace"):
                continue
            if isinstance(value, dict) and name in tables:
                names += missing(value, name)
            elif key not in tables.get(prefix, set()):
                names.append(name)
        return names

    assert missing(load_config(preset_name="paper").to_dict(), "") == []


def test_no_command_runs_the_quick_preset(tmp_path, monkeypatch):
    """`rarelearn` alone is `rarelearn run`: the quick preset, resolved before any work."""
    seen = {}

    def fake_run_campaign(config, quiet=False):
        seen["config"] = config
        return {"ea_ref_eV": 0.0, "iterations": [], "baselines": {}}

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("rarelearn.campaign.run_campaign", fake_run_campaign)
    assert main([]) == 0
    assert seen["config"].name == "quick"
    assert seen["config"].run_dir == Path("runs/quick")


def test_langevin_pulls_run_one_by_one_with_their_twins_seeds(finished_run):
    """The batched loop cannot reproduce Langevin noise: those pulls run one after another,
    replica r with the seed its reference twin used, so a rerun gives the same trace."""
    from rarelearn.committee import Committee
    from rarelearn.dynamics import SMDSettings, Thermostat, run_smd
    from rarelearn.model_smd import pull_from_starts
    from rarelearn.pulls import load_start_states

    committee = Committee.load(finished_run / "iterations" / "002" / "committee")
    starts = load_start_states(finished_run / "reference" / "start_states.traj")
    settings = SMDSettings(
        n_steps=40, pull_speed_A_per_ps=10.0, thermostat=Thermostat("langevin", 10.0)
    )
    traces = pull_from_starts(committee, starts, settings, seed=1)
    assert len(traces) == 3
    alone = run_smd(starts[2], committee.calculator("best", force_uq=False), settings, seed=3)
    assert np.array_equal(traces[2].positions_A, alone.positions_A)
    assert not np.array_equal(traces[1].positions_A, traces[2].positions_A)


def test_batched_pulls_are_the_same_on_any_number_of_threads(finished_run, monkeypatch):
    """The replicas are pulled in batches of a fixed size, side by side: the traces do not
    depend on how many threads run the batches."""
    from rarelearn import model_smd
    from rarelearn.committee import Committee
    from rarelearn.dynamics import SMDSettings
    from rarelearn.pulls import load_start_states

    monkeypatch.setattr(model_smd, "PULL_BATCH", 2)
    committee = Committee.load(finished_run / "iterations" / "002" / "committee")
    starts = load_start_states(finished_run / "reference" / "start_states.traj")
    settings = SMDSettings(n_steps=40, pull_speed_A_per_ps=10.0)
    one = model_smd.pull_from_starts(committee, starts, settings, threads=1)
    many = model_smd.pull_from_starts(committee, starts, settings, threads=None)
    assert len(one) == len(many) == len(starts) == 3
    for a, b in zip(one, many, strict=True):
        assert np.array_equal(a.positions_A, b.positions_A)
        assert np.array_equal(a.work_eV, b.work_eV)


def test_reference_stage_completes_a_folder_from_before_the_replica_files(finished_run, tmp_path):
    """A run folder whose reference stage predates the replica files (reference.json and
    replica 0 only) is completed on resume: replica 0 is reused, not recomputed."""
    import shutil

    from rarelearn.campaign import labeler_of, open_store, system_of
    from rarelearn.progress import StageProgress
    from rarelearn.reference import run_reference

    run_dir = tmp_path / "old"
    shutil.copytree(finished_run / "reference", run_dir / "reference")
    shutil.copy(finished_run / "data.db", run_dir / "data.db")
    for name in ("start_states.traj", "replicas.npz"):
        (run_dir / "reference" / name).unlink()
    shutil.rmtree(run_dir / "reference" / "replicas")
    replica0 = (run_dir / "reference" / "smd.npz").read_bytes()
    config = load_resolved(finished_run).with_out(str(run_dir))
    atoms, pulled = system_of(config)
    sys.path.insert(0, str(TESTS))  # the tiny config's labeler lives in tests/
    try:
        with StageProgress(quiet=True) as progress:
            summary = run_reference(
                atoms,
                pulled,
                labeler_of(config),
                config.reference,
                run_dir,
                open_store(config, run_dir),
                progress,
            )
    finally:
        sys.path.remove(str(TESTS))
    original = json.loads((finished_run / "reference" / "reference.json").read_text())
    assert summary["activation_energy_replicas_eV"] == original["activation_energy_replicas_eV"]
    assert (run_dir / "reference" / "smd.npz").read_bytes() == replica0
    assert len(read(run_dir / "reference" / "start_states.traj", ":")) == 3


def test_report_works_while_the_campaign_holds_its_lock(finished_run):
    """Only writers lock: the report of a run folder is rebuilt while another process holds
    the folder's lock (a running campaign)."""
    from rarelearn.lock import CampaignLock

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom rarelearn.lock import CampaignLock\n"
            "CampaignLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(600)",
            str(finished_run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RarelearnError, match=f"process {holder.pid}"):
            CampaignLock(finished_run).acquire()
        report = _run_cli(["report", str(finished_run)])
        output, _ = report.communicate(timeout=300)
        assert report.returncode == 0, output
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_export_writes_every_label_with_provenance_as_extxyz(finished_run, tmp_path):
    """`rarelearn export` gives the store's labeled frames as extxyz that ASE reads back with
    the same energies and forces, under the calculator's keys and the REF_ keys, plus the
    provenance; --source filters."""
    from rarelearn.campaign import open_store, training_frames

    out = tmp_path / "frames.extxyz"
    assert main(["export", str(finished_run), "--out", str(out)]) == 0
    frames = read(out, index=":", format="extxyz")
    store = open_store(load_resolved(finished_run).with_out(str(finished_run)), finished_run)
    labeled = store.labeled()
    assert len(frames) == len(labeled) > 0
    by_id = {int(a.info["id"]): a for a in labeled}
    for frame in frames:
        original = by_id[frame.info["store_id"]]
        assert frame.get_potential_energy() == pytest.approx(original.get_potential_energy())
        assert frame.info["REF_energy"] == pytest.approx(original.get_potential_energy())
        np.testing.assert_allclose(frame.get_forces(), original.get_forces(), atol=1e-8)
        np.testing.assert_allclose(frame.arrays["REF_forces"], original.get_forces(), atol=1e-8)
        assert frame.info["source"] == original.info["source"]
    active = tmp_path / "active.extxyz"
    assert main(["export", str(finished_run), "--out", str(active), "--source", "active"]) == 0
    chosen = read(active, index=":", format="extxyz")
    assert {f.info["source"] for f in chosen} == {"active"}
    assert len(chosen) == len(training_frames(store, ["active"]))
    assert main(["export", str(tmp_path), "--out", str(active)]) == 2


def test_final_check_extends_the_reference_and_pulls_the_last_committee(finished_run, tmp_path):
    """`run --final-replicas 4` on a finished 3-replica campaign: its reference extended to 4
    (the 3 its own), its last committee pulled from all 4 start states as the loop pulls (the
    first 3 pulls are the last row's own), the verdict in summary.json; a resume recomputes
    nothing, and a count the check does not hold, or one that extends nothing, is refused."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    before = json.loads((run_dir / "summary.json").read_text())
    process = _run_cli(["run", "--out", str(run_dir), "--final-replicas", "4"])
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    assert "Final check: iteration 2's committee" in output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert _comparable(summary) == _comparable(before)  # the loop's rows unchanged
    assert load_resolved(run_dir).final.replicas == 4
    last, final = summary["iterations"][-1], summary["final"]
    assert (final["iteration"], final["n_labels"], final["replicas"]) == (
        last["iteration"],
        last["n_labels"],
        4,
    )
    pulls = json.loads((run_dir / "final" / "002" / "smd.json").read_text())
    # the same pulls; to round-off here, where 3 and 4 pulls share one batch (at 16 and 64,
    # batches of 8, the first 16 are the row's bit for bit)
    first = pulls["activation_energy_replicas_eV"][:3]
    assert first == pytest.approx(last["ea_nnp_replicas_eV"], rel=1e-9, abs=1e-12)
    reference = np.load(run_dir / "final" / "reference" / "replicas.npz")["activation_energy_eV"]
    own = np.load(run_dir / "reference" / "replicas.npz")["activation_energy_eV"]
    assert len(reference) == 4 and list(reference[:3]) == list(own)
    # the verdict, recomputed from the pulls themselves (Welch's interval of the two means)
    from scipy import stats

    model, ref = np.array(pulls["activation_energy_replicas_eV"]), reference
    se2 = model.var(ddof=1) / 4 + ref.var(ddof=1) / 4
    dof = se2**2 / ((model.var(ddof=1) / 4) ** 2 / 3 + (ref.var(ddof=1) / 4) ** 2 / 3)
    half = stats.t.ppf(0.975, dof) * np.sqrt(se2)
    assert final["ea_error_signed_eV"] == pytest.approx(model.mean() - ref.mean(), abs=1e-12)
    assert final["ea_error_ci95_eV"] == pytest.approx(half, rel=1e-9)
    outer = (abs(model.mean() - ref.mean()) + half) * 23.060548
    share_ok = final["reference_bond_share"] >= 0.9
    assert final["inside_tolerance"] == (outer <= final["tolerance_kcal_mol"] and share_ok)

    written = (run_dir / "final" / "002" / "smd.json").stat().st_mtime_ns
    again = _run_cli(["run", "--out", str(run_dir)])
    output, _ = again.communicate(timeout=600)
    assert again.returncode == 0, output
    assert json.loads((run_dir / "summary.json").read_text())["final"] == final
    assert (run_dir / "final" / "002" / "smd.json").stat().st_mtime_ns == written
    check = _run_cli(["check", str(run_dir)])
    output, _ = check.communicate(timeout=120)
    assert check.returncode == 0 and "final/002/replicas.npz: 4 pulls" in output, output
    other = _run_cli(["run", "--out", str(run_dir), "--final-replicas", "5"])
    output, _ = other.communicate(timeout=600)
    assert other.returncode == 2 and "holds a final check at 4 replicas, not 5" in output
    assert load_resolved(run_dir).final.replicas == 4  # refused before anything was written
    # extended afterwards, the campaign checks its new last committee, not the old one's pulls
    longer = _run_cli(["run", "--out", str(run_dir), "--iterations", "4"])
    output, _ = longer.communicate(timeout=600)
    assert longer.returncode == 0, output
    extended = json.loads((run_dir / "summary.json").read_text())
    assert extended["final"]["iteration"] == 3 == extended["iterations"][-1]["iteration"]
    pulls = json.loads((run_dir / "final" / "003" / "smd.json").read_text())
    first = pulls["activation_energy_replicas_eV"][:3]
    assert first == pytest.approx(extended["iterations"][-1]["ea_nnp_replicas_eV"], rel=1e-9)
    none = _run_cli(
        [
            "run",
            "--out",
            str(tmp_path / "new"),
            "--config",
            str(_write_config(tmp_path)),
            "--final-replicas",
            "3",
        ]
    )
    output, _ = none.communicate(timeout=60)
    assert none.returncode == 2 and "final.replicas" in output and "must exceed" in output
    assert not (tmp_path / "new").exists()
