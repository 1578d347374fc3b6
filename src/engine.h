/* SPDX-License-Identifier: MIT */
/* The inference engine interface: a backend is planned once for a model and tile size, then
 * each worker thread owns one workspace and calls forward on one tile at a time. No allocation
 * happens inside forward. Backends: the reference engine (engine.c + kernels.c); the fast one
 * drops in behind th_engine_ops. */
#ifndef TH_ENGINE_H
#define TH_ENGINE_H

#include "model.h"

typedef struct th_engine th_engine;
typedef struct th_engine_ws th_engine_ws;

typedef struct th_engine_ops {
    const char *name;
    /* Plan: shapes and workspace sizes; weight reorders. e->model, tile_w/h are set. */
    bool (*plan)(th_engine *e, th_error **err);
    void (*free)(th_engine *e);
    th_engine_ws *(*ws_new)(const th_engine *e, th_error **err);
    void (*ws_free)(th_engine_ws *ws);
    bool (*forward)(const th_engine *e, th_engine_ws *ws, const uint8_t *rgb, float *logits,
                    float *feat, th_error **err);
    /* The workspace's input tensor (in_c, tile_h, tile_w), plain float (a part: in its layout). */
    void *(*input)(const th_engine *e, th_engine_ws *ws);
    /* The trunk alone from the input tensor as it is; returns the last map in the workspace
     * (feat_c, feat_h, feat_w) in out_block's layout. */
    const void *(*trunk)(const th_engine *e, th_engine_ws *ws, th_error **err);
} th_engine_ops;

struct th_engine {
    const th_engine_ops *ops;
    th_engine_kind kind;        /* as asked for (TH_ENGINE_FAST and _WINOGRAD share a backend) */
    bool part;                  /* th_engine_new_part: float input of any channels, no head */
    int in_block, out_block;    /* a part's input and output layout: [⌈C/b⌉][H][W][b] floats,
                                   channels padded with zeros to a multiple of b; 1 = plain */
    const th_model *model;      /* borrowed */
    int tile_w, tile_h;         /* input size in pixels */
    int feat_c, feat_h, feat_w; /* shape of the map feeding GAP */
    int n_winograd;             /* convolutions planned with Winograd (TH_ENGINE_WINOGRAD) */
    const float *act_max;       /* int8 (th_engine_new_int8): (n_layers) each layer's largest
                                   output on the calibration tiles, owned; NULL: float32 */
    const float *act_mean;      /* int8: (th_model_act_offset(n_layers)) each layer's output's
                                   channel means there, owned; NULL: none */
    const float *in_mean;       /* an int8 part: (in_c) its input's channel means, owned; NULL */
    float in_scale;             /* a part's u8 input: its value times this; 0: float32 input */
    float out_max;              /* a part's u8 output asked for: the largest value it quantises
                                   (unless its last layer is u8 already); 0: float32 output */
    float out_scale;            /* set by the plan: a u8 output's value times this; 1: float32 */
    int n_int8;                 /* convolutions planned in int8 */
    size_t ws_bytes;            /* one workspace's size, set by the backend's plan */
    void *data;                 /* backend state */
};

/* A workspace: one 64-byte aligned block that its backend lays out by its plan. Every backend
 * uses this struct (as the first member of its own, if it needs more state), so
 * th_engine_ws_free can dispatch and forward can refuse a foreign one. */
struct th_engine_ws {
    const th_engine_ops *ops; /* the backend that made it (static) */
    const th_engine *engine;  /* borrowed, only compared: forward checks it is the caller's */
    float *mem;               /* float32, laid out by the backend's plan */
    double *layer_sec;        /* (n_layers) optional profile, NULL unless the caller sets it:
                                 forward then adds each trunk layer's wall time in seconds */
};

#ifdef HAVE_DNNL
extern const th_engine_ops th_engine_dnnl_ops; /* engine-dnnl.c: the fast backend on oneDNN */
bool th_engine_dnnl_calibrate(const th_engine *e, th_engine_ws *ws, const uint8_t *rgb,
                              float *act_max, float *act_mean, float *logits, float *feat,
                              th_error **err);
#endif

/* Monotonic wall clock in seconds (layer profiles). */
double th_engine_clock(void);

/* Plan an engine for the model at a tile_w×tile_h input. */
th_engine *th_engine_new(const th_model *model, th_engine_kind kind, int tile_w, int tile_h,
                         th_error **err);
void th_engine_free(th_engine *engine);

/* A part of a trunk: `part` is a model whose layers (borrowed weights) take in_c channels, with
 * no dense head (n_classes 0), planned on a float input of in_c × in_h × in_w laid out in
 * channel blocks of in_block (1: plain; a backend without blocked layouts takes only 1). Its
 * output is plain if plain_out, else in the backend's own blocking (out_block), so that the next
 * part can take it as it is. The seam-free runner (stream.c) plans one per group of layers. Run
 * with th_engine_input + th_engine_forward_part. q (the fast backend only; NULL: float32 in and
 * out) quantises it: see th_part_quant. */
typedef struct th_part_quant {
    const float *act_max; /* (part->n_layers) its layers' largest outputs: every convolution in
                             int8 as th_engine_new_int8 plans them (the input must be u8); NULL:
                             float32 convolutions */
    float in_scale;       /* > 0: the input is u8, the value times in_scale (the part before's
                             out_scale) */
    float out_max;        /* > 0: the output is u8 (its int8 layer's, or 255 at out_max) */
    const float *in_mean; /* (in_c) the input's channel means (bias correction); NULL: none */
} th_part_quant;
th_engine *th_engine_new_part(const th_model *part, th_engine_kind kind, int in_w, int in_h,
                              int in_block, bool plain_out, const th_part_quant *q, th_error **err);

/* The input tensor of a workspace (in in_block's layout; u8 if the part takes u8, else float)
 * to fill before th_engine_forward_part. */
void *th_engine_input(const th_engine *engine, th_engine_ws *ws);

/* The layers on the workspace's input as it is: returns the output (feat_c, feat_h, feat_w) in
 * out_block's layout (u8 if out_max was given, else float), inside the workspace (valid until its
 * next use), or NULL with *err set. */
const void *th_engine_forward_part(const th_engine *engine, th_engine_ws *ws, th_error **err);

/* int8 inference (the fast backend only): the convolutions whose input is never negative (after
 * a ReLU) take u8 activations and s8 weights (a symmetric scale per output channel), sum in s32
 * and give u8 activations on; the first convolution (its input is the normalised image) stays
 * float32, and the last one gives float32 (the CAM features).
 * act_max (n_layers) is each layer's largest output over calibration tiles (th_engine_calibrate):
 * u8 value 255 is that maximum. act_mean (th_model_act_offset(n_layers), or NULL) holds each
 * layer's channel means there: a convolution's bias then takes away what rounding its weights
 * adds on average (the weights' rounding error times its input's means). */
th_engine *th_engine_new_int8(const th_model *model, int tile_w, int tile_h, const float *act_max,
                              const float *act_mean, th_error **err);

/* Whether th_engine_new_int8 runs layer i of `model` in int8: a convolution whose input is never
 * negative (it follows a ReLU), so not the first one, which takes the normalised image. The
 * seam-free plan quantises the same ones. */
bool th_engine_int8_layer(const th_model *model, int i);

/* Whether oneDNN's int8 kernels here multiply bytes at full rate: the CPU (as capped by
 * ONEDNN_MAX_CPU_ISA) has VNNI (AVX-512 or AVX) or AMX. Without it int8 still runs, through
 * slower kernels that, with AVX-512, are no faster than Winograd float32 (bench/README.md).
 * False without the fast backend. */
bool th_engine_int8_vnni(void);

/* Calibration: run one tile through a float32 fast engine as th_engine_forward does (logits,
 * and feat if not NULL), raise act_max[i] (n_layers) to layer i's largest output on it and, if
 * act_mean is not NULL, write each layer's channel means on it there (th_model_act_offset). */
bool th_engine_calibrate(const th_engine *engine, th_engine_ws *ws, const uint8_t *rgb,
                         float *act_max, float *act_mean, float *logits, float *feat,
                         th_error **err);

/* Per-thread workspace: allocate once per thread, outside the tile loop. */
th_engine_ws *th_engine_ws_new(const th_engine *engine, th_error **err);
void th_engine_ws_free(th_engine_ws *ws);

/*
 * Run one tile.
 *   rgb:    (tile_h, tile_w, 3) uint8 RGB interleaved, row-major
 *   logits: (n_classes) dense-layer output, before softmax
 *   probs:  (n_classes) softmax(logits); may be NULL
 *   feat:   (feat_c, feat_h, feat_w) float32, the feature map that feeds GAP; may be NULL
 * Deterministic: the same input gives the same bits on any thread.
 */
bool th_engine_forward(const th_engine *engine, th_engine_ws *ws, const uint8_t *rgb, float *logits,
                       float *probs, float *feat, th_error **err);

#endif
