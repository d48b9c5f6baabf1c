"""Pareto mask, knee, front path and exact hypervolume against brute force."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.hypervolume import default_reference, hypervolume, hypervolume_progress, parse_reference
from analysis.pareto import front_path, knee_index, pareto_mask
from rank_search import schema

FAST = settings(max_examples=60, deadline=None)


def _flip(p: np.ndarray, directions) -> np.ndarray:
    return p * np.array([1.0 if d == "max" else -1.0 for d in directions])


def brute_mask(points: np.ndarray, directions) -> np.ndarray:
    q = _flip(points, directions)
    out = []
    for i, a in enumerate(q):
        if np.isnan(a).any():
            out.append(False)
            continue
        dominated = any(not np.isnan(b).any() and all(b >= a) and any(b > a) for j, b in enumerate(q) if j != i)
        out.append(not dominated)
    return np.array(out, dtype=bool)


def brute_hv_2d(points: np.ndarray, directions, ref) -> float:
    """Union of rectangles by coordinate compression: every grid cell is in or out."""
    q = _flip(points - np.asarray(ref, dtype=float), directions)
    q = q[~np.isnan(q).any(axis=1)]
    q = q[(q > 0).all(axis=1)]
    xs = sorted({0.0, *q[:, 0]})
    ys = sorted({0.0, *q[:, 1]})
    area = 0.0
    for x0, x1 in zip(xs, xs[1:]):
        for y0, y1 in zip(ys, ys[1:]):
            if any(px >= x1 and py >= y1 for px, py in q):
                area += (x1 - x0) * (y1 - y0)
    return area


def inclusion_exclusion_hv(points: np.ndarray, directions, ref) -> float:
    q = _flip(points - np.asarray(ref, dtype=float), directions)
    q = q[~np.isnan(q).any(axis=1)]
    q = q[(q > 0).all(axis=1)]
    total = 0.0
    for k in range(1, len(q) + 1):
        for subset in itertools.combinations(range(len(q)), k):
            total += (-1) ** (k + 1) * float(np.prod(q[list(subset)].min(axis=0)))
    return total


def point_sets(d_min: int, d_max: int, n_max: int, *, with_nan: bool = False):
    """Small integer grids: many ties and duplicates."""
    @st.composite
    def build(draw):
        d = draw(st.integers(d_min, d_max))
        n = draw(st.integers(0, n_max))
        values = draw(st.lists(st.lists(st.integers(0, 5), min_size=d, max_size=d), min_size=n, max_size=n))
        p = np.array(values, dtype=float).reshape(n, d)
        if with_nan and n:
            rows = draw(st.lists(st.integers(0, n - 1), max_size=2))
            p[rows, draw(st.integers(0, d - 1))] = np.nan
        directions = draw(st.lists(st.sampled_from(["max", "min"]), min_size=d, max_size=d))
        return p, directions
    return build()


# -- Pareto mask -----------------------------------------------------------------------------


@FAST
@given(point_sets(1, 4, 25, with_nan=True))
def test_pareto_mask_matches_brute_force(case) -> None:
    points, directions = case
    np.testing.assert_array_equal(pareto_mask(points, directions), brute_mask(points, directions))


def test_pareto_mask_keeps_every_duplicate_and_drops_nan() -> None:
    pts = [[0.9, 2.0], [0.9, 2.0], [0.8, 1.0], [np.nan, 9.0], [0.5, 3.0], [0.5, 3.0]]
    assert pareto_mask(pts, ["max", "max"]).tolist() == [True, True, False, False, True, True]


def test_pareto_mask_ties_in_one_objective() -> None:
    # same accuracy, more compression wins; same compression, more accuracy wins
    pts = [[0.9, 2.0], [0.9, 3.0], [0.8, 3.0], [0.95, 1.0]]
    assert pareto_mask(pts, ["max", "max"]).tolist() == [False, True, False, True]


def test_pareto_mask_min_max_mix_and_three_objectives() -> None:
    # accuracy max, params min
    pts = [[0.9, 100], [0.9, 80], [0.95, 120], [0.85, 60], [0.8, 70]]
    assert pareto_mask(pts, ["max", "min"]).tolist() == [False, True, True, True, False]
    # third objective (latency, min) rescues a point dominated in the first two
    pts3 = [[0.9, 100, 5.0], [0.9, 80, 9.0], [0.95, 120, 7.0], [0.8, 120, 1.0], [0.8, 130, 1.0]]
    assert pareto_mask(pts3, ["max", "min", "min"]).tolist() == [True, True, True, True, False]


def test_pareto_mask_edge_cases_and_errors() -> None:
    assert pareto_mask([], ["max", "max"]).tolist() == []
    assert pareto_mask([[1.0, 2.0]], ["max", "min"]).tolist() == [True]
    with pytest.raises(ValueError, match="direction must be 'max' or 'min', got 'maximize'"):
        pareto_mask([[1.0, 2.0]], ["maximize", "max"])
    with pytest.raises(ValueError, match=r"points must be \[n, 2\]"):
        pareto_mask([[1.0, 2.0, 3.0]], ["max", "max"])


# -- knee and front path ---------------------------------------------------------------------


def test_knee_on_an_l_shaped_front_is_the_corner() -> None:
    pts = [[1.0, 0.0], [0.98, 0.5], [0.97, 0.97], [0.5, 0.98], [0.0, 1.0], [0.3, 0.3]]
    assert knee_index(pts, ["max", "max"]) == 2


def test_knee_on_a_quarter_circle_is_the_middle() -> None:
    angles = np.linspace(0, np.pi / 2, 9)
    pts = np.c_[np.cos(angles), np.sin(angles)]
    assert knee_index(pts, ["max", "max"]) == 4


def test_knee_is_invariant_to_min_max_flips_and_scale() -> None:
    pts = np.array([[0.99, 1.2], [0.97, 3.0], [0.9, 3.5], [0.6, 4.0], [0.5, 1.0]])
    k = knee_index(pts, ["max", "max"])
    assert knee_index(np.c_[pts[:, 0], -1000 * pts[:, 1]], ["max", "min"]) == k
    assert knee_index(np.c_[-pts[:, 0], pts[:, 1]], ["min", "max"]) == k


def test_knee_small_fronts_and_three_objectives() -> None:
    assert knee_index([[0.9, 1.0], [0.5, 0.5]], ["max", "max"]) == 0  # one front point
    # two: the balanced one, normalised from the worst point; alone they tie (earliest wins)
    assert knee_index([[1.0, 0.0], [0.6, 0.7], [0.5, 0.1]], ["max", "max"]) == 1
    assert knee_index([[1.0, 0.0], [0.6, 0.7]], ["max", "max"]) == 0
    pts = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.6, 0.6, 0.6]]
    assert knee_index(pts, ["max"] * 3) == 3
    with pytest.raises(ValueError, match="no valid point"):
        knee_index([[np.nan, 1.0]], ["max", "max"])


def test_front_path_is_a_staircase_in_both_direction_mixes() -> None:
    pts = [[1.0, 0.97], [2.0, 0.95], [2.0, 0.95], [4.0, 0.9], [3.0, 0.5]]  # (compression, accuracy)
    assert front_path(pts, ["max", "max"]) == [
        (1.0, 0.97), (1.0, 0.95), (2.0, 0.95), (2.0, 0.9), (4.0, 0.9)]
    params = [[100.0, 0.97], [50.0, 0.95], [25.0, 0.9]]  # (params: min, accuracy: max)
    assert front_path(params, ["min", "max"]) == [
        (100.0, 0.97), (100.0, 0.95), (50.0, 0.95), (50.0, 0.9), (25.0, 0.9)]
    assert front_path([], ["max", "max"]) == []


# -- hypervolume -----------------------------------------------------------------------------


@FAST
@given(point_sets(2, 2, 14, with_nan=True), st.lists(st.integers(-1, 3), min_size=2, max_size=2))
def test_hypervolume_2d_matches_rectangle_union(case, ref) -> None:
    points, directions = case
    ref = [r if d == "max" else 5 - r for r, d in zip(ref, directions)]
    assert hypervolume(points, directions, ref) == pytest.approx(brute_hv_2d(points, directions, ref), abs=1e-9)


@FAST
@given(point_sets(3, 3, 7))
def test_hypervolume_3d_matches_inclusion_exclusion(case) -> None:
    points, directions = case
    ref = [-1.0 if d == "max" else 6.0 for d in directions]
    assert hypervolume(points, directions, ref) == pytest.approx(
        inclusion_exclusion_hv(points, directions, ref), rel=1e-9, abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4), min_size=1, max_size=6))
def test_hypervolume_4d_matches_inclusion_exclusion(values) -> None:
    points = np.array(values)
    ref = [0.0, 0.0, 0.0, 0.0]
    assert hypervolume(points, ["max"] * 4, ref) == pytest.approx(
        inclusion_exclusion_hv(points, ["max"] * 4, ref), rel=1e-9, abs=1e-12)


def test_hypervolume_known_values() -> None:
    # two accuracy/compression trials over the dense reference (acc 0, compression 1)
    pts = [[0.9, 3.0], [0.8, 5.0]]
    assert hypervolume(pts, ["max", "max"], [0.0, 1.0]) == pytest.approx(0.9 * 2.0 + 0.8 * 2.0)
    # a point at or beyond the reference adds nothing; duplicates and dominated points add nothing
    assert hypervolume([[0.5, 1.0], [0.5, 0.5]], ["max", "max"], [0.0, 1.0]) == 0.0
    assert hypervolume(pts + pts + [[0.1, 1.5]], ["max", "max"], [0.0, 1.0]) == pytest.approx(3.4)
    assert hypervolume(np.zeros((0, 3)), ["max"] * 3, [0, 0, 0]) == 0.0
    cube = [[1.0, 1.0, 1.0], [2.0, 0.5, 0.5]]
    assert hypervolume(cube, ["max"] * 3, [0, 0, 0]) == pytest.approx(1.0 + 0.25)
    with pytest.raises(ValueError, match="reference point must have 2 finite values"):
        hypervolume(pts, ["max", "max"], [0.0])


@FAST
@given(point_sets(2, 3, 12, with_nan=True))
def test_hypervolume_progress_is_the_hypervolume_of_each_prefix(case) -> None:
    points, directions = case
    ref = [-1.0 if d == "max" else 6.0 for d in directions]
    progress = hypervolume_progress(points, directions, ref)
    expected = [hypervolume(points[:k], directions, ref) for k in range(1, len(points) + 1)]
    np.testing.assert_allclose(progress, expected, rtol=1e-12, atol=1e-12)
    assert (np.diff(progress) >= -1e-12).all()


def test_default_reference_is_the_dense_model_at_zero_accuracy() -> None:
    trials = pd.DataFrame({schema.VAL_ACCURACY: [0.9, 0.5], schema.MACS_COMPRESSION: [3.0, 9.0],
                           schema.COMPACT_PARAMS: [100, 40], schema.DENSE_PARAMS: [400, 400],
                           schema.VAL_LOSS: [0.2, 0.6]})
    ref = default_reference([(schema.VAL_ACCURACY, "max"), (schema.MACS_COMPRESSION, "max"),
                             (schema.COMPACT_PARAMS, "min"), (schema.VAL_LOSS, "min")], trials)
    # val_loss: worst value pushed out by 10% of its range
    np.testing.assert_allclose(ref, [0.0, 1.0, 400.0, 0.6 + 0.1 * 0.4])
    with pytest.raises(ValueError, match="no reference point for objective 'foo'"):
        default_reference([("foo", "max")], trials)


def test_parse_reference() -> None:
    np.testing.assert_array_equal(parse_reference("0, 1.5", 2), [0.0, 1.5])
    with pytest.raises(ValueError, match="needs 2 values"):
        parse_reference("0", 2)
    with pytest.raises(ValueError, match="comma-separated numbers"):
        parse_reference("0,x")
    with pytest.raises(ValueError, match="finite"):
        parse_reference("0,inf")


def test_hypervolume_of_a_large_3d_set_is_fast() -> None:
    rng = np.random.default_rng(0)
    angles = rng.uniform(0, np.pi / 2, size=(150, 2))
    front = np.c_[np.cos(angles[:, 0]) * np.cos(angles[:, 1]), np.cos(angles[:, 0]) * np.sin(angles[:, 1]),
                  np.sin(angles[:, 0])]  # all on the unit sphere: every point non-dominated
    value = hypervolume(front, ["max"] * 3, [0, 0, 0])
    assert 0 < value < math.pi / 6  # below the octant of the unit ball


def test_knee_of_ratio_objectives_is_taken_in_log_space() -> None:
    # accuracy vs compression 2x, 5.5x, 9x: linearly the middle point lies below the chord
    # (no interior knee), in log space (ratios) it lies above it and is the knee
    pts = [[0.984, 1.96], [0.980, 5.52], [0.978, 9.13]]
    assert knee_index(pts, ["max", "max"]) != 1
    assert knee_index(pts, ["max", "max"], log=[False, True]) == 1
    with pytest.raises(ValueError, match="positive"):
        knee_index([[0.9, 0.0], [0.8, 2.0]], ["max", "max"], log=[False, True])
