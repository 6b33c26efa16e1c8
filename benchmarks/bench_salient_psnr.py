"""PSNR-Y inside and outside the region the default maps mark salient, ROI against plain at the
same settings: the maps applied (the encode result's track, upscaled to the frame) at or above
half their frame's maximum are "inside".

Usage: python benchmarks/bench_salient_psnr.py CLIP CRF [--set KEY=VALUE ...]
       (default encoder libsvtav1 preset 8; e.g. --set encoder=libx264 --set preset=medium)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import av
import numpy as np

from vmaf_roi import config
from vmaf_roi.analysis import masked_psnr
from vmaf_roi.encode import SaliencyTrack, encode
from vmaf_roi.encoders import needs_patch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip", type=Path)
    ap.add_argument("crf")
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    cfg = config.load(None, ["encoder=libsvtav1", "preset=8", f"rate_control.value={a.crf}", *a.set])
    backend = "ffmpeg" if needs_patch(cfg["encoder"]) else "auto"  # plain in the same build as ROI
    with tempfile.TemporaryDirectory() as d:
        roi_path, plain_path = Path(d) / "roi.mkv", Path(d) / "plain.mkv"
        track = SaliencyTrack()
        roi = encode(a.clip, roi_path, cfg, track=track)
        plain = encode(a.clip, plain_path, cfg, plain=True, backend=backend)
        with av.open(str(a.clip)) as c:
            cc = c.streams.video[0].codec_context
            w, h = cc.width, cc.height
        masks = []
        for i in range(roi.frames):
            big = av.VideoFrame.from_ndarray(track.maps[i], format="gray").reformat(w, h).to_ndarray()
            masks.append(big >= 0.5 * max(1, int(big.max())))
        m = np.array(masks)
        r_in, r_out = masked_psnr(a.clip, roi_path, m)
        p_in, p_out = masked_psnr(a.clip, plain_path, m)
    print(f"{a.clip.name} crf {a.crf} {' '.join(a.set)}: salient {m.mean():.1%} of pixels; inside "
          f"{r_in - p_in:+.2f} dB, outside {r_out - p_out:+.2f} dB, video bytes {roi.video_bytes / plain.video_bytes - 1:+.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
