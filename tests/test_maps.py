"""The heat-map overlay explains itself: a colour-scale legend is burnt into every frame."""

from __future__ import annotations

import av
import numpy as np

from vmaf_roi.maps import heat_lut, legend_strip, run_saliency
from vmaf_roi.saliency import SaliencyModel
from vmaf_roi.synth import make_clip
from conftest import PH


def test_legend_fits_any_frame_and_runs_from_cold_to_hot():
    for w, h in ((32, 16), (64, 48), (320, 240), (1920, 1080)):
        rgb, alpha, x, y = legend_strip(w, h, "saliency: some model")
        assert x >= 0 and y >= 0 and x + rgb.shape[1] <= w and y + rgb.shape[0] <= h
        assert alpha.shape[:2] == rgb.shape[:2]
    rgb, _, _, _ = legend_strip(640, 360, "saliency: u2netp")
    lut = heat_lut()
    # the colour bar holds the overlay's own colours, from the coldest (left) to the hottest (right)
    cols = [c for c in range(rgb.shape[1]) if any(np.abs(rgb[:, c].astype(int) - lut[0]).sum(axis=1) < 4)]
    hot = [c for c in range(rgb.shape[1]) if any(np.abs(rgb[:, c].astype(int) - lut[255]).sum(axis=1) < 4)]
    assert cols and hot and max(cols) < min(hot)


def test_overlay_frames_carry_the_legend(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", width=320, height=240, frames=3)
    ov = tmp_path / "ov.mp4"
    run_saliency(clip.path, overlay=ov, model=SaliencyModel(PH, device="cpu"))
    rgb, _, x, y = legend_strip(320, 240, f"saliency: {PH} (PLACEHOLDER, not saliency)")
    with av.open(str(ov)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    h, w = rgb.shape[:2]
    got = frame[y: y + h, x: x + w].astype(float).ravel()
    assert np.corrcoef(got, rgb.astype(float).ravel())[0, 1] > 0.8  # the legend is there, legibly
