"""Committee evaluation for any family: every member's own `energies_forces`, in turn.

The steered MD and the committee calculator ask one thing of a committee: for a geometry (or
a batch of replicas) of one molecule, every member's energy, the driving forces (the best
member's, another member's, or those of the members' mean energy) and, on request, every
member's forces. ANI answers it faster with one shared AEV and stacked networks
(`potentials.ani.committee.ANICommitteeEvaluator`); any other family gets this evaluator,
which needs nothing beyond the `Potential` interface. Forces are computed only for the members
that need them (the driver's, or all for the mean driver and for force UQ).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from ase import Atoms

from rarelearn.potentials.base import Potential
from rarelearn.potentials.results import BatchEvalResult, EvalResult, force_spread
from rarelearn.threads import torch_threads


class CommitteeEvaluator(Protocol):
    """What evaluates a committee on one molecule (`Potential.committee_evaluator`)."""

    numbers: tuple[int, ...]
    best: int
    mean_driver: bool

    def driving_energy(self, energies: np.ndarray) -> np.ndarray: ...

    def __call__(self, positions: np.ndarray, forces: str = "best") -> EvalResult: ...

    def batch(self, positions: np.ndarray) -> BatchEvalResult: ...


class MemberEvaluator:
    """Energies, driving forces and UQ of one molecule (fixed atoms and order)."""

    def __init__(
        self,
        members: Sequence[Potential],
        numbers: Sequence[int],
        best: int,
        mean_driver: bool = False,
        threads: int | None = 1,
    ) -> None:
        for member in members:
            member.check_elements([Atoms(numbers=list(numbers))])
        self.members = list(members)
        self.numbers = tuple(int(z) for z in numbers)
        self.best = best
        self.mean_driver = mean_driver
        self.threads = threads

    def driving_energy(self, energies: np.ndarray) -> np.ndarray:
        """The energy whose forces drive the dynamics, from member energies (..., members)."""
        return energies.mean(axis=-1) if self.mean_driver else energies[..., self.best]

    def _members(self, positions: np.ndarray, all_forces: bool) -> tuple[np.ndarray, np.ndarray]:
        """Member energies (R, M) and forces (M, R, N, 3) (zeros for members not needed)."""
        coords = torch.as_tensor(np.asarray(positions, dtype=float))
        energies = np.zeros((len(coords), len(self.members)))
        forces = np.zeros((len(self.members), *coords.shape))
        with torch_threads(self.threads):
            for k, member in enumerate(self.members):
                need = all_forces or self.mean_driver or k == self.best
                e, f = member.energies_forces(self.numbers, coords.to(member.dtype), forces=need)
                energies[:, k] = e
                if need:
                    forces[k] = f
        return energies, forces

    def __call__(self, positions: np.ndarray, forces: str = "best") -> EvalResult:
        """One geometry (N, 3): ``best`` (driving forces), ``mean`` (forces of the mean
        energy) or ``all`` (every member's forces and their per-atom spread as well)."""
        if forces not in ("best", "mean", "all"):
            raise ValueError(f"forces must be best, mean or all, not {forces!r}")
        energies, member_forces = self._members(
            np.asarray(positions)[None], all_forces=forces != "best"
        )
        energies, member_forces = energies[0], member_forces[:, 0]
        if forces == "mean" or self.mean_driver:
            driving = member_forces.mean(axis=0)
        else:
            driving = member_forces[self.best]
        out = EvalResult(energies=energies, forces=driving, energy_std=float(energies.std()))
        if forces == "all":
            out.member_forces = member_forces
            out.force_std = force_spread(member_forces)
        return out

    def batch(self, positions: np.ndarray) -> BatchEvalResult:
        """Replicas (R, N, 3): every member's energy, the driving forces, the energy std."""
        positions = np.asarray(positions, dtype=float)
        if positions.ndim != 3 or positions.shape[1:] != (len(self.numbers), 3):
            raise ValueError(
                f"positions must be (replicas, {len(self.numbers)}, 3), got {positions.shape}"
            )
        energies, member_forces = self._members(positions, all_forces=False)
        driving = member_forces.mean(axis=0) if self.mean_driver else member_forces[self.best]
        return BatchEvalResult(energies=energies, forces=driving, energy_std=energies.std(axis=1))
