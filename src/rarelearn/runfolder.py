"""The run-folder contract shared by the campaign (writer) and the report (reader).

Also the readers of its files: a truncated or garbled file raises `DamagedFileError` naming
the file and what the user can do (derived files are recomputed when deleted; ``data.db``
holds the labels), never a traceback.
"""

from __future__ import annotations

import json
import tokenize
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from rarelearn.errors import DamagedFileError

#: Row keys of the snap tests (`rarelearn.snap`; None when they are off), in table order.
SNAP_ROW_KEYS: tuple[str, ...] = (
    "snap_n_tests",
    "snap_steps_labeler",
    "snap_steps_model",
    "snap_steps_difference_mean",
    "snap_steps_difference_ci95",
    "snap_labeler_held",
    "snap_bonds_labeler",
    "snap_bonds_model",
    "snap_labels",
)
#: Row keys of the rupture-region and post-snap labels (`rarelearn.rupture`; None when both
#: are off; the tail keys None also where only the rupture region is labeled).
RUPTURE_ROW_KEYS: tuple[str, ...] = (
    "rupture_labels",
    "rupture_energy_difference_eV",
    "rupture_energy_difference_ci95_eV",
    "rupture_unphysical_pulls",
    "tail_energy_difference_eV",
    "tail_energy_difference_ci95_eV",
)

#: Row keys of the 0 K barrier check (`rarelearn.cogef_check`; None when it is off): the
#: quasi-static barrier under the campaign's spring and the peak resisting force of the
#: driver's and the labeler's COGEF scans, model minus labeler, each side's broken bond, and
#: why a side has no barrier; and the labels the labeler's scan added to the training set
#: (``cogef.labels``; None when off, 0 after iteration 0).
COGEF_ROW_KEYS: tuple[str, ...] = (
    "cogef_ea_nnp_eV",
    "cogef_ea_ref_eV",
    "cogef_ea_error_eV",
    "cogef_peak_force_nnp_eV_A",
    "cogef_peak_force_ref_eV_A",
    "cogef_peak_force_error_eV_A",
    "cogef_bond_nnp",
    "cogef_bond_ref",
    "cogef_note",
    "cogef_labels",
)

#: Row keys of the change from the previous iteration (`rarelearn.consistency`; None in
#: iteration 0): the difference of the replica means of Ea and of the rupture force, with
#: Welch 95 % half-widths. What the self-consistency stop rule reads.
CHANGE_ROW_KEYS: tuple[str, ...] = (
    "ea_change_eV",
    "ea_change_ci95_eV",
    "rupture_force_change_eV_A",
    "rupture_force_change_ci95_eV_A",
)

#: Keys of one row of ``summary.json["iterations"]`` (and of ``iterations/NNN/metrics.json``),
#: in table order. Other tools rely on these names: change them only with the contract.
#: The Ea keys are replica statistics: ``ea_nnp_eV`` and ``ea_ref_eV`` are means over pulls
#: from the reference replicas' start states, ``ea_error_eV`` is |mean difference| with the
#: Welch 95 % half-width ``ea_error_ci95_eV``; ``ea_error_single_eV`` is the paper's
#: single-pull error (replica 0 against replica 0). The rupture-force keys are the same
#: statistics of each pull's peak spring force (eV/A); ``reference_bond_share`` is the share
#: of NNP pulls whose first broken bond is one the reference pulls break. In a campaign
#: without reference pulls (not validated) every key naming the reference is None.
ROW_KEYS: tuple[str, ...] = (
    "iteration",
    "n_labels",
    "ea_nnp_eV",
    "ea_ref_eV",
    "ea_error_eV",
    "ea_error_kcal_mol",
    "ea_error_signed_eV",
    "ea_error_ci95_eV",
    "ea_error_paired_eV",
    "ea_error_paired_ci95_eV",
    "ea_error_single_eV",
    "ea_nnp_mean_eV",
    "ea_nnp_sem_eV",
    "ea_nnp_replicas_eV",
    "n_replicas",
    "ea_members_eV",
    "broke",
    "stopped_reason",
    "breaking_distance_nnp_A",
    "breaking_distance_nnp_replicas_A",
    "broken_bonds_nnp",
    "reference_bond_share",
    "rupture_force_nnp_eV_A",
    "rupture_force_nnp_sem_eV_A",
    "rupture_force_nnp_replicas_eV_A",
    "rupture_force_ref_eV_A",
    "rupture_force_ref_sem_eV_A",
    "rupture_force_error_eV_A",
    "rupture_force_error_ci95_eV_A",
    "work_after_snap_nnp_eV",
    "work_after_snap_ref_eV",
    "ea_at_snap_error_eV",
    "ea_at_snap_error_ci95_eV",
    *CHANGE_ROW_KEYS,
    *SNAP_ROW_KEYS,
    *RUPTURE_ROW_KEYS,
    *COGEF_ROW_KEYS,
    "mae_unseen_kcal_mol",
    "train_mae_kcal_mol",
    "val_mae_kcal_mol",
    "n_candidates",
    "n_selected",
    "n_augmented",
    "n_label_failures",
    "wall_s",
)


def _iteration_folder(path: Path) -> Path | None:
    """The ``iterations/NNN`` or ``baselines/<name>`` folder holding ``path``, if any."""
    for folder in (path, *path.parents):
        parent = folder.parent.name
        if (parent == "iterations" and folder.name.isdigit()) or parent == "baselines":
            return folder
    return None


def advice(path: Path) -> str:
    """What the user can do about a damaged file, from where it lies in the run folder.

    Derived files are recomputed when deleted (the campaign redoes every step whose output is
    missing); ``data.db`` holds the labels, which only the reference method can recompute.
    """
    path = Path(path)
    folder = _iteration_folder(path)
    if path.name == "config.toml":
        return (
            "It is the configuration the campaign was started with: restore it from a copy "
            '(the "config" entry of summary.json holds the same settings).'
        )
    if path.name == "data.db":
        return (
            "It holds the labels, which cannot be recomputed cheaply: restore it from a copy, "
            f"or delete everything in {path.parent} but config.toml and rerun "
            f"`rarelearn run --out {path.parent}` to relabel everything."
        )
    if folder is not None:
        run = folder.parent.parent
        rerun = f"rerun `rarelearn run --out {run}`"
        if folder.parent.name == "baselines":
            return f"It is derived: delete the folder {folder} and {rerun}; it is recomputed."
        if path.parent == folder and path.name in ("metrics.json", "timing.json"):
            return (
                f"It is derived: delete it (or the folder {folder}) and {rerun}; the campaign "
                "recomputes that step."
            )
        return (
            f"It is derived: delete the folder {folder} and {rerun}; the campaign recomputes "
            "that iteration (its labels stay in data.db)."
        )
    reference = next((p for p in path.parents if p.name == "reference"), None)
    if reference is not None:
        rerun = f"rerun `rarelearn run --out {reference.parent}`"
        if path.parent == reference and path.name in (
            "reference.json",
            "start_states.traj",
            "replicas.npz",
        ):
            return f"It is derived: delete it and {rerun}; the campaign recomputes it."
        return (
            f"It is derived: delete it and {reference / 'reference.json'}, then {rerun}; "
            "the campaign redoes that reference pull."
        )
    if path.name == "summary.json":
        return (
            f"It is derived: delete it and rerun `rarelearn run --out {path.parent}`; "
            "the campaign rewrites it."
        )
    return "It is derived: delete it and rerun the command that wrote it."


#: The file that marks a folder written by ``rarelearn relabel`` (`rarelearn.relabel`).
RELABEL_PLAN = "relabel_plan.json"


def refuse_relabel_folder(run_dir: Path, command: str) -> None:
    """A relabel folder is not a campaign's run folder: ``report`` and ``check`` say so in one
    line instead of reporting its campaign files missing."""
    from rarelearn.errors import RarelearnError

    if (Path(run_dir) / RELABEL_PLAN).is_file():
        raise RarelearnError(
            f"{run_dir} is a relabel folder (written by `rarelearn relabel`, its results in "
            f"relabel.json), not a campaign run folder: `rarelearn {command}` reads campaign "
            "folders only; rerun `rarelearn relabel` with the same --out to resume or refresh it"
        )


def damaged(path: Path, error: BaseException | str) -> DamagedFileError:
    """The error to raise when ``path`` cannot be read: names the file, why, and the advice."""
    reason = error if isinstance(error, str) else (str(error) or type(error).__name__)
    return DamagedFileError(path, reason, advice(path))


def read_json(path: Path, keys: Iterable[str] = ()) -> dict[str, Any]:
    """A run folder's JSON object; DamagedFileError if unreadable, not an object or lacking
    one of ``keys``."""
    try:
        value = json.loads(Path(path).read_text())
    except OSError as exc:
        raise damaged(path, exc) from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise damaged(path, f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise damaged(path, f"holds a JSON {type(value).__name__}, not an object")
    missing = [key for key in keys if key not in value]
    if missing:
        raise damaged(path, f"lacks {', '.join(missing)}")
    return value


#: What numpy raises on a truncated or garbled npz: the zip layer, the compression, and the
#: .npy header (a Python literal, parsed with ast and tokenize; a garbled shape can ask for
#: absurd memory).
_NPZ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    MemoryError,
    SyntaxError,
    tokenize.TokenError,
    zipfile.BadZipFile,
    zlib.error,
)


def load_npz(path: Path, keys: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Every array of an npz file, read now (a damaged member fails here, not later);
    DamagedFileError if truncated, garbled or lacking one of ``keys``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except _NPZ_ERRORS as exc:
        raise damaged(path, exc) from exc
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise damaged(path, f"lacks {', '.join(missing)}")
    return arrays


def read_traj(path: Path, index: str | int = ":") -> Any:
    """Frames of an ASE trajectory (``ase.io.read``); DamagedFileError if it cannot be parsed.

    A garbled length field can make ASE ask for absurd memory: that is a parse failure too.
    """
    from ase.io import read

    try:
        return read(path, index=index, format="traj")
    except (OSError, ValueError, KeyError, IndexError, EOFError, MemoryError) as exc:
        raise damaged(path, exc) from exc
