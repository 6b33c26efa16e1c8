from __future__ import annotations

import os
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from vmaf_roi import sidedata
from vmaf_roi.sidedata import EMPTY, RoiAttacher, direct_side_data, pack, read
from conftest import make_frame as frame

MODES = pytest.mark.parametrize("direct", [True, False], ids=["direct", "filter"])


def attacher(slots: int, direct: bool) -> RoiAttacher:
    if direct and direct_side_data() is None:
        pytest.skip("direct side data is not available on this platform")
    return RoiAttacher(slots, direct=direct)


def test_direct_side_data_is_found_on_linux():
    # the fast path must not silently fall back where it is meant to work (PyAV 18 on Linux)
    if not sys.platform.startswith("linux"):
        pytest.skip("the direct path reads /proc/self/mem: Linux only")
    if os.environ.get("VMAF_ROI_SIDEDATA", "").strip().lower() == "filter":
        pytest.skip("the filter-graph path is forced by VMAF_ROI_SIDEDATA=filter")
    assert direct_side_data() is not None
    assert RoiAttacher(4).direct


def test_filter_graph_forced_by_environment(monkeypatch):
    monkeypatch.setenv("VMAF_ROI_SIDEDATA", "filter")
    assert direct_side_data() is None and not RoiAttacher(4).direct


@MODES
def test_attach_writes_exact_list_and_keeps_timing(direct):
    a = attacher(4, direct)
    entries = [(0, 16, 16, 48, -6, 51), (16, 48, 0, 64, 3, 51)]
    out = a.attach(frame(), entries)
    assert read(out) == entries + [EMPTY, EMPTY]
    assert out.pts == 5 and out.time_base == Fraction(1, 30) and out.format.name == "yuv420p"
    assert np.array_equal(out.to_ndarray(), frame().to_ndarray())
    sd = out.side_data.get("REGIONS_OF_INTEREST")  # what PyAV (and so the encoder) sees
    assert sd is not None and sd.buffer_size == 4 * sidedata.ROI_SIZE


@MODES
def test_each_frame_gets_its_own_list_and_old_roi_is_replaced(direct):
    a = attacher(4, direct)
    first = a.attach(frame(pts=1), [(0, 16, 0, 16, -3, 51)])
    assert read(first) == [(0, 16, 0, 16, -3, 51), EMPTY, EMPTY, EMPTY]
    second = a.attach(first, [(16, 32, 16, 32, 4, 51)])  # first already carries ROI: replaced
    assert read(second) == [(16, 32, 16, 32, 4, 51), EMPTY, EMPTY, EMPTY]
    third = a.attach(second, [(0, 8, 0, 8, 1, 51)] * 3)
    assert read(third) == [(0, 8, 0, 8, 1, 51)] * 3 + [EMPTY]
    other = a.attach(frame(pts=2), [])  # another frame: its own list
    assert read(other) == [EMPTY] * 4 and read(third)[0] == (0, 8, 0, 8, 1, 51)
    if not direct:  # the graph hands out new frames and leaves the given one as it was
        assert read(first) == [(0, 16, 0, 16, -3, 51), EMPTY, EMPTY, EMPTY]


def test_direct_replaces_a_list_of_another_size():
    a = attacher(8, True)
    f = a.attach(frame(), [(0, 16, 0, 16, -3, 51)] * 5)  # 6 slots
    assert len(read(f)) == 6
    assert a.attach(f, [(0, 8, 0, 8, 2, 51)]) is f
    assert read(f) == [(0, 8, 0, 8, 2, 51), EMPTY, EMPTY, EMPTY]


@MODES
def test_graph_rebuilds_on_format_change(direct):
    a = attacher(1, direct)
    a.attach(frame(), [])
    out = a.attach(frame(80, 60, "yuv444p"), [(0, 60, 0, 80, -1, 51)])
    assert (out.width, out.height, out.format.name) == (80, 60, "yuv444p")
    assert read(out) == [(0, 60, 0, 80, -1, 51)]


def _x264(frames: list[av.VideoFrame]) -> list[bytes]:
    cc = av.CodecContext.create("libx264", "w")
    cc.width, cc.height, cc.pix_fmt, cc.time_base = 96, 64, "yuv420p", Fraction(1, 30)
    cc.options = {"preset": "ultrafast", "crf": "30", "threads": "1", "aq-mode": "1"}
    out = [bytes(p) for f in frames for p in cc.encode(f)]
    return out + [bytes(p) for p in cc.encode(None)]


def test_direct_and_filter_give_the_encoder_the_same_roi():
    # same side data bytes -> the same bitstream, and the ROI does change it
    rng = np.random.default_rng(3)
    pics = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(6)]
    lists = [[(0, 32, 0, 48, -10, 51), (32, 64, 48, 96, 8, 51)], [], [(16, 48, 16, 80, -20, 51)]] * 2
    encoded = {}
    for direct in (True, False):
        a = attacher(4, direct)
        encoded[direct] = _x264([a.attach(frame(96, 64, pts=i, rgb=p), e)
                                 for i, (p, e) in enumerate(zip(pics, lists))])
    plain = _x264([frame(96, 64, pts=i, rgb=p) for i, p in enumerate(pics)])
    assert encoded[True] == encoded[False]
    assert encoded[True] != plain


def test_too_many_entries():
    with pytest.raises(ValueError):
        pack([EMPTY] * 3, 2)
