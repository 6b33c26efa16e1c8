#!/usr/bin/env python3
"""Saliency measured against people: how well each map predicts where viewers looked.

    python benchmarks/bench_gaze.py [--gaze ../shared/gaze] [--split heldout|train|all] [--write]

Data (read in place, never copied; ``../shared/gaze/README.md``):

- **nus-scene**: NUS Scene photos 001-350, free viewing, 10-12 viewers per photo. A fixed
  split by image: photo ids divisible by 3 are *held out* (116 photos), the others are the
  *train* split (234) that the attention model's fusion was fitted on (scripts/fit_attention.py).
- **ucf-sports-diving**: UCF-Sports Diving-Side-001, 54 frames with the pooled gaze of its
  viewers (who is who is not recorded): held out whole.

Maps: every registry model that is not a placeholder, a centre prior (a Gaussian of sigma 0.22
of each side, as in FACTS), 0.5*u2netp + 0.5*centre, and the default model. Measures per photo or
frame, then the mean (scripts/../src/vmaf_roi/gaze.py):

- NSS at the fixations; CC against the fixation density (blurred by 1 degree = width/30);
- shuffled AUC: the fixations against the fixations of the *other* photos or frames of the set;
- the inter-observer ceiling: each viewer's fixations against the density of the others (NSS;
  NUS only, where viewers are known).

Each photo or frame is evaluated at its own aspect ratio with the longer side at most
``--eval-side`` pixels (default 512); maps are resized to it bilinearly. Component maps are cached
under ``build/gaze-cache`` (keyed by model digest) for scripts/fit_attention.py.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from vmaf_roi import gaze  # noqa: E402
from vmaf_roi.registry import DEFAULT_MODEL, load_registry  # noqa: E402

CENTRE_SIGMA = 0.22
SEED = 20261207


class Item:
    """One photo or video frame: its picture at evaluation size and its fixations there."""

    def __init__(self, dataset: str, name: str, split: str, rgb_path: Path, size: tuple[int, int],
                 xs, ys, viewers, scale: float):
        self.dataset, self.name, self.split, self.rgb_path = dataset, name, split, rgb_path
        self.w, self.h = size  # evaluation size
        self.xs, self.ys, self.viewers = np.asarray(xs) * scale, np.asarray(ys) * scale, viewers
        self._rgb = None

    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            from PIL import Image

            im = Image.open(self.rgb_path).convert("RGB")
            if im.size != (self.w, self.h):
                im = im.resize((self.w, self.h), Image.BILINEAR)
            self._rgb = np.asarray(im)
        return self._rgb

    def recording(self) -> gaze.GazeRecording:
        names = tuple(sorted(set(self.viewers))) if self.viewers is not None else ()
        vid = (np.array([names.index(v) for v in self.viewers], np.int64) if names
               else np.full(len(self.xs), -1, np.int64))
        return gaze.GazeRecording(self.w, self.h, np.zeros(len(self.xs), np.int64), np.clip(self.xs, 0, self.w),
                                  np.clip(self.ys, 0, self.h), vid, names)


def eval_size(w: int, h: int, side: int) -> tuple[tuple[int, int], float]:
    s = min(1.0, side / max(w, h))
    return (max(1, round(w * s)), max(1, round(h * s))), s


def nus_split(i: int) -> str:
    return "heldout" if i % 3 == 0 else "train"


def load_items(root: Path, side: int) -> list[Item]:
    from gaze_convert import nus_images, ucf_frames

    items: list[Item] = []
    nus = root / "nus-scene"
    if nus.is_dir():
        for i, img, (w, h), _fr, x, y, v in nus_images(nus):
            size, s = eval_size(w, h, side)
            items.append(Item("nus-scene", f"{i:03d}", nus_split(i), img, size, x, y, v, s))
    ucf = root / "ucf-sports-diving"
    if ucf.is_dir():
        images, (w, h), fr, x, y = ucf_frames(ucf)
        size, s = eval_size(w, h, side)
        for k, p in enumerate(images):
            sel = fr == k
            items.append(Item("ucf-sports-diving", p.stem, "heldout", p, size, x[sel], y[sel], None, s))
    return items


def centre_prior(w: int, h: int, sigma: float = CENTRE_SIGMA) -> np.ndarray:
    from vmaf_roi.attention import centre_prior as gaussian

    return gaussian(h, w, sigma, sigma)


class ModelMaps:
    """A registry model's maps of the items, cached per model digest."""

    def __init__(self, model_id: str, cache: Path):
        from vmaf_roi.registry import get_spec

        self.id = model_id
        self.spec = get_spec(model_id)
        self.dir = cache / f"{model_id}-{self.spec.sha256[:12]}"
        self._model = None

    def __call__(self, item: Item) -> np.ndarray:
        from vmaf_roi.saliency import SaliencyModel, resize_map

        f = self.dir / item.dataset / f"{item.name}-{item.w}x{item.h}.npy"
        if f.exists():
            return np.load(f).astype(np.float32)
        if self._model is None:
            self._model = SaliencyModel(self.id, device="cpu")
        m = self._model.predict(self._model.model_input(item.rgb()))[0]
        m = resize_map(m, item.w, item.h)
        f.parent.mkdir(parents=True, exist_ok=True)
        np.save(f, m.astype(np.float16))
        return m


def shuffled_negatives(items: list[Item], k: int, per: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Fixations of the other items of the same data set, in item k's coordinates (relative
    positions scaled), at most ``per`` of them (a fixed random choice)."""
    me = items[k]
    ox, oy = [], []
    for j, it in enumerate(items):
        if j != k and it.dataset == me.dataset:
            ox.append(it.xs / it.w * me.w)
            oy.append(it.ys / it.h * me.h)
    x, y = np.concatenate(ox), np.concatenate(oy)
    if x.size > per:
        pick = np.random.default_rng(SEED + k).choice(x.size, per, replace=False)
        x, y = x[pick], y[pick]
    return x, y


def score_items(items: list[Item], maps: dict[str, callable]) -> dict[str, dict[str, list[float]]]:
    """Per map name: lists of NSS, CC, sAUC over the items (same order)."""
    out = {name: {"nss": [], "cc": [], "sauc": []} for name in maps}
    out["ceiling"] = {"nss": [], "cc": [], "sauc": []}
    for k, it in enumerate(items):
        dens = gaze.points_density(it.xs, it.ys, it.w, it.h, gaze.default_sigma(it.w, it.h))
        nx, ny = shuffled_negatives(items, k)
        for name, fn in maps.items():
            m = fn(it)
            out[name]["nss"].append(gaze.nss(m, it.xs, it.ys))
            out[name]["cc"].append(gaze.cc(m, dens))
            out[name]["sauc"].append(gaze.sauc(m, it.xs, it.ys, nx, ny))
        rec = it.recording()
        out["ceiling"]["nss"].append(gaze.inter_observer_nss(rec, 0) if rec.viewers_known else float("nan"))
        out["ceiling"]["cc"].append(float("nan"))
        out["ceiling"]["sauc"].append(float("nan"))
    return out


def default_maps(cache: Path) -> dict[str, callable]:
    reg = load_registry()
    maps: dict[str, callable] = {"centre prior": lambda it: centre_prior(it.w, it.h)}
    u2 = ModelMaps("u2netp", cache)
    maps["0.5 u2netp + 0.5 centre"] = lambda it: 0.5 * u2(it) + 0.5 * centre_prior(it.w, it.h)
    for mid, spec in reg.items():
        if spec.placeholder or getattr(spec, "component", False):
            continue
        maps[mid + (" (default)" if mid == DEFAULT_MODEL else "")] = ModelMaps(mid, cache)
    return maps


def _mean(v: list[float]) -> float:
    a = np.asarray(v, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


def table(items: list[Item], res: dict, title: str) -> str:
    n_fix = sum(len(it.xs) for it in items)
    lines = [f"\n**{title}** ({len(items)} {'frames' if 'ucf' in title else 'photos'}, {n_fix} fixation points)\n",
             "| map | NSS | CC | sAUC |", "|---|---:|---:|---:|"]
    for name, m in res.items():
        if name == "ceiling":
            continue
        lines.append(f"| {name} | {_mean(m['nss']):.3f} | {_mean(m['cc']):.3f} | {_mean(m['sauc']):.3f} |")
    c = _mean(res["ceiling"]["nss"])
    lines.append(f"| other viewers (ceiling) | {c:.3f} | | |" if np.isfinite(c)
                 else "| other viewers (ceiling) | n/a: viewers not recorded | | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gaze", default=str(ROOT.parent / "shared" / "gaze"), help="the gaze data folder")
    ap.add_argument("--split", default="heldout", choices=["heldout", "train", "all"])
    ap.add_argument("--eval-side", type=int, default=512)
    ap.add_argument("--cache", default=str(ROOT / "build" / "gaze-cache"))
    ap.add_argument("--only", action="append", default=[], help="score only these map names (repeatable)")
    ap.add_argument("--write", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    a = ap.parse_args(argv)
    root = Path(a.gaze)
    if not root.is_dir():
        print(f"bench_gaze: {root} not found (the development gaze data)", file=sys.stderr)
        return 2
    t0 = time.time()
    items = [it for it in load_items(root, a.eval_side) if a.split == "all" or it.split == a.split]
    maps = default_maps(Path(a.cache))
    if a.only:
        maps = {k: v for k, v in maps.items() if any(o in k for o in a.only)}
    body = []
    for ds in ("nus-scene", "ucf-sports-diving"):
        sel = [it for it in items if it.dataset == ds]
        if not sel:
            continue
        res = score_items(sel, maps)
        t = table(sel, res, f"{ds}, {a.split} split" if ds == "nus-scene" else f"{ds} (held out whole)")
        print(t)
        body.append(t)
    head = (f"\n\nMachine: {platform.machine()}, Python {platform.python_version()}, CPU. Maps at each picture's "
            f"aspect ratio, longer side <= {a.eval_side} px; density blur 1 degree = width/30; "
            f"{time.time() - t0:.0f} s.\n")
    if a.write:
        from realclips import append_results

        append_results("bench_gaze.py", argv, "Saliency against human gaze", head + "".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
