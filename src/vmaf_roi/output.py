"""All-or-nothing output files: write to a hidden temporary beside the target, rename on success.

>>> with AtomicOutputs(overwrite=False) as outs:
...     tmp = outs.add(Path("out.mkv"), inputs=(Path("in.mp4"),))   # write to tmp
... # renamed to out.mkv here; on any exception (Ctrl-C, SIGTERM, SIGHUP included) every
... # temporary is removed

Rules every command follows through this module (checked before any work starts):

* an output is never one of the inputs (same resolved path, or the same file by a hard link);
* an existing output is replaced only with ``overwrite`` (the CLI's ``-y``/``--overwrite``);
* the output's directory must exist and be writable (a temporary is created there at once).

Temporaries are named ``.<name>.vmaf-roi-<pid>-<hex>.part<suffix>``. A later run removes the
ones it finds beside its own outputs when the process that made them is gone and they are older
than the running process (:func:`clean_stale`), so a SIGKILL leaves debris only until the next run.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from .errors import OutputError

TAG = "vmaf-roi"
_STARTED = time.time()
# (anything may follow .part: a writer may keep its own scratch file beside it, e.g. NpzWriter's .raw)
_TEMP_RE = re.compile(r"\.(?P<name>.+)\." + TAG + r"-(?P<pid>\d+)-[0-9a-f]{8}\.part(?:\.[^/]*)?\Z")

PathLike = str | os.PathLike


def temp_path(final: PathLike) -> Path:
    """A fresh temporary name beside ``final`` (same suffix, so formats are guessed the same)."""
    final = Path(final)
    return final.parent / f".{final.name}.{TAG}-{os.getpid()}-{secrets.token_hex(4)}.part{final.suffix}"


def temp_files(final: PathLike) -> list[tuple[Path, int]]:
    """(path, pid) of every temporary of ours beside ``final`` (any process)."""
    final = Path(final)
    parent = final.parent if str(final.parent) else Path(".")
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    out = []
    for n in names:
        m = _TEMP_RE.match(n)
        if m and m.group("name") == final.name:
            out.append((parent / n, int(m.group("pid"))))
    return out


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    try:  # a zombie (exited, not yet reaped by its parent) is dead too
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def clean_stale(final: PathLike) -> int:
    """Remove temporaries beside ``final`` left by dead processes (and older than this one)."""
    n = 0
    for p, pid in temp_files(final):
        if pid == os.getpid() or pid_alive(pid):
            continue
        try:
            if p.lstat().st_mtime >= _STARTED:
                continue
        except OSError:
            continue
        n += remove_path(p)
    return n


def remove_path(p: Path) -> bool:
    """Remove a temporary file or directory (a link is removed, never followed); False if it could not be."""
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
        return True
    except OSError:
        return False


def same_file(a: PathLike, b: PathLike) -> bool:
    """Same resolved path, or (both existing) the same inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _parent(p: Path) -> Path:
    return p.parent if str(p.parent) else Path(".")


def check_output(final: PathLike, inputs: Iterable[PathLike | None] = (), *, overwrite: bool = False,
                 what: str = "output") -> Path:
    """Refuse (OutputError) an output that is an input, exists without ``overwrite``, is not a
    regular file, or whose directory is missing. Writability is checked by :func:`probe_dir`."""
    final = Path(final)
    parent = _parent(final)
    for src in inputs:
        if src is not None and same_file(final, src):
            raise OutputError(f"{what} {final} is also an input ({src}); choose another name")
    if not parent.exists():
        raise OutputError(f"{what} {final}: directory {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"{what} {final}: {parent} is not a directory")
    if final.is_dir():
        raise OutputError(f"{what} {final} is a directory")
    try:
        st = final.lstat()
    except FileNotFoundError:
        return final
    except OSError as exc:
        raise OutputError(f"{what} {final}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode) and not stat.S_ISLNK(st.st_mode):
        raise OutputError(f"{what} {final} exists and is not a regular file")
    if not overwrite:
        raise OutputError(f"{what} {final} already exists (use -y/--overwrite to replace it)")
    return final


def probe_dir(directory: PathLike) -> None:
    """Create and remove a temporary in ``directory``: OutputError when that is not possible."""
    d = Path(directory)
    probe = d / f".{TAG}-probe.{TAG}-{os.getpid()}-{secrets.token_hex(4)}.part"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except OSError as exc:
        raise OutputError(f"cannot write to directory {d}: {exc.strerror}") from None
    finally:
        # also when a signal (SIGTERM, Ctrl-C) lands between the two calls: the name is this
        # process's own (pid and a random part), so whatever is there was made just now; where
        # none was made (a directory we may not write, or search) the OutputError above stands
        with contextlib.suppress(OSError):
            os.unlink(probe)


def check_outputs(outputs: Iterable[PathLike | None], inputs: Iterable[PathLike | None] = (), *,
                  overwrite: bool = False) -> list[Path]:
    """:func:`check_output` on every output (None skipped), no output named twice, every
    directory writable. Call it before any work starts."""
    inputs = [i for i in inputs if i is not None]
    seen: list[Path] = []
    for o in outputs:
        if o is None:
            continue
        p = check_output(o, inputs, overwrite=overwrite)
        if any(same_file(p, q) for q in seen):
            raise OutputError(f"output {p} is named twice")
        seen.append(p)
    for d in {os.path.realpath(_parent(p)) for p in seen}:
        probe_dir(d)
    return seen


class AtomicOutputs:
    """Outputs written to temporaries and renamed together at the end (or all removed)."""

    def __init__(self, *, overwrite: bool = True) -> None:
        self.overwrite = overwrite
        self._pending: list[tuple[Path, Path]] = []

    def add(self, final: PathLike, *, inputs: Iterable[PathLike | None] = (), overwrite: bool | None = None) -> Path:
        """Check ``final`` (see :func:`check_output`), create its temporary and return it."""
        final = Path(final)
        check_output(final, inputs, overwrite=self.overwrite if overwrite is None else overwrite)
        if final.is_symlink():  # write through the link, as ffmpeg does: the link stays
            final = Path(os.path.realpath(final))
        if any(same_file(final, f) for f, _ in self._pending):
            raise OutputError(f"output {final} is named twice")
        clean_stale(final)
        tmp = temp_path(final)
        # listed before it is made: a signal landing as it is made still finds it in discard()
        self._pending.append((final, tmp))
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except OSError as exc:
            self._pending.pop()
            raise OutputError(f"cannot write {final}: {exc.strerror}") from None
        return tmp

    def discard(self) -> None:
        for _, tmp in self._pending:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                shutil.rmtree(tmp, ignore_errors=True)
        self._pending.clear()

    def commit(self) -> None:
        try:
            for final, tmp in self._pending:
                os.replace(tmp, final)
        except OSError as exc:
            self.discard()
            raise OutputError(f"cannot write {final}: {exc.strerror}") from None
        self._pending.clear()

    def __enter__(self) -> "AtomicOutputs":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def write_text(final: PathLike, text: str, *, inputs: Iterable[PathLike | None] = (), overwrite: bool = True) -> Path:
    """Write a small text file atomically."""
    with AtomicOutputs(overwrite=overwrite) as outs:
        tmp = outs.add(final, inputs=inputs)
        tmp.write_text(text, encoding="utf-8")
    return Path(final)
