"""The encoder/muxer stage: frames (with their side data) -> encoded packets -> the output file.

The video stream is set up from the first frame (size, pixel format, colour tags, rotation),
together with the copied audio/subtitle streams, all in the input's order and with the input
streams' tags and dispositions (as ``ffmpeg -map 0 -c copy``); packets of copied streams that
arrive before the encoder is open wait for it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import av
import av.error

from ..config import EncoderConfig
from ..decode import VideoSource
from ..errors import ConfigError, DeviceError, EncodeError, InputError, OutputError
from .options import HW_ENCODER_TAGS, bit_depth, check_options, choose_pix_fmt

EventSink = Callable[[str], None]

FORMATS = {".mkv": "matroska", ".webm": "webm", ".mp4": "mp4", ".mov": "mov", ".ts": "mpegts",
           ".h264": "h264", ".264": "h264", ".hevc": "hevc", ".265": "hevc", ".ivf": "ivf"}


def format_for(path: Path) -> str | None:
    return FORMATS.get(path.suffix.lower())


def check_muxable(codec: av.codec.Codec, output_path: Path, fmt: str | None = None) -> None:
    """The container takes the encoder's stream (webm: VP8/VP9/AV1 only): checked on an
    in-memory muxer of the same format, before any frame is decoded. ``fmt``: the opened
    output's format, or None for the one known from the extension."""
    fmt = fmt or format_for(output_path)
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


class EncoderMuxer:
    """Stage: ``encode(frame)`` for each video frame, ``copy(packet)`` for copied streams,
    ``finish()`` at the end; a context manager that closes the container.

    ``path`` is where the container is written (the atomic output's temporary file);
    ``output`` is the user's name for it (messages, format checks).
    """

    def __init__(self, path: Path, output: Path, codec: av.codec.Codec, cfg: EncoderConfig, options: dict[str, str],
                 bit_rate: int, src: VideoSource, *, copy_audio: bool, on_event: EventSink) -> None:
        self.output, self.codec, self.cfg, self.src = output, codec, cfg, src
        self.options, self.bit_rate, self.on_event = options, bit_rate, on_event
        try:
            self.container = av.open(str(path), "w", format=format_for(output))
        except (av.error.FFmpegError, ValueError) as exc:
            raise ConfigError(f"cannot write {output}: no container format for {output.suffix!r} ({exc})") from None
        try:
            check_muxable(codec, output, self.container.format.name)
        except ConfigError:
            self.container.close()
            raise
        self.container.metadata.update({k: v for k, v in src.container.metadata.items()})
        streams = src.container.streams
        self._to_copy = [s for s in streams if s.type in ("audio", "subtitle")] if copy_audio else []
        for s in streams:
            if s.type not in ("audio", "subtitle", "video"):
                on_event(f"stream #{s.index} ({s.type}) is not copied")
            elif s.type == "video" and s.index != src.stream.index:
                on_event(f"video stream #{s.index} is not copied (only the first video stream is encoded)")
        self._copies: dict[int, av.stream.Stream] = {}
        self._pending: list[av.Packet] = []
        self.stream: av.VideoStream | None = None
        self.frames = self.packets = self.video_bytes = 0

    @property
    def copies_streams(self) -> bool:
        return bool(self._to_copy)

    @property
    def started(self) -> bool:
        return self.stream is not None

    @property
    def bit_depth(self) -> int:
        assert self.stream is not None, "start() first"
        return bit_depth(self.stream.codec_context.pix_fmt)

    def __enter__(self) -> "EncoderMuxer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.container.close()

    # -- set-up -------------------------------------------------------------------------------
    def start(self, frame: av.VideoFrame) -> None:
        """Open the video stream for frames like ``frame`` and the copied streams, in the input's
        order, each with the input stream's tags and disposition (as ``ffmpeg -map 0 -c copy``)."""
        copied = {s.index for s in self._to_copy}
        for s in self.src.container.streams:
            if s.index == self.src.stream.index:
                self.stream = self._add_video_stream(frame)
                ost: av.stream.Stream = self.stream
            elif s.index in copied:
                try:
                    ost = self._copies[s.index] = self.container.add_stream_from_template(s)
                except (av.error.FFmpegError, ValueError) as exc:
                    raise ConfigError(f"cannot copy {s.type} stream #{s.index} ({s.codec_context.name}) "
                                      f"into {self.output.suffix}: {exc}; set audio: drop") from None
                ost.metadata.update(dict(s.metadata))  # language, title, handler_name, ...
            else:
                continue
            try:
                ost.disposition = s.disposition  # default, forced, hearing_impaired, ...
            except (AttributeError, ValueError, TypeError):
                pass
        assert self.stream is not None
        check_options(self.stream)
        try:
            self.container.start_encoding()
        except PermissionError as exc:
            name = self.stream.codec_context.name
            if any(h in name for h in HW_ENCODER_TAGS):
                raise DeviceError(f"encoder {name} could not open (no usable GPU?): {exc}") from None
            # a software encoder: EACCES/EPERM came from opening the output file
            raise OutputError(f"cannot write the output: {exc.strerror or exc}") from None
        except av.error.FFmpegError as exc:
            raise EncodeError(f"encoder {self.stream.codec_context.name} failed to open: {exc}") from None
        for pkt in self._pending:
            self._mux_copy(pkt)
        self._pending.clear()

    def _add_video_stream(self, frame: av.VideoFrame) -> av.VideoStream:
        cfg, src, codec, on_event = self.cfg, self.src, self.codec, self.on_event
        pix_fmt = choose_pix_fmt(cfg.pix_fmt, frame.format.name, codec)
        if pix_fmt != frame.format.name:
            if cfg.pix_fmt == "auto":
                on_event(f"{codec.name} does not take {frame.format.name}: converting to {pix_fmt}")
            else:
                on_event(f"converting {frame.format.name} to {pix_fmt} (config pix_fmt)")
        tb = frame.time_base or src.time_base
        vs = self.container.add_stream(codec.name, rate=src.rate or 25)
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
        cc.bit_rate = self.bit_rate
        vs.options = dict(self.options)
        vs.metadata.update(dict(src.stream.metadata))
        if "encoder" in vs.metadata:  # the input's encoder no longer made this stream; ffmpeg's own tag
            vs.metadata["encoder"] = f"Lavc{'.'.join(map(str, av.library_versions['libavcodec']))} {codec.name}"
        rot = getattr(frame, "rotation", 0) or 0
        if rot % 360:
            # Carried over as display metadata, like a stream copy: the pixels (and so the ROI
            # coordinates) stay in the coded orientation, players rotate on display.
            vs.set_display_rotation(rot)
            on_event(f"rotation metadata ({rot}°) carried over; saliency and ROI work on the stored, unrotated frames")
        return vs

    # -- the data -----------------------------------------------------------------------------
    def copy(self, pkt: av.Packet) -> None:
        """A packet of a copied stream; held until the encoder is open."""
        if self.stream is None:
            self._pending.append(pkt)
        else:
            self._mux_copy(pkt)

    def _mux_copy(self, pkt: av.Packet) -> None:
        ost = self._copies.get(pkt.stream.index)
        if ost is None or pkt.dts is None:
            return
        pkt.stream = ost
        try:
            self.container.mux(pkt)
        except av.error.FFmpegError as exc:
            raise EncodeError(f"cannot copy stream #{ost.index} into {self.output.name}: {exc}") from None

    def encode(self, frame: av.VideoFrame | None) -> None:
        """Encode one frame (None: flush the encoder) and mux what comes out."""
        assert self.stream is not None, "start() first"
        try:
            for pkt in self.stream.encode(frame):
                self.video_bytes += pkt.size
                self.container.mux(pkt)
                self.packets += 1
        except av.error.FFmpegError as exc:
            raise EncodeError(f"encoder {self.codec.name} failed at frame {self.frames}: {exc}") from None
        if frame is not None:
            self.frames += 1

    def finish(self) -> None:
        """Flush the encoder; every frame must have become one packet."""
        if self.stream is None:
            raise InputError(f"{self.src.path}: no video frames could be decoded")
        self.encode(None)
        if self.packets != self.frames:
            raise EncodeError(f"encoder produced {self.packets} packets for {self.frames} frames")
