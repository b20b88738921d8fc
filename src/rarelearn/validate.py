"""`rarelearn validate RUN`: the reference pulls of a campaign that ran without them.

A campaign with ``reference.pulls = false`` keeps its start states (relaxed by the sampling
method) and every NNP pull it made. Validation pulls with the labeler (or another method) from
those same start states, one replica per job on the executor, then fills the reference and
error keys into every iteration's row from the stored NNP pulls (no NNP pull is recomputed;
the unseen MAE is the stored committees' prediction on the new reference frames), marks the
summary ``validated`` and rebuilds the report. Each pull is saved as it finishes and each
iteration's predictions once computed, so a stopped validation resumes; the run folder's lock
is held throughout, as by `rarelearn run`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from rarelearn import manifest
from rarelearn.campaign import (
    _Iteration,
    campaign_summary,
    executor_of,
    labeler_of,
    load_committee,
    open_store,
    system_of,
    unseen_predictions,
)
from rarelearn.config import load_resolved
from rarelearn.errors import RarelearnError
from rarelearn.labeling import LabelerSpec
from rarelearn.lock import CampaignLock
from rarelearn.metrics import relative_energy_mae
from rarelearn.progress import StageProgress
from rarelearn.pulls import (
    REPLICAS_FILE,
    START_STATES_FILE,
    ReplicaPulls,
    compare_pulls,
    load_start_states,
)
from rarelearn.reference import finish_reference, pull_replicas, write_json
from rarelearn.report import build_report
from rarelearn.runfolder import read_json
from rarelearn.units import EV_TO_KCAL_MOL

#: The fewest replicas that give an interval.
MIN_REPLICAS = 2


def validate_run(
    run_dir: Path,
    replicas: int | None = None,
    labeler: LabelerSpec | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Validate the campaign in ``run_dir`` (see the module); return its new summary."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise RarelearnError(f"{run_dir} is not a campaign run folder (no config.toml)")
    config = load_resolved(run_dir)
    reference_dir = run_dir / "reference"
    reference_json = reference_dir / "reference.json"
    if not reference_json.is_file():
        raise RarelearnError(
            f"{reference_json} not found: the campaign has not made its start states yet; "
            "run it first (`rarelearn run --out RUN` resumes it)"
        )
    before = read_json(reference_json)
    ran_itself = before.get("validated", True) and before.get("validated_later") is None
    if ran_itself and (reference_dir / REPLICAS_FILE).is_file():
        raise RarelearnError(
            f"{run_dir} ran its reference pulls itself (reference.pulls = true): its rows "
            "already hold the errors against them"
        )
    spec = labeler or labeler_of(config)
    spec.check()
    if before.get("validated_later") and before.get("labeler") != spec.name:
        raise RarelearnError(
            f"{run_dir} was validated with {before['labeler']}; validating it again with "
            f"{spec.name} would mix two references (copy the run folder first)"
        )
    starts = load_start_states(reference_dir / START_STATES_FILE)
    n = len(starts) if replicas is None else replicas
    if not MIN_REPLICAS <= n <= len(starts):
        raise RarelearnError(
            f"--replicas must be between {MIN_REPLICAS} (an interval needs two) and the "
            f"{len(starts)} start states the campaign made, got {n}"
        )
    settings = replace(config.reference, replicas=n, pulls=True)
    with CampaignLock(run_dir), StageProgress(quiet=quiet) as progress:
        manifest.require_intact(run_dir)
        atoms, pulled = system_of(config)
        store = open_store(config, run_dir)
        executor = executor_of(config)
        try:
            pull_replicas(spec, starts[:n], settings, reference_dir, executor, progress)
        finally:
            executor.close()
        summary_json = finish_reference(reference_dir, store, spec, settings, pulled)
        summary_json.update(
            validated_later=True,
            sampler=before.get("sampler", spec.name),
            labeler_of_campaign=labeler_of(config).name,
        )
        write_json(reference_json, summary_json)
        reference_pulls = ReplicaPulls.load(reference_dir / REPLICAS_FILE)
        unseen = store.labeled(["reference_smd"])
        energies = np.array([a.get_potential_energy() for a in unseen])
        spring = config.reference.smd.spring_constant_eV_per_A2
        rows = []
        folders = sorted(run_dir.glob("iterations/[0-9][0-9][0-9]/metrics.json"))
        for path in folders:
            paths = _Iteration(path.parent)
            row = read_json(path)
            errors = compare_pulls(ReplicaPulls.load(paths.replicas), reference_pulls, spring)
            committee = load_committee(paths.committee)
            e_pred = unseen_predictions(paths.unseen, committee, unseen, energies)
            row.update(
                errors,
                ea_ref_eV=reference_pulls.sample.mean,
                ea_error_kcal_mol=errors["ea_error_eV"] * EV_TO_KCAL_MOL,
                mae_unseen_kcal_mol=relative_energy_mae(e_pred, energies) * EV_TO_KCAL_MOL,
            )
            write_json(path, row)
            rows.append(row)
        old = read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else {}
        summary = campaign_summary(config, rows, summary_json, reference_pulls, atoms, pulled)
        baselines = old.get("baselines") or {}
        if rows and "equilibrium_only" in baselines:
            baselines["equilibrium_only"] = {
                **rows[0],
                "note": baselines["equilibrium_only"]["note"],
            }
        summary["baselines"] = baselines
        summary["stop_reason"] = old.get("stop_reason", summary["stop_reason"])
        write_json(run_dir / "summary.json", summary)
        manifest.record(run_dir / "data.db")
        build_report(run_dir)
    return summary
