"""The CRF search (``vmaf_roi.search.search_crf``, mean pooling) run on measured curves instead of
encodes: how many probes it takes and how far its result lands from the target on the curve.

The curves come from ``benchmarks/bench_curves.py`` (each clip's samples encoded at every CRF of a
grid, scored as a probe scores them). Between grid points the score is interpolated linearly; with
a grid of one CRF that adds well under 0.05 VMAF. ``--rule old`` runs the search with the stopping
rule it had before the line-error rule; ``--space linear`` draws its lines in VMAF itself, as the
search did before the headroom space.

    python benchmarks/sim_search.py --encoder libx264 [--rule old] [--targets 85 90 93 95]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vmaf_roi import search  # noqa: E402
from vmaf_roi.search import TargetUnreachable, config_default, crf_range, search_crf  # noqa: E402


def old_rule(a, b, target, rng, tolerance, space=None):
    (ca, sa), (cb, sb) = a, b
    return cb - ca <= search.bracket_width(rng) and sa - sb <= 8 * tolerance


def curvature(points: list[list[float]], lo: float = 80.0, hi: float = 98.0) -> list[float]:
    """|f''/f'| at each inner grid point whose score is in [lo, hi] (central differences)."""
    out = []
    for (c0, v0), (c1, v1), (c2, v2) in zip(points, points[1:], points[2:]):
        if not lo <= v1 <= hi or c2 - c1 != c1 - c0:
            continue
        h = c1 - c0
        d1 = (v2 - v0) / (2 * h)
        d2 = (v2 - 2 * v1 + v0) / (h * h)
        if d1 < 0:
            out.append(abs(d2 / d1))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="libx264")
    ap.add_argument("--curves", default=str(ROOT / "build" / "curves"))
    ap.add_argument("--rule", choices=["current", "old"], default="current")
    ap.add_argument("--targets", nargs="*", type=float, default=[85, 88, 90, 92, 93, 94, 95, 96])
    ap.add_argument("--tolerance", type=float, default=0.25)
    ap.add_argument("--space", choices=["linear", "headroom"], default="linear")
    ap.add_argument("--slope", type=float, help="the first step's prior slope, in the space's units per CRF")
    ap.add_argument("--curvature", type=float, help="HEADROOM_CURVATURE for the headroom space's line rule")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    if a.curvature is not None:
        search.HEADROOM_CURVATURE = a.curvature
    if a.rule == "old":
        search._line_ok = old_rule
    rng = crf_range(a.encoder)
    start = rng.clamp(config_default(a.encoder))
    files = sorted(Path(a.curves).glob(f"*.{a.encoder}.json"))
    if not files:
        raise SystemExit(f"no curves for {a.encoder} in {a.curves}: run benchmarks/bench_curves.py")
    rows = []
    for f in files:
        rec = json.loads(f.read_text())
        pts = sorted(rec["points"])
        xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])

        def curve(c: float) -> float:
            if not xs[0] <= c <= xs[-1]:
                raise ValueError(f"{rec['clip']}: CRF {c} outside the measured grid {xs[0]:g}-{xs[-1]:g}")
            return float(np.interp(c, xs, ys))

        k = curvature(pts)
        for t in a.targets:
            if not ys[-1] < t < ys[0]:
                continue
            try:
                r = search_crf(curve, t, rng, start=start, tolerance=a.tolerance, smooth=True, slope=a.slope,
                               space=search.HEADROOM if a.space == "headroom" else search.LINEAR)
            except (TargetUnreachable, ValueError) as exc:
                print(f"{rec['clip']} {t:g}: {exc}")
                continue
            true = curve(r.crf)
            rows.append((rec["clip"], t, r.probe_count, r.crf, r.predicted, true))
            if a.verbose:
                print(f"{rec['clip']:>18} target {t:5.1f}: {r.probe_count} probes "
                      f"({', '.join(f'{p.crf:g}' for p in r.probes)}), CRF {r.crf:g}, predicted {r.predicted:.2f}, "
                      f"curve {true:.2f} ({true - t:+.2f})")
        if k:
            print(f"{rec['clip']:>18}: |f''/f'| in VMAF 80-98: median {np.median(k):.3f}, max {max(k):.3f} "
                  f"({len(k)} points)")
    if not rows:
        return 1
    probes = np.array([r[2] for r in rows])
    err = np.array([r[5] - r[1] for r in rows])
    print(f"{a.encoder}, rule {a.rule}, space {a.space}, slope {a.slope}, curvature {search.HEADROOM_CURVATURE}: {len(rows)} searches; probes mean {probes.mean():.2f} "
          f"(max {probes.max()}); |curve - target| mean {np.abs(err).mean():.3f}, max {np.abs(err).max():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
