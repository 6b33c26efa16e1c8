"""The CRF search (``vmaf_roi.search.search_crf``, mean pooling) run on measured curves instead of
encodes: how many probes it takes and how far its result lands from the target on the curve.

The curves come from ``benchmarks/bench_curves.py`` (each clip's samples encoded at every CRF of a
grid, scored as a probe scores them). Between grid points the score is interpolated linearly; with
a grid of one CRF that adds well under 0.05 VMAF. ``--rule old`` runs the search with the stopping
rule it had before the line-error rule; ``--space linear`` draws its lines in VMAF itself, as the
search did before the headroom space.

    python benchmarks/sim_search.py --encoder libx264              # the search as the command runs it
    python benchmarks/sim_search.py --encoder libx264 --space linear --rule old   # as it was before

Also prints each clip's curve shape on -log(100 - VMAF): its slope at VMAF 85-97 and how much the
slope changes (|d2/dc2|) at 80-98, which set the prior slopes and the line rule's bound.
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


_line_ok = search._line_ok


def old_rule(a, b, target, rng, tolerance, space=None):
    """The rule before the curvature bound: the bracket rule, whatever the space."""
    return _line_ok(a, b, target, rng, tolerance, search.LINEAR)


def headroom_shape(points: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """On -log(100 - VMAF): the slope at each grid point scoring VMAF 85-97 (central differences
    over 2 CRF), and |d2/dc2| at each scoring 80-98 (second differences over 2 CRF each side: the
    grid's own noise halves)."""
    p = np.array(points)
    c, v = p[:, 0], p[:, 1]
    g = np.array([search.HEADROOM.fwd(x) for x in v])
    slope = (g[2:] - g[:-2]) / (c[2:] - c[:-2])
    mid = v[1:-1]
    d2 = np.abs(g[4:] - 2 * g[2:-2] + g[:-4]) / 4.0
    mid2 = v[2:-2]
    return slope[(mid >= 85) & (mid <= 97)], d2[(mid2 >= 80) & (mid2 <= 98)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="libx264")
    ap.add_argument("--curves", default=str(ROOT / "build" / "curves"))
    ap.add_argument("--rule", choices=["current", "old"], default="current")
    ap.add_argument("--targets", nargs="*", type=float, default=[85, 88, 90, 91, 92, 93, 94, 95, 96])
    ap.add_argument("--tolerance", type=float, default=0.25)
    ap.add_argument("--space", choices=["linear", "headroom"], default="headroom")
    ap.add_argument("--slope", type=float, help="the first step's prior slope, in the space's units per CRF "
                    "(default: the encoder's, as the command uses it)")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    if a.rule == "old":
        search._line_ok = old_rule
    rng = crf_range(a.encoder)
    if a.slope is None:
        a.slope = rng.headroom_slope if a.space == "headroom" else rng.slope
    start = rng.clamp(config_default(a.encoder))
    files = sorted(Path(a.curves).glob(f"*.{a.encoder}.json"))
    if not files:
        raise SystemExit(f"no curves for {a.encoder} in {a.curves}: run benchmarks/bench_curves.py")
    rows, slopes, bends = [], [], []
    for f in files:
        rec = json.loads(f.read_text())
        pts = sorted(rec["points"])
        xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])

        def curve(c: float) -> float:
            if not xs[0] <= c <= xs[-1]:
                raise ValueError(f"{rec['clip']}: CRF {c} outside the measured grid {xs[0]:g}-{xs[-1]:g}")
            return float(np.interp(c, xs, ys))

        sl, d2 = headroom_shape(pts)
        slopes.extend(sl)
        bends.extend(d2)
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
        if len(sl) and len(d2):
            print(f"{rec['clip']:>18}: -log(100 - VMAF) slope at VMAF 85-97 median {np.median(sl):.3f} "
                  f"({sl.min():.3f} to {sl.max():.3f}); |d2/dc2| at 80-98 max {d2.max():.3f}")
    if slopes:
        print(f"all clips: slope median {np.median(slopes):.3f}; |d2/dc2| max {max(bends):.3f}, "
              f"90th percentile {np.percentile(bends, 90):.3f}")
    if not rows:
        return 1
    probes = np.array([r[2] for r in rows])
    err = np.array([r[5] - r[1] for r in rows])
    print(f"{a.encoder}, rule {a.rule}, space {a.space}, slope {a.slope}: {len(rows)} searches; probes mean {probes.mean():.2f} "
          f"(max {probes.max()}); |curve - target| mean {np.abs(err).mean():.3f}, max {np.abs(err).max():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
