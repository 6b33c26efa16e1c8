"""Real clips for the benchmarks: corpus cuts, reference maps and reference masks.

The evaluation clips are the corpus's *eval* split (corpus/corpus.yaml), never trained or
calibrated on. Each is cut to its first ``frames`` frames into a lossless FFV1/Matroska file
(yuv420p, timestamps renumbered 0..N-1 at the clip's frame rate), so every encode and score of
a benchmark starts from the same pictures whatever the source container does with timestamps.

The reference is u2netp fp32 at 320x320 on every frame of the cut (the project's teacher).
``reference(...)`` caches its maps (uint8, frame size) per clip under the work directory,
keyed by the cut's sha256 and the model digest, and writes the *reference mask video*
(255 where the reference map >= 0.5) that `compare` takes as ``--mask``.
"""

from __future__ import annotations

import sys
from datetime import date
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vmaf_roi.registry import REFERENCE_MODEL as REFERENCE, sha256_file

ROOT = Path(__file__).resolve().parents[1]


def corpus():
    sys.path.insert(0, str(ROOT / "scripts"))
    from fetch_corpus import load

    return load()


def cut(src: Path, out: Path, frames: int) -> Path:
    """First `frames` frames of `src` as FFV1 yuv420p in Matroska (reused if present)."""
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part.mkv")
    with av.open(str(src)) as c:
        s = c.streams.video[0]
        rate = s.average_rate or s.guessed_rate or Fraction(25)
        rate = Fraction(rate).limit_denominator(1001)
        with av.open(str(part), "w") as o:
            st = o.add_stream("ffv1", rate=rate)
            st.width, st.height, st.pix_fmt = s.codec_context.width, s.codec_context.height, "yuv420p"
            st.time_base = 1 / rate
            n = 0
            for f in c.decode(s):
                g = f.reformat(format="yuv420p")
                g.pts, g.time_base = n, 1 / rate
                for p in st.encode(g):
                    o.mux(p)
                n += 1
                if n >= frames:
                    break
            for p in st.encode(None):
                o.mux(p)
    part.rename(out)
    return out


def frames_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def reference(clip: Path, work: Path, model_dir: Path | None = None) -> tuple[np.ndarray, Path]:
    """(maps uint8 [N,H,W] of the reference model at frame size, mask video path)."""
    from vmaf_roi.registry import get_spec
    from vmaf_roi.saliency import SaliencyModel

    key = f"{sha256_file(clip)[:16]}-{get_spec(REFERENCE).sha256[:12]}"
    cache = work / f"{clip.stem}.ref-{key}.npz"
    mask = work / f"{clip.stem}.ref-{key}.mask.mkv"
    if cache.exists() and mask.exists():
        return np.load(cache)["maps"], mask
    model = SaliencyModel(REFERENCE, device="cpu", cache_dir=model_dir)
    maps = np.stack([np.round(model.maps([f])[0] * 255).astype(np.uint8) for f in frames_rgb(clip)])
    work.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, maps=maps)
    h, w = maps.shape[1:]
    part = mask.with_name(mask.name + ".part.mkv")
    with av.open(str(part), "w") as o:
        st = o.add_stream("ffv1", rate=25)
        st.width, st.height, st.pix_fmt = w, h, "gray"
        for i, m in enumerate(maps):
            f = av.VideoFrame.from_ndarray(np.where(m >= 128, 255, 0).astype(np.uint8), format="gray")
            f.pts = i
            for p in st.encode(f):
                o.mux(p)
        for p in st.encode(None):
            o.mux(p)
    part.rename(mask)
    return maps, mask


def corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps (NaN when either is constant)."""
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    a -= a.mean()
    b -= b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def eval_clips(work: Path, frames: int) -> list[tuple[str, Path]]:
    """[(name, cut path)] for every eval clip of the corpus."""
    c = corpus()
    out = []
    for name in c.names("eval", "video"):
        out.append((Path(name).stem, cut(c.path(name), work / "clips" / f"{Path(name).stem}.f{frames}.mkv", frames)))
    return out


def append_results(script: str, argv: list[str] | None, heading: str, body: str) -> None:
    """Append a section to benchmarks/RESULTS.md: ``### heading (today)``, then the command that
    reproduced it (``python benchmarks/<script>`` and ``argv``, the command line's by default),
    then ``body`` (which starts with its own separator from the command line)."""
    cmd = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
        f.write(f"\n### {heading} ({date.today().isoformat()})\n\nCommand: `{cmd.strip()}`{body}")
