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

#include <stdio.h>
#include <string.h>

#include "libavutil/frame.h"
#include "libavutil/log.h"
#include "libavcodec/roi_map.c"

static int failures;

#define CHECK(cond, ...) do {                                              \
        if (!(cond)) {                                                     \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                    \
            printf(__VA_ARGS__);                                           \
            printf("\n");                                                  \
            failures++;                                                    \
        }                                                                  \
    } while (0)

static AVRegionOfInterest region(int top, int bottom, int left, int right,
                                 int num, int den)
{
    AVRegionOfInterest r = {
        .self_size = sizeof(r), .top = top, .bottom = bottom,
        .left = left, .right = right, .qoffset = { num, den },
    };
    return r;
}

static void check_map(const char *name, const int16_t *got,
                      const int16_t *want, int n)
{
    for (int i = 0; i < n; i++) {
        if (got[i] != want[i]) {
            printf("FAIL %s: block %d is %d, expected %d\n", name, i, got[i], want[i]);
            failures++;
            return;
        }
    }
}

static void test_fill(void)
{
    int16_t map[64];
    AVRegionOfInterest r[4];
    int ret;

    /* no side data: all zero */
    memset(map, 0x55, sizeof(map));
    ret = ff_roi_map_fill(NULL, NULL, 0, 100, 70, 64, 255, map);
    CHECK(ret == 0, "empty list returned %d", ret);
    check_map("empty", map, (const int16_t[4]){ 0, 0, 0, 0 }, 4);

    /* 100x70 in 64x64 blocks is a 2x2 grid; partial blocks at the right and
     * bottom edges count; a region touching a block by one pixel covers it */
    r[0] = region(0, 1, 63, 65, -1, 4);         /* row 0, both columns */
    ret = ff_roi_map_fill(NULL, (uint8_t *)r, sizeof(r[0]), 100, 70, 64, 255, map);
    CHECK(ret == 2, "one-pixel region: %d non-zero blocks", ret);
    check_map("edges", map, (const int16_t[4]){ -64, -64, 0, 0 }, 4);

    /* an empty rectangle covers nothing */
    r[0] = region(64, 64, 64, 64, -1, 1);
    ret = ff_roi_map_fill(NULL, (uint8_t *)r, sizeof(r[0]), 100, 70, 64, 255, map);
    CHECK(ret == 0, "empty rectangle: %d non-zero blocks", ret);

    /* the last partial block: right = width, bottom = height */
    r[0] = region(65, 70, 65, 100, 1, 5);
    ret = ff_roi_map_fill(NULL, (uint8_t *)r, sizeof(r[0]), 100, 70, 64, 51, map);
    check_map("last block", map, (const int16_t[4]){ 0, 0, 0, 10 }, 4);

    /* out-of-frame coordinates are clipped to the grid */
    r[0] = region(-50, 1000, -50, 1000, -1, 10);
    ret = ff_roi_map_fill(NULL, (uint8_t *)r, sizeof(r[0]), 100, 70, 64, 51, map);
    CHECK(ret == 4, "whole frame: %d", ret);
    check_map("clip", map, (const int16_t[4]){ -5, -5, -5, -5 }, 4);

    /* order: the first region wins where regions overlap (16x16 blocks,
     * 3x2 grid for 48x32) */
    r[0] = region(0, 16, 0, 16, -1, 2);         /* block 0 */
    r[1] = region(0, 32, 0, 32,  1, 2);         /* blocks 0, 1, 3, 4 */
    r[2] = region(0, 32, 16, 48, -1, 1);        /* blocks 1, 2, 4, 5 */
    ret = ff_roi_map_fill(NULL, (uint8_t *)r, 3 * sizeof(r[0]), 48, 32, 16, 51, map);
    CHECK(ret == 6, "order: %d non-zero", ret);
    check_map("order", map, (const int16_t[6]){ -26, 26, -51, 26, 26, -51 }, 6);

    /* clipping of qoffset to [-1, 1]; halves round away from zero */
    r[0] = region(0, 16, 0, 16, 3, 1);
    r[1] = region(0, 16, 16, 32, -7, 2);
    r[2] = region(16, 32, 0, 16, 1, 2);         /* 25.5 -> 26 */
    r[3] = region(16, 32, 16, 32, -1, 2);       /* -25.5 -> -26 */
    ret = ff_roi_map_fill(NULL, (uint8_t *)r, 4 * sizeof(r[0]), 32, 32, 16, 51, map);
    check_map("clamp", map, (const int16_t[4]){ 51, -51, 26, -26 }, 4);
    ret = ff_roi_map_fill(NULL, (uint8_t *)r, 4 * sizeof(r[0]), 32, 32, 16, 255, map);
    check_map("clamp 255", map, (const int16_t[4]){ 255, -255, 128, -128 }, 4);
    r[0] = region(0, 16, 0, 16, 1, 6);          /* 8.5 -> 9, not 8 */
    r[1] = region(0, 16, 16, 32, -1, 6);        /* -8.5 -> -9 */
    ret = ff_roi_map_fill(NULL, (uint8_t *)r, 2 * sizeof(r[0]), 32, 16, 16, 51, map);
    check_map("halves", map, (const int16_t[2]){ 9, -9 }, 2);

    /* a larger self_size (a newer struct) is honoured */
    {
        uint8_t buf[2 * (sizeof(AVRegionOfInterest) + 8)] = { 0 };
        for (int i = 0; i < 2; i++) {
            AVRegionOfInterest t = region(0, 16, 16 * i, 16 * i + 16, i ? 1 : -1, 51);
            t.self_size = sizeof(t) + 8;
            memcpy(buf + i * t.self_size, &t, sizeof(t));
        }
        ret = ff_roi_map_fill(NULL, buf, sizeof(buf), 32, 16, 16, 51, map);
        check_map("self_size", map, (const int16_t[2]){ -1, 1 }, 2);
    }

    /* invalid side data */
    r[0] = region(0, 16, 0, 16, 1, 0);
    ret = ff_roi_map_fill(NULL, (uint8_t *)r, sizeof(r[0]), 32, 32, 16, 51, map);
    CHECK(ret == AVERROR(EINVAL), "den = 0 gave %d", ret);
    r[0] = region(0, 16, 0, 16, 1, 2);
    ret = ff_roi_map_fill(NULL, (uint8_t *)r, sizeof(r[0]) + 3, 32, 32, 16, 51, map);
    CHECK(ret == AVERROR(EINVAL), "size not a multiple of self_size gave %d", ret);
    r[0].self_size = 0;
    ret = ff_roi_map_fill(NULL, (uint8_t *)r, sizeof(r[0]), 32, 32, 16, 51, map);
    CHECK(ret == AVERROR(EINVAL), "self_size = 0 gave %d", ret);
}

static void test_quantize(void)
{
    int16_t values[8], map[64];
    uint8_t index[64];
    int n;

    /* few values: kept as they are, in descending order */
    {
        int16_t m[6] = { 0, -20, 5, 5, 0, -20 };
        n = ff_roi_map_quantize(m, 6, 8, 0, values, index);
        CHECK(n == 3, "3 values: kept %d", n);
        check_map("few values", values, (const int16_t[3]){ 5, 0, -20 }, 3);
        check_map("few map", m, (const int16_t[6]){ 0, -20, 5, 5, 0, -20 }, 6);
        for (int i = 0; i < 6; i++)
            CHECK(values[index[i]] == m[i], "index of block %d", i);
    }

    /* 11 values for 8 segments.  Counts: 0 x1 (rare but always kept),
     * -100 x9, 100 x9 (tie: both kept), -40 x5, 40 x5, 60 x5 (tie on count:
     * 60 kept for its magnitude, then -40 before 40), 10 x4, -10 x4
     * (tie: -10 kept), 3 x2, 7 x1, 90 x1 (dropped). */
    {
        static const int spec[][2] = {
            { 0, 1 }, { -100, 9 }, { 100, 9 }, { -40, 5 }, { 40, 5 }, { 60, 5 },
            { 10, 4 }, { -10, 4 }, { 3, 2 }, { 7, 1 }, { 90, 1 },
        };
        int nb = 0;
        for (int s = 0; s < FF_ARRAY_ELEMS(spec); s++)
            for (int c = 0; c < spec[s][1]; c++)
                map[nb++] = spec[s][0];
        n = ff_roi_map_quantize(map, nb, 8, 0, values, index);
        CHECK(n == 8, "11 values: kept %d", n);
        /* kept: 0, -100, 100, 60, -40, 40, -10, 10 */
        check_map("kept", values, (const int16_t[8]){ 100, 60, 40, 10, 0, -10, -40, -100 }, 8);
        /* 3 -> 0 (nearer than 10), 7 -> 10, 90 -> 100 */
        for (int i = 0; i < nb; i++) {
            CHECK(values[index[i]] == map[i], "index of block %d", i);
        }
        CHECK(map[nb - 4] == 0 && map[nb - 3] == 0, "3 mapped to %d", map[nb - 4]);
        CHECK(map[nb - 2] == 10, "7 mapped to %d", map[nb - 2]);
        CHECK(map[nb - 1] == 100, "90 mapped to %d", map[nb - 1]);

        /* the same map into 5 segments: 0, -100, 100, then 60 (count 5,
         * larger magnitude), then -40 before 40 */
        nb = 0;
        for (int s = 0; s < FF_ARRAY_ELEMS(spec); s++)
            for (int c = 0; c < spec[s][1]; c++)
                map[nb++] = spec[s][0];
        n = ff_roi_map_quantize(map, nb, 5, 0, values, index);
        CHECK(n == 5, "5 segments: kept %d", n);
        check_map("kept 5", values, (const int16_t[5]){ 100, 60, 0, -40, -100 }, 5);
        /* 40 -> 60, 10 and -10 -> 0 */
        CHECK(map[1 + 9 + 9 + 5] == 60, "40 mapped to %d", map[1 + 9 + 9 + 5]);
        CHECK(map[1 + 9 + 9 + 15] == 0, "10 mapped to %d", map[1 + 9 + 9 + 15]);
        CHECK(map[1 + 9 + 9 + 19] == 0, "-10 mapped to %d", map[1 + 9 + 9 + 19]);
    }

    /* equidistant: 5 between 0 and 10 goes to 0; -50 between -40 and -60
     * goes to -40 */
    {
        int16_t m[] = { 0, 0, 10, 10, -40, -40, -60, -60, 5, -50 };
        n = ff_roi_map_quantize(m, FF_ARRAY_ELEMS(m), 4, 0, values, NULL);
        CHECK(n == 4, "equidistant: kept %d", n);
        CHECK(m[8] == 0, "5 mapped to %d", m[8]);
        CHECK(m[9] == -40, "-50 mapped to %d", m[9]);
    }

    /* no 0 in the map: every segment goes to a real value */
    {
        int16_t m[] = { -30, -30, 20, 20, 21 };
        n = ff_roi_map_quantize(m, 5, 2, 0, values, index);
        CHECK(n == 2, "no zero: kept %d", n);
        check_map("no zero", values, (const int16_t[2]){ 20, -30 }, 2);
        CHECK(m[4] == 20, "21 mapped to %d", m[4]);
    }

    /* a single segment */
    {
        int16_t m[] = { 0, 0, -30, -30, -30 };
        n = ff_roi_map_quantize(m, 5, 1, 0, values, index);
        CHECK(n == 1 && values[0] == 0, "one segment: %d values, first %d", n, values[0]);
    }

    n = ff_roi_map_quantize(map, 0, 8, 0, values, index);
    CHECK(n == 0, "no blocks: kept %d", n);

    /* keep_nonnegative: with every offset negative, 0 is kept although no
     * block has it (and takes a segment: -6 is dropped); with a positive
     * offset it is not needed */
    {
        int16_t m[] = { -30, -30, -30, -10, -10, -6 };
        n = ff_roi_map_quantize(m, 6, 3, 1, values, index);
        CHECK(n == 3, "keep_nonnegative: kept %d", n);
        check_map("keep_nonnegative", values, (const int16_t[3]){ 0, -10, -30 }, 3);
        check_map("keep_nonnegative map", m, (const int16_t[6]){ -30, -30, -30, -10, -10, -10 }, 6);
        for (int i = 0; i < 6; i++)
            CHECK(index[i] != 0, "block %d maps to the added 0", i);
    }
    {
        int16_t m[] = { -30, -30, 4 };
        n = ff_roi_map_quantize(m, 3, 8, 1, values, NULL);
        CHECK(n == 2 && values[0] == 4 && values[1] == -30,
              "keep_nonnegative with a positive offset: %d values", n);
    }
    n = ff_roi_map_quantize(map, 0, 8, 1, values, index);
    CHECK(n == 1 && values[0] == 0, "no blocks, keep_nonnegative: kept %d", n);
}

int main(void)
{
    av_log_set_level(AV_LOG_QUIET);
    test_fill();
    test_quantize();
    if (failures)
        printf("%d failures\n", failures);
    return !!failures;
}
