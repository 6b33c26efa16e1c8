#!/usr/bin/env bash
# Build ffmpeg 7.1.x with the salroi filter (ffmpeg-patches/series applied).
#
#   plugin/build.sh              full-featured ffmpeg + ffprobe (the default profile)
#   plugin/build.sh --minimal    small ffmpeg with what tests/test_plugin.py needs (fast: CI)
#   plugin/build.sh --source     only fetch + unpack the pristine FFmpeg source, print its path
#   plugin/build.sh --headers    only fetch the ONNX Runtime C headers, print their directory
#   plugin/build.sh --key        print the cache key of the profile and exit
#
# The last line on stdout is the path of the ffmpeg binary.  Links in the checkout point at
# the cached build: build/bin/ffmpeg (+ build/bin/ffprobe) for the full profile,
# build/bin/ffmpeg-minimal for --minimal.
#
# Full profile: every native decoder, encoder (AAC among them), demuxer, muxer, parser, filter,
# bitstream filter and protocol, plus zlib/bzlib/lzma and libx264, libx265, libvpx, libdav1d and
# libopus (each where its development package is installed).  Minimal profile: H.264/HEVC/FFV1/
# raw/AAC, MP4/Matroska/raw/IVF, libx264/libx265/FFV1/AAC, libdav1d (where installed) and the
# filters the tests use.  Both profiles: libsvtav1 (built here, static) and h264/hevc/av1_nvenc
# (NVENC is loaded at run time: it builds without NVIDIA software, and runs only with a GPU).
#
# Sources, fetched through a private APT configuration (/etc/apt is never modified):
# - FFmpeg: Debian trixie's source package (upstream orig tarball only; Debian's patches are
#   not applied);
# - ONNX Runtime C API headers: Debian trixie's libonnxruntime-dev (headers only; nothing is
#   linked: the filter loads the onnxruntime wheel's library with dlopen at run time);
# - SVT-AV1 2.x (its ROI map API; bookworm's 1.4.1 predates it): the orig tarball of trixie's
#   svt-av1 source package with our patches (plugin/svt-av1/series: the per-superblock delta-q
#   ROI mode), built once with cmake into $CACHE/svt-av1-<version>-<key>/;
# - libaom's decoder with CONFIG_INSPECTION, for its `inspect` example only (the tests read the
#   per-superblock qindex of AV1 streams back with it): the orig tarball of trixie's aom source
#   package, built once into $CACHE/aom-inspect-<version>-<key>/ and linked as
#   build/bin/aom-inspect;
# - NVENC headers: trixie's libffmpeg-nvenc-dev (nv-codec-headers; headers only).
# The build also runs libavcodec/tests/roi_map (FATE's fate-roi-map, the ROI block maps of the
# libsvtav1 and nvenc patches) and installs it beside ffmpeg as roi_map-test.
#
# Cache: ${VMAF_ROI_FFMPEG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmaf-roi/ffmpeg}, outside
# the checkout, so that a fresh clone on the same machine reuses it.  A finished build is an
# entry <profile>-<key>/ (key: FFmpeg version, headers, SVT-AV1 build, patch series, configure
# flags, compiler), installed by one rename; the build tree of each profile is kept, so a changed
# patch recompiles only the files it touches.  Concurrent runs wait on a lock.
#
# Environment: JOBS (make -j, default nproc), VMAF_ROI_FFMPEG_CACHE, VMAF_ROI_DEBIAN_MIRROR.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${VMAF_ROI_FFMPEG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmaf-roi/ffmpeg}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
SUITE=trixie
MIRROR=${VMAF_ROI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
ORT_DEV=libonnxruntime-dev
SVT_PKG=svt-av1
SVT_PATCH_DIR=$REPO/plugin/svt-av1
AOM_PKG=aom
NV_PKG=libffmpeg-nvenc-dev

die() { echo "build.sh: error: $*" >&2; exit 1; }
log() { echo "build.sh: $*" >&2; }

PROFILE=full
ACTION=build
for a in "$@"; do
    case "$a" in
        --minimal) PROFILE=minimal ;;
        --full) PROFILE=full ;;
        --source) ACTION=source ;;
        --headers) ACTION=headers ;;
        --key) ACTION=key ;;
        -h|--help) sed -n '2,41p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$a' (usage: plugin/build.sh [--minimal] [--source|--headers|--key])" ;;
    esac
done

need_tool() { command -v "$1" >/dev/null 2>&1 || die "missing tool '$1' (apt-get install $2)"; }
have_pc() { pkg-config --exists "$1" 2>/dev/null; }

# --- configure flags --------------------------------------------------------------------------
COMMON_FLAGS=(--disable-autodetect --disable-debug --disable-doc --disable-ffplay
              --enable-gpl --enable-pthreads --enable-libsvtav1 --enable-ffnvcodec --enable-nvenc)
configure_flags() {
    if [ "$PROFILE" = full ]; then
        local f=("${COMMON_FLAGS[@]}" --enable-libx264 --enable-libx265)
        have_pc zlib && f+=(--enable-zlib)
        [ -f /usr/include/bzlib.h ] && f+=(--enable-bzlib)
        have_pc liblzma && f+=(--enable-lzma)
        have_pc vpx && f+=(--enable-libvpx)
        have_pc dav1d && f+=(--enable-libdav1d)
        have_pc opus && f+=(--enable-libopus)
        printf '%s\n' "${f[@]}"
    else
        printf '%s\n' "${COMMON_FLAGS[@]}" --disable-ffprobe --disable-network --disable-everything \
            --enable-libx264 --enable-libx265 \
            --enable-encoder=libx264,libx265,libsvtav1,h264_nvenc,hevc_nvenc,av1_nvenc,rawvideo,ffv1,wrapped_avframe,aac,pcm_s16le \
            --enable-decoder=h264,hevc,ffv1,rawvideo,wrapped_avframe,aac,pcm_s16le \
            --enable-demuxer=matroska,mov,rawvideo,image2,h264,hevc,aac,wav,ivf,obu \
            --enable-muxer=matroska,mp4,mov,h264,hevc,rawvideo,null,framecrc,framemd5,adts,wav,ivf,obu \
            --enable-parser=h264,hevc,aac,av1 \
            --enable-protocol=file,pipe \
            --enable-indev=lavfi \
            --enable-bsf=h264_mp4toannexb,hevc_mp4toannexb,extract_extradata,aac_adtstoasc \
            --enable-filter=salroi,addroi,showinfo,format,scale,null,nullsink,testsrc,testsrc2,color,setpts,settb,trim,fps,split,overlay,drawbox,aresample,anull,aformat,sine,anullsrc,sendcmd,concat,hstack,setsar \
            --enable-swscale --enable-swresample
        # AV1 decoding for the libsvtav1 tests (FFmpeg's native av1 decoder needs a hwaccel)
        have_pc dav1d && printf '%s\n' --enable-libdav1d --enable-decoder=libdav1d
    fi
}
mapfile -t CONFIGURE_FLAGS < <(configure_flags)

# --- toolchain --------------------------------------------------------------------------------
if [ "$ACTION" = build ] || [ "$ACTION" = key ]; then
    need_tool gcc gcc
    need_tool make make
    need_tool nasm nasm
    need_tool pkg-config pkg-config
    have_pc x264 || die "missing libx264 development files (apt-get install libx264-dev)"
    have_pc x265 || die "missing libx265 development files (apt-get install libx265-dev)"
fi
need_tool sha256sum coreutils
need_tool tar tar
need_tool patch patch
need_tool flock util-linux

mkdir -p "$CACHE/dl"
# lock NAME: hold $CACHE/.lock-NAME until exit (fd 9: fetching, fd 8: one profile's build tree)
lock() {
    local fd=$1 f=$CACHE/.lock-$2
    eval "exec $fd>\"\$f\""
    if ! flock -n "$fd"; then
        log "waiting for another build.sh run ($f)"
        flock "$fd"
    fi
}
lock 9 fetch

# progress WHAT DIR CMD...: run CMD (its output goes to a log file), and every
# ${VMAF_ROI_PROGRESS_EVERY:-20} s say on stderr how long it has run and, with a DIR, how many
# object files (*.o) under DIR it has written since it began: the compile steps are minutes long.
progress() {
    local what=$1 dir=$2 t0 stamp ticker rc=0
    shift 2
    t0=$(date +%s)
    stamp=$(mktemp "$CACHE/.progress.XXXXXX")
    ( trap - EXIT
      while sleep "${VMAF_ROI_PROGRESS_EVERY:-20}"; do
          if [ "$dir" = - ]; then
              log "$what: $(( $(date +%s) - t0 )) s"
          else
              log "$what: $(find "$dir" -name '*.o' -newer "$stamp" 2>/dev/null | wc -l) objects compiled," \
                  "$(( $(date +%s) - t0 )) s"
          fi
      done ) >/dev/null &
    ticker=$!
    "$@" || rc=$?
    kill "$ticker" 2>/dev/null || true
    wait "$ticker" 2>/dev/null || true
    rm -f "$stamp"
    return "$rc"
}

# --- the private APT configuration: FFmpeg source and ONNX Runtime headers ------------------
apt_setup() {
    [ -n "${APT_CONFIG:-}" ] && [ "${APT_CONFIG}" = "$CACHE/apt/apt.conf" ] && return 0
    local apt=$CACHE/apt
    mkdir -p "$apt/etc/sources.list.d" "$apt/etc/preferences.d" "$apt/lists/partial" \
             "$apt/cache/archives/partial"
    [ -r "$KEYRING" ] || die "missing $KEYRING (apt-get install debian-archive-keyring)"
    printf 'deb-src [signed-by=%s] %s %s main\ndeb [signed-by=%s arch=amd64] %s %s main\n' \
        "$KEYRING" "$MIRROR" "$SUITE" "$KEYRING" "$MIRROR" "$SUITE" > "$apt/etc/sources.list"
    cat > "$apt/apt.conf" <<EOF
Dir::Etc::SourceList "$apt/etc/sources.list";
Dir::Etc::SourceParts "$apt/etc/sources.list.d";
Dir::Etc::PreferencesParts "$apt/etc/preferences.d";
Dir::Etc::Preferences "$apt/etc/preferences";
Dir::State::Lists "$apt/lists";
Dir::State::status "/dev/null";
Dir::Cache "$apt/cache";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Sandbox::User "root";
EOF
    export APT_CONFIG=$apt/apt.conf
    need_tool apt-get apt
    need_tool dpkg-source dpkg-dev
    log "fetching the Debian $SUITE package indexes from $MIRROR"
    apt-get -q --error-on=any update >"$CACHE/apt-update.log" 2>&1 \
        || die "cannot fetch the Debian $SUITE indexes from $MIRROR (see $CACHE/apt-update.log)"
}

fetch_ffmpeg() {
    ls "$CACHE"/dl/ffmpeg_*.orig.tar.* >/dev/null 2>&1 && return 0
    apt_setup
    (cd "$CACHE/dl" && rm -f ffmpeg_* && apt-get -q source --download-only "ffmpeg/$SUITE") \
        >"$CACHE/apt-source.log" 2>&1 \
        || die "cannot download the ffmpeg source package from Debian $SUITE (see $CACHE/apt-source.log)"
}

unpack_ffmpeg() {
    local orig ver
    orig=$(ls "$CACHE"/dl/ffmpeg_*.orig.tar.* 2>/dev/null | head -n1 || true)
    [ -n "$orig" ] || die "no ffmpeg orig tarball in $CACHE/dl after apt-get source"
    ver=$(basename "$orig" | sed -E 's/^ffmpeg_([^-]+)\.orig\.tar\..*$/\1/; s/\+.*//')
    case "$ver" in
        7.1|7.1.*) ;;
        *) die "Debian $SUITE now ships FFmpeg $ver, not 7.1.x: the patch series targets 7.1" ;;
    esac
    FFMPEG_VERSION=$ver
    SRC=$CACHE/ffmpeg-$ver
    if [ ! -f "$SRC/.unpacked" ]; then
        rm -rf "$SRC" "$SRC.tmp.$$"
        mkdir -p "$SRC.tmp.$$"
        tar -xf "$orig" -C "$SRC.tmp.$$" --strip-components=1 || die "cannot unpack $orig"
        touch "$SRC.tmp.$$/.unpacked"
        mv -T "$SRC.tmp.$$" "$SRC"
    fi
}

# fetch_deb PKG LOG: the .deb of PKG from Debian $SUITE, downloaded once into $CACHE/dl, in $DEB
fetch_deb() {
    local pkg=$1 log=$CACHE/$2
    DEB=$(ls "$CACHE"/dl/"${pkg}"_*.deb 2>/dev/null | head -n1 || true)
    [ -n "$DEB" ] && return 0
    apt_setup
    (cd "$CACHE/dl" && apt-get -q download "$pkg/$SUITE") >"$log" 2>&1 \
        || die "cannot download $pkg from Debian $SUITE (see $log)"
    DEB=$(ls "$CACHE"/dl/"${pkg}"_*.deb 2>/dev/null | head -n1 || true)
    [ -n "$DEB" ] || die "no $pkg package in $CACHE/dl after apt-get download"
}

fetch_headers() {
    local deb ver
    fetch_deb "$ORT_DEV" apt-ort.log
    deb=$DEB
    ver=$(basename "$deb" | sed -E "s/^${ORT_DEV}_([^_]+)_.*$/\1/")
    ORT_INC=$CACHE/onnxruntime-headers-$ver
    if [ ! -f "$ORT_INC/onnxruntime_c_api.h" ]; then
        need_tool dpkg-deb dpkg
        rm -rf "$ORT_INC.tmp.$$"
        mkdir -p "$ORT_INC.tmp.$$/x"
        dpkg-deb -x "$deb" "$ORT_INC.tmp.$$/x" || die "cannot unpack $deb"
        [ -f "$ORT_INC.tmp.$$/x/usr/include/onnxruntime/onnxruntime_c_api.h" ] \
            || die "$deb has no usr/include/onnxruntime/onnxruntime_c_api.h"
        mv "$ORT_INC.tmp.$$/x/usr/include/onnxruntime" "$ORT_INC.tmp.$$/inc"
        rm -rf "$ORT_INC" && mv -T "$ORT_INC.tmp.$$/inc" "$ORT_INC" && rm -rf "$ORT_INC.tmp.$$"
    fi
    ORT_API=$(sed -nE 's/^#define ORT_API_VERSION ([0-9]+).*/\1/p' "$ORT_INC/onnxruntime_c_api.h")
}

# fetch_orig PKG LOG: the upstream (orig) tarball of Debian's source package PKG, fetched alone
# with apt's downloader and checked against the sha256 of the signed Sources index (Debian's
# packaging is not needed), once, into $CACHE/dl; its path in $ORIG
fetch_orig() {
    local pkg=$1 log=$CACHE/$2 line name sha
    ORIG=$(ls "$CACHE"/dl/"${pkg}"_*.orig.tar.* 2>/dev/null | grep -v '\.asc$' | head -n1 || true)
    [ -n "$ORIG" ] && return 0
    apt_setup
    line=$(apt-get -q source --print-uris "$pkg/$SUITE" 2>"$log" \
           | grep -E "^'[^']+\.orig\.tar\.[a-z0-9]+' " | head -n1 || true)
    [ -n "$line" ] || die "no $pkg source package in Debian $SUITE (see $log)"
    # 'URL' NAME SIZE SHA256:HEX
    read -r _ name _ sha <<<"$line"
    case "$sha" in SHA256:*) sha=${sha#SHA256:} ;; *) die "no sha256 for $name in the Sources index" ;; esac
    /usr/lib/apt/apt-helper download-file "$(echo "$line" | cut -d"'" -f2)" \
        "$CACHE/dl/partial-$name" "SHA256:$sha" >>"$log" 2>&1 \
        || die "cannot download $name from Debian $SUITE (see $log)"
    echo "$sha  $CACHE/dl/partial-$name" | sha256sum -c --quiet - >/dev/null 2>&1 \
        || die "$name does not match the sha256 of the Debian $SUITE index"
    mv "$CACHE/dl/partial-$name" "$CACHE/dl/$name"
    ORIG=$CACHE/dl/$name
}

# SVT-AV1 (libsvtav1, with the ROI map API of 2.x)
fetch_svt() {
    fetch_orig "$SVT_PKG" apt-svt.log
    SVT_ORIG=$ORIG
}

# libaom, for the inspect example (tests only)
fetch_aom() {
    fetch_orig "$AOM_PKG" apt-aom.log
    AOM_ORIG=$ORIG
}

# NVENC: nv-codec-headers (Debian's libffmpeg-nvenc-dev, headers + ffnvcodec.pc only; the
# NVENC library is loaded at run time by FFmpeg, so nothing NVIDIA is needed to build).
fetch_nvenc_headers() {
    local deb ver
    fetch_deb "$NV_PKG" apt-nvenc.log
    deb=$DEB
    ver=$(basename "$deb" | sed -E "s/^${NV_PKG}_([^_]+)_.*$/\1/")
    NV_DIR=$CACHE/nv-codec-headers-$ver
    if [ -f "$NV_DIR/pkgconfig/ffnvcodec.pc" ] && ! grep -qxF "prefix=$NV_DIR" "$NV_DIR/pkgconfig/ffnvcodec.pc"; then
        sed -i "s|^prefix=.*|prefix=$NV_DIR|" "$NV_DIR/pkgconfig/ffnvcodec.pc"  # a moved cache folder
    fi
    if [ ! -f "$NV_DIR/pkgconfig/ffnvcodec.pc" ]; then
        need_tool dpkg-deb dpkg
        rm -rf "$NV_DIR.tmp.$$"
        mkdir -p "$NV_DIR.tmp.$$/x" "$NV_DIR.tmp.$$/d/pkgconfig"
        dpkg-deb -x "$deb" "$NV_DIR.tmp.$$/x" || die "cannot unpack $deb"
        [ -f "$NV_DIR.tmp.$$/x/usr/include/ffnvcodec/nvEncodeAPI.h" ] \
            || die "$deb has no usr/include/ffnvcodec/nvEncodeAPI.h"
        mv "$NV_DIR.tmp.$$/x/usr/include" "$NV_DIR.tmp.$$/d/include"
        sed "s|^prefix=.*|prefix=$NV_DIR|" "$NV_DIR.tmp.$$/x/usr/share/pkgconfig/ffnvcodec.pc" \
            > "$NV_DIR.tmp.$$/d/pkgconfig/ffnvcodec.pc"
        rm -rf "$NV_DIR" && mv -T "$NV_DIR.tmp.$$/d" "$NV_DIR" && rm -rf "$NV_DIR.tmp.$$"
    fi
}

# Build SVT-AV1 once per version and flags into $CACHE/svt-av1-<version>-<key> (a static
# library + SvtAv1Enc.pc), installed by one rename.  Cold, ninja -j2 on the 2-core machine:
# 85 s wall (124 CPU-s) when idle, 168 s under load from other jobs; cached: nothing to do.
SVT_CMAKE_FLAGS=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DBUILD_APPS=OFF
                 -DBUILD_TESTING=OFF -DSVT_AV1_LTO=OFF -DREPRODUCIBLE_BUILDS=ON
                 -DCMAKE_INSTALL_LIBDIR=lib)
# The SVT-AV1 patches: plugin/svt-av1/series, applied in order with patch -p1.
SVT_PATCHES=()
svt_patches() {
    local p
    [ -f "$SVT_PATCH_DIR/series" ] || die "no SVT-AV1 patch series at $SVT_PATCH_DIR/series"
    while read -r p; do
        case "$p" in ""|\#*) continue ;; esac
        [ -f "$SVT_PATCH_DIR/$p" ] || die "patch '$p' listed in $SVT_PATCH_DIR/series does not exist"
        SVT_PATCHES+=("$SVT_PATCH_DIR/$p")
    done < "$SVT_PATCH_DIR/series"
}
svt_prefix() {
    local ver key
    svt_patches
    ver=$(basename "$SVT_ORIG" | sed -E "s/^${SVT_PKG}_([^-]+)\.orig\.tar\..*$/\1/")
    key=$( { basename "$SVT_ORIG"; printf '%s\n' "${SVT_CMAKE_FLAGS[@]}"; gcc -dumpfullversion 2>/dev/null
             for p in "${SVT_PATCHES[@]}"; do echo "patch: $(sha256sum < "$p" | cut -c1-64)"; done; } \
           | sha256sum | cut -c1-12)
    SVT_VERSION=$ver
    SVT_PREFIX=$CACHE/svt-av1-$ver-$key
}
build_svt() {
    local pc=$SVT_PREFIX/lib/pkgconfig/SvtAv1Enc.pc
    # a cache folder moved or copied from elsewhere: the static library is still good, its .pc
    # still names the old place
    if [ -f "$pc" ] && ! grep -qxF "prefix=$SVT_PREFIX" "$pc"; then
        sed -i "s|^prefix=.*|prefix=$SVT_PREFIX|" "$pc"
    fi
    [ -f "$pc" ] && return 0
    lock 7 svt-av1
    if [ ! -f "$SVT_PREFIX/lib/pkgconfig/SvtAv1Enc.pc" ]; then
        need_tool cmake cmake
        local t0 gen=()
        t0=$(date +%s)
        command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
        SVT_TMP=$(mktemp -d "$CACHE/svt-build.XXXXXX")
        # (SVT-AV1 writes its libraries into the source tree: unpack a fresh one each time)
        trap 'rm -rf "$SVT_TMP"' EXIT
        mkdir -p "$SVT_TMP/src"
        tar -xf "$SVT_ORIG" -C "$SVT_TMP/src" --strip-components=1 || die "cannot unpack $SVT_ORIG"
        for p in "${SVT_PATCHES[@]}"; do
            patch -d "$SVT_TMP/src" -p1 -s --forward --no-backup-if-mismatch < "$p" \
                || die "patch $(basename "$p") does not apply to SVT-AV1 $SVT_VERSION"
        done
        log "building SVT-AV1 $SVT_VERSION (log: $CACHE/svt-av1-build.log)"
        svt_build() {
            { cmake -S "$SVT_TMP/src" -B "$SVT_TMP/build" "${gen[@]}" "${SVT_CMAKE_FLAGS[@]}" \
                    -DCMAKE_INSTALL_PREFIX="$SVT_PREFIX" \
              && cmake --build "$SVT_TMP/build" -j "$JOBS" \
              && DESTDIR="$SVT_TMP/inst" cmake --install "$SVT_TMP/build"; } >"$CACHE/svt-av1-build.log" 2>&1
        }
        progress "SVT-AV1" "$SVT_TMP/build" svt_build \
            || { tail -n 20 "$CACHE/svt-av1-build.log" >&2; die "SVT-AV1 build failed (see $CACHE/svt-av1-build.log)"; }
        [ -f "$SVT_TMP/inst$SVT_PREFIX/lib/pkgconfig/SvtAv1Enc.pc" ] || die "SVT-AV1 installed no SvtAv1Enc.pc"
        # a static library: its own dependencies (Libs.private: -lpthread -lm) go on the link
        # line of everything that uses it, FFmpeg's configure test included
        sed -i -E 's/^(Libs:.*)$/\1 -lpthread -lm/' "$SVT_TMP/inst$SVT_PREFIX/lib/pkgconfig/SvtAv1Enc.pc"
        { echo "SVT-AV1 $SVT_VERSION built in $(( $(date +%s) - t0 )) s with -j$JOBS: ${SVT_CMAKE_FLAGS[*]}"
          for p in "${SVT_PATCHES[@]}"; do echo "patch: $(basename "$p") $(sha256sum < "$p" | cut -c1-64)"; done
        } > "$SVT_TMP/inst$SVT_PREFIX/BUILDINFO"
        rm -rf "$SVT_PREFIX"
        mv -T "$SVT_TMP/inst$SVT_PREFIX" "$SVT_PREFIX"
        rm -rf "$SVT_TMP"
        trap - EXIT
        log "$(cat "$SVT_PREFIX/BUILDINFO")"
        # older SVT-AV1 builds go
        for d in "$CACHE"/svt-av1-[0-9]*/; do
            [ "${d%/}" = "$SVT_PREFIX" ] || rm -rf "$d"
        done
    fi
    flock -u 7
}

# libaom's inspect example (decoder only, CONFIG_INSPECTION, generic C; -j2 on the 2-core
# machine: 23 s idle, 66 s under load from other jobs) into
# $CACHE/aom-inspect-<version>-<key>/bin/inspect, installed by one rename
AOM_CMAKE_FLAGS=(-DCMAKE_BUILD_TYPE=Release -DCONFIG_AV1_ENCODER=0 -DCONFIG_INSPECTION=1
                 -DAOM_TARGET_CPU=generic -DCONFIG_AV1_HIGHBITDEPTH=0 -DENABLE_TESTS=0
                 -DENABLE_DOCS=0 -DENABLE_TOOLS=0 -DENABLE_EXAMPLES=1 -DENABLE_TESTDATA=0)
build_aom_inspect() {
    local ver key t0 gen=()
    ver=$(basename "$AOM_ORIG" | sed -E "s/^${AOM_PKG}_([^-]+)\.orig\.tar\..*$/\1/")
    key=$( { basename "$AOM_ORIG"; printf '%s\n' "${AOM_CMAKE_FLAGS[@]}"; gcc -dumpfullversion 2>/dev/null; } \
           | sha256sum | cut -c1-12)
    AOM_PREFIX=$CACHE/aom-inspect-$ver-$key
    if [ ! -x "$AOM_PREFIX/bin/inspect" ]; then
        lock 6 aom
        if [ ! -x "$AOM_PREFIX/bin/inspect" ]; then
            need_tool cmake cmake
            t0=$(date +%s)
            command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
            AOM_TMP=$(mktemp -d "$CACHE/aom-build.XXXXXX")
            trap 'rm -rf "$AOM_TMP"' EXIT
            mkdir -p "$AOM_TMP/src" "$AOM_TMP/out/bin"
            tar -xf "$AOM_ORIG" -C "$AOM_TMP/src" --strip-components=1 || die "cannot unpack $AOM_ORIG"
            log "building libaom $ver's inspect (log: $CACHE/aom-build.log)"
            aom_build() {
                { cmake -S "$AOM_TMP/src" -B "$AOM_TMP/build" "${gen[@]}" "${AOM_CMAKE_FLAGS[@]}" \
                  && cmake --build "$AOM_TMP/build" -j "$JOBS" --target inspect; } >"$CACHE/aom-build.log" 2>&1
            }
            progress "libaom inspect" "$AOM_TMP/build" aom_build \
                || { tail -n 20 "$CACHE/aom-build.log" >&2; die "libaom inspect build failed (see $CACHE/aom-build.log)"; }
            cp "$AOM_TMP/build/inspect" "$AOM_TMP/out/bin/inspect"
            echo "libaom $ver inspect built in $(( $(date +%s) - t0 )) s with -j$JOBS: ${AOM_CMAKE_FLAGS[*]}" \
                > "$AOM_TMP/out/BUILDINFO"
            rm -rf "$AOM_PREFIX"
            mv -T "$AOM_TMP/out" "$AOM_PREFIX"
            rm -rf "$AOM_TMP"
            trap - EXIT
            log "$(cat "$AOM_PREFIX/BUILDINFO")"
            for d in "$CACHE"/aom-inspect-[0-9]*/; do
                [ "${d%/}" = "$AOM_PREFIX" ] || rm -rf "$d"
            done
        fi
        flock -u 6
    fi
    mkdir -p "$REPO/build/bin"
    ln -sfn "$AOM_PREFIX/bin/inspect" "$REPO/build/bin/aom-inspect.tmp.$$" \
        && mv -T "$REPO/build/bin/aom-inspect.tmp.$$" "$REPO/build/bin/aom-inspect"
}

fetch_ffmpeg
unpack_ffmpeg
if [ "$ACTION" = source ]; then echo "$SRC"; exit 0; fi
fetch_headers
if [ "$ACTION" = headers ]; then echo "$ORT_INC"; exit 0; fi
fetch_svt
fetch_nvenc_headers
[ "$ACTION" = build ] && fetch_aom
flock -u 9
svt_prefix
[ "$ACTION" = build ] && build_svt
[ "$ACTION" = build ] && build_aom_inspect
export PKG_CONFIG_PATH="$SVT_PREFIX/lib/pkgconfig:$NV_DIR/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

# --- cache key --------------------------------------------------------------------------------
SERIES_DIR=$REPO/ffmpeg-patches
[ -f "$SERIES_DIR/series" ] || die "no patch series at $SERIES_DIR/series"
PATCHES=()
while read -r p; do
    case "$p" in ""|\#*) continue ;; esac
    [ -f "$SERIES_DIR/$p" ] || die "patch '$p' listed in $SERIES_DIR/series does not exist"
    PATCHES+=("$SERIES_DIR/$p")
done < "$SERIES_DIR/series"
CC_VERSION=$(gcc -dumpfullversion 2>/dev/null || echo none)
tree_input() {  # what the build tree depends on (configure's view)
    echo "ffmpeg: $FFMPEG_VERSION"
    echo "headers: $(basename "$ORT_INC")"
    echo "svt-av1: $(basename "$SVT_PREFIX")"
    echo "nvenc headers: $(basename "$NV_DIR")"
    echo "cc: $CC_VERSION"
    printf 'configure: %s\n' "${CONFIGURE_FLAGS[@]}"
}
TREE_KEY=$(tree_input | sha256sum | cut -c1-12)
KEY=$( { tree_input; for p in "${PATCHES[@]}"; do echo "patch: $(sha256sum < "$p" | cut -c1-64)"; done; } \
       | sha256sum | cut -c1-16)
ENTRY=$CACHE/$PROFILE-$KEY
if [ "$ACTION" = key ]; then echo "$PROFILE-$KEY"; exit 0; fi
lock 8 "$PROFILE"

BIN=$REPO/build/bin
link_into_checkout() {
    mkdir -p "$BIN"
    local names=(ffmpeg ffprobe)
    [ "$PROFILE" = minimal ] && names=(ffmpeg)
    for n in "${names[@]}"; do
        local target=$ENTRY/bin/$n link=$BIN/$n
        [ "$PROFILE" = minimal ] && link=$BIN/$n-minimal
        [ -x "$target" ] || continue
        ln -sfn "$target" "$link.tmp.$$" && mv -T "$link.tmp.$$" "$link"
    done
}

if [ -x "$ENTRY/bin/ffmpeg" ] && [ -f "$ENTRY/BUILDINFO" ]; then
    log "cached: $(head -n1 "$ENTRY/BUILDINFO")"
    link_into_checkout
    echo "$ENTRY/bin/ffmpeg"
    exit 0
fi

# --- build tree: pristine source + the series, synced file by file ---------------------------
T0=$(date +%s)
WORK=$CACHE/work-$PROFILE-$TREE_KEY
if [ ! -f "$WORK/.copied" ]; then
    log "new build tree $WORK"
    trap 'rm -rf "$WORK.tmp.$$"' EXIT
    rm -rf "$WORK" "$WORK.tmp.$$"
    cp -a "$SRC" "$WORK.tmp.$$"
    touch "$WORK.tmp.$$/.copied"
    mv -T "$WORK.tmp.$$" "$WORK"
fi
# Apply the series to pristine copies of the files it touches; copy into the tree only what
# differs (make then rebuilds just that), and restore files an earlier series touched.
STAGE=$(mktemp -d "$CACHE/stage.XXXXXX")
TMP_ENTRY=
# an interrupted run leaves no half-made entry or scratch directory (the build tree is kept:
# the next run continues it)
trap 'rm -rf "$STAGE" ${TMP_ENTRY:+"$TMP_ENTRY"} "$WORK.tmp.$$"' EXIT
mapfile -t TOUCHED < <(sed -nE 's|^\+\+\+ b/(.*)$|\1|p' "${PATCHES[@]}" | sort -u)
for f in "${TOUCHED[@]}"; do
    if [ -f "$SRC/$f" ]; then mkdir -p "$STAGE/$(dirname "$f")" && cp -p "$SRC/$f" "$STAGE/$f"; fi
done
for p in "${PATCHES[@]}"; do
    patch -d "$STAGE" -p1 -s --forward --no-backup-if-mismatch < "$p" \
        || die "patch $(basename "$p") does not apply to FFmpeg $FFMPEG_VERSION"
done
if [ -f "$WORK/.vmaf-roi-touched" ]; then
    while read -r f; do
        printf '%s\n' "${TOUCHED[@]}" | grep -qxF "$f" && continue
        if [ -f "$SRC/$f" ]; then cp -p "$SRC/$f" "$WORK/$f"; else rm -f "$WORK/$f"; fi
    done < "$WORK/.vmaf-roi-touched"
fi
changed=0
for f in "${TOUCHED[@]}"; do
    if ! cmp -s "$STAGE/$f" "$WORK/$f"; then
        mkdir -p "$WORK/$(dirname "$f")"
        cp "$STAGE/$f" "$WORK/$f"
        changed=$((changed + 1))
    fi
done
printf '%s\n' "${TOUCHED[@]}" > "$WORK/.vmaf-roi-touched"
log "FFmpeg $FFMPEG_VERSION + ${#PATCHES[@]} patches ($changed files changed in the build tree)"

# the dependencies' full paths too: a tree configured from another cache folder points there
CONF_STAMP=$( { printf '%s\n' "${CONFIGURE_FLAGS[@]}" "$ORT_INC" "$SVT_PREFIX" "$NV_DIR"
               sha256sum "$WORK/configure" "$WORK/libavfilter/allfilters.c" | cut -c1-64; } | sha256sum | cut -c1-64)
if [ "$(cat "$WORK/.configured" 2>/dev/null)" != "$CONF_STAMP" ]; then
    log "configuring ($PROFILE profile; log: $WORK/configure.log)"
    ff_configure() { (cd "$WORK" && ./configure "${CONFIGURE_FLAGS[@]}" --extra-cflags="-I$ORT_INC") \
                         >"$WORK/configure.log" 2>&1; }
    progress "configure" - ff_configure \
        || { tail -n 20 "$WORK/configure.log" >&2; die "configure failed (see $WORK/configure.log)"; }
    echo "$CONF_STAMP" > "$WORK/.configured"
fi
grep -q '^CONFIG_SALROI_FILTER=yes' "$WORK/ffbuild/config.mak" \
    || die "configure did not enable the salroi filter: is the patch series applied?"
grep -q '^CONFIG_AAC_ENCODER=yes' "$WORK/ffbuild/config.mak" || die "configure did not enable the aac encoder"
for c in LIBSVTAV1 H264_NVENC HEVC_NVENC AV1_NVENC; do
    grep -q "^CONFIG_${c}_ENCODER=yes" "$WORK/ffbuild/config.mak" \
        || die "configure did not enable the $(echo "$c" | tr A-Z a-z) encoder (see $WORK/configure.log)"
done

TARGETS=(ffmpeg)
[ "$PROFILE" = full ] && TARGETS+=(ffprobe)
log "building ${TARGETS[*]} with make -j$JOBS (log: $WORK/make.log)"
ff_make() { (cd "$WORK" && make -j"$JOBS" "$@") >>"$WORK/make.log" 2>&1; }
: >"$WORK/make.log"
progress "make ${TARGETS[*]}" "$WORK" ff_make "${TARGETS[@]}" \
    || { grep -E 'error|Error' "$WORK/make.log" | head -n 20 >&2; die "make failed (see $WORK/make.log)"; }
# The unit test of the ROI block maps (libsvtav1, nvenc): FATE's fate-roi-map, run directly.
progress "make roi_map" "$WORK" ff_make libavcodec/tests/roi_map \
    || { grep -E 'error|Error' "$WORK/make.log" | head -n 20 >&2; die "make libavcodec/tests/roi_map failed (see $WORK/make.log)"; }
"$WORK/libavcodec/tests/roi_map" >&2 || die "libavcodec/tests/roi_map failed: the ROI block maps are wrong"

# --- install the cache entry atomically -------------------------------------------------------
TMP_ENTRY=$(mktemp -d "$CACHE/.entry.XXXXXX")
mkdir -p "$TMP_ENTRY/bin"
for t in "${TARGETS[@]}"; do cp "$WORK/$t" "$TMP_ENTRY/bin/$t"; done
cp "$WORK/libavcodec/tests/roi_map" "$TMP_ENTRY/bin/roi_map-test"
{
    echo "FFmpeg $FFMPEG_VERSION, $PROFILE profile, key $KEY, built in $(( $(date +%s) - T0 )) s with make -j$JOBS ($changed files changed)"
    echo "ONNX Runtime C API headers: $(basename "$ORT_INC") (ORT_API_VERSION $ORT_API)"
    echo "SVT-AV1: $(head -n1 "$SVT_PREFIX/BUILDINFO")"
    sed -n 's/^patch: /SVT-AV1 patch: /p' "$SVT_PREFIX/BUILDINFO"
    echo "NVENC headers: $(basename "$NV_DIR")"
    printf 'configure: %s\n' "${CONFIGURE_FLAGS[*]}"
    for p in "${PATCHES[@]}"; do echo "patch: $(basename "$p") $(sha256sum < "$p" | cut -c1-64)"; done
} > "$TMP_ENTRY/BUILDINFO"
chmod 755 "$TMP_ENTRY"
rm -rf "$ENTRY"
mv -T "$TMP_ENTRY" "$ENTRY"
TMP_ENTRY=
# older entries of this profile: keep the newest three; build trees of other flags go
ls -1dt "$CACHE/$PROFILE"-*/ 2>/dev/null | tail -n +4 | xargs -r rm -rf
for d in "$CACHE/work-$PROFILE"-*; do
    [ "$d" = "$WORK" ] || rm -rf "$d"
done
link_into_checkout
log "$(head -n1 "$ENTRY/BUILDINFO")"
echo "$ENTRY/bin/ffmpeg"
