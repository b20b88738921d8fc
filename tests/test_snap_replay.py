"""scripts/snap_replay.py's measures: the force a bond holds a fragment with, and where two
bond-length histories part."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.morse import MorsePotential


@pytest.fixture(scope="module")
def snap_replay(load_script):
    return load_script("snap_replay")


def test_holding_force_of_a_stretched_morse_dimer_is_dE_dr(snap_replay):
    """Checked against the Morse potential's analytic derivative, not the script's formula:
    stretched past r0 the bond holds the atom back (positive), compressed it pushes (negative)."""
    epsilon, r0, rho0 = 2.0, 1.5, 6.0
    for r in (1.3, 1.9, 2.4):
        dimer = Atoms("C2", positions=[[0.1, -0.2, 0.3], [0.1 + r * 0.6, -0.2, 0.3 + r * 0.8]])
        dimer.calc = MorsePotential(epsilon=epsilon, r0=r0, rho0=rho0)
        forces = dimer.get_forces()
        held = snap_replay.holding_force(dimer.positions[None], forces[None], (0, 1), [1])[0]
        e = np.exp(rho0 * (1 - r / r0))
        assert held == pytest.approx(-2 * epsilon * rho0 / r0 * e * (e - 1), rel=1e-6)
        assert (held > 0) == (r > r0)


def test_holding_force_ignores_forces_inside_the_fragment_and_across_the_bond(snap_replay):
    positions = np.array([[[0.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0]]])
    internal = np.array([[[0.0, 5, 0], [1.5, -3, 0], [-1.5, 0, 7]]])
    assert snap_replay.holding_force(positions, internal, (0, 1), [1, 2])[0] == pytest.approx(0)
    tension = np.array([[[2.5, 0, 0], [-2.5, 1, 0], [0.0, 0, 0]]])
    assert snap_replay.holding_force(positions, tension, (0, 1), [1, 2])[0] == pytest.approx(2.5)


def test_first_apart_and_bins(snap_replay):
    labeler = np.array([1.90, 1.91, 1.92, 1.93, 1.94])
    model = np.array([1.90, 1.915, 1.935, 1.96, 2.10, 2.30])
    assert snap_replay.first_apart(model, labeler, 0.02) == 3
    assert snap_replay.first_apart(labeler, labeler, 0.02) is None
    rows = snap_replay.binned(np.array([1.9, 1.92, 2.0, 2.2, 3.0]), np.array([0.1, 0.3, -1, 2, 9]))
    assert rows == [
        ["1.80-1.95", "2", "+0.200 +- 0.100"],
        ["1.95-2.05", "1", "-1.000 +- 0.000"],
        ["2.15-2.30", "1", "+2.000 +- 0.000"],
    ]
