"""Attach per-frame AVRegionOfInterest side data to PyAV frames.

PyAV cannot create frame side data, and what it exposes is read-only. What works with the
stock wheel (see shared FACTS): a filter graph of K ``addroi`` filters ("slots") gives every
frame leaving it a REGIONS_OF_INTEREST buffer of K structs, each freshly allocated for that
frame; we overwrite those structs in place before the frame reaches the encoder. Unused
slots become empty rectangles with qoffset 0, which every encoder wrapper skips (their
block loops run from start to an exclusive end of 0). The graph's cost grows as K^2, so K
stays at the planner's ``max_regions`` (a few hundred at most).

FFmpeg's ``scale`` drops ROI side data: attach after the last resize.

The graph does not touch the pixels, but FFmpeg 7.1+ negotiates a colour range and matrix per
link and tags the frames leaving it with them: an untagged RGB frame came out as "full range,
RGB matrix", and the encoder's RGB->YUV conversion then used full range where the plain path
used limited (a visible colour shift). The frame's own colour tags are put back after the
graph, so ROI and plain encodes convert alike.
"""

from __future__ import annotations

import ctypes
import struct
from fractions import Fraction
from typing import Sequence

import av
import av.error
import av.filter

# struct AVRegionOfInterest { uint32_t self_size; int top, bottom, left, right; AVRational qoffset; }
ROI_STRUCT = struct.Struct("=I6i")
ROI_SIZE = ROI_STRUCT.size  # 28
Entry = tuple[int, int, int, int, int, int]  # top, bottom, left, right, qoffset num, den
EMPTY: Entry = (0, 0, 0, 0, 0, 1)
COLOUR_TAGS = ("color_range", "colorspace", "color_primaries", "color_trc")


def pack(entries: Sequence[Entry], slots: int) -> bytes:
    if len(entries) > slots:
        raise ValueError(f"{len(entries)} regions do not fit in {slots} slots")
    buf = bytearray(ROI_SIZE * slots)
    for i in range(slots):
        e = entries[i] if i < len(entries) else EMPTY
        ROI_STRUCT.pack_into(buf, i * ROI_SIZE, ROI_SIZE, *e)
    return bytes(buf)


def read(frame: av.VideoFrame) -> list[Entry]:
    """The frame's ROI list (for tests and debugging); [] when it has none."""
    sd = frame.side_data.get("REGIONS_OF_INTEREST")
    if sd is None:
        return []
    raw = ctypes.string_at(sd.buffer_ptr, sd.buffer_size)
    out = []
    for off in range(0, len(raw), ROI_SIZE):
        _, *e = ROI_STRUCT.unpack_from(raw, off)
        out.append(tuple(e))
    return out  # type: ignore[return-value]


class RoiAttacher:
    """Push a frame in, get the same frame back carrying exactly the ROI list given."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = slots
        self._graph: av.filter.Graph | None = None
        self._key: tuple | None = None

    def _build(self, frame: av.VideoFrame) -> None:
        g = av.filter.Graph()
        tb = frame.time_base or Fraction(1, 1000)
        nodes = [g.add_buffer(width=frame.width, height=frame.height, format=frame.format.name, time_base=tb)]
        for i in range(self.slots):
            # the first slot also clears any ROI side data the frame already carried
            nodes.append(g.add("addroi", "x=0:y=0:w=1:h=1:qoffset=0" + (":clear=1" if i == 0 else "")))
        nodes.append(g.add("buffersink"))
        g.link_nodes(*nodes)
        g.configure()
        self._graph = g

    def attach(self, frame: av.VideoFrame, entries: Sequence[Entry]) -> av.VideoFrame:
        key = (frame.width, frame.height, frame.format.name, frame.time_base)
        if self._graph is None or key != self._key:
            self._build(frame)
            self._key = key
        assert self._graph is not None
        tags = [(a, getattr(frame, a)) for a in COLOUR_TAGS]
        self._graph.push(frame)
        out = self._graph.pull()
        for a, v in tags:
            if getattr(out, a) != v:
                setattr(out, a, v)
        sd = out.side_data.get("REGIONS_OF_INTEREST")
        if sd is None or sd.buffer_size != ROI_SIZE * self.slots:
            raise RuntimeError("addroi slots did not produce the expected side data")
        data = pack(entries, self.slots)
        ctypes.memmove(sd.buffer_ptr, data, len(data))
        return out
