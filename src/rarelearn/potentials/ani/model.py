"""ANI neural network potential built from TorchANI's AEV computer and atomic networks.

Model: ANI-2x AEVs (`AEVComputer.like_2x`, 128 features with only H and C) feeding one
`AtomicNetwork` per element (H 256-192-160-1, C 224-192-160-1, GELU), plus self-atomic
energies fitted by least squares on the training frames so that the networks learn only the
small remainder. Units: eV and Angstrom throughout.

Training (the paper's recipe, PROTOCOL section 3): loss = mean((dE)^2 / N_atoms)
+ alpha * mean((dF)^2 per component), alpha = 0.1; 80/20 split; shuffled mini-batches of 64;
300 epochs; the parameters with the best validation energy MSE are kept. The optimizer is
AdamW (Adam with decoupled weight decay, the choice of TorchANI's own training examples; with
weight_decay=0 it is plain Adam), with an optional reduce-on-plateau learning-rate schedule
and early stopping.

Speed: the AEVs of the training frames do not change during a fit, so the fast path
(`ANISettings.fast`, default) computes them and their exact Jacobian once (`features`, where
a `FeatureCache` keeps them across the fits of a campaign), and forces are `-J^T dE/dAEV`.
`untrained` + `train_on` split a fit so that a committee trains its members side by side in
threads on one shared set of features. The baseline path (`fast=False`) calls TorchANI as is
on every batch and differentiates through the AEV twice; both give the same loss and
gradients to float tolerance (tests/test_ani.py). Molecules beyond the static tables
(`MAX_STATIC_ATOMS`) or Jacobians beyond `jacobian_cache_mb` take the baseline path on their
own (`training_features`); prediction on them goes through TorchANI's neighbour list.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from torch import Tensor
from torchani.aev import AEVComputer
from torchani.nn import ANINetworks, AtomicNetwork

from rarelearn.errors import ModelError
from rarelearn.potentials.ani import training
from rarelearn.potentials.ani.aev import (
    MAX_STATIC_ATOMS,
    NeighborListAEV,
    StaticAEV,
    aev_path_for,
    molecule_aev,
)
from rarelearn.potentials.ani.committee import ANICommitteeEvaluator, train_side_by_side
from rarelearn.potentials.ani.export import ScriptableANI
from rarelearn.potentials.ani.features import (
    FeatureCache,
    TrainingFeatures,
    jacobian_mb,
)
from rarelearn.potentials.ani.training import LR_SCHEDULES
from rarelearn.potentials.base import (
    FamilySettings,
    FitHistory,
    Potential,
    elements_of,
    random_split,
    resolve_device,
    sorted_elements,
)
from rarelearn.threads import torch_threads

#: Hidden layer sizes of the paper's networks; other elements get `ANISettings.default_layers`.
PAPER_LAYERS: dict[str, tuple[int, ...]] = {"H": (256, 192, 160), "C": (224, 192, 160)}


#: Elements of the ANI-2x AEV definition (`AEVComputer.like_2x`): its radial and angular
#: parameters were fitted for these; an ANI model here is built for a subset of them.
ANI_ELEMENTS = ("H", "C", "N", "O", "F", "S", "Cl")


def check_ani_elements(symbols: Sequence[str]) -> None:
    """ModelError naming every element outside `ANI_ELEMENTS` (checked before any work)."""
    unsupported = sorted(set(symbols) - set(ANI_ELEMENTS), key=lambda s: atomic_numbers[s])
    if unsupported:
        raise ModelError(
            f"element(s) {', '.join(unsupported)} cannot be handled by the ANI model family "
            f"(ANI-2x AEVs cover {', '.join(ANI_ELEMENTS)})"
        )


#: Hidden-layer activations TorchANI's `parse_activation` knows by name.
ACTIVATIONS = ("gelu", "celu")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class ANISettings(FamilySettings):
    """Every hyperparameter of an ANI model and its training.

    `layers` maps element symbol -> hidden layer sizes; elements not listed get
    `default_layers`. `force_weight` is alpha in the loss. `patience` (epochs without a better
    validation energy MSE) enables early stopping when set. `lr_schedule` is ``plateau``
    (reduce on plateau after `plateau_patience` epochs, factor `plateau_factor`, floor
    `min_lr`; for long fits) or ``cosine`` (from `lr` down to `min_lr` over `epochs`: a short
    fit, such as a warm start, still ends at a small learning rate).
    `fast` selects the cached-Jacobian training path; `threads` sets torch's intra-op threads
    while training (None: leave as is). The default is 1: members are small, they are trained
    one per core by executors, and on a busy 2-core machine two OpenMP threads per process
    were measured several times slower than one. `device` (``auto``: CUDA when present) is
    where the networks, the cached AEVs and Jacobians and the committee evaluator live.
    """

    layers: dict[str, tuple[int, ...]] = field(default_factory=lambda: dict(PAPER_LAYERS))
    default_layers: tuple[int, ...] = (192, 160, 128)
    activation: str = "gelu"
    bias: bool = True
    epochs: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    force_weight: float = 0.1
    val_fraction: float = 0.2
    patience: int | None = None
    lr_schedule: str = "plateau"
    plateau_patience: int | None = 25
    plateau_factor: float = 0.5
    min_lr: float = 1e-5
    fast: bool = True
    jacobian_cache_mb: float = 4096.0
    threads: int | None = 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ANISettings:
        """Inverse of `to_dict`; unknown keys are an error."""
        out = dict(data)
        if "layers" in out:
            out["layers"] = {k: tuple(v) for k, v in out["layers"].items()}
        return super().from_dict(out)

    def problems(self) -> Iterator[tuple[str, str]]:
        """(setting, what is wrong) for every invalid value."""
        yield from super().problems()
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            yield "batch_size", f"must be an integer >= 1, got {self.batch_size!r}"
        if not all(
            size >= 1 for sizes in (self.default_layers, *self.layers.values()) for size in sizes
        ):
            yield "layers", "(and default_layers) must list hidden layer sizes >= 1"
        if not self.lr > 0:
            yield "lr", f"must be positive, got {self.lr!r}"
        if not self.force_weight >= 0:
            yield "force_weight", f"must be >= 0, got {self.force_weight!r}"
        if self.lr_schedule not in LR_SCHEDULES:
            yield "lr_schedule", f"must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"
        if self.activation not in ACTIVATIONS:
            yield "activation", f"must be one of {ACTIVATIONS}, got {self.activation!r}"
        if not self.weight_decay >= 0:
            yield "weight_decay", f"must be >= 0, got {self.weight_decay!r}"
        if not 0 <= self.min_lr <= self.lr:
            yield "min_lr", f"must be >= 0 and at most lr ({self.lr}), got {self.min_lr!r}"
        if not self.jacobian_cache_mb >= 0:
            yield (
                "jacobian_cache_mb",
                f"must be >= 0 (0: never cache), got {self.jacobian_cache_mb!r}",
            )
        if not 0 < self.plateau_factor < 1:
            yield "plateau_factor", f"must be between 0 and 1, got {self.plateau_factor!r}"
        for name in ("patience", "plateau_patience"):
            value = getattr(self, name)
            if value is not None and not (_is_count(value) and value >= 1):
                yield name, f"must be an integer >= 1 (or unset), got {value!r}"

    def hidden_layers(self, symbol: str) -> tuple[int, ...]:
        """Hidden layer sizes for one element."""
        return tuple(self.layers.get(symbol, self.default_layers))


class ANIModel(Potential):
    """An ANI potential: TorchANI AEV computer + one TorchANI AtomicNetwork per element.

    Create untrained with `ANIModel(elements, settings, seed)`, or train with
    `ANIModel.fit(frames, settings, seed)`; `predict` gives energies and forces, `save`/`load`
    use a folder, `to_torchscript` exports an energy model for use outside Python.
    """

    family = "ani"
    settings_class = ANISettings

    def __init__(
        self, elements: Sequence[str], settings: ANISettings | None = None, seed: int = 0
    ) -> None:
        self.settings = copy.deepcopy(settings) if settings is not None else ANISettings()
        symbols = sorted_elements(elements)
        self.check_family_elements(symbols)
        self.elements: list[str] = symbols
        self.aev_computer = AEVComputer.like_2x(num_species=len(symbols))
        aev_dim = int(self.aev_computer.out_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            modules = {
                s: AtomicNetwork(
                    (aev_dim, *self.settings.hidden_layers(s), 1),
                    activation=self.settings.activation,
                    bias=self.settings.bias,
                )
                for s in symbols
            }
        self.networks = ANINetworks(modules)
        self.device = resolve_device(self.settings.device)
        self.aev_computer.to(self.device)
        self.networks.to(self.device)
        self.self_energies: dict[str, float] = {s: 0.0 for s in symbols}
        self.history = FitHistory()
        self.dtype = torch.float32
        self._aev_modules: dict[tuple[str, tuple[int, ...]], StaticAEV | NeighborListAEV] = {}

    # ----------------------------------------------------------------- basics
    @property
    def aev_dim(self) -> int:
        """Number of AEV features per atom."""
        return int(self.aev_computer.out_dim)

    def to_dtype(self, dtype: torch.dtype) -> ANIModel:
        """Convert weights and AEV parameters in place (float64 for finite-difference checks)."""
        self.aev_computer.to(dtype)
        self.networks.to(dtype)
        self.dtype = dtype
        self._aev_modules = {}
        return self

    @classmethod
    def check_family_elements(cls, elements: Sequence[str]) -> None:
        """ModelError naming elements outside the ANI-2x AEV definition."""
        check_ani_elements(elements)

    def static_aev(self, numbers: Sequence[int]) -> StaticAEV:
        """Cached static-index AEV module for one molecule (atom order as given; at most
        `MAX_STATIC_ATOMS` atoms): AEVs, their Jacobian and the fast force pullback."""
        module = self.molecule_aev(numbers, "static")
        assert isinstance(module, StaticAEV)
        return module

    def molecule_aev(
        self, numbers: Sequence[int], path: str = "auto"
    ) -> StaticAEV | NeighborListAEV:
        """Cached AEV module for one molecule of any size (`aev.molecule_aev`: static
        tables up to `MAX_STATIC_ATOMS` atoms, else TorchANI's neighbour list)."""
        atoms = tuple(int(z) for z in numbers)
        key = (aev_path_for(len(atoms), path), atoms)
        if key not in self._aev_modules:
            elem = self.species_index(key[1])
            module = molecule_aev(self.aev_computer, elem, key[0])
            self._aev_modules[key] = module.to(self.device)
        return self._aev_modules[key]

    def self_energy_of(self, numbers: Sequence[int]) -> float:
        """Sum of the self-atomic energies of the atoms (eV)."""
        return float(sum(self.self_energies[chemical_symbols[int(z)]] for z in numbers))

    def _atom_networks(self) -> dict[str, AtomicNetwork]:
        return {s: self.networks[s] for s in self.elements}

    def network_energies(self, aev: Tensor, elem: Tensor) -> Tensor:
        """Sum of atomic network outputs for frames of one composition, shape (frames,).

        Calls each element's TorchANI AtomicNetwork once on all its atoms of the batch.
        """
        total = aev.new_zeros(aev.shape[0])
        for k, s in enumerate(self.elements):
            idx = (elem == k).nonzero().flatten()
            if idx.numel() == 0:
                continue
            x = aev.index_select(1, idx)
            total = total + self.networks[s](x).view(aev.shape[0], -1).sum(1)
        return total

    # ---------------------------------------------------------------- predict
    def energies_forces(
        self, numbers: Sequence[int], coords: Tensor, forces: bool = True, fast: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Energies (B,) and forces (B, N, 3) for B frames of one molecule, as numpy arrays."""
        elem = self.species_index(numbers).to(self.device)
        x = coords.to(self.device, self.dtype).detach().requires_grad_(forces)
        with torch.enable_grad() if forces else torch.no_grad():
            if fast and len(numbers) <= MAX_STATIC_ATOMS:
                aev = self.static_aev(numbers)(x)
                e = self.network_energies(aev, elem)
            else:
                species = elem.expand(x.shape[0], -1).contiguous()
                e = self.networks(species, self.aev_computer(species, x))
            f = -torch.autograd.grad(e.sum(), x)[0] if forces else torch.zeros_like(x)
        e_np = e.detach().to("cpu", torch.float64).numpy() + self.self_energy_of(numbers)
        return e_np, f.detach().to("cpu", torch.float64).numpy()

    # -------------------------------------------------------------------- fit
    @classmethod
    def fit(
        cls,
        frames: Sequence[Atoms],
        settings: ANISettings | None = None,
        seed: int = 0,
        train_idx: Sequence[int] | None = None,
        val_idx: Sequence[int] | None = None,
        init: ANIModel | None = None,
        elements: Sequence[str] | None = None,
        features: TrainingFeatures | None = None,
        on_epoch: Callable[[int], None] | None = None,
        cache: FeatureCache | None = None,
    ) -> ANIModel:
        """Train a model on labeled frames and return it (best validation energy MSE kept).

        `on_epoch(epochs_done)` is called after every epoch (progress display).

        Without `train_idx`/`val_idx` the frames are split at random (`val_fraction`) with
        `seed`. `init` warm-starts from an earlier model with the same elements and layers.
        `features` lets a committee share one AEV/Jacobian computation between members;
        `cache` keeps them for a later fit on overlapping frames. Same seed and data give
        bit-identical weights on one machine.
        """
        if not frames:
            raise ModelError("no frames to train on")
        model = cls.untrained(elements or elements_of(frames), settings, seed, init)
        gen = torch.Generator().manual_seed(seed)
        n = len(frames)
        if train_idx is None:
            train_list, val_list = random_split(n, model.settings.val_fraction, gen)
        else:
            train_list = sorted(int(i) for i in train_idx)
            val_list = sorted(int(i) for i in (val_idx or []))
        if features is None:
            with torch_threads(model.settings.threads):
                features = model.training_features(frames, cache=cache)
        return model.train_on(features, train_list, val_list, gen, on_epoch)

    def training_features(
        self, frames: Sequence[Atoms], cache: FeatureCache | None = None
    ) -> TrainingFeatures:
        """AEVs of the frames, with their Jacobians when the fast path applies (settings
        `fast`, molecules within the static tables, Jacobians within `jacobian_cache_mb`)."""
        fast = (
            self.settings.fast
            and all(len(f) <= MAX_STATIC_ATOMS for f in frames)
            and jacobian_mb(frames, self.aev_dim) <= self.settings.jacobian_cache_mb
        )
        return TrainingFeatures(self, frames, with_jacobian=fast, cache=cache)

    def train_on(
        self,
        feats: TrainingFeatures,
        train_idx: Sequence[int],
        val_idx: Sequence[int],
        gen: torch.Generator | int,
        on_epoch: Callable[[int], None] | None = None,
    ) -> ANIModel:
        """Fit self energies and networks on prepared features (indices into them); `gen`
        (or a seed for one) shuffles the mini-batches. Safe to run for several models at
        once in threads: each reads the shared features and writes only itself."""
        started = time.perf_counter()
        train_list = sorted(int(i) for i in train_idx)
        val_list = sorted(int(i) for i in val_idx)
        if not train_list:
            raise ModelError("the training split is empty")
        if isinstance(gen, int):
            gen = torch.Generator().manual_seed(gen)
        with torch_threads(self.settings.threads):
            training.fit_self_energies(self, feats, train_list)
            training.train_loop(
                self, feats, train_list, val_list, gen, feats.with_jacobian, on_epoch
            )
            self.history.metrics = training.split_metrics(self, feats, train_list, val_list)
        self.history.seconds = time.perf_counter() - started
        return self

    # ------------------------------------------------------- committee hooks
    @classmethod
    def train_members(
        cls,
        tasks: Sequence[Any],
        frames: Sequence[Atoms],
        threads: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        cache: FeatureCache | None = None,
    ) -> list[ANIModel]:
        """Members side by side in threads on one shared set of AEVs and Jacobians."""
        return train_side_by_side(cls, tasks, frames, threads, progress, cache)

    @classmethod
    def committee_evaluator(
        cls,
        members: Sequence[Potential],
        numbers: Sequence[int],
        best: int,
        mean_driver: bool = False,
        threads: int | None = 1,
        **options: Any,
    ) -> Any:
        """One shared AEV, stacked member networks (`committee.ANICommitteeEvaluator`)."""
        return ANICommitteeEvaluator(members, numbers, best, mean_driver, threads, **options)

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Tensor]:
        """The atomic networks' weights."""
        return dict(self.networks.state_dict())

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Set the atomic networks' weights."""
        self.networks.load_state_dict(state)

    def extra_meta(self) -> dict[str, Any]:
        """Self energies and the AEV definition, beside the weights."""
        return {"self_energies_eV": self.self_energies, "aev": "ani-2x", "aev_dim": self.aev_dim}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> ANIModel:
        """An untrained model with the saved settings, elements and self energies."""
        model = cls(meta["elements"], ANISettings.from_dict(meta["settings"]))
        model.self_energies = {s: float(v) for s, v in meta["self_energies_eV"].items()}
        return model

    # ------------------------------------------------------------ TorchScript
    def to_torchscript(self, path: str | os.PathLike[str] | None = None) -> torch.jit.ScriptModule:
        """TorchScript module: (atomic numbers (B,N) long, coords (B,N,3)) -> energies (B,) eV.

        Forces: differentiate the output with respect to coords (autograd works on it).
        Exported on the CPU whatever the model's device, so the file loads anywhere.
        Saved with `torch.jit.save` when `path` is given; load with `torch.jit.load`.
        """
        module = ScriptableANI(self).to("cpu")
        scripted = torch.jit.script(module)
        if path is not None:
            torch.jit.save(scripted, str(path))
        return scripted
