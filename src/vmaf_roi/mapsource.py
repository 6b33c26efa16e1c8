"""Map sources: where an ROI encode's saliency maps come from, behind one small protocol.

A :class:`MapSource` describes the maps; for each pass over the input it makes a fresh map
stage (:meth:`MapSource.stage`), which turns the decoded frames into ``(Item, map)`` pairs in
encode order, exactly as :class:`~vmaf_roi.pipeline.MapSchedule` does (copied packets pass
through with None). The encode pass, the external-ffmpeg pass and ``compare`` take a source
and do not care which one it is:

- :class:`ModelSource`: a saliency model (any registry ONNX model) run on the map schedule
  (stride, scene cuts, blending, motion carry), optionally reusing and recording the maps of
  a :class:`~vmaf_roi.encode.SaliencyTrack`. Its stage *is* ``MapSchedule``, unchanged.
- :class:`TrackSource`: the maps carried in a ``SaliencyTrack`` from an earlier encode of the
  same input (a model source without a model).
- :class:`MapVideoSource`: a map video, e.g. as ``vmaf-roi saliency -o`` writes it (gray
  FFV1 in Matroska, one map per frame with the input's timestamps); any video PyAV reads
  does, taken as gray (its luma).
- :class:`GazeSource`: a gaze file (:mod:`vmaf_roi.gaze`): each frame's fixation density,
  scaled to a maximum of 255. Where viewers looked is the map perfect saliency would give.

Maps from files go to the planner at their own size: the planner samples a map of any size
onto the frame's blocks (``roi.py``, step 2), as it does the model's maps, which are at the
model's output size. A map video whose aspect ratio differs from the input's by more than 2%
is refused.

**Pairing maps and frames** (map videos), as the ``salroi`` filter's two-input mode does it
(``docs/ffmpeg-filter.md``): both streams are taken to start at 0 (each at its own first
timestamp, as ffmpeg moves its inputs); a frame gets the map with the nearest timestamp
within half a frame interval of its own. A frame with no map at its time keeps the latest map
before it (held); frames before the first map get no ROI. Where the map video has no
timestamps (raw streams), or the input has none, map *n* goes with frame *n*. Gaze files are
paired by frame index (their times are turned into frame indices when they are read). The
encode's notes say which pairing was used and count the frames that held a map or had none.

A frame with no map gets :data:`NEUTRAL` (a constant map at 128/255: every block's offset is
``-strength/255``, which rounds to 0 for any strength the config allows, <= 51), so it has
no regions, in process and in the patched ffmpeg alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Protocol

import av
import numpy as np

from .config import SaliencyConfig
from .errors import InputError
from .pipeline import Item, Map, MapSchedule, items

ASPECT_TOLERANCE = 0.02
NEUTRAL_LEVEL = 128  # a constant map at 128/255 plans no region (see the module docstring)
GAZE_SUFFIXES = (".csv",)
Frames = Callable[[Callable[[av.Packet], None] | None], Iterator[av.VideoFrame]]


class MapStage(Protocol):
    """One pass's map stage: decoded frames -> ``(Item, map)`` pairs, packets with None."""

    inferences: int  # model runs (0 for maps read from a file)

    def run(self, frames: Frames, motion: Callable[[], Any] | None = None) -> Iterator[tuple[Any, Map | None]]: ...

    def notes(self) -> list[str]: ...

    def close(self) -> None: ...


class MapSource(ABC):
    """Where an ROI encode's maps come from (module docstring).

    A source is a description that can be used for any number of passes (two-pass encodes,
    ``compare``'s encodes at several rates): :meth:`stage` starts a fresh one each time.
    """

    kind: ClassVar[str] = ""  # model | track | video | gaze
    label: str = ""  # what the encode result names as the maps' origin (a model id, a file)
    provider: str = ""  # the execution provider of a model source
    path: Path | None = None  # the map file, for file sources

    def wants_motion(self, sal: SaliencyConfig) -> bool:
        """Whether the stage uses the decoder's motion vectors (``decode.VideoSource(motion=True)``)."""
        return False

    def neutral(self) -> np.ndarray | None:
        """The map of a frame that has none (no regions), at this source's map size; None where
        every frame gets a map (models)."""
        return None

    def check_frame_size(self, width: int, height: int) -> None:
        """Refuse (InputError) maps that do not fit frames of this size."""

    @abstractmethod
    def stage(self, sal: SaliencyConfig, *, track: Any | None = None, copy_packets: bool = False) -> MapStage:
        """A fresh map stage for one pass over the input; ``track`` (a SaliencyTrack) records
        the map each frame gets."""


class ModelSource(MapSource):
    """A saliency model run on the map schedule (``pipeline.MapSchedule``, unchanged); with a
    ``track`` that holds maps, those are used for the frames they cover (``model`` may then be
    None), and a track records the maps applied."""

    kind = "model"

    def __init__(self, model: Any | None, track: Any | None = None) -> None:
        self.model = model
        self.track = track
        if model is not None:
            self.label, self.provider = model.spec.id, model.provider
        elif track is not None:
            self.label, self.provider = track.model, track.provider

    def wants_motion(self, sal: SaliencyConfig) -> bool:
        return sal.carry == "motion"

    def stage(self, sal: SaliencyConfig, *, track: Any | None = None, copy_packets: bool = False) -> MapSchedule:
        return MapSchedule(sal, self.model, track if track is not None else self.track, copy_packets=copy_packets)


class TrackSource(ModelSource):
    """The maps carried in a SaliencyTrack from an earlier encode of the same input."""

    kind = "track"

    def __init__(self, track: Any) -> None:
        super().__init__(None, track)


# -- maps from files -------------------------------------------------------------------------
def _aspect_differs(mw: int, mh: int, width: int, height: int) -> bool:
    """Whether a map of mw x mh and frames of width x height differ in aspect ratio by more than
    ASPECT_TOLERANCE (the salroi filter's check_aspect uses the same rule)."""
    if not (mw > 0 and mh > 0 and width > 0 and height > 0):
        return False
    return abs((mw / mh) / (width / height) - 1) > ASPECT_TOLERANCE


def _aspect_check(what: Path, mw: int, mh: int, width: int, height: int) -> None:
    if _aspect_differs(mw, mh, width, height):
        raise InputError(f"{what}: the map video is {mw}x{mh} (aspect ratio {mw / mh:.3f}) and the input "
                         f"{width}x{height} ({width / height:.3f}): they differ by more than 2%; make maps that "
                         f"match with `vmaf-roi saliency IN -o maps.mkv`")


class _FileStage:
    """The stage of a file source: frames decoded ahead (``pipeline.items``, no model), each
    paired with the map :meth:`map_for` gives; held maps are the same object (the planner
    plans a map again only when it changes)."""

    def __init__(self, source: "MapSource", sal: SaliencyConfig, track: Any | None, copy_packets: bool) -> None:
        self.source = source
        self.sal = sal
        self.track = track
        self.copy_packets = copy_packets
        self.inferences = 0
        self.frames = 0
        self.held = 0  # frames without a map at their time: the previous map kept
        self.before = 0  # frames before the first map: no ROI
        self._neutral = source.neutral()
        self._stream: Iterator[Any] | None = None

    held_words = "had no map at their time"

    def map_for(self, item: Item) -> np.ndarray | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, frames: Frames, motion: Callable[[], Any] | None = None) -> Iterator[tuple[Any, Map | None]]:
        self._stream = items(frames, model=None, policy=None, track=None, lookahead=self.sal.lookahead,
                             copy_packets=self.copy_packets)
        for x in self._stream:
            if not isinstance(x, Item):
                yield x, None
                continue
            if self.frames == 0:
                self.source.check_frame_size(x.frame.width, x.frame.height)
            self.frames += 1
            m = self.map_for(x)
            if m is None:
                self.before += 1
                m = self._neutral
            if self.track is not None:
                self.track.maps[x.index] = m
            yield x, m

    def pairing_note(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def notes(self) -> list[str]:
        name = self.source.path.name if self.source.path else self.source.label
        out = [f"{name}: {self.pairing_note()}"]
        if self.held:
            out.append(f"{name}: {self.held} of {self.frames} frames {self.held_words} and kept the previous map")
        if self.before:
            out.append(f"{name}: {self.before} of {self.frames} frames came before the first map and got no ROI")
        return out

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


class _MapReader:
    """A map video's frames as (time in s or None, uint8 gray map of the first map's size)."""

    def __init__(self, path: Path) -> None:
        from .decode import AVFMT_NOTIMESTAMPS, open_input

        self.path = path
        self.container = open_input(path)  # one clear InputError for a missing or unreadable file
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.timestamps = not (self.container.format.flags & AVFMT_NOTIMESTAMPS)
        self.size: tuple[int, int] | None = None  # width, height of the first map
        self.count = 0
        self._frames = self._decode()
        self._last_t: Fraction | None = None

    def _decode(self) -> Iterator[av.VideoFrame]:
        try:
            for packet in self.container.demux(self.stream):
                yield from packet.decode()
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.path}: map video unreadable after {self.count} maps "
                             f"({exc.strerror or exc})") from None

    def next(self) -> tuple[Fraction | None, np.ndarray] | None:
        f = next(self._frames, None)
        if f is None:
            return None
        if self.size is None:
            self.size = (f.width, f.height)
        w, h = self.size
        if f.format.name == "gray" and (f.width, f.height) == (w, h):
            m = f.to_ndarray()
        else:  # colour (its luma), another depth, a size change mid-stream: to the first map's
            m = f.reformat(w, h, "gray", interpolation="BILINEAR").to_ndarray()
        t: Fraction | None = None
        if self.timestamps and f.pts is not None:
            t = f.pts * (f.time_base or self.stream.time_base)
        elif self.timestamps and self._last_t is not None:  # a map without one: a frame after the last
            rate = self.stream.average_rate or self.stream.guessed_rate or 25
            t = self._last_t + 1 / Fraction(rate)
        if t is not None:
            self._last_t = t
        self.count += 1
        return t, np.ascontiguousarray(m)

    def close(self) -> None:
        if self.container is not None:  # twice: by the planning thread, then by the encode
            self.container.close()
            self.container = None


class _VideoStage(_FileStage):
    def __init__(self, source: "MapVideoSource", sal: SaliencyConfig, track: Any | None, copy_packets: bool) -> None:
        super().__init__(source, sal, track, copy_packets)
        self.reader = _MapReader(source.path)  # type: ignore[arg-type]
        first = self.reader.next()
        if first is None:
            self.reader.close()
            raise InputError(f"{source.path}: the map video has no frames")
        self.by_time = first[0] is not None and source.input_timestamps
        self._pending: tuple[Fraction | None, np.ndarray] | None = first
        self._t0_map = first[0]
        self._t0: Fraction | None = None  # the first frame's time
        self._recent: list[tuple[Fraction, np.ndarray]] = []  # maps read, latest last (timestamp pairing)
        self._last: np.ndarray | None = None  # index pairing: the last map read
        self._tol = Fraction(1, 2) / Fraction(source.fps) if source.fps else Fraction(1, 1000)

    def pairing_note(self) -> str:
        if self.by_time:
            return "maps paired with frames by timestamp (nearest within half a frame interval)"
        why = "the map video has no timestamps" if self._t0_map is None else "the input has no timestamps"
        return f"maps paired with frames by frame index ({why})"

    def _read(self) -> tuple[Fraction | None, np.ndarray] | None:
        got, self._pending = self._pending, None
        return got if got is not None else self.reader.next()

    def map_for(self, item: Item) -> np.ndarray | None:
        if not self.by_time:
            got = self._read()
            if got is None:  # the map video ended first
                if self._last is not None:
                    self.held += 1
                return self._last
            self._last = got[1]
            return self._last
        f = item.frame
        t = f.pts * f.time_base if f.pts is not None and f.time_base else None
        if t is None:  # never from decode.VideoSource; hold
            self.held += self._last is not None
            return self._last
        if self._t0 is None:
            self._t0 = t
        t -= self._t0
        while True:  # read every map up to half an interval past the frame
            got = self._read()
            if got is None:
                break
            mt = (got[0] if got[0] is not None else self._t0_map) - self._t0_map
            if mt > t + self._tol:
                self._pending = got
                break
            self._recent.append((mt, got[1]))
        near = [r for r in self._recent if abs(r[0] - t) <= self._tol]
        # keep only what can still match a later frame, and the latest (to hold)
        self._recent = [r for r in self._recent[:-1] if r[0] >= t - self._tol] + self._recent[-1:]
        if near:
            best = min(near, key=lambda r: abs(r[0] - t))  # the earlier of two as near
            self._last = best[1]
            return self._last
        if self._recent:  # no map at this time: the latest one before it
            self.held += 1
            self._last = self._recent[-1][1]
            return self._last
        return None

    def close(self) -> None:
        super().close()
        self.reader.close()


class MapVideoSource(MapSource):
    """Maps from a video file (module docstring). ``width``/``height``: the input's frame size,
    to refuse a map video of another aspect ratio before any work (the frames' own size is
    checked again on the first frame, after any filter chain); ``fps``: the input's frame rate
    (the pairing's tolerance, half a frame interval); ``input_timestamps``: False for an input
    without timestamps (maps then go by frame index)."""

    kind = "video"

    def __init__(self, path: str | Path, *, width: int | None = None, height: int | None = None,
                 fps: float | Fraction | None = None, input_timestamps: bool = True) -> None:
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1_000_000) if fps else None
        self.input_timestamps = input_timestamps
        reader = _MapReader(self.path)
        try:
            first = reader.next()
            if first is None:
                raise InputError(f"{self.path}: the map video has no frames")
            self.size = reader.size
            meta = {k.lower(): v for k, v in reader.container.metadata.items()}  # Matroska's tags are upper case
            self.label = meta.get("vmaf_roi_model", "") or f"map video {self.path.name}"
        finally:
            reader.close()
        if width and height:
            self.check_frame_size(width, height)

    def check_frame_size(self, width: int, height: int) -> None:
        assert self.size is not None
        _aspect_check(self.path, *self.size, width, height)

    def neutral(self) -> np.ndarray:
        assert self.size is not None
        m = np.full((self.size[1], self.size[0]), NEUTRAL_LEVEL, dtype=np.uint8)
        m.flags.writeable = False
        return m

    def stage(self, sal: SaliencyConfig, *, track: Any | None = None, copy_packets: bool = False) -> _VideoStage:
        return _VideoStage(self, sal, track, copy_packets)


class _GazeStage(_FileStage):
    def __init__(self, source: "GazeSource", sal: SaliencyConfig, track: Any | None, copy_packets: bool) -> None:
        super().__init__(source, sal, track, copy_packets)
        self.rec = source.recording
        self._has = set(int(i) for i in self.rec.frames())
        self._last: np.ndarray | None = None

    held_words = "had no fixation"

    def pairing_note(self) -> str:
        return "gaze maps paired with frames by frame index"

    def map_for(self, item: Item) -> np.ndarray | None:
        if item.index in self._has:
            self._last = gaze_map(self.rec, item.index, self.source.sigma)  # type: ignore[attr-defined]
        elif self._last is not None:
            self.held += 1
        return self._last


def gaze_map(rec: Any, frame: int, sigma: float | None = None) -> np.ndarray:
    """A frame's fixation density as a uint8 map: scaled to a maximum of 255, rounded."""
    d = rec.density(frame, sigma)
    top = float(d.max())
    if top <= 0:
        return np.zeros(d.shape, dtype=np.uint8)
    m = np.rint(d * (255.0 / top)).astype(np.uint8)
    m.flags.writeable = False
    return m


class GazeSource(MapSource):
    """Maps from viewers' gaze (a :class:`vmaf_roi.gaze.GazeRecording`): each frame's fixation
    density (``sigma``: the Gaussian's, default one degree), scaled to max 255; a frame without
    fixations keeps the last map, frames before the first fixation get no ROI."""

    kind = "gaze"

    def __init__(self, recording: Any, *, sigma: float | None = None, path: str | Path | None = None) -> None:
        self.recording = recording
        self.sigma = sigma
        self.path = Path(path) if path is not None else (Path(recording.source) if recording.source else None)
        self.label = f"gaze {self.path.name}" if self.path else "gaze"

    def check_frame_size(self, width: int, height: int) -> None:
        rec = self.recording
        if _aspect_differs(rec.width, rec.height, width, height):
            raise InputError(f"{self.path or 'gaze'}: the gaze points are for a {rec.width}x{rec.height} picture, the "
                             f"frames are {width}x{height}: their aspect ratios differ by more than 2%")

    def neutral(self) -> np.ndarray:
        m = np.full((self.recording.height, self.recording.width), NEUTRAL_LEVEL, dtype=np.uint8)
        m.flags.writeable = False
        return m

    def stage(self, sal: SaliencyConfig, *, track: Any | None = None, copy_packets: bool = False) -> _GazeStage:
        return _GazeStage(self, sal, track, copy_packets)


def open_map_source(path: str | Path, *, width: int, height: int, fps: float | Fraction | None = None,
                    frame_count: int | None = None, input_timestamps: bool = True) -> MapSource:
    """The map source of a file: a gaze file (``.csv``, :func:`vmaf_roi.gaze.load_gaze`) or a
    map video (anything else). ``width``, ``height``, ``fps``, ``frame_count``: the input video's
    (``fps`` and ``frame_count`` may be None where not known). Raises InputError (one line) for a
    missing file, a map video with no frames or another aspect ratio, a bad gaze file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such map file")
    if p.suffix.lower() in GAZE_SUFFIXES:
        from .gaze import load_gaze

        return GazeSource(load_gaze(p, width=width, height=height, fps=fps, frame_count=frame_count), path=p)
    return MapVideoSource(p, width=width, height=height, fps=fps, input_timestamps=input_timestamps)


def probe_input(path: str | Path) -> dict[str, Any]:
    """The input facts :func:`open_map_source` takes, read from the file's first video stream:
    ``width``, ``height``, ``fps`` (None if unknown), ``frame_count`` (None if the container
    does not say), ``input_timestamps``."""
    from .decode import AVFMT_NOTIMESTAMPS, open_input

    c = open_input(path)
    try:
        s = c.streams.video[0]
        rate = s.average_rate or s.guessed_rate
        return {"width": s.codec_context.width, "height": s.codec_context.height,
                "fps": Fraction(rate) if rate else None, "frame_count": s.frames or None,
                "input_timestamps": not (c.format.flags & AVFMT_NOTIMESTAMPS)}
    finally:
        c.close()


__all__ = ["MapSource", "MapStage", "ModelSource", "TrackSource", "MapVideoSource", "GazeSource", "open_map_source",
           "probe_input", "gaze_map", "NEUTRAL_LEVEL", "ASPECT_TOLERANCE"]
