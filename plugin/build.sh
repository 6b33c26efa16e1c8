#!/usr/bin/env bash
# Build a minimal ffmpeg 7.1.x with the salroi filter (ffmpeg-patches/series applied).
#
#   plugin/build.sh            build (or reuse the cached build) and print the binary path
#   plugin/build.sh --source   only fetch + unpack the pristine FFmpeg source, print its path
#
# Environment:
#   VMAF_ROI_FFMPEG_BUILD   build directory (default: <repo>/build/ffmpeg)
#   JOBS                    parallel make jobs (default: nproc)
#
# The FFmpeg source comes from Debian trixie's source package (upstream orig tarball only,
# Debian's own patches are not applied), fetched with a private APT configuration under the
# build directory: /etc/apt is never modified.  The finished build is cached under a key made
# from the FFmpeg version, the patch series and the configure flags; the last line printed on
# stdout is the path of the ffmpeg binary.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${VMAF_ROI_FFMPEG_BUILD:-$REPO/build/ffmpeg}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
SUITE=trixie
MIRROR=${VMAF_ROI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

die() { echo "build.sh: error: $*" >&2; exit 1; }
log() { echo "build.sh: $*" >&2; }

ONLY_SOURCE=0
case "${1:-}" in
    --source) ONLY_SOURCE=1 ;;
    "") ;;
    *) die "unknown argument '$1' (usage: plugin/build.sh [--source])" ;;
esac

# Configure flags: everything the filter, the docs' examples and tests/test_plugin.py need.
CONFIGURE_FLAGS=(
    --disable-everything --disable-autodetect --disable-debug --disable-doc
    --disable-ffplay --disable-ffprobe --disable-network
    --enable-pthreads --enable-gpl --enable-libx264 --enable-libx265
    --enable-encoder=libx264,libx265,rawvideo,ffv1,wrapped_avframe
    --enable-decoder=h264,hevc,ffv1,rawvideo,wrapped_avframe
    --enable-demuxer=matroska,mov,rawvideo,image2,h264,hevc
    --enable-muxer=matroska,mp4,mov,h264,hevc,rawvideo,null,framecrc,framemd5
    --enable-parser=h264,hevc
    --enable-protocol=file,pipe
    --enable-indev=lavfi
    --enable-bsf=h264_mp4toannexb,hevc_mp4toannexb,extract_extradata
    --enable-filter=salroi,addroi,showinfo,format,scale,null,nullsink,testsrc,testsrc2,color,setpts,settb,trim,fps,split,overlay,drawbox,aresample,anull,sendcmd
    --enable-swscale --enable-swresample
)

# --- toolchain -----------------------------------------------------------------------------
need_tool() { command -v "$1" >/dev/null 2>&1 || die "missing tool '$1' (apt-get install $2)"; }
if [ "$ONLY_SOURCE" = 0 ]; then
    need_tool gcc gcc
    need_tool make make
    need_tool nasm nasm
    need_tool pkg-config pkg-config
    pkg-config --exists x264 || die "missing libx264 development files (apt-get install libx264-dev)"
    pkg-config --exists x265 || die "missing libx265 development files (apt-get install libx265-dev)"
fi
need_tool sha256sum coreutils
need_tool tar tar
need_tool patch patch

# --- cache key -------------------------------------------------------------------------------
SERIES_DIR=$REPO/ffmpeg-patches
[ -f "$SERIES_DIR/series" ] || die "no patch series at $SERIES_DIR/series"
key_input() {
    echo "configure: ${CONFIGURE_FLAGS[*]}"
    echo "suite: $SUITE"
    echo "cc: $(gcc -dumpfullversion 2>/dev/null || echo none)"
    while read -r p; do
        case "$p" in ""|\#*) continue ;; esac
        [ -f "$SERIES_DIR/$p" ] || die "patch '$p' listed in $SERIES_DIR/series does not exist"
        echo "patch: $p $(sha256sum < "$SERIES_DIR/$p" | cut -c1-64)"
    done < "$SERIES_DIR/series"
}
KEY=$(key_input | sha256sum | cut -c1-16)
OUTDIR=$BUILD/out-$KEY
if [ "$ONLY_SOURCE" = 0 ] && [ -x "$OUTDIR/ffmpeg" ] && [ -f "$OUTDIR/.done" ]; then
    log "cached build $KEY ($(cat "$OUTDIR/.done"))"
    echo "$OUTDIR/ffmpeg"
    exit 0
fi

# --- fetch the source through a private APT configuration ------------------------------------
fetch_source() {
    local apt=$BUILD/apt
    mkdir -p "$apt/etc/sources.list.d" "$apt/etc/preferences.d" "$apt/lists/partial" \
             "$apt/cache/archives/partial" "$BUILD/dl"
    [ -r "$KEYRING" ] || die "missing $KEYRING (apt-get install debian-archive-keyring)"
    echo "deb-src [signed-by=$KEYRING] $MIRROR $SUITE main" > "$apt/etc/sources.list"
    cat > "$apt/apt.conf" <<EOF
Dir::Etc::SourceList "$apt/etc/sources.list";
Dir::Etc::SourceParts "$apt/etc/sources.list.d";
Dir::Etc::PreferencesParts "$apt/etc/preferences.d";
Dir::Etc::Preferences "$apt/etc/preferences";
Dir::State::Lists "$apt/lists";
Dir::Cache "$apt/cache";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Sandbox::User "root";
EOF
    export APT_CONFIG=$apt/apt.conf
    need_tool apt-get apt
    need_tool dpkg-source dpkg-dev
    log "fetching the ffmpeg source package index from $MIRROR ($SUITE)"
    apt-get -q --error-on=any update >"$BUILD/apt-update.log" 2>&1 \
        || die "cannot fetch the Debian $SUITE source index from $MIRROR (see $BUILD/apt-update.log)"
    (cd "$BUILD/dl" && rm -f ffmpeg_* && apt-get -q source --download-only "ffmpeg/$SUITE") \
        >"$BUILD/apt-source.log" 2>&1 \
        || die "cannot download the ffmpeg source package from Debian $SUITE (see $BUILD/apt-source.log)"
}

unpack_source() {
    local orig ver
    orig=$(ls "$BUILD"/dl/ffmpeg_*.orig.tar.* 2>/dev/null | head -n1)
    [ -n "$orig" ] || die "no ffmpeg orig tarball in $BUILD/dl after apt-get source"
    ver=$(basename "$orig" | sed -E 's/^ffmpeg_([^-]+)\.orig\.tar\..*$/\1/; s/\+.*//')
    case "$ver" in
        7.1|7.1.*) ;;
        *) die "Debian $SUITE now ships FFmpeg $ver, not 7.1.x: the patch series targets 7.1" ;;
    esac
    FFMPEG_VERSION=$ver
    SRC=$BUILD/ffmpeg-$ver
    if [ ! -f "$SRC/.unpacked" ]; then
        rm -rf "$SRC" "$SRC.tmp"
        mkdir -p "$SRC.tmp"
        tar -xf "$orig" -C "$SRC.tmp" --strip-components=1 || die "cannot unpack $orig"
        touch "$SRC.tmp/.unpacked"
        mv "$SRC.tmp" "$SRC"
    fi
}

mkdir -p "$BUILD"
if ! ls "$BUILD"/dl/ffmpeg_*.orig.tar.* >/dev/null 2>&1; then
    fetch_source
fi
unpack_source
if [ "$ONLY_SOURCE" = 1 ]; then
    echo "$SRC"
    exit 0
fi

# --- patch, configure, build -----------------------------------------------------------------
T0=$(date +%s)
WORK=$BUILD/work-$KEY
rm -rf "$WORK"
cp -a "$SRC" "$WORK.src"
rm -rf "$WORK" && mv "$WORK.src" "$WORK"
while read -r p; do
    case "$p" in ""|\#*) continue ;; esac
    log "applying $p"
    patch -d "$WORK" -p1 -s --forward --no-backup-if-mismatch < "$SERIES_DIR/$p" \
        || die "patch $p does not apply to FFmpeg $FFMPEG_VERSION"
done < "$SERIES_DIR/series"

log "configuring FFmpeg $FFMPEG_VERSION (log: $WORK/configure.log)"
(cd "$WORK" && ./configure "${CONFIGURE_FLAGS[@]}") >"$WORK/configure.log" 2>&1 \
    || { tail -n 20 "$WORK/configure.log" >&2; die "configure failed (see $WORK/configure.log)"; }
grep -q '^CONFIG_SALROI_FILTER=yes' "$WORK/ffbuild/config.mak" \
    || die "configure did not enable the salroi filter: is the patch series applied?"

log "building with make -j$JOBS (log: $WORK/make.log)"
(cd "$WORK" && make -j"$JOBS" ffmpeg) >"$WORK/make.log" 2>&1 \
    || { grep -E 'error|Error' "$WORK/make.log" | head -n 20 >&2; die "make failed (see $WORK/make.log)"; }

rm -rf "$OUTDIR"
mkdir -p "$OUTDIR"
cp "$WORK/ffmpeg" "$OUTDIR/ffmpeg"
echo "FFmpeg $FFMPEG_VERSION, key $KEY, built in $(( $(date +%s) - T0 )) s" > "$OUTDIR/.done"
ln -sfn "out-$KEY" "$BUILD/current"
# keep this key's tree (logs, incremental rebuilds); older trees are ~130 MB each
for d in "$BUILD"/work-*; do
    [ "$d" = "$WORK" ] || rm -rf "$d"
done
log "$(cat "$OUTDIR/.done")"
echo "$OUTDIR/ffmpeg"
