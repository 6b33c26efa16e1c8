"""`vmaf-roi batch`: validation, resume, isolation of failures, SIGKILLed workers, Dask.

Inputs are tiny synthetic clips and the bundled placeholder model, so the whole file runs in
well under a minute. Checksums are compared only for MP4 outputs: the Matroska muxer writes a
random SegmentUID into every file, so two identical encodes to .mkv differ in a few header
bytes (measured; the packets are identical), while MP4 output of this pipeline is
reproducible byte for byte. libx264 is also pinned to one thread for the cross-executor
comparison, so nothing depends on thread scheduling.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from vmaf_roi import batch as batch_mod
from vmaf_roi.batch import MANIFEST_NAME, load_batch, read_manifest, run_unit
from vmaf_roi.cli_batch import main
from vmaf_roi.errors import ConfigError
from vmaf_roi.synth import make_clip
from conftest import PH, alive

DETERMINISTIC = {"saliency": {"model": PH}, "encoder_params": {"threads": 1, "lookahead-threads": 1}}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("batch-in")
    for i in range(3):
        make_clip(d / f"c{i}.mp4", width=128, height=96, frames=12, fps=24, seed=i)
    make_clip(d / "slow.mp4", width=128, height=96, frames=48, fps=24, seed=7)
    (d / "notvideo.mp4").write_bytes(b"this is not a video file\n" * 40)
    (d / "empty.mp4").write_bytes(b"")
    return d


def write_batch(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "jobs.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def basic(clips: Path, **extra) -> dict:
    data = {
        "output_dir": "out",
        "defaults": {"config": DETERMINISTIC},
        "jobs": [{"name": "roi", "inputs": [str(clips / "c*.mp4")], "output": "roi/{stem}.mp4"}],
    }
    data.update(extra)
    return data


def run_json(argv: list[str], capsys) -> tuple[int, list[dict]]:
    rc = main([*argv, "--json"])
    out = capsys.readouterr().out
    return rc, [json.loads(line) for line in out.splitlines() if line.strip()]


def leftovers(d: Path) -> list[str]:
    """Anything that is a temporary (or a partial) rather than a finished output."""
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if ".part" in p.name or p.name.endswith(".compare"))


def statuses(out: Path) -> dict[str, str]:
    return {k: r["status"] for k, r in read_manifest(out / MANIFEST_NAME).items()}


# -- validation -----------------------------------------------------------------------------
def test_whole_file_is_validated_first_with_job_and_key(tmp_path, clips):
    data = {
        "output_dir": "out",
        "job": [],  # typo of jobs
        "jobs": [
            {"name": "a", "inputs": str(clips / "c0.mp4"), "output": "../{stem}.mp4"},
            {"name": "b", "inputs": str(clips / "c0.mp4"), "output": "/tmp/{stem}.mp4"},
            {"name": "c", "inputs": str(clips / "c0.mp4"), "output": "{stm}.mp4"},
            {"name": "d", "inputs": str(clips / "c0.mp4"), "output": "{stem}.mp4", "config": {"roi": {"strenght": 2}}},
            {"name": "e", "inputs": str(clips / "c0.mp4"), "output": "{stem}.mp4", "confg": {}},
            {"name": "f", "inputs": [str(clips / "c0.mp4"), str(clips / "c1.mp4")], "output": "same.mp4"},
            {"name": "g", "inputs": str(clips / "c0.mp4"), "output": "{stem}.mp4", "config": {"encoder": "ffv1"}},
            {"name": "h", "inputs": str(clips / "c0.mp4"), "output": "{stem}"},
            {"name": "i", "inputs": str(clips / "c0.mp4"), "output": "{stem}.i.mp4", "gpu": "yes"},
        ],
    }
    with pytest.raises(ConfigError) as ei:
        load_batch(write_batch(tmp_path, data))
    msg = str(ei.value)
    for want in ("job: unknown key (did you mean jobs?)",
                 "jobs[0] (a).output", "contains '..'",
                 "jobs[1] (b).output", "is absolute",
                 "jobs[2] (c).output", "unknown field {stm} (did you mean stem?)",
                 "jobs[3] (d).config", "roi.strenght: unknown key (did you mean roi.strength?)",
                 "jobs[4] (e).confg: unknown key (did you mean config?)",
                 "jobs[5] (f).output", "written by both",
                 "jobs[6] (g).config", "ffv1 ignores ROI",
                 "jobs[7] (h).output", "has no extension",
                 "jobs[8] (i).gpu"):
        assert want in msg, (want, msg)
    assert not (tmp_path / "out").exists()  # nothing was started


def test_symlinked_subdirectory_cannot_escape_output_dir(tmp_path, clips):
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "elsewhere")
    data = basic(clips)
    data["jobs"][0]["output"] = "link/{stem}.mp4"
    with pytest.raises(ConfigError, match="outside output_dir"):
        load_batch(write_batch(tmp_path, data))


# -- local executor: failures, resume, idempotence ------------------------------------------
def test_mixed_inputs_then_resume_and_idempotence(tmp_path, clips, capsys):
    data = basic(clips)
    data["jobs"].append({"name": "bad", "inputs": [str(clips / "notvideo.mp4"), str(clips / "empty.mp4"),
                                                   str(clips / "missing.mp4"), str(clips / "nothing*.mp4")],
                         "output": "bad/{stem}.mp4"})
    bf = write_batch(tmp_path, data)
    out = tmp_path / "out"

    rc, events = run_json([str(bf), "-j", "2"], capsys)
    assert rc == 1  # some jobs failed, the others ran
    summary = events[-1]
    assert summary["event"] == "summary"
    assert (summary["done"], summary["skipped"], summary["failed"]) == (3, 0, 4)
    reasons = {Path(f["input"]).name: f["reason"] for f in summary["failures"]}
    assert "not a readable media file" in reasons["notvideo.mp4"]
    assert "empty" in reasons["empty.mp4"]
    assert "no such file" in reasons["missing.mp4"]
    assert reasons["nothing*.mp4"] == "no files match"
    assert sorted(p.name for p in (out / "roi").iterdir()) == ["c0.mp4", "c1.mp4", "c2.mp4"]
    assert not (out / "bad").exists() or not any((out / "bad").iterdir())
    assert leftovers(out) == []
    st = statuses(out)
    assert st["roi/c0.mp4"] == "done" and st["bad/notvideo.mp4"] == "failed" and st["bad/missing.mp4"] == "failed"
    rec = read_manifest(out / MANIFEST_NAME)["roi/c1.mp4"]
    assert rec["input_id"]["size"] == (clips / "c1.mp4").stat().st_size and len(rec["input_id"]["sha256"]) == 64
    assert rec["output_sha256"] == batch_mod.sha256_file(out / "roi/c1.mp4") and rec["config_hash"]
    assert {"progress", "start", "done", "failed", "batch"} <= {e["event"] for e in events}

    # second run: nothing to redo, outputs untouched
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "roi").iterdir()}
    rc, events = run_json([str(bf)], capsys)
    s = events[-1]
    assert rc == 1 and (s["done"], s["skipped"], s["failed"]) == (0, 3, 4)
    assert mtimes == {p.name: p.stat().st_mtime_ns for p in (out / "roi").iterdir()}

    # a deleted output is redone; one changed since (by someone) is unknown: refused and left
    # as it is without --overwrite, redone with it; the third is skipped
    (out / "roi/c0.mp4").unlink()
    with open(out / "roi/c1.mp4", "ab") as f:
        f.write(b"x")
    changed = (out / "roi/c1.mp4").read_bytes()
    data["jobs"] = data["jobs"][:1]
    write_batch(tmp_path, data)
    rc, events = run_json([str(bf)], capsys)
    s = events[-1]
    assert rc == 1 and (s["done"], s["skipped"], s["failed"]) == (1, 1, 1)
    assert "differs from what the manifest recorded" in s["failures"][0]["reason"]
    assert (out / "roi/c1.mp4").read_bytes() == changed
    assert {e["key"] for e in events if e["event"] == "start"} == {"roi/c0.mp4"}
    rc, events = run_json([str(bf), "--overwrite"], capsys)
    s = events[-1]
    assert rc == 0 and (s["done"], s["skipped"], s["failed"]) == (1, 2, 0)
    assert {e["key"] for e in events if e["event"] == "start"} == {"roi/c1.mp4"}

    # a config change redoes all of that job; --force redoes everything
    data["jobs"][0]["config"] = {"rate_control": {"value": 30}}
    write_batch(tmp_path, data)
    rc, events = run_json([str(bf)], capsys)
    assert rc == 0 and events[-1]["done"] == 3
    rc, events = run_json([str(bf)], capsys)
    assert rc == 0 and events[-1]["skipped"] == 3
    rc, events = run_json([str(bf), "--force"], capsys)
    assert rc == 0 and events[-1]["done"] == 3


def test_unknown_existing_output_needs_overwrite(tmp_path, clips, capsys):
    bf = write_batch(tmp_path, basic(clips))
    (tmp_path / "out/roi").mkdir(parents=True)
    mine = tmp_path / "out/roi/c1.mp4"
    mine.write_bytes(b"precious")
    rc, events = run_json([str(bf), "-j", "2"], capsys)
    assert rc == 1 and events[-1]["done"] == 2
    assert "not in the manifest" in events[-1]["failures"][0]["reason"]
    assert mine.read_bytes() == b"precious"
    assert "roi/c1.mp4" not in read_manifest(tmp_path / "out" / MANIFEST_NAME)
    rc, events = run_json([str(bf), "--overwrite"], capsys)
    assert rc == 0 and (events[-1]["done"], events[-1]["skipped"]) == (1, 2)
    assert mine.read_bytes() != b"precious"


def test_torn_manifest_line_is_ignored_and_repaired(tmp_path, clips, capsys):
    bf = write_batch(tmp_path, basic(clips))
    assert main([str(bf), "-q"]) == 0
    assert "3 jobs: 3 done, 0 skipped, 0 failed" in capsys.readouterr().out
    man = tmp_path / "out" / MANIFEST_NAME
    with open(man, "a") as f:
        f.write('{"key": "roi/c0.mp4", "status": "do')  # a run killed mid-write
    rc, events = run_json([str(bf)], capsys)
    assert rc == 0 and events[-1]["skipped"] == 3
    assert all(json.loads(line) for line in man.read_text().splitlines())  # rewritten clean


def test_second_run_on_same_output_dir_is_refused(tmp_path, clips):
    bf = write_batch(tmp_path, basic(clips))
    b = load_batch(bf)
    with batch_mod.Manifest(b.manifest_path):
        with pytest.raises(ConfigError, match="another batch run"):
            batch_mod.Manifest(b.manifest_path).open()


def test_missing_step_module_fails_only_that_job(tmp_path, clips, monkeypatch):
    monkeypatch.setitem(batch_mod.STEP_HOOKS, "score", ("vmaf_roi._no_such_step", "score"))
    data = basic(clips)
    data["jobs"][0]["score"] = {"roi_weight": 0.5}
    b = load_batch(write_batch(tmp_path, data))  # validation does not need the step module
    u = b.units[0]
    res = run_unit(u)
    assert res["status"] == "failed"
    assert res["reason"] == "score step: vmaf_roi._no_such_step is not available in this install"
    assert leftovers(tmp_path / "out") == []


def test_score_step_reports_progress_and_video_bitrate(tmp_path, clips):
    data = basic(clips)
    data["jobs"][0]["inputs"] = [str(clips / "c0.mp4")]
    data["jobs"][0]["score"] = {}
    u = load_batch(write_batch(tmp_path, data)).units[0]
    msgs = []
    res = run_unit(u, msgs.append)
    assert res["status"] == "done", res
    stages = [m.get("stage") for m in msgs if m["type"] == "progress"]
    assert stages[0] == "encode" and stages[-1] == "score"  # the step shows progress too, named
    last = [m for m in msgs if m["type"] == "progress"][-1]
    assert last["frames"] == last["total"] == 12 and last["final"]
    assert 0 < res["video_bitrate"] <= res["total_bitrate"] == res["bitrate"]
    assert batch_mod._detail(res).startswith("12 frames, video ")


def test_ndjson_events_carry_a_type(tmp_path, clips, capsys):
    data = basic(clips)
    data["jobs"][0]["inputs"] = [str(clips / "c1.mp4")]
    rc = main([str(write_batch(tmp_path, data)), "--ndjson", "-j", "1"])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 0 and {e["type"] for e in events} == {"status", "progress", "result"}
    assert [e["event"] for e in events if e["type"] == "result"] == ["done", "summary"]
    assert all(e["type"] == "progress" for e in events if e["event"] == "progress")


def test_summary_table_fits_100_columns():
    from vmaf_roi.cli_batch import summary_table

    long = "/data/" + "very_long_directory_name/" * 4 + "clip_with_a_long_name.mp4"
    rows = [batch_mod.Row("done", "a-job-with-a-long-name", long, long.replace("/data", "/out"),
                          "48 frames, video 1234 kb/s (total 1300), 12.3 s, score vmaf=93.21, and more detail " * 2),
            batch_mod.Row("failed", "j", "/in/x.mp4", "-", "no files match")]
    text = summary_table(batch_mod.Summary(rows=rows, seconds=1.0))
    assert max(len(line) for line in text.splitlines()) <= 100, text
    assert "clip_with_a_long_name.mp4" in text and "no files match" in text and "video 1234 kb/s" in text


# -- killed worker --------------------------------------------------------------------------
def test_sigkilled_worker_leaves_no_partial_and_rerun_completes(tmp_path, clips, capsys):
    data = basic(clips)
    # `realtime` paces decoding at the clip's frame rate (48 frames: 2 s), so the kill lands mid-job
    data["jobs"].append({"name": "slow", "inputs": str(clips / "slow.mp4"), "output": "slow/{stem}.mp4",
                         "config": {"filters": "realtime"}})
    bf = write_batch(tmp_path, data)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    pid = killed = None
    partial_seen = False
    deadline = time.monotonic() + 60
    with subprocess.Popen([sys.executable, "-m", "vmaf_roi.cli_batch", str(bf), "--json", "-j", "2", "--retries", "0"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            e = json.loads(line)
            if e.get("key") == "slow/slow.mp4":
                if e["event"] == "start":
                    pid = e["pid"]
                elif e["event"] == "progress" and e["frames"] >= 4 and killed is None:
                    partial_seen = bool(batch_mod.temp_files(out / "slow/slow.mp4"))
                    os.kill(pid, signal.SIGKILL)
                    killed = pid
            assert time.monotonic() < deadline
        err = proc.stderr.read()
        rc = proc.wait(timeout=60)
    assert killed is not None, err
    assert partial_seen  # the encode really was half-written when the worker died
    assert rc == 1, err
    assert not (out / "slow/slow.mp4").exists() and leftovers(out) == []
    rec = read_manifest(out / MANIFEST_NAME)["slow/slow.mp4"]
    assert rec["status"] == "failed" and "SIGKILL" in rec["reason"]
    assert statuses(out)["roi/c2.mp4"] == "done"

    rc, events = run_json([str(bf), "-j", "2"], capsys)
    s = events[-1]
    assert rc == 0 and (s["done"], s["skipped"], s["failed"]) == (1, 3, 0)
    assert [e["key"] for e in events if e["event"] == "done"] == ["slow/slow.mp4"]
    assert (out / "slow/slow.mp4").stat().st_size > 0 and leftovers(out) == []


def test_sigkilled_run_leaves_no_finished_looking_partial(tmp_path, clips, capsys):
    """Killing the driver itself: its workers die with it, the half-written output stays a
    hidden temporary, the manifest stays readable, and the next run cleans up and finishes."""
    data = basic(clips)
    data["jobs"].append({"name": "slow", "inputs": str(clips / "slow.mp4"), "output": "slow/{stem}.mp4",
                         "config": {"filters": "realtime"}})  # 2 s
    bf = write_batch(tmp_path, data)
    out = tmp_path / "out"
    pids: list[int] = []
    with subprocess.Popen([sys.executable, "-m", "vmaf_roi.cli_batch", str(bf), "--json", "-j", "2"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            e = json.loads(line)
            if e["event"] == "start":
                pids.append(e["pid"])
            if e["event"] == "progress" and e["key"] == "slow/slow.mp4" and e["frames"] >= 3:
                proc.kill()
                break
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids and not any(alive(p) for p in pids)
    assert not (out / "slow/slow.mp4").exists() and batch_mod.temp_files(out / "slow/slow.mp4")
    assert read_manifest(out / MANIFEST_NAME)["slow/slow.mp4"]["status"] == "running"
    rc, events = run_json([str(bf), "-j", "2"], capsys)
    assert rc == 0 and "slow/slow.mp4" in {e["key"] for e in events if e["event"] == "done"}
    assert leftovers(out) == [] and events[-1]["failed"] == 0



def test_worker_death_is_retried(tmp_path, clips):
    """A unit whose worker dies is retried (--retries) on a fresh worker."""
    from vmaf_roi.executors import LocalExecutor

    data = basic(clips)
    data["jobs"][0]["inputs"] = [str(clips / "slow.mp4")]
    data["jobs"][0]["config"] = {"filters": "realtime"}
    b = load_batch(write_batch(tmp_path, data))
    seen: list[dict] = []

    def on_event(e):
        seen.append(e)
        if e["event"] == "progress" and e["frames"] >= 2 and not any(x["event"] == "retry" for x in seen):
            pid = [x for x in seen if x["event"] == "start"][-1]["worker"].split()[-1]
            os.kill(int(pid), signal.SIGKILL)

    summary = batch_mod.run_batch(b, LocalExecutor(1, retries=1), on_event=on_event)
    assert summary.ok and summary.count("done") == 1
    assert [e["event"] for e in seen].count("retry") == 1 and [e["event"] for e in seen].count("start") == 2


# -- Dask -----------------------------------------------------------------------------------
def test_dask_localcluster_matches_local_checksums(tmp_path, clips, capsys):
    distributed = pytest.importorskip("distributed")
    data = basic(clips)
    # a GPU-tagged job: the cluster's workers declare GPU=1, so Dask may place it (it runs on the CPU here)
    data["jobs"].append({"name": "gpu", "inputs": str(clips / "c0.mp4"), "output": "gpu/{stem}.mp4", "gpu": True,
                         "config": {"roi": {"strength": 3}}})
    bf = write_batch(tmp_path, data)
    assert load_batch(bf).units[-1].gpu
    rc, local = run_json([str(bf), "-o", str(tmp_path / "local"), "-j", "2"], capsys)
    assert rc == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, resources={"GPU": 1}) as cluster:
        rc, dask = run_json([str(bf), "-o", str(tmp_path / "dask"), "--executor", "dask",
                             "--scheduler", cluster.scheduler_address], capsys)
    assert rc == 0, dask[-1]
    assert dask[0]["executor"] == "dask" and dask[-1]["done"] == 4
    assert any(e["event"] == "progress" for e in dask)  # progress comes back from the workers
    assert all(e["worker"].startswith("tcp://127.0.0.1:") for e in dask if e["event"] == "start")

    def sums(events):
        return {e["key"]: e["output_sha256"] for e in events if e["event"] == "done"}

    assert sums(local) == sums(dask) and len(sums(local)) == 4
    for key, sha in sums(dask).items():
        assert batch_mod.sha256_file(tmp_path / "dask" / key) == sha


def test_gpu_job_without_gpu_worker_fails_clearly(tmp_path, clips):
    distributed = pytest.importorskip("distributed")
    from vmaf_roi.executors import DaskExecutor

    data = basic(clips)
    data["jobs"][0]["gpu"] = True
    data["jobs"][0]["inputs"] = [str(clips / "c0.mp4")]
    b = load_batch(write_batch(tmp_path, data))
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        summary = batch_mod.run_batch(b, DaskExecutor(client=client))
    assert summary.count("failed") == 1 and "GPU" in summary.rows[0].detail


def test_example_batch_file_validates():
    b = load_batch(Path(__file__).parent.parent / "configs" / "batch-example.yaml")
    assert [u.job for u in b.units] == ["rd-check", "at-vmaf-93", "savings"]
    assert {u.job for u in b.unmatched} == {"trailers"}
    assert "compare" in b.units[0].steps
    assert b.units[1].search["mode"] == "target-vmaf" and b.units[1].search["vmaf"] == 93.0
    assert b.units[2].search["mode"] == "save-against" and b.units[2].search["crf"] == 23.0


def test_add_parsers_registers_batch():
    import argparse

    from vmaf_roi import cli_batch

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    cli_batch.add_parsers(sub)
    args = p.parse_args(["batch", "jobs.yaml", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1", "--json"])
    assert args.func is cli_batch.cmd_batch and args.executor == "dask" and args.json


def test_changed_input_is_redone_and_recorded(tmp_path, clips, capsys):
    """Same path, new content: the manifest's input digest no longer matches, so the job runs again."""
    src = tmp_path / "in" / "clip.mp4"
    src.parent.mkdir()
    src.write_bytes((clips / "c0.mp4").read_bytes())
    data = {"output_dir": "out", "defaults": {"config": DETERMINISTIC},
            "jobs": [{"name": "roi", "inputs": [str(src)], "output": "{stem}.mp4"}]}
    bf = write_batch(tmp_path, data)
    out = tmp_path / "out"
    rc, events = run_json([str(bf)], capsys)
    assert rc == 0 and events[-1]["done"] == 1
    first = read_manifest(out / MANIFEST_NAME)["clip.mp4"]

    src.write_bytes((clips / "c1.mp4").read_bytes())  # another clip under the same name
    batch = load_batch(bf)
    man = batch_mod.Manifest(batch.manifest_path)
    man.records = read_manifest(batch.manifest_path)
    (d,) = batch_mod.plan(batch, man)
    assert (d.action, d.reason) == ("run", "input changed")

    rc, events = run_json([str(bf)], capsys)
    assert rc == 0 and (events[-1]["done"], events[-1]["skipped"]) == (1, 0)
    second = read_manifest(out / MANIFEST_NAME)["clip.mp4"]
    assert second["input_id"]["sha256"] == batch_mod.sha256_file(src) != first["input_id"]["sha256"]
    assert second["output_sha256"] == batch_mod.sha256_file(out / "clip.mp4") != first["output_sha256"]
