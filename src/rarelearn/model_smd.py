"""Steered MD with a trained committee: transfer and pulling-speed studies, and a campaign's
Ea recomputed from its reference replicas' start states (``rarelearn smd --start``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ase import Atoms

from rarelearn.committee import Committee
from rarelearn.config import load_resolved
from rarelearn.dynamics import (
    SMDSettings,
    SMDTrace,
    StartState,
    Thermostat,
    relax_replicas,
    run_smd,
    run_smd_replicas,
)
from rarelearn.dynamics.replicas import BATCH_THERMOSTATS
from rarelearn.dynamics.smd import ProgressCallback, step_budget
from rarelearn.errors import RarelearnError
from rarelearn.lock import CampaignLock
from rarelearn.molecules import PulledAtoms, relax
from rarelearn.progress import StageProgress
from rarelearn.pulls import (
    REPLICAS_FILE,
    START_STATES_FILE,
    ReplicaPulls,
    compare_pulls,
    load_start_states,
)
from rarelearn.reference import write_json
from rarelearn.runfolder import read_json
from rarelearn.threads import ProgressSum, run_side_by_side

#: Replicas per batch of the NNP pulls. A fixed number, not one batch per core: the same
#: replicas share a batch on every machine, so a pull recomputed elsewhere (a resumed
#: campaign, ``rarelearn smd --start``) is the same bit for bit; the batches run side by side,
#: one torch thread each (`rarelearn.threads`).
PULL_BATCH = 8


@dataclass
class PullJob:
    """One job of pulls: ``run(progress)`` returns its traces; ``steps`` is its progress total."""

    run: Callable[[ProgressCallback], list[SMDTrace]]
    steps: int


def replica_pull_jobs(
    committee: Committee,
    starts: list[StartState],
    settings: SMDSettings,
    seed: int = 0,
    driver: str = "best",
) -> list[PullJob]:
    """Jobs that pull the committee from each start state, driven by its ``best`` member or
    its ``mean``: batches of `PULL_BATCH` replicas where the thermostat allows it (Berendsen,
    NVE), else one pull per job (Langevin: replica r with ``seed + r``, the seed its reference
    twin used). Their traces, concatenated in job order, follow the start states' order.
    Force fields are built here (TorchScript compiles in this thread), used in the jobs."""
    budget = step_budget(settings)
    numbers = starts[0].atoms.numbers
    jobs = []
    if settings.thermostat.kind in BATCH_THERMOSTATS:
        for first in range(0, len(starts), PULL_BATCH):
            batch = starts[first : first + PULL_BATCH]
            force_field = committee.replica_force_field(numbers, threads=1, driver=driver)

            def run(
                progress: ProgressCallback, batch: list[StartState] = batch, field=force_field
            ) -> list[SMDTrace]:
                return run_smd_replicas(batch, field, settings, progress)

            jobs.append(PullJob(run, budget))
        return jobs
    for replica, start in enumerate(starts):
        calculator = committee.calculator("best", force_uq=False, driver=driver)
        calculator.prepare(numbers)

        def run_one(
            progress: ProgressCallback, start: StartState = start, calc=calculator, r=replica
        ) -> list[SMDTrace]:
            return [run_smd(start, calc, settings, seed + r, progress)]

        jobs.append(PullJob(run_one, budget))
    return jobs


def run_pull_jobs(
    jobs: list[PullJob], progress: ProgressCallback | None = None, threads: int | None = None
) -> list[list[SMDTrace]]:
    """Run pull jobs side by side (one torch thread each); traces per job, in job order."""
    steps = ProgressSum(progress, [job.steps for job in jobs])

    def call(k: int) -> Callable[[], list[SMDTrace]]:
        return lambda: jobs[k].run(steps.reporter(k))

    return run_side_by_side([call(k) for k in range(len(jobs))], threads, steps)


def pull_from_starts(
    committee: Committee,
    starts: list[StartState],
    settings: SMDSettings,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    driver: str = "best",
    threads: int | None = None,
) -> list[SMDTrace]:
    """The committee pulled from each start state (see `replica_pull_jobs`), the jobs side
    by side; one trace per start state, in order."""
    jobs = replica_pull_jobs(committee, starts, settings, seed, driver)
    return [trace for traces in run_pull_jobs(jobs, progress, threads) for trace in traces]


def committee_folder(model: Path) -> Path:
    """Accept an iteration folder (holding ``committee/``) or a committee folder itself."""
    for candidate in (model, model / "committee"):
        if (candidate / "committee.json").is_file():
            return candidate
    raise RarelearnError(
        f"{model} is not a committee folder: expected committee.json in it or in {model}/committee"
    )


def run_model_smd(
    model: Path,
    atoms: Atoms,
    pulled: PulledAtoms,
    pull_speed: float = 1.0,
    spring_constant: float = 10.0,
    temperature: float = 10.0,
    steps: int = 6500,
    relax_steps: int = 2000,
    until_broken: bool = False,
    seed: int = 0,
    replicas: int = 1,
    out: Path = Path("smd"),
    quiet: bool = False,
) -> dict[str, Any]:
    """Relax with the committee, pull ``replicas`` times, write ``out/smd.json``; return it.

    The start geometry is optimised and thermalised with the committee itself (no reference is
    needed), so the result is the model's own prediction for a molecule it may never have seen.
    """
    committee = Committee.load(committee_folder(model))
    committee.best.check_elements([atoms])
    settings = SMDSettings(
        spring_constant_eV_per_A2=spring_constant,
        pull_speed_A_per_ps=pull_speed,
        n_steps=steps,
        relax_steps=relax_steps,
        thermostat=Thermostat("berendsen", temperature),
        until_broken=until_broken,
    )
    settings.validate()
    # one writer per folder, as for `rarelearn run`: a second smd into it is refused
    with CampaignLock(out), StageProgress(quiet=quiet) as progress:
        geometry = relax(atoms, committee.calculator("best"))
        # all replicas in one batched force call per step (the NNP's per-frame cost falls with
        # the batch; see benchmarks/speed.py)
        force_field = committee.replica_force_field(atoms.numbers)
        seeds = [seed + replica for replica in range(replicas)]
        name = f" ({replicas} replicas)" if replicas > 1 else ""
        with progress.stage(f"relax {temperature:g} K{name}", relax_steps) as update:
            starts = relax_replicas(geometry, force_field, pulled, settings, seeds, update)
        with progress.stage(f"NNP steered MD{name}", step_budget(settings)) as update:
            traces = run_smd_replicas(starts, force_field, settings, update)
        result: dict[str, Any] = {
            "model": str(model),
            "pulled_atoms": pulled.to_list(),
            "pull_speed_A_per_ps": pull_speed,
            "spring_constant_eV_per_A2": spring_constant,
            "temperature_K": temperature,
            "seed": seed,
        }
        return _write_pulls(traces, out, result)


def _write_pulls(traces: list[SMDTrace], out: Path, result: dict[str, Any]) -> dict[str, Any]:
    """``smd.npz`` (replica 0, every frame), ``replicas.npz`` and ``smd.json``."""
    main = traces[0]
    pulls = ReplicaPulls.from_traces(traces)
    main.save(out / "smd.npz")
    pulls.save(out / REPLICAS_FILE)
    result = {
        **main.summary(),
        **result,
        **pulls.summary(),
        "uq_eV": [] if main.uq_eV is None else main.uq_eV.tolist(),
        "distance_A": main.distance_A.tolist(),
    }
    write_json(out / "smd.json", result)
    return result


def reference_folder(start: Path) -> Path:
    """Accept a run folder (holding ``reference/``) or a reference folder itself."""
    for candidate in (start / "reference", start):
        if (candidate / START_STATES_FILE).is_file() and (candidate / "reference.json").is_file():
            return candidate
    raise RarelearnError(
        f"{start} holds no reference start states: expected {START_STATES_FILE} and "
        f"reference.json in it or in {start}/reference (written by rarelearn run or reference)"
    )


def pull_seed(start: Path, reference: dict[str, Any]) -> int:
    """The thermostat seed the campaign of `start` pulled its replicas with: the campaign's
    ``seed`` when `start` is a run folder (a study's campaigns share a reference pulled
    under the study's seed), else the reference's own."""
    if (start / "config.toml").is_file():
        return load_resolved(start).seed
    return int(reference["seed"])


def run_model_smd_from_reference(
    model: Path,
    start: Path,
    out: Path,
    quiet: bool = False,
    driver: str = "best",
    seed: int | None = None,
) -> dict[str, Any]:
    """Pull the model from every start state of a reference run, as the campaign does.

    Same start states (positions and momenta), same SMD settings, same batch, and the
    campaign's thermostat seed unless `seed` is given (`pull_seed`): the result reproduces an
    iteration row of the run folder `start`. With the reference's replicas at hand, the Ea
    error and its 95 % interval are added.
    """
    folder = reference_folder(start)
    reference = read_json(folder / "reference.json")
    if "smd_settings" not in reference:
        raise RarelearnError(
            f"{folder / 'reference.json'} was written by an older rarelearn without the SMD "
            "settings; rerun the reference stage"
        )
    settings = SMDSettings.from_dict(reference["smd_settings"])
    starts = load_start_states(folder / START_STATES_FILE)
    committee = Committee.load(committee_folder(model))
    committee.best.check_elements([starts[0].atoms])
    with CampaignLock(out), StageProgress(quiet=quiet) as progress:
        name = f"NNP steered MD ({len(starts)} replicas from {folder})"
        seed = pull_seed(start, reference) if seed is None else seed
        jobs = replica_pull_jobs(committee, starts, settings, seed, driver)
        with progress.stage(name, sum(job.steps for job in jobs)) as update:
            traces = [trace for part in run_pull_jobs(jobs, update) for trace in part]
        return write_from_reference(
            traces, out, model, folder, driver, seed, starts, settings, reference
        )


def write_from_reference(
    traces: list[SMDTrace],
    out: Path,
    model: Path,
    folder: Path,
    driver: str,
    seed: int,
    starts: list[StartState],
    settings: SMDSettings,
    reference: dict[str, Any],
) -> dict[str, Any]:
    """The pulls of `run_model_smd_from_reference`, compared with the reference's replicas."""
    result: dict[str, Any] = {
        "model": str(model),
        "start": str(folder),
        "driver": driver,
        "seed": seed,
        "pulled_atoms": starts[0].pulled.to_list(),
        "smd_settings": settings.to_dict(),
    }
    if (folder / REPLICAS_FILE).is_file():
        reference_pulls = ReplicaPulls.load(folder / REPLICAS_FILE)
        errors = compare_pulls(
            ReplicaPulls.from_traces(traces), reference_pulls, settings.spring_constant_eV_per_A2
        )
        result.update(errors, ea_ref_eV=reference_pulls.sample.mean)
    return _write_pulls(traces, out, result)
