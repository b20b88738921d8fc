"""Error metrics of a potential on labeled frames (eV, eV/A; kcal/mol via rarelearn.units).

The relative energy MAE shifts predicted and reference energies each by their own mean before
comparing, as the paper's parity figures do: it measures the shape of the energy surface, not
a constant offset (which the self-atomic energies absorb).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms

from rarelearn.units import EV_TO_KCAL_MOL


def _as_array(values: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=float).reshape(-1)


def energy_mae(
    predicted: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray
) -> float:
    """Mean absolute energy error (eV)."""
    p, r = _as_array(predicted), _as_array(reference)
    if p.shape != r.shape or p.size == 0:
        raise ValueError(f"energy arrays must be non-empty and match: {p.shape} vs {r.shape}")
    return float(np.mean(np.abs(p - r)))


def relative_energy_mae(
    predicted: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray
) -> float:
    """MAE (eV) after shifting each series by its own mean."""
    p, r = _as_array(predicted), _as_array(reference)
    return energy_mae(p - p.mean(), r - r.mean())


def force_mae(
    predicted: Sequence[np.ndarray] | np.ndarray, reference: Sequence[np.ndarray] | np.ndarray
) -> float:
    """Mean absolute force error per Cartesian component (eV/A); frames may differ in size."""
    p = np.concatenate([np.asarray(f, dtype=float).reshape(-1) for f in predicted])
    r = np.concatenate([np.asarray(f, dtype=float).reshape(-1) for f in reference])
    if p.shape != r.shape or p.size == 0:
        raise ValueError(f"force arrays must be non-empty and match: {p.shape} vs {r.shape}")
    return float(np.mean(np.abs(p - r)))


def labels(frames: Sequence[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Reference energies (eV) and forces (eV/A) stored on labeled frames."""
    energies = np.array([f.get_potential_energy() for f in frames], dtype=float)
    forces = [np.asarray(f.get_forces(), dtype=float) for f in frames]
    return energies, forces


def evaluate(
    predicted_energies: Sequence[float] | np.ndarray,
    predicted_forces: Sequence[np.ndarray] | np.ndarray,
    frames: Sequence[Atoms],
) -> dict[str, float]:
    """All metrics of predictions against the labels of `frames`, in eV, kcal/mol and eV/A."""
    e_ref, f_ref = labels(frames)
    e_mae = energy_mae(predicted_energies, e_ref)
    rel = relative_energy_mae(predicted_energies, e_ref)
    return {
        "energy_mae_eV": e_mae,
        "energy_mae_kcal_mol": e_mae * EV_TO_KCAL_MOL,
        "relative_energy_mae_eV": rel,
        "relative_energy_mae_kcal_mol": rel * EV_TO_KCAL_MOL,
        "force_mae_eV_A": force_mae(predicted_forces, f_ref),
        "n_frames": float(len(frames)),
    }
