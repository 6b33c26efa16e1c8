"""Awkward inputs, made here with PyAV, through every command; frame counts against the ffmpeg CLI.

The corpus (96x64, 20-24 frames each):

- ``ooo.mp4``: pts out of order while the dts increase (what a broken ctts box gives);
- ``ooo.mkv``: timestamps that go backwards (0, 40, 80, 160, 120, ..., 360, 50, 440 ms);
- ``dup.mkv``: duplicate timestamps (one twice, one three times);
- ``nopts.h264``: a raw H.264 stream, no timestamps at all;
- ``bf.avi``: MPEG-4 with B-frames in AVI, as FFmpeg's encoder writes them;
- ``packed.avi``: the same packed DivX-style, as the real files are: each B-frame stored in the
  chunk of the frame before it, an N-VOP (a not-coded VOP) in its own slot, and the "DivX...p"
  user data that tells the decoder. FFmpeg's encoder cannot write this (nor can any bitstream
  filter), so the packets are rearranged here. Its packets carry dts only, as on the real files
  (PyAV's default AVFMT_FLAG_GENPTS would make up pts 1, 3, 2, 5, 4, ... for them; ffmpeg does not);
- ``trunc.mkv``/``trunc.mp4``: cut at 60% (Matroska plays up to the cut; MP4 loses its moov);
- ``corrupt.mkv``: packets overwritten with garbage (the decoder rejects one, conceals others);
  ``damaged.mkv``: the same with the Matroska block headers hit (the demuxer stops there);
- ``sizechange.h264``: 96x64 then 64x48 mid-stream.

Each goes through ``encode`` (ROI and plain), ``saliency`` (map video + npz), ``score`` and
``compare`` via the CLI; the frame counts and timestamps are checked against what
imageio-ffmpeg's ffmpeg writes for ``ffmpeg -i IN -c:v libx264 OUT.mkv``.
"""

from __future__ import annotations

import math
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vmaf_roi import config
from vmaf_roi.cli import main
from vmaf_roi.encode import encode
from conftest import PH

W, H, N = 96, 64, 24


# -- the corpus -------------------------------------------------------------------------------
def _images(n: int, w: int, h: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = np.full((h, w, 3), (40 + 5 * i) % 256, np.uint8)
        x = (i * 3) % max(1, w - 16)
        img[h // 4: h // 4 + 16, x: x + 16] = (220, 60, 30)
        out.append(img + rng.integers(0, 20, img.shape, dtype=np.uint8))
    return out


def _frame(img: np.ndarray, pts: int) -> av.VideoFrame:
    f = av.VideoFrame.from_ndarray(img, format="rgb24")
    f.pts = pts
    return f


def _intra_packets(imgs: list[np.ndarray], codec: str) -> tuple[av.CodecContext, list[av.Packet]]:
    cc = av.CodecContext.create(codec, "w")
    cc.width, cc.height, cc.pix_fmt = W, H, "yuv420p"
    cc.time_base, cc.framerate = Fraction(1, 25), Fraction(25)
    cc.options = {"g": "1"} if codec == "mpeg4" else {"x264-params": "keyint=1:bframes=0"}
    pk = []
    for i, im in enumerate(imgs):
        pk += cc.encode(_frame(im, i))
    return cc, pk + cc.encode(None)


def _remux(path: Path, imgs, pts: list[int], dts: list[int], tb: Fraction, codec: str = "mpeg4") -> None:
    """Intra-only packets muxed with the timestamps given (what broken muxers write)."""
    cc, pk = _intra_packets(imgs, codec)
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        if cc.extradata:
            s.codec_context.extradata = cc.extradata
        s.time_base = tb
        for p, pt, dt in zip(pk, pts, dts):
            p.stream, p.pts, p.dts, p.time_base = s, pt, dt, tb
            out.mux(p)


def _encode_file(path: Path, codec: str, imgs, fmt: str | None = None, opts=None, b_frames: int = 0,
                 pix_fmt: str = "yuv420p") -> None:
    with av.open(str(path), "w", format=fmt) as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = imgs[0].shape[1], imgs[0].shape[0], pix_fmt
        if b_frames:
            s.codec_context.max_b_frames = b_frames
        s.options = opts or {}
        for i, im in enumerate(imgs):
            f = _frame(im, i)
            if pix_fmt != "yuv420p":
                f = f.reformat(format=pix_fmt)
                f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)


def _n_vop(vop: bytes, increment_bits: int) -> bytes:
    """A not-coded P-VOP (DivX's N-VOP) carrying the time fields of ``vop``."""
    j = vop.find(b"\x00\x00\x01\xb6")
    bits = "".join(f"{x:08b}" for x in vop[j + 4: j + 12])
    k = 2  # after vop_coding_type: modulo_time_base is 1s ended by a 0
    while bits[k] == "1":
        k += 1
    end = k + 1 + 1 + increment_bits + 1  # its 0, marker, vop_time_increment, marker
    out = "01" + bits[2:end] + "0"  # P type, the same time, vop_coded = 0
    out += "0" + "1" * ((8 - (len(out) + 1) % 8) % 8)  # MPEG-4 stuffing up to a byte boundary
    return b"\x00\x00\x01\xb6" + int(out, 2).to_bytes(len(out) // 8, "big")


def _packed_avi(path: Path, imgs) -> None:
    cc = av.CodecContext.create("mpeg4", "w")
    cc.width, cc.height, cc.pix_fmt = W, H, "yuv420p"
    cc.time_base, cc.framerate = Fraction(1, 25), Fraction(25)  # time increments: 5 bits (25 - 1 < 2**5)
    cc.max_b_frames = 1
    cc.options = {"g": "12"}
    data = []
    for i, im in enumerate(imgs):
        data += [bytes(p) for p in cc.encode(_frame(im, i))]
    data += [bytes(p) for p in cc.encode(None)]
    kinds = ["IPBS"[d[d.find(b"\x00\x00\x01\xb6") + 4] >> 6] for d in data]
    j = data[0].find(b"\x00\x00\x01\xb6")
    data[0] = data[0][:j] + b"\x00\x00\x01\xb2DivX503b1393p" + data[0][j:]  # 'p': packed bitstream
    chunks, i = [], 0
    while i < len(data):
        if i + 1 < len(data) and kinds[i] in "IP" and kinds[i + 1] == "B":
            chunks += [(data[i] + data[i + 1], kinds[i] == "I"), (_n_vop(data[i + 1], 5), False)]
            i += 2
        else:
            chunks.append((data[i], kinds[i] == "I"))
            i += 1
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.time_base = Fraction(1, 25)
        for n, (chunk, key) in enumerate(chunks):
            p = av.Packet(chunk)
            p.stream, p.pts, p.dts, p.time_base, p.is_keyframe = s, n, n, Fraction(1, 25), key
            out.mux(p)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("awkward")
    imgs = _images(N, W, H)
    c = {}
    # pts out of order, dts increasing, pts >= dts (as a broken ctts gives)
    pts = [i + (1 if i % 4 == 1 else -1 if i % 4 == 2 else 0) for i in range(N)]
    _remux(c.setdefault("ooo.mp4", d / "ooo.mp4"), imgs, [p * 512 for p in pts], [(i - 1) * 512 for i in range(N)],
           Fraction(1, 12800))
    pts = [i * 40 for i in range(N)]
    pts[3], pts[4], pts[10] = pts[4], pts[3], 50
    _remux(c.setdefault("ooo.mkv", d / "ooo.mkv"), imgs, pts, [min(pts[i:]) for i in range(N)], Fraction(1, 1000))
    pts = [i * 40 for i in range(N)]
    pts[5], pts[11], pts[12] = pts[4], pts[10], pts[10]
    _remux(c.setdefault("dup.mkv", d / "dup.mkv"), imgs, pts, pts, Fraction(1, 1000))
    _encode_file(c.setdefault("nopts.h264", d / "nopts.h264"), "libx264", imgs, fmt="h264")
    _encode_file(c.setdefault("bf.avi", d / "bf.avi"), "mpeg4", imgs, opts={"g": "12"}, b_frames=2)
    _packed_avi(c.setdefault("packed.avi", d / "packed.avi"), imgs)
    clean = d / "clean.mkv"
    _encode_file(clean, "mpeg4", imgs, opts={"g": "12"})
    raw = clean.read_bytes()
    with av.open(str(clean)) as src:
        where = [(p.pos, p.size) for p in src.demux(src.streams.video[0]) if p.size]
    for name, skip in (("corrupt.mkv", 8), ("damaged.mkv", 0)):
        data = bytearray(raw)
        for j in (5, 6, 15):
            pos, size = where[j]
            data[pos + skip: pos + size] = b"\xff" * (size - skip)
        c[name] = d / name
        c[name].write_bytes(bytes(data))
    c["trunc.mkv"] = d / "trunc.mkv"
    c["trunc.mkv"].write_bytes(raw[: int(len(raw) * 0.6)])
    c["trunc.mp4"] = d / "trunc.mp4"
    c["trunc.mp4"].write_bytes(c["ooo.mp4"].read_bytes()[: int(c["ooo.mp4"].stat().st_size * 0.6)])
    parts = []
    for k, (w, h) in enumerate(((W, H), (64, 48))):
        part = d / f"part{k}.h264"
        _encode_file(part, "libx264", _images(10, w, h, seed=k), fmt="h264")
        parts.append(part.read_bytes())
        part.unlink()
    c["sizechange.h264"] = d / "sizechange.h264"
    c["sizechange.h264"].write_bytes(b"".join(parts))
    return c


# -- what the ffmpeg CLI does -----------------------------------------------------------------
def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sorted(p.pts * p.time_base for p in c.demux(s) if p.size)


def _rel(times: list[Fraction]) -> list[Fraction]:
    return [t - times[0] for t in times]


@pytest.fixture(scope="module")
def ffmpeg_out(corpus, tmp_path_factory):
    """name -> packet timestamps of ``ffmpeg -i IN -c:v libx264 OUT.mkv`` (None if ffmpeg fails)."""
    d = tmp_path_factory.mktemp("ffmpeg")
    out = {}
    for name, path in corpus.items():
        o = d / (name + ".mkv")
        r = subprocess.run([_ffmpeg(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-c:v", "libx264",
                            "-preset", "ultrafast", str(o)], capture_output=True, check=False)
        out[name] = _times(o) if r.returncode == 0 else None
    return out


# -- encode -----------------------------------------------------------------------------------
NOTES = {
    "ooo.mp4": "timed by dts",
    "ooo.mkv": "2 dropped",
    "dup.mkv": "1 dropped and 2 moved",
    "nopts.h264": "24 frames had none",
    "bf.avi": None,
    "packed.avi": None,  # AVI has no pts: timing by the dts is what ffmpeg does too, nothing to note
    "trunc.mkv": "truncated or damaged file?",
    "corrupt.mkv": "1 packet could not be decoded",
    "damaged.mkv": "truncated or damaged file?",
    "sizechange.h264": "10 frames scaled back to the first frame's 96x64",
}


@pytest.mark.parametrize("name", list(NOTES))
def test_encode_gives_ffmpegs_frames_and_timestamps(corpus, ffmpeg_out, tmp_path, capsys, name):
    out = tmp_path / "o.mkv"
    rc = main(["encode", str(corpus[name]), "-o", str(out), "-q", "--set", f"saliency.model={PH}",
               "--set", "preset=ultrafast"])
    err = capsys.readouterr().err
    assert rc == 0, err
    theirs = ffmpeg_out[name]
    assert theirs is not None
    ours = _times(out)
    assert len(ours) == len(theirs), (name, len(ours), len(theirs))
    # ffmpeg starts its output at 0 and rounds to the frame-rate grid (1/25 here); ours keeps the source's
    assert [round(t * 25) for t in _rel(ours)] == [round(t * 25) for t in _rel(theirs)]
    notes = [ln for ln in err.splitlines() if corpus[name].name in ln]
    if NOTES[name] is None:
        assert notes == []
    else:
        assert any(NOTES[name] in ln for ln in notes), err
    assert all(ln.count("\n") == 0 for ln in notes)
    assert "PLACEHOLDER" in err
    assert {p.name for p in tmp_path.iterdir()} == {"o.mkv"}


@pytest.mark.parametrize("name", ["ooo.mp4", "bf.avi", "sizechange.h264"])
def test_plain_encode_and_mp4_output(corpus, ffmpeg_out, tmp_path, name):
    res = encode(corpus[name], tmp_path / "o.mp4", config.load(None, ["preset=ultrafast"]), plain=True)
    assert res.frames == len(_times(tmp_path / "o.mp4")) == len(ffmpeg_out[name])
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (W, H)


def test_unreadable_input_is_one_error_line_for_every_command(corpus, tmp_path, capsys, ffmpeg_out):
    bad = corpus["trunc.mp4"]
    assert ffmpeg_out["trunc.mp4"] is None  # ffmpeg cannot read it either
    runs = [
        ["encode", str(bad), "-o", str(tmp_path / "o.mkv"), "--set", f"saliency.model={PH}"],
        ["saliency", str(bad), "-o", str(tmp_path / "s.mkv"), "--npz", str(tmp_path / "s.npz"), "--model", PH],
        ["score", str(bad), str(corpus["bf.avi"])],
        ["compare", str(bad), "--crf", "30,36", "-o", str(tmp_path / "cmp"), "--set", f"saliency.model={PH}"],
    ]
    for argv in runs:
        assert main(argv) == 3, argv
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and "PLACEHOLDER" not in ln]
        assert len(err) == 1 and err[0].startswith("vmaf-roi: error:") and "trunc.mp4" in err[0], (argv, err)
        assert "Traceback" not in err[0]
        assert list(tmp_path.iterdir()) == [], argv  # compare leaves no empty out dir either


# -- saliency maps ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ooo.mp4", "ooo.mkv", "dup.mkv", "nopts.h264", "bf.avi", "packed.avi",
                                  "sizechange.h264"])
def test_map_video_and_npz_carry_the_frames_timestamps(corpus, ffmpeg_out, tmp_path, capsys, name):
    sal, npz = tmp_path / "s.mkv", tmp_path / "s.npz"
    assert main(["saliency", str(corpus[name]), "-o", str(sal), "--npz", str(npz), "--model", PH, "-q"]) == 0
    err = capsys.readouterr().err
    if NOTES[name]:
        assert NOTES[name] in err
    with np.load(npz) as z:
        tb = Fraction(int(z["time_base"][0]), int(z["time_base"][1]))
        npz_ms = [math.floor(Fraction(int(p)) * tb * 1000) for p in z["pts"]]
        assert z["maps"].shape == (len(npz_ms), H, W)
        assert bool(z["placeholder"])
    with av.open(str(sal)) as c:
        s = c.streams.video[0]
        map_ms = [int(f.pts * f.time_base * 1000) for f in c.decode(s)]
        assert c.metadata.get("VMAF_ROI_PLACEHOLDER") == "true"  # Matroska tags are upper case
    assert map_ms == npz_ms  # the two outputs agree
    assert map_ms == sorted(set(map_ms))  # increasing: salroi's framesync pairs one map with each frame
    theirs = ffmpeg_out[name]
    assert len(map_ms) == len(theirs)
    # one map per frame ffmpeg keeps, at that frame's time (relative to the first)
    want = _rel(theirs)
    assert [round((m - map_ms[0]) * 25 / 1000) for m in map_ms] == [round(t * 25) for t in want]


def _salroi_ffmpeg() -> Path | None:
    import os

    env = os.environ.get("VMAF_ROI_SALROI_FFMPEG")
    p = Path(env) if env else Path(__file__).resolve().parents[1] / "build" / "ffmpeg" / "current" / "ffmpeg"
    return p if p.is_file() else None


@pytest.mark.parametrize("kind", ["ooo.mp4", "dup.mkv"])
def test_salroi_pairs_every_map_with_its_frame(tmp_path, kind):
    """The filter, in strict mode, finds a map at each frame's own time (the build has H.264 only)."""
    ff = _salroi_ffmpeg()
    if ff is None:
        pytest.skip("ffmpeg with the salroi filter is not built: run plugin/build.sh (or set VMAF_ROI_SALROI_FFMPEG)")
    imgs = _images(N, W, H)
    src = tmp_path / ("in." + kind.split(".")[1])
    if kind == "ooo.mp4":
        pts = [i + (1 if i % 4 == 1 else -1 if i % 4 == 2 else 0) for i in range(N)]
        _remux(src, imgs, [p * 512 for p in pts], [(i - 1) * 512 for i in range(N)], Fraction(1, 12800), "libx264")
    else:
        pts = [i * 40 for i in range(N)]
        pts[5], pts[11], pts[12] = pts[4], pts[10], pts[10]
        _remux(src, imgs, pts, pts, Fraction(1, 1000), "libx264")
    assert main(["saliency", str(src), "-o", str(tmp_path / "s.mkv"), "--model", PH, "-q"]) == 0
    r = subprocess.run([str(ff), "-nostdin", "-v", "warning", "-i", str(src), "-i", str(tmp_path / "s.mkv"),
                        "-filter_complex", "[0:v][1:v]salroi=strength=4:strict=1", "-c:v", "libx264",
                        str(tmp_path / "o.mkv")], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert "another timestamp" not in r.stderr and "no saliency map" not in r.stderr, r.stderr


# -- score and compare ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ooo.mp4", "dup.mkv", "bf.avi", "packed.avi", "corrupt.mkv", "sizechange.h264"])
def test_score_pairs_the_frames_encode_kept(corpus, tmp_path, capsys, name):
    out = tmp_path / "o.mkv"
    encode(corpus[name], out, config.load(None, ["preset=ultrafast", "rate_control.value=18"]), plain=True)
    n = len(_times(out))
    assert main(["score", str(corpus[name]), str(out), "--json"]) == 0
    import json

    cap = capsys.readouterr()
    rep = json.loads(cap.out)
    assert rep["frames"] == n
    if NOTES[name]:
        assert any(NOTES[name] in x for x in rep["notes"]) and f"note: reference {name}: " in cap.err, cap.err
    vmaf = rep["per_frame"]["vmaf"]
    psnr = [math.inf if v is None else v for v in rep["per_frame"]["psnr_y"]]  # null: identical frames
    assert len(vmaf) == len(psnr) == n
    # frames paired right: every frame scores like a good encode, none like a neighbour's
    assert min(psnr) > 30 and min(vmaf) > 60, (psnr, vmaf)


def test_compare_on_awkward_input(corpus, tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(["compare", str(corpus["dup.mkv"]), "--crf", "28,34", "-o", str(out), "-q",
               "--set", f"saliency.model={PH}", "--set", "preset=ultrafast"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "1 dropped and 2 moved" in err
    import json

    rep = json.loads((out / "report.json").read_text())
    assert len(rep["encodes"]) == 4
    for e in rep["encodes"]:  # every encode scored on the 23 frames ffmpeg keeps
        assert e["pooled"]["vmaf"]["count"] == e["pooled"]["psnr_y"]["count"] == 23, e
    assert any("1 dropped and 2 moved" in n for n in rep["notes"])


# -- colour: ROI and plain convert alike ------------------------------------------------------
def _decoded(path: Path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        cc = s.codec_context
        tags = (cc.pix_fmt, cc.color_range, cc.colorspace, cc.color_primaries, cc.color_trc)
        planes = [b"".join(bytes(p) for p in f.planes) for f in c.decode(s)]
    return tags, planes


@pytest.mark.parametrize("codec, pix_fmt, ext", [
    ("huffyuv", "rgb24", ".avi"),  # lossless RGB: decodes as bgr0/rgb24
    ("cinepak", "rgb24", ".avi"),  # the real file's codec
    ("ffv1", "yuv444p", ".mkv"),
    ("ffv1", "yuv420p10le", ".mkv"),
    ("mjpeg", "yuvj420p", ".mkv"),  # full range, tagged
])
def test_roi_at_strength_0_is_the_plain_encode(tmp_path, codec, pix_fmt, ext):
    src = tmp_path / ("in" + ext)
    imgs = _images(5, 64, 48, seed=3)
    for im in imgs:
        im[:, :32] = (200, 40, 90)
    _encode_file(src, codec, imgs, pix_fmt=pix_fmt)
    c = config.load(None, [f"saliency.model={PH}", "roi.strength=0", "saliency.scene_cut=false",
                           "rate_control.value=18", "preset=ultrafast"])
    encode(src, tmp_path / "plain.mkv", c, plain=True)
    encode(src, tmp_path / "roi.mkv", c)
    p_tags, p = _decoded(tmp_path / "plain.mkv")
    r_tags, r = _decoded(tmp_path / "roi.mkv")
    assert r_tags == p_tags
    assert len(r) == len(p) == 5
    assert r == p  # same conversion, and zero offsets change nothing


def test_score_converts_an_rgb_reference_like_the_encoder(tmp_path):
    from vmaf_roi.score import score

    src = tmp_path / "in.avi"
    _encode_file(src, "huffyuv", _images(5, 64, 48, seed=4), pix_fmt="rgb24")
    c = config.load(None, [f"saliency.model={PH}", "rate_control.value=16", "preset=ultrafast"])
    encode(src, tmp_path / "plain.mkv", c, plain=True)
    encode(src, tmp_path / "roi.mkv", c)
    for out in ("plain.mkv", "roi.mkv"):
        r = score(src, tmp_path / out)
        psnr, vmaf = np.mean(r.per_frame["psnr_y"]), np.mean(r.per_frame["vmaf"])
        assert psnr > 35 and vmaf > 80, (out, psnr, vmaf)


def test_encoder_settings_probe_ignores_what_other_threads_log(monkeypatch):
    """The settings probe captures FFmpeg's log globally (an encoder's own threads log too), so
    it also gets what another thread logs meanwhile: in a full test run, corrupt.mkv's mpeg4
    decoder ("header damaged; Error at MB: 2") once failed an encode as libx264 "rejecting its
    settings". The capture here holds such a message, as that run's did; it is not the encoder's."""
    from fractions import Fraction

    import av.logging

    from vmaf_roi.encode.options import probe_open

    real = av.logging.Capture

    class WithADecoderError:
        def __init__(self, **kw) -> None:
            self.cap = real(**kw)

        def __enter__(self):
            logs = self.cap.__enter__()
            logs.append((av.logging.ERROR, "mpeg4", "header damaged"))
            return logs

        def __exit__(self, *exc):
            return self.cap.__exit__(*exc)

    monkeypatch.setattr(av.logging, "Capture", WithADecoderError)
    spec = ("libx264", 64, 64, "yuv420p", Fraction(1, 25), Fraction(25), 0)
    assert probe_open((*spec, {})) == ("ok", "")
    status, msg = probe_open((*spec, {"x264-params": "nonsense=1"}))  # its own errors still count
    assert status == "error" and "nonsense" in msg and "damaged" not in msg
