#!/usr/bin/env bash
# Regenerate ffmpeg-patches/ (a git format-patch series + series file) from plugin/.
#
#   plugin/make-patches.sh
#
# The series is made against the pristine FFmpeg 7.1.x source fetched by plugin/build.sh
# (only the files the series touches are committed to a scratch git repository, so the
# patches are the same as against the full tree).  Commit metadata is fixed so the output
# depends only on the inputs.  plugin/check_drift.py verifies the result in CI.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PLUGIN=$REPO/plugin
OUT=$REPO/ffmpeg-patches
die() { echo "make-patches.sh: error: $*" >&2; exit 1; }

command -v git >/dev/null || die "missing tool 'git'"
SRC=$("$PLUGIN/build.sh" --source | tail -n1)
[ -f "$SRC/libavfilter/allfilters.c" ] || die "no FFmpeg source at '$SRC'"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FILES=(libavfilter/allfilters.c libavfilter/Makefile doc/filters.texi)
for f in "${FILES[@]}"; do
    mkdir -p "$TMP/$(dirname "$f")"
    cp "$SRC/$f" "$TMP/$f"
done

export GIT_AUTHOR_NAME="vmaf-roi" GIT_AUTHOR_EMAIL="vmaf-roi@invalid"
export GIT_COMMITTER_NAME="vmaf-roi" GIT_COMMITTER_EMAIL="vmaf-roi@invalid"
export GIT_AUTHOR_DATE="2025-01-01T00:00:00Z" GIT_COMMITTER_DATE="2025-01-01T00:00:00Z"
export GIT_CONFIG_NOSYSTEM=1 HOME=$TMP
g() { git -C "$TMP" -c core.autocrlf=false -c commit.gpgsign=false "$@"; }
g init -q
g add -A
g commit -q -m "FFmpeg $(basename "$SRC") (pristine)"

# insert_before FILE PATTERN TEXTFILE: insert TEXTFILE before the first line matching PATTERN
insert_before() {
    PAT=$2 TXT=$3 awk '
        !done && $0 ~ ENVIRON["PAT"] { txt = ENVIRON["TXT"]; while ((getline l < txt) > 0) print l; done = 1 }
        { print }
        END { if (!done) exit 3 }' "$TMP/$1" > "$TMP/$1.new" || die "no line matching '$2' in $1"
    mv "$TMP/$1.new" "$TMP/$1"
}

# 1: the filter
cp "$PLUGIN/vf_salroi.c" "$TMP/libavfilter/vf_salroi.c"
echo 'extern const AVFilter ff_vf_salroi;' > "$TMP/l1"
insert_before libavfilter/allfilters.c '^extern const AVFilter ff_vf_scale;' "$TMP/l1"
echo 'OBJS-$(CONFIG_SALROI_FILTER)                 += vf_salroi.o framesync.o' > "$TMP/l2"
insert_before libavfilter/Makefile '^OBJS-\$\(CONFIG_SCALE_FILTER\)' "$TMP/l2"
rm -f "$TMP/l1" "$TMP/l2"
g add -A
g commit -q -F - <<'EOF'
avfilter: add salroi filter

Set AVRegionOfInterest side data on video frames from a saliency map:
per-block QP offsets from the mean saliency, merged into rectangles of
equal offset, at most max_regions of them (the block size doubles until
they fit).  The planner is the one of vmaf-roi and gives the same
regions for the same map.

The maps come either from a second input (gray frames paired by
timestamp) or, with model=FILE.onnx, from an ONNX saliency model that
the filter runs itself through the ONNX Runtime C API.  The library is
loaded with dlopen() at run time (ort_lib= or VMAF_ROI_ORT_LIB), never
linked; only onnxruntime_c_api.h is needed at build time, and without
it the filter builds with the two-input mode only.  The model runs every
stride frames and on scene cuts while later frames are read ahead (in a
worker thread with async=1); frames in between get a blend of the two
maps.
EOF

# 2: the documentation
insert_before doc/filters.texi '^@anchor\{scale\}$' "$PLUGIN/salroi.texi"
g add -A
g commit -q -m "doc/filters: document the salroi filter"

rm -f "$OUT"/*.patch
mkdir -p "$OUT"
g format-patch -q --zero-commit --no-signature --no-stat --full-index -o "$OUT" HEAD~2..HEAD
(cd "$OUT" && ls -1 -- *.patch) > "$OUT/series"
echo "make-patches.sh: wrote $(wc -l < "$OUT/series") patches to $OUT" >&2
