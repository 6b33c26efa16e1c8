#!/usr/bin/env python3
"""Fail when ffmpeg-patches/ no longer carries plugin/ (run plugin/make-patches.sh to fix).

Checks, without needing the FFmpeg source:
- ffmpeg-patches/series lists exactly the *.patch files there, and each exists;
- the new file libavfilter/vf_salroi.c in the series is byte-identical to plugin/vf_salroi.c, and
  libavfilter/salroi_plan.c (the planner it includes) to src/vmaf_roi/_planner.c;
- the lines the series adds to doc/filters.texi are exactly plugin/salroi.texi;
- the series registers the filter in allfilters.c and libavfilter/Makefile;
- the new files libavcodec/roi_map.{c,h} and libavcodec/tests/roi_map.c are byte-identical to
  plugin/libavcodec/, and the series changes libavcodec/libsvtav1.c and the nvenc files by
  exactly the lines of plugin/diffs/*.diff, and doc/encoders.texi by plugin/doc/libsvtav1-roi.texi;
- libavcodec/Makefile builds roi_map.o with libsvtav1 and the three nvenc encoders, and the
  roi_map test program.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PATCHES = REPO / "ffmpeg-patches"
PLUGIN = REPO / "plugin"
FIX = "run plugin/make-patches.sh and commit ffmpeg-patches/"


def added_lines(patches: list[str], path: str) -> list[str]:
    """'+' lines of every hunk touching ``path`` (b/ side), in series order."""
    return [line[1:] for line in changed_lines(patches, path) if line.startswith("+")]


def changed_lines(patches: list[str], path: str) -> list[str]:
    """'+' and '-' lines of every hunk touching ``path`` in the series, in order."""
    out: list[str] = []
    for text in patches:
        current = None
        for line in text.splitlines(keepends=True):
            if line.startswith("diff --git "):
                m = re.match(r"diff --git a/(\S+) b/(\S+)", line)
                current = m.group(2) if m else None
            elif line.startswith(("+++ ", "--- ")):
                continue
            elif current == path and line.startswith(("+", "-")):
                out.append(line)
            elif line.startswith("-- \n"):
                current = None
    return out


def diff_changed_lines(diff: str) -> dict[str, list[str]]:
    """Per file (b/ side), the '+' and '-' lines of a plain unified diff."""
    out: dict[str, list[str]] = {}
    current = None
    lines = diff.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            current = None
        elif line.startswith("+++ "):
            current = re.sub(r"^b/", "", line[4:].split("\t")[0].strip())
            out.setdefault(current, [])
        elif current and line.startswith(("+", "-")):
            out[current].append(line)
    return out


def main() -> int:
    errors: list[str] = []
    series_file = PATCHES / "series"
    if not series_file.is_file():
        print(f"check_drift: no {series_file}; {FIX}", file=sys.stderr)
        return 1
    series = [s.strip() for s in series_file.read_text().splitlines()
              if s.strip() and not s.startswith("#")]
    on_disk = sorted(p.name for p in PATCHES.glob("*.patch"))
    if sorted(series) != on_disk:
        errors.append(f"series lists {series} but the directory holds {on_disk}")
    patches = [(PATCHES / s).read_text() for s in series if (PATCHES / s).is_file()]

    c_in_patch = "".join(added_lines(patches, "libavfilter/vf_salroi.c"))
    c_plugin = (PLUGIN / "vf_salroi.c").read_text()
    if c_in_patch != c_plugin:
        errors.append("libavfilter/vf_salroi.c in the series differs from plugin/vf_salroi.c")
    plan_in_patch = "".join(added_lines(patches, "libavfilter/salroi_plan.c"))
    if plan_in_patch != (REPO / "src" / "vmaf_roi" / "_planner.c").read_text():
        errors.append("libavfilter/salroi_plan.c in the series differs from src/vmaf_roi/_planner.c")
    texi_in_patch = "".join(added_lines(patches, "doc/filters.texi"))
    if texi_in_patch != (PLUGIN / "salroi.texi").read_text():
        errors.append("doc/filters.texi in the series differs from plugin/salroi.texi")
    allfilters = added_lines(patches, "libavfilter/allfilters.c")
    if "extern const AVFilter ff_vf_salroi;\n" not in allfilters:
        errors.append("the series does not register ff_vf_salroi in libavfilter/allfilters.c")
    if not any("CONFIG_SALROI_FILTER" in l and "vf_salroi.o" in l
               for l in added_lines(patches, "libavfilter/Makefile")):
        errors.append("the series does not add vf_salroi.o to libavfilter/Makefile")

    for name in ("roi_map.c", "roi_map.h", "tests/roi_map.c"):
        if "".join(added_lines(patches, f"libavcodec/{name}")) != \
                (PLUGIN / "libavcodec" / name).read_text():
            errors.append(f"libavcodec/{name} in the series differs from plugin/libavcodec/{name}")
    for diff in sorted((PLUGIN / "diffs").glob("*.diff")):
        for path, lines in diff_changed_lines(diff.read_text()).items():
            if changed_lines(patches, path) != lines:
                errors.append(f"the series changes {path} otherwise than plugin/diffs/{diff.name}")
    if "".join(added_lines(patches, "doc/encoders.texi")) != \
            (PLUGIN / "doc" / "libsvtav1-roi.texi").read_text():
        errors.append("doc/encoders.texi in the series differs from plugin/doc/libsvtav1-roi.texi")
    makefile = added_lines(patches, "libavcodec/Makefile")
    for config in ("LIBSVTAV1", "AV1_NVENC", "H264_NVENC", "HEVC_NVENC"):
        if not any(f"CONFIG_{config}_ENCODER" in l and "roi_map.o" in l for l in makefile):
            errors.append(f"libavcodec/Makefile in the series does not build roi_map.o "
                          f"with {config.lower()}")
    if not any(l.split() == ["roi_map", "\\"] for l in makefile):
        errors.append("libavcodec/Makefile in the series does not list the roi_map test program")

    for e in errors:
        print(f"check_drift: {e}; {FIX}", file=sys.stderr)
    if not errors:
        print(f"check_drift: ffmpeg-patches/ matches plugin/ ({len(series)} patches)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
