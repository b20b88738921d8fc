"""`rarelearn relabel`: a campaign's frames labeled with another method, resumable, checked."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT

from rarelearn.campaign import load_committee, run_campaign
from rarelearn.cli import main
from rarelearn.config import load_config, load_resolved
from rarelearn.lock import CampaignLock
from rarelearn.relabel import energy_differences, parse_options
from rarelearn.store import CampaignStore

#: Propane, two reference replicas of a short fast pull, two iterations (one labeling round).
TINY = """
name = "tiny"
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
n_steps = 300
relax_steps = 30
pull_speed_A_per_ps = 20.0
[committee]
n_members = 2
[committee.ani]
epochs = 3
layers = {H = [16, 8], C = [16, 8]}
[selection]
n_reference_steps = 60
max_selected = 4
post_break_cap = 2
[executor]
kind = "inprocess"
chunk_size = 2
"""

EMT_METHOD = "ase.calculators.emt:EMT"
COUNTING_METHOD = "test_relabel:CountingEMT"


class CountingEMT(EMT):
    """EMT that appends one line per calculation (a digest of the positions) to the file
    $RARELEARN_TEST_RELABEL_LOG. Counting calls over every run in that file, the call
    numbered $RARELEARN_TEST_RELABEL_STOP raises KeyboardInterrupt (as Ctrl-C would) and those
    listed in $RARELEARN_TEST_RELABEL_FAIL raise RuntimeError (a crashed reference program)."""

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        log = Path(os.environ["RARELEARN_TEST_RELABEL_LOG"])
        call = len(log.read_text().splitlines()) if log.exists() else 0
        key = hashlib.sha1((atoms or self.atoms).positions.tobytes()).hexdigest()[:16]
        fail = {int(c) for c in os.environ.get("RARELEARN_TEST_RELABEL_FAIL", "").split(",") if c}
        outcome = "ok"
        if call == int(os.environ.get("RARELEARN_TEST_RELABEL_STOP", "-1")):
            outcome = "stop"
        elif call in fail:
            outcome = "fail"
        with log.open("a") as handle:
            handle.write(f"{outcome} {key}\n")
        if outcome == "stop":
            raise KeyboardInterrupt
        if outcome == "fail":
            raise RuntimeError("reference program crashed")
        super().calculate(atoms, properties, system_changes)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """A finished tiny campaign (GFN2-xTB) to relabel."""
    folder = tmp_path_factory.mktemp("relabel")
    (folder / "tiny.toml").write_text(TINY)
    config = load_config(folder / "tiny.toml", overrides={"out": str(folder / "run")})
    run_campaign(config, quiet=True)
    return folder / "run"


def _frames_by_uid(folder: Path, campaign_name: str = "tiny") -> dict[int, Atoms]:
    frames = CampaignStore(folder / "data.db", campaign=campaign_name).labeled()
    return {int(f.info["uid"]): f for f in frames}


def _relabel(run: Path, out: Path, method: str, *extra: str) -> int:
    return main(["--quiet", "relabel", str(run), "--labeler", method, "--out", str(out), *extra])


def test_relabel_labels_every_frame_with_the_new_method_and_trains_on_them(
    campaign, tmp_path, capsys
):
    out = tmp_path / "emt"
    assert _relabel(campaign, out, EMT_METHOD) == 0
    original, relabeled = _frames_by_uid(campaign), _frames_by_uid(out)
    assert set(relabeled) == set(original)  # every good label of RUN, nothing else
    for uid, atoms in relabeled.items():
        source = original[uid]
        np.testing.assert_array_equal(atoms.positions, source.positions)
        for key in ("source", "iteration", "parent", "spring_distance"):
            assert atoms.info.get(key) == source.info.get(key), key
        assert atoms.info["labeler"] == EMT_METHOD
        assert atoms.info["original_energy"] == source.get_potential_energy()
        # independent check: ASE's EMT called directly on RUN's geometry
        direct = Atoms(source.numbers, source.positions)
        direct.calc = EMT()
        assert atoms.get_potential_energy() == pytest.approx(direct.get_potential_energy(), 1e-12)
        np.testing.assert_allclose(atoms.get_forces(), direct.get_forces(), atol=1e-12)

    config = load_resolved(out)
    assert config.labeler.method == EMT_METHOD and config.store.url == ""
    assert config.committee == load_resolved(campaign).committee
    committee = load_committee(out / "committee")
    training = {u for u, a in relabeled.items() if a.info["source"] != "reference_smd"}
    split = committee.splits[0]
    assert set(split["train"]) | set(split["val"]) == training

    summary = json.loads((out / "relabel.json").read_text())
    assert summary["levels"] == {"original": "GFN2-xTB", "new": EMT_METHOD}
    assert summary["frames"]["planned"] == summary["frames"]["labeled"] == len(original)
    final = json.loads((campaign / "summary.json").read_text())["iterations"][-1]
    metrics = summary["metrics"]
    for key in ("train_mae_kcal_mol", "val_mae_kcal_mol", "mae_unseen_kcal_mol"):
        assert metrics[key]["original"] == pytest.approx(final[key])
        assert metrics[key]["new"] > 0
    unseen = sum(a.info["source"] == "reference_smd" for a in original.values())
    assert metrics["n_unseen_frames"] == {"original": unseen, "new": unseen}
    # the new committee pulled from every reference start state; no reference at its level
    assert summary["ea"]["nnp_new"]["n_replicas"] == 2
    assert summary["ea"]["reference_new"] is None
    differences = np.load(out / "differences.npz")
    assert len(differences["uid"]) == len(original)
    assert summary["energy_difference"]["relative_to_mean"]["n"] == len(original)

    # report and check read campaign folders: a relabel folder is named for what it is
    for command in ("report", "check"):
        assert main([command, str(out)]) == 2
        assert "is a relabel folder" in capsys.readouterr().err
    # one writer per folder: a relabel into a folder another writer holds is refused untouched
    written = (out / "relabel.json").read_bytes()
    with CampaignLock(out):
        assert _relabel(campaign, out, EMT_METHOD) == 2
    assert "one writer at a time" in capsys.readouterr().err
    assert (out / "relabel.json").read_bytes() == written
    # a resume refuses a file that changed after it was written (manifest.json)
    data = bytearray((out / "differences.npz").read_bytes())
    data[len(data) // 2] ^= 0x01
    (out / "differences.npz").write_bytes(bytes(data))
    assert _relabel(campaign, out, EMT_METHOD) == 2
    assert f"{out / 'differences.npz'} is damaged" in capsys.readouterr().err


def test_an_interrupted_relabel_resumes_without_labeling_a_frame_twice(
    campaign, tmp_path, monkeypatch
):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("RARELEARN_TEST_RELABEL_LOG", str(log))
    # chunks of 2 frames are stored as they finish: the 5th call opens the third chunk
    monkeypatch.setenv("RARELEARN_TEST_RELABEL_STOP", "4")
    out = tmp_path / "resumed"
    args = ("--limit", "3", "--no-pulls", "--epochs", "2")
    assert _relabel(campaign, out, COUNTING_METHOD, *args) == 130
    store = CampaignStore(out / "data.db", campaign="tiny")
    assert store.count() == 4
    assert not (out / "committee").exists() and not (out / "relabel.json").exists()

    assert _relabel(campaign, out, COUNTING_METHOD, *args) == 0
    plan = json.loads((out / "relabel_plan.json").read_text())
    rows = list(store.db.select(campaign="tiny"))
    assert sorted(row.task for row in rows) == list(range(len(plan["uids"])))
    assert sorted(row.uid for row in rows) == sorted(plan["uids"])
    computed = [line.split()[1] for line in log.read_text().splitlines() if line[:2] == "ok"]
    assert len(computed) == len(set(computed)) == len(plan["uids"])
    # at most three of each source
    sources = [a.info["source"] for a in _frames_by_uid(campaign).values()]
    by_source = json.loads((out / "relabel.json").read_text())["frames"]["by_source"]
    assert {s: c["planned"] for s, c in by_source.items()} == {
        s: min(3, sources.count(s)) for s in set(sources)
    }

    calls = len(log.read_text().splitlines())
    assert _relabel(campaign, out, COUNTING_METHOD, *args) == 0  # all done: nothing recomputed
    assert len(log.read_text().splitlines()) == calls


def test_failed_labels_are_recorded_and_not_retried(campaign, tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("RARELEARN_TEST_RELABEL_LOG", str(log))
    monkeypatch.setenv("RARELEARN_TEST_RELABEL_FAIL", "1,6")
    out = tmp_path / "failing"
    args = ("--limit", "3", "--no-pulls", "--epochs", "2")
    assert _relabel(campaign, out, COUNTING_METHOD, *args) == 0
    summary = json.loads((out / "relabel.json").read_text())
    assert summary["frames"]["failed"] == 2
    assert summary["frames"]["labeled"] == summary["frames"]["planned"] - 2
    assert [f["error"] for f in summary["failures"]] == [
        "RuntimeError: reference program crashed"
    ] * 2
    failed = {f["uid"] for f in summary["failures"]}
    assert failed.isdisjoint(_frames_by_uid(out))  # no label stored for a failed frame
    calls = len(log.read_text().splitlines())
    assert _relabel(campaign, out, COUNTING_METHOD, *args) == 0
    assert len(log.read_text().splitlines()) == calls


@pytest.mark.parametrize(
    ("method", "extra", "message"),
    [
        ("B3LYP-magic", (), "unknown method"),
        ("pyscf", ("--option", "grid=3"), "unknown pyscf option"),
        ("GFN2-xTB", ("--option", "accuracy"), "expects key=value"),
        ("GFN2-xTB", ("--option", "foo=1"), "unknown xTB option"),
        ("nosuchmodule:Calc", (), "cannot import"),
    ],
)
def test_a_bad_labeler_exits_2_before_anything_is_written(
    campaign, tmp_path, capsys, method, extra, message
):
    out = tmp_path / "out"
    assert _relabel(campaign, out, method, *extra) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_bad_folders_are_refused(campaign, tmp_path, capsys):
    assert _relabel(tmp_path / "missing", tmp_path / "a", EMT_METHOD) == 2
    assert "not a campaign run folder" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert _relabel(campaign, campaign, EMT_METHOD) == 2
    assert "not the run folder" in capsys.readouterr().err
    assert _relabel(campaign, campaign / "reference", EMT_METHOD) == 2
    assert "not a relabel folder" in capsys.readouterr().err

    out = tmp_path / "trial"
    assert _relabel(campaign, out, EMT_METHOD, "--limit", "1", "--no-pulls") == 0
    before = sorted(p.name for p in out.iterdir())
    assert _relabel(campaign, out, EMT_METHOD, "--limit", "2") == 2  # another request
    assert "another limit" in capsys.readouterr().err
    assert _relabel(out, tmp_path / "b", EMT_METHOD) == 2  # a relabel is not a campaign
    assert "is a relabel folder" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
    assert not (tmp_path / "b").exists()


def test_energy_differences_remove_each_methods_zero_per_molecule():
    # two molecules; the new method = old + a per-molecule constant + a known shape change
    original = np.array([-10.0, -9.5, -9.0, -20.0, -19.0])
    shape = np.array([0.0, 0.1, -0.1, 0.0, 0.3])
    new = original + np.array([-500.0] * 3 + [-900.0] * 2) + shape
    to_mean, to_lowest = energy_differences(original, new, ["C3H8"] * 3 + ["C2H6"] * 2)
    np.testing.assert_allclose(to_mean, [0.0, 0.1, -0.1, -0.15, 0.15], atol=1e-12)
    np.testing.assert_allclose(to_lowest, [0.0, 0.1, -0.1, 0.0, 0.3], atol=1e-12)


def test_options_are_read_as_toml_values_or_text():
    assert parse_options(["xc=PBE", "basis=6-31G*", "density_fit=true", "conv_tol=1e-8"]) == {
        "xc": "PBE",
        "basis": "6-31G*",
        "density_fit": True,
        "conv_tol": 1e-8,
    }
    assert parse_options(["max_cycle=200", 'xc="B3LYP"']) == {"max_cycle": 200, "xc": "B3LYP"}
