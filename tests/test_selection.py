"""Tests for rarelearn.selection: threshold, screening, caps, augmentation."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from rarelearn.errors import ConfigError
from rarelearn.selection import (
    Selection,
    SelectionSettings,
    augment,
    select_frames,
    uq_threshold,
)
from rarelearn.units import EV_TO_KCAL_MOL, kcal_mol_to_ev

KCAL = kcal_mol_to_ev(1.0)


def _trace(uq_tail, n_ref=10, base=0.01):
    """UQ trace: ``n_ref`` flat reference frames (threshold == base), then ``uq_tail``."""
    uq = np.concatenate([np.full(n_ref, base), np.asarray(uq_tail, dtype=float)])
    return uq


def _settings(**kwargs):
    defaults = dict(n_reference_steps=10, max_selected=None, post_break_cap=50)
    defaults.update(kwargs)
    return SelectionSettings(**defaults)


# --- threshold ---------------------------------------------------------------------------


def test_threshold_is_mean_plus_three_std_of_reference_window():
    uq = np.array([1.0, 2.0, 3.0, 4.0, 100.0, 200.0])
    # window = first 4: mean 2.5, population std sqrt(1.25)
    assert uq_threshold(uq, n_reference_steps=4) == pytest.approx(2.5 + 3 * np.sqrt(1.25))
    assert uq_threshold(uq, n_reference_steps=4, n_sigma=1.0) == pytest.approx(2.5 + np.sqrt(1.25))


def test_threshold_uses_first_1000_frames_by_default():
    uq = np.concatenate([np.zeros(1000), np.full(500, 7.0)])
    assert uq_threshold(uq) == 0.0


def test_threshold_short_trace_uses_all_frames():
    uq = np.array([1.0, 3.0])
    assert uq_threshold(uq) == pytest.approx(2.0 + 3.0 * 1.0)


@pytest.mark.parametrize("bad", [[], [0.1, np.nan, 0.2], [0.1, np.inf]])
def test_threshold_rejects_empty_and_nonfinite(bad):
    with pytest.raises(ValueError, match="uq"):
        uq_threshold(np.asarray(bad, dtype=float))


def test_threshold_rejects_bad_window():
    with pytest.raises(ValueError, match="n_reference_steps"):
        uq_threshold([0.1, 0.2], n_reference_steps=0)


# --- screening ---------------------------------------------------------------------------


def test_candidates_are_strictly_above_threshold():
    uq = _trace([0.5, 0.75, 1.0], base=0.5)  # 0.5 equals the threshold: not a candidate
    n = uq.size
    sel = select_frames(uq, np.arange(n) * 1.0, np.arange(n) * 1.0, None, _settings())
    assert sel.threshold_eV == 0.5
    assert sel.candidates == [11, 12]
    assert sel.selected == [11, 12]


def test_distance_criterion_alone_excludes_frame():
    uq = _trace([1.0, 1.0, 1.0])
    n = uq.size
    d = np.arange(n) * 0.1
    d[11] = d[10] + 0.005  # too close in distance to frame 10
    e = np.arange(n) * 10 * KCAL  # energies far apart
    sel = select_frames(uq, d, e, None, _settings())
    assert sel.candidates == [10, 11, 12]
    assert sel.selected == [10, 12]
    assert sel.rejected_similar == [11]


def test_energy_criterion_alone_excludes_frame():
    uq = _trace([1.0, 1.0, 1.0])
    n = uq.size
    d = np.arange(n) * 0.1  # distances far apart
    e = np.arange(n) * 10 * KCAL
    e[11] = e[10] + 0.5 * KCAL  # within 1 kcal/mol of frame 10
    sel = select_frames(uq, d, e, None, _settings())
    assert sel.selected == [10, 12]
    assert sel.rejected_similar == [11]


def test_screening_compares_against_every_accepted_frame_not_only_the_last():
    uq = _trace([1.0, 1.0, 1.0])
    d = np.array([0.0] * 10 + [1.0, 2.0, 1.005])  # frame 12 is close to frame 10
    e = np.array([0.0] * 10 + [1.0, 2.0, 3.0])
    sel = select_frames(uq, d, e, None, _settings())
    assert sel.selected == [10, 11]
    assert sel.rejected_similar == [12]


def test_rejected_frame_does_not_block_later_frames():
    # 11 is rejected (close to 10); 12 is close to 11 only, so it must be accepted.
    uq = _trace([1.0, 1.0, 1.0])
    d = np.array([0.0] * 10 + [1.0, 1.005, 1.012])
    e = np.array([0.0] * 10 + [1.0, 2.0, 3.0])
    sel = select_frames(uq, d, e, None, _settings())
    assert sel.selected == [10, 12]


def test_energy_threshold_is_converted_from_kcal_mol():
    s = SelectionSettings(min_energy_kcal_mol=2.0)
    assert s.min_energy_eV == pytest.approx(2.0 / EV_TO_KCAL_MOL)
    uq = _trace([1.0, 1.0])
    d = np.array([0.0] * 10 + [1.0, 2.0])
    e = np.array([0.0] * 10 + [0.0, 1.5 * KCAL])
    assert select_frames(uq, d, e, None, _settings()).selected == [10, 11]
    strict = _settings(min_energy_kcal_mol=2.0)
    assert select_frames(uq, d, e, None, strict).selected == [10]


def test_post_break_cap():
    uq = _trace([1.0] * 8)
    n = uq.size
    d = np.arange(n) * 1.0
    e = np.arange(n) * 1.0
    sel = select_frames(uq, d, e, broken_frame=13, settings=_settings(post_break_cap=2))
    # 10, 11, 12 before the break; 13, 14 are the two allowed at/after it
    assert sel.selected == [10, 11, 12, 13, 14]
    assert sel.rejected_post_break == [15, 16, 17]
    assert sel.to_dict()["broken_frame"] == 13


def test_post_break_cap_zero_and_never_broken():
    uq = _trace([1.0] * 4)
    n = uq.size
    d = np.arange(n) * 1.0
    e = np.arange(n) * 1.0
    assert select_frames(uq, d, e, 12, _settings(post_break_cap=0)).selected == [10, 11]
    assert select_frames(uq, d, e, None, _settings(post_break_cap=0)).selected == [10, 11, 12, 13]


def test_total_cap_keeps_highest_uq_in_time_order():
    uq = _trace([0.5, 0.9, 0.2, 0.8, 0.3, 0.9])
    n = uq.size
    d = np.arange(n) * 1.0
    e = np.arange(n) * 1.0
    sel = select_frames(uq, d, e, None, _settings(max_selected=3))
    # highest UQ: 11 (0.9), 15 (0.9), 13 (0.8)
    assert sel.selected == [11, 13, 15]
    assert sel.rejected_total_cap == [10, 12, 14]
    assert sel.n_candidates == 6
    assert sel.n_selected == 3


def test_total_cap_ties_prefer_earlier_frame():
    uq = _trace([0.5, 0.5, 0.5])
    n = uq.size
    sel = select_frames(uq, np.arange(n) * 1.0, np.arange(n) * 1.0, None, _settings(max_selected=2))
    assert sel.selected == [10, 11]


def test_default_settings_cap_at_50():
    rng = np.random.default_rng(0)
    uq = np.concatenate([rng.uniform(0.009, 0.011, 1000), np.full(200, 1.0)])
    n = uq.size
    sel = select_frames(uq, np.arange(n) * 0.1, np.arange(n) * 1.0, None, SelectionSettings())
    assert sel.n_candidates == 200
    assert sel.n_selected == 50


def test_selection_json_roundtrip():
    uq = _trace([1.0, 1.0])
    n = uq.size
    sel = select_frames(uq, np.arange(n) * 1.0, np.arange(n) * 1.0, 11, _settings())
    data = json.loads(sel.to_json())
    assert data["threshold_eV"] == pytest.approx(0.01)
    assert data["selected"] == [10, 11]
    assert all(type(i) is int for i in data["candidates"])
    assert Selection.from_dict(data) == sel


def test_select_frames_input_validation():
    with pytest.raises(ValueError, match="lengths"):
        select_frames([0.1, 0.2], [1.0], [1.0, 2.0], None)
    with pytest.raises(ValueError, match="energy_eV"):
        select_frames([0.1, 0.2], [1.0, 2.0], [1.0, np.nan], None)
    with pytest.raises(ValueError, match="broken_frame"):
        select_frames([0.1, 0.2], [1.0, 2.0], [1.0, 2.0], -1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_reference_steps", 0),
        ("n_sigma", -1.0),
        ("min_distance_A", -0.01),
        ("min_energy_kcal_mol", float("nan")),
        ("post_break_cap", -1),
        ("max_selected", 0),
        ("n_copies", 1.5),
        ("noise_amplitude_A", -0.05),
        ("n_reference_steps", True),
    ],
)
def test_settings_validation_names_field(field, value):
    with pytest.raises(ConfigError, match=field):
        SelectionSettings(**{field: value})


def test_settings_defaults_match_protocol():
    s = SelectionSettings()
    assert s.to_dict() == {
        "n_reference_steps": 1000,
        "n_sigma": 3.0,
        "min_distance_A": 0.01,
        "min_energy_kcal_mol": 1.0,
        "post_break_cap": 50,
        "max_selected": 50,
        "n_copies": 2,
        "noise_amplitude_A": 0.05,
    }


# --- augmentation ------------------------------------------------------------------------


def _frames():
    a = Atoms("CH4", positions=np.random.default_rng(1).normal(size=(5, 3)))
    a.info.update(source="active", iteration=3, uq=0.2, spring_distance=7.1, id=42)
    a.calc = SinglePointCalculator(a, energy=-1.0, forces=np.zeros((5, 3)))
    b = Atoms("C2H6", positions=np.random.default_rng(2).normal(size=(8, 3)))
    b.info.update(source="active", iteration=3, uq=0.3, spring_distance=7.5)
    return [a, b]


def test_augment_count_bounds_and_provenance():
    frames = _frames()
    before = [f.get_positions().copy() for f in frames]
    copies = augment(frames, n_copies=2, amplitude_A=0.05, rng=np.random.default_rng(0))
    assert len(copies) == 4
    parents = [0, 0, 1, 1]
    for copy, p in zip(copies, parents, strict=True):
        delta = copy.get_positions() - frames[p].get_positions()
        assert np.all(np.abs(delta) <= 0.05)
        assert np.all(delta != 0.0)
        assert np.abs(delta).max() > 0.025  # noise spans the range, not a tiny jitter
        assert copy.calc is None
        assert copy.info["source"] == "augmented"
        assert copy.info["parent_index"] == p
        assert copy.info["iteration"] == 3
        assert "id" not in copy.info
        assert copy.get_chemical_symbols() == frames[p].get_chemical_symbols()
    assert copies[0].info["parent"] == 42  # store id when the original has one
    assert copies[2].info["parent"] == 1  # else the index
    assert not np.allclose(copies[0].positions, copies[1].positions)
    for f, pos in zip(frames, before, strict=True):
        np.testing.assert_array_equal(f.get_positions(), pos)
        assert f.info["source"] == "active"
    assert frames[0].calc is not None


def test_augment_seeds():
    frames = _frames()
    a = augment(frames, rng=7)
    b = augment(frames, rng=np.random.default_rng(7))
    c = augment(frames, rng=8)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.positions, y.positions)
    assert not np.allclose(a[0].positions, c[0].positions)


def test_augment_amplitude_and_zero_copies():
    frames = _frames()
    copies = augment(frames, n_copies=3, amplitude_A=0.2, rng=0)
    assert len(copies) == 6
    deltas = np.concatenate(
        [c.positions - frames[c.info["parent_index"]].positions for c in copies]
    )
    assert np.abs(deltas).max() <= 0.2
    assert np.abs(deltas).max() > 0.1
    assert augment(frames, n_copies=0, rng=0) == []
    with pytest.raises(ValueError, match="amplitude_A"):
        augment(frames, amplitude_A=-1.0, rng=0)


def test_short_trace_uses_its_first_half_as_threshold_window_and_forced_frames_join():
    """An NNP SMD that blew up after 40 frames: its rising UQ tail is still selectable."""
    uq = np.concatenate([np.full(20, 0.01), np.linspace(0.02, 0.5, 20)])
    distance = np.linspace(3.0, 4.0, 40)
    energy = np.linspace(0.0, 2.0, 40)
    settings = SelectionSettings(n_reference_steps=1000, n_sigma=3.0, max_selected=None)
    selection = select_frames(uq, distance, energy, None, settings)
    assert selection.n_reference_frames == 20
    assert selection.candidates == list(range(20, 40))
    flat = np.full(40, 0.01)
    forced = select_frames(flat, distance, energy, None, settings, forced_candidates=[38, 39])
    assert forced.candidates == [38, 39] and forced.selected == [38, 39]
    with pytest.raises(ValueError, match="forced_candidates"):
        select_frames(flat, distance, energy, None, settings, forced_candidates=[40])
