"""Cost of `score` on this machine: wall and CPU seconds (this process and its ffmpeg child).

Makes a generated clip and a plain libx264 encode of it, then scores the encode against the
clip, without and with saliency weighting (the placeholder model, so inference costs ~nothing
and the numbers show the scorer itself). Run it with ``PYTHONPATH=<other checkout>/src`` to
measure another version of the code with the same script (it only uses ``vmaf_roi.score``).

Usage: python benchmarks/bench_score.py [--width 1280 --height 720 --frames 120] [--reps 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import av

import vmaf_roi
from vmaf_roi import config
from vmaf_roi.encode import encode
from vmaf_roi.score import score
from vmaf_roi.synth import make_clip


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        ref = make_clip(Path(d) / "ref.mp4", width=args.width, height=args.height, frames=args.frames).path
        dist = Path(d) / "dist.mkv"
        encode(ref, dist, config.load(None, ["preset=veryfast"]), plain=True)
        print(f"code: {Path(vmaf_roi.__file__).parent}")
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"PyAV {av.__version__}")
        for label, kw in (("score", {}), ("score, saliency-weighted (placeholder model)",
                                          {"model": "mobilesal_placeholder_v0"})):
            for _ in range(args.reps):
                t, c = time.perf_counter(), cpu_seconds()
                r = score(ref, dist, **kw)
                wall, cpu = time.perf_counter() - t, cpu_seconds() - c
                vm = sum(r.per_frame["vmaf"]) / r.frames
                print(f"{label}: {r.frames} frames {args.width}x{args.height}, wall {wall:.2f} s, "
                      f"CPU {cpu:.2f} s, mean VMAF {vm:.3f}")
        print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
