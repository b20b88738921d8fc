"""Campaign studies (``ensemble``, ``selection``): several campaigns on one shared reference.

The reference (equilibrium MD and the replica pulls) is computed once in ``shared/`` and copied
into each campaign folder before it starts, so every campaign compares against the same
replicas and trains on the same initial frames (or, where its recipe asks fewer, on their
first ones: what its own reference would have computed, `check_shared_reference`). The
campaigns then run side by side as tasks of the study's executor, each one a process with one
core (its labels in-process, its members one after another: the same weights as any other
thread count), each resumable on its own.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from rarelearn.config import CampaignConfig, from_dict, merge_settings
from rarelearn.consistency import with_row_keys
from rarelearn.errors import ConfigError
from rarelearn.executors import Executor
from rarelearn.progress import StageProgress
from rarelearn.reference import write_json
from rarelearn.runfolder import RUPTURE_ROW_KEYS, read_json
from rarelearn.store import CampaignStore
from rarelearn.study.settings import StudyConfig, recipe_settings

#: Every campaign of a study keeps the base campaign's name: it keys the rows of its store
#: (`CampaignStore(campaign=...)`), which is copied from the shared reference.
SHARED = "shared"


def plan_campaigns(config: StudyConfig) -> dict[str, dict[str, Any]]:
    """Campaign name -> its row labels and settings overrides, for a campaign study."""
    study, base = config.study, config.base
    plans: dict[str, dict[str, Any]] = {}
    if config.name == "ensemble":
        for n in study.members:
            for strategy in study.strategies:
                plans[f"m{n}-{strategy}"] = {
                    "labels": {"n_members": n, "strategy": strategy},
                    "settings": {"committee": {"n_members": n, "strategy": strategy}},
                }
        return plans
    if config.name == "convergence":
        for recipe in study.recipes:
            for seed in study.seeds:
                plans[f"{recipe}-seed{seed}"] = {
                    "labels": {"recipe": recipe, "seed": seed},
                    "settings": merge_settings(
                        recipe_settings(recipe, config.preset), {"seed": seed}
                    ),
                }
        return plans
    members, split = base.committee.n_members, base.committee.strategy
    for selection in study.selections:
        plans[f"select-{selection}"] = {
            "labels": {"n_members": members, "strategy": selection},
            "settings": {"selection": {"strategy": selection}},
        }
    if study.compare_warm_start:
        warm = base.committee.warm_start
        other = "scratch" if warm else "warm"
        first = study.selections[0]
        plans[f"select-{first}-{other}"] = {
            "labels": {"n_members": members, "strategy": f"{first}, {other}"},
            "settings": {
                "selection": {"strategy": first},
                "committee": {"warm_start": not warm, "strategy": split},
            },
        }
    return plans


def campaign_config(config: StudyConfig, plan: dict[str, Any], run_dir: Path) -> CampaignConfig:
    """The base settings with the plan's overrides, on one core, in its study folder."""
    values = merge_settings(config.base.settings(), plan["settings"])
    values = merge_settings(
        values, {"executor": {"kind": "inprocess"}, "committee": {"threads": 1}}
    )
    return replace(from_dict(values), out=str(run_dir))


def shared_reference(
    config: StudyConfig, folder: Path, executor: Executor, progress: StageProgress
) -> Path:
    """The study's reference stage in ``shared/`` (resumable as a campaign's), once."""
    from rarelearn.campaign import labeler_of, open_store, system_of
    from rarelearn.reference import run_reference

    shared = folder / SHARED
    shared.mkdir(parents=True, exist_ok=True)
    atoms, pulled = system_of(config.base)
    store = open_store(config.base, shared)
    run_reference(
        atoms,
        pulled,
        labeler_of(config.base),
        config.base.reference,
        shared,
        store,
        progress,
        executor,
    )
    return shared


def shared_final_reference(
    config: StudyConfig, shared: Path, executor: Executor, progress: StageProgress
) -> None:
    """The final check's reference (``[final] replicas``), extended once in ``shared/final``
    for every campaign of the study (`rarelearn.final`)."""
    from rarelearn.campaign import system_of
    from rarelearn.final import final_reference

    atoms, pulled = system_of(config.base)
    final_reference(shared, atoms, pulled, config.base.final.replicas, progress, executor)


def check_shared_reference(config: StudyConfig, plans: dict[str, dict[str, Any]]) -> None:
    """Refuse a recipe whose reference the shared one cannot stand for: it may ask fewer
    equilibrium frames than the base campaign (it trains on the shared MD's first ones, the
    frames its own reference would compute: same seed, same steps, stopped earlier), and
    nothing else of ``[reference]`` may differ."""
    base = config.base.reference
    for name, plan in plans.items():
        own = campaign_config(config, plan, Path(name)).reference
        frames, most = own.equilibrium.n_frames, base.equilibrium.n_frames
        # the seed differs by design: a convergence study's seeds are the models', one reference
        same = replace(own, equilibrium=replace(own.equilibrium, n_frames=most), seed=base.seed)
        if same != base or frames > most:
            raise ConfigError(
                f"campaign {name}: a study's campaigns share one reference; a recipe may ask "
                f"fewer reference.equilibrium n_frames (here {most}) and "
                "change nothing else of [reference]"
            )


def seed_campaign(shared: Path, run_dir: Path, config: CampaignConfig | None = None) -> None:
    """Copy the shared reference into a campaign folder that has none yet: the store first,
    then ``reference/`` under its final name in one rename (its presence marks the copy done);
    likewise the final check's reference (``final/reference``) where the study made one.
    Where ``config`` asks fewer equilibrium frames than the shared reference holds, the copy
    keeps the first ones (`check_shared_reference`), and its ``reference.json`` says so."""
    _copy_final_reference(shared, run_dir)
    if (run_dir / "reference" / "reference.json").is_file():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    temporary = run_dir / "data.db.copy"
    shutil.copyfile(shared / "data.db", temporary)
    staging = run_dir / "reference.copy"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(shared / "reference", staging)
    summary = read_json(staging / "reference.json")
    asked = config.reference.equilibrium.n_frames if config is not None else 0
    # a reference.json without the count (older folders) is cut too: the store says what it held
    if config is not None and asked < summary.get("n_equilibrium_frames", asked + 1):
        CampaignStore(temporary, campaign=config.name).keep_first("equilibrium", asked)
        write_json(staging / "reference.json", {**summary, "n_equilibrium_frames": asked})
    temporary.replace(run_dir / "data.db")
    staging.replace(run_dir / "reference")


def _copy_final_reference(shared: Path, run_dir: Path) -> None:
    from rarelearn.final import FINAL

    source, target = shared / FINAL / "reference", run_dir / FINAL / "reference"
    if not (source / "reference.json").is_file() or (target / "reference.json").is_file():
        return
    staging = target.with_name("reference.copy")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    staging.replace(target)


def final_checks(config: StudyConfig, out: Path) -> list[dict[str, Any]]:
    """Every campaign's final check (its ``summary.json``'s ``final`` row) with its recipe and
    seed, in the plan's order; ``study.json``'s ``final_checks``."""
    checks = []
    for name, plan in plan_campaigns(config).items():
        final = read_json(out / "campaigns" / name / "summary.json").get("final")
        if final:
            checks.append({"campaign": name, **plan["labels"], **final})
    return checks


def run_campaign_task(task: tuple[dict[str, Any], str]) -> str:
    """Executor side: one campaign, quiet, its log lines in ``campaign.log`` of its folder."""
    from rarelearn.campaign import run_campaign

    values, run_dir = task
    config = replace(from_dict(values), out=run_dir)
    logger = logging.getLogger("rarelearn")
    handler = logging.FileHandler(Path(run_dir) / "campaign.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        run_campaign(config, quiet=True)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
    return run_dir


def campaign_rows(name: str, labels: dict[str, Any], run_dir: Path) -> list[dict[str, Any]]:
    """``study.json`` rows of one finished campaign: one per iteration (Ea error in eV)."""
    summary = read_json(run_dir / "summary.json", ["iterations"])
    rows = []
    earlier: list[dict[str, Any]] = []
    for stored in summary["iterations"]:
        row = with_row_keys(stored, earlier)
        earlier.append(row)
        members = [v for v in row.get("ea_members_eV") or [] if v is not None]
        rows.append(
            {
                "campaign": name,
                **labels,
                "iteration": row["iteration"],
                "n_labels": row["n_labels"],
                "ea_error_eV": row["ea_error_signed_eV"],
                "ea_error_ci95_eV": row["ea_error_ci95_eV"],
                "ea_nnp_mean_eV": row["ea_nnp_mean_eV"],
                "ea_ref_mean_eV": row["ea_ref_eV"],
                "mae_unseen_kcal_mol": row["mae_unseen_kcal_mol"],
                "n_selected": row["n_selected"],
                "rupture_force_error_eV_A": row.get("rupture_force_error_eV_A"),
                "rupture_force_error_ci95_eV_A": row.get("rupture_force_error_ci95_eV_A"),
                "ea_at_snap_error_eV": row.get("ea_at_snap_error_eV"),
                "ea_at_snap_error_ci95_eV": row.get("ea_at_snap_error_ci95_eV"),
                "work_after_snap_nnp_eV": row.get("work_after_snap_nnp_eV"),
                "work_after_snap_ref_eV": row.get("work_after_snap_ref_eV"),
                "broken_bonds_nnp": row.get("broken_bonds_nnp"),
                "reference_bond_share": row.get("reference_bond_share"),
                # the self-consistency signals (`rarelearn.consistency`), to test against the
                # error over seeds
                "ea_change_eV": row["ea_change_eV"],
                "ea_change_ci95_eV": row["ea_change_ci95_eV"],
                "ea_members_std_eV": float(np.std(members, ddof=1)) if len(members) > 1 else None,
                "snap_n_tests": row.get("snap_n_tests"),
                "snap_steps_difference_mean": row.get("snap_steps_difference_mean"),
                "snap_steps_difference_ci95": row.get("snap_steps_difference_ci95"),
                **{key: row.get(key) for key in RUPTURE_ROW_KEYS},
                "cogef_ea_ref_eV": row.get("cogef_ea_ref_eV"),
                "cogef_ea_error_eV": row.get("cogef_ea_error_eV"),
                "cogef_peak_force_error_eV_A": row.get("cogef_peak_force_error_eV_A"),
                "wall_s": row["wall_s"],
            }
        )
    return rows
