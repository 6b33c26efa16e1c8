from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from vmaf_roi.decode import VideoSource
from vmaf_roi.encode import SaliencyTrack, encode
from vmaf_roi.errors import InputError
from vmaf_roi import native
from vmaf_roi.pipeline import Item, MapState, quantise, threaded, with_maps
from vmaf_roi.roi import Blend
from vmaf_roi.synth import make_clip
from conftest import PH, ph_cfg as cfg


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory):
    """Two different scenes back to back: a scene cut at frame 10."""
    d = tmp_path_factory.mktemp("cut")
    a, b = d / "a.mkv", d / "b.mkv"
    make_clip(a, width=160, height=96, frames=10, seed=1, codec="ffv1")
    make_clip(b, width=160, height=96, frames=10, seed=2, pan=True, codec="ffv1")
    import av
    from fractions import Fraction

    out = d / "cut.mkv"
    with av.open(str(out), "w") as o:
        s = o.add_stream("ffv1", rate=24)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        s.time_base = s.codec_context.time_base = Fraction(1, 24)
        i = 0
        for src in (a, b):
            with av.open(str(src)) as c:
                for f in c.decode(video=0):
                    f.pts, f.time_base = i, Fraction(1, 24)
                    i += 1
                    for p in s.encode(f):
                        o.mux(p)
        for p in s.encode(None):
            o.mux(p)
    return out


@pytest.mark.parametrize("stride", [1, 3, 8])
def test_threaded_equals_sequential(cut_clip, tmp_path, stride):
    seq = encode(cut_clip, tmp_path / "seq.mp4", cfg(f"saliency.stride={stride}", "saliency.lookahead=0"))
    thr = encode(cut_clip, tmp_path / "thr.mp4", cfg(f"saliency.stride={stride}", "saliency.lookahead=4"))
    assert seq.roi_digest and seq.roi_digest == thr.roi_digest
    assert seq.inferences == thr.inferences
    assert seq.frames == thr.frames == 20


def test_scene_cut_and_change_trigger_inference(cut_clip, tmp_path):
    no_cut = encode(cut_clip, tmp_path / "a.mp4", cfg("saliency.stride=100", "saliency.scene_cut=false"))
    cut = encode(cut_clip, tmp_path / "b.mp4", cfg("saliency.stride=100"))
    assert no_cut.inferences == 1 and cut.inferences == 2  # frame 0, then the cut at frame 10
    changed = encode(cut_clip, tmp_path / "c.mp4", cfg("saliency.stride=100", "saliency.change_threshold=1"))
    assert changed.inferences > cut.inferences  # the pan in the second scene keeps changing the picture


def test_decode_error_mid_stream_surfaces_and_leaves_nothing(cut_clip, tmp_path, monkeypatch):
    real = VideoSource._decoded

    def failing(self, on_packet=None):
        for i, f in enumerate(real(self, on_packet)):
            if i == 7:
                raise InputError(f"{self.path}: decode error after 7 frames (test)")
            yield f

    monkeypatch.setattr(VideoSource, "_decoded", failing)
    with pytest.raises(InputError, match="after 7 frames"):
        encode(cut_clip, tmp_path / "o.mp4", cfg("saliency.lookahead=3"))
    assert list(tmp_path.iterdir()) == []


def test_encoder_side_failure_stops_the_producer_without_deadlock(cut_clip, tmp_path):
    # In a child process with a timeout: a deadlock fails the test instead of hanging it.
    script = textwrap.dedent(f"""
        import threading, sys
        from vmaf_roi import config
        from vmaf_roi.encode import SaliencyTrack, encode
        from vmaf_roi.errors import EncodeError
        import vmaf_roi.encode as E
        real = E.RoiAttacher.attach
        calls = {{"n": 0}}
        def attach(self, *a, **k):
            calls["n"] += 1
            if calls["n"] == 3:
                raise EncodeError("boom at frame 3")
            return real(self, *a, **k)
        E.RoiAttacher.attach = attach
        cfg = config.load(None, ["saliency.model={PH}", "saliency.lookahead=2", "saliency.stride=1"])
        try:
            encode({str(cut_clip)!r}, {str(tmp_path / "o.mp4")!r}, cfg)
        except EncodeError as e:
            print("raised:", e)
        print("threads:", sorted(t.name for t in threading.enumerate() if t.name.startswith("vmaf-roi")))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "raised: boom at frame 3" in proc.stdout and "threads: []" in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_threaded_keeps_order_raises_where_it_failed_and_stops_on_close():
    import threading

    def gen(fail_at=None):
        for i in range(50):
            if i == fail_at:
                raise ValueError(f"failed at {i}")
            yield i

    assert list(threaded(gen, 3, "vmaf-roi-test")) == list(range(50))
    got = []
    with pytest.raises(ValueError, match="failed at 7"):
        for x in threaded(lambda: gen(7), 3, "vmaf-roi-test"):
            got.append(x)
    assert got == list(range(7))
    closed = threading.Event()

    def endless():
        try:
            while True:
                yield 1
        finally:
            closed.set()  # the worker closes what it iterates

    it = threaded(endless, 2, "vmaf-roi-test")
    assert next(it) == 1
    it.close()
    assert closed.is_set() and not any(t.name == "vmaf-roi-test" for t in threading.enumerate())


# -- map blending and smoothing (with_maps / MapState), on hand-made items ----------------------
def _items(preds: dict[int, np.ndarray], n: int, cuts: tuple[int, ...] = ()):
    """n frames; frame i carries a model output when i is in preds (a float map in [0, 1])."""
    return [Item(i, f"frame{i}", preds.get(i), i in cuts) for i in range(n)]


def _maps(stream, interpolate: bool, smoothing: float = 0.0):
    state = MapState(smoothing, None)
    return [(x.index if isinstance(x, Item) else x, m) for x, m in with_maps(iter(stream), state, interpolate)]


A = np.full((4, 6), 40 / 255, np.float32)  # -> 40 as uint8
B = np.tile(np.arange(0, 240, 40, dtype=np.float32) / 255, (4, 1))  # columns 0, 40, ..., 200


def test_frames_between_two_maps_get_a_blend_by_position():
    out = _maps(_items({0: A, 4: B}, 6), interpolate=True)
    a, b = np.full((4, 6), 40.0), np.tile(np.arange(0, 240, 40, dtype=np.float64), (4, 1))
    assert [i for i, _ in out] == list(range(6))  # encode order kept
    assert np.array_equal(out[0][1], a.astype(np.uint8)) and np.array_equal(out[4][1], b.astype(np.uint8))
    for j in (1, 2, 3):  # w = j/4 of the way from A to B: a Blend, made only when asked
        m = out[j][1]
        assert isinstance(m, Blend) and m.weight == j / 4 and m.a is out[0][1] and m.b is out[4][1]
        assert np.array_equal(m, np.rint((1 - j / 4) * a + j / 4 * b).astype(np.uint8)), j
    assert out[5][1] is out[4][1]  # after the last map: held
    assert all(np.asarray(m).dtype == np.uint8 for _, m in out)


def test_held_maps_and_no_blend_across_a_scene_cut():
    held = _maps(_items({0: A, 4: B}, 6), interpolate=False)
    assert all(np.array_equal(m, held[0][1]) for _, m in held[:4])
    cut = _maps(_items({0: A, 4: B}, 6, cuts=(4,)), interpolate=True)
    assert all(np.array_equal(m, cut[0][1]) for _, m in cut[:4])  # the old scene keeps its map
    assert np.array_equal(cut[4][1], held[4][1])


def test_packets_keep_their_place_among_held_frames():
    stream = _items({0: A, 3: B}, 4)
    stream.insert(2, "pkt-a")
    stream.insert(4, "pkt-b")
    out = _maps(stream, interpolate=True)
    assert [i for i, _ in out] == [0, 1, "pkt-a", 2, "pkt-b", 3]
    assert [m is None for _, m in out] == [False, False, True, False, True, False]


def test_smoothing_weighs_the_previous_map_except_on_a_cut():
    alpha = 0.75
    out = _maps(_items({0: A, 1: B, 2: A}, 3, cuts=(2,)), interpolate=True, smoothing=alpha)
    key0 = np.rint(A * 255).astype(np.uint8)
    assert np.array_equal(out[0][1], key0)  # nothing to smooth with yet
    expect1 = np.rint(np.clip(alpha * (key0 / 255) + (1 - alpha) * B, 0, 1) * 255).astype(np.uint8)
    assert np.abs(out[1][1].astype(int) - expect1).max() <= 1  # float32 in the pipeline
    assert not np.array_equal(out[1][1], np.rint(B * 255).astype(np.uint8))  # really smoothed
    assert np.array_equal(out[2][1], key0)  # a cut starts afresh


def test_a_track_hands_out_made_maps_and_replays_the_blends(cut_clip, tmp_path):
    """Blended frames: the track's maps are made uint8 arrays (scores, agreement), and an
    encode from the track plans the Blends themselves again, so it applies the same ROI."""
    t = SaliencyTrack()
    first = encode(cut_clip, tmp_path / "a.mp4", cfg("saliency.stride=3"), track=t)
    assert isinstance(t.maps.raw(1), Blend) and isinstance(t.maps.raw(0), np.ndarray)
    assert isinstance(t.maps[1], np.ndarray) and t.maps[1].dtype == np.uint8
    assert np.array_equal(t.maps[1], np.asarray(t.maps.raw(1))) and sorted(t.maps) == list(range(20))
    again = encode(cut_clip, tmp_path / "b.mp4", cfg("saliency.stride=3"), track=t)
    assert again.inferences == 0 and again.roi_digest == first.roi_digest


def test_smoothed_and_interpolated_encode_applies_the_blended_maps(cut_clip, tmp_path):
    """End to end: the maps an encode applies with smoothing differ from those without, frame by frame."""
    plain_t, smooth_t = SaliencyTrack(), SaliencyTrack()
    encode(cut_clip, tmp_path / "a.mp4", cfg("saliency.stride=3"), track=plain_t)
    encode(cut_clip, tmp_path / "b.mp4", cfg("saliency.stride=3", "saliency.smoothing=0.9"), track=smooth_t)
    assert sorted(plain_t.maps) == sorted(smooth_t.maps) == list(range(20))
    assert np.array_equal(plain_t.maps[0], smooth_t.maps[0])
    assert any(not np.array_equal(plain_t.maps[i], smooth_t.maps[i]) for i in range(3, 10))


@pytest.mark.skipif(native.quantise is None, reason="no C helpers here (built without a C compiler, or VMAF_ROI_NATIVE=0)")
@pytest.mark.parametrize("shape", [(224, 224), (7, 5), (1, 17), (320, 321)])
def test_c_quantise_is_numpys(shape):
    """The model map to uint8 in C: numpy's rint(clip(m, 0, 1) * 255) in float32, bit for bit
    (halves to even, NaN to 0), on random values, exact halves and the odd ones out."""
    rng = np.random.default_rng(sum(shape))
    m = (rng.random(shape, dtype=np.float32) * 1.2 - 0.1).astype(np.float32)
    flat = m.reshape(-1)
    halves = ((np.arange(255) + 0.5) / 255).astype(np.float32)  # products on k + 0.5
    k = min(len(halves), flat.size)
    flat[:k] = halves[:k]
    odd = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, 2.0, -2.0, 1e-30, 0.998], np.float32)
    flat[-min(len(odd), flat.size):] = odd[:flat.size]
    with np.errstate(invalid="ignore"):
        want = np.rint(np.clip(m, 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(quantise(m), want)
    m64 = m.astype(np.float64)  # not float32: numpy's own, in float64 (other halves round)
    with np.errstate(invalid="ignore"):
        assert np.array_equal(quantise(m64), np.rint(np.clip(m64, 0, 1) * 255).astype(np.uint8))
