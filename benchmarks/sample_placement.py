"""Where the search's windows fall, judged alone: each long clip encoded whole at one CRF, its
per-frame VMAF, and the mean over the frames that a sample plan would score against the mean over
all frames, for the search's plan (``search.plan_samples``: the middle of each equal part), an
alternative (the middle of the longest stretch between scene cuts in each part), and the
search's windows with a second look's (``search.more_windows``), over the whole clip and over
many excerpts of it (60 s or more, random start and length, fixed seed).

This leaves out what the samples' own encode adds (their edges, their pads): it measures only
how well the windows' frames stand for the whole. The whole encodes are cached in build/placement/.

    python benchmarks/sample_placement.py --encoder libx264 --crf 23
    python benchmarks/sample_placement.py --encoder libsvtav1 --preset 8 --crf 35
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vmaf_roi.search import _crf_cfg, more_windows, plan_samples, sample_frames, scan  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_curves import LONG, clip_path, encoder_config  # noqa: E402


def whole_vmaf(name: str, encoder: str, preset: str | None, crf: float) -> list[float]:
    """Per-frame VMAF of the whole clip encoded plain at ``crf`` (libvmaf, as ``score``), cached."""
    cache = ROOT / "build" / "placement" / f"{Path(name).stem}.{encoder}{'.' + preset if preset else ''}.{crf:g}.json"
    if cache.is_file():
        return json.loads(cache.read_text())["vmaf"]
    from vmaf_roi.encode import encode
    from vmaf_roi.score import score_many

    cfg = encoder_config(encoder, preset)
    with tempfile.TemporaryDirectory(prefix="placement-") as d:
        out = Path(d) / "whole.mkv"
        encode(clip_path(name), out, _crf_cfg(cfg, crf, drop_audio=True), plain=True)
        v = [float(x) for x in score_many(clip_path(name), [out])[0].per_frame["vmaf"]]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"clip": name, "encoder": encoder, "preset": preset, "crf": crf, "vmaf": v}))
    return v


def longest_scene_plan(frames: int, cuts: Sequence[int], length: int, count: int) -> list[tuple[int, int]]:
    """The alternative: in each of ``count`` equal parts, the window in the middle of the stretch
    between cuts that overlaps the part most (ties: the nearest the part's middle), then as
    plan_samples: moved to start or end at a cut inside it, never overlapping."""
    bounds = [0, *sorted(c for c in cuts if 0 < c < frames), frames]

    def centre(a: float, b: float) -> float:
        _, _, lo, hi = max((min(e, b) - max(s, a), -abs(max(s, a) + min(e, b) - a - b), max(s, a), min(e, b))
                           for s, e in zip(bounds, bounds[1:]) if min(e, b) > max(s, a))
        return (lo + hi) / 2

    return plan_samples(frames, cuts, length, count, centre=centre)


def second_look_plan(frames: int, cuts: Sequence[int], length: int, count: int) -> list[tuple[int, int]]:
    """The search's windows and the second look's (search.more_windows: what a search whose
    windows disagree adds), all of them, whether or not they disagree."""
    first = plan_samples(frames, cuts, length, count)
    return first + more_windows(frames, cuts, length, first)


PLANS = {"middle of each part (the search's)": plan_samples, "longest scene in each part": longest_scene_plan,
         "the search's and a second look's": second_look_plan}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="*", default=LONG)
    ap.add_argument("--encoder", default="libx264")
    ap.add_argument("--preset")
    ap.add_argument("--crf", type=float, default=23)
    ap.add_argument("--counts", nargs="*", type=int, default=[3, 4, 6])
    ap.add_argument("--excerpts", type=int, default=300)
    a = ap.parse_args(argv)
    print(f"{a.encoder}{' preset ' + a.preset if a.preset else ''} CRF {a.crf:g}: the windows' scored frames "
          f"in the whole encode, their mean VMAF minus the whole's; excerpts of 60 s or more\n")
    print("| clip | windows | plan | whole clip | excerpts: mean \\|error\\| | 90th percentile | worst |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name in a.clips:
        v = np.array(whole_vmaf(name, a.encoder, a.preset, a.crf))
        sc = scan(clip_path(name))
        if sc.frames != len(v):
            raise SystemExit(f"{name}: {sc.frames} packets but {len(v)} frames scored")
        length, pad = sample_frames(sc.rate)  # the search's defaults: 2 s windows and their pads
        total = length + pad
        rs = random.Random(1)
        shortest = min(len(v) - 1, int(60 * sc.rate))
        excerpts = []
        for _ in range(a.excerpts):
            n = rs.randint(shortest, len(v))
            excerpts.append((rs.randint(0, len(v) - n), n))
        for count in a.counts:
            for label, plan in PLANS.items():
                def err(start: int, n: int) -> float | None:
                    if count * total * 2 > n:
                        return None
                    r = plan(n, [c - start for c in sc.cuts if start < c < start + n], total, count)
                    idx = np.concatenate([np.arange(s, s + length) for s, _ in r]) + start
                    return float(v[idx].mean() - v[start:start + n].mean())

                e = np.abs([x for x in (err(s, n) for s, n in excerpts) if x is not None])
                print(f"| {name} | {count} | {label} | {err(0, len(v)):+.2f} | {e.mean():.2f} | "
                      f"{np.quantile(e, 0.9):.2f} | {e.max():.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
