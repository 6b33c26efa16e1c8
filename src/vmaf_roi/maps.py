"""The `saliency` job: decode -> model every Nth frame -> map video / npz / heat-map overlay.

Maps are written as gray FFV1 in Matroska (lossless, one map frame per input frame, same
timestamps, rounded *down* to Matroska's millisecond so a map never lands after its frame:
FFmpeg's framesync pairs by timestamp), as an ``.npz`` (float16 maps, pts, time base, model),
and/or as a heat-map overlay a person can look at.
"""

from __future__ import annotations

import math
import time
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Protocol

import av
import numpy as np
import numpy.lib.format as npformat

from .decode import VideoSource
from .errors import ConfigError, InputError
from .output import AtomicOutputs, check_outputs
from .saliency import SaliencyModel, resize_map

MKV_TB = Fraction(1, 1000)


class Progress(Protocol):
    def update(self, n: int = 1) -> object: ...
    def close(self) -> object: ...


ProgressFactory = Callable[[int | None, str], Progress]


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def no_progress(total: int | None, desc: str) -> Progress:
    return _NoProgress()


def heat_lut() -> np.ndarray:
    """256x3 uint8 colour map (dark blue -> cyan -> yellow -> red), like 'jet' but darker low end."""
    x = np.linspace(0.0, 1.0, 256)
    r = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 1), 0, 1) * (0.4 + 0.6 * x)
    return (np.stack([r, g, b], axis=1) * 255).astype(np.uint8)


_LUT = heat_lut()


def overlay_rgb(rgb: np.ndarray, map_u8: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    heat = _LUT[map_u8]
    return (rgb * (1 - alpha) + heat * alpha).astype(np.uint8)


def legend_strip(width: int, height: int, label: str = "") -> tuple[np.ndarray, np.ndarray, int, int]:
    """A colour-scale legend to burn into a width x height overlay frame: the heat colours from
    "not salient" to "salient" on a dark box, bottom left. Returns (rgb, alpha [h,w,1], x, y)."""
    from PIL import Image, ImageDraw, ImageFont

    scale = max(1.0, min(width / 640, height / 360))
    fs = max(8, round(11 * scale))
    try:
        font = ImageFont.load_default(size=fs)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        font = ImageFont.load_default()
    left, right = "not salient", "salient"
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    tw = [probe.textbbox((0, 0), t, font=font)[2] for t in (left, right, label)]
    th = probe.textbbox((0, 0), "Ag", font=font)[3]
    pad = max(2, fs // 3)
    bar_w = max(24, min(round(120 * scale), width - tw[0] - tw[1] - 6 * pad))
    if label and 2 * th + 3 * pad > height // 4:  # a small frame: the colour scale only
        label, tw[2] = "", 0
    w = min(width, max(tw[0] + tw[1] + bar_w + 4 * pad, tw[2] + 2 * pad if label else 0))
    rows = 2 if label else 1
    h = min(height, rows * th + (rows + 1) * pad)
    img = Image.new("RGB", (w, h), (16, 16, 16))
    d = ImageDraw.Draw(img)
    y = pad + (th + pad if label else 0)
    if label:
        fit = label if tw[2] + 2 * pad <= w else label[: max(1, len(label) * (w - 2 * pad) // tw[2] - 3)] + "..."
        d.text((pad, pad), fit, fill=(235, 235, 235), font=font)
    d.text((pad, y), left, fill=(235, 235, 235), font=font)
    x0 = 2 * pad + tw[0]
    grad = _LUT[np.linspace(0, 255, max(1, bar_w)).astype(np.uint8)]
    bar = np.broadcast_to(grad[None], (max(1, th - 2), max(1, bar_w), 3))
    img.paste(Image.fromarray(np.ascontiguousarray(bar)), (x0, y + 1))
    d.text((x0 + bar_w + pad, y), right, fill=(235, 235, 235), font=font)
    rgb = np.asarray(img, dtype=np.uint8)
    alpha = np.full((h, w, 1), 0.85, dtype=np.float32)
    margin = max(0, min(pad * 2, height - h, width - w))
    return rgb, alpha, margin, height - h - margin


def overlay_still(video: str | Path, maps: str | Path, out_png: str | Path, *, frame_index: int | None = None,
                  label: str = "") -> int:
    """One frame of ``video`` beside the same frame with its map from ``maps`` (a map video as
    ``saliency -o`` writes it) as a heat overlay with the colour-scale legend, as a PNG: the
    picture of where the model expects viewers to look. ``frame_index``: the middle frame by
    default. Returns the frame index drawn."""
    from PIL import Image

    with av.open(str(video)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(maps)) as c:
        ms = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    if not frames or not ms:
        raise InputError(f"{video if not frames else maps}: no video frames")
    i = min(len(frames), len(ms)) // 2 if frame_index is None else frame_index
    if not 0 <= i < min(len(frames), len(ms)):
        raise InputError(f"frame {i} is not in {video} and its maps ({min(len(frames), len(ms))} frames)")
    rgb, m = frames[i], ms[i]
    h, w = rgb.shape[:2]
    if m.shape != (h, w):
        m = np.asarray(Image.fromarray(m).resize((w, h), Image.BILINEAR))
    heat = overlay_rgb(rgb, m)
    lg, a, x, y = legend_strip(w, h, label)
    lh, lw = lg.shape[:2]
    heat[y: y + lh, x: x + lw] = (heat[y: y + lh, x: x + lw] * (1 - a) + lg * a).astype(np.uint8)
    gap = np.full((h, max(2, w // 80), 3), 255, np.uint8)
    Image.fromarray(np.concatenate([rgb, gap, heat], axis=1)).save(str(out_png), format="PNG")
    return i


class MapVideoWriter:
    def __init__(self, path: Path, width: int, height: int, rate: Fraction | None, metadata: dict[str, str]):
        self.c = av.open(str(path), "w", format="matroska")
        self.c.metadata.update(metadata)
        self.s = self.c.add_stream("ffv1", rate=rate or 25)
        self.s.width, self.s.height, self.s.pix_fmt = width, height, "gray"
        self.s.time_base = MKV_TB
        self.s.codec_context.time_base = MKV_TB  # else PyAV rounds pts to the frame rate's grid

    def write(self, map_u8_full: np.ndarray, pts_seconds: Fraction) -> None:
        f = av.VideoFrame.from_ndarray(map_u8_full, format="gray")
        # floor: never after its frame. The decode stage hands out increasing timestamps, so
        # two maps share a millisecond only when their frames are less than 1 ms apart;
        # Matroska takes equal timestamps, so nothing is moved.
        pts = math.floor(pts_seconds / MKV_TB)
        f.pts, f.time_base = pts, MKV_TB
        for p in self.s.encode(f):
            self.c.mux(p)

    def close(self) -> None:
        for p in self.s.encode(None):
            self.c.mux(p)
        self.c.close()


class OverlayWriter:
    def __init__(self, path: Path, width: int, height: int, rate: Fraction | None, time_base: Fraction,
                 metadata: dict[str, str]):
        self.w, self.h = width - width % 2, height - height % 2  # yuv420p needs even sizes
        if self.w < 2 or self.h < 2:
            raise InputError(f"--overlay: the video is {width}x{height}; an overlay needs at least 2x2 pixels")
        self.c = av.open(str(path), "w")
        self.c.metadata.update(metadata)
        self.s = self.c.add_stream("libx264", rate=rate or 25)
        self.s.width, self.s.height, self.s.pix_fmt = self.w, self.h, "yuv420p"
        self.s.time_base = time_base
        self.s.options = {"crf": "20", "preset": "veryfast"}
        model = metadata.get("vmaf_roi_model", "")
        ph = metadata.get("vmaf_roi_placeholder") == "true"
        label = f"saliency: {model}" + (" (PLACEHOLDER, not saliency)" if ph else "") if model else ""
        self.legend = legend_strip(self.w, self.h, label)

    def write(self, rgb: np.ndarray, map_u8_full: np.ndarray, pts: int | None, time_base: Fraction) -> None:
        img = overlay_rgb(rgb[: self.h, : self.w], map_u8_full[: self.h, : self.w])
        lg, a, x, y = self.legend
        h, w = lg.shape[:2]
        roi = img[y: y + h, x: x + w].astype(np.float32)
        img[y: y + h, x: x + w] = (roi * (1 - a) + lg * a).astype(np.uint8)
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        f.pts, f.time_base = pts, time_base
        for p in self.s.encode(f):
            self.c.mux(p)

    def close(self) -> None:
        for p in self.s.encode(None):
            self.c.mux(p)
        self.c.close()


class NpzWriter:
    """Streams float16 maps to disk, then packs maps/pts/metadata into one .npz at close."""

    def __init__(self, path: Path, width: int, height: int, meta: dict[str, object]):
        self.path, self.w, self.h, self.meta = path, width, height, meta
        self.raw = path.with_name(path.name + ".raw")
        self.f = open(self.raw, "wb")
        self.pts: list[int] = []
        self.n = 0

    def write(self, m: np.ndarray, pts: int | None) -> None:
        self.f.write(np.ascontiguousarray(m, dtype=np.float16).tobytes())
        self.pts.append(-1 if pts is None else int(pts))
        self.n += 1

    def close(self) -> None:
        self.f.close()
        try:
            with zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
                with zf.open("maps.npy", "w", force_zip64=True) as out:
                    header = {"descr": npformat.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False,
                              "shape": (self.n, self.h, self.w)}
                    npformat.write_array_header_1_0(out, header)
                    with open(self.raw, "rb") as src:
                        for chunk in iter(lambda: src.read(1 << 22), b""):
                            out.write(chunk)
                for name, value in [("pts", np.asarray(self.pts, dtype=np.int64)), *[(k, np.asarray(v)) for k, v in self.meta.items()]]:
                    with zf.open(f"{name}.npy", "w") as out:
                        npformat.write_array(out, value)
        finally:
            self.raw.unlink(missing_ok=True)

    def abort(self) -> None:
        self.f.close()
        self.raw.unlink(missing_ok=True)


@dataclass
class SaliencyResult:
    frames: int
    inferences: int
    provider: str
    model: str
    placeholder: bool
    seconds: float
    outputs: list[Path]

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def run_saliency(
    input_path: str | Path,
    *,
    output: str | Path | None = None,
    npz: str | Path | None = None,
    overlay: str | Path | None = None,
    model: SaliencyModel,
    stride: int = 1,
    filters: str | None = None,
    progress: ProgressFactory = no_progress,
    overwrite: bool = True,
    on_event: Callable[[str], None] = lambda _: None,
) -> SaliencyResult:
    """``overwrite=False``: an existing output is refused (OutputError) before any work."""
    if stride < 1:
        raise ConfigError(f"--stride must be >= 1, got {stride}")
    if not (output or npz or overlay):
        raise ConfigError("nothing to write: give -o/--output, --npz and/or --overlay")
    t0 = time.perf_counter()
    input_path = Path(input_path)
    meta = {
        "vmaf_roi_model": model.spec.id,
        "vmaf_roi_placeholder": "true" if model.placeholder else "false",
        "comment": ("PLACEHOLDER model output: NOT real saliency" if model.placeholder
                    else f"saliency maps by vmaf-roi, model {model.spec.id}"),
    }
    n = inferences = 0
    check_outputs([output, npz, overlay], [input_path], overwrite=overwrite)
    with VideoSource(input_path, filters) as src, AtomicOutputs(overwrite=overwrite) as outs:
        out_tmp = outs.add(output, inputs=(input_path,)) if output else None
        npz_tmp = outs.add(npz, inputs=(input_path,)) if npz else None
        ov_tmp = outs.add(overlay, inputs=(input_path,)) if overlay else None
        writers: list = []
        bar = progress(src.estimated_frames(), "saliency")
        small = None
        try:
            mapw = npzw = ovw = None
            for frame in src.frames():
                tb = frame.time_base or src.time_base
                if mapw is None and npzw is None and ovw is None:
                    w, h = frame.width, frame.height
                    if out_tmp:
                        mapw = MapVideoWriter(out_tmp, w, h, src.rate, meta)
                        writers.append(mapw)
                    if npz_tmp:
                        npzw = NpzWriter(npz_tmp, w, h, {
                            "time_base": np.asarray([tb.numerator, tb.denominator]),
                            "model": model.spec.id, "placeholder": model.placeholder})
                        writers.append(npzw)
                    if ov_tmp:
                        ovw = OverlayWriter(ov_tmp, w, h, src.rate, tb, meta)
                        writers.append(ovw)
                if small is None or n % stride == 0:
                    small = model.predict(model.model_input(frame)[None])[0]
                    inferences += 1
                small_u8 = np.rint(small * 255).astype(np.uint8)
                if mapw or ovw:
                    full_u8 = av.VideoFrame.from_ndarray(small_u8, format="gray").reformat(
                        frame.width, frame.height, interpolation="BILINEAR").to_ndarray()
                    if mapw:
                        pts_s = Fraction(frame.pts or 0) * tb
                        mapw.write(full_u8, pts_s if pts_s >= 0 else Fraction(0))
                    if ovw:
                        ovw.write(frame.to_ndarray(format="rgb24"), full_u8, frame.pts, tb)
                if npzw:
                    npzw.write(resize_map(small, frame.width, frame.height), frame.pts)
                n += 1
                bar.update(1)
            if n == 0:
                raise InputError(f"{input_path}: no video frames could be decoded")
            for wr in writers:
                wr.close()
            writers.clear()
            for note in src.notes():  # timestamp fix-ups etc.: the maps follow the same frames
                on_event(note)
        finally:
            bar.close()
            for wr in writers:  # error path: close what is open; AtomicOutputs removes the files
                try:
                    wr.abort() if isinstance(wr, NpzWriter) else wr.c.close()
                except Exception:  # noqa: BLE001
                    pass
    return SaliencyResult(
        frames=n, inferences=inferences, provider=model.provider, model=model.spec.id,
        placeholder=model.placeholder, seconds=time.perf_counter() - t0,
        outputs=[Path(p) for p in (output, npz, overlay) if p],
    )
