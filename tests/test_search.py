"""vmaf_roi.search: the CRF search on synthetic curves, pooling, sample planning; the commands
`encode --target-vmaf` and `encode --save-against` end to end on a real clip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vmaf_roi.errors import ConfigError
from vmaf_roi.search import (HEADROOM, HEADROOM_CURVATURE, CrfRange, TargetUnreachable, _line_ok, check_pool,
                             crf_range, plan_samples, pooled, search_crf, sub_gaze)

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
    assert abs(res.crf - exact) < 1.0  # a probe within 0.25 of the target ends the search
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


def test_a_narrow_bracket_ends_a_smooth_search_with_the_interpolation():
    """With ``smooth``, two probes at most a tenth of the range and 2 VMAF apart on either side of
    the target end the search: the result is the line between them, one probe fewer than
    without it."""

    def shaped():
        calls: list[float] = []

        def f(crf: float) -> float:  # VMAF falling about 0.25 a step, a little faster at higher CRFs
            calls.append(crf)
            return 95.5 - 0.23 * (crf - 35) - 0.006 * (crf - 35) ** 2

        f.calls = calls  # type: ignore[attr-defined]
        return f

    free, f = search_crf(shaped(), 93.0, AV1, start=35), shaped()
    res = search_crf(f, 93.0, AV1, start=35, smooth=True)
    assert res.probe_count == free.probe_count - 1
    scores = {p.crf: p.score for p in res.probes}
    lo = max(c for c, v in scores.items() if v >= 93.0)
    hi = min(c for c, v in scores.items() if v < 93.0)
    assert 0 < hi - lo <= 6.3 and scores[lo] - scores[hi] <= 2.0 and lo <= res.crf <= hi and res.crf not in scores
    line = scores[lo] + (scores[hi] - scores[lo]) * (res.crf - lo) / (hi - lo)
    assert res.predicted == pytest.approx(line)  # the line's score, not a probe's
    assert abs(f(res.crf) - 93.0) <= 0.25 and res.crf == free.crf  # where the extra probe would have gone


@pytest.mark.parametrize("target", [97.0, 93.0, 85.0, 80.0])
def test_a_smooth_search_never_draws_a_line_across_a_wide_span(target):
    """On a steep, bending curve (about 2 VMAF a step near 90) a smooth search still lands within
    the tolerance: it interpolates across a bracket only where the bracket spans 2 VMAF or less."""
    f = curve(b=0.05, p=1.9)
    res = search_crf(f, target, X264, start=23, smooth=True)
    assert abs(f(res.crf) - target) <= 0.3
    scores = {p.crf: p.score for p in res.probes}
    if res.crf not in scores:
        lo = max(c for c, v in scores.items() if v >= target)
        hi = min(c for c, v in scores.items() if v < target)
        assert scores[lo] - scores[hi] <= 2.0


def headroom_curve(k: float = -0.126, at23: float = 95.0, bend: float = 0.0):
    """VMAF whose headroom (100 - VMAF) grows by exp(-k) a CRF step at CRF 23, as the corpus
    clips' curves do (benchmarks/bench_curves.py); ``bend``: that rate changes by the factor
    exp(bend) a step (bikes.mp4's fell from 0.28 to 0.17 over 9 steps: about -0.05)."""
    calls: list[float] = []

    def f(crf: float) -> float:
        calls.append(crf)
        d = crf - 23
        grow = -k * (math.expm1(bend * d) / bend if bend else d)  # log headroom gained since CRF 23
        return 100.0 - (100.0 - at23) * math.exp(grow)

    f.calls = calls  # type: ignore[attr-defined]
    return f


@pytest.mark.parametrize("target", [96.0, 93.0, 90.0, 85.0])
def test_headroom_space_reaches_the_target_of_a_headroom_curve_in_two_probes(target):
    """A mean VMAF's headroom shrinks about exponentially as the CRF falls. In that space one
    probe and the prior slope point at the target: the second probe lands within the tolerance
    where the curve's slope is the prior's. Drawn in VMAF itself the same search takes more."""
    f = headroom_curve()
    res = search_crf(f, target, X264, start=23, smooth=True, space=HEADROOM, slope=X264.headroom_slope)
    assert res.probe_count <= 2 and abs(f(res.crf) - target) <= 0.25
    lin = search_crf(headroom_curve(), target, X264, start=23, smooth=True)
    assert lin.probe_count >= res.probe_count
    assert any(search_crf(headroom_curve(), t, X264, start=23, smooth=True).probe_count > 2 for t in (90.0, 85.0))


@pytest.mark.parametrize("k", [-0.08, -0.126, -0.22])
@pytest.mark.parametrize("target", [96.0, 93.0, 88.0])
def test_headroom_search_lands_within_the_tolerance_on_curves_unlike_the_prior(k, target):
    """The corpus clips' headroom slopes ranged from -0.08 to -0.28 a step; with the prior wrong
    by that much, and the slope bending as on bikes.mp4, the result still lands within the
    tolerance and the line error the rule allows."""
    for bend in (0.0, 0.05, -0.05):
        f = headroom_curve(k=k, bend=bend)
        res = search_crf(f, target, X264, start=23, smooth=True, space=HEADROOM, slope=X264.headroom_slope)
        assert abs(f(res.crf) - target) <= 0.3, (k, bend, target, res)
        assert res.probe_count <= 5


def test_the_line_rule_allows_a_line_near_a_bracket_end_not_across_its_middle():
    """In the headroom space a line's error at the target is at most half the curvature bound
    times (x - a)(b - x): a target near one probe of a wide bracket is safe, one in the middle
    of the same bracket is not. On vtest.avi the search probed CRF 23 (96.23) and 28.3 (92.74)
    for the target 93, and took a third probe."""
    a, b = (23.0, 96.23), (28.3, 92.74)
    assert _line_ok(a, b, 93.0, X264, 0.25, HEADROOM)  # x near 27.9: (4.9)(0.4)
    assert not _line_ok(a, b, 95.0, X264, 0.25, HEADROOM)  # x near 25: (2)(3.3) and more headroom
    g = [HEADROOM.fwd(v) for v in (96.23, 92.74, 95.0)]
    x = 23 + (g[0] - g[2]) * 5.3 / (g[0] - g[1])
    assert 0.5 * HEADROOM_CURVATURE * (x - 23) * (28.3 - x) * 5.0 > 0.25  # what the rule computes


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
    assert (x264.lo, x264.hi, x264.fractional, x264.slope) == (0, 51, True, -0.7)
    assert crf_range("libx265").fractional
    assert (svt.lo, svt.hi, svt.fractional) == (1, 63, False)
    assert (vp9.hi, vp9.fractional) == (63, False)
    assert svt.clamp(30.6) == 31.0 and x264.clamp(30.666) == 30.67 and x264.clamp(70) == 51
    assert (x264.headroom_slope, svt.headroom_slope, vp9.headroom_slope) == (-0.126, -0.045, -0.045)


def test_pools():
    v = list(range(1, 101)) + [float("nan")]
    assert pooled(v, "mean") == pytest.approx(50.5)
    assert pooled(v, "p5") == pytest.approx(np.percentile(np.arange(1, 101), 5))
    assert check_pool("P5") == "p5" and check_pool("mean") == "mean"
    for bad in ("median", "p0", "p90", "px"):
        with pytest.raises(ConfigError, match="--pool"):
            check_pool(bad)


@pytest.mark.parametrize("rng", [X264, AV1], ids=["fractional", "whole CRFs"])
@pytest.mark.parametrize("offset", [-1.5, -0.6, 0.0, 0.8])
def test_a_second_look_moves_the_search_by_what_the_new_windows_say(rng, offset):
    """Three windows' curve lies ``offset`` VMAF (at CRF 23) off the whole's; three new windows are
    probed once, at the first result. Their frames and the first samples' together give the
    whole's score there, and the search on the first curve, moved by that difference, lands
    near the whole curve's target without another probe."""
    from vmaf_roi.search import _second_look

    whole = headroom_curve()  # what all the windows, weighted by frames, would say
    first_f = headroom_curve(at23=95.0 + offset)
    first = search_crf(first_f, 93.0, rng, start=23, smooth=True, space=HEADROOM, slope=rng.headroom_slope)
    # the new windows have as many frames as the first ones: 2 * whole = first + more, where the
    # first samples' score is what they predicted at their result (a probe's, or an interpolation)
    more = 2 * whole(first.crf) - first.predicted
    calls = len(first_f.calls)
    res, both = _second_look(first, more, 100, 100, 93.0, rng, tolerance=0.25)
    assert len(first_f.calls) == calls and both == pytest.approx(whole(first.crf))
    step = 0.0 if rng.fractional else 1.0
    assert abs(whole(res.crf) - 93.0) <= 0.3 + step * 0.6  # an integer CRF step is about 0.6 VMAF here
    assert abs(res.predicted - whole(res.crf)) <= 0.1
    if offset == 0.0:
        assert res.crf == first.crf
    else:  # first windows that scored low: the whole takes a higher CRF (and a lower one for high)
        assert (res.crf - first.crf) * offset < 0


def test_a_second_look_beyond_the_range_encodes_at_its_end_with_a_note():
    """New windows far below the first ones: the moved curve misses the target even at the lowest
    CRF. That curve is extrapolated there, not measured, so the result is the lowest CRF with a
    note, not the error a measured probe would give."""
    from vmaf_roi.search import _second_look

    rng = CrfRange(18.0, 51.0, True, -1.0)  # a range whose lowest CRF gives about 96.4
    f = headroom_curve()
    first = search_crf(f, 93.0, rng, start=23, smooth=True, space=HEADROOM, slope=rng.headroom_slope)
    res, both = _second_look(first, 40.0, 100, 100, 93.0, rng, tolerance=0.25)
    assert res.crf == rng.lo and "lowest CRF (18)" in res.note and res.predicted < 93.0 and both < 70


def test_more_samples_take_every_other_window_of_twice_the_parts(tmp_path):
    """A second look's windows: as many as the first, every other window of a plan of twice as
    many equal parts, none overlapping the first ones, cut into their own file from the same
    scan, with the same pad."""
    import av

    from vmaf_roi.search import make_samples, more_samples

    src = tmp_path / "ramp.mkv"
    with av.open(str(src), "w") as c:
        st = c.add_stream("libx264", rate=30, options={"preset": "ultrafast", "g": "600"})
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        for i in range(600):
            img = np.full((48, 64, 3), i % 256, np.uint8)
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode(None):
            c.mux(pkt)
    ss = make_samples(src, tmp_path, sample_seconds=0.4)
    assert len(ss.ranges) == 3 and ss.pad == 30 and ss.window == 42
    ss2 = more_samples(ss, src, tmp_path)
    assert ss2 is not None and ss2.path != ss.path and ss2.pad == ss.pad
    assert [s for s, _ in ss2.ranges] == [29, 229, 429]  # the middles of the 1st, 3rd and 5th of six parts
    both = sorted(ss.ranges + ss2.ranges)
    assert all(a + n <= b for (a, n), (b, _) in zip(both, both[1:]))
    with av.open(str(ss2.path)) as c:
        assert sum(1 for _ in c.decode(video=0)) == ss2.frames == 3 * 42
    # six windows of 42 frames in 600: the windows of twelve parts would each overlap one of them
    ss6 = make_samples(src, tmp_path, sample_seconds=0.4, count=6)
    assert more_samples(ss6, src, tmp_path) is None


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


# -- end to end on a real clip ----------------------------------------------------------------------
import json  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

from vmaf_roi.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("VMAF_ROI_CORPUS_DIR", ROOT / "build" / "corpus"))


def _carphone() -> Path:
    """carphone_pristine (176x144, 120 frames: a real clip) as lossless FFV1 in Matroska, as the
    benchmarks cut it (build/eval-roi/clips/carphone.f120.mkv), made from the test corpus when
    the benchmarks have not run (a fresh clone: scripts/test.sh fetches the corpus)."""
    made = ROOT / "build" / "eval-roi" / "clips" / "carphone.f120.mkv"
    if made.is_file():
        return made
    src, out = CORPUS / "carphone.mp4", ROOT / "build" / "test-clips" / "carphone.f120.mkv"
    if out.is_file() or not src.is_file():
        return out
    import av

    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part.mkv")
    with av.open(str(src)) as c, av.open(str(part), "w") as o:
        s = c.streams.video[0]
        rate = s.average_rate or s.guessed_rate
        st = o.add_stream("ffv1", rate=rate)
        st.width, st.height, st.pix_fmt = s.codec_context.width, s.codec_context.height, "yuv420p"
        st.time_base = 1 / rate
        for n, f in enumerate(c.decode(s)):
            if n >= 120:
                break
            g = f.reformat(format="yuv420p")
            g.pts, g.time_base = n, 1 / rate
            o.mux(st.encode(g))
        o.mux(st.encode(None))
    part.replace(out)
    return out


CARPHONE = _carphone()
needs_clip = pytest.mark.skipif(not CARPHONE.is_file(), reason=f"no real clip: {CORPUS / 'carphone.mp4'} is missing "
                                "(python scripts/fetch_corpus.py)")
# 1 sample of 15 frames + its 30-frame pad, cut from the clip: the sampled path, not the whole-input one
SAMPLED = ["--samples", "1", "--sample-duration", "0.5"]


@needs_clip
def test_target_vmaf_end_to_end_on_a_real_clip(tmp_path, capsys):
    out = tmp_path / "t.mp4"
    rc = main(["encode", str(CARPHONE), "-o", str(out), "--plain", "--target-vmaf", "90", *SAMPLED, "--json", "-q"])
    assert rc == 0 and out.is_file()
    cap = capsys.readouterr()
    d = json.loads(cap.out)
    assert d["mode"] == "target-vmaf" and d["pool"] == "mean" and d["target"] == 90
    s = d["samples"]
    # 15 frames scored, then a pad of 1 s (30 frames at 29.97 fps; at least 20) encoded and not scored
    assert s["whole"] is False and len(s["ranges"]) == 1 and s["pad"] == 30 and s["frames"] == s["ranges"][0][1] == 45
    assert 1 <= len(d["probes"]) <= 6
    assert abs(d["predicted"] - 90) <= 0.5  # the search's tolerance on the samples, plus interpolation
    # the whole encode, measured with libvmaf: within 1.5 VMAF of the target (half a second in the middle
    # of a 4-second clip predicts it; the benchmark measures the default sampling on longer clips)
    assert abs(d["measured"] - 90) <= 1.5
    assert d["encode"]["frames"] == 120
    # the CRF is fractional (libx264 takes a float crf) and inside its range
    assert 0 <= d["crf"] <= 51
    err = cap.err
    assert "predicted" in err and "measured" in err and "CRF" in err
    assert d["sample_error"] is None and "standard error" not in err  # one sample: no spread to measure


def test_window_error_is_the_standard_error_of_the_sample_means():
    from vmaf_roi.search import window_error

    means, se = window_error([90.0, 92.0, 96.0, 96.0, 93.0, 95.0], [2, 2, 2])
    assert means == [91.0, 96.0, 94.0]
    assert se == pytest.approx(np.std([91.0, 96.0, 94.0], ddof=1) / math.sqrt(3))
    assert window_error([90.0, 92.0], [2]) == ([91.0], None)


def test_target_vmaf_reports_how_its_samples_disagree(tmp_path, capsys):
    """Two samples of cup.mp4: each probe keeps each sample's mean VMAF, their mean weighted by
    frames is the probe's score, and the result carries the standard error of that mean."""
    cup = CORPUS / "cup.mp4"
    if not cup.is_file():
        pytest.skip(f"corpus clip {cup} not there; run python scripts/fetch_corpus.py")
    out = tmp_path / "t.mkv"
    rc = main(["encode", str(cup), "-o", str(out), "--plain", "--target-vmaf", "90", "--samples", "2",
               "--sample-duration", "0.5", "-preset", "ultrafast", "--json", "-q"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    s = d["samples"]
    assert s["whole"] is False and len(s["ranges"]) == 2
    counts = [c - s["pad"] for _, c in s["ranges"]]
    for p in d["probes"]:
        assert len(p["windows"]) == 2
        assert p["scores"]["vmaf"] == pytest.approx(np.average(p["windows"], weights=counts), abs=1e-6)
    near = min(d["probes"], key=lambda p: abs(p["crf"] - d["crf"]))
    assert d["sample_error"] == pytest.approx(abs(near["windows"][0] - near["windows"][1]) / 2)


def test_target_vmaf_takes_a_second_look_where_its_samples_disagree(tmp_path, capsys, monkeypatch):
    """A 20 s clip whose noise comes and goes: its three samples disagree (a standard error above
    0.5 VMAF), so three more windows are cut and probed once, and the prediction is the six
    windows'. Its standard error is theirs; the text says how many samples were used. Each probe
    encodes a fifth of this short clip, so the look is over the search's budget (a third of the
    frames) unless the budget is lifted: without, the same search takes no second look."""
    import av

    from vmaf_roi import search
    from vmaf_roi.cli import _samples_words
    from vmaf_roi.search import SAMPLE_ERROR_NOTE, standard_error

    src = tmp_path / "waves.mkv"
    rs = np.random.default_rng(3)
    yy, xx = np.mgrid[0:96, 0:128]
    with av.open(str(src), "w") as c:
        # one keyframe: the packet scan takes keyframes for scene cuts, which would move the windows
        st = c.add_stream("libx264", rate=30, options={"preset": "ultrafast", "qp": "0",
                                                         "x264-params": "keyint=600:scenecut=0"})
        st.width, st.height, st.pix_fmt = 128, 96, "yuv420p"
        for i in range(600):
            amp = 70 * (1 + math.cos(2 * math.pi * i / 600)) / 2  # noisy at the ends, clean in the middle
            v = 128 + 60 * np.sin(0.2 * (xx + 2 * i) + 0.1 * yy) + amp * rs.standard_normal((96, 128))
            img = np.repeat(np.clip(v, 0, 255).astype(np.uint8)[..., None], 3, -1)
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode(None):
            c.mux(pkt)
    out = tmp_path / "t.mkv"
    argv = ["encode", str(src), "-o", str(out), "--plain", "--target-vmaf", "90", "--sample-duration", "0.4",
            "-preset", "ultrafast", "--json", "-q", "-y"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert "more" not in d["samples"] and not any(p["more"] for p in d["probes"])  # over the budget
    monkeypatch.setattr(search, "LOOK_BUDGET", math.inf)
    assert main(argv) == 0 and out.is_file()
    d = json.loads(capsys.readouterr().out)
    s = d["samples"]
    assert len(s["ranges"]) == 3 and len(s["more"]["ranges"]) == 3
    both = sorted(s["ranges"] + s["more"]["ranges"])
    assert all(a + n <= b for (a, n), (b, _) in zip(both, both[1:]))
    more = [p for p in d["probes"] if p["more"]]
    assert len(more) == 1 and len(more[0]["windows"]) == 3
    first = [p for p in d["probes"] if not p["more"]]
    assert standard_error(min(first, key=lambda p: abs(p["crf"] - more[0]["crf"]))["windows"]) > SAMPLE_ERROR_NOTE
    assert any(n.startswith("second look: the 3 new samples score") for n in d["notes"])
    near = min(first, key=lambda p: abs(p["crf"] - d["crf"]))
    assert d["sample_error"] == pytest.approx(standard_error(near["windows"] + more[0]["windows"]))
    assert _samples_words(s).startswith("3 + 3 samples")


@needs_clip
def test_target_vmaf_roi_ndjson_events_and_percentile_pool(tmp_path, capsys):
    out = tmp_path / "t.mkv"
    # mbtree off: x264's macroblock tree reads uninitialised stack memory (valgrind, in
    # macroblock_tree_finish), so with it on the same frames can encode differently in a process
    # that has run other work first (seen 0.37 VMAF apart at p5 after test_gaze_quality.py). With
    # it off x264 repeats itself, and the test can hold the reuse below to the probe's own score.
    rc = main(["encode", str(CARPHONE), "-o", str(out), "--target-vmaf", "85", "--pool", "p5", "-frames:v", "60",
               "--set", "encoder_params.mbtree=0", "--ndjson"])
    assert rc == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = {e["type"] for e in events}
    assert kinds == {"status", "progress", "result"}
    stages = {e["stage"] for e in events if e["type"] == "progress"}
    assert any(s.startswith("probe 1: crf") and s.endswith("encode") for s in stages)  # progress per sample encode
    res = events[-1]["result"]
    assert res["pool"] == "p5" and res["roi"] is True and res["samples"]["whole"] is True
    # the samples are the whole (60-frame) input, cut losslessly, and the final encode reuses the
    # probes' maps: at a CRF the search probed, the final encode is that probe's encode again
    probed = {p["crf"]: p["scores"]["vmaf"] for p in res["probes"]}
    if res["crf"] in probed:
        assert res["measured"] == pytest.approx(probed[res["crf"]], abs=1e-6)
        assert res["predicted"] == probed[res["crf"]]
    else:  # no probe within 0.5: the 5th percentile of 60 frames is a step function of the CRF, and
        # the result is the line between the bracketing probes
        below = [c for c, v in probed.items() if v < 85]
        above = [c for c, v in probed.items() if v >= 85]
        assert max(above) < res["crf"] < min(below)
    assert abs(res["measured"] - 85) <= 1.0


@pytest.mark.parametrize("argv, message", [
    (["--save-against", "23", "--plain"], "--save-against with --plain"),
    (["--save-against", "23", "--vmaf-guard", "-1"], "--vmaf-guard -1"),
    (["--save-against", "23", "--vmaf-guard", "nan"], "--vmaf-guard nan"),
    (["--save-against", "60"], "--save-against 60: expected a CRF of libx264"),
    (["--save-against", "23", "--pool", "p5"], "--pool goes with --target-vmaf"),
    (["--target-vmaf", "93", "--save-against", "23"], "choose one"),
    (["--target-vmaf", "120"], "--target-vmaf 120"),
    (["--target-vmaf", "93", "-crf", "20"], "drop -crf"),
    (["--target-vmaf", "93", "--pool", "median"], "--pool 'median'"),
    (["--target-vmaf", "93", "--gaze", "g.csv"], "--gaze goes with --save-against"),
    (["--vmaf-guard", "2"], "--vmaf-guard goes with"),
    (["--save-against", "23", "--gaze", "g.csv", "-ss", "1"], "--gaze with -ss"),
    (["--target-vmaf", "93", "--samples", "0"], "--samples 0"),
    (["--target-vmaf", "93", "--set", "rate_control.value=30"], "drop --set rate_control"),
    (["--target-vmaf", "93", "--set", "filters=scale=88:72"], "filters chain"),
    (["--target-vmaf", "93", "-c:v", "h264_nvenc", "--plain"], "h264_nvenc"),
])
def test_search_refusals_are_one_line(tmp_path, capsys, argv, message):
    clip = CARPHONE if CARPHONE.is_file() else tmp_path / "missing.mkv"
    out = tmp_path / "o.mp4"
    rc = main(["encode", str(clip), "-o", str(out), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


@needs_clip
@pytest.mark.parametrize("mode", [["--target-vmaf", "90"], ["--save-against", "40"]])
def test_search_checks_the_patched_ffmpeg_decodes_the_input_before_probing(tmp_path, capsys, monkeypatch, mode):
    """ROI with libsvtav1 runs in the patched ffmpeg, which may lack the input's decoder (the
    minimal build has no AVI or MPEG-4 part 2): the search says so before its first probe."""
    from vmaf_roi.encode import external

    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'Error opening input: Invalid data found when processing input' >&2\nexit 183\n")
    fake.chmod(0o755)
    monkeypatch.setattr(external, "find_patched_ffmpeg", lambda encoder: str(fake))
    out = tmp_path / "o.mkv"
    rc = main(["encode", str(CARPHONE), "-o", str(out), "-c:v", "libsvtav1", *mode, "--ndjson"])
    cap = capsys.readouterr()
    assert rc == 3 and not out.exists()  # an input this build cannot take: InputError's status
    assert "probe" not in cap.out and "samples" not in cap.out  # nothing was cut or encoded
    err = cap.err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert f"the patched ffmpeg {fake}" in err and "cannot decode it" in err and "Invalid data" in err


@needs_clip
def test_save_against_reports_weights_and_saving(tmp_path, capsys):
    out = tmp_path / "s.mp4"
    rc = main(["encode", str(CARPHONE), "-o", str(out), "--save-against", "30", "-frames:v", "48", "--json", "-q"])
    assert rc == 0
    cap = capsys.readouterr()
    d = json.loads(cap.out)
    assert d["mode"] == "save-against" and d["independent"] is False and d["weights"].startswith("model ")
    m = d["measured"]
    assert m["plain_vmaf"] - m["roi_vmaf"] <= 1.0 + 0.5  # the guard (1.0), measured on the whole clip
    assert d["saving"] == pytest.approx(100 * (m["roi_bitrate"] / m["plain_bitrate"] - 1))
    assert "model judging its own encode" in cap.err and "--gaze" in cap.err
    assert "ROI: " in cap.err and "vs plain" in cap.err and "full-frame VMAF" in cap.err


@needs_clip
def test_batch_search_is_cached_on_a_rerun(tmp_path):
    from vmaf_roi.batch import read_manifest
    from vmaf_roi.cli_batch import main as batch_main

    (tmp_path / "jobs.yaml").write_text(yaml.safe_dump({
        "output_dir": "out",
        "jobs": [{"name": "t", "inputs": [str(CARPHONE)], "output": "{stem}.mp4", "plain": True,
                  "target_vmaf": {"vmaf": 90, "samples": 1, "sample_duration": 0.5, "measure": False}}],
    }))
    assert batch_main([str(tmp_path / "jobs.yaml"), "-q"]) == 0
    man = tmp_path / "out" / ".vmaf-roi-batch.jsonl"
    first = read_manifest(man)["carphone.f120.mp4"]
    assert first["status"] == "done" and first["search"]["cached"] is False and first["search"]["probes"] >= 1
    assert first["crf"] == first["search"]["crf"]
    cached = list((tmp_path / "out" / ".vmaf-roi-search").glob("*.json"))
    assert len(cached) == 1
    # a forced re-run encodes again, with the CRF from the cache: no probe
    assert batch_main([str(tmp_path / "jobs.yaml"), "-q", "--force"]) == 0
    again = read_manifest(man)["carphone.f120.mp4"]
    assert again["search"]["cached"] is True and again["search"]["probes"] == 0
    assert again["crf"] == first["crf"]
    # another target is another search
    data = yaml.safe_load((tmp_path / "jobs.yaml").read_text())
    data["jobs"][0]["target_vmaf"]["vmaf"] = 80
    (tmp_path / "jobs.yaml").write_text(yaml.safe_dump(data))
    assert batch_main([str(tmp_path / "jobs.yaml"), "-q"]) == 0
    other = read_manifest(man)["carphone.f120.mp4"]
    assert other["search"]["cached"] is False and other["crf"] > first["crf"]


def test_batch_refuses_bad_search_keys(tmp_path):
    from vmaf_roi.batch import load_batch

    base = {"output_dir": "out", "jobs": [{"name": "a", "inputs": ["x.mp4"], "output": "{stem}.mp4"}]}
    for job, message in (({"save_against": 23, "plain": True}, "drop plain"),
                         ({"target_vmaf": 93, "save_against": 23}, "choose one"),
                         ({"target_vmaf": {"vmaf": 93, "pol": "p5"}}, "did you mean pool"),
                         ({"save_against": {"crf": 23, "guard": -1}}, "guard"),
                         ({"target_vmaf": "high"}, "expected a number")):
        data = copy_job(base, job)
        with pytest.raises(ConfigError, match=message):
            load_batch(data=data, base_dir=tmp_path)


def copy_job(base: dict, extra: dict) -> dict:
    import copy

    d = copy.deepcopy(base)
    d["jobs"][0].update(extra)
    return d


@needs_clip
def test_probe_vmaf_is_scores_vmaf(tmp_path):
    """The probes' lean libvmaf pass gives what `score` gives, frame by frame."""
    from vmaf_roi import config
    from vmaf_roi.encode import encode
    from vmaf_roi.score import score
    from vmaf_roi.search import make_samples
    from vmaf_roi.vmaf import find_ffmpeg, vmaf_only

    ss = make_samples(CARPHONE, tmp_path, sample_seconds=0.5, count=2, pad_seconds=0)
    assert ss.cut and not ss.whole and ss.frames == 30 and ss.pad == 0 and ss.path.suffix == ".mkv"
    res = encode(ss.path, tmp_path / "p.mkv", config.load(None, ["rate_control.value=30"]), plain=True)
    lean = vmaf_only(find_ffmpeg(), ss.path, res.output)
    full = score(ss.path, res.output).per_frame["vmaf"]
    assert len(lean) == len(full) == 30
    assert max(abs(a - b) for a, b in zip(lean, full)) < 1e-3
    # only some frames scored (the samples' pads left out): the same values for those frames
    part = vmaf_only(find_ffmpeg(), ss.path, res.output, ranges=[(0, 10), (14, 5), (26, 4)])
    assert part == pytest.approx(lean[0:10] + lean[14:19] + lean[26:30], abs=1e-6)


@needs_clip
def test_existing_output_is_kept_without_y(tmp_path, capsys):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"keep me")
    rc = main(["encode", str(CARPHONE), "-o", str(out), "--target-vmaf", "90", "--plain"])
    err = capsys.readouterr().err
    assert rc != 0 and "exists" in err and "-y" in err and err.count("\n") == 1
    assert out.read_bytes() == b"keep me"
    rc = main(["encode", str(CARPHONE), "-o", str(CARPHONE), "--target-vmaf", "90", "--plain", "-y"])
    assert rc != 0 and CARPHONE.stat().st_size > 1000  # never over the input


@needs_clip
def test_unreachable_target_stops_before_the_final_encode(tmp_path, capsys):
    out = tmp_path / "o.mp4"
    rc = main(["encode", str(CARPHONE), "-o", str(out), "--plain", "--target-vmaf", "100", "-frames:v", "30", "-q"])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2, err
    last = err[-1]
    assert last.startswith("vmaf-roi: error: VMAF 100 cannot be reached: even the lowest CRF of the range (0)")
    assert "lower the target" in last
    assert not out.exists()


@pytest.mark.parametrize("fmt,size,codec", [
    ("yuv420p", (96, 72), "h264"), ("yuvj420p", (96, 72), "h264"), ("yuv420p10le", (96, 72), "h264"),
    ("yuv444p", (97, 71), "h264"), ("yuv420p", (97, 71), "ffv1"), ("yuv422p", (97, 72), "ffv1"),
    ("bgr0", (96, 72), "ffv1"), ("gray", (96, 72), "ffv1"),
    ("yuv420p", (97, 71), "rawvideo"), ("yuvj420p", (96, 72), "rawvideo"), ("yuv422p", (97, 72), "rawvideo"),
    ("gray", (96, 72), "rawvideo"), ("yuv420p10le", (96, 72), "rawvideo:h264")])
def test_samples_are_the_input_frames_bit_for_bit(tmp_path, monkeypatch, fmt, size, codec):
    """The samples are lossless: uncompressed where the format allows it and they fit (the
    ``rawvideo`` rows: 8-bit 4:2:0, 4:2:2 and gray in Matroska; 10-bit falls back), else
    H.264 at QP 0 where libx264 takes the pixel format and the size (its decode about 7x cheaper
    than FFV1's), else FFV1 (odd sizes of subsampled chroma, RGB, gray); every sampled frame
    decodes to the input's own pixels."""
    import av

    from vmaf_roi import search
    from vmaf_roi.search import make_samples

    if not codec.startswith("rawvideo"):  # the samples over the size budget
        monkeypatch.setattr(search, "RAW_SAMPLE_BYTES", 0)
    codec = codec.split(":")[-1]
    w, h = size
    src = tmp_path / f"in-{fmt}.mkv"
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(src), "w") as c:
        s = c.add_stream("mjpeg" if fmt.startswith("yuvj") else "ffv1", rate=25)  # FFV1 takes no yuvj
        s.width, s.height, s.pix_fmt = w, h, fmt
        for i in range(300):
            v = 128 + 120 * np.sin(0.07 * (xx + 3 * i) + 0.05 * yy) * np.cos(0.03 * i)
            img = np.clip(np.stack([v, np.roll(v, 9, 1), 255 - v], -1), 0, 255).astype(np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=fmt)):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)

    def planes(f):  # each plane's pixels, without the rows' padding
        if f.format.name in {"bgr0", "rgb0", "bgra", "gbrp"}:  # 8-bit RGB: compared as rgb24, the same values
            return [f.reformat(format="rgb24").to_ndarray()]
        bps = 2 if f.format.components[0].bits > 8 else 1
        return [np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:p.height, :p.width * bps] for p in f.planes]

    def pictures(path):
        with av.open(str(path)) as c:
            st = c.streams.video[0]
            return [planes(f) for f in c.decode(st)], st.codec_context.name

    ss = make_samples(src, tmp_path, sample_seconds=0.4, count=3)
    assert not ss.whole and len(ss.ranges) == 3
    got, name = pictures(ss.path)
    assert name == codec
    want, _ = pictures(src)
    assert len(got) == ss.frames == sum(c for _, c in ss.ranges)
    for g, w in zip(got, [want[i] for s, c in ss.ranges for i in range(s, s + c)]):
        assert len(g) == len(w) and all(np.array_equal(a, b) for a, b in zip(g, w))


@needs_clip
def test_raw_samples_only_where_the_disk_has_room(tmp_path, monkeypatch):
    """Raw samples take at most an eighth of the free space where they are written: with less,
    they are lossless H.264."""
    import collections

    import av

    from vmaf_roi import search

    need = 45 * search.frame_bytes("yuv420p", 176, 144)  # one 15-frame sample and its 30-frame pad
    for free, codec in ((8 * need, "rawvideo"), (8 * need - 8, "h264")):
        usage = collections.namedtuple("usage", "total used free")(10 * free, 0, free)
        monkeypatch.setattr(search.shutil, "disk_usage", lambda path, u=usage: u)
        d = tmp_path / codec
        d.mkdir()
        ss = search.make_samples(CARPHONE, d, sample_seconds=0.5, count=1)
        assert ss.frames == 45
        with av.open(str(ss.path)) as c:
            assert c.streams.video[0].codec_context.name == codec


@needs_clip
def test_raw_samples_encode_as_the_h264_samples_did(tmp_path, monkeypatch):
    """The raw samples are the H.264 samples' frames and chroma siting (left): an ROI probe makes
    the same maps from them and the same encode, byte for byte (x264 without mbtree, which reads
    uninitialised memory)."""
    import av

    from vmaf_roi import config, search
    from vmaf_roi.encode import encode

    cfg = search._crf_cfg(config.load(None, ["encoder_params.mbtree=0"]), 30, drop_audio=True)
    got = {}
    for codec, budget in (("rawvideo", search.RAW_SAMPLE_BYTES), ("h264", 0)):
        monkeypatch.setattr(search, "RAW_SAMPLE_BYTES", budget)
        d = tmp_path / codec
        d.mkdir()
        ss = search.make_samples(CARPHONE, d, sample_seconds=0.5, count=1)
        with av.open(str(ss.path)) as c:
            assert c.streams.video[0].codec_context.name == codec
        encode(ss.path, d / "roi.mkv", cfg)
        with av.open(str(d / "roi.mkv")) as c:
            got[codec] = [bytes(p) for p in c.demux(video=0) if p.size]
    assert got["rawvideo"] and got["rawvideo"] == got["h264"]


def test_samples_count_the_frames_that_decode_not_the_packets(tmp_path):
    """An input whose first packets do not decode (a stream cut after its keyframe, as box.mp4's
    first picture): the samples' frame count and scored frames are the frames the cut decoded, the
    count libvmaf will score, not the packets the scan counted."""
    import av

    from vmaf_roi.search import make_samples, scan

    full, cut = tmp_path / "full.mkv", tmp_path / "cut.mkv"
    with av.open(str(full), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 96, 72, "yuv420p"
        s.options = {"bf": "0", "g": "20", "preset": "veryfast"}
        for i in range(60):
            img = np.full((72, 96, 3), (4 * i) % 256, dtype=np.uint8)
            img[:, (i * 3) % 96:] = 200
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    with av.open(str(full)) as src, av.open(str(cut), "w") as dst:
        o = dst.add_stream_from_template(src.streams.video[0])
        for n, pkt in enumerate(src.demux(src.streams.video[0])):
            if pkt.size and n >= 3:  # the keyframe and the next two gone: frames 3-19 cannot decode
                pkt.stream = o
                dst.mux(pkt)
    assert scan(cut).frames == 57
    with av.open(str(cut)) as c:
        decodable = sum(1 for _ in c.decode(video=0))
    assert decodable < 57
    ss = make_samples(cut, tmp_path)
    assert ss.whole
    with av.open(str(ss.path)) as c:
        assert sum(1 for _ in c.decode(video=0)) == ss.frames == ss.scored == decodable


def test_packet_scan_matches_the_decode_scan_and_falls_back(tmp_path):
    """The scan reads packets, not pictures: the same frame count and frame times as a decode on
    a B-frame H.264 clip with keyframes at its two scene changes, which are its cuts; an
    intra-only stream has no cuts; duplicate timestamps fall back to the decode scan."""
    import av

    from vmaf_roi.search import _scan_decode, scan, scan_packets

    clip = tmp_path / "cuts.mp4"
    yy, xx = np.mgrid[0:96, 0:128]
    with av.open(str(clip), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        s.options = {"bf": "2", "g": "250", "preset": "veryfast", "x264-params": "keyint-min=1"}
        for i in range(60):  # three scenes of 20 frames: other stripes, each moving
            fy, fx = [(0.0, 0.05), (0.12, 0.0), (0.07, 0.09)][i // 20]
            v = 128 + 100 * np.sin(fx * (xx + 2 * i) + fy * yy)
            img = np.clip(np.stack([v, np.roll(v, 20, 1), 255 - v], -1), 0, 255).astype(np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    fast, slow = scan_packets(clip), _scan_decode(clip)
    assert fast is not None and fast.frames == slow.frames == 60
    assert fast.times == pytest.approx(slow.times)
    assert fast.cuts == slow.cuts == [20, 40]
    assert scan(clip) == fast and scan(clip, decode=True) == slow
    # intra-only: every packet a keyframe, so keyframes say nothing about scenes
    intra = tmp_path / "intra.mkv"
    with av.open(str(clip)) as src, av.open(str(intra), "w") as dst:
        o = dst.add_stream("mjpeg", rate=25)
        o.width, o.height, o.pix_fmt = 128, 96, "yuvj420p"
        for f in src.decode(video=0):
            for pkt in o.encode(f.reformat(format="yuvj420p")):
                dst.mux(pkt)
        for pkt in o.encode(None):
            dst.mux(pkt)
    sc = scan_packets(intra)
    assert sc is not None and sc.frames == 60 and sc.cuts == []
    # a raw H.264 stream has no timestamps on its packets: the decode scan decides
    raw = tmp_path / "cuts.h264"
    with av.open(str(clip)) as src, av.open(str(raw), "w", format="h264") as dst:
        o = dst.add_stream_from_template(src.streams.video[0])
        for pkt in src.demux(src.streams.video[0]):
            if pkt.size:
                pkt.stream = o
                dst.mux(pkt)
    assert scan_packets(raw) is None and scan(raw).frames == 60
