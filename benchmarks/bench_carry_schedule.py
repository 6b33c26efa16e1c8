"""The encode's own map schedule with ``saliency.carry``: does the wired path give the carrying
numbers of ``bench_carry.py`` (which runs ``vmaf_roi.carry`` offline)?

    python benchmarks/bench_carry_schedule.py [--frames 120] [--strides 4,8] [--clips a,b] [--model u2netp] [--out build/carry]

For each corpus video (default: the eval split), the map pass of ``vmaf-roi encode``
(``decode.VideoSource`` -> ``pipeline.MapSchedule``, sequential, the model with 1 ONNX Runtime
thread) runs on the file a user would give (the one ``bench_carry.mv_source`` picks: the corpus
file when its decoder exports vectors, else a libx264 encode of the cut), first ``--frames``
frames, with

* ``blend``  - ``saliency.carry: none`` (the default: linear blend between model maps);
* ``mv``     - ``saliency.carry: motion`` with ``interpolate: false`` (carried forward);
* ``mv-bi``  - ``saliency.carry: motion`` (carried forward and back, blended);

and scores the applied maps as ``bench_carry.py`` does: per-frame Pearson correlation (model
map resized to frame size) with the reference (u2netp fp32 at 320x320 on every frame of the cut,
``realclips.reference``), mean over the frames. CPU: ``time.thread_time`` of the whole map pass
per frame (decode, model inputs, inferences, vectors, fields and warps: all in one thread; the
decoder without frame threads in every row, as ``carry: motion`` decodes).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_carry  # noqa: E402
import realclips  # noqa: E402

from vmaf_roi import carry, config  # noqa: E402
from vmaf_roi.decode import VideoSource  # noqa: E402
from vmaf_roi.pipeline import Item, MapSchedule, MapState  # noqa: E402
from vmaf_roi.saliency import SaliencyModel, resize_map  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROWS = (("blend", ["saliency.carry=none"]),
        ("mv", ["saliency.carry=motion", "saliency.interpolate=false"]),
        ("mv-bi", ["saliency.carry=motion"]))


def map_pass(path: Path, n: int, model: SaliencyModel, sets: list[str]):
    """(applied maps of the first n frames, inferences, CPU ms/frame, source notes,
    [(model ran, scene cut, model output)] per frame)."""
    cfg = config.load_typed(None, [f"saliency.model={model.spec.id}", "saliency.lookahead=0", *sets])
    t0 = time.thread_time()
    # no frame threads in either row (carry motion turns them off): the decode's CPU is then
    # this thread's in both, and the CPU columns compare
    with VideoSource(path, threads=False, motion=cfg.saliency.carry == "motion") as src:
        sch = MapSchedule(cfg.saliency, model, None, copy_packets=False)

        def frames(on_packet=None):
            return itertools.islice(src.frames(on_packet), n)

        maps, dec = [], []
        try:
            for x, m in sch.run(frames, src.motion if src.has_motion else None):
                if isinstance(x, Item):
                    maps.append(m)
                    dec.append((x.prediction is not None, x.cut, x.prediction))
        finally:
            sch.close()
        # (the pass stops after n frames: the "fewer frames than the header says" note is ours)
        notes = [x for x in src.notes() if "frames its header announces" not in x]
    cpu = time.thread_time() - t0
    maps = [np.asarray(m) for m in maps]  # Blends made, outside the timing: the encode does not make them
    return maps, sch.inferences, 1000 * cpu / max(1, len(maps)), notes, dec


def offline(path: Path, n: int, w: int, h: int, dec, smoothing: float) -> dict[str, list[np.ndarray]]:
    """bench_carry.py's mv and mv-bi from the same model outputs, with vectors decoded apart
    (``bench_carry.decode_mvs``) and fields made over the whole clip at once."""
    types, mvs, *_ = bench_carry.decode_mvs(path, n)
    fields = carry.fields(mvs[:n], types[:n], w, h)
    state, car, got = MapState(smoothing, None), carry.Carrier(), []
    for i, (key, cut, pred) in enumerate(dec):
        if key:
            got.append(car.key(i, state.from_prediction(Item(i, None, pred, cut))))
        else:
            got.append(car.carry(i, fields[i]))
    bi, _ = bench_carry.bidirectional(got, [(k, c) for k, c, _ in dec], fields)
    return {"mv": got, "mv-bi": bi}


def decode_cost(path: Path, n: int, reps: int) -> dict[str, float]:
    """Decode of the first n frames as the encode does it, ms/frame (median of ``reps``): wall
    and process CPU (all threads), with frame threads (``carry: none``) and with slice threads
    and exported vectors read (``carry: motion``)."""
    out: dict[str, list[float]] = {}
    for rep in range(reps):
        for name, motion in (("none", False), ("motion", True)):
            w0, c0 = time.perf_counter(), time.process_time()
            with VideoSource(path, motion=motion) as src:
                k = 0
                for _ in itertools.islice(src.frames(), n):
                    src.motion()
                    k += 1
            out.setdefault(f"{name} wall", []).append(1000 * (time.perf_counter() - w0) / k)
            out.setdefault(f"{name} cpu", []).append(1000 * (time.process_time() - c0) / k)
    return {key: statistics.median(v) for key, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--strides", default="4,8")
    ap.add_argument("--clips", default=None, help="comma-separated clip names (default: the eval split)")
    ap.add_argument("--model", default="u2netp")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "carry")
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--decode-only", type=int, default=0, metavar="REPS",
                    help="only time the decode with and without carry's settings, REPS times")
    a = ap.parse_args(argv)
    strides = [int(x) for x in a.strides.split(",")]
    want = set(a.clips.split(",")) if a.clips else None
    corpus = realclips.corpus()
    clips = []
    for split in ("calib", "train", "eval"):
        for name in corpus.names(split, "video"):
            stem = Path(name).stem
            if (stem in want) if want else split == "eval":
                src = corpus.path(name)
                cut = realclips.cut(src, a.out / "clips" / f"{stem}.f{a.frames}.mkv", a.frames)
                clips.append({"name": stem, "split": split, "src": src, "cut": cut})
    if a.decode_only:
        rows = ["| clip | vectors from | size | carry none: wall | CPU (all threads) | carry motion: wall | CPU (all threads) |",
                "|---|---|---|---:|---:|---:|---:|"]
        for cl in clips:
            src, how = bench_carry.mv_source(cl, a.out, a.frames)
            with av.open(str(src)) as c:
                cc = c.streams.video[0].codec_context
                size = f"{cc.width}x{cc.height}"
            d = decode_cost(src, a.frames, a.decode_only)
            rows.append(f"| {cl['name']} | {how} | {size} | {d['none wall']:.2f} | {d['none cpu']:.2f} | "
                        f"{d['motion wall']:.2f} | {d['motion cpu']:.2f} |")
        print(f"Command: `python benchmarks/bench_carry_schedule.py --frames {a.frames} --decode-only {a.decode_only}"
              f"{' --clips ' + a.clips if a.clips else ''}`; machine: {platform.machine()}, "
              f"{len(os.sched_getaffinity(0))} cores, PyAV {av.__version__}; decode ms/frame, median of {a.decode_only}\n")
        print("\n".join(rows))
        return 0
    model = SaliencyModel(a.model, device="cpu", cache_dir=a.model_dir, threads=1, spin=False)
    lines = [f"| clip | vectors from | stride | inferences | " + " | ".join(r for r, _ in ROWS) + " | "
             + " | ".join(f"{r} CPU ms/frame" for r, _ in ROWS) + " |",
             "|---|---|---:|---:|" + "---:|" * (2 * len(ROWS))]
    means: dict[tuple[int, str], list[float]] = {}
    same: list[str] = []  # wired maps against the module run offline on the same model outputs
    for cl in clips:
        t_clip = time.time()
        ref, _ = realclips.reference(cl["cut"], a.out, a.model_dir)
        n, H, W = ref.shape
        src, how = bench_carry.mv_source(cl, a.out, a.frames)
        for s in strides:
            scores, cpus, inf = [], [], None
            for name, sets in ROWS:
                maps, k, ms, notes, dec = map_pass(src, n, model, [f"saliency.stride={s}", *sets])
                if name in ("mv", "mv-bi"):
                    with av.open(str(src)) as c:
                        cc = c.streams.video[0].codec_context
                        w, h = cc.width, cc.height
                    off = offline(src, n, w, h, dec, 0.0)[name]
                    diff = max(int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(maps, off))
                    same.append(f"{cl['name']}/{s}/{name}: {'identical' if diff == 0 else f'max diff {diff}'}")
                if len(maps) != n:
                    raise SystemExit(f"{src}: the map pass gave {len(maps)} frames, the cut has {n}")
                if notes:
                    print(f"{cl['name']} {name}: " + "; ".join(notes), file=sys.stderr)
                inf = k if inf is None else inf
                assert k == inf, (cl["name"], name, k, inf)  # the same frames get the model
                c = float(np.nanmean([realclips.corr(resize_map(m.astype(np.float32) / 255.0, W, H), ref[i])
                                      for i, m in enumerate(maps)]))
                scores.append(c)
                cpus.append(ms)
                means.setdefault((s, name), []).append(c)
            lines.append(f"| {cl['name']} ({cl['split']}) | {how} | {s} | {inf} | "
                         + " | ".join(f"{v:.3f}" for v in scores) + " | " + " | ".join(f"{v:.1f}" for v in cpus) + " |")
        print(f"{cl['name']}: {time.time() - t_clip:.0f} s", file=sys.stderr, flush=True)
    for s in strides:
        lines.append(f"| mean ({len(clips)} clips) | | {s} | | "
                     + " | ".join(f"{statistics.fmean(means[(s, r)]):.3f}" for r, _ in ROWS) + " |" + " |" * len(ROWS))
    opts = f" --clips {a.clips}" if a.clips else ""
    print(f"Command: `python benchmarks/bench_carry_schedule.py --frames {a.frames} --strides {a.strides} "
          f"--model {a.model}{opts}`; machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
          f"Python {platform.python_version()}, PyAV {av.__version__}\n")
    print("\n".join(lines))
    print("\nWired maps against bench_carry.py's offline mv / mv-bi on the same model outputs: " + ", ".join(same))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
