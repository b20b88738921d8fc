"""Steered MD with a trained committee on any molecule: transfer and pulling-speed studies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from rarelearn.committee import Committee
from rarelearn.dynamics import SMDSettings, Thermostat, relax_replicas, run_smd_replicas
from rarelearn.dynamics.smd import step_budget
from rarelearn.errors import RarelearnError
from rarelearn.molecules import PulledAtoms, relax
from rarelearn.progress import StageProgress
from rarelearn.reference import write_json


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
    for replica, trace in enumerate(traces):
        trace.save(out / ("smd.npz" if replica == 0 else f"smd_replica{replica}.npz"))
    main = traces[0]
    result: dict[str, Any] = {
        **main.summary(),
        "model": str(model),
        "pulled_atoms": pulled.to_list(),
        "pull_speed_A_per_ps": pull_speed,
        "spring_constant_eV_per_A2": spring_constant,
        "temperature_K": temperature,
        "seed": seed,
        "uq_eV": [] if main.uq_eV is None else main.uq_eV.tolist(),
        "distance_A": main.distance_A.tolist(),
    }
    if replicas > 1:
        values = [t.activation_energy_eV for t in traces]
        result["activation_energy_replicas_eV"] = values
        result["activation_energy_mean_eV"] = float(np.mean(values))
        result["activation_energy_std_eV"] = float(np.std(values, ddof=1))
        result["breaking_distance_replicas_A"] = [t.breaking_distance_A for t in traces]
    write_json(out / "smd.json", result)
    return result
