"""roi.py against the shared planner vectors in tests/vectors/ (the C filter is checked
against the same files in tests/test_plugin.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vmaf_roi.roi import Planner, PlannerParams, plan

VECTORS = Path(__file__).resolve().parent / "vectors"
DATA = json.loads((VECTORS / "cases.json").read_text())
CASES, SEQUENCES = DATA["cases"], DATA["sequences"]
sys.path.insert(0, str(VECTORS))
from generate import read_pgm


def params_of(case: dict) -> PlannerParams:
    return PlannerParams(**case["params"])


def test_vector_set_is_substantial():
    # guards against an empty or truncated cases.json making every other test vacuous
    assert len(CASES) >= 20
    assert sum(len(c["regions"]) for c in CASES) >= 100
    assert any(c["params"]["mode"] == "lower" for c in CASES)
    assert sum(c["params"]["mode"] == "balanced" for c in CASES) >= 4
    assert any(len(c["regions"]) == 0 for c in CASES)
    assert sum(len(c["regions"]) >= 50 for c in CASES) >= 4  # cases with many regions
    assert any(0 < c["params"]["max_regions"] < len(plan(read_pgm(VECTORS / c["map"]), c["width"], c["height"],
                                                         PlannerParams(**dict(c["params"], max_regions=10**6))))
               and c["regions"] for c in CASES)  # the budget coarsened a real list
    assert len(SEQUENCES) >= 3 and all(len(s["regions"]) == s["frames"] >= 6 for s in SEQUENCES)
    names = [c["name"] for c in CASES + SEQUENCES]
    assert len(set(names)) == len(names)


def sequence_maps(seq: dict) -> list[np.ndarray]:
    stacked = read_pgm(VECTORS / seq["map"])
    return np.split(stacked, seq["frames"])


@pytest.fixture(params=["c", "numpy"])
def planner_kind(request, monkeypatch):
    """Both planners of roi.py: the C one (_planner.c, where built) and the numpy one."""
    from vmaf_roi import roi

    if request.param == "c" and not roi.native_available():
        pytest.skip("no C planner here (built without a C compiler, or VMAF_ROI_NATIVE=0)")
    if request.param == "numpy":
        monkeypatch.setattr(roi, "_NATIVE", None)
    return request.param


@pytest.mark.parametrize("seq", SEQUENCES, ids=[s["name"] for s in SEQUENCES])
def test_planner_stream_matches_sequence(seq, planner_kind):
    """Frame by frame through one Planner (re-planning only on changed offsets), as encode does."""
    planner = Planner(seq["width"], seq["height"], params_of(seq))
    got = [[list(r.as_tuple()) for r in planner.plan(m)] for m in sequence_maps(seq)]
    assert got == seq["regions"]
    assert planner.replans < seq["frames"] or len({repr(r) for r in seq["regions"]}) == seq["frames"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_roi_py_matches_vector(case, planner_kind):
    m = read_pgm(VECTORS / case["map"])
    got = [list(r.as_tuple()) for r in plan(m, case["width"], case["height"], params_of(case))]
    assert got == case["regions"]


def test_vectors_are_up_to_date():
    """The files are what generate.py makes now (run it after changing roi.py or the cases)."""
    src = Path(__file__).resolve().parents[1] / "src"
    r = subprocess.run(
        [sys.executable, str(VECTORS / "generate.py"), "--check"],
        check=False, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(src)},
    )
    assert r.returncode == 0, r.stderr


def test_halves_round_away_from_zero():
    """The halves_* cases really sit on .5: strength*(1-2s) = strength/2 exactly."""
    case = next(c for c in CASES if c["name"] == "halves_s1")
    m = read_pgm(VECTORS / case["map"]).astype(np.int64)
    assert m[0:2, 0:2].sum() == 255 and m[0:2, 4:6].sum() == 765
    # s = 0.25 -> d = +0.5 -> +1 ; s = 0.75 -> d = -0.5 -> -1
    qs = {tuple(r[:4]): r[4] for r in case["regions"]}
    assert qs[(0, 2, 0, 2)] == 1
    assert qs[(0, 2, 4, 6)] == -1


def test_vectors_detect_a_wrong_planner(monkeypatch):
    """A planner with banker's rounding (np.round) disagrees with the vectors."""
    from vmaf_roi import roi

    case = next(c for c in CASES if c["name"] == "halves_s1")
    m = read_pgm(VECTORS / case["map"])
    monkeypatch.setattr(roi, "_NATIVE", None)  # the numpy planner, whose rounding is replaced
    monkeypatch.setattr(roi, "round_half_away", np.round)
    got = [list(r.as_tuple()) for r in plan(m, case["width"], case["height"], params_of(case))]
    assert got != case["regions"]
