/* SPDX-License-Identifier: MIT */
/* The tile grid: non-overlapping tiles of the model's input size from (0,0) of the chosen level;
 * partial tiles at the right and bottom edges are left out. */
#ifndef TH_TILER_H
#define TH_TILER_H

#include "th-private.h"

typedef struct th_grid {
    int level;          /* level the tiles are read from */
    double downsample;  /* of that level */
    int tile_w, tile_h; /* tile size in level pixels (= model input) */
    int cols, rows;     /* full tiles across and down */
    int64_t level_w, level_h;
} th_grid;

/* Plan the grid. Errors: no such level; image smaller than one tile
 * ("image is W×H, smaller than the model input w×h"). */
bool th_grid_init(th_grid *grid, const th_slide *slide, int level, int tile_w, int tile_h,
                  th_error **err);

/* Level-0 rectangle of tile (col,row): x,y rounded to the nearest level-0 pixel, w,h the tile's
 * extent in level-0 pixels (tile size × downsample, rounded). */
void th_grid_tile_rect(const th_grid *grid, int col, int row, int64_t *x, int64_t *y, int64_t *w,
                       int64_t *h);

#endif
