"""Decode stage: open any input PyAV can read and run an FFmpeg filter chain over its video.

>>> with VideoSource("in.mp4", filters="scale=1280:720,fps=30") as src:
...     for frame in src.frames():     # av.VideoFrame after the chain, timestamps as ffmpeg's
...         ...
...     notes = src.notes()            # one line per timestamp/size fix-up, for the CLI to show

Timestamps are those the ffmpeg CLI works with, so every consumer (encode, saliency maps, score)
sees the same ones:

* packets as the file has them: PyAV's default ``AVFMT_FLAG_GENPTS`` (made-up packet pts, which
  the ffmpeg CLI does not use) is turned off;
* the decoder's *best-effort* timestamp (libavcodec ``decode.c: guess_correct_pts``), which
  PyAV does not expose: the frame's reordered pts unless they have gone backwards more often
  than the packet dts, then the dts; and where neither is set, the previous timestamp plus a
  frame duration (``fftools/ffmpeg_dec.c``);
* then, after the filter chain, the check ffmpeg's ``-fps_mode vfr`` does before the encoder
  (``fftools/ffmpeg_filter.c: video_sync_process``), in units of the stream's frame rate: a
  frame that does not come after the previous one is moved to the next free frame slot when its
  duration still reaches past the previous frame, and dropped when it lies wholly before it.
  Timestamps that increase are kept exactly (ffmpeg would round them to the frame-rate grid);
* a frame size or pixel format change mid-stream is scaled back to the first frame's (what
  ffmpeg's default ``-autoscale`` does), so the encoder and the maps keep one size;
* packets the decoder rejects are skipped and counted, as ffmpeg does without ``-xerror``.

With ``motion=True`` (``saliency.carry: motion``) a decoder that exports motion vectors
(:data:`vmaf_roi.carry.MV_DECODERS`: H.264, MPEG-4 part 2 and the mpegvideo family) is opened
with ``flags2=+export_mvs``, and each frame's picture type and vectors are read right after
decoding, before any fix-up: :meth:`VideoSource.motion` gives those of the frame last handed
out (PyAV frames take no attributes). They are only valid while every output frame is one
decoded frame of the same picture, so they are used only with no filter chain or one that
changes size or pixel format alone (:data:`MOTION_SAFE_FILTERS`); otherwise, or without such
a decoder, :meth:`VideoSource.motion` gives None, with one note.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import av.error
import av.filter
import numpy as np

from . import carry
from .errors import ConfigError, InputError

# filters that keep every frame, its timing and the whole picture (size and format only): the
# decoder's motion vectors still describe their output frames
MOTION_SAFE_FILTERS = frozenset({"null", "copy", "scale", "format", "setsar", "setdar"})


@dataclass(frozen=True)
class FrameMotion:
    """What the decoder exported for one frame: its picture type and motion vectors."""

    pict_type: str  # 'I', 'P', 'B', ... ('' unknown), as carry.picture_type gives it
    vectors: np.ndarray | None  # FFmpeg's AVMotionVector rows, None when it carries none
    width: int  # the decoded frame's size: the vectors' coordinates
    height: int


def split_chain(chain: str) -> list[tuple[str, str | None]]:
    """'scale=640:360,fps=30' -> [('scale', '640:360'), ('fps', '30')].

    Commas inside single quotes or escaped with a backslash do not split (as in FFmpeg).
    Only linear chains are supported: no labels, no ';'.
    """
    parts, buf, quoted, esc = [], [], False, False
    for ch in chain:
        if esc:
            buf.append(ch)
            esc = False
        elif ch == "\\":
            buf.append(ch)
            esc = True
        elif ch == "'":
            buf.append(ch)
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    out: list[tuple[str, str | None]] = []
    for p in parts:
        p = p.strip()
        if not p:
            raise ConfigError(f"filter chain {chain!r} has an empty filter")
        if ";" in p or p.startswith("["):
            raise ConfigError(f"filter chain {chain!r}: only a linear chain (a,b,c) is supported, not labels or ';'")
        name, _, args = p.partition("=")
        if not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise ConfigError(f"filter chain {chain!r}: bad filter name {name!r}")
        out.append((name, args or None))
    return out


def check_filters(chain: str | None) -> list[tuple[str, str | None]]:
    """Parse a chain and make sure this FFmpeg build has every filter in it."""
    if not chain:
        return []
    parsed = split_chain(chain)
    available = av.filter.filters_available
    for name, _ in parsed:
        if name not in available:
            raise ConfigError(f"filter {name!r} is not available in this FFmpeg build (PyAV {av.__version__})")
    return parsed


def open_input(path: str | Path) -> av.container.InputContainer:
    """Open a media file, turning every failure into one clear InputError."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a video file")
    if not p.is_file():  # a FIFO, socket or device: the passes here need a file they can reopen
        raise InputError(f"{p}: not a regular file (a FIFO, socket or device); give a file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: file is empty (0 bytes)")
    try:
        container = av.open(str(p), "r")
    except av.error.FFmpegError as exc:
        raise InputError(f"{p}: not a readable media file ({exc.strerror or exc})") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{p}: has no video stream")
    # PyAV opens with AVFMT_FLAG_GENPTS, the ffmpeg CLI without. With it libavformat makes up a
    # pts for each packet that has none, from the stream's reorder delay; for MPEG-4 part 2 with
    # packed B-frames in AVI that order is wrong (Megamind.avi: packet pts 1, 2, 4, 3, ..., so
    # frames 3 and 4 decode with pts 5 and 4, the best-effort guess turns to the dts one frame
    # late, two frames share timestamp 5 and -fps_mode vfr drops one: 269 frames, ffmpeg 270).
    # Without it the packets carry what the file has (dts only), as in ffmpeg.
    container.flags &= ~AVFMT_FLAG_GENPTS
    return container


AVFMT_NOTIMESTAMPS = 0x0080  # libavformat/avformat.h
AVFMT_FLAG_GENPTS = 0x0001  # libavformat/avformat.h


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


class BestEffortPts:
    """libavcodec's ``guess_correct_pts``: pick pts or dts, whichever has gone backwards less."""

    def __init__(self) -> None:
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts: int | None = None
        self.last_dts: int | None = None
        self.used_dts = 0  # frames whose pts was overruled by the dts (pts gone backwards)
        self.no_pts = 0  # frames timed by the dts because they had no pts (AVI: the container has none)

    def __call__(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        elif pts is not None:
            self.last_dts = pts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        elif dts is not None:
            self.last_pts = dts
        if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None):
            return pts
        if dts is not None and pts is None:
            self.no_pts += 1
        elif dts is not None and dts != pts:
            self.used_dts += 1
        return dts


class VfrSync:
    """ffmpeg's ``-fps_mode vfr`` decision per frame: keep, move to the next slot, or drop.

    Works in frame-rate units like ffmpeg's encoder time base (1/rate). Timestamps that
    increase are returned unchanged.
    """

    def __init__(self, rate: Fraction) -> None:
        self.rate = rate
        self.last: int | None = None  # last timestamp handed out (stream time base)
        self.next_slot = 0  # ffmpeg's next_pts, in frame-rate units
        self.moved = self.dropped = 0

    def __call__(self, pts: int, duration: int, tb: Fraction) -> int | None:
        """The timestamp to use for this frame, or None to drop it."""
        sync = float(pts * tb * self.rate)
        dur = float(duration * tb * self.rate) if duration > 0 else 1.0
        if self.last is None or pts > self.last:
            self.last = pts
            self.next_slot = round(sync) + 1
            return pts
        delta0 = sync - self.next_slot
        delta = delta0 + dur
        if delta0 < 0 < delta:  # ffmpeg clips the part before the next slot
            delta0 = 0.0
        if delta <= -0.6:
            self.dropped += 1
            return None
        slot = self.next_slot
        if delta > 0.6 and delta0 > 0:
            slot = round(sync)
        self.next_slot = slot + 1
        out = max(self.last + 1, math.ceil(Fraction(slot) / self.rate / tb))
        self.last = out
        self.moved += 1
        return out


class _HeldPackets:
    """Packets of other streams, held back until the video has been decoded up to their time."""

    LIMIT = 20000  # beyond this many (a video stream with a long gap) the oldest go out anyway

    def __init__(self, out: Callable[[av.Packet], None]) -> None:
        self.out = out
        self.q: deque[tuple[float | None, av.Packet]] = deque()

    def put(self, pkt: av.Packet) -> None:
        ts = pkt.pts if pkt.pts is not None else pkt.dts
        t = float(ts * pkt.time_base) if ts is not None and pkt.time_base else None
        self.q.append((t, pkt))
        while len(self.q) > self.LIMIT:
            self.out(self.q.popleft()[1])

    def release(self, upto: float | None = None, before: float | None = None) -> None:
        """Hand out the packets up to ``upto`` (all when None); with ``before``, hand out those
        that start before it and drop the rest (the video ended there)."""
        q = self.q
        if before is not None:
            for t, pkt in q:
                if t is None or t < before:
                    self.out(pkt)
            q.clear()
            return
        while q and (upto is None or q[0][0] is None or q[0][0] <= upto):
            self.out(q.popleft()[1])


def estimated_frames(container, stream) -> int | None:
    """A video stream's frame count from the header, or from its (else the container's)
    duration x frame rate; None if unknown (progress totals only: the decode counts)."""
    if stream.frames:
        return int(stream.frames)
    dur = None
    if stream.duration is not None and stream.time_base:
        dur = float(stream.duration * stream.time_base)
    elif container.duration:
        dur = container.duration / av.time_base
    rate = stream.average_rate or stream.guessed_rate
    if dur and rate:
        return max(1, math.ceil(dur * float(rate) - 1e-6))
    return None


class VideoSource:
    """The first video stream of a file, decoded and passed through a filter chain."""

    def __init__(self, path: str | Path, filters: str | None = None, *, threads: bool = True,
                 motion: bool = False, start: float | None = None, duration: float | None = None,
                 max_frames: int | None = None) -> None:
        self.path = Path(path)
        # a segment, as ffmpeg's input options -ss START -t DURATION and the output's -frames:v
        self.start = float(start) if start else None
        self.duration = None if duration is None else float(duration)
        self.max_frames = max_frames
        self.seeked_to: float | None = None  # input time (s) of the first frame decoded after the seek
        self.segment_offset: Fraction | None = None  # input time (s) of the segment's first frame: its 0
        self.dropped_before = 0  # frames decoded between the keyframe sought to and START (dropped)
        self.seek_failed: str | None = None
        self._chain = check_filters(filters)
        self.container = open_input(self.path)
        self.stream = self.container.streams.video[0]
        if threads:
            self.stream.thread_type = "AUTO"
        cc = self.stream.codec_context
        if not cc.width or not cc.height:
            self.container.close()
            raise InputError(f"{self.path}: video stream has no frame size (corrupt header?)")
        self._graph: av.filter.Graph | None = None
        self.decoded = 0
        self.best_effort = BestEffortPts()
        # ffmpeg's encoder time base comes from av_guess_frame_rate (PyAV: guessed_rate), 25 if none
        guess = self.stream.guessed_rate or self.stream.average_rate
        self.sync = VfrSync(Fraction(guess) if guess else Fraction(25))
        self.filled = 0  # frames without any timestamp, given the previous one + a duration
        self.filled_at_end = 0  # the same, for frames out of the decoder's drain (not noted)
        self.decode_errors = 0  # packets the decoder rejected (skipped, as ffmpeg does)
        self.rescaled = 0  # frames scaled back to the first frame's size/format
        self.demux_error: str | None = None
        # input time (s) of the first frame the filter chain no longer took (it had ended: trim,
        # a frame limit), None when it took them all
        self.ended_by_filter: float | None = None
        self._copying = False  # frames() was given on_packet: other streams are being copied
        self._graph_eof = False  # the filter graph's sink has signalled its end
        self._decode_error = ""
        self._first: tuple[int, int, str] | None = None
        # formats without timestamps (raw streams): ffmpeg ignores what the demuxer made up
        self._ts_unreliable = bool(self.container.format.flags & AVFMT_NOTIMESTAMPS)
        self._motion_on = False
        self._motion_note: str | None = None
        self._motion_q: deque[tuple[int, FrameMotion]] = deque()  # decoded, not yet handed out
        self._motion_last: FrameMotion | None = None
        if motion:
            self._enable_motion(cc)

    def _enable_motion(self, cc) -> None:
        name = self.path.name
        fallback = "maps between inferences are blended (or held) as with saliency.carry none"
        unsafe = [f for f, _ in self._chain if f not in MOTION_SAFE_FILTERS]
        if cc.name not in carry.MV_DECODERS:
            self._motion_note = (f"{name}: the {cc.name} decoder exports no motion vectors (H.264, MPEG-4 part 2, "
                                 f"H.263 and MPEG-1/2 do); {fallback}")
        elif unsafe:
            self._motion_note = (f"{name}: filter {unsafe[0]} may change the frames' timing or picture, so the "
                                 f"decoder's motion vectors would not fit them; {fallback}")
        else:
            cc.options = dict(cc.options or {}) | carry.EXPORT_MVS  # before the decoder opens
            # With frame threading the exported vectors differ from run to run (measured with
            # FFmpeg 8.1's H.264 decoder: 15 decodes of one clip, 6 different vector sets; slice
            # threading: always the same), and the maps must not: no frame threads here.
            self.stream.thread_type = "SLICE"
            self._motion_on = True

    @property
    def has_motion(self) -> bool:
        """Motion vectors are being read (``motion=True`` and a decoder and chain that allow it)."""
        return self._motion_on

    @property
    def motion_note(self) -> str | None:
        """Why motion vectors are not (or no longer) used, when ``motion=True``; also in :meth:`notes`."""
        return self._motion_note

    def motion(self) -> FrameMotion | None:
        """Picture type and motion vectors of the frame :meth:`frames` handed out last."""
        return self._motion_last

    def _motion_off(self, why: str) -> None:
        self._motion_on = False
        self._motion_q.clear()
        self._motion_last = None
        self._motion_note = (f"{self.path.name}: {why}: from there on maps between inferences are blended (or "
                             f"held) as with saliency.carry none")

    # -- metadata -----------------------------------------------------------------------
    @property
    def time_base(self) -> Fraction:
        return self.stream.time_base or Fraction(1, 1000)

    @property
    def rate(self) -> Fraction | None:
        r = self.stream.average_rate or self.stream.guessed_rate
        return Fraction(r) if r else None

    def notes(self) -> list[str]:
        """One line per kind of fix-up done so far (empty for a well-formed file)."""
        out = []
        name = self.path.name
        be, sync = self.best_effort, self.sync
        ts = []
        if be.used_dts:
            ts.append(f"{_n(be.used_dts, 'frame')} timed by dts (pts went backwards {_n(be.faulty_pts, 'time')})")
        if self.filled:
            ts.append(f"{_n(self.filled, 'frame')} had none, each got the previous one plus a frame duration")
        if sync.dropped or sync.moved:
            ts.append(f"{sync.dropped} dropped and {sync.moved} moved to the next frame slot (not after the previous frame)")
        if ts:
            out.append(f"{name}: timestamps fixed as ffmpeg does (best-effort, -fps_mode vfr): {'; '.join(ts)}")
        if self.rescaled:
            w, h, fmt = self._first or (0, 0, "")
            out.append(f"{name}: frame size or format changed mid-stream; {_n(self.rescaled, 'frame')} scaled "
                       f"back to the first frame's {w}x{h} {fmt} (as ffmpeg's -autoscale)")
        if self.decode_errors:
            out.append(f"{name}: {_n(self.decode_errors, 'packet')} could not be decoded and "
                       f"{'was' if self.decode_errors == 1 else 'were'} skipped (as ffmpeg)")
        if self._motion_note:
            out.append(self._motion_note)
        if self.demux_error:
            out.append(f"{name}: reading stopped early ({self.demux_error}); the frames before it were used")
        elif self.ended_by_filter is not None:
            others = [s for s in self.container.streams if s.index != self.stream.index
                      and s.type in ("audio", "subtitle")]
            if self._copying and others:
                out.append(f"{name}: the filter chain ended the video at {self.ended_by_filter:.3f} s of the input; "
                           f"reading stopped there, so the copied audio/subtitles end there too")
        elif not self.decode_errors and not (self.start or self.duration is not None or self.max_frames):
            # FFmpeg's demuxers end quietly at a cut or damaged spot (ffmpeg only logs it)
            est = self.estimated_frames()
            if est and self.decoded and self.decoded < 0.9 * est and est - self.decoded >= 2:
                out.append(f"{name}: only {self.decoded} of the about {est} frames its header announces could be "
                           f"read (truncated or damaged file?); the frames read were used, as ffmpeg does")
        return out

    def estimated_frames(self) -> int | None:
        """Frame count from the header or from duration x rate; None if unknown."""
        return estimated_frames(self.container, self.stream)

    # -- frames ---------------------------------------------------------------------------
    def _build_graph(self, first: av.VideoFrame) -> av.filter.Graph:
        g = av.filter.Graph()
        src = g.add_buffer(
            width=first.width, height=first.height, format=first.format.name,
            time_base=first.time_base or self.time_base,
        )
        nodes = [src]
        for name, args in self._chain:
            try:
                nodes.append(g.add(name, args) if args else g.add(name))
            except (av.error.FFmpegError, ValueError) as exc:
                raise ConfigError(f"filter {name}={args or ''}: {exc}") from None
        nodes.append(g.add("buffersink"))
        g.link_nodes(*nodes)
        try:
            g.configure()
        except av.error.FFmpegError as exc:
            raise ConfigError(f"filter chain could not be configured: {exc}") from None
        return g

    def _seek(self) -> None:
        """To the keyframe at or before START, as ffmpeg's input ``-ss`` does (avformat_seek_file
        to the time relative to the file's start time; 3/23 s earlier, as ffmpeg does for formats
        that seek by dts, here always: at worst one more group of pictures is decoded)."""
        cst = (self.container.start_time or 0) / av.time_base
        target = max(0.0, self.start + cst - 3 / 23)
        try:
            self.container.seek(int(target * av.time_base), backward=True)
        except av.error.FFmpegError as exc:  # not seekable: decoded from the start, frames dropped
            self.seek_failed = exc.strerror or str(exc)
            self.container.close()
            self.container = open_input(self.path)
            self.stream = self.container.streams.video[0]
            self.stream.thread_type = "SLICE" if self._motion_on else "AUTO"
            if self._motion_on:
                self.stream.codec_context.options = dict(self.stream.codec_context.options or {}) | carry.EXPORT_MVS

    def _segment(self, frames: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
        """ffmpeg's accurate seek and input ``-t``: frames before START are dropped, the first one
        kept becomes time 0 (all later ones shifted by the same amount), and the segment ends
        before the first frame DURATION or more after it (ffmpeg's trim counts from the first
        frame it keeps, so a frame a little after START + DURATION can still be in)."""
        cst = Fraction(self.container.start_time or 0, av.time_base)
        start = Fraction(self.start or 0) + cst
        offset: int | None = None
        end: Fraction | None = None
        for frame in frames:
            tb = Fraction(frame.time_base or self.time_base)
            t = frame.pts * tb
            if self.seeked_to is None:
                self.seeked_to = float(t - cst)
            mot = self._motion_q.pop() if self._motion_on and self._motion_q else None  # this frame's
            if offset is None:
                if t < start:
                    self.dropped_before += 1
                    continue
                offset = frame.pts
                self.segment_offset = t - cst
                if self.duration is not None:
                    end = t + Fraction(self.duration)
            if end is not None and t >= end:
                return
            frame.pts -= offset
            if mot is not None:
                self._motion_q.append((mot[0] - offset, mot[1]))
            yield frame

    def _decoded(self, on_packet: Callable[[av.Packet], None] | None = None) -> Iterator[av.VideoFrame]:
        if self.start or self.duration is not None or self.max_frames is not None:
            if self.start:
                self._seek()
            inner = self._decoded_all(on_packet)
            try:
                yield from self._segment(inner)
            finally:
                inner.close()
            return
        yield from self._decoded_all(on_packet)

    def _decoded_all(self, on_packet: Callable[[av.Packet], None] | None = None) -> Iterator[av.VideoFrame]:
        streams = self.container.streams if on_packet else [self.stream]
        demux = self.container.demux(*streams)
        last: int | None = None
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                # ffmpeg ends the input here and encodes what it has; so do we (with a note),
                # after draining the decoder
                self.demux_error = exc.strerror or str(exc)
                packet = None
            if packet is not None and packet.stream.index != self.stream.index:
                on_packet(packet)  # type: ignore[misc]
                continue
            try:
                frames = self.stream.codec_context.decode(packet) if packet is not None else self._drain_decoder()
            except av.error.FFmpegError as exc:
                self.decode_errors += 1
                self._decode_error = exc.strerror or str(exc)
                continue
            for frame in frames:
                self.decoded += 1
                draining = packet is None or not packet.size  # PyAV ends demux with empty flush packets
                mot = None
                if self._motion_on:  # read before any fix-up: a rescaled frame has no side data
                    vec = carry.motion_vectors(frame)  # a view into the frame's side data: copied
                    mot = FrameMotion(carry.picture_type(frame), None if vec is None else vec.copy(),
                                      frame.width, frame.height)
                fixed = self._fix(frame, last, draining)
                last = fixed.pts
                if mot is not None and self._motion_on:
                    self._motion_q.append((fixed.pts, mot))
                yield fixed
            if packet is None:
                break
        if self.decoded == 0 and self.demux_error:
            raise InputError(f"{self.path}: not readable ({self.demux_error})")
        if self.decoded == 0 and self.decode_errors:
            raise InputError(f"{self.path}: no frame could be decoded: the {self.stream.codec_context.name} decoder "
                             f"rejected all {self.decode_errors} packets ({self._decode_error})")

    def _drain_decoder(self) -> list[av.VideoFrame]:
        try:
            return self.stream.codec_context.decode(None)
        except av.error.FFmpegError:
            return []

    def _fix(self, frame: av.VideoFrame, last: int | None, draining: bool = False) -> av.VideoFrame:
        """Best-effort timestamp (filled in where missing) and the first frame's size and format."""
        tb = frame.time_base or self.time_base
        pts = None if self._ts_unreliable else self.best_effort(frame.pts, frame.dts)
        if pts is None:
            # A frame the decoder still held at the end has no packet, so no dts: in a container
            # without pts (AVI with B-frames) that is the normal last frame, not a fix-up to note.
            if draining and last is not None and not self._ts_unreliable and frame.pts is None:
                self.filled_at_end += 1
            else:
                self.filled += 1
            rate = self.stream.codec_context.framerate if self._ts_unreliable else None
            rate = rate or self.rate
            step = (frame.duration if not self._ts_unreliable else 0) or (round(1 / (rate * tb)) if rate else 1)
            pts = 0 if last is None else last + max(1, step)
        key = (frame.width, frame.height, frame.format.name)
        if self._first is None:
            self._first = key
        elif key != self._first:
            self.rescaled += 1
            w, h, fmt = self._first
            duration = frame.duration
            frame = frame.reformat(w, h, fmt, interpolation="BICUBIC")
            frame.duration = duration
        frame.pts, frame.time_base = pts, tb
        return frame

    def _synced(self, frames: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
        for frame in frames:
            tb = frame.time_base or self.time_base
            if self._motion_on:
                # one decoded frame per output frame, in order: anything else means the
                # vectors no longer describe the frames handed out
                got = self._motion_q.popleft() if self._motion_q else None
                if got is None or got[0] != frame.pts:
                    self._motion_off("the filter chain changed the frames' timing")
                else:
                    self._motion_last = got[1]
            pts = self.sync(frame.pts, frame.duration or 0, tb)
            if pts is None:
                if self._motion_on:  # the frame distances the vectors span no longer hold
                    self._motion_off("a frame was dropped (timestamp not after the previous one)")
                continue
            frame.pts = pts
            yield frame

    def frames(self, on_packet: Callable[[av.Packet], None] | None = None) -> Iterator[av.VideoFrame]:
        """Decoded (and filtered) frames; packets of other streams go to ``on_packet`` if given.

        When the filter chain ends before the input does (``trim``, a frame limit), reading stops
        there: packets of other streams are handed out up to the input time where the video
        ended (those that start before it), not to the input's end as ``ffmpeg -c:a copy`` would.
        """
        self._copying = on_packet is not None
        out = self._synced(self._filtered(on_packet))
        if self.max_frames is None:
            yield from out
            return
        try:
            for n, frame in enumerate(out, 1):
                yield frame
                if n >= self.max_frames:
                    return
        finally:
            out.close()

    def _filtered(self, on_packet: Callable[[av.Packet], None] | None) -> Iterator[av.VideoFrame]:
        if not self._chain:
            yield from self._decoded(on_packet)
            return
        # The chain may end before the input (trim, a frame limit): packets of other streams wait
        # until the video has been decoded up to their time, so that those after the video's end
        # can be left out.
        held = _HeldPackets(on_packet) if on_packet else None
        graph = None
        decoded = self._decoded(held.put if held else None)
        last_t: float | None = None
        try:
            for frame in decoded:
                if graph is None:
                    graph = self._graph = self._build_graph(frame)
                t = float(frame.pts * (frame.time_base or self.time_base))
                if not self._push(graph, frame):
                    # The chain has ended: what is in it still comes out, then decoding stops,
                    # as ffmpeg stops reading an input whose filter graph is done. The frame
                    # pushed before this one ended it (the first one the chain left out).
                    self.ended_by_filter = t if last_t is None else last_t
                    if held:
                        held.release(before=self.ended_by_filter)
                    break
                last_t = t
                if held:
                    held.release(upto=t)
                yield from self._drain(graph)
                if self._graph_eof:  # the sink says so before the source does (a trim at the end)
                    self.ended_by_filter = t
                    if held:
                        held.release(before=t)
                    break
            else:
                if held:
                    held.release()
                if graph is not None:
                    self._push(graph, None)
            if graph is not None:
                yield from self._drain(graph)
        finally:
            decoded.close()

    @staticmethod
    def _push(graph: av.filter.Graph, frame: av.VideoFrame | None) -> bool:
        """Push a frame (None: end of input); False when the graph has already ended."""
        try:
            graph.push(frame)
        except av.error.EOFError:
            return False
        return True

    def _drain(self, graph: av.filter.Graph) -> Iterator[av.VideoFrame]:
        while True:
            try:
                yield graph.pull()
            except av.error.BlockingIOError:
                return
            except av.error.EOFError:
                self._graph_eof = True
                return

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- segments ------------------------------------------------------------------------------
TIME_RE = re.compile(r"(-)?(?:(?:(\d+):)?(\d+):)?(\d+(?:\.\d*)?|\.\d+)(s|ms|us)?")


def parse_time(text: str, option: str = "time") -> float:
    """A time or duration as ffmpeg reads one (``av_parse_time``): seconds (``90``, ``1.5``,
    ``1500ms``) or ``[HH:]MM:SS[.m...]``; ConfigError (one line) for anything else."""
    m = TIME_RE.fullmatch(str(text).strip())
    if not m or (m.group(5) and m.group(3) is not None):
        raise ConfigError(f"{option} {text!r}: not a time; give seconds (e.g. 90 or 1.5) or [HH:]MM:SS[.ms] "
                          f"(e.g. 01:30 or 00:01:30.5), as ffmpeg takes them")
    neg, hh, mm, ss, unit = m.groups()
    if mm is not None and (int(mm) >= 60 or float(ss) >= 60):
        raise ConfigError(f"{option} {text!r}: minutes and seconds go up to 59 in [HH:]MM:SS")
    v = float(ss) * {"ms": 1e-3, "us": 1e-6}.get(unit or "", 1.0)
    v += 60 * int(mm or 0) + 3600 * int(hh or 0)
    if neg:
        raise ConfigError(f"{option} {text!r}: a negative time is not taken here")
    return v


@dataclass
class Segment:
    """ffmpeg's ``-ss START`` / ``-t DURATION`` / ``-to END`` (input options) and ``-frames:v N``."""

    start: float | None = None
    duration: float | None = None
    max_frames: int | None = None

    def __bool__(self) -> bool:
        return bool(self.start) or self.duration is not None or self.max_frames is not None

    @classmethod
    def from_options(cls, ss: str | None, t: str | None, to: str | None, frames: int | None) -> "Segment":
        start = parse_time(ss, "-ss") if ss is not None else None
        if t is not None and to is not None:
            raise ConfigError("-t and -to: give one (a duration, or the time to stop at)")
        duration = parse_time(t, "-t") if t is not None else None
        if to is not None:
            end = parse_time(to, "-to")
            if end <= (start or 0):
                raise ConfigError(f"-to {to}: must come after -ss {ss or 0}")
            duration = end - (start or 0)
        if duration is not None and duration <= 0:
            raise ConfigError(f"-t {t}: the duration must be more than 0")
        if frames is not None and frames < 1:
            raise ConfigError(f"-frames:v {frames}: expected a number of frames >= 1")
        return cls(start or None, duration, frames)

    def describe(self) -> str:
        parts = []
        if self.start:
            parts.append(f"-ss {self.start:g}")
        if self.duration is not None:
            parts.append(f"-t {self.duration:g}")
        if self.max_frames is not None:
            parts.append(f"-frames:v {self.max_frames}")
        return " ".join(parts)


@dataclass
class CutResult:
    path: Path
    frames: int
    offset: float  # input time of the cut's first frame (its time 0)
    decoded: int  # frames decoded, the ones before the segment's start included
    seeked_to: float | None  # input time of the first frame decoded after the seek
    streams_copied: int  # audio/subtitle streams copied along
    notes: list[str]


# FFV1 takes most formats as they are; these few are stored in the nearest one it takes
_FFV1_AS = {"yuvj420p": "yuv420p", "yuvj422p": "yuv422p", "yuvj444p": "yuv444p", "yuvj440p": "yuv440p",
            "nv12": "yuv420p", "nv21": "yuv420p", "nv16": "yuv422p", "p010le": "yuv420p10le",
            "rgb24": "bgr0", "bgr24": "bgr0", "rgba": "bgra", "argb": "bgra", "abgr": "bgra", "rgb0": "bgr0",
            "0rgb": "bgr0", "0bgr": "bgr0"}


def chroma_shifts(fmt: str) -> tuple[int, int]:
    """log2 of the horizontal and vertical chroma subsampling of pixel format ``fmt`` ((1, 1) for
    4:2:0; (0, 0) for 4:4:4, RGB and gray)."""
    import av

    comps = av.video.format.VideoFormat(fmt, 64, 64).components
    if len(comps) < 2:
        return 0, 0
    return (64 // comps[1].width).bit_length() - 1, (64 // comps[1].height).bit_length() - 1


def ffv1_options(fmt: str, width: int, height: int) -> dict[str, str]:
    """FFV1 encoder options for lossless intermediates: level 3 in 4 slices (2x2), where FFV1 can
    split the picture so; without ``slices`` (FFV1's own choice) where it cannot. For FFV1
    before version 4, ``ffv1enc.c`` refuses a split whose last slice would start on an odd
    chroma sample (``ff_need_new_slices``), e.g. 4:2:0 at 96x71: "Unsupported number 4 of slices"."""
    hs, vs = chroma_shifts(fmt)

    def need_new(n: int, shift: int) -> bool:  # ff_need_new_slices(n, 2, shift)
        mpw = 1 << shift
        return bool(n % mpw) and (n - n // 2) % mpw == 0

    opts = {"level": "3", "threads": "auto"}
    if not (need_new(width, hs) or need_new(height, vs)):
        opts["slices"] = "4"
    return opts


def cut_segment(path: str | Path, out: str | Path, segment: Segment, *, audio: bool = True) -> CutResult:
    """Cut ``segment`` of ``path`` to ``out`` (Matroska): the video losslessly as FFV1 (its
    frames exactly as decoded, in the same pixel format where FFV1 takes it), timestamps from 0;
    with ``audio``, the audio and subtitle packets of the segment copied as they are (from the
    first one at or after the segment's first frame to the last one starting before its end).

    Decoding starts at the keyframe before the segment (:class:`VideoSource` seeks), not at the
    start of the file.
    """
    out = Path(out)
    notes: list[str] = []
    src = VideoSource(path, start=segment.start, duration=segment.duration, max_frames=segment.max_frames)
    try:
        ffv1 = av.codec.Codec("ffv1", "w")
        ok = {f.name for f in ffv1.video_formats}
        with av.open(str(out), "w", format="matroska") as dst:
            others: dict[int, av.stream.Stream] = {}
            carried = [s for s in src.container.streams if audio and s.index != src.stream.index
                       and s.type in ("audio", "subtitle")]
            held: list[av.Packet] = []
            ostream = None
            fmt_note = None
            last_end: Fraction | None = None
            n = 0

            def put(pkt: av.Packet) -> None:
                if pkt.stream.index in others or ostream is None:
                    held.append(pkt)

            def flush(upto: Fraction | None) -> None:
                """Write the held packets that start in [0, upto) of the segment (all when None)."""
                nonlocal held
                keep = []
                off = src.segment_offset
                if off is None:
                    return
                cst = Fraction(src.container.start_time or 0, av.time_base)
                for pkt in held:
                    ts = pkt.pts if pkt.pts is not None else pkt.dts
                    if ts is None or not pkt.time_base:
                        continue
                    t = ts * Fraction(pkt.time_base) - cst - off
                    if upto is not None and t >= upto:
                        keep.append(pkt)
                        continue
                    if t < 0:
                        continue
                    shift = int(round(off / Fraction(pkt.time_base)))  # back to the packet's time base
                    shift += int(round(cst / Fraction(pkt.time_base)))
                    if pkt.pts is not None:
                        pkt.pts -= shift
                    if pkt.dts is not None:
                        pkt.dts -= shift
                    pkt.stream = others[pkt.stream.index]
                    dst.mux(pkt)
                held = keep

            for frame in src.frames(on_packet=put if carried else None):
                if ostream is None:
                    fmt = frame.format.name
                    target = fmt if fmt in ok else _FFV1_AS.get(fmt, "yuv444p")
                    if target != fmt:
                        fmt_note = (f"{src.path.name}: the segment's frames are stored as {target} "
                                    f"(FFV1 does not take {fmt})")
                    ostream = dst.add_stream("ffv1", rate=src.rate or Fraction(25))
                    ostream.width, ostream.height, ostream.pix_fmt = frame.width, frame.height, target
                    ostream.time_base = Fraction(1, 1000)
                    ostream.codec_context.time_base = frame.time_base
                    ostream.options = ffv1_options(target, frame.width, frame.height)
                    occ, icc = ostream.codec_context, src.stream.codec_context
                    for attr in ("colorspace", "color_primaries", "color_trc"):  # the tags, as they were
                        try:
                            setattr(occ, attr, getattr(icc, attr))
                        except (AttributeError, TypeError, ValueError):
                            pass
                    if frame.color_range:
                        occ.color_range = frame.color_range
                    full = fmt.startswith("yuvj")
                    for st in carried:  # after the video, so that it is the first stream
                        try:
                            others[st.index] = dst.add_stream_from_template(st)
                        except (av.error.FFmpegError, ValueError) as exc:
                            notes.append(f"{src.path.name}: {st.type} stream {st.index} ({st.codec_context.name}) "
                                         f"not carried into the segment ({exc})")
                    held = [pk for pk in held if pk.stream.index in others]
                if frame.format.name != ostream.pix_fmt:
                    pts, tb = frame.pts, frame.time_base
                    rng = "JPEG" if full else None
                    frame = frame.reformat(format=ostream.pix_fmt, src_color_range=rng, dst_color_range=rng)
                    frame.pts, frame.time_base = pts, tb
                for pkt in ostream.encode(frame):
                    dst.mux(pkt)
                n += 1
                tb = Fraction(frame.time_base)
                t = frame.pts * tb
                last_end = t + (frame.duration * tb if frame.duration else 1 / (src.rate or Fraction(25)))
                if held:
                    flush(t)  # packets up to this frame's time
            if ostream is None:
                raise InputError(f"{src.path}: no frame in the segment {segment.describe()} (the video "
                                 f"ends before it?)")
            for pkt in ostream.encode(None):
                dst.mux(pkt)
            flush(last_end)  # the rest that starts before the video's end
            held = []
        if fmt_note:
            notes.append(fmt_note)
        if src.seek_failed:
            notes.append(f"{src.path.name}: could not seek ({src.seek_failed}); decoded from the start instead")
        notes.extend(src.notes())
        return CutResult(out, n, float(src.segment_offset or 0), src.decoded, src.seeked_to, len(others), notes)
    finally:
        src.close()
