"""The batch file: its schema, validation, and the work units it expands to.

See :mod:`vmaf_roi.batch` for the whole picture.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import glob
import hashlib
import importlib
import inspect
import json
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from .. import config as config_mod
from ..errors import ConfigError, VmafRoiError, short

EventSink = Callable[[dict], None]
MANIFEST_NAME = ".vmaf-roi-batch.jsonl"
LOCK_SUFFIX = ".lock"  # the lock of earlier versions (per manifest): <manifest>.lock
LOCK_NAME = ".vmaf-roi-batch.lock"  # one lock per output directory
MANIFEST_VERSION = 1

TOP_KEYS = ("version", "output_dir", "manifest", "base_config", "defaults", "jobs")
JOB_KEYS = ("name", "inputs", "output", "config", "plain", "score", "compare", "gpu", "target_vmaf", "save_against")
SEARCH_KEYS = ("target_vmaf", "save_against")  # the CRF searched (vmaf_roi.search), cached per input+config+target
SEARCH_DIR = ".vmaf-roi-search"  # the search cache, in output_dir
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
    search: dict[str, Any] = field(default_factory=dict)  # target_vmaf / save_against (mode + its options)
    search_cache: str | None = None  # directory of the search cache


def config_hash(cfg: dict[str, Any], plain: bool, steps: dict[str, dict[str, Any]],
                search: dict[str, Any] | None = None) -> str:
    d: dict[str, Any] = {"cfg": cfg, "plain": plain, "steps": steps}
    if search:  # only then: the hashes of jobs without a search stay as they were
        d["search"] = search
    blob = json.dumps(d, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


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
                base_cfg = config_mod.load(bp if bp.is_absolute() else base_dir / bp, resolve_auto=False)
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
        search = _search_spec(merged, plain, base_dir, f"{where}", errs)
        if search is None:
            continue
        gpu = (cfg["encoder"].endswith("_nvenc") or (not plain and cfg["saliency"]["device"] == "cuda")) \
            if gpu_opt == "auto" else bool(gpu_opt)
        chash = config_hash(cfg, plain, steps, search)

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
                                  steps=steps, gpu=gpu, model_dir=md, config_hash=chash, search=search,
                                  search_cache=str(out_dir / SEARCH_DIR) if search else None))
    errs.raise_if_any(source)
    return Batch(path=Path(path) if path is not None else None, output_dir=out_dir,
                 manifest_path=out_dir / man_name, units=units, unmatched=unmatched)


def _search_spec(job: dict[str, Any], plain: bool, base_dir: Path, where: str, errs: _Errors) -> dict[str, Any] | None:
    """``target_vmaf: 93`` (or ``{vmaf: 93, pool: p5, samples: 4, sample_duration: 2, measure: true}``),
    ``save_against: 23`` (or ``{crf: 23, guard: 1.0, gaze: file.csv, ...}``) as the runner's spec:
    ``{}`` for neither, None (with the error added) for a bad one."""
    from ..search import check_pool

    given = [k for k in SEARCH_KEYS if job.get(k) is not None]
    if not given:
        return {}
    if len(given) > 1:
        errs.add(where, "target_vmaf and save_against: choose one")
        return None
    key = given[0]
    v = job[key]
    main = "vmaf" if key == "target_vmaf" else "crf"
    allowed = (main, "samples", "sample_duration", "measure") + (("pool",) if key == "target_vmaf" else ("guard", "gaze"))
    if isinstance(v, dict):
        opts = dict(v)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        opts = {main: v}
    else:
        errs.add(f"{where}.{key}", f"expected a number or a mapping with {main}, got {short(v)}")
        return None
    bad = [k for k in opts if k not in allowed]
    if bad:
        errs.add(f"{where}.{key}.{bad[0]}", f"unknown key{_near(str(bad[0]), allowed)}; keys are {', '.join(allowed)}")
        return None
    num = opts.get(main)
    if not isinstance(num, (int, float)) or isinstance(num, bool):
        errs.add(f"{where}.{key}.{main}", f"expected a number, got {short(num)}")
        return None
    spec: dict[str, Any] = {"mode": key.replace("_", "-"), main: float(num)}
    try:
        if key == "target_vmaf":
            if not 0 < num <= 100:
                raise ConfigError(f"expected a VMAF score above 0 and at most 100, got {num}")
            spec["pool"] = check_pool(opts.get("pool", "mean"))
        else:
            if plain:
                raise ConfigError("a save_against job is an ROI encode measured against a plain one: drop plain: true")
            guard = opts.get("guard", 1.0)
            if not isinstance(guard, (int, float)) or isinstance(guard, bool) or not 0 <= guard <= 100:
                raise ConfigError(f"guard: expected the VMAF points the ROI encode may lose, 0 to 100, got {short(guard)}")
            spec["guard"] = float(guard)
            if opts.get("gaze") is not None:
                g = Path(os.path.expanduser(str(opts["gaze"])))
                g = g if g.is_absolute() else base_dir / g
                if not g.is_file():
                    raise ConfigError(f"gaze: {g}: no such file")
                spec["gaze"] = str(g)
        n = opts.get("samples")
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise ConfigError(f"samples: expected a number >= 1, got {short(n)}")
        d = opts.get("sample_duration")
        if d is not None and (not isinstance(d, (int, float)) or isinstance(d, bool) or not 0 < d <= 600):
            raise ConfigError(f"sample_duration: expected seconds above 0, got {short(d)}")
        m = opts.get("measure", True)
        if not isinstance(m, bool):
            raise ConfigError(f"measure: expected true or false, got {short(m)}")
    except ConfigError as exc:
        errs.add(f"{where}.{key}", str(exc))
        return None
    spec.update({k: opts[k] for k in ("samples", "sample_duration") if opts.get(k) is not None})
    spec["measure"] = bool(opts.get("measure", True))
    return spec


def _strip_config(msg: str) -> str:
    return msg[len("config "):] if msg.startswith("config ") else msg


def _check_runtime(cfg: dict[str, Any], plain: bool) -> None:
    """Checks that need FFmpeg / the registry but no input: encoder, filters, model id."""
    from ..config import typed
    from ..decode import check_filters
    from ..encode import check_encoder, encoder_options

    t = typed(cfg)
    check_encoder(t.encoder.name, plain)
    encoder_options(t.encoder, plain, [])
    check_filters(t.filters)
    if not plain:
        from ..encode.external import find_patched_ffmpeg
        from ..encoders import needs_patch
        from ..registry import get_spec

        get_spec(t.saliency.model)
        if needs_patch(t.encoder.name):
            find_patched_ffmpeg(t.encoder.name)  # before any job runs: how to build it
