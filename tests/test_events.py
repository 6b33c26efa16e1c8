"""Typed events: their NDJSON form, the progress adapter, and `encode --ndjson` end to end."""

from __future__ import annotations

import json
import subprocess
import sys

from vmaf_roi.events import Progress, ProgressEvents, Result, Status, notes, progress_events, to_dict, to_json


def test_ndjson_form_has_type_first_and_no_nan():
    d = json.loads(to_json(Result("compare", {"bd": float("nan"), "x": [1.0, float("inf")]})))
    assert list(d)[0] == "type" and d == {"type": "result", "command": "compare", "result": {"bd": None, "x": [1.0, None]}}
    assert to_dict(Status("hello", stage="encode", level="note")) == {
        "type": "status", "message": "hello", "stage": "encode", "level": "note"}


def test_progress_events_throttle_and_end_with_a_final_report():
    seen = []
    bar = ProgressEvents(seen.append, 100, "encode", interval=3600)
    for _ in range(100):
        bar.update()
    bar.close()
    bar.close()  # closing twice reports once
    assert seen == [Progress("encode", 1, 100), Progress("encode", 100, 100, final=True)]
    seen.clear()
    fast = progress_events(seen.append, interval=0)(5, "score")
    for _ in range(5):
        fast.update()
    fast.close()
    assert [e.done for e in seen] == [1, 2, 3, 4, 5, 5] and seen[-1].final and seen[0].stage == "score"
    notes(seen.append, "encode")("a note")
    assert seen[-1] == Status("a note", stage="encode", level="note")


def test_cli_encode_ndjson(clip, tmp_path):
    out = tmp_path / "o.mp4"
    proc = subprocess.run([sys.executable, "-m", "vmaf_roi", "encode", str(clip.path), "-o", str(out), "--ndjson",
                           "--set", "saliency.model=mobilesal_placeholder_v0"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]  # every stdout line is one JSON object
    kinds = [e["type"] for e in events]
    assert kinds[0] == "status" and kinds[-1] == "result" and "progress" in kinds
    assert any(e["type"] == "status" and e["level"] == "note" and "PLACEHOLDER" in e["message"] for e in events)
    prog = [e for e in events if e["type"] == "progress"]
    assert prog[-1] == {"type": "progress", "stage": "encode (roi)", "done": 12, "total": 12, "unit": "frame",
                        "final": True}
    res = events[-1]["result"]
    assert events[-1]["command"] == "encode" and res["frames"] == 12 and res["output"] == str(out)
    assert 0 < res["video_bitrate"] < res["total_bitrate"]
    both = subprocess.run([sys.executable, "-m", "vmaf_roi", "encode", str(clip.path), "-o", str(tmp_path / "b.mp4"),
                           "--ndjson", "--json"], capture_output=True, text=True)
    assert both.returncode != 0 and "choose one" in both.stderr and "Traceback" not in both.stderr
