"""Batched steered-MD replicas: the same trajectories as run_smd, replica by replica."""

import numpy as np
import pytest
from ase.calculators.morse import MorsePotential

from rarelearn.dynamics import (
    ReplicaForces,
    SMDSettings,
    StartState,
    Thermostat,
    draw_velocities,
    frame_by_frame,
    relax_replicas,
    relax_start_state,
    run_smd,
    run_smd_replicas,
)
from rarelearn.errors import ConfigError
from rarelearn.molecules import PulledAtoms, build_alkane


def _morse() -> MorsePotential:
    """All-pairs Morse 'carbon': cheap, smooth, and breaks when pulled hard enough."""
    return MorsePotential(epsilon=3.6, r0=1.53, rho0=6.0)


def _chain():
    """The carbon backbone of all-trans butane (Morse has no C-H chemistry)."""
    atoms = build_alkane(4)
    return atoms[[i for i, z in enumerate(atoms.numbers) if z == 6]]


def _starts(n: int, temperature: float = 10.0) -> list[StartState]:
    starts = []
    for seed in range(n):
        atoms = _chain()
        draw_velocities(atoms, temperature, seed=seed)
        starts.append(StartState(atoms=atoms, pulled=PulledAtoms.pair(0, 3)))
    return starts


@pytest.mark.parametrize("thermostat", [Thermostat("berendsen", 10.0), Thermostat("nve", 0.0)])
def test_replicas_follow_run_smd_frame_for_frame(thermostat: Thermostat) -> None:
    """The written-out Berendsen/velocity-Verlet step is ASE's: three replicas in one batch
    reproduce three separate run_smd calls (ASE integrators) with the same force field."""
    settings = SMDSettings(
        n_steps=300, relax_steps=0, pull_speed_A_per_ps=20.0, thermostat=thermostat
    )
    starts = _starts(3)
    numbers = starts[0].atoms.numbers
    batched = run_smd_replicas(starts, frame_by_frame(_morse(), numbers), settings)
    for start, got in zip(starts, batched, strict=True):
        want = run_smd(start, _morse(), settings)
        assert got.n_frames == want.n_frames == 301
        np.testing.assert_allclose(got.positions_A, want.positions_A, rtol=0, atol=1e-10)
        np.testing.assert_allclose(got.work_eV, want.work_eV, rtol=0, atol=1e-10)
        np.testing.assert_allclose(got.kinetic_eV, want.kinetic_eV, rtol=0, atol=1e-12)
        np.testing.assert_allclose(got.energy_eV, want.energy_eV, rtol=0, atol=1e-10)
        got_summary, want_summary = got.summary(), want.summary()
        assert got_summary.pop("broken_bond") == want_summary.pop("broken_bond")
        assert got_summary.pop("stopped_reason") == want_summary.pop("stopped_reason")
        assert got_summary == pytest.approx(want_summary)
    assert batched[0].work_eV[-1] > 0.5  # the spring really pulled
    assert not np.allclose(batched[0].positions_A, batched[1].positions_A)


def test_batched_relaxation_equals_relax_start_state_per_seed() -> None:
    settings = SMDSettings(relax_steps=200, thermostat=Thermostat("berendsen", 300.0))
    atoms, pulled = _chain(), PulledAtoms.pair(0, 3)
    force_field = frame_by_frame(_morse(), atoms.numbers)
    batched = relax_replicas(atoms, force_field, pulled, settings, seeds=[4, 5])
    for seed, got in zip([4, 5], batched, strict=True):
        want = relax_start_state(atoms, _morse(), pulled, settings, seed)
        assert got.pulled == want.pulled
        np.testing.assert_allclose(got.atoms.positions, want.atoms.positions, atol=1e-10)
        np.testing.assert_allclose(got.atoms.get_momenta(), want.atoms.get_momenta(), atol=1e-10)
    assert not np.allclose(batched[0].atoms.positions, batched[1].atoms.positions)
    assert not np.allclose(batched[0].atoms.positions, atoms.positions, atol=1e-3)


def test_a_replica_that_blows_up_leaves_the_batch_and_the_others_finish() -> None:
    settings = SMDSettings(n_steps=200, relax_steps=0)
    starts = _starts(3)
    starts[1].atoms.positions += [100.0, 0.0, 0.0]  # Morse is translation invariant: a marker
    morse = frame_by_frame(_morse(), starts[0].atoms.numbers)
    calls = {"n": 0}

    def force_field(positions: np.ndarray) -> ReplicaForces:
        """Morse, except that the marked replica's energy turns NaN from the 80th call."""
        calls["n"] += 1
        result = morse(positions)
        if calls["n"] >= 80:
            result.energy[positions[:, 0, 0] > 50.0] = np.nan
        return result

    traces = run_smd_replicas(starts, force_field, settings)
    assert traces[1].stopped_reason.startswith("non-finite")
    assert traces[1].n_frames == 79  # the NaN frame is not kept
    for k in (0, 2):
        assert traces[k].stopped_reason == "completed" and traces[k].n_frames == 201


def test_force_field_failure_keeps_the_frames_of_every_replica() -> None:
    settings = SMDSettings(n_steps=200, relax_steps=0)
    calls = {"n": 0}

    def flaky(positions: np.ndarray) -> ReplicaForces:
        calls["n"] += 1
        if calls["n"] > 40:
            raise RuntimeError("SCF did not converge")
        return frame_by_frame(_morse(), starts[0].atoms.numbers)(positions)

    starts = _starts(2)
    traces = run_smd_replicas(starts, flaky, settings)
    for trace in traces:
        assert trace.n_frames == 40
        assert "SCF did not converge" in trace.stopped_reason


def test_bad_replica_input_is_rejected_clearly() -> None:
    settings = SMDSettings(n_steps=10, relax_steps=0)
    force_field = frame_by_frame(_morse(), _chain().numbers)
    with pytest.raises(ConfigError, match="langevin"):
        run_smd_replicas(
            _starts(1), force_field, settings.with_changes(thermostat=Thermostat("langevin"))
        )
    with pytest.raises(ConfigError, match="same molecule"):
        mixed = [*_starts(1), StartState(build_alkane(2), PulledAtoms.pair(0, 1))]
        run_smd_replicas(mixed, force_field, settings)
    with pytest.raises(ConfigError, match="langevin"):
        relax_replicas(
            _chain(),
            force_field,
            PulledAtoms.pair(0, 3),
            settings.with_changes(thermostat=Thermostat("langevin")),
            seeds=[0],
        )
    with pytest.raises(ConfigError, match="at least one"):
        run_smd_replicas([], force_field, settings)
