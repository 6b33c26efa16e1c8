"""The encode pass's per-frame loops in C (``_planner.c``, compiled when the package is built),
loaded with ctypes: the planner (:mod:`.roi`), and the scene-cut thumbnail and the model map's
quantising (:mod:`.pipeline`). Each is None without the library, or with ``VMAF_ROI_NATIVE=0``; the
callers then use their numpy versions, which the tests hold to the same output.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

_c = ctypes


def _load() -> Any:
    if os.environ.get("VMAF_ROI_NATIVE", "").strip() == "0":
        return None
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_planner.so")
    try:
        return ctypes.CDLL(path)
    except OSError:
        return None


def _fn(lib: Any, name: str, restype: Any, argtypes: list[Any]) -> Any:
    f = getattr(lib, name, None) if lib is not None else None
    if f is not None:
        f.restype, f.argtypes = restype, argtypes
    return f


_LIB = _load()
plan_u8_blend = _fn(_LIB, "vmaf_roi_plan_u8_blend", _c.c_int,
                    [_c.c_void_p, _c.c_void_p, _c.c_double, _c.c_int, _c.c_int, _c.c_ssize_t, _c.c_ssize_t, _c.c_int,
                     _c.c_int, _c.c_int, _c.c_double, _c.c_int, _c.c_int, _c.c_int, _c.c_int, _c.c_void_p,
                     _c.c_int, _c.POINTER(_c.c_int)])
quantise = _fn(_LIB, "vmaf_roi_quantise", None, [_c.c_void_p, _c.c_ssize_t, _c.c_void_p])
thumb = _fn(_LIB, "vmaf_roi_thumb", _c.c_int,
            [_c.c_void_p, _c.c_ssize_t, _c.c_int, _c.c_int, _c.c_int, _c.c_int, _c.c_int, _c.c_void_p])
thumb_sad = _fn(_LIB, "vmaf_roi_thumb_sad", _c.c_int64, [_c.c_void_p, _c.c_void_p])
