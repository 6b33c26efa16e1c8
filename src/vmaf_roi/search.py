"""Quality-targeted encodes: the CRF that reaches a VMAF target, and the ROI encode that saves bits.

Two modes, both as ab-av1's ``crf-search``: a few short samples of the input are encoded at a
few CRFs, the CRF is interpolated from their scores, and the input is encoded once.

* :func:`target_vmaf` — the CRF whose encode scores ``target`` VMAF (pooled ``mean`` or a low
  percentile ``pN`` of the per-frame scores), for a plain or an ROI encode.
* :func:`save_against` — the ROI encode with the fewest bits whose quality where people look
  (attention-weighted PSNR: EWPSNR with the model's attention maps as the weights, or the
  viewers' gaze with ``gaze=``) matches a plain encode at ``crf``, while its full-frame VMAF stays
  at most ``guard`` below that plain encode's.

The pieces:

* :func:`search_crf` — the search itself, pure: a ``crf -> score`` callable (score falling as the
  CRF rises), a target and the encoder's CRF range (:func:`crf_range`); unit-tested on synthetic
  curves. :class:`TargetUnreachable` when the range cannot reach the target.
* :func:`make_samples` — the input's frame times and scene cuts from its packets (:func:`scan`),
  then a few short windows spread over the file (snapped to scene cuts, so a sample does not
  straddle one) cut losslessly (uncompressed, H.264 at QP 0 or FFV1: :func:`sample_codec`) into one file, each
  window decoded from the keyframe before it. A short input is its own sample.
* probes are scored with :func:`vmaf_roi.score.score_many`, the same libvmaf and frame pairing
  as ``vmaf-roi score``.
* :class:`SearchCache` — search results by input content, config and target (the batch's cache).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, InputError
from .events import EventSink, Status, discard
from .maps import ProgressFactory, no_progress

# -- pooling ------------------------------------------------------------------------------------
POOLS = "mean, or pN for the Nth percentile of the per-frame scores (p1..p50, e.g. p5)"


def check_pool(pool: str) -> str:
    """``mean`` or ``pN`` (0 < N <= 50), normalised; ConfigError otherwise."""
    p = str(pool).strip().lower()
    if p == "mean":
        return p
    if p.startswith("p"):
        try:
            n = float(p[1:])
        except ValueError:
            n = -1.0
        if 0 < n <= 50:
            return f"p{n:g}"
    raise ConfigError(f"--pool {pool!r}: expected {POOLS}")


def pooled(values: Sequence[float], pool: str) -> float:
    """The per-frame scores pooled: their mean, or their Nth percentile (``pN``); non-finite
    values (frames without a score) are left out."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return float("nan")
    p = check_pool(pool)
    return float(v.mean()) if p == "mean" else float(np.percentile(v, float(p[1:])))


# -- the search ---------------------------------------------------------------------------------
class TargetUnreachable(ConfigError):
    """The target cannot be reached inside the encoder's CRF range."""


@dataclass(frozen=True)
class CrfRange:
    lo: float
    hi: float
    fractional: bool  # the encoder takes a fractional CRF (libx264, libx265)
    slope: float  # prior: VMAF points per CRF step near VMAF 90-95 (negative), for the first step
    headroom_slope: float = -0.126  # the prior in the HEADROOM space, for a mean VMAF search (see crf_range)

    def clamp(self, crf: float) -> float:
        c = min(self.hi, max(self.lo, crf))
        return round(c, 2) if self.fractional else float(round(c))


def bracket_width(rng: CrfRange) -> float:
    """The widest bracket a smooth search interpolates across without another probe: a
    tenth of the encoder's CRF range (about 5 on the 0-51 scales, about 6 on the 0-63 ones)."""
    return (rng.hi - rng.lo + 1) / 10


def crf_range(encoder: str) -> CrfRange:
    """The CRF range and step of ``encoder`` (:mod:`vmaf_roi.encoders`)."""
    from .encoders import defaults

    d = defaults(encoder)
    lo, hi = d.quality_range
    # the prior: 0.7 VMAF points a CRF step on the 0-51 scales near VMAF 90-95 (libx264 medium ROI on
    # the corpus clips: 0.4 to 1.0), proportionally less on the 0-63 scales
    # in the headroom space (a mean VMAF search), medians over the nine corpus clips' samples at
    # VMAF 85-97 (benchmarks/bench_curves.py): libx264 medium -0.126 a step (clips -0.096 to -0.218),
    # SVT-AV1 preset 8 -0.045 (-0.036 to -0.085). libx265 and libvpx-vp9 borrow the value of their
    # scale's encoder, unmeasured: the prior only places the second probe
    wide = hi - lo + 1 > 52
    return CrfRange(float(lo), float(hi), d.fractional_crf, -0.7 * 52.0 / max(1.0, hi - lo + 1),
                    -0.045 if wide else -0.126)


@dataclass(frozen=True)
class ProbeScore:
    crf: float
    score: float


@dataclass
class SearchResult:
    crf: float
    predicted: float  # the score the samples predict at ``crf`` (interpolated between probes)
    probes: list[ProbeScore]
    note: str = ""  # e.g. the target was below what the highest CRF gives

    @property
    def probe_count(self) -> int:
        return len(self.probes)


@dataclass(frozen=True)
class ScoreSpace:
    """Where the search draws its lines: ``fwd`` maps a score to a value that rises with it (and
    ``inv`` back). The probes' own scores are still judged against the target as measured."""

    name: str
    fwd: Callable[[float], float]
    inv: Callable[[float], float]


LINEAR = ScoreSpace("linear", lambda v: v, lambda u: u)
# VMAF's headroom, -log(100 - VMAF). A mean VMAF approaches 100 as the CRF falls, and its headroom
# (100 - VMAF) shrinks about exponentially: on the search's samples of the nine corpus clips,
# libx264 medium, VMAF 85-97 (benchmarks/bench_curves.py), this space's slope stayed within about
# 20% of its median on each clip (median -0.126 a CRF step; clips -0.096 to -0.218), where the
# slope in VMAF itself changes threefold between VMAF 85 and 97. Lines drawn here are nearly
# straight, and a step on the prior from one probe lands near the target.
HEADROOM = ScoreSpace("log headroom", lambda v: -math.log(max(100.0 - v, 0.01)), lambda u: 100.0 - math.exp(-u))
# the most the headroom space's slope changes a CRF step (|d2/dc2|), for _line_ok: on the same
# curves at most 0.033 (bikes.mp4, near VMAF 98), 0.010 at the 90th percentile
HEADROOM_CURVATURE = 0.035


def search_crf(measure: Callable[[float], float], target: float, rng: CrfRange, *, start: float | None = None,
               tolerance: float = 0.25, max_probes: int = 6, slope: float | None = None,
               smooth: bool = False, what: str = "VMAF", space: ScoreSpace = LINEAR) -> SearchResult:
    """The CRF at which ``measure`` (falling as the CRF rises) gives ``target``.

    Probes ``start`` (the middle of the range by default), steps by the ``slope`` prior (score per
    CRF step; ``rng.slope`` by default) until the target is bracketed, then interpolates between
    the two bracketing probes (linearly; see ``smooth``); stops when a probe lands within
    ``tolerance`` of the target (that probe's CRF is the result: its score is measured on the
    samples, not interpolated) or after ``max_probes``, or when the bracket is one CRF step wide.
    Then the result's CRF is the interpolation (rounded to 0.01 for an encoder that takes a
    fractional CRF; for one that does not, the whole CRF whose interpolated score is nearest the
    target), ``predicted`` its interpolated score.

    ``smooth``: the score is a smooth function of the CRF, as a mean is (a percentile of few
    frames is a step function). Then inside a bracket the next probe comes from inverse quadratic
    interpolation where there is a third probe (:func:`_inside`), and the search also stops on
    the line between the bracketing probes where :func:`_line_ok` allows it. In :data:`LINEAR`
    that is two probes at most :func:`bracket_width` CRF and ``8 * tolerance`` apart in score: across a bracket this narrow a line is off
    by far less than the samples' own error, and a probe costs a sixth to a third of an encode.
    The score span matters as well as the width: a VMAF curve bends, and with libx264 ultrafast
    at about 2 VMAF a CRF step, 4 steps span 8 points.

    ``space``: where the steps and lines are computed (:data:`HEADROOM` for a mean VMAF, with
    ``slope`` in its units); the probes' scores are still compared with the target as measured.
    In :data:`HEADROOM` a smooth search ends on a line where :func:`_line_ok`'s error bound allows,
    however wide the bracket. Simulated on the nine clips' measured curves at targets 85-96
    (benchmarks/sim_search.py), against the search in VMAF itself: libx264 medium 2.62 probes
    against 3.46, landing 0.075 from the target on average against 0.091 (worst 0.234 against
    0.249); SVT-AV1 preset 8 2.67 against 3.13, 0.136 against 0.133 (whole CRFs: worst 0.344
    against 0.335).

    :class:`TargetUnreachable` when even the lowest CRF of the range scores below the target.
    When even the highest scores above it, that CRF is the result (the fewest bits the encoder
    gives), with a note.
    """
    if not math.isfinite(target):
        raise ConfigError(f"target {what} must be a number, got {target}")
    slope = rng.slope if slope is None else slope
    if not slope < 0:
        raise ValueError("slope must be negative (the score falls as the CRF rises)")
    seen: dict[float, float] = {}
    order: list[ProbeScore] = []

    def probe(c: float) -> float:
        c = rng.clamp(c)
        if c not in seen:
            s = float(measure(c))
            if not math.isfinite(s):
                raise InputError(f"{what} of the samples at CRF {c:g} is not a number (no frame scored?)")
            seen[c] = s
            order.append(ProbeScore(c, s))
        return seen[c]

    step = 0.01 if rng.fractional else 1.0
    gt = space.fwd(target)
    # a step on the prior slope alone goes a little past it in VMAF itself, where the slope
    # changes with the score; in the headroom space the prior holds (no gain from 1.05-1.25)
    overshoot = 1.15 if space is LINEAR else 1.0
    c = rng.clamp(start if start is not None else (rng.lo + rng.hi) / 2)
    for _ in range(max_probes):
        s = probe(c)
        if abs(s - target) <= tolerance:  # a probe's own score: exact on the samples, unlike an interpolation
            return _result(c, seen, target, rng, order, what, tolerance)
        g = {k: space.fwd(v) for k, v in seen.items()}  # the scores where the lines are drawn
        above = sorted((k, v) for k, v in seen.items() if v >= target)  # low CRFs: better than the target
        below = sorted((k, v) for k, v in seen.items() if v < target)
        if above and below:
            ca, sa = max(above)
            cb, sb = min(below)
            if cb <= ca or cb - ca <= step * 1.5:
                break
            if smooth and _line_ok((ca, sa), (cb, sb), target, rng, tolerance, space):
                return _result(None, seen, target, rng, order, what, tolerance, line=True, space=space)
            ga, gb = g[ca], g[cb]
            line = _crossing((ca, ga), (cb, gb), gt) if ga != gb else (ca + cb) / 2
            nxt = _inside(g, (ca, ga), (cb, gb), gt, line) if smooth else line
            nxt = min(max(nxt, ca + step), cb - step)
        elif above:  # every probe above the target: a higher CRF
            ca, sa = max(above)
            if ca >= rng.hi:
                return SearchResult(rng.hi, sa, order, note=f"even the highest CRF ({rng.hi:g}) gives {what} "
                                    f"{sa:.2f}, above the target {target:g}: encoding at CRF {rng.hi:g}")
            m = _slope([(k, g[k]) for k, _ in above[-2:]], slope)
            nxt = ca + (1.0 if m != slope else overshoot) * (g[ca] - gt) / -m  # past it on the prior alone
        else:  # every probe below the target: a lower CRF
            cb, sb = min(below)
            if cb <= rng.lo:
                raise TargetUnreachable(
                    f"{what} {target:g} cannot be reached: even the lowest CRF of the range ({rng.lo:g}) gives "
                    f"{sb:.2f} on the samples; lower the target")
            m = _slope([(k, g[k]) for k, _ in below[:2]], slope)
            nxt = cb - (1.0 if m != slope else overshoot) * (gt - g[cb]) / -m
        c = rng.clamp(nxt)
        if c in seen:  # rounding landed on a probed CRF: one step further the way the search goes
            if above and below:
                break
            c = rng.clamp(c + (step if above else -step))
            if c in seen:
                break
    return _result(None, seen, target, rng, order, what, tolerance, space=space)


def _line_ok(a: tuple[float, float], b: tuple[float, float], target: float, rng: CrfRange,
             tolerance: float, space: ScoreSpace = LINEAR) -> bool:
    """Whether the line between the bracketing probes ``a`` and ``b`` (CRF, score) may end a
    smooth search.

    In :data:`HEADROOM`: where its error at the target's CRF x, at most half the curvature
    bound times (x - a)(b - x), is within ``tolerance`` VMAF. A target near one end of a wide
    bracket is safe; the middle of the same bracket is not. In VMAF itself, whose curves bend
    more: a bracket at most :func:`bracket_width` wide and ``8 * tolerance`` in score."""
    (ca, sa), (cb, sb) = a, b
    if space is HEADROOM:
        x = _crossing((ca, space.fwd(sa)), (cb, space.fwd(sb)), space.fwd(target))
        # a line's error at x is at most half the curvature times (x - ca)(cb - x), here in the
        # headroom space, then in VMAF points at the target
        return 0.5 * HEADROOM_CURVATURE * (x - ca) * (cb - x) * (100.0 - target) <= tolerance
    return cb - ca <= bracket_width(rng) and sa - sb <= 8 * tolerance


def _crossing(a: tuple[float, float], b: tuple[float, float], target: float) -> float:
    """The CRF where the line through ``a`` and ``b`` (CRF, score; scores apart) meets ``target``."""
    (ca, sa), (cb, sb) = a, b
    return ca + (sa - target) * (cb - ca) / (sa - sb)


def _inside(seen: Mapping[float, float], a: tuple[float, float], b: tuple[float, float], target: float,
            line: float) -> float:
    """The next CRF inside the bracket of probes ``a`` and ``b`` (CRF, score): inverse quadratic
    interpolation through those two and the probe next nearest the target, as Brent's method takes
    it, where it lands inside the bracket; else ``line``, the line between the two. A VMAF curve bends (it
    falls faster as the CRF rises), and a line from a far probe creeps towards the target one
    probe at a time (regula falsi): measured with libx264 ultrafast on mjpeg input, probes at
    26.35, 27.65, 28.17 and 28.32 where the bend puts the target near 28.3."""
    rest = [(c, v) for c, v in seen.items() if c not in (a[0], b[0])]
    if not rest:
        return line
    pts = (a, b, min(rest, key=lambda p: abs(p[1] - target)))
    if len({v for _, v in pts}) < 3:
        return line
    x = 0.0
    for i, (ci, si) in enumerate(pts):  # Lagrange, the CRF as a function of the score
        w = 1.0
        for j, (_, sj) in enumerate(pts):
            if j != i:
                w *= (target - sj) / (si - sj)
        x += ci * w
    return x if a[0] < x < b[0] else line


def _slope(points: list[tuple[float, float]], prior: float) -> float:
    """Secant slope of the two probes nearest the target (the prior where it is not negative)."""
    if len(points) == 2:
        (c1, s1), (c2, s2) = points
        if c2 != c1:
            m = (s2 - s1) / (c2 - c1)
            if m < 0:
                return max(m, prior * 4)  # never a step far beyond what the prior would take
    return prior


def _result(hit: float | None, seen: dict[float, float], target: float, rng: CrfRange,
            order: list[ProbeScore], what: str, tolerance: float, line: bool = False,
            space: ScoreSpace = LINEAR) -> SearchResult:
    """The search's result; ``line``: the interpolation between the bracketing probes is trusted
    (see ``smooth``)."""
    if hit is not None:
        return SearchResult(hit, seen[hit], order)
    # a probe within twice the tolerance: its score is measured, where an interpolation between
    # probes of a curve that is not smooth (a percentile of few frames) can be far off
    best = min(seen, key=lambda c: abs(seen[c] - target))
    if not line and abs(seen[best] - target) <= 2 * tolerance:
        return SearchResult(best, seen[best], order)
    pts = sorted(seen.items())
    above = [(k, v) for k, v in pts if v >= target]
    below = [(k, v) for k, v in pts if v < target]
    if not above:  # max_probes ran out below the target
        c, s = pts[0]
        if c <= rng.lo:
            raise TargetUnreachable(f"{what} {target:g} cannot be reached: even the lowest CRF of the range "
                                    f"({rng.lo:g}) gives {s:.2f} on the samples; lower the target")
        return SearchResult(c, s, order, note=f"search stopped below the target (CRF {c:g} gives {s:.2f})")
    if not below:
        c, s = pts[-1]
        return SearchResult(c, s, order, note=f"search stopped above the target (CRF {c:g} gives {s:.2f})")
    ca, sa = max(above)
    cb, sb = min(below)
    if cb - ca <= 0.5:  # probes this close: the nearer one's measured score beats a line between them
        return SearchResult(*(min(((ca, sa), (cb, sb)), key=lambda p: (abs(p[1] - target), -p[1]))), order)

    ga, gb, gt = space.fwd(sa), space.fwd(sb), space.fwd(target)

    def interp(c: float) -> float:
        return space.inv(ga + (gb - ga) * (c - ca) / (cb - ca)) if cb != ca else sa

    x = _crossing((ca, ga), (cb, gb), gt) if ga != gb else ca
    if rng.fractional:
        c = rng.clamp(x)
        return SearchResult(c, seen.get(c, interp(c)), order)
    cands = {rng.clamp(math.floor(x)), rng.clamp(math.ceil(x))}
    best = min(cands, key=lambda c: (abs(seen.get(c, interp(c)) - target), c))
    return SearchResult(best, seen.get(best, interp(best)), order)


# -- samples --------------------------------------------------------------------------------------
@dataclass
class SampleSet:
    """The probes' input: ``path`` (lossless: :func:`sample_codec`) holds the frames ``ranges``
    (start, count) of the input in order (``whole``: all of them)."""

    path: Path
    frames: int  # frames in the samples
    total_frames: int  # frames in the input
    ranges: list[tuple[int, int]]
    scenes: int  # scenes the scan found (scene cuts + 1)
    whole: bool
    seconds: float  # time to scan and cut
    rate: float = 0.0
    cut: bool = True  # ``path`` is the lossless cut (False: the input itself, for --maps)
    pad: int = 0  # frames after each sample's scored frames: encoded, not scored (see make_samples)
    window: int = 0  # frames planned for each window, its pad included
    source: Scan | None = field(default=None, repr=False, compare=False)  # the input's scan (more_samples)

    @property
    def scored(self) -> int:
        """Frames scored: the samples without their pads."""
        return sum(c - self.pad for _, c in self.ranges)

    def scored_ranges(self) -> list[tuple[int, int]] | None:
        """(first, count) of each sample's scored frames in ``path`` (None: all of them)."""
        if not self.pad:
            return None
        out, i = [], 0
        for _, c in self.ranges:
            out.append((i, c - self.pad))
            i += c
        return out

    def select(self, values: Sequence[float]) -> list[float]:
        """The per-frame values of the scored frames (each sample's pad left out)."""
        if not self.pad:
            return list(values)
        out: list[float] = []
        i = 0
        for _, c in self.ranges:
            out.extend(values[i:i + c - self.pad])
            i += c
        return out

    def describe(self) -> str:
        if self.whole:
            return f"the whole input ({self.total_frames} frames; a short input is its own sample)"
        pct = 100.0 * self.frames / max(1, self.total_frames)
        pad = f" + {self.pad} encoded after each, not scored" if self.pad else ""
        return (f"{len(self.ranges)} samples of {self.ranges[0][1] - self.pad} frames{pad} ({self.frames} of "
                f"{self.total_frames} frames, {pct:.0f}%) spread over {self.scenes} scene(s)")

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "total_frames": self.total_frames, "ranges": [list(r) for r in self.ranges],
                "scenes": self.scenes, "whole": self.whole, "pad": self.pad,
                "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class Scan:
    frames: int
    times: list[float]  # each frame's time in the input (s)
    cuts: list[int]  # frame indices that start a scene (0 excluded)
    rate: float


def scan(path: str | Path, *, scene_threshold: float = 12.0, progress: ProgressFactory = no_progress,
         decode: bool = False) -> Scan:
    """Frame count, frame times and scene cuts of ``path``, for placing the samples.

    By default from the packets alone (:func:`scan_packets`: no decode; the encoder's keyframes
    stand in for the scene cuts), else, and where the packets' timestamps cannot be trusted, from
    one decode: the scene cuts are then the map schedule's (mean absolute difference of 64x36
    luma thumbnails above ``scene_threshold``). The samples are decoded either way, and their
    scores are what the search measures: the scan only places them."""
    if not decode:
        sc = scan_packets(path, progress=progress)
        if sc is not None:
            return sc
    return _scan_decode(path, scene_threshold=scene_threshold, progress=progress)


def scan_packets(path: str | Path, *, progress: ProgressFactory = no_progress) -> Scan | None:
    """:class:`Scan` from the video packets' timestamps and keyframe flags, without decoding
    (about a hundredth of a decode's CPU). Keyframes after the first are the scene cuts:
    x264, x265, SVT-AV1 and libvpx place keyframes at scene changes by default; an intra-only
    stream (every packet a keyframe) has none. None where the timestamps cannot place frames:
    a packet without pts, two with the same pts, or no packets (the decode scan then decides,
    with the same timestamp repairs as the encode's decode)."""
    import av

    stamps: list[tuple[int, bool]] = []
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return None
            st = c.streams.video[0]
            bar = progress(st.frames or None, "scan")
            try:
                for pkt in c.demux(st):
                    if pkt.size == 0 or pkt.is_discard:
                        continue
                    if pkt.pts is None:
                        return None
                    stamps.append((int(pkt.pts), bool(pkt.is_keyframe)))
                    bar.update(1)
            finally:
                bar.close()
            tb = st.time_base
            rate = float(st.average_rate or st.guessed_rate or 0) or 25.0
    except (av.FFmpegError, OSError):
        return None
    if not stamps:
        return None
    stamps.sort()
    pts = [p for p, _ in stamps]
    if any(a == b for a, b in zip(pts, pts[1:])):
        return None
    keys = [i for i, (_, k) in enumerate(stamps) if k and i > 0]
    cuts = [] if len(keys) + 1 >= len(stamps) else keys
    return Scan(len(stamps), [float(p * tb) for p in pts], cuts, rate)


def _scan_decode(path: str | Path, *, scene_threshold: float = 12.0, progress: ProgressFactory = no_progress) -> Scan:
    """One decode of ``path``: frame count, frame times and scene cuts."""
    from .decode import VideoSource
    from .pipeline import thumbnail, thumb_diff

    times: list[float] = []
    cuts: list[int] = []
    prev = None
    with VideoSource(path) as src:
        bar = progress(src.estimated_frames(), "scan")
        try:
            for i, frame in enumerate(src.frames()):
                times.append(float(frame.pts * Fraction(frame.time_base or src.time_base)))
                th = thumbnail(frame)
                if prev is not None and thumb_diff(th, prev) > scene_threshold:
                    cuts.append(i)
                prev = th
                bar.update(1)
        finally:
            bar.close()
        rate = float(src.rate) if src.rate else 25.0
    if not times:
        raise InputError(f"{path}: no video frames could be decoded")
    return Scan(len(times), times, cuts, rate)


# After each sample, encoded and not scored (make_samples): 1 s, and at least 20 frames (half of
# x264 medium's rc-lookahead). Measured (ROI, libx264 medium): the samples' mean VMAF against the
# whole encode's at the same CRF, 2 s samples: vtest.avi (10 fps) -1.03 without a pad, -0.61 with
# 10 frames, -0.36 with 20; the joined 88 s clip (25 fps) -0.66 without, -0.07 with 25 frames.
PAD_SECONDS = 1.0
PAD_MIN_FRAMES = 20


def sample_frames(rate: float, sample_seconds: float = 2.0, pad_seconds: float = PAD_SECONDS) -> tuple[int, int]:
    """(scored frames, pad frames) of each window at frame rate ``rate``: ``sample_seconds`` (at
    least 8 frames), then ``pad_seconds`` encoded and not scored (at least PAD_MIN_FRAMES; none
    with ``pad_seconds`` 0)."""
    pad = max(PAD_MIN_FRAMES, int(round(pad_seconds * rate))) if pad_seconds > 0 else 0
    return max(8, int(round(sample_seconds * rate))), pad


def plan_samples(frames: int, cuts: Sequence[int], length: int, count: int, *,
                 centre: Callable[[float, float], float] | None = None) -> list[tuple[int, int]]:
    """``count`` windows of ``length`` frames spread evenly over ``frames`` (one in each of
    ``count`` equal parts, at its middle, or where ``centre(first, end)`` of the part says), each
    moved to start or end at a scene cut that falls inside it, so that the samples' scene changes
    are the input's own; never overlapping."""
    out: list[tuple[int, int]] = []
    prev_end = 0
    for k in range(count):
        mid = centre(k * frames / count, (k + 1) * frames / count) if centre else (k + 0.5) * frames / count
        s = int(round(mid - length / 2))
        inside = [c for c in cuts if s < c < s + length]
        if inside:
            c = inside[0]
            s = c if c - s < length / 2 else c - length
        s = min(max(s, prev_end, 0), frames - length)
        if s < prev_end:
            break
        out.append((s, length))
        prev_end = s + length
    return out


def make_samples(input_path: str | Path, workdir: str | Path, *, sample_seconds: float = 2.0,
                 fraction: float = 0.1, count: int | None = None, scene_threshold: float = 12.0,
                 pad_seconds: float = PAD_SECONDS,
                 progress: ProgressFactory = no_progress, on_event: EventSink = discard,
                 whole: bool = False) -> SampleSet:
    """The probes' input: frame times and scene cuts from :func:`scan`, then about ``fraction``
    of the frames in windows of ``sample_seconds`` (at least 3 of them, or ``count``) cut
    losslessly into one file in ``workdir`` (:func:`sample_codec`). Each window is followed by
    ``pad_seconds`` of the input's next frames, encoded but not scored: without them a sample's
    last frames are the end of a stream, where the
    encoder's lookahead (x264's mbtree) has no future to spend bits for, and the samples score
    below the same frames of the whole encode (measured on vtest.avi, CRF 27.4: -0.5 to -1.2 VMAF
    in the last quarter of each 2-4 s sample). An input whose samples would be half of it or more
    is used whole, and so is any input with ``whole`` (a map file of the input's frames: ``--maps``)."""
    t0 = time.perf_counter()
    input_path = Path(input_path)
    sc = scan(input_path, scene_threshold=scene_threshold, progress=progress)
    length, pad = sample_frames(sc.rate, sample_seconds, pad_seconds)
    total = length + pad
    # about `fraction` of the input encoded per probe, pads included
    n = count if count is not None else min(20, max(3, int(round(fraction * sc.frames / total))))
    ranges = plan_samples(sc.frames, sc.cuts, total, n) if n * total * 2 <= sc.frames and not whole else []
    out = Path(workdir) / (input_path.stem + ".samples.mkv")
    if whole:  # the input as it is: a map file pairs with its frames and timestamps
        return SampleSet(input_path, sc.frames, sc.frames, [(0, sc.frames)], len(sc.cuts) + 1, True,
                         time.perf_counter() - t0, sc.rate, cut=False)
    if not ranges:  # the whole input, still cut losslessly: the frames the decode stage gives, clean timestamps
        # (their count, not the packets': a packet that does not decode, as box.mp4's first, is no frame)
        frames = sum(_cut_ranges(input_path, out, [(0.0, sc.frames)], sc.rate, progress))
        return SampleSet(out, frames, frames, [(0, frames)], len(sc.cuts) + 1, True,
                         time.perf_counter() - t0, sc.rate)
    return _cut_set(input_path, out, sc, ranges, pad, t0, progress, on_event)


def _cut_set(input_path: Path, out: Path, sc: Scan, ranges: list[tuple[int, int]], pad: int, t0: float,
             progress: ProgressFactory, on_event: EventSink) -> SampleSet:
    """The windows ``ranges`` of the input cut into ``out``, as a SampleSet."""
    window = ranges[0][1]
    counts = _cut_ranges(input_path, out, [(sc.times[s], c) for s, c in ranges], sc.rate, progress)
    if counts != [c for _, c in ranges]:
        on_event(Status(f"samples: {sum(counts)} frames cut where {sum(c for _, c in ranges)} were planned",
                        stage="search", level="note"))
        ranges = [(s, k) for (s, _), k in zip(ranges, counts)]
        if min(counts) <= pad:  # a window without its scored frames: score every frame cut
            pad = 0
    return SampleSet(out, sum(counts), sc.frames, ranges, len(sc.cuts) + 1, False, time.perf_counter() - t0,
                     sc.rate, pad=pad, window=window, source=sc)


def more_windows(frames: int, cuts: Sequence[int], length: int,
                 taken: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """:func:`more_samples`' windows: every other window (the first, third, ...) of
    :func:`plan_samples` with twice as many parts as ``taken`` has windows, less those that
    overlap one of ``taken``."""
    planned = plan_samples(frames, cuts, length, 2 * len(taken))[0::2]
    return [(s, c) for s, c in planned if all(s + c <= a or a + n <= s for a, n in taken)]


def more_samples(ss: SampleSet, input_path: str | Path, workdir: str | Path, *,
                 progress: ProgressFactory = no_progress, on_event: EventSink = discard) -> SampleSet | None:
    """A second look for a search whose samples disagree (:func:`target_vmaf`): as many new
    windows as ``ss`` has, cut into a file of their own. They are every other window of a plan
    of twice as many equal parts (:func:`plan_samples`), the first, third, ...: each one in the
    half of a part that ``ss``'s window in the middle leaves out, the left half (less any window
    that would overlap one of ``ss``'s). None where ``ss`` is no cut of windows or no new window fits.

    Measured on the whole encodes of the long clips (benchmarks/sample_placement.py: 300 excerpts
    of 60 s or more each, libx264 CRF 23 and SVT-AV1 preset 8 CRF 35; vtest.avi, joined,
    joined2): the mean |error| of the windows' frames against the whole fell from 0.11-0.43 VMAF
    with three windows to 0.09-0.30 with these six, the worst from 0.37-1.46 to 0.26-1.25. All six
    windows of the finer plan were tried too: the second look's probe then costs twice as much,
    and the search on joined2 cost 0.63 of an encode (SVT-AV1 ROI), over the 0.6 it may."""
    sc = ss.source
    if ss.whole or not ss.cut or sc is None or not ss.window:
        return None
    t0 = time.perf_counter()
    new = more_windows(sc.frames, sc.cuts, ss.window, ss.ranges)
    if not new:
        return None
    out = Path(workdir) / (Path(input_path).stem + ".samples2.mkv")
    return _cut_set(Path(input_path), out, sc, new, ss.pad, t0, progress, on_event)


# pixel formats whose samples are lossless H.264 (libx264 at QP 0: High 4:4:4 Predictive, the
# decoded frames bit-identical to the input's); FFV1 for the rest. Both are lossless; H.264 decodes
# about 7x faster (0.21 against 1.41 CPU-s for 120 frames at 768x576, one thread), and every probe
# decodes its samples twice (the encode, libvmaf's reference)
_H264_LOSSLESS = ("yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le", "yuv444p10le")

# Uncompressed samples (rawvideo in Matroska: no decode at all) where they fit: 8-bit formats that
# Matroska stores as raw video (it refuses 4:4:4, 10-bit and RGB there), at most RAW_SAMPLE_BYTES
# and an eighth of the free space where they are written (batch jobs may search side by side).
# Measured on vtest.avi (768x576, 120 sample frames, SVT-AV1 preset 8 probes): the cut 0.41 ->
# 0.20 CPU-s, each probe's encode 1.68 -> 1.52 and its libvmaf pass 0.97 -> 0.76, for 75 MiB on
# disk instead of 9. Marked left-sited, as the H.264 samples decode: the chroma siting reaches
# the model's input (swscale), and an ROI probe of raw samples is then the H.264 samples' probe
# byte for byte.
_RAW = ("yuv420p", "yuv422p", "gray")
RAW_SAMPLE_BYTES = 1 << 30


def frame_bytes(fmt: str, width: int, height: int) -> int:
    """Bytes of one ``fmt`` picture without row padding (its planes' pixels)."""
    import av

    f = av.VideoFormat(fmt, width, height)
    bits = sum(c.bits for c in f.components) / max(1, len(f.components))
    return int(math.ceil(sum(c.width * c.height for c in f.components) * bits / 8))


def sample_codec(fmt: str, width: int, height: int, *, frames: int = 0,
                 room: int | None = None) -> tuple[str, str, dict[str, str]]:
    """(codec, pixel format, options) of the lossless samples of ``frames`` pictures of ``width`` x
    ``height`` in pixel format ``fmt`` (full-range formats as their planar twin, the range kept by
    the stream's colour range). Uncompressed (rawvideo) where the format allows it and the
    samples take at most :data:`RAW_SAMPLE_BYTES` and ``room`` bytes; else libx264 at QP 0 where
    it takes the format and the size (x264 refuses 4:2:0 with an odd width or height, 4:2:2 with
    an odd width); else FFV1 (its nearest format)."""
    import av

    from .decode import _FFV1_AS, chroma_shifts, ffv1_options

    planar = _FFV1_AS.get(fmt, fmt)
    limit = RAW_SAMPLE_BYTES if room is None else min(RAW_SAMPLE_BYTES, room)
    if frames and planar in _RAW and frames * frame_bytes(planar, width, height) <= limit:
        return "rawvideo", planar, {"chroma_sample_location": "left"}
    hs, vs = chroma_shifts(planar)
    odd = width % (1 << hs) or height % (1 << vs)  # a size the chroma planes do not divide
    if planar in _H264_LOSSLESS and not odd and "libx264" in av.codecs_available and \
            planar in {f.name for f in av.codec.Codec("libx264", "w").video_formats}:
        return "libx264", planar, {"qp": "0", "preset": "ultrafast", "threads": "auto"}
    ok = {f.name for f in av.codec.Codec("ffv1", "w").video_formats}
    target = fmt if fmt in ok else _FFV1_AS.get(fmt, "yuv444p")
    return "ffv1", target, ffv1_options(target, width, height)


def _cut_ranges(path: Path, out: Path, windows: list[tuple[float, int]], rate: float,
                progress: ProgressFactory) -> list[int]:
    """The frames of each window (start time, frame count) of ``path``, decoded from the keyframe
    before it (a seek; none for a window at 0), written one after the other losslessly
    (:func:`sample_codec`) with their own timestamps (each window shifted to follow the one before
    by a frame interval): a variable frame rate is kept, and encoders whose rate control weighs
    frame durations (x264's mbtree) see the durations they will see in the whole input. Returns
    the frames written of each window (fewer than asked where the input ends or does not decode)."""
    import av

    from .decode import VideoSource

    tb = Fraction(1, 1000)
    step = 1 / Fraction(rate).limit_denominator(100000)
    base = Fraction(0)  # where the next window starts in the output (s)
    counts: list[int] = []
    bar = progress(sum(c for _, c in windows), "cut samples")
    try:
        with av.open(str(out), "w", format="matroska") as dst:
            ostream = None
            for t, count in windows:
                half = 0.5 / rate
                first: Fraction | None = None
                rel = Fraction(0)
                counts.append(0)
                with VideoSource(path, start=max(0.0, t - half) or None, max_frames=count) as src:
                    for frame in src.frames():
                        ft = frame.pts * Fraction(frame.time_base or src.time_base)
                        if first is None:
                            first = ft
                        rel = ft - first
                        if ostream is None:
                            codec, target, options = sample_codec(
                                frame.format.name, frame.width, frame.height,
                                frames=sum(c for _, c in windows), room=shutil.disk_usage(out.parent).free // 8)
                            ostream = dst.add_stream(codec, rate=Fraction(rate).limit_denominator(100000))
                            ostream.width, ostream.height, ostream.pix_fmt = frame.width, frame.height, target
                            ostream.time_base = tb
                            ostream.codec_context.time_base = tb
                            ostream.options = options
                            if frame.color_range:
                                ostream.codec_context.color_range = frame.color_range
                        if frame.format.name != ostream.pix_fmt:
                            full = frame.format.name.startswith("yuvj")
                            rng = "JPEG" if full else None
                            frame = frame.reformat(format=ostream.pix_fmt, src_color_range=rng, dst_color_range=rng)
                        frame.pts = int(round((base + rel) / tb))
                        frame.time_base = tb
                        for pkt in ostream.encode(frame):
                            dst.mux(pkt)
                        counts[-1] += 1
                        bar.update(1)
                base += rel + step
            if ostream is not None:
                for pkt in ostream.encode(None):
                    dst.mux(pkt)
    finally:
        bar.close()
    return counts


def sub_gaze(rec, ranges: Sequence[tuple[int, int]]):
    """The gaze recording of the samples: fixations of the frames in ``ranges``, renumbered as
    the sample file's frames."""
    from .gaze import GazeRecording

    f = np.asarray(rec.frame)
    new = np.full(f.shape, -1, dtype=np.int64)
    base = 0
    for s, c in ranges:
        sel = (f >= s) & (f < s + c)
        new[sel] = f[sel] - s + base
        base += c
    keep = new >= 0
    return GazeRecording(rec.width, rec.height, new[keep], np.asarray(rec.x)[keep], np.asarray(rec.y)[keep],
                         np.asarray(rec.viewer)[keep], tuple(rec.viewer_names), source=rec.source)


# -- results ------------------------------------------------------------------------------------
@dataclass
class Probe:
    """One probe: the samples encoded at ``crf`` and scored."""

    crf: float
    mode: str  # plain | roi
    bitrate: float  # bit/s of the samples' video
    scores: dict[str, float]  # pooled scores of the samples (vmaf, and attention/ewpsnr for save-against)
    seconds: float
    windows: list[float] = field(default_factory=list)  # --target-vmaf, mean pooling: each sample's mean VMAF
    more: bool = False  # a probe of more_samples' windows (the search's second look)


@dataclass
class TargetResult:
    input: str
    output: str
    encoder: str
    roi: bool
    target: float
    pool: str
    crf: float
    predicted: float
    measured: float | None  # the final encode's VMAF, pooled the same way (None: not measured)
    probes: list[Probe]
    samples: dict[str, Any]
    encode: dict[str, Any]
    search_seconds: float
    encode_seconds: float
    measure_seconds: float
    cached: bool = False
    notes: list[str] = field(default_factory=list)
    # the standard error of the prediction from how the samples disagree (:func:`window_error`);
    # None: one sample, the whole input, a percentile pool or a cached search
    sample_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mode"] = "target-vmaf"
        return d


@dataclass
class SaveResult:
    input: str
    output: str
    encoder: str
    against_crf: float
    guard: float
    weights: str  # "gaze FILE" | "model MODEL"
    independent: bool  # the weights are not the encoder's own maps
    crf: float  # the ROI encode's CRF
    bound_by: str  # "attention" | "vmaf guard": which condition set the CRF
    predicted: dict[str, float]  # on the samples: plain and roi attention PSNR, VMAF, bitrates
    measured: dict[str, float]  # on the whole input: the same for the final ROI encode and a plain encode
    probes: list[Probe]
    samples: dict[str, Any]
    encode: dict[str, Any]
    search_seconds: float
    encode_seconds: float
    measure_seconds: float
    cached: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def saving(self) -> float:
        """Bitrate change of the ROI encode against the plain one (%; negative = fewer bits)."""
        p, r = self.measured.get("plain_bitrate"), self.measured.get("roi_bitrate")
        return 100.0 * (r / p - 1) if p and r else float("nan")

    def summary(self) -> str:
        m = self.measured
        return (f"ROI: {m['roi_bitrate'] / 1000:.0f} kb/s vs plain {m['plain_bitrate'] / 1000:.0f} kb/s "
                f"({self.saving:+.1f}%) at equal quality where viewers look; full-frame VMAF "
                f"{m['roi_vmaf']:.1f} vs {m['plain_vmaf']:.1f}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(mode="save-against", saving=self.saving, summary=self.summary())
        return d


# -- the cache ------------------------------------------------------------------------------------
class SearchCache:
    """Search results (the chosen CRF and what the samples predicted) as small JSON files in
    ``directory``, one per input content + config + target (:func:`search_key`)."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    def get(self, key: str) -> dict[str, Any] | None:
        p = self.dir / f"{key}.json"
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        return d if isinstance(d, dict) and d.get("key") == key and "crf" in d else None

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        from .output import write_text

        self.dir.mkdir(parents=True, exist_ok=True)
        write_text(self.dir / f"{key}.json", json.dumps({**record, "key": key}, indent=1, default=str) + "\n")


def search_key(input_path: str | Path, cfg: Mapping[str, Any], plain: bool, spec: Mapping[str, Any]) -> str:
    """Cache key: the input's sha256, the encode config (its rate control left out: the search
    sets it), plain or ROI, and the search spec (mode, target, pool, guard, gaze file's sha256)."""
    from .registry import sha256_file

    c = copy.deepcopy(dict(cfg))
    c.pop("rate_control", None)
    s = dict(spec)
    if s.get("gaze"):
        s["gaze"] = sha256_file(Path(s["gaze"]))
    blob = json.dumps({"input": sha256_file(Path(input_path)), "cfg": c, "plain": plain, "spec": s},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# -- probes --------------------------------------------------------------------------------------
def _crf_cfg(cfg: Mapping[str, Any], crf: float, *, drop_audio: bool = False) -> dict[str, Any]:
    c = copy.deepcopy(dict(cfg))
    c["rate_control"] = {"mode": "crf", "value": int(crf) if float(crf).is_integer() else float(crf),
                         "two_pass": False}
    if drop_audio:
        c["audio"] = "drop"
    return c


def _check_cfg(cfg: Mapping[str, Any]) -> Any:
    from . import config as config_mod

    if cfg.get("filters"):
        raise ConfigError("the search scores encodes against the input, so a filters chain (which changes the "
                          "frames) cannot be used; apply it first (ffmpeg, or vmaf-roi encode --plain losslessly)")
    enc = cfg["encoder"]
    if enc.endswith("_nvenc"):
        raise ConfigError(f"{enc}: the search needs a CRF-like scale (libx264, libx265, libsvtav1, libvpx-vp9)")
    return config_mod.typed(_crf_cfg(cfg, crf_range(enc).clamp(config_mod.encoder_defaults(enc).quality)))


class _Prober:
    """Encodes the samples at a CRF (plain or ROI) and scores them with ``score_many``."""

    def __init__(self, samples: SampleSet, cfg: Mapping[str, Any], workdir: Path, *, model_dir, maps, progress,
                 on_event: EventSink, vmaf_model: str, ffmpeg: str | None) -> None:
        from .encode import SaliencyTrack

        self.samples, self.cfg, self.workdir = samples, cfg, workdir
        self.model_dir, self.maps, self.progress, self.on_event = model_dir, maps, progress, on_event
        self.vmaf_model, self.ffmpeg = vmaf_model, ffmpeg
        self.track = SaliencyTrack()
        self.probes: list[Probe] = []
        self.n = 0

    def encode(self, crf: float, mode: str):
        from .encode import encode

        self.n += 1
        out = self.workdir / f"probe{self.n}.{mode}.mkv"
        label = f"probe {self.n}: crf {crf:g} {mode}"
        self.on_event(Status(f"{label}: encoding {self.samples.frames} sample frames", stage="search"))
        res = encode(self.samples.path, out, _crf_cfg(self.cfg, crf, drop_audio=True), plain=mode == "plain",
                     track=None if mode == "plain" else self.track, maps=None if mode == "plain" else self.maps,
                     model_dir=self.model_dir, progress=lambda total, _d: self.progress(total, f"{label} encode"),
                     on_event=self._note)
        return res

    def _note(self, m: str) -> None:
        if not m.startswith(f"{self.samples.path.name}:") or not self.samples.cut:  # not about our own cut
            self.on_event(Status(m, stage="search", level="note"))

    def score(self, encodes: list[Any], label: str, *, weights: bool = False, gaze=None) -> list[Any]:
        from .score import score_many

        return score_many(self.samples.path, [r.output for r in encodes], vmaf_model=self.vmaf_model,
                          ffmpeg=self.ffmpeg, saliency=self.track.maps if weights else None,
                          saliency_label=f"encoder's maps ({self.track.model})" if weights else None,
                          gaze=gaze, progress=lambda total, _d: self.progress(total, f"{label} score"))

    def vmaf(self, encoded: Any) -> list[float]:
        """Per-frame VMAF of a probe: libvmaf alone, ffmpeg decoding both files (the lossless samples
        and their encode have clean timestamps); the same ffmpeg, libvmaf and model as ``score``."""
        from .vmaf import find_ffmpeg, vmaf_only

        self.on_event(Status(f"probe {self.n}: VMAF of {self.samples.scored} sample frames", stage="search"))
        if not self.samples.cut:  # the input itself: score's own decode and frame pairing
            return self.score([encoded], f"probe {self.n}")[0].per_frame["vmaf"]
        bar = self.progress(1, f"probe {self.n}: vmaf")
        try:
            v = vmaf_only(find_ffmpeg(self.ffmpeg), self.samples.path, encoded.output, model=self.vmaf_model,
                          ranges=self.samples.scored_ranges())
            bar.update(1)
        finally:
            bar.close()
        if len(v) != self.samples.scored:
            raise InputError(f"libvmaf scored {len(v)} frames of a probe, the samples have {self.samples.scored}")
        return v

    def record(self, crf: float, mode: str, res: Any, scores: dict[str, float], t0: float) -> Probe:
        p = Probe(crf, mode, res.video_bitrate, scores, time.perf_counter() - t0)
        self.probes.append(p)
        return p


def _score_text(scores: Mapping[str, float]) -> str:
    names = {"vmaf": "VMAF", "attention": "attention PSNR", "ewpsnr": "EWPSNR"}
    return ", ".join(f"{names.get(k, k)} {v:.2f}" for k, v in scores.items())


# -- target VMAF -----------------------------------------------------------------------------------

def _samples(input_path: Path, d: str, typed, maps, *, sample_seconds, sample_fraction, samples, progress,
             on_event):
    """The probes' samples (the whole input with --maps: the maps are its frames'), announced."""
    ss = make_samples(input_path, d, sample_seconds=sample_seconds, fraction=sample_fraction, count=samples,
                      scene_threshold=typed.saliency.scene_threshold, progress=progress, on_event=on_event,
                      whole=maps is not None)
    if maps is not None:
        on_event(Status(f"--maps {maps}: the probes encode the whole input (the maps are its frames')",
                        stage="search", level="note"))
    on_event(Status(f"samples: {ss.describe()}", stage="search"))
    return ss

def target_vmaf(input_path: str | Path, output_path: str | Path, cfg: Mapping[str, Any], *, target: float,
                pool: str = "mean", plain: bool = False, maps: str | Path | None = None,
                model_dir: Path | None = None, overwrite: bool = True, progress: ProgressFactory = no_progress,
                on_event: EventSink = discard, vmaf_model: str | None = None, ffmpeg: str | None = None,
                sample_seconds: float = 2.0, sample_fraction: float = 0.1, samples: int | None = None,
                tolerance: float = 0.25, max_probes: int = 6, measure: bool = True,
                cached: Mapping[str, Any] | None = None) -> TargetResult:
    """Search the CRF whose encode of ``input_path`` scores ``target`` VMAF (pooled by ``pool``)
    on samples of it, encode the whole input once at that CRF to ``output_path``, and (``measure``)
    score the result. ``cached``: an earlier search's record (``crf``, ``predicted``): no search."""
    from .encode import encode
    from .output import check_outputs
    from .vmaf import DEFAULT_MODEL, find_ffmpeg

    vmaf_model = vmaf_model or DEFAULT_MODEL
    pool = check_pool(pool)
    if not (math.isfinite(target) and 0 < target <= 100):
        raise ConfigError(f"--target-vmaf {target:g}: expected a VMAF score above 0 and at most 100")
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise InputError(f"{input_path}: no such file" if not input_path.exists() else f"{input_path}: not a file")
    check_outputs([output_path], [input_path, maps], overwrite=overwrite)
    typed = _check_cfg(cfg)
    from .encode import check_encoder, check_external

    check_encoder(typed.encoder.name, plain)
    find_ffmpeg(ffmpeg)
    if cached is None:
        check_external(typed.encoder.name, plain, input_path)
    rng = crf_range(typed.encoder.name)
    notes: list[str] = []
    t0 = time.perf_counter()
    probes: list[Probe] = []
    sample_info: dict[str, Any] = {}
    reuse = None  # the probes' maps, when the samples are the whole input (same frames, same maps)
    sample_error: float | None = None
    with tempfile.TemporaryDirectory(prefix="vmaf-roi-search-") as d:
        if cached is not None:
            crf, predicted = float(cached["crf"]), float(cached["predicted"])
            on_event(Status(f"search cached: CRF {crf:g} (samples predicted {pool} VMAF {predicted:.2f})",
                            stage="search"))
            sample_info = dict(cached.get("samples") or {})
        else:
            ss = _samples(input_path, d, typed, maps, sample_seconds=sample_seconds, sample_fraction=sample_fraction,
                          samples=samples, progress=progress, on_event=on_event)
            sample_info = ss.to_dict()
            pr = _Prober(ss, cfg, Path(d), model_dir=model_dir, maps=maps, progress=progress, on_event=on_event,
                         vmaf_model=vmaf_model, ffmpeg=ffmpeg)
            mode = "plain" if plain else "roi"

            def probe_with(p_: _Prober, crf: float) -> float:
                t1 = time.perf_counter()
                res = p_.encode(crf, mode)
                frames = p_.vmaf(res)  # the scored frames only
                v = pooled(frames, pool)
                p = p_.record(crf, mode, res, {"vmaf": v}, t1)
                if pool == "mean" and not p_.samples.whole:
                    p.windows = window_error(frames, [c - p_.samples.pad for _, c in p_.samples.ranges])[0]
                p.more = p_ is not pr
                res.output.unlink(missing_ok=True)
                on_event(Status(f"probe {p_.n}: crf {crf:g} -> {pool} VMAF {v:.2f}, "
                                f"{p.bitrate / 1000:.0f} kb/s on the samples", stage="search"))
                return v

            start = rng.clamp(config_default(typed.encoder.name))
            mean = pool == "mean"
            sr = search_crf(lambda c: probe_with(pr, c), target, rng, start=start, tolerance=tolerance,
                            max_probes=max_probes, smooth=mean, space=HEADROOM if mean else LINEAR,
                            slope=rng.headroom_slope if mean else None)
            crf, predicted = sr.crf, sr.predicted
            windows, at = _all_windows(pr.probes, crf)
            sample_error = standard_error(windows)
            if mean and samples is None and sample_error is not None and sample_error > SAMPLE_ERROR_NOTE \
                    and not sr.note and (len(pr.probes) + 1) * ss.frames <= LOOK_BUDGET * ss.total_frames:
                # a second look, from more windows: about ss.frames more to encode
                ss2 = more_samples(ss, input_path, d, progress=progress, on_event=on_event)
                if ss2 is not None:
                    on_event(Status(f"the samples disagree (standard error {sample_error:.2f}): "
                                    f"{ss2.describe()} more, probed at CRF {crf:g}", stage="search"))
                    pr2 = _Prober(ss2, cfg, Path(d), model_dir=model_dir, maps=maps, progress=progress,
                                  on_event=on_event, vmaf_model=vmaf_model, ffmpeg=ffmpeg)
                    pr2.n, pr2.probes = pr.n, pr.probes  # one count, one list
                    more = probe_with(pr2, crf)
                    pr.n = pr2.n
                    c0, p0 = crf, predicted
                    sr, both = _second_look(sr, more, ss.scored, ss2.scored, target, rng, tolerance=tolerance)
                    crf, predicted = sr.crf, sr.predicted
                    note = (f"second look: the {len(ss2.ranges)} new samples score {more:.2f} at CRF {c0:g}, where "
                            f"the first {len(ss.ranges)} predicted {p0:.2f}; all {len(ss.ranges) + len(ss2.ranges)} "
                            f"together {both:.2f}")
                    if crf != c0:
                        note += (f"; the first samples' curve moved by the difference gives CRF {crf:g}, predicted "
                                 f"{predicted:.2f} ({_reached(crf, [q.crf for q in pr.probes if not q.more])})")
                    notes.append(note)
                    on_event(Status(note, stage="search", level="note"))
                    sample_info["more"] = ss2.to_dict()
                    windows, at = _all_windows(pr.probes, crf)
                    sample_error = standard_error(windows)
            probes = pr.probes
            if ss.whole and ss.cut and pr.track.maps:
                reuse = pr.track
            if sr.note:
                notes.append(sr.note)
                on_event(Status(sr.note, stage="search", level="note"))
            if sample_error is not None and sample_error > SAMPLE_ERROR_NOTE:
                note = (f"the {len(windows)} samples disagree (mean VMAF "
                        f"{' / '.join(f'{w:.1f}' for w in windows)} at CRF "
                        f"{' and '.join(f'{c:g}' for c in sorted(set(at)))}): the prediction "
                        f"has a standard error of {sample_error:.2f}; --samples {min(20, 3 * len(windows))} "
                        f"samples more of the input, each probe costing more")
                notes.append(note)
                on_event(Status(note, stage="search", level="note"))
        search_s = time.perf_counter() - t0
        on_event(Status(f"encode: CRF {crf:g} (predicted {pool} VMAF {predicted:.2f}) -> {output_path}",
                        stage="encode"))
        t1 = time.perf_counter()
        track = None
        if not plain:
            from .encode import SaliencyTrack

            # the whole input's own maps from the probes: the model is not run again, and the final
            # encode is the probes' encode (the model's maps can differ by a rounding step between
            # runs, so a second run could plan a block the other way)
            track = reuse if reuse is not None else SaliencyTrack()
        res = encode(input_path, output_path, _crf_cfg(cfg, crf), plain=plain, maps=maps, track=track,
                     model_dir=model_dir, overwrite=overwrite, progress=lambda total, _d: progress(total, "encode"),
                     on_event=lambda m: on_event(Status(m, stage="encode", level="note")))
        enc_s = time.perf_counter() - t1
        measured = None
        t2 = time.perf_counter()
        if measure:
            from .score import score_many

            on_event(Status(f"measure: VMAF of {output_path} against {input_path}", stage="measure"))
            sc = score_many(input_path, [output_path], vmaf_model=vmaf_model, ffmpeg=ffmpeg,
                            progress=lambda total, _d: progress(total, "measure"))[0]
            measured = pooled(sc.per_frame["vmaf"], pool)
        meas_s = time.perf_counter() - t2
    return TargetResult(str(input_path), str(output_path), typed.encoder.name, not plain, float(target), pool,
                        crf, predicted, measured, probes, sample_info, encode_result_dict(res), search_s, enc_s,
                        meas_s, cached=cached is not None, notes=notes + list(res.notes), sample_error=sample_error)


def _all_windows(probes: Sequence[Probe], crf: float) -> tuple[list[float], list[float]]:
    """Each window's mean VMAF: the first samples' from their probe nearest ``crf``, then
    more_samples' (from their one probe), if any; and the CRFs of those probes."""
    out: list[float] = []
    crfs: list[float] = []
    for more in (False, True):
        near = [q for q in probes if q.more == more]
        if near:
            q = min(near, key=lambda q: abs(q.crf - crf))
            out.extend(q.windows)
            crfs.append(q.crf)
    return out, crfs


def _reached(crf: float, probed: Sequence[float]) -> str:
    """How the second look's CRF was reached, for its note (probed: the first samples' CRFs)."""
    if crf in probed:
        return "probed"
    if min(probed) < crf < max(probed):
        return "not probed: between the first probes, on their line"
    return "not probed: on the first probes' slope" if len(set(probed)) > 1 else "not probed: on the prior slope"


def _second_look(first: SearchResult, more: float, n_first: int, n_more: int, target: float, rng: CrfRange, *,
                 tolerance: float) -> tuple[SearchResult, float]:
    """The search's result again, with more windows, and no probe more: ``more`` is the mean VMAF
    of ``n_more`` frames of new windows at ``first.crf``, where the first samples' ``n_first``
    frames predicted ``first.predicted``. All the frames together score their weighted mean
    there (returned with the result). The first samples' curve, moved by the difference in the
    headroom space (a placement's offset, taken to hold a few CRF steps either way), is searched
    again: between the first probes it is their line; past them it goes on at the slope of the
    two probes at that end (the prior with one), as the search's own next step would have.

    Measured on joined2 (SVT-AV1 preset 8, plain, target 93): the first search ended on one probe
    at CRF 35 (93.17 on three windows; the whole encode scores 94.05 there); three new windows
    scored 93.96 at CRF 35, the six together 93.57, and the moved curve, on the prior slope,
    gave CRF 37, predicted 92.96, where the whole encode measures 93.47."""
    both = (n_first * first.predicted + n_more * more) / (n_first + n_more)
    shift = HEADROOM.fwd(both) - HEADROOM.fwd(first.predicted)
    base = {p.crf: HEADROOM.fwd(p.score) for p in first.probes}
    base[first.crf] = HEADROOM.fwd(first.predicted)
    pts = sorted(base.items())
    xs, gs = [c for c, _ in pts], [g for _, g in pts]

    def moved(c: float) -> float:
        if xs[0] <= c <= xs[-1]:  # the first probes' line (or a point of it)
            return HEADROOM.inv(float(np.interp(c, xs, gs)) + shift)
        end = pts[:2] if c < xs[0] else pts[-2:]  # past them: the slope of the two at that end
        c0, g0 = end[0] if c < xs[0] else end[-1]
        return HEADROOM.inv(g0 + _slope(end, rng.headroom_slope) * (c - c0) + shift)

    try:
        return search_crf(moved, target, rng, start=first.crf, tolerance=tolerance, max_probes=12, smooth=True,
                          space=HEADROOM, slope=rng.headroom_slope), both
    except TargetUnreachable:  # on a curve not measured there: the best the encoder can, not an error
        return SearchResult(rng.lo, moved(rng.lo), [], note=(
            f"the second look puts VMAF {target:g} below what even the lowest CRF ({rng.lo:g}) gives "
            f"({moved(rng.lo):.2f}, extrapolated): encoding at CRF {rng.lo:g}")), both


# a standard error above this (VMAF points; twice the search's tolerance, and the accuracy a
# search should have on average) gets a second look from more windows (more_samples), and a
# note if it is still above. Measured with SVT-AV1 preset 8 at target 93: vtest.avi's three
# windows 0.31 (a second look there would cost 0.8 of an encode more), joined2's 1.27
SAMPLE_ERROR_NOTE = 0.5

# a second look only where all the probes, its own included, encode at most this share of the
# input's frames. Measured, the search's CPU against one encode's is 1.2-2x that share (libx265
# ROI joined 0.49 for 0.41; SVT-AV1 ROI joined2 0.47 for 0.30; SVT-AV1 vtest.avi 0.55 for 0.30),
# so the search stays near 0.6 of an encode at most. On vtest.avi (10 fps: each probe encodes
# 15% of it) a second look would take the share to 0.45
LOOK_BUDGET = 1 / 3


def window_error(values: Sequence[float], counts: Sequence[int]) -> tuple[list[float], float | None]:
    """Each sample's mean of the per-frame ``values`` (the scored frames, ``counts`` of them per
    sample, in order), and the standard error of their mean: how far the samples' disagreement
    says their prediction may lie from the whole input's score (one sample from each of
    ``len(counts)`` equal parts of the input). On joined2, an 89 s clip of seven sources, the
    three samples' frames of its whole SVT-AV1 encode scored 95.56, 92.13 and 92.12: a standard
    error of 1.15, their mean 0.78 below the whole. None for fewer than 2 samples."""
    means, i = [], 0
    for c in counts:
        if c > 0:
            means.append(float(np.mean(values[i:i + c])))
        i += c
    return means, standard_error(means)


def standard_error(means: Sequence[float]) -> float | None:
    """The standard error of the mean of ``means`` (None for fewer than 2)."""
    if len(means) < 2:
        return None
    return float(np.std(means, ddof=1) / math.sqrt(len(means)))


def config_default(encoder: str) -> float:
    """The encoder's default CRF: where the search starts."""
    from .encoders import defaults

    return float(defaults(encoder).quality)


# -- save against a plain encode -----------------------------------------------------------------------
GUARD_MARGIN = 0.1  # VMAF points the search keeps inside the guard (the samples' and the curve's noise)

def save_against(input_path: str | Path, output_path: str | Path, cfg: Mapping[str, Any], *, crf: float,
                 guard: float = 1.0, gaze: str | Path | None = None, maps: str | Path | None = None,
                 model_dir: Path | None = None, overwrite: bool = True, progress: ProgressFactory = no_progress,
                 on_event: EventSink = discard, vmaf_model: str | None = None, ffmpeg: str | None = None,
                 sample_seconds: float = 2.0, sample_fraction: float = 0.1, samples: int | None = None,
                 tolerance: float = 0.05, max_probes: int = 6, measure: bool = True,
                 cached: Mapping[str, Any] | None = None) -> SaveResult:
    """The ROI encode of ``input_path`` with the fewest bits whose attention-weighted PSNR (the
    model's maps as weights, or EWPSNR with ``gaze``) is at least that of a plain encode at ``crf``,
    and whose full-frame VMAF is at most ``guard`` below it: searched on samples, then encoded once
    to ``output_path``. With ``measure``, the plain encode at ``crf`` is made too (a temporary file)
    and both are scored on the whole input: the saving reported is measured, not predicted."""
    from .encode import SaliencyTrack, check_encoder, check_external, encode
    from .output import check_outputs
    from .score import load_gaze_for, score_many
    from .vmaf import DEFAULT_MODEL, find_ffmpeg

    vmaf_model = vmaf_model or DEFAULT_MODEL
    if not (math.isfinite(guard) and 0 <= guard <= 100):
        raise ConfigError(f"--vmaf-guard {guard:g}: expected the VMAF points the ROI encode may lose against the "
                          f"plain one, 0 to 100 (default 1.0)")
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise InputError(f"{input_path}: no such file" if not input_path.exists() else f"{input_path}: not a file")
    check_outputs([output_path], [input_path, gaze, maps], overwrite=overwrite)
    typed = _check_cfg(cfg)
    enc = typed.encoder.name
    check_encoder(enc, False)
    rng = crf_range(enc)
    if not rng.lo <= crf <= rng.hi or (not rng.fractional and not float(crf).is_integer()):
        raise ConfigError(f"--save-against {crf:g}: expected a CRF of {enc}, "
                          f"{'a number' if rng.fractional else 'a whole number'} {rng.lo:g}-{rng.hi:g}")
    find_ffmpeg(ffmpeg)
    check_external(enc, False, input_path)
    recording = load_gaze_for(gaze, input_path, "input", count=True) if gaze is not None else None
    key = "ewpsnr" if recording is not None else "attention"
    weights = f"gaze {gaze}" if recording is not None else f"model {typed.saliency.model}"
    if maps is not None and recording is None:
        weights = f"maps {maps}"
    notes: list[str] = []
    if recording is None:
        notes.append(f"quality where viewers look is weighted by the encoder's own attention maps ({weights}): this "
                     f"is the model judging its own encode; --gaze with real eye-tracking recordings of this video is "
                     f"the independent check")
    elif maps is not None and Path(maps).resolve() == Path(gaze).resolve():
        notes.append("the ROI encode's maps come from the gaze file its EWPSNR is weighted by: not an independent check")
    t0 = time.perf_counter()
    probes: list[Probe] = []
    sample_info: dict[str, Any] = {}
    predicted: dict[str, float] = {}
    bound_by = "attention"
    reuse = None  # the probes' maps, when the samples are the whole input
    with tempfile.TemporaryDirectory(prefix="vmaf-roi-save-") as d:
        if cached is not None:
            roi_crf = float(cached["crf"])
            predicted = dict(cached.get("predicted") or {})
            bound_by = str(cached.get("bound_by", bound_by))
            sample_info = dict(cached.get("samples") or {})
            on_event(Status(f"search cached: ROI CRF {roi_crf:g}", stage="search"))
        else:
            ss = _samples(input_path, d, typed, maps, sample_seconds=sample_seconds, sample_fraction=sample_fraction,
                          samples=samples, progress=progress, on_event=on_event)
            sample_info = ss.to_dict()
            sample_gaze = None
            if recording is not None:
                sample_gaze = recording if ss.whole else sub_gaze(recording, ss.ranges)
            pr = _Prober(ss, cfg, Path(d), model_dir=model_dir, maps=maps, progress=progress, on_event=on_event,
                         vmaf_model=vmaf_model, ffmpeg=ffmpeg)
            use_maps = recording is None

            def metrics(sc) -> dict[str, float]:
                q = sc.per_frame["ewpsnr"] if recording is not None else sc.per_frame["psnr_y_weighted"]
                return {"vmaf": pooled(ss.select(sc.per_frame["vmaf"]), "mean"), key: pooled(ss.select(q), "mean")}

            # the plain reference and the ROI encode at the same CRF, scored in one pass (the ROI
            # encode's maps, from the model, weight both)
            t1 = time.perf_counter()
            plain_res = pr.encode(crf, "plain")
            roi_res = pr.encode(crf, "roi")
            sc_plain, sc_roi = pr.score([plain_res, roi_res], f"probe crf {crf:g}", weights=use_maps, gaze=sample_gaze)
            ref = metrics(sc_plain)
            pr.record(crf, "plain", plain_res, ref, t1)
            first = metrics(sc_roi)
            pr.record(crf, "roi", roi_res, first, t1)
            for r in (plain_res, roi_res):
                r.output.unlink(missing_ok=True)
            on_event(Status(f"plain crf {crf:g}: {_score_text(ref)}, {plain_res.video_bitrate / 1000:.0f} kb/s; "
                            f"ROI crf {crf:g}: {_score_text(first)}, {roi_res.video_bitrate / 1000:.0f} kb/s "
                            f"(samples)", stage="search"))
            seen: dict[float, tuple[dict[str, float], float]] = {float(crf): (first, roi_res.video_bitrate)}

            def roi_at(c: float) -> dict[str, float]:
                if c not in seen:
                    t2 = time.perf_counter()
                    res = pr.encode(c, "roi")
                    sc = pr.score([res], f"probe {pr.n}: crf {c:g}", weights=use_maps, gaze=sample_gaze)[0]
                    m = metrics(sc)
                    pr.record(c, "roi", res, m, t2)
                    res.output.unlink(missing_ok=True)
                    seen[c] = (m, res.video_bitrate)
                    on_event(Status(f"probe {pr.n}: ROI crf {c:g} -> {_score_text(m)}, "
                                    f"{res.video_bitrate / 1000:.0f} kb/s (samples)", stage="search"))
                return seen[c][0]

            what = "EWPSNR" if recording is not None else "attention PSNR"
            # PSNR falls about 0.5 dB a CRF step on the 0-51 scales
            try:
                sq = search_crf(lambda c: roi_at(c)[key], ref[key], rng, start=float(crf), tolerance=tolerance,
                                max_probes=max_probes, slope=rng.slope * 0.5, what=what)
            except TargetUnreachable:
                raise TargetUnreachable(f"no ROI encode of this input reaches the plain encode's {what} "
                                        f"({ref[key]:.2f} dB at CRF {crf:g}) inside {enc}'s CRF range") from None
            floor = ref["vmaf"] - guard + GUARD_MARGIN  # aimed a little inside the guard: the samples' noise
            roi_crf = sq.crf
            if _interp(seen, roi_crf, "vmaf") < floor:  # the guard binds: the CRF where VMAF meets it
                bound_by = "vmaf guard"
                sv = search_crf(lambda c: roi_at(c)["vmaf"], floor, rng, start=min(roi_crf, float(crf)),
                                tolerance=0.1, max_probes=max_probes)
                roi_crf = min(roi_crf, sv.crf)
                # the guard's CRF, rounded, must not land below the floor
                if roi_crf in seen and seen[roi_crf][0]["vmaf"] < floor:
                    roi_crf = rng.clamp(roi_crf - (0.1 if rng.fractional else 1))
            probes = pr.probes
            predicted = {f"plain_{key}": ref[key], "plain_vmaf": ref["vmaf"],
                         "plain_bitrate": plain_res.video_bitrate,
                         f"roi_{key}": _interp(seen, roi_crf, key), "roi_vmaf": _interp(seen, roi_crf, "vmaf"),
                         "roi_bitrate": _interp_rate(seen, roi_crf)}
            if ss.whole and ss.cut and pr.track.maps:
                reuse = pr.track
        search_s = time.perf_counter() - t0
        on_event(Status(f"encode: ROI at CRF {roi_crf:g} (plain reference CRF {crf:g}; set by "
                        f"{bound_by}) -> {output_path}", stage="encode"))
        t1 = time.perf_counter()
        track = reuse if reuse is not None else SaliencyTrack()
        res = encode(input_path, output_path, _crf_cfg(cfg, roi_crf), maps=maps, track=track, model_dir=model_dir,
                     overwrite=overwrite, progress=lambda total, _d: progress(total, "encode"),
                     on_event=lambda m: on_event(Status(m, stage="encode", level="note")))
        enc_s = time.perf_counter() - t1
        measured: dict[str, float] = {}
        t2 = time.perf_counter()
        if measure:
            plain_out = Path(d) / ("plain" + output_path.suffix)
            on_event(Status(f"measure: plain encode at CRF {crf:g} for the comparison", stage="measure"))
            pres = encode(input_path, plain_out, _crf_cfg(cfg, crf), plain=True, model_dir=model_dir,
                          progress=lambda total, _d: progress(total, "measure: plain encode"),
                          on_event=lambda m: on_event(Status(m, stage="measure", level="note")))
            on_event(Status("measure: both encodes scored against the input", stage="measure"))
            sc_roi, sc_plain = score_many(
                input_path, [output_path, plain_out], vmaf_model=vmaf_model, ffmpeg=ffmpeg,
                saliency=None if recording is not None else track.maps,
                saliency_label=None if recording is not None else f"encoder's maps ({track.model})",
                gaze=recording, progress=lambda total, _d: progress(total, "measure: score"))
            q = "ewpsnr" if recording is not None else "psnr_y_weighted"
            measured = {"roi_bitrate": res.video_bitrate, "plain_bitrate": pres.video_bitrate,
                        "roi_vmaf": pooled(sc_roi.per_frame["vmaf"], "mean"),
                        "plain_vmaf": pooled(sc_plain.per_frame["vmaf"], "mean"),
                        f"roi_{key}": pooled(sc_roi.per_frame[q], "mean"),
                        f"plain_{key}": pooled(sc_plain.per_frame[q], "mean")}
            for n in sc_roi.notes:
                if n.startswith("gaze "):
                    notes.append(n)
            drop = measured["plain_vmaf"] - measured["roi_vmaf"]
            if drop > guard:
                msg = (f"the VMAF guard was missed on the whole input: the ROI encode's VMAF is {drop:.2f} below the "
                       f"plain one's (guard {guard:g}); the samples predicted "
                       f"{predicted.get('plain_vmaf', float('nan')) - predicted.get('roi_vmaf', float('nan')):.2f}")
                notes.append(msg)
                on_event(Status(msg, stage="measure", level="warning"))
        meas_s = time.perf_counter() - t2
    return SaveResult(str(input_path), str(output_path), enc, float(crf), float(guard), weights,
                      recording is not None, roi_crf, bound_by, predicted, measured, probes, sample_info,
                      encode_result_dict(res), search_s, enc_s, meas_s, cached=cached is not None,
                      notes=notes + list(res.notes))


def encode_result_dict(res: Any) -> dict[str, Any]:
    """An EncodeResult as ``encode --json`` prints it."""
    d = asdict(res)
    d.update(output=str(res.output), fps=res.fps, video_bitrate=res.video_bitrate, total_bitrate=res.total_bitrate,
             bitrate=res.total_bitrate)
    return d


def _interp(seen: Mapping[float, tuple[dict[str, float], float]], c: float, key: str) -> float:
    pts = sorted((k, v[0][key]) for k, v in seen.items())
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return float(np.interp(c, xs, ys))


def _interp_rate(seen: Mapping[float, tuple[dict[str, float], float]], c: float) -> float:
    pts = sorted((k, v[1]) for k, v in seen.items())
    # bitrate is about exponential in the CRF: interpolate its logarithm
    return float(np.exp(np.interp(c, [p[0] for p in pts], [math.log(max(p[1], 1.0)) for p in pts])))
