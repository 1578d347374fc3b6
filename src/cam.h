/* SPDX-License-Identifier: MIT */
/* Class activation maps: CAM_c(y,x) = Σ_k W[c,k]·A_k(y,x) over the feature map A that feeds
 * global average pooling, W the dense weights; the dense bias is left out. The slide-wide CAM
 * grid (sparse: memory follows the tiles run, not the slide), the display normalisation and
 * bilinear sampling across tile borders. */
#ifndef TH_CAM_H
#define TH_CAM_H

#include <stdatomic.h>

#include "tiler.h"

/* The slide-wide grid of CAM cells. Tile (col, row) covers cells [col·step_x, +chunk_w) ×
 * [row·step_y, +chunk_h). Storage is one mapping of every chunk of chunk_w × chunk_h cells
 * aligned to the grid, whose pages become resident only when a tile touches them: anonymous
 * memory up to th_camgrid_budget bytes of mapping, beyond it a sparse, unlinked temporary file
 * whose pages are dropped from the process every th_camgrid_budget/64 bytes touched (they stay
 * in the page cache), so resident memory stays bounded whatever the tissue area. Overlapping
 * tiles are summed, then averaged by th_camgrid_finish. */
typedef struct th_camgrid {
    int n_classes;
    int chunk_w, chunk_h;       /* cells per chunk = CAM cells per tile */
    int step_x, step_y;         /* cells from one tile to the next */
    int64_t gw, gh;             /* cells across and down the grid */
    int64_t chunks_x, chunks_y; /* chunks across and down */
    size_t chunk_floats;        /* (n_classes + 1) · chunk_h · chunk_w: the classes' CAM sums
                                   (means after finish), then the number of tiles added */
    float *base;                /* the mapping: chunk i at base + i · chunk_floats */
    size_t map_bytes;
    int fd;                  /* the backing temporary file, or -1 for anonymous memory */
    uint8_t *used;           /* (chunks_y · chunks_x) 1 once a tile touched the chunk */
    atomic_llong touched;    /* bytes touched since pages were last dropped (file only) */
    double x0, y0;           /* level-0 corner of cell (0, 0) */
    double cell_w0, cell_h0; /* level-0 size of a cell */
} th_camgrid;

/* Mapping size above which the grid lives in a temporary file ($TMPDIR, else /tmp). Tests set it
 * to 0 to exercise the file. */
extern size_t th_camgrid_budget;

/* Plan the grid for `grid`'s tiles with cam_w × cam_h cells each. Errors: a stride that is not a
 * whole number of cells. */
bool th_camgrid_init(th_camgrid *cg, const th_grid *grid, int n_classes, int cam_w, int cam_h,
                     th_error **err);
void th_camgrid_free(th_camgrid *cg);

/* True when tiles do not overlap (the step is a whole tile): each tile is exactly one chunk. */
bool th_camgrid_disjoint(const th_camgrid *cg);

/* Add tile (col, row)'s CAM, (n_classes, chunk_h, chunk_w). Overlapping tiles: serial, in tile
 * order. Disjoint tiles: different tiles may be added from different threads at once. */
bool th_camgrid_add(th_camgrid *cg, int col, int row, const float *cam, th_error **err);

/* Turn sums into means (once, after the last add; nothing to do for disjoint tiles). */
void th_camgrid_finish(th_camgrid *cg);

/* Note that `bytes` of the grid were read or written: with a file behind the grid, every
 * th_camgrid_budget/64 bytes its pages are dropped from the process (thread-safe; the data stays).
 */
void th_camgrid_touch(const th_camgrid *cg, size_t bytes);

/* Row gy (< gh) of class cls's raw CAM into out (gw): NAN where no tile ran. */
void th_camgrid_read_row(const th_camgrid *cg, int cls, int64_t gy, float *out);
/* Cells [gx0, gx1) of that row (clipped to the grid) into out[gx0 .. gx1), the rest untouched. */
void th_camgrid_read_span(const th_camgrid *cg, int cls, int64_t gy, int64_t gx0, int64_t gx1,
                          float *out);

/* Raw CAM of class cls at cell (gx, gy); false where no tile ran (or outside the grid). */
bool th_camgrid_get(const th_camgrid *cg, int cls, int64_t gx, int64_t gy, float *v);

/* feat (c, h, w), weight (n_classes, c) -> cam (n_classes, h, w). */
void th_cam_compute(const float *feat, int c, int h, int w, const float *weight, int n_classes,
                    float *cam);

/* What a display range's top is: the percentile's value; the maximum (the class is positive in
 * fewer cells than the percentile needs); 1 above the bottom (nothing to scale: a class never
 * positive, or flat); the raw maximum (TH_NORM_RAW). */
typedef enum th_scale_basis {
    TH_SCALE_PERCENTILE = 0,
    TH_SCALE_MAX,
    TH_SCALE_FLAT,
    TH_SCALE_RAW,
} th_scale_basis;

/* "percentile", "max", "flat" or "raw". */
const char *th_scale_basis_name(th_scale_basis basis);

/* Display range of class cls over every CAM cell where a tile ran. Memory does not grow with
 * the slide (an exact percentile by histogram refinement).
 * TH_NORM_PERCENTILE: lo = 0, hi = that percentile of the values clipped at 0 (the maximum if
 * that is 0; 1 if all ≤ 0). TH_NORM_RAW: lo, hi = smallest and largest raw value over the
 * classes in `classes`. *basis (may be NULL) says which. */
bool th_cam_range(const th_result *result, th_norm norm, double percentile, const int *classes,
                  int n_classes, float *lo, float *hi, th_scale_basis *basis, th_error **err);

/* Bilinear sample of the raw CAM of class cls at level-0 point (x, y) (pixel centres at +0.5),
 * interpolating between cell centres across tile borders; cells where no tile ran are left out
 * of the weights. False where the point's own cell has no tile. */
bool th_cam_sample(const th_result *result, int cls, double x, double y, float *value);

#endif
