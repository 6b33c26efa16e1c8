"""The batch manifest: what was done, and what a re-run must redo.

See :mod:`vmaf_roi.batch` for the whole picture.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError, OutputError
from ..registry import sha256_file
from .schema import LOCK_NAME, MANIFEST_VERSION, STEP_KINDS, Batch, Unit


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


def step_output(output: str | Path, kind: str) -> Path:
    """Where a unit's ``kind`` step (score, compare) writes its result: beside the output."""
    out = Path(output)
    return out.with_name(f"{out.name}.{kind}.json")


def file_identity(path: str | Path) -> dict[str, Any]:
    """Size and sha256 of a file this run wrote (recorded; a re-run checks them)."""
    p = Path(path)
    return {"size": p.stat().st_size, "sha256": sha256_file(p)}


def _step_outputs_problem(unit: Unit, rec: dict[str, Any] | None) -> tuple[str, str] | None:
    """('missing' | 'unknown' | 'unreadable', what) for the first step output of ``unit`` that is
    gone, or there but not what the manifest recorded; None when all are as recorded."""
    done = rec is not None and rec.get("status") == "done"
    recorded = (rec or {}).get("step_outputs")  # None: a record of an earlier version (no digests)
    for kind in STEP_KINDS:
        if kind not in unit.steps:
            continue
        side = step_output(unit.output, kind)
        if not os.path.lexists(side):
            return "missing", f"{kind} step output {side.name} missing"
        if not done:
            return "unknown", f"output {side} exists and is not in the manifest"
        if recorded is None:
            continue
        want = recorded.get(kind) if isinstance(recorded, dict) else None
        try:
            ok = (isinstance(want, dict) and side.is_file() and side.stat().st_size == want.get("size")
                  and sha256_file(side) == want.get("sha256"))
        except OSError as exc:
            return "unreadable", f"output {side} exists but cannot be read ({exc.strerror})"
        if not ok:
            return "unknown", f"output {side} exists and differs from what the manifest recorded (changed since)"
    return None


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
    side = _step_outputs_problem(unit, rec)
    if side is not None and side[0] == "unreadable":
        return Decision(unit, "fail", side[1], ident, untouched=True)
    if side is not None and side[0] == "unknown" and not overwrite:
        # a step's file that someone put or changed there: replaced only with --overwrite
        return Decision(unit, "fail", f"{side[1]}; pass --overwrite to replace it", ident, untouched=True)
    if force:
        return Decision(unit, "run", "--force", ident)
    if side is not None and side[0] == "unknown":
        return Decision(unit, "run", "--overwrite", ident)
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
    if side is not None:  # missing: the encode's output is there, a step's is not
        return Decision(unit, "run", side[1], ident)
    return Decision(unit, "skip", "unchanged since the last run", ident)


def plan(batch: Batch, manifest: Manifest, *, force: bool = False, overwrite: bool = False,
         threads: int = 4) -> list[Decision]:
    """Hashes inputs (and finished outputs) in a few threads; decides run / skip / fail."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(pool.map(lambda u: _decide(u, manifest.get(u.key), force, overwrite), batch.units))
