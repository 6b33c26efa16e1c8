#!/usr/bin/env python3
"""Distil a small, fast saliency student from u2netp (fp32, 320x320) on real content.

    python scripts/train_student.py data   [--out build/student]   # teacher maps on augmented real frames
    python scripts/train_student.py train  [--out build/student]   # train, pick the best epoch on the calib split
    python scripts/train_student.py export [--out build/student]   # ONNX file + its digest
    python scripts/train_student.py all    [--out build/student]   # the three in order
    python scripts/train_student.py all --smoke                   # a tiny end-to-end run (tests)

Needs `pip install torch==2.13.0 onnx pillow` and the corpus (`python scripts/fetch_corpus.py`).

Data. Every frame and photo of the corpus's *train* split (videos: every `--video-step`-th
frame) is augmented with the recipe in `augment()`: a random crop (35-100 % of the area, aspect
0.5-2x), a horizontal flip, colour jitter (brightness, contrast, saturation), sometimes a blur,
sensor noise, and JPEG compression at a low quality. The teacher, u2netp fp32 at 320x320 through
vmaf-roi's own SaliencyModel (so preprocessing is exactly the pipeline's), labels each
augmented image: the student learns the teacher's map of what it sees. The *calib* split
(never trained on) picks the epoch; the *eval* split is not touched here at all
(benchmarks/bench_models.py measures it).

Student. A small encoder-decoder (depthwise-separable convolutions, a global-context branch,
two skip connections) at SIZE x SIZE input, squashed like u2netp's 320x320 input, with the
registry's I/O contract: input `input` float32 [N,3,S,S] RGB/255 ImageNet-normalised, output
`saliency_map` float32 [N,1,S,S] in [0,1] (sigmoid). Loss: BCE + (1 - Pearson correlation)
per image, since per-frame correlation with the teacher is what the project measures.

Reproducible: fixed seeds, a fixed torch thread count (2) for training, augmentation from a seeded numpy
Generator per sample; `export` writes the ONNX bytes and prints their sha256 and the provenance
(commit, seed, data list) to put into model/registry.yaml.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZE = 224          # student input/output side (the teacher runs at 320)
TEACHER_SIZE = 320  # teacher maps are stored at this size, inputs at SIZE
SEED = 20261201


def _corpus():
    sys.path.insert(0, str(ROOT / "scripts"))  # fetch_corpus.py lives beside this script
    from fetch_corpus import load

    return load()


# --- data ------------------------------------------------------------------------------------

def video_frames(path: Path, step: int, limit: int | None = None):
    """RGB frames (HxWx3 uint8) of a video, every `step`-th in decode order."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        n = 0
        for i, f in enumerate(c.decode(s)):
            if i % step:
                continue
            yield f.to_ndarray(format="rgb24")
            n += 1
            if limit and n >= limit:
                return


def photo(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def augment(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random augmentation of an RGB image (see the module docstring)."""
    from PIL import Image, ImageEnhance, ImageFilter

    h, w = rgb.shape[:2]
    area = rng.uniform(0.35, 1.0) * h * w
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0))) * (w / h)
    cw = int(round(min(w, np.sqrt(area * aspect))))
    ch = int(round(min(h, np.sqrt(area / aspect))))
    cw, ch = max(cw, 16), max(ch, 16)
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    im = Image.fromarray(np.ascontiguousarray(rgb[y0:y0 + ch, x0:x0 + cw]))
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.7, 1.3))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.7, 1.3))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.6, 1.4))
    if rng.random() < 0.3:
        im = im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 2.0))))
    a = np.asarray(im).astype(np.float32)
    if rng.random() < 0.4:
        a = a + rng.normal(0.0, rng.uniform(2.0, 8.0), a.shape)
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if rng.random() < 0.6:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(rng.integers(15, 70)))
        buf.seek(0)
        im = Image.open(buf).convert("RGB")
    return np.asarray(im)


def to_size(rgb: np.ndarray, size: int) -> np.ndarray:
    """Squash to size x size as SaliencyModel.model_input does (``saliency.swscale_rgb``).

    salstudent_v1 was trained on swscale's RGB24 output, which its BGR24 output (model_input's
    since) matches within a few levels: a retrained student differs in those."""
    from av.video.reformatter import VideoReformatter

    from vmaf_roi.saliency import swscale_rgb

    f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return np.ascontiguousarray(swscale_rgb(f, size, size, VideoReformatter()))


def compose(bg: np.ndarray, fg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paste a crop of `fg`, scaled to 8-35 % of the width, somewhere on `bg`: scenes with small
    objects at any position (a street seen from far), which crops of the clips rarely give."""
    h, w = bg.shape[:2]
    fh, fw = fg.shape[:2]
    cw, ch = int(fw * rng.uniform(0.4, 1.0)), int(fh * rng.uniform(0.4, 1.0))
    x0, y0 = int(rng.integers(0, fw - cw + 1)), int(rng.integers(0, fh - ch + 1))
    tw = max(8, int(w * rng.uniform(0.08, 0.35)))
    th = max(8, min(h, int(tw * ch / max(cw, 1))))
    piece = av.VideoFrame.from_ndarray(np.ascontiguousarray(fg[y0:y0 + ch, x0:x0 + cw]), format="rgb24")
    piece = piece.reformat(tw, th, "rgb24", interpolation="BILINEAR").to_ndarray()
    out = bg.copy()
    px, py = int(rng.integers(0, w - tw + 1)), int(rng.integers(0, h - th + 1))
    out[py:py + th, px:px + tw] = piece
    return out


def extras(corpus, split: str, count: int, smoke: bool):
    """`count` more samples after the split's own ones: a third composites (`compose`), a third
    augmented video frames and a third augmented photos, each from a generator seeded by its
    number. They come last, so adding them leaves the earlier samples (and their seeds) alone."""
    pool_v = [rgb for name in corpus.names(split, "video")
              for rgb in video_frames(corpus.path(name), 4, 2 if smoke else None)]
    pool_p = [photo(corpus.path(n)) for n in corpus.names(split, "photo")[: 2 if smoke else None]]
    pool = pool_v + pool_p
    for t in range(count):
        rng = np.random.default_rng([SEED, 7, t])
        kind = t % 3
        while True:  # skip flat pictures (a black frame teaches nothing)
            if kind == 0:
                bg = augment(pool[int(rng.integers(len(pool)))], rng)
                img = compose(bg, pool[int(rng.integers(len(pool)))], rng)
            elif kind == 1 or not pool_p:
                img = augment(pool_v[int(rng.integers(len(pool_v)))], rng)
            else:
                img = augment(pool_p[int(rng.integers(len(pool_p)))], rng)
            if img.std() >= 8:
                break
        yield f"extra~{t}", img, False


def sources(corpus, split: str, video_step: int, photo_aug: int, video_aug: int, smoke: bool, extra: int = 0):
    """(name, rgb, augment?) items of one split."""
    for name in corpus.names(split, "video"):
        lim = 3 if smoke else None
        for k, rgb in enumerate(video_frames(corpus.path(name), video_step, lim)):
            yield f"{name}#{k}", rgb, False
            for j in range(video_aug):
                yield f"{name}#{k}~{j}", rgb, True
    for name in corpus.names(split, "photo")[: 2 if smoke else None]:
        rgb = photo(corpus.path(name))
        yield f"{name}", rgb, False
        for j in range(photo_aug if not smoke else 2):
            yield f"{name}~{j}", rgb, True
    if extra:
        yield from extras(corpus, split, 6 if smoke else extra, smoke)


def build_data(out: Path, smoke: bool, model_dir: Path | None, log, size: int = SIZE, extra: int = 0) -> None:
    """Augmented inputs at `size` (`<split>-<size>.npz`) and the teacher's maps at 320
    (`teacher-<split>.npz`). Teacher maps already there (same sample names) are reused: the
    augmentations are seeded per sample, so only the cheap input side is recomputed."""
    from vmaf_roi.registry import REFERENCE_MODEL
    from vmaf_roi.saliency import SaliencyModel, resize_map

    corpus = _corpus()
    teacher = None
    out.mkdir(parents=True, exist_ok=True)
    plan = {
        "train": dict(video_step=2, photo_aug=24, video_aug=1, extra=extra),
        "calib": dict(video_step=5, photo_aug=0, video_aug=0),
    }
    for split, kw in plan.items():
        tfile = out / f"teacher-{split}.npz"
        cached = None
        if tfile.exists():
            d = np.load(tfile)
            cached = dict(zip(d["names"].tolist(), d["y"]))
        xs, ys, names = [], [], []
        t0 = time.time()
        for i, (name, rgb, aug) in enumerate(sources(corpus, split, smoke=smoke, **kw)):
            rng = np.random.default_rng([SEED, i, 0 if split == "train" else 1])
            img = augment(rgb, rng) if aug else rgb
            if cached is not None and name in cached:
                y = cached[name]
            else:
                if teacher is None:
                    teacher = SaliencyModel(REFERENCE_MODEL, device="cpu", cache_dir=model_dir)
                m = teacher.maps([img])[0]  # teacher map at image size, via the pipeline's own path
                y = np.round(resize_map(m, TEACHER_SIZE, TEACHER_SIZE) * 255).astype(np.uint8)
            xs.append(to_size(img, size))
            ys.append(y)
            names.append(name)
            if i % 200 == 0:
                log(f"data: {split} {i} samples, {time.time() - t0:.0f} s")
        np.savez_compressed(tfile, y=np.stack(ys), names=np.array(names))
        np.savez(out / f"{split}-{size}.npz", x=np.stack(xs), names=np.array(names))
        log(f"data: {split}: {len(xs)} samples in {time.time() - t0:.0f} s")


# --- model -----------------------------------------------------------------------------------

def make_student(width: int = 16):
    import torch
    from torch import nn

    def cbr(i, o, k=3, s=1, d=1, groups=1):
        return nn.Sequential(nn.Conv2d(i, o, k, s, padding=d * (k // 2), dilation=d, groups=groups, bias=False),
                             nn.BatchNorm2d(o), nn.ReLU(inplace=True))

    def ds(i, o, s=1, d=1):  # depthwise-separable
        return nn.Sequential(cbr(i, i, 3, s, d, groups=i), cbr(i, o, 1))

    c1, c2, c3, c4 = width, 2 * width, 3 * width, 4 * width

    class Student(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
            self.stem = cbr(3, c1, 3, 2)                     # /2
            self.e1 = nn.Sequential(ds(c1, c2, 2), ds(c2, c2))            # /4
            self.e2 = nn.Sequential(ds(c2, c3, 2), ds(c3, c3), ds(c3, c3, d=2))  # /8
            self.e3 = nn.Sequential(ds(c3, c4, 2), ds(c4, c4), ds(c4, c4, d=2), ds(c4, c4, d=4))  # /16
            self.ctx = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c4, c4, 1), nn.ReLU(inplace=True))
            self.d3 = cbr(2 * c4, c3, 1)
            self.d2 = ds(c3 + c3, c2)
            self.d1 = ds(c2 + c2, c1)
            self.head = nn.Conv2d(c1, 1, 3, padding=1)

        def forward(self, x):
            import torch.nn.functional as F

            h, w = x.shape[-2:]
            s1 = self.e1(self.stem(x))
            s2 = self.e2(s1)
            s3 = self.e3(s2)
            g = self.ctx(s3).expand_as(s3)
            y = self.d3(torch.cat([s3, g], 1))
            y = F.interpolate(y, size=s2.shape[-2:], mode="bilinear", align_corners=False)
            y = self.d2(torch.cat([y, s2], 1))
            y = F.interpolate(y, size=s1.shape[-2:], mode="bilinear", align_corners=False)
            y = self.d1(torch.cat([y, s1], 1))
            y = self.head(y)
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
            return torch.sigmoid(y)

    return Student()


def _tensors(out: Path, split: str, size: int):
    """Normalised inputs [N,3,S,S] and teacher maps [N,1,S,S] (swscale-resized from 320)."""
    import torch

    from vmaf_roi.saliency import resize_map

    d, t = np.load(out / f"{split}-{size}.npz"), np.load(out / f"teacher-{split}.npz")
    if d["names"].tolist() != t["names"].tolist():
        raise SystemExit(f"{split}: inputs and teacher maps list different samples; rerun the data step")
    x = torch.from_numpy(d["x"]).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (x - mean) / std
    ys = np.stack([resize_map(m.astype(np.float32) / 255.0, size, size) for m in t["y"]])
    y = torch.from_numpy(ys).float().unsqueeze(1)
    return x, y


def _corr(p, t):
    import torch

    p = p.flatten(1) - p.flatten(1).mean(1, keepdim=True)
    t = t.flatten(1) - t.flatten(1).mean(1, keepdim=True)
    return (p * t).sum(1) / torch.sqrt((p * p).sum(1) * (t * t).sum(1) + 1e-8)


def jitter(x, y, g):
    """Augmentation on the fly that keeps the teacher's map (near) valid, applied to input and
    target alike: a horizontal flip, a zoom of 1-1.4x with a shift, and brightness/contrast."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    flip = (torch.rand(n, generator=g) < 0.5).float() * 2 - 1  # -1: mirror
    zoom = 1.0 / (1.0 + 0.4 * torch.rand(n, generator=g))
    tx = (torch.rand(n, generator=g) * 2 - 1) * (1 - zoom)
    ty = (torch.rand(n, generator=g) * 2 - 1) * (1 - zoom)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = zoom * flip
    theta[:, 1, 1] = zoom
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    y = F.grid_sample(y, grid, mode="bilinear", padding_mode="border", align_corners=False)
    a = 1 + (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * 0.2
    b = (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * 0.2
    return x * a + b, y


def train(out: Path, epochs: int, width: int, log, threads: int = 2, size: int = SIZE,
          online: bool = False, weight_decay: float = 1e-4) -> dict:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(SEED)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    xt, yt = _tensors(out, "train", size)
    xv, yv = _tensors(out, "calib", size)
    model = make_student(width)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=weight_decay)
    steps_per_epoch = max(1, (len(xt) + 15) // 16)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps_per_epoch, pct_start=0.15)
    g = torch.Generator().manual_seed(SEED)
    best = {"corr": -1.0, "epoch": -1}
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        t0, tot = time.time(), 0.0
        for b in range(steps_per_epoch):
            idx = perm[b * 16:(b + 1) * 16]
            x, y = xt[idx], yt[idx]
            if online:
                x, y = jitter(x, y, g)
            else:  # flips only
                flip = torch.rand(len(idx), generator=g) < 0.5
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
                y = torch.where(flip.view(-1, 1, 1, 1), y.flip(-1), y)
            p = model(x)
            loss = F.binary_cross_entropy(p, y) + (1 - _corr(p, y)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach())
        model.eval()
        with torch.no_grad():
            cv = torch.cat([_corr(model(xv[i:i + 32]), yv[i:i + 32]) for i in range(0, len(xv), 32)])
        c = float(cv.mean())
        log(f"train: epoch {ep + 1}/{epochs} loss {tot / steps_per_epoch:.4f} calib corr {c:.4f} "
            f"(worst {float(cv.min()):.3f}) {time.time() - t0:.0f} s")
        if c > best["corr"]:
            best = {"corr": c, "corr_min": float(cv.min()), "epoch": ep + 1}
            torch.save(model.state_dict(), out / "student.pt")
    best["width"] = width
    best["epochs"] = epochs
    best["threads"] = threads
    best["online"] = online
    best["weight_decay"] = weight_decay
    best["size"] = size
    best["train_samples"] = len(xt)
    best["calib_samples"] = len(xv)
    (out / "train.json").write_text(json.dumps(best, indent=1))
    return best


def export(out: Path, log) -> str:
    import hashlib

    import torch

    info = json.loads((out / "train.json").read_text())
    model = make_student(info["width"])
    model.load_state_dict(torch.load(out / "student.pt"))
    model.eval()
    x = torch.zeros(1, 3, info["size"], info["size"])
    path = out / "salstudent.onnx"
    torch.onnx.export(model, x, str(path), input_names=["input"], output_names=["saliency_map"],
                      dynamic_axes={"input": {0: "N"}, "saliency_map": {0: "N"}}, opset_version=17,
                      dynamo=False)
    # strip the doc string that carries the torch version and file paths: stable bytes
    import onnx

    m = onnx.load(str(path))
    m.producer_version = ""
    m.doc_string = ""
    data = m.SerializeToString()
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "unknown"
    prov = {"sha256": digest, "size_bytes": len(data), "seed": SEED, "commit": commit, **info}
    (out / "provenance.json").write_text(json.dumps(prov, indent=1))
    log(f"export: {path} sha256 {digest} ({len(data)} bytes)")
    return digest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Distil a fast saliency student from u2netp on real content.")
    ap.add_argument("step", choices=("data", "train", "export", "all"))
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "student")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--extra", type=int, default=0, help="extra composite/augmented samples (see extras())")
    ap.add_argument("--online", action="store_true", help="zoom/shift/brightness jitter on the fly, not only flips")
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--width", type=int, default=16, help="channels of the first stage (default 16)")
    ap.add_argument("--size", type=int, default=SIZE, help=f"student input side (default {SIZE})")
    ap.add_argument("--model-dir", type=Path, default=None, help="model cache holding u2netp.onnx")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training (default 2; "
                    "the registry's file was trained with 2: other counts may give other bytes)")
    ap.add_argument("--smoke", action="store_true", help="tiny data and 1 epoch: checks the script end to end")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    epochs = 1 if args.smoke else args.epochs
    if args.step in ("data", "all"):
        build_data(args.out, args.smoke, args.model_dir, log, args.size, args.extra)
    if args.step in ("train", "all"):
        train(args.out, epochs, args.width, log, args.threads, args.size, args.online, args.weight_decay)
    if args.step in ("export", "all"):
        print(export(args.out, log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
