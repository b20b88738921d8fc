"""Replica statistics held to scipy's own t-tests, and the replica count for a tolerance."""

import math

import numpy as np
import pytest
from scipy import stats

from rarelearn.pulls import ReplicaPulls, compare_pulls
from rarelearn.statistics import Sample, paired, replicas_for_half_width, welch


def _samples(seed: int, n_a: int, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(8.0, 0.1, n_a), rng.normal(7.6, 0.2, n_b)


@pytest.mark.parametrize(("n_a", "n_b"), [(16, 16), (5, 12), (3, 40)])
def test_welch_interval_is_scipys(n_a, n_b):
    a, b = _samples(n_a * 100 + n_b, n_a, n_b)
    ours = welch(Sample.of(a), Sample.of(b))
    interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert ours.low == pytest.approx(interval.low, rel=1e-10)
    assert ours.high == pytest.approx(interval.high, rel=1e-10)


def test_paired_interval_is_scipys():
    a, b = _samples(7, 10, 10)
    ours = paired(a, b)
    interval = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert ours.low == pytest.approx(interval.low, rel=1e-10)
    assert ours.high == pytest.approx(interval.high, rel=1e-10)


def test_one_replica_has_no_interval_and_never_counts_as_converged():
    difference = welch(Sample.of([8.0]), Sample.of([7.9, 8.1]))
    assert math.isnan(difference.half_width)
    assert not difference.within(100.0)
    assert math.isnan(Sample.of([1.0]).sem)


def test_within_needs_the_whole_interval_inside():
    a, b = Sample.of([1.00, 1.02, 0.98]), Sample.of([1.0, 1.01, 0.99])
    difference = welch(a, b)
    assert difference.within(abs(difference.estimate) + difference.half_width + 1e-12)
    assert not difference.within(abs(difference.estimate) + difference.half_width - 1e-6)


def test_replicas_for_half_width_gives_the_smallest_sufficient_count():
    """Hand check: spreads 0.2 and 0.1 eV, +-1 kcal/mol (0.0434 eV): z^2 (0.05) / h^2 = 102
    in the normal limit; Student's t needs a few more."""
    h = 1.0 / 23.0605
    n = replicas_for_half_width(0.2, 0.1, h)
    assert 102 <= n <= 106

    def half_width(k: int) -> float:
        va, vb = 0.2**2 / k, 0.1**2 / k
        dof = (va + vb) ** 2 / ((va**2 + vb**2) / (k - 1))
        return stats.t.ppf(0.975, dof) * math.sqrt(va + vb)

    assert half_width(n) <= h < half_width(n - 1)
    with pytest.raises(ValueError, match="positive"):
        replicas_for_half_width(0.2, 0.1, 0.0)


def test_pulls_that_did_not_break_are_marked_and_errors_keep_their_sign():
    model = ReplicaPulls(
        activation_energy_eV=np.array([8.1, 8.3, 2.0]),
        breaking_distance_A=np.array([8.6, 8.7, np.nan]),
        stopped_reason=["completed", "completed", "atoms closer than 0.5 A"],
        distance_A=np.zeros((3, 2)),
        work_eV=np.zeros((3, 2)),
        rest_length_A=np.zeros((3, 2)),
    )
    reference = ReplicaPulls(
        activation_energy_eV=np.array([7.9, 7.5, 7.6, 7.7]),
        breaking_distance_A=np.array([8.7, 8.8, 8.9, 8.6]),
        stopped_reason=["completed"] * 4,
        distance_A=np.zeros((4, 2)),
        work_eV=np.zeros((4, 2)),
        rest_length_A=np.zeros((4, 2)),
    )
    assert model.broke == [True, True, False]
    assert model.mean_breaking_distance() == pytest.approx(8.65)
    errors = compare_pulls(model, reference, 10.0)
    assert errors["ea_error_signed_eV"] == pytest.approx(18.4 / 3 - 7.675)
    assert errors["ea_error_eV"] == pytest.approx(7.675 - 18.4 / 3)
    assert errors["ea_error_single_eV"] == pytest.approx(0.2)
    assert errors["ea_error_paired_eV"] == pytest.approx(np.mean([0.2, 0.8, -5.6]))


def test_ea_splits_at_the_snap_into_the_barrier_and_the_work_done_after_it():
    """Hand-made pulls: W at the first broken frame (the frame whose distance is the breaking
    distance) and the rise of W after it, per side; a pull that broke nothing is left out."""
    distance = np.array([[6.0, 7.0, 8.5, 9.0, 9.5], [6.0, 7.0, 8.0, 9.2, 9.8], [6.0] * 5])
    work = np.array([[0.0, 3.0, 7.0, 7.1, 7.4], [0.0, 3.0, 6.0, 6.2, 6.1], [0.0, 1, 2, 3, 4]])
    model = ReplicaPulls(
        activation_energy_eV=work.max(axis=1),
        breaking_distance_A=np.array([8.5, 9.2, np.nan]),
        stopped_reason=["completed"] * 3,
        distance_A=distance,
        work_eV=work,
        rest_length_A=distance + 0.1,
        broken_bonds=["C0-C1", "C0-C1", None],
    )
    assert model.snap_frames() == [2, 3, None]
    at_snap, after_snap = model.work_split_at_snap_eV()
    np.testing.assert_allclose(at_snap, [7.0, 6.2, np.nan])
    np.testing.assert_allclose(after_snap, [0.4, 0.0, np.nan])
    flat = np.array([[0.0, 3.0, 7.5, 7.5], [0.0, 3.0, 7.7, 7.6]])
    reference = ReplicaPulls(
        activation_energy_eV=flat.max(axis=1),
        breaking_distance_A=np.array([8.6, 8.6]),
        stopped_reason=["completed"] * 2,
        distance_A=np.array([[6.0, 7.0, 8.6, 9.6], [6.0, 7.0, 8.6, 9.6]]),
        work_eV=flat,
        rest_length_A=np.full((2, 4), 10.0),
        broken_bonds=["C0-C1", "C4-C5"],
    )
    keys = compare_pulls(model, reference, 10.0)
    assert keys["work_after_snap_nnp_eV"] == pytest.approx(0.2)
    assert keys["work_after_snap_ref_eV"] == pytest.approx(0.0)
    assert keys["ea_at_snap_error_eV"] == pytest.approx(6.6 - 7.6)
    assert keys["ea_at_snap_error_ci95_eV"] > 0
    alone = compare_pulls(model, None, 10.0)
    assert alone["work_after_snap_nnp_eV"] == pytest.approx(0.2)
    assert alone["ea_at_snap_error_eV"] is None and alone["work_after_snap_ref_eV"] is None


def test_rupture_force_is_the_peak_spring_force_and_bonds_are_checked_against_the_reference():
    """Hand-made pulls: k (R0 - d) peaks at a known frame; NaN padding is ignored."""
    rest = np.array([[6.0, 6.5, 7.0], [6.0, 6.2, np.nan]])
    distance = np.array([[6.0, 6.1, 6.9], [6.0, 6.0, np.nan]])
    model = ReplicaPulls(
        activation_energy_eV=np.array([7.0, 7.2]),
        breaking_distance_A=np.array([8.6, np.nan]),
        stopped_reason=["completed", "completed"],
        distance_A=distance,
        work_eV=np.zeros((2, 3)),
        rest_length_A=rest,
        broken_bonds=["C2-C3", None],
    )
    np.testing.assert_allclose(model.rupture_forces_eV_A(10.0), [4.0, 2.0])
    reference = ReplicaPulls(
        activation_energy_eV=np.array([7.5, 7.6, 7.7]),
        breaking_distance_A=np.array([8.7, 8.8, 8.9]),
        stopped_reason=["completed"] * 3,
        distance_A=np.array([[6.0, 6.0], [6.0, 6.0], [6.0, 6.0]]),
        work_eV=np.zeros((3, 2)),
        rest_length_A=np.array([[6.0, 6.5], [6.0, 6.4], [6.0, 6.6]]),
        broken_bonds=["C0-C1", "C4-C5", "C0-C1"],
    )
    errors = compare_pulls(model, reference, 10.0)
    assert errors["rupture_force_ref_eV_A"] == pytest.approx(5.0)
    assert errors["rupture_force_nnp_eV_A"] == pytest.approx(3.0)
    assert errors["rupture_force_error_eV_A"] == pytest.approx(-2.0)
    assert errors["rupture_force_error_ci95_eV_A"] > 0
    assert errors["reference_bond_share"] == 0.0
    model.broken_bonds = ["C4-C5", "C2-C3"]
    assert compare_pulls(model, reference, 10.0)["reference_bond_share"] == 0.5
