"""Saliency models on real content: agreement with u2netp fp32 and CPU cost per inference.

    python benchmarks/bench_models.py [--frames 120] [--every 2] [--models u2netp_int8,salstudent_v1] [--write]

Clips: the corpus's held-out *eval* split (corpus/corpus.yaml; `python scripts/fetch_corpus.py`),
each cut to its first ``--frames`` frames (benchmarks/realclips.py). Reference: u2netp fp32 at
320x320 on every frame. For each registered model (placeholders excluded) and clip:

- agreement: Pearson correlation, per frame, between the model's map and the reference map,
  both at frame size, on every ``--every``-th frame; mean and worst frame per clip;
- CPU ms per inference: ``time.thread_time`` around ``SaliencyModel.predict`` (preprocess +
  ONNX Runtime + postprocess, at the model's input size) with ONE intra-op thread, on which ORT
  computes on the calling thread: CPU time barely moves with other processes' load, unlike wall
  time. u2netp is timed the same way on a few frames per clip, for the ratio.

Prints a Markdown table; ``--write`` appends it with the command and the machine to
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realclips  # noqa: E402

from vmaf_roi.registry import load_registry  # noqa: E402
from vmaf_roi.saliency import SaliencyModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def cpu_ms(model: SaliencyModel, rgbs: list[np.ndarray]) -> float:
    xs = [model.model_input(f) for f in rgbs]
    model.predict(xs[0])  # warm-up
    t = time.thread_time()
    for x in xs:
        model.predict(x)
    return (time.thread_time() - t) / len(xs) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120, help="frames per eval clip (from its start)")
    ap.add_argument("--every", type=int, default=2, help="agreement on every Nth frame")
    ap.add_argument("--models", default=None, help="comma-separated registry ids (default: all real models)")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench-real")
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    a = ap.parse_args(argv)

    reg = load_registry()
    ids = a.models.split(",") if a.models else [m for m, s in reg.items() if not s.placeholder and m != "u2netp"]
    clips = realclips.eval_clips(a.work, a.frames)
    ref_model = SaliencyModel("u2netp", device="cpu", cache_dir=a.model_dir, threads=1)
    models = {m: SaliencyModel(m, device="cpu", cache_dir=a.model_dir, threads=1) for m in ids}
    rows: dict[str, dict[str, dict[str, float]]] = {m: {} for m in ids}
    ref_cpu: list[float] = []
    for name, clip in clips:
        ref, _ = realclips.reference(clip, a.work, a.model_dir)
        rgbs = realclips.frames_rgb(clip)
        idx = list(range(0, len(rgbs), a.every))
        ref_cpu.append(cpu_ms(ref_model, [rgbs[i] for i in idx[:4]]))
        for m, model in models.items():
            cs = [realclips.corr(model.maps([rgbs[i]])[0], ref[i]) for i in idx]
            cs = [c for c in cs if np.isfinite(c)]
            rows[m][name] = {"corr": statistics.fmean(cs), "min": min(cs),
                             "cpu": cpu_ms(model, [rgbs[i] for i in idx[:16]])}
            print(f"{m:>18} {name:<10} corr {rows[m][name]['corr']:.3f} (worst {rows[m][name]['min']:.3f}) "
                  f"{rows[m][name]['cpu']:.1f} CPU-ms", file=sys.stderr, flush=True)
    rcpu = statistics.median(ref_cpu)
    names = [n for n, _ in clips]
    head = ("| model | " + " | ".join(f"{n} corr (worst frame)" for n in names)
            + " | mean corr | worst clip | CPU ms/inference (1 thread) | vs u2netp |")
    lines = [head, "|---|" + "---:|" * (len(names) + 4)]
    lines.append("| u2netp (reference) | " + " | ".join("1 (1)" for _ in names) + f" | 1 | 1 | {rcpu:.1f} | 1x |")
    for m in ids:
        r = rows[m]
        means = [r[n]["corr"] for n in names]
        cpu = statistics.median(r[n]["cpu"] for n in names)
        lines.append(f"| {m} | " + " | ".join(f"{r[n]['corr']:.3f} ({r[n]['min']:.2f})" for n in names)
                     + f" | {statistics.fmean(means):.3f} | {min(means):.3f} | {cpu:.1f} | 1/{rcpu / cpu:.0f} |")
    table = "\n".join(lines)
    print(table)
    if a.write:
        import av
        import onnxruntime as ort

        machine = (f"{platform.machine()}, {os.cpu_count()} cores (shared, load average "
                   f"{os.getloadavg()[0]:.1f}), Python {platform.python_version()}, onnxruntime "
                   f"{ort.__version__} CPU provider, 1 intra-op thread, PyAV {av.__version__}, no GPU")
        realclips.append_results(
            "bench_models.py", argv, "Saliency models on real content",
            f"  \nMachine: {machine}.\n\n"
            f"Held-out real clips (corpus eval split, first {a.frames} frames each): "
            f"{', '.join(names)}. Agreement: per-frame Pearson correlation with u2netp fp32 at "
            f"320x320, maps at frame size, every {a.every}nd frame. CPU: `time.thread_time` of "
            f"`SaliencyModel.predict` (preprocess + inference + postprocess) with 1 thread.\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
