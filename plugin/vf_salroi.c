/*
 * This file is part of FFmpeg.
 *
 * FFmpeg is free software; you can redistribute it and/or
 * modify it under the terms of the GNU Lesser General Public
 * License as published by the Free Software Foundation; either
 * version 2.1 of the License, or (at your option) any later version.
 *
 * FFmpeg is distributed in the hope that it will be useful,
 * but WITHOUT ANY WARRANTY; without even the implied warranty of
 * MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the GNU
 * Lesser General Public License for more details.
 *
 * You should have received a copy of the GNU Lesser General Public
 * License along with FFmpeg; if not, write to the Free Software
 * Foundation, Inc., 51 Franklin Street, Fifth Floor, Boston, MA 02110-1301 USA
 */

/**
 * @file
 * Saliency-driven regions of interest.
 *
 * Every frame gets AVRegionOfInterest side data planned from a gray
 * saliency map: the frame is cut into blocks, each block gets a QP offset
 * from the mean saliency under it, and equal offsets are merged into
 * rectangles.  The planner is the one of vmaf-roi (vmaf_roi/roi.py) and
 * gives the same region list for the same 8-bit map.
 *
 * Two modes:
 * - two inputs (no model option): the maps come on the second input,
 *   paired with the frames by timestamp;
 * - one input (model=FILE.onnx): the filter runs the saliency model itself
 *   through the ONNX Runtime C API.  The library is loaded with dlopen()
 *   at run time (ort_lib option or VMAF_ROI_ORT_LIB), not linked, so one
 *   build works with any ONNX Runtime release that offers the C API
 *   version of the header it was compiled with.  The model runs every
 *   stride frames and on scene cuts (in a worker thread with async=1)
 *   while later frames are read ahead; frames in between get a blend of
 *   the maps on either side, as in vmaf_roi/pipeline.py.
 */

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>

#include "libavutil/avstring.h"
#include "libavutil/common.h"
#include "libavutil/file.h"
#include "libavutil/imgutils.h"
#include "libavutil/mem.h"
#include "libavutil/opt.h"
#include "libavutil/pixdesc.h"
#include "libavutil/sha.h"
#include "libavutil/time.h"
#include "libavutil/timestamp.h"
#include "libswscale/swscale.h"
#include "avfilter.h"
#include "filters.h"
#include "formats.h"
#include "framesync.h"
#include "video.h"

#if defined(__has_include)
#  if __has_include(<onnxruntime_c_api.h>)
#    define SALROI_HAVE_ORT 1
#    include <onnxruntime_c_api.h>
#  endif
#endif
#ifndef SALROI_HAVE_ORT
#  define SALROI_HAVE_ORT 0
#endif

enum SalROIMode {
    MODE_BOTH,
    MODE_LOWER,
    MODE_BALANCED,
    NB_MODES,
};

/* a block's saliency: the values of salroi_plan.c's POOL_MEAN and POOL_MAX */
enum SalROIPool {
    BLOCK_MEAN,
    BLOCK_MAX,
};

enum SalROIDevice {
    DEVICE_AUTO,
    DEVICE_CPU,
    DEVICE_CUDA,
    NB_DEVICES,
};

enum SalROIPost {
    POST_NONE,
    POST_MINMAX,
    NB_POSTS,
};

/** An 8-bit saliency map (255 = most salient), or the blend of two. */
typedef struct SalROIMap {
    const uint8_t *data;
    int linesize;
    int w, h;
    const uint8_t *data2;       ///< NULL, or a second map of the same size and linesize:
    double weight2;             ///< the map is then (1 - weight2) * data + weight2 * data2
} SalROIMap;

/** One model inference: input tensor in, map at the model's output size out. */
typedef struct SalROIJob {
    float *input;               ///< [1, 3, H, W], preprocessed
    float *pred;                ///< [oh, ow] in [0, 1], postprocessed
    int done;                   ///< guarded by the context's lock
    int error;
    struct SalROIJob *next;     ///< pending list of the worker
} SalROIJob;

/** A frame waiting for its map (model mode). */
typedef struct SalROIEntry {
    AVFrame *frame;
    SalROIJob *job;             ///< set when the model runs on this frame
    uint8_t *map;               ///< the key map made from job, once known
    int cut;                    ///< scene cut before this frame
    int disabled;               ///< timeline: pass through untouched
} SalROIEntry;

typedef struct SalROIContext {
    const AVClass *class;
    FFFrameSync fs;

    double strength;
    int strength_width;
    int block;
    int max_regions;
    int mode;
    int pool;
    int clamp;
    int qp_scale;
    int strict;
    int check_aspect;

    /* model mode options */
    char *model;
    char *sha256;
    char *ort_lib;
    char *input_name, *output_name;
    int size_w, size_h;
    char *scale_str;
    char *mean_str, *std_str;
    int post;
    int device;
    int threads;
    int stride;
    int scene_cut;
    double scene_threshold;
    double change_threshold;
    double smoothing;
    int interpolate;
    int lookahead;
    int async;
    int opened;                 ///< model_open() ran (model mode: on the first input configuration)
    char *maps_path;

    /* the planner's output, grown on demand */
    int64_t *rows;              ///< (top, bottom, left, right, qp) per region
    unsigned rows_size;

    /* two-input mode */
    double ts_tolerance;        ///< seconds, half the main frame interval
    int64_t nb_frames;
    int64_t nb_unmatched;
    int64_t nb_no_map;
    int     warned_unmatched;

    /* model mode */
    int model_mode;
    struct SalROIOrt *ort;      ///< session and tensor names
    int in_w, in_h;             ///< model input size
    int out_w, out_h;           ///< model output (map) size
    int image_max;              ///< scale: 0 = x/255, 1 = x/max(x)
    float mean[3], std[3];
    struct SwsContext *sws_rgb, *sws_thumb;
    uint8_t *rgb;               ///< in_w * in_h * 3 (BGR24), scratch
    uint8_t *thumb[2];          ///< 64x36 thumbnails (pipeline.thumbnail): previous frame, scratch
    uint8_t *gray;              ///< full-size gray picture, for formats without a luma plane
    int gray_w, gray_h;
    uint8_t *thumb_at_map;      ///< thumbnail of the last frame the model ran on
    int have_thumb, have_at_map;
    int since;                  ///< frames since the last inference
    int64_t frame_index;
    SalROIEntry *queue;         ///< ring buffer of frames waiting for their map
    int cap, head, nb_queued;
    uint8_t *key;               ///< map of the last key frame handed out (out_w * out_h)
    uint8_t *blend;             ///< scratch map
    int eof;
    int eof_status;
    int64_t eof_pts;
    FILE *maps_file;
    int64_t nb_inferences, nb_cuts, nb_out;
    int64_t infer_us;           ///< time spent in Run(), worker side

    pthread_t worker;
    int worker_running;
    pthread_mutex_t lock;
    pthread_cond_t cond;        ///< job added, job done, stop
    SalROIJob *pending, *pending_tail;
    int stop;
} SalROIContext;

#define ASPECT_TOLERANCE 0.02 /* as ASPECT_TOLERANCE in vmaf_roi/mapsource.py */

#define THUMB_W VMAF_ROI_THUMB_W /* 64x36: salroi_plan.c */
#define THUMB_H VMAF_ROI_THUMB_H

#define OFFSET(x) offsetof(SalROIContext, x)
#define FLAGS  AV_OPT_FLAG_VIDEO_PARAM | AV_OPT_FLAG_FILTERING_PARAM
#define TFLAGS AV_OPT_FLAG_VIDEO_PARAM | AV_OPT_FLAG_FILTERING_PARAM | AV_OPT_FLAG_RUNTIME_PARAM
static const AVOption salroi_options[] = {
    { "strength", "QP steps between a fully salient block and neutral saliency",
      OFFSET(strength), AV_OPT_TYPE_DOUBLE, { .dbl = 3.0 }, 0, DBL_MAX, TFLAGS },
    { "strength_width", "frames narrower than this get strength * width / strength_width (0: off)",
      OFFSET(strength_width), AV_OPT_TYPE_INT, { .i64 = 640 }, 0, INT_MAX, TFLAGS },
    { "block", "block size in pixels (doubled until the regions fit max_regions)",
      OFFSET(block), AV_OPT_TYPE_INT, { .i64 = 16 }, 1, INT_MAX / 4, FLAGS },
    { "max_regions", "maximum number of regions per frame",
      OFFSET(max_regions), AV_OPT_TYPE_INT, { .i64 = 128 }, 1, INT_MAX, FLAGS },
    { "mode", "which way the QP may move",
      OFFSET(mode), AV_OPT_TYPE_INT, { .i64 = MODE_BOTH }, 0, NB_MODES - 1, TFLAGS, .unit = "mode" },
        { "both",  "lower QP where salient, raise it elsewhere", 0, AV_OPT_TYPE_CONST, { .i64 = MODE_BOTH  }, 0, 0, TFLAGS, .unit = "mode" },
        { "lower", "only lower QP where salient",                0, AV_OPT_TYPE_CONST, { .i64 = MODE_LOWER }, 0, 0, TFLAGS, .unit = "mode" },
        { "balanced", "raise QP elsewhere by no more in sum than it is lowered where salient", 0, AV_OPT_TYPE_CONST, { .i64 = MODE_BALANCED }, 0, 0, TFLAGS, .unit = "mode" },
    { "pool", "a block's saliency",
      OFFSET(pool), AV_OPT_TYPE_INT, { .i64 = BLOCK_MAX }, BLOCK_MEAN, BLOCK_MAX, TFLAGS, .unit = "pool" },
        { "mean", "the map's mean over the block",           0, AV_OPT_TYPE_CONST, { .i64 = BLOCK_MEAN }, 0, 0, TFLAGS, .unit = "pool" },
        { "max",  "the map's maximum over the block (its most salient part)", 0, AV_OPT_TYPE_CONST, { .i64 = BLOCK_MAX }, 0, 0, TFLAGS, .unit = "pool" },
    { "clamp", "largest QP offset in either direction",
      OFFSET(clamp), AV_OPT_TYPE_INT, { .i64 = 10 }, 0, INT_MAX, TFLAGS },
    { "qp_scale", "QP range of the encoder: qoffset = offset / qp_scale",
      OFFSET(qp_scale), AV_OPT_TYPE_INT, { .i64 = 51 }, 1, INT_MAX, FLAGS },
    { "strict", "fail when a frame has no saliency map with a matching timestamp",
      OFFSET(strict), AV_OPT_TYPE_BOOL, { .i64 = 0 }, 0, 1, FLAGS },
    { "check_aspect", "refuse a saliency map whose display aspect ratio differs from the video's by more than 2%",
      OFFSET(check_aspect), AV_OPT_TYPE_BOOL, { .i64 = 1 }, 0, 1, FLAGS },

    /* model mode */
    { "model", "ONNX saliency model: run it in the filter (one input) instead of reading maps from a second input",
      OFFSET(model), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, FLAGS },
    { "sha256", "expected sha256 of the model file (hex); checked before the model is loaded",
      OFFSET(sha256), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, FLAGS },
    { "ort_lib", "path of the ONNX Runtime library (libonnxruntime.so.1.*); default $VMAF_ROI_ORT_LIB, else libonnxruntime.so.1",
      OFFSET(ort_lib), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, FLAGS },
    { "input", "name of the model's input tensor [1,3,H,W] (default: its first input)",
      OFFSET(input_name), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, FLAGS },
    { "output", "name of the model's output tensor [1,1,H,W] (default: its first output)",
      OFFSET(output_name), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, FLAGS },
    { "size", "model input size WxH (default: the model's fixed size)",
      OFFSET(size_w), AV_OPT_TYPE_IMAGE_SIZE, { .str = NULL }, 0, 0, FLAGS },
    { "scale", "input scaling: 255 (x/255) or image_max (x/max of the frame)",
      OFFSET(scale_str), AV_OPT_TYPE_STRING, { .str = "255" }, 0, 0, FLAGS },
    { "mean", "per-channel mean R|G|B, subtracted after scaling",
      OFFSET(mean_str), AV_OPT_TYPE_STRING, { .str = "0.485|0.456|0.406" }, 0, 0, FLAGS },
    { "std", "per-channel standard deviation R|G|B, divided by after the mean",
      OFFSET(std_str), AV_OPT_TYPE_STRING, { .str = "0.229|0.224|0.225" }, 0, 0, FLAGS },
    { "post", "postprocessing of the model output",
      OFFSET(post), AV_OPT_TYPE_INT, { .i64 = POST_NONE }, 0, NB_POSTS - 1, FLAGS, .unit = "post" },
        { "none",   "clip to [0, 1]",                       0, AV_OPT_TYPE_CONST, { .i64 = POST_NONE   }, 0, 0, FLAGS, .unit = "post" },
        { "minmax", "per-frame min-max normalisation",      0, AV_OPT_TYPE_CONST, { .i64 = POST_MINMAX }, 0, 0, FLAGS, .unit = "post" },
    { "device", "execution provider",
      OFFSET(device), AV_OPT_TYPE_INT, { .i64 = DEVICE_AUTO }, 0, NB_DEVICES - 1, FLAGS, .unit = "device" },
        { "auto", "CUDA when it initialises, else CPU", 0, AV_OPT_TYPE_CONST, { .i64 = DEVICE_AUTO }, 0, 0, FLAGS, .unit = "device" },
        { "cpu",  "CPU",                                0, AV_OPT_TYPE_CONST, { .i64 = DEVICE_CPU  }, 0, 0, FLAGS, .unit = "device" },
        { "cuda", "CUDA, or fail",                      0, AV_OPT_TYPE_CONST, { .i64 = DEVICE_CUDA }, 0, 0, FLAGS, .unit = "device" },
    { "threads", "ONNX Runtime intra-op threads (0: its default; 1 with async=1)",
      OFFSET(threads), AV_OPT_TYPE_INT, { .i64 = 0 }, 0, 1024, FLAGS },
    { "stride", "run the model every stride frames (and on scene cuts)",
      OFFSET(stride), AV_OPT_TYPE_INT, { .i64 = 4 }, 1, 10000, FLAGS },
    { "scene_cut", "also run the model on a scene cut",
      OFFSET(scene_cut), AV_OPT_TYPE_BOOL, { .i64 = 1 }, 0, 1, FLAGS },
    { "scene_threshold", "scene cut: mean absolute luma difference (0-255) of 64x36 thumbnails",
      OFFSET(scene_threshold), AV_OPT_TYPE_DOUBLE, { .dbl = 12.0 }, 0, 255, FLAGS },
    { "change_threshold", "also run the model when the picture changed this much since the last inference (same measure; -1: off)",
      OFFSET(change_threshold), AV_OPT_TYPE_DOUBLE, { .dbl = -1.0 }, -1, 255, FLAGS },
    { "smoothing", "weight of the previous map when a new one is computed",
      OFFSET(smoothing), AV_OPT_TYPE_DOUBLE, { .dbl = 0.0 }, 0, 0.99, FLAGS },
    { "interpolate", "frames between two inferences get a blend of both maps (else the earlier map)",
      OFFSET(interpolate), AV_OPT_TYPE_BOOL, { .i64 = 1 }, 0, 1, FLAGS },
    { "lookahead", "frames read ahead while the model runs (0: 2*stride+1)",
      OFFSET(lookahead), AV_OPT_TYPE_INT, { .i64 = 0 }, 0, 10000, FLAGS },
    { "async", "run the model in a worker thread (measured: no faster on 2 cores)",
      OFFSET(async), AV_OPT_TYPE_BOOL, { .i64 = 0 }, 0, 1, FLAGS },
    { "maps", "write the map applied to each frame to this file (raw gray8 at the model's output size)",
      OFFSET(maps_path), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, FLAGS },
    { NULL }
};

FRAMESYNC_AUXILIARY_FUNCS(salroi, SalROIContext, fs)
FRAMESYNC_DEFINE_PURE_CLASS(salroi, "salroi", salroi, salroi_options);

static av_cold int salroi_preinit(AVFilterContext *avctx)
{
    SalROIContext *ctx = avctx->priv;
    int ret = salroi_framesync_preinit(avctx);

    /* Pair each frame with the map whose timestamp is nearest, not the last
     * one at or before it: containers round timestamps (Matroska to 1 ms). */
    ctx->fs.opt_ts_sync_mode = TS_NEAREST;
    return ret;
}

static int query_formats(AVFilterContext *avctx)
{
    AVFilterFormats *formats;
    int ret;

    if (avctx->nb_inputs == 1) {
        /* model mode: any software format swscale reads, passed through */
        formats = ff_formats_pixdesc_filter(0, AV_PIX_FMT_FLAG_HWACCEL | AV_PIX_FMT_FLAG_BITSTREAM);
        if (!formats)
            return AVERROR(ENOMEM);
        for (unsigned i = 0; i < formats->nb_formats; ) {
            if (!sws_isSupportedInput(formats->formats[i]))
                formats->formats[i] = formats->formats[--formats->nb_formats];
            else
                i++;
        }
        return ff_set_common_formats(avctx, formats);
    }

    /* The main input is passed through untouched, in any format. */
    formats = ff_all_formats(AVMEDIA_TYPE_VIDEO);
    if ((ret = ff_formats_ref(formats, &avctx->inputs[0]->outcfg.formats)) < 0 ||
        (ret = ff_formats_ref(formats, &avctx->outputs[0]->incfg.formats)) < 0)
        return ret;

    /* Accept anything on the saliency input, so that a wrong stream is
     * reported in config_saliency() instead of being silently converted. */
    if ((ret = ff_formats_ref(ff_all_formats(AVMEDIA_TYPE_VIDEO),
                              &avctx->inputs[1]->outcfg.formats)) < 0 ||
        (ret = ff_formats_ref(ff_all_color_spaces(),
                              &avctx->inputs[1]->outcfg.color_spaces)) < 0 ||
        (ret = ff_formats_ref(ff_all_color_ranges(),
                              &avctx->inputs[1]->outcfg.color_ranges)) < 0)
        return ret;

    return 0;
}

static int config_saliency(AVFilterLink *inlink)
{
    AVFilterContext *avctx = inlink->dst;

    if (inlink->format != AV_PIX_FMT_GRAY8) {
        av_log(avctx, AV_LOG_ERROR, "The saliency input must be gray (gray8), "
               "got %s. Give salroi the map written by 'vmaf-roi saliency', "
               "or convert it with format=gray first.\n",
               av_get_pix_fmt_name(inlink->format));
        return AVERROR(EINVAL);
    }
    return 0;
}

static int grow(void *ptr, unsigned *size, size_t nmemb, size_t elem)
{
    if (nmemb > INT_MAX / elem)
        return AVERROR(ENOMEM);
    av_fast_malloc(ptr, size, nmemb * elem);
    return *(void **)ptr ? 0 : AVERROR(ENOMEM);
}

/* The planner (vmaf-roi's src/vmaf_roi/_planner.c, the same file the Python package runs). */
#define VMAF_ROI_PLAN_API static av_unused
#include "salroi_plan.c"

static int set_regions(AVFilterContext *avctx, AVFrame *frame, const SalROIMap *map)
{
    SalROIContext *ctx = avctx->priv;
    const int width = frame->width, height = frame->height;
    const int64_t blocks = (int64_t)((width  + ctx->block - 1) / ctx->block) *
                                    ((height + ctx->block - 1) / ctx->block);
    const int cap = FFMAX(1, FFMIN(ctx->max_regions, blocks));   /* never more rectangles */
    /* on narrow frames each block is a larger share of the picture: a weaker strength
     * (the package's PlannerParams.at_width computes the same double) */
    const double strength = ctx->strength_width > 0 && width < ctx->strength_width ?
                            ctx->strength * width / ctx->strength_width : ctx->strength;
    AVRegionOfInterest *roi;
    AVFrameSideData *sd;
    int b = ctx->block, nb_rects, ret;

    av_frame_remove_side_data(frame, AV_FRAME_DATA_REGIONS_OF_INTEREST);
    if ((ret = grow(&ctx->rows, &ctx->rows_size, 5 * (size_t)cap, sizeof(*ctx->rows))) < 0)
        return ret;
    nb_rects = vmaf_roi_plan_u8_blend(map->data, map->data2, map->weight2, map->w, map->h,
                                      map->linesize, map->linesize, width, height,
                                      ctx->block, strength, ctx->clamp, ctx->mode, ctx->pool,
                                      ctx->max_regions, ctx->rows, cap, &b);
    if (nb_rects < 0)
        return nb_rects == -1 ? AVERROR(ENOMEM) : AVERROR_BUG;
    if (b != ctx->block)
        av_log(avctx, AV_LOG_DEBUG, "Block size %d to fit %d regions.\n",
               b, ctx->max_regions);

    if (!nb_rects)
        return 0;

    sd = av_frame_new_side_data(frame, AV_FRAME_DATA_REGIONS_OF_INTEREST,
                                nb_rects * sizeof(*roi));
    if (!sd)
        return AVERROR(ENOMEM);
    roi = (AVRegionOfInterest *)sd->data;
    for (int i = 0; i < nb_rects; i++) {
        const int64_t *r = ctx->rows + 5 * i;

        roi[i] = (AVRegionOfInterest) {
            .self_size = sizeof(*roi),
            .top       = r[0],
            .bottom    = r[1],
            .left      = r[2],
            .right     = r[3],
            .qoffset   = av_make_q(r[4], ctx->qp_scale),
        };
    }
    return 0;
}

static int process_frame(FFFrameSync *fs)
{
    AVFilterContext *avctx = fs->parent;
    SalROIContext     *ctx = fs->opaque;
    AVFilterLink  *outlink = avctx->outputs[0];
    AVFrame *frame, *map;
    int ret;

    ret = ff_framesync_dualinput_get(fs, &frame, &map);
    if (ret < 0)
        return ret;

    if (avctx->is_disabled)
        return ff_filter_frame(outlink, frame);

    ctx->nb_frames++;
    if (!map) {
        ctx->nb_no_map++;
        if (ctx->strict) {
            av_log(avctx, AV_LOG_ERROR, "No saliency map for the frame at %s s "
                   "(the saliency stream starts later or ended early).\n",
                   av_ts2timestr(frame->pts, &outlink->time_base));
            ret = AVERROR(EINVAL);
            goto fail;
        }
        /* no map, no opinion: the frame passes through as it came */
        return ff_filter_frame(outlink, frame);
    }

    /* framesync has put both timestamps in the output time base */
    if (fabs((frame->pts - map->pts) * av_q2d(outlink->time_base)) > ctx->ts_tolerance) {
        ctx->nb_unmatched++;
        if (ctx->strict) {
            av_log(avctx, AV_LOG_ERROR, "The saliency map at %s s does not match "
                   "the frame at %s s: the two streams must share timestamps.\n",
                   av_ts2timestr(map->pts, &outlink->time_base),
                   av_ts2timestr(frame->pts, &outlink->time_base));
            ret = AVERROR(EINVAL);
            goto fail;
        }
        if (!ctx->warned_unmatched) {
            ctx->warned_unmatched = 1;
            av_log(avctx, AV_LOG_WARNING, "The saliency map at %s s is used for "
                   "the frame at %s s: the streams do not share timestamps or "
                   "frame counts. Using the nearest map (strict=1 makes this "
                   "an error).\n",
                   av_ts2timestr(map->pts, &outlink->time_base),
                   av_ts2timestr(frame->pts, &outlink->time_base));
        }
    }

    ret = set_regions(avctx, frame, &(SalROIMap) {
                          .data = map->data[0], .linesize = map->linesize[0],
                          .w = map->width, .h = map->height });
    if (ret < 0)
        goto fail;

    return ff_filter_frame(outlink, frame);

fail:
    av_frame_free(&frame);
    return ret;
}

/**
 * Display aspect ratio of a link; a link without a sample aspect ratio
 * has the pixel shape of def.
 */
static double display_aspect(const AVFilterLink *link, AVRational def)
{
    AVRational sar = link->sample_aspect_ratio.num > 0 && link->sample_aspect_ratio.den > 0 ?
                     link->sample_aspect_ratio : def;
    return link->w * av_q2d(sar) / link->h;
}

static int config_output(AVFilterLink *outlink)
{
    AVFilterContext *avctx = outlink->src;
    SalROIContext     *ctx = avctx->priv;
    AVFilterLink   *inlink = avctx->inputs[0];
    AVFilterLink  *maplink = avctx->inputs[1];
    FilterLink         *il = ff_filter_link(inlink);
    FilterLink         *ol = ff_filter_link(outlink);
    AVRational    main_sar = inlink->sample_aspect_ratio.num > 0 && inlink->sample_aspect_ratio.den > 0 ?
                             inlink->sample_aspect_ratio : (AVRational){ 1, 1 };
    double        main_dar = display_aspect(inlink, (AVRational){ 1, 1 });
    /* maps without a sample aspect ratio (as vmaf-roi writes them) cover
     * the frame in its own pixel shape */
    double         map_dar = display_aspect(maplink, main_sar);
    int ret;

    if (ctx->check_aspect && fabs(map_dar / main_dar - 1) > ASPECT_TOLERANCE) {
        av_log(avctx, AV_LOG_ERROR, "The saliency map is %dx%d (display aspect "
               "ratio %.3f) and the video %dx%d (%.3f): they differ by more "
               "than 2%%, so the map is not of this video. Make a matching map "
               "with 'vmaf-roi saliency IN -o maps.mkv' (check_aspect=0 takes "
               "it anyway).\n",
               maplink->w, maplink->h, map_dar, inlink->w, inlink->h, main_dar);
        return AVERROR(EINVAL);
    }

    if (ctx->clamp > ctx->qp_scale)
        av_log(avctx, AV_LOG_WARNING, "clamp=%d is beyond qp_scale=%d: "
               "encoders clip qoffset to [-1, 1].\n", ctx->clamp, ctx->qp_scale);

    if ((ret = ff_framesync_init_dualinput(&ctx->fs, avctx)) < 0)
        return ret;
    /* the output ends with the main input, however long the maps go on */
    ctx->fs.in[0].after = EXT_STOP;

    outlink->w                   = inlink->w;
    outlink->h                   = inlink->h;
    outlink->sample_aspect_ratio = inlink->sample_aspect_ratio;
    ol->frame_rate               = il->frame_rate;

    if (il->frame_rate.num > 0 && il->frame_rate.den > 0)
        ctx->ts_tolerance = 0.5 / av_q2d(il->frame_rate);
    else
        ctx->ts_tolerance = 0.001;

    ctx->fs.opaque   = ctx;
    ctx->fs.on_event = process_frame;
    ret = ff_framesync_configure(&ctx->fs);
    outlink->time_base = ctx->fs.time_base;
    return ret;
}


/* ------------------------------------------------------------------------ */
/* model mode: ONNX Runtime through its C API, loaded at run time            */

#if SALROI_HAVE_ORT

/* One library and one environment per process, shared by all instances. */
static pthread_mutex_t ort_global_lock = PTHREAD_MUTEX_INITIALIZER;
static void *ort_handle;
static const OrtApi *ort_api;
static char ort_version[64];
static OrtEnv *ort_env;
static int ort_env_refs;
static int ort_quiet;           ///< demote ONNX Runtime's errors while probing CUDA

typedef struct SalROIOrt {
    OrtSession *session;
    OrtMemoryInfo *meminfo;
    char *in_name, *out_name;
    const char *provider;
} SalROIOrt;

static void ORT_API_CALL ort_logger(void *param, OrtLoggingLevel severity,
                                    const char *category, const char *logid,
                                    const char *code_location, const char *message)
{
    int level = severity >= ORT_LOGGING_LEVEL_ERROR   ? AV_LOG_ERROR   :
                severity >= ORT_LOGGING_LEVEL_WARNING ? AV_LOG_WARNING :
                severity >= ORT_LOGGING_LEVEL_INFO    ? AV_LOG_VERBOSE : AV_LOG_DEBUG;
    if (ort_quiet && level < AV_LOG_VERBOSE)
        level = AV_LOG_VERBOSE;
    av_log(NULL, level, "[salroi/onnxruntime] %s\n", message);
}

/** Log and free an OrtStatus; returns 0 for success, AVERROR_EXTERNAL otherwise. */
static int ort_check_level(void *log_ctx, OrtStatus *st, const char *what, int level)
{
    if (!st)
        return 0;
    av_log(log_ctx, level, "ONNX Runtime: %s: %s\n", what, ort_api->GetErrorMessage(st));
    ort_api->ReleaseStatus(st);
    return AVERROR_EXTERNAL;
}

static int ort_check(void *log_ctx, OrtStatus *st, const char *what)
{
    return ort_check_level(log_ctx, st, what, AV_LOG_ERROR);
}

static int ort_load(AVFilterContext *avctx, const char *path)
{
    typedef const OrtApiBase *(ORT_API_CALL *GetApiBase)(void);
    GetApiBase get_base;
    const OrtApiBase *base;
    void *h;
    int ret = 0;

    pthread_mutex_lock(&ort_global_lock);
    if (ort_api)
        goto done;
    /* ONNX Runtime 1.29 and newer, on Linux and macOS, sends usage telemetry to Microsoft and
     * keeps a device id and an event cache under ~/.cache/Microsoft, unless
     * ORT_DISABLE_TELEMETRY=1 is set before it initialises.  Video jobs have no business
     * doing either: it is set here, once, before the library is loaded, unless the caller
     * set the variable (ORT_DISABLE_TELEMETRY=0 keeps ONNX Runtime's default). */
    if (!getenv("ORT_DISABLE_TELEMETRY"))
        setenv("ORT_DISABLE_TELEMETRY", "1", 0);
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        av_log(avctx, AV_LOG_ERROR, "Cannot load ONNX Runtime from '%s': %s. "
               "Install the onnxruntime (or onnxruntime-gpu) Python wheel and pass its "
               "library with ort_lib=PATH or VMAF_ROI_ORT_LIB=PATH "
               "('vmaf-roi models path ID --filter' prints it).\n", path, dlerror());
        ret = AVERROR(ENOENT);
        goto done;
    }
    get_base = (GetApiBase)dlsym(h, "OrtGetApiBase");
    if (!get_base || !(base = get_base())) {
        av_log(avctx, AV_LOG_ERROR, "'%s' is not an ONNX Runtime library (no OrtGetApiBase).\n", path);
        dlclose(h);
        ret = AVERROR(EINVAL);
        goto done;
    }
    av_strlcpy(ort_version, base->GetVersionString(), sizeof(ort_version));
    /* A library serves every C API version up to its own. */
    ort_api = base->GetApi(ORT_API_VERSION);
    if (!ort_api) {
        av_log(avctx, AV_LOG_ERROR, "ONNX Runtime %s at '%s' does not offer C API version %d "
               "(this filter's headers); use ONNX Runtime 1.%d or newer.\n",
               ort_version, path, ORT_API_VERSION, ORT_API_VERSION);
        dlclose(h);
        ret = AVERROR(EINVAL);
        goto done;
    }
    ort_handle = h;
done:
    pthread_mutex_unlock(&ort_global_lock);
    if (!ret)
        av_log(avctx, AV_LOG_VERBOSE, "ONNX Runtime %s, C API version %d, from %s\n",
               ort_version, ORT_API_VERSION, path);
    return ret;
}

static int ort_env_get(AVFilterContext *avctx)
{
    int ret = 0;

    pthread_mutex_lock(&ort_global_lock);
    if (!ort_env)
        ret = ort_check(avctx, ort_api->CreateEnvWithCustomLogger(ort_logger, NULL,
                        ORT_LOGGING_LEVEL_WARNING, "salroi", &ort_env), "CreateEnv");
    if (!ret)
        ort_env_refs++;
    pthread_mutex_unlock(&ort_global_lock);
    return ret;
}

static void ort_env_put(void)
{
    pthread_mutex_lock(&ort_global_lock);
    if (ort_env && !--ort_env_refs) {
        ort_api->ReleaseEnv(ort_env);
        ort_env = NULL;
    }
    pthread_mutex_unlock(&ort_global_lock);
    /* the library stays loaded: unloading it under its own threads is not safe */
}

static int parse_floats3(AVFilterContext *avctx, const char *name, const char *s, float *v)
{
    char *end;
    for (int i = 0; i < 3; i++) {
        double d = strtod(s, &end);
        if (end == s || (i < 2 && *end != '|') || (i == 2 && *end)) {
            av_log(avctx, AV_LOG_ERROR, "%s must be three numbers R|G|B, got '%s'.\n", name, s);
            return AVERROR(EINVAL);
        }
        v[i] = d;
        s = end + 1;
    }
    return 0;
}

static int check_digest(AVFilterContext *avctx, const char *path, const uint8_t *data,
                        size_t size, const char *expect)
{
    struct AVSHA *sha = av_sha_alloc();
    uint8_t digest[32];
    char hex[65];

    if (!sha)
        return AVERROR(ENOMEM);
    av_sha_init(sha, 256);
    av_sha_update(sha, data, size);
    av_sha_final(sha, digest);
    av_free(sha);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    if (!expect) {
        av_log(avctx, AV_LOG_WARNING, "No sha256= given: the model file is not verified "
               "(its sha256 is %s).\n", hex);
        return 0;
    }
    if (av_strcasecmp(hex, expect)) {
        av_log(avctx, AV_LOG_ERROR, "Model file '%s' has sha256 %s, expected %s: wrong or "
               "damaged file (vmaf-roi models verify / vmaf-roi models fetch ID).\n",
               path, hex, expect);
        return AVERROR(EINVAL);
    }
    av_log(avctx, AV_LOG_VERBOSE, "Model sha256 %s verified.\n", hex);
    return 0;
}

/** Shape of input or output i; returns its rank or a negative error. */
static int tensor_shape(AVFilterContext *avctx, OrtSession *sess, int output, size_t i,
                        int64_t dims[4], const char *name)
{
    OrtTypeInfo *ti = NULL;
    const OrtTensorTypeAndShapeInfo *tsi;
    ONNXTensorElementDataType type;
    size_t rank = 0;
    int ret;

    ret = ort_check(avctx, output ? ort_api->SessionGetOutputTypeInfo(sess, i, &ti)
                                  : ort_api->SessionGetInputTypeInfo(sess, i, &ti), "type info");
    if (ret < 0)
        return ret;
    if ((ret = ort_check(avctx, ort_api->CastTypeInfoToTensorInfo(ti, &tsi), "tensor info")) < 0)
        goto end;
    if (!tsi) {
        av_log(avctx, AV_LOG_ERROR, "Model %s '%s' is not a tensor.\n", output ? "output" : "input", name);
        ret = AVERROR(EINVAL);
        goto end;
    }
    if ((ret = ort_check(avctx, ort_api->GetTensorElementType(tsi, &type), "element type")) < 0 ||
        (ret = ort_check(avctx, ort_api->GetDimensionsCount(tsi, &rank), "rank")) < 0)
        goto end;
    if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || rank != 4) {
        av_log(avctx, AV_LOG_ERROR, "Model %s '%s' is a rank-%zu tensor of element type %d; "
               "salroi needs float32 [1,%d,H,W].\n", output ? "output" : "input", name,
               rank, (int)type, output ? 1 : 3);
        ret = AVERROR(EINVAL);
        goto end;
    }
    ret = ort_check(avctx, ort_api->GetDimensions(tsi, dims, 4), "dimensions");
end:
    ort_api->ReleaseTypeInfo(ti);
    return ret < 0 ? ret : (int)rank;
}

/** Index of the tensor called name (or 0 when name is NULL); its name in *out. */
static int find_tensor(AVFilterContext *avctx, OrtSession *sess, int output,
                       const char *name, char **out, size_t *index)
{
    OrtAllocator *alloc;
    size_t n = 0;
    int ret;

    if ((ret = ort_check(avctx, ort_api->GetAllocatorWithDefaultOptions(&alloc), "allocator")) < 0 ||
        (ret = ort_check(avctx, output ? ort_api->SessionGetOutputCount(sess, &n)
                                       : ort_api->SessionGetInputCount(sess, &n), "count")) < 0)
        return ret;
    if (n < 1) {
        av_log(avctx, AV_LOG_ERROR, "The model has no %s.\n", output ? "outputs" : "inputs");
        return AVERROR(EINVAL);
    }
    if (!output && !name && n != 1) {
        av_log(avctx, AV_LOG_ERROR, "The model has %zu inputs; salroi needs one image "
               "input [1,3,H,W] (or name it with input=).\n", n);
        return AVERROR(EINVAL);
    }
    for (size_t i = 0; i < n; i++) {
        char *s = NULL;
        if ((ret = ort_check(avctx, output ? ort_api->SessionGetOutputName(sess, i, alloc, &s)
                                           : ort_api->SessionGetInputName(sess, i, alloc, &s), "name")) < 0)
            return ret;
        if (!name || !strcmp(name, s)) {
            *out = av_strdup(s);
            *index = i;
            alloc->Free(alloc, s);
            return *out ? 0 : AVERROR(ENOMEM);
        }
        alloc->Free(alloc, s);
    }
    av_log(avctx, AV_LOG_ERROR, "The model has no %s named '%s'.\n",
           output ? "output" : "input", name);
    return AVERROR(EINVAL);
}

static int cuda_driver_present(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (h)
        dlclose(h);
    return !!h;
}

static int make_session(AVFilterContext *avctx, const uint8_t *data, size_t size, int cuda,
                        OrtSession **sess)
{
    SalROIContext *s = avctx->priv;
    OrtSessionOptions *so = NULL;
    OrtCUDAProviderOptionsV2 *cuda_opts = NULL;
    int ret;

    if ((ret = ort_check(avctx, ort_api->CreateSessionOptions(&so), "CreateSessionOptions")) < 0)
        return ret;
    /* With async=1 the model already runs beside the filter, in the worker: by default
     * ONNX Runtime gets no thread pool of its own there (its pool thread was seen spinning
     * for minutes with the caller in another thread, on a loaded 2-core machine). */
    if ((s->threads || s->async) &&
        (ret = ort_check(avctx, ort_api->SetIntraOpNumThreads(so, s->threads ? s->threads : 1),
                         "threads")) < 0)
        goto end;
    /* workers that busy-wait between operators take CPU from the encoder */
    if ((ret = ort_check(avctx, ort_api->AddSessionConfigEntry(so, "session.intra_op.allow_spinning", "0"),
                         "session config")) < 0)
        goto end;
    /* one frame at a time: a batch dimension denoted DATA_BATCH is fixed to 1, so that the
     * shapes that follow from it fold (attention_v2: about 8% less CPU per inference); a model
     * without that denotation is not affected */
    if ((ret = ort_check(avctx, ort_api->AddFreeDimensionOverride(so, "DATA_BATCH", 1),
                         "batch dimension")) < 0)
        goto end;
    ort_quiet = cuda && s->device == DEVICE_AUTO;
    if (cuda) {
        OrtStatus *st = ort_api->CreateCUDAProviderOptions(&cuda_opts);
        if (!st)
            st = ort_api->SessionOptionsAppendExecutionProvider_CUDA_V2(so, cuda_opts);
        if (st) {
            av_log(avctx, s->device == DEVICE_CUDA ? AV_LOG_ERROR : AV_LOG_VERBOSE,
                   "CUDA execution provider unavailable: %s\n", ort_api->GetErrorMessage(st));
            ort_api->ReleaseStatus(st);
            ret = AVERROR(ENOSYS);
            goto end;
        }
    }
    ret = ort_check_level(avctx, ort_api->CreateSessionFromArray(ort_env, data, size, so, sess),
                          cuda ? "cannot create a CUDA session" : "cannot load the model",
                          ort_quiet ? AV_LOG_VERBOSE : AV_LOG_ERROR);
end:
    ort_quiet = 0;
    if (cuda_opts)
        ort_api->ReleaseCUDAProviderOptions(cuda_opts);
    ort_api->ReleaseSessionOptions(so);
    return ret;
}

static av_cold int model_init(AVFilterContext *avctx)
{
    SalROIContext *s = avctx->priv;
    const char *lib = s->ort_lib ? s->ort_lib : getenv("VMAF_ROI_ORT_LIB");
    uint8_t *data = NULL;
    size_t size = 0;
    int64_t in_dims[4], out_dims[4];
    size_t in_idx = 0, out_idx = 0;
    SalROIOrt *o;
    int ret;

    if (!lib || !*lib)
        lib = "libonnxruntime.so.1";
    if (!strcmp(s->scale_str, "255"))
        s->image_max = 0;
    else if (!strcmp(s->scale_str, "image_max"))
        s->image_max = 1;
    else {
        av_log(avctx, AV_LOG_ERROR, "scale must be 255 or image_max, got '%s'.\n", s->scale_str);
        return AVERROR(EINVAL);
    }
    if ((ret = parse_floats3(avctx, "mean", s->mean_str, s->mean)) < 0 ||
        (ret = parse_floats3(avctx, "std", s->std_str, s->std)) < 0)
        return ret;
    for (int i = 0; i < 3; i++)
        if (!(s->std[i] > 0)) {
            av_log(avctx, AV_LOG_ERROR, "std must be positive, got '%s'.\n", s->std_str);
            return AVERROR(EINVAL);
        }

    ret = av_file_map(s->model, &data, &size, 0, avctx);
    if (ret < 0) {
        av_log(avctx, AV_LOG_ERROR, "Cannot read the model '%s': %s.\n", s->model, av_err2str(ret));
        return ret;
    }
    if ((ret = check_digest(avctx, s->model, data, size, s->sha256)) < 0)
        goto end;
    if ((ret = ort_load(avctx, lib)) < 0 || (ret = ort_env_get(avctx)) < 0)
        goto end;
    if (!(o = s->ort = av_mallocz(sizeof(*o)))) {
        ret = AVERROR(ENOMEM);
        ort_env_put();
        goto end;
    }

    o->provider = "CPU";
    if (s->device != DEVICE_CPU) {
        if (!cuda_driver_present()) {
            av_log(avctx, s->device == DEVICE_CUDA ? AV_LOG_ERROR : AV_LOG_VERBOSE,
                   "No NVIDIA driver (libcuda.so.1 does not load).\n");
            ret = AVERROR(ENOSYS);
        } else {
            ret = make_session(avctx, data, size, 1, &o->session);
        }
        if (ret >= 0)
            o->provider = "CUDA";
        else if (s->device == DEVICE_CUDA) {
            av_log(avctx, AV_LOG_ERROR, "device=cuda: the CUDA execution provider does not "
                   "initialise here (use device=auto or cpu).\n");
            goto end;
        }
    }
    if (!o->session && (ret = make_session(avctx, data, size, 0, &o->session)) < 0) {
        av_log(avctx, AV_LOG_ERROR, "'%s' is not a model ONNX Runtime can load.\n", s->model);
        goto end;
    }

    /* the I/O contract: float32 [1,3,H,W] in, [1,1,h,w] out */
    if ((ret = find_tensor(avctx, o->session, 0, s->input_name, &o->in_name, &in_idx)) < 0 ||
        (ret = find_tensor(avctx, o->session, 1, s->output_name, &o->out_name, &out_idx)) < 0 ||
        (ret = tensor_shape(avctx, o->session, 0, in_idx, in_dims, o->in_name)) < 0 ||
        (ret = tensor_shape(avctx, o->session, 1, out_idx, out_dims, o->out_name)) < 0)
        goto contract;
    if ((in_dims[0] != 1 && in_dims[0] > 0) || in_dims[1] != 3) {
        av_log(avctx, AV_LOG_ERROR, "Model input '%s' is [%"PRId64",%"PRId64",%"PRId64",%"PRId64"]; "
               "salroi needs [1,3,H,W] (RGB, NCHW).\n", o->in_name,
               in_dims[0], in_dims[1], in_dims[2], in_dims[3]);
        ret = AVERROR(EINVAL);
        goto contract;
    }
    if ((out_dims[0] != 1 && out_dims[0] > 0) || (out_dims[1] != 1 && out_dims[1] > 0)) {
        av_log(avctx, AV_LOG_ERROR, "Model output '%s' is [%"PRId64",%"PRId64",%"PRId64",%"PRId64"]; "
               "salroi needs one map [1,1,H,W].\n", o->out_name,
               out_dims[0], out_dims[1], out_dims[2], out_dims[3]);
        ret = AVERROR(EINVAL);
        goto contract;
    }
    s->in_h = s->size_h;
    s->in_w = s->size_w;
    if (in_dims[2] > 0 && in_dims[3] > 0) {
        if (s->in_w && (s->in_w != in_dims[3] || s->in_h != in_dims[2])) {
            av_log(avctx, AV_LOG_ERROR, "size=%dx%d, but the model's input is fixed at "
                   "%"PRId64"x%"PRId64".\n", s->in_w, s->in_h, in_dims[3], in_dims[2]);
            ret = AVERROR(EINVAL);
            goto contract;
        }
        s->in_w = in_dims[3];
        s->in_h = in_dims[2];
    } else if (!s->in_w) {
        av_log(avctx, AV_LOG_ERROR, "The model's input size is not fixed: give it with size=WxH.\n");
        ret = AVERROR(EINVAL);
        goto contract;
    }
    if ((ret = ort_check(avctx, ort_api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault,
                                                           &o->meminfo), "memory info")) < 0)
        goto end;
    av_log(avctx, AV_LOG_INFO, "Model %s: input '%s' %dx%d, output '%s', %s execution provider, "
           "ONNX Runtime %s (C API %d).\n", s->model, o->in_name, s->in_w, s->in_h,
           o->out_name, o->provider, ort_version, ORT_API_VERSION);
    ret = 0;
    goto end;

contract:
    av_log(avctx, AV_LOG_ERROR, "'%s' does not fit salroi's model contract: input float32 "
           "[1,3,H,W] RGB, output float32 [1,1,H,W] saliency.\n", s->model);
end:
    av_file_unmap(data, size);
    return ret;
}

static void model_uninit_ort(SalROIContext *s)
{
    SalROIOrt *o = s->ort;
    if (!o)
        return;
    if (o->session)
        ort_api->ReleaseSession(o->session);
    if (o->meminfo)
        ort_api->ReleaseMemoryInfo(o->meminfo);
    av_freep(&o->in_name);
    av_freep(&o->out_name);
    av_freep(&s->ort);
    ort_env_put();
}

/** Run one job: input tensor -> postprocessed map in job->pred. */
static int run_model(AVFilterContext *avctx, SalROIJob *job)
{
    SalROIContext *s = avctx->priv;
    SalROIOrt *o = s->ort;
    const int64_t in_shape[4] = { 1, 3, s->in_h, s->in_w };
    const char *in_names[1] = { o->in_name }, *out_names[1] = { o->out_name };
    OrtValue *in = NULL, *out = NULL;
    OrtTensorTypeAndShapeInfo *info = NULL;
    int64_t dims[4] = { 0 };
    size_t rank = 0;
    const float *y;
    float lo = FLT_MAX, hi = -FLT_MAX;
    int64_t t0 = av_gettime_relative();
    int ret, n;

    ret = ort_check(avctx, ort_api->CreateTensorWithDataAsOrtValue(o->meminfo, job->input,
                    sizeof(float) * 3 * s->in_w * s->in_h, in_shape, 4,
                    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in), "input tensor");
    if (ret < 0)
        return ret;
    ret = ort_check(avctx, ort_api->Run(o->session, NULL, in_names, (const OrtValue *const *)&in, 1,
                                        out_names, 1, &out), "Run");
    if (ret < 0)
        goto end;
    if ((ret = ort_check(avctx, ort_api->GetTensorTypeAndShape(out, &info), "output shape")) < 0 ||
        (ret = ort_check(avctx, ort_api->GetDimensionsCount(info, &rank), "output rank")) < 0)
        goto end;
    if (rank != 4 || (ret = ort_check(avctx, ort_api->GetDimensions(info, dims, 4), "output dims")) < 0 ||
        dims[0] != 1 || dims[1] != 1 || dims[2] < 1 || dims[3] < 1 ||
        (s->out_w && (dims[3] != s->out_w || dims[2] != s->out_h))) {
        av_log(avctx, AV_LOG_ERROR, "The model's output is not one map [1,1,H,W] of a fixed size.\n");
        ret = ret < 0 ? ret : AVERROR(EINVAL);
        goto end;
    }
    if ((ret = ort_check(avctx, ort_api->GetTensorMutableData(out, (void **)&y), "output data")) < 0)
        goto end;
    n = dims[2] * dims[3];
    if (!job->pred && !(job->pred = av_malloc_array(n, sizeof(*job->pred)))) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    if (s->post == POST_MINMAX) {
        for (int i = 0; i < n; i++) {
            lo = FFMIN(lo, y[i]);
            hi = FFMAX(hi, y[i]);
        }
    }
    for (int i = 0; i < n; i++) {
        float v = y[i];
        if (s->post == POST_MINMAX)
            v = hi - lo > 1e-8f ? (v - lo) / (hi - lo) : 0.0f;
        job->pred[i] = av_clipf(v, 0.0f, 1.0f);
    }
    if (!s->out_w) {            /* first run (not concurrent: the worker runs jobs in order) */
        s->out_w = dims[3];
        s->out_h = dims[2];
    }
    s->infer_us += av_gettime_relative() - t0;
end:
    if (info)
        ort_api->ReleaseTensorTypeAndShapeInfo(info);
    if (out)
        ort_api->ReleaseValue(out);
    ort_api->ReleaseValue(in);
    return ret;
}

#else /* !SALROI_HAVE_ORT */

typedef struct SalROIOrt { int unused; } SalROIOrt;

static av_cold int model_init(AVFilterContext *avctx)
{
    av_log(avctx, AV_LOG_ERROR, "This salroi was built without the ONNX Runtime C API header "
           "(onnxruntime_c_api.h): model= is not available. Give the saliency maps on a second "
           "input, or rebuild with plugin/build.sh.\n");
    return AVERROR(ENOSYS);
}

static void model_uninit_ort(SalROIContext *s)
{
}

static int run_model(AVFilterContext *avctx, SalROIJob *job)
{
    return AVERROR(ENOSYS);
}

#endif /* SALROI_HAVE_ORT */

/* -- the inference worker ------------------------------------------------- */

static void *worker_main(void *arg)
{
    AVFilterContext *avctx = arg;
    SalROIContext *s = avctx->priv;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        SalROIJob *job;
        int ret;

        while (!s->pending && !s->stop)
            pthread_cond_wait(&s->cond, &s->lock);
        if (s->stop)
            break;
        job = s->pending;
        s->pending = job->next;
        if (!s->pending)
            s->pending_tail = NULL;
        pthread_mutex_unlock(&s->lock);
        ret = run_model(avctx, job);
        pthread_mutex_lock(&s->lock);
        job->error = ret;
        job->done = 1;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static int submit(AVFilterContext *avctx, SalROIJob *job)
{
    SalROIContext *s = avctx->priv;

    if (!s->async) {
        job->error = run_model(avctx, job);
        job->done = 1;
        return job->error;
    }
    pthread_mutex_lock(&s->lock);
    job->next = NULL;
    if (s->pending_tail)
        s->pending_tail->next = job;
    else
        s->pending = job;
    s->pending_tail = job;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/** 1 when the job is done (waiting for it if block), 0 if not yet. */
static int job_done(SalROIContext *s, SalROIJob *job, int block)
{
    int done;

    if (!s->async)
        return 1;
    pthread_mutex_lock(&s->lock);
    while (block && !job->done)
        pthread_cond_wait(&s->cond, &s->lock);
    done = job->done;
    pthread_mutex_unlock(&s->lock);
    return done;
}

static void free_job(SalROIJob **job)
{
    if (*job) {
        av_freep(&(*job)->input);
        av_freep(&(*job)->pred);
        av_freep(job);
    }
}

/* -- frames in: scheduling and preprocessing ------------------------------- */

static struct SwsContext *get_sws(struct SwsContext *sws, const AVFrame *f,
                                  int w, int h, enum AVPixelFormat dst)
{
    sws = sws_getCachedContext(sws, f->width, f->height, f->format, w, h, dst,
                               SWS_BILINEAR, NULL, NULL, NULL);
    if (sws) {
        const int *coefs = sws_getCoefficients(f->colorspace == AVCOL_SPC_UNSPECIFIED ?
                                               SWS_CS_DEFAULT : f->colorspace);
        int src_range = f->color_range == AVCOL_RANGE_JPEG;
        const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(f->format);
        if (d && (d->flags & AV_PIX_FMT_FLAG_RGB))
            src_range = 1;
        sws_setColorspaceDetails(sws, coefs, src_range, coefs, 1, 0, 1 << 16, 1 << 16);
    }
    return sws;
}

/** Mean absolute difference of two thumbnails, 0-255. */
static double thumb_diff(const uint8_t *a, const uint8_t *b)
{
    return (double)vmaf_roi_thumb_sad(a, b) / (THUMB_W * THUMB_H);
}

/**
 * Formats whose first plane is the luma, read in place for the thumbnail: bytes per
 * sample and the shift to 8 bits (pipeline.py's _LUMA8 and _LUMA16; a test holds the two
 * lists equal). Any other format is made gray at full size by swscale first.
 */
static const struct { enum AVPixelFormat fmt; int bytes, shift; } luma_planes[] = {
    { AV_PIX_FMT_YUV420P, 1, 0 }, { AV_PIX_FMT_YUVJ420P, 1, 0 }, { AV_PIX_FMT_YUV422P, 1, 0 },
    { AV_PIX_FMT_YUVJ422P, 1, 0 }, { AV_PIX_FMT_YUV444P, 1, 0 }, { AV_PIX_FMT_YUVJ444P, 1, 0 },
    { AV_PIX_FMT_YUV440P, 1, 0 }, { AV_PIX_FMT_YUVJ440P, 1, 0 }, { AV_PIX_FMT_YUV411P, 1, 0 },
    { AV_PIX_FMT_YUVJ411P, 1, 0 }, { AV_PIX_FMT_YUV410P, 1, 0 }, { AV_PIX_FMT_NV12, 1, 0 },
    { AV_PIX_FMT_NV21, 1, 0 }, { AV_PIX_FMT_NV16, 1, 0 }, { AV_PIX_FMT_NV24, 1, 0 },
    { AV_PIX_FMT_NV42, 1, 0 }, { AV_PIX_FMT_GRAY8, 1, 0 }, { AV_PIX_FMT_YUVA420P, 1, 0 },
    { AV_PIX_FMT_YUVA422P, 1, 0 }, { AV_PIX_FMT_YUVA444P, 1, 0 },
    { AV_PIX_FMT_YUV420P9LE, 2, 1 }, { AV_PIX_FMT_YUV420P10LE, 2, 2 }, { AV_PIX_FMT_YUV420P12LE, 2, 4 },
    { AV_PIX_FMT_YUV420P14LE, 2, 6 }, { AV_PIX_FMT_YUV420P16LE, 2, 8 },
    { AV_PIX_FMT_YUV422P9LE, 2, 1 }, { AV_PIX_FMT_YUV422P10LE, 2, 2 }, { AV_PIX_FMT_YUV422P12LE, 2, 4 },
    { AV_PIX_FMT_YUV422P14LE, 2, 6 }, { AV_PIX_FMT_YUV422P16LE, 2, 8 },
    { AV_PIX_FMT_YUV444P9LE, 2, 1 }, { AV_PIX_FMT_YUV444P10LE, 2, 2 }, { AV_PIX_FMT_YUV444P12LE, 2, 4 },
    { AV_PIX_FMT_YUV444P14LE, 2, 6 }, { AV_PIX_FMT_YUV444P16LE, 2, 8 },
    { AV_PIX_FMT_YUV440P10LE, 2, 2 }, { AV_PIX_FMT_YUV440P12LE, 2, 4 },
    { AV_PIX_FMT_YUVA420P9LE, 2, 1 }, { AV_PIX_FMT_YUVA420P10LE, 2, 2 }, { AV_PIX_FMT_YUVA420P16LE, 2, 8 },
    { AV_PIX_FMT_YUVA422P9LE, 2, 1 }, { AV_PIX_FMT_YUVA422P10LE, 2, 2 }, { AV_PIX_FMT_YUVA422P16LE, 2, 8 },
    { AV_PIX_FMT_YUVA444P9LE, 2, 1 }, { AV_PIX_FMT_YUVA444P10LE, 2, 2 }, { AV_PIX_FMT_YUVA444P16LE, 2, 8 },
    { AV_PIX_FMT_GRAY9LE, 2, 1 }, { AV_PIX_FMT_GRAY10LE, 2, 2 }, { AV_PIX_FMT_GRAY12LE, 2, 4 },
    { AV_PIX_FMT_GRAY14LE, 2, 6 }, { AV_PIX_FMT_GRAY16LE, 2, 8 },
    { AV_PIX_FMT_P010LE, 2, 8 }, { AV_PIX_FMT_P012LE, 2, 8 }, { AV_PIX_FMT_P016LE, 2, 8 },
    { AV_PIX_FMT_P210LE, 2, 8 }, { AV_PIX_FMT_P216LE, 2, 8 }, { AV_PIX_FMT_P410LE, 2, 8 },
    { AV_PIX_FMT_P416LE, 2, 8 },
};

/** The frame's scene-cut thumbnail (pipeline.thumbnail): 64x36 cells of full-range luma. */
static int make_thumb(SalROIContext *s, const AVFrame *f, uint8_t *out)
{
    const enum AVPixelFormat fmt = f->format;
    const int full = f->color_range == AVCOL_RANGE_JPEG || fmt == AV_PIX_FMT_YUVJ420P ||
                     fmt == AV_PIX_FMT_YUVJ422P || fmt == AV_PIX_FMT_YUVJ444P ||
                     fmt == AV_PIX_FMT_YUVJ440P || fmt == AV_PIX_FMT_YUVJ411P;

    for (int i = 0; i < FF_ARRAY_ELEMS(luma_planes); i++)
        if (luma_planes[i].fmt == fmt)
            return vmaf_roi_thumb(f->data[0], f->linesize[0], f->width, f->height,
                                  luma_planes[i].bytes, luma_planes[i].shift, full, out) < 0 ?
                   AVERROR(EINVAL) : 0;
    /* no luma plane of its own: gray at full size first (swscale gives full-range levels) */
    if (s->gray_w != f->width || s->gray_h != f->height) {
        av_freep(&s->gray);
        if (!(s->gray = av_malloc((size_t)f->width * f->height)))
            return AVERROR(ENOMEM);
        s->gray_w = f->width;
        s->gray_h = f->height;
    }
    s->sws_thumb = get_sws(s->sws_thumb, f, f->width, f->height, AV_PIX_FMT_GRAY8);
    if (!s->sws_thumb)
        return AVERROR(EINVAL);
    {
        uint8_t *dst[4] = { s->gray };
        int dst_ls[4] = { f->width };

        sws_scale(s->sws_thumb, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, dst_ls);
    }
    return vmaf_roi_thumb(s->gray, f->width, f->width, f->height, 1, 0, 1, out) < 0 ? AVERROR(EINVAL) : 0;
}

/**
 * Whether the model runs on this frame, and whether it is a scene cut
 * (pipeline.MapPolicy): the first frame, every stride frames, scene cuts
 * (against the previous frame) and, with change_threshold, pictures that
 * changed that much since the last inference.
 */
static int decide(AVFilterContext *avctx, const AVFrame *f, int *cut)
{
    SalROIContext *s = avctx->priv;
    int infer, changed = 0;

    *cut = 0;
    if (s->scene_cut || s->change_threshold >= 0) {
        uint8_t *cur = s->thumb[1];
        int ret = make_thumb(s, f, cur);

        if (ret < 0)
            return ret;
        if (s->scene_cut && s->have_thumb)
            *cut = thumb_diff(cur, s->thumb[0]) > s->scene_threshold;
        changed = s->change_threshold >= 0 && s->have_at_map &&
                  thumb_diff(cur, s->thumb_at_map) > s->change_threshold;
    }
    infer = s->frame_index == 0 || *cut || changed || s->since + 1 >= s->stride;
    s->since = infer ? 0 : s->since + 1;
    if (s->scene_cut || s->change_threshold >= 0) {
        if (infer) {
            memcpy(s->thumb_at_map, s->thumb[1], THUMB_W * THUMB_H);
            s->have_at_map = 1;
        }
        FFSWAP(uint8_t *, s->thumb[0], s->thumb[1]);
        s->have_thumb = 1;
    }
    s->nb_cuts += *cut;
    return infer;
}

/** Frame -> RGB at the model's size -> normalised NCHW float tensor. */
static int preprocess(AVFilterContext *avctx, const AVFrame *f, float *x)
{
    SalROIContext *s = avctx->priv;
    const int n = s->in_w * s->in_h;
    uint8_t *dst[4] = { s->rgb };
    int dst_ls[4] = { 3 * s->in_w };
    int mx = 0;

    /* BGR24, as SaliencyModel.model_input(): swscale has a SIMD vertical filter and
     * conversion for BGR24 output on x86 and none for RGB24 (a third less CPU) */
    s->sws_rgb = get_sws(s->sws_rgb, f, s->in_w, s->in_h, AV_PIX_FMT_BGR24);
    if (!s->sws_rgb)
        return AVERROR(EINVAL);
    sws_scale(s->sws_rgb, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, dst_ls);
    if (s->image_max) {
        for (int i = 0; i < 3 * n; i++)
            mx = FFMAX(mx, s->rgb[i]);
    }
    /* the same float32 operations as SaliencyModel.preprocess():
     * (v / max - mean) / std, or (v * (1 / 255) - mean) / std */
    for (int c = 0; c < 3; c++) {
        float *plane = x + c * n;
        const uint8_t *src = s->rgb + 2 - c; /* R, G, B planes from B, G, R bytes */
        const float mean = s->mean[c], std = s->std[c];
        if (s->image_max) {
            const float m = FFMAX((float)mx, 1e-6f);
            for (int i = 0; i < n; i++)
                plane[i] = ((float)src[3 * i] / m - mean) / std;
        } else {
            const float k = (float)(1.0 / 255.0);
            for (int i = 0; i < n; i++)
                plane[i] = ((float)src[3 * i] * k - mean) / std;
        }
    }
    return 0;
}

static int queue_frame(AVFilterContext *avctx, AVFrame *f)
{
    SalROIContext *s = avctx->priv;
    SalROIEntry *e = &s->queue[(s->head + s->nb_queued) % s->cap];
    int cut, infer, ret;

    infer = decide(avctx, f, &cut);
    if (infer < 0) {
        av_frame_free(&f);
        return infer;
    }
    *e = (SalROIEntry) { .frame = f, .cut = cut, .disabled = avctx->is_disabled };
    s->nb_queued++;
    s->frame_index++;
    if (infer) {
        SalROIJob *job = av_mallocz(sizeof(*job));
        if (!job || !(job->input = av_malloc_array(3 * s->in_w * s->in_h, sizeof(float)))) {
            free_job(&job);
            return AVERROR(ENOMEM);
        }
        e->job = job;
        s->nb_inferences++;
        if ((ret = preprocess(avctx, f, job->input)) < 0)
            return ret;
        if ((ret = submit(avctx, job)) < 0)
            return ret;
    }
    return 0;
}

/* -- maps out: blending and planning --------------------------------------- */

static SalROIEntry *entry(SalROIContext *s, int i)
{
    return &s->queue[(s->head + i) % s->cap];
}

/** The key map of a finished job (MapState.from_prediction). */
static int key_map(SalROIContext *s, SalROIEntry *e, const uint8_t *prev)
{
    const int n = s->out_w * s->out_h;
    const float a = s->smoothing;

    if (e->job->error < 0)
        return e->job->error;
    if (!s->blend && !(s->blend = av_malloc(n)))
        return AVERROR(ENOMEM);
    if (!(e->map = av_malloc(n)))
        return AVERROR(ENOMEM);
    if (a > 0 && prev && !e->cut)               /* smoothing, in place: the job's map is freed next */
        for (int i = 0; i < n; i++)
            e->job->pred[i] = a * (prev[i] / 255.0f) + (1 - a) * e->job->pred[i];
    vmaf_roi_quantise(e->job->pred, n, e->map);  /* rint(clip(v, 0, 1) * 255), as the package */
    free_job(&e->job);
    return 0;
}

/**
 * Send the oldest queued frame with its map: map, or with map2 the blend
 * (1 - weight2) * map + weight2 * map2, planned from the two maps' block means
 * (roi.Blend) and made, rounded as pipeline.py makes it, only for the maps file.
 */
static int output_head(AVFilterContext *avctx, const uint8_t *map, const uint8_t *map2, double weight2)
{
    SalROIContext *s = avctx->priv;
    SalROIEntry *e = entry(s, 0);
    AVFrame *f = e->frame;
    const int n = s->out_w * s->out_h;
    const uint8_t *out = map;
    int ret = 0;

    e->frame = NULL;
    s->head = (s->head + 1) % s->cap;
    s->nb_queued--;
    if (s->maps_file && map2) {
        const float w = (float)weight2, w0 = (float)(1.0 - weight2);
        for (int i = 0; i < n; i++)
            s->blend[i] = lrintf(w0 * map[i] + w * map2[i]);
        out = s->blend;
    }
    if (s->maps_file && fwrite(out, 1, n, s->maps_file) != n) {
        av_log(avctx, AV_LOG_ERROR, "Cannot write the maps to '%s'.\n", s->maps_path);
        av_frame_free(&f);
        return AVERROR(EIO);
    }
    if (!e->disabled)
        ret = set_regions(avctx, f, &(SalROIMap) { .data = map, .linesize = s->out_w,
                                                   .w = s->out_w, .h = s->out_h,
                                                   .data2 = map2, .weight2 = weight2 });
    if (ret < 0) {
        av_frame_free(&f);
        return ret;
    }
    s->nb_out++;
    return ff_filter_frame(avctx->outputs[0], f);
}

/**
 * Hand out the frames whose map is known, in order (pipeline.with_maps).
 * With block set, wait for the model where needed: at least one frame goes
 * out.  Returns the number of frames sent, or an error.
 */
static int flush_ready(AVFilterContext *avctx, int block)
{
    SalROIContext *s = avctx->priv;
    int sent = 0, ret;

    while (s->nb_queued) {
        SalROIEntry *e = entry(s, 0);
        int next = -1;

        if (e->job || e->map) {                 /* a key frame */
            if (e->job) {
                if (!job_done(s, e->job, block))
                    break;
                if ((ret = key_map(s, e, s->key)) < 0)
                    return ret;
            }
            FFSWAP(uint8_t *, s->key, e->map);
            av_freep(&e->map);
            if ((ret = output_head(avctx, s->key, NULL, 0.0)) < 0)
                return ret;
            sent++;
            block = 0;
            continue;
        }
        if (s->interpolate) {
            for (int i = 1; i < s->nb_queued; i++)
                if (entry(s, i)->job || entry(s, i)->map) {
                    next = i;
                    break;
                }
            if (next < 0 && !s->eof)            /* the next map is not even submitted yet */
                break;
        }
        if (next < 0) {                         /* hold: the last key map */
            if ((ret = output_head(avctx, s->key, NULL, 0.0)) < 0)
                return ret;
            sent++;
            continue;
        }
        {
            SalROIEntry *k = entry(s, next);
            if (k->job) {
                if (!job_done(s, k->job, block))
                    break;
                if ((ret = key_map(s, k, s->key)) < 0)
                    return ret;
            }
            /* frames 1..count between the two key frames: blend by position, not across a cut */
            for (int j = 1; j <= next; j++) {
                ret = k->cut ? output_head(avctx, s->key, NULL, 0.0)
                             : output_head(avctx, s->key, k->map, (double)j / (next + 1));
                if (ret < 0)
                    return ret;
                sent++;
            }
            block = 0;
        }
    }
    return sent;
}

static av_cold int model_open(AVFilterContext *avctx);

static int model_config_input(AVFilterLink *inlink)
{
    AVFilterContext *avctx = inlink->dst;
    SalROIContext *s = avctx->priv;
    int ret;

    if (!s->opened && (ret = model_open(avctx)) < 0)
        return ret;
    if (!sws_isSupportedInput(inlink->format)) {
        av_log(avctx, AV_LOG_ERROR, "Pixel format %s cannot be read by swscale.\n",
               av_get_pix_fmt_name(inlink->format));
        return AVERROR(EINVAL);
    }
    s->cap = s->lookahead ? s->lookahead : 2 * s->stride + 1;
    s->cap = FFMAX(s->cap, s->stride + 1);
    if (!(s->queue = av_calloc(s->cap, sizeof(*s->queue))) ||
        !(s->rgb = av_malloc(3 * s->in_w * s->in_h)) ||
        !(s->thumb[0] = av_malloc(THUMB_W * THUMB_H)) ||
        !(s->thumb[1] = av_malloc(THUMB_W * THUMB_H)) ||
        !(s->thumb_at_map = av_malloc(THUMB_W * THUMB_H)))
        return AVERROR(ENOMEM);
    return 0;
}

static int model_config_output(AVFilterLink *outlink)
{
    AVFilterContext *avctx = outlink->src;
    SalROIContext *s = avctx->priv;

    if (s->clamp > s->qp_scale)
        av_log(avctx, AV_LOG_WARNING, "clamp=%d is beyond qp_scale=%d: "
               "encoders clip qoffset to [-1, 1].\n", s->clamp, s->qp_scale);
    return 0;
}

static int model_activate(AVFilterContext *avctx)
{
    SalROIContext *s = avctx->priv;
    AVFilterLink *inlink = avctx->inputs[0], *outlink = avctx->outputs[0];
    int ret, status;
    int64_t pts;

    FF_FILTER_FORWARD_STATUS_BACK(outlink, inlink);

    while (!s->eof && s->nb_queued < s->cap) {
        AVFrame *in;
        ret = ff_inlink_consume_frame(inlink, &in);
        if (ret < 0)
            return ret;
        if (!ret)
            break;
        if ((ret = queue_frame(avctx, in)) < 0)
            return ret;
    }
    if (!s->eof && s->nb_queued < s->cap && ff_inlink_acknowledge_status(inlink, &status, &pts)) {
        s->eof = 1;
        s->eof_status = status;
        s->eof_pts = pts;
    }

    ret = flush_ready(avctx, s->eof || s->nb_queued >= s->cap);
    if (ret < 0)
        return ret;
    if (ret > 0) {
        ff_filter_set_ready(avctx, 100);
        return 0;
    }

    if (s->eof && !s->nb_queued) {
        ff_outlink_set_status(outlink, s->eof_status, s->eof_pts);
        return 0;
    }
    if (!s->eof && s->nb_queued < s->cap) {
        if (ff_inlink_queued_frames(inlink)) {
            ff_filter_set_ready(avctx, 100);
            return 0;
        }
        if (ff_outlink_frame_wanted(outlink) || s->nb_queued) {
            ff_inlink_request_frame(inlink);
            return 0;
        }
    }
    return FFERROR_NOT_READY;
}

static av_cold int model_start(AVFilterContext *avctx)
{
    SalROIContext *s = avctx->priv;
    AVFilterPad pad = {
        .name         = "default",
        .type         = AVMEDIA_TYPE_VIDEO,
        .config_props = model_config_input,
    };

    s->model_mode = 1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    return ff_append_inpad(avctx, &pad);
}

/**
 * The model, the maps file and the worker, when the input is configured rather than at init:
 * ffmpeg's CLI builds each filter graph twice (a graph it only inspects and frees, then the
 * one it runs), so loading at init loaded the model twice and released and created the ONNX
 * Runtime environment again in between, which ONNX Runtime does not support.
 */
static av_cold int model_open(AVFilterContext *avctx)
{
    SalROIContext *s = avctx->priv;
    int ret;

    s->opened = 1;
    if ((ret = model_init(avctx)) < 0)
        return ret;
    if (s->maps_path && !(s->maps_file = fopen(s->maps_path, "wb"))) {
        av_log(avctx, AV_LOG_ERROR, "Cannot open '%s' for the maps: %s.\n",
               s->maps_path, strerror(errno));
        return AVERROR(errno);
    }
    if (s->async) {
        if ((ret = pthread_create(&s->worker, NULL, worker_main, avctx))) {
            s->async = 0;
            return AVERROR(ret);
        }
        s->worker_running = 1;
    }
    return 0;
}

static av_cold void model_uninit(AVFilterContext *avctx)
{
    SalROIContext *s = avctx->priv;

    if (s->worker_running) {
        pthread_mutex_lock(&s->lock);
        s->stop = 1;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->worker, NULL);
        s->worker_running = 0;
    }
    if (s->nb_inferences)
        av_log(avctx, AV_LOG_VERBOSE, "%"PRId64" frames, %"PRId64" inferences (%"PRId64" on scene "
               "cuts), %.1f ms per inference, maps %dx%d.\n", s->nb_out, s->nb_inferences, s->nb_cuts,
               s->infer_us / 1000.0 / FFMAX(s->nb_inferences, 1), s->out_w, s->out_h);
    for (int i = 0; s->queue && i < s->nb_queued; i++) {
        SalROIEntry *e = entry(s, i);
        av_frame_free(&e->frame);
        free_job(&e->job);
        av_freep(&e->map);
    }
    av_freep(&s->queue);
    if (s->model_mode) {
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
    }
    model_uninit_ort(s);
    sws_freeContext(s->sws_rgb);
    sws_freeContext(s->sws_thumb);
    av_freep(&s->rgb);
    av_freep(&s->thumb[0]);
    av_freep(&s->thumb[1]);
    av_freep(&s->gray);
    av_freep(&s->thumb_at_map);
    av_freep(&s->key);
    av_freep(&s->blend);
    if (s->maps_file)
        fclose(s->maps_file);
}

static int activate(AVFilterContext *avctx)
{
    SalROIContext *ctx = avctx->priv;
    if (ctx->model_mode)
        return model_activate(avctx);
    return ff_framesync_activate(&ctx->fs);
}

static const AVFilterPad salroi_main_inputs[] = {
    {
        .name         = "main",
        .type         = AVMEDIA_TYPE_VIDEO,
    },
    {
        .name         = "saliency",
        .type         = AVMEDIA_TYPE_VIDEO,
        .config_props = config_saliency,
    },
};

static av_cold int init(AVFilterContext *avctx)
{
    SalROIContext *ctx = avctx->priv;

    if (ctx->model)
        return model_start(avctx);
    for (int i = 0; i < FF_ARRAY_ELEMS(salroi_main_inputs); i++) {
        AVFilterPad pad = salroi_main_inputs[i];
        int ret = ff_append_inpad(avctx, &pad);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static av_cold void uninit(AVFilterContext *avctx)
{
    SalROIContext *ctx = avctx->priv;

    if (ctx->nb_unmatched || ctx->nb_no_map)
        av_log(avctx, AV_LOG_WARNING, "%"PRId64" of %"PRId64" frames had no saliency "
               "map and %"PRId64" used a map with another timestamp.\n",
               ctx->nb_no_map, ctx->nb_frames, ctx->nb_unmatched);
    if (ctx->nb_no_map + ctx->nb_unmatched > ctx->nb_frames / 2.0)
        av_log(avctx, AV_LOG_WARNING, "Most frames (%"PRId64" of %"PRId64") had "
               "no saliency map at their timestamp: the map stream is not of "
               "this video or not at its frame rate, and the regions do not "
               "follow the picture. Make a matching map with "
               "'vmaf-roi saliency IN -o maps.mkv'.\n",
               ctx->nb_no_map + ctx->nb_unmatched, ctx->nb_frames);

    model_uninit(avctx);
    ff_framesync_uninit(&ctx->fs);
    av_freep(&ctx->rows);
}

static int config_output_any(AVFilterLink *outlink)
{
    SalROIContext *ctx = outlink->src->priv;
    return ctx->model_mode ? model_config_output(outlink) : config_output(outlink);
}

static const AVFilterPad salroi_outputs[] = {
    {
        .name          = "default",
        .type          = AVMEDIA_TYPE_VIDEO,
        .config_props  = config_output_any,
    },
};

const AVFilter ff_vf_salroi = {
    .name            = "salroi",
    .description     = NULL_IF_CONFIG_SMALL("Set regions of interest from a saliency map or an ONNX saliency model."),
    .preinit         = salroi_preinit,
    .init            = init,
    .uninit          = uninit,
    .activate        = activate,
    .priv_size       = sizeof(SalROIContext),
    .priv_class      = &salroi_class,
    .inputs          = NULL,
    FILTER_OUTPUTS(salroi_outputs),
    FILTER_QUERY_FUNC(query_formats),
    .flags           = AVFILTER_FLAG_DYNAMIC_INPUTS |
                       AVFILTER_FLAG_SUPPORT_TIMELINE_INTERNAL |
                       AVFILTER_FLAG_METADATA_ONLY,
    .process_command = ff_filter_process_command,
};
