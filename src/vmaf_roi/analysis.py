"""Read back what an encoder did: per-block QP maps exported by FFmpeg's decoders."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass
class QpPicture:
    path: Path
    frame: int
    key_frame: bool
    picture_type: str
    mean_qp: float
    warnings: list[str] = field(default_factory=list)
    planned_model: str | None = None


def planned_offsets(frame: av.VideoFrame, cfg: Any, *, model_dir: Path | None = None,
                    block: int = 16) -> tuple[np.ndarray, str]:
    """The planner's per-block QP offsets for one frame, saliency recomputed with ``cfg``'s model and
    ROI settings, on a ``block``-pixel grid (16: H.264 macroblocks). Returns (offsets, model id)."""
    from . import roi
    from .config import typed
    from .encode.plan import planner_params
    from .saliency import SaliencyModel

    t = typed(cfg)
    model = SaliencyModel(t.saliency.model, device=t.saliency.device, cache_dir=model_dir, spin=False)
    pred = model.predict(model.model_input(frame)[None])[0]
    small = np.rint(np.clip(pred, 0, 1) * 255).astype(np.uint8)  # as the encoder's pipeline rounds it
    params = planner_params(t.roi, t.encoder.name, 8)
    regions = roi.plan(small, frame.width, frame.height, params)
    return roi.qp_map(regions, frame.width, frame.height, block=block).astype(np.float64), model.spec.id


def _grab(p: str | Path, frame_index: int) -> tuple[av.VideoFrame, np.ndarray, list[int]]:
    """Frame ``frame_index``, its QP map and the indices of the keyframes up to it."""
    keys: list[int] = []
    n = 0
    with av.open(str(p)) as c:
        s = c.streams.video[0]
        s.codec_context.options = {"export_side_data": "venc_params"}
        for i, f in enumerate(c.decode(s)):
            n += 1
            if f.key_frame:
                keys.append(i)
            if i == frame_index:
                sd = f.side_data.get("VIDEO_ENC_PARAMS")
                if sd is None:
                    raise ValueError(f"{p}: the decoder exports no QP map for this codec (H.264 does)")
                return f, np.asarray(sd.qp_map(), dtype=np.float64), keys
    raise ValueError(f"{p}: has no frame {frame_index} (it has {n})")


def qp_picture(path: str | Path, out_png: str | Path, *, frame_index: int = 0,
               compare: str | Path | None = None, cfg: dict[str, Any] | None = None,
               model_dir: Path | None = None) -> QpPicture:
    """A PNG of one frame with the encoder's per-block QP beside it (H.264 and others whose decoder
    exports QP maps). With ``compare`` (e.g. the plain encode), a panel shows the QP difference, this
    encode minus the other: blue where this one spent more bits. With ``cfg``, a panel shows the
    offsets the ROI planner asks for on this frame (saliency recomputed with cfg's model on the
    decoded frame). On a non-key frame the result carries a warning: skipped blocks report the QP
    they inherit, which shows as streaks."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    frame, qp, keys = _grab(path, frame_index)
    rgb = frame.to_ndarray(format="rgb24")
    from av.video.frame import PictureType

    try:
        ptype = PictureType(int(frame.pict_type)).name
    except (ValueError, TypeError):
        ptype = str(frame.pict_type)
    res = QpPicture(path=Path(out_png), frame=frame_index, key_frame=bool(frame.key_frame), picture_type=ptype,
                    mean_qp=float(qp.mean()))
    if not frame.key_frame:
        near = max(k for k in keys) if keys else 0
        res.warnings.append(f"frame {frame_index} is not a keyframe ({ptype}-frame): skipped blocks report the QP "
                            f"they inherit, which shows as streaks; keyframes give a clean picture "
                            f"(e.g. --frame {near})")
    panels: list[tuple[str, np.ndarray | None]] = [("frame", None), ("qp", qp)]
    if compare is not None:
        _, qp2, _ = _grab(compare, frame_index)
        if qp2.shape != qp.shape:
            raise ValueError(f"{compare}: QP map {qp2.shape} differs from {path}'s {qp.shape} (another size?)")
        panels.append(("diff", qp - qp2))
    if cfg is not None:
        planned, res.planned_model = planned_offsets(frame, cfg, model_dir=model_dir)
        panels.append(("planned", planned[: qp.shape[0], : qp.shape[1]]))

    n = len(panels)
    cols = 2 if n == 4 else n  # 2x2 with four panels, else one row: no empty panel
    rows = -(-n // cols)
    height = 3.4 * rows + 0.8
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, height), squeeze=False, layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.75 / height, 1, 1 - 0.75 / height), h_pad=0.08)
    kind = "keyframe" if frame.key_frame else f"{ptype}-frame, NOT a keyframe"
    for ax, (what, data) in zip(axes.flat, panels):
        ax.set_xticks([])
        ax.set_yticks([])
        if what == "frame":
            ax.imshow(rgb)
            ax.set_title(f"{Path(path).name}, frame {frame_index} ({kind})", fontsize=9,
                         color="black" if frame.key_frame else "firebrick")
        elif what == "qp":
            im = ax.imshow(data, cmap="viridis_r", interpolation="nearest")
            ax.set_title(f"encoder QP per 16x16 block (mean {qp.mean():.1f})", fontsize=9)
            cb = fig.colorbar(im, ax=ax, shrink=0.85)
            cb.set_label("QP: low (yellow) = more bits", fontsize=8)
        elif what == "diff":
            lim = max(1.0, float(np.abs(data).max()))
            im = ax.imshow(data, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_title(f"QP of this encode minus {Path(compare).name}", fontsize=9)
            cb = fig.colorbar(im, ax=ax, shrink=0.85)
            cb.set_label("blue: ROI spent more bits / red: fewer", fontsize=8)
        else:
            lim = max(1.0, float(np.abs(data).max()))
            im = ax.imshow(data, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_title(f"planned ROI offset ({res.planned_model}, this frame)", fontsize=9)
            cb = fig.colorbar(im, ax=ax, shrink=0.85)
            cb.set_label("blue: more bits asked / red: fewer", fontsize=8)
        if what != "frame":
            ax.set_xlabel("block column", fontsize=8)
            ax.set_ylabel("block row", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    caption = ("Encoder QP = rate control + adaptive quantisation (AQ: x264 raises QP where the picture is detailed "
               "and lowers it where it is flat, by content alone, so a textured object can get a higher QP than a "
               "plain wall) + the ROI offset. "
               + ("The difference panel removes rate control and most of AQ, leaving ROI's effect. " if compare else
                  "Add --compare PLAIN.mp4 to see ROI's effect alone. ")
               + ("The planned panel is what vmaf-roi asked the encoder for. " if cfg is not None else "")
               + ("WARNING: not a keyframe; skipped blocks inherit QP (streaks)." if not frame.key_frame else ""))
    fig.text(0.01, 0.01, "\n".join(textwrap.wrap(caption, 80 * cols)), fontsize=7.5, va="bottom",
             color="firebrick" if not frame.key_frame else "0.2")
    fig.suptitle("What the encoder did on one frame" + ("" if frame.key_frame else " (NOT a keyframe: see warning)"),
                 fontsize=10, color="black" if frame.key_frame else "firebrick")
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return res
