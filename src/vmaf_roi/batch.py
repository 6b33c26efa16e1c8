"""`vmaf-roi batch`: many encodes from one batch file, resumable, on local processes or Dask.

A batch file (YAML) lists jobs: input paths or globs, an output template, per-job encode
config overrides and an optional score/compare step (see ``configs/batch-example.yaml``).
Each (job, input) pair becomes a :class:`Unit`: a self-contained, picklable work unit that
:func:`run_unit` turns into one output file. Executors (:mod:`vmaf_roi.executors`) only move
units to workers and results back; nothing in :func:`run_unit` knows which one runs it.

Resume: a manifest (JSON lines, ``<output_dir>/.vmaf-roi-batch.jsonl``) written only by the
driver records, per output, the input identity (size, mtime, sha256), the config hash, the
status, and the output's sha256. A re-run skips a unit whose record is ``done`` with the same
input content, the same config hash and an output whose checksum still matches; everything
else is redone. Records are appended and fsynced one line at a time; a torn last line (a
killed run) is ignored and the file is rewritten atomically on the next run.

The library never prints: :func:`run_batch` reports through ``on_event(dict)``; the CLI
(:mod:`vmaf_roi.cli_batch`) renders events as progress bars, a summary table or NDJSON.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import fcntl
import glob
import hashlib
import importlib
import inspect
import json
import math
import os
import re
import shutil
import signal
import string
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable


from . import config as config_mod
from .registry import sha256_file
from .errors import ConfigError, InputError, OutputError, VmafRoiError, short

EventSink = Callable[[dict], None]
MANIFEST_NAME = ".vmaf-roi-batch.jsonl"
LOCK_SUFFIX = ".lock"  # the lock of earlier versions (per manifest): <manifest>.lock
LOCK_NAME = ".vmaf-roi-batch.lock"  # one lock per output directory
MANIFEST_VERSION = 1

TOP_KEYS = ("version", "output_dir", "manifest", "base_config", "defaults", "jobs")
JOB_KEYS = ("name", "inputs", "output", "config", "plain", "score", "compare", "gpu")
DEFAULT_KEYS = tuple(k for k in JOB_KEYS if k not in ("name", "inputs"))
TEMPLATE_FIELDS = ("stem", "name", "ext", "parent", "job", "index")
STEP_KINDS = ("score", "compare")
# The optional per-job steps, run on the worker after the encode. Their modules are imported
# lazily (a batch without steps never needs them); a missing module fails only that job.
#   score:   vmaf_roi.score.score(input, output, **options)    -> the output scored against its input
#   compare: vmaf_roi.compare.compare(input, cfg, out_dir=..., **options) -> ROI vs plain RD curves
STEP_HOOKS = {"score": ("vmaf_roi.score", "score"), "compare": ("vmaf_roi.compare", "compare")}
STEP_RESERVED = {"score": ("reference", "distorted", "progress"),
                 "compare": ("input_path", "cfg", "out_dir", "progress", "on_event", "track", "overwrite", "outputs")}


def _noop(_: dict) -> None:
    pass


# -- the work unit --------------------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """One (job, input) pair: everything a worker needs, nothing about who runs it."""

    key: str  # output path relative to output_dir (posix): the manifest key
    job: str
    input: str  # absolute
    output: str  # absolute
    cfg: dict[str, Any]
    plain: bool = False
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> options
    gpu: bool = False
    model_dir: str | None = None
    config_hash: str = ""


def config_hash(cfg: dict[str, Any], plain: bool, steps: dict[str, dict[str, Any]]) -> str:
    blob = json.dumps({"cfg": cfg, "plain": plain, "steps": steps}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


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


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, default=str))


def _step_function(kind: str) -> Callable[..., Any]:
    mod_name, fn_name = STEP_HOOKS[kind]
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        if exc.name == mod_name:
            raise ConfigError(f"{kind} step: {mod_name} is not available in this install") from None
        raise
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise ConfigError(f"{kind} step: {mod_name} has no function {fn_name}()")
    return fn


def check_step_options(kind: str, options: dict[str, Any]) -> None:
    """Unknown option names, checked against the step function's signature when it is installed."""
    try:
        fn = _step_function(kind)
    except ConfigError:
        return  # reported when the job runs; the batch itself does not need the step module
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()) and kind != "score":
        return
    if kind == "score":  # score(reference, distorted, **kwargs) forwards to score_many
        mod = importlib.import_module(STEP_HOOKS[kind][0])
        many = getattr(mod, "score_many", None)
        if many is not None:
            params = inspect.signature(many).parameters
    allowed = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
               and n not in STEP_RESERVED[kind]]
    for k in options:
        if k not in allowed:
            raise ConfigError(f"{k}: unknown {kind} option{_near(k, tuple(allowed))}; "
                              f"options are {', '.join(allowed)}")


def run_step(kind: str, unit: Unit, output: Path, report: EventSink = _noop) -> Any:
    """Run a score/compare step; writes its full result beside the output as
    ``<output>.<kind>.json`` and returns a compact summary for the manifest. Its progress
    (frames of each of its stages) and notes go to ``report`` like the encode's."""
    from .output import AtomicOutputs

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
    from .encode import encode

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
        for kind in STEP_KINDS:
            if kind in unit.steps:
                report({"type": "note", "message": f"running {kind} step"})
                wrote.append(out.with_name(f"{out.name}.{kind}.json"))
                done[kind] = run_step(kind, unit, out, report)
        done["seconds"] = round(time.perf_counter() - t0, 3)
        wrote.clear()  # complete: keep everything
        return done
    except VmafRoiError as exc:
        return {"status": "failed", "reason": str(exc), "error": type(exc).__name__,
                "seconds": round(time.perf_counter() - t0, 3)}
    except Exception as exc:  # a bug: fail this job only, keep the traceback in the manifest
        return {"status": "failed", "reason": f"internal error: {type(exc).__name__}: {exc}", "error": "internal",
                "traceback": traceback.format_exc(), "seconds": round(time.perf_counter() - t0, 3)}


def temp_files(output: str | Path, *, only_dead: bool = False) -> list[Path]:
    """Temporaries a killed worker can leave beside ``output``: AtomicOutputs' hidden
    ``.<stem>.<hex>.part<suffix>`` files (for the output and its step sidecars) and a compare
    step's work directory. None of them looks like a finished output."""
    from . import output as output_mod

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
    n = 0
    for p in temp_files(output, only_dead=True):
        try:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
            n += 1
        except OSError:
            pass
    return n


# -- batch file -----------------------------------------------------------------------------
@dataclass
class Unmatched:
    job: str
    pattern: str


@dataclass
class Batch:
    path: Path | None
    output_dir: Path
    manifest_path: Path
    units: list[Unit]
    unmatched: list[Unmatched]


def _near(key: str, allowed: tuple[str, ...]) -> str:
    m = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {m[0]}?)" if m else ""


def _has_magic(s: str) -> bool:
    return glob.has_magic(s)


class _Errors:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, msg: str) -> None:
        self.items.append(f"{where}: {msg}" if where else msg)

    def raise_if_any(self, source: str) -> None:
        if self.items:
            shown = self.items[:25]
            more = f"\n  ... and {len(self.items) - 25} more" if len(self.items) > 25 else ""
            head = f"batch file {source}: " if len(shown) == 1 else f"batch file {source}: {len(self.items)} errors:\n  "
            raise ConfigError(head + "\n  ".join(shown) + more)


def _check_template(tpl: Any, where: str, errs: _Errors) -> bool:
    if not isinstance(tpl, str) or not tpl.strip():
        errs.add(where, f"expected an output template string like '{{stem}}.roi.mp4', got {short(tpl)}")
        return False
    if tpl.startswith(("/", "\\", "~")) or re.match(r"[A-Za-z]:", tpl):
        errs.add(where, f"{short(tpl)} is absolute; templates are relative to output_dir and cannot leave it")
        return False
    if ".." in re.split(r"[/\\]", tpl):
        errs.add(where, f"{short(tpl)} contains '..'; templates cannot write outside output_dir")
        return False
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(tpl) if f is not None]
    except ValueError as exc:
        errs.add(where, f"{short(tpl)} is not a valid template: {exc}")
        return False
    for f in fields:
        base = re.split(r"[.\[]", f, maxsplit=1)[0]
        if base not in TEMPLATE_FIELDS or base != f:
            errs.add(where, f"{short(tpl)}: unknown field {{{f}}}{_near(base, TEMPLATE_FIELDS)}; "
                            f"fields are {', '.join('{' + x + '}' for x in TEMPLATE_FIELDS)}")
            return False
    if not PurePosixPath(tpl.replace("\\", "/")).suffix:
        errs.add(where, f"{short(tpl)} has no extension; the container follows it (.mp4, .mkv, .webm, ...)")
        return False
    return True


def _step_options(v: Any, where: str, errs: _Errors) -> dict[str, Any] | None:
    if v is None or v is False:
        return None
    if v is True:
        return {}
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        return dict(v)
    errs.add(where, f"expected true, false or a mapping of options, got {short(v)}")
    return None


def _expand(pattern: str, base: Path) -> list[Path]:
    p = Path(os.path.expanduser(pattern))
    if not p.is_absolute():
        p = base / p
    if _has_magic(pattern):
        return sorted(Path(m) for m in glob.glob(str(p), recursive=True) if Path(m).is_file())
    return [p]


def load_batch(path: str | Path | None = None, *, data: dict | None = None, base_dir: Path | None = None,
               output_dir: str | Path | None = None, model_dir: str | Path | None = None) -> Batch:
    """Read and validate a whole batch file (or ``data``); raises one ConfigError listing every
    problem, each naming the job and key. No work is done and nothing is written."""
    source = str(path) if path is not None else "<data>"
    if data is None:
        assert path is not None
        p = Path(path)
        data = config_mod.read_yaml(p, "batch file")
        base_dir = base_dir or p.resolve().parent
    base_dir = (base_dir or Path.cwd()).resolve()
    if not isinstance(data, dict):
        raise ConfigError(f"batch file {source}: expected a mapping with 'output_dir' and 'jobs' at the top level")
    errs = _Errors()
    for k in data:
        if k not in TOP_KEYS:
            errs.add(str(k), f"unknown key{_near(str(k), TOP_KEYS)}")
    if data.get("version", 1) != 1:
        errs.add("version", f"expected 1, got {short(data.get('version'))}")

    out_raw = output_dir if output_dir is not None else data.get("output_dir")
    if out_raw is None:
        errs.add("output_dir", "required (the directory every output is written under)")
        out_dir = base_dir
    elif not isinstance(out_raw, (str, os.PathLike)) or not str(out_raw):
        errs.add("output_dir", f"expected a directory path, got {short(out_raw)}")
        out_dir = base_dir
    else:
        out_dir = Path(os.path.expanduser(str(out_raw)))
        out_dir = (out_dir if out_dir.is_absolute() else base_dir / out_dir).resolve()
        if out_dir.exists() and not out_dir.is_dir():
            errs.add("output_dir", f"{out_dir} exists and is not a directory")

    man_name = data.get("manifest", MANIFEST_NAME) or MANIFEST_NAME
    if not isinstance(man_name, str) or "/" in man_name or "\\" in man_name or man_name in (".", ".."):
        errs.add("manifest", f"expected a file name (it lives in output_dir), got {short(man_name)}")
        man_name = MANIFEST_NAME
    elif man_name == LOCK_NAME:
        errs.add("manifest", f"{man_name!r} is the name of the output directory's lock file")
        man_name = MANIFEST_NAME

    base_cfg = copy.deepcopy(config_mod.DEFAULTS)
    bc = data.get("base_config")
    if bc is not None:
        if not isinstance(bc, str):
            errs.add("base_config", f"expected a path to an encode config YAML, got {short(bc)}")
        else:
            bp = Path(os.path.expanduser(bc))
            try:
                base_cfg = config_mod.load(bp if bp.is_absolute() else base_dir / bp)
            except ConfigError as exc:
                errs.add("base_config", str(exc))

    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        errs.add("defaults", f"expected a mapping, got {short(defaults)}")
        defaults = {}
    for k in defaults:
        if k not in DEFAULT_KEYS:
            errs.add(f"defaults.{k}", f"unknown key{_near(str(k), DEFAULT_KEYS)}")
    if "config" in defaults and not isinstance(defaults["config"], dict):
        errs.add("defaults.config", f"expected a mapping of encode config keys, got {short(defaults['config'])}")

    jobs = data.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        errs.add("jobs", "expected a non-empty list of jobs")
        jobs = []

    units: list[Unit] = []
    unmatched: list[Unmatched] = []
    seen_names: dict[str, int] = {}
    owner: dict[str, str] = {}  # output key -> "job 'x' input y"
    md = str(Path(model_dir).expanduser()) if model_dir else None
    for i, job in enumerate(jobs):
        if not isinstance(job, dict):
            errs.add(f"jobs[{i}]", f"expected a mapping, got {short(job)}")
            continue
        name = job.get("name", f"job{i + 1}")
        where = f"jobs[{i}]" if "name" not in job else f"jobs[{i}] ({name})"
        if not isinstance(name, str) or not name or not re.fullmatch(r"[\w.+-]+", name):
            errs.add(f"{where}.name", f"expected a name of letters, digits, '.', '_', '+' or '-', got {short(name)}")
            continue
        if name in seen_names:
            errs.add(f"{where}.name", f"{short(name)} is also the name of jobs[{seen_names[name]}]")
        seen_names[name] = i
        for k in job:
            if k not in JOB_KEYS:
                errs.add(f"{where}.{k}", f"unknown key{_near(str(k), JOB_KEYS)}")
        merged = {k: defaults[k] for k in DEFAULT_KEYS if k in defaults}
        merged.update({k: v for k, v in job.items() if k in DEFAULT_KEYS and k != "config"})

        inputs = job.get("inputs")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(x, str) and x for x in inputs):
            errs.add(f"{where}.inputs", f"expected a path, a glob or a list of them, got {short(job.get('inputs'))}")
            inputs = []

        tpl = merged.get("output")
        tpl_ok = _check_template(tpl, f"{where}.output", errs) if tpl is not None else False
        if tpl is None:
            errs.add(f"{where}.output", "required (here or in defaults), e.g. '{stem}.roi.mp4'")

        plain = merged.get("plain", False)
        if not isinstance(plain, bool):
            errs.add(f"{where}.plain", f"expected true or false, got {short(plain)}")
            plain = False
        gpu_opt = merged.get("gpu", "auto")
        if gpu_opt not in ("auto", True, False):
            errs.add(f"{where}.gpu", f"expected auto, true or false, got {short(gpu_opt)}")
            gpu_opt = "auto"
        steps: dict[str, dict[str, Any]] = {}
        for kind in STEP_KINDS:
            if kind in merged:
                opts = _step_options(merged[kind], f"{where}.{kind}", errs)
                if opts is not None:
                    try:
                        check_step_options(kind, opts)
                    except ConfigError as exc:
                        errs.add(f"{where}.{kind}", str(exc))
                    steps[kind] = opts

        cfg = copy.deepcopy(base_cfg)
        cfg_ok = True
        for src_where, over in (("defaults.config", defaults.get("config")), (f"{where}.config", job.get("config"))):
            if over is None or (src_where == "defaults.config" and not isinstance(over, dict)):
                continue
            if not isinstance(over, dict):
                errs.add(src_where, f"expected a mapping of encode config keys, got {short(over)}")
                cfg_ok = False
                continue
            try:
                config_mod._merge(cfg, copy.deepcopy(over))
            except ConfigError as exc:
                errs.add(src_where, _strip_config(str(exc)))
                cfg_ok = False
        if cfg_ok:
            try:
                config_mod.validate(cfg)
                _check_runtime(cfg, plain)
            except VmafRoiError as exc:
                errs.add(f"{where}.config", _strip_config(str(exc)))
                cfg_ok = False
        if not (cfg_ok and tpl_ok):
            continue
        gpu = (cfg["encoder"].endswith("_nvenc") or (not plain and cfg["saliency"]["device"] == "cuda")) \
            if gpu_opt == "auto" else bool(gpu_opt)
        chash = config_hash(cfg, plain, steps)

        index = 0
        for pattern in inputs:
            matches = _expand(pattern, base_dir)
            if not matches:
                unmatched.append(Unmatched(name, pattern))
                continue
            for inp in matches:
                index += 1
                inp = Path(os.path.abspath(inp))
                fields = {"stem": inp.stem, "name": inp.name, "ext": inp.suffix.lstrip("."),
                          "parent": inp.parent.name, "job": name, "index": index}
                try:
                    rel = tpl.format_map(fields).replace("\\", "/")  # type: ignore[union-attr]
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    errs.add(f"{where}.output", f"{short(tpl)} cannot be filled for {inp}: {exc}")
                    break
                parts = PurePosixPath(rel).parts
                if not parts or any(x in ("..", ".", "") for x in parts) or rel.startswith("/"):
                    errs.add(f"{where}.output", f"{short(tpl)} gives {short(rel)} for {inp}, which is outside output_dir")
                    continue
                final = out_dir.joinpath(*parts)
                real = Path(os.path.realpath(final))
                if not real.is_relative_to(os.path.realpath(out_dir)):
                    errs.add(f"{where}.output", f"{short(rel)} for {inp} resolves to {real}, outside output_dir (a symlink?)")
                    continue
                key = "/".join(parts)
                if key in (man_name, man_name + LOCK_SUFFIX):
                    errs.add(f"{where}.output", f"{short(rel)} is the manifest's own name")
                    continue
                if real == Path(os.path.realpath(inp)):
                    errs.add(f"{where}.output", f"{short(rel)} would overwrite its input {inp}")
                    continue
                who = f"{where} input {inp}"
                if key in owner:
                    errs.add(f"{where}.output", f"{short(rel)} is written by both {owner[key]} and {who}; "
                                                f"add {{job}}, {{parent}} or {{index}} to the template")
                    continue
                owner[key] = who
                units.append(Unit(key=key, job=name, input=str(inp), output=str(final), cfg=cfg, plain=plain,
                                  steps=steps, gpu=gpu, model_dir=md, config_hash=chash))
    errs.raise_if_any(source)
    return Batch(path=Path(path) if path is not None else None, output_dir=out_dir,
                 manifest_path=out_dir / man_name, units=units, unmatched=unmatched)


def _strip_config(msg: str) -> str:
    return msg[len("config "):] if msg.startswith("config ") else msg


def _check_runtime(cfg: dict[str, Any], plain: bool) -> None:
    """Checks that need FFmpeg / the registry but no input: encoder, filters, model id."""
    from .config import typed
    from .decode import check_filters
    from .encode import check_encoder, encoder_options

    t = typed(cfg)
    check_encoder(t.encoder.name, plain)
    encoder_options(t.encoder, plain, [])
    check_filters(t.filters)
    if not plain:
        from .registry import get_spec

        get_spec(t.saliency.model)


# -- manifest -------------------------------------------------------------------------------
class Manifest:
    """JSON lines, one record per state change, last record per key wins. Driver-only writes.

    Appends are flushed and fsynced line by line, so a killed run leaves at most a torn last
    line; :meth:`open` ignores such lines and rewrites the file atomically (temp + rename).
    One lock per output directory (``<output_dir>/.vmaf-roi-batch.lock``, whatever the manifest
    is called) keeps two runs off the same outputs. ``readonly`` (``--dry-run``) creates, locks
    and rewrites nothing: it only reads the records.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self.records: dict[str, dict[str, Any]] = {}
        self.dropped = 0
        self._f = None
        self._lock = None

    @property
    def lock_path(self) -> Path:
        return self.path.parent / LOCK_NAME

    def open(self) -> "Manifest":
        if not self.readonly:
            self._take_lock()
        lines = 0
        if self.path.is_file():
            with open(self.path, "rb") as f:
                raw = f.read()
            for line in raw.split(b"\n"):
                if not line.strip():
                    continue
                lines += 1
                try:
                    rec = json.loads(line)
                    if not isinstance(rec, dict) or not isinstance(rec.get("key"), str):
                        raise ValueError
                except ValueError:
                    self.dropped += 1
                    continue
                self.records[rec["key"]] = rec
            if not self.readonly and (self.dropped or not raw.endswith(b"\n") or lines > 2 * len(self.records) + 16):
                self._rewrite()
        if not self.readonly:
            self._f = open(self.path, "a", encoding="utf-8")
        return self

    def _take_lock(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.lock_path, "a")
        except OSError as exc:
            raise OutputError(f"cannot write to output directory {self.path.parent}: {exc.strerror}") from None
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise ConfigError(f"another batch run is using {self.path.parent} (lock {self.lock_path})") from None

    def _rewrite(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for rec in self.records.values():
                f.write(json.dumps(rec, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def put(self, rec: dict[str, Any]) -> None:
        if self.readonly:
            raise RuntimeError("Manifest opened read-only")
        rec = {"v": MANIFEST_VERSION, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **rec}
        self.records[rec["key"]] = rec
        assert self._f is not None
        self._f.write(json.dumps(rec, sort_keys=True, default=str) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def __enter__(self) -> "Manifest":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_manifest(path: str | Path) -> dict[str, dict[str, Any]]:
    """Records by key (read-only; ignores torn lines). For tests and tools."""
    out: dict[str, dict[str, Any]] = {}
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        try:
            rec = json.loads(line)
            out[rec["key"]] = rec
        except (ValueError, KeyError, TypeError):
            continue
    return out


# -- planning -------------------------------------------------------------------------------
@dataclass
class Decision:
    unit: Unit
    action: str  # run | skip | fail
    reason: str
    input_id: dict[str, Any] | None = None
    untouched: bool = False  # an output we do not know: left alone, and kept out of the manifest


def input_identity(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot stat ({exc.strerror})") from None
    if not p.is_file():
        raise InputError(f"{p}: not a regular file")
    try:
        digest = sha256_file(p)
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror})") from None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}


def _decide(unit: Unit, rec: dict[str, Any] | None, force: bool, overwrite: bool) -> Decision:
    try:
        ident = input_identity(unit.input)
    except InputError as exc:
        return Decision(unit, "fail", str(exc))
    out = Path(unit.output)
    exists = os.path.lexists(out)
    if exists and out.is_dir():
        return Decision(unit, "fail", f"output {out} is a directory", ident)
    ours = False
    if exists:
        # an existing output is ours only if the manifest says we finished it AND it is still
        # byte for byte what we wrote; anything else (a file someone put or changed there) is
        # unknown and replaced only with --overwrite
        try:
            ours = (rec is not None and rec.get("status") == "done" and bool(rec.get("output_sha256"))
                    and out.is_file() and sha256_file(out) == rec.get("output_sha256"))
        except OSError as exc:
            return Decision(unit, "fail", f"output {out} exists but cannot be read ({exc.strerror})", ident,
                            untouched=True)
        if not ours and not overwrite:
            why = ("is not in the manifest" if rec is None or rec.get("status") != "done"
                   else "differs from what the manifest recorded (changed since)")
            return Decision(unit, "fail", f"output {out} exists and {why}; pass --overwrite to replace it", ident,
                            untouched=True)
    if force:
        return Decision(unit, "run", "--force", ident)
    if exists and not ours:
        return Decision(unit, "run", "--overwrite", ident)
    if rec is None:
        return Decision(unit, "run", "new", ident)
    if rec.get("status") != "done":
        return Decision(unit, "run", "interrupted before" if rec.get("status") == "running"
                        else "failed before", ident)
    old = rec.get("input_id") or {}
    if old.get("sha256") != ident["sha256"] or old.get("size") != ident["size"]:
        return Decision(unit, "run", "input changed", ident)
    if rec.get("config_hash") != unit.config_hash:
        return Decision(unit, "run", "config changed", ident)
    if not exists:
        return Decision(unit, "run", "output missing", ident)
    return Decision(unit, "skip", "unchanged since the last run", ident)


def plan(batch: Batch, manifest: Manifest, *, force: bool = False, overwrite: bool = False,
         threads: int = 4) -> list[Decision]:
    """Hashes inputs (and finished outputs) in a few threads; decides run / skip / fail."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(pool.map(lambda u: _decide(u, manifest.get(u.key), force, overwrite), batch.units))


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

