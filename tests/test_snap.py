"""Snap tests: a pull continued from one of its frames, the frames they label, their row keys."""

import numpy as np
import pytest

from rarelearn.config import load_config
from rarelearn.dynamics import SMDSettings, SMDTrace, Thermostat, relax_start_state, run_smd
from rarelearn.errors import ConfigError
from rarelearn.labeling import LabelerSpec, make_labeler
from rarelearn.molecules import PulledAtoms, build_alkane
from rarelearn.snap import (
    SnapSettings,
    labeled_frames,
    load_snap_starts,
    replicas_under_test,
    run_snap_test,
    save_snap_starts,
    segment_settings,
    snap_row,
    snap_start,
)

XTB = make_labeler("GFN2-xTB")


@pytest.fixture(scope="module")
def ethane_pull():
    """Ethane pulled apart in NVE until its C-C bond breaks, and the state it started from."""
    settings = SMDSettings(
        pull_speed_A_per_ps=10.0, n_steps=700, relax_steps=100, thermostat=Thermostat("nve", 0.0)
    )
    relax = SMDSettings(relax_steps=100)
    start = relax_start_state(build_alkane(2), XTB.build(True), PulledAtoms.pair(0, 1), relax, 0)
    return start, run_smd(start, XTB.build(True), settings), settings


def test_a_pull_continued_from_its_own_frame_retraces_it(ethane_pull):
    """Positions, velocities by central difference and the loaded spring reproduce the rest of
    the original pull: the same spring force at the first frame, the same trajectory within
    the O(dt^2) error of the velocities, the same bond broken at the same step (bonds judged
    against the unstretched start, not the stretched state the test starts from)."""
    start, trace, settings = ethane_pull
    assert trace.broken_frame is not None
    snap = snap_start(0, trace, start, SnapSettings(replicas=1, window_A=0.3), 0.5)
    # the state 0.3 A of spring distance before the snap, at most
    assert trace.distance_A[snap.frame] <= trace.distance_A[trace.broken_frame] - 0.3
    assert trace.distance_A[snap.frame + 1] > trace.distance_A[trace.broken_frame] - 0.3
    assert snap.model_steps == trace.broken_frame - snap.frame
    continued = run_smd(
        snap.start,
        XTB.build(True),
        settings.with_changes(n_steps=trace.n_frames - snap.frame),
        rest_length_A=snap.rest_length_A,
        bond_reference=snap.bond_reference,
    )
    assert continued.spring_force_eV_per_A[0] == pytest.approx(
        trace.spring_force_eV_per_A[snap.frame], abs=1e-12
    )
    steps = min(60, continued.n_frames)
    np.testing.assert_allclose(
        continued.distance_A[:steps], trace.distance_A[snap.frame : snap.frame + steps], atol=2e-3
    )
    # the work restarts from zero; its increments are the original's
    np.testing.assert_allclose(
        continued.work_eV[:steps],
        trace.work_eV[snap.frame : snap.frame + steps] - trace.work_eV[snap.frame],
        atol=5e-3,
    )
    assert continued.broken_bond == trace.broken_bond
    assert abs(continued.broken_frame - snap.model_steps) <= 3


def test_snap_test_runs_until_the_labelers_snap_plus_the_margin(ethane_pull, tmp_path):
    start, trace, settings = ethane_pull
    snap_settings = SnapSettings(replicas=1, after_steps=15, max_steps=400)
    snap = snap_start(0, trace, start, snap_settings, 0.5)
    save_snap_starts(tmp_path / "snap_starts.traj", [snap])
    (loaded,) = load_snap_starts(tmp_path / "snap_starts.traj")
    np.testing.assert_array_equal(loaded.start.atoms.get_momenta(), snap.start.atoms.get_momenta())
    assert (loaded.frame, loaded.model_steps, loaded.model_bond) == (
        snap.frame,
        snap.model_steps,
        "C0-C1",
    )
    segment = run_snap_test(
        (LabelerSpec("GFN2-xTB"), loaded, segment_settings(settings, snap_settings))
    )
    assert segment.broken_frame is not None
    assert segment.n_frames == segment.broken_frame + 15 + 1
    # the segment's energies and forces are the labeler's own: its labels, for free
    frame = segment.frame(5, labeled=True)
    atoms = frame.copy()
    atoms.calc = XTB.build()
    assert frame.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), abs=1e-5)
    np.testing.assert_allclose(frame.get_forces(), atoms.get_forces(), atol=1e-4)


def _trace(n_frames: int, broken: int | None) -> SMDTrace:
    zeros = np.zeros(n_frames)
    return SMDTrace(
        time_fs=zeros,
        distance_A=zeros,
        rest_length_A=zeros,
        spring_force_eV_per_A=zeros,
        work_eV=zeros,
        energy_eV=zeros,
        positions_A=None,
        numbers=np.array([6, 6]),
        broken_frame=broken,
        broken_bond=None if broken is None else (0, 1),
    )


def test_labeled_frames_every_stride_to_the_snap_plus_margin_then_thinned():
    settings = SnapSettings(replicas=1, stride=10, after_steps=40)
    assert labeled_frames(_trace(500, 100), settings) == list(range(0, 141, 10))
    assert labeled_frames(_trace(60, None), settings) == [0, 10, 20, 30, 40, 50]
    thinned = labeled_frames(_trace(500, 100), SnapSettings(replicas=1, max_frames=4))
    assert thinned == [0, 50, 90, 140]


def test_replicas_under_test_are_evenly_spaced_and_start_with_replica_0():
    assert replicas_under_test(16, SnapSettings(replicas=8)) == [0, 2, 4, 6, 9, 11, 13, 15]
    assert replicas_under_test(4, SnapSettings(replicas=8)) == [0, 1, 2, 3]
    assert replicas_under_test(16, SnapSettings()) == []


def test_snap_row_gives_the_sign_of_the_models_error():
    """Labeler minus model steps to the snap: positive when the model snaps too early."""

    class Start:
        def __init__(self, steps, bond):
            self.model_steps, self.model_bond = steps, bond

    starts = [Start(100, "C2-C3"), Start(120, "C2-C3"), Start(None, None)]
    traces = [_trace(600, 400), _trace(600, 500), _trace(600, 300)]
    row = snap_row(starts, traces, 24)
    assert row["snap_steps_difference_mean"] == pytest.approx(340.0)
    assert row["snap_steps_difference_ci95"] > 0
    assert row["snap_bonds_model"] == {"C2-C3": 2, "none": 1}
    assert row["snap_bonds_labeler"] == {"C0-C1": 3}
    assert row["snap_labels"] == 24


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": -1}, "snap: replicas must be an integer >= 0"),
        ({"window_A": 0.0}, "snap: window_A must be a positive distance"),
        ({"stride": 0}, "snap: stride must be an integer >= 1"),
        ({"replica": 4}, "unknown setting 'snap.replica'"),
    ],
)
def test_bad_snap_settings_are_refused_naming_the_setting(values, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"snap": values})
