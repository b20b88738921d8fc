"""Reference data: equilibrium MD (initial training set) and the reference SMD (unseen test set).

Writes into a run folder: every frame with provenance into the store, and under ``reference/``
the SMD trace(s), the relaxed start state every later SMD starts from, and ``reference.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from rarelearn import manifest
from rarelearn.dynamics import (
    SMDSettings,
    SMDTrace,
    StartState,
    Thermostat,
    relax_start_state,
    run_md,
    run_smd,
)
from rarelearn.errors import ConfigError, RarelearnError
from rarelearn.executors import Executor
from rarelearn.labeling import LabelerSpec
from rarelearn.molecules import PulledAtoms, relax
from rarelearn.progress import StageProgress
from rarelearn.pulls import REPLICAS_FILE, START_STATES_FILE, ReplicaPulls, save_start_states
from rarelearn.runfolder import read_json
from rarelearn.statistics import Sample, finite_or_none
from rarelearn.store import CampaignStore, uid

#: The reference replica whose frames (positions, forces, energies) are kept beside replica
#: 0's: labeled reference frames that are not the unseen test set, which the ``reference``
#: selection strategy draws from (`rarelearn.selection.STRATEGIES`).
LABELED_REPLICA = 1
#: Replicas saved with their frames; the others keep their work curves only.
REPLICAS_WITH_FRAMES = (0, LABELED_REPLICA)


@dataclass(frozen=True)
class EquilibriumSettings:
    """Equilibrium MD that makes the initial training set (paper: 500 K, 0.5 fs, 2000 frames)."""

    temperature_K: float = 500.0
    timestep_fs: float = 0.5
    n_frames: int = 2000
    equilibration_steps: int = 200
    sample_every: int = 1
    tau_fs: float = 100.0

    def validate(self) -> None:
        if self.temperature_K <= 0 or self.timestep_fs <= 0 or self.tau_fs <= 0:
            raise ConfigError("equilibrium temperature_K, timestep_fs and tau_fs must be positive")
        if self.n_frames < 1 or self.sample_every < 1 or self.equilibration_steps < 0:
            raise ConfigError(
                "equilibrium n_frames and sample_every must be >= 1, equilibration_steps >= 0"
            )


@dataclass(frozen=True)
class ReferenceSettings:
    """Everything the reference stage needs besides the system and the labeler."""

    equilibrium: EquilibriumSettings = field(default_factory=EquilibriumSettings)
    smd: SMDSettings = field(default_factory=SMDSettings)
    replicas: int = 1
    seed: int = 0
    relax_geometry: bool = True

    def validate(self) -> None:
        self.equilibrium.validate()
        self.smd.validate()
        if not isinstance(self.replicas, int) or self.replicas < 1:
            raise ConfigError(f"replicas must be an integer >= 1, got {self.replicas!r}")


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically: a kill leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    manifest.replace(temporary, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def reference_replica(
    spec: LabelerSpec,
    atoms: Atoms,
    pulled: PulledAtoms,
    settings: SMDSettings,
    seed: int,
    progress: StageProgress | None = None,
    label: str = "",
) -> tuple[StartState, SMDTrace]:
    """Relax at low temperature and pull once with the reference (module-level: picklable)."""
    calculator = spec.build(reuse_wavefunction=True)
    if progress is None:
        start = relax_start_state(atoms, calculator, pulled, settings, seed)
        return start, run_smd(start, calculator, settings, seed)
    with progress.stage(f"relax 10 K{label}", settings.relax_steps) as update:
        start = relax_start_state(atoms, calculator, pulled, settings, seed, progress=update)
    with progress.stage(f"reference SMD{label}", settings.n_steps) as update:
        trace = run_smd(start, calculator, settings, seed, progress=update)
    return start, trace


def _replica_job(
    task: tuple[LabelerSpec, Atoms, PulledAtoms, SMDSettings, int],
) -> tuple[StartState, SMDTrace]:
    """Worker side of the replicas: one relaxation and pull (executors map one argument)."""
    return reference_replica(*task)


def replica_seed(seed: int, replica: int) -> int:
    """Velocity seed of reference replica ``replica`` (replica 0: the campaign seed itself)."""
    return seed + replica


def run_reference(
    atoms: Atoms,
    pulled: PulledAtoms,
    spec: LabelerSpec,
    settings: ReferenceSettings,
    run_dir: Path,
    store: CampaignStore,
    progress: StageProgress,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Run (or finish, if partly done) the reference stage; return ``reference.json``'s content.

    The R replicas (each its own 10 K relaxation and pull) are independent jobs on the
    ``executor``'s workers (in this process, one after another, without one). Each part is
    skipped when its output already exists, so a stopped run resumes here, losing at most
    the replicas in flight.
    """
    settings.validate()
    pulled.validate(len(atoms))
    reference_dir = run_dir / "reference"
    (reference_dir / "replicas").mkdir(parents=True, exist_ok=True)
    summary_path = reference_dir / "reference.json"
    written = [summary_path, reference_dir / START_STATES_FILE, reference_dir / REPLICAS_FILE]
    if all(path.is_file() for path in written):
        return read_json(summary_path)
    # otherwise finish it; a folder written before the replica files existed keeps replica 0

    geometry = atoms
    if settings.relax_geometry:
        progress.message(f"relaxing the start geometry with {spec.name}")
        geometry = relax(atoms, spec.build())

    if store.count(batch="equilibrium") == 0:
        eq = settings.equilibrium
        thermostat = Thermostat("berendsen", eq.temperature_K, tau_fs=eq.tau_fs)
        total = eq.equilibration_steps + eq.n_frames * eq.sample_every
        with progress.stage(f"equilibrium MD {eq.temperature_K:g} K", total) as update:
            frames = run_md(
                geometry,
                spec.build(reuse_wavefunction=True),
                thermostat,
                eq.timestep_fs,
                eq.n_frames,
                settings.seed,
                equilibration_steps=eq.equilibration_steps,
                sample_every=eq.sample_every,
                progress=update,
            )
        store.add_frames(frames, _provenance("equilibrium", 0, len(frames), spec))

    replicas = _ReplicaFiles(reference_dir)
    pending = [r for r in range(settings.replicas) if not replicas.done(r)]
    if pending and executor is None:
        for r in pending:
            label = f" (replica {r + 1}/{settings.replicas})" if settings.replicas > 1 else ""
            seed = replica_seed(settings.seed, r)
            replicas.save(
                r, *reference_replica(spec, geometry, pulled, settings.smd, seed, progress, label)
            )
    elif pending:
        group = max(1, executor.workers)
        name = f"reference replicas ({executor.workers} workers)"
        with progress.stage(name, settings.replicas, "replicas") as update:
            update(settings.replicas - len(pending), settings.replicas)
            for first in range(0, len(pending), group):
                part = pending[first : first + group]
                tasks = [
                    (spec, geometry, pulled, settings.smd, replica_seed(settings.seed, r))
                    for r in part
                ]
                for r, (start, trace) in zip(part, executor.map(_replica_job, tasks), strict=True):
                    replicas.save(r, start, trace)
                update(settings.replicas - len(pending) + first + len(part), settings.replicas)

    main = SMDTrace.load(replicas.main_trace)
    _store_reference_frames(store, main, spec)
    starts = [replicas.start(r) for r in range(settings.replicas)]
    save_start_states(reference_dir / START_STATES_FILE, starts)
    pulls = ReplicaPulls.from_traces([replicas.trace(r) for r in range(settings.replicas)])
    pulls.save(reference_dir / REPLICAS_FILE)
    summary = _reference_summary(main, pulls, spec, settings, pulled)
    write_json(summary_path, summary)
    manifest.record(reference_dir.parent / "data.db")  # its labels, at the stage's end
    return summary


@dataclass
class _ReplicaFiles:
    """Where each reference replica's start state and pull are kept (the resume unit).

    Replica 0 is the paper's reference SMD: its full trace (frames and forces: the unseen test
    set) is ``reference/smd.npz`` beside its start state ``reference/start_state.traj``; the
    others are under ``reference/replicas/``, replica 1 (:data:`LABELED_REPLICA`) with its
    frames too (about as large as replica 0's trace), the rest with their work curves only.
    """

    folder: Path

    @property
    def main_trace(self) -> Path:
        return self.folder / "smd.npz"

    def _start(self, replica: int) -> Path:
        if replica == 0:
            return self.folder / "start_state.traj"
        return self.folder / "replicas" / f"start_{replica:03d}.traj"

    def _trace(self, replica: int) -> Path:
        if replica == 0:
            return self.main_trace
        return self.folder / "replicas" / f"smd_{replica:03d}.npz"

    def done(self, replica: int) -> bool:
        return self._start(replica).is_file() and self._trace(replica).is_file()

    def save(self, replica: int, start: StartState, trace: SMDTrace) -> None:
        """Start state first, trace last: the trace file marks the replica done."""
        temporary = self._start(replica).with_name(self._start(replica).name + ".tmp")
        start.save(temporary)
        manifest.replace(temporary, self._start(replica))
        trace.save(self._trace(replica), frames=replica in REPLICAS_WITH_FRAMES)

    def start(self, replica: int) -> StartState:
        return StartState.load(self._start(replica))

    def trace(self, replica: int) -> SMDTrace:
        return SMDTrace.load(self._trace(replica))


def labeled_replica_trace(reference_dir: Path) -> SMDTrace:
    """Reference replica :data:`LABELED_REPLICA`'s pull with its frames and their labels.

    A folder written before that replica kept its frames holds its work curve only: then a
    RarelearnError names the file and how to have the pull redone with its frames.
    """
    files = _ReplicaFiles(reference_dir)
    path = files._trace(LABELED_REPLICA)
    if not path.is_file():
        raise RarelearnError(
            f"{path} not found: the reference selection strategy draws frames from reference "
            f"replica {LABELED_REPLICA}, which needs reference.replicas >= 2"
        )
    trace = files.trace(LABELED_REPLICA)
    if trace.positions_A is None or trace.forces_eV_per_A is None:
        raise RarelearnError(
            f"{path} holds reference replica {LABELED_REPLICA}'s work curve only (it was "
            "written before that replica kept its frames), and selection.strategy = "
            f"'reference' labels frames of it: delete it and {reference_dir / 'reference.json'}"
            ", then rerun; the reference stage redoes that pull and keeps its frames"
        )
    return trace


def _store_reference_frames(store: CampaignStore, trace: SMDTrace, spec: LabelerSpec) -> None:
    if store.count(batch="reference_smd"):
        return
    frames = [trace.frame(i, labeled=True) for i in range(trace.n_frames)]
    provenance = _provenance("reference_smd", 1, trace.n_frames, spec)
    for row, distance in zip(provenance, trace.distance_A, strict=True):
        row["spring_distance"] = float(distance)
    store.add_frames(frames, provenance)


def _provenance(source: str, stage: int, n_frames: int, spec: LabelerSpec) -> list[dict]:
    """Provenance of reference frames: the batch is the source, task and frame the index."""
    return [
        dict(
            source=source,
            iteration=-1,
            labeler=spec.name,
            batch=source,
            frame=i,
            task=i,
            uid=uid(stage, i),
        )
        for i in range(n_frames)
    ]


def _reference_summary(
    main: SMDTrace,
    pulls: ReplicaPulls,
    spec: LabelerSpec,
    settings: ReferenceSettings,
    pulled: PulledAtoms,
) -> dict[str, Any]:
    """``reference.json``: replica 0's figures of merit (the unseen set's pull) under their
    old keys, the replica statistics beside them, and the settings every NNP pull reuses."""
    smd = settings.smd
    forces = Sample.of(pulls.rupture_forces_eV_A(smd.spring_constant_eV_per_A2))
    return {
        **main.summary(),
        **pulls.summary(),
        "rupture_force_mean_eV_A": forces.mean,
        "rupture_force_sem_eV_A": finite_or_none(forces.sem),
        "rupture_force_replicas_eV_A": list(forces.values),
        "labeler": spec.name,
        "labeler_spec": asdict(spec),
        "pulled_atoms": pulled.to_list(),
        "pulled": pulled.labels(Atoms(numbers=main.numbers).get_chemical_symbols()),
        "pull_speed_A_per_ps": smd.pull_speed_A_per_ps,
        "spring_constant_eV_per_A2": smd.spring_constant_eV_per_A2,
        "temperature_K": smd.thermostat.temperature_K,
        "thermostat": smd.thermostat.to_dict(),
        "timestep_fs": smd.timestep_fs,
        "relax_steps": smd.relax_steps,
        "n_steps": smd.n_steps,
        "smd_settings": smd.to_dict(),
        "seed": settings.seed,
        "replicas": settings.replicas,
        "replica_seeds": [replica_seed(settings.seed, r) for r in range(settings.replicas)],
        "n_equilibrium_frames": settings.equilibrium.n_frames,
        "equilibrium_temperature_K": settings.equilibrium.temperature_K,
    }
