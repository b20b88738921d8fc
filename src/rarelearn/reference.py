"""Reference data: equilibrium MD (initial training set) and the reference SMD (unseen test set).

Writes into a run folder: every frame with provenance into the store, and under ``reference/``
the SMD trace(s), the relaxed start state every later SMD starts from, and ``reference.json``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.io import write

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
from rarelearn.executors import Executor, label_parallel
from rarelearn.labeling import LabelerSpec, label_frames
from rarelearn.molecules import PulledAtoms, relax
from rarelearn.progress import StageProgress
from rarelearn.pulls import REPLICAS_FILE, START_STATES_FILE, ReplicaPulls, save_start_states
from rarelearn.runfolder import read_json, read_traj
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
    #: Run the reference pulls (Ea_ref, rupture force, the unseen test set). Off: only the
    #: start states are made, and the campaign can be validated later (`rarelearn validate`).
    pulls: bool = True

    def validate(self) -> None:
        self.equilibrium.validate()
        self.smd.validate()
        if not isinstance(self.replicas, int) or self.replicas < 1:
            raise ConfigError(f"replicas must be an integer >= 1, got {self.replicas!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(
                f"seed must be an integer >= 0 (numpy seeds are non-negative), got {self.seed!r}"
            )
        if not isinstance(self.pulls, bool):
            raise ConfigError(f"pulls must be true or false, got {self.pulls!r}")


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
    sampler: LabelerSpec | None = None,
    pull: bool = True,
) -> tuple[StartState, SMDTrace | None]:
    """Relax at low temperature (with ``sampler``, default the labeler) and pull once with the
    labeler (``pull``; module-level: picklable)."""
    calculator = spec.build(reuse_wavefunction=True)
    relaxer = calculator if sampler is None else sampler.build(reuse_wavefunction=True)
    if progress is None:
        start = relax_start_state(atoms, relaxer, pulled, settings, seed)
    else:
        with progress.stage(f"relax 10 K{label}", settings.relax_steps) as update:
            start = relax_start_state(atoms, relaxer, pulled, settings, seed, progress=update)
    if not pull:
        return start, None
    return start, pull_from(spec, start, settings, seed, progress, label, calculator)


def pull_from(
    spec: LabelerSpec,
    start: StartState,
    settings: SMDSettings,
    seed: int,
    progress: StageProgress | None = None,
    label: str = "",
    calculator: Calculator | None = None,
) -> SMDTrace:
    """One reference pull with the labeler from a given start state (`rarelearn validate`)."""
    calculator = calculator or spec.build(reuse_wavefunction=True)
    if progress is None:
        return run_smd(start, calculator, settings, seed)
    with progress.stage(f"reference SMD{label}", settings.n_steps) as update:
        return run_smd(start, calculator, settings, seed, progress=update)


def _replica_job(
    task: tuple[LabelerSpec, Atoms, PulledAtoms, SMDSettings, int, LabelerSpec | None, bool],
) -> tuple[StartState, SMDTrace | None]:
    """Worker side of the replicas: one relaxation and pull (executors map one argument)."""
    spec, atoms, pulled, settings, seed, sampler, pull = task
    return reference_replica(spec, atoms, pulled, settings, seed, sampler=sampler, pull=pull)


def _pull_job(
    task: tuple[LabelerSpec, StartState, SMDSettings, int],
) -> SMDTrace:
    """Worker side of `pull_replicas`: one reference pull from a stored start state."""
    return pull_from(*task)


def pull_replicas(
    spec: LabelerSpec,
    starts: Sequence[StartState],
    settings: ReferenceSettings,
    reference_dir: Path,
    executor: Executor,
    progress: StageProgress,
) -> None:
    """The reference pulls from given start states that are not on disk yet, side by side on
    the executor, each saved as it finishes (`rarelearn validate`)."""
    files = _ReplicaFiles(reference_dir)
    pending = [r for r in range(len(starts)) if not files.pulled(r)]
    if not pending:
        return
    group = max(1, executor.workers)
    name = f"validation: reference pulls with {spec.name} ({executor.workers} workers)"
    with progress.stage(name, len(starts), "replicas") as update:
        update(len(starts) - len(pending), len(starts))
        for first in range(0, len(pending), group):
            part = pending[first : first + group]
            tasks = [(spec, starts[r], settings.smd, replica_seed(settings.seed, r)) for r in part]
            for r, trace in zip(part, executor.map(_pull_job, tasks), strict=True):
                files.save(r, None, trace)
            update(len(starts) - len(pending) + first + len(part), len(starts))


def replica_seed(seed: int, replica: int) -> int:
    """Velocity seed of reference replica ``replica`` (replica 0: the campaign seed itself)."""
    return seed + replica


#: Frames sampled by another method than the labeler, kept until the labeler labeled them.
SAMPLED_EQUILIBRIUM_FILE = "sampled_equilibrium.traj"


def run_reference(
    atoms: Atoms,
    pulled: PulledAtoms,
    spec: LabelerSpec,
    settings: ReferenceSettings,
    run_dir: Path,
    store: CampaignStore,
    progress: StageProgress,
    executor: Executor | None = None,
    sampler: LabelerSpec | None = None,
    chunk_size: int = 16,
) -> dict[str, Any]:
    """Run (or finish, if partly done) the reference stage; return ``reference.json``'s content.

    ``sampler`` (default: the labeler itself) runs the start-geometry relaxation, the
    equilibrium MD and the 10 K relaxations of the start states; frames it sampled are then
    labeled by the labeler on the executor. With ``settings.pulls`` the R replicas (each its own
    10 K relaxation and pull) are independent jobs on the ``executor``'s workers (in this
    process, one after another, without one); without, only their start states are made. Each
    part is skipped when its output already exists, so a stopped run resumes here, losing at
    most the replicas or label chunks in flight.
    """
    settings.validate()
    pulled.validate(len(atoms))
    reference_dir = run_dir / "reference"
    (reference_dir / "replicas").mkdir(parents=True, exist_ok=True)
    summary_path = reference_dir / "reference.json"
    written = [summary_path, reference_dir / START_STATES_FILE]
    if settings.pulls:
        written.append(reference_dir / REPLICAS_FILE)
    if all(path.is_file() for path in written):
        return read_json(summary_path)
    # otherwise finish it; a folder written before the replica files existed keeps replica 0

    sampling = sampler or spec
    geometry = atoms
    if settings.relax_geometry:
        progress.message(f"relaxing the start geometry with {sampling.name}")
        geometry = relax(atoms, sampling.build())

    if sampler is None:
        if store.count(batch="equilibrium") == 0:
            frames = _equilibrium_md(geometry, spec, settings, progress)
            store.add_frames(frames, _provenance("equilibrium", 0, len(frames), spec))
    else:
        _sampled_equilibrium(
            geometry, spec, sampler, settings, reference_dir, store, progress, executor, chunk_size
        )

    replicas = _ReplicaFiles(reference_dir)
    _make_replicas(replicas, spec, geometry, pulled, settings, progress, executor, sampler)
    starts = [replicas.start(r) for r in range(settings.replicas)]
    save_start_states(reference_dir / START_STATES_FILE, starts)
    if settings.pulls:
        summary = finish_reference(reference_dir, store, spec, settings, pulled)
        summary["sampler"] = sampling.name
    else:
        summary = _unvalidated_summary(geometry, spec, sampling, settings, pulled)
    write_json(summary_path, summary)
    manifest.record(reference_dir.parent / "data.db")  # its labels, at the stage's end
    return summary


def _make_replicas(
    replicas: _ReplicaFiles,
    spec: LabelerSpec,
    geometry: Atoms,
    pulled: PulledAtoms,
    settings: ReferenceSettings,
    progress: StageProgress,
    executor: Executor | None,
    sampler: LabelerSpec | None = None,
) -> None:
    """Relax (and, with ``settings.pulls``, pull) every replica not on disk yet, each saved as
    it finishes: in this process one after another, or side by side on the executor."""
    pending = [r for r in range(settings.replicas) if not replicas.done(r, settings.pulls)]
    what = "reference replicas" if settings.pulls else "start states"
    if pending and executor is None:
        for r in pending:
            label = f" (replica {r + 1}/{settings.replicas})" if settings.replicas > 1 else ""
            seed = replica_seed(settings.seed, r)
            start, trace = reference_replica(
                spec,
                geometry,
                pulled,
                settings.smd,
                seed,
                progress,
                label,
                sampler,
                settings.pulls,
            )
            replicas.save(r, start, trace)
    elif pending:
        group = max(1, executor.workers)
        name = f"{what} ({executor.workers} workers)"
        with progress.stage(name, settings.replicas, "replicas") as update:
            update(settings.replicas - len(pending), settings.replicas)
            for first in range(0, len(pending), group):
                part = pending[first : first + group]
                tasks = [
                    (
                        spec,
                        geometry,
                        pulled,
                        settings.smd,
                        replica_seed(settings.seed, r),
                        sampler,
                        settings.pulls,
                    )
                    for r in part
                ]
                for r, (start, trace) in zip(part, executor.map(_replica_job, tasks), strict=True):
                    replicas.save(r, start, trace)
                update(settings.replicas - len(pending) + first + len(part), settings.replicas)


#: How far a remade start state may lie from the stored one (A): round-off between machines
#: and library builds; a different system, seed or setting moves atoms by far more.
START_STATE_TOLERANCE_A = 1e-4


def check_extension(
    source: Path, atoms: Atoms, pulled: PulledAtoms, replicas: int, out: Path
) -> tuple[LabelerSpec, ReferenceSettings, int]:
    """What `extend_reference` would extend, refused with one message before anything is
    written: its labeler, its settings with ``replicas`` replicas, and how many it has."""
    summary_path = out / "reference" / "reference.json"
    if summary_path.is_file():
        raise RarelearnError(f"{summary_path} exists: extend into a new folder")
    reference = read_json(source / "reference.json")
    if not reference.get("validated", True) or "smd_settings" not in reference:
        raise RarelearnError(
            f"{source} holds no reference pulls to extend: `rarelearn validate` makes them"
        )
    copied = int(reference["replicas"])
    if replicas <= copied:
        raise RarelearnError(
            f"--replicas {replicas} does not extend the {copied} replicas of {source}"
        )
    spec = LabelerSpec(**reference["labeler_spec"])
    if reference.get("sampler", spec.name) != spec.name:
        raise RarelearnError(
            f"{source}'s start states were relaxed with {reference['sampler']}, not its "
            f"labeler {spec.name}: such a reference cannot be extended"
        )
    settings = ReferenceSettings(
        equilibrium=EquilibriumSettings(
            n_frames=reference["n_equilibrium_frames"],
            temperature_K=reference["equilibrium_temperature_K"],
        ),
        smd=SMDSettings.from_dict(reference["smd_settings"]),
        replicas=replicas,
        seed=reference["seed"],
    )
    settings.validate()
    pulled.validate(len(atoms))
    files = _ReplicaFiles(source)
    for r in range(copied):
        for path in (files._start(r), files._trace(r)):
            if not path.is_file():
                raise RarelearnError(f"{source} lacks {path}: it cannot be extended")
    stored = files.start(0)
    if len(stored.atoms) != len(atoms) or (stored.atoms.numbers != atoms.numbers).any():
        raise RarelearnError(f"the system given is not the one {source} was made from")
    if pulled.to_list() != reference["pulled_atoms"]:
        raise RarelearnError(
            f"pulled atoms {pulled.to_list()} are not those of {source}: "
            f"{reference['pulled_atoms']}"
        )
    return spec, settings, copied


def extend_reference(
    source: Path,
    atoms: Atoms,
    pulled: PulledAtoms,
    replicas: int,
    out: Path,
    progress: StageProgress,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """A reference of ``replicas`` replicas under ``out/reference`` made from a finished one
    with fewer (``source``: its reference folder), pulling only the new replicas.

    Replica r is seeded ``seed + r`` from the start geometry whatever the count, so the result
    is the reference a fresh run with ``replicas`` would make. Its settings and labeler come
    from the source's ``reference.json``; the system (``atoms``, ``pulled``) must be the one it
    was made from, shown by making replica 0's start state again (one 10 K relaxation) and
    comparing it with the stored one. The pulls only: the equilibrium frames and the unseen
    test set stay in the source's store. Resumes like the reference stage."""
    spec, settings, copied = check_extension(source, atoms, pulled, replicas, out)
    old, new = _ReplicaFiles(source), _ReplicaFiles(out / "reference")
    stored = old.start(0)
    progress.message(f"relaxing the start geometry with {spec.name}")
    geometry = relax(atoms, spec.build())
    remade = reference_replica(spec, geometry, pulled, settings.smd, settings.seed, pull=False)[0]
    shift = float(np.abs(remade.atoms.positions - stored.atoms.positions).max())
    if shift > START_STATE_TOLERANCE_A:
        raise RarelearnError(
            f"replica 0's start state made again lies {shift:.2g} A from {source}'s: the "
            "system (--chain/--structure/--pull) or the labeler's version differs from the "
            "one it was made with"
        )

    (new.folder / "replicas").mkdir(parents=True, exist_ok=True)
    for r in range(copied):
        for path in (old._start(r), old._trace(r)):
            target = new.folder / path.relative_to(old.folder)
            if not target.is_file():
                shutil.copyfile(path, target)

    _make_replicas(new, spec, geometry, pulled, settings, progress, executor)
    starts = [new.start(r) for r in range(replicas)]
    save_start_states(new.folder / START_STATES_FILE, starts)
    pulls = ReplicaPulls.from_traces([new.trace(r) for r in range(replicas)])
    pulls.save(new.folder / REPLICAS_FILE)
    summary = _reference_summary(new.trace(0), pulls, spec, settings, pulled)
    summary["sampler"] = spec.name
    summary["extended_from"] = {"folder": str(source.resolve()), "replicas": copied}
    write_json(out / "reference" / "reference.json", summary)
    return summary


def finish_reference(
    reference_dir: Path,
    store: CampaignStore,
    spec: LabelerSpec,
    settings: ReferenceSettings,
    pulled: PulledAtoms,
) -> dict[str, Any]:
    """Once every replica's pull is on disk: replica 0's frames into the store (the unseen
    test set), the replicas' table, and ``reference.json``'s content (returned, not written)."""
    replicas = _ReplicaFiles(reference_dir)
    main = SMDTrace.load(replicas.main_trace)
    _store_reference_frames(store, main, spec)
    pulls = ReplicaPulls.from_traces([replicas.trace(r) for r in range(settings.replicas)])
    pulls.save(reference_dir / REPLICAS_FILE)
    return _reference_summary(main, pulls, spec, settings, pulled)


def _equilibrium_md(
    geometry: Atoms, method: LabelerSpec, settings: ReferenceSettings, progress: StageProgress
) -> list[Atoms]:
    """The equilibrium MD's frames, each labeled by ``method`` (the one that drove it)."""
    eq = settings.equilibrium
    thermostat = Thermostat("berendsen", eq.temperature_K, tau_fs=eq.tau_fs)
    total = eq.equilibration_steps + eq.n_frames * eq.sample_every
    with progress.stage(f"equilibrium MD {eq.temperature_K:g} K ({method.name})", total) as update:
        return run_md(
            geometry,
            method.build(reuse_wavefunction=True),
            thermostat,
            eq.timestep_fs,
            eq.n_frames,
            settings.seed,
            equilibration_steps=eq.equilibration_steps,
            sample_every=eq.sample_every,
            progress=update,
        )


def _sampled_equilibrium(
    geometry: Atoms,
    spec: LabelerSpec,
    sampler: LabelerSpec,
    settings: ReferenceSettings,
    reference_dir: Path,
    store: CampaignStore,
    progress: StageProgress,
    executor: Executor | None,
    chunk_size: int,
) -> None:
    """Equilibrium frames sampled by ``sampler`` (kept in ``sampled_equilibrium.traj``), then
    labeled by the labeler, chunk groups stored as they finish: a resume labels the rest."""
    path = reference_dir / SAMPLED_EQUILIBRIUM_FILE
    if not path.is_file():
        frames = _equilibrium_md(geometry, sampler, settings, progress)
        temporary = path.with_name(path.name + ".tmp.traj")
        write(temporary, frames, format="traj")
        manifest.replace(temporary, path)
    frames = read_traj(path)
    provenance = _provenance("equilibrium", 0, len(frames), spec)
    for row in provenance:
        row["sampler"] = sampler.name
    done = store.tasks_done("equilibrium")
    pending = [k for k in range(len(frames)) if k not in done]
    if not pending:
        return
    group = chunk_size * max(1, executor.workers if executor is not None else 1)
    name = f"labeling {len(frames)} equilibrium frames with {spec.name}"
    with progress.stage(name, len(frames), "labels") as update:
        update(len(frames) - len(pending), len(frames))
        for first in range(0, len(pending), group):
            part = pending[first : first + group]
            chosen = [frames[k] for k in part]
            if executor is None:
                results = label_frames(spec, chosen, indices=part)
            else:
                results = label_parallel(spec, chosen, executor, chunk_size, indices=part)
            store.add_labeled(chosen, results, [provenance[k] for k in part])
            update(len(frames) - len(pending) + first + len(part), len(frames))
    failed = store.count(batch="equilibrium", failed=True)
    if failed == len(frames):
        raise RarelearnError(
            f"the labeler ({spec.name}) failed on every one of the {len(frames)} equilibrium "
            f"frames sampled with {sampler.name}: see `rarelearn check` for the reasons"
        )


def _unvalidated_summary(
    geometry: Atoms,
    spec: LabelerSpec,
    sampler: LabelerSpec,
    settings: ReferenceSettings,
    pulled: PulledAtoms,
) -> dict[str, Any]:
    """``reference.json`` of a campaign without reference pulls: what its pulls reuse, and
    that nothing has been validated against a reference (`rarelearn validate` adds it)."""
    smd = settings.smd
    return {
        "validated": False,
        "labeler": spec.name,
        "labeler_spec": asdict(spec),
        "sampler": sampler.name,
        "pulled_atoms": pulled.to_list(),
        "pulled": pulled.labels(geometry.get_chemical_symbols()),
        **_pull_settings(settings),
        "n_equilibrium_frames": settings.equilibrium.n_frames,
        "equilibrium_temperature_K": settings.equilibrium.temperature_K,
        "smd_settings": smd.to_dict(),
    }


def _pull_settings(settings: ReferenceSettings) -> dict[str, Any]:
    smd = settings.smd
    return {
        "pull_speed_A_per_ps": smd.pull_speed_A_per_ps,
        "spring_constant_eV_per_A2": smd.spring_constant_eV_per_A2,
        "temperature_K": smd.thermostat.temperature_K,
        "thermostat": smd.thermostat.to_dict(),
        "timestep_fs": smd.timestep_fs,
        "relax_steps": smd.relax_steps,
        "n_steps": smd.n_steps,
        "seed": settings.seed,
        "replicas": settings.replicas,
        "replica_seeds": [replica_seed(settings.seed, r) for r in range(settings.replicas)],
    }


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

    def done(self, replica: int, pull: bool = True) -> bool:
        """Its start state (and, with ``pull``, its pull) on disk."""
        return self._start(replica).is_file() and (not pull or self.pulled(replica))

    def pulled(self, replica: int) -> bool:
        return self._trace(replica).is_file()

    def save(self, replica: int, start: StartState | None, trace: SMDTrace | None) -> None:
        """Start state first, trace last: the trace file marks the replica done."""
        if start is not None:
            temporary = self._start(replica).with_name(self._start(replica).name + ".tmp")
            start.save(temporary)
            manifest.replace(temporary, self._start(replica))
        if trace is not None:
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
        "validated": True,
        "labeler": spec.name,
        "labeler_spec": asdict(spec),
        "pulled_atoms": pulled.to_list(),
        "pulled": pulled.labels(Atoms(numbers=main.numbers).get_chemical_symbols()),
        **_pull_settings(settings),
        "smd_settings": smd.to_dict(),
        "n_equilibrium_frames": settings.equilibrium.n_frames,
        "equilibrium_temperature_K": settings.equilibrium.temperature_K,
    }
