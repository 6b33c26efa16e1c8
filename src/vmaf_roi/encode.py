"""Encode stage: one streaming pass from input file to ROI-encoded output.

decode -> filter chain -> saliency (every `stride` frames and on scene cuts, held between)
-> ROI planner -> AVRegionOfInterest side data -> encoder -> muxer, with audio and
subtitle streams copied. ``plain=True`` runs the same pipeline and encoder settings without
saliency or side data, for fair comparisons.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import av
import av.error
import av.logging
import numpy as np
from av.video.frame import PictureType

from . import roi as roi_mod
from .config import parse_bitrate
from .decode import VideoSource
from .encoders import block_size, roi_encoders, roi_refusal
from .errors import ConfigError, DeviceError, EncodeError, InputError, OutputError
from .maps import ProgressFactory, no_progress
from .output import AtomicOutputs, check_outputs
from .saliency import SaliencyModel
from .pipeline import Item, MapPolicy, MapState, items, with_maps
from .sidedata import RoiAttacher

EventSink = Callable[[str], None]

# libvpx-vp9's ROI delta is in q-index units (0..255, clipped to +-63 by FFmpeg's wrapper);
# one H.264-style QP step is roughly 4 q-index steps in the middle of the range.
VP9_QINDEX_PER_QP = 4
VP9_MAX_DELTA_Q = 63
# FFmpeg's libvpx wrapper applies ROI only with these; lag-in-frames=0 because the ROI map is
# handed to libvpx with the frame being *submitted*, which with a lookahead is not the frame
# being encoded (measured: with the default lag the boost lands on stale positions).
VP9_ROI_OPTIONS = {"deadline": "realtime", "cpu-used": "5", "aq-mode": "0", "lag-in-frames": "0"}


def _quiet(_: str) -> None:
    pass


@dataclass
class SaliencyTrack:
    """Per-frame model-resolution maps (uint8), shared between encodes of the same input."""

    maps: dict[int, np.ndarray] = field(default_factory=dict)
    inferences: int = 0
    provider: str = ""
    model: str = ""


@dataclass
class EncodeResult:
    output: Path
    encoder: str
    roi: bool
    frames: int
    seconds: float
    bytes: int  # the whole file: video, copied audio/subtitles, container
    duration: float
    video_bytes: int = 0  # the encoded video packets only
    inferences: int = 0
    provider: str = ""
    model: str = ""
    mean_regions: float = 0.0
    roi_digest: str = ""  # sha256 of every frame's ROI list: equal digests = same ROI applied
    notes: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def bitrate(self) -> float:
        """Total bit/s of the file (video + copied streams + container), as before."""
        return self.bytes * 8 / self.duration if self.duration > 0 else 0.0

    @property
    def total_bitrate(self) -> float:
        return self.bitrate

    @property
    def video_bitrate(self) -> float:
        """Bit/s of the encoded video alone: what ROI changes, and what compare compares."""
        return self.video_bytes * 8 / self.duration if self.duration > 0 else 0.0


# -- encoder set-up ---------------------------------------------------------------------------
def _bit_depth(pix_fmt: str) -> int:
    for d in (16, 14, 12, 10, 9):
        if f"p{d}" in pix_fmt or f"{d}le" in pix_fmt or f"{d}be" in pix_fmt:
            return d
    return 8


def check_encoder(name: str, plain: bool) -> av.codec.Codec:
    try:
        codec = av.codec.Codec(name, "w")
    except (av.error.FFmpegError, ValueError, KeyError):
        raise ConfigError(f"config encoder: {name!r} is not available in this FFmpeg build") from None
    if codec.type != "video":
        raise ConfigError(f"config encoder: {name!r} is not a video encoder")
    if not plain:
        why = roi_refusal(name)
        if why is not None:
            raise ConfigError(f"config encoder: {why}; use one of {', '.join(roi_encoders())} or run with --plain")
    return codec


def choose_pix_fmt(cfg_fmt: str, frame_fmt: str, codec: av.codec.Codec) -> str:
    supported = [f.name for f in codec.video_formats or []]
    if cfg_fmt != "auto":
        if supported and cfg_fmt not in supported:
            raise ConfigError(f"config pix_fmt: {codec.name} does not take {cfg_fmt} (it takes {', '.join(supported)})")
        return cfg_fmt
    if not supported or frame_fmt in supported:
        return frame_fmt
    if _bit_depth(frame_fmt) > 8 and "yuv420p10le" in supported:
        return "yuv420p10le"
    return "yuv420p"


TWO_PASS_ENCODERS = ("libx264", "libx265")


def encoder_options(cfg: dict[str, Any], plain: bool, notes: list[str], *, pass_no: int = 0,
                    stats: str | None = None) -> tuple[dict[str, str], int]:
    """AVOptions (strings) and bit_rate for the configured encoder. Refuses ROI-defeating settings.

    ``pass_no`` 1 or 2 with ``stats`` (a file path) sets up one pass of a two-pass encode.
    """
    enc = cfg["encoder"]
    if cfg["rate_control"].get("two_pass") and enc not in TWO_PASS_ENCODERS:
        raise ConfigError(f"config rate_control.two_pass: supported with {', '.join(TWO_PASS_ENCODERS)}, not {enc}")
    opts: dict[str, str] = {}
    bit_rate = 0
    rc = cfg["rate_control"]
    if enc in ("libx264", "libx265", "h264_nvenc", "hevc_nvenc", "libsvtav1") and cfg.get("preset") is not None:
        opts["preset"] = str(cfg["preset"])
    if rc["mode"] == "crf":
        if enc.endswith("_nvenc"):
            opts["rc"], opts["cq"] = "vbr", str(rc["value"])
        else:
            opts["crf"] = str(rc["value"])
    elif rc["mode"] == "qp":
        if enc == "libvpx-vp9":
            opts["qmin"] = opts["qmax"] = str(int(rc["value"]))
        else:
            opts["qp"] = str(rc["value"])
    else:
        bit_rate = parse_bitrate(rc["value"])
    params = {str(k): v for k, v in cfg["encoder_params"].items()}
    if enc == "libx265":
        params.setdefault("log-level", "error")  # x265 prints its banner to stderr itself
        if pass_no:
            params.update({"pass": pass_no, "stats": stats})
    if params:
        key = {"libx264": "x264-params", "libx265": "x265-params"}.get(enc)
        if key is None:
            raise ConfigError(f"config encoder_params: {enc} has no *-params string; use encoder_options")
        opts[key] = ":".join(f"{k}={_fmt(v)}" for k, v in params.items())
    user = {str(k): _fmt(v) for k, v in cfg["encoder_options"].items()}
    if enc == "libvpx-vp9":
        forced = []
        for k, want in VP9_ROI_OPTIONS.items():
            have = user.get(k)
            if have is None:
                user[k] = want
                forced.append(f"{k}={want}")
            elif not plain and not _vp9_ok(k, have):
                raise ConfigError(f"config encoder_options.{k}: libvpx-vp9 ignores or misplaces ROI unless "
                                  f"deadline=realtime, cpu-used>=5, aq-mode=0 and lag-in-frames=0 (got {k}={have})")
        if forced:
            notes.append("libvpx-vp9 applies ROI only with deadline=realtime, cpu-used>=5, aq-mode=0, lag-in-frames=0: "
                         f"using {', '.join(forced)} (also with --plain, for a fair comparison)")
        if rc["mode"] == "crf":
            bit_rate = 0  # constant quality
    opts.update(user)
    if pass_no and enc == "libx264":
        opts["flags"] = f"+pass{pass_no}"
        opts["stats"] = str(stats)
    if not plain:
        aq = params.get("aq-mode", user.get("aq-mode"))
        if enc in ("libx264", "libx265") and aq is not None and str(aq) == "0":
            raise ConfigError(f"config: {enc} ignores ROI with aq-mode=0; enable adaptive quantisation (aq-mode 1-3) or use --plain")
        if enc == "libx264" and rc["mode"] == "qp":
            raise ConfigError("config rate_control.mode: libx264 turns adaptive quantisation off in constant-QP mode, "
                              "so it ignores ROI; use crf or bitrate")
    return opts, bit_rate


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


def _vp9_ok(key: str, value: str) -> bool:
    if key == "deadline":
        return value in ("realtime", "rt", "1")
    if key == "cpu-used":
        try:
            return int(value) >= 5
        except ValueError:
            return False
    return value == "0"


def _check_options(stream: av.VideoStream) -> None:
    """Reject encoder settings FFmpeg would only log about.

    FFmpeg only logs bad encoder parameters (e.g. an unknown x264-params key) and PyAV hides
    its log, so unknown option names are checked against the encoder's AVOptions, and the
    settings are tried on a throw-away encoder with the log captured; the real encoder then
    opens with FFmpeg's log left as the user has it.
    """
    cc = stream.codec_context
    known = {o.name for o in cc.supported_options.generic} | {o.name for o in cc.supported_options.private}
    for k in stream.options:
        if k not in known:
            near = [n for n in known if n.replace("_", "-") == k.replace("_", "-")]
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConfigError(f"encoder option {k!r} is not an option of {cc.name}{hint}")
    rate = cc.framerate or stream.average_rate or Fraction(25)
    spec = (cc.name, cc.width, cc.height, cc.pix_fmt, cc.time_base, rate, cc.bit_rate or 0, dict(stream.options))
    status, message = _probe_open(spec)
    if status == "device":
        raise DeviceError(f"encoder {cc.name} could not open (no usable GPU?): {message}")
    if status != "ok":
        raise EncodeError(f"encoder {cc.name} rejected its settings: {message}")


def _probe_open(spec) -> tuple[str, str]:
    name, width, height, pix_fmt, time_base, rate, bit_rate, options = spec
    probe = av.codec.CodecContext.create(name, "w")
    probe.width, probe.height, probe.pix_fmt, probe.time_base = width, height, pix_fmt, time_base
    probe.framerate = rate
    probe.bit_rate = bit_rate
    old = av.logging.get_level()
    av.logging.set_level(av.logging.WARNING)
    try:
        with av.logging.Capture(local=False) as logs:
            try:
                probe.options = options
                probe.open()
            except PermissionError as exc:
                return "device", str(exc)
            except av.error.FFmpegError as exc:
                return "error", "; ".join(m.strip() for lvl, _, m in logs if lvl <= av.logging.ERROR) or str(exc)
    finally:
        # Restore the log level *before* the probe encoder is freed: its worker threads log
        # while it closes, and routing that into Python while this thread waits for them
        # deadlocks (seen with libx264).
        av.logging.set_level(old)
        del probe
    bad = [m.strip() for lvl, _, m in logs
           if lvl <= av.logging.ERROR or any(s in m.lower() for s in ("error parsing", "unknown option", "invalid value", "bad option"))]
    return ("error", "; ".join(bad)) if bad else ("ok", "")


# Hardware encoders raise PermissionError at open when their device is missing.
_HW_ENCODER_TAGS = ("nvenc", "qsv", "amf", "vaapi", "v4l2m2m", "videotoolbox", "mediacodec", "d3d12va", "vulkan")


def _open_checked(out: av.container.OutputContainer, stream: av.VideoStream) -> None:
    _check_options(stream)
    try:
        out.start_encoding()
    except PermissionError as exc:
        name = stream.codec_context.name
        if any(h in name for h in _HW_ENCODER_TAGS):
            raise DeviceError(f"encoder {name} could not open (no usable GPU?): {exc}") from None
        # a software encoder: EACCES/EPERM came from opening the output file
        raise OutputError(f"cannot write the output: {exc.strerror or exc}") from None
    except av.error.FFmpegError as exc:
        raise EncodeError(f"encoder {stream.codec_context.name} failed to open: {exc}") from None


def roi_entries(regions: list[roi_mod.Region], encoder: str) -> list[tuple[int, int, int, int, int, int]]:
    """Planner regions -> AVRegionOfInterest tuples in the encoder's qoffset units."""
    if encoder == "libvpx-vp9":
        out = []
        for r in regions:
            d = int(max(-VP9_MAX_DELTA_Q, min(VP9_MAX_DELTA_Q, r.qp * VP9_QINDEX_PER_QP)))
            # FFmpeg computes (int)(num/den*63): a half step away from zero survives float error
            num = 2 * d + (1 if d > 0 else -1 if d < 0 else 0)
            out.append((r.top, r.bottom, r.left, r.right, num, 2 * VP9_MAX_DELTA_Q))
        return out
    return [r.as_tuple() for r in regions]


# -- the pass ---------------------------------------------------------------------------------
def encode(
    input_path: str | Path,
    output_path: str | Path,
    cfg: dict[str, Any],
    *,
    plain: bool = False,
    model: SaliencyModel | None = None,
    track: SaliencyTrack | None = None,
    progress: ProgressFactory = no_progress,
    on_event: EventSink = _quiet,
    model_dir: Path | None = None,
    overwrite: bool = True,
    _pass: int = 0,
    _stats: str | None = None,
) -> EncodeResult:
    """Encode ``input_path`` to ``output_path`` with ROI from saliency (or plain).

    ``overwrite=False`` refuses an existing output (OutputError) before any work; an output that
    is the input is always refused.
    """
    t0 = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    if not _pass:
        check_outputs([output_path], [input_path], overwrite=overwrite)
    enc = cfg["encoder"]
    codec = check_encoder(enc, plain)
    _check_muxable(None, codec, output_path)
    notes: list[str] = []
    opts, bit_rate = encoder_options(cfg, plain, notes, pass_no=_pass, stats=_stats)
    if cfg["rate_control"].get("two_pass") and not _pass:
        return _two_pass(input_path, output_path, cfg, plain=plain, model=model, track=track, progress=progress,
                         on_event=on_event, model_dir=model_dir, overwrite=overwrite)
    for n in notes:
        on_event(n)
    have_track = track is not None and bool(track.maps)
    if not plain and model is None and not have_track:
        sc = cfg["saliency"]
        # no busy-waiting ONNX Runtime workers: they would take CPU from the encoder (measured
        # on 2 cores: 0.77x -> 0.91x of a plain encode's throughput)
        model = SaliencyModel(sc["model"], device=sc["device"], cache_dir=model_dir, spin=False)
        if model.placeholder:
            on_event(f"model {model.spec.id!r} is a PLACEHOLDER: its output is not real saliency")
    sal = cfg["saliency"]
    policy = MapPolicy(sal) if not plain else None
    state = MapState(sal["smoothing"], track) if not plain else None
    inferences = 0
    digest = hashlib.sha256()
    rcfg = cfg["roi"]
    slots = int(rcfg["max_regions"])
    attacher = RoiAttacher(slots) if not plain else None

    n = packets_out = video_bytes = 0
    regions_total = 0
    plan_cache: tuple | None = None  # map version, regions, entries, their repr, non-zero count
    planner: roi_mod.Planner | None = None
    with VideoSource(input_path, cfg["filters"]) as src, AtomicOutputs() as outs:
        tmp = outs.add(output_path, inputs=(input_path,), overwrite=overwrite)
        try:
            out = av.open(str(tmp), "w", format=_format_for(output_path))
        except (av.error.FFmpegError, ValueError) as exc:
            raise ConfigError(f"cannot write {output_path}: no container format for {output_path.suffix!r} ({exc})") from None
        try:
            _check_muxable(out, codec, output_path)
        except ConfigError:
            out.close()
            raise
        try:
            out.metadata.update({k: v for k, v in src.container.metadata.items()})
            copies: dict[int, av.stream.Stream] = {}
            to_copy = [s for s in src.container.streams if s.type in ("audio", "subtitle")] if cfg["audio"] == "copy" else []
            for s in src.container.streams:
                if s.type not in ("audio", "subtitle", "video"):
                    on_event(f"stream #{s.index} ({s.type}) is not copied")
                elif s.type == "video" and s.index != src.stream.index:
                    on_event(f"video stream #{s.index} is not copied (only the first video stream is encoded)")
            vs = None
            pending: list[av.Packet] = []

            def add_copies() -> None:
                # after the video stream, in the input's order
                for s in to_copy:
                    try:
                        copies[s.index] = out.add_stream_from_template(s)
                    except (av.error.FFmpegError, ValueError) as exc:
                        raise ConfigError(f"cannot copy {s.type} stream #{s.index} ({s.codec_context.name}) "
                                          f"into {output_path.suffix}: {exc}; set audio: drop") from None

            def mux_copy(pkt: av.Packet) -> None:
                ost = copies.get(pkt.stream.index)
                if ost is None or pkt.dts is None:
                    return
                pkt.stream = ost
                try:
                    out.mux(pkt)
                except av.error.FFmpegError as exc:
                    raise EncodeError(f"cannot copy stream #{ost.index} into {output_path.name}: {exc}") from None

            def on_packet(pkt: av.Packet) -> None:
                if vs is None:  # muxer not started yet: hold until the encoder is open
                    pending.append(pkt)
                else:
                    mux_copy(pkt)

            # a generator: nothing runs (no thread starts) until the loop below pulls from it
            stream = items(src.frames, model=model, policy=policy, track=track,
                           lookahead=int(sal["lookahead"]), copy_packets=bool(to_copy))
            bar = progress(src.estimated_frames(), "encode" + (" (plain)" if plain else " (roi)"))
            try:
                paired = with_maps(stream, state, bool(sal["interpolate"])) if state is not None else (
                    (x, None) for x in stream)
                for item, small in paired:
                    if not isinstance(item, Item):
                        on_packet(item)
                        continue
                    frame = item.frame  # best-effort, increasing timestamps (decode stage)
                    # Decoded frames carry the source's picture types; encoders such as libx264
                    # obey them (as FFmpeg's CLI knows, which resets them): let the encoder choose.
                    frame.pict_type = PictureType.NONE
                    if vs is None:
                        vs = _add_video_stream(out, codec, cfg, frame, src, opts, bit_rate, on_event)
                        qp_scale = roi_mod.encoder_qp_scale(enc, _bit_depth(vs.codec_context.pix_fmt))
                        params = roi_mod.PlannerParams(
                            block=int(rcfg["block"] or block_size(enc)), strength=float(rcfg["strength"]),
                            max_offset=int(rcfg["max_offset"]), mode=rcfg["mode"], max_regions=slots,
                            qp_scale=qp_scale,
                        )
                        add_copies()
                        _open_checked(out, vs)
                        for pkt in pending:
                            mux_copy(pkt)
                        pending.clear()
                    if state is not None and attacher is not None:
                        if getattr(frame, "interlaced_frame", False) and n == 0 and enc in ("libx264", "libx265"):
                            on_event(f"interlaced input: {enc} skips ROI on interlaced frames")
                        inferences += item.prediction is not None
                        if plan_cache is None or plan_cache[0] != state.version:
                            # the planner hands back the same list while the block offsets stay
                            if planner is None or (planner.width, planner.height) != (frame.width, frame.height):
                                planner = roi_mod.Planner(frame.width, frame.height, params)
                            regions = planner.plan(small)
                            if plan_cache is None or regions is not plan_cache[1]:
                                entries = roi_entries(regions, enc)
                                plan_cache = (state.version, regions, entries, repr(entries).encode(),
                                              sum(1 for e in entries if e[4] != 0))
                            else:
                                plan_cache = (state.version, *plan_cache[1:])
                        _, _, entries, entries_repr, nonzero = plan_cache
                        digest.update(entries_repr)
                        regions_total += nonzero
                        frame = attacher.attach(frame, entries)
                    try:
                        for pkt in vs.encode(frame):
                            video_bytes += pkt.size
                            out.mux(pkt)
                            packets_out += 1
                    except av.error.FFmpegError as exc:
                        raise EncodeError(f"encoder {enc} failed at frame {n}: {exc}") from None
                    n += 1
                    bar.update(1)
                if vs is None:
                    raise InputError(f"{input_path}: no video frames could be decoded")
                for pkt in vs.encode(None):
                    video_bytes += pkt.size
                    out.mux(pkt)
                    packets_out += 1
            finally:
                bar.close()
                stream.close()  # stops the decode-ahead thread on errors and Ctrl-C
        finally:
            out.close()
        if packets_out != n:
            raise EncodeError(f"encoder produced {packets_out} packets for {n} frames")
        for note in src.notes():  # timestamp fix-ups, size changes, skipped packets
            notes.append(note)
            on_event(note)
        duration = _duration(src, n)
    size = output_path.stat().st_size
    res = EncodeResult(
        output=output_path, encoder=enc, roi=not plain, frames=n, seconds=time.perf_counter() - t0,
        bytes=size, video_bytes=video_bytes, duration=duration, notes=notes,
        mean_regions=regions_total / n if n else 0.0,
    )
    if state is not None:
        res.inferences = inferences
        res.roi_digest = digest.hexdigest()
        res.provider = model.provider if model else (track.provider if track else "")
        res.model = model.spec.id if model else (track.model if track else "")
        if track is not None and model is not None:
            track.inferences += inferences
            track.provider, track.model = model.provider, model.spec.id
    return res


def _two_pass(input_path: Path, output_path: Path, cfg: dict[str, Any], *, track: SaliencyTrack | None,
              **kw: Any) -> EncodeResult:
    """First pass to a throw-away file (rate statistics), second pass to the output.

    Both passes apply the same ROI: the maps of the first are reused by the second.
    """
    shared = track if track is not None else SaliencyTrack()
    with tempfile.TemporaryDirectory(prefix="vmaf-roi-2pass-") as d:
        stats = str(Path(d) / "stats.log")
        first = encode(input_path, Path(d) / ("pass1" + output_path.suffix), cfg, track=shared, _pass=1, _stats=stats,
                       **kw)
        res = encode(input_path, output_path, cfg, track=shared, _pass=2, _stats=stats, **kw)
    res.seconds += first.seconds
    res.inferences = first.inferences
    res.provider, res.model = first.provider, first.model
    res.notes = first.notes + [n for n in res.notes if n not in first.notes]
    return res


def _check_muxable(out, codec, output_path: Path) -> None:
    """The container takes the encoder's stream (webm: VP8/VP9/AV1 only): checked on an
    in-memory muxer of the same format, before any frame is decoded. ``out`` is the opened
    output, or None to check a format known from the extension (before the model loads)."""
    import io

    fmt = out.format.name if out is not None else _format_for(output_path)
    if fmt is None:
        return
    probe = av.open(io.BytesIO(), "w", format=fmt)
    try:
        probe.add_stream(codec.name)
    except (av.error.FFmpegError, ValueError) as exc:
        raise ConfigError(f"cannot write {output_path.name}: {exc}; choose another extension "
                          f"(e.g. .mkv) or encoder") from None
    finally:
        probe.close()


def _format_for(path: Path) -> str | None:
    return {".mkv": "matroska", ".webm": "webm", ".mp4": "mp4", ".mov": "mov", ".ts": "mpegts",
            ".h264": "h264", ".264": "h264", ".hevc": "hevc", ".265": "hevc", ".ivf": "ivf"}.get(path.suffix.lower())


def _duration(src: VideoSource, frames: int) -> float:
    s = src.stream
    if s.duration and s.time_base:
        return float(s.duration * s.time_base)
    if src.container.duration:
        return src.container.duration / av.time_base
    r = src.rate
    return frames / float(r) if r else 0.0


def _add_video_stream(out, codec, cfg, frame: av.VideoFrame, src: VideoSource, opts, bit_rate, on_event):
    pix_fmt = choose_pix_fmt(cfg["pix_fmt"], frame.format.name, codec)
    if pix_fmt != frame.format.name:
        if cfg["pix_fmt"] == "auto":
            on_event(f"{codec.name} does not take {frame.format.name}: converting to {pix_fmt}")
        else:
            on_event(f"converting {frame.format.name} to {pix_fmt} (config pix_fmt)")
    tb = frame.time_base or src.time_base
    vs = out.add_stream(codec.name, rate=src.rate or 25)
    vs.width, vs.height, vs.pix_fmt = frame.width, frame.height, pix_fmt
    if (frame.width % 2 or frame.height % 2) and ("420" in pix_fmt or "422" in pix_fmt):
        raise InputError(f"{src.path}: {frame.width}x{frame.height} cannot be encoded as {pix_fmt} (odd size); "
                         f"add a crop or scale filter (e.g. filters: 'crop=trunc(iw/2)*2:trunc(ih/2)*2') "
                         f"or set pix_fmt: yuv444p")
    vs.time_base = tb
    vs.codec_context.time_base = tb
    cc = vs.codec_context
    for attr in ("color_range", "color_primaries", "color_trc", "colorspace"):
        try:
            setattr(cc, attr, getattr(frame, attr))
        except (AttributeError, ValueError, TypeError):
            pass
    if src.stream.sample_aspect_ratio:
        cc.sample_aspect_ratio = src.stream.sample_aspect_ratio
    cc.bit_rate = bit_rate
    vs.options = dict(opts)
    vs.metadata.update(dict(src.stream.metadata))
    rot = getattr(frame, "rotation", 0) or 0
    if rot % 360:
        # Carried over as display metadata, like a stream copy: the pixels (and so the ROI
        # coordinates) stay in the coded orientation, players rotate on display.
        vs.set_display_rotation(rot)
        on_event(f"rotation metadata ({rot}°) carried over; saliency and ROI work on the stored, unrotated frames")
    return vs
