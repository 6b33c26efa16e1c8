"""`vmaf-roi score` and `vmaf-roi compare`: the quality-measurement subcommands.

Wired into the main parser with ``cli_quality.add_parsers(sub)``. The library returns results;
everything printed is printed here.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .cli_common import _info, _model_dir, _progress_factory
from .vmaf import DEFAULT_MODEL, ENV_FFMPEG, SCALERS


def _fmt(v, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "inf"
        return f"{v:.{digits}f}"
    return str(v)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _write(text: str, output: str | None, inputs=(), overwrite: bool = False) -> None:
    if output:
        from .output import write_text

        write_text(output, text, inputs=inputs, overwrite=overwrite)
    else:
        sys.stdout.write(text)


# -- score --------------------------------------------------------------------------------
def cmd_score(args) -> int:
    from .output import check_outputs
    from .score import score

    inputs = (args.reference, args.distorted, args.saliency, args.mask, args.gaze)
    check_outputs([args.output], inputs, overwrite=args.overwrite)
    res = score(
        args.reference, args.distorted, saliency=args.saliency, model=args.model, stride=args.stride,
        device=args.device, model_dir=_model_dir(args), mask=args.mask, vmaf_model=args.vmaf_model,
        scaler=args.scale, roi_weight=args.roi_weight, ffmpeg=args.ffmpeg,
        progress=_progress_factory(sys.stderr.isatty() and not args.quiet),
        gaze=args.gaze, gaze_min_viewers=args.gaze_min_viewers,
    )
    for n in res.notes:
        _info(f"note: {n}")
    if res.scaled_from:
        _info(f"note: distorted {res.scaled_from[0]}x{res.scaled_from[1]} scaled to the reference's "
              f"{res.width}x{res.height} ({args.scale})")
    if args.json:
        _write(res.to_json() + "\n", args.output, inputs, args.overwrite)
    elif args.csv:
        _write(res.to_csv(), args.output, inputs, args.overwrite)
    else:
        rows = [["metric", "mean", "median", "stdev", "min", "max", "frames"]]
        for m, p in res.pooled.items():
            d = 4 if m in ("ssim", "saliency_mean", "gaze_cc") else 2
            rows.append([m, *(_fmt(p[k], d) for k in ("mean", "median", "stdev", "min", "max")), str(p["count"])])
        text = (f"{res.distorted} vs {res.reference}: {res.frames} frames {res.width}x{res.height}, "
                f"{res.vmaf_model}" + (f", saliency {res.saliency}" if res.saliency else "") + "\n"
                + _table(rows) + "\n")
        if res.gaze:
            text += _gaze_line(res.gaze, "ewpsnr" + (", gaze_nss, gaze_cc" if "gaze_nss" in res.per_frame else "")) + "\n"
        inf = [m for m, v in res.per_frame.items() if any(math.isinf(x) for x in v)]
        if inf:
            text += f"(frames identical to the reference have infinite {', '.join(inf)}; pooled over the others)\n"
        _write(text, args.output, inputs, args.overwrite)
    return 0


def _gaze_line(g: dict, what: str) -> str:
    """What the gaze metrics stand on: the file, the blur, the frames used."""
    return _wrap(f"gaze {g['file']}: fixations blurred with sigma {g['sigma']:.1f} px; {what} over "
                 f"{g['frames_used']} of {g['frames']} frames", indent=4)


# -- compare ------------------------------------------------------------------------------
def cmd_compare(args) -> int:
    from . import config
    from .cli_common import (BarView, _make_dirs, _remove_dirs, check_image_suffix, cut_input, event_views,
                             habit_sets, segment_of)
    from .errors import ConfigError
    from .compare import compare, parse_points
    from .errors import InputError
    from .events import Result
    from .output import check_outputs

    cfg = config.load(args.config, habit_sets(args))
    segment = segment_of(args)
    if args.crf and args.bitrates:
        raise ConfigError("--crf/-crf and --bitrates/-b:v: give one")
    crfs = parse_points(args.crf, "crf") if args.crf else None
    bitrates = parse_points(args.bitrates, "bitrates") if args.bitrates else None
    if args.print_config:
        print(config.dump(cfg), end="")
        pts = f"crf {args.crf}" if crfs else f"bitrates {args.bitrates}" if bitrates else None
        if pts:
            print(f"# compare points: {pts}")
        if segment:
            print(f"# segment of the input (not a config key): {segment.describe()}")
        return 0
    if not (crfs or bitrates):
        raise ConfigError("give the points: --crf/-crf LIST (e.g. 23,28,33) or --bitrates/-b:v LIST (e.g. 1M,2M,4M)")
    inp = Path(args.input)
    if not inp.is_file():
        raise InputError(f"{inp}: no such file" if not inp.exists() else f"{inp}: not a regular file")
    if segment and (args.mask or args.gaze or args.maps):
        raise ConfigError("--mask/--gaze/--maps with -ss/-t/-to/-frames:v: they are paired with the whole "
                          "input's frames; cut them the same way first, or compare the whole input")
    out_dir = Path(args.out_dir) if args.out_dir else inp.with_name(inp.stem + ".compare")
    report_path = Path(args.json) if args.json else out_dir / "report.json"
    plot_path = Path(args.plot) if args.plot else out_dir / "rd.png"
    check_image_suffix(plot_path, "--plot")
    inputs = [inp, args.mask, args.gaze, args.maps]
    # every output is checked before the first encode (those outside OUT_DIR here, the rest by compare)
    check_outputs([p for p in (report_path, plot_path) if p.parent != out_dir], inputs, overwrite=args.overwrite)
    view, progress = event_views(args.ndjson, args.quiet)
    created = _make_dirs(out_dir)
    tmp = None
    try:
        src = inp
        if segment:
            # Cut once, losslessly: the encodes and the reference they are scored against are
            # the same frames, with the same timestamps
            import tempfile

            tmp = tempfile.TemporaryDirectory(prefix="vmaf-roi-cut-")
            src = cut_input(args, segment, tmp.name, audio=cfg["audio"] == "copy")
        try:
            res = compare(
                src, cfg, crfs=crfs, bitrates=bitrates, out_dir=out_dir, mask=args.mask, vmaf_model=args.vmaf_model,
                ffmpeg=args.ffmpeg, roi_weight=args.roi_weight, model_dir=_model_dir(args), keep=args.keep,
                progress=progress, on_event=view, overwrite=args.overwrite, outputs=[report_path, plot_path],
                gaze=args.gaze, gaze_min_viewers=args.gaze_min_viewers, maps=args.maps,
            )
        finally:
            if isinstance(view, BarView):
                view.close()
        if segment:
            res.input = str(inp)
            res.notes.insert(0, f"segment {segment.describe()} of the input, cut losslessly (FFV1) once: the "
                                f"encodes were made from it and scored against it")
        report = res.write_json(report_path, overwrite=args.overwrite)
        plot = res.write_plot(plot_path, overwrite=args.overwrite)
    except BaseException:
        _remove_dirs(created)
        raise
    finally:
        if tmp is not None:
            tmp.cleanup()
    if created and not any(out_dir.iterdir()):
        _remove_dirs(created)
    if args.ndjson:
        view(Result("compare", {**res.to_dict(), "report": str(report), "plot": str(plot)}))
        return 0
    print(compare_tables(res))
    sal = res.saliency
    _info(f"compare: {len(res.encodes)} encodes, " + (f"ROI maps from {sal['maps']}" if sal.get("maps") else
          f"saliency {sal['model']} ({sal['inferences']} inferences on {sal['provider']})") + f", {res.seconds:.1f} s")
    _info(f"compare: report {report}, RD curves {plot}" + (f", encodes in {out_dir}" if args.keep else ""))
    return 0


SHORT = {"vmaf": "VMAF", "psnr_y": "PSNR", "ssim": "SSIM", "vmaf_saliency": "wVMAF", "vmaf_roi": "roiVMAF",
         "psnr_y_weighted": "wPSNR", "psnr_y_mask_in": "PSNR-in", "psnr_y_mask_out": "PSNR-out",
         "ewpsnr": "EWPSNR"}
LEGEND = {"wVMAF": "saliency-weighted VMAF", "roiVMAF": "VMAF of the salient region",
          "wPSNR": "saliency-weighted PSNR-Y", "PSNR-in": "PSNR-Y inside the mask",
          "PSNR-out": "PSNR-Y outside the mask", "EWPSNR": "eye-tracking-weighted PSNR-Y"}


def compare_tables(res) -> str:
    """The RD table and the BD table of a CompareResult, each within 100 columns; long notes
    (why a BD value is unreliable) are listed once under the BD table, keyed [1], [2], ..."""
    from .compare import LABELS

    head = "CRF" if res.kind == "crf" else "target"
    rows = [[head, "mode", "video kb/s", "total kb/s", *(SHORT.get(m, m) for m in res.metrics)]]
    for r in res.table():
        pt = f"{r['point']:g}" if res.kind == "crf" else f"{r['point'] / 1000:g}k"
        rows.append([pt, r["mode"], f"{r['kbps']:.1f}", f"{r['total_kbps']:.1f}",
                     *(_fmt(r[m], 4 if m == "ssim" else 2) for m in res.metrics)])
    out = _split_table(rows, 4)
    legend = [f"{k} = {v}" for k, v in LEGEND.items() if k in rows[0]]
    out.append("video kb/s: the encoded video alone (what is compared); total kb/s: the whole file.")
    if legend:
        out.append(_wrap("; ".join(legend) + "."))
    out.append("")
    keys: dict[str, int] = {}

    def mark(b: dict, name: str) -> str:
        marks = ""
        for n in (b.get("note") or "").split("; "):
            general = n and not n.startswith(("BD-rate:", "BD-quality:"))  # e.g. too few points: both
            if n.startswith(name + ":") or general:
                keys.setdefault(n, len(keys) + 1)
                marks += f"[{keys[n]}]"
        return f" {marks}" if marks else ""

    rows = [["BD, ROI vs plain", "BD-rate %", "BD-quality"]]
    for m in res.metrics:
        b = res.bd[m]
        rows.append([LABELS.get(m, m), _fmt(b["bd_rate"], 1) + mark(b, "BD-rate"),
                     _fmt(b["bd_quality"], 3 if m == "ssim" else 2) + mark(b, "BD-quality")])
    out.append(_table(rows))
    out.append("BD-rate < 0: ROI needs fewer bits for the same score.")
    out.append("BD-quality > 0: ROI scores higher at equal bitrate.")
    for n, k in keys.items():
        out.append(_wrap(f"[{k}] {n}", indent=4))
    g = getattr(res, "gaze", None)
    if g:
        out.append("")
        out.append(_gaze_line(g, "EWPSNR and the maps' NSS/CC"))
        nss, cc = (g.get("maps_nss") or {}).get("mean"), (g.get("maps_cc") or {}).get("mean")
        out.append(_wrap(f"ROI encodes' maps vs the viewers' fixations: NSS {_fmt(nss)}, CC {_fmt(cc, 3)} "
                         f"(per-frame mean; NSS > 0 and CC > 0: the maps are high where people look)", indent=4))
    return "\n".join(out)


def _split_table(rows: list[list[str]], keep: int, width: int = 100) -> list[str]:
    """``rows`` as one table, or where that is wider than ``width``, as several one under the
    other, each with the first ``keep`` columns and as many of the rest as fit."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    head = sum(widths[:keep]) + 2 * keep
    groups: list[list[int]] = [[]]
    used = head
    for i in range(keep, len(widths)):
        if groups[-1] and used + widths[i] > width:
            groups.append([])
            used = head
        groups[-1].append(i)
        used += widths[i] + 2
    return [_table([r[:keep] + [r[i] for i in g] for r in rows]) + ("\n" if j < len(groups) - 1 else "")
            for j, g in enumerate(groups)]


def _wrap(text: str, width: int = 100, indent: int = 0) -> str:
    import textwrap

    return textwrap.fill(text, width=width, subsequent_indent=" " * indent)


# -- parsers ------------------------------------------------------------------------------
def _add_vmaf_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vmaf-model", default=DEFAULT_MODEL,
                   help=f"libvmaf built-in model version or a model .json file (default: {DEFAULT_MODEL})")
    p.add_argument("--ffmpeg", default=None,
                   help=f"ffmpeg built with libvmaf (default: ${ENV_FFMPEG}, else imageio-ffmpeg's)")
    p.add_argument("--roi-weight", type=float, default=0.5,
                   help="w in vmaf_saliency = w*vmaf_roi + (1-w)*vmaf (default: 0.5)")
    p.add_argument("--mask", help="ground-truth object mask video (gray, >127 inside): adds PSNR inside/outside it")
    p.add_argument("--gaze", metavar="FILE",
                   help="eye-tracking CSV (frame or t, x, y, viewer; the video's pixels): adds EWPSNR and, with "
                        "maps, NSS/CC of the maps against the fixations")
    p.add_argument("--gaze-min-viewers", type=int, default=3, metavar="N",
                   help="with --gaze: leave out frames seen by fewer than N viewers, where the file names "
                        "viewers (default: 3)")


def add_parsers(sub) -> None:
    """Register `score` and `compare` on the main parser's subparsers."""
    from .cli_common import _add_model_dir, _add_overwrite, add_ffmpeg_habits

    s = sub.add_parser("score", help="VMAF, PSNR-Y, SSIM (and saliency-weighted variants) of a video vs its reference",
                       description="Score DISTORTED against REFERENCE, frame by frame (paired by index) and pooled.")
    s.add_argument("reference")
    s.add_argument("distorted")
    src = s.add_mutually_exclusive_group()
    src.add_argument("--saliency", metavar="MAPS", help="saliency map video (gray, e.g. from `vmaf-roi saliency -o`)")
    src.add_argument("--model", metavar="ID", help="compute saliency maps of the reference with this registry model")
    s.add_argument("--stride", type=int, default=1, help="with --model: run it every Nth frame (default: 1)")
    s.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"], help="with --model (default: auto)")
    fmt = s.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="per-frame lists and pooled stats as JSON")
    fmt.add_argument("--csv", action="store_true", help="one CSV row per frame")
    s.add_argument("-o", "--output", help="write the result here instead of stdout")
    s.add_argument("--scale", default="bicubic", choices=["none", *SCALERS],
                   help="scaler for a distorted video of another size (scaled to the reference); "
                        "none: refuse (default: bicubic)")
    _add_vmaf_args(s)
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_overwrite(s)
    _add_model_dir(s)
    s.set_defaults(func=cmd_score)

    c = sub.add_parser("compare", help="RD comparison of ROI vs plain encodes: table, BD-rates, RD plot, JSON",
                       description="Encode INPUT plain and with ROI at each point (same settings), score every "
                                   "encode against INPUT, and report BD-rates of ROI against plain.")
    c.add_argument("input")
    c.add_argument("-c", "--config", help="YAML job config (see configs/default.yaml)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set roi.strength=4 (repeatable)")
    c.add_argument("--crf", "-crf", help="comma-separated CRF points, e.g. 20,24,28,32 (cq for NVENC); "
                                        "one of --crf and --bitrates is required")
    c.add_argument("--bitrates", "-b:v", help="comma-separated target bitrates, e.g. 500k,1M,2M,4M")
    c.add_argument("-o", "--out-dir", help="where encodes, report.json and rd.png go (default: INPUT's stem + .compare)")
    c.add_argument("--json", metavar="PATH", help="JSON report path (default: OUT_DIR/report.json)")
    c.add_argument("--plot", metavar="PATH", help="RD-curve PNG path (default: OUT_DIR/rd.png)")
    c.add_argument("--keep", action="store_true", help="keep the encodes (deleted by default)")
    c.add_argument("--maps", metavar="FILE",
                   help="the ROI encodes take their maps from this map video or gaze file instead of the model "
                        "(as encode --maps); the saliency-weighted metrics use them too")
    _add_vmaf_args(c)
    c.add_argument("--ndjson", action="store_true",
                   help="status, progress and result events on stdout, one JSON object per line (for scripts); "
                        "no tables")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    c.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    _add_overwrite(c)
    _add_model_dir(c)
    add_ffmpeg_habits(c, rate=False)
    c.set_defaults(func=cmd_compare)


def main(argv: list[str] | None = None) -> int:
    """`vmaf-roi score|compare ...` through the main CLI (argv starts with the subcommand)."""
    from .cli import main as cli_main

    return cli_main(argv)
