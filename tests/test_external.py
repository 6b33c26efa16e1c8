"""ROI encodes that run in the patched ffmpeg (encode/external.py), checked with libx264 in the
minimal build: the same chain up to the maps, then salroi's two-input mode."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from conftest import built_ffmpeg, cfg, corr
from test_encode import key_qp, packets
from vmaf_roi import config
from vmaf_roi.encode import SaliencyTrack, encode, encoder_options, external
from vmaf_roi.encode.plan import RoiPlan
from vmaf_roi.errors import ConfigError
from vmaf_roi.roi import Blend
from vmaf_roi.synth import read_masks

_BUILT = built_ffmpeg()
FFMPEG = str(_BUILT) if _BUILT else None
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="no patched ffmpeg built (scripts/test.sh builds it)")


def run_external(src: Path, out: Path, c: dict, *, plain: bool = False):
    t = config.typed(c)
    notes: list[str] = []
    opts, rate = encoder_options(t.encoder, plain, notes)
    model = None
    if not plain:
        from vmaf_roi.saliency import SaliencyModel

        model = SaliencyModel(t.saliency.model, spin=False)
    from vmaf_roi.maps import no_progress

    return external.encode_external(src, out, t, ffmpeg=FFMPEG, plain=plain, options=opts, bit_rate=rate, notes=notes,
                                    model=model, track=None, progress=no_progress, on_event=lambda _: None,
                                    overwrite=True, t0=time.perf_counter())


@needs_ffmpeg
def test_external_roi_matches_the_in_process_encode(clip, tmp_path):
    masks = read_masks(clip.mask_path)
    c = cfg("saliency.model=salstudent_v1", "saliency.stride=2", "roi.mode=both", "roi.strength=5",
            "roi.strength_width=0")
    ext = run_external(clip.path, tmp_path / "ext.mp4", c)
    track = SaliencyTrack()
    inproc = encode(clip.path, tmp_path / "in.mp4", c, track=track)
    plain = run_external(clip.path, tmp_path / "plain.mp4", c, plain=True)
    encode(clip.path, tmp_path / "in-plain.mp4", c, plain=True)
    assert ext.frames == inproc.frames == plain.frames == clip.frames
    # the same maps planned: in process, a blended frame's Blend; salroi, the map made of it
    # (written as uint8), which rounds a few blocks' offsets the other way
    assert any(isinstance(track.maps.raw(i), Blend) for i in track.maps)
    made = RoiPlan(config.typed(c).roi, "libx264")
    for i in sorted(track.maps):
        made.entries(clip.width, clip.height, track.maps[i])
    assert ext.inferences == inproc.inferences and ext.roi_digest == made.digest.hexdigest()
    held = cfg("roi.mode=both", "roi.strength=5", "roi.strength_width=0", "saliency.interpolate=false")  # no blends: the same lists
    assert run_external(clip.path, tmp_path / "ext-held.mp4", held).roi_digest == \
        encode(clip.path, tmp_path / "in-held.mp4", held).roi_digest
    e_in, e_out = key_qp(tmp_path / "ext.mp4", masks)
    i_in, i_out = key_qp(tmp_path / "in.mp4", masks)
    p_in, p_out = key_qp(tmp_path / "plain.mp4", masks)
    ip_in, ip_out = key_qp(tmp_path / "in-plain.mp4", masks)
    assert e_in < p_in - 3 and e_out > p_out + 3, (e_in, p_in, e_out, p_out)
    # salroi in the other ffmpeg applies the regions the Python planner made for the same maps:
    # against each build's own plain encode (their libx264 builds differ), the same QP shifts
    assert e_in - p_in == pytest.approx(i_in - ip_in, abs=1.0), (e_in, p_in, i_in, ip_in)
    assert e_out - p_out == pytest.approx(i_out - ip_out, abs=1.0), (e_out, p_out, i_out, ip_out)
    assert len(packets(tmp_path / "ext.mp4", "audio")) == len(packets(clip.path, "audio")) > 0  # audio copied


@needs_ffmpeg
def test_external_failure_leaves_nothing(clip, tmp_path):
    c = cfg("encoder_options.nosuchoption=1")
    with pytest.raises(Exception, match="failed|nosuchoption"):
        run_external(clip.path, tmp_path / "o.mp4", c, plain=True)
    assert list(tmp_path.iterdir()) == []


def test_roi_with_a_patch_only_encoder_says_how_to_build_the_ffmpeg(clip, tmp_path, monkeypatch):
    for k in external.ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    monkeypatch.setattr(external, "_candidates", lambda: [])
    with pytest.raises(ConfigError, match=r"needs vmaf-roi's patched ffmpeg .*plugin/ci.sh.*--plain"):
        encode(clip.path, tmp_path / "o.mkv", cfg("encoder=libsvtav1"))
    assert list(tmp_path.iterdir()) == []


def test_a_plain_libsvtav1_encode_uses_its_own_defaults(clip, tmp_path):
    # the default preset was x264's "medium", which libsvtav1 refused
    res = encode(clip.path, tmp_path / "o.mkv", cfg("encoder=libsvtav1", "preset=12"), plain=True)
    assert res.frames == clip.frames and res.encoder == "libsvtav1"


def _svt_ffmpeg() -> str | None:
    try:
        return external.find_patched_ffmpeg("libsvtav1")
    except ConfigError:
        return None


needs_svt = pytest.mark.skipif(_svt_ffmpeg() is None, reason="no ffmpeg with vmaf-roi's libsvtav1 ROI patch "
                               "(plugin/build.sh builds one; $VMAF_ROI_FFMPEG_PATCHED)")


@needs_svt
def test_libsvtav1_roi_encode_raises_quality_on_the_object(tmp_path):
    from vmaf_roi.analysis import masked_psnr
    from vmaf_roi.synth import make_clip

    # SVT-AV1's ROI grid is 64x64: a frame big enough for blocks wholly inside the object
    clip = make_clip(tmp_path / "in.mp4", width=640, height=480, frames=8, audio=True, mask_path=tmp_path / "m.mkv")
    masks = read_masks(clip.mask_path)
    # pool mean: only superblocks mostly inside the object move (with the default max, those on
    # its edge take its drop too, and "outside" is no longer untouched in mode lower); stride 4
    # (libsvtav1's default is 8): on 8 frames, one map every 8th frame trails the moving object
    # into the background
    base = ["encoder=libsvtav1", "preset=12", "rate_control.value=40", "roi.strength=6", "saliency.model=u2netp",
            "roi.pool=mean", "saliency.stride=4"]
    plain = encode(clip.path, tmp_path / "plain.mkv", cfg(*base), plain=True, backend="ffmpeg")
    p_in, p_out = masked_psnr(clip.path, tmp_path / "plain.mkv", masks)
    lower = encode(clip.path, tmp_path / "lower.mkv", cfg(*base, "roi.mode=lower"))
    both = encode(clip.path, tmp_path / "both.mkv", cfg(*base, "roi.mode=both"))
    assert lower.frames == both.frames == plain.frames == clip.frames and lower.mean_regions > 0
    l_in, l_out = masked_psnr(clip.path, tmp_path / "lower.mkv", masks)
    b_in, b_out = masked_psnr(clip.path, tmp_path / "both.mkv", masks)
    assert l_in > p_in + 0.05 and abs(l_out - p_out) < 0.1, (l_in, p_in, l_out, p_out)  # only the object moves
    assert b_out < p_out - 0.3, (b_out, p_out)  # mode both raises the background's quantiser
    assert both.video_bytes < plain.video_bytes
    assert len(packets(tmp_path / "lower.mkv", "audio")) == len(packets(clip.path, "audio")) > 0


@needs_svt
def test_libsvtav1_zero_strength_is_the_plain_bitstream(clip, tmp_path):
    c = cfg("encoder=libsvtav1", "preset=12", "rate_control.value=40", "roi.strength=0")
    encode(clip.path, tmp_path / "zero.mkv", c)
    encode(clip.path, tmp_path / "plain.mkv", c, plain=True, backend="ffmpeg")
    z, p = packets(tmp_path / "zero.mkv", "video"), packets(tmp_path / "plain.mkv", "video")
    assert len(z) == clip.frames and [b for b, _ in z] == [b for b, _ in p]


@needs_svt
def test_compare_runs_end_to_end_with_libsvtav1(clip, tmp_path):
    from vmaf_roi.compare import compare

    c = config.load(None, ["encoder=libsvtav1", "preset=12", "saliency.stride=4"])
    res = compare(clip.path, c, crfs=[30, 40, 50], out_dir=tmp_path / "out", mask=clip.mask_path)
    assert [(e.point, e.mode) for e in res.encodes] == [(p, m) for p in (30, 40, 50) for m in ("plain", "roi")]
    plain = [e for e in res.encodes if e.mode == "plain"]
    assert plain[0].bitrate > plain[1].bitrate > plain[2].bitrate
    assert isinstance(res.bd["psnr_y_mask_in"]["bd_rate"], float) or res.bd["psnr_y_mask_in"]["note"]


def test_a_batch_with_libsvtav1_roi_and_no_patched_ffmpeg_fails_before_any_job(clip, tmp_path, monkeypatch):
    from vmaf_roi.batch import load_batch

    monkeypatch.setattr(external, "_candidates", lambda: [])
    data = {"output_dir": str(tmp_path / "out"),
            "jobs": [{"name": "av1", "inputs": [str(clip.path)], "output": "{stem}.mkv",
                      "config": {"encoder": "libsvtav1"}}]}
    with pytest.raises(ConfigError, match=r"jobs\[0\] \(av1\)\.config: encoder: ROI with libsvtav1 needs vmaf-roi's patched"):
        load_batch(data=data, base_dir=tmp_path)


@needs_ffmpeg
def test_external_encode_keeps_the_inputs_stream_order(tmp_path):
    """Audio first in the input (as phones write it): the patched-ffmpeg path maps the streams in the
    input's order, as the in-process muxer and ``ffmpeg -map 0`` do, not video first."""
    import subprocess

    import av
    import imageio_ffmpeg

    from conftest import PH
    from vmaf_roi.synth import make_clip

    clip = make_clip(tmp_path / "in.mp4", width=160, height=96, frames=6, audio=True)
    src = tmp_path / "audio-first.mkv"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(clip.path), "-map", "0:a", "-map", "0:v",
                    "-c", "copy", "-metadata:s:a:0", "language=zho", str(src)], check=True)
    for plain in (False, True):
        out = tmp_path / f"out-{plain}.mkv"
        run_external(src, out, cfg(f"saliency.model={PH}"), plain=plain)
        with av.open(str(out)) as c:
            assert [s.type for s in c.streams] == ["audio", "video"], plain
            assert c.streams[0].metadata.get("language") == "zho"


# -- one decode: the patched ffmpeg's salroi runs the model (model mode) ----------------------
def _no_python_decode(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the one-pass path decoded the input in Python")

    monkeypatch.setattr(external, "VideoSource", refuse)


@needs_svt
def test_libsvtav1_roi_decodes_once_with_the_packages_maps(clip, tmp_path, monkeypatch):
    """The default ROI encode with libsvtav1 runs the model in ffmpeg's salroi (no decode here),
    and applies the regions the two-pass path plans from the package's own maps."""
    c = cfg("encoder=libsvtav1", "preset=12", "rate_control.value=40")
    two_track = SaliencyTrack()
    two = encode(clip.path, tmp_path / "two.mkv", c, external_maps="package", track=two_track)
    with monkeypatch.context() as m:
        _no_python_decode(m)
        events: list[str] = []
        track = SaliencyTrack()
        one = encode(clip.path, tmp_path / "one.mkv", c, track=track, on_event=events.append)
    assert one.frames == two.frames == clip.frames and one.inferences == two.inferences > 0
    assert one.model == two.model == "attention_v2" and one.provider == two.provider == "CPUExecutionProvider"
    # the same maps up to the YUV->RGB conversion (FFmpeg 7.1's swscale in the filter, PyAV's
    # FFmpeg here: docs/ffmpeg-filter.md), so about the same regions; a block on a rounding edge
    # may plan one step the other way
    for i in range(clip.frames):
        a, b = track.maps[i].astype(float), two_track.maps[i].astype(float)
        assert np.abs(a - b).mean() < 1.5 and corr(a, b) > 0.99, i
    assert one.mean_regions == pytest.approx(two.mean_regions, rel=0.15) and one.mean_regions > 0
    assert len(packets(tmp_path / "one.mkv", "audio")) == len(packets(clip.path, "audio")) > 0
    # the maps it applied are kept for later encodes of the same input, which replay them
    assert sorted(track.maps) == list(range(clip.frames)) and track.inferences == one.inferences
    again = encode(clip.path, tmp_path / "again.mkv", c, track=track)
    assert again.inferences == 0 and again.roi_digest == one.roi_digest


@needs_svt
def test_libsvtav1_one_pass_falls_back_where_the_filter_cannot_make_the_maps(clip, tmp_path, monkeypatch):
    """carry: motion needs the decoder's motion vectors, which only the package reads: two passes."""
    calls = []
    real = external.VideoSource

    def counting(*a, **k):
        calls.append(a)
        return real(*a, **k)

    monkeypatch.setattr(external, "VideoSource", counting)
    c = cfg("encoder=libsvtav1", "preset=12", "rate_control.value=40", "saliency.carry=motion")
    r = encode(clip.path, tmp_path / "o.mkv", c)
    assert calls and r.frames == clip.frames and r.inferences > 0


@needs_svt
def test_libsvtav1_one_pass_failure_says_why_and_leaves_nothing(clip, tmp_path, monkeypatch):
    from vmaf_roi.errors import EncodeError

    _no_python_decode(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    c = cfg("encoder=libsvtav1", "preset=12", "encoder_options.nosuchoption=1")
    with pytest.raises(EncodeError, match="nosuchoption") as e:
        encode(clip.path, out / "o.mkv", c)
    assert "[verbose]" not in str(e.value) and "[info]" not in str(e.value)
    assert list(out.iterdir()) == []


def test_model_stats_are_read_from_the_filters_log():
    log = ("[Parsed_salroi_0 @ 0x1] [info] Model /m/attention_v1.onnx: input 'input' 224x224, output "
           "'saliency', CPU execution provider, ONNX Runtime 1.23.2 (C API 21).\n"
           "[Parsed_salroi_0 @ 0x1] [verbose] 120 frames, 30 inferences (1 on scene cuts), 3.1 ms per "
           "inference, maps 112x96.\n")
    assert external._model_stats(log) == (30, "CPU", (112, 96))
    assert external._model_stats("[info] nothing here\n") is None
