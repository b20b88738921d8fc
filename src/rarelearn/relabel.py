"""Relabel a campaign's frames with another reference method, then train and score a committee.

``rarelearn relabel RUN --labeler pyscf --option xc=PBE --out RUN2`` finishes a campaign
explored cheaply (GFN2-xTB) at a better level (DFT): the frames the campaign chose are labeled
again, a committee is trained on them exactly as the campaign trains one, and ``relabel.json``
sets both levels side by side.

Which frames. Every good label of RUN's store: the training frames (``equilibrium``,
``active``, ``augmented``), which train the new committee, and the reference-SMD frames
(``reference_smd``), the unseen pull it is scored on. Frames whose label failed in RUN have
no label to compare with and are left out. ``sources`` keeps some sources only,
``unseen_every`` every n-th reference-SMD frame (a DFT label of each of thousands of pull
frames is rarely worth it), ``limit`` at most that many frames of each source, evenly spaced
(a cheap trial). The chosen frames (RUN's uids) are fixed in ``relabel_plan.json`` with the
request before any label, so a rerun labels the same frames even if RUN has grown since.

The new run folder (RUN2), a run folder of its own:
- ``relabel_plan.json``: the request (RUN, labeler and options, sources, limit, unseen_every,
  epochs) and the chosen uids. A rerun must ask for the same; a folder holding anything else
  (another RUN, other settings, not a relabel) is refused before anything is written.
- ``config.toml``: RUN's configuration with the labeler replaced, the store set to RUN2's own
  ``data.db`` (also when RUN shares a PostgreSQL store) and ``committee.<backend>.epochs`` set when
  asked. A committee trained once from scratch sees fewer epochs than the last committee of a
  warm-started campaign (the quick preset: 60 per iteration), hence ``epochs``.
- ``data.db``: each relabeled frame under batch ``relabel``, task = its place in the plan,
  with RUN's provenance (source, iteration, parent, uq, spring distance, uid), the new
  ``labeler``, and ``original_energy`` / ``original_labeler`` / ``original_id`` (RUN's label
  and store row); failed labels with their reason, as the campaign records them.
- ``differences.npz``: per frame labeled at both levels, the energies, the new-minus-original
  energy relative to each molecule's mean (and relative to its lowest frame at RUN's level),
  and the force difference.
- ``committee/``: trained by `Committee.train` with RUN's committee settings on the relabeled
  training frames (seed ``seed * 1000``, iteration 0's); loads with `load_committee`.
- ``unseen.npz``: the best member's energies on the relabeled reference-SMD frames.
- ``pulls/``: the new committee pulled from RUN's reference start states with RUN's SMD
  settings, as the campaign pulls (``replicas.npz`` written last marks it done). Its Ea has
  no reference at the new level: computing one takes a reference SMD with the new method
  (``rarelearn reference --method ... --option ...``).
- ``relabel.json``: the summary, rewritten at the end of every run.

Resumability follows the campaign: labels are stored group by group and a rerun labels only
the plan's tasks not stored yet (a failure is stored, so it is not retried); the committee
folder, ``unseen.npz`` and ``pulls/replicas.npz`` are each written atomically and reused.
RUN is only read; RUN2 is held with the run-folder lock.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from rarelearn import manifest
from rarelearn.campaign import (
    TRAINING_SOURCES,
    executor_of,
    labeler_of,
    load_committee,
    open_store,
    save_committee,
    split_maes,
    training_frames,
    training_seed,
)
from rarelearn.committee import Committee
from rarelearn.config import CampaignConfig, LabelerConfig, StoreConfig, load_resolved
from rarelearn.dynamics import SMDSettings
from rarelearn.errors import RarelearnError
from rarelearn.executors import Executor, label_parallel
from rarelearn.labeling import LabelerSpec, parse_options
from rarelearn.lock import LOCK_FILE, CampaignLock
from rarelearn.metrics import relative_energy_mae
from rarelearn.model_smd import replica_pull_jobs, run_pull_jobs
from rarelearn.potentials.ani.features import FeatureCache
from rarelearn.progress import StageProgress
from rarelearn.pulls import REPLICAS_FILE, START_STATES_FILE, ReplicaPulls, load_start_states
from rarelearn.reference import write_json
from rarelearn.runfolder import RELABEL_PLAN, load_npz, read_json
from rarelearn.statistics import finite_or_none
from rarelearn.store import SOURCES, CampaignStore
from rarelearn.units import EV_TO_KCAL_MOL

PLAN_FILE = RELABEL_PLAN
SUMMARY_FILE = "relabel.json"
DIFFERENCES_FILE = "differences.npz"
BATCH = "relabel"
#: RUN's provenance keys each relabeled frame keeps.
PROVENANCE = ("source", "iteration", "parent", "uq", "spring_distance", "frame", "uid")
#: How many of the largest per-frame differences the summary lists.
N_LARGEST = 5


@dataclass(frozen=True)
class RelabelRequest:
    """What a relabel was asked for; a rerun in the same folder must ask for the same."""

    run: str
    campaign: str
    method: str
    options: dict[str, Any]
    sources: tuple[str, ...]
    limit: int | None = None
    unseen_every: int = 1
    epochs: int | None = None

    @property
    def spec(self) -> LabelerSpec:
        return LabelerSpec(self.method, dict(self.options))

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["sources"] = list(self.sources)
        return values


def check_labeler(spec: LabelerSpec) -> None:
    """Build the labeler once: an unknown method, option or missing program fails now, with
    one message (`LabelerSpec.check`)."""
    spec.check()


def choose_frames(
    frames: Sequence[Atoms],
    sources: Sequence[str],
    limit: int | None = None,
    unseen_every: int = 1,
) -> list[Atoms]:
    """RUN's frames to relabel, ordered by uid: those of `sources`, every `unseen_every`-th
    reference-SMD frame, at most `limit` of each source spread evenly over it."""
    chosen: list[Atoms] = []
    for source in sources:
        of_source = sorted(
            (f for f in frames if f.info.get("source") == source), key=lambda a: a.info["uid"]
        )
        if source == "reference_smd":
            of_source = of_source[::unseen_every]
        if limit is not None and len(of_source) > limit:
            picks = np.unique(np.linspace(0, len(of_source) - 1, limit).round().astype(int))
            of_source = [of_source[int(k)] for k in picks]
        chosen.extend(of_source)
    return sorted(chosen, key=lambda a: a.info["uid"])


def energy_differences(
    original_eV: Sequence[float], new_eV: Sequence[float], molecules: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, new minus original energy with each method's zero removed per molecule.

    Two methods' total energies differ by a large constant (DFT and xTB by thousands of eV),
    so each frame's energy is taken relative to its molecule's (frames of one formula) mean
    at each level, as the campaign's relative MAE does; the second array takes it relative to
    the molecule's lowest frame at the original level instead (zero at that frame).
    """
    original = np.asarray(original_eV, dtype=float)
    new = np.asarray(new_eV, dtype=float)
    to_mean, to_lowest = np.zeros_like(new), np.zeros_like(new)
    names = np.asarray(molecules)
    for name in np.unique(names):
        part = names == name
        to_mean[part] = (new[part] - new[part].mean()) - (original[part] - original[part].mean())
        lowest = np.flatnonzero(part)[np.argmin(original[part])]
        to_lowest[part] = (new[part] - new[lowest]) - (original[part] - original[lowest])
    return to_mean, to_lowest


def _stats_kcal(values_eV: np.ndarray) -> dict[str, Any]:
    values = np.asarray(values_eV, dtype=float) * EV_TO_KCAL_MOL
    if values.size == 0:
        return {"n": 0}
    return {
        "n": int(values.size),
        "mean_kcal_mol": float(values.mean()),
        "mae_kcal_mol": float(np.abs(values).mean()),
        "rmse_kcal_mol": float(np.sqrt(np.mean(values**2))),
        "max_abs_kcal_mol": float(np.abs(values).max()),
    }


# ------------------------------------------------------------------------- the source run
@dataclass
class SourceRun:
    """RUN, read only: its configuration, labels, and final figures at its level."""

    folder: Path
    config: CampaignConfig
    frames: list[Atoms]

    @classmethod
    def open(cls, folder: Path) -> SourceRun:
        """RUN checked to be a campaign folder holding labels (RarelearnError if not)."""
        if not (folder / "config.toml").is_file():
            raise RarelearnError(
                f"{folder} is not a campaign run folder (no config.toml); relabel needs a "
                "folder written by `rarelearn run`"
            )
        if (folder / PLAN_FILE).is_file():
            raise RarelearnError(
                f"{folder} is a relabel folder, not a campaign run folder; relabel the campaign "
                f"it came from (its {PLAN_FILE} names it)"
            )
        config = load_resolved(folder).with_out(str(folder))
        if not config.store.url and not (folder / "data.db").is_file():
            raise RarelearnError(f"{folder} holds no labels yet (no data.db): nothing to relabel")
        frames = [f for f in open_store(config, folder).labeled() if "uid" in f.info]
        if not frames:
            raise RarelearnError(
                f"{folder} holds no labeled frames yet (its campaign has not finished the "
                "reference stage): nothing to relabel"
            )
        return cls(folder, config, frames)

    @property
    def labeler(self) -> LabelerSpec:
        return labeler_of(self.config)

    def by_uid(self, uids: Sequence[int]) -> list[Atoms]:
        """RUN's frames of `uids`, in that order."""
        index = {int(f.info["uid"]): f for f in self.frames}
        missing = [u for u in uids if int(u) not in index]
        if missing:
            raise RarelearnError(
                f"{self.folder}'s store no longer holds {len(missing)} frame(s) of the plan "
                f"(uid {missing[0]}, ...); relabel into another --out folder"
            )
        return [index[int(u)] for u in uids]

    def final_row(self) -> dict[str, Any] | None:
        """RUN's last iteration row (summary.json, else the newest metrics.json), if any."""
        summary = self.folder / "summary.json"
        if summary.is_file():
            rows = read_json(summary).get("iterations") or []
            if rows:
                return rows[-1]
        metrics = sorted((self.folder / "iterations").glob("[0-9][0-9][0-9]/metrics.json"))
        return read_json(metrics[-1]) if metrics else None

    def reference_ea(self) -> dict[str, Any] | None:
        """RUN's reference Ea (replica mean and standard error), if its reference is done."""
        path = self.folder / "reference" / "reference.json"
        if not path.is_file():
            return None
        reference = read_json(path)
        mean = reference.get("activation_energy_mean_eV", reference.get("activation_energy_eV"))
        return {
            "mean_eV": mean,
            "sem_eV": reference.get("activation_energy_sem_eV"),
            "n_replicas": reference.get("n_replicas", 1),
        }


# ------------------------------------------------------------------------- the new folder
def _is_empty(folder: Path) -> bool:
    """Nothing but a lock or a temporary file: what a relabel killed at its start leaves."""
    return all(p.name == LOCK_FILE or p.name.endswith(".tmp") for p in folder.iterdir())


def check_target(out: Path, request: RelabelRequest) -> dict[str, Any] | None:
    """Refuse an `out` that is RUN itself, a file, or a folder holding anything but a relabel
    of the same request; return its stored plan (None for a new or empty folder)."""
    if out.resolve() == Path(request.run):
        raise RarelearnError("--out must be a new folder, not the run folder being relabeled")
    if out.exists() and not out.is_dir():
        raise RarelearnError(f"--out {out} exists and is not a folder")
    plan_path = out / PLAN_FILE
    if not plan_path.is_file():
        if out.is_dir() and not _is_empty(out):
            raise RarelearnError(
                f"{out} exists and is not a relabel folder (no {PLAN_FILE}); choose another --out"
            )
        return None
    plan = read_json(plan_path, ["request", "uids"])
    stored = plan["request"]
    asked = request.to_dict()
    differing = [key for key in asked if stored.get(key) != asked[key]]
    if differing:
        key = differing[0]
        raise RarelearnError(
            f"{out} holds a relabel with another {key} ({stored.get(key)!r}, asked "
            f"{asked[key]!r}); rerun it with the same settings to resume, or use another --out"
        )
    return plan


def target_config(source: SourceRun, request: RelabelRequest, out: Path) -> CampaignConfig:
    """RUN's configuration with the new labeler, RUN2's own SQLite store and asked epochs."""
    committee = source.config.committee
    if request.epochs is not None:
        model = replace(committee.model, epochs=request.epochs)
        committee = replace(committee, **{committee.backend: model})
    return replace(
        source.config,
        out=str(out),
        labeler=LabelerConfig(request.method, dict(request.options)),
        store=StoreConfig(url=""),
        committee=committee,
    )


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    manifest.replace(temporary, path)


class Relabel:
    """One relabel of RUN into RUN2; ``run()`` does (or finishes) all of it."""

    def __init__(
        self,
        source: SourceRun,
        request: RelabelRequest,
        out: Path,
        progress: StageProgress,
        pulls: bool = True,
    ) -> None:
        self.source = source
        self.request = request
        self.out = out
        self.progress = progress
        self.want_pulls = pulls
        self.spec = request.spec
        self.config = target_config(source, request, out)
        self._executor: Executor | None = None

    @property
    def executor(self) -> Executor:
        """RUN's executor settings, started on first use (nothing to label: no workers)."""
        if self._executor is None:
            self._executor = executor_of(self.config)
        return self._executor

    def run(self) -> dict[str, Any]:
        """Plan, label, train, evaluate, pull; return ``relabel.json``'s content."""
        try:
            uids = self.plan()
            frames = self.source.by_uid(uids)
            self.store = CampaignStore(self.out / "data.db", campaign=self.config.name)
            self.label(frames)
            committee = self.committee()
            unseen = self.unseen(committee)
            pulls = self.pulls(committee)
            return self.summary(frames, committee, unseen, pulls)
        finally:
            if self._executor is not None:
                self._executor.close()

    def plan(self) -> list[int]:
        """The uids to relabel: the stored plan, or a new one; config.toml written if missing."""
        plan = check_target(self.out, self.request)
        if plan is None:
            plan = self.new_plan()
        if not (self.out / "config.toml").is_file():
            _write_text(self.out / "config.toml", self.config.to_toml())
        return [int(u) for u in plan["uids"]]

    def new_plan(self) -> dict[str, Any]:
        """Choose the frames and write the plan (first: it marks the folder as this relabel's)."""
        chosen = choose_frames(
            self.source.frames,
            self.request.sources,
            self.request.limit,
            self.request.unseen_every,
        )
        if not chosen:
            raise RarelearnError(
                f"{self.source.folder} holds no labeled frames of {list(self.request.sources)}"
            )
        plan = {"request": self.request.to_dict(), "uids": [int(f.info["uid"]) for f in chosen]}
        write_json(self.out / PLAN_FILE, plan)
        return plan

    def provenance(self, frames: Sequence[Atoms]) -> list[dict[str, Any]]:
        """RUN's provenance of each frame, the new labeler, and the original label."""
        original = self.source.labeler.name
        rows = []
        for task, atoms in enumerate(frames):
            row = {key: atoms.info[key] for key in PROVENANCE if key in atoms.info}
            row.update(
                labeler=self.spec.name,
                batch=BATCH,
                task=task,
                original_energy=float(atoms.get_potential_energy()),
                original_labeler=atoms.info.get("labeler", original),
                original_id=int(atoms.info["id"]),
            )
            rows.append(row)
        return rows

    def label(self, frames: list[Atoms]) -> None:
        """Label the plan's frames not stored yet, storing each group as it finishes."""
        provenance = self.provenance(frames)
        done = self.store.tasks_done(BATCH)
        pending = [k for k in range(len(frames)) if k not in done]
        self.progress.message(
            f"relabel: {len(frames)} frames of {self.source.folder} with {self.spec.name} "
            f"({len(frames) - len(pending)} stored, {len(pending)} to label)"
        )
        if not pending:
            return
        chunk = self.config.executor.chunk_size
        group = chunk * max(1, self.executor.workers)
        with self.progress.stage("relabel: labeling", len(pending), "labels") as update:
            for start in range(0, len(pending), group):
                part = pending[start : start + group]
                results = label_parallel(
                    self.spec, [frames[k] for k in part], self.executor, chunk, indices=part
                )
                self.store.add_labeled(
                    [frames[k] for k in part], results, [provenance[k] for k in part]
                )
                update(start + len(part), len(pending))

    def committee(self) -> Committee | None:
        """The committee on the relabeled training frames, trained as the campaign trains one
        (None when the plan holds no training frame)."""
        folder = self.out / "committee"
        if folder.exists():
            return load_committee(folder)
        frames = training_frames(self.store, TRAINING_SOURCES)
        if not frames:
            self.progress.message("relabel: no relabeled training frames; no committee trained")
            return None
        settings = self.config.committee
        self.progress.message(
            f"relabel: training {settings.n_members} members on {len(frames)} frames "
            f"({settings.backend}, {settings.model.epochs} epochs, {settings.strategy} splits)"
        )
        total = settings.n_members * settings.model.epochs
        with self.progress.stage("relabel: training", total, "epochs") as update:
            committee = Committee.train(
                frames,
                n_members=settings.n_members,
                settings=settings.model,
                family=settings.backend,
                strategy=settings.strategy,
                previous=None,
                seed=training_seed(self.config.seed, 0),
                executor=self.executor if settings.parallel else None,
                warm_start=settings.warm_start,
                progress=update,
                threads=settings.threads,
                cache=FeatureCache(),
            )
        save_committee(committee, folder)
        return committee

    def unseen(self, committee: Committee | None) -> dict[str, np.ndarray] | None:
        """The best member's energies on the relabeled reference-SMD frames (``unseen.npz``)."""
        path = self.out / "unseen.npz"
        if committee is None:
            return None
        if path.is_file():
            return load_npz(path, ["e_ref_eV", "e_pred_eV", "uid"])
        frames = training_frames(self.store, ["reference_smd"])
        if not frames:
            return None
        e_pred, _ = committee.best.predict(frames, forces=False)
        arrays = {
            "e_ref_eV": np.array([a.get_potential_energy() for a in frames]),
            "e_pred_eV": np.asarray(e_pred, dtype=float),
            "uid": np.array([int(a.info["uid"]) for a in frames]),
        }
        temporary = path.with_name(path.name + ".tmp.npz")
        np.savez(temporary, **arrays)
        manifest.replace(temporary, path)
        return arrays

    def pulls(self, committee: Committee | None) -> ReplicaPulls | None:
        """The new committee pulled from RUN's reference start states (None when skipped)."""
        folder = self.out / "pulls"
        if (folder / REPLICAS_FILE).is_file():
            return ReplicaPulls.load(folder / REPLICAS_FILE)
        reference = self.source.folder / "reference"
        if (
            committee is None
            or not self.want_pulls
            or not (reference / START_STATES_FILE).is_file()
            or not (reference / "reference.json").is_file()
        ):
            return None
        settings = SMDSettings.from_dict(read_json(reference / "reference.json")["smd_settings"])
        starts = load_start_states(reference / START_STATES_FILE)
        jobs = replica_pull_jobs(
            committee, starts, settings, self.config.seed, self.config.committee.driver
        )
        name = f"relabel: NNP steered MD ({len(starts)} replicas)"
        with self.progress.stage(name, sum(job.steps for job in jobs)) as update:
            traces = [trace for part in run_pull_jobs(jobs, update) for trace in part]
        folder.mkdir(parents=True, exist_ok=True)
        pulls = ReplicaPulls.from_traces(traces)
        traces[0].save(folder / "smd.npz")
        pulls.save(folder / REPLICAS_FILE)
        return pulls

    # -------------------------------------------------------------------------- summary
    def differences(self, frames: list[Atoms]) -> dict[str, Any]:
        """Per-frame differences between the levels (``differences.npz``) and their
        statistics, overall and by source."""
        original = {int(f.info["uid"]): f for f in frames}
        relabeled = training_frames(self.store, SOURCES)
        if not relabeled:
            return {"n": 0}
        old = [original[int(a.info["uid"])] for a in relabeled]
        e_old = np.array([a.get_potential_energy() for a in old])
        e_new = np.array([a.get_potential_energy() for a in relabeled])
        molecules = [a.get_chemical_formula() for a in relabeled]
        to_mean, to_lowest = energy_differences(e_old, e_new, molecules)
        force_mae = np.array(
            [
                np.abs(a.get_forces() - b.get_forces()).mean()
                for a, b in zip(relabeled, old, strict=True)
            ]
        )
        sources = np.array([str(a.info["source"]) for a in relabeled])
        arrays = {
            "uid": np.array([int(a.info["uid"]) for a in relabeled]),
            "source": sources,
            "spring_distance_A": np.array(
                [float(a.info.get("spring_distance", np.nan)) for a in relabeled]
            ),
            "e_original_eV": e_old,
            "e_new_eV": e_new,
            "de_to_mean_eV": to_mean,
            "de_to_lowest_eV": to_lowest,
            "force_mae_eV_A": force_mae,
        }
        temporary = self.out / (DIFFERENCES_FILE + ".tmp.npz")
        np.savez(temporary, **arrays)
        manifest.replace(temporary, self.out / DIFFERENCES_FILE)
        forces_old = np.concatenate([a.get_forces().ravel() for a in old])
        forces_new = np.concatenate([a.get_forces().ravel() for a in relabeled])
        largest = np.argsort(-np.abs(to_mean))[:N_LARGEST]
        return {
            "relative_to_mean": _stats_kcal(to_mean),
            "relative_to_lowest": _stats_kcal(to_lowest),
            "by_source": {
                source: _stats_kcal(to_mean[sources == source])
                for source in SOURCES
                if np.any(sources == source)
            },
            "force_mae_eV_A": float(np.abs(forces_new - forces_old).mean()),
            "force_rmse_eV_A": float(np.sqrt(np.mean((forces_new - forces_old) ** 2))),
            "largest": [
                {
                    "uid": int(arrays["uid"][k]),
                    "source": str(sources[k]),
                    "spring_distance_A": finite_or_none(arrays["spring_distance_A"][k]),
                    "de_to_mean_kcal_mol": float(to_mean[k] * EV_TO_KCAL_MOL),
                }
                for k in largest
            ],
        }

    def summary(
        self,
        frames: list[Atoms],
        committee: Committee | None,
        unseen: dict[str, np.ndarray] | None,
        pulls: ReplicaPulls | None,
    ) -> dict[str, Any]:
        """``relabel.json``: both levels side by side."""
        final = self.source.final_row() or {}
        counts = {
            source: {"planned": sum(f.info["source"] == source for f in frames)}
            for source in SOURCES
        }
        for (source, _, failed), n in self.store.label_counts().items():
            if source in counts:
                key = "failed" if failed else "labeled"
                counts[source][key] = counts[source].get(key, 0) + n
        counts = {s: c for s, c in counts.items() if c["planned"]}
        failures = [
            {"uid": f.get("uid"), "source": f.get("source"), "error": f.get("error")}
            for f in self.store.failures()
        ]
        new: dict[str, Any] = {}
        if committee is not None:
            training = training_frames(self.store, TRAINING_SOURCES)
            train_mae, val_mae = split_maes(committee, training)
            # a relative MAE over one frame is 0 by construction: none rather than a perfect 0
            split = committee.splits[committee.best_index]
            new = {
                "train_mae_kcal_mol": train_mae if len(split["train"]) > 1 else None,
                "val_mae_kcal_mol": val_mae if len(split["val"]) > 1 else None,
            }
        if unseen is not None and len(unseen["e_ref_eV"]) > 1:
            new["mae_unseen_kcal_mol"] = (
                relative_energy_mae(unseen["e_pred_eV"], unseen["e_ref_eV"]) * EV_TO_KCAL_MOL
            )
        metrics = {
            key: {"original": finite_or_none(final.get(key)), "new": finite_or_none(new.get(key))}
            for key in ("train_mae_kcal_mol", "val_mae_kcal_mol", "mae_unseen_kcal_mol")
        }
        metrics["n_training_frames"] = {
            "original": final.get("n_labels"),
            "new": None if committee is None else sum(len(s) for s in committee.splits[0].values()),
        }
        metrics["n_unseen_frames"] = {
            "original": sum(f.info.get("source") == "reference_smd" for f in self.source.frames),
            "new": None if unseen is None else len(unseen["e_ref_eV"]),
        }
        reference = self.source.reference_ea()
        ea: dict[str, Any] = {
            "nnp_original": None
            if not final
            else {
                "mean_eV": final.get("ea_nnp_eV"),
                "sem_eV": final.get("ea_nnp_sem_eV"),
                "n_replicas": final.get("n_replicas"),
            },
            "reference_original": reference,
            "nnp_new": None if pulls is None else pulls.summary(),
            "reference_new": None,
            "note": "no reference Ea at the new level: the new committee's Ea can be set only "
            "beside RUN's reference at its own level. A reference SMD with the new method "
            "gives one (`rarelearn reference --method ...`, with the method's default "
            "options), at that method's cost per step.",
        }
        return {
            "run": str(self.source.folder),
            "out": str(self.out),
            "levels": {"original": self.source.labeler.name, "new": self.spec.name},
            "labelers": {"original": asdict(self.source.labeler), "new": asdict(self.spec)},
            "request": self.request.to_dict(),
            "original_final_iteration": final.get("iteration"),
            "frames": {
                "planned": len(frames),
                "labeled": self.store.count(batch=BATCH, failed=False),
                "failed": self.store.count(batch=BATCH, failed=True),
                "by_source": counts,
            },
            "failures": failures,
            "energy_difference": self.differences(frames),
            "metrics": metrics,
            "ea": ea,
            "committee": None
            if committee is None
            else {
                "folder": str(self.out / "committee"),
                "n_members": committee.n_members,
                "best_index": committee.best_index,
                "epochs": self.config.committee.model.epochs,
                "seed": committee.seed,
            },
        }


def run_relabel(
    run_dir: Path,
    out: Path,
    method: str,
    options: dict[str, Any] | None = None,
    sources: Sequence[str] | None = None,
    limit: int | None = None,
    unseen_every: int = 1,
    epochs: int | None = None,
    pulls: bool = True,
    quiet: bool = False,
) -> dict[str, Any]:
    """Relabel RUN's frames into `out` (or resume), train and score the new committee.

    Everything the user can get wrong (RUN, the labeler and its options, `sources`, `out`)
    is checked before anything is written; RUN2 is held with its run-folder lock.
    """
    unknown = sorted(set(sources or ()) - set(SOURCES))
    if unknown:
        raise RarelearnError(f"unknown source {unknown[0]!r} (choose from {', '.join(SOURCES)})")
    if limit is not None and limit < 1:
        raise RarelearnError(f"--limit must be >= 1, got {limit}")
    if unseen_every < 1:
        raise RarelearnError(f"--unseen-every must be >= 1, got {unseen_every}")
    source = SourceRun.open(Path(run_dir))
    request = RelabelRequest(
        run=str(Path(run_dir).resolve()),
        campaign=source.config.name,
        method=method,
        options=dict(options or {}),
        sources=tuple(s for s in SOURCES if sources is None or s in sources),
        limit=limit,
        unseen_every=unseen_every,
        epochs=epochs,
    )
    check_labeler(request.spec)
    check_target(Path(out), request)
    started = time.perf_counter()
    with CampaignLock(out), StageProgress(quiet=quiet) as progress:
        manifest.require_intact(Path(out))  # a resume never builds on a changed file
        summary = Relabel(source, request, Path(out), progress, pulls).run()
        summary["wall_s"] = round(time.perf_counter() - started, 2)
        write_json(Path(out) / SUMMARY_FILE, summary)  # under the lock, as every other file
        manifest.record(Path(out) / "data.db")
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    """Both levels side by side on the terminal."""
    from rich.console import Console
    from rich.table import Table

    levels = summary["levels"]
    frames = summary["frames"]
    console = Console()
    console.print(
        f"{frames['labeled']} of {frames['planned']} frames relabeled with {levels['new']} "
        f"({frames['failed']} failed)"
    )
    difference = summary["energy_difference"]
    relative = difference.get("relative_to_mean", {})
    if relative.get("n"):
        console.print(
            f"{levels['new']} - {levels['original']}, energies relative to the molecule's mean: "
            f"MAE {relative['mae_kcal_mol']:.2f}, RMSE {relative['rmse_kcal_mol']:.2f}, max "
            f"{relative['max_abs_kcal_mol']:.2f} kcal/mol; forces MAE "
            f"{difference['force_mae_eV_A']:.3f} eV/A"
        )
    table = Table(title="committee at each level")
    table.add_column("")
    table.add_column(f"RUN ({levels['original']})", justify="right")
    table.add_column(f"relabel ({levels['new']})", justify="right")

    def cell(value: Any, digits: int = 2) -> str:
        if value is None:
            return "-"
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    names = {
        "n_training_frames": "training frames",
        "n_unseen_frames": "unseen frames",
        "train_mae_kcal_mol": "train MAE (kcal/mol)",
        "val_mae_kcal_mol": "val MAE (kcal/mol)",
        "mae_unseen_kcal_mol": "unseen MAE (kcal/mol)",
    }
    for key, name in names.items():
        pair = summary["metrics"][key]
        table.add_row(name, cell(pair["original"]), cell(pair["new"]))
    ea = summary["ea"]

    def ea_cell(value: dict[str, Any] | None, mean: str, sem: str) -> str:
        if not value or value.get(mean) is None:
            return "-"
        text = f"{value[mean]:.3f}"
        return text + (f" +- {value[sem]:.3f}" if value.get(sem) is not None else "")

    table.add_row(
        "Ea NNP (eV)",
        ea_cell(ea["nnp_original"], "mean_eV", "sem_eV"),
        ea_cell(ea["nnp_new"], "activation_energy_mean_eV", "activation_energy_sem_eV"),
    )
    table.add_row("Ea reference (eV)", ea_cell(ea["reference_original"], "mean_eV", "sem_eV"), "-")
    console.print(table)
    if ea["nnp_new"] is not None:
        console.print(ea["note"])
    console.print(f"written: {Path(summary['out']) / SUMMARY_FILE}")


__all__ = [
    "RelabelRequest",
    "check_labeler",
    "choose_frames",
    "energy_differences",
    "parse_options",
    "print_summary",
    "run_relabel",
]
