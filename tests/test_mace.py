"""MACE family (mace-torch's ScaleShiftMACE): forces = -grad E, save/load, training, seeds,
settings errors, unknown elements, batching of different molecules, and a lazy import."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.fd import calculate_numerical_forces
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers

from _ani_data import alkane, xtb_md_frames
from rarelearn.errors import ModelError, RarelearnError
from rarelearn.potentials.mace import MACEModel, MACESettings, _mace

pytest.importorskip("mace")

#: A tiny MACE, so the whole file runs in seconds on one core.
TINY = {
    "num_channels": 8,
    "max_L": 0,
    "correlation": 2,
    "max_ell": 2,
    "num_radial_basis": 6,
    "radial_mlp": (16,),
    "mlp_irreps": "8x0e",
    "batch_size": 5,
    "device": "cpu",
}


def tiny(**changes: object) -> MACESettings:
    return MACESettings(**{**TINY, "epochs": 3, **changes})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def propane() -> list[Atoms]:
    """60 GFN2-xTB frames of propane at 500 K (about a second)."""
    return xtb_md_frames(n_carbons=3, n_frames=60, stride=2, seed=0)


@pytest.fixture(scope="module")
def trained(propane: list[Atoms]) -> MACEModel:
    return MACEModel.fit(propane[:40], tiny(epochs=20), seed=1)


def _copy(model: MACEModel, dtype: torch.dtype = torch.float32) -> MACEModel:
    """An independent copy of `model` (weights and reference energies) in `dtype`."""
    other = MACEModel(model.elements, model.settings)
    other.load_state_dict(model.state_dict())
    other.reference_energies = dict(model.reference_energies)
    return other.to_dtype(dtype)


def _force_mae(model: MACEModel, frames: list[Atoms]) -> float:
    _, forces = model.predict(frames)
    return float(
        np.mean([np.abs(f - a.get_forces()).mean() for f, a in zip(forces, frames, strict=True)])
    )


def test_forces_are_minus_gradient_of_energy_float64(
    propane: list[Atoms], trained: MACEModel
) -> None:
    model = _copy(trained, torch.float64)
    atoms = propane[45].copy()
    atoms.calc = model.calculator()
    forces = atoms.get_forces()
    numeric = calculate_numerical_forces(atoms, eps=1e-4)
    assert np.abs(forces).max() > 0.05  # the check is not trivially zero
    np.testing.assert_allclose(forces, numeric, atol=1e-6, rtol=0)


def test_save_load_round_trip_is_identical(
    tmp_path, propane: list[Atoms], trained: MACEModel
) -> None:
    frames = propane[40:50]
    e, f = trained.predict(frames)
    folder = trained.save(tmp_path / "m")
    state = torch.load(folder / "weights.pt", weights_only=True)
    assert set(state) == set(trained.state_dict())
    loaded = MACEModel.load(folder)
    assert loaded.settings == trained.settings
    assert loaded.reference_energies == trained.reference_energies
    e2, f2 = loaded.predict(frames)
    np.testing.assert_array_equal(e, e2)
    np.testing.assert_array_equal(np.array(f), np.array(f2))
    e_only, _ = loaded.predict(frames, forces=False)
    np.testing.assert_allclose(e_only, e, rtol=0, atol=1e-5)


def test_training_lowers_validation_force_error(propane: list[Atoms], trained: MACEModel) -> None:
    held_out = propane[40:]
    untrained = MACEModel(trained.elements, trained.settings, seed=1)
    untrained.reference_energies = dict(trained.reference_energies)
    assert _force_mae(trained, held_out) < 0.6 * _force_mae(untrained, held_out)
    hist = trained.history
    assert hist.epochs_run == 20 and min(hist.val_loss) < 0.3 * hist.val_loss[0]
    assert hist.metrics["val_force_mae_eV_A"] > 0
    # the reference energies live in graph.py only: MACE's own E0s stay zero
    assert not trained.network.atomic_energies_fn.atomic_energies.any()


def test_same_seed_identical_weights_different_seed_differs(propane: list[Atoms]) -> None:
    frames = propane[:20]
    settings = tiny(epochs=1)
    a = MACEModel.fit(frames, settings, seed=7)
    b = MACEModel.fit(frames, settings, seed=7)
    c = MACEModel.fit(frames, settings, seed=8)
    sa, sb, sc = (m.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_bad_settings_name_the_field() -> None:
    assert [name for name, _ in MACESettings().problems()] == []
    assert [name for name, _ in MACESettings(num_channels=0).problems()] == ["num_channels"]
    bad = MACESettings(max_L=5, radial_mlp=(), mlp_irreps="16x1o", forces_weight=-1.0)
    assert {name for name, _ in bad.problems()} == {
        "max_L",
        "radial_mlp",
        "mlp_irreps",
        "forces_weight",
    }
    with pytest.raises(ModelError, match="bogus"):
        MACESettings.from_dict({"bogus": 1})
    settings = tiny()
    assert MACESettings.from_dict(settings.to_dict()) == settings


def test_unknown_element_is_one_clear_error(propane: list[Atoms], trained: MACEModel) -> None:
    water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    water.calc = SinglePointCalculator(water, energy=0.0, forces=np.zeros((3, 3)))
    with pytest.raises(ModelError, match="O") as info:
        trained.predict([water])
    assert isinstance(info.value, RarelearnError)
    with pytest.raises(ModelError, match="O"):
        trained.energies_forces(water.numbers, torch.tensor(water.positions[None]))
    with pytest.raises(ModelError, match="O"):
        trained.collate([water.numbers], [torch.tensor(water.positions)])


def test_batch_of_two_molecules_equals_each_alone(propane: list[Atoms], trained: MACEModel) -> None:
    model = _copy(trained, torch.float64)
    ethane = alkane(2)
    frames = [ethane, propane[50]]
    numbers = [f.numbers for f in frames]
    positions = [torch.tensor(f.positions) for f in frames]
    e_both, f_both = model.forward(model.collate(numbers, positions), forces=True)
    alone = [
        model.forward(model.collate([n], [p]), forces=True)
        for n, p in zip(numbers, positions, strict=True)
    ]
    torch.testing.assert_close(e_both, torch.cat([e for e, _ in alone]), rtol=0, atol=1e-10)
    torch.testing.assert_close(f_both, torch.cat([f for _, f in alone]), rtol=0, atol=1e-10)
    energies, _ = model.predict(frames)
    assert energies.shape == (2,) and abs(energies[0] - energies[1]) > 1.0


def _mace_torch_batch(model: MACEModel, frames: list[Atoms]) -> dict[str, torch.Tensor]:
    """The frames as mace-torch batches them: AtomicData.from_config + Batch.from_data_list."""
    m = _mace()
    z_table = m.AtomicNumberTable([atomic_numbers[s] for s in model.elements])
    graphs = [
        m.data.AtomicData.from_config(
            m.data.Configuration(
                atomic_numbers=frame.numbers,
                positions=frame.positions,
                properties={},
                property_weights={},
                pbc=(False, False, False),
                cell=np.zeros((3, 3)),
            ),
            z_table=z_table,
            cutoff=model.settings.cutoff,
        )
        for frame in frames
    ]
    batch = m.torch_geometric.Batch.from_data_list(graphs).to_dict()
    for key in ("node_attrs", "shifts", "unit_shifts", "cell"):
        batch[key] = batch[key].to(torch.float64)
    # as the old collate: AtomicData holds positions in torch's default dtype (float32)
    positions = np.concatenate([frame.positions for frame in frames])
    batch["positions"] = torch.tensor(positions, requires_grad=True)
    return batch


def test_torch_collate_equals_mace_torchs_atomic_data(
    propane: list[Atoms], trained: MACEModel
) -> None:
    """The torch-only collate gives mace-torch's own batch: same edges (hexane has pairs
    beyond the 5 A cutoff), node attributes, graph indices, and energies and forces."""
    model = _copy(trained, torch.float64)
    frames = [alkane(6), propane[50]]
    ours = model.collate([f.numbers for f in frames], [torch.tensor(f.positions) for f in frames])
    ref = _mace_torch_batch(model, frames)
    edges = {tuple(e) for e in ours["edge_index"].T.tolist()}
    assert len(edges) == ours["edge_index"].shape[1]  # no duplicates
    assert edges == {tuple(e) for e in ref["edge_index"].T.tolist()}
    assert len(edges) < sum(len(f) * (len(f) - 1) for f in frames)  # the cutoff cuts
    for key in ("node_attrs", "batch", "ptr", "positions", "shifts", "unit_shifts"):
        assert ours[key].dtype == ref[key].dtype, key
        torch.testing.assert_close(ours[key], ref[key], rtol=0, atol=0, msg=key)
    # mace-torch keeps the large box its neighbour list puts around a molecule; read only
    # for stress and virials, which a molecule has not: ours is zeros of the same shape
    assert ours["cell"].shape == ref["cell"].shape and not ours["cell"].any()
    assert ours["positions"].is_leaf and ours["positions"].requires_grad
    e_ours, f_ours = model.forward(ours, forces=True)
    e_ref, f_ref = model.forward(ref, forces=True)
    torch.testing.assert_close(e_ours, e_ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(f_ours, f_ref, rtol=0, atol=1e-10)
    assert f_ours.abs().max() > 0.01  # the comparison is not trivially zero


def test_optimizer_is_maces_adam_over_every_weight(trained: MACEModel) -> None:
    optimizer = trained.optimizer()
    assert isinstance(optimizer, torch.optim.Adam)
    assert all(group["amsgrad"] for group in optimizer.param_groups)
    seen = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(seen) == sorted(id(p) for p in trained.network.parameters())


def test_module_imports_without_loading_mace() -> None:
    """Config validation imports the settings class; mace-torch loads only when used, and
    its process-wide unsafe torch.load switch does not outlive the import."""
    code = (
        "import sys, os; import rarelearn.potentials.mace as m; "
        "assert 'mace' not in sys.modules and 'e3nn' not in sys.modules; "
        "m._mace(); assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ"
    )
    env = {k: v for k, v in os.environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "cuequivariance" not in done.stdout and "Warning" not in done.stderr
