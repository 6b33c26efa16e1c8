"""Quality scores: libvmaf runner, per-frame/pooled metrics, saliency and mask variants, errors, schema."""

from __future__ import annotations

import json
import math
import stat
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vmaf_roi import cli_quality
from vmaf_roi.errors import ConfigError, InputError
from vmaf_roi.score import (
    BASE_METRICS,
    MASK_METRICS,
    POOLED_KEYS,
    SALIENCY_METRICS,
    pool,
    score,
    score_many,
    weighted_psnr,
)
from vmaf_roi.synth import make_clip
from vmaf_roi.vmaf import VmafError, find_ffmpeg

W, H, N = 160, 96, 6


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A small reference (with mask), two compressions of the same content, a shorter clip,
    a smaller-size version and a uniform saliency map video."""
    d = tmp_path_factory.mktemp("score")
    ref = make_clip(d / "ref.mkv", width=W, height=H, frames=N, crf=0, seed=3, mask_path=d / "mask.mkv")
    light = make_clip(d / "light.mp4", width=W, height=H, frames=N, crf=24, seed=3)
    heavy = make_clip(d / "heavy.mp4", width=W, height=H, frames=N, crf=45, seed=3)
    short = make_clip(d / "short.mp4", width=W, height=H, frames=N - 2, crf=24, seed=3)
    small = make_clip(d / "small.mp4", width=W // 2, height=H // 2, frames=N, crf=24, seed=3)
    uniform = d / "uniform.mkv"
    _gray_video(uniform, [np.full((H, W), 200, np.uint8)] * N)
    return {"dir": d, "ref": ref.path, "mask": ref.mask_path, "light": light.path, "heavy": heavy.path,
            "short": short.path, "small": small.path, "uniform": uniform}


def _gray_video(path: Path, frames: list[np.ndarray]) -> None:
    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("ffv1", rate=24)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "gray"
        for i, a in enumerate(frames):
            f = av.VideoFrame.from_ndarray(a, format="gray")
            f.pts, f.time_base = i, Fraction(1, 24)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def test_identical_inputs(clips):
    r = score(clips["ref"], clips["ref"])
    assert r.frames == N and (r.width, r.height) == (W, H)
    assert r.metrics == list(BASE_METRICS)
    assert r.pooled["vmaf"]["mean"] > 97
    assert max(r.per_frame["vmaf"]) == pytest.approx(100, abs=0.01)
    assert all(math.isinf(x) for x in r.per_frame["psnr_y"])
    assert r.pooled["psnr_y"]["count"] == 0 and r.pooled["psnr_y"]["mean"] is None
    assert r.pooled["ssim"]["mean"] == pytest.approx(1.0, abs=1e-6)
    d = json.loads(r.to_json())  # strict JSON: inf becomes null
    assert d["per_frame"]["psnr_y"] == [None] * N


def test_heavier_compression_scores_lower(clips):
    light, heavy = score_many(clips["ref"], [clips["light"], clips["heavy"]], mask=clips["mask"])
    for m in ("vmaf", "psnr_y", "ssim", "psnr_y_mask_in", "psnr_y_mask_out"):
        assert light.pooled[m]["mean"] > heavy.pooled[m]["mean"], m
    assert 20 < heavy.pooled["psnr_y"]["mean"] < light.pooled["psnr_y"]["mean"] < 60
    # one pass scores both the same as one call each
    alone = score(clips["ref"], clips["heavy"])
    assert alone.per_frame["vmaf"] == pytest.approx(heavy.per_frame["vmaf"], abs=1e-6)
    assert alone.per_frame["psnr_y"] == pytest.approx(heavy.per_frame["psnr_y"])


def test_psnr_matches_libvmaf(clips, tmp_path):
    from vmaf_roi.vmaf import run_vmaf

    r = score(clips["ref"], clips["heavy"])
    lib = run_vmaf(find_ffmpeg(), clips["ref"], [(clips["heavy"], "x")], size=(W, H))["x"]
    assert r.per_frame["psnr_y"] == pytest.approx([f["psnr_y"] for f in lib], abs=1e-3)


def test_weighted_psnr_equals_psnr_for_uniform_map(clips):
    r = score(clips["ref"], clips["heavy"], saliency=clips["uniform"])
    assert r.metrics == [*BASE_METRICS, *SALIENCY_METRICS]
    assert r.per_frame["psnr_y_weighted"] == pytest.approx(r.per_frame["psnr_y"], rel=1e-9)
    assert r.per_frame["saliency_mean"] == pytest.approx([200 / 255] * N, abs=1e-6)
    # maps in memory, any size, float or uint8
    r2 = score(clips["ref"], clips["heavy"], saliency=[np.full((10, 10), 0.3, np.float32)] * N)
    assert r2.per_frame["psnr_y_weighted"] == pytest.approx(r.per_frame["psnr_y"], rel=1e-9)
    # library function on arrays
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (2, 20, 30)).astype(np.float64)
    mse = np.mean((a - b) ** 2)
    assert weighted_psnr(a, b, np.full(a.shape, 0.7)) == pytest.approx(10 * np.log10(255**2 / mse))
    assert math.isnan(weighted_psnr(a, b, np.zeros(a.shape)))


def test_mask_as_map_and_roi_vmaf(clips):
    r = score(clips["ref"], clips["heavy"], saliency=clips["mask"], mask=clips["mask"], roi_weight=0.25)
    assert r.metrics == [*BASE_METRICS, *SALIENCY_METRICS, *MASK_METRICS]
    assert r.per_frame["psnr_y_weighted"] == pytest.approx(r.per_frame["psnr_y_mask_in"], rel=1e-9)
    # only the object is distorted in the composite: its VMAF is higher than the full frame's
    assert r.pooled["vmaf_roi"]["mean"] > r.pooled["vmaf"]["mean"]
    for s, a, b in zip(r.per_frame["vmaf_saliency"], r.per_frame["vmaf_roi"], r.per_frame["vmaf"]):
        assert s == pytest.approx(0.25 * a + 0.75 * b)
    # an all-zero map: weighted PSNR does not exist, the composite is the reference
    z = score(clips["ref"], clips["heavy"], saliency=[np.zeros((H, W), np.uint8)] * N)
    assert all(math.isnan(x) for x in z.per_frame["psnr_y_weighted"])
    assert z.pooled["vmaf_roi"]["mean"] > 97


def test_model_saliency_placeholder(clips):
    r = score(clips["ref"], clips["light"], model="mobilesal_placeholder_v0", stride=2)
    assert "PLACEHOLDER" in r.saliency
    assert all(0 <= x <= 1 for x in r.per_frame["saliency_mean"])
    with pytest.raises(ConfigError):
        score(clips["ref"], clips["light"], model="mobilesal_placeholder_v0", saliency=clips["uniform"])


def test_frame_count_mismatch(clips):
    with pytest.raises(InputError, match=r"frame counts differ \(reference 6, distorted 4\)"):
        score(clips["ref"], clips["short"])
    with pytest.raises(InputError, match=r"saliency maps 3"):
        score(clips["ref"], clips["light"], saliency=[np.zeros((4, 4), np.uint8)] * 3)


def test_resolution_scaled_to_reference(clips):
    r = score(clips["ref"], clips["small"])
    assert r.scaled_from == (W // 2, H // 2) and (r.width, r.height) == (W, H)
    assert 0 < r.pooled["vmaf"]["mean"] < 100
    near = score(clips["ref"], clips["small"], scaler="neighbor")
    assert near.pooled["psnr_y"]["mean"] != r.pooled["psnr_y"]["mean"]
    with pytest.raises(InputError, match="80x48"):
        score(clips["ref"], clips["small"], scaler="none")


def test_unreadable_inputs(clips, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(InputError, match="distorted"):
        score(clips["ref"], bad)
    with pytest.raises(InputError, match="reference"):
        score(tmp_path / "missing.mp4", clips["ref"])
    with pytest.raises(InputError, match="mask"):
        score(clips["ref"], clips["ref"], mask=tmp_path / "missing.mkv")


def _fake_ffmpeg(tmp_path: Path) -> Path:
    p = tmp_path / "ffmpeg"
    p.write_text("#!/bin/sh\necho ' T.. psnr  VV->V  Calculate the PSNR.'\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


def test_missing_libvmaf(clips, tmp_path, monkeypatch):
    fake = _fake_ffmpeg(tmp_path)
    with pytest.raises(VmafError, match="has no libvmaf"):
        score(clips["ref"], clips["ref"], ffmpeg=str(fake))
    monkeypatch.setenv("VMAF_ROI_FFMPEG", str(fake))
    with pytest.raises(VmafError, match=r"\$VMAF_ROI_FFMPEG"):
        find_ffmpeg()
    with pytest.raises(VmafError, match="not found"):
        find_ffmpeg(str(tmp_path / "nope"))
    monkeypatch.delenv("VMAF_ROI_FFMPEG")
    assert Path(find_ffmpeg()).is_file()


def test_bad_vmaf_model(clips):
    with pytest.raises(ConfigError, match="nosuch"):
        score(clips["ref"], clips["ref"], vmaf_model="nosuch")
    with pytest.raises(ConfigError, match="no such model file"):
        score(clips["ref"], clips["ref"], vmaf_model="/nonexistent/model.json")


def test_pool_ignores_non_finite():
    p = pool([1.0, float("inf"), 3.0, float("nan")])
    assert p == {"mean": 2.0, "median": 2.0, "stdev": 1.0, "min": 1.0, "max": 3.0, "count": 2}
    assert list(pool([]).keys()) == list(POOLED_KEYS)


def test_json_and_csv_schema(clips):
    r = score(clips["ref"], clips["heavy"], saliency=clips["uniform"], mask=clips["mask"])
    d = json.loads(r.to_json())
    assert list(d) == ["schema", "reference", "distorted", "frames", "width", "height", "scaled_from", "vmaf_model",
                       "saliency", "roi_weight", "mask", "metrics", "pooled", "per_frame", "notes"]
    assert d["schema"] == "vmaf-roi.score/1"
    assert d["notes"] == []  # well-formed inputs: no decode fix-ups
    assert d["metrics"] == [*BASE_METRICS, *SALIENCY_METRICS, *MASK_METRICS]
    assert list(d["pooled"]) == d["metrics"] and list(d["per_frame"]) == d["metrics"]
    assert all(list(v) == list(POOLED_KEYS) for v in d["pooled"].values())
    assert all(len(v) == N for v in d["per_frame"].values())
    lines = r.to_csv().splitlines()
    assert lines[0] == "frame," + ",".join(d["metrics"])
    assert len(lines) == N + 1 and lines[1].startswith("0,")
    assert float(lines[1].split(",")[1]) == pytest.approx(d["per_frame"]["vmaf"][0])


def test_cli_score(clips, tmp_path, capsys):
    rc = cli_quality.main(["score", str(clips["ref"]), str(clips["heavy"]), "--json", "-q",
                           "--saliency", str(clips["uniform"]), "--mask", str(clips["mask"])])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["frames"] == N and "psnr_y_mask_in" in d["metrics"]
    out = tmp_path / "s.csv"
    assert cli_quality.main(["score", str(clips["ref"]), str(clips["heavy"]), "--csv", "-o", str(out)]) == 0
    assert out.read_text().startswith("frame,vmaf,ssim,psnr_y\n")
    assert cli_quality.main(["score", str(clips["ref"]), str(clips["ref"])]) == 0
    text = capsys.readouterr().out
    assert "vmaf" in text and "infinite psnr_y" in text
    assert cli_quality.main(["score", str(clips["ref"]), str(clips["short"])]) == InputError.exit_code
    assert "frame counts differ" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_quality.main(["score", str(clips["ref"]), str(clips["ref"]), "--json", "--csv"])
