"""A trained committee (ensemble) of NNPs: members, splits, best member, UQ, persistence.

PROTOCOL section 4: N members (3, 5 or 7) of the same family and architecture, each trained
on its own train/validation split of the same frames (`splits`). The family is any of
`potentials.families` (``committee.backend``); the committee knows its members only through
the `Potential` interface, and asks their family how to train them together and how to
evaluate them on one molecule (`Potential.train_members`, `Potential.committee_evaluator`).

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
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from ase import Atoms

from rarelearn.committee.splits import frame_ids, make_splits, parent_groups
from rarelearn.committee.training import MemberTask, train_member
from rarelearn.dynamics.replicas import BatchForceField, ReplicaForces
from rarelearn.errors import ModelError
from rarelearn.potentials.base import Potential, elements_of
from rarelearn.potentials.evaluator import CommitteeEvaluator
from rarelearn.potentials.families import family_of_settings, model_class
from rarelearn.potentials.results import CommitteePrediction, force_spread

if TYPE_CHECKING:
    from rarelearn.committee.calculator import CommitteeCalculator

SPLITS_FILE = "splits.json"
COMMITTEE_FILE = "committee.json"


class MapExecutor(Protocol):
    """Anything with `map(fn, items) -> list` (results in order); fn and items picklable."""

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]: ...


@dataclass
class Committee:
    """A trained committee: members, their splits (frame ids) and per-member metrics."""

    members: list[Potential]
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
    def family(self) -> type[Potential]:
        """The members' model family (its `Potential` subclass)."""
        return type(self.members[0])

    @property
    def best(self) -> Potential:
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
        settings: Any = None,
        strategy: str = "random",
        previous: Committee | dict[str, Sequence[int]] | str | os.PathLike[str] | None = None,
        seed: int = 0,
        executor: MapExecutor | None = None,
        warm_start: bool = False,
        progress: Callable[[int, int], None] | None = None,
        threads: int | None = None,
        cache: Any = None,
        family: str | None = None,
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
        `family` (``ani``, ``schnet``, ``mace``; see `potentials.families`) defaults to the
        family of `settings`, and to ANI without settings.
        """
        family = family or (family_of_settings(settings) if settings is not None else "ani")
        model_type = model_class(family)
        settings = settings if settings is not None else model_type.settings_class()
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
                    family=model_type,
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
            members = model_type.train_members(tasks, frames, threads, progress, cache)
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
            fstd: np.ndarray | list[np.ndarray] = force_spread(fa)
            out_f: np.ndarray | list[np.ndarray] = fa
        else:
            out_f = [
                np.array([per[m][1][i] for m in range(self.n_members)]) for i in range(n_frames)
            ]
            fstd = [force_spread(f) for f in out_f]
        return CommitteePrediction(
            energies=energies, forces=out_f, energy_std=energies.std(axis=0), force_std=fstd
        )

    def max_force_spread(self, frames: Sequence[Atoms]) -> np.ndarray:
        """Per frame, the largest per-atom force spread of the members (eV/A): DP-GEN's
        uncertainty, the score of ``selection.uq = "force"``. Frames of one molecule."""
        return np.asarray(self.predict(frames, forces=True).force_std).max(axis=-1)

    def evaluator(
        self,
        numbers: Sequence[int],
        threads: int | None = 1,
        driver: int | str | None = None,
        aev_path: str = "auto",
    ) -> CommitteeEvaluator:
        """Evaluator for one molecule (the steered-MD loop's path, from the members' family:
        `Potential.committee_evaluator`); forces of member ``driver`` (default, None or
        ``"best"``: the best member; ``"mean"``: the committee mean); `aev_path` for ANI
        (`potentials.ani.committee`)."""
        mean_driver = driver == "mean"
        default = driver in (None, "best") or mean_driver
        best = self.best_index if default else self.member_index(driver)
        options = {"aev_path": aev_path} if self.family.family == "ani" else {}
        return self.family.committee_evaluator(
            self.members, numbers, best, mean_driver, threads, **options
        )

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
        from rarelearn.committee.calculator import CommitteeCalculator

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
                    "backend": self.family.family,
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
    def load(cls, folder: str | os.PathLike[str], device: str | None = None) -> Committee:
        """Read a committee folder; ModelError if it is missing or corrupted. `device`
        replaces the members' saved device (`Potential.load`)."""
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
            backend = str(info.get("backend", "ani"))  # folders from before SchNet and MACE
        except Exception as exc:
            raise ModelError(f"{reading} is missing or corrupted: {exc}") from exc
        model_type = model_class(backend)
        members = [model_type.load(path / f"member_{k}", device) for k in range(n)]
        if len(member_splits) != n or len(metrics) != n:
            raise ModelError(f"committee folder {path} is inconsistent (member counts differ)")
        return cls(
            members=members,
            splits=member_splits,
            strategy=str(info.get("strategy", "random")),
            metrics=metrics,
            seed=int(info.get("seed", 0)),
        )
