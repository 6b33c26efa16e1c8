"""ONNX Runtime settings that might make a saliency model cheaper on the CPU, measured on real
frames: CPU per inference (one intra-op thread, no spinning, as the salroi filter runs it) and
how close the maps stay to the default session's (largest difference, correlation).

Variants: the default session, as the filter and the encode run it (all graph optimisations,
the batch dimension denoted DATA_BATCH fixed to 1); the batch left dynamic; extended and basic
optimisation; denormal floats flushed to zero (``session.set_denormal_as_zero``); and the model
statically quantised to int8 (QDQ, per-channel int8 weights, uint8 activations, MinMax
calibration on 24 frames of bikes, tree and Megamind; evaluated on frames of box, cup,
bigbuckbunny and vtest).
``--against FILE`` adds another graph of the same model (unverified: for an earlier build of it).

    python benchmarks/ort_levers.py --model attention_v2
    git show 288fc42:model/attention_v2.onnx > /tmp/v2-first.onnx   # the first graph (f41bec25)
    python benchmarks/ort_levers.py --against /tmp/v2-first.onnx --no-int8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vmaf_roi.registry import load_verified  # noqa: E402
from vmaf_roi.saliency import BATCH_DENOTATION, SaliencyModel  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_curves import clip_path  # noqa: E402

CALIB = ("bikes.mp4", "tree.avi", "Megamind.avi")
EVAL = ("box.mp4", "cup.mp4", "bigbuckbunny.mp4", "vtest.avi")


def inputs(sm: SaliencyModel, clips: tuple[str, ...], n: int, step: int) -> list[np.ndarray]:
    out = []
    for name in clips:
        with av.open(str(clip_path(name))) as c:
            for i, f in enumerate(c.decode(video=0)):
                if i // step >= n:
                    break
                if i % step == 0:
                    out.append(sm.preprocess(np.ascontiguousarray(sm.model_input(f))[None]))
    return out


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="attention_v2")
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--against", type=Path, metavar="FILE", action="append", default=[],
                    help="also time this ONNX file (another graph of the same model), the default session")
    ap.add_argument("--no-int8", action="store_true", help="leave out the int8 variant (its calibration)")
    a = ap.parse_args(argv)
    sm = SaliencyModel(a.model)
    name = sm.spec.input_name
    calib, frames = inputs(sm, CALIB, 8, 10), inputs(sm, EVAL, 6, 15)
    level = ort.GraphOptimizationLevel

    def session(model: bytes | str, opt=level.ORT_ENABLE_ALL, fixed_batch: bool = True, daz: bool = False):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if daz:  # denormal floats flushed to zero: slow on x86 where a graph produces them
            so.add_session_config_entry("session.set_denormal_as_zero", "1")
        so.graph_optimization_level = opt
        if fixed_batch:  # as saliency._session and the salroi filter do
            so.add_free_dimension_override_by_denotation(BATCH_DENOTATION, 1)
        return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])

    model = load_verified(sm.spec, None)
    variants = {"default (all optimisations, batch 1)": session(model),
                "dynamic batch": session(model, fixed_batch=False),
                "extended optimisation": session(model, level.ORT_ENABLE_EXTENDED),
                "basic optimisation": session(model, level.ORT_ENABLE_BASIC),
                "denormals as zero": session(model, daz=True)}
    for f in a.against:
        variants[f"{f.name} (--against)"] = session(str(f))
    if not a.no_int8:
        with tempfile.TemporaryDirectory(prefix="ort-levers-") as d:
            from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
            from onnxruntime.quantization.shape_inference import quant_pre_process

            class Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self.it = iter([{name: x} for x in calib])

                def get_next(self):
                    return next(self.it, None)

            src, pre, q = Path(d) / "m.onnx", Path(d) / "pre.onnx", Path(d) / "int8.onnx"
            src.write_bytes(model)
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
            variants["int8 (static, QDQ)"] = session(str(q))
    ref = [variants["default (all optimisations, batch 1)"].run(None, {name: x})[0] for x in frames]
    ms: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(a.rounds):
        for k, s in variants.items():
            t = time.process_time()
            for i in range(a.runs):
                s.run(None, {name: frames[i % len(frames)]})
            ms[k].append((time.process_time() - t) / a.runs * 1000)
    print(f"{a.model}: {len(frames)} real frames, one intra-op thread, {a.runs} runs x {a.rounds} rounds\n")
    print("| variant | CPU ms per inference | largest difference from the default's map | correlation, min |")
    print("|---|---:|---:|---:|")
    for k, s in variants.items():
        out = [s.run(None, {name: x})[0] for x in frames]
        diff = max(float(np.abs(o - r).max()) for o, r in zip(out, ref))
        cc = min(float(np.corrcoef(o.ravel(), r.ravel())[0, 1]) for o, r in zip(out, ref))
        print(f"| {k} | {min(ms[k]):.2f}-{max(ms[k]):.2f} | {diff:.2g} | {cc:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
