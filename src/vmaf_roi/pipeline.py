"""The map schedule (stage 2 of the encode pass): which frames get a fresh saliency map, and
the map every frame leaves with (:class:`MapSchedule`).

Which frames get a fresh saliency map is decided in decode order from the frames alone
(:class:`MapPolicy`: every ``stride`` frames, on scene cuts, and when the picture changed
enough since the last map), so the threaded pipeline and the sequential one apply exactly
the same maps to the same frames. Threaded, a producer thread decodes up to ``lookahead``
frames ahead of the encoder and starts the model on the frames that need a map, so inference
overlaps encoding; the encoder waits for a map only when it reaches that frame.
ONNX Runtime, FFmpeg's decoders and libx264 all do their work outside the GIL.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .config import SaliencyConfig, saliency_section
from .saliency import SaliencyModel

THUMB = (64, 36)


@dataclass
class Item:
    """One decoded frame on its way to the encoder."""

    index: int
    frame: av.VideoFrame
    prediction: Future | np.ndarray | None  # model output when this frame gets a fresh map
    cut: bool


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
            # one reformatter for the whole stream: frame.reformat() would set up a new swscale
            # context for every frame (measured: 0.37 -> 0.04 ms per thumbnail, same pixels)
            thumb = self._reformatter.reformat(frame, *THUMB, "gray").to_ndarray().astype(np.int16)
        cut = False
        if self.scene_cut and self._prev is not None and thumb is not None:
            cut = float(np.abs(thumb - self._prev).mean()) > self.scene_threshold
        changed = False
        if self.change_threshold is not None and self._at_map is not None and thumb is not None:
            changed = float(np.abs(thumb - self._at_map).mean()) > self.change_threshold
        self._prev = thumb
        infer = index == 0 or cut or changed or self._since + 1 >= self.stride
        if infer:
            self._since = 0
            self._at_map = thumb
        else:
            self._since += 1
        self.cuts += cut
        return infer, cut


class MapState:
    """The model-resolution map (uint8) applied to each frame, in encode order."""

    def __init__(self, smoothing: float, track: Any | None) -> None:
        self.alpha = float(smoothing)
        self.track = track
        self.current: np.ndarray | None = None  # the map of the last frame handed out
        self.key: np.ndarray | None = None  # the map of the last frame the model ran on
        self.version = 0  # changes whenever `current` does (the planner caches on it)

    def cached(self, index: int) -> np.ndarray | None:
        return self.track.maps.get(index) if self.track is not None else None

    def apply(self, index: int, m: np.ndarray) -> np.ndarray:
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
            new = self.alpha * (self.key.astype(np.float32) / 255.0) + (1 - self.alpha) * pred
        self.key = np.rint(np.clip(new, 0, 1) * 255).astype(np.uint8)
        return self.key


def with_maps(stream: Iterator[Any], state: MapState, interpolate: bool) -> Iterator[tuple[Any, np.ndarray | None]]:
    """Pair every frame with the map it gets; packets pass through (with None) in order.

    Between two frames the model ran on, frames get the earlier map (held) or, with
    ``interpolate``, a linear blend of the two maps by position: this needs the later map
    before the frames in between are encoded, so they wait in a buffer of at most
    ``stride`` frames. Nothing is blended across a scene cut.
    """
    held: list[Any] = []
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
            yield x, state.apply(x.index, cached)
        elif x.prediction is None:
            if interpolate:
                held.append(x)
            else:
                assert state.key is not None, "the first frame always gets a map"
                yield x, state.apply(x.index, state.key)
        else:
            prev = state.key
            new = state.from_prediction(x)
            yield from _flush(held, state, prev, None if x.cut else new)
            held = []
            yield x, state.apply(x.index, new)
    yield from _flush(held, state, state.key, None)


def _flush(held: list[Any], state: MapState, prev: np.ndarray | None, new: np.ndarray | None):
    count = sum(isinstance(h, Item) for h in held)
    j = 0
    for h in held:
        if not isinstance(h, Item):
            yield h, None
            continue
        j += 1
        assert prev is not None
        if new is None:
            m = prev
        else:
            w = j / (count + 1)
            m = np.rint((1 - w) * prev.astype(np.float32) + w * new.astype(np.float32)).astype(np.uint8)
        yield h, state.apply(h.index, m)


_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _produce(frames, policy: MapPolicy | None, track: Any | None, model_input, submit,
             copy_packets: bool) -> Iterator[Any]:
    packets: list[av.Packet] = []
    n = 0
    for frame in frames(packets.append if copy_packets else None):
        if packets:
            yield from packets
            packets.clear()
        pred, cut = None, False
        if policy is not None:
            infer, cut = policy.decide(n, frame)
            if infer and not (track is not None and n in track.maps):
                # The model input is made here, before the frame leaves this thread: PyAV's
                # reformat briefly rewrites the *source* frame's colour tags while it scales,
                # so no other thread may touch a frame that is being reformatted.
                pred = submit(model_input(frame))
        yield Item(n, frame, pred, cut)
        n += 1
    yield from packets


def items(
    frames: Callable[[Callable[[av.Packet], None] | None], Iterator[av.VideoFrame]],
    *,
    model: SaliencyModel | None,
    policy: MapPolicy | None,
    track: Any | None,
    lookahead: int,
    copy_packets: bool,
) -> Iterator[Item | av.Packet]:
    """Decoded frames as :class:`Item` s, interleaved with packets of copied streams.

    ``lookahead`` 0 runs everything in the calling thread; otherwise a producer thread
    decodes up to that many frames ahead and a single inference thread runs the model.
    """

    def model_input(frame: av.VideoFrame) -> np.ndarray:
        assert model is not None
        return model.model_input(frame)

    def predict(rgb: np.ndarray) -> np.ndarray:
        assert model is not None
        return model.predict(rgb[None])[0]

    if lookahead <= 0:
        yield from _produce(frames, policy, track, model_input, predict, copy_packets)
        return

    q: queue.Queue = queue.Queue(maxsize=lookahead)
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vmaf-roi-saliency")

    def put(x: Any) -> None:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def worker() -> None:
        try:
            for x in _produce(frames, policy, track, model_input, lambda rgb: pool.submit(predict, rgb), copy_packets):
                put(x)
            put(_DONE)
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            try:
                put(_Failed(exc))
            except _Stopped:
                pass

    t = threading.Thread(target=worker, name="vmaf-roi-decode", daemon=True)
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
        pool.shutdown(wait=True, cancel_futures=True)


class _Stopped(Exception):
    pass


class MapSchedule:
    """The map-schedule stage: decoded frames -> ``(Item, map)`` pairs in encode order.

    The model runs on the frames :class:`MapPolicy` picks (in a worker thread when
    ``lookahead`` > 0); every frame leaves with the model-resolution uint8 map it gets
    (:func:`with_maps`: held, blended, or cached in ``track``), the same array object for as
    long as the map does not change. Packets of copied streams pass through in order, with
    None. With ``plain`` (a plain encode) the model never runs and frames leave with None.
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

    def run(self, frames: Callable[[Callable[[av.Packet], None] | None], Iterator[av.VideoFrame]]
            ) -> Iterator[tuple[Item | av.Packet, np.ndarray | None]]:
        # a generator: nothing runs (no thread starts) until the caller pulls from it
        self._stream = items(frames, model=self.model, policy=self.policy, track=self.track,
                             lookahead=self.sal.lookahead, copy_packets=self.copy_packets)
        if self.state is None:
            for x in self._stream:
                yield x, None
            return
        for x, m in with_maps(self._stream, self.state, self.sal.interpolate):
            if isinstance(x, Item) and x.prediction is not None:
                self.inferences += 1
            yield x, m

    def close(self) -> None:
        """Stop the decode-ahead and inference threads (on errors and Ctrl-C too)."""
        if self._stream is not None:
            self._stream.close()
