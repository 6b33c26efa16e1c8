#!/usr/bin/env python3
"""Turn the development eye-tracking sets into vmaf-roi's gaze file format (docs/gaze.md).

    python scripts/gaze_convert.py nus ../shared/gaze/nus-scene OUT_DIR   # OUT_DIR/NNN.csv, one per photo
    python scripts/gaze_convert.py ucf ../shared/gaze/ucf-sports-diving OUT_DIR
        # OUT_DIR/diving.csv (one row per fixation pixel, frame = PNG's index) and OUT_DIR/diving.mkv
        # (the frames as a lossless video, for encode/score/compare)

The data stays where it is: nothing is copied into the repository. The readers are also used
by benchmarks/bench_gaze.py.

- NUS Scene (``tidy/fixations.mat``): a 500 x 12 cell array (images x viewers); each cell an
  array of fixations, columns **row (y), column (x)**, onset, duration, in the image's own
  pixels. The order was checked: read as (x, y), 2,413 of the 10,904 fixations on the
  non-square photos 001-350 fall outside the picture; read as (y, x), none do. Points are
  1-based MATLAB pixel positions; they are written as pixel centres (x - 0.5, y - 0.5).
- UCF-Sports Diving-Side-001 (Mathe & Sminchisescu's recordings as redistributed): per frame a
  binary PNG whose 255 pixels are gaze points of all viewers together; viewers are not known,
  so the file has no viewer column. Points are the pixels' centres.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from vmaf_roi.gaze import write_gaze  # noqa: E402


def nus_images(root: str | Path, ids=range(1, 351)):
    """(id, image path, (width, height), frames, xs, ys, viewers) per photo with fixations."""
    import scipy.io as sio

    root = Path(root)
    fix = sio.loadmat(root / "tidy" / "fixations.mat")["fixations"]
    sizes = sio.loadmat(root / "tidy" / "imgInfo.mat")["imgInfo"][0, 0]["size"]
    for i in ids:
        img = root / "stimuli" / f"{i:03d}.jpg"
        if not img.is_file():
            continue
        h, w = (int(v) for v in sizes[i - 1])
        xs, ys, vs = [], [], []
        for v in range(fix.shape[1]):
            cell = fix[i - 1, v]
            if cell.size == 0:
                continue
            ys.append(cell[:, 0] - 0.5)
            xs.append(cell[:, 1] - 0.5)
            vs += [f"v{v + 1:02d}"] * cell.shape[0]
        if not vs:
            continue
        x = np.clip(np.concatenate(xs), 0, w)
        y = np.clip(np.concatenate(ys), 0, h)
        yield i, img, (w, h), np.zeros(x.size, np.int64), x, y, vs


def ucf_frames(root: str | Path):
    """(frame paths, (width, height), frames, xs, ys) of the diving clip."""
    from PIL import Image

    root = Path(root)
    # two of the frames are JPEG files, the others PNG: match them by name without the suffix
    images = sorted((p for p in (root / "images").iterdir() if p.suffix in (".png", ".jpg")), key=lambda p: p.stem)
    fixes = sorted((root / "fixation").glob("*.png"), key=lambda p: p.stem)
    if [p.stem for p in images] != [p.stem for p in fixes]:
        raise SystemExit(f"{root}: images/ and fixation/ do not hold the same frames")
    frames, xs, ys = [], [], []
    w = h = 0
    for k, p in enumerate(fixes):
        a = np.asarray(Image.open(p))
        if a.ndim == 3:
            a = a[..., 0]
        h, w = a.shape
        yy, xx = np.nonzero(a == 255)
        frames.append(np.full(xx.size, k, np.int64))
        xs.append(xx + 0.5)
        ys.append(yy + 0.5)
    return images, (w, h), np.concatenate(frames), np.concatenate(xs), np.concatenate(ys)


def write_video(images, out: Path, fps: int = 25) -> None:
    """The frames as a lossless FFV1 Matroska video (yuv444p: no chroma loss), ``fps`` per second."""
    import av
    from PIL import Image

    with av.open(str(out), "w") as c:
        s = c.add_stream("ffv1", rate=fps)
        first = np.asarray(Image.open(images[0]).convert("RGB"))
        s.width, s.height, s.pix_fmt = first.shape[1], first.shape[0], "yuv444p"
        for p in images:
            f = av.VideoFrame.from_ndarray(np.asarray(Image.open(p).convert("RGB")), format="rgb24")
            for pkt in s.encode(f.reformat(format="yuv444p")):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set", choices=["nus", "ucf"])
    ap.add_argument("root", help="the data set's folder (../shared/gaze/nus-scene or ../shared/gaze/ucf-sports-diving)")
    ap.add_argument("out_dir")
    ap.add_argument("--fps", type=int, default=25, help="ucf: the frame rate of the video written (default 25)")
    a = ap.parse_args(argv)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if a.set == "nus":
        n = 0
        for i, img, (w, h), fr, x, y, v in nus_images(a.root):
            write_gaze(out / f"{i:03d}.csv", fr, x, y, v,
                       header_comment=f"NUS Scene {img.name}, {w}x{h}, free viewing; frame 0 = the photo")
            n += 1
        print(f"wrote {n} gaze files to {out}")
    else:
        images, (w, h), fr, x, y = ucf_frames(a.root)
        write_gaze(out / "diving.csv", fr, x, y,
                   header_comment=f"UCF-Sports Diving-Side-001, {w}x{h}, {len(images)} frames; viewers pooled")
        write_video(images, out / "diving.mkv", a.fps)
        print(f"wrote {out / 'diving.csv'} ({x.size} points, {len(images)} frames) and {out / 'diving.mkv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
