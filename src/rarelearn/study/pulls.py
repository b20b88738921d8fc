"""Pull studies (``transfer``, ``speeds``): one trained committee against the reference.

Each variant (a chain length, a pulling speed) is a reference run folder (``references/<name>/``:
R replica pulls with the labeler, spread over the executor's workers, resumable per replica,
as `rarelearn reference` writes it) and the committee's twin pulls from the same start states
(``nnp/<name>/``, as `rarelearn smd --start` writes it). Pulls run until a bond breaks, then
`post_break_steps` more, so longer chains and slower pulls get the distance they need; every
speed gets the base settings' spring travel (6500 steps at 1 A/ps: 3.25 A) before that.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from ase import Atoms

from rarelearn.errors import RarelearnError
from rarelearn.executors import Executor
from rarelearn.molecules import PulledAtoms, build_alkane, default_pulled_atoms
from rarelearn.progress import StageProgress
from rarelearn.pulls import REPLICAS_FILE, ReplicaPulls
from rarelearn.reference import EquilibriumSettings, ReferenceSettings
from rarelearn.runfolder import read_json
from rarelearn.statistics import finite_or_none, welch
from rarelearn.study.settings import StudyConfig


def plan_pulls(config: StudyConfig) -> dict[str, dict[str, Any]]:
    """Variant name -> its row label, molecule, pulled atoms and reference settings."""
    from rarelearn.campaign import system_of

    study, base = config.study, config.base.reference
    # the equilibrium MD of `run_reference` makes training data, which a pull study does not
    # use: one frame keeps its files complete at no cost
    no_training = EquilibriumSettings(n_frames=1, equilibration_steps=0)
    plans: dict[str, dict[str, Any]] = {}
    if config.name == "transfer":
        for n in study.chains:
            atoms = build_alkane(n)
            plans[f"C{n}"] = {
                "label": {"chain": n},
                "atoms": atoms,
                "pulled": default_pulled_atoms(atoms),
                "settings": replace(
                    base,
                    equilibrium=no_training,
                    replicas=study.replicas,
                    smd=replace(base.smd, until_broken=True),
                ),
            }
        return plans
    atoms, pulled = system_of(config.base)
    for speed in study.speeds:
        steps = math.ceil(base.smd.n_steps * base.smd.pull_speed_A_per_ps / speed)
        plans[f"v{speed:g}"] = {
            "label": {"pull_speed_A_per_ps": speed},
            "atoms": atoms,
            "pulled": pulled,
            "settings": replace(
                base,
                equilibrium=no_training,
                replicas=study.replicas,
                smd=replace(base.smd, pull_speed_A_per_ps=speed, n_steps=steps, until_broken=True),
            ),
        }
    return plans


def reference_pulls(
    config: StudyConfig,
    folder: Path,
    atoms: Atoms,
    pulled: PulledAtoms,
    settings: ReferenceSettings,
    executor: Executor,
    progress: StageProgress,
) -> Path:
    """The reference replicas of one variant in ``folder`` (skipped when done)."""
    from rarelearn.campaign import labeler_of
    from rarelearn.reference import run_reference
    from rarelearn.store import CampaignStore

    folder.mkdir(parents=True, exist_ok=True)
    store = CampaignStore(folder / "data.db", campaign=config.base.name)
    spec = labeler_of(config.base)
    run_reference(atoms, pulled, spec, settings, folder, store, progress, executor)
    return folder


def model_pulls(model: Path, reference: Path, out: Path, driver: str) -> Path:
    """The committee's twin pulls from the reference's start states (skipped when done)."""
    from rarelearn.model_smd import run_model_smd_from_reference

    if not (out / "smd.json").is_file():
        run_model_smd_from_reference(model, reference, out, quiet=True, driver=driver)
    return out


def last_iteration(run_dir: Path) -> Path:
    """A run folder's last iteration with a committee (an iteration folder passes through)."""
    if (run_dir / "committee" / "committee.json").is_file() or (
        run_dir / "committee.json"
    ).is_file():
        return run_dir
    done = sorted(run_dir.glob("iterations/[0-9][0-9][0-9]/committee/committee.json"))
    if not done:
        raise RarelearnError(
            f"{run_dir} holds no trained committee: give an iteration folder "
            "(RUN/iterations/NNN), its committee/ or a run folder with finished iterations"
        )
    return done[-1].parent.parent


def pull_row(label: dict[str, Any], reference: Path, nnp: Path) -> dict[str, Any]:
    """``study.json`` row of one variant: both sides' Ea and breaking distance with their
    uncertainty, the bond each broke most often, and whether the Ea agree (the 95 % Welch
    interval of the difference contains zero)."""
    ref = ReplicaPulls.load(reference / "reference" / REPLICAS_FILE)
    model = ReplicaPulls.load(nnp / REPLICAS_FILE)
    difference = welch(model.sample, ref.sample)
    return {
        **label,
        "ea_ref_mean_eV": ref.sample.mean,
        "ea_ref_sem_eV": finite_or_none(ref.sample.sem),
        "ea_nnp_mean_eV": model.sample.mean,
        "ea_nnp_sem_eV": finite_or_none(model.sample.sem),
        "ea_error_eV": difference.estimate,
        "ea_error_ci95_eV": finite_or_none(difference.half_width),
        "breaking_distance_ref_A": ref.mean_breaking_distance(),
        "breaking_distance_nnp_A": model.mean_breaking_distance(),
        "broken_bond_ref": _most_common(ref.bond_counts()),
        "broken_bond_nnp": _most_common(model.bond_counts()),
        "broken_bonds_ref": ref.bond_counts(),
        "broken_bonds_nnp": model.bond_counts(),
        "n_broke_ref": int(sum(ref.broke)),
        "n_broke_nnp": int(sum(model.broke)),
        "replicas": ref.n,
        "agree": bool(
            math.isfinite(difference.half_width)
            and abs(difference.estimate) <= difference.half_width
        ),
        "driver": read_json(nnp / "smd.json").get("driver", "best"),
    }


def _most_common(counts: dict[str, int] | None) -> str | None:
    return None if not counts else next(iter(counts))
