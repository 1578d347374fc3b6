/* SPDX-License-Identifier: MIT */
/* The tile grid at the model's resolution: which pyramid level to read, the scale between the
 * slide and the model (µm/px), the grid of tiles (stride, edge rule, region of interest), and
 * reading one tile, resampled to the model's input when the level does not match it. */
#ifndef TH_TILER_H
#define TH_TILER_H

#include "th-private.h"

/* The most tiles a grid may have (per-tile arrays are sized by it before tissue detection):
 * 16 777 216, a 917 000-pixel square of 224-pixel tiles. */
#define TH_MAX_GRID_TILES ((int64_t)1 << 24)

typedef struct th_grid {
    int level;                /* level the tiles are read from */
    double downsample;        /* of that level */
    double scale;             /* level-0 pixels per model pixel */
    bool resample;            /* read regions of `level` are resampled to the tile size */
    int tile_w, tile_h;       /* tile size in model pixels (= model input) */
    int stride_x, stride_y;   /* step from one tile to the next, model pixels */
    int cols, rows;           /* tiles across and down */
    int64_t x0, y0;           /* level-0 corner of the tiled area (the ROI's, else 0,0) */
    int64_t area_w, area_h;   /* level-0 size of the tiled area */
    int64_t slide_w, slide_h; /* level-0 size of the slide */
    bool edge_pad;            /* partial tiles at the right/bottom are in the grid */
    double mpp;               /* µm per level-0 pixel used, 0 if none */
    char mpp_source[16];      /* where mpp came from: "--mpp", "openslide", ... "none" */
    int64_t level_w, level_h; /* size of `level` */
} th_grid;

/* Plan the grid for a model input of tile_w×tile_h model pixels: resolve the slide's and the
 * model's µm/px (opt->slide_mpp, the slide's metadata, opt->model_mpp, model_mpp), choose the
 * level (opt->level >= 0 forces one, read as is), the stride, the ROI and the edge rule.
 * Errors: no such level, no µm/px on a whole-slide file when the model has one (names --mpp), a
 * bad stride or ROI, an area smaller than one tile. */
bool th_grid_plan(th_grid *grid, const th_slide *slide, double model_mpp, int tile_w, int tile_h,
                  const th_run_options *opt, th_error **err);

/* The simple grid: full tiles of tile_w×tile_h read as is from `level`, from (0, 0). */
bool th_grid_init(th_grid *grid, const th_slide *slide, int level, int tile_w, int tile_h,
                  th_error **err);

/* Level-0 rectangle of tile (col, row): x, y rounded to the nearest pixel; w, h the tile's extent
 * in level-0 pixels (tile size × scale, rounded). */
void th_grid_tile_rect(const th_grid *grid, int col, int row, int64_t *x, int64_t *y, int64_t *w,
                       int64_t *h);

/* Bytes of scratch th_grid_read_tile needs (0 when it reads straight into the tile). */
size_t th_grid_scratch_size(const th_grid *grid);

/* Read the rectangle of w×h model pixels whose corner is (mx, my) model pixels from the grid's
 * origin (negative: above or left of it) as h×w RGB into rgb: straight from the level, or an
 * area-averaged resample of the level region it covers (scratch: th_grid_rect_scratch_size
 * bytes). Pixels outside the slide are white. The one way tileheat reads at the model's scale. */
bool th_grid_read_rect(const th_grid *grid, th_slide *slide, int64_t mx, int64_t my, int w, int h,
                       uint8_t *rgb, uint8_t *scratch, th_error **err);

/* Bytes of scratch th_grid_read_rect needs for a w×h rectangle (0 when it reads straight). */
size_t th_grid_rect_scratch_size(const th_grid *grid, int w, int h);

/* Read tile (col, row) as tile_h×tile_w RGB into rgb: straight from the level, or an area-averaged
 * resample of the level region it covers (scratch: th_grid_scratch_size bytes). Pixels outside
 * the tiled area (padded edge tiles) are white. */
bool th_grid_read_tile(const th_grid *grid, th_slide *slide, int col, int row, uint8_t *rgb,
                       uint8_t *scratch, th_error **err);

/* A slide seen at a scale: output pixel (i, j) is the area average of `level` over the level-0
 * box [x0 + i·sx, x0 + (i + 1)·sx) × [y0 + j·sy, y0 + (j + 1)·sy), or, when !resample (sx = sy =
 * the level's downsample), the level pixel at its corner. The tiler, the renderer and tissue
 * detection all read through one. */
typedef struct th_view {
    int level;
    double downsample; /* of the level */
    double x0, y0;     /* level-0 corner of output pixel (0, 0) */
    double sx, sy;     /* level-0 pixels per output pixel */
    bool resample;
} th_view;

/* Read output pixels [ox, ox + w) × [oy, oy + h) of the view as h×w RGB: bytes into rgb, or
 * (rgb NULL, a resampling view) the unrounded means into rgbf. scratch: th_view_scratch_size
 * bytes. Pixels outside the slide are white. */
bool th_view_read(const th_view *v, th_slide *slide, int64_t ox, int64_t oy, int w, int h,
                  uint8_t *rgb, float *rgbf, uint8_t *scratch, th_error **err);
size_t th_view_scratch_size(const th_view *v, int w, int h);

/* Area-average resample: dst pixel (i, j) is the mean of the source over the box
 * [sx0 + i·rx, sx0 + (i+1)·rx) × [sy0 + j·ry, sy0 + (j+1)·ry), weighted by overlap (a box filter
 * that also serves r < 1), rounded into dst, or unrounded into dstf when dst is NULL. src
 * (sh, sw, 3), dst (dh, dw, 3); boxes are clamped to the source. */
void th_resample_area(const uint8_t *src, int64_t sw, int64_t sh, double sx0, double sy0, double rx,
                      double ry, uint8_t *dst, float *dstf, int dw, int dh);

#endif
