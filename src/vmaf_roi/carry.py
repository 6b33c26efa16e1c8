"""Carrying a saliency map between model inferences along the picture's motion.

Two sources of motion, one representation (:class:`MotionField`, a grid of backward
displacements in frame pixels):

* the decoder's own motion vectors: H.264 and MPEG-4 (part 2, MS-MPEG-4, H.263) decoders export
  them as ``MOTION_VECTORS`` side data when opened with ``flags2=+export_mvs``
  (:data:`EXPORT_MVS`); :func:`field_from_mvs` reads them;
* block matching on a downscaled luma plane (:func:`block_flow`), for any input.

:func:`warp` moves a map (at any resolution, e.g. the model's) by such a field, :func:`unwarp`
the other way (splatting); :class:`Carrier` keeps the maps of the last frames in display order
and picks which map each frame's field is applied to; :func:`carry_back` and :func:`between`
fill the frames between two model maps from both (measured best: benchmarks/bench_carry.py).

What FFmpeg exports (``libavcodec/mpegutils.c``, ``ff_print_debug_info2`` / ``add_mb``): one
``AVMotionVector`` per inter-predicted block and prediction direction, 16x16, 16x8, 8x16 or 8x8
(smaller H.264 partitions come as their 8x8), ``dst_x/dst_y`` the block's centre in this frame,
``src = dst + motion / motion_scale`` where the block is predicted from in the reference, and
``source`` -1 for a past reference (list 0) or +1 for a future one (list 1). Intra blocks have
no vector. **Which** reference a vector points to is not exported (no reference index), so with
several references or B-pyramids it is not known exactly. Frames come out of the decoder in
display order, each with vectors into its reference(s), which are the nearest I/P frames before
(and, for B-frames, after) it in display order, not the previous displayed frame. Here:

* a P-frame's vectors are taken to point at the previous I/P frame in display order (its first
  reference; vectors into older references are read as if they were into that one);
* a B-frame's vectors are taken to point at the previous / next I/P frame; each block uses the
  vector of the *nearer* side (with up to 3 B-frames and x264's b-pyramid the nearer side is
  then exactly right: the outer B-frames' nearer reference is the anchor next to them), and the
  other side's where only that exists;
* displacements are scaled to the frame distance they are applied over (constant motion);
* blocks with no vector (intra) take the mean displacement of their neighbours that have one,
  else none (the map stays where it was); sampling outside the frame takes the edge value.

Two quirks of the export, measured on FFmpeg 8.1: for a partitioned H.264 B macroblock every
8x8 sub-block gets both lists, the unused one as (0, 0) (so a zero vector opposite a moving one
is ignored); and the MPEG-4 part 2 decoder keeps no motion for B-frames, whose vectors all come
out (0, 0) (:func:`fields` lets them borrow the next anchor's). MS-MPEG-4 exports 16x16 only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import av
import numpy as np

EXPORT_MVS = {"flags2": "+export_mvs"}  # codec_context.options for a decoder that exports vectors
# decoders (codec_context.name) seen exporting vectors with PyAV 18.1 / FFmpeg 8.1: H.264 and the
# mpegvideo family (a translating test clip: each gave the motion back). Others export none.
MV_DECODERS = frozenset({"h264", "mpeg4", "msmpeg4", "msmpeg4v2", "h263", "flv", "mpeg1video", "mpeg2video"})
GRID = 8  # block size (frame pixels) of fields made from motion vectors
B_TYPES = {"B", "BI"}


@dataclass(frozen=True)
class MotionField:
    """Backward displacement per block of one frame.

    ``past[by, bx] = (dx, dy)``: the content of block (by, bx) of this frame (``cell_w`` x
    ``cell_h`` frame pixels; the last row/column may reach past the frame) was at
    ``+ (dx, dy)`` pixels in the frame ``past_span`` frames earlier in display order; NaN where
    the block has no such vector. ``future`` likewise for the frame ``future_span`` frames later
    (B-frames), or None.
    """

    width: int
    height: int
    cell_w: float
    cell_h: float
    past: np.ndarray | None  # [BH, BW, 2] float32
    past_span: int
    future: np.ndarray | None = None
    future_span: int = 0

    def displacement(self, back: int = 1) -> np.ndarray:
        """[BH, BW, 2] displacement to the frame ``back`` frames earlier (0 where unknown).

        Each block takes the vector of its nearer reference (the mean of both when they are
        equally near), else the other one, scaled to ``back`` frames (a future vector points the
        other way); blocks with neither take their neighbours' (:func:`_fill`).
        """
        cands = []
        if self.past is not None and self.past_span > 0:
            cands.append((self.past_span, self.past * (back / self.past_span)))
        if self.future is not None and self.future_span > 0:
            cands.append((self.future_span, self.future * (-back / self.future_span)))
        if not cands:
            raise ValueError("a motion field needs a past or a future reference")
        cands.sort(key=lambda c: c[0])  # stable: past first on a tie
        out = cands[0][1].copy()
        if len(cands) == 2:
            other = cands[1][1]
            both = ~np.isnan(out[..., 0]) & ~np.isnan(other[..., 0])
            # FFmpeg exports both lists for every sub-block of a partitioned B macroblock, a
            # list the sub-block does not use as (0, 0): a zero vector opposite a moving one is
            # that placeholder, not motion
            zero = both & (out == 0).all(-1)
            moving = both & (other != 0).any(-1)
            out[zero & moving] = other[zero & moving]
            if cands[0][0] == cands[1][0]:  # equally near: a bi-predicted block averages both
                avg = both & ~(other == 0).all(-1) & ~zero
                out[avg] = 0.5 * (out[avg] + other[avg])
            hole = np.isnan(out[..., 0])
            out[hole] = other[hole]
        return _fill(out)


def _fill(d: np.ndarray, passes: int = 2) -> np.ndarray:
    """Blocks without a displacement take the mean of their 3x3 neighbours that have one."""
    d = d.copy()
    for _ in range(passes):
        hole = np.isnan(d[..., 0])
        if not hole.any():
            break
        ok = (~hole).astype(np.float32)
        v = np.where(hole[..., None], 0.0, d)
        s = _box3(v * ok[..., None])
        n = _box3(ok[..., None])
        take = hole & (n[..., 0] > 0)
        d[take] = s[take] / n[take]
    d[np.isnan(d)] = 0.0
    return d.astype(np.float32)


def _box3(a: np.ndarray) -> np.ndarray:
    p = np.pad(a, ((1, 1), (1, 1), (0, 0)))
    h, w = a.shape[:2]
    return sum(p[y:y + h, x:x + w] for y in range(3) for x in range(3))


_PICT = {0: "", 1: "I", 2: "P", 3: "B", 4: "S", 5: "SI", 6: "SP", 7: "BI"}  # libavutil AVPictureType


def picture_type(frame: av.VideoFrame) -> str:
    """'I', 'P', 'B', ... ('' if unknown): PyAV 18 gives AVPictureType as a plain int."""
    t = frame.pict_type
    return _PICT.get(t, "") if isinstance(t, int) else getattr(t, "name", str(t))


def motion_vectors(frame: av.VideoFrame) -> np.ndarray | None:
    """The frame's exported motion vectors (structured array), or None if it carries none."""
    sd = frame.side_data.get("MOTION_VECTORS")
    return None if sd is None else sd.to_ndarray()


def field_from_mvs(
    mvs: np.ndarray | None, width: int, height: int, past_span: int, future_span: int = 0,
) -> MotionField | None:
    """Rasterise FFmpeg's AVMotionVector rows onto an 8x8-block grid.

    ``past_span``/``future_span``: display-order distance to the reference that ``source`` < 0 /
    > 0 vectors point into (:func:`reference_spans`); 0 ignores that side. None when nothing
    is usable (no side data: an I-frame, or a decoder without export).
    """
    if mvs is None or len(mvs) == 0 or (past_span <= 0 and future_span <= 0):
        return None
    bw, bh = -(-width // GRID), -(-height // GRID)
    sides = []
    for sign, span in ((-1, past_span), (1, future_span)):
        rows = mvs[(np.sign(mvs["source"]) == sign)] if span > 0 else mvs[:0]
        if span <= 0 or len(rows) == 0:
            sides.append(None)
            continue
        scale = np.maximum(rows["motion_scale"].astype(np.float32), 1.0)
        mx = rows["motion_x"].astype(np.float32) / scale
        my = rows["motion_y"].astype(np.float32) / scale
        w = rows["w"].astype(np.int64)
        h = rows["h"].astype(np.int64)
        x0 = (rows["dst_x"].astype(np.int64) - w // 2) // GRID
        y0 = (rows["dst_y"].astype(np.int64) - h // 2) // GRID
        nx, ny = np.maximum(w // GRID, 1), np.maximum(h // GRID, 1)
        cells, wx, wy = [], [], []
        for oy in range(int(ny.max())):
            for ox in range(int(nx.max())):
                sel = (oy < ny) & (ox < nx)
                cx, cy = x0[sel] + ox, y0[sel] + oy
                inside = (cx >= 0) & (cx < bw) & (cy >= 0) & (cy < bh)
                cells.append(cy[inside] * bw + cx[inside])
                wx.append(mx[sel][inside])
                wy.append(my[sel][inside])
        idx = np.concatenate(cells)
        cnt = np.bincount(idx, minlength=bh * bw)
        sx = np.bincount(idx, weights=np.concatenate(wx), minlength=bh * bw)
        sy = np.bincount(idx, weights=np.concatenate(wy), minlength=bh * bw)
        d = np.full((bh * bw, 2), np.nan, np.float32)
        has = cnt > 0
        d[has, 0] = sx[has] / cnt[has]
        d[has, 1] = sy[has] / cnt[has]
        d = d.reshape(bh, bw, 2)
        sides.append(d)
    if sides[0] is None and sides[1] is None:
        return None
    return MotionField(width, height, GRID, GRID, sides[0], past_span if sides[0] is not None else 0,
                       sides[1], future_span if sides[1] is not None else 0)


def reference_spans(pict_types: Sequence[str]) -> list[tuple[int, int]]:
    """(past, future) display distance to each frame's assumed references; 0 = none.

    ``pict_types`` in display order ('I', 'P', 'B', ... as :func:`picture_type` gives them).
    A P-frame (or any non-B frame with vectors) points at the previous non-B frame; a B-frame at
    the previous and the next non-B frame. A B-frame with no later anchor in ``pict_types``
    gets future 0 (its past vectors are still used).
    """
    n = len(pict_types)
    out = []
    last_anchor: int | None = None
    nxt: list[int | None] = [None] * n
    upcoming = None
    for i in range(n - 1, -1, -1):
        nxt[i] = upcoming
        if pict_types[i] not in B_TYPES:
            upcoming = i
    for i, t in enumerate(pict_types):
        past = i - last_anchor if last_anchor is not None else 0
        if t in B_TYPES:
            fut = nxt[i] - i if nxt[i] is not None else 0
            out.append((past, fut))
        else:
            out.append((past, 0))
            last_anchor = i
    return out


def fields(mvs: Sequence[np.ndarray | None], pict_types: Sequence[str], width: int, height: int,
           ) -> list[MotionField | None]:
    """The field of every frame of a run in display order (:func:`reference_spans`,
    :func:`field_from_mvs`).

    FFmpeg's MPEG-4 part 2 (and H.263-family) decoder keeps no motion for B-frames, and exports
    their vectors as all (0, 0). A B-frame whose vectors are all zero therefore borrows the
    motion of the next non-B frame (its vectors into the previous anchor, moved to where the
    blocks' content is at the B-frame and scaled to the B-frame's own distance from that anchor):
    the same constant-motion assumption as everywhere here. A truly static B-frame borrows a
    static field.
    """
    spans = reference_spans(pict_types)
    out = [field_from_mvs(m, width, height, *sp) for m, sp in zip(mvs, spans)]
    for i, t in enumerate(pict_types):
        m = mvs[i]
        if t not in B_TYPES or m is None or len(m) == 0 or (m["motion_x"] != 0).any() or (m["motion_y"] != 0).any():
            continue
        past, fut = spans[i]
        nxt = out[i + fut] if fut else None
        if past <= 0 or nxt is None or nxt.past is None or nxt.past_span <= 0:
            continue
        v = _shift_field(nxt.past, nxt.cell_w, nxt.cell_h, fut / nxt.past_span)
        out[i] = MotionField(width, height, nxt.cell_w, nxt.cell_h, v * (past / nxt.past_span), past)
    return out


def _shift_field(d: np.ndarray, cell_w: float, cell_h: float, frac: float) -> np.ndarray:
    """A later frame's field moved to an earlier frame's blocks: the block at ``p`` had its
    content at ``p + frac * d(p)`` then (``frac``: the fraction of the field's span that lies
    between the two frames). Blocks nothing lands on keep the later frame's vector there."""
    bh, bw = d.shape[:2]
    ok = ~np.isnan(d[..., 0])
    ys, xs = np.nonzero(ok)
    v = d[ys, xs]
    ty = np.clip(np.rint(ys + frac * v[:, 1] / cell_h), 0, bh - 1).astype(np.intp)
    tx = np.clip(np.rint(xs + frac * v[:, 0] / cell_w), 0, bw - 1).astype(np.intp)
    idx = ty * bw + tx
    cnt = np.bincount(idx, minlength=bh * bw)
    out = d.reshape(-1, 2).copy()
    hit = cnt > 0
    for c in range(2):
        out[hit, c] = (np.bincount(idx, weights=v[:, c], minlength=bh * bw)[hit] / cnt[hit])
    return out.reshape(bh, bw, 2).astype(np.float32)


def _bilinear(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample img [H, W(, C)] at float coordinates (pixel centres at integers), edge-clamped."""
    h, w = img.shape[:2]
    ys = np.clip(ys, 0, h - 1)
    xs = np.clip(xs, 0, w - 1)
    y0 = np.floor(ys).astype(np.intp)
    x0 = np.floor(xs).astype(np.intp)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    fy = (ys - y0).astype(np.float32)
    fx = (xs - x0).astype(np.float32)
    if img.ndim == 3:
        fy, fx = fy[..., None], fx[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bot * fy


def _sample(m: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of a 2-D map at float32 coordinates, edge-clamped (fast path of warp)."""
    h, w = m.shape
    p = np.empty((h + 1, w + 1), np.float32)  # one edge row/column more: no clamping of +1
    p[:h, :w] = m
    p[h, :w] = m[-1]
    p[:, w] = p[:, w - 1]
    flat = p.ravel()
    np.clip(ys, 0, h - 1, out=ys)
    np.clip(xs, 0, w - 1, out=xs)
    y0 = ys.astype(np.int32)  # floor: coordinates are >= 0 now
    x0 = xs.astype(np.int32)
    ys -= y0
    xs -= x0
    i = y0 * (w + 1) + x0
    a, b = flat[i], flat[i + 1]
    c, d = flat[i + (w + 1)], flat[i + (w + 2)]
    top = a + (b - a) * xs
    return top + ((c + (d - c) * xs) - top) * ys


def _map_displacement(field: MotionField, mh: int, mw: int, back: int):
    """Per map pixel: (dx, dy) in frame pixels, pixel centres fy, fx in frame pixels, scales."""
    sy, sx = field.height / mh, field.width / mw  # frame pixels per map pixel
    # each map pixel takes its block's displacement, as motion compensation does
    # (interpolating between blocks would smear a moving edge over a block)
    fy = (np.arange(mh, dtype=np.float32) + 0.5) * sy
    fx = (np.arange(mw, dtype=np.float32) + 0.5) * sx
    disp = field.displacement(back)
    by = np.minimum((fy / field.cell_h).astype(np.intp), disp.shape[0] - 1)
    bx = np.minimum((fx / field.cell_w).astype(np.intp), disp.shape[1] - 1)
    dx = disp[..., 0][by][:, bx]  # [mh, mw] (row then column gather: fast)
    dy = disp[..., 1][by][:, bx]
    return dx, dy, fy, fx, sy, sx


def warp(m: np.ndarray, field: MotionField | None, back: int = 1) -> np.ndarray:
    """The map of an earlier frame (``back`` frames before the field's) moved to the field's frame.

    ``m`` is [h, w] at any resolution covering the whole frame (uint8 or float); the result has
    its shape and dtype. Each map pixel takes the earlier map's value where its content was
    (its block's displacement, bilinear in the map); no field returns ``m`` unchanged.
    """
    if field is None:
        return m
    mh, mw = m.shape
    dx, dy, fy, fx, sy, sx = _map_displacement(field, mh, mw, back)
    src_y = (fy[:, None] + dy) * np.float32(1 / sy) - np.float32(0.5)
    src_x = (fx[None, :] + dx) * np.float32(1 / sx) - np.float32(0.5)
    out = _sample(m, src_y, src_x)
    if m.dtype == np.uint8:
        return np.rint(np.clip(out, 0, 255)).astype(np.uint8)
    return out.astype(m.dtype)


def unwarp(m: np.ndarray, field: MotionField | None, back: int = 1) -> np.ndarray:
    """The inverse of :func:`warp`: the map of the field's frame moved to the frame ``back``
    frames earlier.

    Every map pixel is splatted (bilinear weights) to where its content was; pixels nothing
    lands on (content that appears only later) keep the first-order inverse,
    ``m(x - d(x))``. Same shape and dtype as ``m``.
    """
    if field is None:
        return m
    mh, mw = m.shape
    dx, dy, fy, fx, sy, sx = _map_displacement(field, mh, mw, back)
    ty = (fy[:, None] + dy) * np.float32(1 / sy) - np.float32(0.5)  # where each pixel's content was
    tx = (fx[None, :] + dx) * np.float32(1 / sx) - np.float32(0.5)
    np.clip(ty, 0, mh - 1, out=ty)
    np.clip(tx, 0, mw - 1, out=tx)
    y0 = ty.astype(np.int32)
    x0 = tx.astype(np.int32)
    wy = (ty - y0).ravel()
    wx = (tx - x0).ravel()
    y1 = np.minimum(y0 + 1, mh - 1).ravel()
    x1 = np.minimum(x0 + 1, mw - 1).ravel()
    y0, x0 = y0.ravel(), x0.ravel()
    v = m.astype(np.float32).ravel()
    acc = np.zeros(mh * mw, np.float64)
    wsum = np.zeros(mh * mw, np.float64)
    for yy, xx, w in ((y0, x0, (1 - wy) * (1 - wx)), (y0, x1, (1 - wy) * wx),
                      (y1, x0, wy * (1 - wx)), (y1, x1, wy * wx)):
        i = yy * mw + xx
        acc += np.bincount(i, weights=w * v, minlength=mh * mw)
        wsum += np.bincount(i, weights=w, minlength=mh * mw)
    hit = wsum > 1e-3
    out = np.empty(mh * mw, np.float32)
    out[hit] = acc[hit] / wsum[hit]
    if not hit.all():
        first = _sample(m, (fy[:, None] - dy) * np.float32(1 / sy) - np.float32(0.5),
                        (fx[None, :] - dx) * np.float32(1 / sx) - np.float32(0.5)).ravel()
        out[~hit] = first[~hit]
    out = out.reshape(mh, mw)
    if m.dtype == np.uint8:
        return np.rint(np.clip(out, 0, 255)).astype(np.uint8)
    return out.astype(m.dtype)


class Carrier:
    """Maps in display order: model maps as given, the others warped from an earlier one.

    A frame whose nearer reference is in the past warps the map of that reference, or the last
    model map if that is newer (a fresh map is never skipped); a frame whose nearer reference is
    in the future (or that has no field) warps (holds) the previous frame's map. Displacements
    are scaled to the distance actually warped over.
    """

    def __init__(self, history: int = 32) -> None:
        self.history = history
        self.maps: dict[int, np.ndarray] = {}
        self.last_key: int | None = None

    def key(self, index: int, m: np.ndarray) -> np.ndarray:
        self.last_key = index
        return self._keep(index, m)

    def carry(self, index: int, field: MotionField | None) -> np.ndarray:
        if not self.maps:
            raise ValueError("the first frame needs a model map")
        prev = max(i for i in self.maps if i < index)
        src = prev
        if field is not None and field.past is not None and field.past_span > 0 and (
                field.future is None or field.past_span <= field.future_span):
            src = index - field.past_span
            if self.last_key is not None and self.last_key > src:
                src = self.last_key
            if src not in self.maps:
                src = prev
        return self._keep(index, warp(self.maps[src], field, index - src))

    def _keep(self, index: int, m: np.ndarray) -> np.ndarray:
        self.maps[index] = m
        for i in [i for i in self.maps if i <= index - self.history]:
            del self.maps[i]
        return m


def luma(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """The frame's luma at (width, height) as float32 (swscale's area-averaging resize)."""
    return frame.reformat(width, height, "gray", interpolation="AREA").to_ndarray().astype(np.float32)


def block_flow(prev: np.ndarray, cur: np.ndarray, frame_size: tuple[int, int], block: int = 8,
               radius: int = 4, zero_bias: float = 1.0) -> MotionField:
    """Exhaustive block matching of ``cur`` against ``prev`` (both small luma planes, same size).

    For every ``block`` x ``block`` block of ``cur`` the offset within +-``radius`` pixels whose
    block in ``prev`` has the least mean absolute difference; the zero offset wins unless another
    is better by more than ``zero_bias`` (grey levels), so flat or noisy blocks stay put. The
    result is a past field (span 1) at frame resolution, ``frame_size`` = (W, H).
    """
    h, w = cur.shape
    bh, bw = h // block, w // block
    if bh == 0 or bw == 0:
        raise ValueError(f"luma plane {w}x{h} smaller than one {block}x{block} block")
    r = radius
    p = np.pad(prev, r, mode="edge")
    c = cur[:bh * block, :bw * block]
    best = np.full((bh, bw), np.inf, np.float32)
    off = np.zeros((bh, bw, 2), np.float32)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            s = p[r + dy:r + dy + bh * block, r + dx:r + dx + bw * block]
            sad = np.abs(c - s).reshape(bh, block, bw, block).mean(axis=(1, 3))
            if dx or dy:
                sad = sad + zero_bias
            better = sad < best
            best[better] = sad[better]
            off[better] = (dx, dy)
    fw, fh = frame_size
    sx, sy = fw / w, fh / h  # frame pixels per small pixel
    off[..., 0] *= sx
    off[..., 1] *= sy
    return MotionField(int(fw), int(fh), block * sx, block * sy, off, 1)


def carry_back(m: np.ndarray, fields: Sequence[MotionField | None]) -> list[np.ndarray]:
    """A later map carried back: the maps of frames ``a .. b-1`` from the map of frame ``b``.

    ``fields`` are the fields of frames ``a+1 .. b`` in display order; each step is
    :func:`unwarp` over one frame (the field's displacement scaled to one frame).
    """
    out = [m]
    for f in reversed(fields):
        out.append(unwarp(out[-1], f))
    return out[:0:-1]


def between(forward: Sequence[np.ndarray], backward: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Frames between two model maps: the map carried forward from the earlier one and back from
    the later one, weighted by position as the encode's linear blend weighs the two maps
    (``j / (count + 1)`` towards the later)."""
    n = len(forward)
    if len(backward) != n:
        raise ValueError("forward and backward maps differ in count")
    out = []
    for j, (f, b) in enumerate(zip(forward, backward), 1):
        w = j / (n + 1)
        v = (1 - w) * f.astype(np.float32) + w * b.astype(np.float32)
        out.append(np.rint(v).astype(np.uint8) if f.dtype == np.uint8 else v.astype(f.dtype))
    return out
