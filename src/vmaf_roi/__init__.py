"""vmaf-roi: saliency-driven region-of-interest video encoding.

Stages, each a module: decode (PyAV + FFmpeg filters) -> saliency (ONNX Runtime) ->
roi (planner) -> encode -> score. The CLI (`vmaf-roi`) is a thin layer over them.
"""

import os

__version__ = "0.1.0"

# ONNX Runtime 1.29 and newer, on Linux and macOS, sends usage telemetry to Microsoft and keeps
# a device id and an event cache under ~/.cache/Microsoft unless ORT_DISABLE_TELEMETRY=1 is set
# before it initialises. Set here, before anything imports it, for this process and the ffmpeg it
# runs (whose salroi filter does the same), unless the user set the variable: 0 keeps ONNX
# Runtime's default.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
