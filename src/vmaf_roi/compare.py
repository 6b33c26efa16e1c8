"""Rate-distortion comparison of ROI against plain encodes of one input.

>>> res = compare("in.mp4", cfg, crfs=[20, 24, 28, 32], out_dir=Path("in.compare"), mask="in.mask.mkv")
>>> res.bd["psnr_y_mask_in"]["bd_rate"]     # % bitrate change of ROI vs plain at equal quality
>>> res.write_json(path); res.write_plot(path)

Every point is encoded twice with identical encoder settings (plain, then ROI); the ROI encodes
share one saliency pass (a :class:`SaliencyTrack` filled by the first). Both encodes of a point
are scored against the input in one pass (:func:`score_many`), the saliency-weighted metrics
with the very maps the ROI encoder used. BD-rates come from the ``bjontegaard`` package.
With an eye-tracking file (``gaze``) every encode also gets EWPSNR (BD-rated like the others),
and the report says how well the ROI encodes' maps follow the viewers (NSS and CC).
"""

from __future__ import annotations

import copy
import json
import math
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, InputError, OutputError
from .events import EventSink, Status, discard
from .maps import ProgressFactory, no_progress
from .output import AtomicOutputs, check_outputs, write_text
from .score import DEFAULT_GAZE_MIN_VIEWERS, check_mask, load_gaze_for, pool, score_many
from .vmaf import DEFAULT_MODEL, find_ffmpeg

SCHEMA = "vmaf-roi.compare/1"
# Metrics compared (pooled mean per encode), in table order; a metric missing from a run is skipped.
METRICS = ("vmaf", "psnr_y", "ssim", "vmaf_saliency", "vmaf_roi", "psnr_y_weighted", "psnr_y_mask_in", "psnr_y_mask_out",
           "ewpsnr")
LABELS = {
    "vmaf": "VMAF", "psnr_y": "PSNR-Y", "ssim": "SSIM", "vmaf_saliency": "VMAF (saliency-weighted)",
    "vmaf_roi": "VMAF (salient region)", "psnr_y_weighted": "PSNR-Y (saliency-weighted)",
    "psnr_y_mask_in": "PSNR-Y inside mask", "psnr_y_mask_out": "PSNR-Y outside mask",
    "ewpsnr": "EWPSNR (eye-tracking-weighted)",
}
def parse_points(text: str, kind: str) -> list[Any]:
    """'20,24,28' (crf) or '500k,1M' (bitrates) -> values, validated, order kept."""
    from .config import parse_bitrate

    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ConfigError(f"--{kind}: expected a comma-separated list, got {text!r}")
    out: list[Any] = []
    for t in items:
        try:
            if kind == "crf":
                v = float(t)
                v = int(v) if v.is_integer() else v
                if not 0 <= v <= 63:
                    raise ValueError
            else:
                v = parse_bitrate(t)
        except (ValueError, TypeError):
            what = "a CRF number 0-63" if kind == "crf" else "a bitrate like 800k or 2.5M"
            raise ConfigError(f"--{kind}: {t!r} is not {what}") from None
        out.append(v)
    if len(set(out)) != len(out):
        raise ConfigError(f"--{kind}: repeated value in {text!r}")
    if len(out) < 2:
        raise ConfigError(f"--{kind}: give at least 2 points for an RD curve (4 for a reliable BD-rate)")
    return out


def bd_metrics(rate_anchor: Sequence[float], q_anchor: Sequence[float], rate_test: Sequence[float],
               q_test: Sequence[float], method: str = "akima") -> dict[str, Any]:
    """BD-rate (%; negative = the test needs fewer bits for the same quality) and BD-quality
    (the test's mean quality gain at equal bitrate), via the ``bjontegaard`` package.

    None (with a note) where it cannot be computed: fewer than 2 usable points, non-finite values,
    or curves that do not overlap.
    """
    import bjontegaard as bd

    def clean(r, q):
        pts = sorted((float(a), float(b)) for a, b in zip(r, q) if a and math.isfinite(a) and b is not None
                     and math.isfinite(b))
        return [p[0] for p in pts], [p[1] for p in pts]

    ra, qa = clean(rate_anchor, q_anchor)
    rt, qt = clean(rate_test, q_test)
    # reliable: BD-rate computed from curves that overlap enough (bjontegaard's minimum) on the quality
    # axis; quality_reliable: the same for BD-quality, on the bitrate axis. overlap / quality_overlap:
    # the share (%) of the range both curves cover, where it is below that minimum.
    out: dict[str, Any] = {"bd_rate": None, "bd_quality": None, "note": None, "reliable": False,
                           "quality_reliable": False, "overlap": None, "quality_overlap": None}
    if len(ra) < 2 or len(rt) < 2:
        out["note"] = "fewer than 2 finite points"
        return out
    if len(set(qa)) < len(qa) or len(set(qt)) < len(qt):
        out["note"] = "quality not strictly varying across points"
        return out
    notes = []
    for key, fn in (("bd_rate", bd.bd_rate), ("bd_quality", bd.bd_psnr)):
        name = NOTE_NAMES[key]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                v = float(fn(ra, qa, rt, qt, method=method, require_matching_points=False))
            except (ValueError, ZeroDivisionError, IndexError) as exc:
                notes.append(f"{name}: {exc}")
                continue
        msgs = [str(w.message) for w in caught]
        if any("do not overlap" in m for m in msgs) or not math.isfinite(v):
            notes.append(f"{name}: the curves do not overlap, so it cannot be computed")
            continue
        ok = True
        for m in msgs:
            text, overlap = _short_note(key, m)
            notes.append(text)
            ok = False
            if overlap is not None:
                out["overlap" if key == "bd_rate" else "quality_overlap"] = overlap
        out[key] = v
        out["reliable" if key == "bd_rate" else "quality_reliable"] = ok
    out["note"] = "; ".join(notes) or None
    return out


NOTE_NAMES = {"bd_rate": "BD-rate", "bd_quality": "BD-quality"}


def _short_note(key: str, message: str) -> tuple[str, float | None]:
    """The bjontegaard package's warning in words a user can act on, and the overlap (%) it names."""
    m = re.search(r"overlap: '([\d.]+)'. Minimum overlap: '([\d.]+)'", message)
    if m:
        axis, what = ("quality", "BD-rate") if key == "bd_rate" else ("bitrate", "BD-quality")
        return (f"{what}: the ROI and plain curves share less than {float(m.group(2)):.0f}% of their {axis} range, "
                f"so the value leans on extrapolation: treat it as unreliable, or add points where the curves "
                f"overlap", float(m.group(1)))
    return f"{NOTE_NAMES[key]}: {message}", None


@dataclass
class Encode:
    point: Any  # crf value or bitrate (bit/s)
    mode: str  # plain | roi
    path: str
    bitrate: float  # bit/s of the video packets
    total_bitrate: float  # bit/s of the whole file (video + container)
    bytes: int
    encode_fps: float
    pooled: dict[str, dict[str, Any]]  # metric -> pooled stats of the score


@dataclass
class CompareResult:
    input: str
    kind: str  # crf | bitrate
    points: list[Any]
    encoder: str
    config: dict[str, Any]
    encodes: list[Encode]
    bd: dict[str, dict[str, Any]]
    metrics: list[str]
    saliency: dict[str, Any]
    mask: str | None
    vmaf_model: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    # with a gaze file: its blur and frames used (as score's "gaze"), and the ROI encodes' maps
    # against the fixations: maps_nss, maps_cc (pooled per-frame NSS and CC)
    gaze: dict[str, Any] | None = None

    def curve(self, mode: str, metric: str) -> tuple[list[float], list[float]]:
        rows = [e for e in self.encodes if e.mode == mode]
        return [e.bitrate for e in rows], [_mean(e.pooled, metric) for e in rows]

    def table(self) -> list[dict[str, Any]]:
        """One row per encode: point, mode, kbit/s, then the pooled mean of each metric."""
        rows = []
        for e in self.encodes:
            row = {"point": e.point, "mode": e.mode, "kbps": e.bitrate / 1000, "total_kbps": e.total_bitrate / 1000}
            row.update({m: _mean(e.pooled, m) for m in self.metrics})
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        def num(x):
            return x if not isinstance(x, float) or math.isfinite(x) else None

        return {
            "schema": SCHEMA,
            "input": self.input,
            "kind": self.kind,
            "points": self.points,
            "encoder": self.encoder,
            "vmaf_model": self.vmaf_model,
            "saliency": self.saliency,
            "mask": self.mask,
            **({"gaze": _finite(self.gaze)} if self.gaze is not None else {}),  # only with a gaze file
            "metrics": self.metrics,
            "encodes": [
                {"point": e.point, "mode": e.mode, "path": e.path, "bitrate": e.bitrate,
                 "total_bitrate": e.total_bitrate, "bytes": e.bytes,
                 "encode_fps": e.encode_fps,
                 "pooled": {m: {k: num(v) for k, v in e.pooled[m].items()} for m in self.metrics if m in e.pooled}}
                for e in self.encodes
            ],
            "bd": {m: {k: num(v) for k, v in d.items()} for m, d in self.bd.items()},
            "config": self.config,
            "seconds": self.seconds,
            "notes": self.notes,
        }

    def write_json(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """The report as JSON, written atomically (never over the input)."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        return write_text(path, text, inputs=self._inputs(), overwrite=overwrite)

    def _inputs(self) -> list[str]:
        return [self.input] + ([self.mask] if self.mask else []) + ([self.gaze["file"]] if self.gaze else [])

    def write_plot(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """RD curves as a PNG (written atomically): video bitrate (log axis) against each metric,
        plain and ROI, every point labelled with its CRF or target bitrate, the BD-rate in each
        panel's title, and panels whose BD values are unreliable (little overlap, or none) marked."""
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        metrics = list(self.metrics)
        cols = 2 if len(metrics) > 1 else 1
        rows = math.ceil(len(metrics) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 3.3 * rows), squeeze=False)
        rates = [e.bitrate / 1000 for e in self.encodes if e.bitrate > 0]
        span = max(rates) / min(rates) if rates else 10.0
        subs = (1.0, 2.0, 5.0) if span >= 10 else (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)
        for ax, m in zip(axes.flat, metrics):
            for mode, style, colour in (("plain", "o-", "tab:blue"), ("roi", "s-", "tab:orange")):
                r, q = self.curve(mode, m)
                xs = [x / 1000 for x in r]
                ax.plot(xs, q, style, color=colour, label="ROI" if mode == "roi" else "plain", markersize=4)
                pts = [e.point for e in self.encodes if e.mode == mode]
                for x, y, pt in zip(xs, q, pts):
                    if math.isfinite(y):
                        text = f"{pt:g}" if self.kind == "crf" else f"{pt / 1000:g}k"
                        ax.annotate(text, (x, y), textcoords="offset points", fontsize=7, color=colour,
                                    xytext=(4, -10) if mode == "roi" else (-4, 5),
                                    ha="left" if mode == "roi" else "right")
            b = self.bd.get(m, {})
            title = LABELS.get(m, m)
            if b.get("bd_rate") is not None:
                title += f": BD-rate {b['bd_rate']:+.1f}%"
            else:
                title += ": BD-rate n/a"
            if not b.get("reliable"):
                title += " (unreliable)"
                ax.set_facecolor("#f4f0e6")
                ax.text(0.98, 0.04, "BD-rate unreliable: curves overlap little" if b.get("bd_rate") is not None
                        else "BD not computable: curves do not overlap", transform=ax.transAxes, ha="right",
                        va="bottom", fontsize=7, color="firebrick")
            if m == "ewpsnr" and self.gaze:
                nss, cc = ((self.gaze.get(k) or {}).get("mean") for k in ("maps_nss", "maps_cc"))
                if nss is not None and cc is not None:
                    title += f"\nROI encodes' maps vs gaze: NSS {nss:.2f}, CC {cc:.2f}"
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("video bitrate, kbit/s (log scale)", fontsize=8)
            ax.set_ylabel(_AXIS.get(m, LABELS.get(m, m)), fontsize=8)
            ax.set_xscale("log")
            ax.margins(x=0.06, y=0.12)  # room for the point labels
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.tick_params(labelsize=7)
            ax.grid(True, which="both", alpha=0.25)
            ax.legend(fontsize=7, loc="lower right" if b.get("reliable") else "upper left")
        for ax in list(axes.flat)[len(metrics):]:
            ax.axis("off")
        pts = ", ".join(f"{p:g}" if self.kind == "crf" else f"{p / 1000:g}k" for p in self.points)
        fig.suptitle(f"{Path(self.input).name}: ROI vs plain, {self.encoder}, {self.kind} {pts}\n"
                     f"point labels: {'CRF' if self.kind == 'crf' else 'target bitrate'}; "
                     f"BD-rate < 0: ROI needs fewer bits for the same score", fontsize=9)
        fig.tight_layout()
        p = Path(path)
        try:
            with AtomicOutputs(overwrite=overwrite) as outs:
                tmp = outs.add(p, inputs=self._inputs())
                fig.savefig(tmp, dpi=90, format=p.suffix.lstrip(".").lower() or "png")
        finally:
            plt.close(fig)
        return p


_AXIS = {
    "vmaf": "VMAF (0-100)", "psnr_y": "PSNR-Y (dB)", "ssim": "SSIM (0-1)", "vmaf_saliency": "weighted VMAF",
    "vmaf_roi": "VMAF of salient region", "psnr_y_weighted": "weighted PSNR-Y (dB)",
    "psnr_y_mask_in": "PSNR-Y in mask (dB)", "psnr_y_mask_out": "PSNR-Y outside mask (dB)",
    "ewpsnr": "EWPSNR (dB)",
}


def _finite(x: Any) -> Any:
    """``x`` with non-finite floats (in nested dicts) as None, for strict JSON."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _mean(pooled: dict[str, dict[str, Any]], metric: str) -> float:
    v = pooled.get(metric, {}).get("mean")
    return float(v) if v is not None else float("nan")


def _tag(kind: str, point: Any) -> str:
    return f"crf{point}" if kind == "crf" else f"{int(point) // 1000}k"


def encode_paths(input_path: str | Path, out_dir: str | Path, kind: str, points: Sequence[Any]) -> list[Path]:
    """Where :func:`compare` writes its encodes (plain and roi at each point), to check them first."""
    stem = Path(input_path).stem
    return [Path(out_dir) / f"{stem}.{_tag(kind, pt)}.{mode}.mkv" for pt in points for mode in ("plain", "roi")]


def compare(
    input_path: str | Path,
    cfg: dict[str, Any],
    *,
    crfs: Sequence[float] | None = None,
    bitrates: Sequence[int] | None = None,
    out_dir: str | Path,
    mask: str | Path | None = None,
    vmaf_model: str = DEFAULT_MODEL,
    ffmpeg: str | None = None,
    roi_weight: float = 0.5,
    model_dir: Path | None = None,
    keep: bool = False,
    track=None,
    progress: ProgressFactory = no_progress,
    on_event: EventSink = discard,
    overwrite: bool = True,
    outputs: Sequence[str | Path] = (),
    gaze: str | Path | None = None,
    gaze_min_viewers: int = DEFAULT_GAZE_MIN_VIEWERS,
    maps: str | Path | None = None,
) -> CompareResult:
    """Encode plain and ROI at every point, score each against the input, BD-rate ROI vs plain.

    ``track``: a :class:`~vmaf_roi.encode.SaliencyTrack` to use (and fill); pass the same one
    to several calls on the same input and saliency settings to run the model only once.
    Encodes go to ``out_dir`` and are deleted at the end unless ``keep``.
    ``on_event`` receives :class:`~vmaf_roi.events.Status` events (each step, and notes);
    ``progress`` makes one bar per step (plain encode, ROI encode, scoring), counted in frames.
    Bitrates are the video's alone (audio is dropped, container overhead not counted).
    ``overwrite=False`` refuses existing encodes (and ``outputs``, e.g. where the caller will
    write the report) before anything runs; ``out_dir`` is created if needed and removed again
    if it is left empty.
    ``gaze``: an eye-tracking CSV of the input (see :func:`~vmaf_roi.score.score_many`), read
    and checked before the first encode.
    ``maps``: the ROI encodes take their maps from this file (a map video or a gaze file, as
    ``encode --maps``) instead of the model; opened and checked before the first encode.
    """
    t0 = time.perf_counter()
    if (crfs is None) == (bitrates is None):
        raise ConfigError("give either CRF points or bitrates")
    input_path = Path(input_path)
    if not input_path.is_file():
        raise InputError(f"{input_path}: no such file" if not input_path.exists() else f"{input_path}: not a file")
    if cfg.get("filters"):
        raise ConfigError("compare scores the encodes against INPUT, so a filters chain (which changes the frames) "
                          "cannot be used; apply it first (vmaf-roi encode --plain with a lossless setting, or ffmpeg)")
    if mask is not None and not Path(mask).is_file():
        raise InputError(f"--mask {mask}: no such file")
    if mask is not None:
        check_mask(mask, input_path)  # the right size and gray, before the first encode
    if gaze_min_viewers < 1:
        raise ConfigError(f"gaze min viewers must be >= 1, got {gaze_min_viewers}")
    recording = load_gaze_for(gaze, input_path, "input", count=True) if gaze is not None else None
    source = None
    if maps is not None:
        from .mapsource import open_map_source, probe_input

        source = open_map_source(maps, **probe_input(input_path))
    find_ffmpeg(ffmpeg)  # no libvmaf: fail before encoding anything
    kind = "crf" if crfs is not None else "bitrate"
    points = list(crfs if crfs is not None else bitrates)  # type: ignore[arg-type]
    notes: list[str] = []

    def note(m: str) -> None:
        if m not in notes:
            notes.append(m)
            on_event(Status(m, stage="compare", level="note"))

    if kind == "crf" and cfg["encoder"].endswith("_nvenc"):
        note("NVENC: CRF points are used as constant-quality (cq) values")
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir}: {exc.strerror}") from None
    try:
        check_outputs(encode_paths(input_path, out_dir, kind, points) + list(outputs),
                      [input_path, mask, gaze, maps], overwrite=overwrite)
        if maps is not None and gaze is not None and Path(maps).resolve() == Path(gaze).resolve():
            note("the ROI encodes' maps come from the gaze file they are scored against: EWPSNR and the maps' "
                 "NSS/CC measure them against the very fixations they were made from")
        gz = (str(gaze), recording, gaze_min_viewers) if recording is not None else None
        return _compare(input_path, cfg, kind, points, out_dir, mask, vmaf_model, ffmpeg, roi_weight, model_dir,
                        keep, track, progress, on_event, overwrite, t0, notes, note, gz, source)
    finally:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()


def _compare(input_path, cfg, kind, points, out_dir, mask, vmaf_model, ffmpeg, roi_weight, model_dir, keep,
             track, progress, on_event, overwrite, t0, notes, note, gz=None, source=None) -> CompareResult:
    from .encode import SaliencyTrack, encode
    from .encoders import needs_patch

    track = track if track is not None else SaliencyTrack()
    base = copy.deepcopy(cfg)
    base["audio"] = "drop"  # the bitrate compared is the video's
    encodes: list[Encode] = []
    written: list[Path] = []
    stem = input_path.stem
    steps = 3 * len(points)  # per point: plain encode, ROI encode, one scoring pass of both
    step = 0
    gaze_info: dict[str, Any] | None = None
    gaze_file, recording, min_viewers = gz if gz is not None else (None, None, DEFAULT_GAZE_MIN_VIEWERS)

    def stage(what: str) -> ProgressFactory:
        # each step gets its own bar, counted in frames and named after the step
        nonlocal step
        step += 1
        label = f"{what} ({step}/{steps})"
        on_event(Status(f"step {step}/{steps}: {what}", stage="compare"))
        return lambda total, _desc: progress(total, label)

    try:
        for pt in points:
            c = copy.deepcopy(base)
            two_pass = kind == "bitrate" and bool(cfg["rate_control"].get("two_pass"))
            c["rate_control"] = {"mode": kind, "value": pt, "two_pass": two_pass}
            tag = _tag(kind, pt)
            results = {}
            for mode in ("plain", "roi"):
                path = out_dir / f"{stem}.{tag}.{mode}.mkv"  # as encode_paths() says
                # an encoder only the patched ffmpeg does ROI with: plain runs there too (same build)
                res = encode(input_path, path, c, plain=(mode == "plain"), track=None if mode == "plain" else track,
                             maps=source if mode == "roi" else None, model_dir=model_dir, progress=stage(f"encode {tag} {mode}"), on_event=note,
                             overwrite=overwrite, backend="ffmpeg" if needs_patch(c["encoder"]) else "auto")
                written.append(path)
                results[mode] = res
            scores = score_many(
                input_path, [results["plain"].output, results["roi"].output], saliency=track.maps, mask=mask,
                vmaf_model=vmaf_model, ffmpeg=ffmpeg, roi_weight=roi_weight,
                saliency_label=f"encoder's maps ({track.model})", progress=stage(f"score {tag}"),
                gaze=recording, gaze_min_viewers=min_viewers, gaze_label=gaze_file,
            )
            if recording is not None:
                roi_score = scores[1]
                # the same maps at every point: their NSS/CC against the gaze, from the last scoring
                gaze_info = {**(roi_score.gaze or {}), "maps_nss": roi_score.pooled.get("gaze_nss"),
                             "maps_cc": roi_score.pooled.get("gaze_cc")}
                for n in roi_score.notes:
                    if n.startswith(f"gaze {gaze_file}:"):
                        note(n)
            for mode, sc in zip(("plain", "roi"), scores):
                r = results[mode]
                encodes.append(Encode(point=pt, mode=mode, path=str(r.output), bitrate=r.video_bitrate,
                                      total_bitrate=r.total_bitrate, bytes=r.bytes, encode_fps=r.fps,
                                      pooled=sc.pooled))
    finally:
        if not keep:
            for p in written:
                p.unlink(missing_ok=True)
    metrics = [m for m in METRICS if any(m in e.pooled for e in encodes)]
    bd = {}
    for m in metrics:
        rp = [e for e in encodes if e.mode == "plain"]
        rr = [e for e in encodes if e.mode == "roi"]
        bd[m] = bd_metrics([e.bitrate for e in rp], [_mean(e.pooled, m) for e in rp],
                           [e.bitrate for e in rr], [_mean(e.pooled, m) for e in rr])
    return CompareResult(
        input=str(input_path), kind=kind, points=points, encoder=cfg["encoder"], config=base, encodes=encodes,
        bd=bd, metrics=metrics, saliency={"model": track.model, "provider": track.provider,
                                          "inferences": track.inferences,
                                          **({"maps": str(source.path)} if source is not None else {})},
        mask=str(mask) if mask is not None else None, vmaf_model=vmaf_model,
        seconds=time.perf_counter() - t0, notes=notes, gaze=gaze_info,
    )


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Pooled statistics of BD values across clips (for the evaluation script)."""
    return pool(values)
