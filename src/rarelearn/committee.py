"""Committees (ensembles) of ANI models: splits, training, best member, UQ, ASE calculator.

PROTOCOL section 4: N members (3, 5 or 7) of the same architecture, each trained on its own
train/validation split of the same frames. Frames are identified by `atoms.info["id"]` (the
stable store id) or, when absent, by their list index.

Split strategies (`make_splits`):
- ``random``: every member draws a fresh random split of all frames;
- ``inherited``: every member keeps the train/validation assignment of the previous
  committee's best-performing member (lowest force MAE over *all* its data, PROTOCOL 4.8) and
  only frames new since then are split at random, per member.

Best member (`Committee.best_index`): lowest *validation* force MAE; it drives the SMD (the
paper's choice, which avoids rewarding overfitting). The member whose split is inherited
(`Committee.inherit_index`) is the one with the lowest force MAE over all its frames.

UQ: the standard deviation of the members' energies (population std, ddof=0), in eV; the
per-atom force spread is sqrt(mean over members of |F_m - F_mean|^2), in eV/A.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from torch import Tensor

from rarelearn.dynamics.replicas import BatchForceField, ReplicaForces
from rarelearn.potentials._static import ForcePath, StackedNetworks, torch_threads
from rarelearn.potentials.ani import ANIModel, ANISettings, ModelError, elements_of
from rarelearn.potentials.features import FeatureCache
from rarelearn.threads import ProgressSum, run_side_by_side

STRATEGIES = ("random", "inherited")
SPLITS_FILE = "splits.json"
COMMITTEE_FILE = "committee.json"


class MapExecutor(Protocol):
    """Anything with `map(fn, items) -> list` (results in order); fn and items picklable."""

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]: ...


def frame_ids(frames: Sequence[Atoms]) -> list[int]:
    """Stable ids of frames: `atoms.info["id"]`, else the list index. Ids must be unique."""
    ids = [int(f.info.get("id", i)) for i, f in enumerate(frames)]
    if len(set(ids)) != len(ids):
        raise ModelError("frame ids (atoms.info['id']) are not unique")
    return ids


def parent_groups(frames: Sequence[Atoms]) -> dict[int, int]:
    """Frame id -> group id: a noisy copy belongs to the group of the frame it was made from
    (``info["parent"]``, a frame id), every other frame is its own group."""
    ids = frame_ids(frames)
    groups = {}
    for frame_id, atoms in zip(ids, frames, strict=True):
        parent = int(atoms.info.get("parent", -1))
        groups[frame_id] = parent if parent >= 0 else frame_id
    return groups


def _random_split(
    ids: Sequence[int], val_fraction: float, rng: np.random.Generator, groups: dict[int, int]
) -> dict:
    """Whole groups to validation, in random order, until it holds ~val_fraction of the ids."""
    ids = list(ids)
    if not ids:
        return {"train": [], "val": []}
    members: dict[int, list[int]] = {}
    for i in ids:
        members.setdefault(groups.get(i, i), []).append(i)
    keys = list(members)
    n_val = round(val_fraction * len(ids))
    if len(keys) > 1:
        n_val = max(n_val, 1)
    val: list[int] = []
    for k in rng.permutation(len(keys)):
        if len(val) >= n_val:
            break
        group = members[keys[k]]
        if len(val) + len(group) >= len(ids):  # keep at least one frame for training
            continue
        val.extend(group)
    chosen = set(val)
    return {"train": sorted(i for i in ids if i not in chosen), "val": sorted(chosen)}


def make_splits(
    ids: Sequence[int],
    n_members: int,
    strategy: str = "random",
    previous: dict[str, Sequence[int]] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    groups: dict[int, int] | None = None,
) -> list[dict[str, list[int]]]:
    """Train/validation id lists for each member.

    ``groups`` (id -> group id, see `parent_groups`) keeps every group on one side: a noisy
    copy is never validated against its own parent in training (which would flatter the
    validation error that picks the best member). `previous` is the split ({"train": ids,
    "val": ids}) to inherit; with strategy ``inherited`` its assignment is kept exactly for
    ids still present, an id new since then joins its group's side when the group is already
    placed, and the remaining new groups are split at random (each member its own draw).
    Without `previous`, ``inherited`` behaves like ``random`` (first iteration).
    """
    if strategy not in STRATEGIES:
        raise ModelError(f"unknown split strategy {strategy!r} (choose from {STRATEGIES})")
    if n_members < 1:
        raise ModelError("a committee needs at least one member")
    ids = [int(i) for i in ids]
    groups = {i: int((groups or {}).get(i, i)) for i in ids}
    present = set(ids)
    out = []
    for m in range(n_members):
        rng = np.random.default_rng([seed, m])
        if strategy == "random" or previous is None:
            out.append(_random_split(ids, val_fraction, rng, groups))
            continue
        old_train = {int(i) for i in previous["train"]} & present
        old_val = {int(i) for i in previous["val"]} & present
        side_of_group = {groups[i]: "val" for i in old_val}
        side_of_group.update({groups[i]: "train" for i in old_train})
        train, val = set(old_train), set(old_val)
        new = []
        for i in ids:
            if i in old_train or i in old_val:
                continue
            side = side_of_group.get(groups[i])
            if side == "train":
                train.add(i)
            elif side == "val":
                val.add(i)
            else:
                new.append(i)
        part = _random_split(new, val_fraction, rng, groups)
        out.append(
            {"train": sorted(train | set(part["train"])), "val": sorted(val | set(part["val"]))}
        )
    return out


@dataclass
class MemberTask:
    """Everything one member's training needs; picklable for process/Dask executors."""

    frames: list[Atoms]
    settings: ANISettings
    seed: int
    train_idx: list[int]
    val_idx: list[int]
    elements: list[str]
    init: ANIModel | None = None


def train_member(task: MemberTask) -> ANIModel:
    """Train one committee member (module-level so executors can pickle it)."""
    return ANIModel.fit(
        task.frames,
        task.settings,
        seed=task.seed,
        train_idx=task.train_idx,
        val_idx=task.val_idx,
        init=task.init,
        elements=task.elements,
    )


def _train_side_by_side(
    tasks: Sequence[MemberTask],
    frames: Sequence[Atoms],
    settings: ANISettings,
    threads: int | None,
    cache: FeatureCache | None,
    progress: Callable[[int, int], None] | None,
) -> list[ANIModel]:
    """Train every task's member in this process on one shared set of features, side by side
    in threads (`rarelearn.threads`: one torch thread per member, bit-identical results)."""
    # weights are drawn from torch's global generator: here, in one thread, in member order
    models = [ANIModel.untrained(t.elements, t.settings, t.seed, t.init) for t in tasks]
    with torch_threads(settings.threads):
        feats = models[0].training_features(frames, cache=cache)
    epochs = ProgressSum(progress, [settings.epochs] * len(tasks))

    def job(k: int) -> Callable[[], ANIModel]:
        task = tasks[k]
        return lambda: models[k].train_on(
            feats, task.train_idx, task.val_idx, task.seed, epochs.reporter(k)
        )

    return run_side_by_side([job(k) for k in range(len(tasks))], threads, epochs)


@dataclass
class CommitteePrediction:
    """Energies (members, frames) eV; forces (members, frames, atoms, 3) eV/A when all frames
    have the same size, else a list over frames of (members, atoms, 3); energy_std (frames,)
    eV (ddof=0); force_std list/array of per-atom spreads (frames, atoms) eV/A."""

    energies: np.ndarray
    forces: np.ndarray | list[np.ndarray]
    energy_std: np.ndarray
    force_std: np.ndarray | list[np.ndarray]


@dataclass
class EvalResult:
    """One frame from the fast evaluator: member energies (M,), driving forces (N,3),
    energy std, and (when requested) all members' forces (M,N,3) and per-atom spread (N,)."""

    energies: np.ndarray
    forces: np.ndarray
    energy_std: float
    member_forces: np.ndarray | None = None
    force_std: np.ndarray | None = None


@dataclass
class BatchEvalResult:
    """Replicas from the fast evaluator: member energies (R, M), driving forces (R, N, 3) and
    the energy std (R,)."""

    energies: np.ndarray
    forces: np.ndarray
    energy_std: np.ndarray


def _force_spread(member_forces: np.ndarray) -> np.ndarray:
    """Per-atom force spread sqrt(mean_m |F_m - <F>|^2); input (M, ..., N, 3)."""
    dev = member_forces - member_forces.mean(axis=0, keepdims=True)
    return np.sqrt((dev**2).sum(-1).mean(axis=0))


class CommitteeEvaluator:
    """Fast energies/forces/UQ of one molecule (fixed atoms and order) for every member.

    The AEV is computed once per frame (static pair/triple tables, TorchANI terms) and shared;
    all members' networks run as stacked weights. `forces`: ``best`` (driving member only, the
    SMD case), ``mean`` (forces of the mean energy), ``all`` (every member, for force UQ).
    ``best`` avoids a whole-graph autograd pass: one graph-free forward of every member, the
    driver's backward written out and the AEV's pullback, compiled with TorchScript
    (`ForcePath`); ``mean`` and ``all`` differentiate with autograd.
    Runs with one torch thread by default (tiny kernels; see `torch_threads`).
    A molecule beyond the static tables (`_static.MAX_STATIC_ATOMS` atoms) gets its shared
    AEV from TorchANI's own neighbour-list `AEVComputer` instead (`aev_path`, one of
    `_static.AEV_PATHS`: ``auto`` chooses by size); everything else stays as it is.
    """

    def __init__(
        self,
        committee: Committee,
        numbers: Sequence[int],
        threads: int | None = 1,
        driver: int | str | None = None,
        aev_path: str = "auto",
    ) -> None:
        atoms = Atoms(numbers=list(numbers))
        for m in committee.members:
            m.check_elements([atoms])
        self.numbers = tuple(int(z) for z in numbers)
        self.threads = threads
        first = committee.members[0]
        self.dtype = first.dtype
        self.aev = first.molecule_aev(self.numbers, aev_path)
        symbols = atoms.get_chemical_symbols()
        nets = [m._atom_networks() for m in committee.members]
        #: ``driver="mean"``: the forces of the committee-mean energy drive the dynamics
        self.mean_driver = driver == "mean"
        #: the member whose forces drive the dynamics (default: the best)
        self.best = (
            committee.best_index
            if driver is None or self.mean_driver
            else committee.member_index(driver)
        )
        self.nets = StackedNetworks(nets, symbols)
        if self.mean_driver:
            path = ForcePath(
                self.aev, StackedNetworks(nets, symbols), None, torch.arange(len(nets)), mean=True
            )
        else:
            others = [k for k in range(len(nets)) if k != self.best]
            stacked = [self.best, *others]
            path = ForcePath(
                self.aev,
                StackedNetworks([nets[self.best]], symbols),
                StackedNetworks([nets[k] for k in others], symbols) if others else None,
                torch.tensor([stacked.index(k) for k in range(len(nets))]),
            )
        self.force_path = torch.jit.script(path)
        self.sae = np.array([m.self_energy_of(self.numbers) for m in committee.members])

    def driving_energy(self, energies: np.ndarray) -> np.ndarray:
        """The energy whose forces drive the dynamics, from member energies (..., members)."""
        return energies.mean(axis=-1) if self.mean_driver else energies[..., self.best]

    def __call__(self, positions: np.ndarray, forces: str = "best") -> EvalResult:
        """Evaluate one geometry (N, 3) in Angstrom; ``forces="best"`` gives the driver's
        forces (the best member's, another member's, or the committee mean's)."""
        member_f = None
        with torch_threads(self.threads):
            if forces == "best":
                e, f = self._driver_call(np.asarray(positions)[None])
                e, f = e[:, 0], f[0]
            else:
                e, f, member_f = self._autograd_call(positions, forces)
        energies = e.to(torch.float64).numpy() + self.sae
        out = EvalResult(
            energies=energies,
            forces=f.to(torch.float64).numpy(),
            energy_std=float(energies.std()),
        )
        if member_f is not None:
            out.member_forces = member_f
            out.force_std = _force_spread(member_f)
        return out

    def batch(self, positions: np.ndarray) -> BatchEvalResult:
        """Evaluate replicas (R, N, 3) of the molecule at once: every member's energy, the
        driving member's forces and the energy-std UQ, for R frames in one pass (shared
        matrix products: the per-frame cost falls with R; see benchmarks/speed.py)."""
        positions = np.asarray(positions, dtype=float)
        if positions.ndim != 3 or positions.shape[1:] != (len(self.numbers), 3):
            raise ValueError(
                f"positions must be (replicas, {len(self.numbers)}, 3), got {positions.shape}"
            )
        with torch_threads(self.threads):
            e, f = self._driver_call(positions)
        energies = e.to(torch.float64).numpy().T + self.sae
        return BatchEvalResult(
            energies=energies,
            forces=f.to(torch.float64).numpy(),
            energy_std=energies.std(axis=1),
        )

    def _driver_call(self, positions: np.ndarray) -> tuple[Tensor, Tensor]:
        """Member energies (M, R) and the driver's forces (R, N, 3) through `ForcePath`.

        Without TorchScript's graph optimisation: after two profiling calls it would switch to
        its own derivative formulas, which round differently, so a run would depend on how
        many calls the process had made before it (and a resumed campaign would differ from
        an uninterrupted one). The interpreter alone gives the speed-up.
        """
        with torch.enable_grad(), torch.jit.optimized_execution(False):
            # one frame: the other members run beside the driver; a batch of replicas already
            # keeps both cores busy (intra-op threads), where overlapping only oversubscribes
            e, f = self.force_path(
                torch.as_tensor(positions, dtype=self.dtype), overlap=len(positions) == 1
            )
        return e.detach(), f.detach()

    def _autograd_call(
        self, positions: np.ndarray, forces: str
    ) -> tuple[Tensor, Tensor, np.ndarray | None]:
        """Energies, driving forces and (``all``) every member's forces through autograd."""
        x = torch.tensor(np.asarray(positions)[None], dtype=self.dtype).requires_grad_(True)
        member_f = None
        with torch.enable_grad():
            aev = self.aev(x)
            if forces == "mean":
                e = self.nets(aev)[:, 0]
                f = -torch.autograd.grad(e.mean(), x)[0][0]
                e = e.detach()
            elif forces == "all":
                n_m = self.nets.n_members
                rep = aev.detach().expand(n_m, *aev.shape).clone().requires_grad_(True)
                e = self.nets(rep)[:, 0]
                g = torch.autograd.grad(e.sum(), rep)[0]
                mf = -torch.autograd.grad(aev, x, g, is_grads_batched=True)[0][:, 0]
                member_f = mf.to(torch.float64).numpy()
                f = mf.mean(0) if self.mean_driver else mf[self.best]
                e = e.detach()
            else:
                raise ValueError(f"forces must be best, mean or all, not {forces!r}")
        return e.detach(), f.detach(), member_f


@dataclass
class Committee:
    """A trained committee: members, their splits (frame ids) and per-member metrics."""

    members: list[ANIModel]
    splits: list[dict[str, list[int]]]
    strategy: str = "random"
    metrics: list[dict[str, float]] = field(default_factory=list)
    seed: int = 0

    @property
    def n_members(self) -> int:
        """Number of members."""
        return len(self.members)

    @property
    def best_index(self) -> int:
        """Member with the lowest validation force MAE: the SMD driver."""
        key = "val_force_mae_eV_A"
        vals = [m.get(key, m.get("all_force_mae_eV_A", np.inf)) for m in self.metrics]
        return int(np.argmin(vals)) if vals else 0

    @property
    def inherit_index(self) -> int:
        """Member with the lowest force MAE over all its frames: whose split is inherited."""
        vals = [m.get("all_force_mae_eV_A", np.inf) for m in self.metrics]
        return int(np.argmin(vals)) if vals else 0

    @property
    def best(self) -> ANIModel:
        """The best member (SMD driver)."""
        return self.members[self.best_index]

    def member_index(self, member: int) -> int:
        """``member`` checked against the committee's size."""
        if not isinstance(member, int) or not 0 <= member < self.n_members:
            raise ModelError(f"no member {member!r} in a committee of {self.n_members}")
        return member

    def inherited_split(self) -> dict[str, list[int]]:
        """The split a next ``inherited`` committee starts from."""
        return self.splits[self.inherit_index]

    # ------------------------------------------------------------------ train
    @classmethod
    def train(
        cls,
        frames: Sequence[Atoms],
        n_members: int = 3,
        settings: ANISettings | None = None,
        strategy: str = "random",
        previous: Committee | dict[str, Sequence[int]] | str | os.PathLike[str] | None = None,
        seed: int = 0,
        executor: MapExecutor | None = None,
        warm_start: bool = False,
        progress: Callable[[int, int], None] | None = None,
        threads: int | None = None,
        cache: FeatureCache | None = None,
    ) -> Committee:
        """Train `n_members` members on `frames`: side by side in this process, or through
        `executor` (one member per task, each computing its own features).

        `previous` (a Committee, its folder, or a split dict) is what ``inherited`` splits
        inherit; with `warm_start` members also start from the previous members' weights.
        In this process the members share one set of AEVs and Jacobians (taken from `cache`
        where it has them) and train in `threads` threads of one torch thread each (None: all
        members at once when there are fewer than two per core, else one per core);
        every member's weights are the same bit for bit whatever the number of threads.
        With `executor`, `threads` and `cache` are not used.
        `progress(epochs_done, epochs_total)` follows the epochs of all members.
        """
        settings = settings if settings is not None else ANISettings()
        frames = list(frames)
        ids = frame_ids(frames)
        prev_committee: Committee | None = None
        prev_split: dict[str, Sequence[int]] | None = None
        if isinstance(previous, (str, os.PathLike)):
            prev_committee = cls.load(previous)
        elif isinstance(previous, Committee):
            prev_committee = previous
        elif previous is not None:
            prev_split = previous
        if prev_committee is not None:
            prev_split = prev_committee.inherited_split()
        splits = make_splits(
            ids,
            n_members,
            strategy,
            prev_split,
            val_fraction=settings.val_fraction,
            seed=seed,
            groups=parent_groups(frames),
        )
        pos = {i: k for k, i in enumerate(ids)}
        elements = elements_of(frames)
        tasks = []
        for m, sp in enumerate(splits):
            init = None
            if warm_start and prev_committee is not None:
                cand = prev_committee.members[m % prev_committee.n_members]
                init = cand if cand.elements == elements else None
            tasks.append(
                MemberTask(
                    frames=frames,
                    settings=settings,
                    seed=seed * 1000 + m,
                    train_idx=[pos[i] for i in sp["train"]],
                    val_idx=[pos[i] for i in sp["val"]],
                    elements=elements,
                    init=init,
                )
            )
        if executor is not None:
            members = list(executor.map(train_member, tasks))
        else:
            members = _train_side_by_side(tasks, frames, settings, threads, cache, progress)
        metrics = [dict(m.history.metrics) for m in members]
        return cls(members=members, splits=splits, strategy=strategy, metrics=metrics, seed=seed)

    # ---------------------------------------------------------------- predict
    def predict(self, frames: Sequence[Atoms], forces: bool = True) -> CommitteePrediction:
        """Energies, forces and UQ of every member for a batch of frames."""
        per = [m.predict(frames, forces=forces) for m in self.members]
        energies = np.array([e for e, _ in per])
        n_frames = len(frames)
        sizes = {len(f) for f in frames}
        if len(sizes) <= 1:
            n_at = sizes.pop() if sizes else 0
            fa = np.zeros((self.n_members, n_frames, n_at, 3))
            for m, (_, fl) in enumerate(per):
                for i, f in enumerate(fl):
                    fa[m, i] = f
            fstd: np.ndarray | list[np.ndarray] = _force_spread(fa)
            out_f: np.ndarray | list[np.ndarray] = fa
        else:
            out_f = [
                np.array([per[m][1][i] for m in range(self.n_members)]) for i in range(n_frames)
            ]
            fstd = [_force_spread(f) for f in out_f]
        return CommitteePrediction(
            energies=energies, forces=out_f, energy_std=energies.std(axis=0), force_std=fstd
        )

    def evaluator(
        self,
        numbers: Sequence[int],
        threads: int | None = 1,
        driver: int | str | None = None,
        aev_path: str = "auto",
    ) -> CommitteeEvaluator:
        """Fast single-frame evaluator for one molecule (the steered-MD loop's path); forces
        of member ``driver`` (default: the best member; ``"mean"``: the committee mean);
        `aev_path` as in `CommitteeEvaluator`."""
        return CommitteeEvaluator(self, numbers, threads=threads, driver=driver, aev_path=aev_path)

    def replica_force_field(
        self, numbers: Sequence[int], threads: int | None = None, driver: int | str | None = None
    ) -> BatchForceField:
        """Batched steered-MD force field for `run_smd_replicas`: the best member (or
        ``driver``) drives, the committee's energy std is the UQ, every replica in one pass.
        ``threads=None`` keeps torch's own thread count: a batch of frames is big enough to use
        every core."""
        evaluator = self.evaluator(numbers, threads=threads, driver=driver)

        def evaluate(positions: np.ndarray) -> ReplicaForces:
            result = evaluator.batch(positions)
            return ReplicaForces(
                energy=evaluator.driving_energy(result.energies),
                forces=result.forces,
                uq=result.energy_std,
            )

        return evaluate

    def calculator(
        self, mode: str = "best", force_uq: bool = True, driver: int | str | None = None
    ) -> CommitteeCalculator:
        """ASE calculator over this committee (see `CommitteeCalculator`)."""
        return CommitteeCalculator(self, mode=mode, force_uq=force_uq, driver=driver)

    # ------------------------------------------------------------ persistence
    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write member_K/ folders, splits.json and committee.json."""
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        for k, m in enumerate(self.members):
            m.save(path / f"member_{k}")
        (path / SPLITS_FILE).write_text(
            json.dumps(
                {
                    "strategy": self.strategy,
                    "inherit_index": self.inherit_index,
                    "members": self.splits,
                },
                indent=1,
            )
        )
        (path / COMMITTEE_FILE).write_text(
            json.dumps(
                {
                    "n_members": self.n_members,
                    "strategy": self.strategy,
                    "seed": self.seed,
                    "best_index": self.best_index,
                    "inherit_index": self.inherit_index,
                    "best_by": "validation force MAE",
                    "inherit_by": "force MAE over all frames",
                    "metrics": self.metrics,
                },
                indent=1,
            )
        )
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Committee:
        """Read a committee folder; ModelError if it is missing or corrupted."""
        path = Path(folder)
        if not path.is_dir():
            raise ModelError(f"committee folder {path} does not exist")
        reading = path / COMMITTEE_FILE  # named in the error: which file is damaged
        try:
            info = json.loads(reading.read_text())
            reading = path / SPLITS_FILE
            splits = json.loads(reading.read_text())
            n = int(info["n_members"])
            member_splits = [
                {"train": [int(i) for i in s["train"]], "val": [int(i) for i in s["val"]]}
                for s in splits["members"]
            ]
            metrics = [dict(m) for m in info["metrics"]]
        except Exception as exc:
            raise ModelError(f"{reading} is missing or corrupted: {exc}") from exc
        members = [ANIModel.load(path / f"member_{k}") for k in range(n)]
        if len(member_splits) != n or len(metrics) != n:
            raise ModelError(f"committee folder {path} is inconsistent (member counts differ)")
        return cls(
            members=members,
            splits=member_splits,
            strategy=str(info.get("strategy", "random")),
            metrics=metrics,
            seed=int(info.get("seed", 0)),
        )


class CommitteeCalculator(Calculator):
    """ASE calculator over a committee.

    `energy` and `forces` come from the best member (``mode="best"``; another member with
    ``driver``) or the committee mean (``mode="mean"``). `results` also holds
    `member_energies` (every member, eV), `energy_std` (eV, ddof=0: the paper's UQ) and, with
    `force_uq`, `forces_std` (per-atom spread, eV/A), which needs every member's forces and so
    costs more per step. Not `energies`: in ASE that key means one energy per atom, and a
    per-member array under it breaks ASE's extxyz and trajectory writers.
    """

    implemented_properties = ["energy", "free_energy", "forces", "energy_std", "forces_std"]

    def __init__(
        self,
        committee: Committee,
        mode: str = "best",
        force_uq: bool = True,
        driver: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("best", "mean"):
            raise ValueError(f"mode must be 'best' or 'mean', not {mode!r}")
        if mode == "mean" and driver is not None:
            raise ValueError("driver is for mode 'best'; mode 'mean' is driven by the mean")
        self.driver = driver if driver in (None, "mean") else committee.member_index(driver)
        self.committee = committee
        self.mode = mode
        self.force_uq = force_uq
        self._evaluator: CommitteeEvaluator | None = None

    def prepare(self, numbers: Sequence[int]) -> None:
        """Build the evaluator for a molecule now (it compiles TorchScript): before handing
        the calculator to another thread, or to keep the compile out of a timed run."""
        self._get_evaluator(numbers)

    def _get_evaluator(self, numbers: Sequence[int]) -> CommitteeEvaluator:
        key = tuple(int(z) for z in numbers)
        if self._evaluator is None or self._evaluator.numbers != key:
            self._evaluator = self.committee.evaluator(key, driver=self.driver)
        return self._evaluator

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """Changes since the last calculation, by exact comparison of what the model reads.

        ASE's default compares every per-atom array with `np.allclose` (tolerance 1e-15, so
        in effect exact); on a 20-atom molecule that costs a large part of an MD step.
        """
        old = self.atoms
        if old is None:
            return list(all_changes)
        changes = []
        if not np.array_equal(old.positions, atoms.positions):
            changes.append("positions")
        if not np.array_equal(old.numbers, atoms.numbers):
            changes.append("numbers")
        if not np.array_equal(old.cell.array, atoms.cell.array):
            changes.append("cell")
        if not np.array_equal(old.pbc, atoms.pbc):
            changes.append("pbc")
        return changes

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        """Fill `results` for `atoms`."""
        if atoms is not None and (self.atoms is None or self.check_state(atoms)):
            # `get_property` has just stored a copy of `atoms`; copy only when called directly
            super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        ev = self._get_evaluator(self.atoms.numbers)
        kind = "all" if self.force_uq else self.mode
        res = ev(self.atoms.positions, forces=kind)
        if self.mode == "mean":
            energy = float(res.energies.mean())
            forces = res.member_forces.mean(axis=0) if res.member_forces is not None else res.forces
        else:
            energy = float(ev.driving_energy(res.energies))
            forces = res.forces
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": forces,
            "member_energies": res.energies,
            "energy_std": res.energy_std,
        }
        if res.force_std is not None:
            self.results["forces_std"] = res.force_std


__all__ = [
    "STRATEGIES",
    "BatchEvalResult",
    "Committee",
    "CommitteeCalculator",
    "CommitteeEvaluator",
    "CommitteePrediction",
    "EvalResult",
    "MemberTask",
    "frame_ids",
    "make_splits",
    "parent_groups",
    "train_member",
]
