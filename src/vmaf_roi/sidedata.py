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


def slot_sizes(slots: int) -> tuple[int, ...]:
    """The graph sizes an attacher uses: 4, 6, 8, 12, 16, 24, ... (powers of two and 1.5x them)
    below ``slots``, then ``slots`` itself."""
    sizes, p = [], 4
    while p < slots:
        sizes += [k for k in (p, p * 3 // 2) if k < slots]
        p *= 2
    return (*sizes, slots)


class RoiAttacher:
    """Push a frame in, get the same frame back carrying exactly the ROI list given.

    ``slots`` is the most regions a frame may carry. A frame goes through the smallest graph
    of :func:`slot_sizes` its list fits in (the chain's cost grows as K^2: 128 slots cost
    about 8x what 16 do), padded with empty regions as before; encoders skip those.
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = slots
        self._sizes = slot_sizes(slots)
        self._graphs: dict[int, av.filter.Graph] = {}
        self._key: tuple | None = None
        self._packed: tuple[Sequence[Entry], int, bytes] | None = None  # last list, its size, bytes

    def _build(self, frame: av.VideoFrame, slots: int) -> av.filter.Graph:
        g = av.filter.Graph()
        tb = frame.time_base or Fraction(1, 1000)
        nodes = [g.add_buffer(width=frame.width, height=frame.height, format=frame.format.name, time_base=tb)]
        for i in range(slots):
            # the first slot also clears any ROI side data the frame already carried
            nodes.append(g.add("addroi", "x=0:y=0:w=1:h=1:qoffset=0" + (":clear=1" if i == 0 else "")))
        nodes.append(g.add("buffersink"))
        g.link_nodes(*nodes)
        g.configure()
        return g

    def attach(self, frame: av.VideoFrame, entries: Sequence[Entry]) -> av.VideoFrame:
        if len(entries) > self.slots:
            raise ValueError(f"{len(entries)} regions do not fit in {self.slots} slots")
        key = (frame.width, frame.height, frame.format.name, frame.time_base)
        if key != self._key:
            self._graphs.clear()
            self._key = key
        packed = self._packed
        if packed is None or packed[0] is not entries:
            k = next(s for s in self._sizes if s >= len(entries))
            packed = self._packed = (entries, k, pack(entries, k))
        _, k, data = packed
        g = self._graphs.get(k)
        if g is None:
            g = self._graphs[k] = self._build(frame, k)
        tags = [(a, getattr(frame, a)) for a in COLOUR_TAGS]
        g.push(frame)
        out = g.pull()
        for a, v in tags:  # FFmpeg 8's graph re-tags frames: put the frame's own colour tags back
            if getattr(out, a) != v:
                setattr(out, a, v)
        sd = out.side_data.get("REGIONS_OF_INTEREST")
        if sd is None or sd.buffer_size != ROI_SIZE * k:
            raise RuntimeError("addroi slots did not produce the expected side data")
        ctypes.memmove(sd.buffer_ptr, data, len(data))
        return out
