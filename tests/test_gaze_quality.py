"""Gaze-weighted quality: EWPSNR and the applied maps' NSS/CC in `score` and `compare` (--gaze)."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vmaf_roi import cli_quality, config
from vmaf_roi.compare import compare
from vmaf_roi.encode import SaliencyTrack
from vmaf_roi.errors import InputError
from vmaf_roi.score import GAZE_MAP_METRICS, GAZE_METRICS, score, score_many
from vmaf_roi.synth import make_clip, read_masks

W, H, N = 160, 96, 6
LOOK = (24, 20)  # where every viewer looks in the constructed cases (top left)
FAR = (slice(64, 96), slice(112, 160))  # a bottom-right block far from LOOK


def _yuv_video(path: Path, ys: list[np.ndarray]) -> Path:
    """A lossless (FFV1) yuv420p video with these luma planes and neutral chroma."""
    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("ffv1", rate=24)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i, y in enumerate(ys):
            f = av.VideoFrame(W, H, "yuv420p")
            for k, plane in enumerate((y, np.full((H // 2, W // 2), 128, np.uint8),
                                       np.full((H // 2, W // 2), 128, np.uint8))):
                p = f.planes[k]
                dst = np.frombuffer(p, dtype=np.uint8).reshape(-1, p.line_size)
                dst[: plane.shape[0], : plane.shape[1]] = plane
            f.pts, f.time_base = i, Fraction(1, 24)
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    return path


def _gaze_csv(path: Path, rows, time_col: str = "frame") -> Path:
    lines = [f"{time_col},x,y,viewer"] + [",".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _everyone_looks_at(point, frames=range(N), viewers=3):
    return [(f, point[0] + 0.5 * v, point[1], f"v{v}") for f in frames for v in range(viewers)]


@pytest.fixture(scope="module")
def constructed(tmp_path_factory):
    """A textured reference and distortions of it: an error only in FAR, an error only around
    LOOK, and an error of the same size everywhere (+-6 in a checkerboard)."""
    d = tmp_path_factory.mktemp("gazeq")
    rng = np.random.default_rng(11)
    refs = [rng.integers(40, 216, (H, W)).astype(np.uint8) for _ in range(N)]

    def changed(region, delta):
        out = []
        for y in refs:
            z = y.astype(np.int16)
            z[region] += delta
            out.append(z.clip(0, 255).astype(np.uint8))
        return out

    yy, xx = np.mgrid[0:H, 0:W]
    checker = np.where((yy + xx) % 2 == 0, 6, -6).astype(np.int16)
    near = (slice(LOOK[1] - 12, LOOK[1] + 12), slice(LOOK[0] - 12, LOOK[0] + 12))
    return {
        "dir": d,
        "ref": _yuv_video(d / "ref.mkv", refs),
        "far": _yuv_video(d / "far.mkv", changed(FAR, 20)),
        "near": _yuv_video(d / "near.mkv", changed(near, 20)),
        "one": _yuv_video(d / "one.mkv", changed((LOOK[1], LOOK[0]), 1)),  # one code value at one pixel
        "everywhere": _yuv_video(d / "everywhere.mkv",
                                 [(y.astype(np.int16) + checker).astype(np.uint8) for y in refs]),
        "look": _gaze_csv(d / "look.csv", _everyone_looks_at(LOOK)),
    }


def test_error_where_nobody_looks_leaves_ewpsnr_unchanged(constructed):
    c = constructed
    same, far, near = score_many(c["ref"], [c["ref"], c["far"], c["near"]], gaze=c["look"])
    assert same.metrics[-1] == "ewpsnr" and "gaze_nss" not in same.metrics  # no maps: no NSS/CC
    assert all(math.isinf(x) for x in same.per_frame["ewpsnr"])  # error-free: the infinite cap
    # the error far from every fixation costs PSNR-Y but leaves EWPSNR at the error-free value
    assert all(30 < x < 50 for x in far.per_frame["psnr_y"])
    assert far.per_frame["ewpsnr"] == same.per_frame["ewpsnr"]
    assert far.pooled["ewpsnr"]["count"] == 0  # pooled over no frame, as PSNR-Y of identical frames
    # the same error where everybody looks: EWPSNR drops far below PSNR-Y
    assert all(e < p - 3 for e, p in zip(near.per_frame["ewpsnr"], near.per_frame["psnr_y"]))
    assert far.gaze["frames_used"] == N and far.gaze["sigma"] > 0 and far.gaze["viewers_known"] is True
    # the smallest error there is, where everybody looks, still counts
    one, = score_many(c["ref"], [c["one"]], gaze=c["look"])
    assert one.per_frame["psnr_y"] == pytest.approx([10 * math.log10(255**2 * W * H)] * N)
    assert all(math.isfinite(e) and e < p - 10 for e, p in zip(one.per_frame["ewpsnr"], one.per_frame["psnr_y"]))


def test_error_everywhere_moves_ewpsnr_as_psnr(constructed, tmp_path):
    c = constructed
    # an error of the same size at every pixel: any fixation density sees exactly PSNR-Y
    r = score(c["ref"], c["everywhere"], gaze=c["look"])
    expected = 10 * math.log10(255**2 / 36)
    assert r.per_frame["psnr_y"] == pytest.approx([expected] * N, rel=1e-9)
    assert r.per_frame["ewpsnr"] == pytest.approx(r.per_frame["psnr_y"], rel=1e-9)
    # fixations spread evenly over the whole frame (every 4th pixel, three viewers): EWPSNR
    # of a local error is PSNR-Y's, not the much lower value of looking at the error
    grid = [(f, x + 0.5, y + 0.5, f"v{(x + y) % 3}") for f in range(N) for y in range(0, H, 4) for x in range(0, W, 4)]
    spread = _gaze_csv(tmp_path / "spread.csv", grid)
    near, = score_many(c["ref"], [c["near"]], gaze=spread)
    assert near.per_frame["ewpsnr"] == pytest.approx(near.per_frame["psnr_y"], abs=0.5)
    looked, = score_many(c["ref"], [c["near"]], gaze=c["look"])
    assert max(looked.per_frame["ewpsnr"]) < min(near.per_frame["ewpsnr"]) - 3


def test_frames_left_out_and_noted(constructed, tmp_path):
    c = constructed
    rows = _everyone_looks_at(LOOK, frames=[0, 2, 3, 4, 5])  # frame 1: nobody
    rows = [r for r in rows if not (r[0] == 3 and r[3] == "v2")]  # frame 3: two viewers
    g = _gaze_csv(tmp_path / "g.csv", rows)
    r = score(c["ref"], c["near"], gaze=g)
    assert [math.isnan(x) for x in r.per_frame["ewpsnr"]] == [False, True, False, True, False, False]
    assert r.pooled["ewpsnr"]["count"] == 4
    assert r.gaze["frames_used"] == 4 and r.gaze["frames_without_fixations"] == 1
    assert r.gaze["frames_few_viewers"] == 1
    assert any("2 of 6 frames left out" in n and "fewer than 3 viewers" in n for n in r.notes)
    # two viewers are enough when asked for
    r2 = score(c["ref"], c["near"], gaze=g, gaze_min_viewers=2)
    assert r2.gaze["frames_used"] == 5 and r2.gaze["frames_few_viewers"] == 0
    # no viewer column: every frame with fixations counts
    g3 = tmp_path / "noviewer.csv"
    g3.write_text("frame,x,y\n" + "".join(f"{f},{LOOK[0]},{LOOK[1]}\n" for f in (0, 2, 3)))
    r3 = score(c["ref"], c["near"], gaze=g3)
    assert r3.gaze["frames_used"] == 3 and r3.gaze["viewers_known"] is False


def test_gaze_beyond_the_video_is_one_clear_error(constructed, tmp_path, capsys):
    c = constructed
    g = _gaze_csv(tmp_path / "long.csv", _everyone_looks_at(LOOK, frames=range(N + 3)))
    with pytest.raises(InputError, match="frame"):
        score(c["ref"], c["near"], gaze=g)
    out = tmp_path / "s.json"
    rc = cli_quality.main(["score", str(c["ref"]), str(c["near"]), "--gaze", str(g), "--json", "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == InputError.exit_code
    assert len(err) == 1 and err[0].startswith("vmaf-roi: error: ") and "Traceback" not in err[0]
    assert str(N) in err[0]  # says how many frames the video has
    assert not out.exists() and not list(tmp_path.glob("s.json*"))
    # a gaze file that is not there: the same, before any scoring
    rc = cli_quality.main(["score", str(c["ref"]), str(c["near"]), "--gaze", str(tmp_path / "none.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == InputError.exit_code and len(err) == 1 and "none.csv" in err[0]


@pytest.fixture(scope="module")
def object_clip(tmp_path_factory):
    """A generated clip with its exact object mask, and a gaze file of three viewers looking at
    the object's centre on every frame (as `t` seconds)."""
    d = tmp_path_factory.mktemp("gazeclip")
    clip = make_clip(d / "in.mp4", width=192, height=128, frames=8, fps=24, seed=5, mask_path=d / "in.mask.mkv")
    masks = read_masks(clip.mask_path)
    rows = []
    for f, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        for v in range(3):
            rows.append((f"{(f + 0.5) / 24:.6f}", f"{xs.mean() + v:.1f}", f"{ys.mean():.1f}", v))
    return clip, _gaze_csv(d / "in.gaze.csv", rows, time_col="t"), masks


def test_cli_score_gaze_end_to_end(object_clip, tmp_path):
    clip, gaze, masks = object_clip
    enc = make_clip(tmp_path / "enc.mp4", width=192, height=128, frames=8, fps=24, seed=5, crf=40)
    out = tmp_path / "s.json"
    rc = cli_quality.main(["score", str(clip.path), str(enc.path), "--saliency", str(clip.mask_path),
                           "--gaze", str(gaze), "--json", "-o", str(out), "-q"])
    assert rc == 0
    d = json.loads(out.read_text())
    for m in (*GAZE_METRICS, *GAZE_MAP_METRICS):
        assert m in d["metrics"] and len(d["per_frame"][m]) == 8 and d["pooled"][m]["count"] == 8
    assert d["gaze"]["file"] == str(gaze) and d["gaze"]["sigma"] > 0 and d["gaze"]["frames_used"] == 8
    # the object mask as the map, viewers on the object: the map follows the gaze
    assert d["pooled"]["gaze_nss"]["min"] > 1 and d["pooled"]["gaze_cc"]["min"] > 0.2
    # the inverse map (everything but the object) is high where nobody looks
    inverse = [np.where(m, 0, 255).astype(np.uint8) for m in masks]
    r = score(clip.path, enc.path, saliency=inverse, gaze=gaze)
    assert r.pooled["gaze_nss"]["max"] < 0 and r.pooled["gaze_cc"]["max"] < 0
    assert r.per_frame["ewpsnr"] == pytest.approx(d["per_frame"]["ewpsnr"])  # EWPSNR does not depend on the map
    # the table names the blur and the frames used
    rc = cli_quality.main(["score", str(clip.path), str(enc.path), "--gaze", str(gaze), "-o", str(tmp_path / "t.txt")])
    text = (tmp_path / "t.txt").read_text()
    assert rc == 0 and "ewpsnr" in text and "sigma" in text and "8 of 8 frames" in text


def test_compare_gaze(object_clip, tmp_path):
    clip, gaze, _ = object_clip
    cfg = config.load(None, ["saliency.model=mobilesal_placeholder_v0", "preset=ultrafast", "saliency.stride=4"])
    res = compare(clip.path, cfg, crfs=[26, 34], out_dir=tmp_path / "o", track=SaliencyTrack(), gaze=gaze)
    assert res.metrics[-1] == "ewpsnr"
    assert all(e.pooled["ewpsnr"]["count"] == 8 for e in res.encodes)
    plain = [e for e in res.encodes if e.mode == "plain"]
    assert plain[0].pooled["ewpsnr"]["mean"] > plain[1].pooled["ewpsnr"]["mean"]  # lower CRF, higher EWPSNR
    d = json.loads(res.write_json(tmp_path / "r.json").read_text())
    assert set(d["bd"]["ewpsnr"]) >= {"bd_rate", "bd_quality", "reliable", "note"}
    assert d["bd"]["ewpsnr"]["bd_rate"] is not None or d["bd"]["ewpsnr"]["note"]
    assert d["encodes"][0]["pooled"]["ewpsnr"]["count"] == 8
    g = d["gaze"]
    assert g["file"] == str(gaze) and g["frames_used"] == 8 and g["sigma"] > 0
    assert g["maps_nss"]["count"] == 8 and g["maps_cc"]["count"] == 8
    assert math.isfinite(g["maps_nss"]["mean"]) and -1 <= g["maps_cc"]["mean"] <= 1
    # the CLI: the EWPSNR column and BD row, within 100 columns, and the panel in the plot
    out = tmp_path / "cli"
    rc = cli_quality.main(["compare", str(clip.path), "--crf", "26,34", "-q", "-o", str(out), "--gaze", str(gaze),
                           "--mask", str(clip.mask_path), "--set", "saliency.model=mobilesal_placeholder_v0",
                           "--set", "preset=ultrafast"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert "ewpsnr" in report["bd"] and report["gaze"]["maps_nss"]["count"] == 8
    assert (out / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_compare_gaze_table(object_clip, tmp_path, capsys):
    clip, gaze, _ = object_clip
    rc = cli_quality.main(["compare", str(clip.path), "--crf", "26,34", "-q", "-o", str(tmp_path / "o"),
                           "--gaze", str(gaze), "--mask", str(clip.mask_path),
                           "--set", "saliency.model=mobilesal_placeholder_v0", "--set", "preset=ultrafast"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 100, "\n".join(lines)
    # too many columns for one table: the RD table goes on below, each part with the point and rates
    heads = [i for i, line in enumerate(lines) if line.startswith("CRF ")]
    assert len(heads) == 2 and "EWPSNR" in lines[heads[1]] and "EWPSNR" not in lines[heads[0]]
    assert lines[heads[1]].split()[:6] == ["CRF", "mode", "video", "kb/s", "total", "kb/s"]
    assert len([line for line in lines[heads[1]:] if line.split()[1:2] in (["plain"], ["roi"])]) == 4
    assert any(line.startswith("EWPSNR") for line in lines)  # its BD row
    assert any("NSS" in line and "CC" in line for line in lines)


def test_compare_maps_from_a_file(object_clip, tmp_path, capsys):
    """--maps: the ROI encodes steer by a map video (here the object's mask) instead of the model,
    and the NSS/CC reported are those maps' against the viewers, who look at the object."""
    clip, gaze, _ = object_clip
    out = tmp_path / "o"
    rc = cli_quality.main(["compare", str(clip.path), "--crf", "26,34", "-q", "-o", str(out), "--gaze", str(gaze),
                           "--maps", str(clip.mask_path), "--set", "preset=ultrafast"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["saliency"]["maps"] == str(clip.mask_path) and report["saliency"]["inferences"] == 0
    assert report["gaze"]["maps_nss"]["min"] > 1 and report["gaze"]["maps_cc"]["min"] > 0.2
    assert "ROI maps from" in capsys.readouterr().err
    rc = cli_quality.main(["compare", str(clip.path), "--crf", "26,34", "-q", "-o", str(tmp_path / "p"),
                           "--maps", str(tmp_path / "none.mkv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == InputError.exit_code and len(err) == 1 and "none.mkv" in err[0]
    assert not (tmp_path / "p").exists()  # refused before the first encode


def test_compare_refuses_gaze_beyond_the_input_before_encoding(constructed, tmp_path):
    """An input whose container gives no frame count (FFV1 in Matroska): compare counts the frames
    and refuses fixations past them before the first encode."""
    c = constructed
    g = _gaze_csv(tmp_path / "long.csv", _everyone_looks_at(LOOK, frames=range(N + 1)))
    cfg = config.load(None, ["saliency.model=mobilesal_placeholder_v0", "preset=ultrafast"])
    events = []
    with pytest.raises(InputError, match=f"the video has {N} frames"):
        compare(c["ref"], cfg, crfs=[26, 34], out_dir=tmp_path / "o", gaze=g, on_event=events.append)
    assert not events and not (tmp_path / "o").exists()  # nothing encoded, the new OUT_DIR removed
