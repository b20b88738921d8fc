"""Snap tests: the labeler finishes the model's pull from just before the model's own snap.

Where a committee's barrier goes wrong is the snap itself: the breaking bond at 1.9-2.5 A under
tension, which no model pull visits before its own (early or late) snap, and which the members,
agreeing with each other, never flag (FIELD-NOTES). A snap test takes the state of an NNP pull
``window_A`` of spring distance before the model snapped (positions; velocities by central
difference of the recorded frames), keeps the same moving spring, and continues with the
labeler for at most ``max_steps`` steps, until the labeler's own bond breaks plus
``after_steps``. Per test it tells, without any reference pull, whether the model snaps too
early (the labeler holds longer), too late (the labeler snaps at once) or breaks another bond;
its frames are labels of that transition, given by the labeler as it integrates, and join the
training set with noisy copies. ~100-700 labeler steps a test against a 6,500-step reference
pull, and the tests run in parallel on the executor.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.io import write

from rarelearn import manifest
from rarelearn.dynamics import SMDSettings, SMDTrace, StartState, run_smd
from rarelearn.errors import ConfigError
from rarelearn.labeling import LabelerSpec
from rarelearn.molecules import PulledAtoms
from rarelearn.runfolder import SNAP_ROW_KEYS, read_traj
from rarelearn.statistics import finite_or_none, paired


@dataclass(frozen=True)
class SnapSettings:
    """The ``[snap]`` table: how many NNP pulls are snap-tested each iteration, and how."""

    #: NNP pulls tested per iteration, evenly spaced over the replicas (0: no snap tests)
    replicas: int = 0
    #: the test starts this far (spring distance, A) before the model's snap
    window_A: float = 0.3
    #: labeler steps kept after the labeler's own snap
    after_steps: int = 40
    #: at most this many labeler steps per test (a labeler that holds longer is reported so)
    max_steps: int = 1200
    #: every ``stride``-th frame of a test, up to its snap + ``after_steps``, is a label ...
    stride: int = 10
    #: ... at most this many per test, evenly spaced (0: no cap)
    max_frames: int = 0
    #: noisy copies of each snap-test label (noise amplitude: ``selection.noise_amplitude_A``)
    n_copies: int = 2

    @property
    def enabled(self) -> bool:
        return self.replicas > 0

    def __post_init__(self) -> None:
        integers = {
            "replicas": (self.replicas, 0),
            "after_steps": (self.after_steps, 0),
            "max_steps": (self.max_steps, 1),
            "stride": (self.stride, 1),
            "max_frames": (self.max_frames, 0),
            "n_copies": (self.n_copies, 0),
        }
        for name, (value, lowest) in integers.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise ConfigError(f"{name} must be an integer >= {lowest}, got {value!r}")
        if not np.isfinite(self.window_A) or self.window_A <= 0:
            raise ConfigError(f"window_A must be a positive distance, got {self.window_A!r}")


def replicas_under_test(n_replicas: int, settings: SnapSettings) -> list[int]:
    """The replicas tested: ``settings.replicas`` of them, evenly spaced, replica 0 first."""
    n = min(settings.replicas, n_replicas)
    if n <= 0:
        return []
    return sorted({int(r) for r in np.linspace(0, n_replicas - 1, n).round()})


@dataclass
class SnapStart:
    """What a snap test needs from one NNP pull, and what the model did from there."""

    replica: int
    #: the pull's frame the test starts from
    frame: int
    start: StartState
    rest_length_A: float
    #: the pull's unstretched start: bonds are broken relative to it
    bond_reference: Atoms
    #: steps the model took from ``frame`` to its snap (None: it never broke)
    model_steps: int | None
    model_bond: str | None


def snap_frame(trace: SMDTrace) -> int:
    """Where the model snapped: its first broken frame, else its peak spring force."""
    if trace.broken_frame is not None:
        return trace.broken_frame
    return int(np.argmax(trace.spring_force_eV_per_A))


def snap_start(
    replica: int, trace: SMDTrace, start: StartState, settings: SnapSettings, timestep_fs: float
) -> SnapStart:
    """The state ``window_A`` before the model's snap (velocities: central difference)."""
    if trace.positions_A is None:
        raise ValueError("a snap test needs the pull's frames (positions)")
    snap = snap_frame(trace)
    before = np.nonzero(trace.distance_A[: snap + 1] <= trace.distance_A[snap] - settings.window_A)
    frame = int(before[0][-1]) if len(before[0]) else 0
    frame = min(max(frame, 1), trace.n_frames - 2)
    velocities = (trace.positions_A[frame + 1] - trace.positions_A[frame - 1]) / (
        2.0 * timestep_fs * units.fs
    )
    atoms = Atoms(numbers=trace.numbers, positions=trace.positions_A[frame])
    atoms.set_velocities(velocities)
    return SnapStart(
        replica=replica,
        frame=frame,
        start=StartState(atoms=atoms, pulled=start.pulled),
        rest_length_A=float(trace.rest_length_A[frame]),
        bond_reference=start.atoms.copy(),
        model_steps=None if trace.broken_frame is None else trace.broken_frame - frame,
        model_bond=trace.broken_bond_label(),
    )


def save_snap_starts(path: Path, starts: list[SnapStart]) -> None:
    """The snap-test starts in one ASE trajectory (momenta kept), written atomically."""
    frames = []
    for snap in starts:
        atoms = snap.start.atoms.copy()
        atoms.set_momenta(snap.start.atoms.get_momenta(), apply_constraint=False)
        atoms.info.update(
            replica=snap.replica,
            frame=snap.frame,
            pulled=snap.start.pulled.to_list(),
            rest_length_A=snap.rest_length_A,
            bond_reference=snap.bond_reference.positions.tolist(),
            model_steps=-1 if snap.model_steps is None else snap.model_steps,
            model_bond=snap.model_bond or "",
        )
        frames.append(atoms)
    temporary = path.with_name(path.name + ".tmp")
    write(temporary, frames, format="traj")
    manifest.replace(temporary, path)


def load_snap_starts(path: Path) -> list[SnapStart]:
    starts = []
    for atoms in read_traj(path):
        info = atoms.info
        reference = Atoms(numbers=atoms.numbers, positions=np.array(info["bond_reference"]))
        starts.append(
            SnapStart(
                replica=int(info["replica"]),
                frame=int(info["frame"]),
                start=StartState(atoms=atoms, pulled=PulledAtoms.from_list(info["pulled"])),
                rest_length_A=float(info["rest_length_A"]),
                bond_reference=reference,
                model_steps=None if int(info["model_steps"]) < 0 else int(info["model_steps"]),
                model_bond=str(info["model_bond"]) or None,
            )
        )
    return starts


def segment_settings(smd: SMDSettings, settings: SnapSettings) -> SMDSettings:
    """The pull's own settings, run until the labeler's snap plus ``after_steps``."""
    return smd.with_changes(
        n_steps=1,
        until_broken=True,
        post_break_steps=settings.after_steps,
        max_steps=settings.max_steps,
    )


def run_snap_test(task: tuple[LabelerSpec, SnapStart, SMDSettings]) -> SMDTrace:
    """Executor side: one snap test with the labeler (module-level: picklable)."""
    spec, snap, settings = task
    calculator = spec.build(reuse_wavefunction=True)
    return run_smd(
        snap.start,
        calculator,
        settings,
        rest_length_A=snap.rest_length_A,
        bond_reference=snap.bond_reference,
    )


def labeled_frames(trace: SMDTrace, settings: SnapSettings) -> list[int]:
    """Frames of a snap test that become labels: every ``stride``-th up to the labeler's snap
    plus ``after_steps`` (the whole test when it never broke), thinned to ``max_frames``."""
    end = trace.n_frames - 1
    if trace.broken_frame is not None:
        end = min(end, trace.broken_frame + settings.after_steps)
    frames = list(range(0, end + 1, settings.stride))
    if settings.max_frames and len(frames) > settings.max_frames:
        picks = np.linspace(0, len(frames) - 1, settings.max_frames).round().astype(int)
        frames = [frames[k] for k in sorted(set(picks))]
    return frames


def snap_row(starts: list[SnapStart], traces: list[SMDTrace], n_labels: int) -> dict[str, Any]:
    """The row keys of an iteration's snap tests.

    ``snap_steps_difference_mean``: labeler minus model steps to the snap, over tests where
    both broke, with its 95 % interval: positive, the model snaps too early (too weak);
    negative, too late (too strong). ``snap_labeler_held``: tests in which the labeler did not
    snap within ``max_steps`` (a model far too weak: the difference is beyond the test).
    """
    labeler_steps = [t.broken_frame for t in traces]
    model_steps = [s.model_steps for s in starts]
    both = [
        (a, b)
        for a, b in zip(labeler_steps, model_steps, strict=True)
        if a is not None and b is not None
    ]
    mean, half_width = None, None
    if both:
        difference = paired([a for a, _ in both], [b for _, b in both])
        mean, half_width = difference.estimate, finite_or_none(difference.half_width)
    return {
        "snap_n_tests": len(traces),
        "snap_steps_labeler": labeler_steps,
        "snap_steps_model": model_steps,
        "snap_steps_difference_mean": mean,
        "snap_steps_difference_ci95": half_width,
        "snap_labeler_held": sum(steps is None for steps in labeler_steps),
        "snap_bonds_labeler": _counts([t.broken_bond_label() for t in traces]),
        "snap_bonds_model": _counts([s.model_bond for s in starts]),
        "snap_labels": n_labels,
    }


def empty_snap_row() -> dict[str, Any]:
    return dict.fromkeys(SNAP_ROW_KEYS)


def _counts(bonds: list[str | None]) -> dict[str, int]:
    return dict(Counter(bond or "none" for bond in bonds).most_common())
