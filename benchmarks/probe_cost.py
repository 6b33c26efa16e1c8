"""What one `--target-vmaf` probe costs, step by step: the cut of the samples, each probe's
encode and its libvmaf pass, in CPU seconds (this process and its children), with the samples as
the search stores them or (``--h264``) as lossless H.264 whatever their size.

    python benchmarks/probe_cost.py build/corpus/vtest.avi --encoder libsvtav1 --preset 8 --crf 35
    python benchmarks/probe_cost.py build/corpus/vtest.avi --encoder libsvtav1 --preset 8 --crf 35 --h264
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vmaf_roi import search  # noqa: E402
from vmaf_roi.search import _crf_cfg, make_samples  # noqa: E402
from vmaf_roi.vmaf import find_ffmpeg, vmaf_only  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_curves import encoder_config  # noqa: E402
from bench_target import cpu  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("--encoder", default="libx264")
    ap.add_argument("--preset")
    ap.add_argument("--crf", type=float, default=23)
    ap.add_argument("--probes", type=int, default=2)
    ap.add_argument("--roi", action="store_true", help="ROI probes (default: plain)")
    ap.add_argument("--h264", action="store_true", help="lossless H.264 samples (the search's choice before raw ones)")
    a = ap.parse_args(argv)
    from vmaf_roi.encode import encode

    if a.h264:
        search.RAW_SAMPLE_BYTES = 0
    cfg = encoder_config(a.encoder, a.preset)
    ffmpeg = find_ffmpeg(None)
    with tempfile.TemporaryDirectory(prefix="probe-cost-") as d:
        c, t = cpu(), time.perf_counter()
        ss = make_samples(a.input, d)
        print(f"cut: {ss.describe()}; {cpu() - c:.2f} CPU-s, {time.perf_counter() - t:.2f} s; "
              f"{ss.path.stat().st_size / 2**20:.0f} MiB")
        out = Path(d) / "probe.mkv"
        for k in range(a.probes):
            c = cpu()
            encode(ss.path, out, _crf_cfg(cfg, a.crf, drop_audio=True), plain=not a.roi)
            ce = cpu() - c
            c = cpu()
            v = vmaf_only(ffmpeg, ss.path, out, ranges=ss.scored_ranges())
            print(f"probe {k + 1}: encode {ce:.2f} CPU-s, libvmaf {cpu() - c:.2f} CPU-s, "
                  f"{out.stat().st_size} bytes, mean VMAF {sum(v) / len(v):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
