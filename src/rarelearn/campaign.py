"""The active-learning campaign: reference data, then train -> SMD -> select -> label, repeated.

A campaign's progress is the set of files in its run folder (layout in docs/architecture.md):
each step writes its output atomically when it finishes, and on start every step whose output
exists is loaded instead of recomputed. So a stopped campaign, killed at any moment, resumes
where it stopped and gives the same numbers it would have given uninterrupted. Labels are
stored chunk by chunk under a deterministic ``uid``, so a resumed labeling stores only the
missing ones, and training order and splits never depend on database row ids.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from ase import Atoms

from rarelearn import manifest
from rarelearn.cogef import CogefCurve
from rarelearn.cogef_check import (
    cogef_pair,
    cogef_row,
    empty_cogef_row,
    labeler_curve,
    model_curve,
    reach_A,
    read_curve,
)
from rarelearn.committee import Committee
from rarelearn.config import CampaignConfig, load_resolved
from rarelearn.consistency import changes, self_consistency_line, with_row_keys
from rarelearn.consistency import converged_iteration as converged_by_rule
from rarelearn.dynamics import SMDTrace, run_smd
from rarelearn.dynamics.smd import ProgressCallback, step_budget, stopped_early
from rarelearn.errors import ConfigError, ModelError, RarelearnError
from rarelearn.executors import Executor, label_parallel, make_executor
from rarelearn.final import final_check, final_reference, refuse_other_count
from rarelearn.labeling import LabelerSpec, LabelResult
from rarelearn.lock import CampaignLock
from rarelearn.metrics import relative_energy_mae
from rarelearn.model_smd import PullJob, replica_pull_jobs, run_pull_jobs
from rarelearn.molecules import (
    PulledAtoms,
    build_alkane,
    check_structure,
    default_pulled_atoms,
    describe_system,
    read_structure,
)
from rarelearn.potentials.ani.features import FeatureCache
from rarelearn.potentials.families import model_class
from rarelearn.progress import StageProgress
from rarelearn.pulls import (
    REPLICAS_FILE,
    START_STATES_FILE,
    ReplicaPulls,
    compare_pulls,
    load_start_states,
)
from rarelearn.reference import (
    LABELED_REPLICA,
    labeled_replica_trace,
    run_reference,
    write_json,
)
from rarelearn.runfolder import ROW_KEYS, damaged, load_npz, read_json
from rarelearn.rupture import (
    empty_rupture_row,
    load_rupture_frames,
    rupture_row,
    save_rupture_frames,
)
from rarelearn.selection import Selection, augment, draw_rng, pool, redraw, select_frames
from rarelearn.snap import (
    SnapStart,
    empty_snap_row,
    labeled_frames,
    load_snap_starts,
    replicas_under_test,
    run_snap_test,
    save_snap_starts,
    segment_settings,
    snap_row,
    snap_start,
)
from rarelearn.statistics import Sample, finite_or_none, replicas_for_half_width
from rarelearn.store import CampaignStore, uid
from rarelearn.units import EV_TO_KCAL_MOL

TRAINING_SOURCES = ("equilibrium", "active", "augmented")
#: When the NNP SMD blows up, this many last frames are candidates whatever their UQ: they are
#: where the model went wrong (screening still thins them).
FRAMES_BEFORE_BLOW_UP = 20
#: Task numbers (and so uids) of snap-test labels start here, after the selection's.
SNAP_TASK_OFFSET = 500_000
#: ... and rupture-region labels here.
RUPTURE_TASK_OFFSET = 800_000
#: ... and the labels of the labeler's COGEF scan here, of each driver's scan here.
COGEF_TASK_OFFSET = 900_000
COGEF_DRIVER_TASK_OFFSET = 950_000
#: Arrays of ``pooled.npz`` (``selection.candidates = "all"``).
POOLED_KEYS = ("replica", "frame", "uq_eV", "distance_A", "positions_A", "numbers", "n_candidates")


def recorded_uq(trace: SMDTrace) -> np.ndarray:
    """The committee's energy spread recorded along an NNP pull (the paper's UQ)."""
    if trace.uq_eV is None:
        raise ConfigError("the NNP steered MD recorded no uncertainty")
    return trace.uq_eV


def forced_candidates(trace: SMDTrace) -> list[int]:
    """The last frames of a pull that stopped early: candidates whatever their UQ."""
    if not stopped_early(trace.stopped_reason):
        return []
    return list(range(max(0, trace.n_frames - FRAMES_BEFORE_BLOW_UP), trace.n_frames))


def system_of(config: CampaignConfig) -> tuple[Atoms, PulledAtoms]:
    """The molecule and the pulled atoms a configuration names, validated."""
    system = config.system
    atoms = read_structure(system.structure) if system.structure else build_alkane(system.chain)
    smd = config.reference.smd
    check_structure(atoms, smd.min_distance_A, smd.isolated_atom_A)
    model_class(config.committee.backend).check_family_elements(atoms.get_chemical_symbols())
    pulled = PulledAtoms.from_list(system.pull) if system.pull else default_pulled_atoms(atoms)
    pulled.validate(len(atoms))
    return atoms, pulled


def labeler_of(config: CampaignConfig) -> LabelerSpec:
    return LabelerSpec(config.labeler.method, dict(config.labeler.options))


def check_sampler(config: CampaignConfig) -> None:
    """A sampling method that cannot be built is refused before any work, naming the setting."""
    sampler = sampler_of(config)
    if sampler is None:
        return
    try:
        sampler.check()
    except RarelearnError as exc:
        raise ConfigError(f"sampling.method: {exc}") from None


def sampler_of(config: CampaignConfig) -> LabelerSpec | None:
    """The method that samples the equilibrium frames and start states; None: the labeler."""
    if config.sampling.by_labeler:
        return None
    return LabelerSpec(config.sampling.method, dict(config.sampling.options))


def executor_of(config: CampaignConfig) -> Executor:
    """The executor the ``[executor]`` settings name, started now."""
    settings = config.executor
    return make_executor(settings.kind, settings.workers, settings.address)


def open_store(config: CampaignConfig, run_dir: Path) -> CampaignStore:
    return CampaignStore(config.store.url or run_dir / "data.db", campaign=config.name)


def training_frames(
    store: CampaignStore, sources: Sequence[str], max_iteration: int | None = None
) -> list[Atoms]:
    """Labeled frames ordered by uid, with ``info["id"]`` = uid (what splits are made of)."""
    frames = store.labeled(sources=sources, max_iteration=max_iteration)
    for atoms in frames:
        atoms.info["id"] = int(atoms.info["uid"])
    return sorted(frames, key=lambda a: a.info["id"])


#: Training seed offset of the smd_only baseline's committee (iterations use their number).
BASELINE_SEED_OFFSET = 999


def training_seed(campaign_seed: int, offset: int) -> int:
    """The members' training seed of a campaign's committee: iteration ``offset``'s (or the
    baseline's); the one formula `retrain.py` and `relabel` reproduce a campaign's fits by."""
    return campaign_seed * 1000 + offset


def save_committee(committee: Committee, folder: Path) -> None:
    """Save through a temporary folder and rename: a kill never leaves half a committee."""
    temporary = folder.with_name(folder.name + ".partial")
    shutil.rmtree(temporary, ignore_errors=True)
    committee.save(temporary)
    manifest.replace_folder(temporary, folder)


#: Keys a stored row must hold to be reused (rows written before the replica statistics lack
#: the interval keys and are still read).
ROW_REQUIRED = ("iteration", "n_labels", "ea_nnp_eV")
SELECTION_KEYS = ("threshold_eV", "candidates", "selected", "n_frames", "n_reference_frames")


def load_committee(folder: Path) -> Committee:
    """A run folder's committee; a missing or corrupted one is a DamagedFileError with advice."""
    try:
        return Committee.load(folder)
    except ModelError as exc:
        raise damaged(folder, exc) from exc


class LabelCounts(NamedTuple):
    """What an iteration's labeling stored beside its selection: the batch's failures, and the
    snap-test and COGEF-path frames (originals and copies)."""

    failures: int
    snap: int
    cogef: int


@dataclass
class _Iteration:
    """Paths of one iteration's outputs."""

    folder: Path

    @property
    def committee(self) -> Path:
        return self.folder / "committee"

    @property
    def smd(self) -> Path:
        return self.folder / "smd.npz"

    @property
    def replicas(self) -> Path:
        return self.folder / REPLICAS_FILE

    @property
    def members(self) -> Path:
        return self.folder / "members.json"

    @property
    def unseen(self) -> Path:
        return self.folder / "unseen.npz"

    @property
    def selection(self) -> Path:
        return self.folder / "selection.json"

    @property
    def metrics(self) -> Path:
        return self.folder / "metrics.json"

    @property
    def timing(self) -> Path:
        return self.folder / "timing.json"

    @property
    def snap_starts(self) -> Path:
        return self.folder / "snap_starts.traj"

    @property
    def snap(self) -> Path:
        return self.folder / "snap"

    @property
    def rupture_frames(self) -> Path:
        return self.folder / "rupture_frames.traj"

    @property
    def pooled(self) -> Path:
        return self.folder / "pooled.npz"

    @property
    def cogef(self) -> Path:
        return self.folder / "cogef.npz"

    @property
    def cogef_facts(self) -> Path:
        return self.folder / "cogef.json"


class Campaign:
    """One campaign in its run folder; ``run()`` does (or finishes) all of it."""

    def __init__(self, config: CampaignConfig, progress: StageProgress) -> None:
        self.config = config
        self.progress = progress
        self.run_dir = config.run_dir
        self.spec = labeler_of(config)
        self.sampler = sampler_of(config)
        self.atoms, self.pulled = system_of(config)
        if config.cogef.enabled or config.cogef.labels:  # driver_labels needs enabled
            cogef_pair(self.pulled)  # refuses pulled groups before anything runs
        self._executor: Executor | None = None
        #: AEVs and Jacobians of the frames trained on so far: each frame computed once
        self.feature_cache = FeatureCache()
        self._labeled_replica: SMDTrace | None = None

    # ----------------------------------------------------------------- set-up
    @property
    def executor(self) -> Executor:
        """Started on first use: a resumed campaign with nothing to label starts no workers."""
        if self._executor is None:
            self._executor = executor_of(self.config)
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    def run(self) -> dict[str, Any]:
        """Run the whole campaign and return ``summary.json``'s content."""
        self.spec.check()
        check_sampler(self.config)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.store = open_store(self.config, self.run_dir)  # rolls back an interrupted write
        # a resume never builds on a file that changed after it was written (manifest.json)
        manifest.require_intact(self.run_dir)
        refuse_other_count(self.run_dir, self.config.final.replicas)
        # a shared store: one coordinator per campaign, checked before anything is written
        store_lock = self.store.writer_lock()
        try:
            config_path = self.run_dir / "config.toml"
            # written once, and again when `rarelearn run --iterations` extended the campaign or
            # `--final-replicas` asked for a final check
            if not config_path.is_file() or _extensible(load_resolved(self.run_dir)) != _extensible(
                self.config
            ):
                temporary = config_path.with_name("config.toml.tmp")
                temporary.write_text(self.config.to_toml())
                manifest.replace(temporary, config_path)
            self.reference = run_reference(
                self.atoms,
                self.pulled,
                self.spec,
                self.config.reference,
                self.run_dir,
                self.store,
                self.progress,
                self.executor,
                sampler=self.sampler,
                chunk_size=self.config.executor.chunk_size,
            )
            reference_dir = self.run_dir / "reference"
            self.starts = load_start_states(reference_dir / START_STATES_FILE)
            # none without reference pulls, until `rarelearn validate` ran them
            validated = self.reference.get("validated", True)
            self.reference_pulls = (
                ReplicaPulls.load(reference_dir / REPLICAS_FILE) if validated else None
            )
            self.unseen = training_frames(self.store, ["reference_smd"])
            self.unseen_energies = np.array([a.get_potential_energy() for a in self.unseen])
            rows: list[dict] = []
            previous: Committee | None = None
            for iteration in range(self.config.iterations):
                row, previous = self.iteration(iteration, previous, rows)
                rows.append(row)
                self.write_summary(rows, self.baselines(rows, final=False))
                if converged_iteration(rows, self.config) is not None:
                    break
            summary = self.write_summary(rows, self.baselines(rows, final=True))
            if self.config.final.replicas and self.reference_pulls is not None:
                summary["final"] = self.final_check(rows[-1])
                write_json(self.run_dir / "summary.json", summary)
        finally:
            self.close()
            if store_lock is not None:
                store_lock.release()
        return summary

    def final_check(self, row: dict[str, Any]) -> dict[str, Any]:
        """The last committee against the reference extended to ``final.replicas`` replicas
        (`rarelearn.final`); the summary's ``final`` row."""
        final_reference(
            self.run_dir,
            self.atoms,
            self.pulled,
            self.config.final.replicas,
            self.progress,
            self.executor,
        )
        return final_check(
            self.run_dir,
            self._folder(row["iteration"]) / "committee",
            row,
            self.config.seed,
            self.config.committee.driver,
            self.config.stop,
            self.progress,
        )

    # -------------------------------------------------------------- iteration
    def iteration(
        self, i: int, previous: Committee | None, rows: list[dict]
    ) -> tuple[dict, Committee]:
        """One active-learning iteration; every finished step is reused on resume.

        ``rows`` are the earlier iterations' rows: when this one completes the convergence
        streak (or is the last allowed), nothing is selected or labeled after it.
        """
        paths = _Iteration(self._folder(i))
        paths.folder.mkdir(parents=True, exist_ok=True)
        label = f"iteration {i}"
        if paths.metrics.is_file():
            row = with_row_keys(read_json(paths.metrics, ROW_REQUIRED), rows)
            if row["n_selected"] == 0 and not self._stops_after(i, rows, row):
                # written as the last iteration of a campaign since extended (`--iterations`):
                # it selects and labels now (a no-op when its selection found nothing)
                timing = read_json(paths.timing) if paths.timing.is_file() else {}
                trace = SMDTrace.load(paths.smd)
                row = self._write_row(
                    paths, self._select_and_label(i, paths, trace, row, label, timing)
                )
            return row, load_committee(paths.committee)
        timing = read_json(paths.timing) if paths.timing.is_file() else {}

        frames = training_frames(self.store, TRAINING_SOURCES, max_iteration=i - 1)
        committee = self.committee(paths.committee, frames, previous, i, timing, label)
        trace, pulls, members = self.pulls(paths, committee, timing, label, snap_tests=True)
        e_pred = self.unseen_predictions(paths.unseen, committee)
        row = self.metrics_row(i, committee, frames, pulls, e_pred)
        row["ea_members_eV"] = members
        row.update(changes(rows[-1] if rows else None, row))
        row.update(self.snap_tests(paths, timing, label))
        row.update(self.rupture_labels(i, paths, timing, label))
        row.update(self.cogef_check(paths, committee, timing, label))

        # the rupture-region and post-snap labels are the batch's labels even in the last
        # iteration, which selects nothing: their failures are the row's
        failures = self.store.count(batch=f"iteration{i:03d}", failed=True)
        row.update(n_candidates=0, n_selected=0, n_augmented=0, n_label_failures=failures)
        row["wall_s"] = round(sum(timing.values()), 2)
        if not self._stops_after(i, rows, row):
            row = self._select_and_label(i, paths, trace, row, label, timing)
        return self._write_row(paths, row), committee

    def _folder(self, i: int) -> Path:
        return self.run_dir / "iterations" / f"{i:03d}"

    def _stops_after(self, i: int, rows: list[dict], row: dict) -> bool:
        """Whether iteration i is the campaign's last (allowed or converged): it labels nothing."""
        last = i == self.config.iterations - 1
        return last or converged_iteration([*rows, row], self.config) is not None

    def _select_and_label(
        self, i: int, paths: _Iteration, trace: SMDTrace, row: dict, label: str, timing: dict
    ) -> dict:
        """Select from the iteration's pull and label; the row with their counts (``timing``:
        the iteration's stage times so far, to which labeling adds)."""
        selection = self.select(i, paths.selection, trace, lambda: self.selection_uq(paths, trace))
        counts = self.label(i, selection, trace, timing, label)
        recipes = {}
        if self.config.snap.enabled:
            recipes["snap_labels"] = counts.snap
        if self.config.cogef.labels or self.config.cogef.driver_labels:
            recipes["cogef_labels"] = counts.cogef
        return {
            **row,
            **recipes,
            "n_candidates": selection.n_candidates,
            "n_selected": selection.n_selected,
            "n_augmented": selection.n_selected * self.config.selection.n_copies,
            "n_label_failures": counts.failures,
            "wall_s": round(sum(timing.values()), 2),
        }

    def _write_row(self, paths: _Iteration, row: dict) -> dict:
        """The iteration's finished row, in contract order, as ``metrics.json`` (its presence
        marks the iteration done)."""
        row = {key: row[key] for key in ROW_KEYS}
        write_json(paths.metrics, row)
        manifest.record(self.run_dir / "data.db")  # the labels of the stage just done
        self.progress.message(_row_line(row))
        return row

    def _timed(self, timing: dict, stage: str, path: Path, started: float) -> None:
        timing[stage] = time.perf_counter() - started
        write_json(path, timing)

    def committee(
        self,
        folder: Path,
        frames: list[Atoms],
        previous: Committee | None,
        seed_offset: int,
        timing: dict,
        label: str,
    ) -> Committee:
        if folder.exists():  # renamed into place complete: anything less is damage
            return load_committee(folder)
        settings = self.config.committee
        started = time.perf_counter()
        self.progress.message(
            f"{label}: training {settings.n_members} members on {len(frames)} frames "
            f"({settings.backend}, {settings.model.epochs} epochs, {settings.strategy} splits)"
        )
        total = settings.n_members * settings.model.epochs
        with self.progress.stage(f"{label}: training", total, "epochs") as update:
            committee = Committee.train(
                frames,
                n_members=settings.n_members,
                settings=settings.model,
                family=settings.backend,
                strategy=settings.strategy,
                previous=previous,
                seed=training_seed(self.config.seed, seed_offset),
                executor=self.executor if settings.parallel else None,
                warm_start=settings.warm_start,
                progress=update,
                threads=settings.threads,
                cache=self.feature_cache,
            )
        save_committee(committee, folder)
        self._timed(timing, "train_s", folder.parent / "timing.json", started)
        return committee

    def pulls(
        self,
        paths: _Iteration,
        committee: Committee,
        timing: dict,
        label: str,
        members: bool = True,
        snap_tests: bool = False,
    ) -> tuple[SMDTrace, ReplicaPulls, list[float]]:
        """The committee pulled from every reference start state, driven by its best member
        (or its mean: ``committee.driver``), and, with `members`, every other member driving
        the pull from replica 0's start (the paper's spread over members); all side by side.

        Replica 0's full trace (UQ on every frame) is what selection reads, as in the paper;
        the others give the replica statistics of Ea. Saved as ``smd.npz`` and
        ``replicas.npz`` (written last: its presence marks the step done) and
        ``members.json`` (every member's Ea; the best member's is replica 0's pull). With
        ``snap_tests`` and snap tests on, the states they start from are kept from the pulls'
        frames (``snap_starts.traj``, written before ``replicas.npz``).
        """
        need_snap = snap_tests and self.config.snap.enabled and not paths.snap_starts.is_file()
        selection = self.config.selection
        need_rupture = snap_tests and selection.pull_labels and not paths.rupture_frames.is_file()
        need_pool = snap_tests and selection.candidates == "all" and not paths.pooled.is_file()
        need_replicas = (
            need_snap
            or need_rupture
            or need_pool
            or not (paths.replicas.is_file() and paths.smd.is_file())
        )
        need_members = members and not paths.members.is_file()
        settings = self.config.reference.smd
        jobs = []
        if need_replicas:
            jobs = replica_pull_jobs(
                committee, self.starts, settings, self.config.seed, self.config.committee.driver
            )
        n_replica_jobs = len(jobs)
        others = [m for m in range(committee.n_members) if m != committee.best_index]
        if need_members:
            for member in others:
                calculator = committee.calculator("best", force_uq=False, driver=member)
                calculator.prepare(self.starts[0].atoms.numbers)

                def run(progress: ProgressCallback, calc=calculator) -> list[SMDTrace]:
                    return [run_smd(self.starts[0], calc, settings, self.config.seed, progress)]

                jobs.append(PullJob(run, step_budget(settings)))
        results: list[list[SMDTrace]] = []
        if jobs:
            started = time.perf_counter()
            what = [f"{len(self.starts)} replicas"] if need_replicas else []
            what += [f"{len(others)} other members"] if need_members else []
            name = f"{label}: NNP steered MD ({', '.join(what)})"
            with self.progress.stage(name, sum(job.steps for job in jobs)) as update:
                results = run_pull_jobs(jobs, update)
        if need_replicas:
            traces = [trace for part in results[:n_replica_jobs] for trace in part]
            stopped = [r for r, t in enumerate(traces) if stopped_early(t.stopped_reason)]
            if stopped:
                self.progress.message(
                    f"{label}: {len(stopped)} of {len(traces)} NNP pulls stopped early "
                    f"({traces[stopped[0]].stopped_reason}); their frames are kept"
                )
            trace, pulls = traces[0], ReplicaPulls.from_traces(traces)
            if need_snap:
                self._save_snap_starts(paths, traces)
            if need_pool:
                self._save_pooled(paths, traces)
            if need_rupture:
                save_rupture_frames(
                    paths.rupture_frames,
                    traces,
                    selection.rupture_frames,
                    selection.rupture_window_A,
                    selection.tail_frames,
                )
            trace.save(paths.smd)
            pulls.save(paths.replicas)
        else:
            trace, pulls = SMDTrace.load(paths.smd), ReplicaPulls.load(paths.replicas)
        if need_members:
            member_traces = iter(part[0] for part in results[n_replica_jobs:])
            values = [
                float(pulls.activation_energy_eV[0])
                if m == committee.best_index
                else next(member_traces).activation_energy_eV
                for m in range(committee.n_members)
            ]
            write_json(paths.members, {"ea_members_eV": values, "best_index": committee.best_index})
        if jobs:
            self._timed(timing, "smd_s", paths.timing, started)
        if not members:
            return trace, pulls, []
        members_eV = read_json(paths.members, ["ea_members_eV"])["ea_members_eV"]
        return trace, pulls, [float(v) for v in members_eV]

    def _save_pooled(self, paths: _Iteration, traces: list[SMDTrace]) -> None:
        """``selection.candidates = "all"``: the UQ rule on every replica pull, the accepted
        frames pooled (`rarelearn.selection.pool`) and kept with their positions."""
        settings = self.config.selection
        selections = []
        for trace in traces:
            selections.append(
                select_frames(
                    recorded_uq(trace),
                    trace.distance_A,
                    trace.energy_eV,
                    trace.broken_frame,
                    settings,
                    forced_candidates=forced_candidates(trace),
                )
            )
        pooled = pool(selections, [t.uq_eV for t in traces], settings.max_selected)
        n_atoms = len(traces[0].numbers)
        temporary = paths.pooled.with_name(paths.pooled.name + ".tmp.npz")
        np.savez_compressed(
            temporary,
            replica=np.array([r for r, _ in pooled], dtype=int),
            frame=np.array([f for _, f in pooled], dtype=int),
            uq_eV=np.array([traces[r].uq_eV[f] for r, f in pooled]),
            distance_A=np.array([traces[r].distance_A[f] for r, f in pooled]),
            positions_A=np.array([traces[r].positions_A[f] for r, f in pooled]).reshape(
                len(pooled), n_atoms, 3
            ),
            numbers=traces[0].numbers,
            n_candidates=np.array(sum(s.n_candidates for s in selections)),
        )
        manifest.replace(temporary, paths.pooled)

    # ------------------------------------------------------------- snap tests
    def _save_snap_starts(self, paths: _Iteration, traces: list[SMDTrace]) -> None:
        settings = self.config.snap
        timestep = self.config.reference.smd.timestep_fs
        starts = [
            snap_start(r, traces[r], self.starts[r], settings, timestep)
            for r in replicas_under_test(len(traces), settings)
        ]
        save_snap_starts(paths.snap_starts, starts)

    def _snap_traces(
        self, paths: _Iteration, label: str = ""
    ) -> tuple[list[SnapStart], list[SMDTrace]]:
        """The iteration's snap tests, run on the executor where not stored yet (each saved
        as ``snap/NNN.npz`` with its frames and the labeler's energies and forces)."""
        starts = load_snap_starts(paths.snap_starts)
        paths.snap.mkdir(exist_ok=True)
        files = [paths.snap / f"{s.replica:03d}.npz" for s in starts]
        pending = [k for k, path in enumerate(files) if not path.is_file()]
        if pending:
            self.progress.message(f"{label}: {len(pending)} snap tests with {self.spec.name}")
            settings = segment_settings(self.config.reference.smd, self.config.snap)
            tasks = [(self.spec, starts[k], settings) for k in pending]
            for k, trace in zip(pending, self.executor.map(run_snap_test, tasks), strict=True):
                trace.save(files[k])
        return starts, [SMDTrace.load(path) for path in files]

    def snap_tests(self, paths: _Iteration, timing: dict, label: str) -> dict[str, Any]:
        """Snap tests of this iteration's pulls (`rarelearn.snap`): the row keys (their
        labels are counted when they are labeled)."""
        if not self.config.snap.enabled:
            return empty_snap_row()
        started = time.perf_counter()
        starts, traces = self._snap_traces(paths, label)
        self._timed(timing, "snap_s", paths.timing, started)
        return snap_row(starts, traces, 0)

    # --------------------------------------------------- rupture-region labels
    def rupture_labels(self, i: int, paths: _Iteration, timing: dict, label: str) -> dict:
        """Label the rupture-region and post-snap frames of this iteration's pulls
        (`rarelearn.rupture`), storing them as training frames of the next committee; the row
        keys."""
        if not self.config.selection.pull_labels:
            return empty_rupture_row()
        frames = load_rupture_frames(paths.rupture_frames)
        batch = f"iteration{i:03d}"
        tasks = [RUPTURE_TASK_OFFSET + k for k in range(len(frames))]
        done = self.store.tasks_done(batch)
        pending = [k for k, task in enumerate(tasks) if task not in done]
        if pending:
            started = time.perf_counter()
            self.progress.message(f"{label}: labeling {len(pending)} frames around the snaps")
            results = label_parallel(
                self.spec,
                [frames[k] for k in pending],
                self.executor,
                chunk_size=self.config.executor.chunk_size,
                indices=pending,
            )
            provenance = [
                dict(
                    iteration=i,
                    labeler=self.spec.name,
                    batch=batch,
                    source="active",
                    sampled_by="post_snap"
                    if frames[k].info.get("after_snap")
                    else "rupture_region",
                    snap_replica=int(frames[k].info["replica"]),
                    frame=int(frames[k].info["frame"]),
                    spring_distance=float(frames[k].info["spring_distance"]),
                    parent=-1,
                    task=tasks[k],
                    uid=uid(i + 2, tasks[k]),
                )
                for k in pending
            ]
            self.store.add_labeled([frames[k] for k in pending], results, provenance)
            self._timed(timing, "rupture_s", paths.timing, started)
        energies = self.store.task_energies(batch)
        return rupture_row(frames, [energies.get(task) for task in tasks])

    # ----------------------------------------------------------- 0 K check
    def cogef_check(
        self, paths: _Iteration, committee: Committee, timing: dict, label: str
    ) -> dict[str, Any]:
        """The committee's driver against the labeler at 0 K (`rarelearn.cogef_check`): the
        labeler scanned once per campaign (``cogef/``), the driver each iteration
        (``cogef.npz``); the row keys."""
        settings = self.config.cogef
        # counted when labeled
        labels = {"cogef_labels": 0} if settings.labels or settings.driver_labels else {}
        if not settings.enabled:
            return {**empty_cogef_row(), **labels}
        pair = cogef_pair(self.pulled)
        start = self.starts[0].atoms
        started = time.perf_counter()
        reach = reach_A(start, pair, self.config.reference.smd)
        scanned = not paths.cogef_facts.is_file()  # the driver's scan is still to do
        labeler, facts, labeler_scanned = self._labeler_cogef(label)
        failures = {"labeler": facts["failed"]} if labeler is None else {}
        model = None
        if labeler is not None:
            if scanned:
                self.progress.message(f"{label}: 0 K pull (COGEF) of the committee's driver")
            calculator = committee.calculator(
                "best", force_uq=False, driver=self.config.committee.driver
            )
            model, model_facts = model_curve(
                paths.cogef,
                paths.cogef_facts,
                start,
                pair,
                calculator,
                settings,
                facts["fine_above_eV_per_A"],
                self.config.seed,
                reach,
            )
            if model is None:
                failures["model"] = model_facts["failed"]
        if labeler_scanned or (labeler is not None and scanned):  # a resume times nothing
            self._timed(timing, "cogef_s", paths.timing, started)
        k_spring = self.config.reference.smd.spring_constant_eV_per_A2
        return {**cogef_row(model, labeler, k_spring, failures), **labels}

    def _labeler_cogef(self, label: str) -> tuple[CogefCurve | None, dict[str, Any], bool]:
        """The labeler's COGEF curve (None where its scan failed), facts and whether it was
        scanned now: once per campaign from the first reference start state (``cogef/``),
        read back after."""
        folder = self.run_dir / "cogef"
        scanning = not (folder / "labeler.json").is_file()
        if scanning:
            self.progress.message(f"{label}: 0 K pull (COGEF) of the labeler, once")
        pair = cogef_pair(self.pulled)
        start = self.starts[0].atoms
        curve, facts = labeler_curve(
            folder,
            start,
            pair,
            lambda: self.spec.build(reuse_wavefunction=True),
            self.config.cogef,
            self.config.seed,
            reach_A(start, pair, self.config.reference.smd),
        )
        return curve, facts, scanning

    def cogef_candidates(self, i: int, timing: dict, label: str) -> tuple[list[Atoms], list[dict]]:
        """Frames of the 0 K scans to label, with provenance and uids after the snap tests':
        iteration 0's from the labeler's scan (``cogef.labels``; the scan does not change, so
        once) and each iteration's from its driver's scan (``cogef.driver_labels``): every
        relaxed point and its noisy copies. None from a scan that failed."""
        settings = self.config.cogef
        frames: list[Atoms] = []
        provenance: list[dict] = []
        if settings.labels and i == 0:
            started = time.perf_counter()
            curve, _, scanned = self._labeler_cogef(label)
            if scanned:
                self._timed(timing, "cogef_s", self._folder(i) / "timing.json", started)
            frames, provenance = self._scan_frames(i, curve, "cogef_path", COGEF_TASK_OFFSET)
        paths = _Iteration(self._folder(i))
        if settings.driver_labels and paths.cogef_facts.is_file():
            curve, _ = read_curve(paths.cogef, paths.cogef_facts)
            added, details = self._scan_frames(i, curve, "cogef_driver", COGEF_DRIVER_TASK_OFFSET)
            frames, provenance = frames + added, provenance + details
        return frames, provenance

    def _scan_frames(
        self, i: int, curve: CogefCurve | None, sampled_by: str, first_task: int
    ) -> tuple[list[Atoms], list[dict]]:
        """Every point of ``curve`` (none when None) and its noisy copies, to label."""
        if curve is None:
            return [], []
        originals, details = [], []
        for k, distance in enumerate(curve.distance_A):
            image = curve.image(k)
            image.cell, image.pbc = self.atoms.cell, self.atoms.pbc
            originals.append(image)
            details.append(dict(sampled_by=sampled_by, frame=k, pair_distance=float(distance)))
        rng = np.random.default_rng([self.config.seed, i, first_task])
        copies = self.config.cogef.label_copies
        return self._with_copies(i, originals, details, copies, first_task, rng)

    def snap_candidates(self, i: int, paths: _Iteration) -> tuple[list[Atoms], list[dict]]:
        """The snap tests' label frames (the labeler's own energy and forces attached) and
        their noisy copies (no label yet), with provenance and uids after the selection's."""
        settings = self.config.snap
        if not settings.enabled:
            return [], []
        starts, traces = self._snap_traces(paths)
        originals, details = [], []
        for snap, trace in zip(starts, traces, strict=True):
            for frame in labeled_frames(trace, settings):
                originals.append(trace.frame(frame, labeled=True))
                details.append(
                    dict(
                        sampled_by="snap_test",
                        snap_replica=snap.replica,
                        frame=frame,
                        spring_distance=float(trace.distance_A[frame]),
                    )
                )
        rng = np.random.default_rng([self.config.seed, i, SNAP_TASK_OFFSET])
        return self._with_copies(i, originals, details, settings.n_copies, SNAP_TASK_OFFSET, rng)

    def unseen_predictions(self, path: Path, committee: Committee) -> np.ndarray:
        """Best member's energies on the unseen reference-SMD frames (`unseen_predictions`)."""
        return unseen_predictions(path, committee, self.unseen, self.unseen_energies)

    def metrics_row(
        self,
        i: int,
        committee: Committee,
        frames: list[Atoms],
        pulls: ReplicaPulls,
        e_pred_unseen: np.ndarray,
    ) -> dict[str, Any]:
        spring = self.config.reference.smd.spring_constant_eV_per_A2
        reference = self.reference_pulls
        errors = compare_pulls(pulls, reference, spring)
        sample = pulls.sample
        train_mae, val_mae = split_maes(committee, frames)
        unseen_mae = None
        if len(self.unseen_energies):
            unseen_mae = relative_energy_mae(e_pred_unseen, self.unseen_energies) * EV_TO_KCAL_MOL
        return {
            "iteration": i,
            "n_labels": len(frames),
            "ea_nnp_eV": sample.mean,
            "ea_ref_eV": None if reference is None else reference.sample.mean,
            **errors,
            "ea_error_kcal_mol": (
                None if errors["ea_error_eV"] is None else errors["ea_error_eV"] * EV_TO_KCAL_MOL
            ),
            "ea_nnp_mean_eV": sample.mean,
            "ea_nnp_sem_eV": finite_or_none(sample.sem),
            "ea_nnp_replicas_eV": list(sample.values),
            "n_replicas": sample.n,
            "broke": pulls.broke,
            "stopped_reason": pulls.stopped_reason,
            "breaking_distance_nnp_A": pulls.mean_breaking_distance(),
            "breaking_distance_nnp_replicas_A": pulls.breaking_distances(),
            "broken_bonds_nnp": pulls.bond_counts(),
            "mae_unseen_kcal_mol": unseen_mae,
            "train_mae_kcal_mol": train_mae,
            "val_mae_kcal_mol": val_mae,
        }

    # ------------------------------------------------------ select and label
    def selection_uq(self, paths: _Iteration, trace: SMDTrace) -> np.ndarray:
        """The uncertainty the UQ rule reads along the pull: the energy spread recorded during
        the pull, or (``selection.uq = "force"``) the largest per-atom force spread of the
        committee on every frame, computed once and kept in ``force_uq.npz``."""
        if self.config.selection.uq == "energy":
            return recorded_uq(trace)
        path = paths.folder / "force_uq.npz"
        if path.is_file():
            return load_npz(path, ["force_uq_eV_A"])["force_uq_eV_A"]
        committee = load_committee(paths.committee)
        frames = [trace.frame(t) for t in range(trace.n_frames)]
        spread = committee.max_force_spread(frames)
        temporary = path.with_name(path.name + ".tmp.npz")
        np.savez(temporary, force_uq_eV_A=spread)
        manifest.replace(temporary, path)
        return spread

    def select(
        self,
        i: int,
        path: Path,
        trace: SMDTrace,
        uncertainty: Callable[[], np.ndarray] | None = None,
    ) -> Selection:
        """Iteration i's frames to label: the UQ rule on its pull (``uncertainty()``: the
        score of every frame; default: the energy spread recorded along the pull), then, with
        another ``selection.strategy``, as many frames drawn at random
        (`rarelearn.selection.redraw`). Written to ``selection.json``, which a resume reads
        instead of drawing again."""
        if path.is_file():
            return Selection.from_dict(read_json(path, SELECTION_KEYS))
        selection = select_frames(
            recorded_uq(trace) if uncertainty is None else uncertainty(),
            trace.distance_A,
            trace.energy_eV,
            trace.broken_frame,
            self.config.selection,
            forced_candidates=forced_candidates(trace),
        )
        if self.config.selection.candidates == "all":
            pooled = load_npz(path.with_name("pooled.npz"), POOLED_KEYS)
            selection.pooled = [
                (int(r), int(f)) for r, f in zip(pooled["replica"], pooled["frame"], strict=True)
            ]
            selection.n_pooled_candidates = int(pooled["n_candidates"])
        strategy = self.config.selection.strategy
        rng = draw_rng(self.config.seed, i)
        if strategy == "random":
            selection = redraw(selection, strategy, trace.n_frames, rng)
        elif strategy == "reference":
            # frames labeled in earlier iterations are not drawn again
            folders = [self.run_dir / "iterations" / f"{j:03d}" for j in range(i)]
            earlier = [
                frame
                for folder in folders
                for frame in self._drawn_from_reference(folder / "selection.json")
            ]
            n_frames = self.labeled_replica.n_frames
            selection = redraw(selection, strategy, n_frames, rng, LABELED_REPLICA, earlier)
        write_json(path, selection.to_dict())
        return selection

    @staticmethod
    def _drawn_from_reference(path: Path) -> list[int]:
        """Frames of the labeled reference replica that a selection.json says were labeled."""
        if not path.is_file():
            return []
        selection = Selection.from_dict(read_json(path, SELECTION_KEYS))
        return selection.selected if selection.replica == LABELED_REPLICA else []

    @property
    def labeled_replica(self) -> SMDTrace:
        """Reference replica 1's pull with its labeled frames (the ``reference`` strategy's
        pool), read once."""
        if self._labeled_replica is None:
            self._labeled_replica = labeled_replica_trace(self.run_dir / "reference")
        return self._labeled_replica

    def candidate_frames(
        self, i: int, selection: Selection, trace: SMDTrace
    ) -> tuple[list[Atoms], list[dict]]:
        """Selected frames and their noisy copies, with provenance and deterministic uids.

        Frames of the NNP pull (``uq``, ``random``) carry no label; frames of a reference
        replica (``reference``) carry the reference's own energy and forces from its trace
        (a SinglePointCalculator), which `label` stores as they are; their noisy copies carry
        none. With a strategy other than ``uq`` the provenance of originals and copies names it
        (``selection_strategy``) and, for reference frames, the replica (``reference_replica``,
        no ``uq``); ``frame`` is the index in the pull the frame comes from.
        """
        if selection.pooled is not None:
            return self._pooled_frames(i, selection)
        source = trace if selection.replica is None else self.labeled_replica
        labeled = selection.replica is not None
        strategy: dict[str, Any] = {}
        if selection.strategy != "uq":
            strategy["selection_strategy"] = selection.strategy
        if selection.replica is not None:
            strategy["reference_replica"] = selection.replica
        originals = [source.frame(k, labeled=labeled) for k in selection.selected]
        details = [
            dict(
                frame=int(k),
                uq=None if source.uq_eV is None else float(source.uq_eV[k]),
                spring_distance=float(source.distance_A[k]),
                **strategy,
            )
            for k in selection.selected
        ]
        rng = np.random.default_rng([self.config.seed, i])
        return self._with_copies(i, originals, details, self.config.selection.n_copies, 0, rng)

    def _pooled_frames(self, i: int, selection: Selection) -> tuple[list[Atoms], list[dict]]:
        """The pooled frames of every replica pull (``selection.candidates = "all"``) and their
        noisy copies, with provenance naming the pull (``nnp_replica``) and deterministic uids
        (the same task numbers the single pull's frames would have)."""
        data = load_npz(self._folder(i) / "pooled.npz", POOLED_KEYS)
        originals = [
            Atoms(numbers=data["numbers"], positions=positions) for positions in data["positions_A"]
        ]
        details = [
            dict(
                frame=int(data["frame"][k]),
                nnp_replica=int(data["replica"][k]),
                uq=float(data["uq_eV"][k]),
                spring_distance=float(data["distance_A"][k]),
            )
            for k in range(len(originals))
        ]
        rng = np.random.default_rng([self.config.seed, i])
        return self._with_copies(i, originals, details, self.config.selection.n_copies, 0, rng)

    def _with_copies(
        self,
        i: int,
        originals: list[Atoms],
        details: list[dict[str, Any]],
        n_copies: int,
        first_task: int,
        rng: np.random.Generator,
    ) -> tuple[list[Atoms], list[dict]]:
        """Frames to label in iteration i: each original (provenance ``details``) followed by
        its ``n_copies`` noisy copies (`augment`); original k is task ``first_task + k (1 +
        n_copies)``, its copies the tasks after it, each with its deterministic uid."""
        stride = 1 + n_copies
        for k, atoms in enumerate(originals):
            atoms.info["id"] = uid(i + 2, first_task + k * stride)
        copies = augment(originals, n_copies, self.config.selection.noise_amplitude_A, rng=rng)
        frames, provenance = [], []
        for k, (original, detail) in enumerate(zip(originals, details, strict=True)):
            common = dict(iteration=i, labeler=self.spec.name, batch=f"iteration{i:03d}", **detail)
            task = first_task + k * stride
            frames.append(original)
            provenance.append(
                dict(common, source="active", parent=-1, task=task, uid=original.info["id"])
            )
            for c in range(n_copies):
                frames.append(copies[k * n_copies + c])
                provenance.append(
                    dict(
                        common,
                        source="augmented",
                        parent=original.info["id"],
                        task=task + c + 1,
                        uid=uid(i + 2, task + c + 1),
                    )
                )
        return frames, provenance

    def label(
        self, i: int, selection: Selection, trace: SMDTrace, timing: dict, label: str
    ) -> LabelCounts:
        """Label what is not stored yet, storing chunk groups as they finish; return the
        iteration's failures and its numbers of snap-test and COGEF-path frames (originals
        and copies).

        Frames that already carry a label (drawn from a reference pull, or a snap test's) are
        stored with it, through the same path, without calling the labeler.
        """
        frames, provenance = self.candidate_frames(i, selection, trace)
        snap_frames, snap_provenance = self.snap_candidates(i, _Iteration(self._folder(i)))
        cogef_frames, cogef_provenance = self.cogef_candidates(i, timing, label)
        frames = frames + snap_frames + cogef_frames
        provenance = provenance + snap_provenance + cogef_provenance
        batch = f"iteration{i:03d}"
        done = self.store.tasks_done(batch)
        pending = [k for k, p in enumerate(provenance) if p["task"] not in done]
        given = [k for k in pending if frames[k].calc is not None]
        if given:
            results = [
                LabelResult(
                    k, energy=frames[k].get_potential_energy(), forces=frames[k].get_forces()
                )
                for k in given
            ]
            self.store.add_labeled(
                [frames[k] for k in given], results, [provenance[k] for k in given]
            )
        pending = [k for k in pending if frames[k].calc is None]
        if pending:
            started = time.perf_counter()
            chunk = self.config.executor.chunk_size
            group = chunk * max(1, self.executor.workers)
            with self.progress.stage(f"{label}: labeling", len(pending), "labels") as update:
                for start in range(0, len(pending), group):
                    part = pending[start : start + group]
                    results = label_parallel(
                        self.spec,
                        [frames[k] for k in part],
                        self.executor,
                        chunk_size=chunk,
                        indices=part,
                    )
                    self.store.add_labeled(
                        [frames[k] for k in part], results, [provenance[k] for k in part]
                    )
                    update(start + len(part), len(pending))
            self._timed(timing, "label_s", self._folder(i) / "timing.json", started)
        return LabelCounts(
            self.store.count(batch=batch, failed=True), len(snap_frames), len(cogef_frames)
        )

    # ---------------------------------------------------------------- baselines
    def baselines(self, rows: list[dict], final: bool) -> dict[str, Any]:
        """Paper Fig. 2c/2d: committees on the equilibrium data only and on the SMD data only
        (the latter trains on the reference pull: none in a campaign without one)."""
        if not self.config.baselines or not rows:
            return {}
        equilibrium_only = dict(rows[0])
        equilibrium_only["note"] = "the iteration-0 committee: same data, same seed"
        result: dict[str, Any] = {"equilibrium_only": equilibrium_only}
        if self.reference_pulls is None:
            return result
        folder = self.run_dir / "baselines" / "smd_only"
        if (folder / "metrics.json").is_file():
            result["smd_only"] = read_json(folder / "metrics.json")
        elif final:
            result["smd_only"] = self.smd_only_baseline(folder)
        return result

    def smd_only_baseline(self, folder: Path) -> dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        timing = read_json(folder / "timing.json") if (folder / "timing.json").is_file() else {}
        frames = self.unseen[:: self.config.baseline_smd_every]
        paths = _Iteration(folder)
        committee = self.committee(
            paths.committee, frames, None, BASELINE_SEED_OFFSET, timing, "baseline smd_only"
        )
        _, pulls, _ = self.pulls(paths, committee, timing, "baseline smd_only", members=False)
        e_pred = self.unseen_predictions(paths.unseen, committee)
        row = self.metrics_row(-1, committee, frames, pulls, e_pred)
        del row["iteration"]
        row["note"] = "trained on the reference-SMD frames: mae_unseen is on its training data"
        row["wall_s"] = round(sum(timing.values()), 2)
        write_json(folder / "metrics.json", row)
        manifest.record(self.run_dir / "data.db")  # the labels of the stage just done
        return row

    def write_summary(self, rows: list[dict], baselines: dict[str, Any]) -> dict[str, Any]:
        summary = campaign_summary(
            self.config, rows, self.reference, self.reference_pulls, self.atoms, self.pulled
        )
        summary["baselines"] = baselines
        write_json(self.run_dir / "summary.json", summary)
        manifest.record(self.run_dir / "data.db")  # the labels of the stage just done
        return summary


def _extensible(config: CampaignConfig) -> tuple[int, int]:
    """The settings a finished campaign may be resumed with changed (`rarelearn run
    --iterations`, ``--final-replicas``)."""
    return config.iterations, config.final.replicas


def unseen_predictions(
    path: Path, committee: Committee, unseen: list[Atoms], energies: np.ndarray
) -> np.ndarray:
    """Best member's energies on the unseen reference-SMD frames, saved with the labels' in
    ``path`` for the parity plot (read from it once there); none without reference pulls."""
    if not unseen:
        return np.zeros(0)
    if path.is_file():
        return load_npz(path, ["e_pred_eV"])["e_pred_eV"]
    e_pred, _ = committee.best.predict(unseen, forces=False)
    temporary = path.with_name(path.name + ".tmp.npz")
    np.savez(temporary, e_ref_eV=energies, e_pred_eV=e_pred)
    manifest.replace(temporary, path)
    return e_pred


def campaign_summary(
    config: CampaignConfig,
    rows: list[dict],
    reference_json: dict[str, Any],
    reference_pulls: ReplicaPulls | None,
    atoms: Atoms,
    pulled: PulledAtoms,
) -> dict[str, Any]:
    """``summary.json``'s content but its baselines (`Campaign.write_summary`, and
    `rarelearn validate` once the reference pulls exist)."""
    rule = stop_rule(config)
    converged = converged_iteration(rows, config)
    if converged is not None:
        stop_reason = "converged" if rule == "reference" else "self-consistent"
    elif len(rows) == config.iterations:
        stop_reason = "max_iterations"
    else:
        stop_reason = "running"
    reference = None if reference_pulls is None else reference_pulls.sample
    spring = config.reference.smd.spring_constant_eV_per_A2
    forces = (
        None if reference_pulls is None else Sample.of(reference_pulls.rupture_forces_eV_A(spring))
    )
    return {
        "validated": reference_pulls is not None,
        "ea_ref_eV": None if reference is None else reference.mean,
        "ea_ref_sem_eV": None if reference is None else finite_or_none(reference.sem),
        "ea_ref_replicas_eV": None if reference is None else list(reference.values),
        "rupture_force_ref_eV_A": None if forces is None else forces.mean,
        "rupture_force_ref_sem_eV_A": None if forces is None else finite_or_none(forces.sem),
        "broken_bonds_ref": None if reference_pulls is None else reference_pulls.bond_counts(),
        "system": describe_system(atoms, pulled),
        "model": {
            "backend": config.committee.backend,
            "n_members": config.committee.n_members,
        },
        "stop_reason": stop_reason,
        "stop_rule": rule,
        "converged_iteration": converged,
        "self_consistency": self_consistency_line(rows[-1], config.stop) if rows else None,
        "stop": config.to_dict()["stop"],
        "resolution": (
            resolution(rows[-1], reference, config) if rows and reference is not None else None
        ),
        "reference": reference_json,
        "config": config.to_dict(),
        "baselines": {},
        "iterations": rows,
    }


def stop_rule(config: CampaignConfig) -> str:
    """``reference`` or ``self``: the stop rule this campaign applies."""
    return config.stop.resolved_rule(config.reference.pulls)


def converged_iteration(rows: Sequence[dict[str, Any]], config: CampaignConfig) -> int | None:
    """The iteration that began the convergence streak under the campaign's stop rule
    (`rarelearn.consistency`), once it is ``stop.patience`` long; None before."""
    return converged_by_rule(rows, config.stop, stop_rule(config))


def resolution(row: dict[str, Any], reference: Sample, config: CampaignConfig) -> dict[str, Any]:
    """Whether the replicas can resolve the stop tolerance, and how many would.

    ``replicas_needed``: replicas per side for a 95 % half-width equal to the tolerance, from
    the spreads measured in ``row`` (the NNP's) and of the reference.
    """
    tolerance_eV = config.stop.tolerance_kcal_mol / EV_TO_KCAL_MOL
    half_width = row.get("ea_error_ci95_eV")
    model = Sample.of(row.get("ea_nnp_replicas_eV") or [row["ea_nnp_eV"]])
    needed = None
    if np.isfinite(model.std) and np.isfinite(reference.std):
        needed = replicas_for_half_width(model.std, reference.std, tolerance_eV)
    return {
        "ci95_kcal_mol": None if half_width is None else half_width * EV_TO_KCAL_MOL,
        "tolerance_kcal_mol": config.stop.tolerance_kcal_mol,
        "resolvable": half_width is not None and half_width <= tolerance_eV,
        "replicas_needed": needed,
    }


def split_maes(committee: Committee, frames: list[Atoms]) -> tuple[float, float]:
    """Relative-energy MAE (kcal/mol) of the best member on its own train and validation frames."""
    split = committee.splits[committee.best_index]
    by_id = {a.info["id"]: a for a in frames}
    maes = []
    for part in ("train", "val"):
        chosen = [by_id[k] for k in split[part] if k in by_id]
        if not chosen:
            maes.append(float("nan"))
            continue
        e_pred, _ = committee.best.predict(chosen, forces=False)
        e_ref = [a.get_potential_energy() for a in chosen]
        maes.append(relative_energy_mae(e_pred, e_ref) * EV_TO_KCAL_MOL)
    return maes[0], maes[1]


def _row_line(row: dict[str, Any]) -> str:
    """The progress line of a finished iteration."""
    distance = row["breaking_distance_nnp_A"]
    n_broke = sum(row["broke"])
    broke = f"breaks at {distance:.2f} A" if distance is not None else "no break"
    if n_broke < row["n_replicas"]:
        broke += f" ({n_broke} of {row['n_replicas']} pulls broke)"
    share = row.get("reference_bond_share")
    if share is not None and share < 1.0:
        broke += f", {share:.0%} on the reference's bonds"
    if row["ea_ref_eV"] is None:
        change = row.get("ea_change_eV")
        half_width = row.get("ea_change_ci95_eV")
        against = "not validated"
        if change is not None:
            interval = "" if half_width is None else f" +- {half_width * EV_TO_KCAL_MOL:.2f}"
            against += f", change {change * EV_TO_KCAL_MOL:+.2f}{interval} kcal/mol (95 %)"
    else:
        half_width = row["ea_error_ci95_eV"]
        interval = "" if half_width is None else f" +- {half_width * EV_TO_KCAL_MOL:.2f}"
        against = (
            f"ref {row['ea_ref_eV']:.3f}, error "
            f"{row['ea_error_signed_eV'] * EV_TO_KCAL_MOL:+.2f}{interval} kcal/mol, 95 %"
        )
    force = ""
    if row.get("rupture_force_nnp_eV_A") is not None:
        force = f"rupture force {row['rupture_force_nnp_eV_A']:.2f} eV/A"
        if row.get("rupture_force_ref_eV_A") is not None:
            force += f" (ref {row['rupture_force_ref_eV_A']:.2f})"
        force += ", "
    snap = ""
    if row.get("snap_n_tests"):
        difference = row["snap_steps_difference_mean"]
        snap = f"snap tests: the labeler held {row['snap_labeler_held']}/{row['snap_n_tests']}"
        if difference is not None:
            snap += f", snapped {difference:+.0f} steps after the model"
        snap += ", "
    cold = ""
    if row.get("cogef_ea_error_eV") is not None:
        cold = f"0 K barrier error {row['cogef_ea_error_eV'] * EV_TO_KCAL_MOL:+.1f} kcal/mol, "
    elif row.get("cogef_note"):
        cold = f"0 K check: {row['cogef_note']}, "
    unseen = ""
    if row.get("mae_unseen_kcal_mol") is not None:
        unseen = f"unseen MAE {row['mae_unseen_kcal_mol']:.2f} kcal/mol, "
    return (
        f"iteration {row['iteration']}: {row['n_labels']} labels, Ea = {row['ea_nnp_eV']:.3f} eV "
        f"over {row['n_replicas']} pulls ({against}), {broke}, {force}{snap}{cold}{unseen}"
        f"{row['n_selected']} selected"
    )


def run_campaign(config: CampaignConfig, quiet: bool = False) -> dict[str, Any]:
    """Run (or resume) a campaign with a live progress display; return the summary.

    The run folder's lock is held throughout (`rarelearn.lock`): a second writer is refused
    before it writes anything, as is an impossible structure or labeler (an unknown option)."""
    system_of(config)
    labeler_of(config).check()
    check_sampler(config)
    with CampaignLock(config.run_dir), StageProgress(quiet=quiet) as progress:
        campaign = Campaign(config, progress)
        summary = campaign.run()
        from rarelearn.report import build_report

        build_report(config.run_dir)
    return summary
