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

#ifndef AVCODEC_ROI_MAP_H
#define AVCODEC_ROI_MAP_H

#include <stddef.h>
#include <stdint.h>

/**
 * Largest offset range ff_roi_map_fill() accepts (AV1 qindex units).
 */
#define FF_ROI_MAP_MAX_RANGE 255

/**
 * Rasterise AV_FRAME_DATA_REGIONS_OF_INTEREST side data onto a grid of
 * square blocks, with the semantics of the libx264 wrapper: a block takes
 * the offset of a region when the two overlap, and where regions overlap
 * the first one in the list wins.  The offset of a region is its qoffset
 * clipped to [-1, 1], times range, rounded to the nearest integer (halves
 * away from zero).  Blocks outside every region get 0.
 *
 * @param logctx     context for error messages
 * @param data       the side data: an array of AVRegionOfInterest
 * @param size       size of data in bytes
 * @param width      frame width in pixels
 * @param height     frame height in pixels
 * @param block_size width and height of a block in pixels
 * @param range      offset for qoffset = 1, at most FF_ROI_MAP_MAX_RANGE
 * @param map        receives one offset per block in raster order, for a grid
 *                   of ceil(width / block_size) x ceil(height / block_size)
 * @return the number of blocks with a non-zero offset, or a negative
 *         AVERROR code on invalid side data
 */
int ff_roi_map_fill(void *logctx, const uint8_t *data, size_t size,
                    int width, int height, int block_size, int range,
                    int16_t *map);

/**
 * Reduce the offsets of a map to at most max_values distinct values, as
 * needed by encoders with a limited number of segments.
 *
 * Kept first is 0, when any block has it (blocks outside every region stay
 * exactly as the encoder would code them) or when keep_nonnegative is set
 * and every offset is negative; then the values that cover the most blocks;
 * between values covering as many blocks, the larger magnitude is kept, and
 * between v and -v the negative one (higher quality).  Every other block
 * takes the nearest kept value; when two are as near, the one nearer to 0.
 *
 * @param map        offsets in [-FF_ROI_MAP_MAX_RANGE, FF_ROI_MAP_MAX_RANGE];
 *                   overwritten with the quantised offsets
 * @param nb_blocks  number of entries in map
 * @param max_values maximum number of distinct values, at least 1
 * @param keep_nonnegative if set, the largest kept value is never negative
 *                   (0 is kept, although no block has it, when every offset
 *                   is negative)
 * @param values     receives the kept values in descending order
 *                   (max_values entries must be available)
 * @param index      if not NULL, receives for each block the index of its
 *                   value in values
 * @return the number of values kept (0 only if nb_blocks is 0 and
 *         keep_nonnegative is not set)
 */
int ff_roi_map_quantize(int16_t *map, int nb_blocks, int max_values,
                        int keep_nonnegative, int16_t *values, uint8_t *index);

#endif /* AVCODEC_ROI_MAP_H */
