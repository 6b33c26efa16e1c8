"""The model input made from decoded frames: swscale's BGR24 output (what ``model_input`` uses)
against its RGB24 output (what it used before), on the held-out real clips.

    python benchmarks/bench_model_input.py [--frames 120] [--every 4] [--write]

Both are swscale bilinear at the model's input size from the frame as decoded (yuv420p), one
swscale thread. On x86, swscale has a SIMD vertical filter and YUV->RGB conversion for BGR24
output and only a C loop for RGB24; the SIMD one rounds differently. Per clip and model:

- CPU per input (``time.thread_time``, every frame of the clip, best of 3 passes), both paths;
- pixel difference between the two inputs: mean and largest absolute difference in levels,
  and the mean signed difference (BGR24 - RGB24);
- the per-frame Pearson correlation of the model's map from one input with its map from the
  other (every ``--every``-th frame; worst frame in brackets): how much the change moves maps.

``--write`` appends the table with the command and the machine to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realclips  # noqa: E402

from vmaf_roi.registry import DEFAULT_MODEL, REFERENCE_MODEL  # noqa: E402
from vmaf_roi.saliency import SaliencyModel, swscale_rgb  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def rgb24(frame: av.VideoFrame, w: int, h: int, ref: VideoReformatter) -> np.ndarray:
    """The earlier model input: swscale's RGB24 output."""
    return ref.reformat(frame, w, h, "rgb24", interpolation="BILINEAR", threads=1).to_ndarray()


def cpu_per_input(fn, frames: list[av.VideoFrame], w: int, h: int, passes: int = 3) -> float:
    ref, best = VideoReformatter(), float("inf")
    fn(frames[0], w, h, ref)
    for _ in range(passes):
        t = time.thread_time()
        for f in frames:
            fn(f, w, h, ref)
        best = min(best, (time.thread_time() - t) / len(frames))
    return best * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--models", default=f"{DEFAULT_MODEL},{REFERENCE_MODEL}")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench-real")
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--input", action="append", type=Path, default=[],
                    help="another real clip (its first --frames frames), besides the eval clips")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args(argv)
    models = [SaliencyModel(m, device="cpu", cache_dir=a.model_dir, threads=1) for m in a.models.split(",")]
    rows = []
    clips = realclips.eval_clips(a.work, a.frames) + [(p.stem, p) for p in a.input]
    for name, clip in clips:
        with av.open(str(clip)) as c:
            frames = [f for _, f in zip(range(a.frames), c.decode(video=0))]
        for model in models:
            h, w = model.input_size
            t_old = cpu_per_input(rgb24, frames, w, h)
            t_new = cpu_per_input(swscale_rgb, frames, w, h)
            ref = VideoReformatter()
            diffs, cs = [], []
            for i in range(0, len(frames), a.every):
                old, new = rgb24(frames[i], w, h, ref), np.ascontiguousarray(swscale_rgb(frames[i], w, h, ref))
                diffs.append(new.astype(np.int16) - old.astype(np.int16))
                m_old, m_new = model.predict(old[None])[0], model.predict(new[None])[0]
                c = realclips.corr(m_old, m_new)
                if np.isfinite(c):
                    cs.append(c)
            d = np.stack(diffs)
            row = (f"| {name} {frames[0].width}x{frames[0].height} | {model.spec.id} {w}x{h} | {t_old:.3f} | "
                   f"{t_new:.3f} | {t_new / t_old:.2f} | {np.abs(d).mean():.2f} / {np.abs(d).max()} / "
                   f"{d.mean():+.2f} | {np.mean(cs):.4f} ({min(cs):.3f}) |")
            print(row, file=sys.stderr)
            rows.append(row)
    head = ["| clip | model input | RGB24 ms/input | BGR24 ms/input | ratio | pixel diff: mean / max / signed "
            "| map correlation (worst frame) |", "|---|---|---:|---:|---:|---:|---:|"]
    table = "\n".join(head + rows)
    print(table)
    if a.write:
        realclips.append_results(
            "bench_model_input.py", argv, "The model input: swscale BGR24 against RGB24",
            f"\n\nMachine: {platform.machine()}, Python {platform.python_version()}, PyAV {av.__version__}, "
            f"onnxruntime CPU (one thread), no GPU. Frames as decoded (yuv420p); the script's docstring "
            f"says what each column is.\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
