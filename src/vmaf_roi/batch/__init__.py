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

from ..registry import sha256_file
from .manifest import Decision, Manifest, input_identity, plan, read_manifest
from .runner import Interrupt, Row, Summary, _detail, remove_temp_files, run_batch, run_step, run_unit, temp_files
from .schema import (
    DEFAULT_KEYS, JOB_KEYS, LOCK_NAME, LOCK_SUFFIX, MANIFEST_NAME, MANIFEST_VERSION, STEP_HOOKS, STEP_KINDS,
    STEP_RESERVED, TEMPLATE_FIELDS, TOP_KEYS, Batch, Unit, Unmatched, check_step_options, config_hash, load_batch,
)

__all__ = [
    "Batch", "Decision", "Interrupt", "Manifest", "Row", "Summary", "Unit", "Unmatched", "check_step_options",
    "config_hash", "input_identity", "load_batch", "plan", "read_manifest", "remove_temp_files", "run_batch",
    "run_step", "run_unit", "sha256_file", "temp_files", "DEFAULT_KEYS", "JOB_KEYS", "LOCK_NAME", "LOCK_SUFFIX",
    "MANIFEST_NAME", "MANIFEST_VERSION", "STEP_HOOKS", "STEP_KINDS", "STEP_RESERVED", "TEMPLATE_FIELDS", "TOP_KEYS",
    "_detail",
]
