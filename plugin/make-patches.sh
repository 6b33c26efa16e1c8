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
FILES=(libavfilter/allfilters.c libavfilter/Makefile doc/filters.texi
       libavcodec/Makefile tests/fate/libavcodec.mak libavcodec/libsvtav1.c doc/encoders.texi
       libavcodec/nvenc.c libavcodec/nvenc.h libavcodec/nvenc_av1.c libavcodec/nvenc_h264.c
       libavcodec/nvenc_hevc.c)
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

# insert_after FILE LINE TEXT: insert the line TEXT after the first line equal to LINE
insert_after() {
    LINE=$2 TXT=$3 awk '
        { print }
        !done && $0 == ENVIRON["LINE"] { print ENVIRON["TXT"]; done = 1 }
        END { if (!done) exit 3 }' "$TMP/$1" > "$TMP/$1.new" || die "no line '$2' in $1"
    mv "$TMP/$1.new" "$TMP/$1"
}
# append_to_line FILE PATTERN TEXT: append TEXT to the first line matching PATTERN
append_to_line() {
    PAT=$2 TXT=$3 awk '
        !done && $0 ~ ENVIRON["PAT"] { $0 = $0 ENVIRON["TXT"]; done = 1 }
        { print }
        END { if (!done) exit 3 }' "$TMP/$1" > "$TMP/$1.new" || die "no line matching '$2' in $1"
    mv "$TMP/$1.new" "$TMP/$1"
}
# apply_diff FILE: apply a unified diff kept under plugin/diffs/
apply_diff() {
    patch -d "$TMP" -p1 -s --forward --no-backup-if-mismatch < "$1" \
        || die "$(basename "$1") does not apply to $(basename "$SRC")"
}
# 1: the filter
cp "$PLUGIN/vf_salroi.c" "$TMP/libavfilter/vf_salroi.c"
cp "$REPO/src/vmaf_roi/_planner.c" "$TMP/libavfilter/salroi_plan.c"  # the planner, shared with the package
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

# 3: the ROI map helper shared by libsvtav1 and nvenc, with its FATE test
mkdir -p "$TMP/libavcodec/tests"
cp "$PLUGIN/libavcodec/roi_map.h" "$PLUGIN/libavcodec/roi_map.c" "$TMP/libavcodec/"
cp "$PLUGIN/libavcodec/tests/roi_map.c" "$TMP/libavcodec/tests/roi_map.c"
insert_after libavcodec/Makefile \
    '            mathops                                                    \' \
    '            roi_map                                                     \'
printf '%s\n' 'FATE_LIBAVCODEC-yes += fate-roi-map' \
    'fate-roi-map: libavcodec/tests/roi_map$(EXESUF)' \
    'fate-roi-map: CMD = run libavcodec/tests/roi_map$(EXESUF)' \
    'fate-roi-map: CMP = null' '' > "$TMP/l3"
insert_before tests/fate/libavcodec.mak '^FATE_LIBAVCODEC-\$\(CONFIG_GOLOMB\) \+= fate-golomb' "$TMP/l3"
rm -f "$TMP/l3"
g add -A
g commit -q -F - <<'EOF'
avcodec: add a helper turning ROI side data into block maps

ff_roi_map_fill() rasterises AVRegionOfInterest side data onto a grid
of square blocks with the rules of the libx264 wrapper (a block takes
the offset of the first region that overlaps it; qoffset is clipped to
[-1, 1] and scaled by the codec's range).  ff_roi_map_quantize() reduces
a map to a few distinct offsets, for encoders with a limited number of
segments.  Tested by libavcodec/tests/roi_map (fate-roi-map).
EOF

# 4: ROI in libsvtav1
apply_diff "$PLUGIN/diffs/libsvtav1-roi.diff"
append_to_line libavcodec/Makefile '^OBJS-\$\(CONFIG_LIBSVTAV1_ENCODER\) ' ' roi_map.o'
insert_before doc/encoders.texi '^@section libjxl$' "$PLUGIN/doc/libsvtav1-roi.texi"
g add -A
g commit -q -F - <<'EOF'
avcodec/libsvtav1: honour region of interest side data

SVT-AV1 2.0 and later take a per-picture ROI map: a segment id per
64x64 block and a qindex offset per segment, at most 8 segments.  Build
it from AV_FRAME_DATA_REGIONS_OF_INTEREST with the rules of the other
wrappers (first region wins, qindex offset = qoffset * 255), keeping 0
and the offsets that cover the most blocks when there are more than 8.

The library keeps the pointer to the map and applies the last map it got
to later pictures too.  So a map is freed only once the packets of all
pictures that used it are out, and a frame without ROI after one with
ROI gets an all-zero map.  A map is only sent when it changes: a stream
without ROI side data is coded as before.  The new roi option (default
on) turns it off.

The new roi_mode option chooses how the library codes the map: deltaq
(the default where SVT-AV1 defines SVT_AV1_ROI_MAP_DELTA_Q) adds the
offsets to the superblock qindex as per-superblock delta-q, segment uses
AV1 segmentation (SVT-AV1's own ROI map).  roi_zero_maps sends a map
also for regions whose offsets are all 0, to measure its fixed cost.
EOF

# 5: ROI in nvenc
apply_diff "$PLUGIN/diffs/nvenc-roi.diff"
for c in AV1 H264 HEVC; do
    append_to_line libavcodec/Makefile "^OBJS-\\\$\\(CONFIG_${c}_NVENC_ENCODER\\) " ' roi_map.o'
done
g add -A
g commit -q -F - <<'EOF'
avcodec/nvenc: honour region of interest side data with -roi 1

With the new roi option, NVENC runs with qpMapMode NV_ENC_QP_MAP_DELTA
and frames with AV_FRAME_DATA_REGIONS_OF_INTEREST get a QP delta map:
one offset per macroblock (H.264), 32x32 CTB (HEVC) or 64x64 superblock
(AV1), first region wins, qoffset * 51 (H.264, HEVC) or qoffset * 255
in qindex units clipped to the int8_t range (AV1).  Off by default.
EOF

rm -f "$OUT"/*.patch
mkdir -p "$OUT"
g format-patch -q --zero-commit --no-signature --no-stat --full-index -o "$OUT" HEAD~5..HEAD
(cd "$OUT" && ls -1 -- *.patch) > "$OUT/series"
echo "make-patches.sh: wrote $(wc -l < "$OUT/series") patches to $OUT" >&2
