"""Cheaper saliency on CPU: speed and agreement with u2netp for each candidate model/size.

Candidates are registry entries (``u2netp_int8*``) plus unregistered variants built in memory:
u2netp fp32 with symbolic H/W (made exactly as scripts/quantize_u2netp.py does before
quantising) and the int8 file at other sizes. All run through SaliencyModel on the CPU provider.

- ms/frame: SaliencyModel.predict on one model-size frame (preprocess + inference +
  postprocess), timed in interleaved rounds (median of rounds), so all candidates share the
  machine's load; plus, for scale, libx264 preset medium at 720p (ms/frame) in the same run.
- agreement with the reference (u2netp fp32 at 320x320, every frame): maps at frame size from
  SaliencyModel.maps, Pearson correlation (mean and worst frame), mean absolute error, and the
  mean saliency inside / outside the known object mask, over generated clips (several seeds,
  with and without pan, 640x360 and 1280x720 content).

Usage: python benchmarks/bench_models.py [--threads 2] [--rounds 7] [--frames 6] [--write]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import onnx
import onnxruntime as ort

from vmaf_roi.registry import fetch, get_spec, load_registry, load_verified, sha256_bytes
from vmaf_roi.saliency import SaliencyModel
from vmaf_roi.synth import SyntheticScene

ROOT = Path(__file__).resolve().parents[1]
# (seed, pan, width, height): not the calibration seeds of scripts/quantize_u2netp.py
CLIPS = [(s, p, w, h) for s in (11, 12) for p in (False, True) for (w, h) in ((640, 360), (1280, 720))]
CLIP_FRAMES = 24


def _quantize_module():
    spec = importlib.util.spec_from_file_location("quantize_u2netp", ROOT / "scripts" / "quantize_u2netp.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def candidates(cache: Path | None, tmp: Path) -> list[tuple[str, object, Path | None]]:
    """[(label, ModelSpec, cache_dir)], the reference first."""
    base = get_spec("u2netp")
    fetch(base, cache)
    out: list[tuple[str, object, Path | None]] = [("u2netp fp32 320 (reference)", base, cache)]
    # fp32 with symbolic H/W, unregistered: the same weights at smaller sizes
    q = _quantize_module()
    m = q.symbolic_hw(onnx.load_from_string(load_verified(base, cache)))
    data = m.SerializeToString()
    (tmp / "u2netp_dyn.onnx").write_bytes(data)
    dyn = dataclasses.replace(base, id="u2netp_dyn", file="u2netp_dyn.onnx", sha256=sha256_bytes(data), source={})
    for s in (256, 224, 192):
        out.append((f"u2netp fp32 {s} (unregistered)", _sized(dyn, s), tmp))
    reg = load_registry()
    int8 = reg["u2netp_int8"]
    registered = {tuple(sp.preprocess.size): mid for mid, sp in reg.items() if sp.file == int8.file}
    for s in (320, 256, 224, 192, 160):
        mid = registered.get((s, s))
        label = f"{mid} int8 {s}" if mid else f"int8 {s} (unregistered)"
        out.append((label, reg[mid] if mid else _sized(int8, s), None))
    return out


def _sized(spec, s: int):
    return dataclasses.replace(spec, preprocess=dataclasses.replace(spec.preprocess, size=(s, s)))


def scenes():
    for seed, pan, w, h in CLIPS:
        yield f"seed{seed}{'-pan' if pan else ''}-{h}p", SyntheticScene(w, h, CLIP_FRAMES, seed=seed, pan=pan)


def frames_and_masks(n: int):
    out = []
    idx = np.linspace(0, CLIP_FRAMES - 1, n).round().astype(int)
    for _, sc in scenes():
        for i in idx:
            out.append(sc.frame(int(i)))
    return out


def agreement(maps: list[np.ndarray], ref: list[np.ndarray], masks: list[np.ndarray]) -> dict[str, float]:
    cs = [float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) for a, b in zip(maps, ref)]
    return {
        "corr": float(np.mean(cs)),
        "corr_min": float(np.min(cs)),
        "mae": float(np.mean([np.abs(a - b).mean() for a, b in zip(maps, ref)])),
        "in": float(np.mean([a[m].mean() for a, m in zip(maps, masks)])),
        "out": float(np.mean([a[~m].mean() for a, m in zip(maps, masks)])),
    }


def x264_medium_ms(frames: int = 24) -> float:
    sc = SyntheticScene(1280, 720, frames, seed=11)
    vfs = [av.VideoFrame.from_ndarray(sc.frame(i)[0], format="rgb24").reformat(format="yuv420p") for i in range(frames)]
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        with av.open(os.path.join(d, "x.mp4"), "w") as out:
            st = out.add_stream("libx264", rate=24)
            st.width, st.height, st.pix_fmt = 1280, 720, "yuv420p"
            st.time_base = Fraction(1, 24)
            st.options = {"preset": "medium", "crf": "23"}
            for i, vf in enumerate(vfs):
                vf.pts = i
                for p in st.encode(vf):
                    out.mux(p)
            for p in st.encode(None):
                out.mux(p)
        return (time.perf_counter() - t) / frames * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    ap.add_argument("--reps", type=int, default=3, help="predict() calls per candidate per round")
    ap.add_argument("--frames", type=int, default=6, help="frames per clip for agreement")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--write", action="store_true", help="append a section to benchmarks/RESULTS.md")
    a = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmpd:
        tmp = Path(tmpd)
        cands = candidates(a.cache, tmp)
        models = [(lab, SaliencyModel(spec, device="cpu", cache_dir=cd, threads=a.threads)) for lab, spec, cd in cands]
        # 1 intra-op thread: ORT computes on the calling thread, so its CPU time (thread_time) is the
        # model's cost, robust to other processes' load (wall time on a shared machine is not)
        single = {lab: SaliencyModel(spec, device="cpu", cache_dir=cd, threads=1) for lab, spec, cd in cands}
        fm = frames_and_masks(a.frames)
        frames, masks = [f for f, _ in fm], [m for _, m in fm]
        results = {}
        ref = None
        for lab, m in models:
            maps = m.maps(frames)
            ref = ref if ref is not None else maps
            results[lab] = agreement(maps, ref, masks)
            print(f"agreement done: {lab}", file=sys.stderr, flush=True)
        # timing, interleaved
        inputs = {lab: m.model_input(frames[len(frames) // 2]) for lab, m in models}
        times: dict[str, list[float]] = {lab: [] for lab, _ in models}
        cpu: dict[str, list[float]] = {lab: [] for lab, _ in models}
        for lab, m in models:
            m.predict(inputs[lab])  # warm-up
            single[lab].predict(inputs[lab])
        x264: list[float] = []
        for r in range(a.rounds):
            order = models if r % 2 == 0 else models[::-1]
            for lab, m in order:
                t = time.perf_counter()
                for _ in range(a.reps):
                    m.predict(inputs[lab])
                times[lab].append((time.perf_counter() - t) / a.reps * 1000)
                t = time.thread_time()
                for _ in range(a.reps):
                    single[lab].predict(inputs[lab])
                cpu[lab].append((time.thread_time() - t) / a.reps * 1000)
            if r in (0, a.rounds // 2, a.rounds - 1):
                x264.append(x264_medium_ms())

    ref_ms = statistics.median(times[models[0][0]])
    ref_cpu = statistics.median(cpu[models[0][0]])
    x264_ms = statistics.median(x264)
    rows = []
    for lab, _ in models:
        ms = statistics.median(times[lab])
        r = results[lab]
        c = statistics.median(cpu[lab])
        rows.append(f"| {lab} | {ms:.1f} | {ref_ms / ms:.2f}x | {c:.1f} | {ref_cpu / c:.2f}x | {r['corr']:.3f} | {r['corr_min']:.3f} | {r['mae']:.4f} | {r['in']:.3f} | {r['out']:.3f} |")
    head = [f"| candidate | wall ms/frame ({a.threads} threads) | speed-up | CPU ms/frame (1 thread) | speed-up | corr mean | corr min | MAE | mean in mask | mean outside |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    table = "\n".join(head + rows)
    print(table)
    print(f"libx264 preset medium crf 23, 1280x720, {os.cpu_count()} cores: {x264_ms:.1f} ms/frame (median of {len(x264)})")
    if a.write:
        cmd = "python benchmarks/bench_models.py " + " ".join(argv if argv is not None else sys.argv[1:])
        machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                   f"onnxruntime {ort.__version__} CPU provider with {a.threads} threads, onnx {onnx.__version__}, "
                   f"PyAV {av.__version__}, no GPU")
        text = (
            f"\n### Cheaper saliency models on CPU ({date.today().isoformat()})\n\n"
            f"Command: `{cmd.strip()}`  \nMachine: {machine}.\n\n"
            f"Agreement with u2netp fp32 at 320x320 on {len(frames)} frames of {len(CLIPS)} generated clips "
            f"(seeds 11-12, with/without pan, 640x360 and 1280x720), maps at frame size. ms/frame: "
            f"`SaliencyModel.predict` on one frame at the model's size (preprocess + inference + postprocess), median of {a.rounds} interleaved rounds: wall time with {a.threads} intra-op threads, and CPU time (`time.thread_time`) with 1 thread, which other processes' load barely affects. Load average at the end: {os.getloadavg()[0]:.1f}.\n\n"
            f"{table}\n\nFor scale, same run: libx264 preset medium crf 23 at 1280x720: {x264_ms:.1f} ms/frame.\n"
        )
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
