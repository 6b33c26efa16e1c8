"""Running a batch: one unit on a worker (:func:`run_unit`), all of them from the driver
(:func:`run_batch`).

See :mod:`vmaf_roi.batch` for the whole picture.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import re
import shutil
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import VmafRoiError
from ..registry import sha256_file
from .manifest import Manifest, file_identity, plan, step_output
from .schema import STEP_KINDS, Batch, EventSink, Unit, _jsonable, _noop, _step_function


class _ReportingProgress:
    """Encode progress -> throttled ``progress`` reports (at most ~5 a second, plus the last)."""

    def __init__(self, report: EventSink, total: int | None, interval: float = 0.2, stage: str = "encode") -> None:
        self.report, self.total, self.interval, self.stage = report, total, interval, stage
        self.n, self._last = 0, 0.0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.report({"type": "progress", "frames": self.n, "total": self.total, "stage": self.stage})

    def close(self) -> None:
        self.report({"type": "progress", "frames": self.n, "total": self.total, "stage": self.stage, "final": True})


def run_step(kind: str, unit: Unit, output: Path, report: EventSink = _noop) -> Any:
    """Run a score/compare step; writes its full result beside the output as
    ``<output>.<kind>.json`` and returns a compact summary for the manifest. Its progress
    (frames of each of its stages) and notes go to ``report`` like the encode's."""
    from ..output import AtomicOutputs

    fn = _step_function(kind)
    opts = dict(unit.steps.get(kind) or {})
    params = inspect.signature(fn).parameters
    takes_model_dir = "model_dir" in params or kind == "score"
    if unit.model_dir and takes_model_dir and "model_dir" not in opts:
        opts["model_dir"] = Path(unit.model_dir)
    any_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if "progress" in params or any_kw:
        opts["progress"] = lambda total, desc: _ReportingProgress(
            report, total, stage=kind if desc == kind else f"{kind}: {desc}")
    if kind == "score":
        res = fn(Path(unit.input), output, **opts)
    else:
        if "on_event" in params:
            def on_event(e: Any) -> None:
                if getattr(e, "level", "info") != "info":
                    report({"type": "note", "message": getattr(e, "message", str(e))})

            opts["on_event"] = on_event
        work = output.parent / f".{output.name}.compare"
        work.mkdir(exist_ok=True)
        try:
            res = fn(Path(unit.input), unit.cfg, out_dir=work, **opts)
        finally:
            if not opts.get("keep"):
                shutil.rmtree(work, ignore_errors=True)
    full = _jsonable(res)
    with AtomicOutputs() as outs:
        side = outs.add(output.with_name(f"{output.name}.{kind}.json"))
        side.write_text(json.dumps(full, indent=2, default=str) + "\n")
    if isinstance(full, dict):
        keep = {"score": ("pooled", "frames", "vmaf_model"), "compare": ("bd", "points", "kind", "metrics")}[kind]
        small = {k: full[k] for k in keep if k in full}
        return small or {k: v for k, v in full.items() if k != "per_frame"}
    return full


def run_unit(unit: Unit, report: EventSink = _noop) -> dict[str, Any]:
    """Encode one unit (and run its steps). Never raises for a job's own failure: returns
    ``{"status": "done", ...}`` or ``{"status": "failed", "reason": ...}``.

    A unit is all or nothing: when a step fails or the worker is stopped (SIGTERM) after the
    encode, the output and step files it wrote are removed again, so a file at an output path
    is always a finished job (and a re-run does not mistake it for someone else's)."""
    from ..encode import encode

    t0 = time.perf_counter()
    out = Path(unit.output)
    wrote: list[Path] = []  # emptied when the unit completes
    try:
        return _run_unit(unit, report, out, wrote, t0, encode)
    finally:
        for p in wrote:
            try:
                p.unlink()
            except OSError:
                pass


def _run_unit(unit: Unit, report: EventSink, out: Path, wrote: list[Path], t0: float, encode) -> dict[str, Any]:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        searched: dict[str, Any] | None = None
        if unit.search:
            res, searched = _search_encode(unit, out, report)
        else:
            res = encode(
                unit.input, out, unit.cfg, plain=unit.plain,
                progress=lambda total, desc: _ReportingProgress(report, total),
                on_event=lambda m: report({"type": "note", "message": m}),
                model_dir=Path(unit.model_dir) if unit.model_dir else None,
                overwrite=True,  # the planner decided: the output is ours, or --overwrite
            )
        wrote.append(out)
        done: dict[str, Any] = {
            "status": "done", "output_sha256": sha256_file(out), "output_size": out.stat().st_size,
            "frames": res.frames, "bitrate": round(res.total_bitrate), "video_bitrate": round(res.video_bitrate),
            "total_bitrate": round(res.total_bitrate), "fps": round(res.fps, 2),
            "encoder": res.encoder, "roi": res.roi, "model": res.model, "provider": res.provider,
        }
        if searched is not None:
            done["crf"] = searched["crf"]
            done["search"] = searched
        for kind in STEP_KINDS:
            if kind in unit.steps:
                report({"type": "note", "message": f"running {kind} step"})
                wrote.append(out.with_name(f"{out.name}.{kind}.json"))
                done[kind] = run_step(kind, unit, out, report)
        if unit.steps:  # what a re-run checks is still there, and still what this run wrote
            done["step_outputs"] = {kind: file_identity(step_output(out, kind)) for kind in STEP_KINDS
                                    if kind in unit.steps}
        done["seconds"] = round(time.perf_counter() - t0, 3)
        wrote.clear()  # complete: keep everything
        return done
    except VmafRoiError as exc:
        return {"status": "failed", "reason": str(exc), "error": type(exc).__name__,
                "seconds": round(time.perf_counter() - t0, 3)}
    except Exception as exc:  # a bug: fail this job only, keep the traceback in the manifest
        return {"status": "failed", "reason": f"internal error: {type(exc).__name__}: {exc}", "error": "internal",
                "traceback": traceback.format_exc(), "seconds": round(time.perf_counter() - t0, 3)}


class _Encoded:
    """What the manifest takes from an encode, for a search's final encode (its ``encode`` dict)."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.frames, self.encoder, self.roi = d["frames"], d["encoder"], d["roi"]
        self.model, self.provider, self.fps = d.get("model", ""), d.get("provider", ""), d.get("fps", 0.0)
        self.video_bitrate, self.total_bitrate = d["video_bitrate"], d["total_bitrate"]


def _search_encode(unit: Unit, out: Path, report: EventSink) -> tuple[Any, dict[str, Any]]:
    """A target_vmaf / save_against unit: the CRF from the search cache (same input content,
    config and target) or searched and cached, then the encode; the manifest's summary of it."""
    from .. import search as search_mod

    spec = dict(unit.search)
    mode = spec.pop("mode")
    cache = search_mod.SearchCache(unit.search_cache) if unit.search_cache else None
    key = search_mod.search_key(unit.input, unit.cfg, unit.plain, unit.search)
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        report({"type": "note", "message": f"search cache hit: CRF {hit['crf']:g} ({Path(unit.search_cache) / key}.json)"})

    def on_event(e: Any) -> None:
        level = getattr(e, "level", "info")
        msg = getattr(e, "message", None)
        if msg and (level != "info" or getattr(e, "stage", "") == "search"):
            report({"type": "note", "message": msg})

    kw: dict[str, Any] = dict(
        model_dir=Path(unit.model_dir) if unit.model_dir else None, overwrite=True, on_event=on_event,
        progress=lambda total, desc: _ReportingProgress(report, total, stage=desc),
        samples=spec.pop("samples", None), sample_seconds=float(spec.pop("sample_duration", 2.0)),
        measure=bool(spec.pop("measure", True)), cached=hit)
    if mode == "target-vmaf":
        res = search_mod.target_vmaf(unit.input, out, unit.cfg, target=spec["vmaf"], pool=spec["pool"],
                                     plain=unit.plain, **kw)
        summary = {"mode": mode, "target": res.target, "pool": res.pool, "crf": res.crf, "predicted": res.predicted,
                   "sample_error": res.sample_error, "measured": res.measured}
        record = {"crf": res.crf, "predicted": res.predicted, "samples": res.samples}
    else:
        res = search_mod.save_against(unit.input, out, unit.cfg, crf=spec["crf"], guard=spec["guard"],
                                      gaze=spec.get("gaze"), **kw)
        summary = {"mode": mode, "against_crf": res.against_crf, "guard": res.guard, "crf": res.crf,
                   "weights": res.weights, "independent": res.independent,  # False: the model judged its own encode
                   "bound_by": res.bound_by, "predicted": res.predicted,
                   "measured": res.measured, "saving": res.saving if res.measured else None}
        record = {"crf": res.crf, "predicted": res.predicted, "bound_by": res.bound_by, "samples": res.samples}
    summary.update(probes=len(res.probes), cached=hit is not None, search_seconds=round(res.search_seconds, 3))
    if cache is not None and hit is None:
        cache.put(key, {**record, "input": unit.input, "mode": mode, "spec": unit.search,
                        "probes": [dataclasses.asdict(p) for p in res.probes]})
    return _Encoded(res.encode), _jsonable(summary)


def temp_files(output: str | Path, *, only_dead: bool = False) -> list[Path]:
    """Temporaries a killed worker can leave beside ``output``: AtomicOutputs' hidden
    ``.<stem>.<hex>.part<suffix>`` files (for the output and its step sidecars) and a compare
    step's work directory. None of them looks like a finished output."""
    from .. import output as output_mod

    out = Path(output)
    if not out.parent.is_dir():
        return []
    names = [out.name] + [f"{out.name}.{k}.json" for k in STEP_KINDS]
    # earlier versions' names (.<stem>.<hex>.part<suffix>), then today's (output.temp_path)
    pats = [re.compile(r"\." + re.escape(Path(n).stem) + r"\.[0-9a-f]{8}\.part" + re.escape(Path(n).suffix) + r"\Z")
            for n in names]
    found = [p for p in out.parent.iterdir() if any(pt.match(p.name) for pt in pats)]
    # only_dead: not those of a process still running (another vmaf-roi command writing there)
    found += [p for n in names for p, pid in output_mod.temp_files(out.parent / n)
              if not (only_dead and output_mod.pid_alive(pid))]
    work = out.parent / f".{out.name}.compare"
    return found + ([work] if work.is_dir() else [])


def remove_temp_files(output: str | Path) -> int:
    """Remove what :func:`temp_files` finds of dead processes; the number removed."""
    from ..output import remove_path

    return sum(remove_path(p) for p in temp_files(output, only_dead=True))


# -- running --------------------------------------------------------------------------------
@dataclass
class Row:
    status: str  # done | skipped | failed
    job: str
    input: str
    output: str
    detail: str
    seconds: float = 0.0


@dataclass
class Summary:
    rows: list[Row]
    seconds: float
    interrupted: bool = False
    signum: int = 0  # with interrupted: the signal (SIGINT, SIGTERM, SIGHUP)

    def count(self, status: str) -> int:
        return sum(1 for r in self.rows if r.status == status)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0 and not self.interrupted


class Interrupt:
    """First Ctrl-C drains (no new jobs; running ones finish), second aborts. SIGTERM and SIGHUP
    (a job scheduler, a closed terminal) abort at once: running jobs are stopped and cleaned up."""

    ABORT_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))

    def __init__(self) -> None:
        self.level = 0
        self.signum = 0  # the signal that aborted the run (SIGINT for Ctrl-C)
        self._old = None
        self._old_abort: dict[int, Any] = {}

    def __enter__(self) -> "Interrupt":
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
            for sig in self.ABORT_SIGNALS:
                self._old_abort[sig] = signal.signal(sig, self._abort)
        return self

    def _handler(self, signum, frame) -> None:
        self.level += 1
        self.signum = self.signum or signum
        if self.level >= 3 and callable(self._old):  # a third Ctrl-C: give up at once
            signal.signal(signal.SIGINT, self._old)
            raise KeyboardInterrupt

    def _abort(self, signum, frame) -> None:
        if self.level < 2:
            self.signum = signum
        self.level = max(self.level, 2)

    @property
    def what(self) -> str:
        return "Ctrl-C" if self.signum in (0, signal.SIGINT) else signal.Signals(self.signum).name

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        for sig, h in self._old_abort.items():
            signal.signal(sig, h)


def run_batch(batch: Batch, executor, *, force: bool = False, overwrite: bool = False,
              on_event: EventSink = _noop, interrupt: Interrupt | None = None) -> Summary:
    """Plan, run the units that need it on ``executor``, record everything in the manifest."""
    t0 = time.perf_counter()
    rows: list[Row] = []
    by_key: dict[str, Unit] = {}
    interrupted = False
    signum = 0

    def ev(kind: str, unit: Unit | None = None, **kw) -> None:
        e: dict[str, Any] = {"event": kind}
        if unit is not None:
            e.update(job=unit.job, input=unit.input, output=unit.output, key=unit.key)
        e.update(kw)
        on_event(e)

    with Manifest(batch.manifest_path) as man:
        decisions = plan(batch, man, force=force, overwrite=overwrite)
        for u in batch.unmatched:
            rows.append(Row("failed", u.job, u.pattern, "-", "no files match"))
        to_run: list[Unit] = []
        finished: set[str] = set()
        ids: dict[str, dict[str, Any] | None] = {}
        for d in decisions:
            u = d.unit
            by_key[u.key] = u
            ids[u.key] = d.input_id
            if d.action == "skip":
                rows.append(Row("skipped", u.job, u.input, u.output, d.reason))
            elif d.action == "fail":
                rows.append(Row("failed", u.job, u.input, u.output, d.reason))
                # an output that the manifest does not know stays out of it (and untouched)
                if man.get(u.key) is not None or not d.untouched:
                    man.put(_record(u, d.input_id, "failed", reason=d.reason))
            else:
                to_run.append(u)
        ev("batch", units=len(decisions), run=len(to_run), skip=sum(d.action == "skip" for d in decisions),
           fail=sum(d.action == "fail" for d in decisions) + len(batch.unmatched),
           manifest=str(batch.manifest_path), output_dir=str(batch.output_dir), executor=getattr(executor, "name", "?"),
           workers=getattr(executor, "workers", None))
        for d in decisions:
            if d.action != "run":
                ev("skipped" if d.action == "skip" else "failed", d.unit, reason=d.reason, planned=True)
        for u in batch.unmatched:
            on_event({"event": "failed", "job": u.job, "input": u.pattern, "output": None, "reason": "no files match",
                      "planned": True})

        for u in to_run:  # stale temporaries of a killed earlier run
            remove_temp_files(u.output)
        if to_run:
            with (interrupt or Interrupt()) as intr:
                stream = executor.run(to_run)
                drained = aborted = False
                try:
                    for msg in stream:
                        if intr.level >= 1 and not drained:
                            drained = True
                            executor.stop(abort=False)
                            on_event({"event": "interrupt", "action": "drain",
                                      "message": "Ctrl-C: finishing running jobs, starting no more (again to abort)"})
                        if intr.level >= 2 and not aborted:
                            aborted = True
                            executor.stop(abort=True)
                            on_event({"event": "interrupt", "action": "abort",
                                      "message": "Ctrl-C again: aborting" if intr.what == "Ctrl-C"
                                      else f"{intr.what}: aborting"})
                        kind, key = msg["type"], msg.get("key")
                        u = by_key.get(key)
                        if u is None:
                            continue
                        if kind == "start":
                            man.put(_record(u, ids[key], "running"))
                            ev("start", u, **{"attempt": 1, **{k: v for k, v in msg.items() if k not in ("type", "key")}})
                        elif kind == "progress":
                            ev("progress", u, frames=msg.get("frames"), total=msg.get("total"),
                               stage=msg.get("stage", "encode"), final=bool(msg.get("final")))
                        elif kind == "note":
                            ev("note", u, message=msg.get("message"))
                        elif kind == "retry":
                            remove_temp_files(u.output)
                            ev("retry", u, reason=msg.get("reason"))
                        elif kind == "result":
                            res = msg["result"]
                            finished.add(key)
                            if res.get("status") == "done":
                                man.put(_record(u, ids[key], "done", **{k: v for k, v in res.items() if k != "status"}))
                                rows.append(Row("done", u.job, u.input, u.output, _detail(res), res.get("seconds", 0.0)))
                                ev("done", u, **{k: v for k, v in res.items() if k not in ("status", "traceback")})
                            else:
                                remove_temp_files(u.output)
                                reason = res.get("reason") or "failed"
                                man.put(_record(u, ids[key], "failed", reason=reason, error=res.get("error"),
                                                traceback=res.get("traceback")))
                                rows.append(Row("failed", u.job, u.input, u.output, reason, res.get("seconds", 0.0)))
                                ev("failed", u, reason=reason, error=res.get("error"))
                finally:
                    close = getattr(stream, "close", None)
                    if close:
                        close()
            interrupted = intr.level > 0 and any(u.key not in finished for u in to_run)
            if interrupted:
                signum = intr.signum or signal.SIGINT
            for u in to_run:
                if u.key not in finished:
                    remove_temp_files(u.output)
                    reason = f"interrupted ({intr.what})" if intr.level else "not run"
                    rows.append(Row("failed", u.job, u.input, u.output, reason))
                    rec = man.get(u.key)
                    if rec is not None and rec.get("status") == "running":
                        man.put(_record(u, ids[u.key], "failed", reason=reason))
    summary = Summary(rows=rows, seconds=time.perf_counter() - t0, interrupted=interrupted, signum=signum)
    on_event({"event": "summary", "done": summary.count("done"), "skipped": summary.count("skipped"),
              "failed": summary.count("failed"), "seconds": round(summary.seconds, 3), "interrupted": interrupted,
              "failures": [{"job": r.job, "input": r.input, "output": r.output, "reason": r.detail}
                           for r in rows if r.status == "failed"]})
    return summary


def _record(u: Unit, ident: dict[str, Any] | None, status: str, **extra) -> dict[str, Any]:
    rec = {"key": u.key, "job": u.job, "input": u.input, "input_id": ident, "config_hash": u.config_hash,
           "status": status, "output": u.output}
    rec.update({k: v for k, v in extra.items() if v is not None})
    return rec


def _detail(res: dict[str, Any]) -> str:
    rate = f"{res.get('bitrate', 0) / 1000:.0f} kb/s"
    if "video_bitrate" in res:
        rate = f"video {res['video_bitrate'] / 1000:.0f} kb/s (total {res.get('total_bitrate', 0) / 1000:.0f})"
    parts = [f"{res.get('frames', 0)} frames", rate, f"{res.get('seconds', 0):.1f} s"]
    sr = res.get("search")
    if isinstance(sr, dict) and isinstance(sr.get("crf"), (int, float)):
        how = "cached" if sr.get("cached") else f"{sr.get('probes', 0)} probes"
        if sr.get("mode") == "target-vmaf":
            meas = sr.get("measured")
            parts.append(f"CRF {sr['crf']:g} for {sr.get('pool')} VMAF {sr.get('target'):g} ({how}"
                         + (f", measured {meas:.2f})" if isinstance(meas, (int, float)) else ")"))
        else:
            sav = sr.get("saving")
            parts.append(f"ROI CRF {sr['crf']:g} vs plain {sr.get('against_crf'):g} ({how}"
                         + (f", {sav:+.1f}% bits)" if isinstance(sav, (int, float)) else ")"))
    for kind in STEP_KINDS:
        if kind in res:
            parts.append(f"{kind} {_short(res[kind])}")
    return ", ".join(parts)


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}" if math.isfinite(v) else str(v)
    if isinstance(v, dict):
        pooled = v.get("pooled")
        if isinstance(pooled, dict) and pooled:
            m = "vmaf" if "vmaf" in pooled else next(iter(pooled))
            mean = (pooled[m] or {}).get("mean") if isinstance(pooled[m], dict) else None
            if isinstance(mean, (int, float)):
                return f"{m}={_short(float(mean))}"
        bd = v.get("bd")
        if isinstance(bd, dict) and isinstance(bd.get("vmaf"), dict) and isinstance(bd["vmaf"].get("bd_rate"), (int, float)):
            return f"BD-rate(vmaf)={float(bd['vmaf']['bd_rate']):+.1f}%"
        for k in ("vmaf", "mean", "score", "bd_rate"):
            if isinstance(v.get(k), (int, float)):
                return f"{k}={_short(float(v[k]))}"
    s = json.dumps(v, default=str)
    return s if len(s) <= 40 else s[:37] + "..."
