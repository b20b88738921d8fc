"""Tests for rarelearn.report: figures and offline HTML from a synthetic run folder."""

import base64
import json
import re

import numpy as np
import pytest

from rarelearn.errors import RarelearnError
from rarelearn.report import build_report, compare_runs
from rarelearn.runfolder import ROW_KEYS
from rarelearn.units import EV_TO_KCAL_MOL

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_FIGURES = (
    "work.png",
    "ea_error.png",
    "mae_unseen.png",
    "unseen_drift.png",
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


def _make_run(
    root,
    n_iterations=3,
    baselines=True,
    unseen=True,
    n=200,
    name="run",
    drift_slopes=None,
    broken_frame=None,
):
    """A run folder in the pre-replica format.

    ``unseen.npz`` holds one energy per reference frame; with ``drift_slopes`` (eV per frame,
    one per iteration) iteration i predicts e_ref + 0.3 + slope_i * frame exactly, otherwise
    e_ref plus noise. ``broken_frame`` is written into the reference smd.npz.
    """
    rng = np.random.default_rng(0)
    run = root / name
    (run / "reference").mkdir(parents=True)
    reference = _trace(n, EA_REF, rng, with_uq=False)
    if broken_frame is not None:
        reference["broken_frame"] = np.array(broken_frame)
    np.savez(run / "reference" / "smd.npz", **reference)
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
            e_ref = reference["energy_eV"]
            if drift_slopes is None:
                e_pred = e_ref + rng.normal(0, 0.01, n)
            else:
                e_pred = e_ref + 0.3 + drift_slopes[i] * np.arange(n)
            np.savez(it / "unseen.npz", e_ref_eV=e_ref, e_pred_eV=e_pred)
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
    for name in ALL_FIGURES[1:]:
        assert not (run / "figures" / name).exists()
    assert "No iterations yet" in text
    assert "No baselines" in text
    assert text.count("Figure skipped") == len(ALL_FIGURES) - 1


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


def test_energy_drift_hand_computed():
    from rarelearn.report.campaign_figures import _energy_drift

    # error 1, 2, 4, 8; minus the mean of the first two (1.5); running mean over two frames
    drift = _energy_drift(np.zeros(4), np.array([1.0, 2.0, 4.0, 8.0]), window=2, start=2)
    np.testing.assert_allclose(drift, [0.0, 1.5, 4.5])
    # a linear drift s * i: minus s * 99.5 (first 200 frames), window 100 -> s * (k - 50)
    rng = np.random.default_rng(3)
    e_ref = -100 + rng.normal(0, 0.1, 400)
    drift = _energy_drift(e_ref, e_ref + 0.7 + 2e-3 * np.arange(400))
    np.testing.assert_allclose(drift, 2e-3 * (np.arange(301) - 50), atol=1e-9)


def test_unseen_drift_figure(tmp_path, saved_figures):
    n, slopes, broken = 1000, [1e-3, 6e-4, 4e-4], 800
    run = _make_run(tmp_path, n=n, drift_slopes=slopes, broken_frame=broken)
    text = build_report(run).read_text()
    _assert_png(run / "figures" / "unseen_drift.png")
    assert text.index('id="mae_unseen.png"') < text.index('id="unseen_drift.png"')
    ax = saved_figures["unseen_drift.png"].axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    d = np.linspace(6.35, 9.5, n)
    x = d[:-99] + 49.5 * (d[1] - d[0])  # running mean of a linear distance over 100 frames
    for i, slope in enumerate(slopes):
        line = lines[f"iteration {i}"]
        np.testing.assert_allclose(line.get_xdata(), x, atol=1e-9)
        np.testing.assert_allclose(line.get_ydata(), slope * (np.arange(n - 99) - 50), atol=1e-9)
    assert lines["iteration 2"].get_linewidth() > lines["iteration 1"].get_linewidth()
    np.testing.assert_allclose(lines["reference break"].get_xdata(), [d[broken]] * 2)
    zero = [line for line in ax.lines if list(line.get_ydata()) == [0, 0]]
    assert zero, "no zero line"
    # window of frames 700..799, the last before the break: 4e-4 * (700 - 50) = +0.260 eV
    assert "the final iteration has drifted by +0.260 eV" in text
    assert "overestimates the strain energy" in text
    assert "running means over 100 frames" in text


def test_unseen_drift_skips_mismatched_lengths(tmp_path):
    run = _make_run(tmp_path, n=300)
    np.savez(
        run / "iterations" / "001" / "unseen.npz", e_ref_eV=np.zeros(250), e_pred_eV=np.zeros(250)
    )
    text = build_report(run).read_text()
    _assert_png(run / "figures" / "unseen_drift.png")  # iterations 0 and 2 still plotted
    assert "iteration 1: unseen.npz has 250/250 energies but the reference pull has 300" in text
    for folder in ("000", "002"):
        (run / "iterations" / folder / "unseen.npz").unlink()
    text = build_report(run).read_text()
    assert not (run / "figures" / "unseen_drift.png").exists()  # stale PNG removed
    assert "no iteration has a readable unseen.npz matching the 300 frames" in text


def test_compare_runs(tmp_path):
    runs = [_make_run(tmp_path, name=n) for n in ("random", "inherited")]
    out = compare_runs(runs, tmp_path / "cmp" / "compare.png", labels=["random", "inherited"])
    _assert_png(out)
    with pytest.raises(RarelearnError):
        compare_runs([tmp_path / "missing"], tmp_path / "x.png")
    with pytest.raises(RarelearnError, match="labels"):
        compare_runs(runs, tmp_path / "x.png", labels=["one"])


# --------------------------------------------------------------------------------------------
# Replica statistics (summary keys of the replica contract, replicas.npz)
# --------------------------------------------------------------------------------------------

REF_REPLICAS = [5.00, 5.12, 4.91, 5.05]
SIGNED_KCAL = [-130.0, -12.0, 1.8, -0.4]
CI95_KCAL = [6.0, 2.5, 1.6, 1.4]
SINGLE_KCAL = [128.0, 10.5, 2.6, 0.9]
BROKE = [[True, False, True, True], [True] * 4, [True] * 4, [True] * 4]


def _replicas_npz(path, eas, rng, n=200, stop_early=None):
    """replicas.npz with one work curve per Ea; replica ``stop_early`` is NaN-padded."""
    traces = [_trace(n, ea, rng, with_uq=False) for ea in eas]
    arrays = {
        key: np.stack([t[key] for t in traces])
        for key in ("distance_A", "work_eV", "rest_length_A")
    }
    arrays["distance_A"] += rng.normal(0, 0.02, arrays["distance_A"].shape)  # thermal noise
    if stop_early is not None:
        for key in arrays:
            arrays[key][stop_early, n // 2 :] = np.nan
    np.savez(path, activation_energy_eV=np.array(eas), **arrays)
    return arrays


def _make_replica_run(root, name="replicas", tolerance=1.0, converged=None, resolvable=False):
    """A run folder in the replica format: four iterations, four replicas per side."""
    run = _make_run(root, n_iterations=4, name=name)
    rng = np.random.default_rng(1)
    ref_mean = float(np.mean(REF_REPLICAS))
    _replicas_npz(run / "reference" / "replicas.npz", REF_REPLICAS, rng)
    summary = json.loads((run / "summary.json").read_text())
    rows = []
    for i, row in enumerate(summary["iterations"]):
        signed = SIGNED_KCAL[i] / EV_TO_KCAL_MOL
        ea = ref_mean + signed
        eas = [ea + d for d in (-0.15, 0.1, 0.0, 0.05)]
        _replicas_npz(
            run / "iterations" / f"{i:03d}" / "replicas.npz",
            eas,
            rng,
            stop_early=1 if i == 0 else None,
        )
        row.update(
            ea_nnp_eV=ea,
            ea_ref_eV=ref_mean,
            ea_error_eV=abs(signed),
            ea_error_kcal_mol=abs(SIGNED_KCAL[i]),
            ea_error_signed_eV=signed,
            ea_error_ci95_eV=CI95_KCAL[i] / EV_TO_KCAL_MOL,
            ea_error_paired_eV=signed,
            ea_error_paired_ci95_eV=0.5 * CI95_KCAL[i] / EV_TO_KCAL_MOL,
            ea_error_single_eV=SINGLE_KCAL[i] / EV_TO_KCAL_MOL,
            ea_nnp_mean_eV=ea,
            ea_nnp_sem_eV=0.01,
            ea_nnp_replicas_eV=eas,
            n_replicas=4,
            ea_members_eV=[ea, ea + 0.1],
            broke=BROKE[i],
            stopped_reason=["completed" if b else "no bond broke" for b in BROKE[i]],
            breaking_distance_nnp_A=8.8,
            breaking_distance_nnp_replicas_A=[8.8 if b else None for b in BROKE[i]],
        )
        (run / "iterations" / f"{i:03d}" / "metrics.json").write_text(json.dumps(row))
        rows.append(row)
    summary.update(
        iterations=rows,
        ea_ref_eV=ref_mean,
        ea_ref_sem_eV=float(np.std(REF_REPLICAS, ddof=1) / 2),
        ea_ref_replicas_eV=REF_REPLICAS,
        stop_reason="converged" if converged is not None else "max_iterations",
        converged_iteration=converged,
        stop={"tolerance_kcal_mol": tolerance, "patience": 2},
        resolution={"ci95_kcal_mol": 1.4, "replicas_needed": 8, "resolvable": resolvable},
    )
    (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture
def saved_figures(monkeypatch):
    """The matplotlib Figure behind every PNG the report writes, by file name."""
    import rarelearn.report.campaign_figures as report

    figures = {}
    original = report._save

    def capture(fig, path):
        figures[path.name] = fig
        return original(fig, path)

    monkeypatch.setattr(report, "_save", capture)
    return figures


def _headline(text):
    match = re.search(r'<p class="headline">(.*?)</p>', text)
    assert match, "no headline sentence"
    return match.group(1)


def test_replica_report_headline_and_overview(tmp_path):
    run = _make_replica_run(tmp_path)
    text = build_report(run).read_text()
    assert _headline(text) == (
        "Final Ea error -0.40 ± 1.40 kcal/mol (95 %), not converged (max_iterations), "
        "after 2450 labels. The 95 % interval (±1.40 kcal/mol) is wider than the ±1 kcal/mol "
        "tolerance: about 8 replicas per side would resolve it."
    )
    # the headline comes before everything else in the body
    assert text.index('class="headline"') < text.index("<h2>Overview</h2>")
    ref_mean = np.mean(REF_REPLICAS)
    ref_sem = np.std(REF_REPLICAS, ddof=1) / 2
    assert f"{ref_mean:.4f} ± {ref_sem:.4f} eV" in text
    assert "mean ± sem of 4 replicas" in text
    assert "-0.400 ± 1.400 kcal/mol (95 %)" in text
    assert "stop reason" in text and "max_iterations" in text
    assert "<th>pulls_broke</th>" in text
    assert "<td>3/4</td>" in text  # iteration 0: one NNP pull did not break
    for name in ALL_FIGURES:
        _assert_png(run / "figures" / name)
    assert "Figure skipped" not in text


def test_replica_report_converged_and_resolvable(tmp_path):
    run = _make_replica_run(tmp_path, tolerance=2.0, converged=2, resolvable=True)
    text = build_report(run).read_text()
    assert _headline(text) == (
        "Final Ea error -0.40 ± 1.40 kcal/mol (95 %), converged at iteration 2, after 2450 labels."
    )
    assert "wider than" not in text


def test_ea_error_figure_replicas(tmp_path, saved_figures):
    from matplotlib.container import ErrorbarContainer

    run = _make_replica_run(tmp_path)
    text = build_report(run).read_text()
    _assert_png(run / "figures" / "ea_error.png")
    fig = saved_figures["ea_error.png"]
    ax = fig.axes[0]
    assert ax.get_yscale() == "symlog"
    assert ax.yaxis.get_transform().linthresh == pytest.approx(1.0)
    lo, hi = ax.get_ylim()
    assert lo < -130 and hi > 2.6  # the -130 kcal/mol start and the +-2 end are both on scale
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "lower bound: not every pull broke" in labels
    assert "single pull |error| (replica 0)" in labels
    assert "tolerance ±1 kcal/mol" in labels
    assert "NNP mean − reference mean (95 % CI)" in labels
    # one interval bar per iteration, half-width = ci95 in kcal/mol
    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    segments = bars.lines[2][0].get_segments()
    half = [0.5 * (s[1, 1] - s[0, 1]) for s in segments]
    np.testing.assert_allclose(half, CI95_KCAL, rtol=1e-9)
    # the open triangle sits at iteration 0, the filled circles at the others
    triangle = next(line for line in ax.lines if line.get_label().startswith("lower bound"))
    np.testing.assert_allclose(triangle.get_xdata(), [0])
    np.testing.assert_allclose(triangle.get_ydata(), [-130.0])
    assert triangle.get_marker() == "^" and triangle.get_markerfacecolor() == "white"
    faded = next(line for line in ax.lines if line.get_label().startswith("single pull"))
    np.testing.assert_allclose(faded.get_ydata(), SINGLE_KCAL)
    assert faded.get_alpha() < 1 and faded.get_markerfacecolor() == "none"
    # the tolerance band spans +-tolerance
    band = next(p for p in ax.patches if p.get_label().startswith("tolerance"))
    assert band.get_y() == pytest.approx(-1.0) and band.get_height() == pytest.approx(2.0)
    assert "Open triangles (1 iteration(s))" in text
    assert "95 % (Welch) confidence interval" in text


def test_ea_error_tolerance_from_summary(tmp_path, saved_figures):
    run = _make_replica_run(tmp_path, tolerance=2.0, converged=2)
    build_report(run)
    ax = saved_figures["ea_error.png"].axes[0]
    assert ax.yaxis.get_transform().linthresh == pytest.approx(2.0)
    ticks = list(ax.get_yticks())
    assert {-100.0, -10.0, -2.0, 0.0, 2.0, 10.0}.issubset(ticks)
    assert 1.0 not in ticks  # no decade ticks crowding the linear region
    assert any(line.get_label() == "converged" for line in ax.lines)


def test_work_figure_replica_bands(tmp_path, saved_figures):
    from matplotlib.collections import PolyCollection

    run = _make_replica_run(tmp_path)
    text = build_report(run).read_text()
    _assert_png(run / "figures" / "work.png")
    ax = saved_figures["work.png"].axes[0]
    bands = {c.get_label(): c for c in ax.collections if isinstance(c, PolyCollection)}
    assert set(bands) == {"reference, 4 replicas", "iteration 3 NNP, 4 replicas"}
    with np.load(run / "reference" / "replicas.npz") as data:
        work = data["work_eV"]
    vertices = bands["reference, 4 replicas"].get_paths()[0].vertices
    assert vertices[:, 1].max() == pytest.approx(work.max())
    assert vertices[:, 1].min() == pytest.approx(work.min())
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "reference (replica 0)" in labels
    assert "min-max envelope of W over the 4 reference replicas (grey)" in text
    assert "4 NNP replicas of iteration 3" in text


def test_replica_band_statistics():
    from rarelearn.report.run_folder import replica_band as _replica_band

    nan = np.nan
    data = {
        "distance_A": np.array([[1.0, 2.0, 3.0, 4.0], [1.2, 2.2, nan, nan], [0.8, 1.8, 2.8, nan]]),
        "work_eV": np.array([[0.0, 1.0, 2.0, 3.0], [0.0, 3.0, nan, nan], [0.0, 2.0, 5.0, nan]]),
    }
    band = _replica_band(data)
    np.testing.assert_allclose(band["distance_A"], [1.0, 2.0, 2.9])  # step 3: one replica left
    np.testing.assert_allclose(band["mean_eV"], [0.0, 2.0, 3.5])
    np.testing.assert_allclose(band["min_eV"], [0.0, 1.0, 2.0])
    np.testing.assert_allclose(band["max_eV"], [0.0, 3.0, 5.0])
    np.testing.assert_array_equal(band["count"], [3, 3, 2])
    assert _replica_band({k: v[:1] for k, v in data.items()}) is None  # one replica: no band


def test_old_run_folder_without_replica_keys(tmp_path, saved_figures):
    from matplotlib.collections import PolyCollection
    from matplotlib.container import ErrorbarContainer

    run = _make_run(tmp_path)  # pre-replica format: no ci95, no replicas.npz, no stop block
    text = build_report(run).read_text()
    for name in ALL_FIGURES:
        _assert_png(run / "figures" / name)
    ax = saved_figures["ea_error.png"].axes[0]
    assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    points = next(line for line in ax.lines if line.get_label() == "NNP − reference")
    expected = (np.array([4.0, 4.9, 5.01]) - EA_REF) * EV_TO_KCAL_MOL  # sign from ea_nnp_eV
    np.testing.assert_allclose(points.get_ydata(), expected)
    assert ax.yaxis.get_transform().linthresh == pytest.approx(1.0)  # default tolerance
    assert "points without bars" in text
    work = saved_figures["work.png"].axes[0]
    assert not [c for c in work.collections if isinstance(c, PolyCollection)]
    assert "reference" in [t.get_text() for t in work.get_legend().get_texts()]
    assert _headline(text) == (
        "Final Ea error +0.23 kcal/mol (no confidence interval), "
        "not converged (no stop reason recorded), after 2300 labels."
    )
    assert "5.0000 eV (115.30 kcal/mol)" in text
    assert "mean ± sem" not in text  # an old reference Ea is not a replica mean


def test_single_replica_rows_have_no_interval(tmp_path, saved_figures):
    from matplotlib.container import ErrorbarContainer

    run = _make_replica_run(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    for row in summary["iterations"]:
        row.update(ea_error_ci95_eV=None, ea_error_paired_ci95_eV=None, n_replicas=1)
    summary.update(ea_ref_sem_eV=None, ea_ref_replicas_eV=[5.0], ea_ref_eV=5.0, resolution=None)
    (run / "summary.json").write_text(json.dumps(summary))
    text = build_report(run).read_text()
    assert _headline(text).startswith("Final Ea error -0.40 kcal/mol (no confidence interval), ")
    assert "mean of 1 replica" in text
    assert "There is no 95 % interval (one replica per side)" not in text  # resolution: None
    ax = saved_figures["ea_error.png"].axes[0]
    assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert "points without bars" in text


@pytest.mark.parametrize(
    ("reason", "resolution", "expected"),
    [
        (
            "running",
            {"ci95_kcal_mol": None, "replicas_needed": None, "resolvable": False},
            "Final Ea error -0.40 kcal/mol (no confidence interval), not converged yet "
            "(campaign still running), after 2450 labels. There is no 95 % interval (one "
            "replica per side), so the ±1 kcal/mol tolerance cannot be resolved.",
        ),
        (
            "max_iterations",
            {"ci95_kcal_mol": 3.0, "replicas_needed": 36, "resolvable": False},
            "Final Ea error -0.40 kcal/mol (no confidence interval), not converged "
            "(max_iterations), after 2450 labels. The 95 % interval (±3.00 kcal/mol) is wider "
            "than the ±1 kcal/mol tolerance: about 36 replicas per side would resolve it.",
        ),
    ],
)
def test_headline_stop_reasons(tmp_path, reason, resolution, expected):
    run = _make_replica_run(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    summary["iterations"][-1]["ea_error_ci95_eV"] = None
    summary.update(stop_reason=reason, resolution=resolution)
    (run / "summary.json").write_text(json.dumps(summary))
    assert _headline(build_report(run).read_text()) == expected
