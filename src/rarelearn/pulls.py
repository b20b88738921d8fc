"""Replica pulls: the start states and work curves of many steered MDs, and their Ea statistics.

The reference stage pulls R replicas (each its own 10 K relaxation); every NNP pull of an
iteration starts from one of their start states (positions and momenta), so each NNP pull has
a reference twin. This module holds what the two sides share: saving and loading the start
states, the compact per-replica record (`ReplicaPulls`, saved as ``replicas.npz``), and the
comparison of two sets of pulls (`compare_pulls`), whose keys go into ``summary.json``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase.io import write

from rarelearn import manifest
from rarelearn.dynamics import SMDTrace, StartState
from rarelearn.dynamics.smd import COMPLETED
from rarelearn.errors import RarelearnError
from rarelearn.molecules import PulledAtoms
from rarelearn.runfolder import damaged, load_npz, read_traj
from rarelearn.statistics import Sample, finite_or_none, paired, welch

START_STATES_FILE = "start_states.traj"
REPLICAS_FILE = "replicas.npz"
_PULLS_KEYS = (
    "activation_energy_eV",
    "breaking_distance_A",
    "stopped_reason",
    "distance_A",
    "work_eV",
    "rest_length_A",
)


def save_start_states(path: Path, starts: Sequence[StartState]) -> None:
    """All start states (positions and momenta) in one ASE trajectory, written atomically."""
    frames = []
    for start in starts:
        atoms = start.atoms.copy()
        atoms.set_momenta(start.atoms.get_momenta(), apply_constraint=False)
        atoms.info["pulled"] = start.pulled.to_list()
        frames.append(atoms)
    temporary = path.with_name(path.name + ".tmp")
    write(temporary, frames, format="traj")
    manifest.replace(temporary, path)


def load_start_states(path: Path) -> list[StartState]:
    """The start states `save_start_states` wrote, in replica order."""
    if not path.is_file():
        raise RarelearnError(
            f"{path} not found: the reference start states are written by the reference stage "
            "(rarelearn run or rarelearn reference)"
        )
    starts = []
    for atoms in read_traj(path):
        if "pulled" not in atoms.info:
            raise damaged(path, "a start state lacks the pulled atoms")
        pulled = PulledAtoms.from_list(atoms.info.pop("pulled"))
        starts.append(StartState(atoms=atoms, pulled=pulled))
    return starts


@dataclass
class ReplicaPulls:
    """Figures of merit and work curves W(d) of R pulls (NaN-padded to the longest)."""

    activation_energy_eV: np.ndarray  # (R,)
    breaking_distance_A: np.ndarray  # (R,) NaN where no bond broke
    stopped_reason: list[str]
    distance_A: np.ndarray  # (R, T)
    work_eV: np.ndarray  # (R, T)
    rest_length_A: np.ndarray  # (R, T)
    #: The bond each pull broke first, by element and index ("S1-S2"; None: none broke); None
    #: for folders written before it was recorded.
    broken_bonds: list[str | None] | None = None

    @classmethod
    def from_traces(cls, traces: Sequence[SMDTrace]) -> ReplicaPulls:
        if not traces:
            raise ValueError("no pulls")
        length = max(t.n_frames for t in traces)

        def padded(key: str) -> np.ndarray:
            out = np.full((len(traces), length), np.nan)
            for r, trace in enumerate(traces):
                values = getattr(trace, key)
                out[r, : len(values)] = values
            return out

        return cls(
            activation_energy_eV=np.array([t.activation_energy_eV for t in traces]),
            breaking_distance_A=np.array(
                [np.nan if t.breaking_distance_A is None else t.breaking_distance_A for t in traces]
            ),
            stopped_reason=[t.stopped_reason for t in traces],
            distance_A=padded("distance_A"),
            work_eV=padded("work_eV"),
            rest_length_A=padded("rest_length_A"),
            broken_bonds=[t.broken_bond_label() for t in traces],
        )

    @property
    def n(self) -> int:
        return len(self.activation_energy_eV)

    @property
    def broke(self) -> list[bool]:
        """Whether each pull broke a bond and ran to its end: only then is max W a barrier.

        A pull that never broke, or that stopped early (blew up, calculator failed), gives a
        lower bound of Ea.
        """
        return [
            bool(np.isfinite(d)) and reason == COMPLETED
            for d, reason in zip(self.breaking_distance_A, self.stopped_reason, strict=True)
        ]

    @property
    def sample(self) -> Sample:
        return Sample.of(self.activation_energy_eV)

    def breaking_distances(self) -> list[float | None]:
        return [float(d) if np.isfinite(d) else None for d in self.breaking_distance_A]

    def mean_breaking_distance(self) -> float | None:
        """Mean breaking distance over the pulls that broke (None if none did)."""
        broken = self.breaking_distance_A[np.isfinite(self.breaking_distance_A)]
        return float(broken.mean()) if len(broken) else None

    def rupture_forces_eV_A(self, spring_constant_eV_A2: float) -> np.ndarray:
        """Rupture force of each pull: the peak spring force k (R0 - d) along it (eV/A).

        The observable of force spectroscopy; per pull it scatters less, relative to its size,
        than max W (FIELD-NOTES). Computed from the stored R0(t) and d(t) exactly as the trace's
        spring force is, so old run folders have it too.
        """
        return np.nanmax(spring_constant_eV_A2 * (self.rest_length_A - self.distance_A), axis=1)

    def snap_frames(self) -> list[int | None]:
        """Each pull's first broken frame (None: nothing broke), found as the frame whose
        stored spring distance is the stored breaking distance (both are the same number)."""
        frames: list[int | None] = []
        for distance, breaking in zip(self.distance_A, self.breaking_distance_A, strict=True):
            matches = np.flatnonzero(distance == breaking) if np.isfinite(breaking) else []
            frames.append(int(matches[0]) if len(matches) else None)
        return frames

    def at_snap(self, series: np.ndarray) -> np.ndarray:
        """Per pull, ``series`` (pulls x frames, e.g. `rest_length_A`) at its first broken frame
        (NaN where nothing broke)."""
        values = np.full(self.n, np.nan)
        for r, frame in enumerate(self.snap_frames()):
            if frame is not None:
                values[r] = series[r, frame]
        return values

    def work_split_at_snap_eV(self) -> tuple[np.ndarray, np.ndarray]:
        """Per pull, W at its first broken frame and the largest rise of W after it (both NaN
        where nothing broke): the barrier, and what the spring does to the fragments afterwards.
        Separated fragments that no longer attract each other give almost no rise; a model
        whose broken bond still pulls the fragments back (a spurious tail of its bond energy)
        keeps raising W, and max W, Ea, with it (docs/convergence.md)."""
        at_snap = self.at_snap(self.work_eV)
        after_snap = np.full(self.n, np.nan)
        for r, frame in enumerate(self.snap_frames()):
            if frame is not None:
                after_snap[r] = np.nanmax(self.work_eV[r, frame:]) - at_snap[r]
        return at_snap, after_snap

    def reference_bond_share(self, reference: ReplicaPulls) -> float | None:
        """Share of these pulls whose first broken bond is one the reference pulls break
        (a pull that broke no bond does not count); None when either side lacks bond records."""
        if self.broken_bonds is None or reference.broken_bonds is None:
            return None
        known = {bond for bond in reference.broken_bonds if bond}
        matches = sum(1 for bond in self.broken_bonds if bond and bond in known)
        return matches / self.n

    def bond_counts(self) -> dict[str, int] | None:
        """How many pulls broke each bond ("none": no bond broke), most frequent first."""
        if self.broken_bonds is None:
            return None
        counts = Counter(bond or "none" for bond in self.broken_bonds)
        return dict(counts.most_common())

    def summary(self) -> dict[str, Any]:
        """JSON-ready statistics of the replicas."""
        sample = self.sample
        return {
            "n_replicas": self.n,
            "activation_energy_mean_eV": sample.mean,
            "activation_energy_sem_eV": finite_or_none(sample.sem),
            "activation_energy_std_eV": finite_or_none(sample.std),
            "activation_energy_replicas_eV": list(sample.values),
            "breaking_distance_mean_A": self.mean_breaking_distance(),
            "breaking_distance_replicas_A": self.breaking_distances(),
            "broke": self.broke,
            "stopped_reason_replicas": self.stopped_reason,
            "broken_bond_replicas": self.broken_bonds,
            "broken_bonds": self.bond_counts(),
        }

    def save(self, path: Path) -> None:
        temporary = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            temporary,
            activation_energy_eV=self.activation_energy_eV,
            breaking_distance_A=self.breaking_distance_A,
            stopped_reason=np.array(self.stopped_reason),
            distance_A=self.distance_A,
            work_eV=self.work_eV,
            rest_length_A=self.rest_length_A,
            **(
                {}
                if self.broken_bonds is None
                else {"broken_bonds": np.array([bond or "" for bond in self.broken_bonds])}
            ),
        )
        manifest.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> ReplicaPulls:
        """Read ``replicas.npz``; DamagedFileError (naming the file) if it cannot be read."""
        data = load_npz(path, keys=_PULLS_KEYS)
        return cls(
            activation_energy_eV=data["activation_energy_eV"],
            breaking_distance_A=data["breaking_distance_A"],
            stopped_reason=[str(s) for s in data["stopped_reason"]],
            distance_A=data["distance_A"],
            work_eV=data["work_eV"],
            rest_length_A=data["rest_length_A"],
            broken_bonds=(
                [str(bond) or None for bond in data["broken_bonds"]]
                if "broken_bonds" in data
                else None
            ),
        )


#: The Ea error keys of a row, in `compare_pulls`'s order.
EA_ERROR_KEYS = (
    "ea_error_eV",
    "ea_error_signed_eV",
    "ea_error_ci95_eV",
    "ea_error_paired_eV",
    "ea_error_paired_ci95_eV",
    "ea_error_single_eV",
)


def compare_pulls(
    model: ReplicaPulls, reference: ReplicaPulls | None, spring_constant_eV_A2: float
) -> dict[str, Any]:
    """Ea and rupture-force errors of the model's pulls against the reference's, as row keys
    (eV, eV/A), and the share of the model's pulls that break a bond the reference breaks.

    ``model`` pull r starts from reference replica r's start state; the paired difference
    uses the first min(R_model, R_reference) pairs. Without a reference (a campaign without
    reference pulls) the same keys: the model's rupture force, every value naming the
    reference None.
    """
    forces = rupture_force_keys(model, reference, spring_constant_eV_A2)
    snaps = snap_work_keys(model, reference)
    if reference is None:
        return {
            **dict.fromkeys(EA_ERROR_KEYS),
            **forces,
            **snaps,
            "reference_bond_share": None,
        }
    difference = welch(model.sample, reference.sample)
    n_pairs = min(model.n, reference.n)
    twin = paired(model.activation_energy_eV[:n_pairs], reference.activation_energy_eV[:n_pairs])
    single = abs(float(model.activation_energy_eV[0] - reference.activation_energy_eV[0]))
    errors = (
        abs(difference.estimate),
        difference.estimate,
        finite_or_none(difference.half_width),
        twin.estimate,
        finite_or_none(twin.half_width),
        single,
    )
    return {
        **dict(zip(EA_ERROR_KEYS, errors, strict=True)),
        **forces,
        **snaps,
        "reference_bond_share": model.reference_bond_share(reference),
    }


def finite_sample(values: np.ndarray) -> Sample | None:
    """The finite values as a Sample (NaN marks a pull without the quantity); None if none."""
    finite = values[np.isfinite(values)]
    return Sample.of(finite) if len(finite) else None


def snap_work_keys(model: ReplicaPulls, reference: ReplicaPulls | None) -> dict[str, Any]:
    """Ea split at the snap (eV): each side's mean work after its pulls' first broken frame,
    and the error of W at that frame with its Welch 95 % interval, over the pulls that broke.
    None where a side has no broken pull (the error and the reference's value also without a
    reference)."""
    at_snap, after_snap = model.work_split_at_snap_eV()
    after = finite_sample(after_snap)
    keys: dict[str, Any] = {
        "work_after_snap_nnp_eV": None if after is None else after.mean,
        "work_after_snap_ref_eV": None,
        "ea_at_snap_error_eV": None,
        "ea_at_snap_error_ci95_eV": None,
    }
    if reference is None:
        return keys
    reference_at, reference_after_snap = reference.work_split_at_snap_eV()
    reference_after = finite_sample(reference_after_snap)
    keys["work_after_snap_ref_eV"] = None if reference_after is None else reference_after.mean
    model_at, reference_at_snap = finite_sample(at_snap), finite_sample(reference_at)
    if model_at is not None and reference_at_snap is not None:
        difference = welch(model_at, reference_at_snap)
        keys["ea_at_snap_error_eV"] = difference.estimate
        keys["ea_at_snap_error_ci95_eV"] = finite_or_none(difference.half_width)
    return keys


def rupture_force_keys(
    model: ReplicaPulls, reference: ReplicaPulls | None, spring_constant_eV_A2: float
) -> dict[str, Any]:
    """Both sides' mean rupture force and the error with its Welch 95 % interval (eV/A); the
    reference's and the error None without a reference."""
    nnp = Sample.of(model.rupture_forces_eV_A(spring_constant_eV_A2))
    keys = {
        "rupture_force_nnp_eV_A": nnp.mean,
        "rupture_force_nnp_sem_eV_A": finite_or_none(nnp.sem),
        "rupture_force_nnp_replicas_eV_A": list(nnp.values),
        "rupture_force_ref_eV_A": None,
        "rupture_force_ref_sem_eV_A": None,
        "rupture_force_error_eV_A": None,
        "rupture_force_error_ci95_eV_A": None,
    }
    if reference is None:
        return keys
    ref = Sample.of(reference.rupture_forces_eV_A(spring_constant_eV_A2))
    difference = welch(nnp, ref)
    keys.update(
        rupture_force_ref_eV_A=ref.mean,
        rupture_force_ref_sem_eV_A=finite_or_none(ref.sem),
        rupture_force_error_eV_A=difference.estimate,
        rupture_force_error_ci95_eV_A=finite_or_none(difference.half_width),
    )
    return keys


def bond_counts_text(counts: dict[str, int] | None) -> str:
    """Bond counts as text, most frequent first: "S1-S2 15/16, C0-S1 1/16" ("-": unknown)."""
    if not counts:
        return "-"
    total = sum(counts.values())
    return ", ".join(f"{bond} {n}/{total}" for bond, n in counts.items())
