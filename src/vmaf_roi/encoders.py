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


@dataclass(frozen=True)
class RoiSupport:
    name: str
    honours: bool  # FFmpeg's wrapper reads the ROI side data
    block: int = 16  # the encoder's ROI block size in pixels (the planner's default grid)
    source: str = ""  # the FFmpeg 8.1 source that shows it
    conditions: str = ""  # when the wrapper applies ROI
    usable: bool = True  # vmaf-roi drives it (tested here); False: refused with `reason`
    reason: str = ""  # why an ROI encode with it is refused


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
    RoiSupport("h264_nvenc", False, source="libavcodec/nvenc.c (no REGIONS_OF_INTEREST code)",
               reason="FFmpeg's nvenc.c has no ROI code; NVENC's own qpDeltaMap API is not wired up"),
    RoiSupport("hevc_nvenc", False, source="libavcodec/nvenc.c (no REGIONS_OF_INTEREST code)",
               reason="FFmpeg's nvenc.c has no ROI code; NVENC's own qpDeltaMap API is not wired up"),
    RoiSupport("av1_nvenc", False, source="libavcodec/nvenc.c (no REGIONS_OF_INTEREST code)",
               reason="FFmpeg's nvenc.c has no ROI code; NVENC's own qpDeltaMap API is not wired up"),
    RoiSupport("libsvtav1", False, source="libavcodec/libsvtav1.c (no REGIONS_OF_INTEREST code)",
               reason="FFmpeg's libsvtav1.c has no ROI code; measured: byte-identical output"),
    RoiSupport("libaom-av1", False, source="libavcodec/libaomenc.c (no REGIONS_OF_INTEREST code)",
               reason="FFmpeg's libaomenc.c has no ROI code"),
    RoiSupport("librav1e", False, source="libavcodec/librav1e.c (no REGIONS_OF_INTEREST code)",
               reason="FFmpeg's librav1e.c has no ROI code"),
    RoiSupport("mpeg4", False, source="libavcodec/mpeg4videoenc.c (no REGIONS_OF_INTEREST code)",
               reason="FFmpeg's mpeg4 encoder has no ROI code; measured: byte-identical output"),
    RoiSupport("ffv1", False, source="libavcodec/ffv1enc.c (lossless)", reason="ffv1 is lossless: there is no QP to change"),
)}


def roi_encoders() -> list[str]:
    """Encoders an ROI encode may use."""
    return [e.name for e in ENCODERS.values() if e.honours and e.usable]


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
