"""The planning stage: each frame's saliency map -> its AVRegionOfInterest entries.

Wraps :class:`vmaf_roi.roi.Planner` (which re-plans only when the block offsets change) and
converts its regions to the encoder's qoffset units. Keeps the digest of every frame's list
(equal digests: the same ROI was applied) and the count of non-zero regions.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .. import roi as roi_mod
from ..config import RoiConfig
from ..encoders import block_size

# libvpx-vp9's ROI delta is in q-index units (0..255, clipped to +-63 by FFmpeg's wrapper);
# one H.264-style QP step is roughly 4 q-index steps in the middle of the range.
VP9_QINDEX_PER_QP = 4
VP9_MAX_DELTA_Q = 63

Entry = tuple[int, int, int, int, int, int]  # top, bottom, left, right, qoffset num, den


def entry_array(rows: np.ndarray, encoder: str, qp_scale: int) -> np.ndarray:
    """Planner rows (top, bottom, left, right, qp), int [n, 5] -> AVRegionOfInterest entries
    (top, bottom, left, right, qoffset num, den), int32 [n, 6], in the encoder's qoffset units."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 5)
    out = np.empty((len(rows), 6), dtype=np.int32)
    out[:, :4] = rows[:, :4]
    if encoder == "libvpx-vp9":
        d = np.clip(rows[:, 4] * VP9_QINDEX_PER_QP, -VP9_MAX_DELTA_Q, VP9_MAX_DELTA_Q)
        # FFmpeg computes (int)(num/den*63): a half step away from zero survives float error
        out[:, 4] = 2 * d + np.sign(d)
        out[:, 5] = 2 * VP9_MAX_DELTA_Q
    else:
        out[:, 4] = rows[:, 4]
        out[:, 5] = qp_scale
    return out


def roi_entries(regions: list[roi_mod.Region], encoder: str) -> list[Entry]:
    """Planner regions -> AVRegionOfInterest tuples in the encoder's qoffset units."""
    if not regions:
        return []
    ent = entry_array(np.array([[r.top, r.bottom, r.left, r.right, r.qp] for r in regions]), encoder, 1)
    if encoder != "libvpx-vp9":
        ent[:, 5] = [r.qp_scale for r in regions]
    return [tuple(e) for e in ent.tolist()]  # type: ignore[misc]


def planner_params(cfg: RoiConfig, encoder: str, bit_depth: int = 8) -> roi_mod.PlannerParams:
    """The planner's parameters for ``encoder`` at ``bit_depth`` (block: the encoder's, unless set)."""
    return roi_mod.PlannerParams(
        block=int(cfg.block or block_size(encoder)), strength=cfg.strength, max_offset=cfg.max_offset,
        mode=cfg.mode, max_regions=cfg.max_regions, qp_scale=roi_mod.encoder_qp_scale(encoder, bit_depth),
        strength_width=cfg.strength_width, pool=cfg.pool)


class RoiPlan:
    """Stage: ``entries(width, height, map)`` for each frame, in encode order: the frame's
    AVRegionOfInterest entries as an int32 array [n, 6] (:func:`entry_array`; read-only, the
    same array while the list does not change, which the attacher caches on).

    A map that is the same object as the previous frame's is not planned again (the map
    schedule hands out the same array while the map is unchanged).
    """

    def __init__(self, cfg: RoiConfig, encoder: str, bit_depth: int = 8) -> None:
        self.encoder = encoder
        self.params = planner_params(cfg, encoder, bit_depth)
        self._planner: roi_mod.Planner | None = None
        self._map: np.ndarray | None = None
        self._rows: np.ndarray | None = None
        self._entries = np.empty((0, 6), dtype=np.int32)
        self._bytes = b""
        self._nonzero = 0
        self.digest = hashlib.sha256()
        self.frames = 0
        self.regions_total = 0  # non-zero regions summed over frames

    def entries(self, width: int, height: int, small: np.ndarray | roi_mod.Blend | None) -> np.ndarray:
        if small is None:
            raise ValueError("every frame of an ROI encode needs a map")
        resized = self._planner is None or (self._planner.width, self._planner.height) != (width, height)
        if resized:
            self._planner = roi_mod.Planner(width, height, self.params)
            self._rows = None
        if resized or small is not self._map:
            assert self._planner is not None
            rows = self._planner.plan_array(small)
            if rows is not self._rows:  # the planner hands back the same array while offsets stay
                self._rows = rows
                ent = entry_array(rows, self.encoder, self.params.qp_scale)
                ent.flags.writeable = False
                self._entries = ent
                # the digest covers each frame's list, its length included
                self._bytes = len(ent).to_bytes(4, "little") + ent.astype("<i4").tobytes()
                self._nonzero = int(np.count_nonzero(ent[:, 4]))
            self._map = small
        self.digest.update(self._bytes)
        self.frames += 1
        self.regions_total += self._nonzero
        return self._entries

    @property
    def mean_regions(self) -> float:
        return self.regions_total / self.frames if self.frames else 0.0
