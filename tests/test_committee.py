"""Committee: splits (random, inherited), training (in order and through an executor),
save/load, UQ far from the data, fast evaluator == TorchANI as is, ASE NVE energy
conservation, and the metrics."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet

from _ani_data import stretched, xtb_md_frames
from rarelearn.committee import Committee, CommitteeCalculator, frame_ids, make_splits
from rarelearn.metrics import energy_mae, evaluate, force_mae, relative_energy_mae
from rarelearn.potentials import ANISettings, ModelError
from rarelearn.units import EV_TO_KCAL_MOL


@pytest.fixture(scope="module")
def propane() -> list[Atoms]:
    return xtb_md_frames(3, 300, seed=0)


@pytest.fixture(scope="module")
def committee(propane: list[Atoms]) -> Committee:
    return Committee.train(propane[:250], n_members=3, settings=ANISettings(epochs=40), seed=0)


class ListExecutor:
    """The executor contract: map(fn, items) -> list, in order."""

    def __init__(self) -> None:
        self.calls = 0

    def map(self, fn, items):
        self.calls += 1
        return [fn(item) for item in items]


def test_random_splits_differ_between_members_and_cover_all_ids() -> None:
    ids = list(range(100, 200))
    splits = make_splits(ids, 5, "random", seed=3)
    for sp in splits:
        assert sorted(sp["train"] + sp["val"]) == ids
        assert len(sp["val"]) == 20
    assert len({tuple(sp["val"]) for sp in splits}) == 5


def test_inherited_splits_keep_earlier_assignment_and_split_only_new_ids() -> None:
    old_ids = list(range(100))
    previous = make_splits(old_ids, 1, "random", seed=1)[0]
    new_ids = list(range(1000, 1050))
    splits = make_splits(old_ids + new_ids, 3, "inherited", previous=previous, seed=2)
    for sp in splits:
        assert set(previous["train"]) <= set(sp["train"])
        assert set(previous["val"]) <= set(sp["val"])
        new_train = set(sp["train"]) - set(previous["train"])
        new_val = set(sp["val"]) - set(previous["val"])
        assert new_train | new_val == set(new_ids) and not new_train & new_val
        assert len(new_val) == 10
    assert len({tuple(sp["val"]) for sp in splits}) == 3  # new frames split per member


def test_frame_ids_use_store_id_else_index(propane: list[Atoms]) -> None:
    frames = [f.copy() for f in propane[:3]]
    frames[0].info["id"] = 42
    frames[1].info.pop("id")
    frames[2].info.pop("id")
    assert frame_ids(frames) == [42, 1, 2]
    frames[1].info["id"] = 42
    with pytest.raises(ModelError):
        frame_ids(frames)


def test_committee_best_member_metrics_and_save_load(tmp_path, committee, propane) -> None:
    m = committee.metrics
    assert committee.n_members == 3
    assert committee.best_index == int(np.argmin([x["val_force_mae_eV_A"] for x in m]))
    assert committee.inherit_index == int(np.argmin([x["all_force_mae_eV_A"] for x in m]))
    folder = committee.save(tmp_path / "c")
    info = json.loads((folder / "committee.json").read_text())
    assert info["best_index"] == committee.best_index and len(info["metrics"]) == 3
    assert sorted(p.name for p in folder.iterdir()) == [
        "committee.json",
        "member_0",
        "member_1",
        "member_2",
        "splits.json",
    ]
    loaded = Committee.load(folder)
    assert loaded.splits == committee.splits and loaded.best_index == committee.best_index
    a = committee.predict(propane[250:255])
    b = loaded.predict(propane[250:255])
    np.testing.assert_array_equal(a.energies, b.energies)
    (folder / "splits.json").write_text("[")
    with pytest.raises(ModelError, match="corrupted"):
        Committee.load(folder)
    with pytest.raises(ModelError, match="does not exist"):
        Committee.load(tmp_path / "absent")


def test_inherited_committee_from_saved_folder(tmp_path, propane: list[Atoms]) -> None:
    settings = ANISettings(epochs=1)
    first = Committee.train(propane[:100], 2, settings, strategy="random", seed=0)
    folder = first.save(tmp_path / "it0")
    inherited = first.inherited_split()
    second = Committee.train(propane[:150], 2, settings, strategy="inherited", previous=folder)
    for sp in second.splits:
        assert set(inherited["train"]) <= set(sp["train"])
        assert set(inherited["val"]) <= set(sp["val"])
        assert set(sp["train"]) | set(sp["val"]) == set(range(150))


def test_executor_training_equals_in_process_training(propane: list[Atoms]) -> None:
    settings = ANISettings(epochs=2)
    ex = ListExecutor()
    a = Committee.train(propane[:80], 2, settings, seed=4, executor=ex)
    b = Committee.train(propane[:80], 2, settings, seed=4)
    assert ex.calls == 1
    for ma, mb in zip(a.members, b.members, strict=True):
        sa, sb = ma.networks.state_dict(), mb.networks.state_dict()
        assert all((sa[k] == sb[k]).all() for k in sa)


def test_members_side_by_side_equal_members_one_after_another(propane: list[Atoms]) -> None:
    """Threads change when a member trains, never what it computes: bit-identical weights
    and metrics for 1 thread, 2 threads and one thread per member."""
    settings = ANISettings(epochs=3)
    runs = [Committee.train(propane[:90], 3, settings, seed=5, threads=t) for t in (1, 2, None)]
    for other in runs[1:]:
        assert other.metrics == runs[0].metrics
        for ma, mb in zip(runs[0].members, other.members, strict=True):
            sa, sb = ma.networks.state_dict(), mb.networks.state_dict()
            assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_uq_larger_far_from_training_data(committee: Committee, propane: list[Atoms]) -> None:
    near = committee.predict(propane[250:])
    far = committee.predict([stretched(f, 1.3) for f in propane[250:]])
    assert near.energies.shape == (3, 50) and near.forces.shape == (3, 50, 11, 3)
    assert np.median(far.energy_std) > 2 * np.median(near.energy_std)
    assert np.median(far.force_std) > np.median(near.force_std)


def test_uq_of_members_that_differ_only_by_self_energies(committee, propane) -> None:
    """Three copies of one trained member whose self energies are shifted by 0, +1, -1 times
    (delta_C, delta_H) predict E, E + s, E - s with s = 3 delta_C + 8 delta_H for propane:
    the energy std (population, ddof=0) is |s| sqrt(2/3) on every path (predict, the fast
    evaluator in each force mode, a batch of replicas, the ASE calculator), and the forces are
    the same for all members, so their spread is zero. Identical copies give zero std."""
    base = committee.members[0]
    delta = {"C": 0.1, "H": -0.02}
    shift = 3 * delta["C"] + 8 * delta["H"]  # 0.14 eV on C3H8
    expected = abs(shift) * np.sqrt(2.0 / 3.0)  # std of (0, +s, -s)
    members = []
    for sign in (0, 1, -1):
        member = copy.deepcopy(base)
        member.self_energies = {s: e + sign * delta[s] for s, e in base.self_energies.items()}
        members.append(member)
    shifted = Committee(members=members, splits=[committee.splits[0]] * 3)
    frames = propane[250:256]

    out = shifted.predict(frames)
    np.testing.assert_allclose(out.energies[1] - out.energies[0], shift, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out.energies[2] - out.energies[0], -shift, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out.energy_std, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out.force_std, 0.0, rtol=0, atol=1e-9)

    ev = shifted.evaluator(frames[0].numbers)
    for frame in frames[:2]:
        for mode in ("best", "mean", "all"):
            res = ev(frame.positions, forces=mode)
            assert res.energy_std == pytest.approx(expected, abs=1e-5)
            np.testing.assert_allclose(
                res.energies - res.energies[0], [0, shift, -shift], atol=1e-5
            )
        np.testing.assert_allclose(res.force_std, 0.0, rtol=0, atol=1e-5)
        np.testing.assert_allclose(res.member_forces, res.member_forces[[0, 0, 0]], atol=1e-5)
    replicas = ev.batch(np.stack([f.positions for f in frames]))
    np.testing.assert_allclose(replicas.energy_std, expected, rtol=0, atol=1e-5)

    atoms = frames[0].copy()
    atoms.calc = CommitteeCalculator(shifted, mode="best", force_uq=True)
    atoms.get_forces()
    assert atoms.calc.results["energy_std"] == pytest.approx(expected, abs=1e-5)
    np.testing.assert_allclose(atoms.calc.results["forces_std"], 0.0, rtol=0, atol=1e-5)

    same = Committee(members=[base, copy.deepcopy(base)], splits=[committee.splits[0]] * 2)
    np.testing.assert_allclose(same.predict(frames).energy_std, 0.0, rtol=0, atol=1e-9)


def test_fast_evaluator_equals_torchani_as_is(committee: Committee, propane: list[Atoms]):
    frame = propane[260]
    ev = committee.evaluator(frame.numbers)
    ref = [m.predict([frame], fast=False) for m in committee.members]
    ref_e = np.array([e[0] for e, _ in ref])
    ref_f = np.array([f[0] for _, f in ref])
    for mode in ("best", "mean", "all"):
        res = ev(frame.positions, forces=mode)
        np.testing.assert_allclose(res.energies, ref_e, atol=2e-4, rtol=0)
        want = ref_f.mean(0) if mode == "mean" else ref_f[committee.best_index]
        np.testing.assert_allclose(res.forces, want, atol=2e-4, rtol=0)
        assert res.energy_std == pytest.approx(ref_e.std(), abs=2e-4)
    res = ev(frame.positions, forces="all")
    np.testing.assert_allclose(res.member_forces, ref_f, atol=2e-4, rtol=0)


def test_calculator_runs_velocity_verlet_and_conserves_energy(committee, propane) -> None:
    """NVE, 0.5 fs, 400 steps (0.2 ps) from 300 K, float32 model.

    Measured: drift -7e-6 eV/atom/ps, total-energy range 2.6 meV; bounds 1e-3 and 0.01.
    """
    atoms = propane[270].copy()
    atoms.calc = CommitteeCalculator(committee, mode="best", force_uq=True)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, 0.5 * units.fs)
    totals, stds = [], []

    def record() -> None:
        totals.append(atoms.get_potential_energy() + atoms.get_kinetic_energy())
        stds.append(atoms.calc.results["energy_std"])

    dyn.attach(record, interval=1)
    dyn.run(400)
    assert "forces_std" in atoms.calc.results and atoms.calc.results["forces_std"].shape == (11,)
    assert all(s > 0 for s in stds)
    t_ps = np.arange(len(totals)) * 0.5e-3
    drift = abs(np.polyfit(t_ps, totals, 1)[0]) / len(atoms)  # eV/atom/ps
    assert drift < 1e-3
    assert np.ptp(totals) < 0.01


def test_calculator_results_survive_ase_md_trajectory_and_extxyz(tmp_path, committee, propane):
    """ASE's writers read calculator results by ASE's meaning of the keys: an ASE MD with a
    trajectory attached, then an extxyz round trip, keep energy, forces and the committee's
    per-member energies and spread (a per-member array under ``energies``, ASE's per-atom
    key, made extxyz fail with a broadcast error)."""
    from ase.io import read, write
    from ase.io.trajectory import Trajectory

    atoms = propane[270].copy()
    atoms.calc = committee.calculator("best", force_uq=True)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(1))
    dyn = VelocityVerlet(atoms, 0.5 * units.fs)
    with Trajectory(tmp_path / "md.traj", "w", atoms) as trajectory:
        dyn.attach(trajectory.write, interval=5)
        dyn.run(20)
    frames = read(tmp_path / "md.traj", index=":")
    assert len(frames) == 5
    assert frames[-1].get_potential_energy() == pytest.approx(atoms.get_potential_energy())
    write(tmp_path / "md.extxyz", atoms, format="extxyz")
    back = read(tmp_path / "md.extxyz", format="extxyz")
    np.testing.assert_allclose(back.get_forces(), atoms.get_forces(), atol=1e-6)
    assert back.get_potential_energy() == pytest.approx(atoms.get_potential_energy())
    assert len(atoms.calc.results["member_energies"]) == committee.n_members
    assert atoms.calc.results["forces_std"].shape == (len(atoms),)


def test_metrics() -> None:
    assert energy_mae([1.0, 2.0], [1.5, 1.0]) == pytest.approx(0.75)
    assert relative_energy_mae([1.0, 2.0], [11.0, 12.0]) == pytest.approx(0.0)
    assert relative_energy_mae([1.0, 3.0], [0.0, 0.0]) == pytest.approx(1.0)
    assert force_mae([np.ones((2, 3))], [np.zeros((2, 3))]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        energy_mae([1.0], [1.0, 2.0])


def test_evaluate_on_labeled_frames(committee: Committee, propane: list[Atoms]) -> None:
    frames = propane[250:]
    e, f = committee.best.predict(frames)
    out = evaluate(e, f, frames)
    assert out["energy_mae_kcal_mol"] == pytest.approx(out["energy_mae_eV"] * EV_TO_KCAL_MOL)
    ref = np.array([fr.get_potential_energy() for fr in frames])
    assert out["relative_energy_mae_eV"] == pytest.approx(relative_energy_mae(e, ref))
    assert out["relative_energy_mae_eV"] > 0
    assert 0 < out["force_mae_eV_A"] < 0.5


def test_fast_best_path_equals_autograd_through_the_aev(committee, propane) -> None:
    """The SMD path (one forward for all members, written-out backward of the driver and the
    AEV pullback) equals autograd through the static AEV and stacked networks."""
    ev = committee.evaluator(propane[0].numbers)
    for frame in propane[255:260]:
        x = torch.tensor(frame.positions[None], dtype=torch.float32, requires_grad=True)
        energies = ev.nets(ev.aev(x))[:, 0]
        want_f = -torch.autograd.grad(energies[ev.best], x)[0][0].numpy()
        res = ev(frame.positions, forces="best")
        np.testing.assert_allclose(res.energies, energies.detach().numpy() + ev.sae, atol=1e-5)
        np.testing.assert_allclose(res.forces, want_f, atol=1e-5, rtol=0)


def test_mean_driver_forces_are_the_members_mean_forces(committee, propane) -> None:
    """``driver="mean"``: the forces of the committee-mean energy, i.e. the mean of every
    member's own autograd forces, for one frame, a batch and the ASE calculator."""
    ev = committee.evaluator(propane[0].numbers, driver="mean")
    frames = propane[255:259]
    want = []
    for frame in frames:
        x = torch.tensor(frame.positions[None], dtype=torch.float32, requires_grad=True)
        energies = ev.nets(ev.aev(x))[:, 0]
        members = [
            -torch.autograd.grad(energies[m], x, retain_graph=True)[0][0].numpy()
            for m in range(committee.n_members)
        ]
        want.append(np.mean(members, axis=0))
        res = ev(frame.positions, forces="best")
        np.testing.assert_allclose(res.forces, want[-1], atol=1e-5, rtol=0)
        assert ev.driving_energy(res.energies) == pytest.approx(res.energies.mean())
    batch = ev.batch(np.stack([f.positions for f in frames]))
    np.testing.assert_allclose(batch.forces, np.array(want), atol=1e-5, rtol=0)
    atoms = frames[0].copy()
    atoms.calc = committee.calculator("best", driver="mean")
    np.testing.assert_allclose(atoms.get_forces(), want[0], atol=1e-5, rtol=0)
    members = atoms.calc.results["member_energies"]
    assert atoms.get_potential_energy() == pytest.approx(members.mean())
    with pytest.raises(ValueError, match="driver"):
        committee.calculator("mean", driver="mean")


def test_best_driver_is_the_default_best_member(committee, propane) -> None:
    """``driver="best"`` (the ``committee.driver`` setting's word) is the default: the best
    member's forces, in the evaluator and in the ASE calculator, not another member's."""
    frame = propane[255]
    default = committee.evaluator(frame.numbers)(frame.positions, forces="best")
    named = committee.evaluator(frame.numbers, driver="best")(frame.positions, forces="best")
    np.testing.assert_array_equal(named.forces, default.forces)
    forces = {}
    for driver in (None, "best", (committee.best_index + 1) % committee.n_members):
        atoms = frame.copy()
        atoms.calc = committee.calculator("best", driver=driver)
        forces[driver] = atoms.get_forces()
    np.testing.assert_array_equal(forces["best"], forces[None])
    assert not np.allclose(forces[None], list(forces.values())[-1])


def test_batch_of_replicas_equals_frame_by_frame(committee, propane) -> None:
    """Replicas evaluated in one batch give each frame's own energies, forces and UQ."""
    ev = committee.evaluator(propane[0].numbers)
    positions = np.stack([f.positions for f in propane[250:256]])
    res = ev.batch(positions)
    assert res.energies.shape == (6, committee.n_members)
    for k, pos in enumerate(positions):
        one = ev(pos)
        np.testing.assert_allclose(res.energies[k], one.energies, atol=1e-5, rtol=0)
        np.testing.assert_allclose(res.forces[k], one.forces, atol=1e-5, rtol=0)
        assert res.energy_std[k] == pytest.approx(one.energy_std, abs=1e-5)
    with pytest.raises(ValueError, match="replicas"):
        ev.batch(positions[:, :3])


def test_force_path_is_bit_identical_from_the_first_call_on(committee, propane) -> None:
    """TorchScript must not change its arithmetic after warm-up: a resumed campaign (fresh
    process, cold evaluator) has to reproduce an uninterrupted one bit for bit."""
    frame = propane[250]
    first = committee.evaluator(frame.numbers)
    calls = [first(frame.positions) for _ in range(5)]
    fresh = committee.evaluator(frame.numbers)(frame.positions)
    for result in [*calls[1:], fresh]:
        np.testing.assert_array_equal(result.forces, calls[0].forces)
        np.testing.assert_array_equal(result.energies, calls[0].energies)


def test_calculator_recomputes_only_when_the_geometry_changes(committee, propane) -> None:
    atoms = propane[260].copy()
    calc = CommitteeCalculator(committee, mode="best", force_uq=False)
    atoms.calc = calc
    first = atoms.get_forces()
    assert calc.check_state(atoms) == []
    atoms.positions[0, 0] += 0.01
    assert calc.check_state(atoms) == ["positions"]
    moved = atoms.get_forces()
    assert not np.array_equal(first, moved)
    calc.calculate(propane[260].copy())
    np.testing.assert_array_equal(calc.results["forces"], first)
