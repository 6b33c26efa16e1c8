"""One-step ROI encodes with FFmpeg's salroi filter in model mode, against a plain encode.

    python benchmarks/bench_salroi.py [--input CLIP ...] [--ffmpeg build/bin/ffmpeg]
        [--model salstudent_v1] [--stride 2] [--rounds 3] [--write]
        [--frames 96 --size 640x360: the generated clip, without --input]

For each clip (``--input``, repeatable: real clips; without it one generated clip, labelled so)
runs, interleaved, ``rounds`` times each (median reported):
- plain:      ffmpeg -i CLIP -c:v libx264 -preset medium -crf 23 -c:a copy
- salroi async: the same with -vf "salroi=model=...:stride=S:mode=M:async=1" (worker thread)
- salroi sync:  the same with async=0 (inference on the filter thread, the filter's default)
The model, stride and planner mode default to `vmaf-roi encode`'s (configs/default.yaml), as
`vmaf-roi models path ID --filter` prints them. Wall time and CPU time (user + sys of the ffmpeg
process) per run.  With --write the table is appended to benchmarks/RESULTS.md with the command
and the machine.
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

from vmaf_roi import config  # noqa: E402
from vmaf_roi.config import DEFAULTS  # noqa: E402
from vmaf_roi.ffmpeg_filter import model_file, ort_library, salroi_options  # noqa: E402
from vmaf_roi.registry import get_spec  # noqa: E402
from vmaf_roi.synth import make_clip  # noqa: E402


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + sys of the child) of one command; a failure ends the script."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"{Path(sys.argv[0]).stem}: failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def bench(ffmpeg: str, clip: Path, filt: str, label: str, rounds: int, out: Path) -> dict[str, list[tuple[float, float]]]:
    base = [ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-y", "-i", str(clip)]
    enc = ["-c:v", "libx264", "-preset", "medium", "-crf", "23", "-c:a", "copy", str(out)]
    cases = {
        "plain": base + enc,
        f"salroi {label} (async)": base + ["-vf", filt + ":async=1"] + enc,
        f"salroi {label} (async=0)": base + ["-vf", filt + ":async=0"] + enc,
    }
    res: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for _ in range(rounds):
        for k, cmd in cases.items():
            res[k].append(run(cmd))
    return res


def frame_count(clip: Path) -> tuple[int, str]:
    import av

    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        return n, f"{s.codec_context.width}x{s.codec_context.height}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, action="append", default=[])
    ap.add_argument("--ffmpeg", default=str(REPO / "build" / "bin" / "ffmpeg"))
    ap.add_argument("--model", default=DEFAULTS["saliency"]["model"])
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--stride", type=int, default=config.load(None)["saliency"]["stride"])  # x264's
    ap.add_argument("--mode", default=DEFAULTS["roi"]["mode"])
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    spec = get_spec(a.model)
    path, digest = model_file(spec, Path(a.model_dir) if a.model_dir else None)
    filt = salroi_options(spec, path, ort_lib=ort_library(), digest=digest) + f":stride={a.stride}:mode={a.mode}"
    label = f"{spec.id} stride {a.stride} {a.mode}"
    sections = []
    with tempfile.TemporaryDirectory() as d:
        clips: list[tuple[Path, str]] = [(p, f"{p.name} (real)") for p in a.input]
        if not clips:
            w, h = (int(v) for v in a.size.split("x"))
            gen = make_clip(Path(d) / "clip.mp4", width=w, height=h, frames=a.frames, fps=24, audio=True)
            clips = [(gen.path, "generated clip (uniform noise and a textured blob; not real content)")]
        for clip, name in clips:
            frames, size = frame_count(clip)
            res = bench(a.ffmpeg, clip, filt, label, a.rounds, Path(d) / "out.mp4")
            plain_wall = statistics.median(x[0] for x in res["plain"])
            plain_cpu = statistics.median(x[1] for x in res["plain"])
            rows = []
            for k, v in res.items():
                wall = statistics.median(x[0] for x in v)
                cpu = statistics.median(x[1] for x in v)
                rows.append(f"| {k} | {wall:.2f} | {frames / wall:.1f} | {plain_wall / wall:.2f}x | {cpu:.2f} | "
                            f"{(cpu / plain_cpu - 1) * 100:+.1f}% |")
            table = "\n".join([
                f"{name}, {size}, {frames} frames:",
                "",
                "| run | wall s | fps | throughput vs plain | CPU s | CPU vs plain |",
                "|---|---:|---:|---:|---:|---:|",
                *rows,
            ])
            print(table + "\n", flush=True)
            sections.append(table)
    load = os.getloadavg()[0]
    if a.write:
        cmd = "python benchmarks/bench_salroi.py " + " ".join(sys.argv[1:])
        text = (f"\n\n### FFmpeg salroi model mode, one-step encode ({time.strftime('%Y-%m-%d')})\n\n"
                f"Command: `{cmd}`  \n"
                f"Machine: {platform.machine()}, {os.cpu_count()} cores, ffmpeg 7.1 + salroi "
                f"(`plugin/build.sh`), ONNX Runtime {ort_library().name.split('.so.')[-1]} (wheel, CPU "
                f"provider), libx264 preset medium crf 23, audio (where there is any) copied; median of "
                f"{a.rounds} interleaved rounds; load average at the end: {load:.1f}.\n\n"
                + "\n\n".join(sections) + "\n")
        with open(REPO / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
