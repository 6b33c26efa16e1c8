"""Evaluate ROI against plain encodes on real clips (and, labelled, on generated ones).

    python benchmarks/eval_roi.py                                   # default config, held-out real clips
    python benchmarks/eval_roi.py --split calib --variant both:roi.mode=both --variant bal:roi.mode=balanced
    python benchmarks/eval_roi.py --generated                       # the generated clips (labelled as such)

Real clips: a corpus split (default ``eval``, the held-out clips; ``calib``/``train`` for choosing
settings without touching them), each cut to its first ``--frames`` frames
(benchmarks/realclips.py). The object mask is the reference's: u2netp fp32 at 320x320 on every
frame, thresholded at 0.5. Generated clips (``--generated``, made by ``vmaf_roi.synth``) carry
their exact object mask instead.

For each clip and each variant (a list of ``--set`` overrides on top of the job config) it runs
:func:`vmaf_roi.compare.compare` at the CRF points (plain and ROI at identical encoder settings)
and reports, per clip and averaged:

- BD-rate on PSNR-Y inside the object mask (negative: ROI saves bits for the object),
- BD-rate on full-frame VMAF and BD-VMAF (full-frame VMAF change at equal bitrate: the price),
- BD-rate on PSNR-Y outside the mask,
- agreement: per-frame correlation of the maps the ROI encode applied with the reference maps.

Variants with the same saliency settings share one saliency pass per clip. Prints a Markdown
table and writes every report to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realclips  # noqa: E402

from vmaf_roi import config
from vmaf_roi.compare import compare
from vmaf_roi.encode import SaliencyTrack
from vmaf_roi.synth import make_clip

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"360p": (640, 360), "720p": (1280, 720)}
GOAL_SAVING = -20.0  # mean % BD-rate on the object
GOAL_VMAF_BD_RATE = 0.0  # % BD-rate on full-frame VMAF, on every clip: ROI must not cost VMAF


def make_set(out: Path, sizes: list[str], frames: int, seed: int) -> list[dict]:
    """Write (or reuse) the evaluation clips; returns their descriptions."""
    out.mkdir(parents=True, exist_ok=True)
    clips = []
    for size in sizes:
        w, h = SIZES[size]
        for pan in (False, True):
            name = f"synth_{size}_{'pan' if pan else 'static'}_s{seed}_f{frames}"
            clip, mask = out / f"{name}.mp4", out / f"{name}.mask.mkv"
            if not (clip.exists() and mask.exists()):
                make_clip(clip, width=w, height=h, frames=frames, fps=24, seed=seed, pan=pan, mask_path=mask)
            clips.append({"name": name, "size": size, "pan": pan, "path": clip, "mask": mask})
    return clips


def parse_variant(text: str) -> tuple[str, list[str]]:
    if ":" in text:
        name, sets = text.split(":", 1)
    else:  # "key=v,key=v" names itself; a bare name has no overrides
        name, sets = text, (text if "=" in text else "")
    items = [s.strip() for s in sets.split(",") if s.strip()]
    return name or "default", items


def real_set(work: Path, split: str, frames: int, model_dir: Path | None) -> list[dict]:
    """Cuts of a corpus split with their reference maps and mask videos."""
    c = realclips.corpus()
    clips = []
    for name in c.names(split, "video"):
        stem = Path(name).stem
        clip = realclips.cut(c.path(name), work / "clips" / f"{stem}.f{frames}.mkv", frames)
        ref, mask = realclips.reference(clip, work, model_dir)
        clips.append({"name": stem, "size": f"{ref.shape[2]}x{ref.shape[1]}", "pan": None, "path": clip,
                      "mask": mask, "ref": ref, "real": True})
    return clips


def applied_agreement(track: SaliencyTrack, ref) -> tuple[float | None, float | None]:
    """Mean and worst per-frame correlation of the maps an ROI encode applied with the reference."""
    import numpy as np

    from vmaf_roi.saliency import resize_map

    if ref is None or not track.maps:
        return None, None
    h, w = ref.shape[1:]
    cs = []
    for i, m in sorted(track.maps.items()):
        if i < len(ref):
            c = realclips.corr(resize_map(m.astype(np.float32) / 255.0, w, h), ref[i])
            if c == c:
                cs.append(c)
    return (statistics.fmean(cs), min(cs)) if cs else (None, None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "build" / "eval-roi"),
                    help="clips, reference maps, encodes and reports (default: build/eval-roi)")
    ap.add_argument("-c", "--config", help="base job config (default: built-in defaults)")
    ap.add_argument("--set", action="append", default=[], help="override for every variant (repeatable)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=V,KEY=V",
                    help="a named set of overrides (repeatable; default: one variant 'default' with none)")
    ap.add_argument("--crf", default="22,27,32,37", help="CRF points (default: 22,27,32,37)")
    ap.add_argument("--split", default="eval", help="corpus split of real clips (default: eval, held out)")
    ap.add_argument("--clips", default=None, help="only these clips of the split (comma-separated stems)")
    ap.add_argument("--generated", action="store_true", help="generated clips instead of real ones")
    ap.add_argument("--sizes", default="360p,720p", help="generated clips: comma-separated 360p,720p")
    ap.add_argument("--frames", type=int, default=120, help="frames per clip (real: the first N)")
    ap.add_argument("--seed", type=int, default=1, help="generated clips' seed")
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--json", default=None, help="summary JSON (default: OUT/summary.json)")
    args = ap.parse_args(argv)

    out = Path(args.out)
    crfs = [int(x) if float(x).is_integer() else float(x) for x in args.crf.split(",")]
    model_dir = Path(args.model_dir) if args.model_dir else None
    if args.generated:
        clips = make_set(out / "clips", [s.strip() for s in args.sizes.split(",")], args.frames, args.seed)
        for c in clips:
            c.update(ref=None, real=False)
    else:
        clips = real_set(out, args.split, args.frames, model_dir)
        if args.clips:
            keep = set(args.clips.split(","))
            clips = [c for c in clips if c["name"] in keep]
    variants = [parse_variant(v) for v in args.variant] or [("default", [])]
    tracks: dict[tuple[str, str], SaliencyTrack] = {}
    rows = []
    t_start = time.perf_counter()
    for vname, sets in variants:
        cfg = config.load(args.config, [*args.set, *sets])
        sal_key = json.dumps(cfg["saliency"], sort_keys=True)
        for c in clips:
            track = tracks.setdefault((c["name"], sal_key), SaliencyTrack())
            t0 = time.perf_counter()
            res = compare(c["path"], cfg, crfs=crfs, out_dir=out / "work", mask=c["mask"], model_dir=model_dir,
                          track=track)
            rep = out / "reports" / f"{vname}.{c['name']}.json"
            rep.parent.mkdir(parents=True, exist_ok=True)
            res.write_json(rep)
            agree, agree_min = applied_agreement(track, c["ref"])
            row = {
                "variant": vname, "sets": sets, "clip": c["name"], "size": c["size"], "real": c["real"],
                "bd_rate_mask_in": res.bd["psnr_y_mask_in"]["bd_rate"],
                "bd_vmaf": res.bd["vmaf"]["bd_quality"],
                "bd_rate_vmaf": res.bd["vmaf"]["bd_rate"],
                "bd_rate_mask_out": res.bd["psnr_y_mask_out"]["bd_rate"],
                "bd_rate_vmaf_roi": res.bd["vmaf_roi"]["bd_rate"],
                "agreement": agree, "agreement_min": agree_min,
                "model": track.model, "inferences": track.inferences,
                "kbps_plain": [e.bitrate / 1000 for e in res.encodes if e.mode == "plain"],
                "kbps_roi": [e.bitrate / 1000 for e in res.encodes if e.mode == "roi"],
                "notes": {m: b["note"] for m, b in res.bd.items() if b["note"]},
                "seconds": time.perf_counter() - t0,
            }
            rows.append(row)
            print(f"{vname:>12} {c['name']:<28} object BD-rate {_f(row['bd_rate_mask_in'])}%  "
                  f"BD-VMAF {_f(row['bd_vmaf'], 2)}  VMAF BD-rate {_f(row['bd_rate_vmaf'])}%  "
                  f"agreement {_f(agree, 3)} ({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
    table = markdown(rows, variants)
    print(table)
    summary = {
        "crf": crfs, "frames": args.frames, "split": None if args.generated else args.split,
        "generated": args.generated, "seed": args.seed, "sets": args.set,
        "variants": [{"name": n, "sets": s} for n, s in variants], "rows": rows,
        "machine": machine(), "seconds": time.perf_counter() - t_start,
    }
    dest = Path(args.json or out / "summary.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 0


def _n(v, d: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{d}f}"


def _f(v, d: int = 1) -> str:
    return "n/a" if v is None else f"{v:+.{d}f}"


def markdown(rows: list[dict], variants) -> str:
    lines = [("| variant | clip | object BD-rate (PSNR-Y in mask) | BD-VMAF (full frame, at equal rate) | "
              "BD-rate VMAF | BD-rate PSNR-Y outside mask | applied maps vs reference (worst frame) |"),
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['clip']} | {_f(r['bd_rate_mask_in'])}% | {_f(r['bd_vmaf'], 2)} | "
                     f"{_f(r['bd_rate_vmaf'])}% | {_f(r['bd_rate_mask_out'])}% | "
                     f"{_n(r.get('agreement'))} ({_n(r.get('agreement_min'), 2)}) |")
    lines += ["", "| variant | overrides | mean object BD-rate | mean BD-VMAF | mean BD-rate VMAF | "
              "worst clip BD-rate VMAF | goal met |", "|---|---|---:|---:|---:|---:|---|"]
    for name, sets in variants:
        vr = [r for r in rows if r["variant"] == name]

        def mean(key, vr=vr):
            vals = [r[key] for r in vr if r[key] is not None]
            return statistics.fmean(vals) if vals else None

        a, b, c = mean("bd_rate_mask_in"), mean("bd_vmaf"), mean("bd_rate_vmaf")
        vm = [r["bd_rate_vmaf"] for r in vr]
        worst = None if any(v is None for v in vm) or not vm else max(vm)
        ok = a is not None and worst is not None and a <= GOAL_SAVING and worst <= GOAL_VMAF_BD_RATE
        lines.append(f"| {name} | {', '.join(sets) or '(defaults)'} | {_f(a)}% | {_f(b, 2)} | {_f(c)}% | "
                     f"{_f(worst)}% | {'yes' if ok else 'no'} |")
    return "\n".join(lines)


def machine() -> str:
    import os

    import av

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{platform.machine()}, {cores} cores, Python {platform.python_version()}, PyAV {av.__version__}, "
            f"libvmaf via imageio-ffmpeg")


if __name__ == "__main__":
    sys.exit(main())
