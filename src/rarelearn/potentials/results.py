"""Result types of committee evaluation, in one place (as TorchANI keeps its tuples)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    """One frame from a committee evaluator: member energies (M,), driving forces (N,3),
    energy std, and (when requested) all members' forces (M,N,3) and per-atom spread (N,)."""

    energies: np.ndarray
    forces: np.ndarray
    energy_std: float
    member_forces: np.ndarray | None = None
    force_std: np.ndarray | None = None


@dataclass
class BatchEvalResult:
    """Replicas from a committee evaluator: member energies (R, M), driving forces (R, N, 3)
    and the energy std (R,)."""

    energies: np.ndarray
    forces: np.ndarray
    energy_std: np.ndarray


def force_spread(member_forces: np.ndarray) -> np.ndarray:
    """Per-atom force spread sqrt(mean_m |F_m - <F>|^2); input (M, ..., N, 3)."""
    dev = member_forces - member_forces.mean(axis=0, keepdims=True)
    return np.sqrt((dev**2).sum(-1).mean(axis=0))
