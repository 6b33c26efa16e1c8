"""How stable the reference itself is: u2netp fp32's map of a frame against its map of the same
frame changed imperceptibly, on the held-out real clips.

    python benchmarks/bench_reference_stability.py [--frames 120] [--every 4] [--write]

The agreement targets of the saliency issue are Pearson correlations, per frame, with u2netp
fp32's map (benchmarks/bench_models.py). This measures what that reference gives itself when
the picture changes by less than anyone would see, i.e. how far a map that is *not* u2netp's own
output on exactly those pixels can be expected to agree with it:

- ``noise``: Gaussian noise of sigma 1 level added to the RGB frame (rounded, clipped);
- ``shift``: the frame moved right by one pixel (first column repeated), the map moved back;
- ``jpeg``: the frame through JPEG at quality 95 (Pillow);
- ``next``: the map of the next frame (what holding a map for one frame costs at best);
- ``in256``, ``in224``: the same frame and the same weights, with the network's input at 256x256
  or 224x224 instead of 320x320 (the graph's input made symbolic as scripts/quantize_u2netp.py
  does; the map resized to the frame like any other): how much u2netp's map depends on the scale
  it sees the picture at.

Per clip: mean per-frame correlation (and the worst frame) over every ``--every``-th frame.
``--write`` appends the table with the command and the machine to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realclips  # noqa: E402

from vmaf_roi.registry import REFERENCE_MODEL, load_verified  # noqa: E402
from vmaf_roi.saliency import SaliencyModel, resize_map  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("noise", "shift", "jpeg", "next", "in256", "in224")


def jpeg(rgb: np.ndarray, quality: int = 95) -> np.ndarray:
    from PIL import Image  # in the test extra

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def perturbed(kind: str, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if kind == "noise":
        return np.clip(np.rint(rgb + rng.normal(0, 1, rgb.shape)), 0, 255).astype(np.uint8)
    if kind == "shift":
        return np.concatenate([rgb[:, :1], rgb[:, :-1]], axis=1)
    if kind == "jpeg":
        return jpeg(rgb)
    raise ValueError(kind)


class AtSize:
    """The reference's weights with the input at another size (ONNX Runtime, one thread)."""

    def __init__(self, model: SaliencyModel, model_dir: Path | None) -> None:
        import onnx
        import onnxruntime as ort

        sys.path.insert(0, str(ROOT / "scripts"))
        from quantize_u2netp import symbolic_hw

        graph = symbolic_hw(onnx.load_from_string(load_verified(model.spec, model_dir)))
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(graph.SerializeToString(), so, providers=["CPUExecutionProvider"])
        self.name = self.sess.get_inputs()[0].name
        self.model = model

    def map(self, rgb: np.ndarray, size: int) -> np.ndarray:
        """uint8 map at frame size."""
        m, keep = self.model, self.model.input_size
        try:
            m.input_size = (size, size)
            x = m.preprocess(m.model_input(rgb)[None])
        finally:
            m.input_size = keep
        p = m.postprocess(self.sess.run(None, {self.name: x})[0])[0]
        return np.round(resize_map(p, rgb.shape[1], rgb.shape[0]) * 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench-real")
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args(argv)
    model = SaliencyModel(REFERENCE_MODEL, device="cpu", cache_dir=a.model_dir)
    at_size = AtSize(model, a.model_dir)
    rng = np.random.default_rng(0)
    rows, means = [], {k: [] for k in KINDS}
    for name, clip in realclips.eval_clips(a.work, a.frames):
        ref, _ = realclips.reference(clip, a.work, a.model_dir)
        rgbs = realclips.frames_rgb(clip)
        idx = list(range(0, len(rgbs) - 1, a.every))
        cells = []
        for kind in KINDS:
            cs = []
            for i in idx:
                if kind == "next":
                    cs.append(realclips.corr(ref[i + 1], ref[i]))
                    continue
                if kind.startswith("in"):
                    cs.append(realclips.corr(at_size.map(rgbs[i], int(kind[2:])), ref[i]))
                    continue
                m = np.round(model.maps([perturbed(kind, rgbs[i], rng)])[0] * 255).astype(np.uint8)
                if kind == "shift":
                    m = np.concatenate([m[:, 1:], m[:, -1:]], axis=1)
                cs.append(realclips.corr(m, ref[i]))
            cs = [c for c in cs if np.isfinite(c)]
            means[kind].append(float(np.mean(cs)))
            cells.append(f"{np.mean(cs):.3f} ({min(cs):.2f})")
            print(f"{name} {kind}: {np.mean(cs):.3f} (worst {min(cs):.2f}, {len(cs)} frames)", file=sys.stderr)
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    head = ["| clip | " + " | ".join(KINDS) + " |", "|---|" + "---:|" * len(KINDS)]
    mean = "| **mean over clips** | " + " | ".join(f"**{np.mean(means[k]):.3f}**" for k in KINDS) + " |"
    table = "\n".join(head + rows + [mean])
    print(table)
    if a.write:
        realclips.append_results(
            "bench_reference_stability.py", argv, "The reference's own stability on real clips",
            f"\n\nMachine: {platform.machine()}, Python {platform.python_version()}, onnxruntime CPU, no "
            f"GPU. Per-frame Pearson correlation of u2netp fp32's map of a frame with its map under each "
            f"change (the script's docstring; mean over every {a.every}th frame, worst frame in "
            f"brackets):\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
