"""Map sources (mapsource.py): encodes from a map video or a gaze file instead of the model
(`vmaf-roi encode --maps FILE`), and the refusals."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from conftest import PH, built_ffmpeg, interrupt_on_attach, ph_cfg
from test_encode import video_pts
from vmaf_roi import config, roi
from vmaf_roi.analysis import qp_maps
from vmaf_roi.cli import main
from vmaf_roi.encode import SaliencyTrack, encode, encoder_options, external
from vmaf_roi.encode.plan import RoiPlan, planner_params
from vmaf_roi.errors import ConfigError, InputError
from vmaf_roi.mapsource import NEUTRAL_LEVEL, GazeSource, MapVideoSource, ModelSource, open_map_source
from vmaf_roi.maps import MapVideoWriter, no_progress
from vmaf_roi.synth import make_clip


_BUILT = built_ffmpeg()
FFMPEG = str(_BUILT) if _BUILT else None
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="no patched ffmpeg built (scripts/test.sh builds it)")


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    """A square clip: the placeholder model's maps (320x320) have its aspect ratio."""
    d = tmp_path_factory.mktemp("square")
    return make_clip(d / "sq.mp4", width=160, height=160, frames=12, fps=24)


def write_maps(path, maps, times, rate=24):
    w = MapVideoWriter(path, maps[0].shape[1], maps[0].shape[0], Fraction(rate), {})
    for m, t in zip(maps, times):
        w.write(np.ascontiguousarray(m), Fraction(t))
    w.close()


def frame_lists(track, width, height, c):
    """Each frame's ROI entries, planned from the maps a track recorded."""
    plan = RoiPlan(config.typed(c).roi, "libx264")
    return [plan.entries(width, height, track.maps.raw(i)).copy() for i in sorted(track.maps)]


def block_offsets(m, width, height, c):
    p = planner_params(config.typed(c).roi, "libx264")
    return roi.qp_offsets(roi.block_means(m, width, height, p.block), p)


def test_map_video_of_the_models_maps_plans_exactly_as_the_model(square, tmp_path):
    """The model's maps, written as a map video at their own size with the frames' timestamps,
    give the same ROI lists as the model path (held maps: no blends, which a file stores rounded)."""
    c = ph_cfg("saliency.interpolate=false", "saliency.stride=2", "roi.mode=both")
    track = SaliencyTrack()
    model = encode(square.path, tmp_path / "model.mp4", c, track=track)
    assert model.inferences >= 6 and model.maps == ""
    maps = [np.asarray(track.maps[i]) for i in sorted(track.maps)]
    assert maps[0].shape == (320, 320)
    write_maps(tmp_path / "maps.mkv", maps, video_pts(square.path))
    got = SaliencyTrack()
    res = encode(square.path, tmp_path / "maps.mp4", c, maps=tmp_path / "maps.mkv", track=got)
    assert res.roi_digest == model.roi_digest and res.frames == model.frames == 12
    assert res.inferences == 0 and res.maps == str(tmp_path / "maps.mkv") and res.model == "map video maps.mkv"
    assert [n for n in res.notes if "maps.mkv" in n] == ["maps.mkv: maps paired with frames by timestamp (nearest "
                                                        "within half a frame interval)"]
    for a, b in zip(frame_lists(track, 160, 160, c), frame_lists(got, 160, 160, c)):
        assert np.array_equal(a, b)
    # by frame index (an input without timestamps): the same here, and said so
    src = MapVideoSource(tmp_path / "maps.mkv", width=160, height=160, fps=24, input_timestamps=False)
    res = encode(square.path, tmp_path / "index.mp4", c, maps=src)
    assert res.roi_digest == model.roi_digest
    assert any("paired with frames by frame index (the input has no timestamps)" in n for n in res.notes)
    # a model source is the model path itself: the same lists
    again = encode(square.path, tmp_path / "again.mp4", c, maps=ModelSource(None, track))
    assert again.roi_digest == model.roi_digest


def test_map_video_from_the_saliency_command(clip, tmp_path, capsys):
    """`vmaf-roi saliency -o` writes the model's maps upscaled (bilinear) to the frame size; the
    planner's block means of those differ from the model-size map's by a few 1/255, so a block's
    offset may round the other way: never by more than one step, on under 3% of the blocks."""
    sal = tmp_path / "sal.mkv"
    assert main(["saliency", str(clip.path), "-o", str(sal), "--model", PH, "-q"]) == 0
    c = ph_cfg("saliency.stride=1", "saliency.scene_cut=false", "roi.mode=both")
    model, maps = SaliencyTrack(), SaliencyTrack()
    a = encode(clip.path, tmp_path / "model.mp4", c, track=model)
    b = encode(clip.path, tmp_path / "maps.mp4", c, track=maps, maps=sal)
    assert a.frames == b.frames == 12 and len(maps.maps) == 12
    assert b.model == PH  # from the map video's tags
    assert not any("kept the previous map" in n or "no ROI" in n for n in b.notes), b.notes
    differ = total = 0
    for i in range(12):
        assert maps.maps[i].shape == (240, 320)  # the map video's own size
        qa = block_offsets(model.maps[i], 320, 240, c)
        qb = block_offsets(maps.maps[i], 320, 240, c)
        assert np.abs(qa - qb).max() <= 1
        differ += int(np.count_nonzero(qa != qb))
        total += qa.size
    assert differ / total < 0.03, (differ, total)
    # the CLI: the same encode, said so
    capsys.readouterr()
    assert main(["encode", str(clip.path), "-o", str(tmp_path / "cli.mp4"), "--maps", str(sal), "-q",
                 "--set", "roi.mode=both"]) == 0
    err = capsys.readouterr().err
    assert f"ROI (maps from {sal}" in err and "paired with frames by timestamp" in err, err


def test_frames_without_a_map_hold_the_previous_one(clip, tmp_path):
    pts = video_pts(clip.path)
    rng = np.random.default_rng(1)
    maps = [rng.integers(0, 256, (240, 320), dtype=np.uint8) for _ in pts]
    write_maps(tmp_path / "half.mkv", maps[::2], pts[::2])  # maps for frames 0, 2, ..., 10
    track = SaliencyTrack()
    res = encode(clip.path, tmp_path / "o.mp4", ph_cfg(), maps=tmp_path / "half.mkv", track=track)
    assert "half.mkv: 6 of 12 frames had no map at their time and kept the previous map" in res.notes
    for i in range(0, 12, 2):
        assert np.array_equal(track.maps[i], maps[i])
        assert track.maps.raw(i + 1) is track.maps.raw(i)  # the same map: not planned again
    # a map video that ends early: the last map is held to the end
    write_maps(tmp_path / "short.mkv", maps[:4], pts[:4])
    track = SaliencyTrack()
    res = encode(clip.path, tmp_path / "o.mp4", ph_cfg(), maps=tmp_path / "short.mkv", track=track)
    assert "short.mkv: 8 of 12 frames had no map at their time and kept the previous map" in res.notes
    assert all(track.maps.raw(i) is track.maps.raw(3) for i in range(4, 12))


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vmaf-roi: error: "), err
    return err[0]


def test_refusals(clip, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    rng = np.random.default_rng(0)
    write_maps(tmp_path / "square.mkv", [rng.integers(0, 256, (320, 320), dtype=np.uint8)], [0])
    capsys.readouterr()
    # another aspect ratio (4:3 input, square maps): exit 3, one line, what to do, nothing written
    assert main(["encode", str(clip.path), "-o", str(out), "--maps", str(tmp_path / "square.mkv")]) == 3
    line = _one_error(capsys)
    assert "320x320" in line and "320x240" in line and "differ by more than 2%" in line
    assert "vmaf-roi saliency IN -o maps.mkv" in line
    # --maps with --plain
    assert main(["encode", str(clip.path), "-o", str(out), "--plain", "--maps", str(tmp_path / "square.mkv")]) == 2
    assert "--maps with --plain" in _one_error(capsys)
    # a missing map file
    assert main(["encode", str(clip.path), "-o", str(out), "--maps", str(tmp_path / "nope.mkv")]) == 3
    assert "nope.mkv: no such map file" in _one_error(capsys)
    # a map video without frames (a video stream with no packet; some audio)
    with av.open(str(tmp_path / "empty.mkv"), "w", format="matroska") as mk:
        v = mk.add_stream("ffv1", rate=24)
        v.width, v.height, v.pix_fmt = 320, 240, "gray"
        a = mk.add_stream("aac", rate=48000)
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        f.sample_rate, f.pts = 48000, 0
        for p in [*a.encode(f), *a.encode(None)]:
            mk.mux(p)
    assert main(["encode", str(clip.path), "-o", str(out), "--maps", str(tmp_path / "empty.mkv")]) == 3
    assert "empty.mkv: the map video has no frames" in _one_error(capsys)
    # not a video at all; a bad gaze file
    (tmp_path / "junk.mkv").write_bytes(b"not a video" * 10)
    assert main(["encode", str(clip.path), "-o", str(out), "--maps", str(tmp_path / "junk.mkv")]) == 3
    assert "junk.mkv: not a readable media file" in _one_error(capsys)
    (tmp_path / "bad.csv").write_text("frame,x,y\n0,999,10\n")
    assert main(["encode", str(clip.path), "-o", str(out), "--maps", str(tmp_path / "bad.csv")]) == 3
    assert "outside the 320x240 picture" in _one_error(capsys)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".o.mp4")]
    # the library: the same errors
    with pytest.raises(ConfigError):
        encode(clip.path, out, ph_cfg(), plain=True, maps=tmp_path / "square.mkv")
    with pytest.raises(InputError, match="differ by more than 2%"):
        open_map_source(tmp_path / "square.mkv", width=320, height=240, fps=24, frame_count=12)
    assert isinstance(open_map_source(tmp_path / "square.mkv", width=200, height=199, fps=None, frame_count=None),
                      MapVideoSource)  # within 2%


def test_a_filter_that_changes_the_aspect_ratio_is_caught_on_the_first_frame(clip, tmp_path, capsys):
    maps = [np.full((240, 320), 200, np.uint8)]
    write_maps(tmp_path / "m.mkv", maps, [0])
    c = ph_cfg("filters=crop=160:240:0:0")
    with pytest.raises(InputError, match="the input 160x240"):
        encode(clip.path, tmp_path / "o.mp4", c, maps=tmp_path / "m.mkv")
    assert [p.name for p in tmp_path.iterdir()] == ["m.mkv"]


def write_gaze(path):
    """Two viewers looking around (80, 60) from frame 2 on, except on frame 6."""
    rows = ["# two viewers", "frame,x,y,viewer"]
    for f in range(2, 12):
        if f != 6:
            rows += [f"{f},78,58,a", f"{f},82,62,b"]
    path.write_text("\n".join(rows) + "\n")
    return path


GAZE_CFG = ("roi.mode=both", "roi.strength=6", "encoder_options.g=1")  # every frame a keyframe


def check_gaze_qp(roi_path, plain_path):
    """The QP the encoder used, per 16x16 block (H.264), against the plain encode's: lowest at
    the fixations, raised in the far background (planned offsets there: -2 and +6); frames 0
    and 1, before the first fixation, as plain."""
    q_roi = [q for _, q in qp_maps(roi_path)]
    q_plain = [q for _, q in qp_maps(plain_path)]
    assert len(q_roi) == len(q_plain) == 12
    for i in range(2, 12):
        delta = q_roi[i] - q_plain[i]
        d_in, d_far = delta[3, 4:6].mean(), delta[10:15, 14:20].mean()  # around (80, 60); bottom right
        assert d_in < 0 < d_far and d_far - d_in >= 5, (i, d_in, d_far)
        assert delta[3, 4:6].max() == delta.min(), (i, delta)
    assert np.array_equal(q_roi[0], q_plain[0])


def test_gaze_file_gives_roi_where_the_viewers_looked(clip, tmp_path):
    gz = write_gaze(tmp_path / "gaze.csv")
    c = ph_cfg(*GAZE_CFG)
    track = SaliencyTrack()
    roi_res = encode(clip.path, tmp_path / "gaze.mp4", c, maps=gz, track=track)
    plain = encode(clip.path, tmp_path / "plain.mp4", c, plain=True)
    assert roi_res.frames == plain.frames == 12 and roi_res.model == "gaze gaze.csv"
    assert "gaze.csv: gaze maps paired with frames by frame index" in roi_res.notes
    assert "gaze.csv: 1 of 12 frames had no fixation and kept the previous map" in roi_res.notes
    assert "gaze.csv: 2 of 12 frames came before the first map and got no ROI" in roi_res.notes
    assert track.maps.raw(6) is track.maps.raw(5)
    lists = frame_lists(track, 320, 240, c)
    assert len(lists[0]) == len(lists[1]) == 0 and all(len(x) for x in lists[2:])
    assert np.all(track.maps[0] == NEUTRAL_LEVEL)
    m = track.maps[2]
    top = np.unravel_index(np.argmax(m), m.shape)  # (80, 60) is a pixel corner: 59 or 60, 79 or 80
    assert m.shape == (240, 320) and m.max() == 255 and top[0] in (59, 60) and top[1] in (79, 80), top
    assert block_offsets(m, 320, 240, c)[3, 4:6].tolist() == [-2, -2]
    check_gaze_qp(tmp_path / "gaze.mp4", tmp_path / "plain.mp4")


@needs_ffmpeg
def test_maps_pass_through_the_patched_ffmpeg(clip, tmp_path):
    """The external encode (libsvtav1, NVENC; here libx264 in the test build) takes the same
    maps: written to its map stream frame by frame (neutral ones before the first fixation)."""
    gz = write_gaze(tmp_path / "gaze.csv")
    t = config.typed(ph_cfg(*GAZE_CFG))
    src = open_map_source(gz, width=320, height=240, fps=24, frame_count=12)

    def run(out, plain):
        notes: list[str] = []
        opts, rate = encoder_options(t.encoder, plain, notes)
        return external.encode_external(clip.path, out, t, ffmpeg=FFMPEG, plain=plain, options=opts, bit_rate=rate,
                                        notes=notes, track=None, progress=no_progress, on_event=lambda _: None,
                                        overwrite=True, t0=0.0, source=None if plain else src)

    ext = run(tmp_path / "ext.mp4", False)
    run(tmp_path / "plain.mp4", True)
    inproc = encode(clip.path, tmp_path / "in.mp4", t, maps=src)
    assert ext.frames == 12 and ext.roi_digest == inproc.roi_digest and ext.maps == str(gz)
    assert "gaze.csv: 1 of 12 frames had no fixation and kept the previous map" in ext.notes
    check_gaze_qp(tmp_path / "ext.mp4", tmp_path / "plain.mp4")


def test_gaze_source_from_a_recording_and_hold_before_any_map(tmp_path):
    from vmaf_roi.gaze import load_gaze

    gz = tmp_path / "g.csv"
    gz.write_text("frame,x,y\n3,10,10\n")
    src = GazeSource(load_gaze(gz, width=64, height=48))
    assert src.neutral().shape == (48, 64) and src.label == "gaze g.csv"
    with pytest.raises(InputError, match="differ by more than 2%"):
        src.check_frame_size(64, 64)


def test_interrupted_encode_from_a_map_video_leaves_nothing(clip, tmp_path, monkeypatch):
    write_maps(tmp_path / "m.mkv", [np.full((240, 320), 200, np.uint8)] * 12, video_pts(clip.path))
    calls = interrupt_on_attach(monkeypatch, 5)
    assert main(["encode", str(clip.path), "-o", str(tmp_path / "o.mp4"), "--maps", str(tmp_path / "m.mkv")]) == 130
    assert calls["n"] == 5 and [p.name for p in tmp_path.iterdir()] == ["m.mkv"]
