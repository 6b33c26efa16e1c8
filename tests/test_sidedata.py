from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from vmaf_roi.sidedata import EMPTY, RoiAttacher, pack, read
from conftest import make_frame as frame


def test_attach_writes_exact_list_and_keeps_timing():
    a = RoiAttacher(4)
    entries = [(0, 16, 16, 48, -6, 51), (16, 48, 0, 64, 3, 51)]
    out = a.attach(frame(), entries)
    assert read(out) == entries + [EMPTY, EMPTY]
    assert out.pts == 5 and out.time_base == Fraction(1, 30) and out.format.name == "yuv420p"
    assert np.array_equal(out.to_ndarray(), frame().to_ndarray())


def test_each_frame_gets_its_own_list_and_old_roi_is_replaced():
    a = RoiAttacher(2)
    first = a.attach(frame(pts=1), [(0, 16, 0, 16, -3, 51)])
    second = a.attach(first, [(16, 32, 16, 32, 4, 51)])  # first already carries ROI: cleared
    assert read(second) == [(16, 32, 16, 32, 4, 51), EMPTY]
    assert read(first) == [(0, 16, 0, 16, -3, 51), EMPTY]


def test_graph_rebuilds_on_format_change():
    a = RoiAttacher(1)
    a.attach(frame(), [])
    out = a.attach(frame(80, 60, "yuv444p"), [(0, 60, 0, 80, -1, 51)])
    assert (out.width, out.height, out.format.name) == (80, 60, "yuv444p")
    assert read(out) == [(0, 60, 0, 80, -1, 51)]


def test_too_many_entries():
    with pytest.raises(ValueError):
        pack([EMPTY] * 3, 2)
