"""ROI encodes judged where people look: EWPSNR BD-rate (eye-tracking-weighted PSNR-Y) with
full-frame VMAF BD-rate as the guard, per map source x planner mode x strength.

    # the held-out gaze clip (scripts/gaze_convert.py ucf ... build/gaze/ucf)
    python benchmarks/bench_gaze_encode.py --input build/gaze/ucf/diving.mkv --gaze build/gaze/ucf/diving.csv \\
        --variant "gaze-both4:maps=gaze,roi.mode=both,roi.strength=4" \\
        --variant "att-both4:saliency.model=attention_v1,roi.mode=both" \\
        --variant "att-g05-both4:maps=attention_v1|gamma=0.5,roi.mode=both"
    # the VMAF guard: the corpus's eval clips (first 120 frames), no gaze
    python benchmarks/bench_gaze_encode.py --real --variant ...

A variant is ``NAME:KEY=V,KEY=V``: every key but ``maps`` is a ``--set`` override of the job
config (``roi.mode``, ``roi.strength``, ``saliency.model``, ...). ``maps`` picks the ROI maps:

- absent, or ``maps=model``: the model of the config (``saliency.model``, stride 2 as encode runs it);
- ``maps=gaze``: the viewers' own fixation density (``compare --maps GAZE.csv``): the ceiling of
  what perfect maps give this planner (EWPSNR is then scored against the maps' own fixations);
- ``maps=SOURCE|OP|OP...``: a map video written under the work directory from SOURCE (``gaze``,
  or a registry model id run by ``vmaf-roi saliency --stride 1``), transformed frame by frame
  by the OPs in order (m in [0, 1]); it emulates a planner change without touching the planner:
    ``gamma=G``   m**G (G < 1 widens the salient area)
    ``floor=F``   max(m, F): the background's QP raise is at most strength*(1-2F) in mode both
    ``ceil=C``    min(m, C)
    ``centre``    m - mean(m) + 0.5, clipped: the frame's offsets sum to about zero
    ``norm``      m / max(m) (per frame)
    ``lin=A/B``   A + B*m, clipped (e.g. lin=0.3/0.7 is floor 0.3 with the top kept at 1)
  SOURCE ``ID@SHA8`` pins the model version (a model being tuned changes under the same id;
  maps of another version are refused). The table's model sha256 column says which version
  made each row's maps.
  Map videos: gray FFV1 in Matroska, one map per input frame at the input's timestamps
  (vmaf_roi.maps.MapVideoWriter, as ``vmaf-roi saliency -o`` writes them).

Each variant runs ``vmaf-roi compare`` (libx264 preset medium by default, CRF 22,27,32,37,
plain and ROI at identical settings; one at a time) into WORK/<clip>/<variant>/; a report
whose command line is unchanged is reused, so a table can be re-made (``--write``) without
encoding again. Prints a Markdown table: EWPSNR BD-rate, VMAF BD-rate, BD-VMAF, the ROI
encodes' bitrate against plain, and the maps' NSS/CC against the fixations (report.json's gaze
section); with ``--real`` one row per clip and variant and a mean/worst summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realclips  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "vmaf_roi"]


def parse_variant(text: str) -> tuple[str, str, list[str]]:
    name, _, rest = text.partition(":")
    maps, sets = "model", []
    for item in (s.strip() for s in rest.split(",")):
        if not item:
            continue
        if item.startswith("maps="):
            maps = item[5:]
        else:
            sets.append(item)
    return name, maps, sets


# ---- map videos ------------------------------------------------------------------------------

def transform(m: np.ndarray, ops: list[str]) -> np.ndarray:
    """Apply the OPs (see the module doc) to one map in [0, 1]."""
    for op in ops:
        key, _, val = op.partition("=")
        if key == "gamma":
            m = np.power(m, float(val))
        elif key == "floor":
            m = np.maximum(m, float(val))
        elif key == "ceil":
            m = np.minimum(m, float(val))
        elif key == "centre":
            m = m - float(m.mean()) + 0.5
        elif key == "norm":
            top = float(m.max())
            m = m / top if top > 0 else m
        elif key == "lin":
            a, b = (float(x) for x in val.split("/"))
            m = a + b * m
        else:
            raise SystemExit(f"unknown map op {op!r}")
        m = np.clip(m, 0.0, 1.0)
    return m


def frame_times(path: Path) -> list:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [f.time if f.time is not None else i for i, f in enumerate(c.decode(s))], \
            (s.codec_context.width, s.codec_context.height, s.average_rate)


def source_maps(clip: Path, source: str, gaze: Path | None, work: Path, model_dir: str | None) -> list[np.ndarray]:
    """Float maps in [0, 1], one per frame, of ``source`` (gaze or a model id) on ``clip``."""
    import av

    if source == "gaze":
        from vmaf_roi.gaze import load_gaze
        from vmaf_roi.mapsource import gaze_map

        if gaze is None:
            raise SystemExit("maps=gaze|...: needs --gaze")
        times, (w, h, _) = frame_times(clip)
        rec = load_gaze(gaze, width=w, height=h, frame_count=len(times))
        has = set(int(i) for i in rec.frames())
        out, last = [], np.zeros((rec.height, rec.width), np.uint8)
        for i in range(len(times)):
            if i in has:
                last = gaze_map(rec, i)
            out.append(last.astype(np.float32) / 255.0)
        return out
    raw = work / f"{clip.stem}.{source}.s1.mkv"
    model_id, _, pin = source.partition("@")  # ID@SHA8: maps of that version of the model only
    if not raw.exists():
        if pin and model_sha(model_id) != pin:
            raise SystemExit(f"maps={source}: the registry's {model_id} is now {model_sha(model_id)}, not {pin}")
        raw.with_suffix(".sha256").write_text(model_sha(model_id))
        cmd = [*CLI, "saliency", str(clip), "-o", str(raw), "--model", model_id, "--stride", "1", "-q", "-y"]
        if model_dir:
            cmd += ["--model-dir", model_dir]
        subprocess.run(cmd, check=True)
    with av.open(str(raw)) as c:
        return [f.to_ndarray(format="gray").astype(np.float32) / 255.0 for f in c.decode(video=0)]


def model_sha(model_id: str) -> str:
    """The sha256 (first 8 hex digits) the registry gives the model now."""
    from vmaf_roi.registry import get_spec

    return get_spec(model_id).sha256[:8]


def maps_sha(maps: str, sets: list[str], work: Path, clip: Path) -> str:
    """Which model version made a variant's maps (recorded with each report: a model being
    tuned changes under the same id)."""
    if maps == "gaze" or maps.startswith("gaze|"):
        return "-"
    if maps == "model":
        from vmaf_roi import config

        return model_sha(config.load(None, [s for s in sets if s.startswith("saliency.")])["saliency"]["model"])
    f = work / "maps" / f"{clip.stem}.{maps.split('|')[0]}.s1.sha256"
    return f.read_text().strip() if f.exists() else "?"


def map_video(clip: Path, spec: str, gaze: Path | None, work: Path, model_dir: str | None) -> Path:
    """Write (or reuse) the map video of ``spec`` (SOURCE|OP|OP...) for ``clip``."""
    from fractions import Fraction

    from vmaf_roi.maps import MapVideoWriter

    source, *ops = spec.split("|")
    tag = hashlib.sha256(spec.encode()).hexdigest()[:10]
    out = work / f"{clip.stem}.{source}.{tag}.mkv"
    if out.exists():
        return out
    work.mkdir(parents=True, exist_ok=True)
    maps = source_maps(clip, source, gaze, work, model_dir)
    times, (w, h, rate) = frame_times(clip)
    if len(maps) != len(times):
        raise SystemExit(f"{spec}: {len(maps)} maps for {len(times)} frames")
    part = out.with_name(out.name + ".part.mkv")
    mh, mw = maps[0].shape
    wr = MapVideoWriter(part, mw, mh, rate, {"vmaf_roi_model": f"bench {spec}"})
    for m, t in zip(maps, times):
        u8 = np.rint(transform(m.astype(np.float64), ops) * 255.0).astype(np.uint8)
        wr.write(u8, Fraction(t).limit_denominator(1_000_000))
    wr.close()
    part.rename(out)
    return out


# ---- compares --------------------------------------------------------------------------------

def run_compare(clip: Path, name: str, maps: str, sets: list[str], args, gaze: Path | None, work: Path) -> dict:
    out = work / clip.stem / name
    maps_file = None
    if maps == "gaze":
        maps_file = gaze
    elif maps != "model":
        maps_file = map_video(clip, maps, gaze, work / "maps", args.model_dir)
    cmd = [*CLI, "compare", str(clip), "--crf", args.crf, "-o", str(out), "-y", "-q",
           "--set", f"encoder={args.encoder}", "--set", f"preset={args.preset}"]
    for s in [*args.set, *sets]:
        cmd += ["--set", s]
    if gaze is not None:
        cmd += ["--gaze", str(gaze)]
    if maps_file is not None:
        cmd += ["--maps", str(maps_file)]
    if args.model_dir:
        cmd += ["--model-dir", args.model_dir]
    key = " ".join(cmd[2:])
    rep, stamp = out / "report.json", out / "command.txt"
    if not (rep.exists() and stamp.exists() and stamp.read_text() == key):
        if args.cached_only:
            raise SystemExit(f"{name} on {clip.name}: no report of this command line in {out} (--cached-only)")
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{name} on {clip.name} failed:\n{r.stderr[-3000:]}")
        stamp.write_text(key)
        (out / "model.txt").write_text(maps_sha(maps, [*args.set, *sets], work, clip))
        print(f"  {clip.stem} {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    r = json.loads(rep.read_text())
    sha = (out / "model.txt").read_text().strip() if (out / "model.txt").exists() else "?"
    bd, gz = r["bd"], r.get("gaze") or {}
    plain = [e["bitrate"] for e in r["encodes"] if e["mode"] == "plain"]
    roi = [e["bitrate"] for e in r["encodes"] if e["mode"] == "roi"]
    return {
        "variant": name, "clip": clip.stem, "maps": maps, "sets": sets,
        "ewpsnr": (bd.get("ewpsnr") or {}).get("bd_rate"),
        "ewpsnr_db": (bd.get("ewpsnr") or {}).get("bd_quality"),
        "vmaf": bd["vmaf"]["bd_rate"], "vmaf_q": bd["vmaf"]["bd_quality"],
        "psnr": bd["psnr_y"]["bd_rate"] if "psnr_y" in bd else None,
        "rate": statistics.fmean(b / a for a, b in zip(plain, roi)) - 1.0,
        "nss": (gz.get("maps_nss") or {}).get("mean"), "cc": (gz.get("maps_cc") or {}).get("mean"),
        "notes": {m: b["note"] for m, b in bd.items() if b.get("note")},
        "model": r["saliency"].get("model"), "model_sha": sha, "seconds": r.get("seconds"),
    }


def _f(v, d: int = 1, sign: bool = True) -> str:
    return "n/a" if v is None else (f"{v:+.{d}f}" if sign else f"{v:.{d}f}")


def cell(text: str) -> str:
    return text.replace("|", "\\|")  # a map spec's OP separator inside a Markdown table


def flag(row: dict, m: str) -> str:
    return "*" if row["notes"].get(m) else ""


def table_gaze(rows: list[dict]) -> str:
    lines = ["| variant | maps | model sha256 | overrides | EWPSNR BD-rate | BD-EWPSNR (dB) | VMAF BD-rate | BD-VMAF | "
             "PSNR-Y BD-rate | ROI/plain rate | maps NSS | maps CC |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {cell(r['maps'])} | {r['model_sha']} | {', '.join(r['sets']) or '(defaults)'} | "
                     f"{_f(r['ewpsnr'])}%{flag(r, 'ewpsnr')} | {_f(r['ewpsnr_db'], 2)} | "
                     f"{_f(r['vmaf'])}%{flag(r, 'vmaf')} | {_f(r['vmaf_q'], 2)} | {_f(r['psnr'])}% | "
                     f"{_f(100 * r['rate'])}% | {_f(r['nss'], 2, False)} | {_f(r['cc'], 3, False)} |")
    return "\n".join(lines)


def table_real(rows: list[dict], variants) -> str:
    clips = list(dict.fromkeys(r["clip"] for r in rows))
    lines = ["| variant | maps | model sha256 | overrides | " + " | ".join(f"{c} VMAF BD-rate" for c in clips)
             + " | mean | worst |", "|---|---|---|---|" + "---:|" * (len(clips) + 2)]
    for name, maps, sets in variants:
        vr = {r["clip"]: r for r in rows if r["variant"] == name}
        vals = [vr[c]["vmaf"] for c in clips if c in vr]
        cells = [f"{_f(vr[c]['vmaf'])}%{flag(vr[c], 'vmaf')}" if c in vr else "-" for c in clips]
        shas = sorted(set(r["model_sha"] for r in vr.values())) or ["?"]
        lines.append(f"| {name} | {cell(maps)} | {'/'.join(shas)} | {', '.join(sets) or '(defaults)'} | "
                     + " | ".join(cells)
                     + f" | {_f(statistics.fmean(vals)) if vals else 'n/a'}% | {_f(max(vals)) if vals else 'n/a'}% |")
    return "\n".join(lines)


def recorded(argv: list[str]) -> list[str]:
    """The command line as RESULTS.md shows it: what makes the table (no --note/--heading text,
    no --write, no --cached-only)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--note", "--heading"):
            skip = True
        elif not (a in ("--write", "--cached-only") or a.startswith(("--note=", "--heading="))):
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", help="the gaze clip (e.g. build/gaze/ucf/diving.mkv)")
    ap.add_argument("--gaze", help="its eye-tracking CSV")
    ap.add_argument("--real", action="store_true", help="the corpus's eval clips instead (no gaze): the VMAF guard")
    ap.add_argument("--frames", type=int, default=120, help="--real: first N frames of each clip (default 120)")
    ap.add_argument("--clips", default=None, help="--real: only these clip stems (comma-separated)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:maps=..,KEY=V", required=True)
    ap.add_argument("--set", action="append", default=[], help="override for every variant (repeatable)")
    ap.add_argument("--crf", default="22,27,32,37")
    ap.add_argument("--encoder", default="libx264")
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--work", default=str(ROOT / "build" / "gaze-encode"))
    ap.add_argument("--model-dir", default=os.environ.get("VMAF_ROI_MODEL_DIR"))
    ap.add_argument("--heading", default=None, help="--write: the section's heading")
    ap.add_argument("--note", default="", help="--write: text after the table(s)")
    ap.add_argument("--cached-only", action="store_true", help="tabulate existing reports only; encode nothing")
    ap.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)

    work = Path(args.work)
    variants = [parse_variant(v) for v in args.variant]
    gaze = Path(args.gaze) if args.gaze else None
    if args.real:
        clips = [p for _, p in realclips.eval_clips(ROOT / "build" / "eval-roi", args.frames)]
        if args.clips:
            keep = set(args.clips.split(","))
            clips = [p for p in clips if p.stem.split(".")[0] in keep]
        gaze = None
    else:
        if not args.input:
            raise SystemExit("--input (or --real)")
        clips = [Path(args.input)]
    rows = []
    for name, maps, sets in variants:
        for clip in clips:
            rows.append(run_compare(clip, name, maps, sets, args, gaze, work))
            r = rows[-1]
            print(f"{name:>18} {clip.stem:<16} EWPSNR {_f(r['ewpsnr'])}%  VMAF {_f(r['vmaf'])}%  "
                  f"rate {_f(100 * r['rate'])}%  NSS {_f(r['nss'], 2, False)}", file=sys.stderr, flush=True)
    body = table_real(rows, variants) if args.real else table_gaze(rows)
    print(body)
    (work / ("summary-real.json" if args.real else "summary-gaze.json")).write_text(
        json.dumps({"rows": rows, "argv": sys.argv[1:]}, indent=2, default=str) + "\n")
    if args.write:
        what = (f"eval clips, first {args.frames} frames, no gaze" if args.real
                else f"{Path(args.input).name} with its gaze")
        head = args.heading or f"ROI encodes where people look: EWPSNR and VMAF BD-rates ({what})"
        realclips.append_results(
            "bench_gaze_encode.py", [shlex.quote(a) for a in recorded(argv if argv is not None else sys.argv[1:])], head,
            f"\n({args.encoder} preset {args.preset}, CRF {args.crf}; BD-rate < 0: ROI needs fewer bits for the same "
            f"score; * = BD value flagged as leaning on extrapolation)\n\n{body}\n"
            + (f"\n{args.note}\n" if args.note else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
