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

The filter graph is the portable way. Where it can (Linux, a PyAV whose frames keep their
``AVFrame *`` where PyAV 18 does), :class:`RoiAttacher` instead adds the side data to the frame
itself through libavutil's own ``av_frame_new_side_data`` (:class:`FrameSideData`): the same
bytes at about a tenth of the cost, as the graph's push and pull were most of the attach stage.
The layout is checked before first use (the pointer found must point at the frame's planes, and
PyAV must read back what was written); if anything does not match, or with
``VMAF_ROI_SIDEDATA=filter``, the graph is used.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
import threading
from fractions import Fraction
from typing import Sequence

import av
import av.error
import numpy as np
import av.filter
import av.sidedata.sidedata

# struct AVRegionOfInterest { uint32_t self_size; int top, bottom, left, right; AVRational qoffset; }
ROI_STRUCT = struct.Struct("=I6i")
ROI_SIZE = ROI_STRUCT.size  # 28
Entry = tuple[int, int, int, int, int, int]  # top, bottom, left, right, qoffset num, den
EMPTY: Entry = (0, 0, 0, 0, 0, 1)
COLOUR_TAGS = ("color_range", "colorspace", "color_primaries", "color_trc")
ROI_TYPE = av.sidedata.sidedata.Type.REGIONS_OF_INTEREST.value  # AV_FRAME_DATA_REGIONS_OF_INTEREST


class _SideDataStruct(ctypes.Structure):
    # struct AVFrameSideData { enum type; uint8_t *data; size_t size; AVDictionary *metadata; AVBufferRef *buf; }
    _fields_ = [("type", ctypes.c_int), ("data", ctypes.c_void_p), ("size", ctypes.c_size_t)]


def _libavutil_path() -> str | None:
    """The libavutil this process's PyAV uses (the one mapped next to PyAV's own modules)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split(maxsplit=5)[5].strip() for line in f if "libavutil" in line and "/" in line}
    except OSError:
        return None
    av_dir = os.path.dirname(os.path.dirname(os.path.abspath(av.__file__)))  # site-packages
    ours = sorted(p for p in paths if p.startswith(av_dir))
    if len(ours) == 1:
        return ours[0]
    return next(iter(paths)) if len(paths) == 1 else None


class FrameSideData:
    """Frame side data written into a PyAV frame's ``AVFrame`` with libavutil's own functions.

    PyAV keeps the ``AVFrame *`` as the first field of its frame objects; :meth:`probe` finds
    its offset on a frame made for the purpose, reading candidate pointers through
    ``/proc/self/mem`` (an unmapped address is an error there, not a crash), and accepts it only
    when it points at an AVFrame whose ``data[]`` are the frame's planes, and when PyAV then
    reads back the side data written through it. Use :func:`direct_side_data`.
    """

    def __init__(self, lib: ctypes.CDLL, offset: int) -> None:
        self._offset = offset
        self._new = lib.av_frame_new_side_data
        self._new.restype = ctypes.POINTER(_SideDataStruct)
        self._new.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
        self._get = lib.av_frame_get_side_data
        self._get.restype = ctypes.POINTER(_SideDataStruct)
        self._get.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self._remove = lib.av_frame_remove_side_data
        self._remove.restype = None
        self._remove.argtypes = [ctypes.c_void_p, ctypes.c_int]

    def _ptr(self, frame: av.VideoFrame) -> int:
        if not isinstance(frame, av.VideoFrame):
            raise TypeError(f"expected an av.VideoFrame, got {type(frame).__name__}")
        p = ctypes.c_void_p.from_address(id(frame) + self._offset).value
        if not p:
            raise RuntimeError("frame has no AVFrame")
        return p

    def set(self, frame: av.VideoFrame, kind: int, data: bytes) -> None:
        """Give ``frame`` exactly one side data entry of ``kind``, holding ``data``.

        An entry of ``kind`` already there is overwritten in place when it has the same size,
        else replaced (freed): a ``frame.side_data`` that PyAV built before then must not be read.
        """
        ptr = self._ptr(frame)
        cur = self._get(ptr, kind)
        if cur and cur.contents.size == len(data):  # attached before: overwrite in place
            ctypes.memmove(cur.contents.data, data, len(data))
            return
        if cur:
            self._remove(ptr, kind)
        sd = self._new(ptr, kind, len(data))
        if not sd:
            raise MemoryError("av_frame_new_side_data failed")
        ctypes.memmove(sd.contents.data, data, len(data))

    def get(self, frame: av.VideoFrame, kind: int) -> bytes | None:
        """The bytes of ``frame``'s side data of ``kind`` as the AVFrame holds them now (PyAV's
        ``frame.side_data`` is built once per frame and would not see later additions)."""
        sd = self._get(self._ptr(frame), kind)
        return ctypes.string_at(sd.contents.data, sd.contents.size) if sd else None

    @classmethod
    def probe(cls) -> "FrameSideData | None":
        path = _libavutil_path()
        if path is None:
            return None
        try:
            lib = ctypes.CDLL(path)
            fd = os.open("/proc/self/mem", os.O_RDONLY)
        except OSError:
            return None
        try:
            f = av.VideoFrame(32, 16, "yuv420p")
            planes = [pl.buffer_ptr for pl in f.planes]
            want = b"".join(p.to_bytes(ctypes.sizeof(ctypes.c_void_p), sys.byteorder) for p in planes)
            for off in range(ctypes.sizeof(ctypes.c_void_p), type(f).__basicsize__, ctypes.sizeof(ctypes.c_void_p)):
                cand = ctypes.c_void_p.from_address(id(f) + off).value
                if not cand:
                    continue
                try:
                    if os.pread(fd, len(want), cand) != want:
                        continue
                except OSError:
                    continue
                direct = cls(lib, off)
                test = av.VideoFrame(32, 16, "yuv420p")
                data = pack([(0, 16, 0, 16, -3, 51), (0, 8, 16, 32, 2, 51)], 3)
                direct.set(test, ROI_TYPE, data)
                sd = test.side_data.get("REGIONS_OF_INTEREST")  # PyAV's own reading of the frame
                if sd is not None and ctypes.string_at(sd.buffer_ptr, sd.buffer_size) == data \
                        and direct.get(test, ROI_TYPE) == data:
                    return direct
                return None
            return None
        except (OSError, AttributeError, ValueError, TypeError, RuntimeError):
            return None
        finally:
            os.close(fd)


_direct_lock = threading.Lock()
_direct: list[FrameSideData | None] = []


def direct_side_data() -> FrameSideData | None:
    """The direct side-data writer, or None where it is not available or
    ``VMAF_ROI_SIDEDATA=filter`` asks for the filter graph."""
    if os.environ.get("VMAF_ROI_SIDEDATA", "").strip().lower() == "filter":
        return None
    with _direct_lock:
        if not _direct:
            _direct.append(FrameSideData.probe())
        return _direct[0]


def pack(entries: Sequence[Entry] | np.ndarray, slots: int) -> bytes:
    """``entries`` (tuples or an int array [n, 6]) as ``slots`` AVRegionOfInterest structs,
    padded with :data:`EMPTY`."""
    if isinstance(entries, np.ndarray) and entries.dtype == np.int32:  # the planning stage's: in range
        a = entries.reshape(-1, 6)
    else:
        a = np.asarray(entries, dtype=np.int64).reshape(-1, 6)
        if a.size and (a.min() < -2**31 or a.max() >= 2**31):
            raise ValueError("ROI entry out of the int32 range")
    if len(a) > slots:
        raise ValueError(f"{len(a)} regions do not fit in {slots} slots")
    buf = np.zeros((slots, 7), dtype=np.int32)  # native order, as the struct's "=I6i"
    buf[:, 0] = ROI_SIZE
    buf[:, 6] = EMPTY[5]
    buf[:len(a), 1:] = a
    return buf.tobytes()


def read(frame: av.VideoFrame) -> list[Entry]:
    """The frame's ROI list (for tests and debugging); [] when it has none."""
    direct = direct_side_data()
    if direct is not None:
        raw = direct.get(frame, ROI_TYPE)
        if raw is None:
            return []
    else:
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
    """Push a frame in, get the frame back carrying exactly the ROI list given.

    ``slots`` is the most regions a frame may carry. The list is padded with empty regions to
    the smallest of :func:`slot_sizes` it fits in (encoders skip those). ``direct``: write the
    side data into the frame itself (:func:`direct_side_data`, the default where available; the
    frame given is the frame returned), else through the graph of that many ``addroi`` filters
    (a new frame; the chain's cost grows as K^2: 128 slots cost about 8x what 16 do). Both give
    the encoder the same bytes.
    """

    def __init__(self, slots: int, direct: bool | None = None) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = slots
        self._sizes = slot_sizes(slots)
        self._graphs: dict[int, av.filter.Graph] = {}
        self._key: tuple | None = None
        self._packed: tuple[Sequence[Entry] | np.ndarray, int, bytes] | None = None  # last list, its size, bytes
        self._direct = direct_side_data() if direct is not False else None
        if direct and self._direct is None:
            raise RuntimeError("direct side data is not available here (see sidedata.direct_side_data)")

    @property
    def direct(self) -> bool:
        return self._direct is not None

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

    def attach(self, frame: av.VideoFrame, entries: Sequence[Entry] | np.ndarray) -> av.VideoFrame:
        if len(entries) > self.slots:
            raise ValueError(f"{len(entries)} regions do not fit in {self.slots} slots")
        packed = self._packed
        if packed is None or packed[0] is not entries:
            k = next(s for s in self._sizes if s >= len(entries))
            packed = self._packed = (entries, k, pack(entries, k))
        _, k, data = packed
        if self._direct is not None:
            self._direct.set(frame, ROI_TYPE, data)
            return frame
        key = (frame.width, frame.height, frame.format.name, frame.time_base)
        if key != self._key:
            self._graphs.clear()
            self._key = key
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
