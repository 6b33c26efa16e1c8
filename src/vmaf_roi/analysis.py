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


def qp_picture(path: str | Path, out_png: str | Path, *, frame_index: int = 0,
               compare: str | Path | None = None) -> Path:
    """A PNG of one frame with the encoder's per-block QP map beside it (H.264 and others whose
    decoder exports QP maps). With ``compare`` (e.g. the plain encode), a third panel shows the
    QP difference, ROI minus plain: blue where ROI spent more bits, red where it saved."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def grab(p: str | Path) -> tuple[np.ndarray, np.ndarray]:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            s.codec_context.options = {"export_side_data": "venc_params"}
            for i, f in enumerate(c.decode(s)):
                if i == frame_index:
                    sd = f.side_data.get("VIDEO_ENC_PARAMS")
                    if sd is None:
                        raise ValueError(f"{p}: the decoder exports no QP map for this codec (H.264 does)")
                    return f.to_ndarray(format="rgb24"), np.asarray(sd.qp_map(), dtype=np.float64)
        raise ValueError(f"{p}: has no frame {frame_index}")

    rgb, qp = grab(path)
    panels = 2 + (compare is not None)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.4), constrained_layout=True)
    axes[0].imshow(rgb)
    axes[0].set_title(f"{Path(path).name}, frame {frame_index}")
    im = axes[1].imshow(qp, cmap="viridis_r", interpolation="nearest")
    axes[1].set_title(f"QP per block (mean {qp.mean():.1f})")
    fig.colorbar(im, ax=axes[1], shrink=0.8)
    if compare is not None:
        _, qp2 = grab(compare)
        d = qp - qp2
        lim = max(1.0, float(np.abs(d).max()))
        im2 = axes[2].imshow(d, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        axes[2].set_title(f"QP minus {Path(compare).name}")
        fig.colorbar(im2, ax=axes[2], shrink=0.8)
    for a in axes:
        a.set_xticks([])
        a.set_yticks([])
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
