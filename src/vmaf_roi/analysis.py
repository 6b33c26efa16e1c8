"""Read back what an encoder did: per-block QP maps exported by FFmpeg's decoders."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def qp_maps(path: str | Path, *, keyframes_only: bool = False) -> list[tuple[bool, np.ndarray]]:
    """(is_keyframe, per-block QP array) for each decoded frame of the first video stream.

    Uses ``export_side_data=venc_params`` (H.264, HEVC and VP9 decoders export it).
    Note: on non-key frames, skipped blocks report the QP they inherit, which dilutes averages.
    """
    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.options = {"export_side_data": "venc_params"}
        for f in c.decode(s):
            if keyframes_only and not f.key_frame:
                continue
            sd = f.side_data.get("VIDEO_ENC_PARAMS")
            if sd is None:
                raise ValueError(f"{path}: decoder exported no QP map")
            out.append((bool(f.key_frame), np.asarray(sd.qp_map(), dtype=np.float64)))
    return out


def block_mask(mask: np.ndarray, shape: tuple[int, int], *, full: bool = True) -> np.ndarray:
    """Pixel mask -> block mask of ``shape``: blocks entirely inside (full) or touching it."""
    bh, bw = shape
    h, w = mask.shape
    by, bx = -(-h // bh), -(-w // bw)
    padded = np.zeros((bh * by, bw * bx), dtype=bool)
    padded[:h, :w] = mask
    blocks = padded.reshape(bh, by, bw, bx)
    return blocks.all(axis=(1, 3)) if full else blocks.any(axis=(1, 3))


def luma_frames(path: str | Path) -> list[np.ndarray]:
    """8-bit luma planes of every frame of the first video stream."""
    with av.open(str(path)) as c:
        return [f.reformat(format="gray").to_ndarray().astype(np.float64) for f in c.decode(video=0)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2)) if a.size else 0.0
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def masked_psnr(reference: str | Path, distorted: str | Path, masks: np.ndarray) -> tuple[float, float]:
    """Luma PSNR (over all frames' pixels) inside and outside per-frame masks, frames paired by index."""
    ref, dist = luma_frames(reference), luma_frames(distorted)
    if len(ref) != len(dist) or len(ref) != len(masks):
        raise ValueError(f"frame counts differ: reference {len(ref)}, distorted {len(dist)}, masks {len(masks)}")
    se_in = se_out = 0.0
    n_in = n_out = 0
    for r, d, m in zip(ref, dist, masks):
        e = (r - d) ** 2
        se_in += float(e[m].sum())
        n_in += int(m.sum())
        se_out += float(e[~m].sum())
        n_out += int((~m).sum())

    def db(se: float, n: int) -> float:
        return float("inf") if se == 0 or n == 0 else 10 * np.log10(255.0**2 / (se / n))

    return db(se_in, n_in), db(se_out, n_out)
