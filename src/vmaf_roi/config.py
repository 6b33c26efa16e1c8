"""Encode job configuration: one place for every default and its validation.

A job is YAML (safe loader only) merged over :data:`DEFAULTS`, then ``--set key=value``
overrides (dotted keys, values parsed as YAML scalars), then validated. Errors are
path-qualified: ``config roi.strength: expected a number >= 0, got 'abc'``.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

import yaml

from .encoders import defaults as encoder_defaults, preset_problem
from .errors import ConfigError, short
from .registry import DEFAULT_MODEL

DEFAULTS: dict[str, Any] = {
    "encoder": "libx264",
    "preset": "auto",  # auto: the encoder's own default (encoders.DEFAULTS); libvpx-vp9: ignored
    "rate_control": {
        "mode": "crf",  # crf | qp | bitrate
        "value": "auto",  # crf or qp value (auto: the encoder's default); bitrate in bit/s or "2.5M"
        "two_pass": False,  # bitrate mode, libx264/libx265: a first pass writes rate statistics
    },
    "encoder_params": {},  # x264-params / x265-params as a mapping (libx264, libx265)
    "encoder_options": {},  # other encoder AVOptions, e.g. {tune: film, g: 48}
    "pix_fmt": "auto",  # auto: keep the input's when the encoder takes it, else yuv420p
    "filters": None,  # FFmpeg filter chain applied before saliency and encode
    "audio": "copy",  # copy | drop (subtitle streams follow the same rule)
    "saliency": {
        "model": DEFAULT_MODEL,  # registry.DEFAULT_MODEL: the same default as `vmaf-roi saliency`
        "device": "auto",  # auto | cuda | cpu
        "stride": "auto",  # run the model every Nth frame; auto: the encoder's (4; 8 with libsvtav1) ...
        "scene_cut": True,  # ... and always on a scene cut
        "scene_threshold": 12.0,  # mean abs luma difference (0-255) of 64x36 thumbnails
        "smoothing": 0.0,  # 0..1: weight of the previous map in a running blend
        "interpolate": True,  # blend the maps before and after a held stretch (else hold)
        "change_threshold": None,  # also run the model when the picture changed this much (0-255)
        "lookahead": 16,  # frames decoded ahead while the model runs; 0 = all in one thread
        "carry": "none",  # none | motion: carry maps between inferences along the decoder's motion vectors
    },
    "roi": {
        "block": None,  # null: the encoder's block size (16 x264/x265, 8 vp9)
        "strength": 3.0,  # QP steps at saliency 1 (negative offset) and 0 (positive, mode both)
        "strength_width": 640,  # narrower frames get strength x width / strength_width; 0: off
        "max_offset": 10,  # clamp, QP steps
        "mode": "both",  # both: lower where people look, raise where they do not; balanced; lower
        "pool": "max",  # a block's saliency: its most salient part (max), or the map's mean over it
        "max_regions": 128,  # rectangles per frame (also the number of side-data slots)
    },
}


@dataclass(frozen=True)
class Check:
    kind: type | tuple[type, ...]
    test: Callable[[Any], bool] | None = None
    what: str = ""
    nullable: bool = False


def _num(lo: float | None = None, hi: float | None = None, integer: bool = False) -> Check:
    kinds = (int,) if integer else (int, float)
    parts = ["an integer" if integer else "a number"]
    if lo is not None:
        parts.append(f">= {lo}")
    if hi is not None:
        parts.append(f"<= {hi}")

    def test(v: Any) -> bool:
        return (lo is None or v >= lo) and (hi is None or v <= hi)

    return Check(kinds, test, " ".join(parts))


def _choice(*opts: str) -> Check:
    return Check(str, lambda v: v in opts, "one of " + ", ".join(opts))


SCHEMA: dict[str, Check] = {
    "encoder": Check(str, None, "an encoder name"),
    "preset": Check((str, int), None, "a preset name or number, or auto", nullable=True),
    "rate_control.mode": _choice("crf", "qp", "bitrate"),
    "rate_control.value": Check((int, float, str), None, "a number or a bitrate like 2.5M"),
    "rate_control.two_pass": Check(bool, None, "true or false"),
    "encoder_params": Check(dict, None, "a mapping"),
    "encoder_options": Check(dict, None, "a mapping"),
    "pix_fmt": Check(str, None, "a pixel format name or auto"),
    "filters": Check(str, None, "an FFmpeg filter chain", nullable=True),
    "audio": _choice("copy", "drop"),
    "saliency.model": Check(str, None, "a model id"),
    "saliency.device": _choice("auto", "cuda", "cpu"),
    "saliency.stride": Check((int, str), lambda v: v == "auto" or (isinstance(v, int) and v >= 1),
                             "an integer >= 1 or auto"),
    "saliency.scene_cut": Check(bool, None, "true or false"),
    "saliency.scene_threshold": _num(0, 255),
    "saliency.smoothing": _num(0, 0.99),
    "saliency.interpolate": Check(bool, None, "true or false"),
    "saliency.change_threshold": Check((int, float), lambda v: 0 <= v <= 255, "a number 0-255 or null", nullable=True),
    "saliency.lookahead": _num(0, 256, integer=True),
    "saliency.carry": _choice("none", "motion"),
    "roi.block": Check(int, lambda v: v in (8, 16, 32, 64), "8, 16, 32 or 64", nullable=True),
    "roi.strength": _num(0, 51),
    "roi.strength_width": _num(0, 65536, integer=True),
    "roi.max_offset": _num(0, 51, integer=True),
    "roi.mode": _choice("both", "lower", "balanced"),
    "roi.pool": _choice("mean", "max"),
    "roi.max_regions": _num(1, 1024, integer=True),
}


_SECTIONS = ("rate_control", "saliency", "roi")  # nested mappings of known keys


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key in _SECTIONS:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


# ffmpeg command-line habits (option name, without '-' and stream specifier) -> (the key here, how)
_CRF = ("rate_control.value", "rate_control.mode crf is the default: --set rate_control.value=26")
_BITRATE = ("rate_control.value", "with rate_control.mode bitrate: --set rate_control.mode=bitrate "
            "--set rate_control.value=2M")
_ENCODER = ("encoder", "an FFmpeg encoder name: --set encoder=libx264")
_AUDIO = ("audio", "copy or drop; audio and subtitles are copied, never re-encoded")
_FILTERS = ("filters", "an FFmpeg filter chain: --set filters=scale=1280:720")
_PARAMS = ("encoder_params", "a mapping: --set encoder_params.ref=3")
FFMPEG_HABITS: dict[str, tuple[str, str]] = {
    "crf": _CRF,
    "qp": ("rate_control.value", "with rate_control.mode qp: --set rate_control.mode=qp --set rate_control.value=30"),
    "b": _BITRATE, "bitrate": _BITRATE, "vb": _BITRATE, "b:v": _BITRATE,
    "c": _ENCODER, "c:v": _ENCODER, "codec": _ENCODER, "codec:v": _ENCODER, "vcodec": _ENCODER,
    "preset": ("preset", "a top-level key: --set preset=slow"),
    "vf": _FILTERS, "filter": _FILTERS, "filter:v": _FILTERS,
    "pixel_format": ("pix_fmt", "--set pix_fmt=yuv420p"),
    "c:a": _AUDIO, "codec:a": _AUDIO, "acodec": _AUDIO, "an": _AUDIO,
    "x264-params": _PARAMS, "x265-params": _PARAMS, "x264opts": _PARAMS,
}
for _opt in ("g", "tune", "profile", "level", "bf", "refs", "keyint_min", "maxrate", "bufsize"):
    FFMPEG_HABITS[_opt] = (f"encoder_options.{_opt}", "other encoder options go under encoder_options")


def _habit(key: str) -> tuple[str, str] | None:
    """What an ffmpeg-style key (crf, -b:v, c:v, vcodec, preset:v, rate_control.crf) stands for here."""
    last = key.rsplit(".", 1)[-1].strip().lstrip("-").lower()
    if last in FFMPEG_HABITS:
        return FFMPEG_HABITS[last]
    return FFMPEG_HABITS.get(last.split(":", 1)[0]) if ":" in last and not last.endswith(":a") else None


def _unknown(key: str) -> ConfigError:
    key = short_text(key, 80)
    habit = _habit(key)
    if habit is not None:
        return ConfigError(f"config {key}: unknown key (did you mean {habit[0]}? {habit[1]})")
    near = difflib.get_close_matches(key, list(SCHEMA), n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    return ConfigError(f"config {key}: unknown key{hint}")


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = d
    for p in parts[:-1]:
        if p in ("encoder_params", "encoder_options"):
            cur = cur.setdefault(p, {})
            continue
        if not isinstance(cur.get(p), dict):
            raise _unknown(dotted)
        cur = cur[p]
    cur[parts[-1]] = value


def _merge(base: dict[str, Any], over: dict[str, Any], path: str = "") -> None:
    for k, v in over.items():
        key = f"{path}{k}"
        if k not in base:
            raise _unknown(key)
        if isinstance(base[k], dict) and key not in ("encoder_params", "encoder_options"):
            if not isinstance(v, dict):
                raise ConfigError(f"config {short_text(key, 80)}: expected a mapping, got {type(v).__name__}")
            _merge(base[k], v, key + ".")
        else:
            base[k] = v


def parse_bitrate(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError
    if isinstance(v, (int, float)):
        num, mult = float(v), 1
    else:
        s = str(v).strip().lower()
        mult = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(s[-1:], 1)
        num = float(s[:-1] if mult != 1 else s)
    # a bitrate of 1e999 (inf), nan, or beyond any encoder (100 Gbit/s) is a typo, not a rate
    if not math.isfinite(num) or num * mult < 1 or num * mult > 100e9:
        raise ValueError
    return int(num * mult)


def resolve(cfg: dict[str, Any]) -> dict[str, Any]:
    """``preset: auto``, ``rate_control.value: auto`` and ``saliency.stride: auto`` become the
    encoder's own defaults."""
    d = encoder_defaults(str(cfg.get("encoder")))
    if cfg.get("preset") == "auto":
        cfg["preset"] = d.preset
    sal = cfg.get("saliency")
    if isinstance(sal, dict) and sal.get("stride") == "auto":
        sal["stride"] = d.map_stride
    rc = cfg.get("rate_control")
    if isinstance(rc, dict) and rc.get("value") == "auto":
        if rc.get("mode") == "bitrate":
            raise ConfigError("config rate_control.value: bitrate mode needs a bitrate (e.g. 2.5M), not auto")
        rc["value"] = d.quality
    return cfg


def validate(cfg: dict[str, Any], *, resolve_auto: bool = True) -> dict[str, Any]:
    """Check every key and value; with ``resolve_auto`` (the default) the encoder's defaults
    replace ``auto`` first (:func:`resolve`), so the result is what the encode runs with.
    Without it ``auto`` stays (a batch's base config: a job may still change the encoder)."""
    if resolve_auto:
        resolve(cfg)
    flat = _flatten(cfg)
    for key, value in flat.items():
        chk = SCHEMA.get(key)
        if chk is None:
            raise _unknown(key)
        if value is None and chk.nullable:
            continue
        kinds = chk.kind if isinstance(chk.kind, tuple) else (chk.kind,)
        ok = isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
        if ok and chk.test is not None:
            ok = chk.test(value)
        if not ok:
            raise ConfigError(f"config {key}: expected {chk.what}, got {short(value)}")
    rc = cfg["rate_control"]
    enc = cfg["encoder"]
    why = preset_problem(enc, cfg["preset"]) if cfg["preset"] != "auto" else None
    if why is not None:
        raise ConfigError(f"config preset: {why}")
    if rc["two_pass"] and rc["mode"] != "bitrate":
        raise ConfigError(f"config rate_control.two_pass: needs rate_control.mode bitrate (got {rc['mode']})")
    if rc["mode"] == "bitrate":
        try:
            parse_bitrate(rc["value"])
        except (ValueError, TypeError):
            raise ConfigError(f"config rate_control.value: expected a bitrate like 2500000 or 2.5M "
                              f"(1 bit/s to 100G), got {short(rc['value'])}") from None
    elif rc["value"] == "auto" and not resolve_auto:
        pass
    else:
        lo, hi = encoder_defaults(enc).quality_range
        if isinstance(rc["value"], str) or not (lo <= rc["value"] <= hi):
            raise ConfigError(f"config rate_control.value: expected a {rc['mode']} number {lo}-{hi} for {enc}, "
                              f"got {short(rc['value'])}")
    for section in ("encoder_params", "encoder_options"):
        for k, v in cfg[section].items():
            if not isinstance(k, str) or isinstance(v, (dict, list)) or v is None:
                raise ConfigError(f"config {section}.{short_text(k, 60)}: expected a scalar value, got {short(v)}")
    return cfg


# -- the typed view: what each stage receives -------------------------------------------------
@dataclass(frozen=True)
class RateControl:
    mode: str  # crf | qp | bitrate
    value: int | float | str  # crf/qp number, or a bitrate (int bit/s or "2.5M")
    two_pass: bool = False


@dataclass(frozen=True)
class EncoderConfig:
    """The encoder/muxer stage's section: which encoder, and everything it is told."""

    name: str
    preset: str | int | None
    rate_control: RateControl
    params: Mapping[str, Any] = field(default_factory=dict)  # x264-params / x265-params
    options: Mapping[str, Any] = field(default_factory=dict)  # other AVOptions
    pix_fmt: str = "auto"


@dataclass(frozen=True)
class SaliencyConfig:
    """The map schedule's section: which model, and when it runs."""

    model: str
    device: str = "auto"
    stride: int = 2
    scene_cut: bool = True
    scene_threshold: float = 12.0
    smoothing: float = 0.0
    interpolate: bool = True
    change_threshold: float | None = None
    lookahead: int = 16
    carry: str = "none"  # none | motion (pipeline.MapSchedule, carry.py)


@dataclass(frozen=True)
class RoiConfig:
    """The planner's section."""

    block: int | None = None  # None: the encoder's block size
    strength: float = 4.0
    strength_width: int = 0  # 0: the same strength at every frame width
    max_offset: int = 10
    mode: str = "balanced"
    max_regions: int = 128
    pool: str = "mean"  # mean | max: a block's saliency (roi.py, step 2)


@dataclass(frozen=True)
class EncodeConfig:
    """A validated encode job, one section per stage (source: filters/audio)."""

    encoder: EncoderConfig
    saliency: SaliencyConfig
    roi: RoiConfig
    filters: str | None = None
    audio: str = "copy"

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> "EncodeConfig":
        """Validate the YAML form (``load``'s result, or any dict of the same shape) and type it."""
        d = validate(copy.deepcopy(dict(cfg)))
        rc = d["rate_control"]
        sal, r = d["saliency"], d["roi"]
        ct = sal["change_threshold"]
        return cls(
            encoder=EncoderConfig(
                name=d["encoder"], preset=d["preset"],
                rate_control=RateControl(rc["mode"], rc["value"], bool(rc["two_pass"])),
                params=MappingProxyType(dict(d["encoder_params"])),
                options=MappingProxyType(dict(d["encoder_options"])), pix_fmt=d["pix_fmt"]),
            saliency=SaliencyConfig(
                model=sal["model"], device=sal["device"], stride=int(sal["stride"]),
                scene_cut=bool(sal["scene_cut"]), scene_threshold=float(sal["scene_threshold"]),
                smoothing=float(sal["smoothing"]), interpolate=bool(sal["interpolate"]),
                change_threshold=None if ct is None else float(ct), lookahead=int(sal["lookahead"]),
                carry=sal["carry"]),
            roi=RoiConfig(block=r["block"], strength=float(r["strength"]), max_offset=int(r["max_offset"]),
                          mode=r["mode"], max_regions=int(r["max_regions"]),
                          strength_width=int(r["strength_width"]), pool=r["pool"]),
            filters=d["filters"], audio=d["audio"],
        )

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (``dump``-able, the batch manifest's hash input)."""
        e, s, r = self.encoder, self.saliency, self.roi
        return {
            "encoder": e.name, "preset": e.preset,
            "rate_control": {"mode": e.rate_control.mode, "value": e.rate_control.value,
                             "two_pass": e.rate_control.two_pass},
            "encoder_params": dict(e.params), "encoder_options": dict(e.options), "pix_fmt": e.pix_fmt,
            "filters": self.filters, "audio": self.audio,
            "saliency": {"model": s.model, "device": s.device, "stride": s.stride, "scene_cut": s.scene_cut,
                         "scene_threshold": s.scene_threshold, "smoothing": s.smoothing,
                         "interpolate": s.interpolate, "change_threshold": s.change_threshold,
                         "lookahead": s.lookahead, "carry": s.carry},
            "roi": {"block": r.block, "strength": r.strength, "strength_width": r.strength_width,
                    "max_offset": r.max_offset, "mode": r.mode, "pool": r.pool, "max_regions": r.max_regions},
        }


def typed(cfg: "EncodeConfig | Mapping[str, Any]") -> EncodeConfig:
    """An :class:`EncodeConfig` from either form (a dict is validated first)."""
    return cfg if isinstance(cfg, EncodeConfig) else EncodeConfig.from_dict(cfg)


def saliency_section(cfg: "SaliencyConfig | Mapping[str, Any]") -> SaliencyConfig:
    """The saliency section typed (a dict in the YAML form's ``saliency`` shape is accepted)."""
    if isinstance(cfg, SaliencyConfig):
        return cfg
    full = copy.deepcopy(DEFAULTS)
    full["saliency"].update(dict(cfg))
    return EncodeConfig.from_dict(full).saliency


# Bounds on what a config or batch file may be: a few hundred bytes of aliases must not become
# gigabytes (an "alias bomb"), and a value quoted in an error stays short.
MAX_YAML_BYTES = 1 << 20  # 1 MiB of YAML text
MAX_YAML_NODES = 100_000  # nodes after alias expansion
MAX_YAML_DEPTH = 64


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses documents whose alias expansion or nesting is too large."""

    def construct_document(self, node):  # type: ignore[override]
        _check_size(node)
        return super().construct_document(node)


def _check_size(root) -> None:
    """Count nodes as if every alias were expanded (memoised per node, so the count itself is
    cheap); refuse recursive aliases, deep nesting and documents over MAX_YAML_NODES."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _Bound("a recursive alias")
        if depth > MAX_YAML_DEPTH:
            raise _Bound(f"nesting deeper than {MAX_YAML_DEPTH} levels")
        active.add(key)
        n = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                n += size(child, depth + 1)
                if n > MAX_YAML_NODES:
                    break
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                n += size(k, depth + 1) + size(v, depth + 1)
                if n > MAX_YAML_NODES:
                    break
        active.discard(key)
        if n > MAX_YAML_NODES:
            raise _Bound(f"more than {MAX_YAML_NODES} values once its aliases are expanded (an alias bomb?)")
        sizes[key] = n
        return n

    size(root, 0)


class _Bound(Exception):
    pass


def parse_yaml_text(data: bytes | str, where: str) -> Any:
    """Parse YAML (safe loader, bounded) from bytes or text; any problem is one ConfigError line."""
    if isinstance(data, bytes):
        if len(data) > MAX_YAML_BYTES:
            raise ConfigError(f"{where}: larger than {MAX_YAML_BYTES // 1024} KiB; not a config file?")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    else:
        text = data
        if len(text) > MAX_YAML_BYTES:
            raise ConfigError(f"{where}: larger than {MAX_YAML_BYTES // 1024} KiB; not a config file?")
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except _Bound as exc:
        raise ConfigError(f"{where}: refused: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{where}: refused: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}{at}: not valid YAML ({short_text(problem)})") from None


def short_text(s: str, limit: int = 120) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def read_yaml(path: str | Path, what: str = "config") -> Any:
    """Parse a YAML file with the safe loader; unreadable files and bad YAML are ConfigErrors.

    Only regular files are read (a FIFO or device would block or never end), at most
    MAX_YAML_BYTES, and alias expansion is bounded (see :data:`MAX_YAML_NODES`)."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {p}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise ConfigError(f"cannot read {what} {p}: {kind}")
        if st.st_size > MAX_YAML_BYTES:
            raise ConfigError(f"{what} {p}: larger than {MAX_YAML_BYTES // 1024} KiB; not a config file?")
        os.set_blocking(fd, True)
        data = b""
        while len(data) <= MAX_YAML_BYTES:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {p}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return parse_yaml_text(data, f"{what} {p}")


def load(path: str | Path | None = None, overrides: list[str] | None = None, *,
         resolve_auto: bool = True) -> dict[str, Any]:
    """DEFAULTS <- YAML file <- --set overrides, validated: the YAML form.

    :func:`load_typed` (or :func:`typed` on this) gives the stages' typed view."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        p = Path(path)
        data = read_yaml(p)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"config {p}: expected a mapping at the top level")
        _merge(cfg, data)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {short(item)}: expected key=value")
        try:
            value = parse_yaml_text(raw, f"--set {key}") if raw else ""
        except ConfigError:
            value = raw
        if key.strip() not in SCHEMA and not key.startswith(("encoder_params.", "encoder_options.")):
            raise _unknown(key.strip())
        _set(cfg, key.strip(), value)
    return validate(cfg, resolve_auto=resolve_auto)


def load_typed(path: str | Path | None = None, overrides: list[str] | None = None) -> EncodeConfig:
    return EncodeConfig.from_dict(load(path, overrides))


def dump(cfg: "dict[str, Any] | EncodeConfig") -> str:
    d = cfg.to_dict() if isinstance(cfg, EncodeConfig) else cfg
    return yaml.safe_dump(d, sort_keys=False)
