"""ROI encodes that run in the patched ffmpeg (encode/external.py), checked with libx264 in the
minimal build: the same chain up to the maps, then salroi's two-input mode."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conftest import cfg
from test_encode import key_qp, packets
from vmaf_roi import config
from vmaf_roi.encode import encode, encoder_options, external
from vmaf_roi.errors import ConfigError
from vmaf_roi.synth import read_masks

FFMPEG = os.environ.get("VMAF_ROI_SALROI_FFMPEG")
needs_ffmpeg = pytest.mark.skipif(not FFMPEG or not Path(FFMPEG).is_file(),
                                  reason="VMAF_ROI_SALROI_FFMPEG: no patched ffmpeg built (scripts/test.sh builds it)")


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
    c = cfg("roi.mode=both", "roi.strength=5")
    ext = run_external(clip.path, tmp_path / "ext.mp4", c)
    inproc = encode(clip.path, tmp_path / "in.mp4", c)
    plain = run_external(clip.path, tmp_path / "plain.mp4", c, plain=True)
    encode(clip.path, tmp_path / "in-plain.mp4", c, plain=True)
    assert ext.frames == inproc.frames == plain.frames == clip.frames
    assert ext.inferences == inproc.inferences and ext.roi_digest == inproc.roi_digest  # the same maps planned
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
