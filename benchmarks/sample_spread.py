"""How much the search's samples disagree, and how that changes with their number: each clip's
samples (cut as ``encode --target-vmaf`` cuts them, with ``--samples N``) encoded plain at one
CRF, each sample's mean VMAF, their standard error and the mean over all scored frames.

    python benchmarks/sample_spread.py --counts 3 6 --crf 23

A question this answers: does the spread of the default three samples flag the clips where
three are too few?
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vmaf_roi import config  # noqa: E402
from vmaf_roi.search import _crf_cfg, make_samples, window_error  # noqa: E402
from vmaf_roi.vmaf import find_ffmpeg  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_curves import LONG, clip_path, probe_vmaf  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="*", default=LONG)
    ap.add_argument("--counts", nargs="*", type=int, default=[3, 6])
    ap.add_argument("--crf", type=float, default=23)
    ap.add_argument("--encoder", default="libx264")
    ap.add_argument("--whole", action="store_true",
                    help="also encode each whole clip at the CRF and score it (libvmaf, as score does): the truth "
                         "the samples predict")
    a = ap.parse_args(argv)
    from vmaf_roi.encode import encode

    cfg = config.load(None, [f"encoder={a.encoder}"])
    ffmpeg = find_ffmpeg(None)
    print(f"| clip | samples | each sample's mean VMAF | standard error | mean of all scored frames |")
    print("|---|---:|---|---:|---:|")
    for name in a.clips:
        if a.whole:
            from vmaf_roi.score import score_many

            with tempfile.TemporaryDirectory(prefix="spread-") as d:
                out = Path(d) / "whole.mkv"
                encode(clip_path(name), out, _crf_cfg(cfg, a.crf, drop_audio=True), plain=True)
                sc = score_many(clip_path(name), [out])[0]
                print(f"| {name} | whole | | | {float(np.mean(sc.per_frame['vmaf'])):.2f} |", flush=True)
        for n in a.counts:
            with tempfile.TemporaryDirectory(prefix="spread-") as d:
                ss = make_samples(clip_path(name), d, count=n)
                v = probe_vmaf(ss, cfg, a.crf, ffmpeg, d)
                means, se = window_error(v, [c - ss.pad for _, c in ss.ranges])
                print(f"| {name} | {len(means)} | {' / '.join(f'{m:.2f}' for m in means)} | "
                      f"{se:.2f} | {float(np.mean(v)):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
