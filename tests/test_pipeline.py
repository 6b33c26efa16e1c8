from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from vmaf_roi.decode import VideoSource
from vmaf_roi.encode import encode
from vmaf_roi.errors import InputError
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
        from vmaf_roi.encode import encode
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
