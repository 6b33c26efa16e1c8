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


# -- ffmpeg habits ----------------------------------------------------------------------------
HABITS_TITLE = "ffmpeg-style options"
HABITS_DESC = ("Typed as in ffmpeg, mapped onto the config (an explicit --set of the same key wins). "
               "-ss/-t/-to work on a segment as ffmpeg's input options do: the input is sought to the keyframe "
               "before START and decoded from there (not from the start), frames before START are dropped, "
               "the segment's first frame becomes time 0; it is cut once losslessly (FFV1, with its audio "
               "packets, into a temporary .mkv under $TMPDIR) and the command runs on that. "
               "Times: seconds (90, 1.5) or [HH:]MM:SS[.ms] (01:30, 00:01:30.5).")


def add_ffmpeg_habits(p: argparse.ArgumentParser, *, codec: bool = True, rate: bool = True,
                      segment: bool = True, audio: bool = True) -> argparse._ArgumentGroup:
    g = p.add_argument_group(HABITS_TITLE, HABITS_DESC)
    if codec:
        g.add_argument("-c:v", "-vcodec", dest="ff_encoder", metavar="ENCODER",
                       help="the encoder: --set encoder=ENCODER (-c alone is still the config file)")
        g.add_argument("-preset", dest="ff_preset", metavar="PRESET", help="--set preset=PRESET")
    if rate:
        g.add_argument("-crf", "--crf", dest="ff_crf", metavar="N",
                       help="--set rate_control.mode=crf --set rate_control.value=N")
        g.add_argument("-b:v", dest="ff_bitrate", metavar="RATE",
                       help="--set rate_control.mode=bitrate --set rate_control.value=RATE (e.g. 2M)")
    if segment:
        g.add_argument("-ss", dest="ff_ss", metavar="START", help="start at this time of the input")
        g.add_argument("-t", dest="ff_t", metavar="DURATION", help="take this long a segment")
        g.add_argument("-to", dest="ff_to", metavar="END", help="stop at this time of the input (or -t)")
        g.add_argument("-frames:v", "-vframes", dest="ff_frames", type=_frames_arg, metavar="N",
                       help="stop after N video frames")
    if audio:
        g.add_argument("-an", dest="ff_an", action="store_true", help="no audio: --set audio=drop")
    return g


def _frames_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number of frames >= 1, got {text!r}")
    return n


def habit_sets(args) -> list[str]:
    """The ``--set KEY=VALUE`` overrides the ffmpeg-style options stand for; the user's own
    ``--set`` come after them (and so win)."""
    sets = []
    crf, rate = getattr(args, "ff_crf", None), getattr(args, "ff_bitrate", None)
    if crf is not None and rate is not None:
        raise ConfigError("-crf and -b:v: give one (constant quality or a bitrate)")
    if getattr(args, "ff_encoder", None) is not None:
        sets.append(f"encoder={args.ff_encoder}")
    if getattr(args, "ff_preset", None) is not None:
        sets.append(f"preset={args.ff_preset}")
    if crf is not None:
        sets += ["rate_control.mode=crf", f"rate_control.value={crf}"]
    if rate is not None:
        sets += ["rate_control.mode=bitrate", f"rate_control.value={rate}"]
    if getattr(args, "ff_an", False):
        sets.append("audio=drop")
    return sets + list(getattr(args, "set", None) or [])


def segment_of(args):
    """The -ss/-t/-to/-frames:v segment (falsy when none was given); ConfigError for a bad time."""
    from .decode import Segment

    return Segment.from_options(getattr(args, "ff_ss", None), getattr(args, "ff_t", None),
                                getattr(args, "ff_to", None), getattr(args, "ff_frames", None))


def cut_input(args, segment, tmpdir: str | Path, *, audio: bool = True) -> Path:
    """Cut the segment of ``args.input`` losslessly into ``tmpdir`` (same name, .mkv); one line
    on stderr says what was cut."""
    from .decode import cut_segment

    inp = Path(args.input)
    res = cut_segment(inp, Path(tmpdir) / (inp.stem + ".mkv"), segment, audio=audio)
    seek = (f", decoded from {res.seeked_to:.3f} s (the keyframe before)"
            if segment.start and res.seeked_to is not None else "")
    _info(f"segment: {segment.describe()} of {inp}: {res.frames} frames from {res.offset:.3f} s of the input "
          f"(now time 0){seek}, cut losslessly (FFV1" + (f" + {res.streams_copied} copied stream(s)"
                                                          if res.streams_copied else "") + ")")
    for n in res.notes:
        _info(f"note: {n}")
    return res.path
