"""`encode --target-vmaf` and `encode --save-against` on real clips: how close the samples'
prediction lands, and what the search costs against one full encode.

    python benchmarks/bench_target.py                       # libx264 medium, ROI, target 93
    python benchmarks/bench_target.py --plain --encoder libsvtav1 --preset 8
    python benchmarks/bench_target.py --save-only           # only --save-against 23 --gaze on diving

Clips: the corpus's videos (build/corpus: bikes, box, cup, Megamind, tree, vtest, bigbuckbunny),
and a joined one: build/bench-target/joined.mkv, made once from corpus clips scaled to
640x360 at 25 fps and concatenated (box, cup, bikes, Megamind, Megamind_bugy, bigbuckbunny,
tree: about 88 s) with imageio-ffmpeg's ffmpeg, x264 CRF 12 veryfast (a mezzanine source);
with --long2 also joined2.mkv, the same clips in reverse order at 854x480 and 30 fps (other
sample positions). ``--clips`` with no names runs only the joined clips. vtest
(79.5 s at 10 fps) is the corpus's only clip of 60 s or more as it is.

Per clip: the library's target_vmaf (the same code as the command) with the default sampling;
wall and CPU seconds (this process and its children: libvmaf runs in an ffmpeg child) of the
search (scan, cut, probes: up to the "encode: CRF" status event) and of the final encode (up to
the "measure:" event); predicted (samples) and measured (whole encode) VMAF. Prints a Markdown
table and a summary (mean and worst |measured - target|, |measured - predicted|, cost ratio on
clips of 60 s or more). The save-against run prints the library's summary line and its numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vmaf_roi import config as config_mod  # noqa: E402
from vmaf_roi import search  # noqa: E402

CORPUS = ["bikes.mp4", "box.mp4", "cup.mp4", "Megamind.avi", "tree.avi", "vtest.avi", "bigbuckbunny.mp4"]
JOIN = ["box.mp4", "cup.mp4", "bikes.mp4", "Megamind.avi", "Megamind_bugy.avi", "bigbuckbunny.mp4", "tree.avi"]
WORK = ROOT / "build" / "bench-target"


def cpu() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def duration(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        if s.duration and s.time_base:
            return float(s.duration * s.time_base)
        return float(c.duration or 0) / 1e6


def joined(second: bool = False) -> Path:
    """The joined clip; ``second``: another one, the same clips in reverse order at 854x480 and 30 fps."""
    out = WORK / ("joined2.mkv" if second else "joined.mkv")
    if out.is_file():
        return out
    names = JOIN[::-1] if second else JOIN
    size, fps = ("854:480", 30) if second else ("640:360", 25)
    import imageio_ffmpeg

    ff = imageio_ffmpeg.get_ffmpeg_exe()
    WORK.mkdir(parents=True, exist_ok=True)
    args = [ff, "-v", "error", "-y"]
    for name in names:
        args += ["-i", str(ROOT / "build" / "corpus" / name)]
    parts = "".join(f"[{i}:v]scale={size},setsar=1,fps={fps},format=yuv420p[v{i}];" for i in range(len(names)))
    parts += "".join(f"[v{i}]" for i in range(len(names))) + f"concat=n={len(names)}:v=1:a=0[v]"
    tmp = out.with_suffix(".part.mkv")
    subprocess.run(args + ["-filter_complex", parts, "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast",
                           "-crf", "12", str(tmp)], check=True)
    tmp.rename(out)
    return out


def run_target(clip: Path, cfg: dict, target: float, plain: bool, pool: str) -> dict:
    marks: dict[str, tuple[float, float]] = {}

    def on_event(e) -> None:
        msg = getattr(e, "message", "")
        if msg.startswith("encode: CRF") and "search" not in marks:
            marks["search"] = (time.perf_counter(), cpu())
        if msg.startswith("measure:") and "encode" not in marks:
            marks["encode"] = (time.perf_counter(), cpu())

    with tempfile.TemporaryDirectory(prefix="bench-target-") as d:
        t0, c0 = time.perf_counter(), cpu()
        res = search.target_vmaf(clip, Path(d) / "out.mkv", cfg, target=target, pool=pool, plain=plain,
                                 model_dir=Path(os.environ.get("VMAF_ROI_MODEL_DIR", ROOT / "build" / "models")),
                                 on_event=on_event)
    (ts, cs), (te, ce) = marks["search"], marks["encode"]
    return {"clip": clip.name, "seconds": duration(clip), "frames": res.encode["frames"], "crf": res.crf,
            "probes": len(res.probes), "predicted": res.predicted, "measured": res.measured,
            "samples": res.samples, "search_wall": ts - t0, "search_cpu": cs - c0, "encode_wall": te - ts,
            "encode_cpu": ce - cs, "kbps": res.encode["video_bitrate"] / 1000}


def run_save(cfg: dict, crf: float, guard: float) -> None:
    clip, gaze = ROOT / "build" / "gaze" / "ucf" / "diving.mkv", ROOT / "build" / "gaze" / "ucf" / "diving.csv"
    if not clip.is_file():
        print(f"(no {clip}: python scripts/gaze_convert.py ucf ../shared/gaze/ucf-sports-diving build/gaze/ucf)")
        return
    with tempfile.TemporaryDirectory(prefix="bench-save-") as d:
        t0 = time.perf_counter()
        res = search.save_against(clip, Path(d) / "out.mkv", cfg, crf=crf, guard=guard, gaze=gaze,
                                  model_dir=Path(os.environ.get("VMAF_ROI_MODEL_DIR", ROOT / "build" / "models")))
        wall = time.perf_counter() - t0
    m, p = res.measured, res.predicted
    print(f"\n### --save-against {crf:g} --gaze on {clip.name} ({res.encode['frames']} frames, "
          f"{res.encoder}, weights {res.weights})\n")
    print(res.summary())
    print(f"\nROI CRF {res.crf:g} (set by the {res.bound_by}), {len(res.probes)} probes, {wall:.1f} s in all")
    print("\n| | plain | ROI | ROI vs plain |\n|---|---:|---:|---:|")
    print(f"| video kb/s (measured) | {m['plain_bitrate'] / 1000:.0f} | {m['roi_bitrate'] / 1000:.0f} | "
          f"{res.saving:+.1f}% |")
    print(f"| EWPSNR dB (measured) | {m['plain_ewpsnr']:.2f} | {m['roi_ewpsnr']:.2f} | "
          f"{m['roi_ewpsnr'] - m['plain_ewpsnr']:+.2f} |")
    print(f"| VMAF (measured) | {m['plain_vmaf']:.2f} | {m['roi_vmaf']:.2f} | {m['roi_vmaf'] - m['plain_vmaf']:+.2f} |")
    print(f"| EWPSNR dB (samples) | {p['plain_ewpsnr']:.2f} | {p['roi_ewpsnr']:.2f} | |")
    print(f"| VMAF (samples) | {p['plain_vmaf']:.2f} | {p['roi_vmaf']:.2f} | |")
    for n in res.notes:
        print(f"\nnote: {n}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="libx264")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--plain", action="store_true", help="plain encodes (default: ROI)")
    ap.add_argument("--target", type=float, default=93.0)
    ap.add_argument("--pool", default="mean")
    ap.add_argument("--clips", nargs="*", default=None, help="corpus clip names (default: all of CORPUS)")
    ap.add_argument("--no-long", action="store_true", help="leave out the joined 88 s clip")
    ap.add_argument("--long2", action="store_true",
                    help="also the second joined clip (the same clips reversed, 854x480 at 30 fps: other sample positions)")
    ap.add_argument("--save-only", action="store_true")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--save-crf", type=float, default=23)
    ap.add_argument("--guard", type=float, default=1.0)
    a = ap.parse_args()
    sets = [f"encoder={a.encoder}"] + ([f"preset={a.preset}"] if a.preset else [])
    cfg = config_mod.load(None, sets)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs), Python "
          f"{platform.python_version()}; command: {' '.join(['python', *sys.argv])}")
    if not a.save_only:
        clips = [ROOT / "build" / "corpus" / n for n in (CORPUS if a.clips is None else a.clips)]
        if not a.no_long:
            clips.append(joined())
        if a.long2:
            clips.append(joined(second=True))
        rows = []
        print(f"\n### --target-vmaf {a.target:g} ({a.pool}), {a.encoder} preset {cfg['preset']}, "
              f"{'plain' if a.plain else 'ROI'}\n")
        print("| clip | s | frames | samples | probes | CRF | predicted | measured | meas-target | search wall s | "
              "encode wall s | search/encode wall | search/encode CPU |")
        print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for clip in clips:
            r = run_target(clip, cfg, a.target, a.plain, a.pool)
            rows.append(r)
            s = r["samples"]
            samp = "whole" if s.get("whole") else f"{len(s['ranges'])}x{s['ranges'][0][1]} ({s['frames']}/{s['total_frames']})"
            print(f"| {r['clip']} | {r['seconds']:.1f} | {r['frames']} | {samp} | {r['probes']} | {r['crf']:g} | "
                  f"{r['predicted']:.2f} | {r['measured']:.2f} | {r['measured'] - a.target:+.2f} | "
                  f"{r['search_wall']:.1f} | {r['encode_wall']:.1f} | {r['search_wall'] / r['encode_wall']:.2f} | "
                  f"{r['search_cpu'] / r['encode_cpu']:.2f} |", flush=True)
        err = [abs(r["measured"] - a.target) for r in rows]
        perr = [abs(r["measured"] - r["predicted"]) for r in rows]
        print(f"\n|measured - target|: mean {statistics.mean(err):.2f}, worst {max(err):.2f} "
              f"({rows[err.index(max(err))]['clip']}); |measured - predicted|: mean {statistics.mean(perr):.2f}, "
              f"worst {max(perr):.2f}")
        long = [r for r in rows if r["seconds"] >= 60]
        for r in long:
            print(f"search cost on {r['clip']} ({r['seconds']:.0f} s): {r['search_wall'] / r['encode_wall']:.2f} of "
                  f"one full encode (wall), {r['search_cpu'] / r['encode_cpu']:.2f} (CPU)")
    if not a.no_save and a.encoder == "libx264":
        run_save(config_mod.load(None, ["encoder=libx264"]), a.save_crf, a.guard)


if __name__ == "__main__":
    main()
