/* SPDX-License-Identifier: MIT */
/* Seam-free CAMs: the trunk runs down strips of the slide, a margin of context wider than the
 * tiles on each side, a few rows at a time, so that every CAM cell is the network's value at that
 * place of the slide (white beyond its edge) rather than of a tile cut out with zeros around it.
 *
 * The trunk is cut into groups, each a convolution and the ReLUs and poolings after it. A group
 * is planned as an engine part on a band of rows: its convolution pads left and right as the
 * model does (inside the margin, which is wide enough that no padding reaches a tile's cells) but
 * not above and below. A step reads a band of the slide through group 0; each group's output rows
 * go into the next group's window below the 2·pad rows it carried from its last run, and whenever
 * a window is full its group runs, every group giving step_rows rows a run; the last group's rows
 * are CAM cells. A unit starts reading where the receptive field of its first cell row starts, so
 * every row computed is exact and none is thrown away. Memory is a band per group per thread,
 * whatever the slide's size. */
#ifndef TH_STREAM_H
#define TH_STREAM_H

#include "engine.h"
#include "tiler.h"

typedef struct th_stream_group {
    int first, n_layers;    /* its model layers: [first, first + n_layers) */
    int pad;                /* rows its convolution reads above and below a row (0: none) */
    int pool;               /* its input rows per output row (the product of its pools' strides) */
    int c_in, c_out;        /* channels in and out */
    int w_in, w_out;        /* columns in and out */
    int rows_new, rows_out; /* rows a run takes (after the 2·pad carried) and gives */
    th_model part;          /* the engine's model: `layers`, no head */
    th_layer *layers;       /* (n_layers) copies without vertical padding (weights borrowed) */
    th_engine *engine;
    bool int8;   /* its convolution runs in int8, on u8 rows */
    bool u8_out; /* its rows go on in u8 (the next group is int8) */
} th_stream_group;

typedef struct th_stream {
    const th_model *model; /* borrowed */
    int n_groups;
    th_stream_group *groups;
    int tile_w, tile_h; /* model pixels */
    int cam_w, cam_h;   /* cells per tile */
    int cell;           /* model pixels per cell (tile_w / cam_w) */
    int margin;         /* model pixels of context left and right of a strip */
    int step_rows;      /* rows every group gives a run (the last group's are cell rows) */
    int strip_tiles;    /* tiles across a strip at most (the engines' width) */
    int width;          /* model pixels across a strip: strip_tiles·tile_w + 2·margin */
    int feat_c;
} th_stream;

/* Whether the model's trunk can run seam-free on tile_w×tile_h tiles: convolutions of stride 1
 * padded the same on every side by (kernel − 1)·dilation / 2, max poolings whose kernel is their
 * stride, no padding, tiles a whole number of cells. If not, false and why[] (one line) says
 * which layer stops it. */
bool th_stream_supported(const th_model *model, int tile_w, int tile_h, char *why, size_t why_len);

/* How a grid `cols` tiles across is cut into strips: as narrow as margins of at most a tenth of
 * their width allow (glass is skipped a strip at a time), and for int8 narrower still where its
 * u8 windows would outgrow the cache (INT8_WINDOW_BYTES); as even as can be. Returns the widest
 * strip's tiles; *n_strips gets their number. */
int th_stream_strips(const th_model *model, int tile_w, int cols, bool int8, int *n_strips);

/* Plan strips of strip_tiles tiles (tiles are the stride apart; th_stream_supported must hold):
 * groups, engines and margin. Read-only afterwards: threads share it, each with a th_stream_ws.
 * int8: act_max (the model's n_layers largest outputs, as th_engine_new_int8 takes them) makes
 * the groups whose convolution th_engine_new_int8 would run in int8 int8 parts, the rows into
 * them u8, their biases corrected with act_mean (or NULL) as th_engine_new_int8 does; NULL:
 * float32. */
bool th_stream_plan(th_stream *s, const th_model *model, th_engine_kind kind, int tile_w,
                    int tile_h, int strip_tiles, const float *act_max, const float *act_mean,
                    th_error **err);
void th_stream_free(th_stream *s);

/* One unit of work: tiles [col0, col0 + cols) × [row0, row1] of the grid, run as one strip. */
typedef struct th_stream_unit {
    int col0, cols;
    int row0, row1;
} th_stream_unit;

/* Units over the listed tiles (tile_col/tile_row, n_tiles, in row-major order) of a grid `cols`
 * tiles across cut into n_strips even strips: each strip's runs of rows that have tiles (a row
 * without any ends a run: glass is not run), each run cut into even units of at most max_rows
 * rows. The cut depends on the grid and the tiles only. *units is th_malloc'd. */
bool th_stream_units(int cols, int n_strips, const int *tile_col, const int *tile_row,
                     int64_t n_tiles, int max_rows, th_stream_unit **units, int64_t *n_units,
                     th_error **err);

/* One thread's buffers for running units. */
typedef struct th_stream_ws th_stream_ws;
th_stream_ws *th_stream_ws_new(const th_stream *s, const th_grid *grid, th_error **err);
void th_stream_ws_free(th_stream_ws *ws);
/* Seconds this thread's units spent reading the slide. */
double th_stream_ws_read_seconds(const th_stream_ws *ws);
/* Model pixels this thread's units ran through the trunk (each row once, margins and glass
 * between tiles included). */
int64_t th_stream_ws_pixels(const th_stream_ws *ws);

/* Called once per tile of a unit, in row-major order, when all its cells are computed: means is
 * its (feat_c) feature means (global average pooling), cam its (n_classes, cam_h, cam_w) CAM, the
 * same bits as th_kernel_gap and th_cam_compute give on its feature map. */
typedef bool (*th_stream_tile_fn)(void *user, int col, int row, const float *means,
                                  const float *cam, th_error **err);

/* Run one unit: read its strip from the slide, push it through the trunk and hand every tile's
 * feature means and CAM to tile_fn. Reads `cancel` before each step (fails with "cancelled"). */
bool th_stream_run_unit(const th_stream *s, th_stream_ws *ws, th_slide *slide, const th_grid *grid,
                        const th_stream_unit *unit, th_stream_tile_fn tile_fn, void *user,
                        const volatile sig_atomic_t *cancel, th_error **err);

#endif
