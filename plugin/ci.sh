#!/usr/bin/env bash
# CI entry point for the salroi FFmpeg filter:
#   1. install the apt build dependencies that are missing (Debian/Ubuntu, as root or via sudo);
#      the optional codec libraries (libvpx, libdav1d, libopus) only where the distribution has
#      them,
#   2. check that ffmpeg-patches/ carries plugin/ (plugin/check_drift.py),
#   3. build (or reuse the cached) patched ffmpeg with plugin/build.sh; arguments go to it
#      (e.g. --minimal).
# Prints the ffmpeg path as its last stdout line, e.g.
#   export VMAF_ROI_SALROI_FFMPEG=$(plugin/ci.sh --minimal | tail -n1)
# and exits non-zero on any failure.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PKGS=(gcc make nasm pkg-config cmake libx264-dev libx265-dev patch xz-utils dpkg-dev
      debian-archive-keyring valgrind util-linux)
OPTIONAL=(ninja-build libvpx-dev libdav1d-dev libopus-dev zlib1g-dev libbz2-dev liblzma-dev)

installed() { dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed$'; }
missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
for p in "${OPTIONAL[@]}"; do
    installed "$p" || { apt-cache show "$p" >/dev/null 2>&1 && missing+=("$p"); } || true
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "ci.sh: installing ${missing[*]}" >&2
    SUDO=
    [ "$(id -u)" = 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    { $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; } >&2 \
        || { echo "ci.sh: error: could not install ${missing[*]}" >&2; exit 1; }
fi

PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || { echo "ci.sh: error: missing $PYTHON (set PYTHON=...)" >&2; exit 1; }
"$PYTHON" "$REPO/plugin/check_drift.py" >&2
"$REPO/plugin/build.sh" "$@"
