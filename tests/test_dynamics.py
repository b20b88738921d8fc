"""Physics of MD and steered MD: spring forces, energy conservation, work, reproducibility."""

import numpy as np
import pytest
from ase import units
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.morse import MorsePotential
from ase.md.verlet import VelocityVerlet

from rarelearn.dynamics import (
    MovingSpring,
    SMDSettings,
    SMDTrace,
    StartState,
    Thermostat,
    draw_velocities,
    relax_start_state,
    run_md,
    run_smd,
)
from rarelearn.errors import ConfigError, RarelearnError
from rarelearn.labeling import make_labeler
from rarelearn.molecules import PulledAtoms, build_alkane

XTB = make_labeler("GFN2-xTB")


@pytest.mark.parametrize("pulled", [PulledAtoms.pair(0, 2), PulledAtoms((0, 3, 4), (2, 8, 9, 10))])
def test_spring_forces_are_minus_the_energy_gradient(pulled):
    atoms = build_alkane(3)
    atoms.positions += np.random.default_rng(0).normal(0, 0.1, atoms.positions.shape)
    spring = MovingSpring(pulled, spring_constant=10.0, rest_length=3.1)
    atoms.calc = spring
    forces = atoms.get_forces()
    step = 1e-6
    numerical = np.zeros_like(forces)
    for i in range(len(atoms)):
        for k in range(3):
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[i, k] += sign * step
                moved.calc = MovingSpring(pulled, 10.0, 3.1)
                numerical[i, k] -= sign * moved.get_potential_energy() / (2 * step)
    np.testing.assert_allclose(forces, numerical, atol=1e-6)
    assert np.abs(forces).max() > 0.1  # the spring is really stretched: the check is not vacuous


def test_xtb_nve_conserves_total_energy():
    atoms = build_alkane(2)
    atoms.calc = XTB.build(reuse_wavefunction=True)
    draw_velocities(atoms, 300.0, seed=3)
    integrator = VelocityVerlet(atoms, 0.5 * units.fs)
    totals = []
    integrator.attach(lambda: totals.append(atoms.get_total_energy()), interval=1)
    integrator.run(2000)  # 1 ps
    time_ps = np.arange(len(totals)) * 0.5e-3
    drift_per_atom_per_ps = abs(np.polyfit(time_ps, totals, 1)[0]) / len(atoms)
    # Measured here: ~1e-5 eV/atom/ps (0.01 meV); FIELD-NOTES bound 0.1 meV/atom/ps.
    assert drift_per_atom_per_ps < 1e-4
    assert np.ptp(totals) < 5e-3


def _nve_start(seed=0):
    atoms = build_alkane(3)
    draw_velocities(atoms, 50.0, seed=seed)
    return StartState(atoms=atoms, pulled=PulledAtoms.pair(0, 2))


def test_moving_spring_in_nve_changes_total_energy_by_the_work():
    settings = SMDSettings(
        pull_speed_A_per_ps=5.0,
        n_steps=1000,
        thermostat=Thermostat("nve", 0.0),
        relax_steps=0,
    )
    trace = run_smd(_nve_start(), XTB.build(reuse_wavefunction=True), settings)
    spring_energy = 0.5 * 10.0 * (trace.distance_A - trace.rest_length_A) ** 2
    total = trace.kinetic_eV + trace.energy_eV + spring_energy
    assert trace.work_eV[-1] > 0.5  # the spring did real work
    np.testing.assert_allclose(total - total[0], trace.work_eV, atol=5e-3)


def test_work_is_the_discrete_integral_of_spring_force_times_speed():
    settings = SMDSettings(
        pull_speed_A_per_ps=5.0, n_steps=600, thermostat=Thermostat("nve", 0.0), relax_steps=0
    )
    trace = run_smd(_nve_start(), XTB.build(reuse_wavefunction=True), settings)
    k, step_A = 10.0, 5.0 / 1000.0 * 0.5
    steps = np.arange(trace.n_frames)
    left_sum = np.concatenate([[0.0], np.cumsum(trace.spring_force_eV_per_A[:-1] * step_A)])
    # Each move of R0 adds k(R0 - d) dR0 + k dR0^2 / 2: the midpoint rule in R0, exact energy.
    np.testing.assert_allclose(trace.work_eV, left_sum + steps * k * step_A**2 / 2, atol=1e-9)
    # Against the trapezoid rule in time the difference is k dR0 (d - d0) / 2, O(dt).
    forces = trace.spring_force_eV_per_A
    trapezoid = np.concatenate([[0.0], np.cumsum((forces[:-1] + forces[1:]) / 2 * step_A)])
    offset = k * step_A * (trace.distance_A - trace.distance_A[0]) / 2
    np.testing.assert_allclose(trace.work_eV - trapezoid, offset, atol=1e-9)
    assert trace.work_eV[-1] > 0.3
    # Ea itself (max W) is checked against closed forms in test_analytic_work.py.


def test_same_seed_same_trajectory_bit_for_bit_and_different_seeds_differ():
    settings = SMDSettings(n_steps=200, relax_steps=100)
    atoms = build_alkane(3)

    def run(seed):
        start = relax_start_state(atoms, XTB.build(True), PulledAtoms.pair(0, 2), settings, seed)
        return run_smd(start, XTB.build(True), settings, seed)

    first, again, other = run(7), run(7), run(8)
    np.testing.assert_array_equal(first.positions_A, again.positions_A)
    np.testing.assert_array_equal(first.work_eV, again.work_eV)
    assert not np.array_equal(first.positions_A, other.positions_A)


def test_langevin_is_seeded_too():
    atoms = build_alkane(2)
    thermostat = Thermostat("langevin", 300.0)
    frames = [run_md(atoms, XTB.build(True), thermostat, 0.5, 20, seed=s) for s in (1, 1, 2)]
    assert frames[0][-1].positions.tolist() == frames[1][-1].positions.tolist()
    assert frames[0][-1].positions.tolist() != frames[2][-1].positions.tolist()


def test_start_state_round_trip_gives_the_same_smd(tmp_path):
    settings = SMDSettings(n_steps=100, relax_steps=50)
    start = relax_start_state(build_alkane(3), XTB.build(True), PulledAtoms.pair(0, 2), settings, 1)
    start.save(tmp_path / "start.traj")
    loaded = StartState.load(tmp_path / "start.traj")
    assert loaded.pulled == start.pulled
    direct = run_smd(start, XTB.build(True), settings)
    reloaded = run_smd(loaded, XTB.build(True), settings)
    np.testing.assert_array_equal(direct.positions_A, reloaded.positions_A)
    direct.save(tmp_path / "smd.npz")
    restored = SMDTrace.load(tmp_path / "smd.npz")
    np.testing.assert_array_equal(restored.work_eV, direct.work_eV)
    assert restored.summary() == direct.summary()


def test_ethane_bond_breaks_and_is_reported():
    settings = SMDSettings(pull_speed_A_per_ps=10.0, n_steps=800, relax_steps=100)
    atoms = build_alkane(2)
    start = relax_start_state(atoms, XTB.build(True), PulledAtoms.pair(0, 1), settings, 0)
    trace = run_smd(start, XTB.build(True), settings)
    summary = trace.summary()
    assert summary["broken_bond"]["atoms"] == [0, 1]
    assert 2.4 < summary["breaking_distance_A"] < 4.0
    # The spring force peaks (C-C strength) before the bond is counted as broken.
    assert summary["max_work_frame"] > 0
    assert 3.0 < summary["peak_spring_force_eV_per_A"] < 8.0
    assert summary["activation_energy_eV"] > 2.0


class _BlowsUp(Calculator):
    """Morse chemistry that turns non-finite after a number of calls (an NNP leaving its domain)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, good_calls):
        super().__init__()
        self.inner = MorsePotential(epsilon=4.0, r0=1.5, rho0=6.0)
        self.calls = 0
        self.good_calls = good_calls

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        energy = self.inner.get_potential_energy(self.atoms)
        forces = self.inner.get_forces(self.atoms)
        if self.calls > self.good_calls:
            energy = float("nan")
        self.results = {"energy": energy, "forces": forces}


def test_smd_stops_on_blow_up_and_keeps_frames_so_far():
    settings = SMDSettings(n_steps=500, relax_steps=0, thermostat=Thermostat("nve", 0.0))
    start = StartState(build_alkane(2)[:2], PulledAtoms.pair(0, 1))
    trace = run_smd(start, _BlowsUp(good_calls=120), settings)
    assert trace.stopped_reason.startswith("non-finite")
    assert 100 < trace.n_frames < 125
    assert np.all(np.isfinite(trace.energy_eV))


def test_bad_smd_settings_are_rejected_with_the_setting_named():
    for field, value in [("pull_speed_A_per_ps", 0.0), ("spring_constant_eV_per_A2", -1.0)]:
        with pytest.raises(ConfigError, match=field):
            SMDSettings(**{field: value}).validate()
    with pytest.raises(ConfigError, match="thermostat"):
        Thermostat("nose-hoover").validate()


def test_spring_sum_equals_ase_sum_calculator_bit_for_bit():
    from ase.calculators.mixing import SumCalculator

    from rarelearn.dynamics.spring import SpringSum

    atoms = build_alkane(3)
    atoms.positions += np.random.default_rng(1).normal(0, 0.05, atoms.positions.shape)
    pulled = PulledAtoms.pair(0, 2)
    lean_spring, ase_spring = MovingSpring(pulled, 10.0, 3.0), MovingSpring(pulled, 10.0, 3.0)
    lean = SpringSum(MorsePotential(epsilon=4.0, r0=1.5, rho0=6.0), lean_spring)
    reference = SumCalculator([MorsePotential(epsilon=4.0, r0=1.5, rho0=6.0), ase_spring])
    for step in range(3):
        for spring, calc in ((lean_spring, lean), (ase_spring, reference)):
            spring.rest_length = 3.0 + 0.1 * step
            calc.results = {}
        assert lean.get_potential_energy(atoms) == reference.get_potential_energy(atoms)
        np.testing.assert_array_equal(lean.get_forces(atoms), reference.get_forces(atoms))
        for key in ("energy_contributions", "forces_contributions"):
            for a, b in zip(lean.results[key], reference.results[key], strict=True):
                np.testing.assert_array_equal(a, b)
        atoms.positions[1] += 0.01


def test_smd_stops_when_atoms_collide_and_keeps_no_later_frame():
    class _Attract(Calculator):
        """Pulls atoms 0 and 1 together hard: the first frame closer than 0.5 A stops the run."""

        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=None, system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            forces = np.zeros((len(self.atoms), 3))
            pull = self.atoms.positions[1] - self.atoms.positions[0]
            forces[0], forces[1] = 50 * pull, -50 * pull
            self.results = {"energy": 0.0, "forces": forces}

    settings = SMDSettings(n_steps=400, relax_steps=0, thermostat=Thermostat("nve", 0.0))
    start = StartState(build_alkane(2), PulledAtoms.pair(2, 5))
    trace = run_smd(start, _Attract(), settings)
    assert trace.stopped_reason.startswith("atoms closer than")
    gaps = np.linalg.norm(trace.positions_A[:, 0] - trace.positions_A[:, 1], axis=1)
    assert gaps[-1] < 0.5 and np.all(gaps[:-1] >= 0.5)


class _CrashesAfter(_BlowsUp):
    """Morse chemistry whose program 'crashes' (raises) after a number of calls."""

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        if self.calls >= self.good_calls:
            raise RuntimeError("SCF did not converge in 250 iterations")
        super().calculate(atoms, properties, system_changes)


def test_smd_keeps_its_frames_when_the_calculator_raises():
    settings = SMDSettings(n_steps=500, relax_steps=0, thermostat=Thermostat("nve", 0.0))
    start = StartState(build_alkane(2)[:2], PulledAtoms.pair(0, 1))
    trace = run_smd(start, _CrashesAfter(good_calls=50), settings)
    assert trace.stopped_reason.startswith("calculator failed")
    assert "SCF did not converge" in trace.stopped_reason
    assert 45 <= trace.n_frames <= 50
    with pytest.raises(RarelearnError, match="failed at the start"):
        run_smd(start, _CrashesAfter(good_calls=0), settings)
