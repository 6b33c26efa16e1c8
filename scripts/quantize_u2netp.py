"""Write model/u2netp_int8.onnx: u2netp statically quantised to int8, any input size.

What it does, from the verified u2netp in the model cache (fetched if missing):
1. makes the input's and outputs' H and W symbolic (``H``, ``W``). u2netp's Resize nodes take
   their target sizes from ``Shape`` of the tensors they upsample to, so the graph runs at any
   size; the registry's ``preprocess.size`` picks the size (``u2netp_int8`` at 320x320,
   ``u2netp_int8_192`` at 192x192 from the same file);
2. converts opset 11 -> 13 (per-channel DequantizeLinear needs the ``axis`` attribute);
3. ``quant_pre_process`` (ONNX Runtime graph optimisation + ONNX shape inference, no sympy);
4. ``quantize_static``: QDQ format, int8 per-channel weights, uint8 activations, MinMax
   calibration over real frames: 16 frames spread over each video of the corpus's *train*
   split and its photos (scripts/fetch_corpus.py; never the calib or eval clips), at 320x320,
   256x256 and 192x192, preprocessed exactly as SaliencyModel does (resize with swscale, divide
   by the image max, ImageNet mean/std). ``--calib synth`` calibrates on generated clips
   (vmaf_roi.synth, fixed seeds) as the file was made before: on the held-out real clips that
   file agrees 0.63 with u2netp fp32 at 320x320, this one 0.73 (0.43 -> 0.49 at 192x192).
   ``--method minmax-avg`` (moving average of the ranges) gave 0.70, ``percentile`` 0.51 (on
   fewer frames: the histogram methods need more memory than this machine's 23 GB for all).

Dynamic (weight-only) quantisation was tried and rejected: its maps do not resemble u2netp's
(correlation ~0.05). QOperator format was slower than QDQ and less accurate.

Deterministic: fixed calibration set (the corpus files are verified by sha256), no timestamps;
running it twice gives the same bytes. The bytes depend on the onnx / onnxruntime versions (measured with onnx 1.23.2,
onnxruntime 1.31.1); with --check the script compares the result with the registry digest.

Usage: python scripts/quantize_u2netp.py [OUT] [--cache DIR] [--check]
Needs the `onnx` package (and onnxruntime, a dependency of vmaf-roi).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from vmaf_roi.registry import fetch, get_spec, load_verified
from vmaf_roi.saliency import SaliencyModel
from vmaf_roi.synth import SyntheticScene

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "model" / "u2netp_int8.onnx"
REGISTRY_ID = "u2netp_int8"
CALIB_SIZES = (320, 256, 192)
# (seed, pan, width, height): disjoint from the seeds the tests and benchmark evaluate on.
CALIB_CLIPS = ((1001, False, 640, 360), (1002, True, 640, 360), (1003, False, 1280, 720), (1004, True, 1280, 720))
CALIB_FRAMES = 24
CALIB_STEP = 4  # frames 0, 4, ..., 20 of each clip
REAL_FRAMES = 16  # frames of each train-split video (--calib real)
REAL_PHOTO_STEP = 1  # every train-split photo


def symbolic_hw(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace the fixed 320x320 of the input and the outputs by symbolic H, W."""
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != 4:
            raise SystemExit(f"unexpected rank for {vi.name}: {len(dims)}")
        for k, name in ((2, "H"), (3, "W")):
            dims[k].ClearField("dim_value")
            dims[k].dim_param = name
    del model.graph.value_info[:]  # stale 320x320 shapes, if any
    return model


class _Frames(CalibrationDataReader):
    """RGB pictures -> one calibration batch per picture and size in CALIB_SIZES, preprocessed
    as SaliencyModel does (swscale bilinear resize, then its preprocess)."""

    def __init__(self, sal: SaliencyModel, input_name: str, rgbs) -> None:
        batches = []
        for rgb in rgbs:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            for size in CALIB_SIZES:
                small = vf.reformat(size, size, "rgb24", interpolation="BILINEAR").to_ndarray()
                batches.append({input_name: sal.preprocess(small[None])})
        self._it = iter(batches)

    def get_next(self):
        return next(self._it, None)


class SynthFrames(_Frames):
    """Frames of generated clips (vmaf_roi.synth, fixed seeds)."""

    def __init__(self, sal: SaliencyModel, input_name: str) -> None:
        rgbs = []
        for seed, pan, w, h in CALIB_CLIPS:
            scene = SyntheticScene(w, h, CALIB_FRAMES, seed=seed, pan=pan)
            rgbs += [scene.frame(i)[0] for i in range(0, CALIB_FRAMES, CALIB_STEP)]
        super().__init__(sal, input_name, rgbs)


class RealFrames(_Frames):
    """Frames of the real corpus's *train* split (scripts/fetch_corpus.py; never its calib or
    eval clips): REAL_FRAMES frames spread over each video and every REAL_PHOTO_STEP-th photo."""

    def __init__(self, sal: SaliencyModel, input_name: str) -> None:
        sys.path.insert(0, str(ROOT / "scripts"))
        from fetch_corpus import load

        corpus = load()
        missing = sorted(set(corpus.names("train")) - set(corpus.available("train")))
        if missing:
            raise SystemExit(f"corpus train split incomplete ({', '.join(missing[:3])} ...): "
                             f"python scripts/fetch_corpus.py --split train")
        rgbs = []
        for name in corpus.names("train", "video"):
            with av.open(str(corpus.path(name))) as c:
                frames = list(c.decode(video=0))  # decoded frames; only the chosen ones become RGB
            step = max(1, len(frames) // REAL_FRAMES)
            rgbs += [f.to_ndarray(format="rgb24") for f in frames[::step][:REAL_FRAMES]]
        for name in corpus.names("train", "photo")[::REAL_PHOTO_STEP]:
            with av.open(str(corpus.path(name))) as c:
                rgbs.append(next(c.decode(video=0)).to_ndarray(format="rgb24"))
        super().__init__(sal, input_name, rgbs)


def build(out: Path, cache: Path | None, calib: str = "real", method: str = "minmax") -> str:
    spec = get_spec("u2netp")
    fetch(spec, cache)
    data = load_verified(spec, cache)
    sal = SaliencyModel(spec, device="cpu", cache_dir=cache, threads=2)  # for its preprocess
    model = onnx.load_from_string(data)
    model = version_converter.convert_version(symbolic_hw(model), 13)
    with tempfile.TemporaryDirectory(prefix="quantize-u2netp-") as tmp:
        f32, pre, q = Path(tmp) / "f32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "q.onnx"
        onnx.save(model, str(f32))
        quant_pre_process(str(f32), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(q), (RealFrames if calib == "real" else SynthFrames)(sal, spec.input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "minmax-avg": CalibrationMethod.MinMax,
                              "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}[method],
            extra_options={"CalibMovingAverage": True} if method == "minmax-avg" else {},
        )
        qm = onnx.load(str(q))
    qm.producer_name = "vmaf-roi scripts/quantize_u2netp.py"
    qm.producer_version = "1"
    qm.doc_string = ("u2netp (xuebinqin/U-2-Net, Apache-2.0) statically quantised to int8 (QDQ, per-channel) "
                     "with ONNX Runtime; input H and W symbolic.")
    onnx.checker.check_model(qm)
    blob = qm.SerializeToString()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    return hashlib.sha256(blob).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--cache", type=Path, default=None, help="model cache holding u2netp (default: VMAF_ROI_MODEL_DIR or ~/.cache)")
    ap.add_argument("--check", action="store_true", help=f"fail unless the result matches the {REGISTRY_ID} registry digest")
    ap.add_argument("--calib", choices=("real", "synth"), default="real",
                    help="calibration frames: the real corpus's train split (default), or generated clips "
                         "(how the file was made before 2026-12-01)")
    ap.add_argument("--method", choices=("minmax", "minmax-avg", "percentile", "entropy"), default="minmax",
                    help="calibration: MinMax over all frames, its moving average over frames (minmax-avg), or "
                         "ONNX Runtime's histogram methods (memory-hungry)")
    a = ap.parse_args(argv)
    digest = build(a.out, a.cache, a.calib, a.method)
    print(f"{a.out}  sha256 {digest}  {a.out.stat().st_size} bytes")
    if a.check:
        try:
            want = get_spec(REGISTRY_ID).sha256
        except Exception as exc:  # noqa: BLE001
            print(f"no registry digest to check against: {exc}", file=sys.stderr)
            return 1
        if digest != want:
            print(f"MISMATCH: registry has {want} (other onnx/onnxruntime versions give other bytes)", file=sys.stderr)
            return 1
        print("matches the registry")
    return 0


if __name__ == "__main__":
    sys.exit(main())
