"""RD comparison: BD-rate sign and units, point parsing, `compare` end to end (library and CLI)."""

from __future__ import annotations

import json

import pytest

from vmaf_roi import cli_quality, config
from vmaf_roi.compare import bd_metrics, compare, parse_points
from vmaf_roi.encode import SaliencyTrack
from vmaf_roi.errors import ConfigError, InputError
from vmaf_roi.synth import make_clip

RATES = [100.0, 200.0, 400.0, 800.0]
QUALITY = [30.0, 33.0, 36.0, 39.0]  # +3 dB per doubling


def test_bd_rate_sign_on_constructed_curves():
    cheaper = bd_metrics(RATES, QUALITY, [r * 0.8 for r in RATES], QUALITY)  # same quality at 80% of the bits
    assert cheaper["bd_rate"] == pytest.approx(-20.0, abs=0.5)
    assert cheaper["bd_quality"] > 0
    dearer = bd_metrics(RATES, QUALITY, [r * 1.25 for r in RATES], QUALITY)
    assert dearer["bd_rate"] == pytest.approx(25.0, abs=0.5)
    assert dearer["bd_quality"] < 0
    better = bd_metrics(RATES, QUALITY, RATES, [q + 1.0 for q in QUALITY])
    assert better["bd_quality"] == pytest.approx(1.0, abs=0.05)
    assert better["bd_rate"] < 0
    same = bd_metrics(RATES, QUALITY, RATES, QUALITY)
    assert same["bd_rate"] == pytest.approx(0.0, abs=1e-6) and same["note"] is None


def test_bd_not_computable():
    assert bd_metrics([100], [30], [90], [30])["bd_rate"] is None
    r = bd_metrics(RATES, [float("inf")] * 4, RATES, QUALITY)
    assert r["bd_rate"] is None and "points" in r["note"]
    far = bd_metrics(RATES, QUALITY, RATES, [q + 50 for q in QUALITY])
    assert far["bd_rate"] is None and "overlap" in far["note"]


def test_parse_points():
    assert parse_points("20, 24,28", "crf") == [20, 24, 28]
    assert parse_points("500k,1.5M", "bitrates") == [500_000, 1_500_000]
    for bad, kind in (("20", "crf"), ("20,x", "crf"), ("20,20", "crf"), ("20,70", "crf"), ("1M,-3", "bitrates")):
        with pytest.raises(ConfigError):
            parse_points(bad, kind)


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    return make_clip(d / "in.mp4", width=192, height=128, frames=8, seed=5, audio=True, mask_path=d / "in.mask.mkv")


def test_compare_end_to_end(small_clip, tmp_path):
    cfg = config.load(None, ["saliency.model=mobilesal_placeholder_v0", "preset=veryfast", "saliency.stride=4"])
    track = SaliencyTrack()
    events = []
    res = compare(small_clip.path, cfg, crfs=[24, 30, 36], out_dir=tmp_path / "out", mask=small_clip.mask_path,
                  track=track, on_event=events.append)
    assert [(e.point, e.mode) for e in res.encodes] == [(p, m) for p in (24, 30, 36) for m in ("plain", "roi")]
    assert track.inferences == 2  # stride 4 over 8 frames: one saliency pass shared by all ROI encodes
    assert res.metrics == ["vmaf", "psnr_y", "ssim", "vmaf_saliency", "vmaf_roi", "psnr_y_weighted",
                           "psnr_y_mask_in", "psnr_y_mask_out"]
    plain = [e for e in res.encodes if e.mode == "plain"]
    assert plain[0].bitrate > plain[1].bitrate > plain[2].bitrate
    assert plain[0].pooled["vmaf"]["mean"] > plain[2].pooled["vmaf"]["mean"]
    assert set(res.bd) == set(res.metrics)
    assert all(isinstance(b["bd_rate"], float) or b["note"] for b in res.bd.values())
    assert not list((tmp_path / "out").glob("*.mkv"))  # encodes removed without keep
    d = json.loads(res.write_json(tmp_path / "r.json").read_text())
    assert d["schema"] == "vmaf-roi.compare/1" and d["kind"] == "crf" and d["points"] == [24, 30, 36]
    assert list(d["encodes"][0]) == ["point", "mode", "path", "bitrate", "total_bitrate", "bytes", "encode_fps",
                                     "pooled"]
    # the bitrate compared is the video's alone: below the file's, and labelled as such
    assert all(0 < e["bitrate"] < e["total_bitrate"] for e in d["encodes"])
    assert list(d["bd"]["vmaf"]) == ["bd_rate", "bd_quality", "note", "reliable", "quality_reliable", "overlap",
                                     "quality_overlap"]
    assert d["config"]["audio"] == "drop"
    png = res.write_plot(tmp_path / "rd.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_errors(small_clip, tmp_path):
    cfg = config.load(None, ["saliency.model=mobilesal_placeholder_v0"])
    with pytest.raises(ConfigError, match="filters"):
        compare(small_clip.path, config.load(None, ["filters=scale=96:64"]), crfs=[20, 30], out_dir=tmp_path)
    with pytest.raises(InputError):
        compare(tmp_path / "missing.mp4", cfg, crfs=[20, 30], out_dir=tmp_path)
    with pytest.raises(ConfigError):
        compare(small_clip.path, cfg, crfs=[20, 30], bitrates=[1000, 2000], out_dir=tmp_path)


def test_cli_compare(small_clip, tmp_path, capsys):
    out = tmp_path / "o"
    rc = cli_quality.main(["compare", str(small_clip.path), "--bitrates", "150k,400k", "-q", "-o", str(out),
                           "--set", "saliency.model=mobilesal_placeholder_v0", "--set", "preset=ultrafast",
                           "--keep"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "BD-rate" in text and "plain" in text and "roi" in text
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "bitrate" and report["points"] == [150_000, 400_000]
    assert (out / "rd.png").is_file() and len(list(out.glob("*.mkv"))) == 4
    assert cli_quality.main(["compare", str(small_clip.path), "--crf", "20"]) == ConfigError.exit_code
    assert "at least 2 points" in capsys.readouterr().err


def test_cli_compare_tables_fit_100_columns_and_notes_come_once(small_clip, tmp_path, capsys):
    rc = cli_quality.main(["compare", str(small_clip.path), "--crf", "20,24", "-q", "-o", str(tmp_path / "o"),
                           "--mask", str(small_clip.mask_path), "--set", "saliency.model=mobilesal_placeholder_v0",
                           "--set", "preset=ultrafast"])
    assert rc == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100, out
    assert lines[0].split()[:4] == ["CRF", "mode", "video", "kb/s"] and "total kb/s" in lines[0]
    assert "SSIM" in lines[0]
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    notes = {b["note"] for b in report["bd"].values() if b["note"]}
    for n in notes:  # each distinct note is printed once, under the table, not in every row
        assert sum(n.split(": ")[-1][:40] in line for line in lines) <= 1
    assert "min_overlap" not in out


def test_bd_note_is_short_and_marks_unreliable():
    r = bd_metrics(RATES, QUALITY, RATES, [q + 6 for q in QUALITY])  # the quality ranges overlap a little
    assert r["bd_rate"] is not None and r["reliable"] is False and r["overlap"] < 75
    assert r["quality_reliable"] is True and r["quality_overlap"] is None  # same bitrates: BD-quality is fine
    assert "min_overlap" not in r["note"] and "unreliable" in r["note"] and r["note"].startswith("BD-rate: ")
    ok = bd_metrics(RATES, QUALITY, [x * 0.9 for x in RATES], QUALITY)
    assert ok["reliable"] is True and ok["quality_reliable"] is True and ok["note"] is None


def test_cli_compare_ndjson(small_clip, tmp_path, capsys):
    rc = cli_quality.main(["compare", str(small_clip.path), "--crf", "24,32", "--ndjson", "-o", str(tmp_path / "o"),
                           "--set", "saliency.model=mobilesal_placeholder_v0", "--set", "preset=ultrafast"])
    assert rc == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [e["type"] for e in events]
    assert set(kinds) == {"status", "progress", "result"} and kinds[-1] == "result" and kinds.count("result") == 1
    steps = [e["message"] for e in events if e["type"] == "status" and e["level"] == "info"]
    assert steps[0] == "step 1/6: encode crf24 plain" and steps[-1] == "step 6/6: score crf32"
    prog = [e for e in events if e["type"] == "progress"]
    assert all(e["unit"] == "frame" and e["total"] == 8 for e in prog)  # counted in frames, not steps
    assert sum(e["final"] for e in prog) == 6 and all(e["done"] == 8 for e in prog if e["final"])
    res = events[-1]["result"]
    assert res["schema"] == "vmaf-roi.compare/1" and res["encodes"][0]["bitrate"] > 0
