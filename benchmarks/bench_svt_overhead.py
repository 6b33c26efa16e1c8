"""Fixed cost of an SVT-AV1 ROI map: bytes per frame with a map against none.

For each clip and CRF, libsvtav1 in the patched ffmpeg (ffmpeg-patches/0004) codes the first
``--frames`` frames three ways, each with the same settings:

- ``plain``: no ROI side data;
- ``zero``: one region over the whole frame with qoffset 0, sent as an all-zero map
  (the wrapper's ``-roi_zero_maps 1``; without it a zero map is not sent at all);
- ``one block``: a region on the top-left 64x64 block with qoffset -1/255, i.e. -1 qindex on
  one block of SVT-AV1's 64x64 ROI grid, 0 elsewhere.

and, where the encoder has ``-roi_mode`` (the SVT-AV1 patch under plugin/svt-av1/), in each ROI
mode: ``segment`` (SVT-AV1's own ROI map: AV1 segmentation) and ``deltaq`` (the map added to
the superblock qindex, coded as per-superblock delta-q).  Reported: payload bytes per frame
(IVF frame headers not counted), the change against plain, and PSNR-Y of the encode against the
source (mean of per-frame PSNR-Y, decoded with PyAV).

Usage: python benchmarks/bench_svt_overhead.py [--ffmpeg build/bin/ffmpeg-minimal]
           [--clip PATH ...] [--crf 30,40] [--preset 8] [--frames 120] [--modes segment,deltaq]
"""

from __future__ import annotations

import argparse
import os
import platform
import struct
import subprocess
import tempfile
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = [REPO / "build/eval-roi/clips/cup.f120.mkv", REPO / "build/corpus/bigbuckbunny.mp4"]
VARIANTS = {
    "plain": None,
    "zero": "addroi=x=0:y=0:w=iw:h=ih:qoffset=0",
    "one block": "addroi=x=0:y=0:w=64:h=64:qoffset=-1/255",
}


def ivf_payload(path: Path) -> tuple[int, int]:
    """(frames, payload bytes) of an IVF file."""
    data = path.read_bytes()
    hdr = struct.unpack_from("<H", data, 6)[0]
    pos, n, total = hdr, 0, 0
    while pos + 12 <= len(data):
        size = struct.unpack_from("<I", data, pos)[0]
        pos += 12 + size
        n += 1
        total += size
    return n, total


def has_option(ffmpeg: str, opt: str) -> bool:
    r = subprocess.run([ffmpeg, "-hide_banner", "-h", "encoder=libsvtav1"], capture_output=True,
                       text=True, check=False)
    return f"-{opt} " in r.stdout


def encode(ffmpeg: str, clip: Path, frames: int, crf: int, preset: int, vf: str | None,
           extra: list[str], out: Path) -> tuple[int, int, float]:
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-y", "-i", str(clip), "-frames:v", str(frames),
           "-an", "-pix_fmt", "yuv420p"]
    if vf:
        cmd += ["-vf", vf]
    cmd += ["-c:v", "libsvtav1", "-preset", str(preset), "-crf", str(crf), *extra, str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    n, size = ivf_payload(out)
    return n, size, psnr_y(out, clip, frames)


def luma_frames(path: Path, frames: int) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        out = []
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="gray").astype(np.float64))
            if len(out) == frames:
                break
    return out


def psnr_y(enc: Path, src: Path, frames: int) -> float:
    """Mean over frames of PSNR-Y (decoded with PyAV's FFmpeg: the minimal build has no psnr)."""
    a, b = luma_frames(enc, frames), luma_frames(src, frames)
    assert len(a) == len(b), (len(a), len(b))
    return float(np.mean([10 * np.log10(255.0 ** 2 / max(np.mean((x - y) ** 2), 1e-10))
                          for x, y in zip(a, b)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ffmpeg", default=os.environ.get("VMAF_ROI_SALROI_FFMPEG",
                                                       str(REPO / "build/bin/ffmpeg-minimal")))
    ap.add_argument("--clip", action="append", type=Path)
    ap.add_argument("--crf", default="30,40")
    ap.add_argument("--preset", type=int, default=8)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--modes", default="segment,deltaq")
    a = ap.parse_args()
    clips = a.clip or DEFAULT_CLIPS
    if not has_option(a.ffmpeg, "roi_zero_maps"):
        raise SystemExit(f"{a.ffmpeg}: libsvtav1 has no -roi_zero_maps: rebuild with plugin/build.sh")
    if has_option(a.ffmpeg, "roi_mode"):
        modes = [m for m in a.modes.split(",") if m]
    else:
        modes = [""]  # the wrapper without the SVT-AV1 patch: segmentation, no choice
        print("(no -roi_mode in this build: SVT-AV1's own ROI map, i.e. segmentation)")
    print(f"Command: python benchmarks/bench_svt_overhead.py --crf {a.crf} --preset {a.preset} "
          f"--frames {a.frames} " + " ".join(f"--clip {c}" for c in clips))
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
          f"ffmpeg {a.ffmpeg}")
    print()
    print("| clip | crf | mode | variant | frames | bytes/frame | vs plain | PSNR-Y dB |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            for crf in (int(c) for c in a.crf.split(",")):
                base = None
                for mode in modes:
                    for name, vf in VARIANTS.items():
                        if name == "plain" and base is not None:
                            continue
                        extra = []
                        if vf:
                            extra = ["-roi_zero_maps", "1"] + (["-roi_mode", mode] if mode else [])
                        out = Path(tmp) / "out.ivf"
                        n, size, psnr = encode(a.ffmpeg, clip, a.frames, crf, a.preset, vf, extra, out)
                        bpf = size / n
                        if name == "plain":
                            base = bpf
                        print(f"| {clip.name} | {crf} | {mode or ('-' if name == 'plain' else 'segment')}"
                              f" | {name} | {n} | {bpf:,.0f} | {100 * (bpf / base - 1):+.2f}% |"
                              f" {psnr:.3f} |", flush=True)


if __name__ == "__main__":
    main()
