"""Helpers shared by the CLI modules (cli, cli_quality, cli_batch): messages, progress views,
output directories and the common arguments. The CLI modules import from here, never from each
other, so there is no import cycle."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import ConfigError, OutputError
from .registry import DEFAULT_MODEL

PROG = "vmaf-roi"


def _err(msg: str) -> None:
    print(f"{PROG}: error: {msg}", file=sys.stderr)


def _info(msg: str) -> None:
    print(msg, file=sys.stderr)


class BarView:
    """Renders library events on a terminal: a tqdm bar per Progress stage (the unit the
    event names), notes as ``note: ...`` lines on stderr; results are left to the command."""

    def __init__(self, bars: bool = True, notes: bool = True) -> None:
        self.show_bars, self.show_notes = bars, notes
        self.bar = None
        self.stage: str | None = None
        self.seen: set[str] = set()

    def __call__(self, e) -> None:
        from .events import Progress, Status

        if isinstance(e, Progress) and self.show_bars:
            from tqdm import tqdm

            if self.bar is None or e.stage != self.stage:
                self.close()
                self.stage = e.stage
                self.bar = tqdm(total=e.total, desc=e.stage, unit=e.unit, file=sys.stderr, dynamic_ncols=True,
                                leave=False)
            if e.total and self.bar.total != e.total:
                self.bar.total = e.total
            self.bar.update(e.done - self.bar.n)
            if e.final:
                self.close()
        elif isinstance(e, Status) and e.level != "info" and self.show_notes and e.message not in self.seen:
            self.seen.add(e.message)
            msg = f"{e.level}: {e.message}"
            if self.bar is not None:
                from tqdm import tqdm

                tqdm.write(msg, file=sys.stderr)
            else:
                _info(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.stage = None, None


def ndjson_view(e) -> None:
    """``--ndjson``: every event as one JSON object on its own line of stdout."""
    from .events import to_json

    sys.stdout.write(to_json(e) + "\n")
    sys.stdout.flush()


def _progress_factory(enabled: bool):
    """Progress bars for the library's progress hook, rendered from Progress events."""
    from .events import progress_events
    from .maps import no_progress

    if not enabled:
        return no_progress
    return progress_events(BarView(notes=False), interval=0.1)


def _kbps(bps: float) -> str:
    return f"{bps / 1000:.1f} kb/s"


def _model_dir(args) -> Path | None:
    return Path(args.model_dir).expanduser() if getattr(args, "model_dir", None) else None


def _warn_placeholder(spec) -> None:
    if spec.placeholder:
        _info(f"warning: model {spec.id!r} is a PLACEHOLDER; its output is not real saliency")
    elif spec.retired:
        _info(f"warning: model {spec.id!r} is retired: {spec.retired}")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def check_image_suffix(path: str | Path, option: str) -> None:
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ConfigError(f"{option} {path}: a picture is written; use one of {', '.join(IMAGE_SUFFIXES)}")


def _make_dirs(d: Path) -> list[Path]:
    """mkdir -p, returning the directories it created (deepest last); OutputError if it cannot."""
    missing = []
    p = d
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    if p.exists() and not p.is_dir():
        raise OutputError(f"cannot create {d}: {p} is not a directory")
    created = []
    for m in reversed(missing):
        try:
            m.mkdir()
        except OSError as exc:
            _remove_dirs(created)
            raise OutputError(f"cannot create directory {m}: {exc.strerror}") from None
        created.append(m)
    return created


def _remove_dirs(created: list[Path]) -> None:
    """Remove the directories :func:`_make_dirs` made, if they are still empty."""
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            pass


def _add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("-y", "--overwrite", action="store_true",
                   help="replace existing outputs (refused by default, as in ffmpeg)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"registry model id (default: {DEFAULT_MODEL}, as in encode; see `models list`)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"],
                   help="auto: CUDA if it really initialises, else CPU (default: auto)")
    p.add_argument("--threads", type=int, default=None, help="CPU inference threads (default: all cores)")


def _add_model_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", default=None,
                   help="model cache (default: $VMAF_ROI_MODEL_DIR or ~/.cache/vmaf-roi/models)")


def event_views(ndjson: bool, quiet: bool):
    """(view, progress factory) for a long command: NDJSON events on stdout, or progress bars on
    stderr when it is a terminal (none with --quiet)."""
    from .events import progress_events

    if ndjson:
        return ndjson_view, progress_events(ndjson_view)
    view = BarView(bars=sys.stderr.isatty() and not quiet)
    return view, progress_events(view, interval=0.1)
