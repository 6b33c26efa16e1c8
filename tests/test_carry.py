"""Maps carried along motion: exported motion vectors and block flow on a moving textured square."""

from __future__ import annotations

import av
import numpy as np
import pytest

from vmaf_roi import carry

W, H = 160, 96
SIDE = 32
STEP = (4, 2)  # pixels per frame (x, y)
N = 12


def square_at(t: int) -> tuple[int, int]:
    return 24 + STEP[0] * t, 20 + STEP[1] * t


def truth(t: int, w: int = W, h: int = H) -> np.ndarray:
    """Mask of the square in frame t at map size (w, h)."""
    x0, y0 = square_at(t)
    ys = (np.arange(h) + 0.5) * H / h
    xs = (np.arange(w) + 0.5) * W / w
    return ((ys[:, None] >= y0) & (ys[:, None] < y0 + SIDE) & (xs[None] >= x0) & (xs[None] < x0 + SIDE))


def make_clip(path: str, codec: str) -> str:
    """A textured square moving over a static textured background, with B-frames."""
    rng = np.random.default_rng(7)
    bg = rng.integers(40, 120, (H // 4, W // 4), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    tex = rng.integers(130, 255, (SIDE // 4, SIDE // 4), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    with av.open(path, "w") as o:
        s = o.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        if codec == "libx264":
            s.options = {"crf": "16", "preset": "medium", "bf": "3", "refs": "1", "g": "50", "sc_threshold": "0"}
        else:  # MPEG-4 part 2, as in AVI files
            s.codec_context.max_b_frames = 2
            s.options = {"qscale": "2", "g": "50"}
        for t in range(N):
            y = bg.copy()
            x0, y0 = square_at(t)
            y[y0:y0 + SIDE, x0:x0 + SIDE] = tex
            f = av.VideoFrame.from_ndarray(np.stack([y] * 3, -1), format="rgb24")
            f.pts = t
            for p in s.encode(f):
                o.mux(p)
        for p in s.encode(None):
            o.mux(p)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("carry")
    return {"h264": make_clip(str(d / "square.mp4"), "libx264"), "mpeg4": make_clip(str(d / "square.avi"), "mpeg4")}


@pytest.fixture
def clip(clips) -> str:
    return clips["h264"]


def decoded(path: str, export: bool = True):
    with av.open(path) as c:
        st = c.streams.video[0]
        if export:
            st.codec_context.options = dict(carry.EXPORT_MVS)
        out = [(carry.picture_type(f), carry.motion_vectors(f), carry.luma(f, W // 2, H // 2)) for f in c.decode(st)]
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_exported_vectors_point_back_to_the_square(clip):
    frames = decoded(clip)
    types = [t for t, _, _ in frames]
    assert "B" in types and "P" in types, types  # the clip exercises both kinds of reference
    spans = carry.reference_spans(types)
    for i, ((t, mvs, _), (past, fut)) in enumerate(zip(frames[1:], spans[1:]), 1):
        assert mvs is not None and len(mvs), i
        # the nearer reference is the one assumed (with b-pyramid the far one of an outer
        # B-frame is the middle B-frame, not the anchor): a past vector points back where the
        # square came from (-x), a future one ahead (+x), STEP per frame of distance
        sign, span = (-1, past) if past and (not fut or past <= fut) else (1, fut)
        rows = mvs[mvs["source"] * sign > 0]
        mx = rows["motion_x"] / rows["motion_scale"]
        moving = mx[np.abs(mx) > 0.5]  # the square's blocks (the background stays)
        assert len(moving) >= 2, (i, t)
        assert np.median(moving) == pytest.approx(sign * STEP[0] * span, abs=1.0), (i, t, sign, span)


def centroid(m: np.ndarray) -> np.ndarray:
    """Centre of mass of a map, in frame pixels (x, y)."""
    h, w = m.shape
    ys, xs = np.mgrid[0:h, 0:w]
    wt = m.astype(np.float64)
    return np.array([((xs + 0.5) * wt).sum() * W / w, ((ys + 0.5) * wt).sum() * H / h]) / wt.sum()


def true_centre(t: int) -> np.ndarray:
    x0, y0 = square_at(t)
    return np.array([x0 + SIDE / 2, y0 + SIDE / 2])


@pytest.mark.parametrize("codec,map_size", [("h264", (W, H)), ("h264", (64, 40))])
def test_carried_map_follows_the_square(clips, codec, map_size):
    mw, mh = map_size
    frames = decoded(clips[codec])
    assert [t for t, _, _ in frames].count("B") >= 3
    fields = carry.fields([m for _, m, _ in frames], [t for t, _, _ in frames], W, H)
    c = carry.Carrier()
    m0 = (truth(0, mw, mh) * 255).astype(np.uint8)
    c.key(0, m0)
    for i in range(1, len(frames)):
        m = c.carry(i, fields[i])
        assert m.shape == (mh, mw) and m.dtype == np.uint8
        gt = truth(i, mw, mh)
        moved, held = iou(m >= 128, gt), iou(m0 >= 128, gt)
        assert moved > held + 0.1, (i, moved, held)
        # where the square uncovers background, that block has no motion and keeps the old map
        # (up to one 8-pixel block of trail behind the 32-pixel square); the centre follows
        assert np.abs(centroid(m) - true_centre(i)).max() < 7.0, (i, centroid(m), true_centre(i))
    assert iou(m >= 128, truth(N - 1, mw, mh)) > 0.5 and iou(m0 >= 128, truth(N - 1, mw, mh)) == 0


def test_mpeg4_b_frames_borrow_the_next_anchors_motion(clips):
    frames = decoded(clips["mpeg4"])
    types = [t for t, _, _ in frames]
    b = [i for i, t in enumerate(types) if t == "B" and frames[i][1] is not None]
    assert b
    # FFmpeg's MPEG-4 decoder exports B-frame vectors as all zero (it keeps no B-frame motion)
    assert all(not frames[i][1]["motion_x"].any() for i in b)
    fl = carry.fields([m for _, m, _ in frames], types, W, H)
    spans = carry.reference_spans(types)
    checked = []
    for i in b:
        past, fut = spans[i]
        if not fut or frames[i + fut][1] is None:  # no later anchor with vectors to borrow from
            continue
        d = fl[i].displacement(1)
        x0, y0 = square_at(i)
        inside = d[-(-y0 // 8):(y0 + SIDE) // 8, -(-x0 // 8):(x0 + SIDE) // 8, 0]  # blocks wholly in it
        checked.append(np.median(inside))
    # the square moves STEP[0] a frame (the MPEG-4 encoder's own vectors stray on a few blocks)
    assert len(checked) >= 4 and np.median(checked) == pytest.approx(-STEP[0], abs=1.0), checked


def test_block_flow_follows_the_square(clip):
    frames = decoded(clip, export=False)
    c = carry.Carrier()
    m0 = (truth(0) * 255).astype(np.uint8)
    c.key(0, m0)
    for i in range(1, N):
        field = carry.block_flow(frames[i - 1][2], frames[i][2], (W, H), block=4, radius=3)
        m = c.carry(i, field)
        assert np.abs(centroid(m) - true_centre(i)).max() < 7.0, (i, centroid(m), true_centre(i))
    assert iou(m >= 128, truth(N - 1)) > 0.5


def test_no_side_data_holds_the_map(clip):
    frames = decoded(clip, export=False)
    assert all(mvs is None for _, mvs, _ in frames)
    assert carry.field_from_mvs(None, W, H, 1, 0) is None
    m = np.random.default_rng(1).integers(0, 256, (40, 64), dtype=np.uint8)
    assert carry.warp(m, None) is m
    c = carry.Carrier()
    c.key(0, m)
    assert np.array_equal(c.carry(1, None), m)


def test_intra_frame_has_no_field(clip):
    t, mvs, _ = decoded(clip)[0]
    assert t == "I" and carry.field_from_mvs(mvs, W, H, 0, 0) is None


def uniform(dx: float, dy: float, past: bool = True, span: int = 1) -> carry.MotionField:
    d = np.zeros((H // 8, W // 8, 2), np.float32)
    d[...] = (dx, dy)
    if past:
        return carry.MotionField(W, H, 8, 8, d, span)
    return carry.MotionField(W, H, 8, 8, None, 0, d, span)


def test_edges_take_the_edge_value():
    m = np.zeros((H, W), np.uint8)
    m[:, -1] = 200  # right edge column
    # content came from far beyond the right edge: every pixel samples the edge column
    out = carry.warp(m, uniform(10 * W, 0))
    assert (out == 200).all()
    out = carry.warp(m, uniform(-10 * W, 0))  # from beyond the left edge: column 0
    assert (out == 0).all()


def test_future_vectors_point_the_other_way_and_scale():
    m = np.zeros((H, W), np.float32)
    m[40:56, 40:56] = 1.0
    # content at x is at x+8 two frames later: one frame earlier it was at x-4
    back = carry.warp(m, uniform(8, 0, past=False, span=2), back=1)
    fwd = carry.warp(m, uniform(-4, 0, past=True, span=1), back=1)
    assert np.allclose(back, fwd)
    assert back[48, 44:60].min() == pytest.approx(1.0) and back[48, 40] == pytest.approx(0.0)


def test_holes_take_the_neighbours_motion():
    d = np.full((4, 4, 2), np.nan, np.float32)
    d[0, 0] = (2, 0)
    f = carry.MotionField(32, 32, 8, 8, d, 1)
    out = f.displacement(1)
    assert out[1, 1, 0] == pytest.approx(2.0) and out[3, 3, 0] == 0.0  # 2 fill passes reach (2,2)


def test_reference_spans_in_display_order():
    assert carry.reference_spans(list("IBBBPBBP")) == [(0, 0), (1, 3), (2, 2), (3, 1), (4, 0), (1, 2), (2, 1), (3, 0)]
    assert carry.reference_spans(list("IPPB")) == [(0, 0), (1, 0), (1, 0), (1, 0)]


def test_carry_back_and_between_follow_the_square(clip):
    frames = decoded(clip)
    spans = carry.reference_spans([t for t, _, _ in frames])
    fields = [carry.field_from_mvs(mvs, W, H, *sp) for (_, mvs, _), sp in zip(frames, spans)]
    a, b = 2, 10  # two "model" frames (P-frames here) and the 7 frames between them
    ma, mb = (truth(a) * 255).astype(np.uint8), (truth(b) * 255).astype(np.uint8)
    back = carry.carry_back(mb, fields[a + 1:b + 1])
    assert len(back) == b - a
    c = carry.Carrier()
    c.key(a, ma)
    fwd = [c.carry(i, fields[i]) for i in range(a + 1, b)]
    mid = carry.between(fwd, back[1:])
    assert len(mid) == b - a - 1
    for i, (f, k, m) in enumerate(zip(fwd, back[1:], mid), a + 1):
        gt = truth(i)
        # carried back from frame b: far nearer than b's map held (the square's half-background
        # edge blocks have zero vectors, so it lags by about a pixel a frame)
        assert iou(k >= 128, gt) > iou(mb >= 128, gt) + 0.3, (i, iou(k >= 128, gt))
        assert np.abs(centroid(k) - true_centre(i)).max() < 0.5 * np.abs(centroid(mb) - true_centre(i)).max()
        assert np.abs(centroid(m) - true_centre(i)).max() < 7.0, (i, centroid(m), true_centre(i))
        # the linear blend of the two model maps is two half squares where the square is not
        lin = np.rint((1 - (i - a) / (b - a)) * ma.astype(np.float32) + (i - a) / (b - a) * mb).astype(np.uint8)
        assert iou(m >= 128, gt) > iou(lin >= 128, gt), i
    with pytest.raises(ValueError):
        carry.between(fwd, back)


# -- wired into the encode pass: saliency.carry motion (decode.VideoSource + pipeline.MapSchedule) --
from conftest import PH, corr  # noqa: E402  (PH: a brightness curve, its map the bright square, moving)


def schedule_maps(path: str, *sets: str, filters: str | None = None):
    """(applied model-resolution maps per frame, the Items, the source's notes) of one map pass."""
    from vmaf_roi import config
    from vmaf_roi.decode import VideoSource
    from vmaf_roi.pipeline import Item, MapSchedule
    from vmaf_roi.saliency import SaliencyModel

    cfg = config.load_typed(None, [f"saliency.model={PH}", *sets])
    with VideoSource(path, filters, motion=cfg.saliency.carry == "motion") as src:
        sch = MapSchedule(cfg.saliency, SaliencyModel(PH), None, copy_packets=False)
        try:
            got = [(x, m) for x, m in sch.run(src.frames, src.motion if src.has_motion else None)
                   if isinstance(x, Item)]
        finally:
            sch.close()
        return [np.asarray(m) for _, m in got], [x for x, _ in got], src.notes()  # Blends made



@pytest.mark.parametrize("interpolate", [True, False])
def test_carried_maps_are_closer_to_every_frame_maps_than_blend(clip, interpolate):
    every, _, _ = schedule_maps(clip, "saliency.stride=1")
    sets = ("saliency.stride=8", f"saliency.interpolate={str(interpolate).lower()}")
    plain, items, _ = schedule_maps(clip, *sets)
    moved, items_c, _ = schedule_maps(clip, *sets, "saliency.carry=motion")
    carried = [i for i, x in enumerate(items_c) if x.prediction is None]
    assert carried == [i for i, x in enumerate(items) if x.prediction is None] and len(carried) == N - 2
    for i in range(N):
        if i not in carried:  # the model's own frames: the same map either way
            assert np.array_equal(moved[i], plain[i])
    c_plain = np.mean([corr(plain[i], every[i]) for i in carried])
    c_moved = np.mean([corr(moved[i], every[i]) for i in carried])
    # measured: blend 0.75 -> 0.95 carried both ways; hold 0.59 -> 0.94 carried forward
    assert c_moved > c_plain + 0.15 and c_moved > 0.9, (c_plain, c_moved)


def test_wired_schedule_equals_the_module_offline(clip):
    """The fields the decode thread sets and the maps with_maps applies are those of the
    module run over the whole clip at once (benchmarks/bench_carry.py's mv-bi)."""
    frames = decoded(clip)
    fields = carry.fields([m for _, m, _ in frames], [t for t, _, _ in frames], W, H)
    maps, items, _ = schedule_maps(clip, "saliency.stride=8", "saliency.carry=motion")
    assert [x.index for x in items] == list(range(N))
    for x, f in zip(items, fields):
        assert (x.field is None) == (f is None), x.index
        if f is not None:
            assert (x.field.past_span, x.field.future_span) == (f.past_span, f.future_span)
            assert np.array_equal(x.field.displacement(1), f.displacement(1)), x.index
    keys = [0, 8]
    assert [x.index for x in items if x.prediction is not None] == keys
    c = carry.Carrier()
    want = {}
    for i in range(N):
        want[i] = c.key(i, maps[i]) if i in keys else c.carry(i, fields[i])
    back = carry.carry_back(maps[8], fields[1:9])[1:]
    for i, m in zip(range(1, 8), carry.between([want[i] for i in range(1, 8)], back)):
        want[i] = m
    for i in range(N):  # 9..11: after the last model map, carried forward only
        assert np.array_equal(maps[i], want[i]), i


@pytest.mark.parametrize("interpolate", ["true", "false"])
def test_carried_encode_threaded_equals_sequential(clip, tmp_path, interpolate):
    from vmaf_roi import config
    from vmaf_roi.encode import SaliencyTrack, encode

    out = []
    for la in (0, 3):
        t = SaliencyTrack()
        cfg = config.load(None, [f"saliency.model={PH}", "saliency.stride=4", "saliency.carry=motion",
                                 f"saliency.interpolate={interpolate}", f"saliency.lookahead={la}"])
        r = encode(clip, tmp_path / f"o{la}.mp4", cfg, track=t)
        out.append((r, t))
    (seq, ts), (thr, tt) = out
    assert seq.frames == thr.frames == N and seq.inferences == thr.inferences == 3
    assert sorted(ts.maps) == sorted(tt.maps) == list(range(N))
    assert all(np.array_equal(ts.maps[i], tt.maps[i]) for i in range(N))
    assert seq.roi_digest == thr.roi_digest
    # and carrying did change the maps (not silently off)
    t = SaliencyTrack()
    encode(clip, tmp_path / "none.mp4", config.load(None, [f"saliency.model={PH}", "saliency.stride=4",
                                                           f"saliency.interpolate={interpolate}"]), track=t)
    assert any(not np.array_equal(t.maps[i], ts.maps[i]) for i in range(N))


def test_no_vectors_or_a_timing_filter_falls_back_to_the_blend(tmp_path, clip):
    from vmaf_roi.synth import make_clip as synth_clip

    ffv1 = synth_clip(tmp_path / "f.mkv", width=96, height=64, frames=6, seed=3, pan=True, codec="ffv1").path
    for path, filters, why in ((str(ffv1), None, "ffv1 decoder exports no motion vectors"),
                               (clip, "fps=50", "filter fps may change")):
        want, _, notes0 = schedule_maps(path, "saliency.stride=4", filters=filters)
        got, items, notes = schedule_maps(path, "saliency.stride=4", "saliency.carry=motion", filters=filters)
        assert all(np.array_equal(a, b) for a, b in zip(want, got)) and len(want) == len(got)
        assert all(x.field is None for x in items)
        assert [n for n in notes if n not in notes0] == [n for n in notes if why in n] and len(notes) == len(notes0) + 1
    # a chain that only scales keeps the vectors (they describe the whole picture still)
    _, items, notes = schedule_maps(clip, "saliency.stride=4", "saliency.carry=motion", filters="scale=80:48")
    assert sum(x.field is not None for x in items) >= N - 2 and not notes


def test_carry_setting_is_validated():
    from vmaf_roi import config
    from vmaf_roi.errors import ConfigError

    assert config.load_typed(None, ["saliency.carry=motion"]).saliency.carry == "motion"
    assert config.load_typed().saliency.carry == "none"
    with pytest.raises(ConfigError, match="saliency.carry: expected one of none, motion"):
        config.load(None, ["saliency.carry=flow"])


def test_carried_encode_copies_audio_unchanged(tmp_path):
    """B-frames (and the packets of copied streams after them) wait in the decode thread for
    the next I/P frame: the output still has every frame and the same audio."""
    from vmaf_roi import config
    from vmaf_roi.encode import SaliencyTrack, encode
    from vmaf_roi.synth import make_clip as synth_clip

    src = synth_clip(tmp_path / "a.mp4", width=160, height=96, frames=12, fps=24, audio=True, pan=True).path
    got = {}
    for mode in ("none", "motion"):
        t = SaliencyTrack()
        cfg = config.load(None, [f"saliency.model={PH}", "saliency.stride=4", "saliency.lookahead=3",
                                 f"saliency.carry={mode}"])
        r = encode(src, tmp_path / f"{mode}.mp4", cfg, track=t)
        with av.open(str(r.output)) as c:
            audio = [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]
        with av.open(str(r.output)) as c:
            frames = sum(1 for _ in c.decode(video=0))
        got[mode] = (r.frames, frames, audio, t.maps)
    assert got["none"][:2] == got["motion"][:2] == (12, 12)
    assert got["none"][2] == got["motion"][2] and got["none"][2]
    assert any(not np.array_equal(got["none"][3][i], got["motion"][3][i]) for i in range(12))


def test_b_frames_wait_for_the_next_anchor_in_order(clip, monkeypatch):
    """The decode thread's field runs: Items and packets leave in order, each Item with the
    field the whole-clip computation gives it; a B run longer than MAX_B_RUN leaves early
    (with past vectors only) and the frames after it still get their right spans."""
    from vmaf_roi import pipeline
    from vmaf_roi.decode import FrameMotion
    from vmaf_roi.pipeline import Item

    monkeypatch.setattr(pipeline, "MAX_B_RUN", 2)
    frames = decoded(clip)
    types = [t for t, _, _ in frames]
    assert "BBB" in "".join(types)  # a run longer than the cap
    want = carry.fields([m for _, m, _ in frames], types, W, H)
    runs, out = pipeline._FieldRuns(), []
    for i, (t, mvs, _) in enumerate(frames):
        out += runs.packet(f"packet{i}")
        out += runs.add(Item(i, None, None, False), FrameMotion(t, mvs, W, H))
    out += runs.finish()
    items = [x for x in out if isinstance(x, Item)]
    assert [x.index for x in items] == list(range(N))
    assert [x for x in out if isinstance(x, str)] == [f"packet{i}" for i in range(N)]
    for k, x in enumerate(out):  # a packet leaves after the Items decoded before it
        if isinstance(x, str):
            assert all(y.index < int(x[6:]) for y in out[:k] if isinstance(y, Item))
    early, pos, run = 0, [0] * N, 0  # pos: place of a B-frame in its run, 0-based
    for i, t in enumerate(types):
        run = run + 1 if t == "B" else 0
        pos[i] = run - 1
    run_len = {}
    for i in range(N):
        if types[i] == "B":
            run_len[i] = next(j for j in range(i, N + 1) if j == N or types[j] != "B") - (i - pos[i])
    for i, (x, f) in enumerate(zip(items, want)):
        if types[i] == "B" and pos[i] < run_len[i] // 2 * 2:  # the cap (2) was reached: left early
            assert x.field.future_span == 0 and f.future_span > 0, i
            assert x.field.past_span == f.past_span, i
            early += 1
        else:
            assert (x.field is None) == (f is None), i
            if f is not None:
                assert (x.field.past_span, x.field.future_span) == (f.past_span, f.future_span), i
                assert np.array_equal(x.field.displacement(1), f.displacement(1)), i
    assert early >= 2
