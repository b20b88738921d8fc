"""Selection strategies (`selection.strategy`): UQ against random frames at the same label budget.

`random` labels as many frames as the UQ rule accepts, drawn uniformly from the whole NNP
pull; `reference` as many, drawn from reference replica 1's pull (replica 0 is the unseen test
set), keeping the reference's own labels. One tiny campaign per strategy (propane, 2
iterations, both side by side) checks them end to end.
"""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from ase.db import connect

from rarelearn.campaign import Campaign
from rarelearn.check import check_run
from rarelearn.cli import main
from rarelearn.config import load_config, load_resolved
from rarelearn.dynamics import SMDTrace
from rarelearn.errors import ConfigError, RarelearnError
from rarelearn.labeling import LabelerSpec
from rarelearn.progress import StageProgress
from rarelearn.reference import labeled_replica_trace
from rarelearn.selection import (
    STRATEGIES,
    Selection,
    draw_frames,
    draw_rng,
    redraw,
    select_frames,
)
from test_campaign import TINY, _run_cli

#: The tiny campaign of test_campaign, two iterations (the first selects and labels), no
#: baselines: what the strategies change is selection and labeling.
STRATEGY_TINY = TINY.replace("iterations = 3", "iterations = 2\nbaselines = false")


# ------------------------------------------------------------------------------ the draw
def _uq_selection(n_selected: int, n_frames: int = 1000) -> Selection:
    """A UQ-rule outcome that accepted ``n_selected`` frames near the end of the pull."""
    chosen = list(range(n_frames - n_selected, n_frames))
    return Selection(0.1, chosen, chosen, [], [], [], None, n_frames, 100)


def test_random_draw_has_the_uq_count_and_depends_on_seed_and_iteration_only():
    uq = _uq_selection(7)
    drawn = redraw(uq, "random", 1000, draw_rng(3, 0))
    assert drawn.n_selected == 7 == len(set(drawn.selected))
    assert drawn.selected == sorted(drawn.selected)
    assert drawn.uq_selected == uq.selected and drawn.strategy == "random"
    assert drawn.threshold_eV == uq.threshold_eV and drawn.candidates == uq.candidates
    assert redraw(uq, "random", 1000, draw_rng(3, 0)).selected == drawn.selected
    assert redraw(uq, "random", 1000, draw_rng(4, 0)).selected != drawn.selected
    assert redraw(uq, "random", 1000, draw_rng(3, 1)).selected != drawn.selected


def test_random_draws_are_uniform_over_the_whole_pull():
    """Over many iterations' draws every tenth of the pull gets its share of the frames."""
    counts = np.zeros(10)
    for iteration in range(400):
        frames = draw_frames(50, 1000, draw_rng(0, iteration))
        counts += np.bincount(np.asarray(frames) // 100, minlength=10)
    expected = 400 * 50 / 10
    assert np.all(np.abs(counts - expected) < 0.1 * expected), counts


def test_draw_skips_excluded_frames_and_stops_when_none_remain():
    frames = draw_frames(5, 10, draw_rng(0, 0), exclude=[0, 1, 2, 3, 4])
    assert frames == [5, 6, 7, 8, 9]
    assert draw_frames(5, 3, draw_rng(0, 0)) == [0, 1, 2]
    assert draw_frames(0, 10, draw_rng(0, 0)) == []


def test_selection_json_round_trips_and_older_files_are_uq():
    drawn = redraw(_uq_selection(4), "reference", 500, draw_rng(0, 2), replica=1)
    data = json.loads(drawn.to_json())
    assert data["strategy"] == "reference" and data["replica"] == 1
    assert data["n_selected"] == data["n_uq_selected"] == 4
    assert Selection.from_dict(data) == drawn
    older = {k: v for k, v in _uq_selection(4).to_dict().items() if k != "strategy"}
    assert Selection.from_dict(older).strategy == "uq"
    assert "uq_selected" not in _uq_selection(4).to_dict()


# ----------------------------------------------------------------------------- settings
def test_strategy_setting_is_validated(tmp_path, capsys):
    assert load_config(preset_name="paper").selection.strategy == "uq"
    bad = tmp_path / "bad.toml"
    bad.write_text('[selection]\nstrategy = "best"\n')
    out = tmp_path / "never"
    assert main(["run", "--config", str(bad), "--out", str(out)]) == 2
    message = capsys.readouterr().err
    assert "selection.strategy" in message
    assert all(repr(name) in message for name in STRATEGIES)
    assert not out.exists()
    lonely = tmp_path / "lonely.toml"
    lonely.write_text('[selection]\nstrategy = "reference"\n[reference]\nreplicas = 1\n')
    with pytest.raises(ConfigError, match=r"selection\.strategy.*reference\.replicas >= 2"):
        load_config(lonely)


# --------------------------------------------------------------------------- campaigns
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One tiny campaign per non-default strategy, run side by side as a user would."""
    folder = tmp_path_factory.mktemp("strategies")
    processes = {}
    for strategy in ("random", "reference"):
        config = folder / f"{strategy}.toml"
        text = STRATEGY_TINY.replace("[selection]\n", f'[selection]\nstrategy = "{strategy}"\n')
        config.write_text(text)
        processes[strategy] = _run_cli(
            ["run", "--config", str(config), "--out", str(folder / strategy)]
        )
    for process in processes.values():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output
    return {strategy: folder / strategy for strategy in processes}


def _campaign(run_dir: Path, **changes) -> Campaign:
    config = replace(load_resolved(run_dir).with_out(str(run_dir)), **changes)
    return Campaign(config, StageProgress(quiet=True))


def _active(run_dir: Path, iteration: int) -> list:
    db = connect(run_dir / "data.db")
    return sorted(db.select(source="active", iteration=iteration), key=lambda row: row.frame)


def _uq_count(run_dir: Path, iteration: int) -> int:
    """Frames the UQ rule accepts on the iteration's pull."""
    config = load_resolved(run_dir)
    trace = SMDTrace.load(run_dir / "iterations" / f"{iteration:03d}" / "smd.npz")
    forced = (
        () if trace.stopped_reason == "completed" else range(trace.n_frames - 20, trace.n_frames)
    )
    rule = select_frames(
        trace.uq_eV, trace.distance_A, trace.energy_eV, trace.broken_frame, config.selection, forced
    )
    return rule.n_selected


def _check_is_sound(run_dir: Path) -> None:
    problems = [item.line() for item in check_run(run_dir) if item.problem is not None]
    assert not problems, problems


def test_random_campaign_labels_random_frames_of_its_pull(runs):
    run_dir = runs["random"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["config"]["selection"]["strategy"] == "random"
    row = summary["iterations"][0]
    selection = json.loads((run_dir / "iterations" / "000" / "selection.json").read_text())
    assert selection["strategy"] == "random" and "replica" not in selection
    assert row["n_selected"] == selection["n_selected"] == _uq_count(run_dir, 0) > 0
    assert selection["n_uq_selected"] == row["n_selected"]
    assert row["n_augmented"] == 2 * row["n_selected"]
    # the labeled frames are the drawn frames of the iteration's own NNP pull
    trace = SMDTrace.load(run_dir / "iterations" / "000" / "smd.npz")
    active = _active(run_dir, 0)
    assert [r.frame for r in active] == selection["selected"]
    for r in active:
        assert r.selection_strategy == "random"
        np.testing.assert_array_equal(r.positions, trace.positions_A[r.frame])
        assert r.uq == trace.uq_eV[r.frame]
    db = connect(run_dir / "data.db")
    assert {r.selection_strategy for r in db.select(source="augmented")} == {"random"}
    # the next committee trained on them
    assert (
        summary["iterations"][1]["n_labels"]
        == row["n_labels"] + 3 * row["n_selected"] - row["n_label_failures"]
    )
    _check_is_sound(run_dir)


def test_random_draw_is_reproducible_under_the_campaign_seed(runs, tmp_path):
    """The select step again, on the stored pull: same seed, same frames; another, others."""
    run_dir = runs["random"]
    trace = SMDTrace.load(run_dir / "iterations" / "000" / "smd.npz")
    stored = json.loads((run_dir / "iterations" / "000" / "selection.json").read_text())
    again = _campaign(run_dir).select(0, tmp_path / "same.json", trace)
    assert again.to_dict() == stored
    other = _campaign(run_dir, seed=12345).select(0, tmp_path / "other.json", trace)
    assert other.n_selected == stored["n_selected"]
    assert other.uq_selected == stored["uq_selected"]
    assert other.selected != stored["selected"]


def test_reference_campaign_labels_frames_of_reference_replica_1(runs, tmp_path):
    run_dir = runs["reference"]
    summary = json.loads((run_dir / "summary.json").read_text())
    row = summary["iterations"][0]
    selection = json.loads((run_dir / "iterations" / "000" / "selection.json").read_text())
    assert selection["strategy"] == "reference" and selection["replica"] == 1
    assert row["n_selected"] == selection["n_selected"] == _uq_count(run_dir, 0) > 0
    replica1 = SMDTrace.load(run_dir / "reference" / "replicas" / "smd_001.npz")
    replica0 = SMDTrace.load(run_dir / "reference" / "smd.npz")
    active = _active(run_dir, 0)
    assert [r.frame for r in active] == selection["selected"]
    for r in active:
        assert r.selection_strategy == "reference" and r.reference_replica == 1
        assert "uq" not in r
        # replica 1's geometry and its own reference labels, not replica 0's
        np.testing.assert_array_equal(r.positions, replica1.positions_A[r.frame])
        assert not np.allclose(r.positions, replica0.positions_A[r.frame])
        assert r.energy == replica1.energy_eV[r.frame]
        np.testing.assert_array_equal(r.forces, replica1.forces_eV_per_A[r.frame])
        assert r.spring_distance == replica1.distance_A[r.frame]
    # the noisy copies are labeled by the labeler (GFN2-xTB here), as in every strategy
    copies = list(connect(run_dir / "data.db").select(source="augmented", iteration=0))
    assert len(copies) == 2 * len(active)
    assert {c.reference_replica for c in copies} == {1}
    copy = copies[0].toatoms()
    copy.calc = LabelerSpec("GFN2-xTB").build()
    assert copies[0].energy == pytest.approx(copy.get_potential_energy(), abs=1e-6)
    # the replica's pull still gives the same reference statistics
    reference = json.loads((run_dir / "reference" / "reference.json").read_text())
    assert reference["activation_energy_replicas_eV"][1] == replica1.activation_energy_eV
    _check_is_sound(run_dir)


def test_reference_frames_labeled_before_are_not_drawn_again(runs, tmp_path):
    """Iteration 1 draws among the replica frames iteration 0 left: here exactly n of them."""
    run_dir = runs["reference"]
    stored = json.loads((run_dir / "iterations" / "000" / "selection.json").read_text())
    n, n_frames = (
        stored["n_selected"],
        len(SMDTrace.load(run_dir / "reference" / "smd.npz").time_fs),
    )
    left = list(range(3, 3 + 7 * n, 7))
    earlier = dict(stored, selected=[i for i in range(n_frames) if i not in left])
    copy = tmp_path / "run"
    shutil.copytree(run_dir / "reference", copy / "reference")
    shutil.copy(run_dir / "config.toml", copy / "config.toml")
    (copy / "iterations" / "000").mkdir(parents=True)
    (copy / "iterations" / "000" / "selection.json").write_text(json.dumps(earlier))
    trace = SMDTrace.load(run_dir / "iterations" / "000" / "smd.npz")  # the rule picks n here
    later = _campaign(copy).select(1, tmp_path / "later.json", trace)
    assert later.replica == 1 and later.selected == left


def test_reference_strategy_names_a_replica_saved_without_its_frames(runs, tmp_path):
    """A folder from before replica 1 kept its frames: the message names the file and what to do."""
    reference = tmp_path / "reference"
    shutil.copytree(runs["reference"] / "reference", reference)
    path = reference / "replicas" / "smd_001.npz"
    SMDTrace.load(path).save(path, frames=False)
    with pytest.raises(RarelearnError, match=r"smd_001\.npz.*work curve only.*delete it"):
        labeled_replica_trace(reference)
