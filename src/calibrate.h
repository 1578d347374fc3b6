/* SPDX-License-Identifier: MIT */
/* int8 calibration (calibrate.c): a sample of tiles' pixels, their float32 pass giving each
 * layer's largest output, the int8 engine planned on those ranges and int8 measured against
 * float32 on the same sample; and the calibration file of `tileheat calibrate`. A run calibrates
 * on its own slide (run.c) unless th_run_options.calibration gives one made for a cohort. */
#ifndef TH_CALIBRATE_H
#define TH_CALIBRATE_H

#include "engine.h"
#include "result.h"

/* The tiles a run calibrates on when it has no calibration: at most this many of its tiles,
 * evenly spaced in tile order (the same sample for any thread count). */
#define TH_CALIBRATION_TILES 16

struct th_calibration {
    const th_model *model; /* borrowed */
    th_engine_kind kind;   /* the float32 engine of the sample pass (fast or Winograd) */
    int threads;           /* for the sample passes and the int8 plan (0: OpenMP's default) */
    int tile_w, tile_h;    /* the sample's tiles, model pixels */
    int n, cap;            /* tiles held, room for */
    uint8_t *rgb;          /* (cap, tile_h, tile_w, 3) the sample's pixels */
    int n_slides;
    char **slide_names;  /* (n_slides) where the sample came from (the file records it) */
    int *slide_tiles;    /* (n_slides) tiles each gave */
    float *act_max;      /* (n_layers) each layer's largest output; NULL before finishing */
    float *act_mean;     /* (th_model_act_offset(n_layers)) each layer's channel means */
    th_int8_check check; /* int8 against float32 on the sample */
    char *path;          /* the file it was read from, or NULL */
    char sha256[65];     /* ... and that file's SHA-256 in hex ("" if none) */
    char warning[320];   /* th_calibration_short's warning, or "" */
};

/* An empty calibration for `model` at tile_w×tile_h with room for `cap` tiles. */
th_calibration *th_calibration_alloc(const th_model *model, th_engine_kind kind, int threads,
                                     int tile_w, int tile_h, int cap, th_error **err);

/* Read up to k of r's tiles (evenly spaced in tile order) from `slide` into the sample, as far as
 * its room goes, and record them under `name`. */
bool th_calibration_add_tiles(th_calibration *cal, const th_result *r, th_slide *slide, int k,
                              const char *name, th_error **err);

/* The sample through `fp32` (a float32 engine of the fast backend for the model at the sample's
 * tile size): act_max; then the int8 engine planned on it (into *int8 if int8 is not NULL, the
 * caller's to free), the sample through it and the check. */
bool th_calibration_measure(th_calibration *cal, const th_engine *fp32, th_engine **int8,
                            th_error **err);

/* From run.c: the tile size of a run of `model` with `opt`; and a run's grid, tissue mask and
 * tiles, without running them. */
bool th_run_tile_size(const th_model *model, const th_run_options *opt, int *w, int *h,
                      th_error **err);
th_result *th_run_plan_tiles(th_slide *slide, const th_model *model, const th_run_options *opt,
                             th_error **err);

/* Whether the check misses issue 18's bar; if so, the warning into cal->warning, else "". */
bool th_calibration_short(th_calibration *cal);

#endif
