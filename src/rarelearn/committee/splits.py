"""Train/validation splits of a committee's members (PROTOCOL 4.1, 4.8).

Frames are identified by `atoms.info["id"]` (the stable store id) or, when absent, by their
list index. Strategies (`make_splits`):
- ``random``: every member draws a fresh random split of all frames;
- ``inherited``: every member keeps the train/validation assignment of the previous
  committee's best-performing member (lowest force MAE over *all* its data, PROTOCOL 4.8) and
  only frames new since then are split at random, per member.
A noisy copy and the frame it was made from stay on one side (`parent_groups`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms

from rarelearn.errors import ModelError

STRATEGIES = ("random", "inherited")


def frame_ids(frames: Sequence[Atoms]) -> list[int]:
    """Stable ids of frames: `atoms.info["id"]`, else the list index. Ids must be unique."""
    ids = [int(f.info.get("id", i)) for i, f in enumerate(frames)]
    if len(set(ids)) != len(ids):
        raise ModelError("frame ids (atoms.info['id']) are not unique")
    return ids


def parent_groups(frames: Sequence[Atoms]) -> dict[int, int]:
    """Frame id -> group id: a noisy copy belongs to the group of the frame it was made from
    (``info["parent"]``, a frame id), every other frame is its own group."""
    ids = frame_ids(frames)
    groups = {}
    for frame_id, atoms in zip(ids, frames, strict=True):
        parent = int(atoms.info.get("parent", -1))
        groups[frame_id] = parent if parent >= 0 else frame_id
    return groups


def _random_split(
    ids: Sequence[int], val_fraction: float, rng: np.random.Generator, groups: dict[int, int]
) -> dict:
    """Whole groups to validation, in random order, until it holds ~val_fraction of the ids."""
    ids = list(ids)
    if not ids:
        return {"train": [], "val": []}
    members: dict[int, list[int]] = {}
    for i in ids:
        members.setdefault(groups.get(i, i), []).append(i)
    keys = list(members)
    n_val = round(val_fraction * len(ids))
    if len(keys) > 1:
        n_val = max(n_val, 1)
    val: list[int] = []
    for k in rng.permutation(len(keys)):
        if len(val) >= n_val:
            break
        group = members[keys[k]]
        if len(val) + len(group) >= len(ids):  # keep at least one frame for training
            continue
        val.extend(group)
    chosen = set(val)
    return {"train": sorted(i for i in ids if i not in chosen), "val": sorted(chosen)}


def make_splits(
    ids: Sequence[int],
    n_members: int,
    strategy: str = "random",
    previous: dict[str, Sequence[int]] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    groups: dict[int, int] | None = None,
) -> list[dict[str, list[int]]]:
    """Train/validation id lists for each member.

    ``groups`` (id -> group id, see `parent_groups`) keeps every group on one side: a noisy
    copy is never validated against its own parent in training (which would flatter the
    validation error that picks the best member). `previous` is the split ({"train": ids,
    "val": ids}) to inherit; with strategy ``inherited`` its assignment is kept exactly for
    ids still present, an id new since then joins its group's side when the group is already
    placed, and the remaining new groups are split at random (each member its own draw).
    Without `previous`, ``inherited`` behaves like ``random`` (first iteration).
    """
    if strategy not in STRATEGIES:
        raise ModelError(f"unknown split strategy {strategy!r} (choose from {STRATEGIES})")
    if n_members < 1:
        raise ModelError("a committee needs at least one member")
    ids = [int(i) for i in ids]
    groups = {i: int((groups or {}).get(i, i)) for i in ids}
    present = set(ids)
    out = []
    for m in range(n_members):
        rng = np.random.default_rng([seed, m])
        if strategy == "random" or previous is None:
            out.append(_random_split(ids, val_fraction, rng, groups))
            continue
        old_train = {int(i) for i in previous["train"]} & present
        old_val = {int(i) for i in previous["val"]} & present
        side_of_group = {groups[i]: "val" for i in old_val}
        side_of_group.update({groups[i]: "train" for i in old_train})
        train, val = set(old_train), set(old_val)
        new = []
        for i in ids:
            if i in old_train or i in old_val:
                continue
            side = side_of_group.get(groups[i])
            if side == "train":
                train.add(i)
            elif side == "val":
                val.add(i)
            else:
                new.append(i)
        part = _random_split(new, val_fraction, rng, groups)
        out.append(
            {"train": sorted(train | set(part["train"])), "val": sorted(val | set(part["val"]))}
        )
    return out
