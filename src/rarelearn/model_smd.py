"""Steered MD with a trained committee: transfer and pulling-speed studies, and a campaign's
Ea recomputed from its reference replicas' start states (``rarelearn smd --start``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ase import Atoms

from rarelearn.committee import Committee
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

#: Torch threads of the campaign's batched pulls: one, as every other NNP path of a campaign
#: (training, single-frame pulls), so that a pull recomputed in a resumed process is the same
#: bit for bit; 89 s instead of 61 s with two threads for 16 hexane pulls here.
PULL_THREADS = 1


def pull_from_starts(
    committee: Committee,
    starts: list[StartState],
    settings: SMDSettings,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    driver: str = "best",
) -> list[SMDTrace]:
    """The committee pulled from each start state, driven by its ``best`` member or its
    ``mean``: one batch where the thermostat allows it (Berendsen, NVE), else one pull after
    another (Langevin: replica r with ``seed + r``, the seed its reference twin used)."""
    chosen = None if driver == "best" else driver
    if settings.thermostat.kind in BATCH_THERMOSTATS:
        force_field = committee.replica_force_field(
            starts[0].atoms.numbers, threads=PULL_THREADS, driver=chosen
        )
        return run_smd_replicas(starts, force_field, settings, progress)
    calculator = committee.calculator("best", force_uq=False, driver=chosen)
    traces = []
    budget = step_budget(settings) * len(starts)
    for replica, start in enumerate(starts):
        done = replica * step_budget(settings)

        def update(step: int, _total: int, done: int = done) -> None:
            if progress is not None:
                progress(done + step, budget)

        traces.append(run_smd(start, calculator, settings, seed + replica, update))
    return traces


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
    out.mkdir(parents=True, exist_ok=True)
    geometry = relax(atoms, committee.calculator("best"))
    # all replicas in one batched force call per step (the NNP's per-frame cost falls with
    # the batch; see benchmarks/speed.py)
    force_field = committee.replica_force_field(atoms.numbers)
    seeds = [seed + replica for replica in range(replicas)]
    name = f" ({replicas} replicas)" if replicas > 1 else ""
    with StageProgress(quiet=quiet) as progress:
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


def run_model_smd_from_reference(
    model: Path, start: Path, out: Path, quiet: bool = False, driver: str = "best"
) -> dict[str, Any]:
    """Pull the model from every start state of a reference run, as the campaign does.

    Same start states (positions and momenta), same SMD settings, same batch: the result
    reproduces an iteration row of the campaign whose reference this is. With the
    reference's replicas at hand, the Ea error and its 95 % interval are added.
    """
    folder = reference_folder(start)
    reference = json.loads((folder / "reference.json").read_text())
    if "smd_settings" not in reference:
        raise RarelearnError(
            f"{folder / 'reference.json'} was written by an older rarelearn without the SMD "
            "settings; rerun the reference stage"
        )
    settings = SMDSettings.from_dict(reference["smd_settings"])
    starts = load_start_states(folder / START_STATES_FILE)
    committee = Committee.load(committee_folder(model))
    committee.best.check_elements([starts[0].atoms])
    out.mkdir(parents=True, exist_ok=True)
    with StageProgress(quiet=quiet) as progress:
        name = f"NNP steered MD ({len(starts)} replicas from {folder})"
        with progress.stage(name, step_budget(settings)) as update:
            traces = pull_from_starts(
                committee, starts, settings, reference["seed"], update, driver
            )
    result: dict[str, Any] = {
        "model": str(model),
        "start": str(folder),
        "driver": driver,
        "pulled_atoms": starts[0].pulled.to_list(),
        "smd_settings": settings.to_dict(),
    }
    if (folder / REPLICAS_FILE).is_file():
        reference_pulls = ReplicaPulls.load(folder / REPLICAS_FILE)
        errors = compare_pulls(ReplicaPulls.from_traces(traces), reference_pulls)
        result.update(errors, ea_ref_eV=reference_pulls.sample.mean)
    return _write_pulls(traces, out, result)
