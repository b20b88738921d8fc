"""Rupture-region and post-snap labels: a few frames of every NNP pull around its snap, labeled.

W(d) of a model and of the reference part in the last ~0.3 A before the chain snaps; that is
where a barrier is decided, on the model's own paths, which the committee's spread does not
flag when the members share an error (FIELD-NOTES). From every pull, the start frame and
``rupture_frames`` frames evenly spaced over the last ``rupture_window_A`` of spring distance
before the model's snap are labeled; they join the training set (no noisy copies), and the
row reports how the model's energy change from the start agrees with the labeler's, which
needs no reference pull: a self-consistency check the campaign can make at any level of theory.

Post-snap (tail) labels: ``tail_frames`` frames evenly spaced from the snap to the pull's end.
After the snap the reference's fragments part freely (W rises 0.08 eV on hexane), while
committees keep pulling the broken-off fragment back and W keeps rising (docs/convergence.md,
"Work after the snap"); these frames are where that spurious attraction acts. Their energy
change from the start is the model's dissociation energy under load, reported apart
(``tail_energy_difference_eV``) so the rupture-region keys mean what they meant.
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
    if n_frames == 0:
        return [0]
    snap = snap_frame(trace)
    inside = np.nonzero(trace.distance_A[: snap + 1] >= trace.distance_A[snap] - window_A)[0]
    first = int(inside[0]) if len(inside) else snap
    picks = np.linspace(first, snap, n_frames).round().astype(int)
    return [0, *sorted({int(k) for k in picks if k > 0})]


def tail_region(trace: SMDTrace, n_frames: int) -> list[int]:
    """``n_frames`` frames evenly spaced after the model's snap up to the pull's last frame
    (the snap frame itself excluded: it belongs to the rupture region); none where the pull
    never broke, since then nothing has parted."""
    if n_frames == 0 or trace.broken_frame is None:
        return []
    snap, last = trace.broken_frame, trace.n_frames - 1
    picks = np.linspace(snap, last, n_frames + 1)[1:].round().astype(int)
    return sorted({int(k) for k in picks if k > snap})


def save_rupture_frames(
    path: Path,
    traces: Sequence[SMDTrace],
    n_frames: int,
    window_A: float,
    n_tail: int = 0,
) -> None:
    """Every pull's rupture-region and post-snap frames with the model's energy (``after_snap``
    marks the latter), in one trajectory; a pull with nothing to compare with its start (post-
    snap frames alone, and it never broke) adds no frame."""
    frames = []
    for replica, trace in enumerate(traces):
        picks = [(f, False) for f in rupture_region(trace, n_frames, window_A)]
        picks += [(f, True) for f in tail_region(trace, n_tail)]
        if len(picks) == 1:
            continue
        for frame, after_snap in picks:
            atoms = trace.frame(frame)
            atoms.info.update(
                replica=replica,
                frame=frame,
                model_energy=float(trace.energy_eV[frame]),
                after_snap=after_snap,
            )
            frames.append(atoms)
    temporary = path.with_name(path.name + ".tmp")
    write(temporary, frames, format="traj")
    manifest.replace(temporary, path)


def load_rupture_frames(path: Path) -> list[Atoms]:
    return list(read_traj(path))


def rupture_row(frames: Sequence[Atoms], label_energies: Sequence[float | None]) -> dict[str, Any]:
    """Model minus labeler energy change from each pull's start to its rupture-region frames,
    and apart, to its post-snap frames.

    Per pull the mean over its frames; the interval is the t interval over pulls (frames of
    one pull are not independent). Pulls with a frame more than `UNPHYSICAL_EV` off are named.
    """
    by_pull: dict[int, list[tuple[int, bool, float, float | None]]] = {}
    for atoms, label in zip(frames, label_energies, strict=True):
        info = atoms.info
        by_pull.setdefault(int(info["replica"]), []).append(
            (
                int(info["frame"]),
                bool(info.get("after_snap", False)),
                float(info["model_energy"]),
                label,
            )
        )
    means: dict[bool, list[float]] = {False: [], True: []}
    unphysical = []
    for replica, entries in sorted(by_pull.items()):
        start = next((e for e in entries if e[0] == 0), None)
        if start is None or start[3] is None:
            continue
        differences: dict[bool, list[float]] = {False: [], True: []}
        for frame, after_snap, model, label in entries:
            if frame != 0 and label is not None:
                differences[after_snap].append((model - start[2]) - (label - start[3]))
        for after_snap, values in differences.items():
            if values:
                means[after_snap].append(float(np.mean(values)))
        every = differences[False] + differences[True]
        if every and max(abs(d) for d in every) > UNPHYSICAL_EV:
            unphysical.append(replica)
    before, tail = _mean_over_pulls(means[False]), _mean_over_pulls(means[True])
    return {
        "rupture_labels": sum(label is not None for label in label_energies),
        "rupture_energy_difference_eV": before[0],
        "rupture_energy_difference_ci95_eV": before[1],
        "rupture_unphysical_pulls": unphysical,
        "tail_energy_difference_eV": tail[0],
        "tail_energy_difference_ci95_eV": tail[1],
    }


def _mean_over_pulls(means: list[float]) -> tuple[float | None, float | None]:
    if not means:
        return None, None
    difference = paired(means, [0.0] * len(means))
    return difference.estimate, finite_or_none(difference.half_width)


def empty_rupture_row() -> dict[str, Any]:
    return dict.fromkeys(RUPTURE_ROW_KEYS)
