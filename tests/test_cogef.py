"""COGEF scans (rarelearn.cogef) against analytic Morse results and a real molecule's energies."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.morse import MorsePotential

from rarelearn.cogef import cogef_scan
from rarelearn.errors import RarelearnError

EPSILON, RHO0, R0 = 3.6, 4.0, 1.5
A = RHO0 / R0  # the Morse exponent (1/A)


def morse(cutoff: float = 20.0) -> MorsePotential:
    """ASE's Morse pair potential, smoothed to zero between ``cutoff`` and ``cutoff + 0.1`` A:
    at 2.0 past the bond's peak (1.76 A) and short of the chain's second neighbours (3 A)."""
    return MorsePotential(epsilon=EPSILON, rho0=RHO0, r0=R0, rcut1=cutoff, rcut2=cutoff + 0.1)


def analytic_curve(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.exp(-A * (r - R0))
    return EPSILON * (y * y - 2 * y), 2 * A * EPSILON * (y - y * y)


def dimer() -> Atoms:
    return Atoms("C2", positions=[[0, 0, 0], [R0 * 0.6, 0, R0 * 0.8]])


def test_morse_dimer_peak_force_is_analytic():
    """The largest force of a Morse bond is epsilon a / 2, at r0 + ln 2 / a."""
    curve = cogef_scan(dimer(), morse(), (0, 1))
    force, distance = curve.peak()
    assert force == pytest.approx(EPSILON * A / 2, rel=1e-4)
    assert distance == pytest.approx(R0 + np.log(2) / A, abs=2e-3)
    assert curve.broken_bond() == (0, 1)


def test_quasi_static_barrier_matches_a_dense_analytic_pull():
    """max W = E(d) - E(r0) + F^2/2k on the stable branch, from the analytic Morse curve on a
    fine grid; with k stiffer than the bond ever softens (k > epsilon a^2 / 4) it never snaps."""
    k = 2.0
    curve = cogef_scan(dimer(), morse(), (0, 1))
    r = np.linspace(R0, 4.0, 400_001)
    energy, force = analytic_curve(r)
    stable = int(np.argmax(np.diff(r + force / k) <= 0))
    work = energy[: stable + 1] - energy[0] + force[: stable + 1] ** 2 / (2 * k)
    barrier, snap = curve.ea_quasi_static(k)
    assert barrier == pytest.approx(work.max(), abs=5e-4)
    assert snap == pytest.approx(r[np.argmax(work)], abs=5e-3)
    assert EPSILON * A**2 / 4 < 10.0
    with pytest.raises(RarelearnError, match="gave way smoothly"):
        curve.ea_quasi_static(10.0)
    unbroken = cogef_scan(dimer(), morse(), (0, 1), max_distance_A=R0 + 0.3)
    with pytest.raises(RarelearnError, match="scan farther"):
        unbroken.ea_quasi_static(k)


def test_a_chain_of_two_bonds_breaks_one_and_carries_the_bond_peak_force():
    """Two equal bonds in series carry one tension: the chain's peak is one bond's, and past it
    one bond breaks while the other relaxes back (the seeded shake breaks the symmetry)."""
    chain = Atoms("C3", positions=[[0, 0, 0], [R0, 0, 0], [2 * R0, 0, 0]])
    curve = cogef_scan(chain, morse(cutoff=2.0), (0, 2), seed=3)
    force, _ = curve.peak()
    assert force == pytest.approx(EPSILON * A / 2, rel=2e-3)
    broken = curve.broken_bond()
    assert broken in {(0, 1), (1, 2)}
    kept = (1, 2) if broken == (0, 1) else (0, 1)
    assert curve.image(-1).get_distance(*kept) == pytest.approx(R0, abs=0.05)
    # past the peak the symmetric stretch is a saddle: no image may stay on it (the plateau a
    # symmetric scan shows would lengthen the pull and raise its barrier)
    past = np.arange(len(curve.distance_A)) > int(np.argmax(curve.force_eV_per_A))
    falling = past & (curve.force_eV_per_A < 0.99 * force)
    parted = [
        abs(curve.image(k).get_distance(0, 1) - curve.image(k).get_distance(1, 2)) > 0.05
        for k in np.nonzero(falling)[0]
    ]
    assert parted and all(parted)


def test_force_is_the_slope_of_the_relaxed_energy_for_xtb_ethane():
    """The resisting force, read from the atoms' forces, integrates to the relaxed energies
    (trapezoids between neighbouring points): the relaxations converged and the force is the
    energy's derivative along d, for a molecule whose other atoms relax."""
    pytest.importorskip("tblite")
    from rarelearn.labeling import make_labeler
    from rarelearn.molecules import build_alkane, relax

    calculator = make_labeler().build(reuse_wavefunction=True)
    ethane = relax(build_alkane(2), calculator, fmax=1e-3)
    curve = cogef_scan(ethane, calculator, (0, 1), step_A=0.02, max_distance_A=2.2)
    de = np.diff(curve.energy_eV)
    trapezoid = (
        np.diff(curve.distance_A) * (curve.force_eV_per_A[1:] + curve.force_eV_per_A[:-1]) / 2
    )
    assert np.abs(de - trapezoid).max() < 2e-3
    assert curve.force_eV_per_A.max() > 3.0


def test_same_seed_same_curve():
    chain = Atoms("C3", positions=[[0, 0, 0], [R0, 0, 0], [2 * R0, 0, 0]])
    first = cogef_scan(chain, morse(cutoff=2.0), (0, 2), seed=1)
    second = cogef_scan(chain, morse(cutoff=2.0), (0, 2), seed=1)
    np.testing.assert_array_equal(first.energy_eV, second.energy_eV)
    np.testing.assert_array_equal(first.positions_A, second.positions_A)


@pytest.mark.parametrize(
    ("pair", "step", "message"),
    [
        ((0, 0), 0.02, "two distinct atoms"),
        ((0, 2), 0.02, "two distinct atoms"),
        ((0, 1), 0.0, "positive"),
    ],
)
def test_bad_scan_settings_are_refused(pair, step, message):
    with pytest.raises(RarelearnError, match=message):
        cogef_scan(dimer(), morse(), pair, step_A=step)


def test_coarse_steps_below_the_peak_keep_the_peak_and_the_barrier():
    """Coarse steps at low force, fine ones near the peak: the same peak and barrier (the
    relaxed energy depends on d alone), with fewer points."""
    fine = cogef_scan(dimer(), morse(), (0, 1))
    mixed = cogef_scan(dimer(), morse(), (0, 1), coarse_step_A=0.1, fine_above_eV_per_A=4.0)
    assert len(mixed.distance_A) < len(fine.distance_A) - 5
    assert mixed.peak()[0] == pytest.approx(fine.peak()[0], rel=1e-4)
    assert mixed.ea_quasi_static(2.0)[0] == pytest.approx(fine.ea_quasi_static(2.0)[0], abs=1e-3)


def test_a_peak_next_to_a_break_is_the_last_point_before_it():
    """A force that drops to a fraction from one point to the next (the bond broke at fixed d)
    is no parabola: the peak is the grid's last intact point, not an extrapolation."""
    from rarelearn.cogef import CogefCurve

    distance = np.array([8.0, 8.1, 8.2, 8.3, 8.4])
    force = np.array([4.0, 4.4, 4.55, 4.56, 0.7])
    energy = np.concatenate([[0.0], np.cumsum(np.diff(distance) * (force[1:] + force[:-1]) / 2)])
    curve = CogefCurve(
        pair=(0, 1),
        distance_A=distance,
        energy_eV=energy,
        force_eV_per_A=force,
        positions_A=np.zeros((5, 2, 3)),
        numbers=np.array([6, 6]),
    )
    assert curve.peak() == (4.56, 8.3)
