"""Encoders whose FFmpeg wrapper only honours ROI with vmaf-roi's patches: the encode runs in
the patched ffmpeg (``plugin/build.sh``).

One pass (the default for a registry model): the patched ffmpeg decodes the input once and its
``salroi`` filter runs the model itself (model mode: the same ONNX graph, preprocessing, map
schedule and planner as the package; ``tests/test_plugin.py`` checks the maps agree). The maps
it applied come back in a raw file, from which the ROI digest, the region count and a shared
track's maps are taken.

Two passes (maps from a file, carried maps, maps a track already holds, ``carry: motion``, or a
model the filter cannot run): the maps are computed here first.

The same chain as the in-process encode up to the maps (source -> the map source's stage: the
model's map schedule, or maps read from a map video or gaze file and paired with the frames as
in process), then a map stream (gray FFV1 in Matroska, the maps' own size, the frames'
timestamps) instead of side data; the patched ffmpeg plans and attaches the regions with the ``salroi`` filter
(two-input mode: exactly the planner of ``roi.py`` on the same 8-bit maps) and encodes. Audio
and subtitles are copied, the output is written to a temporary and renamed at the end, and a
signal kills the child ffmpeg (as for libvmaf).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import av
import numpy as np

from .. import errors
from ..config import EncodeConfig
from ..decode import VideoSource
from ..encoders import ENCODERS, block_size
from ..errors import ConfigError, EncodeError, InputError
from ..maps import MapVideoWriter, ProgressFactory
from ..output import AtomicOutputs
from ..mapsource import MapSource, ModelSource
from ..pipeline import Item
from .mux import format_for
from .plan import RoiPlan

EventSink = Callable[[str], None]
ENV = ("VMAF_ROI_FFMPEG_PATCHED", "VMAF_ROI_SALROI_FFMPEG")
BUILD_HINT = ("build it with `plugin/ci.sh` (or `plugin/build.sh`; it links build/bin/ffmpeg) and point "
              "$VMAF_ROI_FFMPEG_PATCHED at it")


def _candidates() -> list[tuple[str, str]]:
    out = [(os.environ[k], f"${k}") for k in ENV if os.environ.get(k)]
    link = Path(__file__).resolve().parents[3] / "build" / "bin" / "ffmpeg"  # a checkout's plugin/build.sh link
    if link.exists():
        out.append((str(link), str(link)))
    which = shutil.which("ffmpeg")
    if which:
        out.append((which, "PATH"))
    return out


@functools.lru_cache(maxsize=16)
def _help(ffmpeg: str, what: str) -> str:
    try:
        r = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-h", what], capture_output=True, text=True,
                           timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout if r.returncode == 0 else ""


def has_roi_patch(ffmpeg: str, encoder: str) -> bool:
    """This ffmpeg has the salroi filter and the ROI patch of ``encoder``'s wrapper (its marker
    option, see ``encoders.py``)."""
    e = ENCODERS.get(encoder)
    if e is None or not e.patch:
        return False
    if "salroi" not in _help(ffmpeg, "filter=salroi"):
        return False
    return e.patch in _help(ffmpeg, f"encoder={encoder}")


def find_patched_ffmpeg(encoder: str) -> str:
    """The patched ffmpeg for ROI with ``encoder``, or a ConfigError saying how to build one."""
    tried = []
    for path, source in _candidates():
        resolved = shutil.which(path) or (path if Path(path).is_file() else None)
        if resolved and has_roi_patch(resolved, encoder):
            return resolved
        tried.append(f"{path} ({source})")
    e = ENCODERS[encoder]
    where = f"; tried {', '.join(tried)}" if tried else ""
    raise ConfigError(f"config encoder: ROI with {encoder} needs vmaf-roi's patched ffmpeg ({e.reason}){where}: "
                      f"{BUILD_HINT}, or run with --plain")


def check_decodes(ffmpeg: str, input_path: Path) -> None:
    """``ffmpeg`` opens ``input_path`` and decodes its first video frame, else an InputError with
    what it said: a search checks this before its probes, whose samples any ffmpeg reads, so that
    an input the final encode's ffmpeg cannot take fails at once, not after the search."""
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-i", str(input_path), "-map", "0:v:0",
           "-frames:v", "1", "-f", "null", "-"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise EncodeError(f"cannot run {ffmpeg}: {exc}") from None
    if r.returncode != 0:
        said = " | ".join([ln for ln in r.stderr.splitlines() if ln.strip()][-2:]) or f"exit {r.returncode}"
        raise InputError(f"{input_path}: the patched ffmpeg {ffmpeg}, where this encode runs, cannot decode it "
                         f"({said}); use a build with its decoder (plugin/build.sh without --minimal) or "
                         f"convert the input first")


@dataclass(frozen=True)
class FilterModel:
    """A registry model the ``salroi`` filter runs itself: its verified file and options."""

    id: str
    placeholder: bool
    options: str  # salroi=model=...:sha256=...:... (the model's own keys)


def filter_model(cfg: EncodeConfig, track, model_dir: Path | None) -> FilterModel | None:
    """The model of a one-pass encode, or None when the maps must be computed here: a track
    that already holds maps (they are replayed), ``carry: motion`` (the filter does not carry
    maps along motion vectors), or a model whose pre/postprocessing the filter does not have.
    A missing or altered model file is an error, as it is for the package."""
    from ..ffmpeg_filter import model_file, ort_library, salroi_options
    from ..registry import get_spec

    if cfg.saliency.carry != "none" or (track is not None and track.maps):
        return None
    spec = get_spec(cfg.saliency.model)
    path, digest = model_file(spec, model_dir)
    try:
        options = salroi_options(spec, path, ort_lib=ort_library(), digest=digest)
    except errors.ModelError:
        return None
    return FilterModel(spec.id, bool(spec.placeholder), options)


def encode_external(input_path: Path, output_path: Path, cfg: EncodeConfig, *, ffmpeg: str, plain: bool,
                    options: dict[str, str], bit_rate: int, notes: list[str], track, progress: ProgressFactory,
                    on_event: EventSink, overwrite: bool, t0: float, source: MapSource | None = None,
                    model=None, one_pass: FilterModel | None = None):
    """``source``: where the maps come from (ROI); ``model``: instead of a source, a
    SaliencyModel run on the map schedule (with ``track``'s maps where it has them);
    ``one_pass``: instead of both, the model the salroi filter runs in the one decode."""
    from . import EncodeResult  # the package's result type

    if one_pass is not None and not plain:
        return _encode_one_pass(input_path, output_path, cfg, ffmpeg=ffmpeg, fm=one_pass, options=options,
                                bit_rate=bit_rate, notes=notes, track=track, progress=progress,
                                on_event=on_event, overwrite=overwrite, t0=t0)
    if source is None and not plain:
        source = ModelSource(model, track)

    enc = cfg.encoder.name
    res_frames = inferences = 0
    plan: RoiPlan | None = None
    with tempfile.TemporaryDirectory(prefix="vmaf-roi-maps-") as tmpdir, AtomicOutputs() as outs:
        tmp_out = outs.add(output_path, inputs=(input_path,), overwrite=overwrite)
        maps = None
        if not plain:
            maps = Path(tmpdir) / "maps.mkv"
            assert source is not None
            res_frames, inferences, plan, src_notes = _write_maps(input_path, maps, cfg, source, track, progress)
            for note in src_notes:  # timestamp fix-ups, carrying fallback etc. of the map pass
                notes.append(note)
                on_event(note)
        cmd = _command(ffmpeg, input_path, maps, tmp_out, output_path, cfg, options, bit_rate)
        total = res_frames or None
        _run(cmd, progress(total, "encode" + (" (plain)" if plain else " (roi)") + f" [{Path(ffmpeg).name}]"),
             Path(tmpdir) / "stderr.log")
        frames, video_bytes, duration = _measure(tmp_out)
        if frames == 0:
            raise InputError(f"{input_path}: no video frames could be decoded")
        if res_frames and frames != res_frames:
            notes.append(f"ffmpeg encoded {frames} frames, the map pass saw {res_frames} (their timestamp "
                         f"fix-ups differ; frames without their own map got the nearest one)")
            on_event(notes[-1])
    res = EncodeResult(output=output_path, encoder=enc, roi=not plain, frames=frames, seconds=time.perf_counter() - t0,
                       bytes=output_path.stat().st_size, video_bytes=video_bytes, duration=duration, notes=notes,
                       mean_regions=plan.mean_regions if plan is not None else 0.0)
    if source is not None:
        res.add_saliency(inferences, plan, source, track)
    return res


PROVIDERS = {"CPU": "CPUExecutionProvider", "CUDA": "CUDAExecutionProvider"}  # the package's names


def _encode_one_pass(input_path: Path, output_path: Path, cfg: EncodeConfig, *, ffmpeg: str, fm: FilterModel,
                     options: dict[str, str], bit_rate: int, notes: list[str], track, progress: ProgressFactory,
                     on_event: EventSink, overwrite: bool, t0: float):
    """One decode: ffmpeg's salroi runs the model (model mode) and writes the maps it applied,
    which are read back afterwards for the ROI digest, the region count and ``track``."""
    from . import EncodeResult

    if fm.placeholder:
        on_event(f"model {fm.id!r} is a PLACEHOLDER: its output is not real saliency")
    enc = cfg.encoder.name
    with tempfile.TemporaryDirectory(prefix="vmaf-roi-maps-") as tmpdir, AtomicOutputs() as outs:
        tmp_out = outs.add(output_path, inputs=(input_path,), overwrite=overwrite)
        raw = Path(tmpdir) / "maps.gray"
        cmd = _command(ffmpeg, input_path, None, tmp_out, output_path, cfg, options, bit_rate,
                       model_filter=salroi_model_filter(cfg, fm, raw))
        log = _run(cmd, progress(_estimated_frames(input_path), f"encode (roi, one pass) [{Path(ffmpeg).name}]"),
                   Path(tmpdir) / "stderr.log")
        frames, video_bytes, duration = _measure(tmp_out)
        if frames == 0:
            raise InputError(f"{input_path}: no video frames could be decoded")
        stats = _model_stats(log)
        if stats is None:
            raise EncodeError(f"{Path(ffmpeg).name}: the salroi filter reported no model run (its log: "
                              f"{Path(tmpdir) / 'stderr.log'} was {len(log)} bytes)")
        inferences, provider, (mw, mh) = stats
        width, height = _frame_size(tmp_out)
        plan = RoiPlan(cfg.roi, enc)
        maps = np.fromfile(raw, dtype=np.uint8)
        if mw * mh == 0 or maps.size % (mw * mh):
            raise EncodeError(f"salroi wrote {maps.size} bytes of {mw}x{mh} maps")
        maps = maps.reshape(-1, mh, mw)
        for i, m in enumerate(maps):
            plan.entries(width, height, m)
            if track is not None:
                track.maps[i] = m
        if len(maps) != frames:
            notes.append(f"ffmpeg encoded {frames} frames, salroi planned {len(maps)}")
            on_event(notes[-1])
    res = EncodeResult(output=output_path, encoder=enc, roi=True, frames=frames, seconds=time.perf_counter() - t0,
                       bytes=output_path.stat().st_size, video_bytes=video_bytes, duration=duration, notes=notes,
                       mean_regions=plan.mean_regions)
    res.inferences, res.roi_digest = inferences, plan.digest.hexdigest()
    res.provider, res.model = PROVIDERS.get(provider, provider), fm.id
    if track is not None:
        track.inferences += inferences
        track.provider, track.model = res.provider, res.model
    return res


_STATS = re.compile(r"(\d+) inferences \(\d+ on scene cuts\).*maps (\d+)x(\d+)")
_PROVIDER = re.compile(r"(\w+) execution provider")


def _model_stats(log: str) -> tuple[int, str, tuple[int, int]] | None:
    """(inferences, execution provider, (map width, map height)) from the salroi filter's log."""
    m = _STATS.search(log)
    if m is None:
        return None
    p = _PROVIDER.search(log)
    return int(m.group(1)), p.group(1) if p else "", (int(m.group(2)), int(m.group(3)))


def _estimated_frames(path: Path) -> int | None:
    """The progress bar's total, read from the header (no decode here: ffmpeg decodes)."""
    from ..decode import estimated_frames, open_input

    try:
        c = open_input(path)
    except Exception:  # the encode itself reports an unreadable input
        return None
    try:
        return estimated_frames(c, c.streams.video[0]) if c.streams.video else None
    finally:
        c.close()


def _frame_size(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        return cc.width, cc.height


def salroi_model_filter(cfg: EncodeConfig, fm: FilterModel, maps: Path | None = None) -> str:
    """salroi in model mode with the encode's map schedule and planner (one input)."""
    from ..ffmpeg_filter import _escape

    sal = cfg.saliency
    opts = [fm.options, f"stride={sal.stride}", f"scene_cut={int(sal.scene_cut)}",
            f"scene_threshold={sal.scene_threshold:g}", f"smoothing={sal.smoothing:g}",
            f"interpolate={int(sal.interpolate)}",
            f"change_threshold={-1 if sal.change_threshold is None else sal.change_threshold:g}",
            f"device={sal.device}", _planner_options(cfg)]
    if maps is not None:
        opts.append(f"maps={_escape(str(maps))}")
    return ":".join(opts)


def _planner_options(cfg: EncodeConfig) -> str:
    from .. import roi

    r = cfg.roi
    enc = cfg.encoder.name
    return (f"strength={r.strength!r}:strength_width={r.strength_width}"
            f":block={int(r.block or block_size(enc))}:max_regions={r.max_regions}"
            f":mode={r.mode}:pool={r.pool}:clamp={r.max_offset}:qp_scale={roi.encoder_qp_scale(enc)}")


def _write_maps(input_path: Path, path: Path, cfg: EncodeConfig, source: MapSource, track, progress):
    """Source -> the map source's stage -> a map stream (a map for every frame, at the
    frame's timestamp: a frame without one gets the source's neutral map); also plans each
    frame (the digest and region count the in-process encode reports: salroi plans the same
    way on the same maps)."""
    meta = {"vmaf_roi_model": source.label}
    plan = RoiPlan(cfg.roi, cfg.encoder.name)
    writer: MapVideoWriter | None = None
    n = 0
    with VideoSource(input_path, cfg.filters, motion=source.wants_motion(cfg.saliency)) as src:
        schedule = source.stage(cfg.saliency, track=track, copy_packets=False)
        bar = progress(src.estimated_frames(), "maps")
        try:
            for item, small in schedule.run(src.frames, src.motion if src.has_motion else None):
                if not isinstance(item, Item) or small is None:
                    continue
                # salroi plans the maps as written: a blend made and rounded (roi.Blend)
                small = np.asarray(small)
                frame = item.frame
                if writer is None:
                    writer = MapVideoWriter(path, small.shape[1], small.shape[0], src.rate, meta)
                tb = frame.time_base or src.time_base
                writer.write(small, max(frame.pts or 0, 0) * tb)
                plan.entries(frame.width, frame.height, small)
                n += 1
                bar.update(1)
        finally:
            bar.close()
            schedule.close()
            if writer is not None:
                writer.close()
        src_notes = ([src.motion_note] if src.motion_note else []) + schedule.notes() + list(src.notes())
    if n == 0:
        raise InputError(f"{input_path}: no video frames could be decoded")
    return n, schedule.inferences, plan, src_notes


def _salroi(cfg: EncodeConfig) -> str:
    return f"salroi={_planner_options(cfg)}:check_aspect=0"  # the maps are this video's, at the model's size


def _stream_maps(input_path: Path, copy: bool) -> list[str]:
    """-map options in the input's stream order, as the in-process muxer orders them (and
    ``ffmpeg -map 0`` does): the encoded video where the first video stream was, the audio and
    subtitle streams (``copy``) where they were."""
    with av.open(str(input_path)) as c:
        first_video = next((s.index for s in c.streams if s.type == "video"), None)
        maps: list[str] = []
        for s in c.streams:
            if s.index == first_video:
                maps += ["-map", "[v]"]
            elif copy and s.type in ("audio", "subtitle"):
                maps += ["-map", f"0:{s.index}"]
    return maps


def _command(ffmpeg: str, input_path: Path, maps: Path | None, tmp_out: Path, output: Path, cfg: EncodeConfig,
             options: dict[str, str], bit_rate: int, model_filter: str | None = None) -> list[str]:
    """``maps``: the map stream of a two-pass ROI encode; ``model_filter``: salroi in model mode
    (one pass; the log then has the filter's verbose summary, each line tagged with its level)."""
    level = "level+verbose" if model_filter else "error"
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", level, "-progress", "pipe:1",
           "-i", str(input_path)]
    chain = f"[0:v:0]{cfg.filters}[src];[src]" if cfg.filters else "[0:v:0]"
    if maps is not None:
        cmd += ["-i", str(maps)]
        graph = f"{chain}[1:v]{_salroi(cfg)}[v]"
    elif model_filter is not None:
        graph = f"{chain}{model_filter}[v]"
    else:
        graph = f"{chain}null[v]"
    cmd += ["-filter_complex", graph, *_stream_maps(input_path, cfg.audio == "copy")]
    if cfg.audio == "copy":
        cmd += ["-c:a", "copy", "-c:s", "copy"]
    cmd += ["-map_metadata", "0", "-c:v", cfg.encoder.name]
    if maps is not None or model_filter is not None:
        options = {**options, **dict(ENCODERS[cfg.encoder.name].patch_options)}
    for k, v in options.items():
        cmd += [f"-{k}:v", v]
    if bit_rate:
        cmd += ["-b:v", str(bit_rate)]
    if cfg.encoder.pix_fmt != "auto":
        cmd += ["-pix_fmt", cfg.encoder.pix_fmt]
    fmt = format_for(output)
    if fmt:
        cmd += ["-f", fmt]
    return cmd + ["-y", str(tmp_out)]


def _run(cmd: list[str], bar, err_path: Path) -> str:
    """Run ffmpeg with a progress bar; its log (stderr) is returned. On failure, an EncodeError
    with its last error lines (the lines tagged [error]/[fatal] where the log has levels)."""
    from ..vmaf import _die_with_parent, _last_lines

    env = dict(os.environ)
    env.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration at info level
    with open(err_path, "w+b") as err:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=env,
                                    preexec_fn=_die_with_parent)
        except OSError as exc:
            raise EncodeError(f"cannot run {cmd[0]}: {exc}") from None

        def kill() -> None:
            if proc.poll() is None:
                proc.kill()

        errors._on_interrupt.append(kill)
        done = 0
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith(b"frame="):
                    try:
                        n = int(line[6:].strip() or 0)
                    except ValueError:
                        continue
                    if n > done:
                        bar.update(n - done)
                        done = n
            rc = proc.wait()
        except BaseException:
            kill()
            proc.wait()
            raise
        finally:
            bar.close()
            if kill in errors._on_interrupt:
                errors._on_interrupt.remove(kill)
        err.seek(0)
        log = err.read().decode("utf-8", "replace")
        if rc != 0:
            tagged = [ln for ln in log.splitlines() if "[error]" in ln or "[fatal]" in ln]
            msg = _last_lines("\n".join(tagged).replace("[error] ", "").replace("[fatal] ", "") if tagged else log)
            raise EncodeError(f"{Path(cmd[0]).name} failed (exit {rc}): {msg}")
        return log


def _measure(path: Path) -> tuple[int, int, float]:
    """(video packets, their bytes, duration in s) of an encoded file; an EncodeError where ffmpeg
    said it succeeded and left no file that opens."""
    frames = size = 0
    try:
        c = av.open(str(path))
    except (OSError, av.error.FFmpegError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise EncodeError(f"ffmpeg exited 0 but left no output that opens ({why})") from None
    with c:
        if not c.streams.video:
            return 0, 0, 0.0
        s = c.streams.video[0]
        for pkt in c.demux(s):
            if pkt.size:
                frames += 1
                size += pkt.size
        duration = c.duration / av.time_base if c.duration else 0.0
        if s.duration and s.time_base:
            duration = float(s.duration * s.time_base)
    return frames, size, duration
