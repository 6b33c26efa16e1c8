"""Saliency-stage costs on this machine's CPU.

Prints and (with --write) appends to benchmarks/RESULTS.md:
- model inference ms/frame at the model's native size (u2netp and the placeholder, 320x320);
- decode + preprocess ms/frame of a 720p clip for three ways of getting the model input:
  PyAV `reformat` (swscale), an FFmpeg filter graph (scale+format), and numpy (decode to RGB,
  then a bilinear resize in numpy).

Usage: python benchmarks/bench_saliency.py [--frames 120] [--write]
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
import av.filter
import numpy as np

from vmaf_roi.registry import fetch, get_spec
from vmaf_roi.saliency import SaliencyModel
from vmaf_roi.synth import make_clip


def timed(fn, n):
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1000


def bench_models(reps: int, threads: int) -> list[tuple[str, float]]:
    out = []
    rgb = np.random.default_rng(0).integers(0, 256, (1, 320, 320, 3), dtype=np.uint8)
    for mid in ("u2netp", "mobilesal_placeholder_v0"):
        spec = get_spec(mid)
        fetch(spec)
        m = SaliencyModel(spec, device="cpu", threads=threads)
        m.predict(rgb)  # warm-up
        out.append((f"{mid} ({'placeholder' if m.placeholder else 'real'}), 320x320, {m.provider}", timed(lambda: m.predict(rgb), reps)))
    return out


def numpy_bilinear(img: np.ndarray, h: int, w: int) -> np.ndarray:
    ih, iw = img.shape[:2]
    ys = (np.arange(h) + 0.5) * ih / h - 0.5
    xs = (np.arange(w) + 0.5) * iw / w - 0.5
    y0 = np.clip(np.floor(ys).astype(int), 0, ih - 1)
    x0 = np.clip(np.floor(xs).astype(int), 0, iw - 1)
    y1, x1 = np.minimum(y0 + 1, ih - 1), np.minimum(x0 + 1, iw - 1)
    fy = np.clip(ys - y0, 0, 1)[:, None, None]
    fx = np.clip(xs - x0, 0, 1)[None, :, None]
    a = img[y0][:, x0].astype(np.float32)
    b = img[y0][:, x1].astype(np.float32)
    c = img[y1][:, x0].astype(np.float32)
    d = img[y1][:, x1].astype(np.float32)
    return ((a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy).astype(np.uint8)


def bench_decode(path: Path) -> list[tuple[str, float]]:
    def run(kind: str) -> float:
        n = 0
        t = time.perf_counter()
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            graph = None
            for f in c.decode(s):
                n += 1
                if kind == "decode":
                    continue
                if kind == "reformat":
                    f.reformat(320, 320, "rgb24", interpolation="BILINEAR").to_ndarray()
                elif kind == "graph":
                    if graph is None:
                        graph = av.filter.Graph()
                        graph.link_nodes(graph.add_buffer(template=s), graph.add("scale", "320:320:flags=bilinear"),
                                         graph.add("format", "rgb24"), graph.add("buffersink")).configure()
                    graph.push(f)
                    graph.pull().to_ndarray()
                elif kind == "numpy":
                    numpy_bilinear(f.to_ndarray(format="rgb24"), 320, 320)
        return (time.perf_counter() - t) / n * 1000

    return [
        ("720p x264 decode only", run("decode")),
        ("720p decode + PyAV reformat to 320x320 rgb24 (swscale)", run("reformat")),
        ("720p decode + filter graph scale=320:320,format=rgb24", run("graph")),
        ("720p decode + to_ndarray(rgb24) + numpy bilinear resize", run("numpy")),
    ]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        clip = Path(d) / "720p.mp4"
        make_clip(clip, width=1280, height=720, frames=a.frames, fps=30)
        rows = bench_models(a.reps, a.threads) + bench_decode(clip)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, PyAV {av.__version__}"
    lines = [
        f"### Saliency stage ({time.strftime('%Y-%m-%d')})",
        "",
        f"Command: `python benchmarks/bench_saliency.py --frames {a.frames} --reps {a.reps} --threads {a.threads}`  ",
        f"Machine: {machine}, ONNX Runtime CPU provider with {a.threads} threads, no GPU.",
        "",
        "| what | ms/frame |",
        "|---|---:|",
        *[f"| {k} | {v:.1f} |" for k, v in rows],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if a.write:
        res = Path(__file__).with_name("RESULTS.md")
        with open(res, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
