"""When a campaign has converged: against the reference pulls, or by its own consistency.

Two stop rules read the finished rows (``summary.json["iterations"]``):

- **reference**: the 95 % interval of the Ea error (NNP replica mean - reference replica mean)
  lies inside +- the tolerance and the pulls break the reference's bonds;
- **self** (needs no reference pull, for labels too costly to pull with): the 95 % interval of
  the Ea change from the previous iteration lies inside +- the tolerance; where snap tests run,
  the labeler snaps within ``stop.snap_tolerance_steps`` of the model (the signal that tracked
  the error over seeds); where the 0 K check runs (`rarelearn.cogef_check`), the driver's
  quasi-static COGEF barrier lies within the tolerance of the labeler's; where rupture-region
  labels are measured, their mean difference from the model lies inside the tolerance, with
  no unphysical pull. It says the loop stopped moving, not that it is right: a campaign
  stopped by it is reported as not validated until `rarelearn validate` runs the reference
  pulls.

Either counts an iteration only in a streak of ``stop.patience`` consecutive ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rarelearn.config import StopConfig
from rarelearn.runfolder import CHANGE_ROW_KEYS, ROW_KEYS
from rarelearn.statistics import Difference, Sample, finite_or_none, welch
from rarelearn.units import EV_TO_KCAL_MOL


def changes(previous: dict[str, Any] | None, row: dict[str, Any]) -> dict[str, Any]:
    """Ea and rupture-force change from ``previous`` (the row before) to ``row``."""
    keys = dict.fromkeys(CHANGE_ROW_KEYS)
    if previous is None:
        return keys
    pairs = (
        ("ea", "ea_nnp_replicas_eV", "eV"),
        ("rupture_force", "rupture_force_nnp_replicas_eV_A", "eV_A"),
    )
    for name, replicas, unit in pairs:
        if not previous.get(replicas) or not row.get(replicas):
            continue
        difference = welch(Sample.of(row[replicas]), Sample.of(previous[replicas]))
        keys[f"{name}_change_{unit}"] = difference.estimate
        keys[f"{name}_change_ci95_{unit}"] = finite_or_none(difference.half_width)
    return keys


def with_row_keys(row: dict[str, Any], earlier: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A stored row in contract order; keys added to the contract since it was written are
    computed where they can be (the change from the row before) and None otherwise."""
    if all(key in row for key in ROW_KEYS):
        return row
    filled = {**changes(earlier[-1] if earlier else None, row), **row}
    return {key: filled.get(key) for key in ROW_KEYS}


#: The labeled groups of frames the self rule reads: model minus labeler energy change from
#: each pull's start, before the snap and after it (`rarelearn.rupture`)
LABELED_DIFFERENCES = (
    ("rupture_energy_difference_eV", "rupture_energy_difference_ci95_eV"),
    ("tail_energy_difference_eV", "tail_energy_difference_ci95_eV"),
)


def _within(estimate: Any, half_width: Any, tolerance: float) -> bool:
    if estimate is None or half_width is None:
        return False  # rows without an interval never count as converged
    return Difference(float(estimate), float(half_width), np.nan).within(tolerance)


def reference_consistent(row: dict[str, Any], stop: StopConfig) -> bool:
    """The Ea error's interval inside the tolerance, on the reference's bonds."""
    tolerance = stop.tolerance_kcal_mol / EV_TO_KCAL_MOL
    share = row.get("reference_bond_share")
    right_bonds = share is None or share >= stop.min_reference_bond_share
    return right_bonds and _within(
        row.get("ea_error_signed_eV"), row.get("ea_error_ci95_eV"), tolerance
    )


def self_consistent(row: dict[str, Any], stop: StopConfig) -> bool:
    """The Ea change's interval inside the tolerance; where snap tests ran, the labeler's and
    the model's steps to the snap within ``stop.snap_tolerance_steps``; where the 0 K check
    ran and the labeler snaps at 0 K, the driver's barrier within the tolerance of the
    labeler's (a deterministic number: no interval); where rupture-region or post-snap labels
    were measured, each group's difference from the model inside the tolerance and no
    unphysical pull."""
    tolerance = stop.tolerance_kcal_mol / EV_TO_KCAL_MOL
    if not _within(row.get("ea_change_eV"), row.get("ea_change_ci95_eV"), tolerance):
        return False
    if row.get("snap_n_tests") and not _within(
        row.get("snap_steps_difference_mean"),
        row.get("snap_steps_difference_ci95"),
        stop.snap_tolerance_steps,
    ):
        return False  # also when the labeler held the load in every test (no difference)
    if row.get("cogef_ea_ref_eV") is not None:  # the labeler snaps at 0 K: the model must too
        error = row.get("cogef_ea_error_eV")
        if error is None or abs(error) > tolerance:
            return False
    if row.get("rupture_labels"):
        if row.get("rupture_unphysical_pulls"):
            return False
        measured = [
            (row[estimate], row.get(half_width))
            for estimate, half_width in LABELED_DIFFERENCES
            if row.get(estimate) is not None
        ]
        return bool(measured) and all(_within(*m, tolerance) for m in measured)
    return True


RULES = {"reference": reference_consistent, "self": self_consistent}


def converged_iteration(rows: Sequence[dict[str, Any]], stop: StopConfig, rule: str) -> int | None:
    """The iteration that began the streak of ``stop.patience`` consecutive iterations that
    pass ``rule`` ("reference" or "self") up to the last row; None while there is none."""
    passes = RULES[rule]
    streak = 0
    for row in rows:
        streak = streak + 1 if passes(row, stop) else 0
    if streak >= stop.patience:
        return int(rows[len(rows) - streak]["iteration"])
    return None


def self_consistency_line(row: dict[str, Any], stop: StopConfig) -> str:
    """One sentence on what the last row's self-consistency shows (CLI and report)."""
    change, half_width = row.get("ea_change_eV"), row.get("ea_change_ci95_eV")
    if change is None:
        return "one committee so far: no Ea change to judge"
    text = (
        f"Ea changed by {change * EV_TO_KCAL_MOL:+.1f}"
        + ("" if half_width is None else f" +- {half_width * EV_TO_KCAL_MOL:.1f}")
        + f" kcal/mol (95 %) from the previous committee (tolerance +-"
        f"{stop.tolerance_kcal_mol:g})"
    )
    if row.get("snap_n_tests"):
        steps = row.get("snap_steps_difference_mean")
        if steps is None:
            text += "; in the snap tests the labeler held the load where the model snapped"
        else:
            text += (
                f"; in the snap tests the labeler snapped {steps:+.0f} +- "
                f"{row.get('snap_steps_difference_ci95') or 0:.0f} steps after the model "
                f"(tolerance +-{stop.snap_tolerance_steps:g})"
            )
    if row.get("cogef_ea_ref_eV") is not None:
        error = row.get("cogef_ea_error_eV")
        text += (
            "; at 0 K the model does not snap where the labeler does"
            if error is None
            else f"; the 0 K (COGEF) barrier differs from the labeler's by "
            f"{error * EV_TO_KCAL_MOL:+.1f} kcal/mol"
        )
    if row.get("rupture_labels"):
        difference = row.get("rupture_energy_difference_eV")
        if difference is not None:
            text += (
                f"; rupture-region labels differ from the model by "
                f"{difference * EV_TO_KCAL_MOL:+.1f} kcal/mol"
            )
        tail = row.get("tail_energy_difference_eV")
        if tail is not None:
            text += f"; post-snap labels by {tail * EV_TO_KCAL_MOL:+.1f} kcal/mol"
        if row.get("rupture_unphysical_pulls"):
            text += f"; unphysical pulls {row['rupture_unphysical_pulls']}"
    return text
