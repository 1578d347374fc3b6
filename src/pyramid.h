/* SPDX-License-Identifier: MIT */
/* The pyramid builder shared by the containers that hold image pyramids: heatmap.tiff's pages
 * (render-tiff.c) and the viewer's Deep Zoom folders (dzi.c). It plans the levels (each the one
 * above halved, rounded up, as libvips' dzsave and the TIFF do) and cuts a level into tiles with
 * an overlap; then it makes the levels in one of two ways: walking every tile of every level in
 * parallel in units of tiles, each read from the source at its scale (the viewer), or reducing
 * level 0's rows as they stream in, each level the 2×2 mean of the one above, one strip of rows
 * a level (heatmap.tiff). What the source is and how a tile is stored (its layout) are the
 * caller's. */
#ifndef TH_PYRAMID_H
#define TH_PYRAMID_H

#include "th-private.h"

#define TH_PYR_MAX_LEVELS 48 /* 2^47 px: more than any slide */

typedef struct th_pyr_level {
    int64_t w, h;       /* size in this level's pixels */
    int64_t cols, rows; /* tiles across and down */
    double scale;       /* pixels of level 0 (the finest) per pixel of this level: 2^k */
} th_pyr_level;

typedef struct th_pyramid {
    int tile;    /* tile side without the overlap */
    int overlap; /* pixels each tile repeats of its neighbours, on each inner side (Deep Zoom) */
    int n;       /* levels; lv[0] is the finest, lv[n-1] the coarsest */
    th_pyr_level lv[TH_PYR_MAX_LEVELS];
} th_pyramid;

/* Plan a w×h pyramid: halve (rounding up) until the long side is at most top_max (1 for Deep
 * Zoom, whose top level is one pixel; 1024 for heatmap.tiff). */
void th_pyramid_plan(th_pyramid *p, int64_t w, int64_t h, int tile, int overlap, int64_t top_max);

/* Tile (col, row) of level k with its overlap, in that level's pixels, clipped to the level. */
void th_pyramid_tile_rect(const th_pyramid *p, int k, int64_t col, int64_t row, int64_t *x,
                          int64_t *y, int64_t *w, int64_t *h);

/* Work on the tiles [col, col + n_cols) × [row, row + n_rows) of level k; `worker` (0 ..
 * threads-1) names the calling thread's scratch. */
typedef bool (*th_pyr_unit_fn)(void *user, int worker, int k, int64_t col, int64_t row, int n_cols,
                               int n_rows, th_error **err);

/* Level k is finished: every unit of it has returned. */
typedef void (*th_pyr_level_fn)(void *user, int k);

/* Call fn on every unit of unit×unit tiles of every level, level by level (finest first), from
 * `threads` threads (≤ 0: OpenMP's default), dynamically scheduled; each unit is one thread's,
 * so what a unit writes does not depend on the thread count. After each level, done (may be
 * NULL) is called from the calling thread, with no unit running: a source can drop what only
 * that level needed. The first failure stops the units not yet started and is returned.
 * `cancel` (may be NULL) stops the walk when it turns non-zero. */
bool th_pyramid_walk(const th_pyramid *p, int threads, int unit, th_pyr_unit_fn fn,
                     th_pyr_level_fn done, void *user, const volatile sig_atomic_t *cancel,
                     th_error **err);

/* ---- Reduced levels from the rows of level 0 as they arrive (in order, top to bottom; the
 * columns of a band of rows may come in pieces). Level k ≥ 1 is the 2×2 mean of level k-1 (each
 * pixel the rounded mean of the 1, 2 or 4 pixels it covers), buffered as one strip of p->tile
 * rows; a complete strip (or the level's last rows) goes to `emit`, then is reduced into level
 * k+1. Memory: one strip a level, about 2 × tile rows of level 0's width in all. */

/* Rows y0 .. y0 + rows - 1 of level k (k ≥ 1) are ready: rgb ((rows, lv[k].w, 3)). */
typedef bool (*th_pyr_strip_fn)(void *user, int k, const uint8_t *rgb, int64_t y0, int rows,
                                th_error **err);

typedef struct th_pyr_reducer {
    const th_pyramid *p;
    uint8_t *strip[TH_PYR_MAX_LEVELS]; /* k ≥ 1: (tile, lv[k].w, 3) rows y0[k] .. + tile - 1 */
    int64_t y0[TH_PYR_MAX_LEVELS];
    th_pyr_strip_fn emit;
    void *user;
} th_pyr_reducer;

bool th_pyr_reducer_init(th_pyr_reducer *r, const th_pyramid *p, th_pyr_strip_fn emit, void *user,
                         th_error **err);
void th_pyr_reducer_free(th_pyr_reducer *r);

/* Level-0 pixels rgb ((h, w, 3)) at (x, y), x even, y a multiple of p->tile: reduced into
 * level 1's strip. */
void th_pyr_reducer_add(th_pyr_reducer *r, const uint8_t *rgb, int64_t w, int h, int64_t x,
                        int64_t y);

/* Level-0 rows y .. y + h - 1 (y a multiple of p->tile) have all been added: emit every strip
 * they complete, down the pyramid. */
bool th_pyr_reducer_rows_done(th_pyr_reducer *r, int64_t y, int h, th_error **err);

#endif
