"""Molecules beyond the static AEV tables (> 64 atoms): the committee's ASE calculator with
UQ, its forces against finite differences, training, and steered MD, through TorchANI's
neighbour-list AEV; that path equal to the static tables on a molecule both can do."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.fd import calculate_numerical_forces
from ase.calculators.morse import MorsePotential
from ase.calculators.singlepoint import SinglePointCalculator

from rarelearn.committee import Committee
from rarelearn.dynamics import (
    SMDSettings,
    StartState,
    Thermostat,
    draw_velocities,
    run_smd,
    run_smd_replicas,
)
from rarelearn.molecules import build_alkane, default_pulled_atoms
from rarelearn.potentials import ANIModel, ANISettings, ModelError
from rarelearn.potentials.ani.aev import (
    LARGE_MOLECULE_CHUNK,
    MAX_STATIC_ATOMS,
    NeighborListAEV,
    StaticAEV,
    molecule_aev,
)
from rarelearn.potentials.ani.features import TrainingFeatures
from rarelearn.potentials.ani.training import backward_batch, batch_loss

SMALL = ANISettings(layers={"H": (24, 16), "C": (24, 16)})


def _committee(dtype: torch.dtype = torch.float32) -> Committee:
    """Three untrained members with distinct self energies; member 1 is the best (driver),
    so the member order of the fused force path is exercised."""
    members = []
    for seed in range(3):
        member = ANIModel.untrained(["H", "C"], SMALL, seed=seed).to_dtype(dtype)
        member.self_energies = {"H": -0.5 - 0.01 * seed, "C": -37.8 + 0.02 * seed}
        members.append(member)
    metrics = [{"val_force_mae_eV_A": v, "all_force_mae_eV_A": v} for v in (0.3, 0.1, 0.2)]
    return Committee(members=members, splits=[{"train": [0], "val": []}] * 3, metrics=metrics)


def _shaken(n_carbons: int, seed: int = 0, sigma: float = 0.05) -> Atoms:
    atoms = build_alkane(n_carbons)
    atoms.positions += np.random.default_rng(seed).normal(0.0, sigma, atoms.positions.shape)
    return atoms


@pytest.fixture(scope="module")
def committee() -> Committee:
    return _committee()


@pytest.fixture(scope="module")
def committee64() -> Committee:
    return _committee(torch.float64)


def test_the_path_is_chosen_by_size(committee: Committee) -> None:
    assert len(build_alkane(20)) <= MAX_STATIC_ATOMS < len(build_alkane(21)) == 65
    small = committee.evaluator(build_alkane(20).numbers)
    large = committee.evaluator(build_alkane(21).numbers)
    assert isinstance(small.aev, StaticAEV) and isinstance(large.aev, NeighborListAEV)
    member = committee.members[0]
    elem = member.species_index(build_alkane(21).numbers)
    with pytest.raises(ValueError, match="NeighborListAEV"):
        molecule_aev(member.aev_computer, elem, "static")
    with pytest.raises(ValueError, match="AEV path"):
        molecule_aev(member.aev_computer, elem, "cell_list")


def test_large_molecule_force_path_is_bit_identical_from_the_first_call_on(committee) -> None:
    """As for the static tables (tests/test_committee.py): a fresh evaluator, as a resumed
    campaign builds one, reproduces a warm one bit for bit."""
    atoms = _shaken(21)
    first = committee.evaluator(atoms.numbers)
    calls = [first(atoms.positions) for _ in range(3)]
    fresh = committee.evaluator(atoms.numbers)(atoms.positions)
    for result in [*calls[1:], fresh]:
        np.testing.assert_array_equal(result.forces, calls[0].forces)
        np.testing.assert_array_equal(result.energies, calls[0].energies)


@pytest.mark.parametrize(
    ("dtype", "atol"), [(torch.float32, 1e-5), (torch.float64, 1e-10)], ids=["f32", "f64"]
)
def test_neighbor_list_path_equals_the_static_tables(dtype: torch.dtype, atol: float) -> None:
    """On hexane (20 atoms, both paths apply): member energies, driving forces (fused force
    path), every member's forces and their spread, the mean driver and a batch of replicas."""
    committee = _committee(dtype)
    frames = [_shaken(6, seed) for seed in range(3)]
    numbers = frames[0].numbers
    for driver in (None, "mean"):
        static = committee.evaluator(numbers, driver=driver, aev_path="static")
        listed = committee.evaluator(numbers, driver=driver, aev_path="neighbor_list")
        assert isinstance(static.aev, StaticAEV) and isinstance(listed.aev, NeighborListAEV)
        for frame in frames:
            for forces in ("best", "all"):
                a, b = static(frame.positions, forces), listed(frame.positions, forces)
                np.testing.assert_allclose(b.energies, a.energies, rtol=0, atol=atol)
                np.testing.assert_allclose(b.forces, a.forces, rtol=0, atol=atol)
                assert b.energy_std == pytest.approx(a.energy_std, abs=atol)
            np.testing.assert_allclose(b.member_forces, a.member_forces, rtol=0, atol=atol)
            np.testing.assert_allclose(b.force_std, a.force_std, rtol=0, atol=atol)
        positions = np.stack([f.positions for f in frames])
        a, b = static.batch(positions), listed.batch(positions)
        np.testing.assert_allclose(b.energies, a.energies, rtol=0, atol=atol)
        np.testing.assert_allclose(b.forces, a.forces, rtol=0, atol=atol)


def test_large_molecule_calculator_gives_member_energies_and_uq(tmp_path, committee) -> None:
    """C21H44 through a saved and loaded committee's calculator (the issue's case): every
    member's energy and forces as each member's own TorchANI prediction gives them."""
    atoms = _shaken(21)
    loaded = Committee.load(committee.save(tmp_path / "committee"))
    atoms.calc = loaded.calculator("best")
    forces = atoms.get_forces()
    results = atoms.calc.results
    per_member = [m.predict([atoms]) for m in committee.members]
    want_e = np.array([e[0] for e, _ in per_member])
    want_f = np.array([f[0] for _, f in per_member])
    np.testing.assert_allclose(results["member_energies"], want_e, rtol=0, atol=1e-4)
    assert atoms.get_potential_energy() == pytest.approx(want_e[1], abs=1e-4)
    np.testing.assert_allclose(forces, want_f[1], rtol=0, atol=1e-5)
    assert results["energy_std"] == pytest.approx(want_e.std(), abs=1e-4)
    spread = np.sqrt(((want_f - want_f.mean(0)) ** 2).sum(-1).mean(0))
    assert results["forces_std"].shape == (65,)
    np.testing.assert_allclose(results["forces_std"], spread, rtol=0, atol=1e-5)
    atoms.calc = loaded.calculator("mean", force_uq=False)
    np.testing.assert_allclose(atoms.get_forces(), want_f.mean(0), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("mode", "force_uq"), [("best", False), ("best", True), ("mean", False)], ids=str
)
def test_large_molecule_forces_match_finite_differences(committee64, mode, force_uq) -> None:
    """float64, 65 atoms: the fused force path (``best`` without force UQ), the autograd
    path of every member's forces, and the mean's forces are minus the energy gradient."""
    atoms = _shaken(21, seed=1)
    atoms.calc = committee64.calculator(mode, force_uq=force_uq)
    picked = [0, 7, 20, 21, 40, 64]  # carbons at the ends and in the middle, hydrogens
    numerical = calculate_numerical_forces(atoms, eps=1e-4, iatoms=picked)
    np.testing.assert_allclose(atoms.get_forces()[picked], numerical, rtol=0, atol=1e-7)


def test_training_on_a_large_molecule_takes_the_autograd_path() -> None:
    """A committee trains on C21H44 frames: the Jacobian path (static tables) does not apply,
    so the features are the plain AEVs and the loss differentiates through TorchANI."""
    reference = MorsePotential(epsilon=0.2, r0=1.4, rho0=4.0)
    frames = []
    for seed in range(6):
        atoms = _shaken(21, seed)
        atoms.calc = reference
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        frames.append(atoms)
    settings = copy.deepcopy(SMALL)
    settings.epochs, settings.batch_size = 2, 4
    model = ANIModel(["H", "C"], settings)
    assert not model.training_features(frames).with_jacobian
    with pytest.raises(ModelError, match="64 atoms"):
        TrainingFeatures(model, frames, with_jacobian=True)
    trained = Committee.train(frames, 3, settings, seed=0)
    for member, metrics in zip(trained.members, trained.metrics, strict=True):
        assert member.history.epochs_run == 2
        assert all(np.isfinite(v) for v in metrics.values())
    atoms = frames[0].copy()
    atoms.calc = trained.calculator("best")
    assert np.isfinite(atoms.get_forces()).all() and atoms.calc.results["energy_std"] > 0


def test_steered_md_of_a_large_molecule_batched_as_frame_by_frame(committee64) -> None:
    """NVE pulls of C21H44 on the committee's replica force field (two replicas in one batch)
    follow run_smd on its calculator step for step, and the total energy changes by the
    work the spring did."""
    starts = []
    for seed in range(2):
        atoms = build_alkane(21)
        draw_velocities(atoms, 50.0, seed=seed)
        starts.append(StartState(atoms=atoms, pulled=default_pulled_atoms(atoms)))
    settings = SMDSettings(
        n_steps=40, relax_steps=0, pull_speed_A_per_ps=10.0, thermostat=Thermostat("nve", 0.0)
    )
    numbers = starts[0].atoms.numbers
    force_field = committee64.replica_force_field(numbers, threads=1)
    traces = run_smd_replicas(starts, force_field, settings)
    calculator = committee64.calculator("best", force_uq=False)
    for start, trace in zip(starts, traces, strict=True):
        assert trace.n_frames == 41 and trace.uq_eV is not None
        one = run_smd(start, calculator, settings)
        np.testing.assert_allclose(trace.positions_A, one.positions_A, rtol=0, atol=1e-9)
        np.testing.assert_allclose(trace.uq_eV, one.uq_eV, rtol=0, atol=1e-9)
        spring = (
            0.5 * settings.spring_constant_eV_per_A2 * (trace.distance_A - trace.rest_length_A) ** 2
        )
        total = trace.kinetic_eV + trace.energy_eV + spring
        assert trace.work_eV[-1] > 0.1
        np.testing.assert_allclose(total - total[0], trace.work_eV, rtol=0, atol=1e-3)


def test_large_molecule_batches_in_chunks_give_the_whole_batch_gradient() -> None:
    """Beyond 64 atoms a batch is differentiated a few frames at a time (memory): the loss and
    gradient must be the whole batch's, computed here in one pass (float64)."""
    reference = MorsePotential(epsilon=0.2, r0=1.4, rho0=4.0)
    frames = []
    for seed in range(LARGE_MOLECULE_CHUNK + 3):  # two chunks, the second one short
        atoms = _shaken(21, seed)
        atoms.calc = reference
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        frames.append(atoms)
    model = ANIModel(["H", "C"], SMALL).to_dtype(torch.float64)
    model.self_energies = {"H": -0.5, "C": -37.8}
    group = model.training_features(frames).groups[0]
    rows = torch.arange(len(frames))
    whole = batch_loss(model, group, rows, fast=False)
    expected = torch.autograd.grad(whole, list(model.networks.parameters()))
    loss = backward_batch(model, group, rows, fast=False)
    assert loss == pytest.approx(whole.item(), rel=1e-12)
    for parameter, gradient in zip(model.networks.parameters(), expected, strict=True):
        torch.testing.assert_close(parameter.grad, gradient, rtol=1e-10, atol=1e-12)


def test_large_molecule_validation_aevs_in_chunks_equal_one_pass() -> None:
    """Beyond 64 atoms the features' AEVs are computed `LARGE_MOLECULE_CHUNK` frames a pass
    (memory); they must be the AEVs of one pass over all frames."""
    frames = [_shaken(21, seed) for seed in range(2 * LARGE_MOLECULE_CHUNK + 1)]
    for atoms in frames:
        atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=np.zeros((len(atoms), 3)))
    model = ANIModel(["H", "C"], SMALL)
    group = model.training_features(frames).groups[0]
    assert group["n_atoms"] > MAX_STATIC_ATOMS
    species = group["elem"].expand(len(frames), -1).contiguous()
    with torch.no_grad():
        one_pass = model.aev_computer(species, group["coords"])
    torch.testing.assert_close(group["aev"], one_pass, rtol=1e-6, atol=1e-6)
