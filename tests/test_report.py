"""Tests for rarelearn.report: figures and offline HTML from a synthetic run folder."""

import base64
import json
import re

import numpy as np
import pytest

from rarelearn.errors import RarelearnError
from rarelearn.report import ROW_KEYS, build_report, compare_runs
from rarelearn.units import EV_TO_KCAL_MOL

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_FIGURES = (
    "work.png",
    "ea_error.png",
    "mae_unseen.png",
    "train_val_mae.png",
    "parity.png",
    "uq.png",
)
EA_REF = 5.0


def _trace(n: int, ea: float, rng: np.random.Generator, with_uq: bool) -> dict:
    d = np.linspace(6.35, 9.5, n)
    work = ea * np.clip((d - 6.35) / 2.5, 0, 1) ** 2
    data = {
        "time_fs": np.arange(n) * 0.5,
        "distance_A": d,
        "rest_length_A": d + 0.01,
        "spring_force_eV_per_A": np.gradient(work, d),
        "work_eV": work,
        "energy_eV": -100.0 + work + rng.normal(0, 0.01, n),
        "positions_A": rng.normal(size=(n, 4, 3)),
        "numbers": np.array([6, 1, 1, 1]),
    }
    if with_uq:
        data["uq_eV"] = np.abs(rng.normal(0.02, 0.005, n)) + np.where(d > 8.8, 0.3, 0.0)
    return data


def _row(i: int, ea: float) -> dict:
    err = ea - EA_REF
    return {
        "iteration": i,
        "n_labels": 2000 + 150 * i,
        "ea_nnp_eV": ea,
        "ea_ref_eV": EA_REF,
        "ea_error_eV": err,
        "ea_error_kcal_mol": err * EV_TO_KCAL_MOL,
        "breaking_distance_nnp_A": 8.8 + 0.01 * i,
        "mae_unseen_kcal_mol": 3.0 / (i + 1),
        "train_mae_kcal_mol": 0.5,
        "val_mae_kcal_mol": 0.7,
        "n_candidates": 80,
        "n_selected": 50,
        "n_augmented": 100,
        "n_label_failures": 0,
        "wall_s": 12.5,
    }


def _make_run(root, n_iterations=3, baselines=True, unseen=True, n=200, name="run"):
    rng = np.random.default_rng(0)
    run = root / name
    (run / "reference").mkdir(parents=True)
    np.savez(run / "reference" / "smd.npz", **_trace(n, EA_REF, rng, with_uq=False))
    (run / "reference" / "reference.json").write_text(
        json.dumps({"ea_ref_eV": EA_REF, "breaking_distance_A": 8.9, "replicas": [5.0, 5.1]})
    )
    eas = [4.0, 4.9, 5.01, 4.995, 5.002][:n_iterations]
    rows = []
    for i, ea in enumerate(eas):
        it = run / "iterations" / f"{i:03d}"
        it.mkdir(parents=True)
        np.savez(it / "smd.npz", **_trace(n, ea, rng, with_uq=True))
        (it / "selection.json").write_text(
            json.dumps({"threshold_eV": 0.04, "candidates": [150, 160, 170], "selected": [150]})
        )
        if unseen:
            e_ref = -100 + rng.normal(0, 0.1, 300)
            np.savez(it / "unseen.npz", e_ref_eV=e_ref, e_pred_eV=e_ref + rng.normal(0, 0.01, 300))
        row = _row(i, ea)
        (it / "metrics.json").write_text(json.dumps(row))
        rows.append(row)
    summary = {"ea_ref_eV": EA_REF, "config": {"seed": 1}, "iterations": rows, "baselines": {}}
    if baselines:
        for name_, ea in (("equilibrium_only", 1.0), ("smd_only", 5.5)):
            folder = run / "baselines" / name_
            folder.mkdir(parents=True)
            np.savez(folder / "smd.npz", **_trace(n, ea, rng, with_uq=True))
            metrics = {k: v for k, v in _row(0, ea).items() if k != "iteration"}
            (folder / "metrics.json").write_text(json.dumps(metrics))
            summary["baselines"][name_] = metrics
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 5000, path


def test_full_report(tmp_path):
    run = _make_run(tmp_path)
    out = build_report(run)
    assert out == run / "report.html"
    text = out.read_text()
    for name in ALL_FIGURES:
        _assert_png(run / "figures" / name)
    # offline: no external scripts, stylesheets or images
    assert not re.search(r"<script[^>]+src=", text)
    assert not re.search(r"<link[^>]+stylesheet", text)
    assert "http://" not in text
    assert "https://" not in text
    # every figure is embedded as a decodable PNG data URI
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(uris) == len(ALL_FIGURES)
    assert all(base64.b64decode(u)[:8] == PNG_MAGIC for u in uris)
    assert "Figure skipped" not in text
    # per-iteration table with every contract key, and the baselines
    for key in ROW_KEYS:
        assert f"<th>{key}</th>" in text
    assert "equilibrium_only" in text
    assert "smd_only" in text
    assert text.count("<tr>") >= 3 + 2


def test_figures_have_enough_resolution(tmp_path):
    import matplotlib.image as mpimg

    run = _make_run(tmp_path)
    build_report(run)
    img = mpimg.imread(run / "figures" / "ea_error.png")
    assert img.shape[1] >= 6.0 * 150  # 6 inch wide figure at >= 150 dpi


def test_missing_folder_or_summary_raises(tmp_path):
    with pytest.raises(RarelearnError, match="does not exist"):
        build_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RarelearnError, match=r"summary\.json"):
        build_report(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.json").write_text("{not json")
    with pytest.raises(RarelearnError, match="not valid JSON"):
        build_report(tmp_path / "bad")


def test_no_iterations_yet(tmp_path):
    run = _make_run(tmp_path, n_iterations=0, baselines=False)
    text = build_report(run).read_text()
    _assert_png(run / "figures" / "work.png")  # the reference W(d) alone
    for name in ("ea_error.png", "mae_unseen.png", "train_val_mae.png", "parity.png", "uq.png"):
        assert not (run / "figures" / name).exists()
    assert "No iterations yet" in text
    assert "No baselines" in text
    assert text.count("Figure skipped") == 5


def test_bare_summary_builds(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"iterations": []}))
    text = build_report(run).read_text()
    assert text.count("Figure skipped") == len(ALL_FIGURES)


def test_missing_unseen_skips_parity_and_removes_stale_png(tmp_path):
    run = _make_run(tmp_path, unseen=False)
    (run / "figures").mkdir()
    (run / "figures" / "parity.png").write_bytes(b"stale")
    text = build_report(run).read_text()
    assert not (run / "figures" / "parity.png").exists()
    assert "iteration 2 has no readable unseen.npz" in text
    _assert_png(run / "figures" / "ea_error.png")


def test_iterations_only_in_metrics_json_and_corrupt_npz(tmp_path):
    run = _make_run(tmp_path, baselines=False)
    summary = json.loads((run / "summary.json").read_text())
    summary["iterations"] = summary["iterations"][:1]  # campaign wrote metrics.json only
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "iterations" / "001" / "smd.npz").write_bytes(b"garbage")
    text = build_report(run).read_text()
    assert text.count("<tr><td>") == 3  # three iteration rows recovered
    assert "could not be read" in text
    _assert_png(run / "figures" / "uq.png")


def test_compare_runs(tmp_path):
    runs = [_make_run(tmp_path, name=n) for n in ("random", "inherited")]
    out = compare_runs(runs, tmp_path / "cmp" / "compare.png", labels=["random", "inherited"])
    _assert_png(out)
    with pytest.raises(RarelearnError):
        compare_runs([tmp_path / "missing"], tmp_path / "x.png")
    with pytest.raises(RarelearnError, match="labels"):
        compare_runs(runs, tmp_path / "x.png", labels=["one"])
