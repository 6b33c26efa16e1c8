"""Things users do out of ffmpeg habit, and files as real tools write them (issue 27)."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction

import av
import imageio_ffmpeg
import pytest

from vmaf_roi.cli import main
from vmaf_roi.decode import VideoSource
from conftest import PH

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_frames(path, chain: str) -> int:
    """How many frames ``ffmpeg -i path -vf chain -fps_mode vfr`` passes on."""
    proc = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-an", "-vf", chain, "-fps_mode", "vfr", "-f",
                           "framemd5", "-"], capture_output=True, text=True, check=True)
    return sum(1 for line in proc.stdout.splitlines() if line and not line.startswith("#"))


def last_packet_time(path, kind: str) -> float:
    with av.open(str(path)) as c:
        s = [x for x in c.streams if x.type == kind][0]
        return max(float(p.pts * p.time_base) for p in c.demux(s) if p.size and p.pts is not None)


# -- 1. a filter chain that ends before the input ---------------------------------------------
@pytest.mark.parametrize("chain", ["trim=start_frame=2:end_frame=7,setpts=PTS-STARTPTS",
                                   "trim=end_frame=5,scale=160:120", "scale=160:120,trim=end_frame=5"])
def test_chain_ending_early_decodes_like_ffmpeg(clip, chain):
    with VideoSource(clip.path, chain) as src:
        frames = list(src.frames())
        notes = src.notes()
    assert len(frames) == ffmpeg_frames(clip.path, chain) == 5
    assert src.ended_by_filter is not None
    assert notes == []  # no audio copied here; not a "truncated file" either


def test_chain_ending_at_the_input_end_is_not_early(clip):
    with VideoSource(clip.path, "trim=end_frame=12,scale=160:120") as src:
        assert len(list(src.frames())) == 12
    assert src.ended_by_filter is None


def test_encode_with_trim_then_scale(clip, tmp_path, capsys):
    out = tmp_path / "t.mp4"
    rc = main(["encode", str(clip.path), "-o", str(out), "--set", f"saliency.model={PH}",
               "--set", "filters=trim=end_frame=6,scale=160:120"])
    assert rc == 0, capsys.readouterr().err
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (160, 120)
        assert sum(1 for _ in c.decode(v)) == 6
    # the copied audio ends where the video does (6 frames at 24 fps: 0.25 s), not at 0.5 s
    assert last_packet_time(out, "audio") < 0.25 < last_packet_time(clip.path, "audio")
    assert "the filter chain ended the video at 0.250 s" in capsys.readouterr().err


def test_saliency_with_trim_then_setpts(clip, tmp_path, capsys):
    out = tmp_path / "c.sal.mkv"
    rc = main(["saliency", str(clip.path), "-o", str(out), "--model", PH,
               "--vf", "trim=start_frame=3:end_frame=9,setpts=PTS-STARTPTS"])
    assert rc == 0, capsys.readouterr().err
    with av.open(str(out)) as c:
        pts = [f.pts * f.time_base for f in c.decode(video=0)]
    assert len(pts) == 6 and pts[0] == 0


# -- 4. encoder names and config keys from ffmpeg habits ------------------------------------
@pytest.mark.parametrize("name, hint", [
    ("x264", "did you mean libx264?"), ("x265", "did you mean libx265?"), ("svtav1", "did you mean libsvtav1?"),
    ("vp9", "did you mean libvpx-vp9?"), ("h264", "did you mean libx264?"), ("vp8", "did you mean libvpx?"),
])
def test_encoder_habit_names(clip, tmp_path, capsys, name, hint):
    out = tmp_path / "o.mkv"
    assert main(["encode", str(clip.path), "-o", str(out), "--set", f"encoder={name}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vmaf-roi: error: config encoder:") and err[0].endswith(hint), err
    assert not out.exists()


def test_encoder_habit_name_absent_from_this_build(clip, tmp_path, capsys):
    from vmaf_roi.encode.options import has_encoder

    if has_encoder("libaom-av1"):
        pytest.skip("this FFmpeg build has libaom-av1")
    assert main(["encode", str(clip.path), "-o", str(tmp_path / "o.mkv"), "--set", "encoder=aom"]) == 2
    err = capsys.readouterr().err
    assert "is libaom-av1, which this FFmpeg build does not have" in err


@pytest.mark.parametrize("setting, hint", [
    ("crf=26", "did you mean rate_control.value?"), ("rate_control.crf=26", "did you mean rate_control.value?"),
    ("b:v=2M", "did you mean rate_control.value? with rate_control.mode bitrate"),
    ("bitrate=2M", "did you mean rate_control.value? with rate_control.mode bitrate"),
    ("c:v=libx264", "did you mean encoder?"), ("vcodec=libx264", "did you mean encoder?"),
    ("preset:v=slow", "did you mean preset?"), ("c:a=aac", "did you mean audio?"),
    ("roi.strenght=3", "did you mean roi.strength?"),
])
def test_config_habit_keys(clip, tmp_path, capsys, setting, hint):
    assert main(["encode", str(clip.path), "-o", str(tmp_path / "o.mkv"), "--set", setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    key = setting.split("=")[0]
    assert len(err) == 1 and err[0].startswith(f"vmaf-roi: error: config {key}: unknown key ({hint}"), err


def test_config_habit_keys_in_a_yaml_file(tmp_path):
    from vmaf_roi import config
    from vmaf_roi.errors import ConfigError

    job = tmp_path / "job.yaml"
    job.write_text("crf: 20\n")
    with pytest.raises(ConfigError, match=r"config crf: unknown key \(did you mean rate_control.value\?"):
        config.load(job, [])


# -- 2. the input's streams: order, tags, dispositions ---------------------------------------
def streams_info(path):
    """(type, language, title, handler_name, disposition) of every stream, as the demuxer reads them."""
    with av.open(str(path)) as c:
        return [(s.type, s.metadata.get("language"), s.metadata.get("title"), s.metadata.get("handler_name"),
                 int(s.disposition)) for s in c.streams]


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_encode_keeps_stream_order_and_tags(clip, tmp_path, ext):
    # audio first (as phones write it), tagged; a second, forced audio track after the video
    src = tmp_path / f"in{ext}"
    subprocess.run([FFMPEG, "-v", "error", "-i", str(clip.path), "-map", "0:a", "-map", "0:v", "-map", "0:a",
                    "-c", "copy", "-metadata:s:a:0", "language=zho", "-metadata:s:a:0", "handler_name=Core Media Audio",
                    "-metadata:s:a:0", "title=Mandarin", "-metadata:s:v:0", "language=eng",
                    "-metadata:s:v:0", "handler_name=Core Media Video", "-metadata:s:a:1", "language=fra",
                    "-metadata:s:a:1", "title=Commentary", "-disposition:a:0", "default",
                    "-disposition:a:1", "forced", str(src)], check=True)
    ref = tmp_path / f"ref{ext}"
    subprocess.run([FFMPEG, "-v", "error", "-i", str(src), "-map", "0", "-c", "copy", str(ref)], check=True)
    out = tmp_path / f"out{ext}"
    assert main(["encode", str(src), "-o", str(out), "-q", "--set", f"saliency.model={PH}"]) == 0
    got, want = streams_info(out), streams_info(ref)
    assert [s[0] for s in got] == ["audio", "video", "audio"]
    assert got == want
    # what each container can carry is there (mp4: no stream title; matroska: no handler name)
    mp4 = ext == ".mp4"
    assert got[0][1:4] == ("zho", None if mp4 else "Mandarin", "Core Media Audio" if mp4 else None)
    assert got[1][1:4] == ("eng", None, "Core Media Video" if mp4 else None)
    assert got[2][1] == "fra" and got[2][4] & int(av.stream.Disposition.forced)


# -- 3. batch resume checks every output it recorded -----------------------------------------
def test_batch_resume_brings_back_a_deleted_step_output(tmp_path, clip, capsys):
    import yaml

    from vmaf_roi.batch import MANIFEST_NAME, read_manifest
    from vmaf_roi.cli_batch import main as batch_main

    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(yaml.safe_dump({
        "output_dir": "out", "defaults": {"config": {"saliency": {"model": PH}}},
        "jobs": [{"name": "j", "inputs": [str(clip.path)], "output": "{stem}.mp4", "score": {}}]}))
    out = tmp_path / "out"
    side = out / "clip.mp4.score.json"

    def run(*extra):
        rc = batch_main([str(jobs), "--json", "-j", "1", *extra])
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
        return rc, lines[-1]

    rc, summary = run()
    assert rc == 0 and side.is_file()
    want = side.read_bytes()

    rc, summary = run()  # nothing changed: skipped
    assert rc == 0 and summary["skipped"] == 1 and summary["done"] == 0

    side.unlink()  # a deleted step output comes back
    rc, summary = run()
    assert rc == 0 and summary["done"] == 1, summary
    assert json.loads(side.read_bytes())["pooled"] == json.loads(want)["pooled"]
    rec = next(iter(read_manifest(out / MANIFEST_NAME).values()))
    assert rec["step_outputs"]["score"]["size"] == side.stat().st_size

    side.write_text('{"edited": "by hand"}\n')  # changed since: not ours any more, left alone
    rc, summary = run()
    assert rc == 1 and "differs from what the manifest recorded" in summary["failures"][0]["reason"]
    assert side.read_text() == '{"edited": "by hand"}\n'
    rc, summary = run("--overwrite")
    assert rc == 0 and summary["done"] == 1 and json.loads(side.read_bytes())["pooled"]


# -- 5. packet timestamps as the ffmpeg CLI reads them ---------------------------------------
def test_inputs_open_without_made_up_packet_pts(clip):
    from vmaf_roi.decode import AVFMT_FLAG_GENPTS, open_input

    with open_input(clip.path) as c:
        assert not c.flags & AVFMT_FLAG_GENPTS  # PyAV sets it; the ffmpeg CLI does not


def ffmpeg_decoded_pts(path) -> list[int]:
    """The best-effort timestamps ffmpeg's decoder hands its filters (showinfo's pts)."""
    proc = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path), "-an", "-vf", "showinfo", "-fps_mode", "vfr",
                           "-f", "null", "-"], capture_output=True, text=True, check=True)
    import re

    return [int(m) for m in re.findall(r"\bn: *\d+ pts: *(-?\d+)", proc.stderr)]


def test_avi_with_packed_b_frames_times_frames_as_ffmpeg():
    import os
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from fetch_corpus import load

    try:
        path = load().path("Megamind.avi")  # MPEG-4 part 2 with packed B-frames
    except Exception as exc:
        assert os.environ.get("CI") != "true", f"CI has no corpus: {exc}"
        pytest.skip(f"corpus clip not available ({exc}); run python scripts/fetch_corpus.py")
    with VideoSource(path) as src:
        decoded = [f.pts for f in src._decoded()]
    with VideoSource(path) as src:
        out = list(src.frames())
    assert decoded == ffmpeg_decoded_pts(path)
    assert len(out) == ffmpeg_frames(path, "null") == 270
