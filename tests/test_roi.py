from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vmaf_roi import roi as roi_mod
from vmaf_roi.roi import (Planner, PlannerParams, _count_rectangles, _rectangles_array, block_means, encoder_qp_scale,
                          plan, qp_map, qp_offsets, rectangles, round_half_away)


def P(**kw):
    return PlannerParams(**kw)


def test_uniform_half_gives_no_regions():
    assert plan(np.full((90, 160), 0.5, np.float32), 320, 180, P()) == []


def test_uniform_one_is_one_rectangle():
    (r,) = plan(np.ones((20, 20)), 100, 50, P(strength=6))
    assert (r.top, r.bottom, r.left, r.right, r.qp, r.qp_scale) == (0, 50, 0, 100, -6, 51)


def test_salient_square_both_and_lower():
    m = np.zeros((64, 64), np.uint8)
    m[16:32, 32:48] = 255
    both = plan(m, 64, 64, P(block=16, strength=5))
    assert both[0].qp == -5 and (both[0].top, both[0].bottom, both[0].left, both[0].right) == (16, 32, 32, 48)
    assert {r.qp for r in both[1:]} == {5}
    grid = qp_map(both, 64, 64, 16)
    expect = np.full((4, 4), 5)
    expect[1, 2] = -5
    assert np.array_equal(grid, expect)
    lower = plan(m, 64, 64, P(block=16, strength=5, mode="lower"))
    assert [(r.top, r.bottom, r.left, r.right, r.qp) for r in lower] == [(16, 32, 32, 48, -5)]


def test_clamp_and_rounding_half_away_from_zero():
    assert list(round_half_away(np.array([2.5, -2.5, 0.5, -0.5, 0.49999999999999994, 1.4]))) == [3, -3, 1, -1, 0, 1]
    q = qp_offsets(np.array([[0.0, 1.0]]), P(strength=20, max_offset=10))
    assert q.tolist() == [[10, -10]]
    # s = 0.25, strength 5: d = 2.5 -> 3 (half away from zero)
    assert qp_offsets(np.array([[0.25, 0.75]]), P(strength=5)).tolist() == [[3, -3]]


def test_block_means_uint8_and_float_agree_and_map_any_size():
    rng = np.random.default_rng(0)
    m8 = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    a = block_means(m8, 161, 121, 16)
    b = block_means(m8.astype(np.float64) / 255, 161, 121, 16)
    assert a.shape == (8, 11)
    np.testing.assert_allclose(a, b, atol=1e-12)
    # brute force for the last, 1-pixel-wide block column: frame x in [160, 161)
    # -> map x [floor(160*53/161), ceil(161*53/161)) = [52, 53)
    sx0, sx1 = 160 * 53 // 161, -(-161 * 53 // 161)
    assert (sx0, sx1) == (52, 53)
    sy0, sy1 = 0, -(-16 * 37 // 121)
    assert a[0, 10] == pytest.approx(m8[sy0:sy1, sx0:sx1].mean() / 255)


def test_rectangles_cover_exactly_the_nonzero_blocks():
    rng = np.random.default_rng(1)
    q = rng.integers(-2, 3, (9, 13))
    q[3:7, 2:10] = -4
    rects = rectangles(q)
    cover = np.zeros_like(q)
    for by0, by1, bx0, bx1, v in rects:
        assert (cover[by0:by1, bx0:bx1] == 0).all(), "rectangles overlap"
        cover[by0:by1, bx0:bx1] = v
    assert np.array_equal(cover, q)
    assert any(r[1] - r[0] > 1 for r in rects)  # vertical merging happened


def test_budget_coarsens_blocks_and_orders_by_importance():
    rng = np.random.default_rng(2)
    m = rng.random((180, 320))
    regions = plan(m, 640, 360, P(block=16, strength=6, max_regions=20))
    assert 0 < len(regions) <= 20
    assert all(r.top % 32 == 0 and r.left % 32 == 0 for r in regions)  # block doubled at least once
    keys = [(-abs(r.qp), r.qp, r.top, r.left) for r in regions]
    assert keys == sorted(keys)
    for r in regions:
        assert 0 <= r.top < r.bottom <= 360 and 0 <= r.left < r.right <= 640


def test_odd_frame_sizes_stay_in_bounds():
    m = np.linspace(0, 1, 50 * 70).reshape(50, 70)
    for r in plan(m, 161, 121, P(block=16)):
        assert r.bottom <= 121 and r.right <= 161


def test_encoder_qp_scale():
    assert encoder_qp_scale("libx264") == 51
    assert encoder_qp_scale("libx265", 10) == 63


def test_params_validation():
    for bad in (dict(block=0), dict(strength=-1), dict(mode="up"), dict(max_regions=0), dict(max_offset=-1),
                dict(pool="median")):
        with pytest.raises(ValueError):
            PlannerParams(**bad)


# -- an independent oracle ----------------------------------------------------------------
# A slow, obvious implementation written from the spec in roi.py's docstring (loops, Python
# integers, exact rounding), compared with roi.plan and roi.Planner on generated maps.

def _oracle_mean(cell: np.ndarray) -> float:
    if cell.dtype == np.uint8:
        return float(sum(int(v) for v in cell.ravel())) / float(cell.size) / 255.0
    return float(sum(float(v) for v in cell.ravel())) / cell.size


def _oracle_max(cell: np.ndarray) -> float:
    if cell.dtype == np.uint8:
        return float(max(int(v) for v in cell.ravel())) / 255.0
    return float(max(float(v) for v in cell.ravel()))


def oracle_plan(m: np.ndarray | roi_mod.Blend, width: int, height: int, p: PlannerParams) -> list[tuple]:
    """m: a map, or a Blend (its two maps' means, or maxima with pool max, blended per block,
    spec step 2)."""
    pool = _oracle_max if p.pool == "max" else _oracle_mean
    h, w = m.shape
    b = p.block
    while True:
        bw, bh = -(-width // b), -(-height // b)
        q = [[0] * bw for _ in range(bh)]
        dv = [[0.0] * bw for _ in range(bh)]
        for by in range(bh):
            y0, y1 = by * b, min((by + 1) * b, height)
            sy0 = y0 * h // height
            sy1 = max(-(-y1 * h // height), sy0 + 1)
            for bx in range(bw):
                x0, x1 = bx * b, min((bx + 1) * b, width)
                sx0 = x0 * w // width
                sx1 = max(-(-x1 * w // width), sx0 + 1)
                if isinstance(m, roi_mod.Blend):
                    wt = m.weight
                    s = (1.0 - wt) * pool(m.a[sy0:sy1, sx0:sx1]) + wt * pool(m.b[sy0:sy1, sx0:sx1])
                else:
                    s = pool(m[sy0:sy1, sx0:sx1])
                dv[by][bx] = -p.strength * (2 * s - 1)  # a double, as the spec computes it
        if p.mode == "balanced":  # double sums, block by block in row-major order
            pos = neg = 0.0
            for row in dv:
                for v in row:
                    pos += max(v, 0.0)
                    neg += max(-v, 0.0)
            if pos > neg:
                dv = [[v * (neg / pos) if v > 0 else v for v in row] for row in dv]
        for by in range(bh):
            for bx in range(bw):
                d = Fraction(dv[by][bx])  # exactly
                r = int(abs(d) + Fraction(1, 2)) * (1 if d >= 0 else -1)  # halves away from zero
                r = max(-p.max_offset, min(p.max_offset, r))
                if p.mode == "lower":
                    r = min(r, 0)
                q[by][bx] = r
        rects: list[list[int]] = []
        for by in range(bh):
            bx = 0
            while bx < bw:
                end = bx
                while end < bw and q[by][end] == q[by][bx]:
                    end += 1
                v = q[by][bx]
                if v != 0:
                    above = [r for r in rects if r[1] == by and r[2] == bx and r[3] == end and r[4] == v]
                    if above:
                        above[0][1] = by + 1
                    else:
                        rects.append([by, by + 1, bx, end, v])
                bx = end
        if len(rects) <= p.max_regions:
            break
        b *= 2
    rects.sort(key=lambda r: (-abs(r[4]), r[4], r[0], r[2]))
    return [(r[0] * b, min(r[1] * b, height), r[2] * b, min(r[3] * b, width), r[4], p.qp_scale) for r in rects]


def dyadic_maps(shape):
    """Float maps of k/256: every sum the planner forms is exact, so any summation order agrees."""
    return arrays(np.int64, shape, elements=st.integers(0, 256)).map(lambda a: (a / 256.0).astype(np.float32))


map_shapes = st.tuples(st.integers(1, 24), st.integers(1, 24))
any_map = map_shapes.flatmap(lambda s: st.one_of(arrays(np.uint8, s), dyadic_maps(s)))
params = st.builds(
    PlannerParams,
    block=st.sampled_from([1, 2, 3, 4, 8, 16]),
    strength=st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.5, 4.0, 6.0]), st.floats(0, 12, allow_nan=False)),
    max_offset=st.integers(0, 12),
    mode=st.sampled_from(["both", "lower", "balanced"]),
    max_regions=st.integers(1, 40),
    qp_scale=st.sampled_from([51, 63, 57]),
    pool=st.sampled_from(["mean", "max"]),
)
frame_sizes = st.tuples(st.integers(1, 80), st.integers(1, 80))


@settings(max_examples=300, deadline=None)
@given(m=any_map, size=frame_sizes, p=params)
def test_plan_matches_the_oracle(m, size, p):
    w, h = size
    assert [r.as_tuple() for r in plan(m, w, h, p)] == oracle_plan(m, w, h, p)


@settings(max_examples=60, deadline=None)
@given(base=map_shapes.flatmap(lambda s: arrays(np.uint8, s)), steps=st.lists(
    st.tuples(st.integers(-40, 40), st.integers(0, 10**6)), min_size=1, max_size=8), size=frame_sizes, p=params)
def test_planner_over_a_stream_of_maps_matches_the_oracle(base, steps, size, p):
    """Re-planning only when the block offsets change gives, frame by frame, what a fresh plan gives."""
    w, h = size
    planner = Planner(w, h, p)
    m = base
    for shift, seed in steps:
        rng = np.random.default_rng(seed)
        # small drifts (offsets mostly stay) and the odd jump (they change)
        m = np.clip(m.astype(np.int64) + shift + rng.integers(-2, 3, m.shape), 0, 255).astype(np.uint8)
        assert [r.as_tuple() for r in planner.plan(m)] == oracle_plan(m, w, h, p)


@settings(max_examples=300, deadline=None)
@given(m=map_shapes.flatmap(lambda s: arrays(np.float64, s, elements=st.floats(0, 1))), size=st.tuples(
    st.integers(1, 400), st.integers(1, 400)), p=params)
def test_any_float_map_gives_a_valid_list(m, size, p):
    """Any float map in [0, 1], any frame size: no exception, and a list an encoder can take."""
    w, h = size
    regions = plan(m, w, h, p)
    assert len(regions) <= p.max_regions or len(regions) <= 1
    keys = [(-abs(r.qp), r.qp, r.top, r.left) for r in regions]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    covered = np.zeros((h, w), bool)
    for r in regions:
        assert 0 <= r.top < r.bottom <= h and 0 <= r.left < r.right <= w
        assert r.qp != 0 and abs(r.qp) <= p.max_offset and r.qp_scale == p.qp_scale
        assert p.mode != "lower" or r.qp < 0
        assert not covered[r.top:r.bottom, r.left:r.right].any(), "rectangles overlap"
        covered[r.top:r.bottom, r.left:r.right] = True


@settings(max_examples=200, deadline=None)
@given(q=st.tuples(st.integers(1, 20), st.integers(1, 30)).flatmap(
    lambda s: arrays(np.int64, s, elements=st.integers(-2, 2))))
def test_vectorised_rectangles_are_the_spec_rectangles(q):
    assert sorted(map(tuple, _rectangles_array(q).tolist())) == sorted(rectangles(q))
    assert _count_rectangles(q) == len(rectangles(q))


# -- the C planner (_planner.c) against the numpy one ------------------------------------------
needs_native = pytest.mark.skipif(not roi_mod.native_available(), reason="no C planner here (built without a C compiler, or VMAF_ROI_NATIVE=0)")


def test_c_planner_is_built_in_ci():
    # CI installs with a compiler: there the fast path must not fall back silently
    if os.environ.get("CI") != "true":
        pytest.skip("only CI promises a C compiler")
    assert roi_mod.native_available()


def _numpy_planner(w: int, h: int, p: PlannerParams) -> Planner:
    planner = Planner(w, h, p)
    planner.native = False
    return planner


@needs_native
@settings(max_examples=300, deadline=None)
@given(m=st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(lambda s: arrays(np.uint8, s)),
       size=st.tuples(st.integers(1, 200), st.integers(1, 200)), p=params, strided=st.booleans())
def test_c_and_numpy_planners_agree(m, size, p, strided):
    w, h = size
    if strided:  # a view with a row stride other than its width
        m = np.pad(m, ((0, 0), (0, 3)))[:, :m.shape[1]]
    c, n = Planner(w, h, p), _numpy_planner(w, h, p)
    assert c.native
    assert c.plan_array(m).tolist() == n.plan_array(m).tolist()


@settings(max_examples=150, deadline=None)
@given(m=map_shapes.flatmap(lambda s: arrays(np.uint8, s)), size=frame_sizes, p=params)
def test_numpy_planner_matches_the_oracle_on_uint8(m, size, p):
    w, h = size
    assert [r.as_tuple() for r in _numpy_planner(w, h, p).plan(m)] == oracle_plan(m, w, h, p)


# -- blends of two maps (the frames between two model maps) ---------------------------------
weights = st.one_of(st.sampled_from([0.0, 0.25, 1 / 3, 0.5, 2 / 3, 1.0]), st.floats(0, 1))
blends = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(
    lambda s: st.builds(roi_mod.Blend, arrays(np.uint8, s), arrays(np.uint8, s), weights))


@settings(max_examples=200, deadline=None)
@given(m=blends, size=frame_sizes, p=params, native=st.booleans())
def test_blend_plan_matches_the_oracle(m, size, p, native):
    w, h = size
    planner = Planner(w, h, p) if native else _numpy_planner(w, h, p)
    assert [r.as_tuple() for r in planner.plan(m)] == oracle_plan(m, w, h, p)


@needs_native
@settings(max_examples=200, deadline=None)
@given(m=blends, size=st.tuples(st.integers(1, 200), st.integers(1, 200)), p=params, strided=st.booleans())
def test_c_and_numpy_planners_agree_on_blends(m, size, p, strided):
    w, h = size
    if strided:  # views with a row stride other than their width (each its own)
        m = roi_mod.Blend(np.pad(m.a, ((0, 0), (0, 3)))[:, :m.a.shape[1]],
                          np.pad(m.b, ((0, 0), (0, 5)))[:, :m.b.shape[1]], m.weight)
    assert Planner(w, h, p).plan_array(m).tolist() == _numpy_planner(w, h, p).plan_array(m).tolist()


def test_blend_ends_plan_as_their_maps_and_the_middle_as_the_unrounded_blend():
    rng = np.random.default_rng(7)
    a, b = rng.integers(0, 256, (36, 64), dtype=np.uint8), rng.integers(0, 256, (36, 64), dtype=np.uint8)
    p = P(block=16, strength=4, mode="balanced")
    assert plan(roi_mod.Blend(a, b, 0.0), 320, 180, p) == plan(a, 320, 180, p)
    assert plan(roi_mod.Blend(a, b, 1.0), 320, 180, p) == plan(b, 320, 180, p)
    # a block on a rounding edge: 6 of 8 pixels 0 -> 1 blend at weight 1/2 to 0.5 each, which
    # the made map rounds (half to even) to 0; unrounded the block's mean is 0.375 / 255
    a, b = np.zeros((2, 4), np.uint8), np.zeros((2, 4), np.uint8)
    b.flat[:6] = 1
    m = roi_mod.Blend(a, b, 0.5)
    assert not np.asarray(m).any()
    edge = P(block=4, strength=2.502, max_offset=5, mode="both")  # d = 2.502 made, 2.4946 unrounded
    assert [r.qp for r in plan(np.asarray(m), 4, 2, edge)] == [3]
    assert [r.qp for r in plan(m, 4, 2, edge)] == [2] == [r[4] for r in oracle_plan(m, 4, 2, edge)]


def test_blend_is_made_as_the_rounded_float32_blend_and_checks_its_maps():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 256, (9, 11), dtype=np.uint8), rng.integers(0, 256, (9, 11), dtype=np.uint8)
    m = roi_mod.Blend(a, b, 0.3)
    made = np.asarray(m)
    assert made.dtype == np.uint8 and made.shape == m.shape == (9, 11)
    assert np.array_equal(made, np.rint(0.7 * a.astype(np.float32) + 0.3 * b.astype(np.float32)).astype(np.uint8))
    assert np.asarray(m) is made and not made.flags.writeable  # made once
    assert np.array(m) is not made and np.array_equal(np.array(m), made)
    assert np.array_equal(np.asarray(roi_mod.Blend(m, a, 0.0)), made)  # a blend of blends: theirs made
    for bad in [(a, b[:, :5], 0.5), (a.astype(np.float32), b, 0.5), (a, b, 1.5), (a, b, float("nan"))]:
        with pytest.raises(ValueError):
            roi_mod.Blend(*bad)


@needs_native
def test_c_planner_keeps_the_list_object_while_it_does_not_change():
    p = PlannerParams(block=16, strength=4, mode="balanced")
    planner = Planner(160, 96, p)
    a = np.zeros((24, 40), np.uint8)
    a[4:12, 8:20] = 255
    first = planner.plan_array(a)
    b = a.copy()
    b[0, 0] = 3  # a different map, the same block offsets
    assert planner.plan_array(b) is first and planner.plan(b) is planner.plan(a)
    assert not first.flags.writeable
    c = np.full_like(a, 255)
    assert planner.plan_array(c) is not first and planner.replans == 2


def test_block_means_of_a_blend_are_the_blended_means():
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, 256, (30, 50), dtype=np.uint8), rng.integers(0, 256, (30, 50), dtype=np.uint8)
    got = block_means(roi_mod.Blend(a, b, 0.25), 200, 120, 16)
    assert np.array_equal(got, 0.75 * block_means(a, 200, 120, 16) + 0.25 * block_means(b, 200, 120, 16))
    m = roi_mod.Blend(a, b, 0.25)
    assert np.asarray(m, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="copy"):
        m.__array__(np.float32, copy=False)  # uint8 made: another dtype is a copy


def test_pool_max_gives_a_block_its_most_salient_part():
    """A small salient spot inside one 64x64 block: mean pooling dilutes it to a raise (the
    block is mostly background); max pooling gives the block the full drop, and only it."""
    m = np.zeros((112, 112), np.uint8)
    m[50:54, 50:54] = 255  # about 23x17 frame pixels of a 640x480 frame
    mean = plan(m, 640, 480, P(block=64, strength=3, pool="mean"))
    high = plan(m, 640, 480, P(block=64, strength=3, pool="max"))
    assert {r.qp for r in mean} == {3}
    drops = [r for r in high if r.qp < 0]
    assert len(drops) == 1 and drops[0].qp == -3
    assert (drops[0].left, drops[0].top, drops[0].right, drops[0].bottom) == (256, 192, 320, 256)
    # the spot is at frame x 286-308, y 214-231: inside that block
    assert roi_mod.block_means(m, 640, 480, 64, "max")[3, 4] == 1.0
    assert roi_mod.block_means(m, 640, 480, 64)[3, 4] < 0.2
