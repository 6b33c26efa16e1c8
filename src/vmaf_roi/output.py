"""All-or-nothing output files: write to a hidden temporary beside the target, rename on success.

>>> with AtomicOutputs() as outs:
...     tmp = outs.add(Path("out.mkv"))   # write to tmp
... # renamed to out.mkv here; on any exception (Ctrl-C included) every temporary is removed
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import ConfigError


class AtomicOutputs:
    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []

    def add(self, final: str | Path, *, inputs: tuple[Path, ...] = ()) -> Path:
        final = Path(final)
        parent = final.parent if str(final.parent) else Path(".")
        if not parent.is_dir():
            raise ConfigError(f"output directory {parent} does not exist")
        if final.is_dir():
            raise ConfigError(f"output {final} is a directory")
        for src in inputs:
            if src.exists() and final.exists() and os.path.samefile(src, final):
                raise ConfigError(f"output {final} would overwrite the input")
        if any(final == f for f, _ in self._pending):
            raise ConfigError(f"output {final} is named twice")
        tmp = parent / f".{final.stem}.{secrets.token_hex(4)}.part{final.suffix}"
        self._pending.append((final, tmp))
        return tmp

    def discard(self) -> None:
        for _, tmp in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending.clear()

    def commit(self) -> None:
        for final, tmp in self._pending:
            os.replace(tmp, final)
        self._pending.clear()

    def __enter__(self) -> "AtomicOutputs":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
