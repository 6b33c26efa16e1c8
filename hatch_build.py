"""Build hook: compile the encode pass's C loops (src/vmaf_roi/_planner.c: the planner and the
scene-cut thumbnail) into the package.

Optional: without a C compiler (or with VMAF_ROI_NO_NATIVE=1) the package stays pure Python
and roi.py plans with numpy, as fast as numpy allows; the two give the same regions (tests).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SRC = Path("src/vmaf_roi/_planner.c")
LIB = Path("src/vmaf_roi/_planner.so")


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        root = Path(self.root)
        if os.environ.get("VMAF_ROI_NO_NATIVE") == "1":
            return
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            print("vmaf-roi: no C compiler: the planner stays numpy-only", file=sys.stderr)
            return
        out = root / LIB
        cmd = [cc, "-O2", "-shared", "-fPIC", "-std=c99", "-Wall", "-o", str(out), str(root / SRC), "-lm"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"vmaf-roi: compiling {SRC} failed, the planner stays numpy-only:\n{r.stderr}", file=sys.stderr)
            out.unlink(missing_ok=True)
            return
        build_data["artifacts"].append(str(LIB))
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
