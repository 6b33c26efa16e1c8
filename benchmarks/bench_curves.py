"""The VMAF-against-CRF curves the CRF search walks: each clip's samples (cut as
``encode --target-vmaf`` cuts them), encoded plain at every CRF of a grid and scored as a probe
scores them (mean VMAF of the scored frames).

The curves are data for judging the search's stopping rules on real content
(``benchmarks/sim_search.py``) without an encode per simulated probe. A search on the same
samples measures the same points: the probes run exactly this encode and this libvmaf pass.

    python benchmarks/bench_curves.py --encoder libx264 --crf 12:40:1
    python benchmarks/bench_curves.py --encoder libsvtav1 --preset 8 --crf 18:58:1

Writes build/curves/<clip>.<encoder>.json (clip, encoder, samples, points [[crf, vmaf], ...]).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vmaf_roi import config  # noqa: E402
from vmaf_roi.search import _crf_cfg, crf_range, make_samples  # noqa: E402
from vmaf_roi.vmaf import find_ffmpeg, vmaf_only  # noqa: E402

SHORT = ["bikes.mp4", "box.mp4", "cup.mp4", "Megamind.avi", "tree.avi", "bigbuckbunny.mp4"]
LONG = ["vtest.avi", "joined.mkv", "joined2.mkv"]  # the joined clips: benchmarks/bench_target.py makes them


def clip_path(name: str) -> Path:
    import os

    for d in (Path(os.environ.get("VMAF_ROI_CORPUS_DIR", ROOT / "build" / "corpus")), ROOT / "build" / "bench-target"):
        if (d / name).is_file():
            return d / name
    raise SystemExit(f"{name}: not found in the corpus or build/bench-target (run benchmarks/bench_target.py once)")


def encoder_config(encoder: str, preset: str | None = None) -> dict:
    """The default config with ``encoder`` and, where given, its ``preset``."""
    return config.load(None, [f"encoder={encoder}"] + ([f"encoder_options.preset={preset}"] if preset else []))


def grid(spec: str) -> list[float]:
    lo, hi, step = (float(x) for x in spec.split(":"))
    n = int(round((hi - lo) / step))
    return [round(lo + i * step, 2) for i in range(n + 1)]


def probe_vmaf(ss, cfg: dict, crf: float, ffmpeg: str, workdir: str | Path) -> list[float]:
    """The per-frame VMAF of the scored frames of samples ``ss`` encoded plain at ``crf``: a
    probe's encode and libvmaf pass, as the search runs them."""
    from vmaf_roi.encode import encode

    out = Path(workdir) / f"e{crf:g}.mkv"
    encode(ss.path, out, _crf_cfg(cfg, crf, drop_audio=True), plain=True)
    try:
        return vmaf_only(ffmpeg, ss.path, out, ranges=ss.scored_ranges())
    finally:
        out.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="libx264")
    ap.add_argument("--preset", help="encoder preset (default: the project's)")
    ap.add_argument("--crf", default="12:40:1", metavar="LO:HI:STEP")
    ap.add_argument("--clips", nargs="*", default=SHORT + LONG)
    ap.add_argument("--out", default=str(ROOT / "build" / "curves"))
    a = ap.parse_args(argv)
    cfg = encoder_config(a.encoder, a.preset)
    rng = crf_range(a.encoder)
    ffmpeg = find_ffmpeg(None)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in a.clips:
        src = clip_path(name)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="curves-") as d:
            ss = make_samples(src, d)
            points = []
            for crf in grid(a.crf):
                c = rng.clamp(crf)
                v = probe_vmaf(ss, cfg, c, ffmpeg, d)
                points.append([c, sum(v) / len(v)])
        rec = {"clip": name, "encoder": a.encoder, "preset": a.preset, "samples": ss.to_dict(), "points": points,
               "seconds": round(time.perf_counter() - t0, 1)}
        path = out_dir / f"{Path(name).stem}.{a.encoder}.json"
        path.write_text(json.dumps(rec, indent=1))
        print(f"{name}: {len(points)} points, VMAF {points[0][1]:.2f} .. {points[-1][1]:.2f}, "
              f"{rec['seconds']:.0f} s -> {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
