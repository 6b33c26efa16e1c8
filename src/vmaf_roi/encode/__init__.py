"""The encode pass: one streaming pass from an input file to an ROI-encoded output.

A chain of stages, each a small object with its own module and typed config section:

    source      decode.VideoSource        input, filter chain, best-effort timestamps
    -> maps     a mapsource.MapSource's   the model on pipeline.MapSchedule (every `stride` frames
                stage                     / on cuts, blended between, or carried along the decoder's
                                          motion vectors); or maps read from a map video or a gaze file
    -> plan     encode.plan.RoiPlan       map -> per-block QP offsets -> AVRegionOfInterest list
    -> attach   sidedata.RoiAttacher      the list as the frame's side data
    -> encode   encode.mux.EncoderMuxer   encoder (encode.options) and muxer, audio copied

``plain=True`` runs the same chain and encoder settings without saliency or side data, for
fair comparisons.

Threads (with ``saliency.lookahead`` > 0): decoding, thumbnails and model input in one
(``vmaf-roi-decode``), the model in another (``vmaf-roi-saliency``), map blending, planning and
attaching in a third (``vmaf-roi-plan``, a few frames ahead), so the calling thread only feeds
the encoder and muxes; FFmpeg, ONNX Runtime and libx264 work outside the GIL.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import av
import numpy as np
from av.video.frame import PictureType

from .. import config as config_mod
from ..config import EncodeConfig
from ..decode import VideoSource
from ..encoders import ENCODERS, needs_patch
from ..errors import ConfigError
from ..maps import ProgressFactory, no_progress
from ..mapsource import MapSource, ModelSource, open_map_source, probe_input
from ..output import AtomicOutputs, check_outputs
from ..pipeline import Item, Map, MapSchedule, MapStore, threaded
from ..saliency import SaliencyModel
from ..sidedata import RoiAttacher
from . import external
from .mux import EncoderMuxer, check_muxable
from .options import bit_depth, check_encoder, choose_pix_fmt, encoder_options
from .plan import VP9_MAX_DELTA_Q, VP9_QINDEX_PER_QP, RoiPlan, roi_entries

__all__ = ["EncodeResult", "SaliencyTrack", "MapSource", "open_map_source", "encode", "check_encoder", "check_external",
           "choose_pix_fmt", "encoder_options", "roi_entries", "RoiAttacher", "VP9_MAX_DELTA_Q", "VP9_QINDEX_PER_QP"]

EventSink = Callable[[str], None]
PREPARE_AHEAD = 4  # frames planned and attached ahead of the encoder (ROI encodes with lookahead)


def _quiet(_: str) -> None:
    pass


def check_external(encoder: str, plain: bool, input_path: str | Path) -> None:
    """Where ``encoder``'s encode runs in the patched ffmpeg (ROI with libsvtav1 or NVENC): that
    ffmpeg is found and decodes ``input_path`` (a ConfigError or InputError saying so), before
    work that would end in that encode."""
    if needs_patch(encoder) and not plain:
        external.check_decodes(external.find_patched_ffmpeg(encoder), Path(input_path))


@dataclass
class SaliencyTrack:
    """Per-frame model-resolution maps (uint8 arrays), shared between encodes of the same input."""

    maps: MapStore = field(default_factory=MapStore)  # a plain mapping given is taken in
    inferences: int = 0
    provider: str = ""
    model: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.maps, MapStore):
            self.maps = MapStore(self.maps)


@dataclass
class EncodeResult:
    output: Path
    encoder: str
    roi: bool
    frames: int
    seconds: float
    bytes: int  # the whole file: video, copied audio/subtitles, container
    duration: float
    video_bytes: int = 0  # the encoded video packets only
    inferences: int = 0
    provider: str = ""
    model: str = ""
    mean_regions: float = 0.0
    roi_digest: str = ""  # sha256 of every frame's ROI list: equal digests = same ROI applied
    notes: list[str] = field(default_factory=list)
    maps: str = ""  # the map file the maps came from ("" for a model)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def add_saliency(self, inferences: int, plan: RoiPlan | None, source: MapSource,
                     track: SaliencyTrack | None) -> None:
        """An ROI encode's saliency facts (the model that ran, the track's, or the map file's);
        a shared ``track`` learns what ran."""
        self.inferences = inferences
        self.roi_digest = plan.digest.hexdigest() if plan is not None else ""
        self.provider, self.model = source.provider, source.label
        self.maps = str(source.path) if source.path is not None else ""
        model = getattr(source, "model", None)
        if track is not None and (model is not None or source.path is not None):
            track.inferences += inferences
            track.provider, track.model = source.provider, source.label

    @property
    def bitrate(self) -> float:
        """Total bit/s of the file (video + copied streams + container), as before."""
        return self.bytes * 8 / self.duration if self.duration > 0 else 0.0

    @property
    def total_bitrate(self) -> float:
        return self.bitrate

    @property
    def video_bitrate(self) -> float:
        """Bit/s of the encoded video alone: what ROI changes, and what compare compares."""
        return self.video_bytes * 8 / self.duration if self.duration > 0 else 0.0


def encode(
    input_path: str | Path,
    output_path: str | Path,
    cfg: EncodeConfig | Mapping[str, Any],
    *,
    plain: bool = False,
    model: SaliencyModel | None = None,
    track: SaliencyTrack | None = None,
    maps: MapSource | str | Path | None = None,
    progress: ProgressFactory = no_progress,
    on_event: EventSink = _quiet,
    model_dir: Path | None = None,
    overwrite: bool = True,
    backend: str = "auto",
    external_maps: str = "filter",
    _pass: int = 0,
    _stats: str | None = None,
) -> EncodeResult:
    """Encode ``input_path`` to ``output_path`` with ROI from saliency (or plain).

    ``cfg``: an :class:`~vmaf_roi.config.EncodeConfig`, or its YAML form (validated here).
    ``backend``: where the encoder runs. ``auto``: in this process (PyAV's FFmpeg), except ROI
    with an encoder only vmaf-roi's patched ffmpeg honours it with (libsvtav1, NVENC: see
    ``encoders.py``), which runs there (:mod:`.external`); ``ffmpeg``: the patched ffmpeg also for
    a plain encode (``compare`` does this, so that plain and ROI use the same encoder build).
    ``external_maps``: in the patched ffmpeg, who makes a registry model's maps. ``filter``: its
    salroi filter, in the one decode (unless a track holds maps or ``carry: motion``);
    ``package``: this process, in a decode of its own before ffmpeg's (the two-pass path).
    ``overwrite=False`` refuses an existing output (OutputError) before any work; an output that
    is the input is always refused.
    ``maps``: where the maps come from instead of the model: a :class:`~vmaf_roi.mapsource.MapSource`
    or the path of a map video or gaze file (:func:`~vmaf_roi.mapsource.open_map_source`).
    ``track``: maps reused from and recorded for other encodes of the same input.
    """
    t0 = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    cfg = config_mod.typed(cfg)
    if maps is not None and plain:
        raise ConfigError("--maps with --plain: a plain encode applies no maps; give one or the other")
    map_path = None if maps is None or isinstance(maps, MapSource) else Path(maps)
    if not _pass:
        check_outputs([output_path], [input_path, map_path], overwrite=overwrite)
    enc = cfg.encoder.name
    codec = check_encoder(enc, plain)
    check_muxable(codec, output_path)
    notes: list[str] = []
    opts, bit_rate = encoder_options(cfg.encoder, plain, notes, pass_no=_pass, stats=_stats)
    if map_path is not None:  # before any work: a missing, empty or misshapen map file is refused
        maps = open_map_source(map_path, **probe_input(input_path))
    if cfg.encoder.rate_control.two_pass and not _pass:
        return _two_pass(input_path, output_path, cfg, plain=plain, model=model, track=track, maps=maps,
                         progress=progress, on_event=on_event, model_dir=model_dir, overwrite=overwrite,
                         backend=backend, external_maps=external_maps)
    for n in notes:
        on_event(n)
    if enc == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration at info level
    ffmpeg = None
    if backend not in ("auto", "ffmpeg"):
        raise ValueError(f"backend must be auto or ffmpeg, got {backend!r}")
    if external_maps not in ("filter", "package"):
        raise ValueError(f"external_maps must be filter or package, got {external_maps!r}")
    if needs_patch(enc) and (not plain or backend == "ffmpeg"):
        ffmpeg = external.find_patched_ffmpeg(enc)
        if not ENCODERS[enc].tested:
            on_event(f"ROI with {enc} through the patched ffmpeg has never been run on a GPU here: untested")
    one_pass = None
    if ffmpeg is not None and not plain and maps is None and model is None and external_maps == "filter":
        one_pass = external.filter_model(cfg, track, model_dir)  # None: the maps are made here first
    source: MapSource | None = None
    if not plain and one_pass is None:
        if maps is not None:
            source = maps
        else:  # the model (with the maps a track already holds: none, when it holds them all)
            if model is None and not (track is not None and track.maps):
                model = _load_model(cfg, model_dir, on_event)
            source = ModelSource(model, track)
    if ffmpeg is not None:
        return external.encode_external(
            input_path, output_path, cfg, ffmpeg=ffmpeg, plain=plain, options=opts, bit_rate=bit_rate, notes=notes,
            source=source, track=track, progress=progress, on_event=on_event, overwrite=overwrite, t0=t0,
            one_pass=one_pass)

    carry_motion = source is not None and source.wants_motion(cfg.saliency)
    with VideoSource(input_path, cfg.filters, motion=carry_motion) as src, AtomicOutputs() as outs:
        tmp = outs.add(output_path, inputs=(input_path,), overwrite=overwrite)
        with EncoderMuxer(tmp, output_path, codec, cfg.encoder, opts, bit_rate, src,
                          copy_audio=cfg.audio == "copy", on_event=on_event) as sink:
            if source is None:
                schedule = MapSchedule(cfg.saliency, None, None, copy_packets=sink.copies_streams, plain=True)
            else:
                schedule = source.stage(cfg.saliency, track=track, copy_packets=sink.copies_streams)
            stage = _RoiStage(cfg, codec, on_event) if not plain else None
            motion = src.motion if src.has_motion else None
            # ROI: planning and attaching run in a thread of their own, off the encoder's thread
            # (whose own work is serial in libx264), a few frames ahead
            if stage is not None and cfg.saliency.lookahead > 0:
                frames = threaded(lambda: _prepared(schedule, src, motion, stage), PREPARE_AHEAD, "vmaf-roi-plan")
            else:
                frames = _prepared(schedule, src, motion, stage)
            bar = progress(src.estimated_frames(), "encode" + (" (plain)" if plain else " (roi)"))
            try:
                for x in frames:
                    if not isinstance(x, av.VideoFrame):
                        sink.copy(x)
                        continue
                    if not sink.started:
                        sink.start(x)
                        assert stage is None or stage.bit_depth == sink.bit_depth
                    sink.encode(x)
                    bar.update(1)
                sink.finish()
            finally:
                bar.close()
                frames.close()  # stops the planning, decode-ahead and inference threads (errors, Ctrl-C)
                schedule.close()
        for note in [*schedule.notes(), *src.notes()]:  # map pairing; timestamp fix-ups, size changes, ...
            notes.append(note)
            on_event(note)
        duration = _duration(src, sink.frames)
    res = EncodeResult(
        output=output_path, encoder=enc, roi=not plain, frames=sink.frames, seconds=time.perf_counter() - t0,
        bytes=output_path.stat().st_size, video_bytes=sink.video_bytes, duration=duration, notes=notes,
        mean_regions=stage.plan.mean_regions if stage is not None and stage.plan is not None else 0.0,
    )
    if source is not None:
        res.add_saliency(schedule.inferences, stage.plan if stage is not None else None, source, track)
    return res


def _prepared(schedule: Any, src: VideoSource, motion, stage: "_RoiStage | None"):
    """Frames ready for the encoder (their ROI attached) and copied packets, in order."""
    try:
        for item, small in schedule.run(src.frames, motion):
            if not isinstance(item, Item):
                yield item
                continue
            frame = item.frame  # best-effort, increasing timestamps (decode stage)
            # Decoded frames carry the source's picture types; encoders such as libx264 obey
            # them (as FFmpeg's CLI knows, which resets them): let the encoder choose.
            frame.pict_type = PictureType.NONE
            yield stage.attach(frame, small) if stage is not None else frame
    finally:
        schedule.close()


class _RoiStage:
    """Planning and attaching for an in-process ROI encode: set up on the first frame (the
    encoder's bit depth follows from its pixel format, chosen as the muxer will)."""

    def __init__(self, cfg: EncodeConfig, codec: av.Codec, on_event: EventSink) -> None:
        self.cfg, self.codec, self.on_event = cfg, codec, on_event
        self.attacher = RoiAttacher(cfg.roi.max_regions)
        self.plan: RoiPlan | None = None
        self.bit_depth = 0

    def attach(self, frame: av.VideoFrame, small: Map | None) -> av.VideoFrame:
        if self.plan is None:
            enc = self.cfg.encoder.name
            self.bit_depth = bit_depth(choose_pix_fmt(self.cfg.encoder.pix_fmt, frame.format.name, self.codec))
            self.plan = RoiPlan(self.cfg.roi, enc, self.bit_depth)
            if getattr(frame, "interlaced_frame", False) and enc in ("libx264", "libx265"):
                self.on_event(f"interlaced input: {enc} skips ROI on interlaced frames")
        return self.attacher.attach(frame, self.plan.entries(frame.width, frame.height, small))


def _load_model(cfg: EncodeConfig, model_dir: Path | None, on_event: EventSink) -> SaliencyModel:
    sal = cfg.saliency
    # no busy-waiting ONNX Runtime workers: they would take CPU from the encoder (measured
    # on 2 cores: 0.77x -> 0.91x of a plain encode's throughput)
    model = SaliencyModel(sal.model, device=sal.device, cache_dir=model_dir, spin=False)
    if model.placeholder:
        on_event(f"model {model.spec.id!r} is a PLACEHOLDER: its output is not real saliency")
    return model


def _two_pass(input_path: Path, output_path: Path, cfg: EncodeConfig, *, track: SaliencyTrack | None,
              **kw: Any) -> EncodeResult:
    """First pass to a throw-away file (rate statistics), second pass to the output.

    Both passes apply the same ROI: the maps of the first are reused by the second.
    """
    shared = track if track is not None else SaliencyTrack()
    with tempfile.TemporaryDirectory(prefix="vmaf-roi-2pass-") as d:
        stats = str(Path(d) / "stats.log")
        first = encode(input_path, Path(d) / ("pass1" + output_path.suffix), cfg, track=shared, _pass=1, _stats=stats,
                       **kw)
        res = encode(input_path, output_path, cfg, track=shared, _pass=2, _stats=stats, **kw)
    res.seconds += first.seconds
    res.inferences = first.inferences
    res.provider, res.model = first.provider, first.model
    res.notes = first.notes + [n for n in res.notes if n not in first.notes]
    return res


def _duration(src: VideoSource, frames: int) -> float:
    s = src.stream
    if s.duration and s.time_base:
        return float(s.duration * s.time_base)
    if src.container.duration:
        return src.container.duration / av.time_base
    r = src.rate
    return frames / float(r) if r else 0.0


