from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmaf_roi.errors import ModelError
from vmaf_roi.registry import fetch, get_spec
from vmaf_roi.synth import make_clip


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A model cache holding a verified u2netp (fetched once per session), or skip."""
    env = os.environ.get("VMAF_ROI_MODEL_DIR")
    cache = Path(env) if env else tmp_path_factory.mktemp("models")
    try:
        fetch(get_spec("u2netp"), cache)
    except ModelError as exc:
        pytest.skip(f"u2netp cannot be fetched in this environment: {exc}")
    return cache


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """Short 320x240 clip with a known moving object, its mask video and an audio track."""
    d = tmp_path_factory.mktemp("clip")
    return make_clip(d / "clip.mp4", width=320, height=240, frames=12, fps=24, audio=True,
                     mask_path=d / "clip.mask.mkv")


def only_files(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}
