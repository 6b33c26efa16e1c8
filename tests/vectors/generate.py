"""Generate the shared planner test vectors from ``vmaf_roi.roi.plan``.

    PYTHONPATH=src python tests/vectors/generate.py           # rewrite the files
    PYTHONPATH=src python tests/vectors/generate.py --check   # exit 1 if they are stale

Each case is a uint8 saliency map ``<name>.pgm`` (binary PGM, any size) plus an entry in
``cases.json``: the frame size, the planner parameters and the expected ROI list as
``[top, bottom, left, right, qoffset_num, qoffset_den]`` rows in order (the fraction is not
reduced, as the C filter writes it).  ``sequences`` in ``cases.json`` are temporal cases: one
PGM holds a map per frame, stacked top to bottom, and ``regions`` a list per frame (each frame
is planned on its own map; roi.Planner's re-planning cache must not change that).
``tests/test_vectors.py`` checks roi.py against them,
``tests/test_plugin.py`` checks the salroi filter of the built ffmpeg.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "src"))

from vmaf_roi.roi import PlannerParams, plan


def write_pgm(path: Path, m: np.ndarray) -> bytes:
    h, w = m.shape
    data = b"P5\n%d %d\n255\n" % (w, h) + np.ascontiguousarray(m, dtype=np.uint8).tobytes()
    return data


def read_pgm(path: Path) -> np.ndarray:
    """Read a binary PGM as written by this script (no comments, maxval 255)."""
    data = path.read_bytes()
    head = re.match(rb"P5\s+(\d+)\s+(\d+)\s+255\s", data)
    if not head:
        raise ValueError(f"{path}: not a P5 maxval-255 PGM")
    w, h = int(head[1]), int(head[2])
    pix = data[head.end():]
    if len(pix) != w * h:
        raise ValueError(f"{path}: expected {w * h} bytes of pixels, got {len(pix)}")
    return np.frombuffer(pix, dtype=np.uint8).reshape(h, w)


def _blob(w: int, h: int, cx: float, cy: float, r: float) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    d = np.hypot((x - cx) / r, (y - cy) / r)
    return np.clip(255 * np.exp(-(d**2)), 0, 255).astype(np.uint8)


def cases() -> list[tuple[str, np.ndarray, int, int, PlannerParams]]:
    rng = np.random.default_rng(20240608)
    out: list[tuple[str, np.ndarray, int, int, PlannerParams]] = []

    # a soft blob, map the size of the frame
    out.append(("blob_same_size", _blob(64, 48, 30, 20, 14), 64, 48, PlannerParams()))
    # map smaller than the frame, frame not a multiple of the block size
    out.append(("blob_small_map", _blob(20, 15, 7, 9, 5), 100, 70, PlannerParams(strength=7.3)))
    # map larger than the frame
    out.append(("blob_large_map", _blob(200, 120, 130, 40, 35), 64, 36,
                PlannerParams(block=8, strength=5.5, max_offset=4)))
    # mode lower
    out.append(("blob_lower", _blob(48, 48, 24, 24, 12), 96, 96,
                PlannerParams(mode="lower", strength=9.0)))
    # qp_scale for libvpx-vp9 (8x8 blocks)
    out.append(("blob_vp9", _blob(40, 30, 10, 10, 8), 80, 60,
                PlannerParams(block=8, strength=20.0, max_offset=40, qp_scale=255)))
    # hard-edged object on a black background, odd frame size
    m = np.zeros((17, 33), np.uint8)
    m[4:12, 10:25] = 255
    out.append(("box_odd_size", m, 33, 17, PlannerParams(block=4, strength=3.0, max_offset=3)))
    # exact halves: block sums 255 over 4 pixels -> s = 0.25 -> d = strength * 0.5
    m = np.full((8, 8), 128, np.uint8)  # neutral: |d| < 0.5 for these strengths
    m[0:2, 0:2] = [[64, 64], [64, 63]]      # s = 0.25
    m[0:2, 4:6] = [[191, 191], [192, 191]]  # sum 765 -> s = 0.75
    m[4:6, 2:4] = 255
    for strength in (1.0, 3.0, 5.0):
        out.append((f"halves_s{int(strength)}", m, 8, 8,
                    PlannerParams(block=2, strength=strength, max_offset=10)))
    # strength 0: no regions at all
    out.append(("zero_strength", _blob(32, 32, 16, 16, 6), 64, 64, PlannerParams(strength=0.0)))
    # uniform mid-gray: 2*s-1 = 1/255, no regions at strength 6 (|d| < 0.5)
    out.append(("flat_gray", np.full((10, 10), 128, np.uint8), 64, 64, PlannerParams()))
    # budget: noise forces block doubling
    noise = rng.integers(0, 256, size=(40, 56), dtype=np.uint8)
    out.append(("noise_budget", noise, 112, 80, PlannerParams(block=4, max_regions=6)))
    # budget down to a single block covering the frame (checkerboard, max_regions 1)
    cb = np.where(np.indices((16, 16)).sum(axis=0) % 2 == 1, 255, 60).astype(np.uint8)
    out.append(("checker_one_region", cb, 48, 40,
                PlannerParams(block=8, strength=4.0, max_regions=1)))
    # block of one pixel
    out.append(("block1", rng.integers(0, 256, size=(6, 9), dtype=np.uint8), 9, 6,
                PlannerParams(block=1, strength=2.0, max_offset=2, max_regions=1000)))
    # rectangles that merge vertically and ones that must not (different columns)
    m = np.zeros((64, 64), np.uint8)
    m[0:32, 0:32] = 255
    m[32:64, 0:16] = 255
    m[16:48, 40:64] = 200
    out.append(("merge_shapes", m, 64, 64, PlannerParams(block=8, strength=6.0)))
    # random smooth maps with random parameters
    for i in range(16):
        h, w = (int(v) for v in rng.integers(4, 48, size=2))
        fw, fh = (int(v) for v in rng.integers(16, 160, size=2))
        base = rng.random((max(1, h // 4), max(1, w // 4)))
        smooth = np.kron(base, np.ones((4, 4)))[:h, :w]
        m = np.zeros((h, w))
        m[: smooth.shape[0], : smooth.shape[1]] = smooth
        m = np.clip(m * 255 + rng.normal(0, 20, size=(h, w)), 0, 255).astype(np.uint8)
        params = PlannerParams(
            block=int(rng.choice([4, 8, 16, 32])),
            strength=float(np.round(rng.uniform(0, 15), 3)),
            max_offset=int(rng.integers(0, 15)),
            mode=str(rng.choice(["both", "lower"])),  # type: ignore[arg-type]  (balanced: below)
            max_regions=int(rng.choice([1, 3, 10, 50, 200])),
            qp_scale=int(rng.choice([51, 63, 255])),
        )
        out.append((f"random_{i:02d}", m, fw, fh, params))
    # many regions: real-sized frames, smooth maps, budgets that bite or nearly do
    rng = np.random.default_rng(20261201)
    i = 0
    while i < 10:
        h, w = (int(v) for v in rng.integers(24, 200, size=2))
        fw, fh = int(rng.integers(160, 1281)), int(rng.integers(90, 721))
        cell = int(rng.integers(3, 12))
        base = rng.random((h // cell + 1, w // cell + 1))
        smooth = np.kron(base, np.ones((cell, cell)))[:h, :w]
        m = np.clip(smooth * 255 + rng.normal(0, 12, size=(h, w)), 0, 255).astype(np.uint8)
        params = PlannerParams(
            block=int(rng.choice([8, 16, 16, 32])),
            strength=float(np.round(rng.uniform(2, 9), 3)),
            max_offset=int(rng.integers(2, 11)),
            mode=str(rng.choice(["both", "both", "lower"])),  # type: ignore[arg-type]
            max_regions=int(rng.choice([32, 64, 128, 128, 256])),
            qp_scale=51,
        )
        if len(plan(m, fw, fh, params)) >= 12:  # keep only cases with many regions
            out.append((f"many_{i:02d}", m, fw, fh, params))
            i += 1
    # mode balanced: small bright objects on a dark map (background raise scaled down) and
    # mostly-salient maps (no scaling), so both branches of the rule are pinned
    rng = np.random.default_rng(20261202)
    for i in range(8):
        h, w = (int(v) for v in rng.integers(24, 160, size=2))
        fw, fh = int(rng.integers(160, 1281)), int(rng.integers(90, 721))
        m = rng.normal(30 if i % 2 == 0 else 170, 15, size=(h, w))
        for _ in range(int(rng.integers(1, 5))):
            y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
            m[y0:y0 + int(rng.integers(2, max(3, h // 3))), x0:x0 + int(rng.integers(2, max(3, w // 3)))] = 240
        m = np.clip(m, 0, 255).astype(np.uint8)
        params = PlannerParams(
            block=int(rng.choice([8, 16, 16, 32])),
            strength=float(np.round(rng.uniform(2, 9), 3)),
            max_offset=int(rng.integers(2, 11)),
            mode="balanced",
            max_regions=int(rng.choice([16, 64, 128])),
            qp_scale=51,
        )
        out.append((f"balanced_{i:02d}", m, fw, fh, params))
    return out


def sequences() -> list[tuple[str, list[np.ndarray], int, int, PlannerParams]]:
    """Temporal cases: a map per frame, as an encode hands them over (a blob drifting, maps
    blended between two model runs), so consecutive frames often keep their block offsets."""
    out = []
    maps = [_blob(96, 54, 30 + 1.5 * t, 25 + 0.5 * t, 14) for t in range(8)]
    out.append(("seq_drift", maps, 640, 360, PlannerParams(strength=4.0)))
    a, b = _blob(64, 36, 16, 18, 9), _blob(64, 36, 46, 12, 11)
    blend = [np.rint((1 - j / 7) * a.astype(np.float32) + j / 7 * b.astype(np.float32)).astype(np.uint8)
             for j in range(8)]
    out.append(("seq_blend", blend, 1280, 720, PlannerParams(strength=4.0, max_regions=48)))
    cut = [a] * 3 + [b] * 3 + [np.full((36, 64), 128, np.uint8)] * 2  # a scene cut, then nothing salient
    out.append(("seq_cut", cut, 320, 180, PlannerParams(block=8, strength=6.0, mode="lower")))
    return out


def build() -> dict[str, bytes]:
    """File name -> content for the whole vector set."""
    files: dict[str, bytes] = {}
    entries = []
    for name, m, width, height, params in cases():
        files[f"{name}.pgm"] = write_pgm(Path(name), m)
        regions = plan(m, width, height, params)
        entries.append({
            "name": name,
            "map": f"{name}.pgm",
            "width": width,
            "height": height,
            "params": dataclasses.asdict(params),  # block, strength, max_offset, mode, max_regions, qp_scale
            "regions": [list(r.as_tuple()) for r in regions],
        })
    seqs = []
    for name, maps, width, height, params in sequences():
        files[f"{name}.pgm"] = write_pgm(Path(name), np.concatenate(maps))  # frames stacked top to bottom
        seqs.append({
            "name": name,
            "map": f"{name}.pgm",
            "frames": len(maps),
            "width": width,
            "height": height,
            "params": dataclasses.asdict(params),  # block, strength, max_offset, mode, max_regions, qp_scale
            "regions": [[list(r.as_tuple()) for r in plan(m, width, height, params)] for m in maps],
        })
    text = json.dumps({"generator": "tests/vectors/generate.py", "cases": entries, "sequences": seqs}, indent=1)
    # one region per line: [top, bottom, left, right, num, den]
    text = re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]", lambda mt: "[" + ", ".join(mt[1].split()).replace(",,", ",") + "]", text)
    files["cases.json"] = (text + "\n").encode()
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the files on disk are stale")
    args = ap.parse_args()
    files = build()
    if args.check:
        stale = [n for n, data in files.items()
                 if not (HERE / n).is_file() or (HERE / n).read_bytes() != data]
        extra = sorted(p.name for p in HERE.glob("*.pgm") if p.name not in files)
        if stale or extra:
            print(f"stale vector files: {stale + extra}; run {Path(__file__).name}",
                  file=sys.stderr)
            return 1
        return 0
    for p in HERE.glob("*.pgm"):
        if p.name not in files:
            p.unlink()
    for n, data in files.items():
        (HERE / n).write_bytes(data)
    print(f"wrote {len(files)} files to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
