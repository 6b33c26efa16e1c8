"""Evaluate ROI against plain encodes on generated clips with ground-truth object masks.

    python benchmarks/eval_roi.py                       # default config, 360p+720p, with/without pan
    python benchmarks/eval_roi.py --variant default= --variant s9:roi.strength=9,roi.max_offset=14

The evaluation set is made by ``vmaf_roi.synth`` (seeded, so identical on every machine): a
textured object moving over a textured background, 640x360 and 1280x720, static camera and
pan, with the exact object mask beside each clip. For each clip and each variant (a list of
``--set`` overrides on top of the job config) it runs :func:`vmaf_roi.compare.compare` at the
CRF points (plain and ROI at identical encoder settings) and reports, per clip and averaged:

- BD-rate on PSNR-Y inside the object mask (negative: ROI saves bits for the object),
- BD-VMAF, the full-frame VMAF change at equal bitrate (the price paid elsewhere),
- BD-rate on full-frame VMAF and on PSNR-Y outside the mask.

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

from vmaf_roi import config
from vmaf_roi.compare import compare
from vmaf_roi.encode import SaliencyTrack
from vmaf_roi.synth import make_clip

SIZES = {"360p": (640, 360), "720p": (1280, 720)}
GOAL_SAVING = -20.0  # % BD-rate on the object
GOAL_VMAF_COST = -1.0  # VMAF points at equal bitrate


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "vmaf-roi-eval"),
                    help="clips, encodes and reports (default: $TMPDIR/vmaf-roi-eval)")
    ap.add_argument("-c", "--config", help="base job config (default: built-in defaults)")
    ap.add_argument("--set", action="append", default=[], help="override for every variant (repeatable)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=V,KEY=V",
                    help="a named set of overrides (repeatable; default: one variant 'default' with none)")
    ap.add_argument("--crf", default="22,27,32,37", help="CRF points (default: 22,27,32,37)")
    ap.add_argument("--sizes", default="360p,720p", help="comma-separated: 360p,720p")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--json", default=None, help="summary JSON (default: OUT/summary.json)")
    args = ap.parse_args(argv)

    out = Path(args.out)
    crfs = [int(x) if float(x).is_integer() else float(x) for x in args.crf.split(",")]
    clips = make_set(out / "clips", [s.strip() for s in args.sizes.split(",")], args.frames, args.seed)
    variants = [parse_variant(v) for v in args.variant] or [("default", [])]
    model_dir = Path(args.model_dir) if args.model_dir else None
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
            row = {
                "variant": vname, "sets": sets, "clip": c["name"], "size": c["size"], "pan": c["pan"],
                "bd_rate_mask_in": res.bd["psnr_y_mask_in"]["bd_rate"],
                "bd_vmaf": res.bd["vmaf"]["bd_quality"],
                "bd_rate_vmaf": res.bd["vmaf"]["bd_rate"],
                "bd_rate_mask_out": res.bd["psnr_y_mask_out"]["bd_rate"],
                "bd_rate_vmaf_roi": res.bd["vmaf_roi"]["bd_rate"],
                "kbps_plain": [e.bitrate / 1000 for e in res.encodes if e.mode == "plain"],
                "kbps_roi": [e.bitrate / 1000 for e in res.encodes if e.mode == "roi"],
                "notes": {m: b["note"] for m, b in res.bd.items() if b["note"]},
                "seconds": time.perf_counter() - t0,
            }
            rows.append(row)
            print(f"{vname:>12} {c['name']:<28} object BD-rate {_f(row['bd_rate_mask_in'])}%  "
                  f"BD-VMAF {_f(row['bd_vmaf'], 2)}  VMAF BD-rate {_f(row['bd_rate_vmaf'])}%  "
                  f"({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
    table = markdown(rows, variants)
    print(table)
    summary = {
        "crf": crfs, "frames": args.frames, "seed": args.seed, "sets": args.set,
        "variants": [{"name": n, "sets": s} for n, s in variants], "rows": rows,
        "machine": machine(), "seconds": time.perf_counter() - t_start,
    }
    Path(args.json or out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 0


def _f(v, d: int = 1) -> str:
    return "n/a" if v is None else f"{v:+.{d}f}"


def markdown(rows: list[dict], variants) -> str:
    lines = [("| variant | clip | object BD-rate (PSNR-Y in mask) | BD-VMAF (full frame, at equal rate) | "
              "BD-rate VMAF | BD-rate PSNR-Y outside mask |"), "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['clip']} | {_f(r['bd_rate_mask_in'])}% | {_f(r['bd_vmaf'], 2)} | "
                     f"{_f(r['bd_rate_vmaf'])}% | {_f(r['bd_rate_mask_out'])}% |")
    lines += ["", "| variant | overrides | mean object BD-rate | mean BD-VMAF | mean BD-rate VMAF | goal met |",
              "|---|---|---:|---:|---:|---|"]
    for name, sets in variants:
        vr = [r for r in rows if r["variant"] == name]

        def mean(key, vr=vr):
            vals = [r[key] for r in vr if r[key] is not None]
            return statistics.fmean(vals) if vals else None

        a, b, c = mean("bd_rate_mask_in"), mean("bd_vmaf"), mean("bd_rate_vmaf")
        ok = a is not None and b is not None and a <= GOAL_SAVING and b > GOAL_VMAF_COST
        lines.append(f"| {name} | {', '.join(sets) or '(defaults)'} | {_f(a)}% | {_f(b, 2)} | {_f(c)}% | "
                     f"{'yes' if ok else 'no'} |")
    return "\n".join(lines)


def machine() -> str:
    import os

    import av

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{platform.machine()}, {cores} cores, Python {platform.python_version()}, PyAV {av.__version__}, "
            f"libvmaf via imageio-ffmpeg")


if __name__ == "__main__":
    sys.exit(main())
