"""Encode throughput: plain PyAV encode vs `vmaf-roi encode --plain` vs ROI encodes.

All on one generated 720p clip, libx264 preset medium crf 23, same encoder settings; fps and
the ratio to the plain PyAV encode measured in this one run (the plain reference is timed at
the start and the end to show the noise). For every ROI row, the maps it applied (held between
inferences) are compared with stride-1 u2netp maps of the same frames: mean per-frame Pearson
correlation. Appends a table to benchmarks/RESULTS.md with --write.

With ``--input``, real clips instead: for each input, plain and ROI encodes run interleaved,
``--rounds`` times each; reported are the best wall time of the rounds and the median CPU time
(user+sys of this process) per row. ROI rows:

- ``roi replay``: the default config with a map source that costs nothing: it replays, in order,
  the maps the real model gave in an earlier recording run (same frames, same schedule), so
  everything but the model's preprocess/inference/postprocess runs: thumbnails, model-input
  resize, map blending, planning, side data. This is the "overhead without inference".
- ``roi default``: the default config with the real model. With an encoder only the patched
  ffmpeg does ROI with (libsvtav1), as ``vmaf-roi encode`` runs it: one decode, the model run by
  ffmpeg's salroi filter; then also ``roi two passes``: the maps made in this process first, then
  ffmpeg (the path before; ``roi replay`` takes it too, its maps being held already).

``--profile`` adds one instrumented run of each ROI row and prints CPU per stage: decode (CPU of a
decode-only pass of the same input: FFmpeg decodes in its own threads), scene-cut thumbnails,
model input, inference (process CPU of the same model calls run alone afterwards: ONNX Runtime
works in its own threads too), map blending, planning, side-data attach, and the rest (encode and
mux: the encoder's threads) = total − the stages. The other Python-side stages are timed with
``time.thread_time`` on the thread that runs them, exclusive of nested stages.

Usage: python benchmarks/bench_encode.py [--frames 120] [--write] [--configs 'u2netp,8,16;...']
       python benchmarks/bench_encode.py --input clip.mp4 [--input ...] [--rounds 3]
           [--encoder libx264] [--preset medium] [--set key=value ...] [--profile] [--write]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import resource
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import av
import numpy as np

from vmaf_roi import config, pipeline, sidedata
from vmaf_roi.decode import VideoSource
from vmaf_roi.encode import SaliencyTrack, encode
from vmaf_roi.encode.plan import RoiPlan
from vmaf_roi.encoders import needs_patch
from vmaf_roi.registry import fetch, get_spec
from vmaf_roi.saliency import SaliencyModel
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


def cpu_now() -> float:
    """CPU seconds of this process and its finished children (the patched ffmpeg of libsvtav1)."""
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


class Recorder:
    """Wraps a real model and keeps every map it predicts, in order."""

    def __init__(self, model: SaliencyModel) -> None:
        self.model, self.maps, self.inputs = model, [], []
        self.spec, self.provider, self.placeholder = model.spec, model.provider, model.placeholder

    def model_input(self, frame):
        return self.model.model_input(frame)

    def predict(self, rgb):
        out = self.model.predict(rgb)
        self.maps.extend(out)
        self.inputs.append(rgb)
        return out


class ReplaySource:
    """A map source that costs (almost) nothing: the recorded maps, handed back in order.

    ``model_input`` still makes the real model input (a resize), so only the model's own work
    (preprocess, inference, postprocess) is left out; with ``resize=False`` the resize is left
    out too (a map source that needs no input at all).
    """

    placeholder = False
    provider = "replay"

    def __init__(self, model: SaliencyModel, maps: list[np.ndarray], resize: bool = True) -> None:
        self.model, self.maps, self.i = model, maps, 0
        self.spec = types.SimpleNamespace(id=model.spec.id + " (replayed)")
        self.resize = resize
        self._blank = np.zeros((*model.input_size, 3), np.uint8)

    def model_input(self, frame):
        return self.model.model_input(frame) if self.resize else self._blank

    def predict(self, rgb):
        m = self.maps[self.i % len(self.maps)]
        self.i += 1
        return m[None]


class StageTimer:
    """Exclusive thread-CPU time per stage, nesting-aware, per thread."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.local = threading.local()
        self.lock = threading.Lock()

    def _charge(self, name: str, dt: float) -> None:
        with self.lock:
            self.totals[name] = self.totals.get(name, 0.0) + dt

    def enter(self, name: str) -> None:
        st = getattr(self.local, "stack", None)
        if st is None:
            st = self.local.stack = []
        now = time.thread_time()
        if st:
            self._charge(st[-1][0], now - st[-1][1])
        st.append([name, now])

    def leave(self) -> None:
        st = self.local.stack
        now = time.thread_time()
        name, t = st.pop()
        self._charge(name, now - t)
        if st:
            st[-1][1] = now

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def inner(*a, **kw):
            self.enter(name)
            try:
                return fn(*a, **kw)
            finally:
                self.leave()
        return inner

    def wrap_gen(self, name: str, fn):
        timer = self

        @functools.wraps(fn)
        def inner(*a, **kw):
            it = fn(*a, **kw)
            while True:
                timer.enter(name)
                try:
                    x = next(it)
                except StopIteration:
                    return
                finally:
                    timer.leave()
                yield x
        return inner


def instrumented(timer: StageTimer, source):
    """Patch the pipeline's stage functions to charge their CPU to ``timer``; returns an undo."""
    patches = [
        (VideoSource, "frames", timer.wrap_gen("decode (Python side)", VideoSource.frames)),
        (pipeline.MapPolicy, "decide", timer.wrap("scene-cut thumbnails", pipeline.MapPolicy.decide)),
        (pipeline, "with_maps", timer.wrap_gen("map blending", pipeline.with_maps)),
        (sidedata.RoiAttacher, "attach", timer.wrap("side-data attach", sidedata.RoiAttacher.attach)),
        (source, "model_input", timer.wrap("model input", source.model_input)),
        (source, "predict", timer.wrap("inference", source.predict)),
    ]
    patches.append((RoiPlan, "entries", timer.wrap("planning", RoiPlan.entries)))
    old = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patches]
    for obj, attr, new in patches:
        setattr(obj, attr, new)

    def undo():
        for obj, attr, val in old:
            setattr(obj, attr, val)
    return undo


def decode_cpu(path: Path) -> tuple[float, int]:
    c0 = cpu_now()
    n = 0
    with VideoSource(path) as src:
        for _ in src.frames():
            n += 1
    return cpu_now() - c0, n


def run(path: Path, out: Path, cfg, *, plain=False, model=None) -> tuple[float, float, object]:
    c0, t0 = cpu_now(), time.perf_counter()
    # an encoder only the patched ffmpeg does ROI with: plain runs there too (the same build)
    r = encode(path, out, cfg, plain=plain, model=model, backend="ffmpeg" if needs_patch(cfg["encoder"]) else "auto")
    return time.perf_counter() - t0, cpu_now() - c0, r


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--configs", default="u2netp,4,0;u2netp,4,16;u2netp,8,16;u2netp_int8,8,16;"
                    "u2netp_int8_192,4,16;u2netp_int8_192,6,16;u2netp_int8_192,8,16",
                    help="ROI rows: model,stride,lookahead[,key=value...] separated by ';'")
    ap.add_argument("--write", action="store_true")
    # real clips
    ap.add_argument("--input", action="append", type=Path,
                    help="real clip(s): plain, zero-cost-map ROI and default ROI encodes, interleaved")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--encoder", default="libx264")
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--set", action="append", default=[], help="extra config overrides for every row (--input)")
    ap.add_argument("--no-default", action="store_true", help="skip the real-model ROI row (--input)")
    ap.add_argument("--profile", action="store_true", help="per-stage CPU breakdown of the ROI rows (--input)")
    a = ap.parse_args()
    return real_clips(a) if a.input else generated(a)


def generated(a) -> int:
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


def real_clips(a) -> int:
    base = [f"encoder={a.encoder}", f"preset={a.preset}", *a.set]
    cfg = config.load(None, base)
    sc = cfg["saliency"]
    lines: list[str] = []
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for path in a.input:
            with VideoSource(path) as s:
                w, h = s.stream.codec_context.width, s.stream.codec_context.height
            real = SaliencyModel(sc["model"], device=sc["device"], spin=False)  # as encode() makes it
            rec = Recorder(real)
            encode(path, tmp / "rec.mp4", cfg, model=rec)  # records the maps; also warms caches
            patch = needs_patch(a.encoder)
            rows = {"plain": [], "roi replay": []} | ({} if a.no_default else {"roi default": []})
            if patch and not a.no_default:  # the default runs the model in ffmpeg's salroi: one decode
                rows["roi two passes"] = []  # the maps made here first, then ffmpeg (the path before)
            frames = 0
            for _ in range(a.rounds):
                for name in rows:
                    if name == "plain":
                        res = run(path, tmp / "o.mp4", cfg, plain=True)
                    elif name == "roi replay":
                        res = run(path, tmp / "o.mp4", cfg, model=ReplaySource(real, rec.maps))
                    elif name == "roi default" and patch:
                        res = run(path, tmp / "o.mp4", cfg)  # as `vmaf-roi encode` runs it: one pass
                    else:
                        res = run(path, tmp / "o.mp4", cfg, model=real)
                    rows[name].append(res)
                    frames = res[2].frames
            best = {k: min(v, key=lambda x: x[0]) for k, v in rows.items()}
            cpu_med = {k: float(np.median([x[1] for x in v])) for k, v in rows.items()}
            pw, pc = best["plain"][0], cpu_med["plain"]
            lines += [
                f"{path.name} ({w}x{h}, {frames} frames), {a.encoder} preset {a.preset}"
                + (f", {' '.join(a.set)}" if a.set else "") + ":",
                "",
                "| run | best wall s | fps | × plain fps | CPU s (median) | CPU vs plain | inferences | regions/frame |",
                "|---|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for k in rows:
                wall, _, r = best[k]
                lines.append(f"| {k} | {wall:.2f} | {frames / wall:.1f} | {pw / wall:.3f} | {cpu_med[k]:.2f} | "
                             f"{(cpu_med[k] - pc) / pc * 100:+.1f}% | {r.inferences} | {r.mean_regions:.1f} |")
            lines.append("")
            if a.profile:
                dec, _ = decode_cpu(path)
                profs = [("roi replay", lambda: ReplaySource(real, rec.maps))]
                if not a.no_default:
                    profs.append(("roi default", lambda: real))
                plain_wall, plain_cpu, _ = run(path, tmp / "o.mp4", cfg, plain=True)
                cols = []
                for name, mk in profs:
                    src = mk()
                    timer = StageTimer()
                    undo = instrumented(timer, src)
                    try:
                        _, total, _ = run(path, tmp / "o.mp4", cfg, model=src)
                    finally:
                        undo()
                    totals = dict(timer.totals)
                    if src is real:
                        # ONNX Runtime's intra-op workers are not the calling thread: take the CPU
                        # of the same predict calls run alone (process CPU), not the thread's
                        c0 = cpu_now()
                        for rgb in rec.inputs:
                            real.predict(rgb)
                        totals["inference"] = cpu_now() - c0
                    cols.append((name, total, totals))
                stages = ["scene-cut thumbnails", "model input", "inference", "map blending", "planning",
                          "side-data attach"]
                lines += [
                    f"Per-stage CPU, ms/frame ({frames} frames; plain encode total {plain_cpu * 1e3 / frames:.2f}):",
                    "",
                    "| stage | " + " | ".join(n for n, _, _ in cols) + " |",
                    "|---|" + "---:|" * len(cols),
                    "| decode (decode-only pass) | " + " | ".join(f"{dec * 1e3 / frames:.2f}" for _ in cols) + " |",
                ]
                for s in stages:
                    lines.append(f"| {s} | " + " | ".join(f"{t.get(s, 0.0) * 1e3 / frames:.3f}" for _, _, t in cols) + " |")
                rest = [tot - dec - sum(t.get(s, 0.0) for s in stages) for _, tot, t in cols]
                lines.append("| encode, mux and the rest | " + " | ".join(f"{r * 1e3 / frames:.2f}" for r in rest) + " |")
                lines.append("| total | " + " | ".join(f"{tot * 1e3 / frames:.2f}" for _, tot, _ in cols) + " |")
                lines.append("| plain encode's own encode, mux and the rest | "
                             + " | ".join(f"{(plain_cpu - dec) * 1e3 / frames:.2f}" for _ in cols) + " |")
                lines.append("")
    load1 = os.getloadavg()
    machine = (f"{platform.machine()}, {os.cpu_count()} cores shared with other users (load average "
               f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end), Python {platform.python_version()}, "
               f"PyAV {av.__version__}, no GPU")
    head = [
        f"Command: `python benchmarks/bench_encode.py {' '.join(sys.argv[1:])}`  ",
        f"Machine: {machine}.",
        "",
    ]
    text = "\n".join(head + lines)
    print(text)
    if a.write:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write(text + "\n")
    return 0



if __name__ == "__main__":
    sys.exit(main())
