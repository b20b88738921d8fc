"""SchNet family: forces = -grad E, the torch-only pair graph, training, determinism, warm
start, save/load, and clear errors on bad settings and unknown elements. Small networks
(32 features) keep the file to seconds; the paper's sizes are the defaults."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.calculators.fd import calculate_numerical_forces

from _ani_data import alkane, xtb_md_frames
from rarelearn.errors import ModelError
from rarelearn.potentials.base import WEIGHTS_FILE
from rarelearn.potentials.schnet import PairGraph, SchNetModel, SchNetSettings

pytest.importorskip("torch_geometric")

N_TRAIN = 100


def small(**changes: object) -> SchNetSettings:
    """Test-sized settings on the CPU."""
    values: dict = {"hidden_channels": 32, "num_filters": 32, "epochs": 5, "device": "cpu"}
    values.update(changes)
    return SchNetSettings(**values)


def force_mae(model: SchNetModel, frames: list[Atoms]) -> float:
    _, forces = model.predict(frames)
    errors = [np.abs(f - a.get_forces()).mean() for f, a in zip(forces, frames, strict=True)]
    return float(np.mean(errors))


@pytest.fixture(scope="module")
def propane() -> list[Atoms]:
    """130 GFN2-xTB frames of propane at 500 K (a few seconds)."""
    return xtb_md_frames(3, 130, stride=4, seed=0)


@pytest.fixture(scope="module")
def trained(propane: list[Atoms]) -> SchNetModel:
    return SchNetModel.fit(propane[:N_TRAIN], small(epochs=12), seed=1)


def test_defaults_are_the_papers() -> None:
    s = SchNetSettings()
    assert (s.hidden_channels, s.num_filters, s.num_gaussians, s.num_interactions) == (
        128,
        128,
        25,
        3,
    )
    assert (s.cutoff, s.energy_weight, s.lr, s.lr_factor, s.lr_patience, s.epochs) == (
        5.0,
        0.1,
        5e-4,
        0.8,
        5,
        300,
    )
    assert s.readout == "add"
    assert list(s.problems()) == []


def test_forces_are_minus_gradient_of_energy_float64(propane: list[Atoms]) -> None:
    """Cutoff 3 A: some H-H pairs of propane lie beyond it, so the envelope is exercised."""
    model = SchNetModel(["H", "C"], small(cutoff=3.0), seed=3).to_dtype(torch.float64)
    model.reference_energies = {"H": -10.0, "C": -40.0}
    atoms = propane[17].copy()
    distances = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)]
    assert (distances > 3.0).any() and (distances < 3.0).any()
    atoms.calc = model.calculator()
    forces = atoms.get_forces()
    numerical = calculate_numerical_forces(atoms, eps=1e-5)
    assert np.abs(forces).max() > 0.01  # the check is not trivially zero
    np.testing.assert_allclose(forces, numerical, atol=1e-6, rtol=0)


def brute_force_pairs(pos: np.ndarray, batch: np.ndarray, cutoff: float) -> dict:
    """(source, target) -> distance for every ordered pair of one molecule within cutoff."""
    out = {}
    for j, i in permutations(range(len(pos)), 2):
        d = float(np.linalg.norm(pos[j] - pos[i]))
        if batch[j] == batch[i] and d < cutoff:
            out[(j, i)] = d
    return out


def test_pair_graph_equals_brute_force_for_two_molecules() -> None:
    mols = [alkane(4), molecule("CH3CH2OH")]
    for k, mol in enumerate(mols):
        mol.positions += 0.5 * k  # overlapping boxes: pairs across molecules must not appear
    pos = np.concatenate([m.positions for m in mols])
    batch = np.repeat(np.arange(len(mols)), [len(m) for m in mols])
    cutoff = 3.0
    edge_index, edge_weight = PairGraph(cutoff, 512)(
        torch.tensor(pos), torch.tensor(batch, dtype=torch.long)
    )
    got = {
        (int(j), int(i)): float(d)
        for (j, i), d in zip(edge_index.T.tolist(), edge_weight.tolist(), strict=True)
    }
    expected = brute_force_pairs(pos, batch, cutoff)
    assert len(got) == edge_index.shape[1]  # no duplicate edges
    assert set(got) == set(expected)
    assert len(expected) < len(pos) * (len(pos) - 1)  # the cutoff and the batch both cut
    np.testing.assert_allclose([got[p] for p in expected], list(expected.values()), atol=1e-12)


def test_pair_graph_refuses_too_many_neighbours() -> None:
    pos = torch.tensor(alkane(3).positions)
    with pytest.raises(ModelError, match="max_num_neighbors"):
        PairGraph(5.0, 3)(pos, torch.zeros(len(pos), dtype=torch.long))


def test_mixed_batch_predicts_as_each_molecule_alone() -> None:
    model = SchNetModel(["H", "C", "O"], small(), seed=2)
    frames = [alkane(3), molecule("CH3CH2OH"), alkane(4)]
    numbers = [f.numbers for f in frames]
    positions = [torch.tensor(f.positions, dtype=torch.float32) for f in frames]
    e_all, f_all = model.forward(model.collate(numbers, positions), forces=True)
    sizes = [len(f) for f in frames]
    for k, (z, p) in enumerate(zip(numbers, positions, strict=True)):
        e_one, f_one = model.forward(model.collate([z], [p]), forces=True)
        torch.testing.assert_close(e_all[k : k + 1], e_one)
        torch.testing.assert_close(f_all.split(sizes)[k], f_one)


def test_loss_is_weighted_energy_and_force_mse() -> None:
    model = SchNetModel(["H", "C"], small(energy_weight=0.25), seed=0)
    e_pred, e_ref = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])
    f_pred, f_ref = torch.ones(4, 3), torch.zeros(4, 3)
    loss = model.loss(e_pred, 3 * f_pred, e_ref, f_ref, torch.tensor([2.0, 2.0]))
    assert float(loss) == pytest.approx(0.25 * 2.5 + 0.75 * 9.0)


def test_training_lowers_validation_force_error(propane: list[Atoms], trained: SchNetModel) -> None:
    untrained = SchNetModel(trained.elements, trained.settings, seed=1)
    untrained.reference_energies = dict(trained.reference_energies)
    held_out = propane[N_TRAIN:]
    before, after = force_mae(untrained, held_out), force_mae(trained, held_out)
    assert after < 0.7 * before, (before, after)
    assert trained.history.epochs_run == 12
    assert trained.history.metrics["val_force_mae_eV_A"] < before


def test_save_load_round_trip(trained: SchNetModel, propane: list[Atoms], tmp_path: Path) -> None:
    folder = trained.save(tmp_path / "member")
    weights = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    assert set(weights) == set(trained.state_dict())
    assert json.loads((folder / "model.json").read_text())["kind"] == "schnet"
    loaded = SchNetModel.load(folder)
    assert loaded.settings == trained.settings
    assert loaded.reference_energies == trained.reference_energies
    frames = propane[N_TRAIN:]
    e0, f0 = trained.predict(frames)
    e1, f1 = loaded.predict(frames)
    np.testing.assert_array_equal(e0, e1)
    np.testing.assert_array_equal(np.array(f0), np.array(f1))


def test_same_seed_same_weights_other_seed_differs(propane: list[Atoms]) -> None:
    frames, settings = propane[:40], small(epochs=2)
    a = SchNetModel.fit(frames, settings, seed=4).state_dict()
    b = SchNetModel.fit(frames, settings, seed=4).state_dict()
    c = SchNetModel.fit(frames, settings, seed=5).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_warm_start_begins_from_init(propane: list[Atoms], trained: SchNetModel) -> None:
    settings = small(epochs=1, lr=1e-9, min_lr=0.0)
    warm = SchNetModel.fit(propane[:N_TRAIN], settings, seed=7, init=trained)
    cold = SchNetModel.fit(propane[:N_TRAIN], settings, seed=7)
    init_state, warm_state = trained.state_dict(), warm.state_dict()
    for key, value in init_state.items():
        torch.testing.assert_close(warm_state[key], value, atol=1e-6, rtol=0)
    frames = propane[N_TRAIN:]
    _, f_init = trained.predict(frames)
    _, f_warm = warm.predict(frames)
    np.testing.assert_allclose(np.array(f_warm), np.array(f_init), atol=1e-4)
    assert force_mae(warm, frames) < 0.7 * force_mae(cold, frames)


def test_warm_start_with_other_elements_is_refused(
    propane: list[Atoms], trained: SchNetModel
) -> None:
    init = SchNetModel(["H", "C", "O"], small(), seed=0)
    with pytest.raises(ModelError, match="elements"):
        SchNetModel.fit(propane[:10], small(epochs=1), init=init)


def test_bad_settings_name_the_field() -> None:
    assert "hidden_channels" in [name for name, _ in SchNetSettings(hidden_channels=0).problems()]
    bad = SchNetSettings(num_gaussians=1, readout="max", energy_weight=1.5, num_filters=2.5)
    named = {name for name, _ in bad.problems()}
    assert {"num_gaussians", "readout", "energy_weight", "num_filters"} <= named
    with pytest.raises(ModelError, match="bogus"):
        SchNetSettings.from_dict({"bogus": 1})
    assert SchNetSettings.from_dict(small().to_dict()) == small()


def test_unknown_element_is_a_model_error(trained: SchNetModel) -> None:
    water = molecule("H2O")
    with pytest.raises(ModelError, match=r"element(\(s\))? O"):
        trained.predict([water])
    with pytest.raises(ModelError, match=r"element(\(s\))? O"):
        trained.energies_forces(water.numbers, torch.tensor(water.positions[None]))


def test_settings_import_without_torch_geometric() -> None:
    """Config validation imports the settings class where PyG is not installed."""
    code = (
        "import sys; sys.modules['torch_geometric'] = None; "
        "from rarelearn.potentials.schnet import SchNetSettings; "
        "assert list(SchNetSettings().problems()) == []"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
