/* SPDX-License-Identifier: MIT */
/* th_result: what a run produced. Per-tile arrays are bounded by the tiles run and the CAM grid
 * is sparse, so nothing here grows with the slide's pixel size, only with its tissue. Filled by
 * run.c; read by cam.c, render.c, report.c, export.c. */
#ifndef TH_RESULT_H
#define TH_RESULT_H

#include "cam.h"
#include "tiler.h"

#define TH_MAX_STAGES 12
#define TH_MAX_WARNINGS 4
#define TH_WARNING_LEN 320

/* int8 against float32 on the calibration sample (tiles 0: a float32 run). */
typedef struct th_int8_check {
    int tiles;          /* tiles the activation ranges were measured on */
    double percent;     /* largest per-class percentage difference, points */
    int flips;          /* tiles whose top class is not the same */
    double correlation; /* least Pearson correlation of a class's CAM cells */
} th_int8_check;

struct th_result {
    th_grid grid;
    int n_classes;
    int cam_w, cam_h;         /* CAM cells per tile (= feature map width/height) */
    int64_t n_tiles;          /* tiles run */
    int64_t n_skipped;        /* grid tiles not run for too little tissue */
    int32_t *tile_col;        /* (n_tiles) grid column of each tile run, row-major grid order */
    int32_t *tile_row;        /* (n_tiles) */
    float *logits;            /* (n_tiles, n_classes) */
    float *probs;             /* (n_tiles, n_classes) softmax */
    th_camgrid cams;          /* the slide-wide raw CAM grid, bias left out */
    double *percent;          /* (n_classes) mean probability × 100 over the tiles run */
    double *argmax_percent;   /* (n_classes) share of tiles run whose top class this is × 100 */
    struct th_tissue *tissue; /* the tissue mask, or NULL without tissue detection */
    th_run_options opt;       /* the options of the run (its progress and calibration pointers
                                 are not used after it) */
    int threads;              /* worker threads used */
    th_cam_mode cam_mode;     /* what the run used (opt.cam is what was asked for) */
    th_int8_check int8;       /* int8: the calibration sample, and int8 against float32 on it */
    char *calibration_file;   /* int8 on a calibration file's ranges: its path (owned), else NULL */
    char calibration_sha256[65]; /* ... and its SHA-256 */
    double trunk_area;           /* model pixels the trunk ran over per pixel of the tiles run (1 in
                                    tile mode; seam-free adds margins, receptive fields, glass) */
    th_stage stages[TH_MAX_STAGES]; /* wall seconds per stage of the run */
    int n_stages;
    char warnings[TH_MAX_WARNINGS][TH_WARNING_LEN]; /* what the caller should tell the user */
    int n_warnings;
};

/* Allocate a result for a grid with room for n_tiles tiles (arrays zeroed, empty CAM grid).
 * Errors: a stride that is not a whole number of CAM cells, out of memory. */
th_result *th_result_new(const th_grid *grid, int n_classes, int cam_w, int cam_h, int64_t n_tiles,
                         th_error **err);

/* Record tile t at (col, row) and add its CAM (n_classes, cam_h, cam_w) to the grid (NULL adds
 * zeros). Serial, in tile order. */
bool th_result_add_tile(th_result *result, int64_t t, int col, int row, const float *cam,
                        th_error **err);

/* After the last tile: CAM means, then percent and argmax_percent from probs (serial, tile
 * order). */
void th_result_summarize(th_result *result);

/* th_result_read_cam_row over the cells [gx0, gx1) of the row only (out[gx0 .. gx1)): a tile of
 * the viewer's layers needs a few hundred cells of rows that span the whole slide. */
void th_result_read_cam_span(const th_result *result, int c, int64_t gy, int64_t gx0, int64_t gx1,
                             float *out);

/* Append a warning (printf-style; dropped beyond TH_MAX_WARNINGS). */
void th_result_add_warning(th_result *result, const char *fmt, ...) TH_PRINTF(2, 3);

/* Append a stage timing (names are static strings). */
void th_result_add_stage(th_result *result, const char *name, double seconds);

#endif
