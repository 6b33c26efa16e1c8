"""Saliency scheduling and the decode-ahead thread of the encode pass.

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
from typing import Any, Callable, Iterator

import av
import numpy as np

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

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.stride = int(cfg["stride"])
        self.scene_cut = bool(cfg["scene_cut"])
        self.scene_threshold = float(cfg["scene_threshold"])
        ct = cfg.get("change_threshold")
        self.change_threshold = float(ct) if ct is not None else None
        self._prev: np.ndarray | None = None
        self._at_map: np.ndarray | None = None
        self._since = 0
        self.cuts = 0

    def decide(self, index: int, frame: av.VideoFrame) -> tuple[bool, bool]:
        """(run the model, is a scene cut) for this frame."""
        need_thumb = self.scene_cut or self.change_threshold is not None
        thumb = frame.reformat(*THUMB, "gray").to_ndarray().astype(np.int16) if need_thumb else None
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
    """The current model-resolution map (uint8), updated as items reach the encoder."""

    def __init__(self, smoothing: float, track: Any | None) -> None:
        self.alpha = float(smoothing)
        self.track = track
        self.current: np.ndarray | None = None
        self.version = 0

    def consume(self, item: Item) -> np.ndarray:
        cached = self.track.maps.get(item.index) if self.track is not None else None
        if cached is not None:
            if self.current is None or cached is not self.current:
                self.current = cached
                self.version += 1
            return cached
        if item.prediction is not None:
            pred = item.prediction.result() if isinstance(item.prediction, Future) else item.prediction
            new = pred
            if self.alpha > 0 and self.current is not None and not item.cut:
                new = self.alpha * (self.current.astype(np.float32) / 255.0) + (1 - self.alpha) * pred
            self.current = np.rint(np.clip(new, 0, 1) * 255).astype(np.uint8)
            self.version += 1
        assert self.current is not None, "the first frame always gets a map"
        if self.track is not None:
            self.track.maps[item.index] = self.current
        return self.current


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
