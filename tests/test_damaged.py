"""Damaged run-folder files are named with what to do (exit 2, no traceback), and
``rarelearn check`` reads a folder end to end without touching it. The tests damage copies of
the session's finished tiny campaign (`finished_run`, tests/conftest.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from rarelearn.campaign import TRAINING_SOURCES, training_frames
from rarelearn.check import check_run
from rarelearn.cli import main
from rarelearn.store import CampaignStore
from test_campaign import _run_cli


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    return copy


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {
        str(path.relative_to(folder)): (
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_check_reads_an_intact_folder_without_touching_it(finished_run, capsys):
    before = _snapshot(finished_run)
    assert main(["check", str(finished_run)]) == 0
    out = capsys.readouterr().out
    assert _snapshot(finished_run) == before
    assert f"{finished_run} is sound" in out and "BAD" not in out
    for name in ("config.toml", "data.db", "summary.json", "iterations/001/committee"):
        assert f"ok   {name}" in out
    # the label counts it compares are the frames each iteration trained on
    store = CampaignStore(finished_run / "data.db", campaign="tiny")
    for i in range(3):
        n_labels = len(training_frames(store, TRAINING_SOURCES, max_iteration=i - 1))
        assert f"ok   iterations/{i:03d} labels: {n_labels} training labels" in out


def test_truncated_database_is_named_by_run_and_check(finished_run, tmp_path):
    copy = _copy(finished_run, tmp_path)
    database = copy / "data.db"
    os.truncate(database, database.stat().st_size // 2)
    for command in (["run", "--out", str(copy)], ["check", str(copy)]):
        process = _run_cli(command)
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 2, output
        assert "Traceback" not in output
        assert f"{database} is damaged" in output
        assert "holds the labels" in output and "restore it from a copy" in output


def _garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[100:300] = b"x" * 200
    path.write_bytes(bytes(data))


def _truncate_trace(copy: Path) -> None:
    os.truncate(
        copy / "iterations/001/smd.npz", (copy / "iterations/001/smd.npz").stat().st_size // 2
    )
    # a finished iteration is not recomputed: without its row, run reads the trace again
    (copy / "iterations/001/metrics.json").unlink()


DAMAGE: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "metrics.json": (
        "iterations/001/metrics.json",
        lambda copy: (copy / "iterations/001/metrics.json").write_text('{"iteration": 1, "n_la'),
        "delete it (or the folder",
    ),
    "smd.npz": ("iterations/001/smd.npz", _truncate_trace, "delete the folder"),
    "weights.pt": (
        "iterations/001/committee/member_0/weights.pt",
        lambda copy: _garble(copy / "iterations/001/committee/member_0/weights.pt"),
        "delete the folder",
    ),
    "empty data.db": (
        "data.db",
        lambda copy: os.truncate(copy / "data.db", 0),
        "restore it from a copy",
    ),
    "config.toml": (
        "config.toml",
        lambda copy: (copy / "config.toml").write_text("[system\nchain = 3\n"),
        "restore it from a copy",
    ),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_each_damaged_file_is_named_with_what_to_do(finished_run, tmp_path, capsys, kind):
    name, damage, advice = DAMAGE[kind]
    copy = _copy(finished_run, tmp_path)
    damage(copy)
    assert main(["--quiet", "run", "--out", str(copy)]) == 2
    error = capsys.readouterr().err
    assert str(copy / name) in error and advice in error
    assert error.count("rarelearn: error:") == 1
    assert main(["check", str(copy)]) == 2
    out = capsys.readouterr().out
    bad = [line for line in out.splitlines() if line.startswith("BAD")]
    assert len(bad) == 1 and str(copy / name) in bad[0] and advice in bad[0], out
    assert "1 of" in out.splitlines()[-1]


def test_following_the_advice_gives_a_sound_folder_again(finished_run, tmp_path, capsys):
    copy = _copy(finished_run, tmp_path)
    _garble(copy / "iterations/001/unseen.npz")
    assert main(["check", str(copy)]) == 2
    assert f"delete the folder {copy / 'iterations/001'} and rerun" in capsys.readouterr().out
    shutil.rmtree(copy / "iterations/001")
    assert main(["--quiet", "run", "--out", str(copy)]) == 0
    assert main(["check", str(copy)]) == 0
    assert f"{copy} is sound" in capsys.readouterr().out
    rows = [
        json.loads((run / "summary.json").read_text())["iterations"] for run in (copy, finished_run)
    ]
    for row in (*rows[0], *rows[1]):
        row.pop("wall_s")
    assert rows[0] == rows[1]


@pytest.mark.slow  # a tiny campaign beside repeated checks; the damage tests cover check
def test_check_while_the_campaign_runs_finds_nothing_damaged(finished_run, tmp_path):
    copy = _copy(finished_run, tmp_path)
    for name in ("iterations/001", "iterations/002", "baselines"):
        shutil.rmtree(copy / name)
    (copy / "summary.json").unlink()
    process = _run_cli(["run", "--out", str(copy)])  # redoes iterations 1 and 2
    checked = 0
    try:
        while process.poll() is None:
            problems = [item.problem for item in check_run(copy) if item.problem is not None]
            assert not problems, problems
            checked += 1
    finally:
        output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert checked > 1, checked
    assert all(item.problem is None for item in check_run(copy))


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


FLIPPED = {
    "npz": "iterations/001/smd.npz",
    "traj": "reference/start_states.traj",
    "json": "iterations/001/selection.json",
    "data.db": "data.db",
    "weights.pt": "iterations/001/committee/member_0/weights.pt",
}


@pytest.mark.parametrize("kind", FLIPPED)
def test_one_flipped_byte_is_named_by_check_and_refused_by_a_resume(
    finished_run, tmp_path, capsys, kind
):
    """A flipped bit may leave a file that still loads; its checksum (manifest.json) differs."""
    name = FLIPPED[kind]
    copy = _copy(finished_run, tmp_path)
    _flip_middle_byte(copy / name)
    assert main(["check", str(copy)]) == 2
    bad = [line for line in capsys.readouterr().out.splitlines() if line.startswith("BAD")]
    assert len(bad) == 1 and str(copy / name) in bad[0], bad
    before = _snapshot(copy)
    assert main(["--quiet", "run", "--out", str(copy)]) == 2
    error = capsys.readouterr().err
    # named by its checksum, or by the store when the flip breaks the database's structure
    assert f"{copy / name} is damaged or unreadable (" in error
    assert "It is derived" in error or "holds the labels" in error
    before.pop(".rarelearn.lock")
    after = {k: v for k, v in _snapshot(copy).items() if k != ".rarelearn.lock"}
    assert after == before  # refused before anything was written


def test_config_edits_are_reported_and_old_folders_gain_checksums(finished_run, tmp_path, capsys):
    copy = _copy(finished_run, tmp_path)
    with open(copy / "config.toml", "a") as handle:
        handle.write("# a note of the user's\n")
    assert main(["check", str(copy)]) == 0
    assert "ok   config.toml: edited since it was written" in capsys.readouterr().out
    (copy / "manifest.json").unlink()  # a folder from before checksums
    assert main(["check", str(copy)]) == 0
    assert "ok   manifest.json: no checksums recorded" in capsys.readouterr().out
    assert main(["--quiet", "run", "--out", str(copy)]) == 0  # resumes; records what it writes
    assert main(["check", str(copy)]) == 0
    assert "recorded files as written" in capsys.readouterr().out


def test_an_unreadable_manifest_is_named(tmp_path):
    (tmp_path / "manifest.json").write_text('{"version": 1, "fil')
    items = [item for item in check_run(tmp_path) if item.name == "manifest.json"]
    assert len(items) == 1 and "manifest.json is damaged" in items[0].problem
    assert "Delete it" in items[0].problem
