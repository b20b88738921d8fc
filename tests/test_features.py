"""Training features: a frame's AEV and Jacobian do not depend on the frames computed beside
it, the cache returns what a fresh computation gives, and the gather-free force product is
the batched matrix product with the right gradient."""

from __future__ import annotations

import pytest
import torch
from ase import Atoms

from _ani_data import xtb_md_frames
from rarelearn.potentials import ANIModel, ANISettings, ModelError
from rarelearn.potentials.ani.features import (
    FeatureCache,
    TrainingFeatures,
    geometry_key,
    jacobian_forces,
)


@pytest.fixture(scope="module")
def propane() -> list[Atoms]:
    return xtb_md_frames(3, 120, seed=2)


def _features(frames, cache=None) -> TrainingFeatures:
    return TrainingFeatures(ANIModel(["H", "C"]), frames, with_jacobian=True, cache=cache)


def test_a_frame_s_features_do_not_depend_on_the_frames_beside_it(propane) -> None:
    """In one batched call of 32 frames, frame 41's Jacobian differed from its Jacobian in
    another batch in 4 entries by ~4e-9 (vectorised kernels); per frame it cannot."""
    first = _features(propane[:64]).groups[0]
    shifted = _features(propane[10:74]).groups[0]
    for k in range(54):
        assert torch.equal(first["aev"][k + 10], shifted["aev"][k])
        assert torch.equal(first["jac"][k + 10], shifted["jac"][k])


def test_cached_features_equal_a_fresh_computation(propane) -> None:
    cache = FeatureCache()
    _features(propane[:70], cache)
    assert len(cache) == 70
    cached = _features(propane[30:100], cache).groups[0]
    assert len(cache) == 70  # frames 0-29 dropped, 70-99 added
    fresh = _features(propane[30:100]).groups[0]
    assert torch.equal(cached["aev"], fresh["aev"])
    assert all(torch.equal(a, b) for a, b in zip(cached["jac"], fresh["jac"], strict=True))
    assert cache.get(geometry_key(propane[0])) is None


def test_cache_is_cleared_for_another_aev_definition(propane) -> None:
    cache = FeatureCache()
    _features(propane[:10], cache)
    TrainingFeatures(ANIModel(["H", "C", "O"]), propane[:4], with_jacobian=True, cache=cache)
    assert len(cache) == 4


def test_moved_atoms_are_a_new_frame_for_the_cache(propane) -> None:
    moved = propane[0].copy()
    moved.positions[0, 0] += 1e-9
    assert geometry_key(moved) != geometry_key(propane[0])
    assert geometry_key(propane[0].copy()) == geometry_key(propane[0])


def test_jacobian_forces_equal_the_batched_product_and_its_gradient() -> None:
    gen = torch.Generator().manual_seed(0)
    jacobians = [torch.randn(4 * 5, 4 * 3, generator=gen, dtype=torch.float64) for _ in range(3)]
    grad_aev = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    forces = jacobian_forces(grad_aev, jacobians)
    expected = -torch.bmm(grad_aev.reshape(3, 1, -1), torch.stack(jacobians)).view(3, 4, 3)
    assert torch.allclose(forces, expected, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda g: jacobian_forces(g, jacobians), (grad_aev,))


def test_unlabeled_frames_are_refused_with_a_clear_message(propane) -> None:
    bare = Atoms(propane[0].numbers, propane[0].positions)
    with pytest.raises(ModelError, match="no energy/forces label"):
        _features([bare])


def test_fit_from_cached_features_equals_fit_from_scratch(propane) -> None:
    settings = ANISettings(epochs=2)
    cache = FeatureCache()
    ANIModel.fit(propane[:60], settings, seed=1, cache=cache)
    warm = ANIModel.fit(propane[:90], settings, seed=1, cache=cache)
    cold = ANIModel.fit(propane[:90], settings, seed=1)
    for key, value in warm.networks.state_dict().items():
        assert torch.equal(value, cold.networks.state_dict()[key])
    assert warm.history.metrics == cold.history.metrics
