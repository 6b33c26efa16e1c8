#!/usr/bin/env python3
"""Fit attention_v2's fixation readout on the TRAIN split of the NUS Scene gaze data only.

    python scripts/fit_readout.py [--gaze ../shared/gaze] [--out scripts/attention_v2_readout.json]
    python scripts/fit_readout.py --val          # choose settings: fit on 4/5 of train, report the 1/5

The readout (src/vmaf_roi/attention.py, :class:`Readout`) is a DeepGaze-style linear readout:
a 1x1 projection of seven of the student's tensors (its encoder and decoder stages, and its
head's logit), upsampled to 112x112 and summed, blurred, plus the logarithm of a Gaussian
centre prior (sigmas fitted) and a weighted face map (BlazeFace, as in attention_v1). That
is a log-density of fixations; it is fitted by maximum likelihood (the mean over photos of the
mean log-probability of their fixations under a softmax over the 112x112 pixels), with Adam,
an L2 penalty on the projections, and every photo also mirrored. The student is not changed.

Settings (blur, penalty, epochs) were chosen with ``--val`` on the train split alone; the
held-out photos and the diving clip are only *reported* (benchmarks/bench_gaze.py measures the
built graph on them). The fit is deterministic on a CPU (seeded, single-threaded Adam steps).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

SEED = 20261207
N = 112


def features(gaze_root: Path, cache: Path):
    """Items, and per item and mirror (2 rows each: plain, mirrored): the student's tensors and
    the face detector's boxes and scores (cached per model digest)."""
    from bench_gaze import load_items

    from vmaf_roi.attention import READOUT_TENSORS, Components
    from vmaf_roi.registry import get_spec

    items = load_items(gaze_root, 512)
    key = get_spec("salstudent_v1").sha256[:8] + get_spec("blazeface_short").sha256[:8]
    f = cache / f"readout-features-{key}-{len(items)}.npz"
    if f.exists():
        z = np.load(f, allow_pickle=False)
        return items, {k: z[k] for k in READOUT_TENSORS}, z["boxes"], z["scores"]
    comp = Components(features=True, threads=2)
    feats = {k: [] for k in READOUT_TENSORS}
    boxes, scores = [], []
    for i, it in enumerate(items):
        x = comp.input([it.rgb()])
        c = comp.run(x)  # the picture's features and its mirror image's, in one call
        mb, ms = comp.faces(np.ascontiguousarray(x[..., ::-1]))  # the mirror image's own faces
        for fk, b, sc in ((c["features"], c["boxes"], c["scores"]), (c["features_mirrored"], mb, ms)):
            for k in READOUT_TENSORS:
                feats[k].append(fk[k][0].astype(np.float16))
            boxes.append(b[0])
            scores.append(sc[0])
        if i % 100 == 0:
            print(f"features {i}/{len(items)}", file=sys.stderr, flush=True)
    out = {k: np.stack(v) for k, v in feats.items()}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(f, **out, boxes=np.stack(boxes), scores=np.stack(scores))
    return items, out, np.stack(boxes), np.stack(scores)


def fixation_index(items) -> list[np.ndarray]:
    """Per row (item, mirror): the flat 112x112 indices of its fixations."""
    out = []
    for it in items:
        ys = np.clip((it.ys / it.h * N).astype(int), 0, N - 1)
        for mirror in (False, True):
            xs = it.xs / it.w
            xs = 1.0 - xs if mirror else xs
            out.append(ys * N + np.clip((xs * N).astype(int), 0, N - 1))
    return out


def group(it, val: bool) -> str:
    if it.dataset != "nus-scene":
        return "video"
    k = int(it.name)
    if k % 3 == 0:
        return "heldout"
    return "val" if val and (k // 3) % 5 == 0 else "fit"


def make_model(feats, face_k: float, face_threshold: float, blur: float):
    import torch
    import torch.nn.functional as F
    from torch import nn

    from vmaf_roi.attention import READOUT_TENSORS, gaussian_kernel

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.ParameterDict({k: nn.Parameter(torch.zeros(feats[k].shape[1])) for k in READOUT_TENSORS})
            self.bias = nn.Parameter(torch.zeros(()))  # no effect on the density; kept for the graph
            self.lsx = nn.Parameter(torch.tensor(math.log(0.2)))
            self.lsy = nn.Parameter(torch.tensor(math.log(0.15)))
            self.w_f = nn.Parameter(torch.tensor(0.5))
            k = torch.from_numpy(gaussian_kernel(blur * N)) if blur > 0 else None
            self.register_buffer("k", k if k is not None else torch.zeros(0))
            self.register_buffer("g", (torch.arange(N, dtype=torch.float32) + 0.5) / N)

        def forward(self, fs, face):
            y = 0
            for k in READOUT_TENSORS:
                z = torch.einsum("nchw,c->nhw", fs[k], self.w[k])[:, None]
                y = y + F.interpolate(z, size=(N, N), mode="bilinear", align_corners=False)
            y = y + self.bias
            if self.k.numel():
                r = self.k.numel() // 2
                y = F.pad(y, (r, r, r, r), mode="reflect")
                y = F.conv2d(F.conv2d(y, self.k.view(1, 1, 1, -1)), self.k.view(1, 1, -1, 1))
            dx = (self.g - 0.5) / torch.exp(self.lsx)
            dy = (self.g - 0.5) / torch.exp(self.lsy)
            return y[:, 0] - 0.5 * (dy[:, None] ** 2 + dx[None, :] ** 2) + self.w_f * face

    return Model()


def nss(maps: np.ndarray, idx) -> np.ndarray:
    m = maps.reshape(len(maps), -1).astype(np.float64)
    return np.array([((mm[ix] - mm.mean()) / mm.std()).mean() for mm, ix in zip(m, idx)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gaze", default=str(ROOT.parent / "shared" / "gaze"))
    ap.add_argument("--cache", default=str(ROOT / "build" / "gaze-cache"))
    ap.add_argument("--out", default=str(ROOT / "scripts" / "attention_v2_readout.json"))
    ap.add_argument("--val", action="store_true", help="hold out 1/5 of the train photos and report them (no output)")
    ap.add_argument("--blur", type=float, default=0.04, help="blur sigma, fraction of the side")
    ap.add_argument("--l2", type=float, default=1e-2, help="L2 penalty on the projections")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--face-k", type=float, default=0.5)
    ap.add_argument("--face-threshold", type=float, default=0.5)
    ap.add_argument("--no-mirror", dest="mirror", action="store_false",
                    help="the map of the picture alone (default: averaged with its mirror image's, flipped back)")
    a = ap.parse_args(argv)

    import torch

    from vmaf_roi.attention import READOUT_TENSORS, Readout, face_map, readout_map

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    items, feats, boxes, scores = features(Path(a.gaze), Path(a.cache))
    idx = fixation_index(items)
    grp = np.repeat([group(it, a.val) for it in items], 2)
    mirror = np.tile([0, 1], len(items))
    tf = {k: torch.from_numpy(v.astype(np.float32)) for k, v in feats.items()}
    face = torch.from_numpy(face_map(boxes, scores, N, N, a.face_k, a.face_threshold))
    model = make_model(tf, a.face_k, a.face_threshold, a.blur)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    fit = np.where(grp == "fit")[0]
    print(f"fitting on {len(fit) // 2} photos (and their mirrors), {a.epochs} epochs", file=sys.stderr)
    rng = np.random.default_rng(SEED)

    def nll(sel):
        lp = torch.log_softmax(model({k: tf[k][sel] for k in READOUT_TENSORS}, face[sel]).flatten(1), 1)
        return torch.stack([-lp[j, torch.from_numpy(idx[i])].mean() for j, i in enumerate(sel)]).mean()

    for ep in range(a.epochs):
        perm = rng.permutation(fit)
        total = 0.0
        for b in range(0, len(perm), 32):
            sel = perm[b:b + 32]
            loss = nll(sel)
            penalty = sum((w ** 2).sum() for w in model.w.values())
            opt.zero_grad()
            (loss + a.l2 * penalty).backward()
            opt.step()
            total += loss.item() * len(sel)
        print(f"epoch {ep + 1}: mean NLL {total / len(perm):.4f}", file=sys.stderr)

    r = Readout(weights={k: tuple(float(x) for x in model.w[k].detach().numpy()) for k in READOUT_TENSORS},
                bias=float(model.bias.item()), blur=a.blur, centre_sx=float(math.exp(model.lsx.item())),
                centre_sy=float(math.exp(model.lsy.item())), w_f=float(model.w_f.item()), face_k=a.face_k,
                face_threshold=a.face_threshold, mirror=a.mirror)
    # report with the numpy reference (what the graph computes), on the pictures (not their
    # mirrors), the map alone and averaged with the mirror image's
    for g in ("fit", "val", "heldout", "video"):
        rows = np.where((grp == g) & (mirror == 0))[0]
        if rows.size:
            f0 = {k: v[rows] for k, v in feats.items()}
            f1 = {k: v[rows + 1] for k, v in feats.items()}
            ix = [idx[i] for i in rows]
            one = readout_map(f0, boxes[rows], scores[rows], replace(r, mirror=False))
            both = readout_map(f0, boxes[rows], scores[rows], replace(r, mirror=True), f1)
            print(f"{g}: {rows.size} items, NSS at 112x112 {nss(one, ix).mean():.3f} alone, "
                  f"{nss(both, ix).mean():.3f} averaged with the mirror image")
    print(f"centre sigmas {r.centre_sx:.3f} x {r.centre_sy:.3f}, face weight {r.w_f:.3f}")
    if not a.val:
        Path(a.out).write_text(json.dumps({"fitted_by": "scripts/fit_readout.py", "settings": {
            "blur": a.blur, "l2": a.l2, "epochs": a.epochs, "lr": a.lr, "seed": SEED,
            "train_photos": int(len(fit) // 2)}, "readout": r.to_json()}, indent=1) + "\n")
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
