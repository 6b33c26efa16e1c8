"""The salroi FFmpeg filter (plugin/vf_salroi.c) in a built ffmpeg.

Needs the ffmpeg made by ``plugin/build.sh``: found through ``$VMAF_ROI_SALROI_FFMPEG`` or the
links ``build/bin/ffmpeg-minimal`` / ``build/bin/ffmpeg`` that it leaves in the checkout; the
tests are skipped when none exists.  When ``$VMAF_ROI_SALROI_FFMPEG`` is set, a missing binary is
an error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import built_ffmpeg_or_skip, corr, telemetry_files

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO / "tests" / "vectors"
DATA = json.loads((VECTORS / "cases.json").read_text())
CASES, SEQUENCES = DATA["cases"], DATA["sequences"]
sys.path.insert(0, str(VECTORS))
from generate import read_pgm

av = pytest.importorskip("av")


@pytest.fixture(scope="session")
def ffmpeg() -> Path:
    p = built_ffmpeg_or_skip("ffmpeg with the salroi filter")
    r = subprocess.run([str(p), "-hide_banner", "-h", "filter=salroi"],
                       check=False, capture_output=True, text=True)
    assert "Filter salroi" in r.stdout, f"{p} has no salroi filter:\n{r.stdout}{r.stderr}"
    return p


def thread_stacks(pid: int) -> str:
    """Every thread's backtrace of a running process (gdb, where installed), for hang reports."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return "(no gdb here to show the threads)"
    try:
        r = subprocess.run([gdb, "-batch", "-p", str(pid), "-ex", "thread apply all bt"],
                           capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "(gdb timed out)"
    return r.stdout[-12000:] + r.stderr[-2000:]


def run_ff(ffmpeg: Path, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [str(ffmpeg), "-hide_banner", "-nostdin", "-nostats", "-y", *args]
    timeout = float(os.environ.get("VMAF_ROI_TEST_FF_TIMEOUT", timeout))  # shorter when hunting a hang
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # a hang: show where every thread of ffmpeg waits before killing it
        stacks = thread_stacks(proc.pid)
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"ffmpeg still running after {timeout:.0f} s: {' '.join(cmd)}\n"
                             f"threads:\n{stacks}\nstderr:\n{err[-4000:]}") from None
    r = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if check and r.returncode != 0:
        raise AssertionError(f"ffmpeg failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-4000:]}")
    return r


ROI_RE = re.compile(r"index: (\d+), region: \((-?\d+), (-?\d+)\) -> \((-?\d+), (-?\d+)\), "
                    r"qp offset: (-?\d+)/(-?\d+)\.")
FRAME_RE = re.compile(r"\] n:\s*(\d+) pts:")


def showinfo_rois(stderr: str) -> list[list[list[int]]]:
    """Per frame, the ROI list printed by showinfo as [top, bottom, left, right, num, den]."""
    frames: list[list[list[int]]] = []
    for line in stderr.splitlines():
        if FRAME_RE.search(line):
            frames.append([])
            continue
        m = ROI_RE.search(line)
        if m:
            assert frames, "ROI line before any frame line"
            i, left, top, right, bottom, num, den = (int(v) for v in m.groups())
            assert i == len(frames[-1])
            frames[-1].append([top, bottom, left, right, num, den])
    return frames


def salroi_args(params: dict) -> str:
    """The filter's options for planner parameters (strength_width 0 where they have none: the
    shared vectors plan every frame size with the strength they give)."""
    return ("salroi=strength={strength!r}:strength_width={strength_width}:block={block}"
            ":max_regions={max_regions}:mode={mode}:pool={pool}:clamp={max_offset}:qp_scale={qp_scale}"
            .format(**{"strength_width": 0, "pool": "mean", **params}))


def map_inputs(tmp: Path, m: np.ndarray, frames: int = 1, rate: int = 25) -> list[str]:
    raw = tmp / "map.gray"
    raw.write_bytes(np.ascontiguousarray(m, dtype=np.uint8).tobytes() * frames)
    h, w = m.shape
    return ["-f", "rawvideo", "-pix_fmt", "gray", "-video_size", f"{w}x{h}",
            "-framerate", str(rate), "-i", str(raw)]


def plan_with_filter(ffmpeg: Path, tmp: Path, case: dict, main_filter: str = "",
                     frames: int = 1, extra: str = "") -> list[list[list[int]]]:
    m = read_pgm(VECTORS / case["map"])
    src = f"color=c=gray:size={case['width']}x{case['height']}:rate=25"
    # the vectors' maps come in any shape: a sample aspect ratio gives each the frame's display
    # aspect ratio (salroi refuses a map of another one)
    sar = f"{case['width'] * m.shape[0]}/{case['height'] * m.shape[1]}"
    graph = (f"[0:v]{main_filter or 'null'}[m];[1:v]setsar=r={sar}:max=1000000[s];"
             f"[m][s]{salroi_args(case['params'])}{extra},showinfo")
    r = run_ff(ffmpeg, "-f", "lavfi", "-i", src, *map_inputs(tmp, m, frames),
               "-filter_complex", graph, "-frames:v", str(frames), "-f", "null", "-")
    out = showinfo_rois(r.stderr)
    assert len(out) == frames, r.stderr[-3000:]
    return out


# --------------------------------------------------------------------------------------
# same planner as roi.py: the shared vectors


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_filter_matches_vector(ffmpeg, tmp_path, case):
    (got,) = plan_with_filter(ffmpeg, tmp_path, case)
    assert got == case["regions"]


@pytest.mark.parametrize("width, strength_width", [(176, 640), (320, 640), (640, 640), (800, 640), (320, 0)])
def test_filter_scales_strength_on_narrow_frames_as_the_package_does(ffmpeg, tmp_path, width, strength_width):
    """strength_width: frames narrower than it get strength * width / strength_width, in the
    filter and in roi.Planner alike (the same regions); wider frames the strength as given."""
    case = next(c for c in CASES if c["params"]["mode"] == "both" and c["params"]["strength"] >= 4)
    height = width * 3 // 4
    params = {**case["params"], "strength_width": strength_width}
    (got,) = plan_with_filter(ffmpeg, tmp_path, {**case, "width": width, "height": height, "params": params})
    m = read_pgm(VECTORS / case["map"])
    p = roi_mod.PlannerParams(**params)
    want = [[r.top, r.bottom, r.left, r.right, r.qp, p.qp_scale] for r in roi_mod.plan(m, width, height, p)]
    assert got == want
    full = roi_mod.PlannerParams(**{**params, "strength_width": 0})
    full_plan = roi_mod.plan(m, width, height, full)
    if strength_width and width < strength_width:
        assert max(abs(r.qp) for r in roi_mod.plan(m, width, height, p)) < max(abs(r.qp) for r in full_plan)
    else:
        assert roi_mod.plan(m, width, height, p) == full_plan


@pytest.mark.parametrize("case", CASES[:6], ids=[c["name"] for c in CASES[:6]])
def test_filter_pools_blocks_by_their_maximum_as_the_package_does(ffmpeg, tmp_path, case):
    """pool=max: each block's saliency is the map's maximum over it, in the filter and in
    roi.Planner alike (the same regions)."""
    params = {**case["params"], "pool": "max"}
    (got,) = plan_with_filter(ffmpeg, tmp_path, {**case, "params": params})
    m = read_pgm(VECTORS / case["map"])
    p = roi_mod.PlannerParams(**params)
    want = [[r.top, r.bottom, r.left, r.right, r.qp, p.qp_scale]
            for r in roi_mod.plan(m, case["width"], case["height"], p)]
    assert got == want


@pytest.mark.parametrize("seq", SEQUENCES, ids=[s["name"] for s in SEQUENCES])
def test_filter_matches_sequence(ffmpeg, tmp_path, seq):
    """A map per frame (the stacked PGM split into frames): the filter's list for each frame."""
    stacked = read_pgm(VECTORS / seq["map"])
    h = stacked.shape[0] // seq["frames"]
    raw = tmp_path / "maps.gray"
    raw.write_bytes(np.ascontiguousarray(stacked, dtype=np.uint8).tobytes())
    src = f"color=c=gray:size={seq['width']}x{seq['height']}:rate=25"
    r = run_ff(ffmpeg, "-f", "lavfi", "-i", src, "-f", "rawvideo", "-pix_fmt", "gray",
               "-video_size", f"{stacked.shape[1]}x{h}", "-framerate", "25", "-i", str(raw),
               "-filter_complex", f"[0:v][1:v]{salroi_args(seq['params'])},showinfo",
               "-frames:v", str(seq["frames"]), "-f", "null", "-")
    assert showinfo_rois(r.stderr) == seq["regions"], r.stderr[-3000:]


@pytest.mark.parametrize("pix_fmt", ["rgb24", "yuv444p10le", "nv12", "gray", "yuva420p"])
def test_any_main_pixel_format(ffmpeg, tmp_path, pix_fmt):
    case = next(c for c in CASES if c["name"] == "blob_same_size")
    (got,) = plan_with_filter(ffmpeg, tmp_path, case, main_filter=f"format={pix_fmt}")
    assert got == case["regions"] and got


def test_replaces_existing_roi(ffmpeg, tmp_path):
    case = next(c for c in CASES if c["name"] == "merge_shapes")
    (got,) = plan_with_filter(ffmpeg, tmp_path, case, main_filter="addroi=0:0:16:16:-1/2")
    assert got == case["regions"]
    # and with strength 0 the old region is gone as well
    zero = dict(case, params=dict(case["params"], strength=0.0))
    (got,) = plan_with_filter(ffmpeg, tmp_path, zero, main_filter="addroi=0:0:16:16:-1/2")
    assert got == []


def test_timeline_enable(ffmpeg, tmp_path):
    case = next(c for c in CASES if c["name"] == "blob_same_size")
    # frames at t = 0, .04, .08, .12, .16: the filter only runs from t >= 0.1
    got = plan_with_filter(ffmpeg, tmp_path, case, frames=5, extra=":enable='gte(t,0.1)'")
    assert [bool(f) for f in got] == [False, False, False, True, True]
    assert got[3] == case["regions"]


def test_process_command_strength(ffmpeg, tmp_path):
    """strength is a runtime command (sendcmd after salroi: it fires once salroi has run)."""
    case = next(c for c in CASES if c["name"] == "blob_same_size")
    m = read_pgm(VECTORS / case["map"])
    graph = ("[0:v][1:v]salroi@s=strength=6:strength_width=0:pool=mean,sendcmd=c='0.1 salroi@s strength 0',showinfo")
    r = run_ff(ffmpeg, "-f", "lavfi", "-i", "color=c=gray:size=64x48:rate=25",
               *map_inputs(tmp_path, m, 10), "-filter_complex", graph,
               "-frames:v", "10", "-f", "null", "-")
    got = showinfo_rois(r.stderr)
    assert len(got) == 10
    assert got[0] == case["regions"]      # t = 0: strength 6
    assert got[-1] == []                  # t = 0.36: strength 0 from the command
    switch = [bool(f) for f in got].index(False)
    assert not any(got[switch:]) and switch >= 3  # the command is sent at t = 0.12
    # an out-of-range value is refused and the filter carries on
    graph = "[0:v][1:v]salroi@s=strength=6:strength_width=0:pool=mean,sendcmd=c='0.1 salroi@s strength -3',showinfo"
    r = run_ff(ffmpeg, "-f", "lavfi", "-i", "color=c=gray:size=64x48:rate=25",
               *map_inputs(tmp_path, m, 10), "-filter_complex", graph,
               "-frames:v", "10", "-f", "null", "-")
    got = showinfo_rois(r.stderr)
    assert len(got) == 10 and all(f == case["regions"] for f in got)
    assert "out of range" in r.stderr


# --------------------------------------------------------------------------------------
# errors and odd inputs


def test_non_gray_saliency_is_an_error(ffmpeg):
    r = run_ff(ffmpeg, "-f", "lavfi", "-i", "color=size=64x48:rate=25",
               "-f", "lavfi", "-i", "testsrc=size=32x24:rate=25",
               "-filter_complex", "[0:v][1:v]salroi", "-frames:v", "1", "-f", "null", "-",
               check=False)
    assert r.returncode != 0
    assert "saliency input must be gray" in r.stderr


@pytest.mark.parametrize("opts, name", [
    ("block=0", "block"), ("qp_scale=0", "qp_scale"), ("strength=-1", "strength"),
    ("max_regions=0", "max_regions"), ("clamp=-2", "clamp"), ("mode=sideways", "mode"),
])
def test_impossible_options_are_errors(ffmpeg, tmp_path, opts, name):
    r = run_ff(ffmpeg, "-f", "lavfi", "-i", "color=size=64x48:rate=25",
               *map_inputs(tmp_path, np.zeros((6, 8), np.uint8)),
               "-filter_complex", f"[0:v][1:v]salroi={opts}", "-frames:v", "1",
               "-f", "null", "-", check=False)
    assert r.returncode != 0
    assert name in r.stderr and ("out of range" in r.stderr or "Unable to parse" in r.stderr
                                 or "Error" in r.stderr)


def test_clamp_beyond_qp_scale_warns(ffmpeg, tmp_path):
    r = run_ff(ffmpeg, "-f", "lavfi", "-i", "color=size=64x48:rate=25",
               *map_inputs(tmp_path, np.zeros((6, 8), np.uint8)),
               "-filter_complex", "[0:v][1:v]salroi=clamp=60", "-frames:v", "1",
               "-f", "null", "-")
    assert "beyond qp_scale" in r.stderr


def aspect_run(ffmpeg: Path, tmp: Path, map_size: tuple[int, int], map_filter: str = "null",
               main: str = "color=size=64x48:rate=25") -> subprocess.CompletedProcess:
    w, h = map_size
    return run_ff(ffmpeg, "-f", "lavfi", "-i", main, *map_inputs(tmp, np.zeros((h, w), np.uint8)),
                  "-filter_complex", f"[1:v]{map_filter}[s];[0:v][s]salroi", "-frames:v", "1",
                  "-f", "null", "-", check=False)


def test_map_of_another_aspect_ratio_is_refused(ffmpeg, tmp_path):
    """A map whose display aspect ratio differs from the video's by more than 2% (the rule of
    mapsource._aspect_check) is of another video: refused when the graph is configured."""
    r = aspect_run(ffmpeg, tmp_path, (64, 36))  # 16:9 map, 4:3 video
    assert r.returncode != 0
    line = next(x for x in r.stderr.splitlines() if "saliency map is 64x36" in x)
    assert "ratio 1.778)" in line and "64x48 (1.333)" in line and "more than 2%" in line
    assert "vmaf-roi saliency IN -o maps.mkv" in line
    r = aspect_run(ffmpeg, tmp_path, (66, 48))  # 3.1% wider
    assert r.returncode != 0 and "more than 2%" in r.stderr
    # vmaf-roi's own maps of this video at a model's output size: check_aspect=0
    r = run_ff(ffmpeg, "-f", "lavfi", "-i", "color=size=64x48:rate=25",
               *map_inputs(tmp_path, np.zeros((36, 64), np.uint8)),
               "-filter_complex", "[0:v][1:v]salroi=check_aspect=0", "-frames:v", "1", "-f", "null", "-")
    assert "more than 2%" not in r.stderr
    # within 2%, at another size, or another shape whose sample aspect ratio makes it 4:3
    for size, filt in [((65, 48), "null"), ((32, 24), "null"), ((48, 48), "setsar=4/3")]:
        r = aspect_run(ffmpeg, tmp_path, size, filt)
        assert r.returncode == 0, (size, filt, r.stderr[-2000:])
    # anamorphic video (16:9 display on 4:3 pixels): a map without a sample aspect ratio has the
    # video's pixel shape (as vmaf-roi writes it); a square-pixel map must be 16:9
    ana = "color=size=64x48:rate=25,setsar=4/3"
    assert aspect_run(ffmpeg, tmp_path, (32, 24), main=ana).returncode == 0
    assert aspect_run(ffmpeg, tmp_path, (32, 24), "setsar=1", main=ana).returncode != 0
    assert aspect_run(ffmpeg, tmp_path, (64, 36), "setsar=1", main=ana).returncode == 0


def test_map_of_another_frame_rate_warns_at_the_end(ffmpeg, tmp_path):
    """A map stream of another clip (same aspect ratio, 10 fps against a 30 fps video): most
    frames have no map at their timestamp, said once at the end with how to make a match."""
    def run(map_rate: int, maps: int) -> subprocess.CompletedProcess:
        return run_ff(ffmpeg, "-f", "lavfi", "-i", "color=size=64x48:rate=30",
                      *map_inputs(tmp_path, np.full((36, 48), 200, np.uint8), maps, map_rate),
                      "-filter_complex", "[0:v][1:v]salroi", "-frames:v", "30", "-f", "null", "-")

    r = run(10, 10)
    assert "20 used a map with another timestamp" in r.stderr
    warn = [x for x in r.stderr.splitlines() if "Most frames" in x]
    assert len(warn) == 1 and "20 of 30" in warn[0]
    assert "vmaf-roi saliency IN -o maps.mkv" in warn[0]
    r = run(30, 30)  # a map for every frame: quiet
    assert "Most frames" not in r.stderr and "another timestamp" not in r.stderr


def filter_defaults(ffmpeg: Path) -> dict[str, str]:
    """The default of each salroi option, as ``ffmpeg -h filter=salroi`` prints it."""
    r = run_ff(ffmpeg, "-h", "filter=salroi")
    out = {}
    for line in r.stdout.splitlines():
        m = re.match(r"\s+(\w+)\s+<\w+>.*\(default (.*)\)\s*$", line)
        if m:
            out.setdefault(m.group(1), m.group(2).strip('"'))
    return out


def test_filter_defaults_are_encode_defaults(ffmpeg):
    """A hand-written salroi=model=... plans and schedules as ``vmaf-roi encode`` does by
    default (config.DEFAULTS); post, which the filter cannot look up in the registry, is the
    default model's. Not compared: lookahead and async (the filter's own buffering and
    threading, not encode's decode-ahead queue) and saliency.carry (not in the filter)."""
    from vmaf_roi import config
    from vmaf_roi.config import DEFAULTS
    from vmaf_roi.encoders import block_size
    from vmaf_roi.registry import DEFAULT_MODEL

    got = filter_defaults(ffmpeg)
    sal, roi_cfg, enc = DEFAULTS["saliency"], DEFAULTS["roi"], DEFAULTS["encoder"]
    num = float
    want = {
        "strength": (num, roi_cfg["strength"]),
        "strength_width": (int, roi_cfg["strength_width"]),
        "clamp": (int, roi_cfg["max_offset"]),
        "mode": (str, roi_cfg["mode"]),
        "pool": (str, roi_cfg["pool"]),
        "max_regions": (int, roi_cfg["max_regions"]),
        "block": (int, roi_cfg["block"] or block_size(enc)),
        "qp_scale": (int, roi_mod.encoder_qp_scale(enc)),
        "device": (str, sal["device"]),
        "stride": (int, config.load(None)["saliency"]["stride"]),  # auto: the default encoder's
        "scene_cut": (lambda v: v == "true", sal["scene_cut"]),
        "scene_threshold": (num, sal["scene_threshold"]),
        "change_threshold": (num, -1.0 if sal["change_threshold"] is None else sal["change_threshold"]),
        "smoothing": (num, sal["smoothing"]),
        "interpolate": (lambda v: v == "true", sal["interpolate"]),
        "post": (str, get_spec(DEFAULT_MODEL).postprocess),
    }
    assert set(want) <= set(got), sorted(set(want) - set(got))
    diff = {k: (got[k], v) for k, (conv, v) in want.items() if conv(got[k]) != v}
    assert not diff, f"salroi default -> encode default: {diff}"


# --------------------------------------------------------------------------------------
# a real clip: video + saliency stream as vmaf-roi writes them

W, H, N, FPS = 320, 240, 30, 30
OBJ = (64, 160, 112, 208)  # top, bottom, left, right: 16-aligned, 6x6 macroblocks


def write_clip(path: Path, n: int = N, *, seed: int = 7, bg: tuple[int, int] = (40, 90),
               obj: tuple[int, int] = (0, 255)) -> None:
    """A textured object at OBJ on a textured background moving 1 px/frame (H.264, near lossless)."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(*bg, size=(H + n, W + n), dtype=np.uint8)
    obj = rng.integers(*obj, size=(OBJ[1] - OBJ[0], OBJ[3] - OBJ[2]), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = {"crf": "12", "preset": "ultrafast"}
        for i in range(n):
            y = bg[i:i + H, i:i + W].copy()
            y[OBJ[0]:OBJ[1], OBJ[2]:OBJ[3]] = obj
            yuv = np.concatenate([y, np.full((H // 2, W), 128, np.uint8)])
            f = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def write_saliency(path: Path, n: int = N) -> None:
    """gray8 FFV1 in Matroska at half resolution, like ``vmaf-roi saliency``."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("ffv1", rate=FPS)
        s.width, s.height, s.pix_fmt = W // 2, H // 2, "gray"
        m = np.zeros((H // 2, W // 2), np.uint8)
        m[OBJ[0] // 2:OBJ[1] // 2, OBJ[2] // 2:OBJ[3] // 2] = 255
        for i in range(n):
            f = av.VideoFrame.from_ndarray(m, format="gray")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


@pytest.fixture(scope="module")
def sal_clip(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clip")
    paths = {"video": d / "in.mp4", "sal": d / "in.sal.mkv", "short": d / "short.sal.mkv",
             "long": d / "long.sal.mkv"}
    write_clip(paths["video"])
    write_saliency(paths["sal"])
    write_saliency(paths["short"], n=10)
    write_saliency(paths["long"], n=N + 15)
    return paths


X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "28", "-g", "5", "-threads", "1"]


def encode(ffmpeg: Path, sal_clip: dict, out: Path, filt: str | None) -> Path:
    if filt is None:
        run_ff(ffmpeg, "-i", str(sal_clip["video"]), *X264, str(out))
    else:
        run_ff(ffmpeg, "-i", str(sal_clip["video"]), "-i", str(sal_clip["sal"]),
               "-filter_complex", f"[0:v][1:v]{filt}", *X264, str(out))
    return out


def keyframe_qp(path: Path) -> tuple[float, float, int]:
    """Mean QP of the object's inner macroblocks and of the background, over keyframes.

    Non-key frames are left out: skipped blocks carry the previous QP in the exported map.
    """
    inner = np.zeros((H // 16, W // 16), bool)
    inner[OBJ[0] // 16 + 1:OBJ[1] // 16 - 1, OBJ[2] // 16 + 1:OBJ[3] // 16 - 1] = True
    outer = np.ones_like(inner)
    outer[OBJ[0] // 16 - 1:OBJ[1] // 16 + 1, OBJ[2] // 16 - 1:OBJ[3] // 16 + 1] = False
    ins, outs = [], []
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        st.codec_context.options = {"export_side_data": "venc_params"}
        for f in c.decode(st):
            if not f.key_frame:
                continue
            q = f.side_data.get("VIDEO_ENC_PARAMS").qp_map()
            assert q.shape == inner.shape
            ins.append(q[inner].mean())
            outs.append(q[outer].mean())
    return float(np.mean(ins)), float(np.mean(outs)), len(ins)


@pytest.fixture(scope="module")
def baseline_qp(ffmpeg, sal_clip, tmp_path_factory):
    out = encode(ffmpeg, sal_clip, tmp_path_factory.mktemp("enc") / "base.mp4",
                 "salroi=strength=0")
    return keyframe_qp(out)


@pytest.mark.parametrize("strength", [4.0, 8.0])
def test_salient_blocks_get_lower_qp(ffmpeg, sal_clip, tmp_path, baseline_qp, strength):
    base_in, base_out, nkey = baseline_qp
    assert nkey >= 5
    out = encode(ffmpeg, sal_clip, tmp_path / "roi.mp4", f"salroi=strength={strength}:strength_width=0:clamp=10")
    roi_in, roi_out, _ = keyframe_qp(out)
    print(f"strength {strength}: object QP {base_in:.2f} -> {roi_in:.2f}, "
          f"background QP {base_out:.2f} -> {roi_out:.2f}")
    # the object (saliency 1) gets -strength, the background (saliency 0) +strength
    assert roi_in - base_in == pytest.approx(-strength, abs=2.5)
    # background blocks without residual repeat the previous QP in H.264: a bit diluted
    assert strength - 4 <= roi_out - base_out <= strength + 1.5
    gap_change = (roi_out - roi_in) - (base_out - base_in)
    assert 0.7 * 2 * strength <= gap_change <= 1.2 * 2 * strength


def test_mode_lower_keeps_background_qp(ffmpeg, sal_clip, tmp_path, baseline_qp):
    base_in, base_out, _ = baseline_qp
    out = encode(ffmpeg, sal_clip, tmp_path / "lower.mp4", "salroi=strength=8:strength_width=0:mode=lower")
    roi_in, roi_out, _ = keyframe_qp(out)
    assert roi_in - base_in == pytest.approx(-8, abs=2.5)
    assert roi_out - base_out == pytest.approx(0, abs=1.0)


def test_zero_strength_matches_plain_encode(ffmpeg, sal_clip, tmp_path):
    plain = encode(ffmpeg, sal_clip, tmp_path / "plain.mp4", None)
    zero = encode(ffmpeg, sal_clip, tmp_path / "zero.mp4", "salroi=strength=0")
    roi = encode(ffmpeg, sal_clip, tmp_path / "roi.mp4", "salroi=strength=6:strength_width=0")
    assert zero.read_bytes() == plain.read_bytes()
    assert roi.read_bytes() != plain.read_bytes()


def count_roi_frames(ffmpeg: Path, video: Path, sal: Path, filt: str, check: bool = True):
    r = run_ff(ffmpeg, "-i", str(video), "-i", str(sal), "-filter_complex",
               f"[0:v][1:v]{filt},showinfo", "-f", "null", "-", check=check)
    frames = showinfo_rois(r.stderr)
    return r, frames


def test_real_streams_pair_every_frame(ffmpeg, sal_clip):
    """mp4 (1/15360) and Matroska (1 ms) timestamps differ by rounding: still paired 1:1."""
    r, frames = count_roi_frames(ffmpeg, sal_clip["video"], sal_clip["sal"], "salroi")
    assert len(frames) == N and all(frames)
    assert "another timestamp" not in r.stderr and "do not share" not in r.stderr


def test_short_saliency_stream_repeats_last_map_with_warning(ffmpeg, sal_clip):
    r, frames = count_roi_frames(ffmpeg, sal_clip["video"], sal_clip["short"], "salroi")
    assert len(frames) == N and all(frames)  # documented: the last map is repeated
    assert "do not share timestamps or frame counts" in r.stderr
    assert "20 used a map with another timestamp" in r.stderr


def test_short_saliency_stream_eof_action_pass(ffmpeg, sal_clip):
    r, frames = count_roi_frames(ffmpeg, sal_clip["video"], sal_clip["short"],
                                 "salroi=eof_action=pass")
    assert len(frames) == N
    assert all(frames[:10]) and not any(frames[10:])
    assert "20 of 30 frames had no saliency map" in r.stderr


def test_short_saliency_stream_strict_is_an_error(ffmpeg, sal_clip):
    r, _ = count_roi_frames(ffmpeg, sal_clip["video"], sal_clip["short"], "salroi=strict=1",
                            check=False)
    assert r.returncode != 0
    assert "does not match the frame" in r.stderr


def test_late_saliency_stream(ffmpeg, sal_clip):
    """A map stream that starts 1/3 s late (ffmpeg moves every input to start at 0, so
    -itsoffset makes it late): the first 10 frames have no map and pass through."""
    args = ["-i", str(sal_clip["video"]), "-itsoffset", "0.3333", "-i", str(sal_clip["sal"]),
            "-filter_complex"]
    r = run_ff(ffmpeg, *args, "[0:v][1:v]salroi,showinfo", "-f", "null", "-")
    frames = showinfo_rois(r.stderr)
    assert len(frames) == N  # the output ends with the video, not with the longer map stream
    assert [bool(f) for f in frames[:10]] == [False] * 10 and all(frames[10:])
    assert "10 of 30 frames had no saliency map" in r.stderr
    r = run_ff(ffmpeg, *args, "[0:v][1:v]salroi=strict=1", "-f", "null", "-", check=False)
    assert r.returncode != 0 and "No saliency map for the frame" in r.stderr


def test_longer_saliency_stream_is_cut(ffmpeg, sal_clip):
    _, frames = count_roi_frames(ffmpeg, sal_clip["video"], sal_clip["long"],
                                 "salroi=strict=1")
    assert len(frames) == N and all(frames)


# --------------------------------------------------------------------------------------
# memory: valgrind over a short run through every code path of the filter


@pytest.mark.slow
def test_valgrind_clean(ffmpeg, tmp_path):
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.skip("valgrind is not installed (plugin/ci.sh installs it)")
    m = read_pgm(VECTORS / "noise_budget.pgm")
    graph = ("[0:v]addroi=0:0:16:16:-1/5,sendcmd=c='0.1 salroi@s strength 3'[m];"
             "[m][1:v]salroi@s=block=4:max_regions=6:strength_width=0:enable='gte(t,0.04)',showinfo")
    cmd = [valgrind, "--error-exitcode=99", "--leak-check=full",
           "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
           str(ffmpeg), "-hide_banner", "-nostdin", "-nostats", "-threads", "1",
           "-filter_threads", "1", "-f", "lavfi", "-i", "color=size=112x80:rate=25",
           *map_inputs(tmp_path, m, frames=4), "-filter_complex", graph,
           "-frames:v", "6", "-f", "null", "-"]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-6000:]
    assert "ERROR SUMMARY: 0 errors" in r.stderr
    frames = showinfo_rois(r.stderr)
    assert len(frames) == 6
    assert frames[0] == [[0, 16, 0, 16, -1, 5]]  # disabled: addroi's region passes
    assert frames[1] and [0, 16, 0, 16, -1, 5] not in frames[1]  # replaced
    assert "definitely lost: 0 bytes" in r.stderr or "no leaks are possible" in r.stderr


def test_libx265_honours_regions_with_aq(ffmpeg, sal_clip, tmp_path):
    """x265 has no QP export in FFmpeg's HEVC decoder: check that regions change the stream
    with AQ on (veryfast) and are skipped, with FFmpeg's warning, with AQ off (ultrafast)."""
    def enc(strength: float, preset: str) -> tuple[bytes, str]:
        out = tmp_path / f"x265_{strength}_{preset}.mp4"
        r = run_ff(ffmpeg, "-i", str(sal_clip["video"]), "-i", str(sal_clip["sal"]),
                   "-filter_complex",
                   f"[0:v][1:v]salroi=strength={strength}:strength_width=0", "-c:v", "libx265", "-preset", preset,
                   "-crf", "28", "-x265-params", "log-level=error:pools=1:frame-threads=1",
                   str(out))
        return out.read_bytes(), r.stderr

    zero, _ = enc(0, "veryfast")
    roi, err = enc(8, "veryfast")
    assert roi != zero and len(roi) < len(zero)  # the raised background QP saves bits here
    assert "Adaptive quantization must be enabled" not in err
    zero, _ = enc(0, "ultrafast")
    roi, err = enc(8, "ultrafast")
    assert "Adaptive quantization must be enabled" in err and roi == zero


def test_patch_series_carries_plugin_source():
    """ffmpeg-patches/ matches plugin/vf_salroi.c and plugin/salroi.texi (no binary needed)."""
    r = subprocess.run([sys.executable, str(REPO / "plugin" / "check_drift.py")],
                       check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------------------
# model mode: the filter runs the ONNX model itself (one input)

from vmaf_roi import roi as roi_mod  # noqa: E402
from vmaf_roi.ffmpeg_filter import ort_library, salroi_options  # noqa: E402
from vmaf_roi.pipeline import Item, MapPolicy, MapState, with_maps  # noqa: E402
from vmaf_roi.registry import get_spec, sha256_file  # noqa: E402
from vmaf_roi.saliency import SaliencyModel  # noqa: E402

PLACEHOLDER = get_spec("mobilesal_placeholder_v0")


@pytest.fixture(scope="session")
def ort_lib() -> Path:
    try:
        return ort_library()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no ONNX Runtime C library: {exc}")


@pytest.fixture(scope="session")
def model_ffmpeg(ffmpeg) -> Path:
    r = subprocess.run([str(ffmpeg), "-hide_banner", "-h", "filter=salroi"],
                       check=False, capture_output=True, text=True)
    assert "ort_lib" in r.stdout, f"{ffmpeg}: salroi without model mode:\n{r.stdout}"
    return ffmpeg


def model_opts(spec, ort_lib: Path, cache: Path | None = None, **extra) -> str:
    path = spec.location(cache)
    s = salroi_options(spec, path, ort_lib=ort_lib)
    return s + "".join(f":{k}={v}" for k, v in extra.items())


def read_maps(path: Path, w: int, h: int) -> np.ndarray:
    data = np.fromfile(path, dtype=np.uint8)
    assert data.size % (w * h) == 0, f"{data.size} bytes is not a whole number of {w}x{h} maps"
    return data.reshape(-1, h, w)


def decoded_frames(path: Path) -> list:
    with av.open(str(path)) as c:
        return [f for f in c.decode(video=0)]



def run_model_mode(ffmpeg: Path, src: Path, filt: str, *out: str, check: bool = True):
    if not out:
        out = ("-f", "null", "-")
    return run_ff(ffmpeg, "-i", str(src), "-vf", filt, *out, check=check)


def test_model_mode_u2netp_maps_match_python(model_ffmpeg, ort_lib, model_dir, clip, tmp_path):
    """Same model, stride 1: the filter's maps against SaliencyModel's, frame by frame."""
    spec = get_spec("u2netp")
    maps_path = tmp_path / "maps.gray"
    r = run_model_mode(model_ffmpeg, clip.path,
                       model_opts(spec, ort_lib, model_dir, stride=1, maps=maps_path, threads=2))
    assert "CPU execution provider" in r.stderr or "CUDA execution provider" in r.stderr
    got = read_maps(maps_path, 320, 320)
    frames = decoded_frames(clip.path)
    assert len(got) == len(frames) == clip.frames
    model = SaliencyModel(spec, device="cpu", cache_dir=model_dir, threads=2)
    cs = []
    for f, m in zip(frames, got):
        ref = np.rint(model.predict(model.model_input(f)[None])[0] * 255).astype(np.uint8)
        cs.append(corr(ref, m))
    print("per-frame correlation C vs Python:", [round(c, 4) for c in cs])
    assert min(cs) >= 0.99


def test_model_mode_default_student_maps_match_python(model_ffmpeg, ort_lib, clip, tmp_path):
    """The default model (bundled attention graph, scale 255, its batch dimension fixed to 1 by
    both, 224x224 in, 112x112 out) in model mode."""
    from vmaf_roi.registry import DEFAULT_MODEL

    spec = get_spec(DEFAULT_MODEL)
    model = SaliencyModel(spec, device="cpu", threads=1)
    frames = decoded_frames(clip.path)
    ref = [np.rint(model.predict(model.model_input(f)[None])[0] * 255).astype(np.uint8) for f in frames]
    h, w = ref[0].shape  # the maps are written at the model's output size
    maps_path = tmp_path / "maps.gray"
    run_model_mode(model_ffmpeg, clip.path, model_opts(spec, ort_lib, stride=1, maps=maps_path, threads=1))
    got = read_maps(maps_path, w, h)
    assert len(got) == len(frames) == clip.frames
    cs = [corr(r, m) for r, m in zip(ref, got)]
    assert min(cs) >= 0.99, cs


def test_model_mode_same_rgb_same_maps(model_ffmpeg, ort_lib, tmp_path):
    """Given the very RGB pixels Python feeds the model, the filter's maps are Python's.

    (From a YUV file the two differ only through swscale: FFmpeg 7.1's in the filter,
    FFmpeg 8.1's in PyAV.)  u2netp_int8_192 covers scale=image_max and post=minmax."""
    spec = get_spec("u2netp_int8_192")
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:192, 0:192]
    frames = []
    for i in range(4):
        rgb = np.stack([(xx + 20 * i) % 256, yy, (xx + yy) // 2], -1).astype(np.uint8) // 2
        rgb[60 + 5 * i:130 + 5 * i, 50:120] = rng.integers(150, 230, (70, 70, 3), dtype=np.uint8)
        frames.append(rgb)
    raw = tmp_path / "in.rgb"
    raw.write_bytes(np.stack(frames).tobytes())
    maps_path = tmp_path / "maps.gray"
    run_ff(model_ffmpeg, "-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", "192x192",
           "-framerate", "25", "-i", str(raw), "-vf",
           model_opts(spec, ort_lib, stride=1, threads=1, maps=maps_path), "-f", "null", "-")
    got = read_maps(maps_path, 192, 192)
    model = SaliencyModel(spec, device="cpu", threads=1)
    want = np.rint(model.predict(np.stack(frames)) * 255).astype(np.uint8)
    diff = np.abs(got.astype(int) - want.astype(int))
    print(f"maps equal: {np.mean(diff == 0):.5f}, largest difference {diff.max()}")
    assert diff.max() <= 1 and np.mean(diff == 0) >= 0.999


def python_schedule(spec, frames, stride: int, interpolate: bool, smoothing: float = 0.0,
                    change_threshold: float | None = None):
    """The maps pipeline.py applies to each frame (MapPolicy + MapState + with_maps)."""
    model = SaliencyModel(spec, device="cpu")
    policy = MapPolicy({"stride": stride, "scene_cut": True, "scene_threshold": 12.0,
                        "change_threshold": change_threshold})
    items, keys = [], []
    for i, f in enumerate(frames):
        infer, cut = policy.decide(i, f)
        pred = model.predict(model.model_input(f)[None])[0] if infer else None
        keys.append(infer)
        items.append(Item(i, f, pred, cut))
    maps = [m for _, m in with_maps(iter(items), MapState(smoothing, None), interpolate)]
    return np.stack(maps), keys


def write_cut_clip(path: Path, n: int = 14, cut_at: int = 9) -> None:
    """A bright square drifting over a dark ramp; at ``cut_at`` the picture changes."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        s.options = {"crf": "14", "preset": "ultrafast"}
        yy, xx = np.mgrid[0:96, 0:160]
        for i in range(n):
            rgb = np.zeros((96, 160, 3), np.uint8)
            rgb[..., 0] = (xx * 0.5).astype(np.uint8)
            rgb[..., 2] = (yy * 0.8).astype(np.uint8)
            if i < cut_at:
                x0 = 10 + 6 * i
                rgb[20:60, x0:x0 + 40] = (240, 220, 200)
            else:
                rgb = 255 - rgb
                rgb[50:90, 100:140] = (10, 10, 10)
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


@pytest.mark.parametrize("interpolate, smoothing, change", [
    (1, 0.0, None), (0, 0.0, None), (1, 0.5, None), (1, 0.0, 10.0)])
def test_model_mode_schedule_matches_pipeline(model_ffmpeg, ort_lib, tmp_path, interpolate,
                                              smoothing, change):
    """stride, scene cut, change threshold, blending and smoothing as in pipeline.py
    (placeholder model: fast)."""
    src = tmp_path / "cut.mp4"
    write_cut_clip(src)
    maps_path = tmp_path / "maps.gray"
    extra = {"change_threshold": change} if change is not None else {}
    r = run_model_mode(model_ffmpeg, src,
                       model_opts(PLACEHOLDER, ort_lib, stride=4, interpolate=interpolate,
                                  smoothing=smoothing, maps=maps_path, **extra),
                       "-loglevel", "verbose", "-f", "null", "-")
    got = read_maps(maps_path, 320, 320)
    want, keys = python_schedule(PLACEHOLDER, decoded_frames(src), 4, bool(interpolate), smoothing,
                                 change)
    if change is None:
        assert keys == [True, False, False, False, True, False, False, False, True, True,
                        False, False, False, True]  # stride 4, and the cut at frame 9
    else:  # the square moves ~6.7 thumbnail levels a frame: a map every other frame
        assert keys[:9] == [True, False, True, False, True, False, True, False, True]
    assert f"{sum(keys)} inferences (1 on scene cuts)" in r.stderr
    assert got.shape == want.shape
    for i, (g, w) in enumerate(zip(got, want)):
        diff = np.abs(g.astype(int) - w.astype(int))
        assert diff.mean() < 1.5 and corr(g, w) >= 0.99, f"frame {i}: mean diff {diff.mean():.2f}"
    if not interpolate:
        assert all(np.array_equal(got[i], got[i - 1]) for i in (1, 2, 3, 5, 6, 7))
    else:
        assert not np.array_equal(got[1], got[0]) and not np.array_equal(got[1], got[4])
        assert np.array_equal(got[8], got[7]) or True  # frame 8 is a key frame itself


def test_model_mode_plans_blended_frames_as_python_plans_a_blend(model_ffmpeg, ort_lib, tmp_path):
    """Frames between two inferences: salroi plans the blend from the two key maps' block values
    (the default pool max: their block maxima), as the encode pass plans a roi.Blend, not the made
    and rounded blend it writes to maps=."""
    src = tmp_path / "cut.mp4"
    write_cut_clip(src)
    maps_path = tmp_path / "maps.gray"
    opts = dict(stride=4, maps=maps_path, block=4, mode="both", clamp=10, max_regions=4000, qp_scale=51,
                strength_width=0)  # pool: the filter's default, max
    run_model_mode(model_ffmpeg, src, model_opts(PLACEHOLDER, ort_lib, **opts))
    maps = read_maps(maps_path, 320, 320)
    keys = [0, 4, 8, 9, 13]  # stride 4, and the cut at frame 9 (the test above): no blend 8 -> 9
    blended = {}
    for i in range(len(maps)):
        k0 = max(k for k in keys if k <= i)
        k1 = min((k for k in keys if k > i), default=None)
        if i not in keys and k1 is not None and k1 != 9:
            blended[i] = roi_mod.Blend(maps[k0], maps[k1], (i - k0) / (k1 - k0))
            assert np.array_equal(np.asarray(blended[i]), maps[i])  # what maps= holds: the made blend
    assert sorted(blended) == [1, 2, 3, 5, 6, 7, 10, 11, 12]

    def params(strength):
        return roi_mod.PlannerParams(block=4, strength=strength, max_offset=10, mode="both", max_regions=4000,
                                     qp_scale=51, pool="max")

    # a strength at which some block of a blended frame sits on a rounding edge, so that
    # planning the made map would give another list
    strength = next(st for st in np.arange(2.0, 8.0, 0.01).round(2)
                    if any(roi_mod.plan(m, 160, 96, params(st)) != roi_mod.plan(maps[i], 160, 96, params(st))
                           for i, m in blended.items()))
    r = run_model_mode(model_ffmpeg, src, model_opts(PLACEHOLDER, ort_lib, **opts, strength=strength) + ",showinfo")
    want = [[list(x.as_tuple()) for x in roi_mod.plan(blended.get(i, m), 160, 96, params(strength))]
            for i, m in enumerate(maps)]
    got = showinfo_rois(r.stderr)
    assert len(got) == 14 and any(got)
    assert got == want, f"strength {strength}"


@pytest.mark.parametrize("pix_fmt", ["rgb24", "yuv420p10le", "nv12"])
def test_model_mode_scene_cuts_in_other_pixel_formats(model_ffmpeg, ort_lib, tmp_path, pix_fmt):
    """The scene-cut thumbnail for frames that are not yuv420p: read in place (10-bit, NV12) or
    made gray first (RGB), in the filter as in pipeline.thumbnail: the same schedule."""
    src = tmp_path / "cut.mp4"
    write_cut_clip(src)
    r = run_model_mode(model_ffmpeg, src,
                       f"format={pix_fmt}," + model_opts(PLACEHOLDER, ort_lib, stride=4, change_threshold=10.0),
                       "-loglevel", "verbose", "-f", "null", "-")
    frames = [f.reformat(format=pix_fmt) for f in decoded_frames(src)]
    _, keys = python_schedule(PLACEHOLDER, frames, 4, True, 0.0, 10.0)
    assert keys[:9] == [True, False, True, False, True, False, True, False, True]  # the change threshold
    assert keys[9]  # the cut
    assert f"{sum(keys)} inferences (1 on scene cuts)" in r.stderr


def test_model_mode_async_and_sync_agree(model_ffmpeg, ort_lib, tmp_path):
    src = tmp_path / "cut.mp4"
    write_cut_clip(src)
    outs = []
    for a in (0, 1):
        maps_path = tmp_path / f"maps{a}.gray"
        run_model_mode(model_ffmpeg, src, model_opts(PLACEHOLDER, ort_lib, stride=3, maps=maps_path,
                                                      **{"async": a}))
        outs.append(maps_path.read_bytes())
    assert outs[0] == outs[1] and outs[0]


def test_older_header_api_with_newer_library(model_ffmpeg, ort_lib, tmp_path):
    """The filter asks for the C API version of its (older) header; the wheel's newer
    library serves it."""
    src = tmp_path / "cut.mp4"
    write_cut_clip(src, n=2)
    r = run_model_mode(model_ffmpeg, src, model_opts(PLACEHOLDER, ort_lib))
    m = re.search(r"ONNX Runtime (\d+)\.(\d+)\.\d+ \(C API (\d+)\)", r.stderr)
    assert m, r.stderr[-2000:]
    lib_minor, api = int(m.group(2)), int(m.group(3))
    print(f"library 1.{lib_minor}, header C API {api}")
    assert lib_minor >= api


def test_model_mode_timeline_and_commands(model_ffmpeg, ort_lib, tmp_path):
    """enable= and sendcmd work in model mode too; maps are still made for every frame."""
    src = tmp_path / "bright.mp4"
    write_bright_object_clip(src, n=20)
    model = make_onnx(tmp_path / "red.onnx")
    maps_path = tmp_path / "maps.gray"
    filt = (red_opts(model, ort_lib, strength=6, stride=3, maps=maps_path)
            .replace("salroi=", "salroi@s=", 1)
            + ":enable='gte(t,0.1)',sendcmd=c='0.2 salroi@s strength 0',showinfo")
    r = run_model_mode(model_ffmpeg, src, filt)
    got = showinfo_rois(r.stderr)
    assert len(got) == 20 and len(read_maps(maps_path, 80, 60)) == 20
    # t = n/30: frames 0-2 disabled (decided as they come in), 3.. planned
    assert [bool(f) for f in got[:7]] == [False, False, False, True, True, True, True]
    # the command is sent when frame 6 (t = 0.2) leaves salroi; frames planned in the same
    # pass (at most lookahead = 2 * stride + 1 of them) keep strength 6, later ones have none
    switch = [bool(f) for f in got].index(False, 3)
    assert 7 <= switch <= 6 + 7 and not any(got[switch:])


# ---- a model made here whose saliency is known: the red channel ----------------------

def make_onnx(path: Path, in_ch: int = 3, out_ch: int = 1, inputs: int = 1, hw=(60, 80)) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    w = np.zeros((out_ch, in_ch, 1, 1), np.float32)
    w[:, 0] = 1.0
    ins = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, in_ch, *hw])]
    nodes = [helper.make_node("Conv", ["input", "w"], ["saliency_map"], kernel_shape=[1, 1])]
    if inputs == 2:
        ins.append(helper.make_tensor_value_info("other", TensorProto.FLOAT, [1, in_ch, *hw]))
        nodes = [helper.make_node("Add", ["input", "other"], ["sum"]),
                 helper.make_node("Conv", ["sum", "w"], ["saliency_map"], kernel_shape=[1, 1])]
    graph = helper.make_graph(
        nodes, "red", ins,
        [helper.make_tensor_value_info("saliency_map", TensorProto.FLOAT, [1, out_ch, *hw])],
        initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    path.write_bytes(model.SerializeToString())
    return path


def red_opts(model: Path, ort_lib: Path, **extra) -> str:
    s = (f"salroi=model={model}:sha256={sha256_file(model)}:ort_lib={ort_lib}"
         ":scale=255:mean=0|0|0:std=1|1|1:post=none")
    return s + "".join(f":{k}={v}" for k, v in extra.items())


def write_bright_object_clip(path: Path, n: int = N) -> None:
    """write_clip's layout, with a bright textured object on a dark textured background."""
    write_clip(path, n, seed=11, bg=(20, 70), obj=(190, 250))


def test_model_mode_keyframe_qp_follows_the_plan(model_ffmpeg, ort_lib, tmp_path):
    """One-step encode: the QP change on keyframe blocks is the planned offset."""
    src = tmp_path / "bright.mp4"
    write_bright_object_clip(src)
    model = make_onnx(tmp_path / "red.onnx")
    base = tmp_path / "base.mp4"
    run_model_mode(model_ffmpeg, src, red_opts(model, ort_lib, strength=0), *X264, str(base))
    maps_path = tmp_path / "maps.gray"
    roi = tmp_path / "roi.mp4"
    run_model_mode(model_ffmpeg, src, red_opts(model, ort_lib, strength=8, strength_width=0, maps=maps_path),
                   *X264, str(roi))
    maps = read_maps(maps_path, 80, 60)
    assert len(maps) == N
    params = roi_mod.PlannerParams(block=16, strength=8.0, max_offset=10, mode="both",
                                   max_regions=128, qp_scale=51)
    planned = roi_mod.qp_map(roi_mod.plan(maps[0], W, H, params), W, H)
    inner = np.zeros((H // 16, W // 16), bool)
    inner[OBJ[0] // 16 + 1:OBJ[1] // 16 - 1, OBJ[2] // 16 + 1:OBJ[3] // 16 - 1] = True
    outer = np.ones_like(inner)
    outer[OBJ[0] // 16 - 1:OBJ[1] // 16 + 1, OBJ[2] // 16 - 1:OBJ[3] // 16 + 1] = False
    want_in, want_out = planned[inner].mean(), planned[outer].mean()
    assert want_in <= -5 and want_out >= 5  # the red channel marks the object
    b_in, b_out, nkey = keyframe_qp(base)
    r_in, r_out, _ = keyframe_qp(roi)
    print(f"planned {want_in:+.1f}/{want_out:+.1f}; object QP {b_in:.2f} -> {r_in:.2f}, "
          f"background {b_out:.2f} -> {r_out:.2f}")
    assert nkey >= 5
    assert r_in - b_in == pytest.approx(want_in, abs=2.5)
    assert want_out - 4 <= r_out - b_out <= want_out + 1.5


def test_model_mode_real_file_with_audio(model_ffmpeg, ort_lib, clip, tmp_path):
    """The documented one-step command on an MP4 with AAC audio: audio copied or re-encoded."""
    for acodec in ("copy", "aac"):
        out = tmp_path / f"out_{acodec}.mp4"
        run_model_mode(model_ffmpeg, clip.path, model_opts(PLACEHOLDER, ort_lib, stride=8),
                       "-c:v", "libx264", "-preset", "veryfast", "-c:a", acodec, str(out))
        with av.open(str(out)) as c:
            assert [s.type for s in c.streams] == ["video", "audio"]
            assert c.streams.audio[0].codec_context.name == "aac"
            assert sum(1 for _ in c.decode(video=0)) == clip.frames


# ---- errors ---------------------------------------------------------------------------

def model_error(ffmpeg: Path, filt: str, tmp_path: Path) -> str:
    src = tmp_path / "e.mp4"
    if not src.exists():
        write_cut_clip(src, n=2)
    out = tmp_path / "never.mp4"
    r = run_model_mode(ffmpeg, src, filt, "-c:v", "libx264", str(out), check=False)
    assert r.returncode != 0, r.stderr[-2000:]
    assert not out.exists() or out.stat().st_size == 0
    return r.stderr


def test_model_mode_turns_onnx_runtime_telemetry_off(model_ffmpeg, ort_lib, tmp_path):
    """ONNX Runtime 1.29 and newer sends usage telemetry and keeps a device id and an event cache
    under ~/.cache/Microsoft unless ORT_DISABLE_TELEMETRY=1 is set before it starts: the filter
    sets it where the caller did not, and ORT_DISABLE_TELEMETRY=0 keeps ONNX Runtime's way."""
    src = tmp_path / "t.mp4"
    write_cut_clip(src, n=2)
    cmd = [str(model_ffmpeg), "-hide_banner", "-nostdin", "-i", str(src), "-vf", model_opts(PLACEHOLDER, ort_lib),
           "-f", "null", "-"]
    if not telemetry_files(cmd, tmp_path / "on", "0"):
        pytest.skip("this ONNX Runtime keeps no telemetry files (built without telemetry)")
    assert telemetry_files(cmd, tmp_path / "off", None) == []


def test_model_mode_missing_library(model_ffmpeg, tmp_path):
    err = model_error(model_ffmpeg, model_opts(PLACEHOLDER, Path("/nonexistent/libonnxruntime.so.1")),
                      tmp_path)
    assert "Cannot load ONNX Runtime from '/nonexistent/libonnxruntime.so.1'" in err
    assert "vmaf-roi models path" in err


def test_model_mode_wrong_digest(model_ffmpeg, ort_lib, tmp_path):
    filt = model_opts(PLACEHOLDER, ort_lib).replace(PLACEHOLDER.sha256, "0" * 64)
    err = model_error(model_ffmpeg, filt, tmp_path)
    assert f"has sha256 {PLACEHOLDER.sha256}, expected {'0' * 64}" in err


def test_model_mode_bad_model(model_ffmpeg, ort_lib, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an ONNX model\n" * 10)
    err = model_error(model_ffmpeg, f"salroi=model={bad}:ort_lib={ort_lib}", tmp_path)
    assert "is not a model ONNX Runtime can load" in err
    missing = tmp_path / "missing.onnx"
    err = model_error(model_ffmpeg, f"salroi=model={missing}:ort_lib={ort_lib}", tmp_path)
    assert "Cannot read the model" in err


@pytest.mark.parametrize("kind, needle", [
    ("gray_input", "salroi needs [1,3,H,W]"),
    ("three_maps", "salroi needs one map [1,1,H,W]"),
    ("two_inputs", "The model has 2 inputs"),
    ("wrong_name", "The model has no output named 'nope'"),
    ("wrong_size", "but the model's input is fixed at 80x60"),
])
def test_model_mode_contract_errors(model_ffmpeg, ort_lib, tmp_path, kind, needle):
    extra = {}
    if kind == "gray_input":
        m = make_onnx(tmp_path / "m.onnx", in_ch=1)
    elif kind == "three_maps":
        m = make_onnx(tmp_path / "m.onnx", out_ch=3)
    elif kind == "two_inputs":
        m = make_onnx(tmp_path / "m.onnx", inputs=2)
    else:
        m = make_onnx(tmp_path / "m.onnx")
        extra = {"output": "nope"} if kind == "wrong_name" else {"size": "64x64"}
    err = model_error(model_ffmpeg, red_opts(m, ort_lib, **extra), tmp_path)
    assert needle in err
    if kind != "wrong_name":
        assert "does not fit salroi's model contract" in err


@pytest.mark.parametrize("opt, needle", [
    ("scale=256", "scale must be 255 or image_max"),
    ("mean=0.5|0.5", "mean must be three numbers"),
    ("std=1|0|1", "std must be positive"),
    ("device=tpu", "device"),
])
def test_model_mode_bad_options(model_ffmpeg, ort_lib, tmp_path, opt, needle):
    m = make_onnx(tmp_path / "m.onnx")
    err = model_error(model_ffmpeg, red_opts(m, ort_lib) + ":" + opt, tmp_path)
    assert needle in err


def test_model_mode_device_cuda_without_gpu(model_ffmpeg, ort_lib, tmp_path):
    from vmaf_roi.saliency import cuda_available
    if cuda_available():
        pytest.skip("a CUDA device is present")
    m = make_onnx(tmp_path / "m.onnx")
    err = model_error(model_ffmpeg, red_opts(m, ort_lib, device="cuda"), tmp_path)
    assert "device=cuda" in err


def test_models_path_prints_filter_options(model_dir):
    r = subprocess.run([sys.executable, "-m", "vmaf_roi", "models", "path", "u2netp", "--filter",
                        "--model-dir", str(model_dir)], check=True, capture_output=True, text=True)
    line = r.stdout.strip()
    assert line.startswith("salroi=model=") and f"sha256={get_spec('u2netp').sha256}" in line
    assert ":size=320x320:scale=image_max:" in line and ":post=minmax" in line
    assert "ort_lib=" in line and "libonnxruntime.so.1" in line
    assert ":stride=4:" in line  # the default encoder's (libx264)
    # with an encoder: its ROI grid, its qoffset scale and its stride (libsvtav1: every 8th frame)
    for enc, tail in (("libx264", ":stride=4:mode=both:block=16:qp_scale=51"),
                      ("libsvtav1", ":stride=8:mode=both:block=64:qp_scale=63")):
        r = subprocess.run([sys.executable, "-m", "vmaf_roi", "models", "path", "u2netp", "--filter", "--encoder", enc,
                            "--model-dir", str(model_dir)], check=True, capture_output=True, text=True)
        assert r.stdout.strip().endswith(tail), r.stdout
    r = subprocess.run([sys.executable, "-m", "vmaf_roi", "models", "path", "u2netp",
                        "--model-dir", str(model_dir)], check=True, capture_output=True, text=True)
    assert r.stdout.split()[0].endswith("u2netp.onnx")


def test_models_path_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vmaf_roi", "models", "path", "u2netp", "--filter",
                        "--model-dir", str(tmp_path)], check=False, capture_output=True, text=True)
    assert r.returncode != 0 and not r.stdout
    assert "missing" in r.stderr and "vmaf-roi models fetch u2netp" in r.stderr
    assert "Traceback" not in r.stderr
    (tmp_path / "u2netp.onnx").write_bytes(b"tampered")
    r = subprocess.run([sys.executable, "-m", "vmaf_roi", "models", "path", "u2netp",
                        "--model-dir", str(tmp_path)], check=False, capture_output=True, text=True)
    assert r.returncode != 0 and "expected " + get_spec("u2netp").sha256 in r.stderr


def test_model_path_with_filtergraph_characters(model_ffmpeg, ort_lib, tmp_path):
    """salroi_options escapes what the filtergraph parser would split on."""
    d = tmp_path / "odd:dir, [x]; it's"
    d.mkdir()
    model = d / "m.onnx"
    model.write_bytes(PLACEHOLDER.location().read_bytes())
    src = tmp_path / "cut.mp4"
    write_cut_clip(src, n=2)
    maps_path = tmp_path / "maps.gray"
    filt = salroi_options(PLACEHOLDER, model, ort_lib=ort_lib) + f":maps={maps_path}"
    r = run_model_mode(model_ffmpeg, src, filt)
    assert "Model " in r.stderr and len(read_maps(maps_path, 320, 320)) == 2


@pytest.mark.slow
def test_model_mode_valgrind_clean(model_ffmpeg, ort_lib, tmp_path):
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.skip("valgrind is not installed (plugin/ci.sh installs it)")
    src = tmp_path / "cut.mp4"
    write_cut_clip(src, n=6, cut_at=4)
    maps_path = tmp_path / "maps.gray"
    filt = model_opts(PLACEHOLDER, ort_lib, stride=2, threads=1, maps=maps_path,
                      **{"async": 1}) + ",showinfo"
    cmd = [valgrind, "--error-exitcode=99", "--leak-check=full",
           f"--suppressions={REPO / 'plugin' / 'valgrind-onnxruntime.supp'}",
           "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
           str(model_ffmpeg), "-hide_banner", "-nostdin", "-nostats", "-threads", "1",
           "-filter_threads", "1", "-i", str(src), "-vf", filt, "-f", "null", "-"]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-6000:]
    assert "ERROR SUMMARY: 0 errors" in r.stderr
    assert len(showinfo_rois(r.stderr)) == 6
    assert len(read_maps(maps_path, 320, 320)) == 6
    # an error after the session exists (the I/O contract) frees what it made
    gray = make_onnx(tmp_path / "gray.onnx", in_ch=1)
    i = cmd.index("-vf") + 1
    cmd[i] = red_opts(gray, ort_lib)
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)
    assert r.returncode not in (0, 99), r.stderr[-6000:]
    assert "does not fit salroi's model contract" in r.stderr
    assert "ERROR SUMMARY: 0 errors" in r.stderr


def test_build_cache_key_is_independent_of_the_checkout(tmp_path):
    """plugin/build.sh keys its cache on content, not on where the checkout lives: a fresh
    clone finds the build, and a changed patch series does not."""
    cache = Path(os.environ.get("VMAF_ROI_FFMPEG_CACHE")
                 or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vmaf-roi" / "ffmpeg")
    if not (list((cache / "dl").glob("ffmpeg_*.orig.tar.*")) and list((cache / "dl").glob("libonnxruntime-dev_*.deb"))):
        pytest.skip("plugin/build.sh has not fetched its sources on this machine")

    def key(repo: Path, *args: str) -> str:
        r = subprocess.run(["bash", str(repo / "plugin" / "build.sh"), "--key", *args],
                           check=True, capture_output=True, text=True)
        return r.stdout.strip().splitlines()[-1]

    full, minimal = key(REPO), key(REPO, "--minimal")
    assert full.startswith("full-") and minimal.startswith("minimal-")
    clone = tmp_path / "clone"
    for d in ("plugin", "ffmpeg-patches"):
        shutil.copytree(REPO / d, clone / d)
    assert key(clone) == full and key(clone, "--minimal") == minimal
    p = clone / "ffmpeg-patches" / (clone / "ffmpeg-patches" / "series").read_text().split()[-1]
    p.write_text(p.read_text() + "\n")
    assert key(clone) != full
