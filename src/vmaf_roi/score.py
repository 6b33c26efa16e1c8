"""Quality scores of a distorted video against its reference, per frame and pooled.

>>> res = score("ref.mp4", "dist.mp4", saliency="ref.sal.mkv", mask="ref.mask.mkv")
>>> res.per_frame["vmaf"][:3], res.pooled["psnr_y"]["mean"]
>>> res.to_json(), res.to_csv()

Metrics (names are the JSON/CSV keys, in this order):

- ``vmaf`` (libvmaf, vmaf_v0.6.1 by default), ``ssim`` (libvmaf's float_ssim on luma), ``psnr_y``.
- with a saliency map (a map video, maps in memory, or a model run on the reference):
  ``saliency_mean`` (mean map value, 0..1), ``psnr_y_weighted`` (per-pixel weights from the map),
  ``vmaf_roi`` (VMAF of the distorted frame with non-salient pixels taken from the reference:
  ``w*dist + (1-w)*ref`` per pixel, w the map) and ``vmaf_saliency`` (``roi_weight*vmaf_roi +
  (1-roi_weight)*vmaf``).
- with a ground-truth mask video: ``psnr_y_mask_in`` and ``psnr_y_mask_out``.
- with an eye-tracking recording (``gaze``, see :mod:`vmaf_roi.gaze`): ``ewpsnr`` (eye-tracking-
  weighted PSNR, Li, Qin & Itti 2011: the luma squared error weighted by the frame's fixation
  density, which sums to 1), and with a saliency map too ``gaze_nss`` and ``gaze_cc`` (how well the
  map follows the viewers: NSS at the fixation points, CC against the density). Frames without
  fixations, or with fewer than ``gaze_min_viewers`` viewers where viewers are known, get NaN.

Frames are paired by index (never by timestamp). A distorted video of another size is scaled to
the reference's (``scaler``; ``"none"`` refuses instead). PSNR values are in dB on the luma plane
of the reference's bit depth; identical frames give ``inf`` (``null`` in JSON). NaN marks a value
that does not exist for a frame (an empty mask, an all-zero map). Pooled statistics ignore
non-finite values.

One pass per call: a Python decode of every input in lockstep (the decode stage's timestamps,
so frames dropped or moved there are dropped for every metric), each frame converted once to
the common work format (scaled to the reference's size if needed), PSNRs and maps computed on
it, and the same frames (and the composites for ``vmaf_roi``) piped to one ffmpeg/libvmaf
process for the VMAF/SSIM numbers. So every metric sees the same frames, converted the same way.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from .decode import VideoSource
from .errors import ConfigError, InputError
from .maps import ProgressFactory, no_progress
from .saliency import resize_map
from .vmaf import DEFAULT_MODEL, SCALERS, VmafError, VmafPipe, find_ffmpeg

SCHEMA = "vmaf-roi.score/1"
BASE_METRICS = ("vmaf", "ssim", "psnr_y")
SALIENCY_METRICS = ("saliency_mean", "psnr_y_weighted", "vmaf_roi", "vmaf_saliency")
MASK_METRICS = ("psnr_y_mask_in", "psnr_y_mask_out")
GAZE_METRICS = ("ewpsnr",)
GAZE_MAP_METRICS = ("gaze_nss", "gaze_cc")  # with a saliency map as well
DEFAULT_GAZE_MIN_VIEWERS = 3
POOLED_KEYS = ("mean", "median", "stdev", "min", "max", "count")
MapSource = str | Path | Mapping[int, np.ndarray] | Sequence[np.ndarray]


# -- pooled statistics ------------------------------------------------------------------------
def pool(values: Sequence[float]) -> dict[str, float | int | None]:
    """mean/median/stdev/min/max over the finite values (None when there are none), and their count."""
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    if not v:
        return {"mean": None, "median": None, "stdev": None, "min": None, "max": None, "count": 0}
    return {
        "mean": statistics.fmean(v), "median": statistics.median(v),
        "stdev": statistics.pstdev(v) if len(v) > 1 else 0.0, "min": min(v), "max": max(v), "count": len(v),
    }


def psnr_from_mse(mse: float, peak: float) -> float:
    if not math.isfinite(mse):
        return float("nan")
    return float("inf") if mse <= 0 else 10.0 * math.log10(peak * peak / mse)


def weighted_psnr(ref: np.ndarray, dist: np.ndarray, weights: np.ndarray, peak: float = 255.0) -> float:
    """PSNR from the weight-averaged squared error; NaN when the weights sum to 0.

    With a frame's fixation density as the weights this is that frame's EWPSNR."""
    e = (np.asarray(ref, dtype=np.float64) - np.asarray(dist, dtype=np.float64)) ** 2
    return _error_psnr(e, weights, peak)


def _error_psnr(err: np.ndarray, weights: np.ndarray, peak: float, min_mse: float = 0.0) -> float:
    """PSNR of squared errors ``err`` averaged with ``weights``; NaN when they sum to 0.
    A weighted MSE below ``min_mse`` counts as none (``inf``, as for an identical frame)."""
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if total <= 0:
        return float("nan")
    mse = float((err * w).sum()) / total
    return psnr_from_mse(mse if mse >= min_mse else 0.0, peak)


# -- result -----------------------------------------------------------------------------------
@dataclass
class ScoreResult:
    reference: str
    distorted: str
    frames: int
    width: int
    height: int
    vmaf_model: str
    per_frame: dict[str, list[float]]
    saliency: str | None = None  # where the map came from
    roi_weight: float | None = None
    mask: str | None = None
    scaled_from: tuple[int, int] | None = None  # distorted size when it was scaled
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    gaze: dict[str, Any] | None = None  # the gaze file, blur sigma and frames used (see _GazeFrames.info)

    @property
    def metrics(self) -> list[str]:
        return list(self.per_frame)

    @property
    def pooled(self) -> dict[str, dict[str, float | int | None]]:
        return {k: pool(v) for k, v in self.per_frame.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite numbers become null). ``gaze`` is there only for a gaze score,
        so the keys of a score without one are as they were."""
        out = {
            "schema": SCHEMA,
            "reference": self.reference,
            "distorted": self.distorted,
            "frames": self.frames,
            "width": self.width,
            "height": self.height,
            "scaled_from": list(self.scaled_from) if self.scaled_from else None,
            "vmaf_model": self.vmaf_model,
            "saliency": self.saliency,
            "roi_weight": self.roi_weight,
            "mask": self.mask,
            "metrics": self.metrics,
            "pooled": self.pooled,
            "per_frame": {k: [_json_num(x) for x in v] for k, v in self.per_frame.items()},
            "notes": self.notes,
        }
        if self.gaze is not None:
            out["gaze"] = self.gaze
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_csv(self) -> str:
        """One row per frame: ``frame`` then the metrics; inf/nan written as ``inf``/``nan``."""
        buf = io.StringIO()
        wr = csv.writer(buf, lineterminator="\n")
        wr.writerow(["frame", *self.metrics])
        for i in range(self.frames):
            wr.writerow([i, *(_csv_num(self.per_frame[k][i]) for k in self.metrics)])
        return buf.getvalue()


def _json_num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _csv_num(x: float) -> str:
    return repr(float(x)) if math.isfinite(x) else ("inf" if x > 0 else "-inf" if x < 0 else "nan")


# -- frame helpers ----------------------------------------------------------------------------
def _bit_depth(fmt: av.VideoFormat) -> int:
    return max((c.bits for c in fmt.components), default=8)


def _work_format(frame: av.VideoFrame) -> str:
    return "yuv420p10le" if _bit_depth(frame.format) > 8 else "yuv420p"


def _work_frame(frame: av.VideoFrame, w: int, h: int, fmt: str, scaler: str) -> av.VideoFrame:
    """``frame`` at w x h in ``fmt``: the one conversion every metric of a frame uses."""
    if (frame.width, frame.height, frame.format.name) != (w, h, fmt):
        frame = frame.reformat(w, h, fmt, interpolation=scaler.upper() if scaler != "neighbor" else "POINT")
    return frame


def _planes(frame: av.VideoFrame, w: int, h: int, fmt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U, V planes of a work frame (w x h, ``fmt`` a 4:2:0 format), as uint8/uint16 arrays."""
    out = []
    for i, (pw, ph) in enumerate(((w, h), ((w + 1) // 2, (h + 1) // 2), ((w + 1) // 2, (h + 1) // 2))):
        p = frame.planes[i]
        dtype = np.uint16 if fmt.endswith("le") else np.uint8
        bps = np.dtype(dtype).itemsize
        arr = np.frombuffer(p, dtype=dtype).reshape(-1, p.line_size // bps)[:ph, :pw]
        out.append(arr)
    return out[0], out[1], out[2]


def _map_frame(frame: av.VideoFrame) -> np.ndarray:
    """A map/mask video frame -> its values 0..255 (gray kept as is, else the Y plane)."""
    if frame.format.name == "gray":
        return frame.to_ndarray()
    y = frame.reformat(format="yuv420p").planes[0]
    return np.frombuffer(y, dtype=np.uint8).reshape(-1, y.line_size)[: frame.height, : frame.width]


def _check_mask_frame(frame: av.VideoFrame, width: int, height: int, path: Path, index: int = 0) -> None:
    """A mask must have the reference's size (resizing would move its edges) and be gray
    (a colour picture is not a mask: its Y plane would be taken without a word)."""
    if (frame.width, frame.height) != (width, height):
        raise InputError(f"mask {path} frame {index} is {frame.width}x{frame.height}, the reference {width}x{height}; "
                         f"a mask must have the reference's size")
    name = frame.format.name
    if name.startswith("gray") or name in ("monob", "monow"):
        return
    yuv = frame.reformat(format="yuv444p")
    for plane in (1, 2):
        c = np.frombuffer(yuv.planes[plane], dtype=np.uint8).reshape(-1, yuv.planes[plane].line_size)
        c = c[:height, :width].astype(np.int16)
        if np.mean(np.abs(c - 128) > 16) > 0.01:
            raise InputError(f"mask {path} frame {index} is in colour ({name}); a mask is gray "
                             f"(255 or >127 inside the object, 0 outside)")


def check_mask(mask: str | Path, reference: str | Path) -> None:
    """Before any work: the mask's first frame has the reference's size and is gray."""
    ref, mv = _Video(reference, "reference"), _Video(mask, "mask")
    try:
        rf = next(iter(ref), None)
        mf = next(iter(mv), None)
        if rf is None or mf is None:
            return  # empty videos are reported by the scoring pass
        _check_mask_frame(mf, rf.width, rf.height, Path(mask))
    finally:
        ref.close()
        mv.close()


def load_gaze_for(gaze: str | Path, reference: str | Path, role: str = "reference", *, count: bool = False):
    """The gaze file ``gaze`` read in ``reference``'s pixel grid and frame rate (a ``t`` column in
    seconds becomes frame indices at that rate), before any work: a missing or malformed file,
    or fixations beyond the frame count the reference's header gives, are InputErrors.
    ``count``: where the header gives no frame count, decode the reference to count its frames
    (worth it before work much longer than a decode, such as compare's encodes)."""
    from .gaze import load_gaze

    ref = _Video(reference, role)
    try:
        frames = iter(ref)
        first = next(frames, None)
        if first is None:
            raise InputError(f"{role} {ref.path}: no video frames could be decoded")
        width, height = first.width, first.height
        rate = ref.src.rate
        header_frames = int(ref.src.stream.frames or 0) or None
        if header_frames is None and count:
            header_frames = 1 + sum(1 for _ in frames)
    finally:
        ref.close()
    return load_gaze(gaze, width=width, height=height, fps=float(rate) if rate else None, frame_count=header_frames)


class _GazeFrames:
    """Which frames of a gaze recording count, their fixation densities, and what was left out."""

    def __init__(self, rec, label: str, min_viewers: int, sigma: float | None) -> None:
        from .gaze import default_sigma

        self.rec, self.label, self.min_viewers = rec, label, min_viewers
        self.sigma = float(sigma) if sigma is not None else float(default_sigma(rec.width, rec.height))
        self.fixated = {int(f) for f in rec.frames()}
        self.used = self.no_fixation = self.few_viewers = 0
        self.viewers_known = bool(rec.viewers_known)

    def check_size(self, width: int, height: int) -> None:
        if (self.rec.width, self.rec.height) != (width, height):
            raise InputError(f"gaze {self.label} is for {self.rec.width}x{self.rec.height} frames, the reference is "
                             f"{width}x{height}; gaze coordinates are in the reference's pixels")

    def density(self, n: int) -> np.ndarray | None:
        """Frame n's fixation density (sums to 1), or None for a frame left out."""
        if n not in self.fixated:
            self.no_fixation += 1
            return None
        if self.viewers_known and self.rec.viewers(n) < self.min_viewers:
            self.few_viewers += 1
            return None
        self.used += 1
        return np.asarray(self.rec.density(n, sigma=self.sigma), dtype=np.float64)

    def check_frames(self, frames: int, reference: Path) -> None:
        last = max(self.fixated, default=-1)
        if last >= frames:
            beyond = sum(1 for f in self.fixated if f >= frames)
            raise InputError(f"gaze {self.label} has fixations on {beyond} frame{'s' if beyond != 1 else ''} beyond "
                             f"the video (up to frame {last}; {reference} has {frames} frames, 0..{frames - 1}): "
                             f"is it the gaze file of this video?")

    def note(self, frames: int) -> str | None:
        if self.used == frames:
            return None
        why = []
        if self.no_fixation:
            why.append(f"{self.no_fixation} without fixations")
        if self.few_viewers:
            why.append(f"{self.few_viewers} with fewer than {self.min_viewers} viewers")
        return (f"gaze {self.label}: {frames - self.used} of {frames} frames left out of the gaze metrics "
                f"({', '.join(why)})")

    def info(self, frames: int) -> dict[str, Any]:
        return {"file": self.label, "sigma": self.sigma, "min_viewers": self.min_viewers,
                "viewers_known": self.viewers_known, "frames_used": self.used,
                "frames_without_fixations": self.no_fixation, "frames_few_viewers": self.few_viewers,
                "frames": frames}


class _Video:
    """Decoded frames of a file, with every failure as one InputError naming what it is."""

    def __init__(self, path: str | Path, role: str) -> None:
        self.path, self.role = Path(path), role
        try:
            self.src = VideoSource(self.path)
        except InputError as exc:
            raise InputError(f"{role}: {exc}") from None
        except (av.error.FFmpegError, IndexError, ValueError) as exc:
            raise InputError(f"{role} {self.path}: cannot read a video stream ({exc})") from None
        self.count = 0

    def __iter__(self) -> Iterator[av.VideoFrame]:
        try:
            for f in self.src.frames():
                self.count += 1
                yield f
        except InputError as exc:
            raise InputError(f"{self.role}: {exc}") from None

    def close(self) -> None:
        self.src.close()


def _array_maps(src: Mapping[int, np.ndarray] | Sequence[np.ndarray]) -> Iterator[np.ndarray]:
    if isinstance(src, Mapping):
        i = 0
        while i in src:
            yield src[i]
            i += 1
    else:
        yield from src


def _as_unit(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m)
    if m.dtype == np.uint8:
        return m.astype(np.float32) / 255.0
    if m.dtype == np.uint16:
        return m.astype(np.float32) / 65535.0
    return np.clip(m.astype(np.float32), 0.0, 1.0)


def _chroma_weights(m: np.ndarray, cw: int, ch: int) -> np.ndarray:
    h, w = m.shape
    if h == 2 * ch and w == 2 * cw:
        return m.reshape(ch, 2, cw, 2).mean(axis=(1, 3))
    return resize_map(m.astype(np.float32), cw, ch)


def _composite(ref_planes, dist_planes, weights: np.ndarray, fmt: str) -> av.VideoFrame:
    """``w*dist + (1-w)*ref`` per plane, as a frame in ``fmt``."""
    h, w = ref_planes[0].shape
    f = av.VideoFrame(w, h, fmt)
    for i, (r, d) in enumerate(zip(ref_planes, dist_planes)):
        wt = weights if i == 0 else _chroma_weights(weights, r.shape[1], r.shape[0])
        mixed = np.rint(wt * d.astype(np.float32) + (1.0 - wt) * r.astype(np.float32)).astype(r.dtype)
        p = f.planes[i]
        dst = np.frombuffer(p, dtype=r.dtype).reshape(-1, p.line_size // r.dtype.itemsize)
        dst[: r.shape[0], : r.shape[1]] = mixed
    return f


# -- the scorer -------------------------------------------------------------------------------
def score(
    reference: str | Path,
    distorted: str | Path,
    **kwargs: Any,
) -> ScoreResult:
    """Score one distorted video against ``reference``. See :func:`score_many` for the options."""
    return score_many(reference, [distorted], **kwargs)[0]


def score_many(
    reference: str | Path,
    distorted: Sequence[str | Path],
    *,
    saliency: MapSource | None = None,
    model: str | None = None,
    stride: int = 1,
    device: str = "auto",
    model_dir: Path | None = None,
    mask: str | Path | None = None,
    vmaf_model: str = DEFAULT_MODEL,
    scaler: str = "bicubic",
    roi_weight: float = 0.5,
    ffmpeg: str | None = None,
    progress: ProgressFactory = no_progress,
    saliency_label: str | None = None,
    gaze=None,
    gaze_min_viewers: int = DEFAULT_GAZE_MIN_VIEWERS,
    gaze_sigma: float | None = None,
    gaze_label: str | None = None,
) -> list[ScoreResult]:
    """Score several distorted videos against one reference: one decode, one ffmpeg pass.

    ``saliency``: a map video (gray, one map per frame), or maps in memory (a mapping frame
    index -> array or a sequence; uint8 0..255 or float 0..1, any size: resized bilinearly).
    ``model``: instead, a registry model id run on the reference every ``stride`` frames.
    ``mask``: a ground-truth mask video (>127 inside). ``scaler``: how a distorted video of
    another size is scaled to the reference (one of vmaf.SCALERS), or "none" to refuse.
    ``gaze``: an eye-tracking CSV (or a loaded :class:`~vmaf_roi.gaze.GazeRecording` of the
    reference's size) for ``ewpsnr`` and, with a map, ``gaze_nss``/``gaze_cc``; frames with
    fewer than ``gaze_min_viewers`` viewers (where the file names viewers) are left out;
    ``gaze_sigma``: the fixation blur in pixels (default: :func:`vmaf_roi.gaze.default_sigma`);
    ``gaze_label``: what the result calls the gaze source (default: its path).
    """
    import time

    t0 = time.perf_counter()
    if not distorted:
        raise ConfigError("nothing to score: no distorted video given")
    if saliency is not None and model is not None:
        raise ConfigError("give a saliency map source or a model, not both")
    if scaler != "none" and scaler not in SCALERS:
        raise ConfigError(f"scaler {scaler!r}: choose one of none, {', '.join(SCALERS)}")
    if not 0.0 <= roi_weight <= 1.0:
        raise ConfigError(f"roi weight must be within 0..1, got {roi_weight}")
    if stride < 1:
        raise ConfigError(f"stride must be >= 1, got {stride}")
    if gaze_min_viewers < 1:
        raise ConfigError(f"gaze min viewers must be >= 1, got {gaze_min_viewers}")
    if gaze_sigma is not None and not (math.isfinite(gaze_sigma) and gaze_sigma > 0):
        raise ConfigError(f"gaze sigma must be > 0 pixels, got {gaze_sigma}")
    ff = find_ffmpeg(ffmpeg)  # fail early: no libvmaf, no work
    if model is not None:
        from .saliency import SaliencyModel

        sal_model = SaliencyModel(model, device=device, cache_dir=model_dir)
        label = saliency_label or f"model:{sal_model.spec.id}" + (" (PLACEHOLDER)" if sal_model.placeholder else "")
    else:
        sal_model = None
        label = saliency_label or (str(saliency) if isinstance(saliency, (str, Path)) else
                                   ("maps" if saliency is not None else None))
    weighted = saliency is not None or sal_model is not None
    gz = None
    if gaze is not None:
        rec = load_gaze_for(gaze, reference) if isinstance(gaze, (str, Path)) else gaze
        gz = _GazeFrames(rec, gaze_label or (str(gaze) if isinstance(gaze, (str, Path)) else "recording"),
                         gaze_min_viewers, gaze_sigma)

    videos: list[_Video] = []
    try:
        ref = _Video(reference, "reference")
        videos.append(ref)
        dists = []
        for i, d in enumerate(distorted):
            dists.append(_Video(d, "distorted" if len(distorted) == 1 else f"distorted #{i + 1}"))
            videos.append(dists[-1])
        map_video = _Video(saliency, "saliency maps") if isinstance(saliency, (str, Path)) else None
        if map_video:
            videos.append(map_video)
        mask_video = _Video(mask, "mask") if mask is not None else None
        if mask_video:
            videos.append(mask_video)
        keys = [f"{kind}{i}" for i in range(len(distorted)) for kind in (("d", "c") if weighted else ("d",))]

        def start_vmaf(w: int, h: int, fmt: str) -> VmafPipe:
            return VmafPipe(ff, keys, size=(w, h), pix_fmt=fmt, model=vmaf_model)

        state = _python_pass(
            ref, dists, map_video, None if map_video or saliency is None else _array_maps(saliency),
            sal_model, stride, mask_video, scaler, weighted, start_vmaf, progress, gz,
        )
        vm = state["vmaf"]
        # the decode stage's fix-ups (timestamps, size changes, skipped packets), per input
        notes = [f"{v.role} {n}" for v in videos for n in v.src.notes()]
    finally:
        for v in videos:
            v.close()

    n = state["frames"]
    if gz is not None:
        gz.check_frames(n, Path(reference))
        gnote = gz.note(n)
        if gnote:
            notes.append(gnote)
    results = []
    for i, d in enumerate(distorted):
        full = vm[f"d{i}"]
        if len(full) != n:
            raise VmafError(f"libvmaf scored {len(full)} frames of {d}, expected {n}")
        per: dict[str, list[float]] = {
            "vmaf": [_vmaf_value(f) for f in full],
            "ssim": [f.get("float_ssim", float("nan")) for f in full],
            "psnr_y": state["psnr"][i],
        }
        if weighted:
            roi = vm[f"c{i}"]
            if len(roi) != n:
                raise VmafError(f"libvmaf scored {len(roi)} composite frames of {d}, expected {n}")
            per["saliency_mean"] = state["saliency_mean"]
            per["psnr_y_weighted"] = state["wpsnr"][i]
            per["vmaf_roi"] = [_vmaf_value(f) for f in roi]
            per["vmaf_saliency"] = [roi_weight * a + (1 - roi_weight) * b for a, b in zip(per["vmaf_roi"], per["vmaf"])]
        if mask_video is not None:
            per["psnr_y_mask_in"] = state["mask_in"][i]
            per["psnr_y_mask_out"] = state["mask_out"][i]
        if gz is not None:
            per["ewpsnr"] = state["ewpsnr"][i]
            if weighted:
                per["gaze_nss"] = state["gaze_nss"]
                per["gaze_cc"] = state["gaze_cc"]
        results.append(ScoreResult(
            reference=str(reference), distorted=str(d), frames=n, width=state["width"], height=state["height"],
            vmaf_model=vmaf_model, per_frame=per, saliency=label if weighted else None,
            roi_weight=roi_weight if weighted else None, mask=str(mask) if mask is not None else None,
            scaled_from=state["scaled_from"][i], seconds=time.perf_counter() - t0, notes=list(notes),
            gaze=gz.info(n) if gz is not None else None,
        ))
    return results


def _vmaf_value(metrics: dict[str, float]) -> float:
    if "vmaf" in metrics:
        return metrics["vmaf"]
    for k, v in metrics.items():  # a model file with its own name
        if k.startswith("vmaf"):
            return v
    raise VmafError(f"libvmaf log has no VMAF score (metrics: {', '.join(metrics)})")


def _python_pass(ref: _Video, dists: list[_Video], map_video: _Video | None, map_arrays: Iterator[np.ndarray] | None,
                 sal_model, stride: int, mask_video: _Video | None, scaler: str, weighted: bool,
                 start_vmaf, progress: ProgressFactory, gaze: _GazeFrames | None = None) -> dict[str, Any]:
    k = len(dists)
    ewpsnr: list[list[float]] = [[] for _ in range(k)]
    gaze_nss: list[float] = []
    gaze_cc: list[float] = []
    psnr: list[list[float]] = [[] for _ in range(k)]
    wpsnr: list[list[float]] = [[] for _ in range(k)]
    mask_in: list[list[float]] = [[] for _ in range(k)]
    mask_out: list[list[float]] = [[] for _ in range(k)]
    sal_mean: list[float] = []
    pipe: VmafPipe | None = None
    scaled_from: list[tuple[int, int] | None] = [None] * k
    W = H = 0
    fmt = "yuv420p"
    peak = 255.0
    small = None
    bar = progress(ref.src.estimated_frames(), "score")
    n = 0
    streams: list[Any] = [iter(ref), *(iter(d) for d in dists)]
    if map_video is not None:
        streams.append(iter(map_video))
    elif map_arrays is not None:
        streams.append(map_arrays)
    if mask_video is not None:
        streams.append(iter(mask_video))
    has_map = map_video is not None or map_arrays is not None
    try:
        for items in zip_longest(*streams):
            if any(x is None for x in items):
                _count_mismatch(items, ref, dists, map_video, map_arrays, mask_video, streams, n)
            rf, dfs = items[0], items[1:1 + k]
            rest = list(items[1 + k:])
            if n == 0:
                W, H, fmt = rf.width, rf.height, _work_format(rf)
                peak = 1023.0 if fmt == "yuv420p10le" else 255.0
                pipe = start_vmaf(W, H, fmt)
                if gaze is not None:
                    gaze.check_size(W, H)
            rw = _work_frame(rf, W, H, fmt, "bicubic")
            ry, ru, rv = _planes(rw, W, H, fmt)
            to_vmaf = [rw]
            rY = ry.astype(np.float64)
            weights = None
            if has_map:
                m = _as_unit(rest.pop(0) if map_video is None else _map_frame(rest.pop(0)))
                if m.ndim != 2:
                    raise InputError(f"saliency map {n}: expected a 2-D map, got shape {m.shape}")
                weights = resize_map(m, W, H).astype(np.float64)
            elif sal_model is not None:
                if small is None or n % stride == 0:
                    small = sal_model.predict(sal_model.model_input(rf)[None])[0]
                weights = resize_map(small, W, H).astype(np.float64)
            mk = None
            if mask_video is not None:
                mf = rest.pop(0)
                _check_mask_frame(mf, W, H, mask_video.path, n)
                mk = _map_frame(mf) > 127
            if weights is not None:
                sal_mean.append(float(weights.mean()))
            density = gaze.density(n) if gaze is not None else None
            if gaze is not None and weights is not None:
                from .gaze import cc, nss

                if density is None:
                    gaze_nss.append(float("nan"))
                    gaze_cc.append(float("nan"))
                else:
                    xs, ys = gaze.rec.points(n)
                    gaze_nss.append(float(nss(weights, xs, ys)))
                    gaze_cc.append(float(cc(weights, density)))
            for i, df in enumerate(dfs):
                if (df.width, df.height) != (W, H):
                    if scaler == "none":
                        raise InputError(f"distorted {dists[i].path} is {df.width}x{df.height}, the reference "
                                         f"{W}x{H}; allow scaling to the reference (e.g. --scale bicubic)")
                    scaled_from[i] = (df.width, df.height)
                dw = _work_frame(df, W, H, fmt, scaler if scaler != "none" else "bicubic")
                dy, du, dv = _planes(dw, W, H, fmt)
                to_vmaf.append(dw)
                err = (rY - dy.astype(np.float64)) ** 2
                psnr[i].append(psnr_from_mse(float(err.mean()), peak))
                if weights is not None:
                    wpsnr[i].append(_error_psnr(err, weights, peak))
                    to_vmaf.append(_composite((ry, ru, rv), (dy, du, dv), weights.astype(np.float32), fmt))
                if gaze is not None:
                    # the fixation density never quite reaches 0 (Gaussian tails): a weighted MSE
                    # below PSNR-Y's smallest non-zero one (one code value at one pixel) is none
                    ewpsnr[i].append(_error_psnr(err, density, peak, min_mse=1.0 / err.size)
                                     if density is not None else float("nan"))
                if mk is not None:
                    inside = int(mk.sum())
                    mask_in[i].append(psnr_from_mse(float(err[mk].sum()) / inside, peak) if inside else float("nan"))
                    outside = mk.size - inside
                    mask_out[i].append(psnr_from_mse(float(err[~mk].sum()) / outside, peak) if outside else float("nan"))
            assert pipe is not None
            pipe.write(to_vmaf)
            n += 1
            bar.update(1)
        if n == 0 or pipe is None:
            raise InputError(f"reference {ref.path}: no video frames could be decoded")
        done, pipe = pipe, None
        vmaf = done.close()
    finally:
        bar.close()
        if pipe is not None:  # error path: stop ffmpeg, remove its files
            with contextlib.suppress(Exception):
                pipe.abort()
    return {"frames": n, "width": W, "height": H, "fmt": fmt, "psnr": psnr, "wpsnr": wpsnr, "mask_in": mask_in,
            "mask_out": mask_out, "saliency_mean": sal_mean, "vmaf": vmaf, "scaled_from": scaled_from,
            "ewpsnr": ewpsnr, "gaze_nss": gaze_nss, "gaze_cc": gaze_cc}


def _count_mismatch(items, ref, dists, map_video, map_arrays, mask_video, streams, n) -> None:
    """Some input ended early: drain the others to report every frame count in one error."""
    counts = []
    for x, it in zip(items, streams):
        c = n + (1 if x is not None else 0)
        if x is not None:
            c += sum(1 for _ in it)
        counts.append(c)
    names = [f"reference {counts[0]}"]
    for i, d in enumerate(dists):
        names.append(f"distorted{'' if len(dists) == 1 else f' #{i + 1}'} {counts[1 + i]}")
    j = 1 + len(dists)
    if map_video is not None or map_arrays is not None:
        names.append(f"saliency maps {counts[j]}")
        j += 1
    if mask_video is not None:
        names.append(f"mask {counts[j]}")
    raise InputError(f"frame counts differ ({', '.join(names)}): frames are paired by index, "
                     f"so every input needs the same number of frames")
