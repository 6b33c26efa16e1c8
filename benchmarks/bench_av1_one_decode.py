"""The one-decode SVT-AV1 ROI encode against a plain SVT-AV1 encode, whole ffmpeg processes.

    python benchmarks/bench_av1_one_decode.py --input build/corpus/box.mp4 [--input ...]
        [--rounds 6] [--preset 8] [--crf 35] [--against FILE ...] [--variant NAME:OPTS ...]
        [--ffmpeg build/bin/ffmpeg-minimal]

For each clip, in turn, ``rounds`` times after one warm-up round (not counted):
- plain: ``ffmpeg -i CLIP -an -vf null -c:v libsvtav1 -preset P -crf C out.mkv``;
- ROI: the same with ``-vf "$(vmaf-roi models path attention_v2 --filter --encoder libsvtav1)"``:
  the default model in the salroi filter, with its defaults and encode's stride, mode, block and
  qp_scale (the filter string of the earlier measurements in RESULTS.md);
- with ``--against FILE``: the same filter string with FILE as the model (its own sha256), e.g.
  an earlier graph of the same model: ``git show 288fc42:model/attention_v2.onnx > FILE``;
- with ``--variant NAME:OPTS``: the same filter string with salroi options appended (the last
  of a repeated option wins), e.g. ``--variant stride8:stride=8``.

Reported per clip: the plain encode's median wall and CPU seconds (user + sys of ffmpeg), and for
each ROI row the median of the per-round ratios to the plain run of the same round (wall, CPU),
its throughput (1 / wall ratio), its bytes, and whether its video packets are those of the
first ROI row (``ffmpeg -f framemd5``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vmaf_roi.config import DEFAULTS  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from bench_salroi import run  # noqa: E402  (wall and CPU seconds of one command)


def packets_md5(ffmpeg: str, path: Path) -> str:
    out = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-map", "0:v", "-c", "copy", "-f", "framemd5", "-"],
                         capture_output=True, text=True, check=True).stdout
    return hashlib.md5("\n".join(l for l in out.splitlines() if not l.startswith("#")).encode()).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, action="append", required=True)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--preset", default="8")
    ap.add_argument("--crf", default="35")
    ap.add_argument("--against", type=Path, action="append", default=[], metavar="FILE")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:OPTS",
                    help="the default filter string with salroi options appended, e.g. stride8:stride=8")
    ap.add_argument("--ffmpeg", default=str(REPO / "build" / "bin" / "ffmpeg-minimal"))
    a = ap.parse_args()
    os.environ["SVT_LOG"] = "1"  # SVT-AV1's banner and settings off, for every encode below
    default = subprocess.run([sys.executable, "-m", "vmaf_roi", "models", "path", DEFAULTS["saliency"]["model"],
                              "--filter", "--encoder", "libsvtav1"], capture_output=True, text=True,
                             check=True).stdout.strip()
    rows = {"ROI (default)": default}
    for f in a.against:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        other = re.sub(r"model=[^:]*:sha256=[0-9a-f]{64}", lambda _: f"model={f}:sha256={digest}", default, count=1)
        rows[f"ROI, {f.name}"] = other
    for v in a.variant:
        name, _, opts = v.partition(":")
        if not opts:
            ap.error(f"--variant {v!r}: NAME:OPTS, e.g. stride8:stride=8")
        rows[f"ROI, {name}"] = f"{default}:{opts}"
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} UTC; {platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; libsvtav1 preset {a.preset} CRF {a.crf}; {a.rounds} rounds")
    print("\n| clip | row | wall / plain | throughput | CPU / plain | bytes | packets as the first ROI row |")
    print("|---|---|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="bench-av1-") as d:
        for clip in a.input:
            cases = {"plain": "null", **rows}
            outs = {k: Path(d) / f"{i}.mkv" for i, k in enumerate(cases)}
            cmds = {k: [a.ffmpeg, "-nostdin", "-hide_banner", "-y", "-i", str(clip), "-an", "-vf", v, "-c:v", "libsvtav1",
                        "-preset", a.preset, "-crf", a.crf, str(outs[k])] for k, v in cases.items()}
            for cmd in cmds.values():  # warm-up
                run(cmd)
            res: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
            for _ in range(a.rounds):
                for k, cmd in cmds.items():
                    res[k].append(run(cmd))
            first = packets_md5(a.ffmpeg, outs["ROI (default)"])
            pw = statistics.median(w for w, _ in res["plain"])
            pc = statistics.median(c for _, c in res["plain"])
            print(f"| {clip.name} | plain | {pw:.2f} s | 1 | {pc:.2f} s | {outs['plain'].stat().st_size:,} | |")
            for k in rows:
                wr = statistics.median(w / p[0] for (w, _), p in zip(res[k], res["plain"]))
                cr = statistics.median(c / p[1] for (_, c), p in zip(res[k], res["plain"]))
                same = "yes" if packets_md5(a.ffmpeg, outs[k]) == first else "no"
                print(f"| {clip.name} | {k} | {wr:.3f} | {1 / wr:.3f}x | {cr:.3f} | {outs[k].stat().st_size:,} | {same} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
