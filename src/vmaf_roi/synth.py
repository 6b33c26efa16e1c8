"""Seeded synthetic clips with ground-truth object masks.

A textured, colourful object moves over a textured, noisy background (optionally with a
camera pan). The mask video beside the clip (gray FFV1 in Matroska, 255 inside the object)
is exact, so saliency and ROI encodes can be judged against a known answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class ClipInfo:
    path: Path
    mask_path: Path | None
    width: int
    height: int
    frames: int
    fps: int


def _smooth_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 5) -> np.ndarray:
    """Fractal value noise in [0, 1], shape (h, w)."""
    out = np.zeros((h, w), dtype=np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cell = max(2, 64 >> o)
        gh, gw = h // cell + 2, w // cell + 2
        grid = rng.random((gh, gw), dtype=np.float32)
        ys = np.arange(h, dtype=np.float32) / cell
        xs = np.arange(w, dtype=np.float32) / cell
        y0, x0 = ys.astype(int), xs.astype(int)
        fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
        a = grid[np.ix_(y0, x0)]
        b = grid[np.ix_(y0, x0 + 1)]
        c = grid[np.ix_(y0 + 1, x0)]
        d = grid[np.ix_(y0 + 1, x0 + 1)]
        out += amp * ((a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy)
        total += amp
        amp *= 0.55
    return out / total


class SyntheticScene:
    """Frame and mask generator; ``frame(i)`` is deterministic for a given seed."""

    def __init__(self, width: int, height: int, frames: int, *, seed: int = 0, pan: bool = False,
                 noise: float = 6.0) -> None:
        self.width, self.height, self.frames, self.pan, self.noise = width, height, frames, pan, noise
        self.seed = seed
        rng = np.random.default_rng(seed)
        margin = max(width, height) // 4 if pan else 0
        self.margin = margin
        bh, bw = height + margin, width + margin
        tex = _smooth_noise(rng, bh, bw)
        detail = rng.random((bh, bw), dtype=np.float32)
        base = 70 + 90 * tex + 25 * detail  # mid grey-brown texture with fine detail
        self.background = np.stack([base * 0.95, base * 0.9, base * 0.8], axis=-1)
        r = min(width, height) / 5.0
        self.radius = (r * 1.25, r)  # ellipse semi-axes (x, y)
        oy, ox = np.mgrid[-int(r * 1.4):int(r * 1.4) + 1, -int(r * 1.4):int(r * 1.4) + 1].astype(np.float32)
        stripes = 0.5 + 0.5 * np.sin((ox + 0.6 * oy) / 3.0)
        obj_noise = rng.random(ox.shape, dtype=np.float32)
        self.obj_rgb = np.stack(
            [230 + 20 * obj_noise, 60 + 170 * stripes, 20 + 40 * obj_noise], axis=-1
        )  # saturated orange/yellow stripes
        self.obj_off = (oy, ox)

    def center(self, i: int) -> tuple[float, float]:
        t = i / max(1, self.frames - 1)
        cx = self.width * (0.3 + 0.4 * t)
        cy = self.height * (0.5 + 0.18 * np.sin(2 * np.pi * t))
        return cx, cy

    def mask(self, i: int) -> np.ndarray:
        cx, cy = self.center(i)
        yy, xx = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
        rx, ry = self.radius
        return (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) <= 1.0

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 HxWx3, mask bool HxW) for frame i."""
        rng = np.random.default_rng((self.seed, i))
        if self.pan:
            t = i / max(1, self.frames - 1)
            dx = int(round(self.margin * t))
            dy = int(round(self.margin * 0.5 * t))
        else:
            dx = dy = 0
        img = self.background[dy:dy + self.height, dx:dx + self.width].copy()
        mask = self.mask(i)
        cx, cy = self.center(i)
        oy, ox = self.obj_off
        ys = np.clip((oy + cy).astype(int), 0, self.height - 1)
        xs = np.clip((ox + cx).astype(int), 0, self.width - 1)
        obj = np.zeros_like(img)
        obj[ys, xs] = self.obj_rgb
        img[mask] = obj[mask]
        img += rng.normal(0.0, self.noise, img.shape).astype(np.float32)
        return np.clip(img, 0, 255).astype(np.uint8), mask


def _tone(n: int, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(n) / rate
    return (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_clip(
    path: str | Path,
    *,
    width: int = 640,
    height: int = 360,
    frames: int = 48,
    fps: int = 24,
    seed: int = 0,
    pan: bool = False,
    codec: str = "libx264",
    crf: int = 12,
    pix_fmt: str = "yuv420p",
    audio: bool = False,
    mask_path: str | Path | None = None,
) -> ClipInfo:
    """Write a synthetic clip (and, if asked, its mask video). Returns what was written."""
    path = Path(path)
    scene = SyntheticScene(width, height, frames, seed=seed, pan=pan)
    mask_out = av.open(str(mask_path), "w", format="matroska") if mask_path else None
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
        vs.time_base = Fraction(1, fps)
        if codec in ("libx264", "libx265"):
            vs.options = {"crf": str(crf), "preset": "veryfast"}
        if audio:
            rate = 48000
            aus = out.add_stream("aac", rate=rate)
            aus.layout = "mono"
        if mask_out is not None:
            ms = mask_out.add_stream("ffv1", rate=fps)
            ms.width, ms.height, ms.pix_fmt = width, height, "gray"
            ms.time_base = Fraction(1, fps)
        for i in range(frames):
            rgb, mask = scene.frame(i)
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            vf.pts = i
            vf.time_base = Fraction(1, fps)
            for pkt in vs.encode(vf):
                out.mux(pkt)
            if mask_out is not None:
                mf = av.VideoFrame.from_ndarray(mask.astype(np.uint8) * 255, format="gray")
                mf.pts = i
                mf.time_base = Fraction(1, fps)
                for pkt in ms.encode(mf):
                    mask_out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)
        if audio:
            total = int(round(frames / fps * rate))
            samples = _tone(total, rate)
            step = 1024
            for k in range(0, total, step):
                chunk = samples[k:k + step]
                af = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                af.sample_rate = rate
                af.pts = k
                af.time_base = Fraction(1, rate)
                for pkt in aus.encode(af):
                    out.mux(pkt)
            for pkt in aus.encode(None):
                out.mux(pkt)
    if mask_out is not None:
        for pkt in ms.encode(None):
            mask_out.mux(pkt)
        mask_out.close()
    return ClipInfo(path, Path(mask_path) if mask_path else None, width, height, frames, fps)


def read_masks(path: str | Path) -> np.ndarray:
    """Mask video -> bool array [N, H, W]."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="gray") > 127 for f in c.decode(video=0)])
