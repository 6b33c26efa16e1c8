"""The scene-cut thumbnail (pipeline.thumbnail): its C and numpy versions, its levels, and the
FFmpeg filter's table of formats read in place."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest

from vmaf_roi import native, pipeline
from vmaf_roi.pipeline import MapPolicy, thumb_diff, thumbnail

REPO = Path(__file__).resolve().parent.parent
needs_native = pytest.mark.skipif(native.thumb is None, reason="no C library here (built without a C compiler, or VMAF_ROI_NATIVE=0)")


def frame_of(y: np.ndarray, fmt: str = "yuv420p", full: bool = False) -> av.VideoFrame:
    """A frame whose luma is ``y`` (uint8 levels), in ``fmt`` (converted by swscale from yuv420p)."""
    h, w = y.shape
    f = av.VideoFrame(w, h, "yuvj420p" if full else "yuv420p")
    np.frombuffer(f.planes[0], np.uint8).reshape(-1, f.planes[0].line_size)[:, :w] = y
    for p in f.planes[1:]:
        np.frombuffer(p, np.uint8)[:] = 128
    return f if fmt in ("yuv420p", "yuvj420p") else f.reformat(format=fmt)


def numpy_thumbnail(f: av.VideoFrame, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    with monkeypatch.context() as m:
        m.setattr(native, "thumb", None)
        return thumbnail(f)


@needs_native
@pytest.mark.parametrize("fmt", ["yuv420p", "yuvj420p", "nv12", "yuv444p", "gray", "yuv420p10le", "p010le",
                                 "gray16le", "rgb24", "yuyv422"])
@pytest.mark.parametrize("size", [(17, 9), (176, 144), (641, 479), (1280, 720)])
def test_c_thumbnail_is_the_numpy_thumbnail(fmt, size, monkeypatch):
    rng = np.random.default_rng(size[0] * 7 + len(fmt))
    w, h = size
    y = rng.integers(0, 256, (h, w), dtype=np.uint8)
    f = frame_of(y, fmt)
    got = thumbnail(f)
    assert got.shape == (36, 64) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, numpy_thumbnail(f, monkeypatch))


@pytest.mark.parametrize("native_on", [True, False])
def test_levels_and_layout(native_on, monkeypatch):
    if not native_on:
        monkeypatch.setattr(native, "thumb", None)
    elif native.thumb is None:
        pytest.skip("no C library here")
    y = np.full((144, 256), 16, np.uint8)
    y[:, 128:] = 235  # limited range: black left, white right
    t = thumbnail(frame_of(y))
    assert (t[:, :32] == 0).all() and (t[:, 32:] == 255).all()
    t = thumbnail(frame_of(y, full=True))  # the same levels, tagged full range: kept as they are
    assert (t[:, :32] == 16).all() and (t[:, 32:] == 235).all()
    # 10-bit samples are shifted to 8 bits: the same picture as the 8-bit one
    np.testing.assert_array_equal(thumbnail(frame_of(y, "yuv420p10le")), thumbnail(frame_of(y)))
    # each cell averages K x K samples of its own area: a stripe one cell wide lights one cell
    z = np.full((144, 256), 16, np.uint8)
    z[:, 4 * 10:4 * 10 + 4] = 235  # cell column 10 exactly
    t = thumbnail(frame_of(z))
    assert (t[:, 10] == 255).all() and (np.delete(t, 10, axis=1) == 0).all()


def test_diff_is_mean_absolute_difference(monkeypatch):
    rng = np.random.default_rng(3)
    a, b = (rng.integers(0, 256, (36, 64), dtype=np.uint8) for _ in range(2))
    want = float(np.abs(a.astype(int) - b.astype(int)).mean())
    assert thumb_diff(a, b) == want
    monkeypatch.setattr(native, "thumb_sad", None)
    assert thumb_diff(a, b) == want


def test_a_cut_and_not_a_pan():
    """A scene cut is found and a slow pan of the same texture is not (threshold 12)."""
    rng = np.random.default_rng(5)
    tex = rng.integers(40, 200, (300, 500), dtype=np.uint8)
    tex = ((tex.astype(np.float32) + np.roll(tex, 1, 0) + np.roll(tex, 1, 1) + np.roll(tex, 1, (0, 1))) / 4).astype(np.uint8)
    other = 255 - tex
    frames = [frame_of(tex[i * 3:i * 3 + 240, i * 4:i * 4 + 320].copy()) for i in range(6)]
    frames += [frame_of(other[:240, :320].copy())]
    policy = MapPolicy({"stride": 100, "scene_cut": True, "scene_threshold": 12.0, "change_threshold": None})
    cuts = [policy.decide(i, f)[1] for i, f in enumerate(frames)]
    assert cuts == [False] * 6 + [True]


def test_the_filter_reads_the_same_formats_in_place():
    """vf_salroi.c's luma_planes table is pipeline.py's _LUMA8 and _LUMA16 (name, bytes, shift)."""
    src = (REPO / "plugin" / "vf_salroi.c").read_text()
    table = src[src.index("luma_planes[] = {"):]
    table = table[:table.index("};")]
    c = {av.VideoFormat(m.group(1).lower()).name: (int(m.group(2)), int(m.group(3)))
         for m in re.finditer(r"\{ AV_PIX_FMT_(\w+), (\d), (\d+) \}", table)}
    py = {**{n: (1, 0) for n in pipeline._LUMA8}, **{n: (2, s) for n, s in pipeline._LUMA16.items()}}
    assert len(c) > 40 and c == py
    for name in py:  # every one is a format this FFmpeg knows, with its luma in plane 0
        fmt = av.VideoFormat(name)
        assert fmt.components[0].plane == 0 and not fmt.is_rgb and not fmt.is_big_endian, name


@pytest.mark.parametrize("native_on", [True, False])
def test_rows_that_run_backwards(native_on, tmp_path, monkeypatch):
    """FFmpeg's vflip hands out frames with a negative line size: the same thumbnail as the
    flipped picture stored top row first."""
    from vmaf_roi.decode import VideoSource
    from vmaf_roi.synth import make_clip

    if not native_on:
        monkeypatch.setattr(native, "thumb", None)
    elif native.thumb is None:
        pytest.skip("no C library here")
    clip = make_clip(tmp_path / "c.mkv", width=160, height=96, frames=2, seed=3, codec="ffv1").path
    with VideoSource(clip, "vflip") as src:
        flipped = next(iter(src.frames(None)))
    assert flipped.planes[0].line_size < 0
    with av.open(str(clip)) as c:
        f = next(c.decode(video=0))
    assert f.format.name == flipped.format.name == "yuv420p" and f.planes[0].line_size > 0
    y = np.frombuffer(f.planes[0], np.uint8).reshape(-1, f.planes[0].line_size)[:f.height, :f.width]
    np.testing.assert_array_equal(thumbnail(flipped), thumbnail(frame_of(np.ascontiguousarray(y[::-1]))))
