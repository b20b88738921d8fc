"""Labeled frames of a run folder out as extended XYZ, with their provenance.

Every good label of the campaign's store (equilibrium, reference SMD, active and augmented
frames) as one extxyz frame: energy and forces as ASE writes a calculator's results (what
``ase.io.read`` gives back), the same values again under ``REF_energy`` / ``REF_forces``
(the keys MACE's and NequIP's training tools are pointed at, so that no tool mistakes them
for its own predictions), and the provenance in the frame's info: source, iteration, parent,
uq, spring_distance, labeler, uid, store id. Read-only: works while a campaign runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from rarelearn.errors import RarelearnError
from rarelearn.store import SOURCES

#: Provenance keys copied into each exported frame's info (when the label has them).
PROVENANCE = (
    "source",
    "iteration",
    "parent",
    "uq",
    "spring_distance",
    "labeler",
    "uid",
    "spin_state",
    "s_squared",
    "selection_strategy",
    "reference_replica",
)


def _exported(frame: Atoms) -> Atoms:
    """A copy with energy/forces as results and as REF_ keys, provenance in info."""
    energy = float(frame.get_potential_energy())
    forces = frame.get_forces()
    out = Atoms(frame.numbers, frame.positions, cell=frame.cell, pbc=frame.pbc)
    out.info = {key: frame.info[key] for key in PROVENANCE if key in frame.info}
    out.info["store_id"] = int(frame.info["id"])
    out.info["REF_energy"] = energy
    out.arrays["REF_forces"] = forces.copy()
    out.calc = SinglePointCalculator(out, energy=energy, forces=forces)
    return out


def export_frames(
    run_dir: str | Path, out: str | Path, sources: Sequence[str] | None = None
) -> int:
    """Write the run folder's labeled frames (of `sources`, default all) to `out` as
    extended XYZ, in store order; return how many were written."""
    from rarelearn.campaign import open_store
    from rarelearn.config import load_resolved

    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise RarelearnError(f"{run_dir} is not a run folder (no config.toml)")
    unknown = sorted(set(sources or ()) - set(SOURCES))
    if unknown:
        raise RarelearnError(f"unknown source {unknown[0]!r} (choose from {', '.join(SOURCES)})")
    config = load_resolved(run_dir).with_out(str(run_dir))
    frames = open_store(config, run_dir).labeled(sources=list(sources) if sources else None)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".partial")
    write(temporary, [_exported(f) for f in frames], format="extxyz")
    temporary.replace(out)
    return len(frames)


__all__ = ["PROVENANCE", "export_frames"]
