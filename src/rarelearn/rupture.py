"""Rupture-region labels: a few frames of every NNP pull just before it snaps, labeled.

W(d) of a model and of the reference part in the last ~0.3 A before the chain snaps; that is
where a barrier is decided, on the model's own paths, which the committee's spread does not
flag when the members share an error (FIELD-NOTES). From every pull, the start frame and
``rupture_frames`` frames evenly spaced over the last ``rupture_window_A`` of spring distance
before the model's snap are labeled; they join the training set (no noisy copies), and the
row reports how the model's energy change from the start agrees with the labeler's, which
needs no reference pull: a self-consistency check the campaign can make at any level of theory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import write

from rarelearn import manifest
from rarelearn.dynamics import SMDTrace
from rarelearn.runfolder import RUPTURE_ROW_KEYS, read_traj
from rarelearn.snap import snap_frame
from rarelearn.statistics import finite_or_none, paired

#: A label this far (eV) from the model's energy change is an unphysical pull: the model went
#: where the labeler puts the molecule far higher (or lower) than the model does.
UNPHYSICAL_EV = 1.0


def rupture_region(trace: SMDTrace, n_frames: int, window_A: float) -> list[int]:
    """The start frame, then ``n_frames`` frames evenly spaced over the last ``window_A`` of
    spring distance before the model's snap (its first broken frame, else its peak force)."""
    snap = snap_frame(trace)
    inside = np.nonzero(trace.distance_A[: snap + 1] >= trace.distance_A[snap] - window_A)[0]
    first = int(inside[0]) if len(inside) else snap
    picks = np.linspace(first, snap, n_frames).round().astype(int)
    return [0, *sorted({int(k) for k in picks if k > 0})]


def save_rupture_frames(path: Path, traces: Sequence[SMDTrace], n_frames: int, window_A: float):
    """Every pull's rupture-region frames with the model's energy, in one trajectory."""
    frames = []
    for replica, trace in enumerate(traces):
        for frame in rupture_region(trace, n_frames, window_A):
            atoms = trace.frame(frame)
            atoms.info.update(
                replica=replica, frame=frame, model_energy=float(trace.energy_eV[frame])
            )
            frames.append(atoms)
    temporary = path.with_name(path.name + ".tmp")
    write(temporary, frames, format="traj")
    manifest.replace(temporary, path)


def load_rupture_frames(path: Path) -> list[Atoms]:
    return list(read_traj(path))


def rupture_row(frames: Sequence[Atoms], label_energies: Sequence[float | None]) -> dict[str, Any]:
    """Model minus labeler energy change from each pull's start to its rupture-region frames.

    Per pull the mean over its frames; the interval is the t interval over pulls (frames of
    one pull are not independent). Pulls with a frame more than `UNPHYSICAL_EV` off are named.
    """
    by_pull: dict[int, list[tuple[int, float, float | None]]] = {}
    for atoms, label in zip(frames, label_energies, strict=True):
        info = atoms.info
        by_pull.setdefault(int(info["replica"]), []).append(
            (int(info["frame"]), float(info["model_energy"]), label)
        )
    means, unphysical = [], []
    for replica, entries in sorted(by_pull.items()):
        start = next((e for e in entries if e[0] == 0), None)
        if start is None or start[2] is None:
            continue
        differences = [
            (model - start[1]) - (label - start[2])
            for frame, model, label in entries
            if frame != 0 and label is not None
        ]
        if not differences:
            continue
        means.append(float(np.mean(differences)))
        if max(abs(d) for d in differences) > UNPHYSICAL_EV:
            unphysical.append(replica)
    mean, half_width = None, None
    if means:
        difference = paired(means, [0.0] * len(means))
        mean, half_width = difference.estimate, finite_or_none(difference.half_width)
    return {
        "rupture_labels": sum(label is not None for label in label_energies),
        "rupture_energy_difference_eV": mean,
        "rupture_energy_difference_ci95_eV": half_width,
        "rupture_unphysical_pulls": unphysical,
    }


def empty_rupture_row() -> dict[str, Any]:
    return dict.fromkeys(RUPTURE_ROW_KEYS)
