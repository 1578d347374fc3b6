/* SPDX-License-Identifier: MIT */
/* The tile grid: full tiles of the model's input size from (0,0) of one level. Partial tiles at
 * the right and bottom edges are left out, as users of the original tool expect. */
#include <config.h>

#include "slide.h"
#include "tiler.h"

bool th_grid_init(th_grid *grid, const th_slide *slide, int level, int tile_w, int tile_h,
                  th_error **err)
{
    memset(grid, 0, sizeof(*grid));
    int64_t w, h;
    if (!th_slide_get_level_dimensions(slide, level, &w, &h)) {
        th_error_set(err, "no level %d (the slide has %d)", level,
                     th_slide_get_level_count(slide));
        return false;
    }
    if (tile_w <= 0 || tile_h <= 0) {
        th_error_set(err, "invalid tile size %d×%d", tile_w, tile_h);
        return false;
    }
    if (w < tile_w || h < tile_h) {
        th_error_set(err, "image is %lld×%lld, smaller than the model input %d×%d", (long long)w,
                     (long long)h, tile_w, tile_h);
        return false;
    }
    if (w / tile_w > INT32_MAX || h / tile_h > INT32_MAX) {
        th_error_set(err, "image is %lld×%lld: too many tiles", (long long)w, (long long)h);
        return false;
    }
    grid->level = level;
    grid->downsample = th_slide_get_level_downsample(slide, level);
    grid->tile_w = tile_w;
    grid->tile_h = tile_h;
    grid->cols = (int)(w / tile_w);
    grid->rows = (int)(h / tile_h);
    grid->level_w = w;
    grid->level_h = h;
    return true;
}

void th_grid_tile_rect(const th_grid *grid, int col, int row, int64_t *x, int64_t *y, int64_t *w,
                       int64_t *h)
{
    double ds = grid->downsample;
    *x = llround((double)col * grid->tile_w * ds);
    *y = llround((double)row * grid->tile_h * ds);
    *w = llround(grid->tile_w * ds);
    *h = llround(grid->tile_h * ds);
}
