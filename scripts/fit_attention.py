#!/usr/bin/env python3
"""Fit how the attention model's cues combine, on the TRAIN split of the NUS Scene gaze data only.

    python scripts/fit_attention.py [--gaze ../shared/gaze] [--out build/gaze-cache]

The cues (src/vmaf_roi/attention.py): the student's object map S (blurred), the face map F
(BlazeFace short-range, no NMS) and a centre prior C. The fused map is
``A = (w_s * blur(S) + w_c) * C + w_f * F``: the object cue gated by the centre prior, on a
floor ``w_c`` (where nothing stands out, the centre bias alone), faces added outside the gate,
then normalised to a peak of 1. (Faces inside the gate fitted as well on the train photos, 1.324
against 1.323; outside it was chosen because faces draw the eye wherever they are, and only 11
train photos have one.)
NSS is invariant to the map's scale, so ``w_s`` is fixed to 1 and the search runs over
``w_f, w_c``, the centre's sigmas, the student blur, and the face Gaussian's size and threshold:
coordinate ascent on the mean NSS of the train photos (photo ids not divisible by 3), started
from a coarse grid. The held-out photos and the diving clip are only *reported*, never used to
choose (benchmarks/bench_gaze.py measures the built graph on them).

NSS here is computed on the 112x112 working maps at the fixations scaled into them (the fit's
objective; bench_gaze.py scores the real pipeline's maps at the photos' own aspect ratio).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def components(gaze_root: Path, cache: Path):
    """Per item: dataset, split, fixations in [0,1] coordinates, and the cues (cached)."""
    from bench_gaze import load_items

    from vmaf_roi.attention import Components
    from vmaf_roi.registry import get_spec

    key = get_spec("salstudent_v1").sha256[:8] + get_spec("blazeface_short").sha256[:8]
    f = cache / f"components-{key}.npz"
    items = load_items(gaze_root, 512)
    if f.exists():
        z = np.load(f, allow_pickle=False)
        student, boxes, scores = z["student"], z["boxes"], z["scores"]
    else:
        comp = Components()
        parts = [comp([it.rgb()]) for it in items]
        student = np.concatenate([p["student"] for p in parts])
        boxes = np.concatenate([p["boxes"] for p in parts])
        scores = np.concatenate([p["scores"] for p in parts])
        cache.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(f, student=student, boxes=boxes, scores=scores)
    return items, student, boxes, scores


class Objective:
    def __init__(self, items, student, boxes, scores, sel):
        self.idx = [i for i, it in enumerate(items) if sel(it)]
        self.items = items
        self.student, self.boxes, self.scores = student[self.idx], boxes[self.idx], scores[self.idx]
        n = student.shape[1]
        self.n = n
        self.fix = []
        for i in self.idx:
            it = items[i]
            self.fix.append((np.clip((it.ys / it.h * n).astype(int), 0, n - 1),
                             np.clip((it.xs / it.w * n).astype(int), 0, n - 1)))
        self._faces = {}

    def faces(self, k, thr):
        from vmaf_roi.attention import face_map

        key = (k, thr)
        if key not in self._faces:
            self._faces[key] = face_map(self.boxes, self.scores, self.n, self.n, k, thr)
        return self._faces[key]

    def maps(self, p):
        from vmaf_roi.attention import centre_prior, fuse

        return fuse(self.student, self.faces(p.face_k, p.face_threshold),
                    centre_prior(self.n, self.n, p.centre_sx, p.centre_sy), p.w_s, p.w_f, p.w_c, p.blur)

    def nss(self, p) -> np.ndarray:
        m = self.maps(p).astype(np.float64)
        mu = m.mean(axis=(1, 2))
        sd = m.std(axis=(1, 2))
        out = np.full(len(m), np.nan)
        for j, (ys, xs) in enumerate(self.fix):
            if sd[j] > 0:
                out[j] = ((m[j, ys, xs] - mu[j]) / sd[j]).mean()
        return out

    def __call__(self, p) -> float:
        return float(np.nanmean(self.nss(p)))


GRID = {
    "w_f": [0.0, 0.5, 1.0, 2.0, 4.0],
    "w_c": [0.05, 0.1, 0.2, 0.4, 0.8, 1.6],
    "centre_sx": [0.15, 0.2, 0.25, 0.3, 0.4],
    "centre_sy": [0.15, 0.2, 0.25, 0.3, 0.4],
    "blur": [0.0, 0.02, 0.04, 0.08],
    "face_k": [0.5, 1.0, 1.5, 2.0],
    "face_threshold": [0.5, 0.65, 0.8],
}


def fit(obj: Objective, start, rounds: int = 4, log=print):
    best, best_v = start, obj(start)
    log(f"start {best_v:.4f} {asdict(best)}")
    for r in range(rounds):
        improved = False
        for name, values in GRID.items():
            for v in values:
                p = replace(best, **{name: v})
                s = obj(p)
                if s > best_v + 1e-4:
                    best, best_v, improved = p, s, True
            log(f"round {r} {name}: {best_v:.4f}")
        if not improved:
            break
    return best, best_v


def main(argv=None) -> int:
    from vmaf_roi.attention import Params

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gaze", default=str(ROOT.parent / "shared" / "gaze"))
    ap.add_argument("--out", default=str(ROOT / "build" / "gaze-cache"))
    a = ap.parse_args(argv)
    items, student, boxes, scores = components(Path(a.gaze), Path(a.out))
    train = Objective(items, student, boxes, scores, lambda it: it.dataset == "nus-scene" and it.split == "train")
    held = Objective(items, student, boxes, scores, lambda it: it.dataset == "nus-scene" and it.split == "heldout")
    video = Objective(items, student, boxes, scores, lambda it: it.dataset != "nus-scene")
    best_v, best = -1.0, None
    # a coarse start: the centre-only and the object-heavy ends, then coordinate ascent from the best
    for w_c, sc, w_f, k in itertools.product([0.1, 0.4, 1.6], [0.2, 0.3], [0.0, 0.5, 1.0], [0.5, 1.0]):
        p = Params(w_s=1.0, w_f=w_f, w_c=w_c, centre_sx=sc, centre_sy=sc, blur=0.02, face_k=k, face_threshold=0.5)
        v = train(p)
        if v > best_v:
            best_v, best = v, p
    best, best_v = fit(train, best)
    rep = {"params": asdict(best), "train_nss": best_v, "heldout_nss": held(best), "video_nss": video(best),
           "train_photos": len(train.idx), "heldout_photos": len(held.idx), "video_frames": len(video.idx)}
    print(json.dumps(rep, indent=2))
    (Path(a.out) / "fit.json").write_text(json.dumps(rep, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
