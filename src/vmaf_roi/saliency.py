"""Saliency stage: an ONNX Runtime session for a registry model, frames in, maps out.

>>> model = SaliencyModel("u2netp", device="auto")
>>> maps = model.maps([frame])          # float32 HxW in [0, 1], at frame size
>>> model.provider                      # "CPUExecutionProvider" or "CUDAExecutionProvider"
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path
from typing import Iterable, Literal, Sequence

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .errors import DeviceError, ModelError
from .registry import DEFAULT_MODEL, ModelSpec, get_spec, load_verified, require_saliency

Device = Literal["auto", "cuda", "cpu"]
DEVICES: tuple[str, ...] = ("auto", "cuda", "cpu")
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"

FrameLike = av.VideoFrame | np.ndarray


def _driver_present() -> bool:
    """True when the NVIDIA driver library loads; without it the CUDA provider cannot work."""
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ModelError(f"onnxruntime is not installed: {exc}") from None
    return ort


# ONNX's standard denotation of a batch dimension: attention_v2 carries it (scripts/build_attention_model.py)
BATCH_DENOTATION = "DATA_BATCH"


def _session(ort, model_bytes: bytes, providers: list[str], threads: int | None, quiet: bool, spin: bool = True,
             batch: int | None = None):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if batch:
        # a batch dimension denoted DATA_BATCH fixed (no effect on a model without it): the
        # shapes that follow from it fold: attention_v2 takes about 8% less CPU at batch 1
        so.add_free_dimension_override_by_denotation(BATCH_DENOTATION, batch)
    if threads:
        so.intra_op_num_threads = threads
    if not spin:
        # ONNX Runtime's workers busy-wait between ops by default: fine alone, but it takes
        # CPU from an encoder running at the same time.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if quiet:
        # ONNX Runtime reports a failed CUDA provider through its default logger before it
        # falls back; on a machine without CUDA that text is noise, not an error.
        ort.set_default_logger_severity(4)
    try:
        return ort.InferenceSession(model_bytes, so, providers=providers)
    finally:
        if quiet:
            ort.set_default_logger_severity(2)


def cuda_available() -> bool:
    """Whether a CUDA session can be created here (driver present and provider built in)."""
    ort = _import_ort()
    return _driver_present() and CUDA_EP in ort.get_available_providers()


def swscale_rgb(frame: av.VideoFrame, width: int, height: int, reformatter: VideoReformatter) -> np.ndarray:
    """``frame`` at ``width`` x ``height`` as HxWx3 uint8 RGB: every model's input (swscale
    bilinear, the frame's colour tags; the FFmpeg filter makes the same).

    swscale writes BGR24, handed out as an RGB view (channels reversed, no copy): on x86 it has
    a SIMD vertical filter and conversion for BGR24 output (libswscale/x86/swscale_template.c,
    ``yuv2bgr24_X``, MMXEXT, unless SWS_BITEXACT) and only a C loop for RGB24, so a
    decoded yuv420p frame costs a third less (640x480 -> 224x224: 0.39 -> 0.26 ms of CPU,
    1280x720: 0.69 -> 0.53; benchmarks/bench_model_input.py). That arithmetic rounds differently:
    the pixels are RGB24's within 5 levels, 1.2-1.4 on average (mostly a +0.7-1.1 bias), and
    the maps correlate 0.986-1.000 with those from RGB24 (RGB frames scale the same either way).
    One swscale thread: by default swscale slices even this small picture over worker threads
    of its own (one per core), the same CPU in all, taken from the encoder's threads and out of
    sight of this thread's CPU clock.
    """
    out = reformatter.reformat(frame, width, height, "bgr24", interpolation="BILINEAR", threads=1)
    return out.to_ndarray()[..., ::-1]


class SaliencyModel:
    """A verified registry model bound to one execution provider."""

    def __init__(
        self,
        model: str | ModelSpec = DEFAULT_MODEL,
        *,
        device: str = "auto",
        cache_dir: Path | None = None,
        threads: int | None = None,
        spin: bool = True,
        batch: int | None = 1,
    ) -> None:
        """``batch``: the session's batch size where the graph's batch dimension is denoted
        DATA_BATCH (1: every caller here runs frames one at a time, and :meth:`predict` runs a
        larger batch frame by frame); None keeps it dynamic."""
        if device not in DEVICES:
            raise DeviceError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
        self.spec = model if isinstance(model, ModelSpec) else get_spec(model)
        require_saliency(self.spec)
        model_bytes = load_verified(self.spec, cache_dir)  # digest checked before ORT sees a byte
        ort = _import_ort()
        self.session = None
        if device in ("auto", "cuda"):
            reason = None
            if CUDA_EP not in ort.get_available_providers():
                reason = "this onnxruntime build has no CUDA provider (install the 'gpu' extra: onnxruntime-gpu)"
            elif not _driver_present():
                reason = "no NVIDIA driver found (libcuda.so.1 does not load)"
            else:
                try:
                    sess = _session(ort, model_bytes, [CUDA_EP, CPU_EP], threads, quiet=(device == "auto"), spin=spin,
                                    batch=batch)
                except Exception as exc:  # noqa: BLE001 - any failure means: no CUDA session
                    sess, reason = None, f"session creation failed: {exc}"
                if sess is not None and sess.get_providers()[0] == CUDA_EP:
                    self.session = sess
                elif reason is None:
                    reason = "the CUDA provider did not initialise (CUDA 13 / cuDNN 9 runtime missing? pip install 'vmaf-roi[gpu]')"
            if self.session is None and device == "cuda":
                raise DeviceError(f"--device cuda: {reason}")
        if self.session is None:
            try:
                # threads=None: the registry's choice for this model, else ONNX Runtime's
                self.session = _session(ort, model_bytes, [CPU_EP], threads or self.spec.cpu_threads, quiet=False,
                                        spin=spin, batch=batch)
            except Exception as exc:  # noqa: BLE001
                raise ModelError(f"model {self.spec.id!r} failed to load in ONNX Runtime: {exc}") from None
        self.provider: str = self.session.get_providers()[0]
        self._check_contract()
        pre = self.spec.preprocess
        self._mean = np.asarray(pre.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(pre.std, dtype=np.float32).reshape(1, 3, 1, 1)
        self._local = threading.local()  # a swscale context per thread (model_input)
        # uint8 input, fixed scale: every channel value's normalised float, computed as the general
        # path computes it (the same float32 operations, so the same bits), looked up per pixel
        self._lut: np.ndarray | None = None
        if pre.scale != "image_max":
            v = np.arange(256, dtype=np.float32).reshape(1, 1, 1, 256) * (1.0 / 255.0)
            self._lut = np.ascontiguousarray(((v - self._mean[..., None]) / self._std[..., None]).reshape(3, 256))

    # -- contract -------------------------------------------------------------------------
    def _check_contract(self) -> None:
        ins = {i.name: i for i in self.session.get_inputs()}
        outs = {o.name: o for o in self.session.get_outputs()}
        if self.spec.input_name not in ins:
            raise ModelError(f"model {self.spec.id!r} has no input {self.spec.input_name!r} (has {sorted(ins)})")
        if self.spec.output_name not in outs:
            raise ModelError(f"model {self.spec.id!r} has no output {self.spec.output_name!r}")
        shape = ins[self.spec.input_name].shape
        if len(shape) != 4 or shape[1] != 3:
            raise ModelError(f"model {self.spec.id!r} input shape {shape} is not [N,3,H,W]")
        self.batchable = not isinstance(shape[0], int)
        fixed_hw = tuple(shape[2:]) if all(isinstance(d, int) for d in shape[2:]) else None
        size = self.spec.preprocess.size or fixed_hw
        if size is None:
            raise ModelError(f"model {self.spec.id!r} has a dynamic input size; the registry must set preprocess.size")
        if fixed_hw is not None and tuple(size) != fixed_hw:
            raise ModelError(f"model {self.spec.id!r}: registry size {size} differs from the graph's {fixed_hw}")
        self.input_size: tuple[int, int] = (int(size[0]), int(size[1]))  # (H, W)

    @property
    def placeholder(self) -> bool:
        return self.spec.placeholder

    # -- frames -> model input ------------------------------------------------------------
    def model_input(self, frame: FrameLike) -> np.ndarray:
        """One frame -> HxWx3 uint8 RGB at the model's size (:func:`swscale_rgb`: a view, channels
        reversed; an array already at that size is returned as it is)."""
        h, w = self.input_size
        if isinstance(frame, np.ndarray):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"expected HxWx3 uint8 RGB, got {frame.shape} {frame.dtype}")
            if frame.shape[:2] == (h, w):
                return frame
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        # one reformatter per thread: frame.reformat() sets up a new swscale context for every frame
        ref = getattr(self._local, "reformatter", None)
        if ref is None:
            ref = self._local.reformatter = VideoReformatter()
        return swscale_rgb(frame, w, h, ref)

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """[N,H,W,3] uint8 at model size -> [N,3,H,W] float32 normalised as the registry says."""
        if self._lut is not None and rgb.dtype == np.uint8 and rgb.ndim == 4 and rgb.shape[3] == 3:
            # one table look-up per value instead of five passes over the image (224x224: 0.77
            # -> 0.11 ms). mode="clip" (uint8 indices never leave the 256-entry table): with the
            # default "raise", numpy takes into a temporary copy of `out` and copies it back
            # (0.13 -> 0.12 ms; up to 0.6 ms more where that temporary is fresh memory)
            n, h, w, _ = rgb.shape
            out = np.empty((n, 3, h, w), dtype=np.float32)
            for i in range(n):
                for c in range(3):
                    np.take(self._lut[c], rgb[i, :, :, c], out=out[i, c], mode="clip")
            return out
        x = rgb.astype(np.float32).transpose(0, 3, 1, 2)
        if self.spec.preprocess.scale == "image_max":
            mx = x.reshape(x.shape[0], -1).max(axis=1).reshape(-1, 1, 1, 1)
            x = x / np.maximum(mx, 1e-6)
        else:
            x = x * (1.0 / 255.0)
        return np.ascontiguousarray((x - self._mean) / self._std, dtype=np.float32)

    def postprocess(self, y: np.ndarray) -> np.ndarray:
        """[N,1,H,W] raw output -> [N,H,W] float32 in [0, 1]."""
        y = y[:, 0].astype(np.float32, copy=False)
        if self.spec.postprocess == "minmax":
            lo = y.reshape(y.shape[0], -1).min(axis=1).reshape(-1, 1, 1)
            hi = y.reshape(y.shape[0], -1).max(axis=1).reshape(-1, 1, 1)
            rng = hi - lo
            y = np.where(rng > 1e-8, (y - lo) / np.maximum(rng, 1e-8), 0.0).astype(np.float32)
        return np.clip(y, 0.0, 1.0)

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """[N,H,W,3] uint8 at model size -> [N,H,W] float32 maps at model size."""
        if rgb.ndim == 3:
            rgb = rgb[None]
        x = self.preprocess(rgb)
        name, out = self.spec.input_name, [self.spec.output_name]
        if self.batchable or x.shape[0] == 1:
            y = self.session.run(out, {name: x})[0]
        else:
            y = np.concatenate([self.session.run(out, {name: x[i:i + 1]})[0] for i in range(x.shape[0])])
        return self.postprocess(y)

    def maps(self, frames: Sequence[FrameLike], size: tuple[int, int] | None = None) -> list[np.ndarray]:
        """Frames -> float32 maps in [0, 1] at each frame's size, or at ``size`` = (W, H)."""
        if not frames:
            return []
        small = self.predict(np.stack([self.model_input(f) for f in frames]))
        out = []
        for f, m in zip(frames, small):
            if size is not None:
                w, h = size
            elif isinstance(f, np.ndarray):
                h, w = f.shape[:2]
            else:
                w, h = f.width, f.height
            out.append(resize_map(m, w, h))
        return out


def resize_map(m: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a float32 map with swscale."""
    if m.shape == (height, width):
        return m
    f = av.VideoFrame.from_ndarray(np.ascontiguousarray(m, dtype=np.float32), format="grayf32le")
    return np.clip(f.reformat(width, height, interpolation="BILINEAR").to_ndarray(), 0.0, 1.0)


def batched(it: Iterable, n: int):
    buf = []
    for x in it:
        buf.append(x)
        if len(buf) == n:
            yield buf
            buf = []
    if buf:
        yield buf


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
