"""Decode stage: open any input PyAV can read and run an FFmpeg filter chain over its video.

>>> with VideoSource("in.mp4", filters="scale=1280:720,fps=30") as src:
...     for frame in src.frames():     # av.VideoFrame after the chain, timestamps kept
...         ...
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import av.error
import av.filter

from .errors import ConfigError, InputError


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
    return container


class VideoSource:
    """The first video stream of a file, decoded and passed through a filter chain."""

    def __init__(self, path: str | Path, filters: str | None = None, *, threads: bool = True) -> None:
        self.path = Path(path)
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

    # -- metadata -----------------------------------------------------------------------
    @property
    def time_base(self) -> Fraction:
        return self.stream.time_base or Fraction(1, 1000)

    @property
    def rate(self) -> Fraction | None:
        r = self.stream.average_rate or self.stream.guessed_rate
        return Fraction(r) if r else None

    def estimated_frames(self) -> int | None:
        """Frame count from the header or from duration x rate; None if unknown."""
        if self.stream.frames:
            return int(self.stream.frames)
        dur = None
        if self.stream.duration is not None and self.stream.time_base:
            dur = float(self.stream.duration * self.stream.time_base)
        elif self.container.duration:
            dur = self.container.duration / av.time_base
        if dur and self.rate:
            return max(1, math.ceil(dur * float(self.rate) - 1e-6))
        return None

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

    def _decoded(self, on_packet: Callable[[av.Packet], None] | None = None) -> Iterator[av.VideoFrame]:
        streams = self.container.streams if on_packet else [self.stream]
        try:
            for packet in self.container.demux(*streams):
                if packet.stream.index != self.stream.index:
                    on_packet(packet)  # type: ignore[misc]
                    continue
                for frame in packet.decode():
                    self.decoded += 1
                    yield frame
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.path}: decode error after {self.decoded} frames ({exc.strerror or exc})") from None

    def frames(self, on_packet: Callable[[av.Packet], None] | None = None) -> Iterator[av.VideoFrame]:
        """Decoded (and filtered) frames; packets of other streams go to ``on_packet`` if given."""
        if not self._chain:
            yield from self._decoded(on_packet)
            return
        graph = None
        for frame in self._decoded(on_packet):
            if graph is None:
                graph = self._graph = self._build_graph(frame)
            graph.push(frame)
            yield from self._drain(graph)
        if graph is not None:
            graph.push(None)
            yield from self._drain(graph)

    @staticmethod
    def _drain(graph: av.filter.Graph) -> Iterator[av.VideoFrame]:
        while True:
            try:
                yield graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
