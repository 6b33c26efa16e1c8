/*
 * The encode pass's per-frame loops in C: the ROI planner of roi.py (its docstring is the
 * specification) for uint8 maps and blends of two (in numpy some seventy small array operations a
 * frame) and the scene-cut thumbnail of pipeline.py.
 * Loaded with ctypes (native.py) when the package was built with a C compiler; the numpy
 * versions are used otherwise, and the tests hold the two to the same output. The FFmpeg filter
 * (plugin/vf_salroi.c) includes this file too, as libavfilter/salroi_plan.c, with
 * VMAF_ROI_PLAN_API defined static: one implementation in C for both.
 */

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#ifndef VMAF_ROI_PLAN_API
#define VMAF_ROI_PLAN_API
#endif

#if defined(__GNUC__) || defined(__clang__)
#define VMAF_ROI_PREFETCH(p) __builtin_prefetch(p)
#else
#define VMAF_ROI_PREFETCH(p) ((void)(p))
#endif

enum { PLAN_BOTH = 0, PLAN_LOWER = 1, PLAN_BALANCED = 2 };
enum { POOL_MEAN = 0, POOL_MAX = 1 };

typedef struct PlanRect {
    int by0, by1, bx0, bx1, q;
} PlanRect;

typedef struct PlanWork {
    int64_t *edges;     /* sx0, sx1 (bw each), sy0, sy1 (bh each) */
    uint64_t *prefix;   /* w + 1 (and w + 1 more for a second map) */
    uint32_t *col;      /* w */
    double *dv;         /* bw * bh */
    int *q;             /* bw * bh */
    int *open;          /* 2 * bw */
    PlanRect *rects;        /* bw * bh */
} PlanWork;

static void block_edges(int64_t *s0, int64_t *s1, int n, int m, int b)
{
    for (int i = 0; (int64_t)i * b < n; i++) {
        int64_t x0 = (int64_t)i * b;
        int64_t x1 = x0 + b < n ? x0 + b : n;

        s0[i] = x0 * m / n;
        s1[i] = (x1 * m + n - 1) / n;
        if (s1[i] < s0[i] + 1)
            s1[i] = s0[i] + 1;
    }
}

/* The sums of rows [y0, y1) of a map, column by column (col: w values; at most 2^24 rows),
 * then their running sum (prefix: w + 1 values). */
static void row_prefix(uint64_t *prefix, uint32_t *col, const uint8_t *map, int w, ptrdiff_t linesize,
                       int64_t y0, int64_t y1)
{
    int x = 0;

#ifdef __SSE2__
    /* 16 columns at a time: 16-bit sums over at most 256 rows (256 * 255 < 2^16), added to
     * 32-bit ones */
    const __m128i z = _mm_setzero_si128();

    for (; x + 16 <= w; x += 16) {
        __m128i s[4] = { z, z, z, z };

        for (int64_t y = y0; y < y1;) {
            const int64_t end = y1 - y > 256 ? y + 256 : y1;
            __m128i lo = z, hi = z;

            for (; y < end; y++) {
                const __m128i v = _mm_loadu_si128((const __m128i *)(map + y * linesize + x));

                lo = _mm_add_epi16(lo, _mm_unpacklo_epi8(v, z));
                hi = _mm_add_epi16(hi, _mm_unpackhi_epi8(v, z));
            }
            s[0] = _mm_add_epi32(s[0], _mm_unpacklo_epi16(lo, z));
            s[1] = _mm_add_epi32(s[1], _mm_unpackhi_epi16(lo, z));
            s[2] = _mm_add_epi32(s[2], _mm_unpacklo_epi16(hi, z));
            s[3] = _mm_add_epi32(s[3], _mm_unpackhi_epi16(hi, z));
        }
        for (int k = 0; k < 4; k++)
            _mm_storeu_si128((__m128i *)(col + x + 4 * k), s[k]);
    }
#endif
    if (x < w) {
        memset(col + x, 0, (size_t)(w - x) * sizeof(*col));
        for (int64_t y = y0; y < y1; y++) {
            const uint8_t *row = map + y * linesize;
            for (int i = x; i < w; i++)
                col[i] += row[i];
        }
    }
    prefix[0] = 0;
    for (x = 0; x < w; x++)
        prefix[x + 1] = prefix[x] + col[x];
}

/* The maximum of each column of map over rows [y0, y1): out[x] for x in [0, w). */
static void row_max(uint64_t *out, const uint8_t *map, int w, ptrdiff_t linesize, int64_t y0, int64_t y1)
{
    for (int x = 0; x < w; x++)
        out[x] = 0;
    for (int64_t y = y0; y < y1; y++) {
        const uint8_t *row = map + y * linesize;

        for (int x = 0; x < w; x++)
            out[x] = row[x] > out[x] ? row[x] : out[x];
    }
}

/* The maximum of cm[s0..s1), as a fraction of 255. */
static double span_max(const uint64_t *cm, int64_t s0, int64_t s1)
{
    uint64_t m = 0;

    for (int64_t x = s0; x < s1; x++)
        m = cm[x] > m ? cm[x] : m;
    return (double)m / 255.0;
}

/* Steps 1-4 for one block size; the number of rectangles, or -1 past limit (limit < 0: none).
 * map2 (or NULL): a second map of the same size; each block's value is then the blend
 * (1 - weight2) * s(map) + weight2 * s(map2), s the block's mean (pool POOL_MEAN) or maximum
 * (POOL_MAX). */
static int plan_blocks(PlanWork *wk, const uint8_t *map, const uint8_t *map2, double weight2, int w, int h,
                       ptrdiff_t linesize, ptrdiff_t linesize2, int width, int height, int b, double strength,
                       int max_offset, int mode, int pool, int limit)
{
    const int bw = (width + b - 1) / b, bh = (height + b - 1) / b;
    int64_t *sx0 = wk->edges, *sx1 = sx0 + bw, *sy0 = sx1 + bw, *sy1 = sy0 + bh;
    int *open_prev = wk->open, *open_cur = wk->open + bw;
    int nb = 0;

    block_edges(sx0, sx1, width, w, b);
    block_edges(sy0, sy1, height, h, b);
    for (int by = 0; by < bh; by++) {
        uint64_t *prefix = wk->prefix, *prefix2 = wk->prefix + w + 1;

        if (pool == POOL_MAX) {
            row_max(prefix, map, w, linesize, sy0[by], sy1[by]);
            if (map2)
                row_max(prefix2, map2, w, linesize2, sy0[by], sy1[by]);
            for (int bx = 0; bx < bw; bx++) {
                double s = span_max(prefix, sx0[bx], sx1[bx]);

                if (map2)
                    s = (1.0 - weight2) * s + weight2 * span_max(prefix2, sx0[bx], sx1[bx]);
                wk->dv[by * bw + bx] = -strength * (2.0 * s - 1.0);
            }
            continue;
        }
        row_prefix(prefix, wk->col, map, w, linesize, sy0[by], sy1[by]);
        if (map2)
            row_prefix(prefix2, wk->col, map2, w, linesize2, sy0[by], sy1[by]);
        for (int bx = 0; bx < bw; bx++) {
            const int64_t count = (sy1[by] - sy0[by]) * (sx1[bx] - sx0[bx]);
            double mean = (double)(prefix[sx1[bx]] - prefix[sx0[bx]]) / (double)count / 255.0;

            if (map2) {
                const double mean2 = (double)(prefix2[sx1[bx]] - prefix2[sx0[bx]]) / (double)count / 255.0;

                mean = (1.0 - weight2) * mean + weight2 * mean2;
            }
            wk->dv[by * bw + bx] = -strength * (2.0 * mean - 1.0);
        }
    }
    if (mode == PLAN_BALANCED) {
        double pos = 0.0, neg = 0.0;

        for (int i = 0; i < bw * bh; i++) {  /* row-major, as roi.py's cumsum */
            pos += wk->dv[i] > 0.0 ? wk->dv[i] : 0.0;
            neg += -wk->dv[i] > 0.0 ? -wk->dv[i] : 0.0;
        }
        if (pos > neg) {
            const double scale = neg / pos;

            for (int i = 0; i < bw * bh; i++)
                if (wk->dv[i] > 0)
                    wk->dv[i] *= scale;
        }
    }
    for (int bx = 0; bx < bw; bx++)
        open_prev[bx] = -1;
    for (int by = 0; by < bh; by++) {
        int *q = wk->q + by * bw, *t;

        for (int bx = 0; bx < bw; bx++) {
            double d = round(wk->dv[by * bw + bx]);

            if (d < -max_offset)
                d = -max_offset;
            if (d > max_offset)
                d = max_offset;
            if (mode == PLAN_LOWER && d > 0.0)
                d = 0.0;
            q[bx] = (int)d;
        }
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
            if (idx >= 0 && wk->rects[idx].bx1 == bx1 && wk->rects[idx].q == v) {
                wk->rects[idx].by1 = by + 1;
            } else {
                if (limit >= 0 && nb >= limit)
                    return -1;
                idx = nb++;
                wk->rects[idx] = (PlanRect){ .by0 = by, .by1 = by + 1, .bx0 = bx0, .bx1 = bx1, .q = v };
            }
            open_cur[bx0] = idx;
        }
        t = open_prev;
        open_prev = open_cur;
        open_cur = t;
    }
    return nb;
}

static int cmp_rects(const void *a, const void *b)
{
    const PlanRect *ra = a, *rb = b;
    const int aa = abs(ra->q), ab = abs(rb->q);

    if (aa != ab)
        return aa > ab ? -1 : 1;
    if (ra->q != rb->q)
        return ra->q < rb->q ? -1 : 1;
    if (ra->by0 != rb->by0)
        return ra->by0 < rb->by0 ? -1 : 1;
    return (ra->bx0 > rb->bx0) - (ra->bx0 < rb->bx0);
}

/**
 * Plan one uint8 map (w x h, rows linesize bytes apart) for a width x height frame; with map2
 * (same size, rows linesize2 apart; NULL: none) the blend (1 - weight2) * map + weight2 * map2,
 * without making it: each block mean is the blend of the two maps' block means (roi.py's spec,
 * step 2). pool: POOL_MEAN (the block's mean) or POOL_MAX (its maximum; a blend blends the
 * two maps' block maxima).
 * out: room for cap rows of (top, bottom, left, right, q), written in the spec's order.
 * Returns the number of rows; -1: out of memory; -2: more rows than cap; -3: bad arguments.
 * *block_used: the block size the budget ended on.
 */
VMAF_ROI_PLAN_API int vmaf_roi_plan_u8_blend(const uint8_t *map, const uint8_t *map2, double weight2, int w, int h,
                                             ptrdiff_t linesize, ptrdiff_t linesize2, int width, int height,
                                             int block, double strength, int max_offset, int mode, int pool,
                                             int max_regions, int64_t *out, int cap, int *block_used)
{
    const int bw = (width + block - 1) / block, bh = (height + block - 1) / block;
    PlanWork wk = { 0 };
    int b = block, nb, ret;

    if (!map || w < 1 || h < 1 || h > (1 << 24) || width < 1 || height < 1 || block < 1 || max_regions < 1 ||
        mode < PLAN_BOTH || mode > PLAN_BALANCED || pool < POOL_MEAN || pool > POOL_MAX || max_offset < 0 ||
        (map2 && !(weight2 >= 0.0 && weight2 <= 1.0)))
        return -3;
    /* the first block size needs the most room; larger ones fit in it */
    wk.edges = malloc(2 * ((size_t)bw + bh) * sizeof(*wk.edges));
    wk.prefix = malloc(2 * ((size_t)w + 1) * sizeof(*wk.prefix));
    wk.col = malloc((size_t)w * sizeof(*wk.col));
    wk.dv = malloc((size_t)bw * bh * sizeof(*wk.dv));
    wk.q = malloc((size_t)bw * bh * sizeof(*wk.q));
    wk.open = malloc(2 * (size_t)bw * sizeof(*wk.open));
    wk.rects = malloc((size_t)bw * bh * sizeof(*wk.rects));
    if (!wk.edges || !wk.prefix || !wk.col || !wk.dv || !wk.q || !wk.open || !wk.rects) {
        ret = -1;
        goto end;
    }
    for (;;) {
        const int last = b >= (width > height ? width : height);

        nb = plan_blocks(&wk, map, map2, weight2, w, h, linesize, linesize2, width, height, b, strength,
                         max_offset, mode, pool, last ? -1 : max_regions);
        if (nb >= 0)
            break;
        b *= 2;
    }
    if (nb > cap) {
        ret = -2;
        goto end;
    }
    qsort(wk.rects, nb, sizeof(*wk.rects), cmp_rects);
    for (int i = 0; i < nb; i++) {
        const PlanRect *r = &wk.rects[i];
        int64_t *o = out + 5 * i;

        o[0] = (int64_t)r->by0 * b;
        o[1] = (int64_t)r->by1 * b < height ? (int64_t)r->by1 * b : height;
        o[2] = (int64_t)r->bx0 * b;
        o[3] = (int64_t)r->bx1 * b < width ? (int64_t)r->bx1 * b : width;
        o[4] = r->q;
    }
    *block_used = b;
    ret = nb;
end:
    free(wk.edges);
    free(wk.prefix);
    free(wk.col);
    free(wk.dv);
    free(wk.q);
    free(wk.open);
    free(wk.rects);
    return ret;
}

/* -- a model map to uint8 (pipeline.MapState.from_prediction) --------------------------- */

/**
 * dst[i] = rint(clip(src[i], 0, 1) * 255) for n float32 values, as numpy computes it: float32
 * arithmetic, halves to even (the default rounding mode), NaN to 0. One pass instead of numpy's
 * four over the map; 16 values at a time with SSE2, the rest with lrintf.
 */
VMAF_ROI_PLAN_API void vmaf_roi_quantise(const float *src, ptrdiff_t n, uint8_t *dst)
{
    ptrdiff_t i = 0;

#ifdef __SSE2__
    /* the same steps, 16 values at a time: maxps returns its second operand (0) for NaN, and
     * cvtps2dq rounds as the rounding mode says (halves to even by default) */
    const __m128 zero = _mm_setzero_ps(), one = _mm_set1_ps(1.0f), scale = _mm_set1_ps(255.0f);

    for (; i + 16 <= n; i += 16) {
        __m128i q[4];

        for (int k = 0; k < 4; k++) {
            __m128 v = _mm_max_ps(_mm_loadu_ps(src + i + 4 * k), zero);

            q[k] = _mm_cvtps_epi32(_mm_mul_ps(_mm_min_ps(v, one), scale));
        }
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm_packus_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3])));
    }
#endif
    for (; i < n; i++) {
        float v = src[i];

        v = v > 0.0f ? v : 0.0f;        /* NaN too */
        v = v < 1.0f ? v : 1.0f;
        dst[i] = (uint8_t)lrintf(v * 255.0f);
    }
}

/* -- the scene-cut thumbnail (pipeline.thumbnail is the specification) ------------------- */

#define VMAF_ROI_THUMB_W 64
#define VMAF_ROI_THUMB_H 36
#define VMAF_ROI_THUMB_K 4 /* K x K luma samples per cell */

/**
 * The 64x36 thumbnail of one luma plane (width x height samples, rows linesize bytes apart):
 * cell (cy, cx) is the rounded mean of the K x K samples at rows ((2t + 1) * height) /
 * (2 * 36 * K), t = K * cy ... K * cy + K - 1, and likewise columns. bytes: 1 (8-bit samples)
 * or 2 (16-bit little-endian, taken >> shift and capped at 255). Unless full, the samples are
 * limited-range levels and each cell is mapped to full range: round((v - 16) * 255 / 219),
 * clipped to 0-255. Returns 0, or -1 for bad arguments.
 */
VMAF_ROI_PLAN_API int vmaf_roi_thumb(const uint8_t *plane, ptrdiff_t linesize, int width, int height,
                                     int bytes, int shift, int full, uint8_t *out)
{
    enum { TW = VMAF_ROI_THUMB_W, TH = VMAF_ROI_THUMB_H, K = VMAF_ROI_THUMB_K };
    int xs[TW * K];

    if (!plane || !out || width < 1 || height < 1 || (bytes != 1 && bytes != 2) || shift < 0 || shift > 15)
        return -1;
    for (int t = 0; t < TW * K; t++)
        xs[t] = (int)(((int64_t)(2 * t + 1) * width) / (2 * TW * K));
    /* The frame is fresh from the decoder, mostly not in this core's caches, and the sample
     * rows are far apart: the cache lines of the next cell row's sample rows are requested
     * while this one sums, instead of one miss after another (on decoded 640x480 frames
     * about 70 -> 20 us). */
    for (int cy = -1; cy < TH; cy++) {
        unsigned sum[TW] = { 0 };

        if (cy + 1 < TH) {
            for (int k = 0; k < K; k++) {
                const int64_t y = ((int64_t)(2 * (K * (cy + 1) + k) + 1) * height) / (2 * TH * K);
                const uint8_t *row = plane + y * linesize;

                for (int x = 0; x < width * bytes; x += 64)
                    VMAF_ROI_PREFETCH(row + x);
                VMAF_ROI_PREFETCH(row + width * bytes - 1);
            }
        }
        if (cy < 0)
            continue;
        for (int k = 0; k < K; k++) {
            const int64_t y = ((int64_t)(2 * (K * cy + k) + 1) * height) / (2 * TH * K);
            const uint8_t *row = plane + y * linesize;

            if (bytes == 1) {
                for (int cx = 0; cx < TW; cx++)
                    for (int j = 0; j < K; j++)
                        sum[cx] += row[xs[K * cx + j]];
            } else {
                for (int cx = 0; cx < TW; cx++)
                    for (int j = 0; j < K; j++) {
                        const uint8_t *p = row + 2 * (ptrdiff_t)xs[K * cx + j];
                        const unsigned v = (unsigned)(p[0] | p[1] << 8) >> shift;

                        sum[cx] += v < 255 ? v : 255;
                    }
            }
        }
        for (int cx = 0; cx < TW; cx++) {
            int v = (int)((sum[cx] + K * K / 2) / (K * K));

            if (!full) {
                v = v <= 16 ? 0 : ((v - 16) * 255 * 2 + 219) / 438;
                v = v < 255 ? v : 255;
            }
            out[cy * TW + cx] = (uint8_t)v;
        }
    }
    return 0;
}

/** Sum of absolute differences of two thumbnails. */
VMAF_ROI_PLAN_API int64_t vmaf_roi_thumb_sad(const uint8_t *a, const uint8_t *b)
{
    int64_t sum = 0;

    for (int i = 0; i < VMAF_ROI_THUMB_W * VMAF_ROI_THUMB_H; i++)
        sum += abs(a[i] - b[i]);
    return sum;
}
