"""User data is safe: inputs never overwritten, existing outputs only with -y, atomic writes,
signals clean up, bounded config parsing, one clear error line per user mistake."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmaf_roi import config
from vmaf_roi.batch import Manifest
from vmaf_roi.cli import main
from vmaf_roi.errors import ConfigError, short
from vmaf_roi.output import AtomicOutputs, check_outputs, clean_stale, temp_files
from vmaf_roi.synth import make_clip
from conftest import PH, alive

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 64x48 clip of 6 frames and its mask."""
    d = tmp_path_factory.mktemp("tiny")
    return make_clip(d / "a.mp4", width=64, height=48, frames=6, fps=12, mask_path=d / "a.mask.mkv")


@pytest.fixture
def work(tmp_path, tiny):
    """A directory holding copies of the tiny clip and its mask (so tests can check it is untouched)."""
    for p in (tiny.path, tiny.mask_path):
        (tmp_path / p.name).write_bytes(p.read_bytes())
    return tmp_path


def snapshot(d: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None) for p in sorted(d.rglob("*"))}


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("vmaf-roi: error:")]
    assert len(lines) == 1, err
    return lines[0]


def unwritable_dir(tmp_path: Path) -> Path:
    """A directory this process cannot create files in (root ignores modes: use /sys)."""
    if os.geteuid() == 0:
        d = Path("/sys")
        try:
            fd = os.open(d / ".vmaf-roi-probe", os.O_CREAT | os.O_WRONLY)
        except OSError:
            return d
        os.close(fd)
        pytest.skip("no unwritable directory for root here")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    return d


# -- inputs are never written, existing outputs only with -y --------------------------------
@pytest.mark.parametrize("argv", [
    ["score", "{a}", "{a}", "-o", "{a}"],
    ["score", "{a}", "{a}", "--json", "-o", "{a}", "-y"],
    ["score", "{a}", "{a}", "--mask", "{m}", "-o", "{m}", "-y"],
    ["compare", "{a}", "--crf", "20,30", "--json", "{a}", "-y"],
    ["compare", "{a}", "--crf", "20,30", "--plot", "{a}.png", "--mask", "{a}.png"],
    ["saliency", "{a}", "-o", "{a}", "--model", PH, "-y"],
    ["encode", "{a}", "-o", "{a}", "--plain", "-y"],
    ["qpmap", "{a}", "-o", "{a}", "-y"],
])
def test_no_command_writes_over_an_input(work, capsys, argv):
    a, m = work / "a.mp4", work / "a.mask.mkv"
    (work / "a.mp4.png").write_bytes(b"not a mask")  # for the --plot == --mask case
    before = snapshot(work)
    argv = [x.format(a=a, m=m) for x in argv]
    rc = main(argv)
    line = one_error(capsys)
    assert rc in (2, 8), line
    assert "also an input" in line or "a picture is written" in line
    assert snapshot(work) == before


def test_same_file_through_a_hard_link_is_an_input(work, capsys):
    a = work / "a.mp4"
    os.link(a, work / "link.mp4")
    before = snapshot(work)
    assert main(["score", str(a), str(a), "--json", "-o", str(work / "link.mp4"), "-y"]) == 8
    assert "also an input" in one_error(capsys)
    assert snapshot(work) == before


@pytest.mark.parametrize("cmd", ["encode", "saliency", "score", "qpmap", "sample", "compare-json"])
def test_existing_output_needs_overwrite(work, capsys, cmd):
    a = work / "a.mp4"
    out = work / ("out.png" if cmd == "qpmap" else "out.json" if cmd.startswith("compare") else "out.mkv")
    out.write_bytes(b"precious")
    argv = {
        "encode": ["encode", str(a), "-o", str(out), "--plain"],
        "saliency": ["saliency", str(a), "-o", str(out), "--model", PH],
        "score": ["score", str(a), str(a), "-o", str(out)],
        "qpmap": ["qpmap", str(a), "-o", str(out)],
        "sample": ["sample", str(out), "--width", "32", "--height", "32", "--frames", "2"],
        "compare-json": ["compare", str(a), "--crf", "20,30", "--json", str(out)],
    }[cmd]
    before = snapshot(work)
    assert main(argv) == 8
    assert "already exists (use -y/--overwrite" in one_error(capsys)
    assert snapshot(work) == before  # refused before any work: nothing written, no out dir
    if cmd in ("encode", "score", "sample", "qpmap"):  # cheap enough to run for real
        assert main(argv + ["-y"]) == 0
        assert out.read_bytes() != b"precious"
        assert sorted(p.name for p in work.iterdir()) == sorted(before)


def test_compare_checks_every_output_before_encoding(work, capsys, monkeypatch):
    import vmaf_roi.encode as encode_mod

    def no_encode(*a, **k):
        raise AssertionError("encoded before the outputs were checked")

    monkeypatch.setattr(encode_mod, "encode", no_encode)
    a = work / "a.mp4"
    before = snapshot(work)
    (work / "a.compare").mkdir()
    (work / "a.compare" / "a.crf30.roi.mkv").write_bytes(b"mine")
    assert main(["compare", str(a), "--crf", "20,30"]) == 8
    assert "a.crf30.roi.mkv already exists" in one_error(capsys)
    (work / "a.compare" / "a.crf30.roi.mkv").unlink()
    (work / "a.compare").rmdir()
    for extra, what in ((["--plot", str(work / "x.mp4")], "a picture is written"),
                        (["--json", str(work / "missing" / "dir" / "r.json")], "does not exist"),
                        (["--mask", str(work / "nomask.mkv")], "no such file")):
        assert main(["compare", str(a), "--crf", "20,30", *extra]) in (2, 3, 8)
        assert what in one_error(capsys)
        assert snapshot(work) == before  # no empty a.compare/ left behind


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    out = tmp_path / "o.txt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".o.txt.vmaf-roi-{dead.pid}-0123abcd.part.txt"
    live = tmp_path / f".o.txt.vmaf-roi-{os.getppid()}-0123abcd.part.txt"  # a running process's
    other = tmp_path / f".p.txt.vmaf-roi-{dead.pid}-0123abcd.part.txt"  # beside another output
    scratch = tmp_path / f".o.txt.vmaf-roi-{dead.pid}-0123abcd.part.txt.raw"  # a writer's own scratch file
    for p in (stale, live, other, scratch):
        p.write_text("x")
        os.utime(p, (time.time() - 3600,) * 2)
    assert {p for p, _ in temp_files(out)} == {stale, live, scratch}
    with AtomicOutputs(overwrite=False) as outs:
        outs.add(out).write_text("done")
    assert out.read_text() == "done"
    assert not stale.exists() and not scratch.exists() and live.exists() and other.exists()
    assert clean_stale(out) == 0


def test_overwrite_writes_through_a_symlink(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "o.txt"
    target.write_text("old")
    link = tmp_path / "o.txt"
    link.symlink_to(target)
    with AtomicOutputs(overwrite=True) as outs:
        outs.add(link).write_text("new")
    assert link.is_symlink() and target.read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["o.txt"]


def test_atomic_outputs_remove_everything_on_error(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with AtomicOutputs() as outs:
            outs.add(tmp_path / "a.mkv").write_bytes(b"half")
            outs.add(tmp_path / "b.json").write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(Exception, match="named twice"):
        check_outputs([tmp_path / "x", tmp_path / "." / "x"])


# -- item 7: one error line instead of a traceback -------------------------------------------
def _cases(work: Path, ro: Path) -> dict[str, tuple[list[str], int, str]]:
    a = work / "a.mp4"
    return {
        "webm-x264": (["encode", str(a), "-o", str(work / "x.webm"), "--plain"], 2, "'webm' format does not support"),
        "bitrate-1e999": (["encode", str(a), "-o", str(work / "x.mp4"), "-c", str(work / "inf.yaml")], 2,
                          "rate_control.value"),
        "not-utf8": (["encode", str(a), "-o", str(work / "x.mp4"), "-c", str(work / "latin1.yaml")], 2, "not UTF-8"),
        "overlay-1x1": (["saliency", str(work / "one.mkv"), "--overlay", str(work / "ov.mp4"), "--model", PH], 3,
                        "at least 2x2"),
        "saliency-ro": (["saliency", str(a), "-o", str(ro / "s.mkv"), "--model", PH], 8, "cannot write"),
        "score-ro": (["score", str(a), str(a), "-o", str(ro / "s.txt")], 8, "cannot write"),
        "qpmap-ro": (["qpmap", str(a), "-o", str(ro / "q.png")], 8, "cannot write"),
        "compare-ro": (["compare", str(a), "--crf", "20,30", "-o", str(ro / "c")], 8, "cannot create"),
        "sample-ro": (["sample", str(ro / "x.mp4")], 8, "cannot write"),
        "demo-ro": (["demo", str(ro / "d")], 8, "cannot create"),
        "encode-ro": (["encode", str(a), "-o", str(ro / "x.mp4"), "--plain"], 8, "cannot write"),
        "compare-plot-mp4": (["compare", str(a), "--crf", "20,30", "--plot", str(work / "x.mp4")], 2,
                             "a picture is written"),
        "compare-json-missing-dir": (["compare", str(a), "--crf", "20,30", "--json", str(work / "no/dir/r.json")], 8,
                                     "does not exist"),
        "models-fetch-dir": (["models", "fetch", "u2netp", "--model-dir", str(work / "models")], 4,
                             "not a regular file"),
        "sample-1x1": (["sample", str(work / "s.mp4"), "--width", "1", "--height", "1"], 2, "--width"),
        "sample-odd": (["sample", str(work / "s.mp4"), "--width", "33"], 2, "even"),
        "sample-frames": (["sample", str(work / "s.mp4"), "--frames", "0"], 2, "--frames"),
        "demo-on-file": (["demo", str(a)], 8, "not a directory"),
        "qpmap-frame": (["qpmap", str(a), "-o", str(work / "q.png"), "--frame", "-1"], 2, "--frame"),
    }


CASES = list(_cases(Path("w"), Path("r")))


@pytest.mark.parametrize("case", CASES)
def test_user_mistakes_give_one_line(work, capsys, case):
    (work / "inf.yaml").write_text("rate_control:\n  mode: bitrate\n  value: 1e999\n")
    (work / "latin1.yaml").write_bytes("roi:\n  strength: 4 # Stärke\n".encode("latin-1"))
    (work / "models" / "u2netp.onnx").mkdir(parents=True)
    with av.open(str(work / "one.mkv"), "w") as c:
        s = c.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = 1, 1, "gray"
        for i in range(2):
            f = av.VideoFrame.from_ndarray(np.full((1, 1), 90, np.uint8), format="gray")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    ro = unwritable_dir(work) if case.endswith("-ro") else work / "unused"
    argv, code, what = _cases(work, ro)[case]
    before = snapshot(work)
    rc = main(argv)
    line = one_error(capsys)
    assert rc == code and what in line, line
    assert snapshot(work) == before


# -- item 8: errors that said the wrong thing ------------------------------------------------
def test_fifo_input_is_not_an_empty_file(work, capsys):
    fifo = work / "in.mp4"
    os.mkfifo(fifo)
    for argv in (["encode", str(fifo), "-o", str(work / "o.mp4"), "--plain"],
                 ["saliency", str(fifo), "-o", str(work / "o.mkv"), "--model", PH],
                 ["score", str(fifo), str(work / "a.mp4")],
                 ["compare", str(fifo), "--crf", "20,30"]):
        assert main(argv) == 3
        line = one_error(capsys)
        assert "not a regular file" in line and "empty" not in line
    assert sorted(p.name for p in work.iterdir()) == ["a.mask.mkv", "a.mp4", "in.mp4"]


@pytest.mark.parametrize("where", ["model", "config"])
def test_fifo_model_or_config_does_not_hang(work, where):
    """Run in a child with a timeout: a FIFO opened for reading would block forever."""
    models = work / "models"
    models.mkdir()
    os.mkfifo(models / "u2netp.onnx")
    os.mkfifo(work / "job.yaml")
    argv = (["saliency", str(work / "a.mp4"), "-o", str(work / "s.mkv"), "--model", "u2netp", "--model-dir", str(models)]
            if where == "model" else ["encode", str(work / "a.mp4"), "-o", str(work / "o.mp4"), "-c", str(work / "job.yaml")])
    r = subprocess.run([sys.executable, "-m", "vmaf_roi", *argv], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(SRC)})
    assert r.returncode == (4 if where == "model" else 2), r.stderr
    assert "not a regular file" in r.stderr and "Traceback" not in r.stderr
    assert not (work / "s.mkv").exists() and not (work / "o.mp4").exists()


def test_pix_fmt_note_names_the_configured_format(work, capsys):
    assert main(["encode", str(work / "a.mp4"), "-o", str(work / "o.mkv"), "--plain", "--set", "pix_fmt=yuv444p"]) == 0
    err = capsys.readouterr().err
    assert "converting yuv420p to yuv444p (config pix_fmt)" in err and "does not take" not in err
    with av.open(str(work / "o.mkv")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv444p"


def test_unwritable_output_is_not_a_gpu_problem(work, capsys):
    ro = unwritable_dir(work)
    assert main(["encode", str(work / "a.mp4"), "-o", str(ro / "o.mp4"), "--plain"]) == 8
    line = one_error(capsys)
    assert "GPU" not in line and str(ro) in line


# -- item 9: commands that wrote when they should not ---------------------------------------
def _mask_video(path: Path, w: int, h: int, colour: bool) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=12)
        s.width, s.height, s.pix_fmt = w, h, "yuv444p" if colour else "gray"
        for i in range(6):
            if colour:
                img = np.zeros((h, w, 3), np.uint8)
                img[..., 0] = 255  # red
                f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv444p")
            else:
                f = av.VideoFrame.from_ndarray(np.full((h, w), 255, np.uint8), format="gray")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


@pytest.mark.parametrize("kind", ["size", "colour"])
def test_bad_mask_is_refused(work, capsys, kind):
    bad = work / "bad.mask.mkv"
    _mask_video(bad, 32 if kind == "size" else 64, 24 if kind == "size" else 48, colour=kind == "colour")
    before = snapshot(work)
    for argv in (["score", str(work / "a.mp4"), str(work / "a.mp4"), "--mask", str(bad)],
                 ["compare", str(work / "a.mp4"), "--crf", "20,30", "--mask", str(bad)]):
        assert main(argv) == 3
        line = one_error(capsys)
        assert ("32x24, the reference 64x48" in line) if kind == "size" else ("in colour" in line)
        assert snapshot(work) == before


def test_compare_on_a_bad_input_leaves_no_directory(work, capsys):
    bad = work / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    before = snapshot(work)
    assert main(["compare", str(bad), "--crf", "20,30"]) == 3
    one_error(capsys)
    assert snapshot(work) == before


def _batch_file(d: Path, inputs: list[str], out: str = "out", manifest: str | None = None) -> Path:
    data = {"version": 1, "output_dir": out, "jobs": [{"name": "j", "inputs": inputs, "output": "{stem}.mkv",
                                                       "plain": True}]}
    if manifest:
        data["manifest"] = manifest
    p = d / f"batch-{manifest or 'default'}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_batch_dry_run_writes_nothing(work, capsys):
    good = _batch_file(work, ["a.mp4"])
    before = snapshot(work)
    assert main(["batch", str(good), "--dry-run"]) == 0
    assert snapshot(work) == before  # no out/, no manifest, no lock
    bad = _batch_file(work, ["a.mp4", "missing-*.mp4"], manifest="m2.jsonl")
    before = snapshot(work)
    assert main(["batch", str(bad), "--dry-run"]) == 1  # a job would fail
    assert snapshot(work) == before
    # a damaged manifest is read, not rewritten
    (work / "out").mkdir()
    (work / "out" / ".vmaf-roi-batch.jsonl").write_bytes(b'{"key": "a.mkv", "status": "done"}\n{torn')
    before = snapshot(work)
    assert main(["batch", str(good), "--dry-run"]) == 0
    assert snapshot(work) == before
    capsys.readouterr()


def test_batch_lock_is_per_output_directory(tmp_path):
    a = Manifest(tmp_path / "out" / "one.jsonl").open()
    try:
        with pytest.raises(ConfigError, match="another batch run is using"):
            Manifest(tmp_path / "out" / "two.jsonl").open()
        Manifest(tmp_path / "other" / "one.jsonl").open().close()  # another directory: fine
        ro = Manifest(tmp_path / "out" / "two.jsonl", readonly=True).open()  # --dry-run reads only
        ro.close()
    finally:
        a.close()
    Manifest(tmp_path / "out" / "two.jsonl").open().close()  # released


# -- signals ----------------------------------------------------------------------------------
FAKE_FFMPEG = """\
#!{python}
import os, sys, time
if "-filters" in sys.argv:
    print(" ... libvmaf          VV->V      Calculate the VMAF between two video streams.")
    sys.exit(0)
open(os.environ["FAKE_FFMPEG_PID"], "w").write(str(os.getpid()))
time.sleep(120)  # a long VMAF run
"""


def _wait_for(pred, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def ours(tmp: Path) -> list[str]:
    """Our temporaries in TMPDIR (other libraries may keep their own files there)."""
    return [p.name for p in tmp.iterdir() if p.name.startswith("vmaf-roi")]



def _where(proc: subprocess.Popen, child: int) -> str:
    """A hung command's state: its threads' kernel wait channels, its pending and caught signals,
    whether its ffmpeg child lives, then its Python stacks (faulthandler, on SIGABRT)."""
    lines = [f"ffmpeg child {child} alive: {alive(child)}"]
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
        lines += [ln for ln in status if ln.startswith(("State", "Sig", "Shd"))]
        for t in sorted(Path(f"/proc/{proc.pid}/task").iterdir()):
            lines.append(f"thread {t.name}: {(t / 'comm').read_text().strip()} waits in {(t / 'wchan').read_text()}")
    except OSError as exc:
        lines.append(f"(no /proc entry: {exc})")
    proc.send_signal(signal.SIGABRT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        err = "(no answer to SIGABRT)"
    return "\n".join(lines) + "\n" + (err or "")[-6000:]


def _signal_during_ffmpeg(work: Path, fake_script: str, args: list[str], sig: int, env: dict | None = None) -> None:
    """Run ``vmaf-roi ARGS`` with a fake ffmpeg that sleeps, send ``sig`` once the child runs,
    and check: exit 128+sig with one line, the child killed, no temporaries anywhere."""
    fake = work / "fake-ffmpeg"
    fake.write_text(fake_script.format(python=sys.executable))
    fake.chmod(0o755)
    tmp = work / "tmp"
    tmp.mkdir()
    pid_file = work / "ffmpeg.pid"
    # PYTHONFAULTHANDLER: a command that does not end gets SIGABRT below, and prints where
    # each of its threads was (seen once in a few hundred runs on a loaded machine, not explained)
    env = {**os.environ, "PYTHONPATH": str(SRC), "TMPDIR": str(tmp), "FAKE_FFMPEG_PID": str(pid_file),
           "PYTHONFAULTHANDLER": "1", **{k: v.format(fake=fake) for k, v in (env or {}).items()}}
    proc = subprocess.Popen([sys.executable, "-m", "vmaf_roi", *(a.format(fake=fake) for a in args)],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: pid_file.exists() and pid_file.read_text()), "the ffmpeg child never started"
        child = int(pid_file.read_text())
        assert ours(tmp)  # the command's temporary directory exists while ffmpeg runs
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"vmaf-roi still running 60 s after {signal.Signals(sig).name}:\n"
                                 f"{_where(proc, child)}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    name = "Ctrl-C" if sig == signal.SIGINT else signal.Signals(sig).name
    assert f"interrupted ({name})" in err and "Traceback" not in err
    assert _wait_for(lambda: not alive(child), 10), "orphaned ffmpeg child still running"
    assert ours(tmp) == []
    assert sorted(p.name for p in work.iterdir()) == ["a.mask.mkv", "a.mp4", "fake-ffmpeg", "ffmpeg.pid", "tmp"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_stops_the_ffmpeg_child_and_leaves_nothing(work, sig):
    a = str(work / "a.mp4")
    _signal_during_ffmpeg(work, FAKE_FFMPEG, ["score", a, a, "--model", PH, "--ffmpeg", "{fake}", "--json",
                                              "-o", str(work / "s.json")], sig)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_aborts_a_batch_and_its_workers_clean_up(work, sig):
    """The driver gets the signal while a worker's score step runs ffmpeg: the worker is
    stopped, ffmpeg with it, the unit's output and temporaries are removed, exit 128+N."""
    import json

    fake = work / "fake-ffmpeg"
    fake.write_text(FAKE_FFMPEG.format(python=sys.executable))
    fake.chmod(0o755)
    tmp = work / "tmp"
    tmp.mkdir()
    pid_file = work / "ffmpeg.pid"
    bf = work / "b.yaml"
    bf.write_text(yaml.safe_dump({"version": 1, "output_dir": "out", "jobs": [
        {"name": "j", "inputs": ["a.mp4"], "output": "{stem}.mkv", "plain": True, "score": {"ffmpeg": str(fake)}}]}))
    env = {**os.environ, "PYTHONPATH": str(SRC), "TMPDIR": str(tmp), "FAKE_FFMPEG_PID": str(pid_file)}
    proc = subprocess.Popen([sys.executable, "-m", "vmaf_roi", "batch", str(bf), "-j", "1", "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: pid_file.exists() and pid_file.read_text(), 120), "the ffmpeg child never started"
        child = int(pid_file.read_text())
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    events = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    worker = next(e["pid"] for e in events if e["event"] == "start")
    assert _wait_for(lambda: not alive(child) and not alive(worker), 10), \
        f"orphaned worker or ffmpeg: child alive {alive(child)}, worker alive {alive(worker)}; {err[-800:]}"
    assert events[-1]["event"] == "summary" and events[-1]["interrupted"]
    assert f"interrupted ({signal.Signals(sig).name})" in events[-1]["failures"][0]["reason"]
    assert sorted(p.name for p in (work / "out").iterdir()) == [".vmaf-roi-batch.jsonl", ".vmaf-roi-batch.lock"], err[-1500:]
    assert ours(tmp) == []


def test_sigterm_during_an_encode_removes_the_partial_output(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", width=320, height=240, frames=96, fps=24)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-m", "vmaf_roi", "encode", str(clip.path), "-o", str(tmp_path / "o.mp4"),
                             "--plain", "--set", "preset=veryslow"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        # the output's own temporary (.o.mp4.vmaf-roi-...part.mp4), not the directory's
        # write probe that comes and goes before it (test_interrupted_directory_probe_leaves_nothing)
        assert _wait_for(lambda: any(p.name.startswith(".o.mp4.") for p in tmp_path.iterdir())), \
            "no temporary output appeared"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert [p.name for p in tmp_path.iterdir()] == ["in.mp4"]


def test_interrupted_directory_probe_leaves_nothing(tmp_path, monkeypatch):
    """The check that an output's directory is writable makes a file and removes it; a signal
    between the two (seen once: SIGTERM left .vmaf-roi-probe...part behind) removes it too. So
    does a signal as an output's temporary is made."""
    from vmaf_roi import output

    real_close = os.close

    def interrupted(fd):
        real_close(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(output.os, "close", interrupted)
    with pytest.raises(KeyboardInterrupt):
        output.probe_dir(tmp_path)
    monkeypatch.setattr(output.os, "close", real_close)
    assert list(tmp_path.iterdir()) == []
    output.probe_dir(tmp_path)  # and the plain case
    assert list(tmp_path.iterdir()) == []
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    if not os.access(ro, os.W_OK):  # (root writes anywhere)
        with pytest.raises(output.OutputError, match="cannot write to directory"):
            output.probe_dir(ro)
    # the same for an output's own temporary, made by AtomicOutputs.add
    monkeypatch.setattr(output.os, "close", interrupted)
    with pytest.raises(KeyboardInterrupt), output.AtomicOutputs() as outs:
        outs.add(tmp_path / "o.mp4")
    monkeypatch.setattr(output.os, "close", real_close)
    assert [p.name for p in tmp_path.iterdir()] == ["ro"]


# -- bounded YAML -----------------------------------------------------------------------------
ALIAS_BOMB = textwrap.dedent("""\
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    roi: {strength: *g}
    """)


def test_alias_bomb_fails_fast_in_small_memory(tmp_path, capsys):
    p = tmp_path / "bomb.yaml"
    p.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB) < 500
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match="alias bomb") as exc:
            config.load(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20 and len(str(exc.value)) < 300
    assert main(["encode", str(tmp_path / "x.mp4"), "-o", str(tmp_path / "o.mp4"), "-c", str(p)]) == 2
    assert len(one_error(capsys)) < 300


def test_bounded_yaml_other_limits(tmp_path):
    # a small expansion is fine, and still validated as usual
    (tmp_path / "ok.yaml").write_text("roi: &r {strength: 3}\n")
    assert config.load(tmp_path / "ok.yaml")["roi"]["strength"] == 3
    (tmp_path / "rec.yaml").write_text("roi: &r {strength: *r}\n")
    with pytest.raises(ConfigError, match="recursive alias"):
        config.load(tmp_path / "rec.yaml")
    (tmp_path / "big.yaml").write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        config.load(tmp_path / "big.yaml")
    (tmp_path / "deep.yaml").write_text("roi: " + "[" * 200 + "]" * 200 + "\n")
    with pytest.raises(ConfigError, match="nest"):
        config.load(tmp_path / "deep.yaml")
    # a long value is quoted short
    (tmp_path / "long.yaml").write_text(f"roi: {{strength: '{'x' * 100000}'}}\n")
    with pytest.raises(ConfigError) as exc:
        config.load(tmp_path / "long.yaml")
    assert len(str(exc.value)) < 200
    assert len(short(list(range(10**6)))) <= 60


def test_non_utf8_config(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_bytes(b"roi:\n  mode: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xff at offset 13\)"):
        config.load(p)


# -- property tests: the loader returns a valid config or raises ConfigError, nothing else -----
SECTIONS = {"rate_control": ["mode", "value", "two_pass"], "saliency": list(config.DEFAULTS["saliency"]),
            "roi": list(config.DEFAULTS["roi"]), "encoder_params": ["aq-mode", "x"], "encoder_options": ["g", "tune"]}
def txt(n: int):
    return st.text(st.characters(blacklist_categories=("Cs",)), max_size=n)


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                    txt(20), st.sampled_from(["auto", "crf", "bitrate", "2.5M", "1e999", "lower", "-1k"]))
values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                      st.dictionaries(txt(8), kids, max_size=3)),
                      max_leaves=8)
sections = st.fixed_dictionaries({}, optional={
    k: st.one_of(values, st.dictionaries(st.sampled_from(v) | txt(6), values, max_size=4))
    for k, v in SECTIONS.items()
} | {k: values for k in ("encoder", "preset", "pix_fmt", "filters", "audio", "bogus")})


def _load_text(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "prop.yaml"
    p.write_bytes(data)
    try:
        cfg = config.load(p)
    except ConfigError as exc:
        msg = str(exc)
        assert "\n" not in msg and len(msg) < 400, msg
        return
    assert cfg is config.validate(cfg)  # a returned config is valid (validation is idempotent)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=sections)
def test_config_loader_property_structured(tmp_path, doc):
    _load_text(tmp_path, yaml.safe_dump(doc, allow_unicode=True).encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200) | txt(200).map(str.encode))
def test_config_loader_property_any_bytes(tmp_path, data):
    _load_text(tmp_path, data)


@settings(max_examples=100, deadline=None)
@given(item=txt(40))
def test_set_override_property(item):
    try:
        config.load(None, [item])
    except ConfigError as exc:
        assert "\n" not in str(exc)


def test_demo_checks_every_output_first(tmp_path, capsys, monkeypatch):
    import vmaf_roi.synth as synth_mod

    def interrupted(*a, **k):  # like Ctrl-C while the clip is written
        raise KeyboardInterrupt

    monkeypatch.setattr(synth_mod, "make_clip", interrupted)
    d = tmp_path / "demo"
    (d / "compare").mkdir(parents=True)
    (d / "compare" / "sample.crf33.roi.mkv").write_bytes(b"an earlier run's")
    before = snapshot(tmp_path)
    assert main(["demo", str(d), "--model", PH]) == 8
    assert "sample.crf33.roi.mkv already exists (use -y" in one_error(capsys)
    assert snapshot(tmp_path) == before
    (d / "compare" / "sample.crf33.roi.mkv").unlink()
    (d / "compare").rmdir()
    before = snapshot(tmp_path)
    assert main(["demo", str(d / "new" / "dir"), "--model", PH]) == 130
    assert snapshot(tmp_path) == before  # the directories it made are removed again
    capsys.readouterr()


FAKE_PATCHED_FFMPEG = """\
#!{python}
import os, sys, time
if "-h" in sys.argv:
    what = sys.argv[sys.argv.index("-h") + 1]
    if what == "filter=salroi":
        print("Filter salroi")
    elif what.startswith("encoder="):
        print("  -roi <boolean> E..V....... Honour region of interest side data with an SVT-AV1 ROI map")
    sys.exit(0)
open(os.environ["FAKE_FFMPEG_PID"], "w").write(str(os.getpid()))
time.sleep(120)  # a long encode
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_a_patched_ffmpeg_encode_kills_it_and_leaves_nothing(work, sig):
    _signal_during_ffmpeg(work, FAKE_PATCHED_FFMPEG,
                          ["encode", str(work / "a.mp4"), "-o", str(work / "o.mkv"), "--set", "encoder=libsvtav1",
                           "--set", f"saliency.model={PH}"], sig, env={"VMAF_ROI_FFMPEG_PATCHED": "{fake}"})


def test_a_patched_ffmpeg_that_exits_0_without_output_is_one_error_and_leaves_nothing(work, capsys, monkeypatch):
    """A broken patched build: it says it succeeded and wrote nothing. One line and exit 6 (an
    encode error), not a traceback from opening its missing output; nothing left behind."""
    fake = work / "fake-ffmpeg"
    fake.write_text(FAKE_PATCHED_FFMPEG.format(python=sys.executable).replace("time.sleep(120)  # a long encode",
                                                                               "sys.exit(0)  # and no output"))
    fake.chmod(0o755)
    pid = work / "ffmpeg.pid"
    monkeypatch.setenv("VMAF_ROI_FFMPEG_PATCHED", str(fake))
    monkeypatch.setenv("FAKE_FFMPEG_PID", str(pid))
    before = {p.name for p in work.iterdir()}
    rc = main(["encode", str(work / "a.mp4"), "-o", str(work / "o.mkv"), "--set", "encoder=libsvtav1",
               "--set", f"saliency.model={PH}"])
    assert rc == 6 and pid.exists()  # the encode ran
    err = one_error(capsys)
    assert "ffmpeg exited 0 but left no output that opens" in err and ".part" not in err
    assert {p.name for p in work.iterdir()} == before | {"ffmpeg.pid"}
