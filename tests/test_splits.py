"""Train/validation splits: a noisy copy never lands on the other side from its parent."""

import numpy as np
import pytest
from ase import Atoms

from rarelearn.committee import make_splits, parent_groups


def _frames(n_plain: int, n_parents: int, copies: int = 2, first_id: int = 0) -> list[Atoms]:
    """``n_plain`` frames without parents, then ``n_parents`` originals with their copies."""
    frames, next_id = [], first_id
    for _ in range(n_plain):
        frames.append(Atoms("H", info={"id": next_id, "parent": -1}))
        next_id += 1
    for _ in range(n_parents):
        parent = next_id
        frames.append(Atoms("H", info={"id": parent, "parent": -1}))
        next_id += 1
        for _ in range(copies):
            frames.append(Atoms("H", info={"id": next_id, "parent": parent}))
            next_id += 1
    return frames


def _sides(split: dict) -> dict[int, str]:
    return {**{i: "train" for i in split["train"]}, **{i: "val" for i in split["val"]}}


def _assert_no_leak(frames: list[Atoms], splits: list[dict]) -> None:
    for split in splits:
        side = _sides(split)
        assert sorted(side) == sorted(f.info["id"] for f in frames)
        for atoms in frames:
            parent = atoms.info["parent"]
            if parent >= 0:
                assert side[atoms.info["id"]] == side[parent], (atoms.info["id"], parent)


@pytest.mark.parametrize("seed", range(5))
def test_random_splits_keep_copies_with_their_parent(seed):
    frames = _frames(40, 30)
    ids = [f.info["id"] for f in frames]
    splits = make_splits(ids, 5, "random", seed=seed, groups=parent_groups(frames))
    _assert_no_leak(frames, splits)
    for split in splits:  # about 20 % validation, within one group of three
        assert abs(len(split["val"]) - 0.2 * len(ids)) <= 3
    assert len({tuple(s["val"]) for s in splits}) == 5  # members still draw their own splits


@pytest.mark.parametrize("seed", range(5))
def test_inherited_splits_keep_copies_with_their_parent(seed):
    old = _frames(40, 10)
    old_ids = [f.info["id"] for f in old]
    previous = make_splits(old_ids, 1, "random", seed=seed, groups=parent_groups(old))[0]
    frames = old + _frames(0, 20, first_id=1000)
    ids = [f.info["id"] for f in frames]
    splits = make_splits(ids, 3, "inherited", previous, seed=seed, groups=parent_groups(frames))
    _assert_no_leak(frames, splits)
    for split in splits:  # the inherited assignment is kept exactly
        assert set(previous["train"]) <= set(split["train"])
        assert set(previous["val"]) <= set(split["val"])


def test_without_groups_every_frame_is_split_on_its_own():
    """A hand-made case where independent splitting would separate copies from parents."""
    frames = _frames(0, 50)
    ids = [f.info["id"] for f in frames]
    ungrouped = make_splits(ids, 1, "random", seed=3)[0]
    side = _sides(ungrouped)
    separated = sum(
        side[f.info["id"]] != side[f.info["parent"]] for f in frames if f.info["parent"] >= 0
    )
    assert separated > 0  # the leak this module prevents
    grouped = make_splits(ids, 1, "random", seed=3, groups=parent_groups(frames))
    _assert_no_leak(frames, grouped)
    assert np.isclose(len(grouped[0]["val"]) / len(ids), 0.2, atol=0.03)
