"""vmaf-roi: saliency-driven region-of-interest video encoding.

Stages, each a module: decode (PyAV + FFmpeg filters) -> saliency (ONNX Runtime) ->
roi (planner) -> encode -> score. The CLI (`vmaf-roi`) is a thin layer over them.
"""

__version__ = "0.1.0"
