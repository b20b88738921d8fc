"""Where models run (`device = "auto" | "cpu" | "cuda"`, every family).

On a machine without a GPU (CI) the checks are the settings and the clear error; with one
(`RARELEARN_TEST_CUDA=1 python -m pytest tests/test_devices.py`: tests/conftest.py hides the
GPU from the rest of the suite), every family's CUDA model is
compared with the same weights on the CPU: predictions, ANI's committee evaluator (single
frame and batched replicas), a fit's first epoch, a CUDA-saved model loaded on the CPU, and
finite-difference forces in float64 on the GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase.calculators.fd import calculate_numerical_forces

from _ani_data import xtb_md_frames
from rarelearn.committee import Committee
from rarelearn.config import from_dict, preset
from rarelearn.errors import ConfigError, ModelError
from rarelearn.potentials import families

SMALL = {
    "ani": {"epochs": 2, "layers": {"H": [16, 8], "C": [16, 8]}},
    "schnet": {"epochs": 2, "hidden_channels": 16, "num_filters": 16, "num_interactions": 2},
    "mace": {"epochs": 2, "num_channels": 8, "radial_mlp": [8], "num_interactions": 1},
}
BACKENDS = list(SMALL)
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU and RARELEARN_TEST_CUDA=1"
)


def _settings(backend: str, device: str, **extra: object):
    return families.settings_class(backend).from_dict({**SMALL[backend], "device": device, **extra})


@pytest.fixture(scope="module")
def propane_frames() -> list:
    return xtb_md_frames(n_carbons=3, n_frames=40, stride=4, seed=3)


def test_device_setting_is_validated_for_every_family() -> None:
    for backend in BACKENDS:
        values = preset("quick")
        values["committee"] = {"backend": backend, backend: {"device": "gpu"}}
        with pytest.raises(ConfigError, match=rf"committee\.{backend}\.device must be one of"):
            from_dict(values)
        values["committee"] = {"backend": backend, backend: {"device": "cpu"}}
        assert from_dict(values).committee.model.device == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_without_a_gpu_is_one_clear_error(backend: str) -> None:
    model_type = families.model_class(backend)
    with pytest.raises(ModelError, match="torch sees no CUDA device"):
        model_type(["H", "C"], _settings(backend, "cuda"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_is_the_cpu_without_a_gpu_and_cuda_with_one(backend: str) -> None:
    model = families.model_class(backend)(["H", "C"], _settings(backend, "auto"))
    assert model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_load_moves_a_saved_model_to_the_device_asked_for(
    tmp_path: Path, propane_frames: list, backend: str
) -> None:
    """A model saved with one device setting loads on another (`load(..., device=...)`)."""
    model_type = families.model_class(backend)
    model = model_type.fit(propane_frames, _settings(backend, "cpu", epochs=1), seed=1)
    saved = model_type.load(model.save(tmp_path / "m"), device="auto")
    assert saved.settings.device == "auto"
    e_saved, f_saved = saved.predict(propane_frames[:3])
    e, f = model.predict(propane_frames[:3])
    np.testing.assert_allclose(e_saved, e, rtol=0, atol=2e-4)
    np.testing.assert_allclose(np.array(f_saved), np.array(f), atol=2e-4)


@needs_cuda
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_model_predicts_what_the_cpu_model_predicts(
    tmp_path: Path, propane_frames: list, backend: str
) -> None:
    """Same weights on both devices: energies and forces agree to float32 rounding; a model
    trained and saved on the GPU loads on the CPU with the same predictions."""
    model_type = families.model_class(backend)
    gpu = model_type.fit(propane_frames, _settings(backend, "cuda"), seed=2)
    assert next(iter(gpu.state_dict().values())).device.type == "cuda"
    cpu = model_type.load(gpu.save(tmp_path / "gpu"), device="cpu")
    e_gpu, f_gpu = gpu.predict(propane_frames)
    e_cpu, f_cpu = cpu.predict(propane_frames)
    np.testing.assert_allclose(e_gpu, e_cpu, rtol=0, atol=5e-4)
    np.testing.assert_allclose(np.array(f_gpu), np.array(f_cpu), atol=5e-4)


@needs_cuda
@pytest.mark.parametrize("backend", BACKENDS)
def test_first_epoch_on_cuda_matches_the_cpu(propane_frames: list, backend: str) -> None:
    """The same seed draws the same initial weights on either device, so the first epoch's
    training loss agrees to float32 rounding (later epochs drift apart, as rounding does)."""
    model_type = families.model_class(backend)
    losses = [
        model_type.fit(propane_frames, _settings(backend, d, epochs=1), seed=4).history.train_loss
        for d in ("cpu", "cuda")
    ]
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-3)


@needs_cuda
def test_ani_committee_evaluator_on_cuda_matches_the_cpu(
    tmp_path: Path, propane_frames: list
) -> None:
    """ANI's fast evaluator (shared AEV, stacked members, TorchScript force path) on the GPU
    against the same committee on the CPU: one frame (best, mean, all forces) and a batch."""
    gpu = Committee.train(propane_frames, 3, _settings("ani", "cuda"), seed=5)
    gpu.save(tmp_path / "committee")
    cpu = Committee.load(tmp_path / "committee", device="cpu")
    frame = propane_frames[5]
    on_gpu, on_cpu = gpu.evaluator(frame.numbers), cpu.evaluator(frame.numbers)
    for forces in ("best", "mean", "all"):
        a, b = on_gpu(frame.positions, forces=forces), on_cpu(frame.positions, forces=forces)
        np.testing.assert_allclose(a.energies, b.energies, atol=5e-4)
        np.testing.assert_allclose(a.forces, b.forces, atol=5e-4)
    replicas = np.array([f.positions for f in propane_frames[:16]])
    a, b = on_gpu.batch(replicas), on_cpu.batch(replicas)
    np.testing.assert_allclose(a.energies, b.energies, atol=5e-4)
    np.testing.assert_allclose(a.forces, b.forces, atol=5e-4)


@needs_cuda
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_forces_match_finite_differences_in_float64(
    propane_frames: list, backend: str
) -> None:
    model_type = families.model_class(backend)
    model = model_type.fit(propane_frames, _settings(backend, "cuda", epochs=1), seed=6)
    model.to_dtype(torch.float64)
    atoms = propane_frames[2].copy()
    atoms.calc = model.calculator()
    numeric = calculate_numerical_forces(atoms, eps=1e-5)
    np.testing.assert_allclose(atoms.get_forces(), numeric, atol=1e-5)
