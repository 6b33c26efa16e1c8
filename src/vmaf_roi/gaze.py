"""Human gaze: the gaze file format, its loader, fixation densities and the field's measures.

A gaze file is where viewers looked, as a CSV in the video's own pixel coordinates::

    # comments start with '#'
    frame,x,y,viewer
    0,352.5,210,s01
    0,360,198,s02
    1,355,207,s01

- ``frame``: the 0-based index of the decoded frame (as ``vmaf-roi`` and ``ffmpeg`` count
  them), or instead a column ``t``: the time in seconds from the start of the video; a time
  belongs to the frame shown at that moment, ``floor(t * fps)``.
- ``x``, ``y``: the point looked at, in pixels of the video as decoded (0,0 is the top-left
  corner of the top-left pixel; the pixel centres are at +0.5), ``0 <= x <= width``,
  ``0 <= y <= height``.
- ``viewer`` (optional): any name or number of the viewer. Without it, frames are not
  filtered by their number of viewers, and the inter-observer ceiling cannot be computed.
- ``duration`` (optional, seconds): read and ignored; every fixation or gaze sample counts once.

Any other column, a missing ``x``/``y``, a row that is not numbers, a point outside the
picture, a frame past the end of the video, or a file without any point is refused with one
line that names the file and the line.

A frame's fixation density is its points blurred by a Gaussian of ``sigma`` pixels, by
default :func:`default_sigma`: one degree of visual angle, taking the frame's width to span
:data:`FRAME_WIDTH_DEGREES` degrees (the usual desktop eye-tracking set-up: 1024-pixel-wide
pictures at about 29 degrees, some 35 pixels a degree; a 24-inch 16:9 screen filled from about
1 m, or a picture 35 cm wide seen from 65 cm). Each point's Gaussian is normalised inside the frame, so a point near the edge
weighs as much as one in the middle.

The measures (Bylinskii et al., "What do different evaluation metrics tell us about saliency
models?", TPAMI 2019; pysaliency's ``metrics.py``):

- :func:`nss`: the mean of the z-scored map at the fixations (0 = chance).
- :func:`cc`: Pearson's correlation between a map and the fixation density.
- :func:`sauc`: the AUC of the map's values at this frame's fixations against its values at
  the fixations of *other* frames or images (which cancels a plain centre bias).
- :func:`inter_observer_nss`: each viewer's fixations scored against the density of the
  others: the ceiling a map can hope for.
- EWPSNR is :func:`vmaf_roi.score.weighted_psnr` with a frame's :meth:`GazeRecording.density`
  as the weights (Li, Qin & Itti 2011).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import InputError

FRAME_WIDTH_DEGREES = 30.0
COLUMNS = ("frame", "t", "x", "y", "viewer", "duration")
MAX_BYTES = 256 * 1024 * 1024


def default_sigma(width: int, height: int) -> float:
    """One degree of visual angle in pixels: the frame's width over :data:`FRAME_WIDTH_DEGREES`."""
    return width / FRAME_WIDTH_DEGREES


@dataclass
class GazeRecording:
    """Fixations (or gaze samples) of a video: parallel arrays, one entry a point."""

    width: int
    height: int
    frame: np.ndarray  # int64
    x: np.ndarray  # float64, pixels
    y: np.ndarray
    viewer: np.ndarray  # int64 index into viewer_names, -1 where unknown
    viewer_names: tuple[str, ...] = ()
    source: str = ""
    _index: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        order = np.argsort(self.frame, kind="stable")
        f = self.frame[order]
        cuts = np.flatnonzero(np.diff(f)) + 1
        for chunk in np.split(order, cuts):
            if chunk.size:
                self._index[int(self.frame[chunk[0]])] = chunk

    def __len__(self) -> int:
        return int(self.frame.size)

    @property
    def viewers_known(self) -> bool:
        return bool(self.viewer_names)

    def frames(self) -> np.ndarray:
        """The frame indices that have at least one point, sorted."""
        return np.array(sorted(self._index), dtype=np.int64)

    def points(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self._index.get(int(frame))
        if idx is None:
            return np.zeros(0), np.zeros(0)
        return self.x[idx], self.y[idx]

    def viewers(self, frame: int) -> int:
        """Distinct viewers with a point on this frame (0 where viewers are not known)."""
        idx = self._index.get(int(frame))
        if idx is None or not self.viewers_known:
            return 0
        return int(np.unique(self.viewer[idx]).size)

    def density(self, frame: int, sigma: float | None = None, *, exclude_viewer: int | None = None,
                only_viewer: int | None = None) -> np.ndarray:
        """The frame's fixation density, float64 (height, width), summing to 1; all zeros where
        the frame has no point. ``exclude_viewer``/``only_viewer``: the points of all viewers
        but one, or of one viewer only."""
        idx = self._index.get(int(frame))
        if idx is not None and (exclude_viewer is not None or only_viewer is not None):
            v = self.viewer[idx]
            idx = idx[v != exclude_viewer] if exclude_viewer is not None else idx[v == only_viewer]
        if idx is None or idx.size == 0:
            return np.zeros((self.height, self.width))
        return points_density(self.x[idx], self.y[idx], self.width, self.height,
                              default_sigma(self.width, self.height) if sigma is None else sigma)


def points_density(xs: np.ndarray, ys: np.ndarray, width: int, height: int, sigma: float) -> np.ndarray:
    """Sum of one Gaussian per point (each normalised inside the frame), scaled to sum 1.

    Separable: with Gx (points x width) and Gy (points x height), the sum is Gy^T Gx."""
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    if xs.size == 0:
        return np.zeros((height, width))
    if sigma <= 0:
        out = np.zeros((height, width))
        np.add.at(out, (pixel(ys, height), pixel(xs, width)), 1.0)
        return out / out.sum()
    gx = np.exp(-0.5 * (((np.arange(width) + 0.5)[None, :] - xs[:, None]) / sigma) ** 2)
    gy = np.exp(-0.5 * (((np.arange(height) + 0.5)[None, :] - ys[:, None]) / sigma) ** 2)
    for g, v, n in ((gx, xs, width), (gy, ys, height)):
        s = g.sum(axis=1)
        lost = s <= 0  # a sigma far below a pixel: every value underflowed; the point's own pixel
        if lost.any():
            g[np.flatnonzero(lost), pixel(v[lost], n)] = 1.0
            s[lost] = 1.0
        g /= s[:, None]
    d = gy.T @ gx
    return d / d.sum()


def pixel(v: np.ndarray, n: int) -> np.ndarray:
    """The pixel a coordinate falls in (coordinates n itself, the far edge, go to the last pixel)."""
    return np.clip(np.floor(np.asarray(v, dtype=np.float64)), 0, n - 1).astype(np.int64)


# -- the measures --------------------------------------------------------------------------------
def nss(saliency_map: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> float:
    """Normalized scanpath saliency: the z-scored map's mean at the points (NaN: no point or a flat map)."""
    m = np.asarray(saliency_map, dtype=np.float64)
    h, w = m.shape
    if len(xs) == 0:
        return float("nan")
    sd = float(m.std())
    if sd <= 0 or not math.isfinite(sd):
        return float("nan")
    return float(((m[pixel(ys, h), pixel(xs, w)] - m.mean()) / sd).mean())


def cc(map_a: np.ndarray, map_b: np.ndarray) -> float:
    """Pearson's correlation of two maps of the same shape (NaN where one is flat)."""
    a = np.asarray(map_a, dtype=np.float64).ravel()
    b = np.asarray(map_b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"cc: maps of different shapes {np.shape(map_a)} and {np.shape(map_b)}")
    a = a - a.mean()
    b = b - b.mean()
    d = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / d if d > 0 else float("nan")


def auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Area under the ROC curve of ``positives`` against ``negatives`` (ties count half)."""
    p = np.asarray(positives, dtype=np.float64)
    n = np.asarray(negatives, dtype=np.float64)
    if p.size == 0 or n.size == 0:
        return float("nan")
    allv = np.concatenate([p, n])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size)
    sv = allv[order]
    # average ranks of ties (1-based)
    starts = np.r_[0, np.flatnonzero(np.diff(sv)) + 1]
    ends = np.r_[starts[1:], sv.size]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[: p.size].sum() - p.size * (p.size + 1) / 2.0) / (p.size * n.size))


def sauc(saliency_map: np.ndarray, xs: np.ndarray, ys: np.ndarray, other_xs: np.ndarray,
         other_ys: np.ndarray) -> float:
    """Shuffled AUC: the map at the fixations against the map at other frames' fixations
    (given in this map's pixel coordinates)."""
    m = np.asarray(saliency_map, dtype=np.float64)
    h, w = m.shape
    return auc(m[pixel(ys, h), pixel(xs, w)], m[pixel(other_ys, h), pixel(other_xs, w)])


def inter_observer_nss(rec: GazeRecording, frame: int, sigma: float | None = None) -> float:
    """Mean over viewers of NSS of the other viewers' density at this viewer's points (NaN
    with fewer than two viewers, or viewers unknown)."""
    idx = rec._index.get(int(frame))
    if idx is None or not rec.viewers_known:
        return float("nan")
    vs = np.unique(rec.viewer[idx])
    if vs.size < 2:
        return float("nan")
    out = []
    for v in vs:
        mine = idx[rec.viewer[idx] == v]
        others = rec.density(frame, sigma, exclude_viewer=int(v))
        out.append(nss(others, rec.x[mine], rec.y[mine]))
    return float(np.nanmean(out))


# -- the file ----------------------------------------------------------------------------------
def load_gaze(path: str | Path, *, width: int, height: int, fps: float | Fraction | None = None,
              frame_count: int | None = None) -> GazeRecording:
    """Read a gaze CSV (module docstring) for a video of ``width`` x ``height``.

    ``fps`` is needed for a file with times (``t``); ``frame_count``, when known, refuses
    points past the last frame. Raises :class:`InputError` with one line for a bad file."""
    p = Path(path)
    where = str(path)
    try:
        if not p.is_file():
            raise InputError(f"{where}: gaze file not found" if not p.exists() else f"{where}: not a regular file")
        if p.stat().st_size > MAX_BYTES:
            raise InputError(f"{where}: gaze file larger than {MAX_BYTES >> 20} MiB")
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{where}: not a gaze file (not UTF-8 text; see the format in docs/gaze.md)") from None
    except OSError as e:
        raise InputError(f"{where}: cannot read the gaze file: {e.strerror or e}") from None
    return parse_gaze(text, where, width=width, height=height, fps=fps, frame_count=frame_count)


def _rows(text: str):
    for n, line in enumerate(io.StringIO(text), 1):
        s = line.strip()
        if s and not s.startswith("#"):
            yield n, s


def parse_gaze(text: str, where: str, *, width: int, height: int, fps: float | Fraction | None = None,
               frame_count: int | None = None) -> GazeRecording:
    rows = _rows(text)
    first = next(rows, None)
    if first is None:
        raise InputError(f"{where}: empty gaze file: no header and no point (expected a header such as 'frame,x,y,viewer')")
    hline, header_text = first
    header = [h.strip().lower() for h in next(csv.reader([header_text]))]
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise InputError(f"{where}:{hline}: unknown column {unknown[0]!r} in the header (columns: frame or t, x, y, "
                         f"and optionally viewer, duration)")
    if len(set(header)) != len(header):
        raise InputError(f"{where}:{hline}: a column is named twice in the header")
    for need in ("x", "y"):
        if need not in header:
            raise InputError(f"{where}:{hline}: the header has no {need!r} column (expected e.g. 'frame,x,y,viewer')")
    if ("frame" in header) == ("t" in header):
        raise InputError(f"{where}:{hline}: the header needs exactly one of 'frame' (index) or 't' (seconds)")
    by_time = "t" in header
    if by_time and not fps:
        raise InputError(f"{where}: times ('t') need the video's frame rate, which is not known for this input")
    col = {h: i for i, h in enumerate(header)}
    frames: list[int] = []
    xs: list[float] = []
    ys: list[float] = []
    vnames: list[str] = []
    has_viewer = "viewer" in col
    rate = float(fps) if fps else 0.0
    first_empty_viewer = 0
    for n, line in rows:
        cells = next(csv.reader([line]))
        if len(cells) != len(header):
            raise InputError(f"{where}:{n}: {len(cells)} values where the header has {len(header)}")
        try:
            x = float(cells[col["x"]])
            y = float(cells[col["y"]])
            if by_time:
                t = float(cells[col["t"]])
                if not math.isfinite(t) or t < 0:
                    raise ValueError
                fr = int(math.floor(t * rate + 1e-9))
            else:
                fv = float(cells[col["frame"]])
                if not math.isfinite(fv) or fv != int(fv) or fv < 0:
                    raise ValueError
                fr = int(fv)
        except ValueError:
            raise InputError(f"{where}:{n}: not a point: {line[:80]!r} (frame/t must be a whole number / seconds "
                             f">= 0, x and y numbers)") from None
        if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= width and 0 <= y <= height):
            raise InputError(f"{where}:{n}: point ({cells[col['x']]}, {cells[col['y']]}) is outside the "
                             f"{width}x{height} picture (x and y are in the video's pixels)")
        if frame_count is not None and fr >= frame_count:
            what = f"time {cells[col['t']]} s is frame {fr}" if by_time else f"frame {fr}"
            raise InputError(f"{where}:{n}: {what}, but the video has {frame_count} frames (0-{frame_count - 1})")
        frames.append(fr)
        xs.append(x)
        ys.append(y)
        if has_viewer:
            vnames.append(cells[col["viewer"]].strip())
            if not vnames[-1] and not first_empty_viewer:
                first_empty_viewer = n
    if not frames:
        raise InputError(f"{where}: empty gaze file: a header but no point")
    names: tuple[str, ...] = ()
    vid = np.full(len(frames), -1, dtype=np.int64)
    if has_viewer:
        if first_empty_viewer:
            n_empty = sum(1 for v in vnames if not v)
            raise InputError(f"{where}:{first_empty_viewer}: empty viewer ({n_empty} point{'s' if n_empty != 1 else ''} "
                             f"without one; leave the column out where viewers are not known)")
        names = tuple(sorted(set(vnames)))
        lookup = {v: i for i, v in enumerate(names)}
        vid = np.array([lookup[v] for v in vnames], dtype=np.int64)
    return GazeRecording(width=width, height=height, frame=np.array(frames, dtype=np.int64),
                         x=np.array(xs), y=np.array(ys), viewer=vid, viewer_names=names, source=where)


def write_gaze(path: str | Path, frames, xs, ys, viewers=None, *, header_comment: str = "") -> None:
    """Write points in the gaze file format (used by the dataset converters)."""
    with open(path, "w", newline="") as f:
        for line in header_comment.splitlines():
            f.write(f"# {line}\n")
        w = csv.writer(f)
        w.writerow(["frame", "x", "y"] + (["viewer"] if viewers is not None else []))
        for i, (fr, x, y) in enumerate(zip(frames, xs, ys)):
            row = [int(fr), f"{float(x):.2f}", f"{float(y):.2f}"]
            if viewers is not None:
                row.append(viewers[i])
            w.writerow(row)
