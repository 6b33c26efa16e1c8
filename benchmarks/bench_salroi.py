"""One-step ROI encodes with FFmpeg's salroi filter in model mode, against a plain encode.

    python benchmarks/bench_salroi.py [--ffmpeg build/bin/ffmpeg] [--model u2netp_int8_192]
        [--stride 8] [--frames 96] [--size 640x360] [--rounds 3] [--write]

Runs, interleaved, ``rounds`` times each (median reported):
- plain:      ffmpeg -i clip.mp4 -c:v libx264 -preset medium -crf 23 -c:a copy
- salroi async: the same with -vf "salroi=model=...:stride=S:async=1" (worker thread)
- salroi sync:  the same with async=0 (inference on the filter thread, the default)
Wall time and CPU time (user + sys of the ffmpeg process) per run.  With --write the table is
appended to benchmarks/RESULTS.md with the command and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vmaf_roi.ffmpeg_filter import model_file, ort_library, salroi_options  # noqa: E402
from vmaf_roi.registry import get_spec  # noqa: E402
from vmaf_roi.synth import make_clip  # noqa: E402


def run(cmd: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"bench_salroi: failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ffmpeg", default=str(REPO / "build" / "bin" / "ffmpeg"))
    ap.add_argument("--model", default="u2netp_int8_192")
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    spec = get_spec(a.model)
    path, digest = model_file(spec, Path(a.model_dir) if a.model_dir else None)
    filt = salroi_options(spec, path, ort_lib=ort_library(), digest=digest) + f":stride={a.stride}"
    with tempfile.TemporaryDirectory() as d:
        clip = make_clip(Path(d) / "clip.mp4", width=w, height=h, frames=a.frames, fps=24, audio=True)
        base = [a.ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-y", "-i", str(clip.path)]
        enc = ["-c:v", "libx264", "-preset", "medium", "-crf", "23", "-c:a", "copy", str(Path(d) / "out.mp4")]
        cases = {
            "plain": base + enc,
            f"salroi {spec.id} stride {a.stride} (async)": base + ["-vf", filt + ":async=1"] + enc,
            f"salroi {spec.id} stride {a.stride} (async=0)": base + ["-vf", filt + ":async=0"] + enc,
        }
        res: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
        for _ in range(a.rounds):
            for k, cmd in cases.items():
                res[k].append(run(cmd))
    plain_wall = statistics.median(x[0] for x in res["plain"])
    rows = []
    for k, v in res.items():
        wall = statistics.median(x[0] for x in v)
        cpu = statistics.median(x[1] for x in v)
        rows.append(f"| {k} | {wall:.2f} | {a.frames / wall:.1f} | {plain_wall / wall:.2f}x | {cpu:.2f} |")
    load = os.getloadavg()[0]
    table = "\n".join([
        "| run | wall s | fps | throughput vs plain | CPU s |",
        "|---|---:|---:|---:|---:|",
        *rows,
    ])
    print(table)
    if a.write:
        cmd = "python benchmarks/bench_salroi.py " + " ".join(sys.argv[1:])
        text = (f"\n\n### FFmpeg salroi model mode, one-step encode ({time.strftime('%Y-%m-%d')})\n\n"
                f"Command: `{cmd}`  \n"
                f"Machine: {platform.machine()}, {os.cpu_count()} cores, ffmpeg 7.1 + salroi "
                f"(`plugin/build.sh`), ONNX Runtime {ort_library().name.split('.so.')[-1]} (wheel, CPU "
                f"provider), libx264 preset medium crf 23, {a.size} generated clip, {a.frames} frames "
                f"with AAC audio copied; median of {a.rounds} interleaved rounds; load average at the "
                f"end: {load:.1f}.\n\n{table}\n")
        with open(REPO / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
