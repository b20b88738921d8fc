"""Campaign recipes beside the paper's loop: snap tests, rupture-region labels, candidates from
every pull, the 0 K check and its labels, force-based UQ.

One tiny campaign with the first five on: what each adds to the rows and to the training set,
and that a campaign killed in the middle of its snap tests resumes to the same rows; force UQ
on the session's finished tiny campaign.
"""

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from ase.db import connect

from rarelearn.campaign import COGEF_TASK_OFFSET, Campaign, _Iteration
from rarelearn.cogef import CogefCurve
from rarelearn.committee import Committee
from rarelearn.config import from_dict, load_config, load_resolved, merge_settings, preset
from rarelearn.dynamics import SMDTrace
from rarelearn.errors import ConfigError
from rarelearn.progress import StageProgress
from rarelearn.pulls import START_STATES_FILE, ReplicaPulls, load_start_states
from rarelearn.runfolder import ROW_KEYS, RUPTURE_ROW_KEYS, read_traj
from rarelearn.rupture import (
    load_rupture_frames,
    rupture_region,
    save_rupture_frames,
    tail_region,
)
from test_campaign import TINY, _comparable, _run_cli

RECIPES = (
    TINY.replace(
        "[selection]\n", '[selection]\ncandidates = "all"\nrupture_frames = 3\ntail_frames = 2\n'
    ).replace("baseline_smd_every = 10", "baselines = false")
    + "[snap]\nreplicas = 2\nmax_steps = 300\nmax_frames = 3\nn_copies = 1\n"
    + "[cogef]\nenabled = true\nlabels = true\ndriver_labels = true\n"
)


@pytest.fixture(scope="module")
def recipes_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recipes")
    (folder / "tiny.toml").write_text(RECIPES)
    process = _run_cli(["run", "--config", str(folder / "tiny.toml"), "--out", str(folder / "run")])
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    return folder


def test_snap_tests_report_both_sides_and_their_frames_join_the_training_set(recipes_run):
    run = recipes_run / "run"
    summary = json.loads((run / "summary.json").read_text())
    rows = summary["iterations"]
    assert [list(row) for row in rows] == [list(ROW_KEYS)] * len(rows)
    db = connect(run / "data.db")
    for row in rows:
        assert row["snap_n_tests"] == 2
        assert len(row["snap_steps_labeler"]) == len(row["snap_steps_model"]) == 2
        assert sum(row["snap_bonds_labeler"].values()) == 2
        stored = list(db.select(sampled_by="snap_test", iteration=row["iteration"]))
        assert row["snap_labels"] == len(stored)
    labeled = [row for row in rows[:-1]]
    assert all(row["snap_labels"] == 2 * 3 * 2 for row in labeled)  # tests x frames x (1 + copy)
    assert rows[-1]["snap_labels"] == 0  # the last committee is not retrained
    # the originals carry the labeler's own energy from the snap test's frames
    folder = run / "iterations" / "000"
    segment = SMDTrace.load(folder / "snap" / "000.npz")
    original = next(
        row
        for row in db.select(sampled_by="snap_test", iteration=0, source="active", snap_replica=0)
        if row.frame == 0
    )
    assert original.energy == pytest.approx(segment.energy_eV[0], abs=1e-9)
    # a copy is a noisy version of its original, labeled by the labeler
    copy = next(db.select(sampled_by="snap_test", source="augmented", parent=original.uid))
    shift = np.abs(copy.positions - original.positions)
    assert 0 < shift.max() <= 0.05


def test_the_0K_check_compares_each_committee_with_the_labeler_scanned_once(recipes_run):
    """The labeler's COGEF curve is scanned once (``cogef/``); each iteration's row compares its
    driver's curve (``cogef.npz``) with it, or says why its scan failed (a 4-epoch model need
    not relax). Propane's C-C bond gives way smoothly under the spring: no labeler barrier."""
    run = recipes_run / "run"
    labeler = CogefCurve.load(run / "cogef" / "labeler.npz")
    facts = json.loads((run / "cogef" / "labeler.json").read_text())
    assert facts["fine_above_eV_per_A"] == pytest.approx(0.7 * facts["coarse_peak_force_eV_A"])
    assert np.diff(labeler.distance_A)[0] == pytest.approx(0.1)  # coarse below the threshold
    assert labeler.force_eV_per_A.max() > facts["fine_above_eV_per_A"]
    rows = json.loads((run / "summary.json").read_text())["iterations"]
    for row in rows:
        assert row["cogef_peak_force_ref_eV_A"] == labeler.peak()[0]
        assert row["cogef_bond_ref"] in ("C0-C1", "C1-C2")
        assert row["cogef_ea_ref_eV"] is None and "gave way smoothly" in row["cogef_note"]
        iteration = run / "iterations" / f"{row['iteration']:03d}"
        model_facts = json.loads((iteration / "cogef.json").read_text())
        if model_facts.get("failed"):
            assert not (iteration / "cogef.npz").exists()
            assert row["cogef_peak_force_nnp_eV_A"] is None
            assert f"model's scan failed: {model_facts['failed']}" in row["cogef_note"]
            continue
        model = CogefCurve.load(iteration / "cogef.npz")
        assert row["cogef_peak_force_nnp_eV_A"] == model.peak()[0]
        assert row["cogef_peak_force_error_eV_A"] == pytest.approx(
            model.peak()[0] - labeler.peak()[0]
        )
    scanned = [row["iteration"] for row in rows if "cogef_s" in _timing(run, row["iteration"])]
    assert scanned == [row["iteration"] for row in rows]


def test_the_labelers_0K_path_joins_iteration_0s_labels_once(recipes_run):
    """``cogef.labels``: every point of the labeler's scan and one noisy copy of each are
    labeled in iteration 0 (the originals' labels are the labeler's energies at the scan's
    relaxed points), nothing later; the first committee after them trains on them; and
    `rarelearn check` counts them with the selection's labels."""
    run = recipes_run / "run"
    labeler = CogefCurve.load(run / "cogef" / "labeler.npz")
    rows = json.loads((run / "summary.json").read_text())["iterations"]
    db = connect(run / "data.db")
    for row in rows:
        driver = len(list(db.select(sampled_by="cogef_driver", iteration=row["iteration"])))
        labeler_labels = 2 * len(labeler.distance_A) if row["iteration"] == 0 else 0
        assert row["cogef_labels"] == labeler_labels + driver
    originals = sorted(
        db.select(sampled_by="cogef_path", source="active"), key=lambda row: row.frame
    )
    assert [row.frame for row in originals] == list(range(len(labeler.distance_A)))
    assert {row.iteration for row in db.select(sampled_by="cogef_path")} == {0}
    for row in originals:
        k = row.frame
        np.testing.assert_allclose(row.positions, labeler.positions_A[k], atol=1e-12)
        assert row.energy == pytest.approx(labeler.energy_eV[k], abs=1e-6)
        assert row.pair_distance == pytest.approx(labeler.distance_A[k])
        copy = next(db.select(sampled_by="cogef_path", source="augmented", parent=row.uid))
        assert 0 < np.abs(copy.positions - row.positions).max() <= 0.05
    _the_drivers_0K_paths_join_their_iterations_labels(run, rows, db)
    assert rows[1]["n_labels"] - rows[0]["n_labels"] == (
        rows[0]["n_selected"]
        + rows[0]["n_augmented"]
        + rows[0]["snap_labels"]
        + rows[0]["rupture_labels"]
        + rows[0]["cogef_labels"]
        - rows[0]["n_label_failures"]
    )
    output = subprocess.run(
        [sys.executable, "-m", "rarelearn.cli", "check", str(run)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert output.returncode == 0, output.stdout + output.stderr
    assert "is sound" in output.stdout


def _the_drivers_0K_paths_join_their_iterations_labels(run: Path, rows: list, db) -> None:
    """``cogef.driver_labels``: every point of an iteration's driver scan (the check's) and a
    noisy copy are labeled in that iteration; an iteration whose scan failed adds none, the
    last (not retrained) none either."""
    scanned = 0
    for row in rows:
        folder = run / "iterations" / f"{row['iteration']:03d}"
        stored = list(db.select(sampled_by="cogef_driver", iteration=row["iteration"]))
        failed = json.loads((folder / "cogef.json").read_text()).get("failed")
        if failed or row is rows[-1]:
            assert stored == []
            continue
        curve = CogefCurve.load(folder / "cogef.npz")
        assert len(stored) == 2 * len(curve.distance_A)
        for original in (r for r in stored if r.source == "active"):
            np.testing.assert_allclose(original.positions, curve.positions_A[original.frame])
        scanned += 1
    # a 4-epoch model need not relax: the test means something only where one did
    assert scanned >= 1


def _timing(run: Path, iteration: int) -> dict:
    return json.loads((run / "iterations" / f"{iteration:03d}" / "timing.json").read_text())


def test_cogef_labels_without_the_check_scan_the_labeler_once(finished_run, tmp_path):
    """``cogef.labels`` with the check off: iteration 0's labeling scans the labeler itself
    (timed as ``cogef_s``), once; every point and one copy are frames to label (no label
    attached, tasks after the snap tests'), the copies noisy; later iterations add none."""
    config = load_resolved(finished_run)
    config = replace(
        config,
        out=str(tmp_path / "run"),
        cogef=replace(config.cogef, enabled=False, labels=True, label_copies=1),
    )
    (tmp_path / "run" / "iterations" / "000").mkdir(parents=True)
    campaign = Campaign(config, StageProgress(quiet=True))
    campaign.starts = load_start_states(finished_run / "reference" / START_STATES_FILE)
    timing: dict = {}
    frames, provenance = campaign.cogef_candidates(0, timing, "iteration 0")
    curve = CogefCurve.load(tmp_path / "run" / "cogef" / "labeler.npz")
    assert "cogef_s" in timing
    assert len(frames) == 2 * len(curve.distance_A)
    assert all(frame.calc is None for frame in frames)
    assert [p["task"] for p in provenance] == [COGEF_TASK_OFFSET + t for t in range(len(frames))]
    assert [p["source"] for p in provenance[:2]] == ["active", "augmented"]
    np.testing.assert_array_equal(frames[0].positions, curve.positions_A[0])
    assert 0 < np.abs(frames[1].positions - frames[0].positions).max() <= 0.05
    again: dict = {}
    assert len(campaign.cogef_candidates(0, again, "iteration 0")[0]) == len(frames)
    assert again == {}  # read back, not scanned again
    assert campaign.cogef_candidates(1, again, "iteration 1") == ([], [])


def test_force_uq_is_the_largest_per_atom_force_spread(finished_run, tmp_path):
    """``selection.uq = "force"``: the campaign's score of every frame of the pull is the
    largest over atoms of sqrt(mean_m |F_m - <F>|^2), computed here from the members' own
    forces; kept in force_uq.npz and read back from it."""
    folder = tmp_path / "000"
    shutil.copytree(finished_run / "iterations" / "000", folder)
    config = load_resolved(finished_run)
    config = replace(config, selection=replace(config.selection, uq="force"))
    campaign = Campaign(config, StageProgress(quiet=True))
    trace = SMDTrace.load(folder / "smd.npz")
    stored = campaign.selection_uq(_Iteration(folder), trace)
    assert len(stored) == trace.n_frames
    committee = Committee.load(folder / "committee")
    picked = [0, trace.n_frames // 2, trace.n_frames - 1]
    frames = [trace.frame(t) for t in picked]
    forces = np.array([member.predict(frames)[1] for member in committee.members])
    deviation = forces - forces.mean(axis=0)
    by_hand = np.sqrt((deviation**2).sum(axis=-1).mean(axis=0)).max(axis=-1)
    # float32 networks: another batch composition moves the last digits
    np.testing.assert_allclose(stored[picked], by_hand, rtol=1e-5)
    assert not np.allclose(stored, trace.uq_eV)  # not the energy spread
    np.testing.assert_array_equal(campaign.selection_uq(_Iteration(folder), trace), stored)


def test_retrain_script_reproduces_a_campaigns_fit_and_redraw_changes_it(finished_run, tmp_path):
    """``scripts/retrain.py`` trains iteration N's committee with the campaign's own seed
    (`training_seed`): the same weights, so a screen's controls differ from the campaign only
    by the setting changed; ``--redraw`` gives another draw of the same training."""
    script = Path(__file__).parents[1] / "scripts" / "retrain.py"
    frames = SMDTrace.load(finished_run / "iterations" / "001" / "smd.npz")
    frames = [frames.frame(t) for t in (0, frames.n_frames - 1)]

    def energies(committee: Path) -> np.ndarray:
        return np.array([m.predict(frames)[0] for m in Committee.load(committee).members])

    own = energies(finished_run / "iterations" / "001" / "committee")
    for redraw in (0, 500):
        out = tmp_path / f"redraw{redraw}"
        arguments = ["--iteration", "1", "--redraw", str(redraw), "--out", str(out)]
        subprocess.run(
            [sys.executable, str(script), str(finished_run), *arguments],
            check=True,
            capture_output=True,
        )
        retrained = energies(out / "committee")
        if redraw == 0:
            np.testing.assert_array_equal(retrained, own)
        else:
            assert np.abs(retrained - own).max() > 1e-4


def test_candidates_from_every_pull_are_pooled_and_labeled(recipes_run):
    """``selection.candidates = "all"``: frames of several pulls, at most max_selected, each
    labeled with the pull it came from; the row counts the pool."""
    run = recipes_run / "run"
    rows = json.loads((run / "summary.json").read_text())["iterations"]
    selection = json.loads((run / "iterations" / "000" / "selection.json").read_text())
    pooled = selection["pooled"]
    assert rows[0]["n_selected"] == len(pooled) <= 6
    assert selection["n_pooled_candidates"] == rows[0]["n_candidates"] >= len(pooled)
    db = connect(run / "data.db")
    active = [r for r in db.select(source="active", iteration=0) if r.get("sampled_by") is None]
    assert sorted((r.nnp_replica, r.frame) for r in active) == sorted(map(tuple, pooled))
    data = np.load(run / "iterations" / "000" / "pooled.npz")
    first = next(r for r in active if (r.nnp_replica, r.frame) == tuple(pooled[0]))
    np.testing.assert_array_equal(first.positions, data["positions_A"][0])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"uq": "forces"}, "selection.uq must be one of"),
        ({"candidates": "every"}, "selection.candidates must be one of"),
        ({"candidates": "all", "uq": "force"}, "selection.candidates = 'all' screens"),
        ({"rupture_frames": -1}, "selection.rupture_frames must be >= 0"),
    ],
)
def test_bad_recipe_settings_are_refused_naming_the_setting(values, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"selection": values})


def test_a_campaign_killed_in_its_snap_tests_resumes_to_the_same_rows(recipes_run, tmp_path):
    """Iteration 1 loses its second snap test, its row and everything after: rerun, the
    same rows and no label stored twice."""
    run = tmp_path / "run"
    shutil.copytree(recipes_run / "run", run)
    complete = json.loads((run / "summary.json").read_text())
    n_labels = len(connect(run / "data.db"))
    iteration = run / "iterations" / "001"
    (iteration / "metrics.json").unlink()
    (iteration / "snap" / "002.npz").unlink()
    shutil.rmtree(run / "iterations" / "002")
    (run / "summary.json").unlink()
    process = _run_cli(["run", "--config", str(recipes_run / "tiny.toml"), "--out", str(run)])
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    resumed = json.loads((run / "summary.json").read_text())
    assert _comparable(resumed) == _comparable(complete)
    assert len(connect(run / "data.db")) == n_labels


def test_rupture_region_labels_compare_the_models_energy_change_with_the_labelers(recipes_run):
    """Per pull: the start and 3 frames before the model's snap, labeled; the row's mean
    difference of energy changes is recomputed here from the stored labels and the best
    member's own energies of those frames."""
    run = recipes_run / "run"
    rows = json.loads((run / "summary.json").read_text())["iterations"]
    db = connect(run / "data.db")
    row = rows[0]
    stored = list(db.select(sampled_by="rupture_region", iteration=0))
    tail = list(db.select(sampled_by="post_snap", iteration=0))
    assert row["rupture_labels"] == len(stored) + len(tail)
    assert 3 * 2 <= len(stored) <= 3 * 4  # fewer where a short pull's window reaches its start
    committee = Committee.load(run / "iterations" / "000" / "committee")
    atoms = [r.toatoms() for r in stored]
    model, _ = committee.best.predict(atoms, forces=False)
    per_pull = {}
    for r, e_model in zip(stored, model, strict=True):
        per_pull.setdefault(r.snap_replica, {})[r.frame] = (e_model, r.energy)
    means = []
    for frames in per_pull.values():
        start_model, start_label = frames.pop(0)
        means.append(np.mean([(m - start_model) - (e - start_label) for m, e in frames.values()]))
    assert row["rupture_energy_difference_eV"] == pytest.approx(np.mean(means), abs=1e-4)
    assert row["rupture_energy_difference_ci95_eV"] > 0
    far = [p for p, m in zip(per_pull, means, strict=True) if abs(m) > 1.0]
    assert set(far) <= set(row["rupture_unphysical_pulls"])
    # the next committee trains on them
    assert rows[1]["n_labels"] >= rows[0]["n_labels"] + len(stored) + len(tail)


def test_post_snap_labels_are_the_pulls_frames_after_their_snap(recipes_run):
    """Two frames of every broken pull after its snap (the last one its end), labeled apart
    from the rupture region: the row's tail difference is recomputed from the stored labels
    against the same pull's start label. The tiny committees' pulls break from iteration 2 on
    (before, nothing has parted and there is no tail to label)."""
    run = recipes_run / "run"
    rows = json.loads((run / "summary.json").read_text())["iterations"]
    db = connect(run / "data.db")
    i = 2
    folder = run / "iterations" / f"{i:03d}"
    frames = read_traj(folder / "rupture_frames.traj")
    after = [a for a in frames if a.info["after_snap"]]
    pulls = ReplicaPulls.load(folder / "replicas.npz")
    assert len(after) == 2 * sum(pulls.broke)
    tail = list(db.select(sampled_by="post_snap", iteration=i))
    assert len(tail) == len(after)
    for record in tail:
        distances = pulls.distance_A[record.snap_replica]
        snap = np.nonzero(distances == pulls.breaking_distance_A[record.snap_replica])[0][0]
        assert record.frame > snap
    last = {r: np.count_nonzero(np.isfinite(pulls.distance_A[r])) - 1 for r in range(pulls.n)}
    assert {r.snap_replica for r in tail if r.frame == last[r.snap_replica]} == {
        r.snap_replica for r in tail
    }
    starts = {
        r.snap_replica: r
        for r in db.select(sampled_by="rupture_region", iteration=i)
        if r.frame == 0 and not r.get("failed")
    }
    model = {(a.info["replica"], a.info["frame"]): a.info["model_energy"] for a in frames}
    per_pull = {}
    for record in tail:
        if record.get("failed") or record.snap_replica not in starts:
            continue
        start = starts[record.snap_replica]
        per_pull.setdefault(record.snap_replica, []).append(
            (model[(record.snap_replica, record.frame)] - model[(record.snap_replica, 0)])
            - (record.energy - start.energy)
        )
    expected = np.mean([np.mean(v) for v in per_pull.values()])
    assert rows[i]["tail_energy_difference_eV"] == pytest.approx(expected, abs=1e-6)
    assert rows[i]["rupture_energy_difference_eV"] is not None  # the region's own, apart
    good = sum(not r.get("failed") for r in db.select(iteration=i, batch=f"iteration{i:03d}"))
    assert rows[i]["rupture_labels"] == good
    assert rows[i]["n_label_failures"] == db.count(batch=f"iteration{i:03d}", failed=True)
    assert rows[0]["tail_energy_difference_eV"] is None  # no pull broke: no tail
    # a study's rows carry what the self rule reads, so its stop matches the campaign's
    from rarelearn.consistency import self_consistent
    from rarelearn.study.campaigns import campaign_rows
    from rarelearn.study.convergence import _as_campaign_row

    stop = load_resolved(run).stop
    for study_row, row in zip(campaign_rows("tiny", {}, run), rows, strict=True):
        assert {k: study_row[k] for k in RUPTURE_ROW_KEYS} == {k: row[k] for k in RUPTURE_ROW_KEYS}
        assert self_consistent(_as_campaign_row(study_row), stop) == self_consistent(row, stop)


def test_rupture_region_is_the_last_window_before_the_snap():
    distance = 6.0 + 0.01 * np.arange(201)
    zeros = np.zeros(201)
    trace = SMDTrace(
        time_fs=zeros,
        distance_A=distance,
        rest_length_A=zeros,
        spring_force_eV_per_A=zeros,
        work_eV=zeros,
        energy_eV=zeros,
        positions_A=None,
        numbers=np.array([6, 6]),
        broken_frame=150,
        broken_bond=(0, 1),
    )
    assert rupture_region(trace, 4, 0.3) == [0, 120, 130, 140, 150]
    trace.broken_frame = None  # no snap: the peak spring force stands for it
    trace.spring_force_eV_per_A = -((np.arange(201) - 100.0) ** 2)
    assert rupture_region(trace, 2, 0.1) == [0, 90, 100]
    assert rupture_region(trace, 0, 0.3) == [0]  # post-snap labels alone still need the start
    assert tail_region(trace, 2) == []  # never broke: nothing has parted
    trace.broken_frame = 150
    assert tail_region(trace, 2) == [175, 200]  # evenly from the snap to the last frame
    assert tail_region(trace, 0) == []


def test_post_snap_frames_alone_skip_a_pull_that_never_broke(tmp_path):
    """With post-snap frames only, a pull that never broke has nothing to compare with its
    start: it adds no frame (its start label would be spent for nothing)."""
    n = 101
    positions = np.zeros((n, 2, 3))
    positions[:, 1, 0] = 1.5 + 0.01 * np.arange(n)

    def pull(broken_frame):
        return SMDTrace(
            time_fs=np.arange(n, dtype=float),
            distance_A=positions[:, 1, 0].copy(),
            rest_length_A=np.zeros(n),
            spring_force_eV_per_A=np.zeros(n),
            work_eV=np.zeros(n),
            energy_eV=-0.1 * np.arange(n),
            positions_A=positions,
            numbers=np.array([6, 6]),
            broken_frame=broken_frame,
            broken_bond=None if broken_frame is None else (0, 1),
        )

    path = tmp_path / "frames.traj"
    save_rupture_frames(path, [pull(None), pull(60)], 0, 0.3, n_tail=2)
    frames = load_rupture_frames(path)
    picked = [(a.info["replica"], a.info["frame"], a.info["after_snap"]) for a in frames]
    assert picked == [(1, 0, False), (1, 80, True), (1, 100, True)]
    assert frames[1].info["model_energy"] == pytest.approx(-8.0)


def _settings(campaign) -> dict:
    """A campaign's settings without its name and folder."""
    values = campaign.to_dict()
    del values["name"], values["out"]
    return values


def test_every_study_recipe_is_a_valid_campaign_that_applies_its_settings(tmp_path):
    """Each named recipe of the convergence study, laid over the quick preset for one seed,
    gives a campaign configuration that holds the recipe's settings (a typo in a recipe's
    table would otherwise surface hours into a study)."""
    from rarelearn.study.campaigns import campaign_config, plan_campaigns
    from rarelearn.study.settings import RECIPES, load_study_config

    config = load_study_config("convergence")
    config = replace(config, study=replace(config.study, recipes=tuple(RECIPES), seeds=(3,)))
    plans = plan_campaigns(config)
    assert sorted(plans) == sorted(f"{name}-seed3" for name in RECIPES)
    built = {
        name: campaign_config(config, plans[f"{name}-seed3"], tmp_path / name) for name in RECIPES
    }
    assert all(campaign.seed == 3 for campaign in built.values())
    assert built["preset"].snap.replicas == 8 and built["protocol"].snap.replicas == 0
    assert built["snap-long"].committee.ani.epochs == 150
    assert built["snap-long"].snap == built["snap"].snap
    # the quick preset is snap-force-post-snap-lean (at 60 epochs), what `rarelearn run` runs;
    # the long preset is snap-long
    assert built["preset"].committee.ani.epochs == 60
    assert _settings(built["preset"]) == _settings(built["snap-force-post-snap-lean"])
    quick = _settings(from_dict(merge_settings(preset("quick"), {"seed": 3})))
    in_study = _settings(built["preset"])
    for values in (quick, in_study):  # a study runs each campaign on one core
        del values["executor"], values["committee"]["threads"]
    assert in_study == quick
    # the other recipes are laid over the snap recipe's campaign, as they were measured
    assert built["snap"].selection.n_copies == 2 and built["snap"].snap.n_copies == 1
    assert built["snap"].committee.ani.force_weight == 0.1
    # and the ensemble and selection studies ask the paper's questions of the paper's loop
    for name in ("ensemble", "selection"):
        base = load_study_config(name).base
        assert base.snap.replicas == 0 and base.committee.ani.force_weight == 0.1
        assert base.selection.tail_frames == 0 and base.selection.n_copies == 2
    long_config = replace(load_study_config("convergence", "long"), study=config.study)
    long_plan = plan_campaigns(long_config)["preset-seed3"]
    long_preset = campaign_config(long_config, long_plan, tmp_path / "long")
    assert _settings(long_preset) == _settings(built["snap-long"])
    # epochs are snap-long's lever alone: the other recipes keep the base campaign's
    keep_epochs = ("protocol", "snap", "snap-mean", "snap-tail", "snap-all-pulls", "snap-rupture")
    assert all(built[name].committee.ani.epochs == 60 for name in keep_epochs)
    assert built["snap-mean-long"].committee.ani.epochs == 150
    assert built["snap-mean"].committee.driver == "mean"
    assert built["snap"].committee.driver == "best"
    assert built["snap-mean"].snap == built["snap"].snap
    assert built["snap-mean-long"].committee.driver == "mean"
    assert built["snap-mean-long"].committee.ani.epochs == 150
    assert built["snap-all-pulls"].selection.candidates == "all"
    assert built["snap-rupture"].selection.rupture_frames == 3
    assert built["snap"].selection.candidates == "replica0"
    assert built["snap"].selection.rupture_frames == 0
    assert built["snap-tail"].snap.after_steps == 200 and built["snap"].snap.after_steps == 40
    tails = ("snap-tail", "snap-force-tail")
    no_snap_copies = ("snap-force-post-snap-lean", "snap-force-post-snap-no-snap-copies")
    own_snap = (*tails, *no_snap_copies)
    same_snap = [name for name in RECIPES if "snap" in name and name not in own_snap]
    assert all(built[name].snap == built["snap"].snap for name in same_snap)
    assert all(built[name].snap == built["snap-tail"].snap for name in tails)
    assert replace(built["snap-tail"].snap, after_steps=40) == built["snap"].snap
    assert built["snap-force-tail"].committee == built["snap-force"].committee
    assert built["snap-force"].committee.ani.force_weight == 1.0
    assert built["snap-force-post-snap"].committee == built["snap-force"].committee
    assert built["snap-force-post-snap"].selection.tail_frames == 2
    lean = built["snap-force-post-snap-lean"]
    assert lean.committee == built["snap-force"].committee
    assert replace(lean.snap, n_copies=1) == built["snap"].snap and lean.snap.n_copies == 0
    full = built["snap-force-post-snap"].selection
    assert lean.selection == replace(full, n_copies=1) and full.n_copies == 2
    snap_cut = built["snap-force-post-snap-no-snap-copies"]
    assert snap_cut.snap == lean.snap and snap_cut.selection == full
    assert snap_cut.committee == lean.committee
    full_reference = built["snap-force-post-snap"].reference
    budget = built["snap-force-post-snap-budget"]
    assert budget.snap == built["snap"].snap and budget.committee == lean.committee
    assert budget.selection == replace(full, n_copies=1, max_selected=36)
    # its bound: no seed can pass the goal's 2,000 labels, whatever UQ selects
    per_iteration = (
        budget.selection.max_selected * (1 + budget.selection.n_copies)
        + budget.snap.replicas * budget.snap.max_frames * (1 + budget.snap.n_copies)
        + budget.reference.replicas * (1 + budget.selection.tail_frames)
    )
    most = budget.reference.equilibrium.n_frames + (budget.iterations - 1) * per_iteration
    assert most == 1992
    # the full post-snap recipe on fewer equilibrium frames: every label of its loop kept
    short = built["snap-force-post-snap-eq650"]
    assert _settings(replace(short, reference=full_reference)) == _settings(
        built["snap-force-post-snap"]
    )
    assert short.reference.equilibrium == replace(full_reference.equilibrium, n_frames=650)

    def bound(campaign) -> int:
        selection, snap = campaign.selection, campaign.snap
        per_iteration = (
            selection.max_selected * (1 + selection.n_copies)
            + snap.replicas * snap.max_frames * (1 + snap.n_copies)
            + campaign.reference.replicas * (1 + selection.tail_frames)
        )
        return campaign.reference.equilibrium.n_frames + (campaign.iterations - 1) * per_iteration

    assert bound(built["snap-force-post-snap"]) == 2304 and bound(short) == 1954
    assert built["snap"].selection.tail_frames == 0
    assert built["force-uq"].selection.uq == "force"
    assert built["paper-committee"].committee.n_members == 7
