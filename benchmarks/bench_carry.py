"""Maps carried between inferences: today's hold/blend against motion-vector warping and block flow.

    python benchmarks/bench_carry.py [--frames 120] [--strides 1,2,4,8] [--out build/carry] [--clips a,b] [--flow-size WxH]

For every corpus video of the calib + train splits (development) and of the eval split (held
out), the first ``--frames`` frames are cut losslessly (``realclips.cut``) and compared with the
reference (u2netp fp32 at 320x320 on every frame, ``realclips.reference``). The model runs on the
frames today's :class:`vmaf_roi.pipeline.MapPolicy` picks (every ``stride`` frames and on scene
cuts, the default config); every other frame gets a map by one of:

* ``hold``   - the last model map (``pipeline.with_maps`` with interpolate off);
* ``blend``  - today's default: the linear blend of the model maps before and after
  (``pipeline.with_maps`` with interpolate on, the encode's own code);
* ``mv``     - the last map moved along the decoder's motion vectors (``vmaf_roi.carry``);
* ``mv+blend`` - ``mv``, then blended towards the next model map by position as ``blend`` does;
* ``mv-bi``  - the earlier map carried forward and the later one carried back
  (``carry.carry_back``), blended by position (``carry.between``);
* ``flow``, ``flow+blend``, ``flow-bi`` - the same with block-matching flow on a downscaled Y
  plane (``carry.block_flow``, between each frame and the previous one).

Nothing is carried or blended across a scene cut, nor blended after the last model map (as
``with_maps`` does).

The score is the per-frame Pearson correlation of the map the encode would apply (at model
resolution, resized to frame size as ``eval_roi.applied_agreement`` does) with the reference,
averaged over all frames of a clip. Two map sources: the default model (salstudent_v1) and
u2netp itself (its 320x320 map), so the carrying error is seen apart from the student's.

Motion vectors are read from the clip as a user would give it: the corpus file itself when it is
H.264 or MPEG-4 (its first frames are the cut's frames), else (Cinepak) from a libx264 encode of
the cut (preset medium, CRF 18: B-frames, b-pyramid, 3 references).

CPU cost: ``time.thread_time`` per frame of each carrying method, and of one inference of each
model (1 ONNX Runtime thread); the extra decode cost of ``flags2=+export_mvs``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realclips  # noqa: E402

from vmaf_roi import carry, config  # noqa: E402
from vmaf_roi.pipeline import Item, MapPolicy, MapState, with_maps  # noqa: E402
from vmaf_roi.registry import sha256_file  # noqa: E402
from vmaf_roi.saliency import SaliencyModel, resize_map  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("salstudent_v1", "u2netp")
METHODS = ("hold", "blend", "mv", "mv+blend", "mv-bi", "flow", "flow+blend", "flow-bi")


def clip_set(work: Path, frames: int) -> list[dict]:
    c = realclips.corpus()
    out = []
    for split in ("calib", "train", "eval"):
        for name in c.names(split, "video"):
            stem = Path(name).stem
            src = c.path(name)
            cut = realclips.cut(src, work / "clips" / f"{stem}.f{frames}.mkv", frames)
            out.append({"name": stem, "split": split, "src": src, "cut": cut})
    return out


def predictions(model_id: str, cut: Path, work: Path, model_dir: Path | None) -> tuple[np.ndarray, float]:
    """(model-resolution maps [N,h,w] float32 of every frame, CPU ms per inference), cached."""
    key = sha256_file(cut)[:16]
    cache = work / f"{cut.stem}.{model_id}.pred-{key}.npz"
    if cache.exists():
        z = np.load(cache)
        return z["maps"], float(z["ms"])
    model = SaliencyModel(model_id, device="cpu", cache_dir=model_dir, threads=1)
    maps, cpu = [], []
    with av.open(str(cut)) as c:
        for f in c.decode(video=0):
            t0 = time.thread_time()
            maps.append(model.predict(model.model_input(f)[None])[0])
            cpu.append(time.thread_time() - t0)
    ms = 1000 * statistics.median(cpu)
    np.savez_compressed(cache, maps=np.stack(maps).astype(np.float32), ms=ms)
    return np.stack(maps), ms


def mv_source(cl: dict, work: Path, frames: int) -> tuple[Path, str]:
    """(file to read motion vectors from, how it was made)."""
    with av.open(str(cl["src"])) as c:
        codec = c.streams.video[0].codec_context.name
    if codec in carry.MV_DECODERS:
        return cl["src"], f"the corpus file ({codec})"
    out = work / "clips" / f"{cl['name']}.f{frames}.x264.mp4"
    if not out.exists():
        part = out.with_name(out.name + ".part.mp4")
        with av.open(str(cl["cut"])) as c, av.open(str(part), "w") as o:
            s = c.streams.video[0]
            st = o.add_stream("libx264", rate=s.average_rate or 25)
            st.width, st.height, st.pix_fmt = s.codec_context.width, s.codec_context.height, "yuv420p"
            st.options = {"preset": "medium", "crf": "18"}
            for f in c.decode(s):
                f.pict_type = 0
                for p in st.encode(f):
                    o.mux(p)
            for p in st.encode(None):
                o.mux(p)
        part.rename(out)
    return out, f"libx264 medium CRF 18 of the cut ({codec} has no vectors)"


def decode_mvs(path: Path, n: int) -> tuple[list[str], list, float, float, float]:
    """(picture types, vector arrays, decode ms/frame without and with export, to_ndarray ms/frame)."""
    def run(export: bool):
        types, mvs, cpu, conv = [], [], 0.0, 0.0
        with av.open(str(path)) as c:
            st = c.streams.video[0]
            if export:
                st.codec_context.options = dict(carry.EXPORT_MVS)
            it = c.decode(st)
            while len(types) < n:
                t0 = time.thread_time()
                try:
                    f = next(it)
                except StopIteration:
                    break
                cpu += time.thread_time() - t0
                types.append(carry.picture_type(f))
                if export:
                    t0 = time.thread_time()
                    mvs.append(carry.motion_vectors(f))
                    conv += time.thread_time() - t0
        return types, mvs, 1000 * cpu / max(1, len(types)), 1000 * conv / max(1, len(types))

    _, _, plain_ms, _ = run(False)
    types, mvs, export_ms, conv_ms = run(True)
    return types, mvs, plain_ms, export_ms, conv_ms


def flow_size(w: int, h: int) -> tuple[int, int]:
    sw = min(w, 160)
    return sw, max(8, 2 * round(h * sw / w / 2))


def evaluate(cl: dict, strides: list[int], work: Path, frames: int, model_dir: Path | None,
             flow_block: int, flow_radius: int, flow_plane: tuple[int, int] | None = None) -> dict:
    ref, _ = realclips.reference(cl["cut"], work, model_dir)
    n, H, W = ref.shape
    preds = {mid: predictions(mid, cl["cut"], work, model_dir) for mid in SOURCES}
    sal = {s: config.load(None, [f"saliency.stride={s}"])["saliency"] for s in strides}
    policies = {s: MapPolicy(sal[s]) for s in strides}
    decisions = {s: [] for s in strides}
    sw, sh = flow_plane or flow_size(W, H)
    lumas, luma_cpu = [], 0.0
    with av.open(str(cl["cut"])) as c:
        for i, f in enumerate(c.decode(video=0)):
            for s in strides:
                decisions[s].append(policies[s].decide(i, f))
            t0 = time.thread_time()
            lumas.append(carry.luma(f, sw, sh))
            luma_cpu += time.thread_time() - t0
    assert len(lumas) == n, (cl["name"], len(lumas), n)
    mvpath, mvhow = mv_source(cl, work, frames)
    types, mvs, dec_ms, dec_mv_ms, conv_ms = decode_mvs(mvpath, n)
    if len(types) < n:
        raise SystemExit(f"{mvpath}: only {len(types)} frames, the cut has {n}")
    # fields once per clip; their CPU is timed here (warp is timed where it runs)
    t0 = time.thread_time()
    mv_fields = carry.fields(mvs[:n], types[:n], W, H)
    mv_field_ms = 1000 * (time.thread_time() - t0) / n
    t0 = time.thread_time()
    flow_fields = [None] + [carry.block_flow(lumas[i - 1], lumas[i], (W, H), flow_block, flow_radius)
                            for i in range(1, n)]
    flow_ms = 1000 * (time.thread_time() - t0) / max(1, n - 1)

    def score(maps: list[np.ndarray]) -> list[float]:
        return [realclips.corr(resize_map(m.astype(np.float32) / 255.0, W, H), ref[i]) for i, m in enumerate(maps)]

    out = {"name": cl["name"], "split": cl["split"], "frames": n, "size": f"{W}x{H}", "mv_source": mvhow,
           "pict_types": "".join(t[:1] or "?" for t in types), "model_ms": {m: preds[m][1] for m in SOURCES},
           "decode_ms": dec_ms, "decode_export_ms": dec_mv_ms, "mv_to_ndarray_ms": conv_ms,
           "mv_field_ms": mv_field_ms, "flow_ms": flow_ms, "luma_ms": 1000 * luma_cpu / n,
           "flow_size": f"{sw}x{sh}", "results": {}}
    warp_cpu = {k: [0.0, 0] for k in ("mv", "flow", "mv-bi", "flow-bi")}
    for mid in SOURCES:
        pred = preds[mid][0]
        for s in strides:
            dec = decisions[s]
            maps: dict[str, list[np.ndarray]] = {}
            for interp, name in ((False, "hold"), (True, "blend")):
                state = MapState(sal[s]["smoothing"], None)
                its = (Item(i, None, pred[i] if dec[i][0] else None, dec[i][1]) for i in range(n))
                maps[name] = [np.asarray(m) for _, m in with_maps(its, state, interp)]  # Blends made
            if s > 1:
                for kind, fields in (("mv", mv_fields), ("flow", flow_fields)):
                    state = MapState(sal[s]["smoothing"], None)
                    car = carry.Carrier()
                    got = []
                    for i in range(n):
                        if dec[i][0]:
                            got.append(car.key(i, state.from_prediction(Item(i, None, pred[i], dec[i][1]))))
                        else:
                            t0 = time.thread_time()
                            got.append(car.carry(i, fields[i]))
                            warp_cpu[kind][0] += time.thread_time() - t0
                            warp_cpu[kind][1] += 1
                    maps[kind] = got
                    maps[kind + "+blend"] = blend_towards_next(got, dec)
                    t0 = time.thread_time()
                    maps[kind + "-bi"], nb = bidirectional(got, dec, fields)
                    warp_cpu[kind + "-bi"][0] += time.thread_time() - t0
                    warp_cpu[kind + "-bi"][1] += nb
            cs = {k: score(v) for k, v in maps.items()}
            key = np.array([d[0] for d in dec])
            out["results"][f"{mid}/{s}"] = {
                "inferences": int(key.sum()), "cuts": int(sum(d[1] for d in dec)),
                "mean": {k: float(np.nanmean(v)) for k, v in cs.items()},
                "carried_mean": {k: float(np.nanmean(np.array(v)[~key])) if (~key).any() else None
                                 for k, v in cs.items()},
            }
    out["warp_ms"] = {k: 1000 * v[0] / max(1, v[1]) for k, v in warp_cpu.items()}
    return out


def blend_towards_next(maps: list[np.ndarray], dec: list[tuple[bool, bool]]) -> list[np.ndarray]:
    """Frames between two model maps blended towards the later one by position, as
    ``pipeline._flush`` weights them (j / (count + 1)); not across a scene cut, not after the
    last model map."""
    out = list(maps)
    keys = [i for i, d in enumerate(dec) if d[0]]
    for a, b in zip(keys, keys[1:]):
        if dec[b][1] or b - a < 2:
            continue
        count = b - a - 1
        nxt = maps[b].astype(np.float32)
        for j in range(1, count + 1):
            w = j / (count + 1)
            out[a + j] = np.rint((1 - w) * maps[a + j].astype(np.float32) + w * nxt).astype(np.uint8)
    return out


def bidirectional(maps: list[np.ndarray], dec: list[tuple[bool, bool]], fields: list) -> tuple[list[np.ndarray], int]:
    """Frames between two model maps (not across a cut): carried forward (``maps``) and back
    from the later model map (``carry.carry_back``), blended by position (``carry.between``)."""
    out = list(maps)
    keys = [i for i, d in enumerate(dec) if d[0]]
    n = 0
    for a, b in zip(keys, keys[1:]):
        if dec[b][1] or b - a < 2:
            continue
        back = carry.carry_back(maps[b], fields[a + 1:b + 1])[1:]  # frames a+1 .. b-1
        out[a + 1:b] = carry.between(maps[a + 1:b], back)
        n += b - a - 1
    return out, n


def table(rows: list[dict], strides: list[int], mid: str) -> list[str]:
    lines = [f"| clip | stride | inferences | " + " | ".join(METHODS) + " |",
             "|---|---:|---:|" + "---:|" * len(METHODS)]
    for r in rows:
        for s in strides:
            res = r["results"][f"{mid}/{s}"]
            vals = [res["mean"].get(m, res["mean"]["blend"] if s == 1 else float("nan")) for m in METHODS]
            best = max(vals)
            cells = [f"**{v:.3f}**" if v == best and s > 1 else f"{v:.3f}" for v in vals]
            lines.append(f"| {r['name']} ({r['split']}) | {s} | {res['inferences']} | " + " | ".join(cells) + " |")
    return lines


def summary(rows: list[dict], strides: list[int], mid: str) -> list[str]:
    lines = [f"| clips | stride | " + " | ".join(METHODS) + " |", "|---|---:|" + "---:|" * len(METHODS)]
    for label, sel in (("dev (calib+train)", ("calib", "train")), ("eval", ("eval",))):
        rs = [r for r in rows if r["split"] in sel]
        if not rs:
            continue
        for s in strides:
            vals = []
            for m in METHODS:
                xs = [r["results"][f"{mid}/{s}"]["mean"].get(m, r["results"][f"{mid}/{s}"]["mean"]["blend"]) for r in rs]
                vals.append(statistics.fmean(xs))
            lines.append(f"| {label} | {s} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    return lines


def costs(rows: list[dict]) -> list[str]:
    lines = ["| clip | size | MV source | GOP (display order, first 24) | decode ms/frame | +export_mvs | "
             "MV read + field | MV warp | MV back-warp + blend | flow (luma + match) | flow warp | salstudent_v1 | u2netp |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['size']} | {r['mv_source']} | {r['pict_types'][:24]} | {r['decode_ms']:.2f} | "
            f"{r['decode_export_ms'] - r['decode_ms']:+.2f} | {r['mv_to_ndarray_ms'] + r['mv_field_ms']:.2f} | "
            f"{r['warp_ms']['mv']:.2f} | {r['warp_ms']['mv-bi']:.2f} | {r['luma_ms'] + r['flow_ms']:.2f} | {r['warp_ms']['flow']:.2f} | "
            f"{r['model_ms']['salstudent_v1']:.1f} | {r['model_ms']['u2netp']:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--strides", default="1,2,4,8")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "carry")
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--clips", default=None, help="comma-separated clip names (default: all)")
    ap.add_argument("--flow-block", type=int, default=4, help="block size on the downscaled luma (default 4)")
    ap.add_argument("--flow-radius", type=int, default=3, help="search radius on the downscaled luma (default 3)")
    ap.add_argument("--flow-size", default=None,
                    help="WxH of the luma plane flow matches on (default: 160 wide, the frame's aspect; "
                         "64x36 is the thumbnail the encode's MapPolicy already makes)")
    ap.add_argument("--prepare", action="store_true", help="only cut clips and cache model maps")
    a = ap.parse_args(argv)
    strides = [int(x) for x in a.strides.split(",")]
    clips = clip_set(a.out, a.frames)
    if a.clips:
        want = set(a.clips.split(","))
        clips = [c for c in clips if c["name"] in want]
    if a.prepare:
        for cl in clips:
            realclips.reference(cl["cut"], a.out, a.model_dir)
            for mid in SOURCES:
                predictions(mid, cl["cut"], a.out, a.model_dir)
            print(cl["name"], "ready", flush=True)
        return 0
    rows = []
    for cl in clips:
        t0 = time.time()
        plane = tuple(int(x) for x in a.flow_size.split("x")) if a.flow_size else None
        rows.append(evaluate(cl, strides, a.out, a.frames, a.model_dir, a.flow_block, a.flow_radius, plane))
        print(f"{cl['name']}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    (a.out / f"bench_carry{'-flow' + a.flow_size if a.flow_size else ''}.json").write_text(json.dumps(rows, indent=1))
    opts = "".join(f" --{k.replace('_', '-')} {v}" for k, v in (("clips", a.clips), ("flow_size", a.flow_size)) if v)
    if (a.flow_block, a.flow_radius) != (4, 3):
        opts += f" --flow-block {a.flow_block} --flow-radius {a.flow_radius}"
    lines = [f"Command: `python benchmarks/bench_carry.py --frames {a.frames} --strides {a.strides}{opts}`; machine: {platform.machine()}, "
             f"{len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}, PyAV {av.__version__}", ""]
    for mid in SOURCES:
        lines += [f"Mean per-frame correlation with the reference, maps from **{mid}**:", ""]
        lines += table(rows, strides, mid) + [""]
        lines += [f"Means over clips ({mid}):", ""] + summary(rows, strides, mid) + [""]
    lines += ["CPU ms per frame (`time.thread_time`):", ""] + costs(rows)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
