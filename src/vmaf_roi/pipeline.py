"""The map schedule (stage 2 of the encode pass): which frames get a fresh saliency map, and
the map every frame leaves with (:class:`MapSchedule`).

Which frames get a fresh saliency map is decided in decode order from the frames alone
(:class:`MapPolicy`: every ``stride`` frames, on scene cuts, and when the picture changed
enough since the last map), so the threaded pipeline and the sequential one apply exactly
the same maps to the same frames. Threaded, a producer thread decodes up to ``lookahead``
frames ahead of the encoder and starts the model on the frames that need a map, so inference
overlaps encoding; the encoder waits for a map only when it reaches that frame.
ONNX Runtime, FFmpeg's decoders and libx264 all do their work outside the GIL.

With ``saliency.carry: motion`` (and a source that reads the decoder's motion vectors,
``decode.VideoSource(motion=True)``) the frames between two model maps get maps carried along
the motion instead (:mod:`vmaf_roi.carry`): without ``interpolate`` the last map warped along
each frame's vectors; with it the earlier map carried forward and the later one carried back,
blended by position (``mv-bi`` in benchmarks/bench_carry.py). A B-frame's field needs the
next I/P frame's type, so B-frames wait in the decode thread (at most :data:`MAX_B_RUN`) until
it is decoded; their model input is still made when they are decoded.
"""

from __future__ import annotations

import ctypes
import queue
import threading
from collections.abc import MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from . import carry, native
from .config import SaliencyConfig, saliency_section
from .roi import Blend
from .saliency import SaliencyModel

THUMB = (64, 36)  # the scene-cut thumbnail's cells, width x height (see thumbnail())
THUMB_K = 4  # luma samples per cell, each way
MAX_B_RUN = 16  # B-frames held for the next I/P frame at most; longer runs get past vectors only


# formats whose first plane is the luma, one byte a sample (the FFmpeg filter's luma_planes
# table holds the same, tested)
_LUMA8 = frozenset(
    "yuv420p yuvj420p yuv422p yuvj422p yuv444p yuvj444p yuv440p yuvj440p yuv411p yuvj411p yuv410p "
    "nv12 nv21 nv16 nv24 nv42 gray yuva420p yuva422p yuva444p".split())
# ... two bytes a sample, little-endian: the shift to 8 bits (P010/P016 keep their bits high)
_LUMA16 = {
    **{f"yuv{s}p{d}le": d - 8 for s in ("420", "422", "444") for d in (9, 10, 12, 14, 16)},
    "yuv440p10le": 2, "yuv440p12le": 4,
    **{f"yuva{s}p{d}le": d - 8 for s in ("420", "422", "444") for d in (9, 10, 16)},
    **{f"gray{d}le": d - 8 for d in (9, 10, 12, 14, 16)},
    "p010le": 8, "p012le": 8, "p016le": 8, "p210le": 8, "p216le": 8, "p410le": 8, "p416le": 8,
}
_JPEG = 2  # AVCOL_RANGE_JPEG: full-range levels


def _limited_to_full() -> np.ndarray:
    v = np.arange(256, dtype=np.int64)
    return np.clip(((v - 16) * 255 * 2 + 219) // 438, 0, 255).astype(np.uint8)  # round((v-16)*255/219)


_TO_FULL = _limited_to_full()


def _grid(n: int, cells: int) -> np.ndarray:
    t = np.arange(cells * THUMB_K, dtype=np.int64)
    return ((2 * t + 1) * n) // (2 * cells * THUMB_K)


def thumbnail(frame: av.VideoFrame, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """The frame's scene-cut thumbnail: 64x36 uint8 cells of full-range luma.

    Cell (cy, cx) is the rounded mean of K x K (``THUMB_K``) samples of the luma plane, at rows
    ``((2t + 1) * height) // (2 * 36 * K)`` for t = K*cy ... K*cy + K-1 and likewise columns
    (``_planner.c``'s ``vmaf_roi_thumb``); samples of more than 8 bits are shifted down to 8
    first. Limited-range luma (any frame not tagged full range, nor a yuvj format) is mapped to
    full range after: ``round((v - 16) * 255 / 219)``, clipped. Frames whose luma is not a plane
    of its own (RGB, packed YUV, big-endian) are made gray at full size first by swscale, which
    gives full-range levels. The FFmpeg filter computes the same.

    A strided read of 36,864 samples instead of swscale's downscale of the whole frame (on
    frames fresh from the decoder, 0.045 -> 0.026 ms at 640x480, 0.080 -> 0.026 at 1280x720);
    over the real corpus clips' 2,568 frame pairs the scene-cut decisions (threshold 12) are
    those of the earlier swscale 64x36 thumbnail but for two borderline frames.
    """
    name = frame.format.name
    full = frame.color_range == _JPEG or name.startswith("yuvj")
    shift = 0
    if name in _LUMA8:
        nbytes = 1
    elif name in _LUMA16:
        nbytes, shift = 2, _LUMA16[name]
    else:
        frame = (reformatter or VideoReformatter()).reformat(frame, format="gray", threads=1)
        nbytes, full = 1, True
    plane = frame.planes[0]
    w, h = frame.width, frame.height
    out = np.empty((THUMB[1], THUMB[0]), dtype=np.uint8)
    if native.thumb is not None:
        if native.thumb(plane.buffer_ptr, plane.line_size, w, h, nbytes, shift, full, out.ctypes.data) != 0:
            raise ValueError(f"cannot make a thumbnail of a {w}x{h} {name} frame")
        return out  # mapped to full range in C
    rows = _plane_rows(plane, w * nbytes, h)
    ys, xs = _grid(h, THUMB[1])[:, None], _grid(w, THUMB[0])[None, :]
    if nbytes == 1:
        v = rows[ys, xs].astype(np.uint32)
    else:  # little-endian 16-bit samples
        v = rows[ys, 2 * xs].astype(np.uint32) | rows[ys, 2 * xs + 1].astype(np.uint32) << 8
        v = np.minimum(v >> shift, 255)
    k2 = THUMB_K * THUMB_K
    sums = v.reshape(THUMB[1], THUMB_K, THUMB[0], THUMB_K).sum(axis=(1, 3))
    out[:] = (sums + k2 // 2) // k2
    return out if full else _TO_FULL[out]


def _plane_rows(plane: Any, row_bytes: int, height: int) -> np.ndarray:
    """A plane's rows as a uint8 [height, row_bytes] view, top row first, whatever the sign of
    its line size (FFmpeg's vflip, for one, hands out frames whose rows run backwards in memory)."""
    ls = plane.line_size
    if ls >= 0:
        return np.frombuffer(plane, dtype=np.uint8).reshape(-1, ls)[:height, :row_bytes]
    span = (height - 1) * -ls + row_bytes  # from the bottom row's start to the top row's end
    low = plane.buffer_ptr + (height - 1) * ls
    mem = np.frombuffer((ctypes.c_uint8 * span).from_address(low), dtype=np.uint8)
    return np.lib.stride_tricks.as_strided(mem[(height - 1) * -ls:], shape=(height, row_bytes), strides=(ls, 1),
                                           writeable=False)


def thumb_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails (0-255): the scene-cut statistic."""
    if native.thumb_sad is not None:
        return native.thumb_sad(a.ctypes.data, b.ctypes.data) / a.size
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def quantise(m: np.ndarray) -> np.ndarray:
    """A model map in [0, 1] -> uint8: ``rint(clip(m, 0, 1) * 255)`` in float32 (halves to even,
    NaN to 0); in C for a contiguous float32 map (``_planner.c``, one SIMD pass instead of
    numpy's four: 224x224 about 0.02 -> 0.01 ms warm, 0.13 -> 0.01 ms with the caches cold)."""
    if native.quantise is not None and m.dtype == np.float32 and m.flags.c_contiguous:
        out = np.empty(m.shape, dtype=np.uint8)
        native.quantise(m.ctypes.data, m.size, out.ctypes.data)
        return out
    return np.rint(np.clip(m, 0, 1) * 255).astype(np.uint8)


@dataclass
class Item:
    """One decoded frame on its way to the encoder."""

    index: int
    frame: av.VideoFrame
    prediction: Future | np.ndarray | None  # model output when this frame gets a fresh map
    cut: bool
    field: carry.MotionField | None = None  # its motion (saliency.carry motion), else None


class MapPolicy:
    """Decides, frame by frame in decode order, whether the model runs."""

    def __init__(self, cfg: SaliencyConfig | Mapping[str, Any]) -> None:
        sal = saliency_section(cfg)
        self.stride = sal.stride
        self.scene_cut = sal.scene_cut
        self.scene_threshold = sal.scene_threshold
        self.change_threshold = sal.change_threshold
        self._prev: np.ndarray | None = None
        self._at_map: np.ndarray | None = None
        self._since = 0
        self.cuts = 0
        self._reformatter = VideoReformatter()

    def decide(self, index: int, frame: av.VideoFrame) -> tuple[bool, bool]:
        """(run the model, is a scene cut) for this frame."""
        need_thumb = self.scene_cut or self.change_threshold is not None
        thumb = None
        if need_thumb:
            thumb = thumbnail(frame, self._reformatter)
        cut = False
        if self.scene_cut and self._prev is not None and thumb is not None:
            cut = thumb_diff(thumb, self._prev) > self.scene_threshold
        changed = False
        if self.change_threshold is not None and self._at_map is not None and thumb is not None:
            changed = thumb_diff(thumb, self._at_map) > self.change_threshold
        self._prev = thumb
        infer = index == 0 or cut or changed or self._since + 1 >= self.stride
        if infer:
            self._since = 0
            self._at_map = thumb
        else:
            self._since += 1
        self.cuts += cut
        return infer, cut


Map = np.ndarray | Blend  # a frame's map: uint8, or a blend of two (frames between model maps)


class MapStore(MutableMapping[int, np.ndarray]):
    """Frame index -> the map an encode applied, as a uint8 array (a :class:`~vmaf_roi.roi.Blend`
    made on first access). :meth:`raw` is the map as the planner got it, so an encode that
    reuses the store plans exactly as the one that filled it."""

    def __init__(self, maps: Mapping[int, Map] | None = None) -> None:
        self._maps: dict[int, Map] = dict(maps or {})

    def raw(self, index: int) -> Map | None:
        return self._maps.get(index)

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self._maps[index])

    def __setitem__(self, index: int, m: Map) -> None:
        self._maps[index] = m

    def __delitem__(self, index: int) -> None:
        del self._maps[index]

    def __contains__(self, index: object) -> bool:  # without making the map
        return index in self._maps

    def __iter__(self) -> Iterator[int]:
        return iter(self._maps)

    def __len__(self) -> int:
        return len(self._maps)


class MapState:
    """The model-resolution map (uint8, or a :class:`~vmaf_roi.roi.Blend`) applied to each frame,
    in encode order."""

    def __init__(self, smoothing: float, track: Any | None, carrier: carry.Carrier | None = None) -> None:
        self.alpha = float(smoothing)
        self.track = track
        self.carrier = carrier  # carries maps along the frames' motion fields; None: hold/blend
        self.current: Map | None = None  # the map of the last frame handed out
        self.key: Map | None = None  # the map of the last frame the model ran on (or a stored one)
        self.version = 0  # changes whenever `current` does (the planner caches on it)

    def cached(self, index: int) -> Map | None:
        return self.track.maps.raw(index) if self.track is not None else None

    def apply(self, index: int, m: Map) -> Map:
        if m is not self.current:
            self.current = m
            self.version += 1
        if self.track is not None:
            self.track.maps[index] = m
        return m

    def from_prediction(self, item: Item) -> np.ndarray:
        pred = item.prediction.result() if isinstance(item.prediction, Future) else item.prediction
        new = pred
        if self.alpha > 0 and self.key is not None and not item.cut:
            new = self.alpha * (np.asarray(self.key).astype(np.float32) / 255.0) + (1 - self.alpha) * pred
        self.key = quantise(new)
        return self.key


def with_maps(stream: Iterator[Any], state: MapState, interpolate: bool) -> Iterator[tuple[Any, Map | None]]:
    """Pair every frame with the map it gets; packets pass through (with None) in order.

    Between two frames the model ran on, frames get the earlier map (held) or, with
    ``interpolate``, a linear blend of the two maps by position (a :class:`~vmaf_roi.roi.Blend`,
    not made: the planner needs only its block means): this needs the later map
    before the frames in between are encoded, so they wait in a buffer of at most
    ``stride`` frames. Nothing is blended across a scene cut.

    With ``state.carrier``, the earlier map is carried along each frame's motion field instead
    of held and, with ``interpolate``, the later map carried back along them before the blend
    (:func:`_flush`).
    """
    held: list[Any] = []
    car = state.carrier
    for x in stream:
        if not isinstance(x, Item):
            if held:
                held.append(x)
            else:
                yield x, None
            continue
        cached = state.cached(x.index)
        if cached is not None:  # maps from an earlier encode of the same input
            yield from _flush(held, state, state.key, None)
            held = []
            state.key = cached
            if car is not None:
                car.key(x.index, np.asarray(cached))
            yield x, state.apply(x.index, cached)
        elif x.prediction is None:
            if interpolate:
                held.append(x)
            else:
                assert state.key is not None, "the first frame always gets a map"
                yield x, state.apply(x.index, state.key if car is None else car.carry(x.index, x.field))
        else:
            prev = state.key
            new = state.from_prediction(x)
            yield from _flush(held, state, prev, None if x.cut else new, x)
            held = []
            if car is not None:  # after the flush: the frames before it carry from earlier maps
                car.key(x.index, new)
            yield x, state.apply(x.index, new)
    yield from _flush(held, state, state.key, None)


def _flush(held: list[Any], state: MapState, prev: np.ndarray | None, new: np.ndarray | None,
           new_item: Item | None = None):
    if state.carrier is not None:
        yield from _flush_carried(held, state, new, new_item)
        return
    count = sum(isinstance(h, Item) for h in held)
    j = 0
    for h in held:
        if not isinstance(h, Item):
            yield h, None
            continue
        j += 1
        assert prev is not None
        # not made here: the planner takes a Blend's block means from its two maps
        m = prev if new is None else Blend(prev, new, j / (count + 1))
        yield h, state.apply(h.index, m)


def _flush_carried(held: list[Any], state: MapState, new: np.ndarray | None, new_item: Item | None):
    """The held frames' maps carried forward from the earlier model map and, unless ``new`` is
    None (a scene cut, the end), back from ``new`` (along the held frames' fields and
    ``new_item``'s), blended by position (``carry.between``: the weights of the linear blend)."""
    car = state.carrier
    assert car is not None
    items = [h for h in held if isinstance(h, Item)]
    maps = [car.carry(h.index, h.field) for h in items]
    if new is not None and items:
        assert new_item is not None
        back = carry.carry_back(new, [h.field for h in items] + [new_item.field])[1:]
        maps = carry.between(maps, back)
    got = iter(maps)
    for h in held:
        if isinstance(h, Item):
            yield h, state.apply(h.index, next(got))
        else:
            yield h, None


class _FieldRuns:
    """Motion fields of frames in display order (``carry.fields``), set on their Items.

    A B-frame's field depends on the distance to the next non-B frame, so B-frames (and the
    packets after them) wait until it comes: :meth:`add` returns what may leave now.
    """

    def __init__(self) -> None:
        self.types: list[str] = []  # since the last non-B frame (inclusive), display order
        self.vectors: list[np.ndarray | None] = []
        self.items: list[Item | None] = []  # None: already handed out
        self.size: tuple[int, int] | None = None
        self.waiting: list[Any] = []  # Items and packets held back, in order

    def packet(self, p: Any) -> list[Any]:
        if self.waiting:
            self.waiting.append(p)
            return []
        return [p]

    def add(self, item: Item, mot: Any | None) -> list[Any]:
        """``mot``: the frame's decode.FrameMotion (None: no motion known, as a non-B frame)."""
        t = mot.pict_type if mot is not None else ""
        vec = mot.vectors if mot is not None else None
        if mot is not None:
            if self.size is None:
                self.size = (mot.width, mot.height)
            elif (mot.width, mot.height) != self.size:  # a size change mid-stream: not comparable
                vec = None
        self.types.append(t)
        self.vectors.append(vec)
        self.items.append(item)
        self.waiting.append(item)
        is_b = t in carry.B_TYPES
        if is_b and sum(i is not None for i in self.items) < MAX_B_RUN:
            return []
        out = self._resolve()
        if not is_b or len(self.types) > 8 * MAX_B_RUN:  # a new anchor (or an endless run of B)
            self.types, self.vectors, self.items = [t], [None], [None]
        return out

    def finish(self) -> list[Any]:
        return self._resolve()

    def _resolve(self) -> list[Any]:
        if self.size is not None and any(i is not None for i in self.items):
            for it, f in zip(self.items, carry.fields(self.vectors, self.types, *self.size)):
                if it is not None:
                    it.field = f
        self.items = [None] * len(self.items)
        self.vectors = [None] * len(self.vectors)  # handed out: their fields are not needed again
        out, self.waiting = self.waiting, []
        return out


_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _produce(frames, policy: MapPolicy | None, track: Any | None, model_input, submit,
             copy_packets: bool, motion: Callable[[], Any] | None = None) -> Iterator[Any]:
    packets: list[av.Packet] = []
    runs = _FieldRuns() if motion is not None else None
    n = 0
    for frame in frames(packets.append if copy_packets else None):
        if packets:
            if runs is None:
                yield from packets
            else:
                for p in packets:
                    yield from runs.packet(p)
            packets.clear()
        pred, cut = None, False
        if policy is not None:
            infer, cut = policy.decide(n, frame)
            if infer and not (track is not None and n in track.maps):
                # The model input is made here, before the frame leaves this thread: PyAV's
                # reformat briefly rewrites the *source* frame's colour tags while it scales,
                # so no other thread may touch a frame that is being reformatted.
                pred = submit(model_input(frame))
        item = Item(n, frame, pred, cut)
        if runs is None:
            yield item
        else:
            yield from runs.add(item, motion())  # motion(): of the frame just decoded
        n += 1
    if runs is not None:
        yield from runs.finish()
    yield from packets


def items(
    frames: Callable[[Callable[[av.Packet], None] | None], Iterator[av.VideoFrame]],
    *,
    model: SaliencyModel | None,
    policy: MapPolicy | None,
    track: Any | None,
    lookahead: int,
    copy_packets: bool,
    motion: Callable[[], Any] | None = None,
) -> Iterator[Item | av.Packet]:
    """Decoded frames as :class:`Item` s, interleaved with packets of copied streams.

    ``lookahead`` 0 runs everything in the calling thread; otherwise a producer thread
    decodes up to that many frames ahead and a single inference thread runs the model.
    ``motion``: called right after each frame is decoded, that frame's ``decode.FrameMotion``
    (or None); the Items then carry motion fields (B-frames leave once the next I/P frame is
    decoded).
    """

    def model_input(frame: av.VideoFrame) -> np.ndarray:
        assert model is not None
        return model.model_input(frame)

    def predict(rgb: np.ndarray) -> np.ndarray:
        assert model is not None
        return model.predict(rgb[None])[0]

    if lookahead <= 0:
        yield from _produce(frames, policy, track, model_input, predict, copy_packets, motion)
        return

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vmaf-roi-saliency")
    try:
        yield from threaded(lambda: _produce(frames, policy, track, model_input, lambda rgb: pool.submit(predict, rgb),
                                             copy_packets, motion), lookahead, "vmaf-roi-decode")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def threaded(make: Callable[[], Iterator[Any]], size: int, name: str) -> Iterator[Any]:
    """What ``make()`` yields, made in a thread of its own at most ``size`` items ahead.

    An exception in the thread is raised here, at the item where it happened; closing this
    generator (an error downstream, Ctrl-C) stops the thread and waits for it.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, size))
    stop = threading.Event()

    def put(x: Any) -> None:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def worker() -> None:
        it = None
        try:
            it = make()
            for x in it:
                put(x)
            put(_DONE)
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            try:
                put(_Failed(exc))
            except _Stopped:
                pass
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # an inner threaded() stops its own thread

    t = threading.Thread(target=worker, name=name, daemon=True)
    t.start()
    try:
        while True:
            x = q.get()
            if x is _DONE:
                break
            if isinstance(x, _Failed):
                raise x.exc
            yield x
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        t.join()


class _Stopped(Exception):
    pass


class MapSchedule:
    """The map-schedule stage: decoded frames -> ``(Item, map)`` pairs in encode order.

    The model runs on the frames :class:`MapPolicy` picks (in a worker thread when
    ``lookahead`` > 0); every frame leaves with the model-resolution map it gets
    (:func:`with_maps`: uint8, held, carried along the motion, or cached in ``track``; a
    :class:`~vmaf_roi.roi.Blend` when blended), the same object for as long as the map does not
    change. Packets of copied streams pass
    through in order, with None. With ``plain`` (a plain encode) the model never runs and
    frames leave with None.
    """

    def __init__(self, sal: SaliencyConfig, model: SaliencyModel | None, track: Any | None, *,
                 copy_packets: bool, plain: bool = False) -> None:
        self.sal = sal
        self.model = model
        self.track = track
        self.copy_packets = copy_packets
        self.policy = MapPolicy(sal) if not plain else None
        self.state = MapState(sal.smoothing, track) if not plain else None
        self.inferences = 0  # fresh model outputs handed out
        self._stream: Iterator[Any] | None = None

    def run(self, frames: Callable[[Callable[[av.Packet], None] | None], Iterator[av.VideoFrame]],
            motion: Callable[[], Any] | None = None) -> Iterator[tuple[Item | av.Packet, np.ndarray | None]]:
        """``motion``: the source's per-frame motion (``decode.VideoSource.motion`` of a source
        opened with ``motion=True`` that has it); used with ``saliency.carry: motion`` only."""
        # a generator: nothing runs (no thread starts) until the caller pulls from it
        if self.sal.carry != "motion" or self.state is None:
            motion = None
        if motion is not None and self.state is not None:
            self.state.carrier = carry.Carrier()
        self._stream = items(frames, model=self.model, policy=self.policy, track=self.track,
                             lookahead=self.sal.lookahead, copy_packets=self.copy_packets, motion=motion)
        if self.state is None:
            for x in self._stream:
                yield x, None
            return
        for x, m in with_maps(self._stream, self.state, self.sal.interpolate):
            if isinstance(x, Item) and x.prediction is not None:
                self.inferences += 1
            yield x, m

    def notes(self) -> list[str]:
        """Notes for the encode's result (the map stage protocol, ``mapsource.MapStage``): none."""
        return []

    def close(self) -> None:
        """Stop the decode-ahead and inference threads (on errors and Ctrl-C too)."""
        if self._stream is not None:
            self._stream.close()
