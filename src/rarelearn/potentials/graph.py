"""What message-passing families (SchNet, MACE) share: reference energies, the fit loop.

A graph model sees a molecule as atoms within a cutoff of each other. Both families here
learn on top of per-element reference energies fitted by least squares on the training frames
(as ANI's self energies), so the network learns only the small remainder. Training is one
loop for both (`GraphPotential.fit`): Adam, reduce-on-plateau (`lr_factor`, `lr_patience`),
stop when the learning rate reaches its floor (`min_lr`) or after `epochs`, keep the weights
with the best validation loss; the loss is the family's (`GraphPotential.loss`).

A family implements `build_network` (its torch module, from its settings), `collate` (a batch
of frames of any sizes in its library's input format) and `forward` (energies and forces of a
collated batch). Positions that need forces are leaves created by `collate` with
``requires_grad`` set.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from torch import Tensor

from rarelearn.errors import ModelError
from rarelearn.potentials.base import (
    FamilySettings,
    FitHistory,
    Potential,
    PotentialT,
    elements_of,
    frame_labels,
    random_split,
    resolve_device,
    sorted_elements,
    split_metrics,
)
from rarelearn.threads import torch_threads


@dataclass
class GraphSettings(FamilySettings):
    """Optimisation settings shared by the graph families (a family adds its architecture).

    `lr_factor`/`lr_patience`: reduce-on-plateau of the validation loss; the fit stops once
    the learning rate falls below `min_lr`. `dtype`: ``float32`` or ``float64``.
    """

    batch_size: int = 32
    lr: float = 5e-4
    lr_factor: float = 0.8
    lr_patience: int = 5
    min_lr: float = 1e-6
    cutoff: float = 5.0
    dtype: str = "float32"

    def problems(self):  # type: ignore[no-untyped-def]
        """(setting, what is wrong) for every invalid value."""
        yield from super().problems()
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            yield "batch_size", f"must be an integer >= 1, got {self.batch_size!r}"
        if not self.lr > 0:
            yield "lr", f"must be positive, got {self.lr!r}"
        if not 0 < self.lr_factor < 1:
            yield "lr_factor", f"must be between 0 and 1, got {self.lr_factor!r}"
        if not (isinstance(self.lr_patience, int) and self.lr_patience >= 0):
            yield "lr_patience", f"must be an integer >= 0, got {self.lr_patience!r}"
        if not 0 <= self.min_lr < self.lr:
            yield "min_lr", f"must be >= 0 and below lr ({self.lr}), got {self.min_lr!r}"
        if not self.cutoff > 0:
            yield "cutoff", f"must be positive (Angstrom), got {self.cutoff!r}"
        if self.dtype not in ("float32", "float64"):
            yield "dtype", f"must be float32 or float64, got {self.dtype!r}"


class GraphPotential(Potential):
    """A message-passing NNP: reference energies + a network over the atoms' neighbourhoods."""

    settings: GraphSettings

    def __init__(self, elements: Sequence[str], settings: Any = None, seed: int = 0) -> None:
        self.settings = copy.deepcopy(settings) if settings is not None else self.settings_class()
        self.elements = sorted_elements(elements)
        self.check_family_elements(self.elements)
        self.device = resolve_device(self.settings.device)
        self.dtype = torch.float64 if self.settings.dtype == "float64" else torch.float32
        self.reference_energies: dict[str, float] = {s: 0.0 for s in self.elements}
        self.history = FitHistory()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.network = self.build_network()
        self.network.to(device=self.device, dtype=self.dtype)

    # ------------------------------------------------------ family interface
    def build_network(self) -> torch.nn.Module:
        """The family's torch module, built from `self.settings` and `self.elements`."""
        raise NotImplementedError

    def collate(self, numbers: Sequence[Sequence[int]], positions: Sequence[Tensor]) -> Any:
        """A batch in the library's input format (positions as leaves needing grad)."""
        raise NotImplementedError

    def forward(self, batch: Any, forces: bool, training: bool = False) -> tuple[Tensor, Tensor]:
        """Energies (B,) without the reference energies, and forces (sum of atoms, 3); with
        ``forces=False`` the forces returned are not read."""
        raise NotImplementedError

    def loss(
        self, e_pred: Tensor, f_pred: Tensor, e_ref: Tensor, f_ref: Tensor, n_atoms: Tensor
    ) -> Tensor:
        """The training loss of a batch (energies without reference energies)."""
        raise NotImplementedError

    def optimizer(self) -> torch.optim.Optimizer:
        """The optimiser of a fit (default: Adam at `settings.lr`; one learning rate for
        every parameter group, which the floor check reads from the first group)."""
        return torch.optim.Adam(self.network.parameters(), lr=self.settings.lr)

    # ---------------------------------------------------------------- basics
    def reference_energy_of(self, numbers: Sequence[int]) -> float:
        """Sum of the per-element reference energies of the atoms (eV)."""
        return float(sum(self.reference_energies[chemical_symbols[int(z)]] for z in numbers))

    def to_dtype(self: PotentialT, dtype: torch.dtype) -> PotentialT:
        """Convert the weights in place (float64 for finite-difference force checks)."""
        self.network.to(dtype=dtype)  # type: ignore[attr-defined]
        self.dtype = dtype
        return self

    def state_dict(self) -> dict[str, Tensor]:
        """The network's weights."""
        return dict(self.network.state_dict())

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Set the network's weights."""
        self.network.load_state_dict(state)
        self.network.to(device=self.device, dtype=self.dtype)

    def extra_meta(self) -> dict[str, Any]:
        """The reference energies, beside the weights."""
        return {"reference_energies_eV": self.reference_energies}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]):  # type: ignore[no-untyped-def]
        """An untrained model with the saved settings, elements and reference energies."""
        settings = cls.settings_class.from_dict(meta["settings"])
        model = cls(meta["elements"], settings)
        model.reference_energies = {s: float(v) for s, v in meta["reference_energies_eV"].items()}
        return model

    # ---------------------------------------------------------------- predict
    def energies_forces(
        self, numbers: Sequence[int], coords: Tensor, forces: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Energies (B,) eV and forces (B, N, 3) eV/A of B frames of one molecule."""
        self.species_index(numbers)
        coords = coords.to(device=self.device, dtype=self.dtype)
        self.network.eval()
        with torch.enable_grad() if forces else torch.no_grad():
            batch = self.collate([numbers] * len(coords), list(coords))
            e, f = self.forward(batch, forces=forces)
        e_np = e.detach().to("cpu", torch.float64).numpy() + self.reference_energy_of(numbers)
        if not forces:
            return e_np, np.zeros((len(coords), len(numbers), 3))
        f_np = f.detach().to("cpu", torch.float64).numpy().reshape(len(coords), len(numbers), 3)
        return e_np, f_np

    # -------------------------------------------------------------------- fit
    @classmethod
    def fit(  # type: ignore[override]
        cls,
        frames: Sequence[Atoms],
        settings: Any = None,
        seed: int = 0,
        train_idx: Sequence[int] | None = None,
        val_idx: Sequence[int] | None = None,
        init: GraphPotential | None = None,
        elements: Sequence[str] | None = None,
        on_epoch: Callable[[int], None] | None = None,
    ) -> GraphPotential:
        """Train on labeled frames; the weights with the best validation loss are kept.

        Without `train_idx` the frames are split at random (`val_fraction`, `seed`); `init`
        warm-starts from a model of the same family, elements and architecture.
        """
        if not frames:
            raise ModelError("no frames to train on")
        model = cls.untrained(elements or elements_of(frames), settings, seed, init)
        model.check_elements(frames)
        if train_idx is None:
            gen = torch.Generator().manual_seed(seed)
            train_idx, val_idx = random_split(len(frames), model.settings.val_fraction, gen)
        return model.train_on(frames, train_idx, val_idx or [], seed, on_epoch)

    def train_on(
        self,
        frames: Sequence[Atoms],
        train_idx: Sequence[int],
        val_idx: Sequence[int],
        seed: int,
        on_epoch: Callable[[int], None] | None = None,
    ) -> GraphPotential:
        """Fit reference energies and weights on frames (indices into them); `seed` shuffles
        the mini-batches. Safe for several models at once in threads (each writes itself)."""
        train_list = sorted(int(i) for i in train_idx)
        val_list = sorted(int(i) for i in val_idx)
        if not train_list:
            raise ModelError("the training split is empty")
        gen = torch.Generator().manual_seed(seed)
        with torch_threads(self.settings.threads):
            self._train(list(frames), train_list, val_list, gen, on_epoch)
        return self

    def _fit_reference_energies(self, frames: Sequence[Atoms], train_idx: Sequence[int]) -> None:
        """Per-element energies by least squares on the training frames (eV)."""
        counts = np.array(
            [
                [np.sum(frames[i].numbers == atomic_numbers[s]) for s in self.elements]
                for i in train_idx
            ],
            dtype=float,
        )
        energies = np.array([frame_labels(frames[i])[0] for i in train_idx])
        solution, *_ = np.linalg.lstsq(counts, energies, rcond=None)
        self.reference_energies = {
            s: float(v) for s, v in zip(self.elements, solution, strict=True)
        }

    def _labels(self, frames: Sequence[Atoms]) -> tuple[Tensor, list[Tensor]]:
        """Energies without reference energies (B,) and forces per frame, as tensors."""
        energies, forces = [], []
        for frame in frames:
            e, f = frame_labels(frame)
            energies.append(e - self.reference_energy_of(frame.numbers))
            forces.append(torch.tensor(f, dtype=self.dtype, device=self.device))
        return torch.tensor(energies, dtype=self.dtype, device=self.device), forces

    def _batch_loss(self, frames: Sequence[Atoms], idx: Sequence[int], training: bool) -> Tensor:
        part = [frames[i] for i in idx]
        e_ref, f_ref = self._labels(part)
        positions = [torch.tensor(f.positions, dtype=self.dtype, device=self.device) for f in part]
        batch = self.collate([f.numbers for f in part], positions)
        e, f = self.forward(batch, forces=True, training=training)
        n_atoms = torch.tensor([len(f) for f in part], dtype=self.dtype, device=self.device)
        return self.loss(e, f, e_ref, torch.cat(f_ref), n_atoms)

    def _validation_loss(self, frames: Sequence[Atoms], val_idx: Sequence[int]) -> float:
        """Mean batch loss over the validation frames (weighted by batch size)."""
        self.network.eval()
        total, size = 0.0, self.settings.batch_size
        for start in range(0, len(val_idx), size):
            part = val_idx[start : start + size]
            total += float(self._batch_loss(frames, part, training=False).detach()) * len(part)
        return total / len(val_idx)

    def _train(
        self,
        frames: list[Atoms],
        train_idx: list[int],
        val_idx: list[int],
        gen: torch.Generator,
        on_epoch: Callable[[int], None] | None,
    ) -> None:
        started = time.perf_counter()
        settings = self.settings
        self._fit_reference_energies(frames, train_idx)
        optimizer = self.optimizer()
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=settings.lr_factor, patience=settings.lr_patience
        )
        watched = val_idx or train_idx
        best = (math.inf, -1, copy.deepcopy(self.network.state_dict()))
        history = self.history
        for epoch in range(settings.epochs):
            self.network.train()
            order = torch.randperm(len(train_idx), generator=gen).tolist()
            running = 0.0
            for start in range(0, len(order), settings.batch_size):
                rows = [train_idx[k] for k in order[start : start + settings.batch_size]]
                optimizer.zero_grad(set_to_none=True)
                loss = self._batch_loss(frames, rows, training=True)
                loss.backward()
                optimizer.step()
                running += float(loss.detach()) * len(rows)
            history.train_loss.append(running / len(train_idx))
            val_loss = self._validation_loss(frames, watched)
            history.val_loss.append(val_loss)
            history.epochs_run = epoch + 1
            if val_loss < best[0]:
                best = (val_loss, epoch, copy.deepcopy(self.network.state_dict()))
            scheduler.step(val_loss)
            if on_epoch is not None:
                on_epoch(epoch + 1)
            if optimizer.param_groups[0]["lr"] < settings.min_lr:
                break
        history.best_epoch = best[1]
        self.network.load_state_dict(best[2])
        self.network.eval()
        energies, forces = self.predict(frames)
        history.metrics = split_metrics(energies, forces, frames, train_idx, val_idx)
        history.seconds = time.perf_counter() - started


def molecule_pairs(pos: Tensor, batch: Tensor, cutoff: float) -> tuple[Tensor, Tensor]:
    """(source j, target i): every ordered pair of atoms of the same molecule closer than
    `cutoff`, no self pairs, ordered by target then source; computed without grad.

    The neighbour list of both graph families, from plain torch operations (no compiled
    radius graph, no per-frame numpy). Atoms of a molecule must be contiguous in `batch`;
    only each molecule's own block of the pair matrix is formed, so memory grows with the sum
    of squared molecule sizes, not with the square of the batch (the molecules here are
    small). Distances are compared in `pos`'s dtype.
    """
    with torch.no_grad():
        counts = torch.bincount(batch)
        start = torch.cumsum(counts, 0) - counts
        per_atom = counts[batch]  # candidate partners of each atom: its molecule's atoms
        target = torch.repeat_interleave(torch.arange(len(batch), device=pos.device), per_atom)
        first = torch.cumsum(per_atom, 0) - per_atom
        offset = torch.arange(len(target), device=pos.device) - first[target]
        source = start[batch[target]] + offset
        dist = (pos[source] - pos[target]).norm(dim=-1)
        keep = (dist < cutoff) & (source != target)
    return source[keep], target[keep]
