/*
 * Region of interest side data to per-block quantiser offset maps
 *
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
 * License along with this program; if not, write to the Free Software
 * Foundation, Inc., 51 Franklin Street, Fifth Floor, Boston, MA 02110-1301 USA
 */

#include <math.h>
#include <stdlib.h>

#include "libavutil/avassert.h"
#include "libavutil/common.h"
#include "libavutil/error.h"
#include "libavutil/frame.h"
#include "libavutil/log.h"

#include "roi_map.h"

int ff_roi_map_fill(void *logctx, const uint8_t *data, size_t size,
                    int width, int height, int block_size, int range,
                    int16_t *map)
{
    const int bw = (width  + block_size - 1) / block_size;
    const int bh = (height + block_size - 1) / block_size;
    const AVRegionOfInterest *roi = (const AVRegionOfInterest *)data;
    uint32_t roi_size;
    int nb_rois, nonzero = 0;

    av_assert0(block_size > 0 && range >= 0 && range <= FF_ROI_MAP_MAX_RANGE);

    for (int i = 0; i < bw * bh; i++)
        map[i] = 0;
    if (!size)
        return 0;

    if (size < sizeof(roi->self_size) || !(roi_size = roi->self_size) ||
        roi_size < sizeof(*roi) || size % roi_size) {
        av_log(logctx, AV_LOG_ERROR, "Invalid AVRegionOfInterest.self_size.\n");
        return AVERROR(EINVAL);
    }
    nb_rois = size / roi_size;

    /* The first region in the list applies where regions overlap:
     * paint them last to first. */
    for (int i = nb_rois - 1; i >= 0; i--) {
        int startx, endx, starty, endy, offset;
        double qoffset;

        roi = (const AVRegionOfInterest *)(data + (size_t)roi_size * i);
        if (roi->qoffset.den == 0) {
            av_log(logctx, AV_LOG_ERROR,
                   "AVRegionOfInterest.qoffset.den must not be zero.\n");
            return AVERROR(EINVAL);
        }
        qoffset = av_clipd(roi->qoffset.num / (double)roi->qoffset.den, -1.0, 1.0);
        offset  = (int)round(qoffset * range);

        starty = av_clip(roi->top  / block_size, 0, bh);
        startx = av_clip(roi->left / block_size, 0, bw);
        endy   = av_clip((int)(((int64_t)roi->bottom + block_size - 1) / block_size), 0, bh);
        endx   = av_clip((int)(((int64_t)roi->right  + block_size - 1) / block_size), 0, bw);

        for (int y = starty; y < endy; y++)
            for (int x = startx; x < endx; x++)
                map[y * bw + x] = offset;
    }

    for (int i = 0; i < bw * bh; i++)
        nonzero += map[i] != 0;
    return nonzero;
}

#define NB_LEVELS (2 * FF_ROI_MAP_MAX_RANGE + 1)

typedef struct Candidate {
    int value;
    int count;
} Candidate;

/* more blocks first, then the larger magnitude, then the negative value */
static int cmp_importance(const void *a, const void *b)
{
    const Candidate *ca = a, *cb = b;
    if (ca->count != cb->count)
        return cb->count - ca->count;
    if (FFABS(ca->value) != FFABS(cb->value))
        return FFABS(cb->value) - FFABS(ca->value);
    return ca->value - cb->value;
}

static int cmp_descending(const void *a, const void *b)
{
    return *(const int16_t *)b - *(const int16_t *)a;
}

int ff_roi_map_quantize(int16_t *map, int nb_blocks, int max_values,
                        int keep_nonnegative, int16_t *values, uint8_t *index)
{
    int count[NB_LEVELS] = { 0 };
    uint8_t lut[NB_LEVELS];
    Candidate cand[NB_LEVELS];
    int nb_cand = 0, nb_kept = 0, nonnegative = 0;

    av_assert0(max_values >= 1 && max_values <= 256);

    for (int i = 0; i < nb_blocks; i++) {
        av_assert0(FFABS(map[i]) <= FF_ROI_MAP_MAX_RANGE);
        count[map[i] + FF_ROI_MAP_MAX_RANGE]++;
    }

    for (int v = 0; v <= FF_ROI_MAP_MAX_RANGE; v++)
        nonnegative += count[v + FF_ROI_MAP_MAX_RANGE];
    if (count[FF_ROI_MAP_MAX_RANGE] || (keep_nonnegative && !nonnegative))
        values[nb_kept++] = 0;
    for (int v = -FF_ROI_MAP_MAX_RANGE; v <= FF_ROI_MAP_MAX_RANGE; v++) {
        if (v && count[v + FF_ROI_MAP_MAX_RANGE]) {
            cand[nb_cand].value = v;
            cand[nb_cand].count = count[v + FF_ROI_MAP_MAX_RANGE];
            nb_cand++;
        }
    }
    qsort(cand, nb_cand, sizeof(*cand), cmp_importance);
    for (int i = 0; i < nb_cand && nb_kept < max_values; i++)
        values[nb_kept++] = cand[i].value;
    qsort(values, nb_kept, sizeof(*values), cmp_descending);

    /* nearest kept value; as near: the one nearer to 0 (unique, since two
     * values as near on either side of v are symmetric about 0 only for
     * v = 0, which is kept whenever it occurs) */
    for (int v = -FF_ROI_MAP_MAX_RANGE; v <= FF_ROI_MAP_MAX_RANGE; v++) {
        int best = -1;
        if (!count[v + FF_ROI_MAP_MAX_RANGE])
            continue;
        for (int k = 0; k < nb_kept; k++) {
            int d = FFABS(v - values[k]);
            if (best < 0 || d < FFABS(v - values[best]) ||
                (d == FFABS(v - values[best]) && FFABS(values[k]) < FFABS(values[best])))
                best = k;
        }
        lut[v + FF_ROI_MAP_MAX_RANGE] = best;
    }

    for (int i = 0; i < nb_blocks; i++) {
        int k = lut[map[i] + FF_ROI_MAP_MAX_RANGE];
        map[i] = values[k];
        if (index)
            index[i] = k;
    }
    return nb_kept;
}
