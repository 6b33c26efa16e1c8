"""ROI planner: saliency map -> per-block QP offsets -> a short list of rectangles.

Numpy, no FFmpeg; for uint8 maps and blends of two :class:`Planner` runs the same algorithm in C
(``_planner.c``, compiled when the package is built, if a compiler is there). The FFmpeg filter
``plugin/vf_salroi.c`` implements it too; ``tests/vectors/`` holds maps and the ROI lists all of
them must produce.
Everything below is the specification all of them follow.

1. **Blocks.** The frame (W x H) is cut into blocks of ``block`` pixels:
   ``bw = ceil(W/block)``, ``bh = ceil(H/block)``; block (bx, by) covers frame pixels
   ``[bx*block, min((bx+1)*block, W))`` and likewise in y.
2. **Block means.** The map (w x h, any size) is sampled over the area the block covers:
   ``sx0 = floor(x0*w/W)``, ``sx1 = max(ceil(x1*w/W), sx0+1)`` (integer arithmetic),
   likewise in y. ``s`` is the mean of the map over that area. For a uint8 map:
   ``s = (double)sum / (double)count / 255.0``; float maps (already in [0, 1]) use their mean.
   A blend of two uint8 maps A and B of the same size with weight w (:class:`Blend`, the map
   of a frame between two model maps) is not made: ``s = (1.0 - w) * sA + w * sB``, with sA
   and sB the uint8 means of A and B over the same area (the mean of the unrounded blend).
   With ``pool`` ``max``, ``s`` is the map's *maximum* over the same area instead (uint8:
   ``max / 255.0``; float maps their maximum), and a blend's ``s = (1.0 - w) * maxA + w * maxB``:
   a block takes the treatment of its most salient part. For encoders with large blocks (AV1's
   64x64 superblocks) next to small things people look at.
3. **Offsets.** ``d = -strength * (2*s - 1)``, where on frames narrower than
   ``strength_width`` (when it is > 0) ``strength`` is first scaled to
   ``strength * W / strength_width``; ``q = round(d)`` rounding halves away from
   zero (C ``round()``); ``q = clamp(q, -max_offset, +max_offset)``; in mode ``lower``
   ``q = min(q, 0)`` (only salient areas change, the background keeps the encoder's QP).
   In mode ``balanced`` the background's raise follows the salient area: with
   ``P = sum(max(d, 0))`` and ``N = sum(max(-d, 0))`` over all blocks, when ``P > N`` every
   positive ``d`` is first multiplied by ``N / P`` (double precision; sums taken block by block
   in row-major order), so the blocks'
   summed QP raise never exceeds their summed QP drop: bits move from the background to
   the salient area instead of leaving the frame. A frame mostly salient keeps mode
   ``both``'s offsets; a frame with a few small salient objects (a street seen from far) gets
   little or no background raise.
4. **Rectangles.** Row by row, top to bottom: each maximal run of equal non-zero ``q``
   in a row is a run ``[bx0, bx1)``. A run extends the rectangle opened by the row above
   when that rectangle has the same ``bx0``, ``bx1`` and ``q`` and ended on the row above;
   otherwise it opens a new rectangle. Blocks with ``q == 0`` get no region.
5. **Budget.** If there are more than ``max_regions`` rectangles, the block size is
   doubled and steps 1-4 are repeated (a single block always fits, so this ends).
6. **Order.** Most important first (the encoders let the first region win where regions
   overlap): by ``|q|`` descending, then ``q`` ascending (a boost before a cut of the
   same size), then top, then left.
7. **Output.** Each rectangle becomes ``top = by0*b``, ``bottom = min(by1*b, H)``,
   ``left = bx0*b``, ``right = min(bx1*b, W)`` (``b`` the block size finally used;
   bottom/right exclusive, as in AVRegionOfInterest) and ``qoffset = q / qp_scale``
   (``qp_scale`` 51 for 8-bit libx264/libx265, see ``encoder_qp_scale``).
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Literal

import numpy as np

from . import native

Mode = Literal["both", "lower", "balanced"]
MODES: tuple[str, ...] = ("both", "lower", "balanced")
Pool = Literal["mean", "max"]
POOLS: tuple[str, ...] = ("mean", "max")


_NATIVE = native.plan_u8_blend  # the C planner (None without it, or with VMAF_ROI_NATIVE=0)
_NATIVE_MAX_ROWS = 1 << 24  # the C planner's 32-bit column sums hold this many rows of 255
_MODE_CODES = {"both": 0, "lower": 1, "balanced": 2}
_POOL_CODES = {"mean": 0, "max": 1}


def native_available() -> bool:
    """Whether :class:`Planner` plans uint8 maps in C (see ``_planner.c``)."""
    return _NATIVE is not None


class Blend:
    """The map ``(1 - weight) * a + weight * b`` of two uint8 maps of the same shape, unmade.

    The map schedule hands one out for each frame between two model maps. The planner takes
    its block means from ``a``'s and ``b``'s (spec step 2) instead of from a made map, which
    saves the blend of every pixel and a pass over it. ``np.asarray(blend)`` makes the map as
    uint8 (float32 arithmetic, rounded half to even), for what needs pixels: scores, map files,
    the smoothing and carrying of later maps. The rounding makes planning that array differ
    from planning the blend where a block's offset sits on a rounding edge.
    """

    __slots__ = ("a", "b", "weight", "_made")

    def __init__(self, a: np.ndarray, b: np.ndarray, weight: float) -> None:
        a, b = np.asarray(a), np.asarray(b)  # a Blend of Blends: theirs made
        if a.dtype != np.uint8 or b.dtype != np.uint8 or a.ndim != 2 or a.shape != b.shape:
            raise ValueError(f"a blend needs two 2-D uint8 maps of one shape, got {a.shape} {a.dtype} "
                             f"and {b.shape} {b.dtype}")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"blend weight must be in [0, 1], got {weight}")
        self.a, self.b, self.weight = a, b, float(weight)
        self._made: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.a.shape

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if self._made is None:
            w = self.weight
            m = np.rint((1 - w) * self.a.astype(np.float32) + w * self.b.astype(np.float32)).astype(np.uint8)
            m.flags.writeable = False
            self._made = m
        if dtype is not None and np.dtype(dtype) != np.uint8:
            if copy is False:
                raise ValueError(f"a Blend is uint8: {np.dtype(dtype)} needs a copy")
            return self._made.astype(dtype)
        return self._made.copy() if copy else self._made

    def __repr__(self) -> str:
        return f"Blend({self.shape[1]}x{self.shape[0]}, weight={self.weight:.4g})"


@dataclass(frozen=True)
class Region:
    """One AVRegionOfInterest: pixel rectangle (bottom/right exclusive) and QP offset."""

    top: int
    bottom: int
    left: int
    right: int
    qp: int  # offset in encoder QP steps, negative = better quality
    qp_scale: int  # qoffset = qp / qp_scale

    @property
    def qoffset(self) -> Fraction:
        return Fraction(self.qp, self.qp_scale)

    def as_tuple(self) -> tuple[int, int, int, int, int, int]:
        """(top, bottom, left, right, qoffset.num, qoffset.den) without reducing the fraction."""
        return (self.top, self.bottom, self.left, self.right, self.qp, self.qp_scale)


@dataclass(frozen=True)
class PlannerParams:
    block: int = 16
    strength: float = 6.0
    max_offset: int = 10
    mode: Mode = "both"
    max_regions: int = 128
    qp_scale: int = 51
    strength_width: int = 0  # frames narrower than this get strength x width / strength_width; 0: off
    pool: Pool = "mean"  # a block's value: the map's mean over it, or its maximum

    def at_width(self, width: int) -> "PlannerParams":
        """The parameters for frames ``width`` pixels wide: ``strength`` in full from
        ``strength_width`` up, scaled by ``width / strength_width`` below it (the C filter
        computes the same double: ``strength * width / strength_width``)."""
        if self.strength_width <= 0 or width >= self.strength_width:
            return self
        return replace(self, strength=self.strength * width / self.strength_width, strength_width=0)

    def __post_init__(self) -> None:
        if self.block < 1:
            raise ValueError(f"block must be >= 1, got {self.block}")
        if not (self.strength >= 0):
            raise ValueError(f"strength must be >= 0, got {self.strength}")
        if self.max_offset < 0:
            raise ValueError(f"max_offset must be >= 0, got {self.max_offset}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.max_regions < 1:
            raise ValueError(f"max_regions must be >= 1, got {self.max_regions}")
        if self.qp_scale < 1:
            raise ValueError(f"qp_scale must be >= 1, got {self.qp_scale}")
        if self.strength_width < 0:
            raise ValueError(f"strength_width must be >= 0, got {self.strength_width}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {self.pool!r}")


def encoder_qp_scale(codec: str, bit_depth: int = 8) -> int:
    """The QP range an encoder multiplies ``AVRegionOfInterest.qoffset`` by.

    libx264/libx265: ``51 + 6*(bit_depth-8)`` (see ``encoders.py`` for which encoders read ROI).
    libvpx-vp9: FFmpeg's wrapper computes ``delta_q = (int)(qoffset * 63)`` in VP9 q-index
    units (0..255), so with 63 a planner offset q becomes a q-index delta of q, truncated.
    The encode stage does its own VP9 conversion (about 4 q-index per QP step, see
    ``encode.roi_entries``); this is the scale for a caller that wants q-index offsets.
    """
    if codec in ("libvpx-vp9", "libvpx"):
        return 63
    if codec in ("libsvtav1", "av1_nvenc"):
        # vmaf-roi's patches: qindex delta = qoffset x 255; with 63 one planner step is ~4 qindex
        # (AV1's 0..255 qindex against its 0..63 quantiser scale), as for VP9
        return 63
    return 51 + 6 * (bit_depth - 8)


def _edges(n: int, m: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Map-coordinate [start, end) of each block along one axis (frame size n, map size m)."""
    x0 = np.arange(0, n, block, dtype=np.int64)
    x1 = np.minimum(x0 + block, n)
    s0 = (x0 * m) // n
    s1 = np.maximum((x1 * m + n - 1) // n, s0 + 1)
    return s0, s1


def block_means(saliency: np.ndarray | Blend, width: int, height: int, block: int, pool: Pool = "mean") -> np.ndarray:
    """Mean (or, with ``pool="max"``, maximum) saliency per block (step 2 of the spec), shape
    (bh, bw), float64 in [0, 1]."""
    if pool == "max":
        if isinstance(saliency, Blend):
            w = saliency.weight
            return ((1.0 - w) * _block_max(saliency.a, width, height, block)
                    + w * _block_max(saliency.b, width, height, block))
        return _block_max(saliency, width, height, block)
    if isinstance(saliency, Blend):
        return _blend_means(_column_sums(saliency.a), _column_sums(saliency.b), saliency.weight, width, height, block)
    return _block_means(_column_sums(saliency), width, height, block)


def _block_max(saliency: np.ndarray, width: int, height: int, block: int) -> np.ndarray:
    """Step 2 with pool max: each block's maximum of the map (uint8: / 255.0)."""
    m = np.asarray(saliency)
    if m.ndim != 2:
        raise ValueError(f"saliency map must be 2-D, got shape {m.shape}")
    h, w = m.shape
    sy0, sy1 = _edges(height, h, block)
    sx0, sx1 = _edges(width, w, block)
    out = np.empty((len(sy0), len(sx0)), dtype=np.float64)
    for by, (y0, y1) in enumerate(zip(sy0.tolist(), sy1.tolist())):
        cm = m[y0:y1].max(axis=0)
        out[by] = [cm[x0:x1].max() for x0, x1 in zip(sx0.tolist(), sx1.tolist())]
    if m.dtype == np.uint8:
        out /= 255.0
    return out


def _column_sums(saliency: np.ndarray) -> tuple[np.ndarray, bool]:
    """Cumulative sums down the map's columns, with a zero first row; and whether it is uint8.

    The first half of an integral image; :func:`_block_means` adds the second half only on
    the rows the block edges need. Exact integer sums for uint8 maps (bit-identical to the C
    filter); int32 holds them while h*w*255 fits.
    """
    m = np.asarray(saliency)
    if m.ndim != 2:
        raise ValueError(f"saliency map must be 2-D, got shape {m.shape}")
    h, w = m.shape
    is_u8 = m.dtype == np.uint8
    acc_t = (np.int32 if h * w * 255 < 2**31 else np.int64) if is_u8 else np.float64
    col = np.zeros((h + 1, w), dtype=acc_t)
    np.cumsum(m, axis=0, dtype=acc_t, out=col[1:])
    return col, is_u8


@functools.lru_cache(maxsize=64)
def _geometry(width: int, height: int, w: int, h: int, block: int):
    """Per block size: the map rows the integral needs, the block columns, the pixel counts."""
    sy0, sy1 = _edges(height, h, block)
    sx0, sx1 = _edges(width, w, block)
    counts = np.outer(sy1 - sy0, sx1 - sx0).astype(np.float64)
    return np.concatenate([sy0, sy1]), len(sy0), sx0, sx1, counts


def _block_means(cols: tuple[np.ndarray, bool], width: int, height: int, block: int) -> np.ndarray:
    col, is_u8 = cols
    ys, nby, sx0, sx1, counts = _geometry(width, height, col.shape[1], col.shape[0] - 1, block)
    rows = np.zeros((len(ys), col.shape[1] + 1), dtype=col.dtype)
    np.cumsum(col[ys], axis=1, out=rows[:, 1:])
    top, bot = rows[:nby], rows[nby:]
    sums = (bot[:, sx1] - top[:, sx1]) - bot[:, sx0] + top[:, sx0]
    means = sums.astype(np.float64) / counts
    if is_u8:
        means /= 255.0
    return means


def _blend_means(ca: tuple[np.ndarray, bool], cb: tuple[np.ndarray, bool], w: float, width: int, height: int,
                 block: int) -> np.ndarray:
    """Step 2 for a Blend, from its two maps' column sums: ``(1 - w) * mean(a) + w * mean(b)``."""
    return (1.0 - w) * _block_means(ca, width, height, block) + w * _block_means(cb, width, height, block)


def round_half_away(d: np.ndarray) -> np.ndarray:
    """C ``round()``: halves away from zero, exact for |d| < 2**52."""
    a = np.abs(d)
    f = np.floor(a)
    return np.copysign(f + ((a - f) >= 0.5), d)


def qp_offsets(means: np.ndarray, params: PlannerParams) -> np.ndarray:
    """Step 3: per-block integer QP offsets from block means."""
    d = -params.strength * (2.0 * means - 1.0)
    if params.mode == "balanced":
        # sequential sums in row-major order (cumsum), as the C filter's loop adds them
        pos = float(np.cumsum(np.maximum(d, 0.0), axis=None)[-1]) if d.size else 0.0
        neg = float(np.cumsum(np.maximum(-d, 0.0), axis=None)[-1]) if d.size else 0.0
        if pos > neg:
            d = np.where(d > 0, d * (neg / pos), d)
    q = np.clip(round_half_away(d), -params.max_offset, params.max_offset).astype(np.int64)
    if params.mode == "lower":
        q = np.minimum(q, 0)
    return q


def rectangles(q: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """Step 4: (by0, by1, bx0, bx1, q) rectangles of equal non-zero q, in creation order."""
    bh, bw = q.shape
    # all runs of the grid at once: a run starts where the value differs from its left neighbour
    start = np.ones((bh, bw), dtype=bool)
    start[:, 1:] = q[:, 1:] != q[:, :-1]
    rows, cols = np.nonzero(start)  # row-major order, as the spec walks the grid
    nxt = np.full_like(cols, bw)  # a row's last run ends at the right edge
    same_row = rows[:-1] == rows[1:]
    nxt[:-1][same_row] = cols[1:][same_row]
    vals = q[rows, cols]
    keep = vals != 0
    rects: list[list[int]] = []
    open_prev: dict[tuple[int, int, int], int] = {}  # (bx0, bx1, q) -> index, ended on row above
    open_now: dict[tuple[int, int, int], int] = {}
    row = -1
    for by, bx0, bx1, v in zip(rows[keep].tolist(), cols[keep].tolist(), nxt[keep].tolist(), vals[keep].tolist()):
        if by != row:
            open_prev = open_now if by == row + 1 else {}
            open_now = {}
            row = by
        key = (bx0, bx1, v)
        idx = open_prev.get(key)
        if idx is not None:
            rects[idx][1] = by + 1
        else:
            idx = len(rects)
            rects.append([by, by + 1, bx0, bx1, v])
        open_now[key] = idx
    return [tuple(r) for r in rects]  # type: ignore[misc]


def _runs(q: np.ndarray):
    """Non-zero runs of every row (row, bx0, bx1, q) and whether each continues the run above.

    A run continues the one above when the row above holds the same value over [bx0, bx1)
    with run boundaries at bx0 and bx1, i.e. the row above has exactly that run: the
    rectangle holding it ended there, so this run extends it (step 4).
    """
    bh, bw = q.shape
    start = np.ones((bh, bw + 1), dtype=bool)  # start[r, c]: a run starts at c (c == bw: the edge)
    np.not_equal(q[:, 1:], q[:, :-1], out=start[:, 1:bw])
    rows, cols = np.nonzero(start[:, :bw])
    nxt = np.full_like(cols, bw)
    same_row = rows[:-1] == rows[1:]
    nxt[:-1][same_row] = cols[1:][same_row]
    vals = q[rows, cols]
    keep = vals != 0
    rows, cols, nxt, vals = rows[keep], cols[keep], nxt[keep], vals[keep]
    cont = rows > 0
    if bh > 1 and len(rows):
        changed = np.zeros((bh, bw + 1), dtype=np.int32)  # changed[r, c]: cells < c of row r differing from row r-1
        np.cumsum(q[1:] != q[:-1], axis=1, out=changed[1:, 1:])
        up = np.maximum(rows - 1, 0)
        cont &= (changed[rows, nxt] == changed[rows, cols]) & start[up, cols] & start[up, nxt]
    return rows, cols, nxt, vals, cont


def _count_rectangles(q: np.ndarray, runs=None) -> int:
    """How many rectangles step 4 makes, without making them."""
    cont = (runs or _runs(q))[4]
    return int(len(cont) - np.count_nonzero(cont))


def _rectangles_array(q: np.ndarray, runs=None) -> np.ndarray:
    """The rectangles of :func:`rectangles`, vectorised: int64 [n, 5] (by0, by1, bx0, bx1, q), unordered."""
    rows, cols, nxt, vals, cont = runs or _runs(q)
    if not len(rows):
        return np.empty((0, 5), dtype=np.int64)
    # runs of one rectangle share (bx0, bx1, q) and follow each other row by row
    order = np.lexsort((rows, vals, nxt, cols))
    new = ~cont[order]
    first = order[new]
    last_pos = np.flatnonzero(np.append(new[1:], True))
    out = np.empty((len(first), 5), dtype=np.int64)
    out[:, 0] = rows[first]
    out[:, 1] = rows[order[last_pos]] + 1
    out[:, 2] = cols[first]
    out[:, 3] = nxt[first]
    out[:, 4] = vals[first]
    return out


def plan(saliency: np.ndarray | Blend, width: int, height: int, params: PlannerParams) -> list[Region]:
    """Saliency map (uint8 0..255, float 0..1 or a :class:`Blend`, any size) -> ordered ROI list
    for a W x H frame."""
    return Planner(width, height, params).plan(saliency)


class Planner:
    """:func:`plan` for a stream of maps, re-planning only when the block offsets change.

    Consecutive maps (blended, or held between model runs) mostly give the same integer
    offsets per block; then steps 4-7 would give the same list, so it is reused. The result
    is always exactly what :func:`plan` returns for the map; when nothing changed it is the
    *same* object as the previous call's (callers may cache work on its identity).
    :meth:`plan_array` is the same list as one int64 array, for the encode's hot path.
    """

    def __init__(self, width: int, height: int, params: PlannerParams) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        self.width, self.height, self.params = width, height, params.at_width(width)
        # block size -> (q, rectangle count, rectangles once made)
        self._levels: dict[int, tuple[np.ndarray, int, np.ndarray | None]] = {}
        self._last: tuple[int, np.ndarray, np.ndarray] | None = None  # block, rectangles, result
        self._regions: tuple[np.ndarray, list[Region]] | None = None  # plan_array's result, as Regions
        self.replans = 0  # how many times steps 4-7 ran
        self.native = _NATIVE is not None  # uint8 maps planned in C (same output; tests hold them equal)
        blocks = -(-width // params.block) * -(-height // params.block)  # never more rectangles than that
        self._out = np.empty((max(1, min(params.max_regions, blocks)), 5), dtype=np.int64)
        self._last_native: np.ndarray | None = None

    def _plan_native(self, m: np.ndarray, m2: np.ndarray | None = None, weight2: float = 0.0) -> np.ndarray:
        """The C planner on m, or on the blend of m and m2 (weight2 on m2)."""
        if m.strides[1] != 1:
            m = np.ascontiguousarray(m)
        if m2 is not None and m2.strides[1] != 1:
            m2 = np.ascontiguousarray(m2)
        p, used = self.params, ctypes.c_int(0)
        n = _NATIVE(m.ctypes.data, None if m2 is None else m2.ctypes.data, weight2, m.shape[1], m.shape[0],
                    m.strides[0], 0 if m2 is None else m2.strides[0], self.width, self.height, p.block,
                    float(p.strength), p.max_offset, _MODE_CODES[p.mode], _POOL_CODES[p.pool], p.max_regions,
                    self._out.ctypes.data,
                    len(self._out), ctypes.byref(used))
        if n < 0:
            raise MemoryError("the C planner failed") if n == -1 else RuntimeError(f"the C planner failed ({n})")
        last = self._last_native
        if last is not None and len(last) == n and np.array_equal(last, self._out[:n]):
            return last  # the same list: the same object, as the numpy path
        self.replans += 1
        out = self._out[:n].copy()
        out.flags.writeable = False
        self._last_native = out
        return out

    def plan(self, saliency: np.ndarray | Blend) -> list[Region]:
        rows = self.plan_array(saliency)
        if self._regions is None or self._regions[0] is not rows:
            scale = self.params.qp_scale
            self._regions = (rows, [Region(t, b, lf, rt, v, scale) for t, b, lf, rt, v in rows.tolist()])
        return self._regions[1]

    def plan_array(self, saliency: np.ndarray | Blend) -> np.ndarray:
        """The regions of :meth:`plan` as int64 rows (top, bottom, left, right, qp), in order
        (``qoffset = qp / params.qp_scale``); read-only, the same array while nothing changed."""
        if isinstance(saliency, Blend):
            if self.native and saliency.shape[0] <= _NATIVE_MAX_ROWS:
                return self._plan_native(saliency.a, saliency.b, saliency.weight)
        elif (self.native and isinstance(saliency, np.ndarray) and saliency.dtype == np.uint8 and saliency.ndim == 2
              and saliency.shape[0] <= _NATIVE_MAX_ROWS):
            return self._plan_native(saliency)
        if self.params.pool == "max":

            def means(block: int) -> np.ndarray:
                return block_means(saliency, self.width, self.height, block, "max")
        elif isinstance(saliency, Blend):
            wb = saliency.weight
            ca, cb = _column_sums(saliency.a), _column_sums(saliency.b)  # shared by every block size tried

            def means(block: int) -> np.ndarray:
                return _blend_means(ca, cb, wb, self.width, self.height, block)
        else:
            cols = _column_sums(saliency)  # shared by every block size tried

            def means(block: int) -> np.ndarray:
                return _block_means(cols, self.width, self.height, block)
        width, height, params = self.width, self.height, self.params
        block = params.block
        while True:
            q = qp_offsets(means(block), params)
            memo = self._levels.get(block)
            runs = None
            if memo is None or not np.array_equal(memo[0], q):
                runs = _runs(q)
                memo = self._levels[block] = (q, _count_rectangles(q, runs), None)
            if memo[1] <= params.max_regions or block >= max(width, height):
                break
            block *= 2
        if memo[2] is not None:
            if self._last is not None and self._last[0] == block and self._last[1] is memo[2]:
                return self._last[2]
            rects = memo[2]
        else:
            rects = _rectangles_array(q, runs)
            self._levels[block] = (q, memo[1], rects)
        self.replans += 1
        # step 6; the key is a total order (two rectangles never start on the same block), so
        # the order rectangles were made in does not matter
        r = rects[np.lexsort((rects[:, 2], rects[:, 0], rects[:, 4], -np.abs(rects[:, 4])))]
        out = np.empty((len(r), 5), dtype=np.int64)
        np.multiply(r[:, 0], block, out=out[:, 0])
        np.minimum(r[:, 1] * block, height, out=out[:, 1])
        np.multiply(r[:, 2], block, out=out[:, 2])
        np.minimum(r[:, 3] * block, width, out=out[:, 3])
        out[:, 4] = r[:, 4]
        out.flags.writeable = False
        self._last = (block, rects, out)
        return out


def qp_map(regions: list[Region], width: int, height: int, block: int = 16) -> np.ndarray:
    """The per-block QP offset an encoder following "first region wins" would apply.

    Useful for tests and pictures; a block belongs to a region when the region contains
    its top-left pixel.
    """
    bh, bw = -(-height // block), -(-width // block)
    out = np.zeros((bh, bw), dtype=np.int64)
    done = np.zeros((bh, bw), dtype=bool)
    ys = np.arange(bh)[:, None] * block
    xs = np.arange(bw)[None, :] * block
    for r in regions:
        inside = (ys >= r.top) & (ys < r.bottom) & (xs >= r.left) & (xs < r.right) & ~done
        out[inside] = r.qp
        done |= inside
    return out
