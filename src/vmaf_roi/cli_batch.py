"""`vmaf-roi batch`: the command-line front end of :mod:`vmaf_roi.batch`.

Registered by ``cli.build_parser`` through :func:`add_parsers`; also runnable on its own as
``python -m vmaf_roi.cli_batch BATCH.yaml ...`` (same options, same exit codes).
The core only emits events; this module renders them: progress bars on a terminal, one line
per finished job otherwise, NDJSON on stdout with ``--json``, and a summary table at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .cli_common import _add_model_dir, _info, _model_dir
from .errors import ConfigError

EXIT_FAILED = 1  # some jobs failed (the others ran)
EXIT_INTERRUPTED = 130


def add_arguments(b: argparse.ArgumentParser) -> None:
    b.add_argument("batch_file", help="YAML batch file (see configs/batch-example.yaml)")
    b.add_argument("-o", "--output-dir", default=None,
                   help="write outputs (and the manifest) here instead of the batch file's output_dir")
    b.add_argument("--executor", choices=["local", "dask"], default="local",
                   help="local: worker processes on this machine (default); dask: a Dask distributed cluster")
    b.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="Dask scheduler address (with --executor dask; default: $DASK_SCHEDULER_ADDRESS)")
    b.add_argument("-j", "--workers", type=int, default=None,
                   help="local worker processes (default: the number of usable CPU cores)")
    b.add_argument("--retries", type=int, default=1,
                   help="local: times a job is retried when its worker process dies (default: 1; "
                        "a job's own error is not retried)")
    b.add_argument("--force", action="store_true",
                   help="redo every job, finished or not (an output that is not ours still needs --overwrite)")
    b.add_argument("-y", "--overwrite", action="store_true",
                   help="replace existing outputs that are not this batch's own: unknown to the manifest, or changed "
                        "since it wrote them (refused by default)")
    b.add_argument("--dry-run", action="store_true", help="validate and show what would run, skip or fail; run nothing")
    b.add_argument("--json", "--ndjson", action="store_true", dest="json",
                   help="NDJSON events on stdout, one JSON object per line, each with a type (status, progress "
                        "or result) and the batch event name (for scripts); no progress bars")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-job lines")
    _add_model_dir(b)


def add_parsers(subparsers) -> argparse.ArgumentParser:
    b = subparsers.add_parser(
        "batch", help="run many encodes from a batch file (resumable; local processes or Dask)",
        description="Run the jobs of a batch file. A manifest beside the outputs makes re-runs skip "
                    "finished jobs whose input and config did not change. Exit status: 0 all done or "
                    "skipped, 1 some jobs failed (with --dry-run: would fail), 2 bad batch file or options, "
                    "130 interrupted (Ctrl-C), 143 SIGTERM, 129 SIGHUP.",
    )
    add_arguments(b)
    b.set_defaults(func=cmd_batch)
    return b


# -- rendering ------------------------------------------------------------------------------
def _name(path: str | None) -> str:
    return os.path.basename(path) if path else "-"


# batch event name -> the event type shared with encode/compare --ndjson
EVENT_TYPES = {"progress": "progress", "done": "result", "failed": "result", "summary": "result"}


class _JsonView:
    def __call__(self, e: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps({"type": EVENT_TYPES.get(e.get("event"), "status"), **e}, default=str) + "\n")
        sys.stdout.flush()


class _LineView:
    """Not a terminal (or --quiet): one line per finished job on stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, e: dict[str, Any]) -> None:
        k = e["event"]
        if self.quiet and k not in ("interrupt",):
            return
        if k == "batch":
            _info(f"batch: {e['units']} jobs: {e['run']} to run, {e['skip']} unchanged, {e['fail']} cannot run "
                  f"({e['executor']} executor)")
        elif k == "done":
            _info(f"done    {e['job']}: {_name(e['input'])} -> {e['key']}")
        elif k == "failed" and not e.get("planned"):
            _info(f"failed  {e['job']}: {_name(e['input'])}: {e['reason']}")
        elif k == "retry":
            _info(f"retry   {e['job']}: {_name(e['input'])}: {e['reason']}")
        elif k == "interrupt":
            _info(e.get("message") or "aborting")


class _BarView:
    """A terminal: an overall bar and one bar per running job."""

    def __init__(self) -> None:
        self.overall = None
        self.bars: dict[str, Any] = {}
        self.free: list[int] = []
        self.next_pos = 1
        self.notes: set[str] = set()

    def __call__(self, e: dict[str, Any]) -> None:
        from tqdm import tqdm

        k = e["event"]
        if k == "batch":
            _info(f"batch: {e['units']} jobs: {e['run']} to run, {e['skip']} unchanged, {e['fail']} cannot run")
            self.overall = tqdm(total=e["run"], desc="batch", unit="job", position=0, file=sys.stderr,
                                dynamic_ncols=True)
        elif k == "start":
            self._close(e["key"])
            pos = self.free.pop(0) if self.free else self._take()
            self.bars[e["key"]] = (tqdm(total=None, desc=f"  {e['job']}:{_name(e['input'])}"[:32], unit="frame",
                                        position=pos, leave=False, file=sys.stderr, dynamic_ncols=True), pos)
        elif k == "progress" and e["key"] in self.bars:
            bar = self.bars[e["key"]][0]
            stage = e.get("stage") or "encode"
            desc = f"  {e['job']}:{_name(e['input'])}"[:32] + ("" if stage == "encode" else f" {stage}"[:28])
            if bar.desc != desc:  # a score/compare step after the encode: a new stage, counted afresh
                bar.set_description_str(desc, refresh=False)
                bar.reset(total=e.get("total"))
            if e.get("total") and bar.total != e["total"]:
                bar.total = e["total"]
            bar.n = e.get("frames") or 0
            bar.refresh()
        elif k in ("done", "failed") and not e.get("planned"):
            self._close(e.get("key"))
            if self.overall is not None:
                self.overall.update(1)
            if k == "failed":
                tqdm.write(f"failed  {e['job']}: {_name(e['input'])}: {e['reason']}", file=sys.stderr)
        elif k in ("retry", "note"):
            msg = e.get("reason") or e.get("message")
            if k == "note":  # the same note for every job (e.g. a placeholder model) is shown once
                if msg in self.notes:
                    return
                self.notes.add(msg)
            tqdm.write(f"{k:7} {e['job']}: {_name(e['input'])}: {msg}", file=sys.stderr)
        elif k == "interrupt":
            tqdm.write(e.get("message") or "aborting", file=sys.stderr)
        elif k == "summary" and self.overall is not None:
            for key in list(self.bars):
                self._close(key)
            self.overall.close()

    def _take(self) -> int:
        self.next_pos += 1
        return self.next_pos - 1

    def _close(self, key: str | None) -> None:
        item = self.bars.pop(key, None) if key else None
        if item:
            item[0].close()
            self.free.append(item[1])
            self.free.sort()


WIDTH = 100  # the summary table fits in this many columns


def summary_table(summary, base: str | None = None) -> str:
    def rel(p: str) -> str:
        if base and p not in ("-",) and os.path.isabs(p):
            r = os.path.relpath(p, base)
            return p if r.startswith("..") and len(r) > len(p) else r
        return p

    rows = [("STATUS", "JOB", "INPUT", "OUTPUT", "DETAIL")]
    order = {"failed": 0, "done": 1, "skipped": 2}
    caps = (7, 16, 34, 34)  # the four columns stay within 97; long paths keep their end
    for r in sorted(summary.rows, key=lambda r: (order.get(r.status, 3), r.job, r.input)):
        cells = (r.status, r.job, rel(r.input), rel(r.output))
        rows.append((*(c if len(c) <= caps[i] else "..." + c[-(caps[i] - 3):] for i, c in enumerate(cells)),
                     r.detail.replace("\n", " ")))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        head = "  ".join(c.ljust(widths[i]) for i, c in enumerate(row[:4]))
        if len(head) + 2 + len(row[4]) <= WIDTH:
            lines.append(f"{head}  {row[4]}".rstrip())
        else:  # the detail goes under its row, indented, wrapped at WIDTH
            import textwrap

            lines.append(head.rstrip())
            lines.extend(textwrap.wrap(row[4], WIDTH, initial_indent=" " * 8, subsequent_indent=" " * 8))
    n = len(summary.rows)
    tail = (f"{n} job{'s' if n != 1 else ''}: {summary.count('done')} done, {summary.count('skipped')} skipped, "
            f"{summary.count('failed')} failed in {summary.seconds:.1f} s")
    if summary.interrupted:
        tail += " (interrupted)"
    return "\n".join(lines + [tail])


# -- command --------------------------------------------------------------------------------
def make_executor(args):
    from .executors import DaskExecutor, LocalExecutor

    if args.executor == "dask":
        addr = args.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
        if not addr:
            raise ConfigError("--executor dask needs --scheduler tcp://HOST:PORT (or $DASK_SCHEDULER_ADDRESS)")
        return DaskExecutor(addr)
    if args.scheduler:
        raise ConfigError("--scheduler is for --executor dask")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers: expected a number >= 1, got {args.workers}")
    if args.retries < 0:
        raise ConfigError(f"--retries: expected a number >= 0, got {args.retries}")
    return LocalExecutor(args.workers, retries=args.retries)


def cmd_batch(args) -> int:
    from .batch import Manifest, load_batch, plan, run_batch

    batch = load_batch(args.batch_file, output_dir=args.output_dir, model_dir=_model_dir(args))
    base = os.path.dirname(os.path.abspath(args.batch_file))
    if args.dry_run:  # reads only: no directory, manifest or lock is created, nothing rewritten
        with Manifest(batch.manifest_path, readonly=True) as man:
            decisions = plan(batch, man, force=args.force, overwrite=args.overwrite)
        if args.json:
            for d in decisions:
                _JsonView()({"event": "plan", "action": d.action, "reason": d.reason, "job": d.unit.job,
                             "input": d.unit.input, "output": d.unit.output, "gpu": d.unit.gpu})
            for u in batch.unmatched:
                _JsonView()({"event": "plan", "action": "fail", "reason": "no files match", "job": u.job,
                             "input": u.pattern, "output": None})
        else:
            for d in decisions:
                print(f"{d.action:5} {d.unit.job}: {os.path.relpath(d.unit.input, base)} -> {d.unit.key}  ({d.reason})")
            for u in batch.unmatched:
                print(f"fail  {u.job}: {u.pattern}  (no files match)")
        return EXIT_FAILED if batch.unmatched or any(d.action == "fail" for d in decisions) else 0
    executor = make_executor(args)
    if args.json:
        view = _JsonView()
    elif sys.stderr.isatty() and not args.quiet:
        view = _BarView()
    else:
        view = _LineView(args.quiet)
    summary = run_batch(batch, executor, force=args.force, overwrite=args.overwrite, on_event=view)
    if not args.json:
        print(summary_table(summary, base))
    if summary.interrupted:
        return 128 + summary.signum if summary.signum else EXIT_INTERRUPTED
    return 0 if summary.ok else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """`python -m vmaf_roi.cli_batch ARGS` = `vmaf-roi batch ARGS`, with the main CLI's error handling."""
    from .cli import main as cli_main

    return cli_main(["batch", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
