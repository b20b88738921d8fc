"""Choose which SMD frames to label next, and augment them (PROTOCOL section 4, steps 4-6).

The functions here are pure: arrays in, plain Python results out, no I/O. Randomness only
enters through :func:`augment`, which takes a numpy ``Generator`` or an integer seed, so the
same seed always gives the same frames.

Steps, in order:

1. :func:`uq_threshold`: mean + ``n_sigma`` std of the committee UQ over the first
   ``n_reference_steps`` frames of the SMD (a relative threshold, because absolute UQ values
   drift as the training set grows). Frames whose UQ is strictly above it are candidates.
2. Similarity screening in time order: a candidate is accepted only if both its spring
   distance and its energy differ from those of *every* frame accepted before it by more than
   ``min_distance_A`` and ``min_energy_kcal_mol``.
3. Post-break cap: at most ``post_break_cap`` accepted frames at or after the frame where the
   bond broke, because the separated fragments look alike.
4. Total cap: at most ``max_selected`` frames (see :func:`select_frames` for how it trims).
5. :func:`augment`: ``n_copies`` noisy copies of every accepted frame.

The baselines of the ``selection`` study (``selection.strategy``, :data:`STRATEGIES`) label as
many frames as this rule accepts, drawn at random instead (:func:`draw_frames`,
:func:`redraw`): same label budget per iteration, another choice of frames.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from ase import Atoms

from rarelearn.errors import ConfigError
from rarelearn.units import kcal_mol_to_ev

#: How a campaign chooses the frames to label (``selection.strategy``): ``uq`` the rule above
#: (the paper's); ``random`` as many frames as the rule accepts, drawn uniformly from the whole
#: NNP pull; ``reference`` as many, drawn from a reference pull that is not the unseen test set.
STRATEGIES = ("uq", "random", "reference")
#: What scores a frame's uncertainty: the committee's energy spread (the paper's), or the
#: largest per-atom force spread (DP-GEN's choice: sensitive to one atom's environment, such
#: as a breaking bond, which the total energy averages away).
UQ_KINDS = ("energy", "force")
#: Which NNP pulls the UQ rule screens: replica 0's (the paper's single pull) or every replica's.
CANDIDATE_SOURCES = ("replica0", "all")


def _finite_1d(values: Any, name: str) -> np.ndarray:
    """Return ``values`` as a 1-D float array, or raise ValueError naming the first bad frame."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D per-frame array, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(
            f"{name} has {bad.size} non-finite value(s); the first is at frame {int(bad[0])} "
            f"({array[bad[0]]!r})"
        )
    return array


def uq_threshold(uq: Any, n_reference_steps: int = 1000, n_sigma: float = 3.0) -> float:
    """Relative UQ threshold: mean + ``n_sigma`` std over the first ``n_reference_steps`` frames.

    The reference window is the start of the pull, where the model sits near the training data;
    frames much more uncertain than that are worth labeling. If the trace is shorter than the
    window, the whole trace is used. The std is the population std (``ddof=0``).

    Raises ValueError for an empty trace, a non-positive window, or any non-finite UQ value
    (a NaN UQ means the committee failed somewhere, which must not pass silently).
    """
    if isinstance(n_reference_steps, bool) or int(n_reference_steps) != n_reference_steps:
        raise ValueError(f"n_reference_steps must be an integer, got {n_reference_steps!r}")
    if n_reference_steps < 1:
        raise ValueError(f"n_reference_steps must be >= 1, got {n_reference_steps}")
    if not math.isfinite(n_sigma):
        raise ValueError(f"n_sigma must be finite, got {n_sigma!r}")
    trace = _finite_1d(uq, "uq")
    if trace.size == 0:
        raise ValueError("uq is empty: cannot compute a UQ threshold from an empty SMD trace")
    window = trace[: int(n_reference_steps)]
    return float(window.mean() + n_sigma * window.std())


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"selection.{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"selection.{name} must be >= {minimum}, got {value}")


def _check_float(name: str, value: Any, minimum: float, strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"selection.{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"selection.{name} must be finite, got {value!r}")
    if value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise ConfigError(f"selection.{name} must be {relation} {minimum}, got {value}")


@dataclass(frozen=True)
class SelectionSettings:
    """Settings of frame selection and augmentation; defaults are the paper's (PROTOCOL sec. 4).

    Energies are configured in kcal/mol (as the paper states them) and converted to eV once,
    in :attr:`min_energy_eV`. Invalid values raise :class:`rarelearn.errors.ConfigError`
    naming the field.
    """

    n_reference_steps: int = 1000
    n_sigma: float = 3.0
    min_distance_A: float = 0.01
    min_energy_kcal_mol: float = 1.0
    post_break_cap: int = 50
    max_selected: int | None = 50
    n_copies: int = 2
    noise_amplitude_A: float = 0.05
    #: One of :data:`STRATEGIES`; every strategy labels as many frames as the UQ rule accepts.
    strategy: str = "uq"
    #: One of :data:`UQ_KINDS`; the threshold rule (mean + n_sigma std over the first steps)
    #: applies to either.
    uq: str = "energy"
    #: Rupture-region labels (`rarelearn.rupture`): from every NNP pull, its start and this many
    #: frames over the last ``rupture_window_A`` before the model's snap (0: none)
    rupture_frames: int = 0
    rupture_window_A: float = 0.3
    #: Post-snap labels (`rarelearn.rupture`): from every NNP pull, its start and this many
    #: frames evenly spaced from its snap to its end, where the fragments have parted (0: none)
    tail_frames: int = 0
    #: One of :data:`CANDIDATE_SOURCES`: with ``all``, the rule runs on every replica pull
    #: and the accepted frames are pooled, ``max_selected`` of them kept by UQ (`pool`)
    candidates: str = "replica0"
    min_energy_eV: float = field(init=False, repr=False, compare=False)

    @property
    def pull_labels(self) -> bool:
        """Whether frames of every NNP pull are labeled (rupture-region or post-snap ones)."""
        return self.rupture_frames > 0 or self.tail_frames > 0

    def __post_init__(self) -> None:
        _check_int("n_reference_steps", self.n_reference_steps, 1)
        _check_float("n_sigma", self.n_sigma, 0.0)
        _check_float("min_distance_A", self.min_distance_A, 0.0)
        _check_float("min_energy_kcal_mol", self.min_energy_kcal_mol, 0.0)
        _check_int("post_break_cap", self.post_break_cap, 0)
        if self.max_selected is not None:
            _check_int("max_selected", self.max_selected, 1)
        _check_int("n_copies", self.n_copies, 0)
        _check_float("noise_amplitude_A", self.noise_amplitude_A, 0.0)
        if self.n_copies > 0 and self.noise_amplitude_A == 0:
            raise ConfigError(
                "selection.noise_amplitude_A must be > 0 when n_copies > 0: a copy without "
                "noise is the same frame labeled again (set n_copies = 0 for no copies)"
            )
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"selection.strategy must be one of {STRATEGIES}, got {self.strategy!r}"
            )
        _check_int("rupture_frames", self.rupture_frames, 0)
        _check_float("rupture_window_A", self.rupture_window_A, 0.0, strict=True)
        _check_int("tail_frames", self.tail_frames, 0)
        if self.candidates not in CANDIDATE_SOURCES:
            raise ConfigError(
                f"selection.candidates must be one of {CANDIDATE_SOURCES}, got {self.candidates!r}"
            )
        if self.uq not in UQ_KINDS:
            raise ConfigError(f"selection.uq must be one of {UQ_KINDS}, got {self.uq!r}")
        object.__setattr__(self, "min_energy_eV", kcal_mol_to_ev(float(self.min_energy_kcal_mol)))

    def to_dict(self) -> dict[str, Any]:
        """The UQ rule's and augmentation's fields as a JSON-ready dict (without the derived eV
        value and the strategy: the campaign's ``config.toml`` holds every field)."""
        return {
            "n_reference_steps": int(self.n_reference_steps),
            "n_sigma": float(self.n_sigma),
            "min_distance_A": float(self.min_distance_A),
            "min_energy_kcal_mol": float(self.min_energy_kcal_mol),
            "post_break_cap": int(self.post_break_cap),
            "max_selected": None if self.max_selected is None else int(self.max_selected),
            "n_copies": int(self.n_copies),
            "noise_amplitude_A": float(self.noise_amplitude_A),
        }


@dataclass
class Selection:
    """Outcome of :func:`select_frames`; every field is a plain int/float/list for JSON.

    ``candidates`` are the frames above the threshold, ``selected`` the accepted ones (both in
    time order). The ``rejected_*`` lists say why each other candidate was dropped.

    With another ``strategy`` than ``uq`` (:func:`redraw`), ``selected`` are the frames drawn
    at random, which are labeled, ``uq_selected`` those the UQ rule accepted (as many, unless
    the pull has fewer frames left to draw), and ``replica`` the reference replica whose pull
    ``selected`` indexes (``None``: the NNP pull the rule scored).
    """

    threshold_eV: float
    candidates: list[int]
    selected: list[int]
    rejected_similar: list[int]
    rejected_post_break: list[int]
    rejected_total_cap: list[int]
    broken_frame: int | None
    n_frames: int
    n_reference_frames: int
    strategy: str = "uq"
    uq_selected: list[int] | None = None
    replica: int | None = None
    #: With ``selection.candidates = "all"``: the (replica, frame) pairs labeled, pooled over
    #: every NNP pull, and the candidates over all of them; ``selected`` is then replica 0's
    #: own share of the rule, kept for its figure.
    pooled: list[tuple[int, int]] | None = None
    n_pooled_candidates: int | None = None

    @property
    def n_candidates(self) -> int:
        """Number of frames above the threshold (over every pull, when pooled)."""
        if self.n_pooled_candidates is not None:
            return self.n_pooled_candidates
        return len(self.candidates)

    @property
    def n_selected(self) -> int:
        """Number of frames accepted for labeling (before augmentation)."""
        return len(self.selected) if self.pooled is None else len(self.pooled)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; this is what the campaign writes as ``selection.json``.

        ``uq_selected`` and ``replica`` appear only where a strategy other than ``uq`` set them.
        """
        data: dict[str, Any] = {
            "strategy": self.strategy,
            "threshold_eV": float(self.threshold_eV),
            "n_frames": int(self.n_frames),
            "n_reference_frames": int(self.n_reference_frames),
            "broken_frame": None if self.broken_frame is None else int(self.broken_frame),
            "n_candidates": len(self.candidates),
            "n_selected": len(self.selected),
            "candidates": [int(i) for i in self.candidates],
            "selected": [int(i) for i in self.selected],
            "rejected_similar": [int(i) for i in self.rejected_similar],
            "rejected_post_break": [int(i) for i in self.rejected_post_break],
            "rejected_total_cap": [int(i) for i in self.rejected_total_cap],
        }
        if self.uq_selected is not None:
            data["uq_selected"] = [int(i) for i in self.uq_selected]
            data["n_uq_selected"] = len(self.uq_selected)
        if self.replica is not None:
            data["replica"] = int(self.replica)
        if self.pooled is not None:
            data["pooled"] = [[int(r), int(f)] for r, f in self.pooled]
            data["n_pooled_candidates"] = self.n_pooled_candidates
        return data

    def to_json(self, indent: int | None = 2) -> str:
        """The :meth:`to_dict` content as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Selection:
        """Rebuild a Selection from :meth:`to_dict` output (e.g. a ``selection.json`` on resume;
        one written before the strategies existed is a ``uq`` selection)."""
        broken = data.get("broken_frame")
        uq_selected = data.get("uq_selected")
        replica = data.get("replica")
        return cls(
            threshold_eV=float(data["threshold_eV"]),
            candidates=[int(i) for i in data["candidates"]],
            selected=[int(i) for i in data["selected"]],
            rejected_similar=[int(i) for i in data.get("rejected_similar", [])],
            rejected_post_break=[int(i) for i in data.get("rejected_post_break", [])],
            rejected_total_cap=[int(i) for i in data.get("rejected_total_cap", [])],
            broken_frame=None if broken is None else int(broken),
            n_frames=int(data["n_frames"]),
            n_reference_frames=int(data["n_reference_frames"]),
            strategy=str(data.get("strategy", "uq")),
            uq_selected=None if uq_selected is None else [int(i) for i in uq_selected],
            replica=None if replica is None else int(replica),
            pooled=None if "pooled" not in data else [(int(r), int(f)) for r, f in data["pooled"]],
            n_pooled_candidates=data.get("n_pooled_candidates"),
        )


def screen_candidates(
    candidates: Sequence[int],
    distance_A: np.ndarray,
    energy_eV: np.ndarray,
    min_distance_A: float,
    min_energy_eV: float,
    broken_frame: int | None = None,
    post_break_cap: int | None = None,
) -> tuple[list[int], list[int], list[int]]:
    """Similarity screening and post-break cap, visiting ``candidates`` in time order.

    A candidate is accepted only if, against every frame accepted so far, its spring distance
    differs by more than ``min_distance_A`` AND its energy by more than ``min_energy_eV``.
    Once ``post_break_cap`` frames at or after ``broken_frame`` are accepted, later frames are
    rejected (``None`` for either disables the cap). Returns (accepted, rejected as similar,
    rejected by the post-break cap).
    """
    accepted: list[int] = []
    similar: list[int] = []
    capped: list[int] = []
    n_post_break = 0
    for index in sorted(int(i) for i in candidates):
        after_break = broken_frame is not None and index >= broken_frame
        if after_break and post_break_cap is not None and n_post_break >= post_break_cap:
            capped.append(index)
            continue
        if accepted:
            d_gap = np.abs(distance_A[accepted] - distance_A[index])
            e_gap = np.abs(energy_eV[accepted] - energy_eV[index])
            if not bool(np.all((d_gap > min_distance_A) & (e_gap > min_energy_eV))):
                similar.append(index)
                continue
        accepted.append(index)
        if after_break:
            n_post_break += 1
    return accepted, similar, capped


def select_frames(
    uq: Any,
    distance_A: Any,
    energy_eV: Any,
    broken_frame: int | None,
    settings: SelectionSettings | None = None,
    forced_candidates: Sequence[int] = (),
) -> Selection:
    """Pick the SMD frames to label next (PROTOCOL section 4, steps 4-5).

    Short traces (an NNP SMD that blew up early): the threshold window is at most the first
    half of the trace, so that the frames leading to the failure can exceed it.
    ``forced_candidates`` (e.g. the last frames before a blow-up, where the model failed
    whatever its UQ says) join the candidates and go through the same screening.

    ``uq``, ``distance_A`` (spring distance) and ``energy_eV`` (potential energy without the
    spring) are per-frame arrays of one SMD trace; ``broken_frame`` is the first frame with the
    bond broken (``None``: it never broke).

    Total cap (a choice of ours; the protocol only says 50 frames x 3 = 150 labels per
    iteration): when more than ``settings.max_selected`` frames pass screening and the
    post-break cap, the ``max_selected`` with the highest UQ are kept (ties: the earlier frame)
    and returned in time order. The screening runs before the trim, and any subset of frames
    that pairwise differ still pairwise differs, so the kept frames satisfy the similarity rule.
    """
    settings = settings if settings is not None else SelectionSettings()
    uq_arr = _finite_1d(uq, "uq")
    d_arr = _finite_1d(distance_A, "distance_A")
    e_arr = _finite_1d(energy_eV, "energy_eV")
    if not uq_arr.size == d_arr.size == e_arr.size:
        raise ValueError(
            "uq, distance_A and energy_eV must have one value per frame; got lengths "
            f"{uq_arr.size}, {d_arr.size}, {e_arr.size}"
        )
    if broken_frame is not None:
        if isinstance(broken_frame, bool) or int(broken_frame) != broken_frame:
            raise ValueError(f"broken_frame must be an integer or None, got {broken_frame!r}")
        broken_frame = int(broken_frame)
        if broken_frame < 0:
            raise ValueError(f"broken_frame must be >= 0, got {broken_frame}")

    window = min(settings.n_reference_steps, max(1, uq_arr.size // 2))
    threshold = uq_threshold(uq_arr, window, settings.n_sigma)
    above = {int(i) for i in np.flatnonzero(uq_arr > threshold)}
    forced = {int(i) for i in forced_candidates}
    if any(not 0 <= i < uq_arr.size for i in forced):
        raise ValueError("forced_candidates must be frame indices of the trace")
    candidates = sorted(above | forced)
    accepted, similar, capped = screen_candidates(
        candidates,
        d_arr,
        e_arr,
        settings.min_distance_A,
        settings.min_energy_eV,
        broken_frame,
        settings.post_break_cap,
    )
    trimmed: list[int] = []
    if settings.max_selected is not None and len(accepted) > settings.max_selected:
        order = np.argsort(-uq_arr[accepted], kind="stable")
        keep = {accepted[k] for k in order[: settings.max_selected]}
        trimmed = [i for i in accepted if i not in keep]
        accepted = [i for i in accepted if i in keep]
    return Selection(
        threshold_eV=threshold,
        candidates=candidates,
        selected=accepted,
        rejected_similar=similar,
        rejected_post_break=capped,
        rejected_total_cap=trimmed,
        broken_frame=broken_frame,
        n_frames=int(uq_arr.size),
        n_reference_frames=int(window),
    )


def pool(
    selections: Sequence[Selection], uqs: Sequence[np.ndarray], max_selected: int | None
) -> list[tuple[int, int]]:
    """(replica, frame) of the frames the rule accepted on every replica's pull, pooled.

    Each replica's selection has been screened and post-break capped on its own pull (frames
    of different pulls are different trajectories); over the pool the total cap keeps the
    ``max_selected`` frames of highest UQ (ties: the earlier replica, then frame), returned
    in replica, then time order.
    """
    pooled = [(r, f) for r, selection in enumerate(selections) for f in selection.selected]
    if max_selected is not None and len(pooled) > max_selected:
        scores = np.array([uqs[r][f] for r, f in pooled])
        keep = np.argsort(-scores, kind="stable")[:max_selected]
        pooled = [pooled[k] for k in sorted(keep)]
    return pooled


def draw_rng(seed: int, iteration: int) -> np.random.Generator:
    """The generator of iteration ``iteration``'s random draw of frames.

    A child (spawn key 0) of the sequence ``[seed, iteration]`` that seeds the augmentation
    noise: an independent stream, so drawing frames leaves the noise of every strategy as
    ``uq`` has it, and the same campaign seed and iteration draw the same frames.
    """
    return np.random.default_rng(np.random.SeedSequence([seed, iteration], spawn_key=(0,)))


def draw_frames(
    n: int, n_frames: int, rng: np.random.Generator, exclude: Sequence[int] = ()
) -> list[int]:
    """``n`` distinct frame indices of a pull of ``n_frames`` frames, uniformly at random, in
    time order; frames in ``exclude`` (labeled before) are never drawn, and when fewer than
    ``n`` remain, all that remain are returned."""
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    excluded = {int(i) for i in exclude}
    available = np.array([i for i in range(int(n_frames)) if i not in excluded], dtype=int)
    size = min(int(n), available.size)
    return sorted(int(i) for i in rng.choice(available, size=size, replace=False))


def redraw(
    selection: Selection,
    strategy: str,
    n_frames: int,
    rng: np.random.Generator,
    replica: int | None = None,
    exclude: Sequence[int] = (),
) -> Selection:
    """``selection`` (the UQ rule's, which sets the budget) with its selected frames replaced
    by as many drawn at random (:func:`draw_frames`) from a pull of ``n_frames`` frames: the
    NNP pull the rule scored (``replica=None``) or reference replica ``replica``'s.

    The UQ rule's threshold, candidates and rejections are kept, its choice moves to
    ``uq_selected``: the label budget and what UQ would have chosen stay on record.
    """
    if strategy not in STRATEGIES or strategy == "uq":
        raise ValueError(f"redraw needs a random strategy of {STRATEGIES[1:]}, got {strategy!r}")
    drawn = draw_frames(selection.n_selected, n_frames, rng, exclude)
    return replace(
        selection,
        strategy=strategy,
        selected=drawn,
        uq_selected=selection.selected,
        replica=replica,
    )


def augment(
    frames: Sequence[Atoms],
    n_copies: int = 2,
    amplitude_A: float = 0.05,
    *,
    rng: np.random.Generator | int,
) -> list[Atoms]:
    """Noisy copies of the selected frames (PROTOCOL section 4, step 6).

    For each frame, in order, ``n_copies`` copies with independent uniform noise in
    ``[-amplitude_A, amplitude_A]`` on every Cartesian coordinate; they widen the training data
    around each uncertain geometry at no extra SMD cost. Returns only the copies (the caller
    labels originals and copies alike); the originals are not modified.

    Each copy keeps the original's ``atoms.info`` (iteration, spring distance, the original's
    UQ) except the store id, and gets ``source="augmented"``, ``parent`` = the original's store
    id (``info["id"]``) when it has one, else its index in ``frames``, and ``parent_index`` =
    its index in ``frames`` (always). No calculator is attached. ``rng`` is a numpy Generator
    or an integer seed; the same seed gives identical copies.
    """
    if isinstance(n_copies, bool) or int(n_copies) != n_copies or n_copies < 0:
        raise ValueError(f"n_copies must be an integer >= 0, got {n_copies!r}")
    if not math.isfinite(amplitude_A) or amplitude_A < 0:
        raise ValueError(f"amplitude_A must be finite and >= 0, got {amplitude_A!r}")
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    copies: list[Atoms] = []
    for index, original in enumerate(frames):
        parent = original.info.get("id", index)
        for _ in range(int(n_copies)):
            copy = original.copy()
            noise = generator.uniform(-amplitude_A, amplitude_A, size=(len(original), 3))
            copy.set_positions(original.get_positions() + noise, apply_constraint=False)
            copy.info = {k: v for k, v in original.info.items() if k != "id"}
            copy.info["source"] = "augmented"
            copy.info["parent"] = int(parent)
            copy.info["parent_index"] = index
            copies.append(copy)
    return copies
