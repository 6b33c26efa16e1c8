from __future__ import annotations

import numpy as np
import pytest

from vmaf_roi.roi import PlannerParams, block_means, encoder_qp_scale, plan, qp_map, qp_offsets, rectangles, round_half_away


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
    for bad in (dict(block=0), dict(strength=-1), dict(mode="up"), dict(max_regions=0), dict(max_offset=-1)):
        with pytest.raises(ValueError):
            PlannerParams(**bad)
