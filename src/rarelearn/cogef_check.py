"""The campaign's 0 K barrier check (``[cogef]``): each committee against the labeler by COGEF.

A 10 K pull's Ea is a sample (its replicas spread by ~0.2 eV), and reference pulls cost
~136,000 labeler calls on hexane. The COGEF scan (`rarelearn.cogef`) of the same molecule is
deterministic and costs ~3,000: relaxed at fixed distances of the pulled pair, the model's and
the labeler's landscapes give a peak resisting force and the barrier a quasi-static pull with
the campaign's spring measures, free of thermal noise. Over ten committees of two hexane
campaigns the 0 K barrier error tracked the 10 K Ea error with r = 0.99 (docs/convergence.md),
so it is a reference-grade signal for the self stop rule where reference pulls are out of
reach (DFT labelers), and a second, noise-free error column where they are not.

Both sides start from the first reference start state, each relaxed with its own potential.
The labeler is scanned once per campaign (``cogef/labeler.npz``): first in coarse steps to
find its peak force, then in the steps every model scan uses, fine above ``fine_above`` of that
peak, so the two curves share a grid rule and the grid's own error (~0.5 kcal/mol on hexane)
cancels. Each iteration's driver (best member or mean, as it drives the pulls) is scanned into
``iterations/NNN/cogef.npz``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from rarelearn import manifest
from rarelearn.cogef import CogefCurve, cogef_scan
from rarelearn.dynamics import SMDSettings
from rarelearn.dynamics.smd import step_budget
from rarelearn.errors import ConfigError, RarelearnError
from rarelearn.molecules import PulledAtoms, relax
from rarelearn.runfolder import COGEF_ROW_KEYS, read_json

#: Relaxation of each side's start state before its scan (a built chain can sit on a
#: symmetric saddle whose energy the scan would otherwise release on the way, 0.2 eV for
#: hexane): GFN2-xTB hexane took 118 steps
START_FMAX = 1e-3
START_STEPS = 1000
#: BFGS steps allowed to each constrained relaxation: GFN2-xTB hexane took 38 on average; a
#: model that needs more is one whose landscape has no minimum there, and its scan ends
RELAX_STEPS = 500


@dataclass(frozen=True)
class CogefSettings:
    """The ``[cogef]`` table: whether each committee is checked against the labeler at 0 K,
    whether the labeler's and the drivers' scans join the training set, and the scan's steps."""

    enabled: bool = False
    #: label the labeler's scan (every relaxed point and ``label_copies`` noisy copies of
    #: each) into iteration 0's training frames: the bond's whole force-extension curve
    #: through its snap, which no 10 K pull of a model visits before its own snap
    labels: bool = False
    #: label each iteration's driver scan (the check's, so ``enabled`` too) into that
    #: iteration's training frames: the committee's own 0 K path, labeled where it went
    driver_labels: bool = False
    #: noisy copies of each scan point labeled beside it (``labels``, ``driver_labels``)
    label_copies: int = 1
    #: step of the pulled pair's distance near the peak (A)
    step_A: float = 0.02
    #: step below ``fine_above`` of the labeler's peak force (A)
    coarse_step_A: float = 0.1
    #: share of the labeler's peak force above which the scan steps finely
    fine_above: float = 0.7
    #: force tolerance of each constrained relaxation (eV/A)
    fmax: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("enabled", "labels", "driver_labels"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if isinstance(self.label_copies, bool) or not isinstance(self.label_copies, int):
            raise ConfigError(f"label_copies must be an integer, got {self.label_copies!r}")
        if self.label_copies < 0:
            raise ConfigError(f"label_copies must be 0 or more, got {self.label_copies}")
        if self.driver_labels and not self.enabled:
            raise ConfigError(
                "driver_labels labels the 0 K check's scan of each committee: set enabled = "
                "true too"
            )
        for name in ("step_A", "coarse_step_A", "fmax"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be positive, got {value!r}")
        if self.coarse_step_A < self.step_A:
            raise ConfigError(
                f"coarse_step_A ({self.coarse_step_A}) must be at least step_A ({self.step_A})"
            )
        if not 0 <= self.fine_above < 1:
            raise ConfigError(f"fine_above must be a share in [0, 1), got {self.fine_above!r}")


def cogef_pair(pulled: PulledAtoms) -> tuple[int, int]:
    """The two atoms COGEF holds apart; a clear error for pulled groups."""
    if len(pulled.group_a) != 1 or len(pulled.group_b) != 1:
        raise ConfigError(
            "cogef.enabled and cogef.labels need two pulled atoms, not groups (COGEF fixes "
            "one distance)"
        )
    return pulled.group_a[0], pulled.group_b[0]


def reach_A(start: Atoms, pair: tuple[int, int], smd: SMDSettings) -> float:
    """How far a scan may stretch the pair: as far as the steered pull's spring travels from
    the start (a model that never lets go ends its scan there, not never)."""
    travel = step_budget(smd) * smd.timestep_fs * smd.pull_speed_A_per_ps / 1000.0
    return float(start.get_distance(*pair)) + travel


def scan_side(
    start: Atoms,
    pair: tuple[int, int],
    calculator: Calculator,
    settings: CogefSettings,
    fine_above_eV_per_A: float,
    seed: int,
    max_distance_A: float,
) -> CogefCurve:
    """``start`` relaxed with ``calculator``, then stretched by COGEF up to ``max_distance_A``,
    finely above the given force (coarse steps below it). A calculator that fails on the start
    raises RarelearnError, as one that fails during the scan ends it."""
    try:
        relaxed = relax(start, calculator, START_FMAX, START_STEPS)
    except Exception as exc:  # a failed SCF or an NNP error: the scan's finding, said so
        raise RarelearnError(f"relaxing the start failed: {exc}") from exc
    return cogef_scan(
        relaxed,
        calculator,
        pair,
        step_A=settings.step_A,
        coarse_step_A=settings.coarse_step_A,
        fine_above_eV_per_A=fine_above_eV_per_A,
        fmax=settings.fmax,
        max_distance_A=max_distance_A,
        max_relax_steps=RELAX_STEPS,
        seed=seed,
    )


def _write_facts(path: Path, facts: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(facts, indent=1))
    manifest.replace(temporary, path)


def read_curve(curve_path: Path, facts_path: Path) -> tuple[CogefCurve | None, dict[str, Any]]:
    """A finished scan's curve (None where it failed) and facts, as `saved_curve` wrote them."""
    facts = read_json(facts_path)
    curve = None if facts.get("failed") else CogefCurve.load(curve_path)
    return curve, facts


def saved_curve(
    curve_path: Path, facts_path: Path, scan: Callable[[], tuple[CogefCurve, dict[str, Any]]]
) -> tuple[CogefCurve | None, dict[str, Any]]:
    """A side's curve and facts from ``curve_path`` and ``facts_path`` (written last: its
    presence marks the scan done), or ``scan()`` run and saved there. A scan that fails (a
    potential that does not relax, a labeler that fails at the start) is a finding, not a
    crash: its facts say why (``failed``) and the campaign goes on."""
    if facts_path.is_file():
        return read_curve(curve_path, facts_path)
    try:
        curve, facts = scan()
    except RarelearnError as exc:
        curve, facts = None, {"failed": str(exc)}
    if curve is not None:
        curve.save(curve_path)
        facts = {**facts, "n_points": len(curve.distance_A), "stopped_reason": curve.stopped_reason}
    _write_facts(facts_path, facts)
    return curve, facts


def labeler_curve(
    folder: Path,
    start: Atoms,
    pair: tuple[int, int],
    calculator: Callable[[], Calculator],
    settings: CogefSettings,
    seed: int,
    max_distance_A: float,
) -> tuple[CogefCurve | None, dict[str, Any]]:
    """The labeler's curve (None where its scan failed) and its facts, among them the force
    above which every scan steps finely (``fine_above_eV_per_A``), from ``folder`` or
    computed and saved there. ``calculator`` builds the labeler, only when it must scan."""

    def scan() -> tuple[CogefCurve, dict[str, Any]]:
        labeler = calculator()
        coarse = scan_side(start, pair, labeler, settings, np.inf, seed, max_distance_A)
        threshold = settings.fine_above * coarse.peak()[0]
        curve = scan_side(start, pair, labeler, settings, threshold, seed, max_distance_A)
        return curve, {
            "fine_above_eV_per_A": threshold,
            "coarse_peak_force_eV_A": coarse.peak()[0],
        }

    folder.mkdir(parents=True, exist_ok=True)
    return saved_curve(folder / "labeler.npz", folder / "labeler.json", scan)


def model_curve(
    curve_path: Path,
    facts_path: Path,
    start: Atoms,
    pair: tuple[int, int],
    calculator: Calculator,
    settings: CogefSettings,
    fine_above_eV_per_A: float,
    seed: int,
    max_distance_A: float,
) -> tuple[CogefCurve | None, dict[str, Any]]:
    """A committee driver's curve (None where its scan failed) and its facts, from the
    iteration's files or scanned in the labeler's steps and saved there."""

    def scan() -> tuple[CogefCurve, dict[str, Any]]:
        curve = scan_side(
            start, pair, calculator, settings, fine_above_eV_per_A, seed, max_distance_A
        )
        return curve, {}

    return saved_curve(curve_path, facts_path, scan)


def _barrier(curve: CogefCurve, k_spring: float) -> tuple[float | None, str]:
    """The quasi-static barrier (eV), or None and why there is none."""
    try:
        return curve.ea_quasi_static(k_spring)[0], ""
    except RarelearnError as exc:
        return None, str(exc)


def cogef_row(
    model: CogefCurve | None,
    labeler: CogefCurve | None,
    k_spring: float,
    failures: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The row keys (`COGEF_ROW_KEYS`): both sides' 0 K barrier and peak force, model minus
    labeler, the bond each breaks, and why a side has none (``cogef_note``; ``failures``: a
    side's failed scan, by side)."""
    row = empty_cogef_row()
    notes = [f"{side}'s scan failed: {why}" for side, why in (failures or {}).items()]
    sides = {}
    for side, curve, suffix in (("model", model, "nnp"), ("labeler", labeler, "ref")):
        if curve is None:
            continue
        if curve.stopped_reason:
            notes.append(f"{side}'s scan ended early: {curve.stopped_reason}")
        barrier, why = _barrier(curve, k_spring)
        if why:
            notes.append(f"{side}: {why}")
        sides[side] = (barrier, curve.peak()[0])
        row[f"cogef_ea_{suffix}_eV"] = barrier
        row[f"cogef_peak_force_{suffix}_eV_A"] = curve.peak()[0]
        row[f"cogef_bond_{suffix}"] = curve.broken_bond_label()
    if len(sides) == 2:
        (ea_model, force_model), (ea_labeler, force_labeler) = sides["model"], sides["labeler"]
        if ea_model is not None and ea_labeler is not None:
            row["cogef_ea_error_eV"] = ea_model - ea_labeler
        row["cogef_peak_force_error_eV_A"] = force_model - force_labeler
    row["cogef_note"] = "; ".join(notes) or None
    return row


def empty_cogef_row() -> dict[str, Any]:
    """The row keys of a campaign without the 0 K check."""
    return dict.fromkeys(COGEF_ROW_KEYS)
