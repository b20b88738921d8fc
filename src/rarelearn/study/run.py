"""Run a study in its folder: plan, shared work, the independent parts side by side, rows.

Resumable as a campaign is: the folder keeps every finished part (a finished campaign is not
rerun; a reference replica or an NNP pull done is kept), and the same command continues a
killed study. ``study.json`` records the configuration; another configuration in the same
folder is refused, as `rarelearn run` refuses one.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rarelearn.campaign import executor_of
from rarelearn.errors import RarelearnError
from rarelearn.executors import Executor
from rarelearn.lock import CampaignLock
from rarelearn.progress import StageProgress
from rarelearn.reference import write_json
from rarelearn.runfolder import read_json
from rarelearn.study import CAMPAIGN_STUDIES, campaigns, pulls
from rarelearn.study.convergence import convergence_summary, self_consistency_summary
from rarelearn.study.settings import StudyConfig, load_study_config

__all__ = ["run_study"]

#: Seconds between looks at the campaign folders for the progress display.
POLL_S = 2.0


def run_study(
    name: str,
    out: Path,
    preset: str = "quick",
    config_path: Path | None = None,
    model: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run (or resume) study ``name`` in ``out``; return ``study.json``'s content."""
    config = load_study_config(name, preset, config_path, model)
    out = Path(out)
    started = time.perf_counter()
    with CampaignLock(out), StageProgress(quiet=quiet) as progress:
        _refuse_other_config(out, config)
        executor = executor_of(config.base)
        try:
            if name in CAMPAIGN_STUDIES:
                rows = _campaign_study(config, out, executor, progress)
            else:
                rows = _pull_study(config, out, executor, progress)
        finally:
            executor.close()
        result = {
            "study": name,
            "config": config.to_dict(),
            "rows": rows,
            "wall_s": round(time.perf_counter() - started, 1),
        }
        if name in CAMPAIGN_STUDIES and config.base.final.replicas:
            result["final_checks"] = campaigns.final_checks(config, out)
        if name == "convergence":
            checks = result.get("final_checks", [])
            result["recipes"] = convergence_summary(rows, config.base.stop, checks)
            result["self_consistency"] = self_consistency_summary(rows, config.base.stop)
        write_json(out / "study.json", result)
        from rarelearn.report.study_figures import build_study_report

        build_study_report(out)
    return result


def _refuse_other_config(out: Path, config: StudyConfig) -> None:
    started = out / "study.start.json"
    asked = json.loads(json.dumps({"study": config.name, "config": config.to_dict()}))
    if started.is_file():
        if read_json(started) != asked:
            raise RarelearnError(
                f"{out} holds a study started with another study or configuration (see "
                f"{started}); run the same command to resume it, or use another --out"
            )
    else:
        write_json(started, asked)


# ---------------------------------------------------------------- campaign studies
def _campaign_study(
    config: StudyConfig, out: Path, executor: Executor, progress: StageProgress
) -> list[dict[str, Any]]:
    plans = campaigns.plan_campaigns(config)
    campaigns.check_shared_reference(config, plans)
    shared = campaigns.shared_reference(config, out, executor, progress)
    if config.base.final.replicas:
        campaigns.shared_final_reference(config, shared, executor, progress)
    folders = {name: out / "campaigns" / name for name in plans}
    tasks, pending = [], []
    for name, plan in plans.items():
        run_dir = folders[name]
        campaign = campaigns.campaign_config(config, plan, run_dir)
        campaigns.seed_campaign(shared, run_dir, campaign)
        if not _finished(run_dir):
            tasks.append((campaign.settings(), str(run_dir)))
            pending.append(name)
    if tasks:
        progress.message(
            f"{len(tasks)} campaign(s) side by side on {executor.workers} worker(s): "
            + ", ".join(pending)
        )
        _watch_campaigns(
            lambda: executor.map(campaigns.run_campaign_task, tasks, retries=0),
            {name: folders[name] for name in pending},
            config.base.iterations,
            progress,
        )
    rows = []
    for name, plan in plans.items():
        rows.extend(campaigns.campaign_rows(name, plan["labels"], folders[name]))
    return rows


def _finished(run_dir: Path) -> bool:
    """Whether the campaign in ``run_dir`` has ended, with its final check where it asks one."""
    from rarelearn.config import load_resolved

    summary = run_dir / "summary.json"
    if not summary.is_file():
        return False
    stored = read_json(summary)
    if stored.get("stop_reason") not in ("converged", "max_iterations"):
        return False
    return "final" in stored or not load_resolved(run_dir).final.replicas


def _watch_campaigns(
    work: Callable[[], Any], folders: dict[str, Path], iterations: int, progress: StageProgress
) -> Any:
    """Run ``work`` in a thread and show one bar per campaign: its finished iterations."""
    with ThreadPoolExecutor(1) as pool, contextlib.ExitStack() as stack:
        future = pool.submit(work)
        updates = {
            name: stack.enter_context(progress.stage(f"campaign {name}", iterations, "iterations"))
            for name in folders
        }
        while True:
            for name, folder in folders.items():
                done = len(list(folder.glob("iterations/[0-9][0-9][0-9]/metrics.json")))
                total = iterations if not _finished(folder) else done
                updates[name](min(done, total), total)
            if future.done():
                break
            time.sleep(POLL_S)
        return future.result()


# ------------------------------------------------------------------- pull studies
def _pull_study(
    config: StudyConfig, out: Path, executor: Executor, progress: StageProgress
) -> list[dict[str, Any]]:
    model = _model(config, out, progress)
    progress.message(f"model: {model}")
    rows = []
    driver = config.base.committee.driver
    for name, plan in pulls.plan_pulls(config).items():
        reference = out / "references" / name
        progress.message(f"{name}: {plan['settings'].replicas} reference pulls")
        pulls.reference_pulls(
            config, reference, plan["atoms"], plan["pulled"], plan["settings"], executor, progress
        )
        progress.message(f"{name}: {plan['settings'].replicas} NNP pulls")
        nnp = pulls.model_pulls(model, reference, out / "nnp" / name, driver)
        row = pulls.pull_row(plan["label"], reference, nnp)
        rows.append(row)
        write_json(out / "rows.partial.json", rows)
    return rows


def _model(config: StudyConfig, out: Path, progress: StageProgress) -> Path:
    """The committee pulled: the one named, or a campaign of the base settings run here."""
    if config.study.model:
        return pulls.last_iteration(Path(config.study.model))
    from dataclasses import replace

    from rarelearn.campaign import Campaign

    run_dir = out / "campaigns" / "model"
    if not _finished(run_dir):
        progress.message(f"no --model given: training one with the {config.preset} settings")
        campaign = Campaign(replace(config.base, out=str(run_dir)), progress)
        with CampaignLock(run_dir):
            campaign.run()
    return pulls.last_iteration(run_dir)
