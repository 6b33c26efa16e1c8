"""What FFmpeg's ``salroi`` filter needs to run a registry model itself (model mode).

>>> salroi_options(get_spec("u2netp"))      # "salroi=model=...:sha256=...:size=320x320:..."
>>> ort_library()                           # the onnxruntime wheel's libonnxruntime.so.1.*

The filter reads the same registry keys as :class:`vmaf_roi.saliency.SaliencyModel`: input
size, scale (``255`` or ``image_max``), mean/std, postprocess (``none`` or ``minmax``) and the
tensor names, so any model with the pipeline's I/O contract works without code changes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import ModelError
from .registry import ModelSpec, require_saliency, sha256_file


def ort_library() -> Path:
    """The ONNX Runtime C library inside the installed onnxruntime(-gpu) wheel."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("onnxruntime is not installed: pip install onnxruntime (or onnxruntime-gpu)")
    capi = Path(list(spec.submodule_search_locations)[0]) / "capi"
    libs = sorted(capi.glob("libonnxruntime.so.1*"), key=lambda p: len(p.name))
    if not libs:
        raise ModelError(f"no libonnxruntime.so.1* in {capi}: this onnxruntime wheel has no C library")
    return libs[0]


def _escape(value: str) -> str:
    """Quote one option value for a filtergraph string (both escaping levels of FFmpeg)."""
    v = "".join("\\" + c if c in "\\':" else c for c in value)  # option level
    return "".join("\\" + c if c in "\\'[],;" else c for c in v)  # graph level


def _num(x: float) -> str:
    return format(float(x), "g")


def salroi_options(spec: ModelSpec, model_path: Path, *, ort_lib: Path | None = None,
                   digest: str | None = None) -> str:
    """``salroi=model=...`` with every registry key the filter needs for ``spec``."""
    require_saliency(spec)
    pre = spec.preprocess
    if pre.scale not in ("255", "image_max"):
        raise ModelError(f"model {spec.id!r}: preprocess.scale {pre.scale!r} is not 255 or image_max")
    if spec.postprocess not in ("none", "minmax"):
        raise ModelError(f"model {spec.id!r}: postprocess {spec.postprocess!r} is not none or minmax")
    opts = [
        ("model", str(model_path)),
        ("sha256", digest or spec.sha256),
        ("input", spec.input_name),
        ("output", spec.output_name),
    ]
    if pre.size:
        h, w = pre.size
        opts.append(("size", f"{int(w)}x{int(h)}"))
    opts += [
        ("scale", pre.scale),
        ("mean", "|".join(_num(v) for v in pre.mean)),
        ("std", "|".join(_num(v) for v in pre.std)),
        ("post", spec.postprocess),
    ]
    if spec.cpu_threads:  # the registry's intra-op threads for this model, as vmaf-roi runs it
        opts.append(("threads", str(spec.cpu_threads)))
    if ort_lib is not None:
        opts.append(("ort_lib", str(ort_lib)))
    return "salroi=" + ":".join(f"{k}={_escape(v)}" for k, v in opts)


def model_file(spec: ModelSpec, cache_dir: Path | None = None) -> tuple[Path, str]:
    """The model's path and its verified sha256 (an error when missing or different)."""
    path = spec.location(cache_dir)
    if not path.is_file():
        hint = f"vmaf-roi models fetch {spec.id}" if not spec.bundled else "reinstall vmaf-roi"
        raise ModelError(f"model {spec.id!r} is missing at {path} ({hint})")
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise ModelError(f"model {spec.id!r} at {path} has sha256 {digest}, expected {spec.sha256} "
                         f"(vmaf-roi models fetch {spec.id})")
    return path, digest
