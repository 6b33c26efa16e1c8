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


def roi_entries(regions: list[roi_mod.Region], encoder: str) -> list[Entry]:
    """Planner regions -> AVRegionOfInterest tuples in the encoder's qoffset units."""
    if encoder == "libvpx-vp9":
        out = []
        for r in regions:
            d = int(max(-VP9_MAX_DELTA_Q, min(VP9_MAX_DELTA_Q, r.qp * VP9_QINDEX_PER_QP)))
            # FFmpeg computes (int)(num/den*63): a half step away from zero survives float error
            num = 2 * d + (1 if d > 0 else -1 if d < 0 else 0)
            out.append((r.top, r.bottom, r.left, r.right, num, 2 * VP9_MAX_DELTA_Q))
        return out
    return [r.as_tuple() for r in regions]


def planner_params(cfg: RoiConfig, encoder: str, bit_depth: int = 8) -> roi_mod.PlannerParams:
    """The planner's parameters for ``encoder`` at ``bit_depth`` (block: the encoder's, unless set)."""
    return roi_mod.PlannerParams(
        block=int(cfg.block or block_size(encoder)), strength=cfg.strength, max_offset=cfg.max_offset,
        mode=cfg.mode, max_regions=cfg.max_regions, qp_scale=roi_mod.encoder_qp_scale(encoder, bit_depth))


class RoiPlan:
    """Stage: ``entries(width, height, map)`` for each frame, in encode order.

    A map that is the same object as the previous frame's is not planned again (the map
    schedule hands out the same array while the map is unchanged).
    """

    def __init__(self, cfg: RoiConfig, encoder: str, bit_depth: int = 8) -> None:
        self.encoder = encoder
        self.params = planner_params(cfg, encoder, bit_depth)
        self._planner: roi_mod.Planner | None = None
        self._map: np.ndarray | None = None
        self._regions: list[roi_mod.Region] | None = None
        self._entries: list[Entry] = []
        self._repr = b""
        self._nonzero = 0
        self.digest = hashlib.sha256()
        self.frames = 0
        self.regions_total = 0  # non-zero regions summed over frames

    def entries(self, width: int, height: int, small: np.ndarray | None) -> list[Entry]:
        if small is None:
            raise ValueError("every frame of an ROI encode needs a map")
        resized = self._planner is None or (self._planner.width, self._planner.height) != (width, height)
        if resized:
            self._planner = roi_mod.Planner(width, height, self.params)
            self._regions = None
        if resized or small is not self._map:
            assert self._planner is not None
            regions = self._planner.plan(small)
            if regions is not self._regions:  # the planner hands back the same list while offsets stay
                self._regions = regions
                self._entries = roi_entries(regions, self.encoder)
                self._repr = repr(self._entries).encode()
                self._nonzero = sum(1 for e in self._entries if e[4] != 0)
            self._map = small
        self.digest.update(self._repr)
        self.frames += 1
        self.regions_total += self._nonzero
        return self._entries

    @property
    def mean_regions(self) -> float:
        return self.regions_total / self.frames if self.frames else 0.0
