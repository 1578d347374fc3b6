/* SPDX-License-Identifier: MIT */
/* th_result: what a run produced, per tile run. Everything here is bounded by the number of
 * tiles run, never by the slide's pixel size. Filled by run.c; read by cam.c, render.c,
 * report.c. */
#ifndef TH_RESULT_H
#define TH_RESULT_H

#include "tiler.h"

struct th_result {
    th_grid grid;
    int n_classes;
    int cam_w, cam_h;       /* CAM cells per tile (= feature map width/height) */
    int64_t n_tiles;        /* tiles run */
    int32_t *tile_col;      /* (n_tiles) grid column of each tile run, row-major grid order */
    int32_t *tile_row;      /* (n_tiles) */
    int64_t *index;         /* (grid.rows, grid.cols): tile number in the arrays here, or -1 */
    float *logits;          /* (n_tiles, n_classes) */
    float *probs;           /* (n_tiles, n_classes) softmax */
    float *cam;             /* (n_tiles, n_classes, cam_h, cam_w) raw CAM, bias left out */
    double *percent;        /* (n_classes) mean probability × 100 */
    double *argmax_percent; /* (n_classes) share of tiles whose top class this is × 100 */
};

/* Allocate a result for a grid with n_tiles tiles (arrays zeroed, index all -1). */
th_result *th_result_new(const th_grid *grid, int n_classes, int cam_w, int cam_h,
                         int64_t n_tiles, th_error **err);

/* Compute percent and argmax_percent from probs (serial, tile order). */
void th_result_summarize(th_result *result);

#endif
