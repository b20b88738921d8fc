"""ANI model: physics (forces = -grad E), training, determinism, fast path == TorchANI as is,
save/load/TorchScript, and clear errors on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from _ani_data import xtb_md_frames
from rarelearn.errors import RarelearnError
from rarelearn.potentials import ANIModel, ANISettings, ModelError
from rarelearn.potentials.ani.features import TrainingFeatures
from rarelearn.potentials.ani.training import batch_loss


@pytest.fixture(scope="module")
def propane() -> list[Atoms]:
    """300 GFN2-xTB frames of propane at 500 K (a few seconds)."""
    return xtb_md_frames(3, 300, seed=0)


@pytest.fixture(scope="module")
def trained(propane: list[Atoms]) -> ANIModel:
    return ANIModel.fit(propane[:250], ANISettings(epochs=40), seed=1)


def _untrained_like(model: ANIModel, seed: int) -> ANIModel:
    fresh = ANIModel(model.elements, model.settings, seed=seed)
    fresh.self_energies = dict(model.self_energies)
    return fresh


def test_aev_has_128_features_for_h_and_c() -> None:
    assert ANIModel(["C", "H"]).aev_dim == 128
    assert ANIModel(["C", "H"]).elements == ["H", "C"]


@pytest.mark.parametrize("fast", [True, False])
def test_forces_are_minus_gradient_of_energy_float64(propane: list[Atoms], fast: bool) -> None:
    model = ANIModel(["H", "C"], seed=3).to_dtype(torch.float64)
    model.self_energies = {"H": -10.0, "C": -40.0}
    atoms = propane[17]
    coords = torch.tensor(atoms.positions[None], dtype=torch.float64)
    _, forces = model.energies_forces(atoms.numbers, coords, fast=fast)
    h = 1e-5
    fd = np.zeros_like(forces[0])
    for i in range(len(atoms)):
        for k in range(3):
            plus, minus = coords.clone(), coords.clone()
            plus[0, i, k] += h
            minus[0, i, k] -= h
            ep, _ = model.energies_forces(atoms.numbers, plus, forces=False, fast=fast)
            em, _ = model.energies_forces(atoms.numbers, minus, forces=False, fast=fast)
            fd[i, k] = -(ep[0] - em[0]) / (2 * h)
    assert np.abs(forces[0]).max() > 0.01  # the check is not trivially zero
    np.testing.assert_allclose(forces[0], fd, atol=1e-6)


def test_fast_path_equals_torchani_as_is(propane: list[Atoms], trained: ANIModel) -> None:
    """Same predictions, same training loss and gradients: the speed-up keeps the physics."""
    frames = propane[250:]
    e_fast, f_fast = trained.predict(frames, fast=True)
    e_base, f_base = trained.predict(frames, fast=False)
    np.testing.assert_allclose(e_fast, e_base, atol=2e-4, rtol=0)
    np.testing.assert_allclose(np.array(f_fast), np.array(f_base), atol=2e-4, rtol=0)

    model = _untrained_like(trained, seed=5)
    fast = TrainingFeatures(model, frames, with_jacobian=True).groups[0]
    base = TrainingFeatures(model, frames, with_jacobian=False).groups[0]
    rows = torch.arange(len(frames))
    grads = []
    for grp, is_fast in ((fast, True), (base, False)):
        model.networks.zero_grad()
        loss = batch_loss(model, grp, rows, is_fast)
        loss.backward()
        grads.append(
            (loss.item(), torch.cat([p.grad.flatten() for p in model.networks.parameters()]))
        )
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-6)


def test_training_lowers_validation_error(propane: list[Atoms], trained: ANIModel) -> None:
    held_out = propane[250:]
    ref_e = np.array([f.get_potential_energy() for f in held_out])
    ref_f = np.array([f.get_forces() for f in held_out])
    before_e, before_f = _untrained_like(trained, seed=1).predict(held_out)
    after_e, after_f = trained.predict(held_out)
    mae = lambda a, b: float(np.abs(np.asarray(a) - b).mean())  # noqa: E731
    assert mae(after_e, ref_e) < mae(before_e, ref_e) / 5
    assert mae(after_f, ref_f) < mae(before_f, ref_f) / 3
    hist = trained.history
    assert min(hist.val_energy_mse) < hist.val_energy_mse[0] / 3
    assert hist.metrics["val_energy_mae_eV"] < 0.1


def test_same_seed_bit_identical_different_seed_differs(propane: list[Atoms]) -> None:
    frames = propane[:96]
    settings = ANISettings(epochs=2, batch_size=32)
    a = ANIModel.fit(frames, settings, seed=7)
    b = ANIModel.fit(frames, settings, seed=7)
    c = ANIModel.fit(frames, settings, seed=8)
    sa, sb, sc = (m.networks.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_save_load_and_torchscript_agree(tmp_path, propane: list[Atoms], trained: ANIModel):
    frames = propane[250:260]
    e, f = trained.predict(frames)
    trained.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["elements"] == ["H", "C"] and set(meta["self_energies_eV"]) == {"H", "C"}
    loaded = ANIModel.load(tmp_path / "m")
    e2, f2 = loaded.predict(frames)
    np.testing.assert_array_equal(e, e2)
    np.testing.assert_array_equal(np.array(f), np.array(f2))

    trained.to_torchscript(tmp_path / "ani.pt")
    scripted = torch.jit.load(str(tmp_path / "ani.pt"))
    numbers = torch.tensor(np.array([fr.numbers for fr in frames]))
    coords = torch.tensor(np.array([fr.positions for fr in frames]), dtype=torch.float32)
    coords.requires_grad_(True)
    e_ts = scripted(numbers, coords)
    f_ts = -torch.autograd.grad(e_ts.sum(), coords)[0]
    np.testing.assert_allclose(e_ts.detach().numpy(), e, atol=2e-4, rtol=0)
    np.testing.assert_allclose(f_ts.numpy(), np.array(f), atol=2e-4, rtol=0)


def test_warm_start_starts_from_earlier_weights(propane: list[Atoms], trained: ANIModel):
    settings = ANISettings(epochs=1)
    warm = ANIModel.fit(propane[:64], settings, seed=1, init=trained)
    cold = ANIModel.fit(propane[:64], settings, seed=1)
    held = propane[250:]
    ref = np.array([f.get_potential_energy() for f in held])
    err = lambda m: np.abs(m.predict(held, forces=False)[0] - ref).mean()  # noqa: E731
    assert err(warm) < err(cold) / 3


def test_mixed_molecule_sizes_train_and_predict(propane: list[Atoms]) -> None:
    ethane = xtb_md_frames(2, 40, seed=2)
    frames = propane[:60] + ethane
    model = ANIModel.fit(frames, ANISettings(epochs=2), seed=0)
    e, f = model.predict([ethane[0], propane[0]])
    assert e.shape == (2,) and f[0].shape == (8, 3) and f[1].shape == (11, 3)


def test_unknown_element_is_one_clear_error(trained: ANIModel) -> None:
    water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    water.calc = SinglePointCalculator(water, energy=0.0, forces=np.zeros((3, 3)))
    with pytest.raises(ModelError, match="O") as info:
        trained.predict([water])
    assert isinstance(info.value, RarelearnError)
    with pytest.raises(ModelError, match="O"):
        trained.energy_and_forces(water)


def test_missing_or_corrupted_folder_is_one_clear_error(tmp_path, trained: ANIModel) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        ANIModel.load(tmp_path / "nowhere")
    folder = trained.save(tmp_path / "m")
    (folder / "weights.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="corrupted"):
        ANIModel.load(folder)
    folder = trained.save(tmp_path / "m2")
    (folder / "model.json").unlink()
    with pytest.raises(ModelError, match="corrupted"):
        ANIModel.load(folder)
    folder = trained.save(tmp_path / "m3")
    (folder / "model.json").write_text("{ broken")
    with pytest.raises(RarelearnError):
        ANIModel.load(folder)


def test_static_aev_pullback_equals_autograd_float64(propane: list[Atoms]) -> None:
    """The steered-MD force path (autograd on TorchANI's term functions only, product rule and
    geometry written out) equals autograd through TorchANI's whole angular/radial modules,
    for one frame and for a batch of replicas, including a squeezed frame with short contacts."""
    model = ANIModel(["H", "C"], seed=3).to_dtype(torch.float64)
    squeezed = propane[40].positions * 0.8
    positions = np.stack([propane[40].positions, propane[41].positions, squeezed])
    static = model.static_aev(propane[40].numbers)
    rng = torch.Generator().manual_seed(0)
    for coords in (torch.tensor(positions[:1]), torch.tensor(positions)):
        aev, pullback = static.aev_and_pullback(coords)
        leaf = coords.clone().requires_grad_(True)
        ref = static(leaf)
        torch.testing.assert_close(aev, ref.detach(), rtol=0, atol=1e-12)
        grad_aev = torch.randn(aev.shape, dtype=torch.float64, generator=rng)
        want = torch.autograd.grad(ref, leaf, grad_aev)[0]
        got = pullback(grad_aev)
        assert want.abs().max() > 0.1
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
