"""ffmpeg-style options typed by habit (issue 27, items 7 and 8): -c:v, -crf, -preset, -b:v, -an
mapped onto the config; -ss/-t/-to/-frames:v cutting a segment as ffmpeg's input options do."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import av
import imageio_ffmpeg
import pytest
import yaml

from vmaf_roi.cli import main
from vmaf_roi.decode import Segment, VideoSource, parse_time
from vmaf_roi.errors import ConfigError
from conftest import PH

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
CORPUS = Path(os.environ.get("VMAF_ROI_CORPUS_DIR", Path(__file__).resolve().parents[1] / "build" / "corpus"))
CUP_FRAMES = 217  # cup.mp4: 217 frames at 26.79 fps, a keyframe every 27 or so, AAC audio


@pytest.fixture(scope="module")
def cup() -> Path:
    p = CORPUS / "cup.mp4"
    if not p.is_file():
        pytest.skip(f"corpus clip {p} not there; run python scripts/fetch_corpus.py")
    return p


def printed_config(capsys, argv) -> dict:
    assert main(argv + ["--print-config"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def ffmpeg_frames(*args: str) -> int:
    proc = subprocess.run([FFMPEG, "-v", "error", *args, "-an", "-f", "framemd5", "-"], capture_output=True,
                          text=True, check=True)
    return sum(1 for line in proc.stdout.splitlines() if line and not line.startswith("#"))


def streams(path) -> dict[str, list[float]]:
    """Start times of the packets of each stream type."""
    out: dict[str, list[float]] = {}
    with av.open(str(path)) as c:
        for p in c.demux():
            if p.size and p.pts is not None:
                out.setdefault(p.stream.type, []).append(float(p.pts * p.time_base))
    return {k: sorted(v) for k, v in out.items()}


def audio_seconds(path) -> float:
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        ends = [float((p.pts + p.duration) * p.time_base) for p in c.demux(a) if p.size]
    return max(ends) - 0.0


# -- the config shortcuts ----------------------------------------------------------------------
@pytest.mark.parametrize("cmd", ["encode", "compare"])
@pytest.mark.parametrize("opts, want", [
    (["-c:v", "libx265"], {"encoder": "libx265"}),
    (["-vcodec", "libvpx-vp9"], {"encoder": "libvpx-vp9"}),
    (["-preset", "slow"], {"preset": "slow"}),
    (["-an"], {"audio": "drop"}),
])
def test_codec_preset_audio_shortcuts(capsys, cmd, opts, want):
    extra = ["--crf", "23,28"] if cmd == "compare" else []
    cfg = printed_config(capsys, [cmd, "in.mp4", *extra, *opts])
    for k, v in want.items():
        assert cfg[k] == v
    assert cfg != printed_config(capsys, [cmd, "in.mp4", *extra])  # it changed something


@pytest.mark.parametrize("opts, mode, value", [
    (["-crf", "26"], "crf", 26), (["--crf", "30"], "crf", 30), (["-b:v", "2M"], "bitrate", "2M"),
])
def test_rate_shortcuts(capsys, opts, mode, value):
    rc = printed_config(capsys, ["encode", "in.mp4", *opts])["rate_control"]
    assert (rc["mode"], rc["value"]) == (mode, value)


def test_set_wins_over_a_shortcut(capsys):
    rc = printed_config(capsys, ["encode", "in.mp4", "-crf", "26", "--set", "rate_control.value=31"])["rate_control"]
    assert rc["value"] == 31


def test_compare_crf_and_bv_are_its_points(capsys):
    assert main(["compare", "in.mp4", "-crf", "23,28,33", "--print-config"]) == 0
    assert "# compare points: crf 23,28,33" in capsys.readouterr().out
    assert main(["compare", "in.mp4", "-b:v", "1M,2M", "--print-config"]) == 0
    assert "# compare points: bitrates 1M,2M" in capsys.readouterr().out


def test_config_file_with_c_still_works(capsys, tmp_path):
    f = tmp_path / "job.yaml"
    f.write_text("encoder: libx265\npreset: fast\n")
    for cmd, extra in (("encode", []), ("compare", ["--crf", "20,30"])):
        cfg = printed_config(capsys, [cmd, "in.mp4", *extra, "-c", str(f)])
        assert (cfg["encoder"], cfg["preset"]) == ("libx265", "fast")
        # the file, then -c:v over it
        cfg = printed_config(capsys, [cmd, "in.mp4", *extra, "-c", str(f), "-c:v", "libvpx-vp9"])
        assert (cfg["encoder"], cfg["preset"]) == ("libvpx-vp9", "fast")


def test_segment_is_shown_by_print_config(capsys):
    assert main(["encode", "in.mp4", "-ss", "1:30", "-t", "3", "--print-config"]) == 0
    assert "# segment of the input (not a config key): -ss 90 -t 3" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["encode", "in.mp4", "-ss", "abc"], "-ss 'abc': not a time"),
    (["encode", "in.mp4", "-t", "1:75"], "minutes and seconds go up to 59"),
    (["compare", "in.mp4", "--crf", "20,30", "-ss", "2", "-to", "1"], "-to 1: must come after -ss 2"),
    (["encode", "in.mp4", "-t", "3", "-to", "4"], "-t and -to: give one"),
    (["encode", "in.mp4", "-crf", "20", "-b:v", "1M"], "-crf and -b:v: give one"),
    (["saliency", "in.mp4", "-o", "m.mkv", "-t", "0"], "the duration must be more than 0"),
    (["compare", "in.mp4"], "give the points"),
])
def test_bad_values_are_one_clear_error(capsys, argv, words):
    assert main(argv) == ConfigError.exit_code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vmaf-roi: error: ") and words in err, err
    assert "Traceback" not in err


def test_bad_frame_count_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["encode", "in.mp4", "-frames:v", "0"])
    assert e.value.code == 2
    assert "expected a number of frames >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("text, seconds", [
    ("90", 90), ("1.5", 1.5), ("01:30", 90), ("1:02:03.5", 3723.5), ("1500ms", 1.5), (".5", 0.5),
])
def test_times_as_ffmpeg_reads_them(text, seconds):
    assert parse_time(text) == pytest.approx(seconds)


# -- the segment ----------------------------------------------------------------------------
def test_seek_gives_ffmpegs_frames_without_decoding_from_the_start(cup):
    with VideoSource(cup, start=2, duration=3) as src:
        frames = list(src.frames())
    assert len(frames) == ffmpeg_frames("-ss", "2", "-t", "3", "-i", str(cup)) == 81
    assert frames[0].pts == 0 and frames[0].time == 0
    # decoding began at the keyframe before 2 s (1.12 s), not at 0: 25 frames dropped, not 54
    assert 1.0 < src.seeked_to <= 2.0
    assert src.dropped_before == 24  # frames 30..53 (from the keyframe at 1.12 s); from 0 it would be 54
    assert src.decoded == len(frames) + src.dropped_before + 1  # + the one at 5.003 s that ends the segment
    assert src.segment_offset == pytest.approx(2.0167, abs=1e-3)  # the first frame at or after 2 s


def test_seek_far_in_decodes_one_group_of_pictures(cup):
    with VideoSource(cup, start=7, max_frames=5) as src:
        n = sum(1 for _ in src.frames())
    assert n == 5
    assert src.seeked_to > 6 and src.decoded < 40  # from 0 it would be 188 decoded frames


def test_to_is_the_same_as_t():
    assert Segment.from_options("2", None, "5", None) == Segment.from_options("2", "3", None, None)


def test_encode_segment_like_ffmpeg(cup, tmp_path, capsys):
    """encode -ss 2 -t 3 against `ffmpeg -ss 2 -t 3 -i cup.mp4 -c:v libx264 -c:a copy`: the same
    frame count, video from time 0; the audio within 50 ms of ffmpeg's (ffmpeg copies the audio
    packets from the seek point with negative times hidden by an edit list, 3.013 s shown; here
    the packets from the segment's first video frame on, 3.029 s)."""
    ref = tmp_path / "ref.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-ss", "2", "-t", "3", "-i", str(cup), "-c:v", "libx264", "-preset",
                    "ultrafast", "-c:a", "copy", str(ref)], check=True)
    out = tmp_path / "seg.mp4"
    rc = main(["encode", str(cup), "-o", str(out), "-ss", "2", "-t", "3", "-c:v", "libx264", "-preset", "ultrafast",
               "--set", f"saliency.model={PH}", "-q"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "decoded from 1.120 s (the keyframe before)" in err
    mine, theirs = streams(out), streams(ref)
    assert len(mine["video"]) == len(theirs["video"]) == 81
    assert mine["video"][0] == theirs["video"][0] == 0
    with av.open(str(ref)) as c:
        ref_audio = float(c.streams.audio[0].duration * c.streams.audio[0].time_base)
    assert abs(audio_seconds(out) - ref_audio) < 0.05
    assert 0 <= mine["audio"][0] < 0.03
    assert not list(tmp_path.glob("*.mkv"))  # the temporary cut is gone


def test_an_and_frames(cup, tmp_path, capsys):
    out = tmp_path / "f.mp4"
    rc = main(["encode", str(cup), "-o", str(out), "-frames:v", "10", "-an", "--set", f"saliency.model={PH}",
               "-preset", "ultrafast", "-q"])
    assert rc == 0, capsys.readouterr().err
    got = streams(out)
    assert set(got) == {"video"} and len(got["video"]) == 10
    # without -an the audio is there, cut to the 10 frames' length (0.37 s)
    out2 = tmp_path / "g.mp4"
    assert main(["encode", str(cup), "-o", str(out2), "-vframes", "10", "--set", f"saliency.model={PH}",
                 "-preset", "ultrafast", "-q"]) == 0
    got = streams(out2)
    assert len(got["video"]) == 10 and 0.3 < audio_seconds(out2) < 0.42


def test_saliency_of_a_segment(cup, tmp_path, capsys):
    out = tmp_path / "m.mkv"
    assert main(["saliency", str(cup), "-o", str(out), "--model", PH, "-ss", "00:00:03", "-frames:v", "7", "-q"]) == 0
    with av.open(str(out)) as c:
        pts = [f.time for f in c.decode(video=0)]
    assert len(pts) == 7 and pts[0] == 0


def test_compare_a_segment_scores_against_the_same_segment(cup, tmp_path, capsys):
    rc = main(["compare", str(cup), "-ss", "4", "-frames:v", "12", "-crf", "23,33", "-c:v", "libx264",
               "-preset", "ultrafast", "--set", f"saliency.model={PH}", "-o", str(tmp_path / "c"), "-q"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "c" / "report.json").read_text())
    assert rep["input"] == str(cup) and rep["notes"][0].startswith("segment -ss 4 -frames:v 12")
    assert len(rep["encodes"]) == 4
    for e in rep["encodes"]:
        assert e["pooled"]["psnr_y"]["count"] == 12
        # frame-aligned: the same frames, so CRF 23 is well above what a one-frame shift of
        # this moving clip gives
        if e["point"] == 23:
            assert e["pooled"]["psnr_y"]["mean"] > 36


def test_segment_of_an_odd_sized_input(tmp_path, capsys):
    """The segment is cut to FFV1 in 4 slices where FFV1 can split the picture so; 4:2:0 at 95x95
    it cannot ("Unsupported number 4 of slices"), and the cut lets FFV1 choose instead."""
    import numpy as np

    src = tmp_path / "odd.mkv"
    with av.open(str(src), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 95, 95, "yuv420p"
        for i in range(20):
            img = np.full((95, 95, 3), 10 * i, dtype=np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    out = tmp_path / "m.mkv"
    rc = main(["saliency", str(src), "-o", str(out), "--model", PH, "-ss", "0.2", "-frames:v", "5", "-q"])
    assert rc == 0, capsys.readouterr().err
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 5
