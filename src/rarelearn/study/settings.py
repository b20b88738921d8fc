"""What a study varies (the ``[study]`` table) and its quick and paper variants.

A study's configuration is a campaign configuration (preset, then the study's quick overrides,
then the user's TOML) plus a ``[study]`` table with the values below. The quick variants are
sized to finish in at most an hour on 2 cores (docs/studies.md states the measured times);
the paper variants keep the paper's settings.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from rarelearn.config import (
    LEAN_POST_SNAP,
    LONG_FITS,
    QUICK_SNAP,
    SNAP_PRESET,
    CampaignConfig,
    ConfigError,
    from_dict,
    merge_settings,
    preset,
    read_toml,
)
from rarelearn.selection import STRATEGIES
from rarelearn.study import STUDIES

#: Campaign settings of the quick campaign studies on top of the quick preset: 6 (ensemble)
#: or 4 (selection) campaigns side by side on 2 cores within the hour.
QUICK_CAMPAIGNS: dict[str, Any] = {
    "snap": {"replicas": 0},  # the paper's questions, asked of the paper's loop
    "iterations": 3,
    "baselines": False,
    "reference": {"replicas": 8, "equilibrium": {"n_frames": 500, "sample_every": 2}},
    "committee": {"ani": {"epochs": 30}},
}


@dataclass(frozen=True)
class StudySettings:
    """The ``[study]`` table: what the study varies, and how many pulls a side."""

    #: ensemble: committee sizes, and split strategies (PROTOCOL 4.8)
    members: tuple[int, ...] = (3, 5, 7)
    strategies: tuple[str, ...] = ("random", "inherited")
    #: selection: how the frames of each iteration are chosen (`selection.strategy`), plus one
    #: campaign of the first kind trained from scratch when the base warm-starts (or the reverse)
    selections: tuple[str, ...] = ("uq", "random", "reference")
    compare_warm_start: bool = True
    #: transfer: n-alkane chain lengths; speeds: pulling speeds (A/ps)
    chains: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
    speeds: tuple[float, ...] = (0.5, 1.0, 2.0)
    #: transfer and speeds: pulls per side (reference and NNP, twins from the same starts)
    replicas: int = 16
    #: transfer and speeds: a trained committee (iteration folder, its committee/, or a run
    #: folder: its last iteration); empty: a campaign of the base settings trained in the study
    model: str = ""
    #: convergence: the model seeds (``seed`` of each campaign; the reference is shared) and
    #: the recipes (names in `RECIPES`) run over each of them
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    recipes: tuple[str, ...] = ("preset",)

    def validate(self, study: str) -> None:
        def require(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise ConfigError(f"study.{key} {what}")

        require(
            len(self.members) > 0 and all(isinstance(n, int) and n >= 2 for n in self.members),
            "members",
            f"must be committee sizes >= 2, got {list(self.members)}",
        )
        require(
            len(self.strategies) > 0 and set(self.strategies) <= {"random", "inherited"},
            "strategies",
            f"must be among random, inherited, got {list(self.strategies)}",
        )
        require(
            len(self.selections) > 0 and set(self.selections) <= set(STRATEGIES),
            "selections",
            f"must be among {', '.join(STRATEGIES)}, got {list(self.selections)}",
        )
        require(
            len(self.chains) > 0 and all(isinstance(n, int) and n >= 2 for n in self.chains),
            "chains",
            f"must be n-alkane chain lengths >= 2, got {list(self.chains)}",
        )
        require(
            len(self.speeds) > 0 and all(v > 0 for v in self.speeds),
            "speeds",
            f"must be positive pulling speeds in A/ps, got {list(self.speeds)}",
        )
        require(
            isinstance(self.replicas, int) and self.replicas >= 2,
            "replicas",
            f"must be an integer >= 2 (an interval needs two pulls a side), got {self.replicas!r}",
        )
        require(
            len(self.seeds) > 0
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in self.seeds)
            and len(set(self.seeds)) == len(self.seeds),
            "seeds",
            f"must be distinct integers >= 0, got {list(self.seeds)}",
        )
        require(
            len(self.recipes) > 0
            and all(name in RECIPES for name in self.recipes)
            and len(set(self.recipes)) == len(self.recipes),
            "recipes",
            f"must be distinct names among {', '.join(RECIPES)}, got {list(self.recipes)}",
        )
        if study not in STUDIES:
            raise ConfigError(f"unknown study {study!r}; choose one of {', '.join(STUDIES)}")


#: Recipes of the convergence study: named campaign settings laid over the preset's campaign
#: (``force-uq`` and ``paper-committee`` keep the preset's snap tests and epochs). A recipe
#: names epochs only where epochs are its lever (the long preset's `LONG_FITS`); the others keep
#: the base campaign's (docs/convergence.md measured them at 60, the quick preset's, as
#: examples/convergence.toml also sets).
RECIPES: dict[str, dict[str, Any]] = {
    # the preset as it is (the quick preset: "snap-force-post-snap-lean", `STUDY_PRESETS`;
    # the long preset: "snap-long"; the paper preset: the paper's loop)
    "preset": {},
    # the paper's loop: no snap tests (the quick preset has them: switched off here)
    "protocol": {"snap": {"replicas": 0}},
    # every iteration, 8 of the NNP pulls snap-tested by the labeler; 8 frames of each test
    # with one noisy copy join the training set (128 labels an iteration beside the UQ ones)
    "snap": {"snap": dict(QUICK_SNAP)},
    # the snap recipe with every fit 150 warm epochs: over four seeds mean |error| 2.3 and
    # spread 2.4 kcal/mol against the snap recipe's 4.8 and 5.6 (docs/convergence.md); about
    # 2.5x the training. The long preset's recipe
    "snap-long": {"snap": dict(QUICK_SNAP), "committee": LONG_FITS},
    # the snap recipe with the committee mean driving the pulls: on fixed frames, a fresh
    # training draw moved the mean-driven Ea 0.2-1.9 kcal/mol against 0.7-4.6 for the best
    # member (docs/convergence.md); the pulls cost about twice as much
    "snap-mean": {"snap": dict(QUICK_SNAP), "committee": {"driver": "mean"}},
    # both: on fixed frames the narrowest cell of the screen (std 1.9 kcal/mol between seeds),
    # all four below the reference; not measured as a campaign
    "snap-mean-long": {"snap": dict(QUICK_SNAP), "committee": {"driver": "mean", **LONG_FITS}},
    # the snap recipe with each snap test run 200 steps past the labeler's snap instead of 40,
    # so its labels reach the separated fragments (the snap recipe's committees keep pulling
    # the broken-off fragment back, GFN2-xTB does not): over four seeds spread 1.8 but mean
    # -4.2 kcal/mol, and the work after the snap stayed (docs/convergence.md)
    "snap-tail": {"snap": {**QUICK_SNAP, "after_steps": 200}},
    # the snap recipe with the UQ candidates screened from all 16 pulls, not replica 0's
    # alone (the same max_selected cap, which the pool fills every iteration): over four seeds
    # spread 15.4 kcal/mol, 2,099-2,112 labels (docs/convergence.md)
    "snap-all-pulls": {"snap": dict(QUICK_SNAP), "selection": {"candidates": "all"}},
    # the snap recipe plus rupture-region labels: each pull's start and 3 frames of its last
    # 0.3 A before the snap (64 labels an iteration more): over four seeds spread 0.7 but mean
    # -4.2 kcal/mol, 2,194-2,275 labels (docs/convergence.md)
    "snap-rupture": {"snap": dict(QUICK_SNAP), "selection": {"rupture_frames": 3}},
    # the UQ rule on the committee's largest per-atom force spread (DP-GEN's), with the preset's
    # snap tests: over four seeds mean -3.0, spread 3.3 kcal/mol, but W at the snap 4.5-12.3
    # low, hidden by the largest post-snap tail measured (docs/convergence.md)
    "force-uq": {"selection": {"uq": "force"}},
    # the snap recipe plus the labeler's 0 K pull: its COGEF scan (one relaxed path through
    # the snap, about 60 points on hexane) and one noisy copy of each join iteration 0's
    # labels; the 0 K check runs beside it. Two seeds: -1.1 / +6.9 kcal/mol, 2,131-2,218
    # labels (docs/convergence.md)
    "snap-cogef": {"snap": dict(QUICK_SNAP), "cogef": {"enabled": True, "labels": True}},
    # snap-cogef plus each iteration's driver scan labeled (about 60 points and a copy each an
    # iteration). Two seeds: -9.1 / -1.7 kcal/mol, 2,258-2,493 labels; the final committees
    # right to 0.5 kcal/mol along both paths, the barrier still off by where the chain snaps
    "snap-cogef-driver": {
        "snap": dict(QUICK_SNAP),
        "cogef": {"enabled": True, "labels": True, "driver_labels": True},
    },
    # the snap recipe with the force term weighted 10x (force_weight 1.0, the paper's 0.1):
    # the barrier a spring measures is set by where the chain snaps, i.e. by the slope of the
    # force past its peak; on the snap-cogef screen's last training sets, retrained fits at
    # 1.0 halved the validation force MAE and their 0 K barrier errors spread +0.4 to +2.8
    # kcal/mol against -3.6 to +11.0 at 0.1. Four seeds: +2.6 / +0.8 / +6.0 / +1.2 kcal/mol,
    # spread 2.4, the barrier at the snap right in three, the post-snap tail left
    # (docs/convergence.md)
    "snap-force": {"snap": dict(QUICK_SNAP), "committee": {"ani": {"force_weight": 1.0}}},
    # snap-force with snap-tail's snap tests (200 labeler steps past the snap): snap-force's
    # remaining error is the post-snap tail, and snap-tail's labels of the separated fragments
    # were measured at the paper's force weight only. Two seeds: +2.7 / +4.5 kcal/mol, the
    # tail left (docs/convergence.md)
    "snap-force-tail": {
        "snap": {**QUICK_SNAP, "after_steps": 200},
        "committee": {"ani": {"force_weight": 1.0}},
    },
    # snap-force plus post-snap labels: from every NNP pull its start and 2 frames after its
    # snap (48 labels an iteration), where its fragments still attract each other at 4-4.7 A
    # contacts (snap-force's final pulls: W rises 0.11-0.26 eV after the snap from +50 steps
    # on, the reference's 0.08 in all). Four seeds: +0.3 / -0.5 / +2.9 / -1.4 kcal/mol, mean
    # |error| 1.3, spread 1.9, but 2,118-2,256 labels (docs/convergence.md)
    "snap-force-post-snap": {
        "snap": dict(QUICK_SNAP),
        "committee": {"ani": {"force_weight": 1.0}},
        "selection": {"tail_frames": 2},
    },
    # snap-force-post-snap within the goal's 2,000 labels: one noisy copy of each UQ frame
    # (the paper's two) and none of the snap tests' frames (the snap recipe's one), about 400
    # labels fewer over a campaign. Four seeds: +0.7 / -2.3 / -3.7 / -3.6 kcal/mol, mean
    # |error| 2.6, spread 2.0, 1,748-1,790 labels; on the disulfide every seed inside the goal
    # (mean |error| 0.8). The quick preset's recipe (docs/convergence.md)
    "snap-force-post-snap-lean": copy.deepcopy(LEAN_POST_SNAP),
    # which of the lean recipe's two cuts cost the barrier at the snap: snap-force-post-snap
    # without the snap tests' noisy copies only (the UQ frames keep their two). Four seeds:
    # -4.4 / +0.3 / -0.3 / -2.4 kcal/mol, mean |error| 1.85, 1,407-1,979 labels, 2 of 4 seeds
    # inside the goal; W at the snap as low as the lean recipe's (docs/convergence.md)
    "snap-force-post-snap-no-snap-copies": {
        "snap": {**QUICK_SNAP, "n_copies": 0},
        "committee": {"ani": {"force_weight": 1.0}},
        "selection": {"tail_frames": 2},
    },
    # snap-force-post-snap within the goal's 2,000 labels by construction, keeping the snap
    # tests' noisy copies (the cut that cost the lean recipe the barrier at the snap): one noisy
    # copy of each UQ frame (the lean recipe's other cut) and at most 36 UQ frames an
    # iteration, so no seed passes 1,000 + 4 x (36 x 2 + 128 + 48) = 1,992 labels. Four seeds:
    # -2.3 / -3.5 / +0.3 / -1.0 kcal/mol, 1,928-1,970 labels; at 64 pulls a side -1.6 / -3.5 /
    # +2.4 / -1.7, 3 of 4 inside +-4, mean |error| 2.3; on the disulfide 4 of 4 inside the goal
    # (mean |error| 1.3; docs/convergence.md)
    "snap-force-post-snap-budget": {
        "snap": dict(QUICK_SNAP),
        "committee": {"ani": {"force_weight": 1.0}},
        "selection": {"tail_frames": 2, "n_copies": 1, "max_selected": 36},
    },
    # snap-force-post-snap within the goal's 2,000 labels by construction, keeping every label
    # of its loop (the budget recipe's cuts cost the barrier at the snap in some seeds): it
    # trains on the first 650 of the equilibrium MD's 1,000 frames (0.65 ps of the 500 K MD
    # instead of 1 ps; in a study, the shared MD's first frames, what its own reference would
    # compute), so no seed passes 650 + 4 x (50 x 3 + 8 x 8 x 2 + 16 x 3) = 1,954 labels.
    # Four seeds: 1,756-1,840 labels; at 64 pulls a side +0.0 / -2.8 / -0.4 / -5.2 kcal/mol,
    # 2 of 4 inside +-4, every seed below the full recipe's (docs/convergence.md)
    "snap-force-post-snap-eq650": {
        "snap": dict(QUICK_SNAP),
        "committee": {"ani": {"force_weight": 1.0}},
        "selection": {"tail_frames": 2},
        "reference": {"equilibrium": {"n_frames": 650}},
    },
    # the paper's best committee (7 members, inherited splits) with the preset's snap tests:
    # over four seeds mean +0.6, spread 4.4, mean |error| 3.0 kcal/mol, W at the snap low in
    # three seeds, about 2.5x the snap recipe's time (docs/convergence.md)
    "paper-committee": {"committee": {"n_members": 7, "strategy": "inherited"}},
}


#: Per preset, the campaign its studies start from and what their "preset" recipe lays over
#: it. The quick preset's studies start from the snap recipe's campaign (`SNAP_PRESET`), so
#: every recipe means what it was measured as whatever the quick preset runs, and their
#: "preset" recipe adds the quick preset's own settings; any other preset is its own start,
#: with nothing laid over.
STUDY_PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "quick": (SNAP_PRESET, LEAN_POST_SNAP)
}


def study_preset(preset_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The base campaign of a study of preset ``preset_name`` and its "preset" recipe."""
    base, own = STUDY_PRESETS.get(preset_name) or (preset(preset_name), {})
    return copy.deepcopy(base), copy.deepcopy(own)


def recipe_settings(recipe: str, preset_name: str) -> dict[str, Any]:
    """What recipe ``recipe`` lays over the base campaign of a study of preset ``preset_name``."""
    if recipe == "preset":
        return study_preset(preset_name)[1]
    return copy.deepcopy(RECIPES[recipe])


QUICK_STUDY = {"chains": (2, 4, 6, 8, 11), "replicas": 4}
#: Presets whose studies take the quick variants above (the paper preset keeps the paper's)
LAPTOP_PRESETS = ("quick", "long")


@dataclass(frozen=True)
class StudyConfig:
    """A study: its name, preset, the base campaign configuration and the ``[study]`` table."""

    name: str
    preset: str
    base: CampaignConfig
    study: StudySettings

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "study": asdict(self.study),
            "campaign": self.base.to_dict(),
        }


def load_study_config(
    name: str, preset_name: str = "quick", path: Path | None = None, model: str | None = None
) -> StudyConfig:
    """The preset's study base (`STUDY_PRESETS`), the quick study overrides, the user's TOML
    (its ``[study]`` table apart)."""
    base = study_preset(preset_name)[0]
    laptop = preset_name in LAPTOP_PRESETS
    study_values: dict[str, Any] = dict(QUICK_STUDY) if laptop else {}
    if laptop and name in ("ensemble", "selection"):
        # the convergence study runs the preset's own campaigns: its question is the budget
        base = merge_settings(base, QUICK_CAMPAIGNS)
    if path is not None:
        values = read_toml(path)
        study_values.update(values.pop("study", {}))
        base = merge_settings(base, values)
    if model is not None:
        study_values["model"] = model
    known = {f.name for f in fields(StudySettings)}
    unknown = sorted(set(study_values) - known)
    if unknown:
        raise ConfigError(f"unknown setting 'study.{unknown[0]}' (allowed: {sorted(known)})")
    tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in study_values.items()}
    settings = StudySettings(**tuples)
    settings.validate(name)
    config = from_dict(copy.deepcopy(base))
    if config.store.url:
        raise ConfigError(
            "store.url: a study keeps one SQLite store per campaign in its folder; leave "
            "store.url empty"
        )
    return StudyConfig(name=name, preset=preset_name, base=config, study=settings)
