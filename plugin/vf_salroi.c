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
 * The first input is passed through; every frame gets AVRegionOfInterest
 * side data planned from the gray saliency map on the second input: the
 * frame is cut into blocks, each block gets a QP offset from the mean
 * saliency under it, and equal offsets are merged into rectangles.  The
 * planner is the one of vmaf-roi (vmaf_roi/roi.py) and gives the same
 * region list for the same 8-bit map.
 */

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "libavutil/common.h"
#include "libavutil/mem.h"
#include "libavutil/opt.h"
#include "libavutil/pixdesc.h"
#include "libavutil/timestamp.h"
#include "avfilter.h"
#include "filters.h"
#include "formats.h"
#include "framesync.h"
#include "video.h"

enum SalROIMode {
    MODE_BOTH,
    MODE_LOWER,
    NB_MODES,
};

typedef struct SalROIRect {
    int by0, by1;   ///< block rows [by0, by1)
    int bx0, bx1;   ///< block columns [bx0, bx1)
    int q;          ///< QP offset in encoder steps
} SalROIRect;

typedef struct SalROIContext {
    const AVClass *class;
    FFFrameSync fs;

    double strength;
    int block;
    int max_regions;
    int mode;
    int clamp;
    int qp_scale;
    int strict;

    /* scratch buffers, grown on demand */
    int *q;                     ///< per-block offsets, bw * bh
    unsigned q_size;
    SalROIRect *rects;
    unsigned rects_size;
    int *open;                  ///< rectangle index per bx0, previous row and current row
    unsigned open_size;
    int64_t *edges;             ///< sx0, sx1, sy0, sy1
    unsigned edges_size;
    uint64_t *colsum;           ///< prefix sums of one band of map rows, w + 1
    unsigned colsum_size;

    double ts_tolerance;        ///< seconds, half the main frame interval
    int64_t nb_frames;
    int64_t nb_unmatched;
    int64_t nb_no_map;
    int     warned_unmatched;
} SalROIContext;

#define OFFSET(x) offsetof(SalROIContext, x)
#define FLAGS  AV_OPT_FLAG_VIDEO_PARAM | AV_OPT_FLAG_FILTERING_PARAM
#define TFLAGS AV_OPT_FLAG_VIDEO_PARAM | AV_OPT_FLAG_FILTERING_PARAM | AV_OPT_FLAG_RUNTIME_PARAM
static const AVOption salroi_options[] = {
    { "strength", "QP steps between a fully salient block and neutral saliency",
      OFFSET(strength), AV_OPT_TYPE_DOUBLE, { .dbl = 4.0 }, 0, DBL_MAX, TFLAGS },
    { "block", "block size in pixels (doubled until the regions fit max_regions)",
      OFFSET(block), AV_OPT_TYPE_INT, { .i64 = 16 }, 1, INT_MAX / 4, FLAGS },
    { "max_regions", "maximum number of regions per frame",
      OFFSET(max_regions), AV_OPT_TYPE_INT, { .i64 = 128 }, 1, INT_MAX, FLAGS },
    { "mode", "which way the QP may move",
      OFFSET(mode), AV_OPT_TYPE_INT, { .i64 = MODE_BOTH }, 0, NB_MODES - 1, TFLAGS, .unit = "mode" },
        { "both",  "lower QP where salient, raise it elsewhere", 0, AV_OPT_TYPE_CONST, { .i64 = MODE_BOTH  }, 0, 0, TFLAGS, .unit = "mode" },
        { "lower", "only lower QP where salient",                0, AV_OPT_TYPE_CONST, { .i64 = MODE_LOWER }, 0, 0, TFLAGS, .unit = "mode" },
    { "clamp", "largest QP offset in either direction",
      OFFSET(clamp), AV_OPT_TYPE_INT, { .i64 = 10 }, 0, INT_MAX, TFLAGS },
    { "qp_scale", "QP range of the encoder: qoffset = offset / qp_scale",
      OFFSET(qp_scale), AV_OPT_TYPE_INT, { .i64 = 51 }, 1, INT_MAX, FLAGS },
    { "strict", "fail when a frame has no saliency map with a matching timestamp",
      OFFSET(strict), AV_OPT_TYPE_BOOL, { .i64 = 0 }, 0, 1, FLAGS },
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

/**
 * Map-coordinate range of each block along one axis: frame size n,
 * map size m, block size b.  s0[i] = floor(x0 * m / n),
 * s1[i] = max(ceil(x1 * m / n), s0[i] + 1).
 */
static void block_edges(int64_t *s0, int64_t *s1, int n, int m, int b)
{
    for (int i = 0; (int64_t)i * b < n; i++) {
        int64_t x0 = (int64_t)i * b;
        int64_t x1 = FFMIN(x0 + b, n);

        s0[i] = x0 * m / n;
        s1[i] = FFMAX((x1 * m + n - 1) / n, s0[i] + 1);
    }
}

/**
 * Steps 1-4 of the planner for one block size: per-block offsets, then
 * rectangles of equal non-zero offsets.  Returns the number of rectangles,
 * or -1 as soon as there are more than limit of them (limit < 0: no limit).
 */
static int plan_blocks(SalROIContext *ctx, const AVFrame *map,
                       int width, int height, int b, int limit)
{
    const int bw = (width  + b - 1) / b;
    const int bh = (height + b - 1) / b;
    const int w  = map->width;
    int64_t *sx0 = ctx->edges,          *sx1 = sx0 + bw;
    int64_t *sy0 = sx1 + bw,            *sy1 = sy0 + bh;
    int *open_prev = ctx->open, *open_cur = ctx->open + bw;
    int nb_rects = 0;

    block_edges(sx0, sx1, width,  w,           b);
    block_edges(sy0, sy1, height, map->height, b);
    for (int bx = 0; bx < bw; bx++)
        open_prev[bx] = -1;

    for (int by = 0; by < bh; by++) {
        int *q = ctx->q + by * bw;
        uint64_t *prefix = ctx->colsum;

        /* prefix[x] = sum of map columns [0, x) over rows [sy0, sy1) */
        memset(prefix, 0, (w + 1) * sizeof(*prefix));
        for (int64_t y = sy0[by]; y < sy1[by]; y++) {
            const uint8_t *row = map->data[0] + y * map->linesize[0];
            for (int x = 0; x < w; x++)
                prefix[x + 1] += row[x];
        }
        for (int x = 0; x < w; x++)
            prefix[x + 1] += prefix[x];

        for (int bx = 0; bx < bw; bx++) {
            const uint64_t sum   = prefix[sx1[bx]] - prefix[sx0[bx]];
            const int64_t  count = (sy1[by] - sy0[by]) * (sx1[bx] - sx0[bx]);
            const double   mean  = (double)sum / (double)count / 255.0;
            double d = round(-ctx->strength * (2.0 * mean - 1.0));

            d = FFMIN(FFMAX(d, -ctx->clamp), ctx->clamp);
            if (ctx->mode == MODE_LOWER)
                d = FFMIN(d, 0.0);
            q[bx] = (int)d;
        }

        /* runs of equal non-zero offsets; extend the rectangle that ended on
         * the row above with the same columns and offset, else open one */
        for (int bx = 0; bx < bw; bx++)
            open_cur[bx] = -1;
        for (int bx0 = 0, bx1; bx0 < bw; bx0 = bx1) {
            const int v = q[bx0];
            int idx;

            for (bx1 = bx0 + 1; bx1 < bw && q[bx1] == v; bx1++)
                ;
            if (!v)
                continue;
            idx = open_prev[bx0];
            if (idx >= 0 && ctx->rects[idx].bx1 == bx1 && ctx->rects[idx].q == v) {
                ctx->rects[idx].by1 = by + 1;
            } else {
                if (limit >= 0 && nb_rects >= limit)
                    return -1;
                idx = nb_rects++;
                ctx->rects[idx] = (SalROIRect) {
                    .by0 = by, .by1 = by + 1, .bx0 = bx0, .bx1 = bx1, .q = v,
                };
            }
            open_cur[bx0] = idx;
        }
        FFSWAP(int *, open_prev, open_cur);
    }

    return nb_rects;
}

static int cmp_rects(const void *a, const void *b)
{
    const SalROIRect *ra = a, *rb = b;
    const int aa = abs(ra->q), ab = abs(rb->q);

    if (aa != ab)
        return aa > ab ? -1 : 1;
    if (ra->q != rb->q)
        return ra->q < rb->q ? -1 : 1;
    if (ra->by0 != rb->by0)
        return ra->by0 < rb->by0 ? -1 : 1;
    return (ra->bx0 > rb->bx0) - (ra->bx0 < rb->bx0);
}

static int set_regions(AVFilterContext *avctx, AVFrame *frame, const AVFrame *map)
{
    SalROIContext *ctx = avctx->priv;
    const int width = frame->width, height = frame->height;
    const int bw = (width  + ctx->block - 1) / ctx->block;
    const int bh = (height + ctx->block - 1) / ctx->block;
    AVRegionOfInterest *roi;
    AVFrameSideData *sd;
    int b = ctx->block, nb_rects, ret;

    av_frame_remove_side_data(frame, AV_FRAME_DATA_REGIONS_OF_INTEREST);

    /* the first block size needs the most room; larger ones fit in it */
    if ((ret = grow(&ctx->q,      &ctx->q_size,      (size_t)bw * bh, sizeof(*ctx->q)))      < 0 ||
        (ret = grow(&ctx->rects,  &ctx->rects_size,  (size_t)bw * bh, sizeof(*ctx->rects)))  < 0 ||
        (ret = grow(&ctx->open,   &ctx->open_size,   2 * (size_t)bw,  sizeof(*ctx->open)))   < 0 ||
        (ret = grow(&ctx->edges,  &ctx->edges_size,  2 * ((size_t)bw + bh), sizeof(*ctx->edges))) < 0 ||
        (ret = grow(&ctx->colsum, &ctx->colsum_size, (size_t)map->width + 1, sizeof(*ctx->colsum))) < 0)
        return ret;

    for (;;) {
        const int last = b >= FFMAX(width, height);

        nb_rects = plan_blocks(ctx, map, width, height, b, last ? -1 : ctx->max_regions);
        if (nb_rects >= 0)
            break;
        b *= 2;
    }
    if (b != ctx->block)
        av_log(avctx, AV_LOG_DEBUG, "Block size %d to fit %d regions.\n",
               b, ctx->max_regions);

    if (!nb_rects)
        return 0;

    qsort(ctx->rects, nb_rects, sizeof(*ctx->rects), cmp_rects);

    sd = av_frame_new_side_data(frame, AV_FRAME_DATA_REGIONS_OF_INTEREST,
                                nb_rects * sizeof(*roi));
    if (!sd)
        return AVERROR(ENOMEM);
    roi = (AVRegionOfInterest *)sd->data;
    for (int i = 0; i < nb_rects; i++) {
        const SalROIRect *r = &ctx->rects[i];

        roi[i] = (AVRegionOfInterest) {
            .self_size = sizeof(*roi),
            .top       = r->by0 * b,
            .bottom    = FFMIN((int64_t)r->by1 * b, height),
            .left      = r->bx0 * b,
            .right     = FFMIN((int64_t)r->bx1 * b, width),
            .qoffset   = av_make_q(r->q, ctx->qp_scale),
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

    ret = set_regions(avctx, frame, map);
    if (ret < 0)
        goto fail;

    return ff_filter_frame(outlink, frame);

fail:
    av_frame_free(&frame);
    return ret;
}

static int config_output(AVFilterLink *outlink)
{
    AVFilterContext *avctx = outlink->src;
    SalROIContext     *ctx = avctx->priv;
    AVFilterLink   *inlink = avctx->inputs[0];
    FilterLink         *il = ff_filter_link(inlink);
    FilterLink         *ol = ff_filter_link(outlink);
    int ret;

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

static int activate(AVFilterContext *avctx)
{
    SalROIContext *ctx = avctx->priv;
    return ff_framesync_activate(&ctx->fs);
}

static av_cold void uninit(AVFilterContext *avctx)
{
    SalROIContext *ctx = avctx->priv;

    if (ctx->nb_unmatched || ctx->nb_no_map)
        av_log(avctx, AV_LOG_WARNING, "%"PRId64" of %"PRId64" frames had no saliency "
               "map and %"PRId64" used a map with another timestamp.\n",
               ctx->nb_no_map, ctx->nb_frames, ctx->nb_unmatched);

    ff_framesync_uninit(&ctx->fs);
    av_freep(&ctx->q);
    av_freep(&ctx->rects);
    av_freep(&ctx->open);
    av_freep(&ctx->edges);
    av_freep(&ctx->colsum);
}

static const AVFilterPad salroi_inputs[] = {
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

static const AVFilterPad salroi_outputs[] = {
    {
        .name          = "default",
        .type          = AVMEDIA_TYPE_VIDEO,
        .config_props  = config_output,
    },
};

const AVFilter ff_vf_salroi = {
    .name            = "salroi",
    .description     = NULL_IF_CONFIG_SMALL("Set regions of interest from a saliency map."),
    .preinit         = salroi_preinit,
    .uninit          = uninit,
    .activate        = activate,
    .priv_size       = sizeof(SalROIContext),
    .priv_class      = &salroi_class,
    FILTER_INPUTS(salroi_inputs),
    FILTER_OUTPUTS(salroi_outputs),
    FILTER_QUERY_FUNC(query_formats),
    .flags           = AVFILTER_FLAG_SUPPORT_TIMELINE_INTERNAL |
                       AVFILTER_FLAG_METADATA_ONLY,
    .process_command = ff_filter_process_command,
};
