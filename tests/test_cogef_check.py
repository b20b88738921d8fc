"""The campaign's 0 K check (rarelearn.cogef_check): its row against analytic Morse barriers,
saved scans (a failure kept, not retried), settings refused, and its term of the self rule."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, Calculator
from ase.calculators.morse import MorsePotential

from rarelearn.cogef import cogef_scan
from rarelearn.cogef_check import (
    CogefSettings,
    cogef_pair,
    cogef_row,
    empty_cogef_row,
    labeler_curve,
    reach_A,
    saved_curve,
)
from rarelearn.config import StopConfig, load_config
from rarelearn.consistency import self_consistency_line, self_consistent
from rarelearn.dynamics import SMDSettings
from rarelearn.errors import ConfigError, RarelearnError
from rarelearn.molecules import PulledAtoms
from rarelearn.runfolder import COGEF_ROW_KEYS
from rarelearn.units import EV_TO_KCAL_MOL

RHO0, R0 = 4.0, 1.5
A = RHO0 / R0  # the Morse exponent (1/A)
K_SOFT = 2.0  # softer than a Morse bond softens past its peak (epsilon a^2 / 4): it snaps


def dimer_scan(epsilon: float):
    calculator = MorsePotential(epsilon=epsilon, rho0=RHO0, r0=R0, rcut1=20.0, rcut2=20.1)
    return cogef_scan(Atoms("C2", positions=[[0, 0, 0], [R0, 0, 0]]), calculator, (0, 1))


def analytic_barrier(epsilon: float, k: float) -> float:
    """max over the stable branch of E(r) - E(r0) + F^2 / 2k, on a dense grid."""
    r = np.linspace(R0, 4.0, 400_001)
    y = np.exp(-A * (r - R0))
    energy, force = epsilon * (y * y - 2 * y), 2 * A * epsilon * (y - y * y)
    stable = int(np.argmax(np.diff(r + force / k) <= 0))
    return float((energy[: stable + 1] - energy[0] + force[: stable + 1] ** 2 / (2 * k)).max())


def test_row_is_the_model_minus_the_labeler_of_analytic_barriers():
    row = cogef_row(dimer_scan(3.0), dimer_scan(3.6), K_SOFT)
    assert list(row) == list(COGEF_ROW_KEYS)
    expected = analytic_barrier(3.0, K_SOFT) - analytic_barrier(3.6, K_SOFT)
    assert row["cogef_ea_error_eV"] == pytest.approx(expected, abs=1e-3)
    assert row["cogef_ea_ref_eV"] == pytest.approx(analytic_barrier(3.6, K_SOFT), abs=5e-4)
    # the peak force of a Morse bond is epsilon a / 2
    assert row["cogef_peak_force_error_eV_A"] == pytest.approx((3.0 - 3.6) * A / 2, rel=1e-3)
    assert row["cogef_bond_nnp"] == row["cogef_bond_ref"] == "C0-C1"
    assert row["cogef_note"] is None


def test_a_bond_that_gives_way_smoothly_has_a_peak_force_but_no_barrier():
    """Under a spring stiffer than the bond ever softens nothing snaps: no barrier, said so."""
    row = cogef_row(dimer_scan(3.0), dimer_scan(3.6), 10.0)
    assert row["cogef_ea_nnp_eV"] is None and row["cogef_ea_error_eV"] is None
    assert row["cogef_peak_force_error_eV_A"] == pytest.approx((3.0 - 3.6) * A / 2, rel=1e-3)
    assert "labeler: the bond gave way smoothly" in row["cogef_note"]


def test_a_failed_scan_is_kept_as_a_finding_and_not_retried(tmp_path):
    calls = []

    def failing():
        calls.append(1)
        raise RarelearnError("COGEF scan ended after 0 point(s): relaxation did not converge")

    for _ in range(2):
        curve, facts = saved_curve(tmp_path / "c.npz", tmp_path / "c.json", failing)
        assert curve is None and "did not converge" in facts["failed"]
    assert len(calls) == 1 and not (tmp_path / "c.npz").exists()
    row = cogef_row(None, dimer_scan(3.6), K_SOFT, {"model": facts["failed"]})
    assert row["cogef_peak_force_nnp_eV_A"] is None and row["cogef_ea_error_eV"] is None
    assert row["cogef_peak_force_ref_eV_A"] is not None
    assert row["cogef_note"].startswith("model's scan failed: COGEF scan ended")


def test_a_saved_scan_is_read_back_unchanged(tmp_path):
    scanned = dimer_scan(3.6)
    saved, facts = saved_curve(tmp_path / "c.npz", tmp_path / "c.json", lambda: (scanned, {}))
    assert saved is scanned
    again, facts_again = saved_curve(tmp_path / "c.npz", tmp_path / "c.json", None)
    assert facts == facts_again == {"n_points": len(scanned.distance_A), "stopped_reason": ""}
    for key in ("distance_A", "energy_eV", "force_eV_per_A", "positions_A", "numbers"):
        np.testing.assert_array_equal(getattr(again, key), getattr(scanned, key))
    assert again.pair == scanned.pair


def test_a_scan_reaches_as_far_as_the_pulls_spring_travels():
    start = Atoms("C2", positions=[[0, 0, 0], [1.5, 0, 0]])
    smd = SMDSettings(n_steps=4000, timestep_fs=0.5, pull_speed_A_per_ps=1.0)
    assert reach_A(start, (0, 1), smd) == pytest.approx(1.5 + 2.0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"enabled": 1}, "cogef.enabled"),
        ({"labels": "yes"}, "cogef.labels"),
        ({"label_copies": -1}, "label_copies must be 0 or more"),
        ({"label_copies": 1.5}, "label_copies must be an integer"),
        ({"driver_labels": True}, "driver_labels .* set enabled = true too"),
        ({"step_A": 0.0}, "step_A must be positive"),
        ({"fine_above": 1.0}, "fine_above must be a share"),
        ({"step_A": 0.2, "coarse_step_A": 0.1}, "coarse_step_A .* at least step_A"),
        ({"steps": 3}, "unknown setting 'cogef.steps'"),
    ],
)
def test_bad_cogef_settings_are_refused_naming_the_setting(values, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"cogef": values})


def test_pulled_groups_are_refused_for_the_0K_check():
    assert cogef_pair(PulledAtoms.pair(0, 5)) == (0, 5)
    with pytest.raises(ConfigError, match="two pulled atoms, not groups"):
        cogef_pair(PulledAtoms((0, 1), (5,)))


def _row(**cogef) -> dict:
    """A row whose Ea stopped changing, with the given 0 K keys."""
    return {"ea_change_eV": 0.0, "ea_change_ci95_eV": 0.01, **empty_cogef_row(), **cogef}


def test_the_self_rule_needs_the_0K_barrier_within_the_tolerance():
    stop = StopConfig(tolerance_kcal_mol=1.0)
    one = 1.0 / EV_TO_KCAL_MOL
    assert self_consistent(_row(), stop)  # the check off: the rule as before
    assert self_consistent(_row(cogef_ea_ref_eV=7.0, cogef_ea_error_eV=0.9 * one), stop)
    assert not self_consistent(_row(cogef_ea_ref_eV=7.0, cogef_ea_error_eV=-1.2 * one), stop)
    # the labeler snaps at 0 K and the model does not: no pass
    assert not self_consistent(_row(cogef_ea_ref_eV=7.0, cogef_ea_error_eV=None), stop)
    # the labeler itself gives way smoothly (no barrier to compare): the term does not apply
    assert self_consistent(_row(cogef_ea_ref_eV=None, cogef_peak_force_ref_eV_A=2.1), stop)
    line = self_consistency_line(_row(cogef_ea_ref_eV=7.0, cogef_ea_error_eV=-1.2 * one), stop)
    assert "0 K (COGEF) barrier differs from the labeler's by -1.2 kcal/mol" in line


def test_a_calculator_that_fails_on_the_start_is_a_recorded_failure(tmp_path):
    """A labeler whose SCF fails at once: the scan's facts say so, and no exception escapes."""

    class Failing(Calculator):
        implemented_properties = ("energy", "forces")

        def calculate(self, atoms=None, properties=("energy",), system_changes=()):
            raise CalculationFailed("SCF did not converge")

    start = Atoms("C2", positions=[[0, 0, 0], [R0, 0, 0]])
    curve, facts = labeler_curve(tmp_path, start, (0, 1), Failing, CogefSettings(), 0, 4.0)
    assert curve is None
    assert facts["failed"] == "relaxing the start failed: SCF did not converge"
