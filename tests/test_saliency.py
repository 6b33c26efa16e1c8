from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from vmaf_roi.errors import DeviceError
from vmaf_roi.saliency import SaliencyModel, cuda_available
from vmaf_roi.synth import SyntheticScene
from conftest import PH, telemetry_files


@pytest.fixture(scope="module")
def placeholder():
    return SaliencyModel(PH, device="cpu")


def test_placeholder_contract(placeholder):
    ins = placeholder.session.get_inputs()
    outs = placeholder.session.get_outputs()
    assert [i.name for i in ins] == ["input"] and [o.name for o in outs] == ["saliency_map"]
    assert ins[0].type == "tensor(float)" and outs[0].type == "tensor(float)"
    x = np.random.default_rng(0).normal(size=(3, 3, 40, 56)).astype(np.float32)
    y = placeholder.session.run(["saliency_map"], {"input": x})[0]
    assert y.shape == (3, 1, 40, 56) and y.dtype == np.float32
    assert 0.0 <= y.min() and y.max() <= 1.0
    assert placeholder.batchable


def test_maps_at_frame_size_and_requested_size(placeholder):
    rgb = np.random.default_rng(1).integers(0, 256, (121, 161, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv444p")
    (m,) = placeholder.maps([rgb])
    assert m.shape == (121, 161) and m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1
    (m2,) = placeholder.maps([frame], size=(64, 48))
    assert m2.shape == (48, 64)
    # a VideoFrame and the same picture as an array give (nearly) the same map
    (m3,) = placeholder.maps([frame])
    assert np.abs(m3 - m).mean() < 0.02


def test_batch_equals_single(placeholder):
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8) for _ in range(3)]
    batch = placeholder.maps(frames)
    single = [placeholder.maps([f])[0] for f in frames]
    for a, b in zip(batch, single):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_default_session_runs_one_frame_at_a_time(model_dir):
    """attention_v2's batch dimension (denoted DATA_BATCH) is fixed to 1 by default, as every
    caller runs frames one at a time; a batch is then run frame by frame, with the same maps as
    a session whose batch stays dynamic."""
    one = SaliencyModel("attention_v2", device="cpu", cache_dir=model_dir)
    dyn = SaliencyModel("attention_v2", device="cpu", cache_dir=model_dir, batch=None)
    assert one.session.get_inputs()[0].shape[0] == 1 and not one.batchable
    assert dyn.session.get_inputs()[0].shape[0] == "N" and dyn.batchable
    rgb = np.random.default_rng(1).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    a, b = one.predict(rgb), dyn.predict(rgb)
    assert a.shape == b.shape == (3, 112, 112) and np.abs(a - b).max() < 1e-5


def test_onnx_runtime_telemetry_is_off(tmp_path):
    """ONNX Runtime 1.29 and newer sends usage telemetry and keeps a device id and an event cache
    under ~/.cache/Microsoft unless ORT_DISABLE_TELEMETRY=1 is set before it starts: importing
    vmaf_roi sets it (for the ffmpeg it runs too) where the user did not; 0 keeps ONNX Runtime's
    way."""
    import sys

    code = ("import os, numpy as np; from vmaf_roi.saliency import SaliencyModel; "
            "m = SaliencyModel('attention_v2', device='cpu'); m.predict(np.zeros((224, 224, 3), np.uint8)); "
            "assert os.environ['ORT_DISABLE_TELEMETRY'] == (os.environ.get('EXPECT') or '1')")  # what ffmpeg inherits
    cmd = [sys.executable, "-c", code]
    src = str(Path(__file__).resolve().parents[1] / "src")
    if not telemetry_files(cmd, tmp_path / "on", "0", PYTHONPATH=src, EXPECT="0"):
        pytest.skip("this onnxruntime keeps no telemetry files (built without telemetry)")
    assert telemetry_files(cmd, tmp_path / "off", None, PYTHONPATH=src) == []


def test_preprocess_image_max_matches_registry_definition(model_dir):
    m = SaliencyModel("u2netp", device="cpu", cache_dir=model_dir)
    rgb = np.random.default_rng(3).integers(0, 200, (1, 320, 320, 3), dtype=np.uint8)
    x = m.preprocess(rgb)
    ref = rgb[0].astype(np.float64) / rgb.max()
    ref = (ref - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(x[0].transpose(1, 2, 0), ref, atol=1e-5)


def test_preprocess_table_gives_the_same_bits_as_the_arithmetic(placeholder):
    # the fixed-scale models (student, placeholder) look the normalised values up in a table
    assert placeholder._lut is not None
    rng = np.random.default_rng(4)
    every = np.arange(256, dtype=np.uint8).repeat(3).reshape(1, 16, 16, 3)
    for rgb in (every, rng.integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)):
        fast = placeholder.preprocess(rgb)
        lut, placeholder._lut = placeholder._lut, None
        try:
            slow = placeholder.preprocess(rgb)
        finally:
            placeholder._lut = lut
        assert fast.shape == slow.shape == (rgb.shape[0], 3, *rgb.shape[1:3]) and fast.dtype == np.float32
        assert fast.tobytes() == slow.tobytes()
    ref = (every[0].astype(np.float64) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(placeholder.preprocess(every)[0].transpose(1, 2, 0), ref, atol=1e-5)


def test_model_input_is_rgb_in_channel_order(placeholder):
    """swscale writes BGR24 (its SIMD path); model_input hands out RGB: a red, a green and a
    blue band of a YUV frame come out in that order, and a strided view preprocesses to the
    bits of its contiguous copy."""
    h, w = placeholder.input_size
    rgb = np.zeros((120, 96, 3), dtype=np.uint8)
    rgb[:40, :, 0] = rgb[40:80, :, 1] = rgb[80:, :, 2] = 220
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    x = placeholder.model_input(frame)
    assert x.shape == (h, w, 3) and x.dtype == np.uint8
    bands = [x[int(h * (k + 0.25) / 3):int(h * (k + 0.75) / 3)] for k in range(3)]
    for k, band in enumerate(bands):
        mean = band.reshape(-1, 3).mean(axis=0)
        assert mean.argmax() == k and mean[k] > 150 and np.delete(mean, k).max() < 60, (k, mean)
    assert placeholder.preprocess(x[None]).tobytes() == placeholder.preprocess(np.ascontiguousarray(x)[None]).tobytes()


def test_model_input_within_a_few_levels_of_swscale_rgb24(placeholder):
    """The BGR24 path rounds differently from swscale's RGB24 one (C), by a few levels at most."""
    from av.video.reformatter import VideoReformatter

    h, w = placeholder.input_size
    frame = av.VideoFrame.from_ndarray(SyntheticScene(320, 240, 8, seed=7).frame(3)[0], format="rgb24")
    frame = frame.reformat(format="yuv420p")
    x = placeholder.model_input(frame).astype(np.int16)
    ref = VideoReformatter().reformat(frame, w, h, "rgb24", interpolation="BILINEAR").to_ndarray().astype(np.int16)
    d = np.abs(x - ref)
    assert d.max() <= 6 and d.mean() < 2.5, (d.max(), d.mean())


def test_u2netp_finds_the_known_object(model_dir):
    m = SaliencyModel("u2netp", device="cpu", cache_dir=model_dir)
    scene = SyntheticScene(320, 240, 12, seed=5, pan=True)
    for i in (0, 6, 11):
        rgb, mask = scene.frame(i)
        (sal,) = m.maps([rgb])
        inside, outside = float(sal[mask].mean()), float(sal[~mask].mean())
        assert inside > 0.6 and outside < 0.15, (i, inside, outside)


def test_auto_device_is_quiet_on_cpu_only_machine(capfd):
    if cuda_available():
        pytest.skip("a CUDA device is present")
    m = SaliencyModel(PH, device="auto")
    assert m.provider == "CPUExecutionProvider"
    err = capfd.readouterr().err
    assert "CUDA" not in err and "onnxruntime" not in err


def test_cuda_device_fails_clearly_without_gpu():
    if cuda_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(DeviceError, match="--device cuda: "):
        SaliencyModel(PH, device="cuda")


@pytest.mark.gpu
def test_cuda_provider_really_runs():
    if not cuda_available():
        pytest.skip("no CUDA GPU on this machine (libcuda.so.1 and the CUDA provider are needed)")
    m = SaliencyModel(PH, device="cuda")
    assert m.provider == "CUDAExecutionProvider"
