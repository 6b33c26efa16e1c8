"""`qpmap`: keyframe warning, the planner's offsets beside the encoder's QP, the picture itself."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vmaf_roi import config
from vmaf_roi.analysis import planned_offsets, qp_maps, qp_picture
from vmaf_roi.cli import main
from vmaf_roi.encode import encode
from conftest import PH


@pytest.fixture(scope="module")
def encodes(tmp_path_factory):
    from vmaf_roi.synth import make_clip

    d = tmp_path_factory.mktemp("qp")
    clip = make_clip(d / "in.mp4", width=160, height=96, frames=8, fps=24, seed=3)
    cfg = config.load(None, [f"saliency.model={PH}", "preset=veryfast", "roi.strength_width=0"])
    roi, plain = d / "roi.mp4", d / "plain.mp4"
    encode(clip.path, roi, cfg)
    encode(clip.path, plain, cfg, plain=True)
    return roi, plain, cfg


def test_non_keyframe_warns_and_keyframe_does_not(encodes, tmp_path, capsys):
    roi, plain, _ = encodes
    keys = [k for k, _ in qp_maps(roi)]
    other = keys.index(False)
    res = qp_picture(roi, tmp_path / "a.png", frame_index=other)
    assert not res.key_frame and len(res.warnings) == 1 and "inherit" in res.warnings[0]
    assert qp_picture(roi, tmp_path / "b.png", frame_index=0).warnings == []
    assert main(["qpmap", str(roi), "-o", str(tmp_path / "c.png"), "--frame", str(other)]) == 0
    err = capsys.readouterr().err
    assert "warning: frame" in err and "not a keyframe" in err and "--frame 0" in err


def test_planned_offsets_match_the_planner_and_go_beside_the_qp(encodes, tmp_path):
    roi, plain, cfg = encodes
    import av

    with av.open(str(roi)) as c:
        frame = next(c.decode(video=0))
    offs, model = planned_offsets(frame, cfg)
    qp = qp_maps(roi)[0][1]
    assert model == PH and offs.shape == qp.shape
    lim = cfg["roi"]["max_offset"]
    assert offs.min() >= -lim and offs.max() <= lim and offs.min() < 0  # something was boosted
    png = tmp_path / "p.png"
    res = qp_picture(roi, png, compare=plain, cfg=cfg)
    assert res.planned_model == PH
    w, h = Image.open(png).size
    assert w > h and png.stat().st_size < 300_000  # 2x2 panels: frame, QP, difference, planned


def test_cli_qpmap_planned(encodes, tmp_path, capsys):
    roi, plain, _ = encodes
    png = tmp_path / "q.png"
    assert main(["qpmap", str(roi), "-o", str(png), "--planned", "--set", f"saliency.model={PH}"]) == 0
    assert f"planned offsets from {PH}" in capsys.readouterr().err
    assert Image.open(png).size[0] > 0
    assert main(["qpmap", str(roi), "-o", str(png), "-y", "--frame", "99"]) == 3
    assert "has no frame 99" in capsys.readouterr().err


def test_cli_qpmap_shows_the_plan_by_default_in_one_row(encodes, tmp_path, capsys):
    """Without --compare or --planned: the frame, the QP and where ROI asked for more or fewer bits,
    in one row (no empty panel); --no-planned leaves the plan out."""
    roi, _, _ = encodes
    png = tmp_path / "d.png"
    assert main(["qpmap", str(roi), "-o", str(png), "--set", f"saliency.model={PH}"]) == 0
    assert f"planned offsets from {PH}" in capsys.readouterr().err
    w, h = Image.open(png).size
    assert w > 2.2 * h  # three panels side by side
    assert main(["qpmap", str(roi), "-o", str(png), "-y", "--no-planned"]) == 0
    assert "planned offsets" not in capsys.readouterr().err
    w2, h2 = Image.open(png).size
    assert w2 < w
