"""Training a committee's members: one picklable task per member, trained by its family.

In this process the family trains all members at once (`Potential.train_members`: ANI on one
shared set of features, graph families side by side in threads); through an executor each
task is one job (`train_member`, module-level so process and Dask workers can pickle it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ase import Atoms

from rarelearn.potentials.base import Potential


@dataclass
class MemberTask:
    """Everything one member's training needs; picklable for process/Dask executors."""

    family: type[Potential]
    frames: list[Atoms]
    settings: Any
    seed: int
    train_idx: list[int]
    val_idx: list[int]
    elements: list[str]
    init: Potential | None = None


def train_member(task: MemberTask) -> Potential:
    """Train one committee member (module-level so executors can pickle it)."""
    return task.family.fit(
        task.frames,
        task.settings,
        seed=task.seed,
        train_idx=task.train_idx,
        val_idx=task.val_idx,
        init=task.init,
        elements=task.elements,
    )
