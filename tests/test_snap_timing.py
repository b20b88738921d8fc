"""scripts/snap_split.py --timing on pulls built by hand: a known force plateau and snap times."""

import numpy as np
import pytest

from rarelearn.dynamics.smd import COMPLETED
from rarelearn.pulls import ReplicaPulls

FORCE_EV_A = 4.6  # the plateau force: W grows by this per A of spring travel
SPEED_A_PER_STEP = 0.001


@pytest.fixture(scope="module")
def snap_split(load_script):
    return load_script("snap_split")


def pulls(snap_steps: list[int], n_steps: int = 1000) -> ReplicaPulls:
    """Pulls whose W rises as FORCE_EV_A x travel until each snaps, then stays flat."""
    travel = np.arange(n_steps) * SPEED_A_PER_STEP + 8.0
    rows = len(snap_steps)
    work = np.tile(FORCE_EV_A * (travel - 8.0), (rows, 1))
    distance = np.tile(travel - 0.4, (rows, 1))
    for r, snap in enumerate(snap_steps):
        work[r, snap:] = work[r, snap]
    return ReplicaPulls(
        activation_energy_eV=work.max(axis=1),
        breaking_distance_A=np.array([distance[r, s] for r, s in enumerate(snap_steps)]),
        stopped_reason=[COMPLETED] * rows,
        distance_A=distance,
        work_eV=work,
        rest_length_A=np.tile(travel, (rows, 1)),
    )


def test_travel_at_snap_and_work_before_it(snap_split):
    early = pulls([650, 660, 670, 680])
    expected = 8.0 + np.array([650, 660, 670, 680]) * SPEED_A_PER_STEP
    assert np.allclose(early.at_snap(early.rest_length_A), expected)
    assert np.allclose(snap_split.work_at_travel(early, 8.3), FORCE_EV_A * 0.3)
    # a travel the pulls never reach gives no work, not the first frame's
    assert np.isnan(snap_split.work_at_travel(early, 9.5)).all()


def test_timing_splits_the_error_into_snap_time(snap_split):
    reference = pulls([700, 710, 720, 730])
    # the model snaps 0.05 A of travel early on the same W curve
    model = pulls([650, 660, 670, 680])
    travel, _, at_snap, before, _ = snap_split.timing(model, reference)
    assert travel == pytest.approx(-0.05)
    assert at_snap == pytest.approx(FORCE_EV_A * -0.05)
    assert before == pytest.approx(0.0, abs=1e-12)


def test_post_snap_column_reads_the_rows_tail_keys(snap_split, tmp_path):
    import json

    assert snap_split.tail_difference(tmp_path) == "-"  # no row yet
    row = {"tail_energy_difference_eV": None}
    (tmp_path / "metrics.json").write_text(json.dumps(row))
    assert snap_split.tail_difference(tmp_path) == "-"  # no post-snap labels
    row = {"tail_energy_difference_eV": 0.1, "tail_energy_difference_ci95_eV": 0.05}
    (tmp_path / "metrics.json").write_text(json.dumps(row))
    assert snap_split.tail_difference(tmp_path) == "+2.3 +- 1.2"
