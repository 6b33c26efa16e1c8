#!/usr/bin/env bash
# Install vmaf-roi with its test extras into .venv (if needed) and run the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k roi -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
# Real model weights for the tests, verified, in a cache inside the checkout.
export VMAF_ROI_MODEL_DIR=${VMAF_ROI_MODEL_DIR:-$PWD/build/models}
"$VENV/bin/vmaf-roi" models fetch u2netp
set +e
"$VENV/bin/python" -m pytest -q -rs "$@"
rc=$?
set -e
# pytest exits 5 when no test was collected: that is a failure here, not a pass.
exit $rc
