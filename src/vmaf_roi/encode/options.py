"""Encoder settings: which encoder, its pixel format, and the AVOptions it is opened with.

Settings that would defeat ROI (x264/x265 with aq-mode 0, libx264 in constant-QP mode,
libvpx-vp9 outside realtime mode) are refused here, before any frame is decoded; options
FFmpeg would only log about are tried on a throw-away encoder (:func:`check_options`).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import av.error
import av.logging

from ..config import EncoderConfig, parse_bitrate
from ..encoders import encoder_hint, roi_encoders, roi_refusal
from ..errors import ConfigError, DeviceError, EncodeError

# FFmpeg's libvpx wrapper applies ROI only with these; lag-in-frames=0 because the ROI map is
# handed to libvpx with the frame being *submitted*, which with a lookahead is not the frame
# being encoded (measured: with the default lag the boost lands on stale positions).
VP9_ROI_OPTIONS = {"deadline": "realtime", "cpu-used": "5", "aq-mode": "0", "lag-in-frames": "0"}
TWO_PASS_ENCODERS = ("libx264", "libx265")
# Hardware encoders raise PermissionError at open when their device is missing.
HW_ENCODER_TAGS = ("nvenc", "qsv", "amf", "vaapi", "v4l2m2m", "videotoolbox", "mediacodec", "d3d12va", "vulkan")


def bit_depth(pix_fmt: str) -> int:
    for d in (16, 14, 12, 10, 9):
        if f"p{d}" in pix_fmt or f"{d}le" in pix_fmt or f"{d}be" in pix_fmt:
            return d
    return 8


def has_encoder(name: str) -> bool:
    """This FFmpeg build has an encoder called ``name``."""
    try:
        return av.codec.Codec(name, "w").type == "video"
    except (av.error.FFmpegError, ValueError, KeyError):
        return False


def check_encoder(name: str, plain: bool) -> av.codec.Codec:
    """The encoder, if this FFmpeg has it and (unless ``plain``) it honours ROI."""
    try:
        codec = av.codec.Codec(name, "w")
    except (av.error.FFmpegError, ValueError, KeyError):
        hint = encoder_hint(name, has_encoder)
        raise ConfigError(f"config encoder: {name!r} is not available in this FFmpeg build{hint}") from None
    if codec.type != "video":
        raise ConfigError(f"config encoder: {name!r} is not a video encoder")
    if not plain and codec.name != name:
        # a codec name (vp9, h264, av1): FFmpeg takes its first encoder, but the ROI checks
        # and options here go by the encoder's own name
        raise ConfigError(f"config encoder: {name!r} names a codec, not an encoder; did you mean {codec.name}?")
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
    if bit_depth(frame_fmt) > 8 and "yuv420p10le" in supported:
        return "yuv420p10le"
    return "yuv420p"


def encoder_options(cfg: EncoderConfig, plain: bool, notes: list[str], *, pass_no: int = 0,
                    stats: str | None = None) -> tuple[dict[str, str], int]:
    """AVOptions (strings) and bit_rate for the configured encoder. Refuses ROI-defeating settings.

    ``pass_no`` 1 or 2 with ``stats`` (a file path) sets up one pass of a two-pass encode.
    """
    enc = cfg.name
    rc = cfg.rate_control
    if rc.two_pass and enc not in TWO_PASS_ENCODERS:
        raise ConfigError(f"config rate_control.two_pass: supported with {', '.join(TWO_PASS_ENCODERS)}, not {enc}")
    opts: dict[str, str] = {}
    bit_rate = 0
    if enc in ("libx264", "libx265", "h264_nvenc", "hevc_nvenc", "av1_nvenc", "libsvtav1") and cfg.preset is not None:
        opts["preset"] = str(cfg.preset)
    if rc.mode == "crf":
        if enc.endswith("_nvenc"):
            opts["rc"], opts["cq"] = "vbr", str(rc.value)
        else:
            opts["crf"] = str(rc.value)
    elif rc.mode == "qp":
        if enc == "libvpx-vp9":
            opts["qmin"] = opts["qmax"] = str(int(rc.value))
        else:
            opts["qp"] = str(rc.value)
    else:
        bit_rate = parse_bitrate(rc.value)
    params = {str(k): v for k, v in cfg.params.items()}
    if enc == "libx265":
        params.setdefault("log-level", "error")  # x265 prints its banner to stderr itself
        if pass_no:
            params.update({"pass": pass_no, "stats": stats})
    if params:
        key = {"libx264": "x264-params", "libx265": "x265-params", "libsvtav1": "svtav1-params"}.get(enc)
        if key is None:
            raise ConfigError(f"config encoder_params: {enc} has no *-params string; use encoder_options")
        opts[key] = ":".join(f"{k}={fmt(v)}" for k, v in params.items())
    user = {str(k): fmt(v) for k, v in cfg.options.items()}
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
        if rc.mode == "crf":
            bit_rate = 0  # constant quality
    opts.update(user)
    if pass_no and enc == "libx264":
        opts["flags"] = f"+pass{pass_no}"
        opts["stats"] = str(stats)
    if not plain:
        aq = params.get("aq-mode", user.get("aq-mode"))
        if enc in ("libx264", "libx265") and aq is not None and str(aq) == "0":
            raise ConfigError(f"config: {enc} ignores ROI with aq-mode=0; enable adaptive quantisation (aq-mode 1-3) or use --plain")
        if enc == "libx264" and rc.mode == "qp":
            raise ConfigError("config rate_control.mode: libx264 turns adaptive quantisation off in constant-QP mode, "
                              "so it ignores ROI; use crf or bitrate")
    return opts, bit_rate


def fmt(v: Any) -> str:
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


def check_options(stream: av.VideoStream) -> None:
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
    status, message = probe_open(spec)
    if status == "device":
        raise DeviceError(f"encoder {cc.name} could not open (no usable GPU?): {message}")
    if status != "ok":
        raise EncodeError(f"encoder {cc.name} rejected its settings: {message}")


def probe_open(spec) -> tuple[str, str]:
    name, width, height, pix_fmt, time_base, rate, bit_rate, options = spec
    probe = av.codec.CodecContext.create(name, "w")
    probe.width, probe.height, probe.pix_fmt, probe.time_base = width, height, pix_fmt, time_base
    probe.framerate = rate
    probe.bit_rate = bit_rate
    old = av.logging.get_level()
    av.logging.set_level(av.logging.WARNING)
    # the capture is global (the encoder's own threads log too), so it also catches what other
    # threads log meanwhile, e.g. a decoder of the input's (corrupt.mkv's mpeg4: "header damaged",
    # "Error at MB: 2"): only messages of this encoder's context, or of none, are about its settings
    mine = (name, None, "")

    def own(logs) -> list[tuple[int, str]]:
        return [(lvl, m.strip()) for lvl, who, m in logs if who in mine]

    try:
        with av.logging.Capture(local=False) as logs:
            try:
                probe.options = options
                probe.open()
            except PermissionError as exc:
                return "device", str(exc)
            except av.error.FFmpegError as exc:
                return "error", "; ".join(m for lvl, m in own(logs) if lvl <= av.logging.ERROR) or str(exc)
    finally:
        # Restore the log level *before* the probe encoder is freed: its worker threads log
        # while it closes, and routing that into Python while this thread waits for them
        # deadlocks (seen with libx264).
        av.logging.set_level(old)
        del probe
    bad = [m for lvl, m in own(logs)
           if lvl <= av.logging.ERROR or any(s in m.lower() for s in ("error parsing", "unknown option", "invalid value", "bad option"))]
    return ("error", "; ".join(bad)) if bad else ("ok", "")
