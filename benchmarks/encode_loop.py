"""N encodes of one clip in one process, for timing whole processes against each other.

    python benchmarks/encode_loop.py CLIP MODE N [key=value ...]

MODE: ``plain`` (the plain encode), ``roi`` (the default ROI encode, real model), ``replay`` (the
ROI encode with the zero-cost map source of bench_encode.py: the maps a ``record`` run saved),
``replay-noinput`` (the same without the model input's resize either: what the pipeline costs
around a map source that needs no input), ``record`` (one ROI encode whose maps are saved next
to the build folder for ``replay``). Extra
arguments are config overrides. With N = 0 the process only starts up (imports, model load): its
time is the fixed cost to subtract from a timed pair. Time two such commands alternately with any
whole-process timer (``/usr/bin/time -f '%U %S %e'``, paired A B A B ...), several pairs, medians.
"""

from __future__ import annotations

import pickle
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_encode as B  # noqa: E402

from vmaf_roi import config  # noqa: E402
from vmaf_roi.encode import encode  # noqa: E402
from vmaf_roi.saliency import SaliencyModel  # noqa: E402

MODES = ("plain", "roi", "replay", "replay-noinput", "record")


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] not in MODES:
        print(__doc__, file=sys.stderr)
        return 2
    path, mode, n, extra = Path(argv[0]), argv[1], int(argv[2]), argv[3:]
    cfg = config.load(None, ["encoder=libx264", "preset=medium", *extra])
    sal = cfg["saliency"]
    real = SaliencyModel(sal["model"], device=sal["device"], spin=False) if mode != "plain" else None  # as encode()
    saved = Path(__file__).resolve().parent.parent / "build" / "encode-loop" / f"{path.name}.{'_'.join(extra)}.maps"
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out.mp4"
        if mode == "record":
            rec = B.Recorder(real)
            encode(path, out, cfg, model=rec)
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_bytes(pickle.dumps(rec.maps))
            return 0
        maps = pickle.loads(saved.read_bytes()) if mode.startswith("replay") else None
        for _ in range(n):
            model = B.ReplaySource(real, maps, resize=mode == "replay") if maps is not None else real
            encode(path, out, cfg, plain=mode == "plain", model=model)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
