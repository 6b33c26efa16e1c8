"""Fixtures and helpers shared by the test files (import the helpers: ``from conftest import PH, cfg``)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vmaf_roi import config
from vmaf_roi.errors import ModelError
from vmaf_roi.registry import fetch, get_spec, load_verified
from vmaf_roi.synth import make_clip

REPO = Path(__file__).resolve().parents[1]
PH = "mobilesal_placeholder_v0"  # the placeholder model: cheap, deterministic, not saliency


def built_ffmpeg() -> Path | None:
    """The ffmpeg built by plugin/build.sh: $VMAF_ROI_SALROI_FFMPEG (which must then be an
    executable: a wrong path fails the run), else the links in build/bin; None when not built."""
    env = os.environ.get("VMAF_ROI_SALROI_FFMPEG")
    if env:
        p = Path(env)
        if not (p.is_file() and os.access(p, os.X_OK)):
            pytest.fail(f"VMAF_ROI_SALROI_FFMPEG={env} is not an executable file", pytrace=False)
        return p
    for p in (REPO / "build" / "bin" / "ffmpeg-minimal", REPO / "build" / "bin" / "ffmpeg"):
        if p.is_file():
            return p
    return None


def built_ffmpeg_or_skip(what: str = "the patched ffmpeg") -> Path:
    """:func:`built_ffmpeg`, or skip the test with how to build it."""
    p = built_ffmpeg()
    if p is None:
        pytest.skip(f"{what} is not built: run plugin/build.sh (or set VMAF_ROI_SALROI_FFMPEG to its path)")
    return p


def cfg(*sets: str) -> dict:
    """The default encode config with ``--set`` style overrides, and the strength applied as
    given at every frame width (``roi.strength_width: 0``): the test clips are 320 pixels wide or
    less, and the tests pin QP moves to the strength they set. The default's width scaling has
    tests of its own (test_roi, test_plugin, test_encode)."""
    return config.load(None, ["roi.strength_width=0", *sets])


def ph_cfg(*sets: str) -> dict:
    """:func:`cfg` with the placeholder model."""
    return cfg(f"saliency.model={PH}", *sets)


def make_frame(w: int = 64, h: int = 48, fmt: str = "yuv420p", pts: int | None = 5,
               rgb: np.ndarray | None = None) -> av.VideoFrame:
    """A frame of ``rgb`` (black by default) in format ``fmt``, with pts in 1/30 s."""
    data = np.zeros((h, w, 3), np.uint8) if rgb is None else rgb
    f = av.VideoFrame.from_ndarray(data, format="rgb24").reformat(format=fmt)
    f.pts, f.time_base = pts, Fraction(1, 30)
    return f


def decoded(path: Path) -> list[tuple[Fraction | None, np.ndarray]]:
    """(timestamp in seconds, pixels) of every frame of the first video stream."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [(f.pts * f.time_base if f.pts is not None else None, f.to_ndarray()) for f in c.decode(s)]


def verified_model_dir(cache: Path, model_id: str = "u2netp") -> Path:
    """``cache`` holding a verified copy of ``model_id``.

    A file that is there but fails its sha256 check fails the test run: that is an integrity
    problem, never a reason to skip. Only a model that is missing and cannot be fetched here
    (no network, no index) skips, with the reason.
    """
    spec = get_spec(model_id)
    if spec.location(cache).is_file():
        try:
            load_verified(spec, cache)
        except ModelError as exc:
            pytest.fail(f"model cache {cache}: {exc}", pytrace=False)
        return cache
    try:
        fetch(spec, cache)
    except ModelError as exc:
        if "failed verification" in str(exc):  # downloaded, but not the bytes the registry pins
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(f"{model_id} is not in {cache} and cannot be fetched in this environment: {exc}")
    return cache


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A model cache holding a verified u2netp (fetched once per session), or skip if unobtainable."""
    env = os.environ.get("VMAF_ROI_MODEL_DIR")
    return verified_model_dir(Path(env) if env else tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """Short 320x240 clip with a known moving object, its mask video and an audio track."""
    d = tmp_path_factory.mktemp("clip")
    return make_clip(d / "clip.mp4", width=320, height=240, frames=12, fps=24, audio=True,
                     mask_path=d / "clip.mask.mkv")


def only_files(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


def corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps (1 for two equal constant maps, 0 for unequal ones)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


# ONNX Runtime turns its telemetry off by itself where one of these says it runs in CI
# (the names in libonnxruntime.so's strings; "CI" too): a test of our own switch must unset them
ORT_CI_MARKERS = ("CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL",
                  "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR", "BITBUCKET_BUILD_NUMBER")


def telemetry_files(cmd: list[str], home: Path, value: str | None, **env) -> list[str]:
    """The files ``cmd`` leaves under ``home`` (made fresh), run with ORT_DISABLE_TELEMETRY=value
    (None: unset; this test process has it set, by vmaf_roi's import) and without the CI markers
    that would turn ONNX Runtime's telemetry off by themselves."""
    import subprocess

    home.mkdir()
    drop = ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME", *ORT_CI_MARKERS)
    env = {**{k: v for k, v in os.environ.items() if k not in drop}, "HOME": str(home), **env}
    if value is not None:
        env["ORT_DISABLE_TELEMETRY"] = value
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())


def alive(pid: int) -> bool:
    """Whether process pid runs; a zombie (not yet reaped by its parent) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def interrupt_on_attach(monkeypatch, n: int = 5) -> dict:
    """Ctrl-C in the middle of an encode: the n-th ``RoiAttacher.attach`` raises KeyboardInterrupt.
    Returns the call counter ({"n": calls so far})."""
    import vmaf_roi.encode as enc_mod

    real, calls = enc_mod.RoiAttacher.attach, {"n": 0}

    def boom(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(enc_mod.RoiAttacher, "attach", boom)
    return calls
