"""The model interface every NNP family implements (ANI, SchNet, MACE, ...).

What the committee, campaign, SMD and selection need of a model, and nothing more:

- build from settings and elements, and train on labeled ASE frames with a given
  train/validation split and an optional warm start (`Potential.fit`);
- energies and forces of a batch of frames of one molecule (`energies_forces`), from which
  `predict` serves any list of frames;
- save to a folder and load from it (weights through ``torch.load(..., weights_only=True)``);
- an ASE calculator (`calculator`); float64 for finite-difference checks (`to_dtype`).

A family is one module holding its settings dataclass (a TOML section ``committee.<family>``)
and its `Potential` subclass, registered in `rarelearn.potentials.families`. Units: eV, A.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from torch import Tensor

from rarelearn.errors import ModelError
from rarelearn.threads import ProgressSum, run_side_by_side, torch_threads

#: Name of the metadata file of a model folder (family, elements, settings, history).
META_FILE = "model.json"
#: Name of the weights file of a model folder (a state_dict, read with weights_only=True).
WEIGHTS_FILE = "weights.pt"

DEVICES = ("auto", "cpu", "cuda")
DTYPES = {"float32": torch.float32, "float64": torch.float64}

SettingsT = TypeVar("SettingsT", bound="FamilySettings")
PotentialT = TypeVar("PotentialT", bound="Potential")


def resolve_device(device: str) -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else the CPU; ``cuda`` without one is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError(
            "device 'cuda' was asked for, but torch sees no CUDA device (set device = \"auto\" "
            'or "cpu"; a saved model loads elsewhere with load(..., device="cpu"))'
        )
    if device not in DEVICES:
        raise ModelError(f"device must be one of {DEVICES}, not {device!r}")
    return torch.device(device)


@dataclass
class FamilySettings:
    """Settings every family shares; a family's dataclass adds its own fields.

    `epochs` is the most a fit runs; `val_fraction` the validation share of a split;
    `threads` torch's intra-op threads while training (1: members train one per core);
    `device` where training and inference run: ``auto`` (CUDA when torch sees a GPU, else
    the CPU), ``cpu`` or ``cuda``.
    """

    epochs: int = 300
    val_fraction: float = 0.2
    threads: int | None = 1
    device: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls: type[SettingsT], data: dict[str, Any]) -> SettingsT:
        """Inverse of `to_dict`; unknown keys are an error naming them."""
        names = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ModelError(f"unknown setting(s) {unknown} (allowed: {sorted(names)})")
        values = {}
        for key, value in data.items():
            default = getattr(cls(), key)
            values[key] = tuple(value) if isinstance(default, tuple) else value
        return cls(**values)

    def problems(self) -> Iterator[tuple[str, str]]:
        """(setting, what is wrong) for every invalid value; the config names the section."""
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            yield "epochs", f"must be an integer >= 1, got {self.epochs!r}"
        if not 0 < self.val_fraction < 1:
            yield "val_fraction", f"must be between 0 and 1, got {self.val_fraction!r}"
        if self.threads is not None and not (isinstance(self.threads, int) and self.threads >= 1):
            yield "threads", f"must be an integer >= 1 (or unset), got {self.threads!r}"
        if self.device not in DEVICES:
            yield "device", f"must be one of {', '.join(DEVICES)}, got {self.device!r}"


@dataclass
class FitHistory:
    """What a fit did: per-epoch losses, best epoch, final errors (eV, eV/A)."""

    train_loss: list[float] = field(default_factory=list)
    #: ANI: validation energy MSE per epoch (what picks its best epoch)
    val_energy_mse: list[float] = field(default_factory=list)
    #: graph families: validation loss per epoch (what picks their best epoch)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    epochs_run: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def random_split(n: int, val_fraction: float, gen: torch.Generator) -> tuple[list[int], list[int]]:
    """Sorted training and validation indices of n frames, validation ~val_fraction of them
    (at least one when there are two frames or more), drawn with `gen`."""
    perm = torch.randperm(n, generator=gen).tolist()
    n_val = max(1, round(val_fraction * n)) if n > 1 else 0
    return sorted(perm[n_val:]), sorted(perm[:n_val])


def frame_labels(frame: Atoms) -> tuple[float, np.ndarray]:
    """Energy (eV) and forces (eV/A) of a labeled frame; a clear error when it has none."""
    try:
        return float(frame.get_potential_energy()), np.asarray(frame.get_forces(), dtype=float)
    except Exception as exc:
        raise ModelError(f"frame has no energy/forces label: {exc}") from exc


def elements_of(frames: Sequence[Atoms]) -> list[str]:
    """Element symbols present in the frames, ordered by atomic number."""
    numbers = sorted({int(z) for f in frames for z in f.numbers})
    return [chemical_symbols[z] for z in numbers]


def sorted_elements(elements: Sequence[str]) -> list[str]:
    """Unique symbols by atomic number; ModelError when empty or not an element."""
    unknown = sorted(set(elements) - set(atomic_numbers))
    if unknown:
        raise ModelError(f"not chemical element symbols: {unknown}")
    symbols = sorted(set(elements), key=lambda s: atomic_numbers[s])
    if not symbols:
        raise ModelError("a model needs at least one element")
    return symbols


def split_metrics(
    energies: np.ndarray,
    forces: Sequence[np.ndarray],
    frames: Sequence[Atoms],
    train_idx: Sequence[int],
    val_idx: Sequence[int],
) -> dict[str, float]:
    """Energy MAE (eV) and force MAE (eV/A, per component) on train, validation and all
    frames: the keys the committee reads to choose its best member."""
    e_err, f_err = [], []
    for frame, e, f in zip(frames, energies, forces, strict=True):
        e_ref, f_ref = frame_labels(frame)
        e_err.append(abs(float(e) - e_ref))
        f_err.append(float(np.abs(np.asarray(f) - f_ref).mean()))
    out: dict[str, float] = {}
    for name, idx in (("train", train_idx), ("val", val_idx)):
        if len(idx):
            out[f"{name}_energy_mae_eV"] = float(np.mean([e_err[i] for i in idx]))
            out[f"{name}_force_mae_eV_A"] = float(np.mean([f_err[i] for i in idx]))
    out["all_energy_mae_eV"] = float(np.mean(e_err))
    out["all_force_mae_eV_A"] = float(np.mean(f_err))
    return out


class Potential(ABC):
    """One trained (or untrained) NNP of some family.

    Subclasses set `family` and `settings_class`, and implement `fit`, `energies_forces`,
    `to_dtype`, `state_dict`/`load_state_dict` (the weights) and `extra_meta`/`from_meta`
    (what else `save` must keep). Everything else is shared.
    """

    family: ClassVar[str]
    settings_class: ClassVar[type[FamilySettings]]

    elements: list[str]
    settings: Any
    history: FitHistory
    dtype: torch.dtype

    # ------------------------------------------------------------------ train
    @classmethod
    @abstractmethod
    def fit(
        cls: type[PotentialT],
        frames: Sequence[Atoms],
        settings: Any = None,
        seed: int = 0,
        train_idx: Sequence[int] | None = None,
        val_idx: Sequence[int] | None = None,
        init: Any = None,
        elements: Sequence[str] | None = None,
        on_epoch: Callable[[int], None] | None = None,
    ) -> PotentialT:
        """Train on labeled frames (energy in ``atoms.info``/calculator, forces) and return
        the model with the best validation error; `init` warm-starts from a model of the
        same family and elements; the same seed and data give the same weights."""

    @classmethod
    def untrained(
        cls: type[PotentialT],
        elements: Sequence[str],
        settings: Any = None,
        seed: int = 0,
        init: Potential | None = None,
    ) -> PotentialT:
        """A model ready for training: weights drawn with `seed`, or `init`'s (warm start).

        Drawing the weights uses torch's global random generator: build models in one thread.
        """
        model = cls(elements, settings, seed=seed)  # type: ignore[call-arg]
        if init is not None:
            if init.elements != model.elements:
                raise ModelError(
                    f"warm start model has elements {init.elements}, data need {model.elements}"
                )
            model.load_state_dict(init.state_dict())
        return model

    def species_index(self, numbers: Sequence[int]) -> Tensor:
        """Element indices (model order) of atomic numbers; ModelError for unknown ones."""
        index = {atomic_numbers[s]: k for k, s in enumerate(self.elements)}
        try:
            return torch.tensor([index[int(z)] for z in numbers], dtype=torch.long)
        except KeyError as exc:
            symbol = chemical_symbols[int(exc.args[0])]
            raise ModelError(
                f"element {symbol} is not one the model was trained on "
                f"(model elements: {', '.join(self.elements)})"
            ) from None

    # ---------------------------------------------------------------- predict
    @abstractmethod
    def energies_forces(
        self, numbers: Sequence[int], coords: Tensor, forces: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Energies (B,) eV and forces (B, N, 3) eV/A of B frames of one molecule."""

    def predict(
        self, frames: Sequence[Atoms], forces: bool = True, batch: int = 256, **options: Any
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Energies (eV, shape (n,)) and forces (list of (atoms, 3), eV/A) of any frames;
        `options` go to the family's `energies_forces` (ANI: ``fast=False`` evaluates through
        TorchANI as is)."""
        self.check_elements(frames)
        energies = np.zeros(len(frames))
        out_forces: list[np.ndarray] = [np.zeros((len(f), 3)) for f in frames]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, frame in enumerate(frames):
            groups.setdefault(tuple(int(z) for z in frame.numbers), []).append(i)
        for numbers, idx in groups.items():
            for start in range(0, len(idx), batch):
                part = idx[start : start + batch]
                coords = torch.tensor(np.array([frames[i].positions for i in part]))
                coords = coords.to(self.dtype)
                e, f = self.energies_forces(numbers, coords, forces=forces, **options)
                for k, i in enumerate(part):
                    energies[i] = e[k]
                    if forces:
                        out_forces[i] = f[k]
        return energies, out_forces

    def energy_and_forces(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        """Energy (eV) and forces (eV/A) of one structure."""
        self.check_elements([atoms])
        coords = torch.tensor(atoms.positions[None], dtype=self.dtype)
        with torch_threads(1):  # one frame: tiny kernels, threads only add synchronisation
            e, f = self.energies_forces(atoms.numbers, coords)
        return float(e[0]), f[0]

    @classmethod
    def check_family_elements(cls, elements: Sequence[str]) -> None:
        """ModelError naming the elements this family cannot handle (default: none); a
        campaign calls it before any work."""
        return None

    def check_elements(self, frames: Sequence[Atoms]) -> None:
        """ModelError if a frame holds an element the model was not trained on."""
        known = set(self.elements)
        for i, frame in enumerate(frames):
            bad = sorted(set(frame.get_chemical_symbols()) - known)
            if bad:
                raise ModelError(
                    f"frame {i} contains element(s) {', '.join(bad)} the model was not trained "
                    f"on (model elements: {', '.join(self.elements)})"
                )

    @abstractmethod
    def to_dtype(self: PotentialT, dtype: torch.dtype) -> PotentialT:
        """Convert the weights in place (float64 for finite-difference force checks)."""

    def calculator(self) -> Any:
        """An ASE calculator over this one model."""
        from rarelearn.potentials.calculator import ModelCalculator

        return ModelCalculator(self)

    # ------------------------------------------------------- committee hooks
    @classmethod
    def train_members(
        cls,
        tasks: Sequence[Any],
        frames: Sequence[Atoms],
        threads: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        cache: Any = None,
    ) -> list[Potential]:
        """Train a committee's members in this process (tasks as `committee.MemberTask`):
        side by side in threads, one torch thread each (`rarelearn.threads`), so the weights
        are the same bit for bit whatever the number of threads. Needs `train_on(frames,
        train_idx, val_idx, seed, on_epoch)`; a family overrides this to share work between
        members (ANI: one set of features). `cache` is a hint a family may use."""
        # weights are drawn from torch's global generator: here, in one thread, in member order
        models = [cls.untrained(t.elements, t.settings, t.seed, t.init) for t in tasks]
        epochs = ProgressSum(progress, [t.settings.epochs for t in tasks])

        def job(k: int) -> Callable[[], Potential]:
            task = tasks[k]
            return lambda: models[k].train_on(
                frames, task.train_idx, task.val_idx, task.seed, epochs.reporter(k)
            )

        return run_side_by_side([job(k) for k in range(len(tasks))], threads, epochs)

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
        """What evaluates a committee of this family on one molecule (every member's
        energy, the driving forces, UQ; see `evaluator.MemberEvaluator`). `options` are
        family-specific (ANI: ``aev_path``)."""
        from rarelearn.potentials.evaluator import MemberEvaluator

        return MemberEvaluator(members, numbers, best, mean_driver, threads)

    # ------------------------------------------------------------ persistence
    @abstractmethod
    def state_dict(self) -> dict[str, Tensor]:
        """The weights (tensors only: loadable with ``weights_only=True``)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Set the weights from `state_dict`'s output."""

    def extra_meta(self) -> dict[str, Any]:
        """What `save` keeps beside settings, elements and weights (JSON-ready)."""
        return {}

    @classmethod
    @abstractmethod
    def from_meta(cls: type[PotentialT], meta: dict[str, Any]) -> PotentialT:
        """An untrained model from a saved model.json (its settings, elements, extras)."""

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write weights.pt (the state_dict) and model.json (family, settings, history)."""
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        torch.save(state, path / WEIGHTS_FILE)
        meta = {
            "format_version": 1,
            "kind": self.family,
            "elements": self.elements,
            "settings": self.settings.to_dict(),
            "history": asdict(self.history),
            **self.extra_meta(),
        }
        (path / META_FILE).write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(
        cls: type[PotentialT], folder: str | os.PathLike[str], device: str | None = None
    ) -> PotentialT:
        """Read a model folder written by `save`; ModelError if missing or corrupted.

        `device` (``auto``, ``cpu``, ``cuda``) replaces the saved one: a model trained on a
        GPU is used on a laptop with ``device="cpu"`` (or ``auto``)."""
        path = Path(folder)
        if not path.is_dir():
            raise ModelError(f"model folder {path} does not exist")
        reading = path / META_FILE  # named in the error: which file is damaged
        try:
            meta = json.loads(reading.read_text())
            kind = meta.get("kind", "ani")
            if kind != cls.family:
                raise ModelError(f"{path} holds a {kind} model, not a {cls.family} model")
            if device is not None:
                meta["settings"] = {**meta["settings"], "device": device}
            model = cls.from_meta(meta)
            model.history = FitHistory(**(meta.get("history") or {}))
            reading = path / WEIGHTS_FILE
            model.load_state_dict(torch.load(reading, weights_only=True, map_location="cpu"))
        except ModelError:
            raise
        except Exception as exc:
            # the first line: torch's unpickling errors run over many lines of advice
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"{reading} is missing or corrupted: {reason}") from exc
        return model


def model_family(folder: str | os.PathLike[str]) -> str:
    """The family a saved model folder holds (``kind`` in model.json; ``ani`` before it)."""
    path = Path(folder) / META_FILE
    try:
        return str(json.loads(path.read_text()).get("kind", "ani"))
    except Exception as exc:
        raise ModelError(f"{path} is missing or corrupted: {exc}") from exc
