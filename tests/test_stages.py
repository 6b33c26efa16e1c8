"""Each stage of the encode pass on its own: typed config, map schedule, planning, encoder/muxer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import PH, cfg, ph_cfg
from vmaf_roi import config, roi
from vmaf_roi.decode import VideoSource
from vmaf_roi.encode.mux import EncoderMuxer
from vmaf_roi.encode.options import check_encoder, encoder_options
from vmaf_roi.encode.plan import RoiPlan
from vmaf_roi.errors import ConfigError, InputError
from vmaf_roi.pipeline import Item, MapSchedule
from vmaf_roi.saliency import SaliencyModel
from vmaf_roi.synth import make_clip


# -- typed config ---------------------------------------------------------------------------
def test_typed_config_round_trips_the_yaml_form_and_is_frozen():
    d = cfg("roi.strength=3", "saliency.stride=4", "encoder_params.aq-mode=2")
    t = config.typed(d)
    assert t.roi.strength == 3 and t.saliency.stride == 4 and t.encoder.params["aq-mode"] == 2
    assert t.to_dict() == d
    assert config.typed(t) is t
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.roi.strength = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        t.encoder.params["x"] = 1  # type: ignore[index]


def test_typed_config_validates_a_dict_in_one_place():
    d = cfg()
    d["roi"]["mode"] = "sideways"
    with pytest.raises(ConfigError, match="roi.mode"):
        config.typed(d)


# -- map schedule ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("stages") / "in.mkv"
    make_clip(p, width=128, height=96, frames=9)
    return p


def test_schedule_runs_the_model_every_stride_frames_and_reuses_unchanged_maps(small_clip, model_dir):
    t = config.typed(ph_cfg("saliency.stride=4", "saliency.scene_cut=false", "saliency.interpolate=false"))
    model = SaliencyModel(PH, cache_dir=model_dir)
    sched = MapSchedule(t.saliency, model, None, copy_packets=False)
    with VideoSource(small_clip, None) as src:
        out = [(x, m) for x, m in sched.run(src.frames) if isinstance(x, Item)]
    sched.close()
    assert [x.index for x, _ in out] == list(range(9))
    assert sched.inferences == 3  # frames 0, 4, 8
    maps = [m for _, m in out]
    assert all(m is not None and m.dtype == np.uint8 for m in maps)
    # held between inferences: the very same array (the planner caches on its identity)
    assert maps[1] is maps[0] and maps[3] is maps[0] and maps[5] is maps[4]


def test_plain_schedule_never_runs_a_model(small_clip):
    t = config.typed(cfg())
    sched = MapSchedule(t.saliency, None, None, copy_packets=False, plain=True)
    with VideoSource(small_clip, None) as src:
        out = list(sched.run(src.frames))
    assert len(out) == 9 and all(m is None for _, m in out) and sched.inferences == 0


# -- planning -------------------------------------------------------------------------------
def test_plan_matches_the_planner_and_counts_frames():
    t = config.typed(cfg("roi.mode=both"))
    plan = RoiPlan(t.roi, "libx264")
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (12, 16), dtype=np.uint8)
    b = np.zeros_like(a)
    b[4:8, 6:10] = 255
    got = [[tuple(e) for e in plan.entries(128, 96, m).tolist()] for m in (a, a, b, a)]
    want = [[r.as_tuple() for r in roi.plan(m, 128, 96, plan.params)] for m in (a, a, b, a)]
    assert got == want
    assert plan.frames == 4
    assert plan.params.block == 16 and plan.params.qp_scale == 51
    same = RoiPlan(t.roi, "libx264")
    for m in (a, a, b, a):
        same.entries(128, 96, m.copy())  # equal maps, other objects: the same digest
    assert same.digest.hexdigest() == plan.digest.hexdigest()
    with pytest.raises(ValueError):
        plan.entries(128, 96, None)


def test_plan_uses_the_encoders_units():
    t = config.typed(cfg("roi.mode=both"))
    m = np.zeros((12, 16), np.uint8)
    m[:6] = 255
    x264 = RoiPlan(t.roi, "libx264").entries(128, 96, m)
    x264_10 = RoiPlan(t.roi, "libx264", bit_depth=10).entries(128, 96, m)
    vp9 = RoiPlan(t.roi, "libvpx-vp9").entries(128, 96, m)
    assert {e[5] for e in x264} == {51} and {e[5] for e in x264_10} == {63}
    assert {e[5] for e in vp9} == {126}


# -- encoder/muxer --------------------------------------------------------------------------
def test_muxer_encodes_every_frame_and_refuses_an_empty_input(small_clip, tmp_path):
    t = config.typed(cfg("rate_control.value=30"))
    codec = check_encoder("libx264", plain=True)
    opts, rate = encoder_options(t.encoder, True, [])
    out = tmp_path / "out.mkv"
    with VideoSource(small_clip, None) as src:
        with EncoderMuxer(out, out, codec, t.encoder, opts, rate, src, copy_audio=False, on_event=print) as sink:
            for f in src.frames(None):
                if not sink.started:
                    sink.start(f)
                sink.encode(f)
            sink.finish()
    assert sink.frames == sink.packets == 9 and sink.video_bytes > 0
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 9
    with VideoSource(small_clip, None) as src:
        with EncoderMuxer(tmp_path / "e.mkv", tmp_path / "e.mkv", codec, t.encoder, opts, rate, src,
                          copy_audio=False, on_event=print) as sink:
            with pytest.raises(InputError, match="no video frames"):
                sink.finish()
