"""Encode throughput: plain PyAV encode vs `vmaf-roi encode --plain` vs ROI encodes.

All on one generated 720p clip, libx264 preset medium crf 23, same encoder settings; fps and
the ratio to the plain PyAV encode measured in this one run (the plain reference is timed at
the start and the end to show the noise). For every ROI row, the maps it applied (held between
inferences) are compared with stride-1 u2netp maps of the same frames: mean per-frame Pearson
correlation. Appends a table to benchmarks/RESULTS.md with --write.

Usage: python benchmarks/bench_encode.py [--frames 120] [--write] [--models u2netp,...]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import av

from vmaf_roi import config
import numpy as np

from vmaf_roi.encode import SaliencyTrack, encode
from vmaf_roi.registry import fetch, get_spec
from vmaf_roi.synth import make_clip


def plain_pyav(src: Path, dst: Path) -> tuple[float, int]:
    t = time.perf_counter()
    n = 0
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        ist = i.streams.video[0]
        ist.thread_type = "AUTO"
        ost = o.add_stream("libx264", rate=ist.average_rate)
        ost.width, ost.height, ost.pix_fmt = ist.codec_context.width, ist.codec_context.height, "yuv420p"
        ost.time_base = ost.codec_context.time_base = ist.time_base
        ost.options = {"preset": "medium", "crf": "23"}
        for f in i.decode(ist):
            f.pict_type = av.video.frame.PictureType.NONE
            for p in ost.encode(f):
                o.mux(p)
            n += 1
        for p in ost.encode(None):
            o.mux(p)
    return time.perf_counter() - t, n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--configs", default="u2netp,4,0;u2netp,4,16;u2netp,8,16;u2netp_int8,8,16;"
                    "u2netp_int8_192,4,16;u2netp_int8_192,6,16;u2netp_int8_192,8,16",
                    help="ROI rows: model,stride,lookahead[,key=value...] separated by ';'")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "in.mp4"
        make_clip(src, width=a.width, height=a.height, frames=a.frames, fps=30, crf=18)
        base = ["preset=medium", "rate_control.value=23"]
        sec, n = plain_pyav(src, Path(d) / "ref.mp4")
        ref_fps = n / sec
        rows.append(("plain PyAV decode+encode (reference)", ref_fps, None))
        r = encode(src, Path(d) / "plain.mp4", config.load(None, base), plain=True)
        rows.append(("vmaf-roi encode --plain", r.fps, None))
        fetch(get_spec("u2netp"))
        ref = SaliencyTrack()
        encode(src, Path(d) / "ref-roi.mp4", config.load(None, base + ["saliency.stride=1", "saliency.lookahead=0"]),
               track=ref)

        def corr(track: SaliencyTrack) -> float:
            cs = []
            for i, m in ref.maps.items():
                t = track.maps[i]
                if t.shape != m.shape:  # a model run at another size: compare at the reference's
                    t = av.VideoFrame.from_ndarray(t, format="gray").reformat(m.shape[1], m.shape[0]).to_ndarray()
                x, y = m.astype(np.float64).ravel(), t.astype(np.float64).ravel()
                cs.append(float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float(np.array_equal(x, y)))
            return float(np.mean(cs))

        for spec in a.configs.split(";"):
            mid, stride, la, *extra = spec.split(",")
            fetch(get_spec(mid))
            c = config.load(None, base + [f"saliency.model={mid}", f"saliency.stride={stride}",
                                          f"saliency.lookahead={la}", *extra])
            track = SaliencyTrack()
            r = encode(src, Path(d) / "roi.mp4", c, track=track)
            mode = f"threaded, lookahead {la}" if int(la) else "sequential"
            interp = "interpolated" if c["saliency"]["interpolate"] else "held"
            rows.append((f"ROI {mid} stride {stride}, {interp}, {mode} ({r.inferences} inferences)", r.fps, corr(track)))
        sec, n = plain_pyav(src, Path(d) / "ref.mp4")
        rows.append(("plain PyAV decode+encode (reference, again)", n / sec, None))
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, PyAV {av.__version__}, no GPU"
    lines = [
        f"### Encode throughput ({time.strftime('%Y-%m-%d')})",
        "",
        f"Command: `python benchmarks/bench_encode.py --frames {a.frames} --width {a.width} --height {a.height}"
        f" --configs '{a.configs}'`  ",
        f"Machine: {machine}. libx264 preset medium crf 23 for every row; generated {a.width}x{a.height} clip,"
        f" {a.frames} frames, 30 fps.",
        "",
        "| pipeline | fps | × plain PyAV | map correlation with stride-1 u2netp |",
        "|---|---:|---:|---:|",
        *[f"| {k} | {v:.1f} | {v / ref_fps:.2f} | {'' if c is None else f'{c:.3f}'} |" for k, v, c in rows],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if a.write:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
