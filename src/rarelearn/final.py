"""The final check: a campaign's last committee against a reference of more replicas.

The loop's rows compare 16 NNP pulls with 16 reference pulls; their 95 % interval on the Ea
error is about +-2.5-3 kcal/mol on hexane (GFN2-xTB), so "the whole interval inside +-4"
asks each campaign for |error| <= 1-1.5 kcal/mol, a resolution problem rather than a model
one (docs/convergence.md). With ``[final] replicas = N`` the campaign, once its loop has
ended, extends its reference to N replicas (`rarelearn.reference.extend_reference`: the first
ones are its own, the new ones pulled with the same labeler and settings) and pulls its last
committee from all N start states as the loop pulls (same seed, driver and batches: the first
pulls are the last row's own). At 64 a side the interval is about +-1.3 kcal/mol.

Everything lies in ``final/`` of the run folder: ``reference/`` (the extended reference) and
``NNN/`` (the pulls of iteration NNN's committee: ``smd.npz``, ``replicas.npz``, ``smd.json``);
``summary.json`` gains a ``final`` row. Resumable: a finished part is never recomputed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ase import Atoms

from rarelearn.committee import Committee
from rarelearn.config import StopConfig
from rarelearn.consistency import reference_consistent
from rarelearn.dynamics import SMDSettings
from rarelearn.errors import RarelearnError
from rarelearn.executors import Executor
from rarelearn.model_smd import replica_pull_jobs, run_pull_jobs, write_from_reference
from rarelearn.molecules import PulledAtoms
from rarelearn.progress import StageProgress
from rarelearn.pulls import START_STATES_FILE, load_start_states
from rarelearn.reference import extend_reference
from rarelearn.runfolder import read_json

FINAL = "final"


def check_folder(run_dir: Path, iteration: int) -> Path:
    """``final/NNN``: the final check of iteration ``iteration``'s committee."""
    return run_dir / FINAL / f"{iteration:03d}"


def check_folders(run_dir: Path) -> list[Path]:
    """Every ``final/NNN`` of the run folder, in iteration order."""
    folders = (run_dir / FINAL).glob("[0-9]*")
    return sorted(p for p in folders if p.is_dir() and p.name.isdigit())


def checked_run(folder: Path) -> Path | None:
    """The run folder whose final check ``folder`` is (``RUN/final/NNN``), else None."""
    if folder.parent.name == FINAL and folder.name.isdigit():
        return folder.parent.parent
    return None


#: The final row's keys taken from the pulls' comparison with the reference (`compare_pulls`)
FINAL_KEYS = (
    "ea_error_eV",
    "ea_error_signed_eV",
    "ea_error_ci95_eV",
    "ea_error_paired_eV",
    "ea_error_paired_ci95_eV",
    "ea_ref_eV",
    "rupture_force_nnp_eV_A",
    "rupture_force_ref_eV_A",
    "rupture_force_error_eV_A",
    "rupture_force_error_ci95_eV_A",
    "ea_at_snap_error_eV",
    "ea_at_snap_error_ci95_eV",
    "reference_bond_share",
)


def final_reference(
    run_dir: Path,
    atoms: Atoms,
    pulled: PulledAtoms,
    replicas: int,
    progress: StageProgress,
    executor: Executor | None = None,
) -> Path:
    """``final/reference`` of the run folder with ``replicas`` replicas, made once from the
    campaign's reference (a study copies its shared one in beforehand); its folder."""
    folder = run_dir / FINAL / "reference"
    summary = folder / "reference.json"
    if not summary.is_file():
        progress.message(
            f"final check: the reference extended to {replicas} replicas (new pulls only)"
        )
        extend_reference(
            run_dir / "reference", atoms, pulled, replicas, run_dir / FINAL, progress, executor
        )
    refuse_other_count(run_dir, replicas)
    return folder


def refuse_other_count(run_dir: Path, replicas: int) -> None:
    """Refuse, before anything is written, a final check at another count than the one
    ``final/reference`` holds."""
    summary = run_dir / FINAL / "reference" / "reference.json"
    if not replicas or not summary.is_file():
        return
    held = int(read_json(summary)["replicas"])
    if held != replicas:
        raise RarelearnError(
            f"{summary.parent} holds a final check at {held} replicas, not {replicas}: move "
            f"{run_dir / FINAL} away to check at {replicas}"
        )


def final_check(
    run_dir: Path,
    committee_dir: Path,
    row: dict[str, Any],
    seed: int,
    driver: str,
    stop: StopConfig,
    progress: StageProgress,
) -> dict[str, Any]:
    """The committee of ``committee_dir`` (the campaign's last, whose row is ``row``) pulled
    from every start state of ``final/reference`` as the loop pulls, into ``final/NNN`` (NNN:
    its iteration, so a campaign extended afterwards checks its new last committee apart);
    the ``final`` row."""
    folder = check_folder(run_dir, int(row["iteration"]))
    result_path = folder / "smd.json"
    reference_dir = run_dir / FINAL / "reference"
    if not result_path.is_file():
        reference = read_json(reference_dir / "reference.json")
        starts = load_start_states(reference_dir / START_STATES_FILE)
        committee = Committee.load(committee_dir)
        settings = SMDSettings.from_dict(reference["smd_settings"])
        jobs = replica_pull_jobs(committee, starts, settings, seed, driver)
        name = f"final check: NNP steered MD ({len(starts)} replicas)"
        with progress.stage(name, sum(job.steps for job in jobs)) as update:
            traces = [trace for part in run_pull_jobs(jobs, update) for trace in part]
        folder.mkdir(parents=True, exist_ok=True)
        write_from_reference(
            traces, folder, committee_dir, reference_dir, driver, seed, starts, settings, reference
        )
    return final_row(read_json(result_path), row, stop)


def final_row(result: dict[str, Any], row: dict[str, Any], stop: StopConfig) -> dict[str, Any]:
    """The ``final`` row of ``summary.json``: the check's errors, the labels the committee was
    trained on, and whether the stop rule's criterion holds at its replicas: the whole 95 %
    interval inside +- the tolerance, the pulls on the reference's bonds
    (``inside_tolerance``, `consistency.reference_consistent`)."""
    replicas = int(result["n_replicas"])
    final = {
        "iteration": int(row["iteration"]),
        "n_labels": int(row["n_labels"]),
        "replicas": replicas,
        **{key: result.get(key) for key in FINAL_KEYS},
        "broken_bonds_nnp": result.get("broken_bonds"),
        "tolerance_kcal_mol": stop.tolerance_kcal_mol,
    }
    final["inside_tolerance"] = reference_consistent(final, stop)
    return final
