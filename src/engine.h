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
} th_engine_ops;

struct th_engine {
    const th_engine_ops *ops;
    th_engine_kind kind;        /* as asked for (TH_ENGINE_FAST and _WINOGRAD share a backend) */
    const th_model *model;      /* borrowed */
    int tile_w, tile_h;         /* input size in pixels */
    int feat_c, feat_h, feat_w; /* shape of the map feeding GAP */
    int n_winograd;             /* convolutions planned with Winograd (TH_ENGINE_WINOGRAD) */
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
#endif

/* Monotonic wall clock in seconds (layer profiles). */
double th_engine_clock(void);

/* Plan an engine for the model at a tile_w×tile_h input. */
th_engine *th_engine_new(const th_model *model, th_engine_kind kind, int tile_w, int tile_h,
                         th_error **err);
void th_engine_free(th_engine *engine);

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
