"""Training features of ANI models: the AEVs of labeled frames and their Jacobians, kept.

During a fit the AEVs of the training frames never change, so they and their exact Jacobian
d AEV / d coords are computed once (`StaticAEV.aev_and_jacobian`) and forces are `-J^T g`
with g = dE/dAEV (`jacobian_forces`). Across the iterations of a campaign the frames do not
change either: a committee trains on the previous iteration's frames plus the new labels, so a
`FeatureCache` keeps every frame's AEV and Jacobian (keyed by its geometry) and only new
frames are computed.

A frame's features are computed alone, so they do not depend on which other frames are new
(tests/test_features.py checks this bit for bit): a cached and a from-scratch computation,
an uninterrupted and a resumed campaign, train the same model. They are computed on one
thread: the Jacobian comes from torch's forward-mode differentiation, whose state is global
to the process (two threads computing jvps at once fail), and with the cache a campaign
computes each frame once (11 ms per 20-atom frame, ~1 s for an iteration's new labels).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ase import Atoms
from torch import Tensor
from torch.autograd.function import once_differentiable

from rarelearn.errors import ModelError
from rarelearn.potentials.ani.aev import LARGE_MOLECULE_CHUNK, MAX_STATIC_ATOMS
from rarelearn.potentials.base import frame_labels

if TYPE_CHECKING:
    from rarelearn.potentials.ani.model import ANIModel


#: Frames per Jacobian computation on a GPU (on the CPU: one, see `_aevs_and_jacobians`).
GPU_CHUNK = 64


def geometry_key(frame: Atoms) -> bytes:
    """Identity of a frame for the cache: its atomic numbers and exact positions."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.ascontiguousarray(frame.numbers, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(frame.positions, dtype=np.float64).tobytes())
    return digest.digest()


def jacobian_mb(frames: Sequence[Atoms], n_features: int) -> float:
    """Memory the Jacobians of these frames take, in MB (float32)."""
    return sum(len(f) ** 2 * n_features * 3 * 4 for f in frames) / 1e6


class _JacobianProduct(torch.autograd.Function):
    """g (B, N*F) and per-frame Jacobians (N*F, N*3) -> J^T g per frame, shape (B, N*3).

    One matrix-vector product per frame reads each Jacobian where it lies. Gathering a batch's
    Jacobians into one tensor for `bmm` copies ~40 MB per batch of 64 hexane frames, and a
    worker thread maps fresh pages for every such copy (measured 30 % slower than the main
    thread); without the copy both run at the same speed. Linear in g: the backward is the
    transposed product (the loss is differentiated once, so no higher derivative is needed).
    """

    @staticmethod
    def forward(ctx: Any, grad_aev: Tensor, jacobians: list[Tensor]) -> Tensor:
        ctx.jacobians = jacobians
        return torch.stack([torch.mv(j.t(), g) for j, g in zip(jacobians, grad_aev, strict=True)])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None]:
        return (
            torch.stack([torch.mv(j, g) for j, g in zip(ctx.jacobians, grad_out, strict=True)]),
            None,
        )


def jacobian_forces(grad_aev: Tensor, jacobians: list[Tensor]) -> Tensor:
    """Forces (B, N, 3) = -J^T dE/dAEV for a batch, differentiable in ``grad_aev`` (B, N, F)."""
    b, n = grad_aev.shape[:2]
    return -_JacobianProduct.apply(grad_aev.reshape(b, -1), jacobians).view(b, n, 3)


class FeatureCache:
    """AEVs and Jacobians of frames already computed, for one model definition.

    Keyed by `geometry_key`; valid for one element list and dtype (the AEV's definition): a
    model with other elements clears it. `retain` keeps only the frames of the latest fit so
    memory follows the training set (float32 Jacobians: ~1.8 MB per 20-atom frame).
    """

    def __init__(self) -> None:
        self._signature: tuple[Any, ...] | None = None
        self._entries: dict[bytes, tuple[Tensor, Tensor]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def bind(self, model: ANIModel) -> None:
        """Use the cache for `model`'s AEV definition (cleared when it differs)."""
        signature = (tuple(model.elements), str(model.dtype), model.aev_dim, str(model.device))
        if signature != self._signature:
            self._entries.clear()
            self._signature = signature

    def get(self, key: bytes) -> tuple[Tensor, Tensor] | None:
        """The (AEV, Jacobian) of a frame, or None."""
        return self._entries.get(key)

    def put(self, key: bytes, aev: Tensor, jacobian: Tensor) -> None:
        """Store one frame's features."""
        self._entries[key] = (aev, jacobian)

    def retain(self, keys: set[bytes]) -> None:
        """Forget every frame not in `keys`."""
        for key in [k for k in self._entries if k not in keys]:
            del self._entries[key]


class TrainingFeatures:
    """AEVs (and, for the fast path, Jacobians) of labeled frames, grouped by composition.

    Frames of one fit usually share one molecule; frames of another size or element order
    form their own group, so nothing is padded. Each group holds ``numbers``, ``frames`` (fit
    indices), ``elem``, ``coords``, ``energy``, ``forces``, ``counts``, ``aev`` (B, N, F) and
    ``jac`` (a list of per-frame (N*F, N*3) Jacobians) when `with_jacobian`. Computed once and
    shared by the members of a committee (read-only, so threads may share it too).
    """

    def __init__(
        self,
        model: ANIModel,
        frames: Sequence[Atoms],
        with_jacobian: bool,
        cache: FeatureCache | None = None,
    ) -> None:
        model.check_elements(frames)
        self.with_jacobian = with_jacobian
        self.frame_group: list[tuple[int, int]] = []
        self.groups: list[dict[str, Any]] = []
        keys: dict[tuple[int, ...], int] = {}
        for i, fr in enumerate(frames):
            key = tuple(int(z) for z in fr.numbers)
            if key not in keys:
                keys[key] = len(self.groups)
                self.groups.append({"numbers": key, "frames": []})
            g = self.groups[keys[key]]
            self.frame_group.append((keys[key], len(g["frames"])))
            g["frames"].append(i)
        if cache is not None and with_jacobian:
            cache.bind(model)
        used: set[bytes] = set()
        dtype, device = model.dtype, model.device
        for g in self.groups:
            sel = [frames[i] for i in g["frames"]]
            elem = model.species_index(g["numbers"])
            g["elem"] = elem.to(device)
            positions = np.array([f.positions for f in sel])
            g["coords"] = torch.tensor(positions, dtype=dtype, device=device)
            g["n_atoms"] = len(g["numbers"])
            labels = [frame_labels(f) for f in sel]
            g["energy"] = torch.tensor([e for e, _ in labels], dtype=torch.float64, device=device)
            forces = np.array([f for _, f in labels])
            g["forces"] = torch.tensor(forces, dtype=dtype, device=device)
            # element counts stay on the CPU: the self-energy least squares run there
            g["counts"] = torch.bincount(elem, minlength=len(model.elements)).to(torch.float64)
            if with_jacobian:
                if g["n_atoms"] > MAX_STATIC_ATOMS:
                    raise ModelError(
                        f"the fast training path needs molecules of <= {MAX_STATIC_ATOMS} atoms, "
                        f"not {g['n_atoms']} (ANIModel.training_features trains larger ones "
                        "without Jacobians)"
                    )
                frame_keys = [geometry_key(f) for f in sel]
                used.update(frame_keys)
                aevs, jacs = _aevs_and_jacobians(model, g, frame_keys, cache)
                g["aev"] = torch.stack(aevs)
                g["jac"] = jacs
            else:
                # beyond the static tables a few frames per pass, as in training
                per_pass = 256 if g["n_atoms"] <= MAX_STATIC_ATOMS else LARGE_MOLECULE_CHUNK
                with torch.no_grad():
                    g["aev"] = torch.cat(
                        [
                            model.aev_computer(g["elem"].expand(len(c), -1).contiguous(), c)
                            for c in g["coords"].split(per_pass)
                        ]
                    )
        if cache is not None and with_jacobian:
            cache.retain(used)


def _aevs_and_jacobians(
    model: ANIModel,
    group: dict[str, Any],
    frame_keys: list[bytes],
    cache: FeatureCache | None,
) -> tuple[list[Tensor], list[Tensor]]:
    """Per-frame AEVs and Jacobians of one group: from the cache, the rest computed and added
    to the cache.

    On the CPU, one frame per call of `StaticAEV.aev_and_jacobian`. Vectorised kernels round
    a value differently by its place in a batch (SIMD body or scalar tail: differences of
    ~4e-9 were seen), so in a batch a frame's Jacobian would depend on the frames beside it,
    and a resumed campaign (empty cache) would train on other bits than the uninterrupted one.
    Alone it depends on the frame only; 11 ms per 20-atom frame instead of 7 ms in batches of
    8, once per frame and campaign. On a GPU, whose scattered sums are not bit-reproducible
    anyway, one frame per call leaves it idle (launch-bound), so frames go `GPU_CHUNK` at a
    time. Each result owns its storage, so the cache frees exactly the frames it drops.
    """
    static = model.static_aev(group["numbers"])
    found = [cache.get(k) if cache is not None else None for k in frame_keys]
    missing = [k for k, hit in enumerate(found) if hit is None]
    chunk = 1 if model.device.type == "cpu" else GPU_CHUNK
    for start in range(0, len(missing), chunk):
        rows = missing[start : start + chunk]
        # on a fresh copy of the frames' coordinates: computed on a view at an offset into the
        # group's tensor, a frame's bits changed with its place (the kill/resume test caught it)
        aev, jac = static.aev_and_jacobian(group["coords"][rows])
        for j, k in enumerate(rows):
            frame_aev, frame_jac = (
                (aev[0], jac[0]) if chunk == 1 else (aev[j].clone(), jac[j].clone())
            )
            found[k] = (frame_aev, frame_jac)
            if cache is not None:
                cache.put(frame_keys[k], frame_aev, frame_jac)
    return [f[0] for f in found], [f[1] for f in found]


__all__ = [
    "FeatureCache",
    "TrainingFeatures",
    "frame_labels",
    "geometry_key",
    "jacobian_forces",
    "jacobian_mb",
]
