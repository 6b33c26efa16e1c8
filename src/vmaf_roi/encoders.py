"""Which encoders honour ROI side data: the one list every check reads.

An ROI encode hands the encoder ``AV_FRAME_DATA_REGIONS_OF_INTEREST`` frame side data. Whether
anything happens depends on the encoder's FFmpeg wrapper. In FFmpeg 8.1 (``git grep
REGIONS_OF_INTEREST libavcodec`` on release/8.1) only these wrappers read it: ``libx264.c``,
``libx265.c``, ``libvpxenc.c``, ``qsvenc.c``, ``vaapi_encode.c`` and ``d3d12va_encode.c``.
Every other encoder drops the side data without a word, so an "ROI" encode with it would be a
plain encode: those are refused unless ``--plain``.

Each entry names the FFmpeg 8.1 source that shows its behaviour, and the conditions under which
the wrapper applies ROI (checked by :func:`vmaf_roi.encode.encoder_options`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class RoiSupport:
    name: str
    honours: bool  # FFmpeg's wrapper reads the ROI side data
    block: int = 16  # the encoder's ROI block size in pixels (the planner's default grid)
    source: str = ""  # the FFmpeg 8.1 source that shows it
    conditions: str = ""  # when the wrapper applies ROI
    usable: bool = True  # vmaf-roi drives it (tested here); False: refused with `reason`
    reason: str = ""  # why an ROI encode with it is refused (or, with `patch`, needs the patch)
    # Honoured only by vmaf-roi's patch of the wrapper (ffmpeg-patches/): the ROI encode runs in
    # the patched ffmpeg. `patch` is the text `ffmpeg -h encoder=NAME` shows in a patched build,
    # `patch_options` the encoder options the patched wrapper needs for ROI.
    patch: str = ""
    patch_options: tuple[tuple[str, str], ...] = ()
    tested: bool = True  # False: never run here (no GPU); the docs and a note say so


def _nvenc(name: str, block: int, grid: str) -> RoiSupport:
    """An NVENC encoder: ROI only through ffmpeg-patches/0005 (QP delta map), never run here."""
    return RoiSupport(name, True, block, "libavcodec/nvenc.c: no REGIONS_OF_INTEREST code in FFmpeg 8.1; "
                      "ffmpeg-patches/0005 adds a QP delta map (NV_ENC_QP_MAP_DELTA)",
                      f"vmaf-roi's patched ffmpeg with -roi 1; {grid}",
                      reason="FFmpeg's own nvenc.c ignores ROI side data",
                      patch="Honour region of interest side data with a QP delta map",
                      patch_options=(("roi", "1"),), tested=False)


ENCODERS: dict[str, RoiSupport] = {e.name: e for e in (
    RoiSupport("libx264", True, 16, "libavcodec/libx264.c: setup_roi(), called from X264_frame()",
               "adaptive quantisation on (aq-mode > 0; constant-QP mode turns it off); skipped on interlaced "
               "frames; qoffset x (51 + 6 x (bit depth - 8)) QP"),
    RoiSupport("libx265", True, 16, "libavcodec/libx265.c: libx265_encode_set_roi(), called from libx265_encode_frame()",
               "adaptive quantisation on (aq-mode > 0); 16x16 blocks with qg-size 16 (8x8 with qg-size 8)"),
    RoiSupport("libvpx-vp9", True, 8, "libavcodec/libvpxenc.c: vp9_encode_set_roi() and set_roi_map()",
               "deadline=realtime, cpu-used >= 5, aq-mode=0, libvpx >= 1.8.1; 8 segments, delta-q clipped to +-63"),
    RoiSupport("libvpx", True, 16, "libavcodec/libvpxenc.c: vp8_encode_set_roi() and set_roi_map()",
               "at most 4 segments (3 distinct non-zero offsets)", usable=False,
               reason="FFmpeg's VP8 wrapper takes at most 3 distinct offsets per frame and vmaf-roi's planner does "
                      "not reduce its regions to that; use libvpx-vp9"),
    RoiSupport("h264_qsv", True, 16, "libavcodec/qsvenc.c: set_roi_encode_ctrl() (mfxExtEncoderROI)",
               "H.264 on 16x16 macroblocks", usable=False,
               reason="FFmpeg's QSV wrapper reads ROI, but vmaf-roi has not been tested with it (needs an Intel GPU)"),
    RoiSupport("hevc_qsv", True, 32, "libavcodec/qsvenc.c: set_roi_encode_ctrl() (mfxExtEncoderROI)",
               "HEVC on 32x32 blocks", usable=False,
               reason="FFmpeg's QSV wrapper reads ROI, but vmaf-roi has not been tested with it (needs an Intel GPU)"),
    RoiSupport("h264_vaapi", True, 16, "libavcodec/vaapi_encode.c: VAEncMiscParameterBufferROI when ctx->roi_allowed",
               "only where the VA driver supports ROI", usable=False,
               reason="FFmpeg's VAAPI wrapper reads ROI only where the driver does, and needs hardware frames, "
                      "which vmaf-roi does not set up"),
    RoiSupport("hevc_vaapi", True, 16, "libavcodec/vaapi_encode.c: VAEncMiscParameterBufferROI when ctx->roi_allowed",
               "only where the VA driver supports ROI", usable=False,
               reason="FFmpeg's VAAPI wrapper reads ROI only where the driver does, and needs hardware frames, "
                      "which vmaf-roi does not set up"),
    # Wrappers with no ROI code in FFmpeg 8.1: the side data is dropped.
    # Wrappers FFmpeg 8.1 leaves without ROI code, honoured through vmaf-roi's patches
    # (ffmpeg-patches/, against FFmpeg 7.1): the encode runs in the patched ffmpeg.
    RoiSupport("libsvtav1", True, 64, "libavcodec/libsvtav1.c: no REGIONS_OF_INTEREST code in FFmpeg 8.1 "
               "(measured: byte-identical output); ffmpeg-patches/0004 adds an SVT-AV1 ROI map",
               "vmaf-roi's patched ffmpeg (SVT-AV1 >= 2.0); 64x64 blocks, qoffset x 255 qindex, at most 8 "
               "distinct offsets per frame",
               reason="FFmpeg's own libsvtav1.c ignores ROI side data", patch="Honour region of interest side data with an SVT-AV1 ROI map"),
    _nvenc("h264_nvenc", 16, "16x16 macroblocks, qoffset x 51 QP"),
    _nvenc("hevc_nvenc", 32, "32x32 coding tree blocks, qoffset x 51 QP"),
    _nvenc("av1_nvenc", 64, "64x64 superblocks, qoffset x 255 qindex"),
    RoiSupport("libaom-av1", False, source="libavcodec/libaomenc.c (no REGIONS_OF_INTEREST code)",
               reason="FFmpeg's libaomenc.c has no ROI code"),
    RoiSupport("librav1e", False, source="libavcodec/librav1e.c (no REGIONS_OF_INTEREST code)",
               reason="FFmpeg's librav1e.c has no ROI code"),
    RoiSupport("mpeg4", False, source="libavcodec/mpeg4videoenc.c (no REGIONS_OF_INTEREST code)",
               reason="FFmpeg's mpeg4 encoder has no ROI code; measured: byte-identical output"),
    RoiSupport("ffv1", False, source="libavcodec/ffv1enc.c (lossless)", reason="ffv1 is lossless: there is no QP to change"),
)}


def roi_encoders(*, patched: bool = True) -> list[str]:
    """Encoders an ROI encode may use (``patched``: also those that need vmaf-roi's patched ffmpeg)."""
    return [e.name for e in ENCODERS.values() if e.honours and e.usable and (patched or not e.patch)]


def needs_patch(name: str) -> bool:
    """ROI with ``name`` only in vmaf-roi's patched ffmpeg (the encode runs there)."""
    e = ENCODERS.get(name)
    return bool(e and e.patch)


def block_size(name: str) -> int:
    e = ENCODERS.get(name)
    return e.block if e is not None else 16


def roi_refusal(name: str) -> str | None:
    """Why an ROI encode with ``name`` is refused, or None when it honours ROI here."""
    e = ENCODERS.get(name)
    if e is None:
        return (f"{name} is not known to honour ROI side data (FFmpeg's wrappers that do: libx264, libx265, "
                f"libvpxenc, qsvenc, vaapi_encode, d3d12va_encode)")
    if e.honours and e.usable:
        return None
    if not e.honours:
        return f"{name} ignores ROI side data ({e.reason}), so an ROI encode would be a plain encode"
    return f"{name}: {e.reason}"


# -- names people type out of habit (the library's, ffmpeg's codec names) -----------------------
# -> the FFmpeg encoder they mean. Only consulted when the name is no encoder of this build.
ALIASES: dict[str, str] = {
    "x264": "libx264", "h264": "libx264", "avc": "libx264",
    "x265": "libx265", "h265": "libx265", "hevc": "libx265",
    "vp9": "libvpx-vp9", "libvpx_vp9": "libvpx-vp9", "vpx-vp9": "libvpx-vp9",
    "vp8": "libvpx",
    "svtav1": "libsvtav1", "svt-av1": "libsvtav1", "svt_av1": "libsvtav1", "av1": "libsvtav1",
    "libsvt-av1": "libsvtav1", "libsvt_av1": "libsvtav1",
    "aom": "libaom-av1", "libaom": "libaom-av1", "aom-av1": "libaom-av1", "aomenc": "libaom-av1",
    "rav1e": "librav1e", "nvenc": "h264_nvenc",
}


def encoder_hint(name: str, available: Callable[[str], bool]) -> str:
    """' (did you mean libx264?)'-style advice for an encoder ``name`` this build lacks ('' if none).

    ``available(encoder)``: whether this FFmpeg build has that encoder."""
    key = name.strip().lower()
    want = ALIASES.get(key)
    if want is None:
        return ""
    if available(want):
        return f"; did you mean {want}?"
    if key in ("av1", "svtav1", "svt-av1", "svt_av1") and available("libaom-av1"):  # another AV1 encoder
        return "; did you mean libaom-av1?"
    return f"; the FFmpeg encoder of that name is {want}, which this FFmpeg build does not have either"


# -- each encoder's defaults, in its own terms -----------------------------------------------
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")


@dataclass(frozen=True)
class Defaults:
    """What ``preset: auto`` and ``rate_control.value: auto`` become for an encoder, and what it takes.

    ``presets``: the preset names it takes (empty: not checked here); ``preset_range``: numeric
    presets instead; ``quality_range``: its crf/qp scale; ``map_stride``: what
    ``saliency.stride: auto`` becomes, how often the model runs in its ROI encode."""

    preset: str | int | None
    quality: int
    quality_range: tuple[int, int] = (0, 51)
    presets: tuple[str, ...] = ()
    preset_range: tuple[int, int] | None = None
    quality_source: str = ""
    fractional_crf: bool = False
    map_stride: int = 4


DEFAULTS: dict[str, Defaults] = {
    "libx264": Defaults("medium", 23, (0, 51), X26X_PRESETS, quality_source="x264's default crf",
                        fractional_crf=True),
    "libx265": Defaults("medium", 28, (0, 51), X26X_PRESETS, quality_source="x265's default crf",
                        fractional_crf=True),
    # SVT-AV1: numeric presets (0 slowest .. 13 fastest; 8 is what ab-av1 and Av1an start from),
    # crf on the AV1 scale 1..63 (35: SVT-AV1's own default); FFmpeg's crf 0 means "unset"
    # map_stride 8: at SD against preset 8 the model's runs weigh most of the ROI encode's extra
    # CPU; every 8th frame keeps the one-decode encode at >= 0.9x plain on short 640x480 clips
    # (0.91-0.92x box.mp4, 0.93x bikes.mp4) with the held-out clips' object and VMAF BD-rates and the
    # salient-region gains as at 4, for gaze NSS 3.63 against 3.76 on the diving clip
    # (benchmarks/RESULTS.md, "A sparser schedule for SVT-AV1")
    "libsvtav1": Defaults(8, 35, (1, 63), preset_range=(0, 13), quality_source="SVT-AV1's default crf",
                          map_stride=8),
    "libvpx-vp9": Defaults(None, 32, (0, 63), quality_source="a mid-range VP9 crf"),
    "h264_nvenc": Defaults("p4", 23, (0, 51)),
    "hevc_nvenc": Defaults("p4", 28, (0, 51)),
    "av1_nvenc": Defaults("p4", 35, (0, 63)),
}
FALLBACK = Defaults(None, 23, (0, 63))


def defaults(name: str) -> Defaults:
    return DEFAULTS.get(name, FALLBACK)


def preset_problem(name: str, preset: object) -> str | None:
    """Why ``preset`` is not a preset of encoder ``name`` (None when it is, or is not checked)."""
    d = DEFAULTS.get(name)
    if d is None or preset is None:
        return None
    if d.preset_range is not None:
        lo, hi = d.preset_range
        try:
            v = int(str(preset))
        except ValueError:
            v = None
        if v is None or not lo <= v <= hi:
            return f"{name} presets are numbers {lo}..{hi} (slowest..fastest; default {d.preset}), got {preset!r}"
        return None
    if d.presets and str(preset) not in d.presets:
        return f"{name} presets are {', '.join(d.presets)} (default {d.preset}), got {preset!r}"
    return None
