"""ROI in libsvtav1 and nvenc through the patched ffmpeg (ffmpeg-patches/0003-0005).

Uses the ffmpeg made by ``plugin/build.sh`` (``$VMAF_ROI_SALROI_FFMPEG`` or the links in
``build/bin/``), as tests/test_plugin.py does, and the C unit test of the ROI block maps that
build.sh installs next to it (``roi_map-test``, FFmpeg's fate-roi-map).  The clips are made
here: a textured object on a moving textured background, 256x192 (a 4x3 grid of SVT-AV1's
64x64 ROI blocks), a few frames at SVT-AV1's fastest presets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import built_ffmpeg_or_skip

REPO = Path(__file__).resolve().parents[1]
W, H, N = 256, 192, 8
# the object (x0, y0, x1, y1): 64x64 block (1, 1) of SVT-AV1's ROI grid, exactly
OBJ = (64, 64, 128, 128)


def _has(ffmpeg: Path, what: str, name: str) -> bool:
    r = subprocess.run([str(ffmpeg), "-hide_banner", "-h", f"{what}={name}"],
                       check=False, capture_output=True, text=True)
    return r.returncode == 0 and "is not recognized" not in r.stdout + r.stderr


@pytest.fixture(scope="session")
def ffmpeg() -> Path:
    p = built_ffmpeg_or_skip()
    if not _has(p, "encoder", "libsvtav1"):
        msg = f"{p} has no libsvtav1 encoder: rebuild it with plugin/build.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return p


@pytest.fixture(scope="session")
def av1_decoder(ffmpeg) -> str:
    if not _has(ffmpeg, "decoder", "libdav1d"):
        pytest.skip(f"{ffmpeg} has no libdav1d decoder (apt-get install libdav1d-dev, rebuild)")
    return "libdav1d"


def run_ff(ffmpeg: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(ffmpeg), "-hide_banner", "-nostdin", "-nostats", "-y", *args]
    r = subprocess.run(cmd, check=False, capture_output=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"ffmpeg failed ({r.returncode}): {' '.join(cmd)}\n"
                             f"{r.stderr.decode(errors='replace')[-4000:]}")
    return r


def make_clip(path: Path, n: int = N) -> None:
    """Raw yuv420p: a fixed textured object on a background texture moving 2 px/frame."""
    rng = np.random.default_rng(7)
    bg = rng.integers(0, 256, (H + 16, W + 2 * n + 16)).astype(np.float32)
    k = np.ones(5, np.float32) / 5  # smooth the background a little: cheaper than the object
    bg = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, bg)
    bg = np.apply_along_axis(lambda c: np.convolve(c, k, "same"), 0, bg)
    obj = rng.integers(0, 256, (OBJ[3] - OBJ[1], OBJ[2] - OBJ[0])).astype(np.float32)
    obj = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, obj)
    obj = np.apply_along_axis(lambda c: np.convolve(c, k, "same"), 0, obj)
    obj = (obj - obj.mean()) * 2 + 128  # the same kind of texture, with more contrast
    with path.open("wb") as f:
        for i in range(n):
            y = bg[8:8 + H, 8 + 2 * i:8 + 2 * i + W].copy()
            y[OBJ[1]:OBJ[3], OBJ[0]:OBJ[2]] = obj
            f.write(np.clip(y, 0, 255).astype(np.uint8).tobytes())
            f.write(np.full((H // 2) * (W // 2) * 2, 128, np.uint8).tobytes())


def raw_input(path: Path) -> list[str]:
    return ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{W}x{H}", "-r", "25",
            "-i", str(path)]


def svt(*extra: str, preset: int = 12, crf: int = 40) -> list[str]:
    return ["-c:v", "libsvtav1", "-preset", str(preset), "-crf", str(crf), *extra]


def luma(ffmpeg: Path, decoder: str, video: Path) -> np.ndarray:
    r = run_ff(ffmpeg, "-c:v", decoder, "-i", str(video), "-f", "rawvideo", "-pix_fmt", "gray",
               "-")
    return np.frombuffer(r.stdout, np.uint8).reshape(-1, H, W)


def source_luma(clip: Path) -> np.ndarray:
    a = np.fromfile(clip, np.uint8).reshape(-1, H * W * 3 // 2)[:, :H * W]
    return a.reshape(-1, H, W)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))


def inside_outside(ref: np.ndarray, dec: np.ndarray) -> tuple[float, float]:
    """PSNR-Y inside the object and outside it."""
    x0, y0, x1, y1 = OBJ
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    inside = psnr(ref[:, mask], dec[:, mask])
    outside = psnr(ref[:, ~mask], dec[:, ~mask])
    return inside, outside


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("av1") / "clip.yuv"
    make_clip(p)
    return p


# object first (the first region wins where regions overlap), then the whole frame
ROI = "addroi=x={x}:y={y}:w={w}:h={h}:qoffset={q_in},addroi=x=0:y=0:w=iw:h=ih:qoffset={q_out}"


def roi_filter(q_in: str, q_out: str) -> str:
    x0, y0, x1, y1 = OBJ
    return ROI.format(x=x0, y=y0, w=x1 - x0, h=y1 - y0, q_in=q_in, q_out=q_out)


def test_roi_map_unit_test(ffmpeg):
    """The C test of ff_roi_map_fill/ff_roi_map_quantize (grid edges, region order, clamping,
    8-segment quantisation, empty list), built by plugin/build.sh next to ffmpeg."""
    exe = ffmpeg.resolve().parent / "roi_map-test"
    assert exe.is_file(), f"{exe} is missing: plugin/build.sh installs it with ffmpeg"
    r = subprocess.run([str(exe)], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_svtav1_roi_raises_quality_inside_and_lowers_it_outside(ffmpeg, av1_decoder, clip,
                                                                tmp_path):
    plain, roi = tmp_path / "plain.ivf", tmp_path / "roi.ivf"
    # crf 55: room below the frames' qindex for the object's offset (-51)
    run_ff(ffmpeg, *raw_input(clip), *svt(crf=55), str(plain))
    run_ff(ffmpeg, *raw_input(clip), "-vf", roi_filter("-1/5", "1/5"), *svt(crf=55), str(roi))
    ref = source_luma(clip)
    p_in, p_out = inside_outside(ref, luma(ffmpeg, av1_decoder, plain))
    r_in, r_out = inside_outside(ref, luma(ffmpeg, av1_decoder, roi))
    print(f"PSNR-Y inside/outside: plain {p_in:.2f}/{p_out:.2f} dB, ROI {r_in:.2f}/{r_out:.2f} dB,"
          f" {plain.stat().st_size} vs {roi.stat().st_size} bytes")
    # measured (-roi_mode deltaq, the default): plain 30.27/32.86 dB, ROI 31.18/29.24 dB,
    # 5566 -> 2784 bytes (segment: 30.99/29.89 dB, 3653 bytes)
    assert r_in > p_in + 0.4
    assert r_out < p_out - 1.5


def test_svtav1_zero_offsets_give_the_plain_bitstream(ffmpeg, clip, tmp_path):
    """Regions with qoffset 0 send no map: the stream is byte-identical to one without them."""
    plain, zero = tmp_path / "plain.ivf", tmp_path / "zero.ivf"
    run_ff(ffmpeg, *raw_input(clip), *svt(preset=10), str(plain))
    run_ff(ffmpeg, *raw_input(clip), "-vf", roi_filter("0", "0"), *svt(preset=10), str(zero))
    assert zero.read_bytes() == plain.read_bytes()
    # the regions do change the stream when they are not zero ...
    roi = tmp_path / "roi.ivf"
    run_ff(ffmpeg, *raw_input(clip), "-vf", roi_filter("-1/10", "0"), *svt(preset=10), str(roi))
    assert roi.read_bytes() != plain.read_bytes()
    # ... unless -roi 0; and SVT-AV1's enable_roi_map (on by default) alone changes nothing
    off, off_roi = tmp_path / "off.ivf", tmp_path / "off_roi.ivf"
    run_ff(ffmpeg, *raw_input(clip), *svt("-roi", "0", preset=10), str(off))
    run_ff(ffmpeg, *raw_input(clip), "-vf", roi_filter("-1/10", "0"),
           *svt("-roi", "0", preset=10), str(off_roi))
    assert off.read_bytes() == plain.read_bytes() == off_roi.read_bytes()


def test_svtav1_map_does_not_stick_after_roi_ends(ffmpeg, av1_decoder, clip, tmp_path):
    """Frames without ROI after frames with ROI are coded as without any: SVT-AV1 keeps the last
    map it got, so the wrapper sends an all-zero one.  Intra-only, so frames are independent."""
    half = N // 2
    plain, mixed = tmp_path / "plain.ivf", tmp_path / "mixed.ivf"
    intra = svt("-g", "1")
    run_ff(ffmpeg, *raw_input(clip), *intra, str(plain))
    graph = (f"[0:v]split[a][b];[a]trim=end_frame={half},{roi_filter('-1/4', '1/4')}[r];"
             f"[b]trim=start_frame={half},setpts=PTS-STARTPTS[p];[r][p]concat=n=2:v=1:a=0")
    run_ff(ffmpeg, *raw_input(clip), "-filter_complex", graph, *intra, str(mixed))
    a, b = luma(ffmpeg, av1_decoder, plain), luma(ffmpeg, av1_decoder, mixed)
    assert a.shape == b.shape == (N, H, W)
    assert not np.array_equal(a[:half], b[:half])  # the ROI frames differ
    assert np.array_equal(a[half:], b[half:])      # the frames after them do not


def test_salroi_drives_libsvtav1(ffmpeg, av1_decoder, clip, tmp_path):
    """The filter's two-input mode into libsvtav1: a saliency map that marks the object gives
    it more quality and the rest less; strength 0 is the plain stream."""
    sal = tmp_path / "sal.gray"
    m = np.zeros((H, W), np.uint8)
    x0, y0, x1, y1 = OBJ
    m[y0:y1, x0:x1] = 255
    sal.write_bytes(m.tobytes() * N)
    sal_in = ["-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{W}x{H}", "-r", "25", "-i", str(sal)]
    ref = source_luma(clip)
    res = {}
    for strength in (0, 4):
        out = tmp_path / f"s{strength}.ivf"
        run_ff(ffmpeg, *raw_input(clip), *sal_in, "-filter_complex",
               f"[0:v][1:v]salroi=strength={strength}:strength_width=0", *svt(crf=55), str(out))
        res[strength] = (out.read_bytes(), inside_outside(ref, luma(ffmpeg, av1_decoder, out)))
    plain = tmp_path / "plain.ivf"
    run_ff(ffmpeg, *raw_input(clip), *svt(crf=55), str(plain))
    assert res[0][0] == plain.read_bytes()
    (p_in, p_out), (r_in, r_out) = res[0][1], res[4][1]
    # measured: 30.27/32.86 dB plain, 30.80/31.82 dB with strength 4
    assert r_in > p_in + 0.3 and r_out < p_out - 0.5


@pytest.mark.slow
def test_svtav1_roi_valgrind_clean(ffmpeg, clip, tmp_path):
    """24 frames in 6 runs of 4: no ROI, more than 8 distinct offsets, the object, ... so maps
    change, stay and stop while earlier pictures are still in the encoder: no invalid access,
    no leak (a map is freed once the packets of its pictures are out, the rest at close)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.skip("valgrind is not installed (plugin/ci.sh installs it)")
    # one region per 64x64 block: 11 distinct non-zero offsets and 0, for 8 segments
    many = ",".join(f"addroi=x={64 * (i % 4)}:y={64 * (i // 4)}:w=64:h=64:qoffset={i - 5}/12"
                    for i in range(12))
    patterns = ["null", many, roi_filter("-1/4", "1/8")]
    runs = 6
    graph = [f"[0:v]split={runs}" + "".join(f"[s{k}]" for k in range(runs))]
    for k in range(runs):
        graph.append(f"[s{k}]trim=start_frame={4 * k}:end_frame={4 * k + 4},"
                     f"setpts=PTS-STARTPTS,{patterns[k % 3]}[r{k}]")
    graph.append("".join(f"[r{k}]" for k in range(runs)) + f"concat=n={runs}:v=1:a=0")
    cmd = [valgrind, "--error-exitcode=99", "--leak-check=full",
           "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
           str(ffmpeg), "-hide_banner", "-nostdin", "-nostats", "-y", "-stream_loop", "2",
           *raw_input(clip), "-filter_complex", ";".join(graph), *svt(),
           "-svtav1-params", "lp=1", str(tmp_path / "vg.ivf")]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-6000:]
    assert "ERROR SUMMARY: 0 errors" in r.stderr
    assert "frame=   24" in r.stderr


# --- the per-superblock delta-q ROI mode (plugin/svt-av1/: -roi_mode deltaq) ---------------------

@pytest.fixture(scope="session")
def deltaq(ffmpeg) -> None:
    r = subprocess.run([str(ffmpeg), "-hide_banner", "-h", "encoder=libsvtav1"],
                       check=False, capture_output=True, text=True)
    if "deltaq" not in r.stdout:
        msg = f"{ffmpeg}: libsvtav1 has no -roi_mode deltaq (SVT-AV1 built without plugin/svt-av1/)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def inspect_tool() -> Path:
    """libaom's inspect (CONFIG_INSPECTION), built by plugin/build.sh as build/bin/aom-inspect."""
    p = Path(os.environ.get("VMAF_ROI_AOM_INSPECT", REPO / "build/bin/aom-inspect"))
    if not os.access(p, os.X_OK):
        msg = f"{p} is missing: plugin/build.sh builds libaom's inspect as build/bin/aom-inspect"
        if os.environ.get("CI") == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return p


def sb_qindex(inspect: Path, video: Path, sb: int = 64) -> list[dict]:
    """Per decoded frame, from libaom's inspect: the qindex of every ``sb``-pixel superblock as
    the decoder reads it (``q``), whether the stream codes it there (``coded``: a superblock
    that is one skipped block carries no delta-q, the decoder keeps the previous qindex), the
    frame's base qindex and delta_q_present, and whether any block has a segment id."""
    r = subprocess.run([str(inspect), str(video), "-dq", "-s", "-bs", "-si"], check=False,
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    out = []
    for f in json.loads(r.stdout):
        if f is None:
            continue
        whole = f["blockSizeMap"][f"BLOCK_{sb}X{sb}"]
        step = sb // 4  # the layers are per 4x4 mode-info unit
        q, skip, bs = (np.array(f[k])[::step, ::step] for k in ("delta_q", "skip", "blockSize"))
        coded = ~((bs == whole) & (skip == f["skipMap"]["SKIP"]))
        if not f["deltaQPresentFlag"]:
            coded[:] = True  # every superblock has the frame's qindex
        out.append({"base": f["baseQIndex"], "present": f["deltaQPresentFlag"],
                    "segments": bool(np.any(np.array(f["seg_id"]))), "q": q, "coded": coded})
    return out


@pytest.mark.parametrize("mode", ["deltaq", "segment"])
def test_svtav1_zero_map_bitstream(ffmpeg, deltaq, clip, tmp_path, mode):
    """An all-zero map (sent with -roi_zero_maps 1) leaves the stream byte-identical to plain in
    delta-q mode; in segment mode the same map changes it (segmentation is set up anyway)."""
    plain, zero = tmp_path / "plain.ivf", tmp_path / "zero.ivf"
    run_ff(ffmpeg, *raw_input(clip), *svt(preset=8, crf=35), str(plain))
    run_ff(ffmpeg, *raw_input(clip), "-vf", roi_filter("0", "0"),
           *svt("-roi_mode", mode, "-roi_zero_maps", "1", preset=8, crf=35), str(zero))
    if mode == "deltaq":
        assert zero.read_bytes() == plain.read_bytes()
    else:
        assert zero.read_bytes() != plain.read_bytes()


@pytest.mark.parametrize("encoder", ["h264_nvenc", "hevc_nvenc", "av1_nvenc"])
def test_nvenc_encoders_have_the_roi_option(ffmpeg, encoder):
    """The NVENC patch is built in (it is not run: no GPU in CI)."""
    r = subprocess.run([str(ffmpeg), "-hide_banner", "-h", f"encoder={encoder}"],
                       check=False, capture_output=True, text=True)
    assert r.returncode == 0 and f"Encoder {encoder}" in r.stdout, r.stdout + r.stderr
    assert "-roi" in r.stdout and "QP delta map" in r.stdout


def test_one_step_libsvtav1_with_the_filter_options_encode_prints(ffmpeg, av1_decoder, clip, tmp_path):
    """`vmaf-roi models path ID --filter --encoder libsvtav1` gives a working one-step command,
    with SVT-AV1's 64x64 grid and the qoffset scale encode uses."""
    import sys

    env = {**os.environ}
    r = subprocess.run([sys.executable, "-m", "vmaf_roi", "models", "path", "salstudent_v1", "--filter",
                        "--encoder", "libsvtav1"], check=True, capture_output=True, text=True, env=env)
    opts = r.stdout.strip()
    assert opts.startswith("salroi=model=") and opts.endswith(":block=64:qp_scale=63")
    out = tmp_path / "one.ivf"
    run_ff(ffmpeg, *raw_input(clip), "-vf", f"{opts}:strength=4", *svt(), str(out))
    assert luma(ffmpeg, av1_decoder, out).shape[0] == N
    bad = subprocess.run([sys.executable, "-m", "vmaf_roi", "models", "path", "salstudent_v1", "--filter",
                          "--encoder", "mpeg4"], check=False, capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "not an encoder that takes ROI" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("sb", [64, 128])
def test_svtav1_deltaq_map_sets_the_qindex_of_its_superblocks(ffmpeg, deltaq, inspect_tool, clip,
                                                              tmp_path, sb):
    """Read back from the stream with libaom's inspect: a map of -26 qindex on the 64x64 block
    (1, 1) and +10 elsewhere puts the superblock holding that block 26 below plain's qindex and
    every other superblock 10 above, in every frame where both streams code it; no segment ids.
    SVT-AV1 picks 128x128 superblocks above 240p at preset <= 6 and crf > 56: the superblock
    with the block takes the lowest offset of its four 64x64 blocks (-26, not their mean)."""
    if sb == 64:
        src, preset, crf = raw_input(clip), 8, 40
    else:
        src, preset, crf = ["-f", "lavfi", "-i", "testsrc2=s=640x384:r=25", "-frames:v", str(N)], 6, 60
    plain, roi = tmp_path / "plain.ivf", tmp_path / "roi.ivf"
    run_ff(ffmpeg, *src, *svt(preset=preset, crf=crf), str(plain))
    run_ff(ffmpeg, *src, "-vf", roi_filter("-26/255", "10/255"),
           *svt("-roi_mode", "deltaq", preset=preset, crf=crf), str(roi))
    p_frames, r_frames = sb_qindex(inspect_tool, plain, sb), sb_qindex(inspect_tool, roi, sb)
    assert len(p_frames) == len(r_frames) >= N
    obj = (OBJ[1] // sb, OBJ[0] // sb)  # the superblock (row, column) with block (1, 1)
    checked = 0
    for i, (p, r) in enumerate(zip(p_frames, r_frames)):
        assert r["base"] == p["base"] and r["present"] == 1 and not r["segments"], i
        expect = np.clip(p["q"] + 10, 1, 255)
        expect[obj] = max(1, p["q"][obj] - 26)
        both = p["coded"] & r["coded"]
        assert np.array_equal(r["q"][both], expect[both]), (i, p["q"], r["q"], both)
        checked += int(both[obj])
    assert checked >= 1  # the key frame codes every superblock
