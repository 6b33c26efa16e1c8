#!/usr/bin/env bash
# Install vmaf-roi into .venv (if needed) and run the main job on a generated sample clip.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e .
# further arguments go to `vmaf-roi demo`, e.g. -y to replace the outputs of an earlier run
exec "$VENV/bin/vmaf-roi" demo "${1:-demo-out}" "${@:2}"
