from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vmaf_roi.cli import main
from vmaf_roi.synth import make_clip, read_masks
from conftest import PH, decoded as frames_of


def test_saliency_end_to_end_u2netp(clip, model_dir, tmp_path, capsys):
    out, npz, ov = tmp_path / "m.mkv", tmp_path / "m.npz", tmp_path / "ov.mp4"
    rc = main(["saliency", str(clip.path), "-o", str(out), "--npz", str(npz), "--overlay", str(ov),
               "--model", "u2netp", "--model-dir", str(model_dir)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "12 frames" in err and "CPUExecutionProvider" in err and "PLACEHOLDER" not in err
    src = frames_of(clip.path)
    maps = frames_of(out)
    assert len(maps) == len(src) == 12
    for (ts, _), (tm, m) in zip(src, maps):
        assert tm <= ts and ts - tm < Fraction(1, 1000)  # same timestamps (ms, never later)
        assert m.shape == (240, 320) and m.dtype == np.uint8
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "ffv1"
        assert c.streams.video[0].format.name == "gray"
    masks = read_masks(clip.mask_path)
    m = np.stack([x for _, x in maps]).astype(np.float32) / 255
    assert m[masks].mean() > 0.6 and m[~masks].mean() < 0.15
    z = np.load(npz)
    assert z["maps"].shape == (12, 240, 320) and z["maps"].dtype == np.float16
    assert str(z["model"]) == "u2netp" and not bool(z["placeholder"])
    np.testing.assert_allclose(z["maps"].astype(np.float32), m, atol=2 / 255 + 1e-3)
    assert len(frames_of(ov)) == 12
    assert {p.name for p in tmp_path.iterdir()} == {"m.mkv", "m.npz", "ov.mp4"}


def test_stride_reuses_maps_and_filters_apply(clip, tmp_path, capsys):
    out = tmp_path / "m.mkv"
    rc = main(["saliency", str(clip.path), "-o", str(out), "--model", PH, "--stride", "5",
               "--vf", "scale=160:120,format=yuv444p"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "PLACEHOLDER" in err and "3 inferences" in err
    maps = [m for _, m in frames_of(out)]
    assert len(maps) == 12 and maps[0].shape == (120, 160)
    assert all(np.array_equal(maps[0], maps[k]) for k in range(1, 5))
    assert not np.array_equal(maps[4], maps[5])


def test_10bit_odd_size_input(tmp_path, capsys):
    src = tmp_path / "odd10.mkv"
    make_clip(src, width=161, height=121, frames=4, codec="ffv1", pix_fmt="yuv420p10le")
    out = tmp_path / "m.mkv"
    assert main(["saliency", str(src), "-o", str(out), "--model", PH, "--overlay", str(tmp_path / "o.mp4")]) == 0
    maps = frames_of(out)
    assert len(maps) == 4 and maps[0][1].shape == (121, 161)


def _bad_inputs(tmp_path: Path, clip) -> dict[str, Path]:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 50)
    data = clip.path.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (d / "adir.mp4").mkdir()
    return {
        "missing": d / "missing.mp4",
        "empty": d / "empty.mp4",
        "text": d / "text.mp4",
        "truncated": d / "truncated.mp4",
        "directory": d / "adir.mp4",
    }


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated", "directory"])
def test_bad_input_one_line_error_no_output(kind, clip, tmp_path):
    inp = _bad_inputs(tmp_path, clip)[kind]
    outdir = tmp_path / "out"
    outdir.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "vmaf_roi", "saliency", str(inp), "-o", str(outdir / "m.mkv"),
         "--npz", str(outdir / "m.npz"), "--model", PH],
        capture_output=True, text=True,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) - sum("PLACEHOLDER" in ln for ln in lines) == 1, proc.stderr
    assert lines[-1].startswith("vmaf-roi: error: ") and "Traceback" not in proc.stderr
    assert str(inp.name) in lines[-1]
    assert list(outdir.iterdir()) == []


def test_bad_options_are_clear(clip, tmp_path, capsys):
    assert main(["saliency", str(clip.path), "-o", str(tmp_path / "m.mkv"), "--model", PH, "--stride", "0"]) == 2
    assert main(["saliency", str(clip.path), "-o", str(tmp_path / "m.mkv"), "--model", PH, "--vf", "nosuchfilter=1"]) == 2
    assert main(["saliency", str(clip.path), "-o", str(tmp_path / "nodir" / "m.mkv"), "--model", PH]) == 8  # OutputError
    assert main(["saliency", str(clip.path), "-o", str(tmp_path / "m.mkv"), "--model", "nope"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in err if ln.startswith("vmaf-roi: error:")]
    assert len(errors) == 4 and "nosuchfilter" in errors[1] and "does not exist" in errors[2]
    assert list(tmp_path.iterdir()) == []


def test_interrupt_leaves_no_output(clip, tmp_path, monkeypatch, capsys):
    import vmaf_roi.maps as maps_mod

    calls = {"n": 0}
    real = maps_mod.MapVideoWriter.write

    def boom(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(maps_mod.MapVideoWriter, "write", boom)
    rc = main(["saliency", str(clip.path), "-o", str(tmp_path / "m.mkv"), "--npz", str(tmp_path / "m.npz"),
               "--model", PH])
    assert rc == 130 and "interrupted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
