"""vmaf_roi.search: the CRF search on synthetic curves, pooling, sample planning; the commands
`encode --target-vmaf` and `encode --save-against` end to end on a real clip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vmaf_roi.errors import ConfigError
from vmaf_roi.search import (CrfRange, TargetUnreachable, check_pool, crf_range, plan_samples, pooled, search_crf,
                             sub_gaze)

X264 = CrfRange(0.0, 51.0, True, -1.0)
AV1 = CrfRange(1.0, 63.0, False, -0.8)


def curve(a: float = 100.0, b: float = 0.03, p: float = 1.7):
    """A monotone VMAF-like curve: near 100 at low CRFs, falling faster as the CRF rises."""
    calls: list[float] = []

    def f(crf: float) -> float:
        calls.append(crf)
        return a - b * crf ** p

    f.calls = calls  # type: ignore[attr-defined]
    return f


@pytest.mark.parametrize("target", [97.0, 93.0, 85.0, 80.0])
def test_converges_on_a_synthetic_curve(target):
    f = curve()
    res = search_crf(f, target, X264, start=23)
    exact = ((100.0 - target) / 0.03) ** (1 / 1.7)
    assert abs(f(res.crf) - target) <= 0.3  # the tolerance plus what interpolation leaves
    assert abs(res.crf - exact) < 0.6
    assert abs(res.predicted - target) <= 0.3
    assert 1 <= res.probe_count <= 6
    assert len(set(p.crf for p in res.probes)) == res.probe_count  # no CRF probed twice


def test_integer_crf_encoder_gets_a_whole_crf_nearest_the_target():
    f = curve(b=0.02)
    res = search_crf(f, 93.0, AV1, start=35)
    assert res.crf == int(res.crf)
    exact = ((100.0 - 93.0) / 0.02) ** (1 / 1.7)
    assert abs(res.crf - exact) <= 1.0
    for p in res.probes:
        assert p.crf == int(p.crf) and AV1.lo <= p.crf <= AV1.hi


def test_noisy_curve_still_lands_near_the_target():
    rng = np.random.default_rng(1)
    base = curve()
    res = search_crf(lambda c: base(c) + float(rng.normal(0, 0.15)), 93.0, X264, start=23)
    exact = ((100.0 - 93.0) / 0.03) ** (1 / 1.7)
    assert abs(res.crf - exact) < 1.5


def test_unreachable_target_stops_with_a_clear_error():
    f = curve(a=90.0)  # even CRF 0 gives 90
    with pytest.raises(TargetUnreachable) as e:
        search_crf(f, 95.0, X264, start=23)
    msg = str(e.value)
    assert "95" in msg and "lowest CRF" in msg and "90.00" in msg
    assert "\n" not in msg
    assert isinstance(e.value, ConfigError)  # a user mistake: one line, exit code 2
    assert 0.0 in f.calls and len(f.calls) <= 6  # it went to the bottom of the range, then stopped


def test_target_below_the_range_encodes_at_the_highest_crf_with_a_note():
    f = curve(b=0.0001)  # even CRF 51 gives ~99.2
    res = search_crf(f, 60.0, X264, start=23)
    assert res.crf == 51.0 and "highest CRF" in res.note


def test_crf_ranges_from_the_encoder_table():
    x264, svt, vp9 = crf_range("libx264"), crf_range("libsvtav1"), crf_range("libvpx-vp9")
    assert (x264.lo, x264.hi, x264.fractional) == (0, 51, True)
    assert crf_range("libx265").fractional
    assert (svt.lo, svt.hi, svt.fractional) == (1, 63, False)
    assert (vp9.hi, vp9.fractional) == (63, False)
    assert svt.clamp(30.6) == 31.0 and x264.clamp(30.666) == 30.67 and x264.clamp(70) == 51


def test_pools():
    v = list(range(1, 101)) + [float("nan")]
    assert pooled(v, "mean") == pytest.approx(50.5)
    assert pooled(v, "p5") == pytest.approx(np.percentile(np.arange(1, 101), 5))
    assert check_pool("P5") == "p5" and check_pool("mean") == "mean"
    for bad in ("median", "p0", "p90", "px"):
        with pytest.raises(ConfigError, match="--pool"):
            check_pool(bad)


def test_sample_plan_is_spread_and_snaps_to_scene_cuts():
    r = plan_samples(1000, [], 50, 4)
    assert [s for s, _ in r] == [100, 350, 600, 850]
    # a cut just after a window's start: the window starts at the cut
    r = plan_samples(1000, [110], 50, 4)
    assert r[0] == (110, 50)
    # a cut near a window's end: the window ends at the cut
    r = plan_samples(1000, [145], 50, 4)
    assert r[0] == (95, 50)
    assert all(b[0] >= a[0] + a[1] for a, b in zip(r, r[1:]))  # never overlapping


def test_sub_gaze_renumbers_the_sampled_frames():
    from vmaf_roi.gaze import GazeRecording

    f = np.array([0, 5, 12, 20, 21, 40])
    rec = GazeRecording(64, 48, f, f * 1.0, f * 0.5, np.zeros(6, dtype=np.int64), ("a",))
    sub = sub_gaze(rec, [(4, 3), (20, 2)])  # frames 4,5,6 -> 0,1,2; 20,21 -> 3,4
    assert list(sub.frame) == [1, 3, 4]
    assert list(sub.x) == [5.0, 20.0, 21.0]
