"""The cheaper CPU saliency models (u2netp int8, smaller input size): registry and agreement."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vmaf_roi import registry
from vmaf_roi.saliency import SaliencyModel
from vmaf_roi.synth import SyntheticScene

FAST = {"u2netp_int8": (320, 320), "u2netp_int8_192": (192, 192)}
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("mid", sorted(FAST))
def test_fast_entry_verifies_and_loads(mid):
    spec = registry.get_spec(mid)
    assert spec.bundled and not spec.placeholder and spec.license == "Apache-2.0"
    path = spec.location()
    assert registry.status(spec) == "ok"
    assert registry.sha256_file(path) == spec.sha256 and path.stat().st_size == spec.size_bytes
    for lf in spec.license_files:
        assert (registry._package_model_dir() / lf).is_file(), lf
    m = SaliencyModel(mid, device="cpu", threads=1)
    assert m.input_size == FAST[mid] and not m.placeholder
    shape = m.session.get_inputs()[0].shape
    assert shape[:2] == [1, 3] and not isinstance(shape[2], int) and not isinstance(shape[3], int)
    (out,) = m.maps([np.full((90, 160, 3), 128, np.uint8)])
    assert out.shape == (90, 160) and out.dtype == np.float32


def test_fast_entries_share_one_file_with_the_u2netp_contract():
    reg = registry.load_registry()
    base = reg["u2netp"]
    for mid in FAST:
        s = reg[mid]
        assert s.file == "u2netp_int8.onnx" and s.sha256 == reg["u2netp_int8"].sha256
        assert (s.input_name, s.output_name, s.postprocess) == (base.input_name, base.output_name, base.postprocess)
        assert (s.preprocess.scale, s.preprocess.mean, s.preprocess.std) == (
            base.preprocess.scale, base.preprocess.mean, base.preprocess.std)


@pytest.fixture(scope="module")
def scene_frames():
    """A generated 640x360 panning clip: 4 frames and their exact object masks."""
    sc = SyntheticScene(640, 360, 24, seed=21, pan=True)
    return [sc.frame(i) for i in (0, 8, 15, 23)]


@pytest.fixture(scope="module")
def reference_maps(model_dir, scene_frames):
    ref = SaliencyModel("u2netp", device="cpu", cache_dir=model_dir)
    return ref.maps([f for f, _ in scene_frames])


@pytest.mark.parametrize("mid", sorted(FAST))
def test_fast_model_agrees_with_u2netp(mid, scene_frames, reference_maps):
    m = SaliencyModel(mid, device="cpu")
    maps = m.maps([f for f, _ in scene_frames])
    for (frame, mask), a, r in zip(scene_frames, maps, reference_maps):
        assert a.shape == r.shape == mask.shape
        corr = float(np.corrcoef(a.ravel(), r.ravel())[0, 1])
        assert corr >= 0.9, f"{mid}: correlation with u2netp {corr:.3f}"
        assert np.abs(a - r).mean() < 0.05
        inside, outside = float(a[mask].mean()), float(a[~mask].mean())
        assert inside > outside + 0.5, f"{mid}: inside {inside:.3f} outside {outside:.3f}"


@pytest.mark.slow  # ~30-60 s on 2 cores; runs in CI like every slow test
def test_quantize_script_reproduces_the_bundled_file(model_dir, tmp_path):
    pytest.importorskip("onnx")
    sys.path.insert(0, str(ROOT / "scripts"))
    from fetch_corpus import load

    corpus = load()
    missing = sorted(set(corpus.names("train")) - set(corpus.available("train")))
    if missing:  # the calibration frames are the corpus's train split, which CI fetches
        assert os.environ.get("CI") != "true", f"CI has no corpus train split: {missing[:3]}"
        pytest.skip(f"corpus train split not fetched ({len(missing)} files); run python scripts/fetch_corpus.py")
    out = tmp_path / "u2netp_int8.onnx"
    env = {**os.environ, "VMAF_ROI_MODEL_DIR": str(model_dir)}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "quantize_u2netp.py"), str(out), "--check"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert registry.sha256_file(out) == registry.get_spec("u2netp_int8").sha256
