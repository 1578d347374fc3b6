/* SPDX-License-Identifier: MIT */
/* The engine front end (backend choice, workspace and forward dispatch) and the reference
 * backend: plan every layer's shape and one workspace size when the engine is made, then run
 * input -> trunk -> GAP -> dense in two ping-pong buffers with no allocation per tile. */
#include <config.h>

#include <time.h>

#include "engine.h"
#include "kernels.h"

/* ---------------------------------------------------------------- reference backend */

// The reference plan: shapes per layer and where each buffer sits in a workspace.
typedef struct ref_plan {
    int *out_h, *out_w, *out_c; // (n_layers) each layer's output shape
    size_t act_floats;          // largest layer output, c*h*w
    size_t off_input;           // workspace offsets in floats, each a multiple of 16 (64 bytes)
    size_t off_act[2];          // two ping-pong activation buffers of act_floats each
    size_t off_gap;             // (feat_c) pooled features
    size_t ws_floats;           // whole workspace
} ref_plan;

/*
 * Reserve n floats at the top of a workspace being laid out: *off gets their offset, and *top
 * moves past them, rounded up to a whole 64-byte line so that every buffer stays aligned.
 */
static bool reserve(size_t *top, size_t n, size_t *off, th_error **err)
{
    size_t lines = n / 16 + (n % 16 != 0);
    if (lines > (SIZE_MAX / sizeof(float) - *top) / 16) {
        th_error_set(err, "the workspace would be larger than memory");
        return false;
    }
    *off = *top;
    *top += lines * 16;
    return true;
}

// c*h*w in size_t, with an error instead of a silent overflow.
static bool volume(int c, int h, int w, size_t *out, th_error **err)
{
    size_t hw;
    return th_size_mul((size_t)h, (size_t)w, &hw, err) && th_size_mul(hw, (size_t)c, out, err);
}

// Walk the trunk once, recording every layer's output shape and the largest activation.
static bool ref_plan_layers(const th_model *m, ref_plan *p, int h, int w, th_error **err)
{
    int c = m->in_c;
    p->act_floats = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const th_layer *layer = &m->layers[i];
        if (!th_layer_out_size(layer, h, w, &h, &w)) {
            th_error_set(err, "node '%s': no output", layer->name); // trunk_shape said it first
            return false;
        }
        c = layer->kind == TH_LAYER_CONV ? layer->c_out : c;
        size_t n;
        if (!volume(c, h, w, &n, err)) {
            return false;
        }
        p->act_floats = TH_MAX(p->act_floats, n);
        p->out_c[i] = c;
        p->out_h[i] = h;
        p->out_w[i] = w;
    }
    return true;
}

static void ref_free(th_engine *e)
{
    ref_plan *p = e->data;
    if (p) {
        th_free(p->out_h);
        th_free(p->out_w);
        th_free(p->out_c);
        th_free(p);
    }
    e->data = NULL;
}

static bool ref_plan_new(th_engine *e, th_error **err)
{
    if (e->in_block != 1) {
        th_error_set(err, "no blocked layouts");
        return false;
    }
    e->out_block = 1;
    const th_model *m = e->model;
    int n = m->n_layers;
    ref_plan *p = th_calloc(1, sizeof(*p), err);
    e->data = p;
    if (!p || !(p->out_h = th_calloc(n ? n : 1, sizeof(int), err)) ||
        !(p->out_w = th_calloc(n ? n : 1, sizeof(int), err)) ||
        !(p->out_c = th_calloc(n ? n : 1, sizeof(int), err)) ||
        !ref_plan_layers(m, p, e->tile_h, e->tile_w, err)) {
        return false;
    }
    size_t in_floats;
    if (!volume(m->in_c, e->tile_h, e->tile_w, &in_floats, err)) {
        return false;
    }
    p->ws_floats = 0;
    bool ok = reserve(&p->ws_floats, in_floats, &p->off_input, err) &&
              reserve(&p->ws_floats, p->act_floats, &p->off_act[0], err) &&
              reserve(&p->ws_floats, p->act_floats, &p->off_act[1], err) &&
              reserve(&p->ws_floats, (size_t)e->feat_c, &p->off_gap, err);
    e->ws_bytes = p->ws_floats * sizeof(float); // reserve keeps this within SIZE_MAX
    return ok;
}

static th_engine_ws *ref_ws_new(const th_engine *e, th_error **err)
{
    const ref_plan *p = e->data;
    size_t bytes;
    if (!th_size_mul(p->ws_floats, sizeof(float), &bytes, err)) {
        return NULL;
    }
    th_engine_ws *ws = th_calloc(1, sizeof(*ws), err);
    if (!ws) {
        return NULL;
    }
    ws->ops = e->ops;
    ws->engine = e;
    ws->mem = th_malloc_aligned(bytes, err);
    if (!ws->mem) {
        TH_FREE(ws);
        return NULL;
    }
    return ws;
}

static void ref_ws_free(th_engine_ws *ws)
{
    th_free(ws->mem);
    th_free(ws);
}

// Run the trunk from the input tensor; returns the buffer holding the last feature map.
static float *ref_trunk(const th_model *m, const ref_plan *p, th_engine_ws *ws, int h, int w)
{
    float *act[2] = {ws->mem + p->off_act[0], ws->mem + p->off_act[1]}; // (act_floats) each
    float *cur = ws->mem + p->off_input; // (c, h, w) the current activation
    int c = m->in_c;
    for (int i = 0; i < m->n_layers; i++) {
        const th_layer *layer = &m->layers[i];
        const int oh = p->out_h[i], ow = p->out_w[i];
        const double t0 = ws->layer_sec ? th_engine_clock() : 0;
        float *dst = cur == act[0] ? act[1] : act[0]; // never the buffer being read
        switch (layer->kind) {
        case TH_LAYER_CONV:
            th_kernel_conv(layer, cur, h, w, dst, oh, ow);
            cur = dst;
            break;
        case TH_LAYER_MAXPOOL:
            th_kernel_maxpool(layer, cur, c, h, w, dst, oh, ow);
            cur = dst;
            break;
        case TH_LAYER_RELU:
            th_kernel_relu(cur, (size_t)c * h * w);
            break;
        }
        if (ws->layer_sec) {
            ws->layer_sec[i] += th_engine_clock() - t0;
        }
        c = p->out_c[i];
        h = oh;
        w = ow;
    }
    return cur;
}

static bool ref_forward(const th_engine *e, th_engine_ws *ws, const uint8_t *rgb, float *logits,
                        float *feat, th_error **err)
{
    const th_model *m = e->model;
    const ref_plan *p = e->data;
    float *gap = ws->mem + p->off_gap; // (feat_c)

    th_kernel_input(rgb, e->tile_h, e->tile_w, m, ws->mem + p->off_input);
    const float *map = ref_trunk(m, p, ws, e->tile_h, e->tile_w); // (feat_c, feat_h, feat_w)
    if (feat) {
        memcpy(feat, map, (size_t)e->feat_c * e->feat_h * e->feat_w * sizeof(float));
    }
    th_kernel_gap(map, e->feat_c, e->feat_h, e->feat_w, gap);
    th_kernel_dense(gap, e->feat_c, m->dense_w, m->dense_b, m->n_classes, logits);
    return true;
}

static void *ref_input(const th_engine *e, th_engine_ws *ws)
{
    const ref_plan *p = e->data;
    return ws->mem + p->off_input;
}

static const void *ref_part(const th_engine *e, th_engine_ws *ws, th_error **err)
{
    (void)err;
    return ref_trunk(e->model, e->data, ws, e->tile_h, e->tile_w);
}

static const th_engine_ops ref_ops = {
    .name = "reference",
    .plan = ref_plan_new,
    .free = ref_free,
    .ws_new = ref_ws_new,
    .ws_free = ref_ws_free,
    .forward = ref_forward,
    .input = ref_input,
    .trunk = ref_part,
};

/* ---------------------------------------------------------------- front end */

double th_engine_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// The backend for a kind; a fast backend adds its case here and nothing else changes.
static const th_engine_ops *backend(th_engine_kind kind, th_error **err)
{
    switch (kind) {
    case TH_ENGINE_REF:
        return &ref_ops;
    case TH_ENGINE_FAST:
    case TH_ENGINE_WINOGRAD: // the same backend, which picks the convolution algorithm
#ifdef HAVE_DNNL
        return &th_engine_dnnl_ops;
#else
        th_error_set(err, "the %s engine is not built into this tileheat",
                     kind == TH_ENGINE_FAST ? "fast" : "winograd");
        return NULL;
#endif
    }
    th_error_set(err, "unknown engine kind %d", (int)kind);
    return NULL;
}

// What every backend may rely on: positive tile, RGB input, a trunk that feeds the dense layer.
static bool check_model(th_engine *e, th_error **err)
{
    const th_model *m = e->model;
    if (e->tile_w <= 0 || e->tile_h <= 0) {
        th_error_set(err, "tile size %d×%d is not positive", e->tile_w, e->tile_h);
        return false;
    }
    if (e->part) {
        return th_model_trunk_shape(m, e->tile_h, e->tile_w, &e->feat_c, &e->feat_h, &e->feat_w,
                                    err);
    }
    if (m->in_c != 3) {
        th_error_set(err, "model takes %d input channels, not 3 (RGB)", m->in_c);
        return false;
    }
    if (!th_model_trunk_shape(m, e->tile_h, e->tile_w, &e->feat_c, &e->feat_h, &e->feat_w, err)) {
        th_error_prefix(err, "a %d×%d tile is too small for the model: ", e->tile_w, e->tile_h);
        return false;
    }
    if (e->feat_c != m->feat_c || m->n_classes <= 0) {
        th_error_set(err, "the trunk ends with %d channels but the dense layer is %d×%d", e->feat_c,
                     m->n_classes, m->feat_c);
        return false;
    }
    return true;
}

// A model whose activations need more than this per thread is refused when planned: a 1.5 MB
// file with one 65 536-channel convolution asked for 24.5 GiB a thread. VGG16 at 224 px needs
// about 40 MB.
#define MAX_WORKSPACE_BYTES ((size_t)1 << 30)

// The workspace within MAX_WORKSPACE_BYTES, or an error naming the widest layer.
static bool check_workspace(const th_engine *e, th_error **err)
{
    if (e->ws_bytes <= MAX_WORKSPACE_BYTES) {
        return true;
    }
    const th_model *m = e->model;
    int h = e->tile_h, w = e->tile_w, widest = -1;
    double widest_floats = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const th_layer *l = &m->layers[i];
        if (!th_layer_out_size(l, h, w, &h, &w)) {
            break;
        }
        double floats = (double)l->c_out * h * w;
        if (floats > widest_floats) {
            widest_floats = floats;
            widest = i;
        }
    }
    th_error_set(err,
                 "a %d×%d tile needs %zu MiB of working memory per thread, more than "
                 "tileheat's limit of %zu MiB (the widest layer: '%s', %d channels)",
                 e->tile_w, e->tile_h, e->ws_bytes >> 20, MAX_WORKSPACE_BYTES >> 20,
                 widest >= 0 ? m->layers[widest].name : "?",
                 widest >= 0 ? m->layers[widest].c_out : 0);
    return false;
}

/*
 * Plan an engine for `model` at tile_w×tile_h. The model is borrowed and must outlive the
 * engine. Fails (NULL, *err set) for TH_ENGINE_FAST or _WINOGRAD when oneDNN is not built in, a
 * tile that leaves some layer with no output (the message names the layer), or a trunk whose
 * channels do not match the dense layer. Caller frees with th_engine_free. The engine is
 * read-only afterwards: share it between threads, each with its own workspace.
 */
static th_engine *engine_new(const th_model *model, th_engine_kind kind, int tile_w, int tile_h,
                             bool part, int in_block, bool plain_out, const float *act_max,
                             const float *act_mean, const th_part_quant *q, th_error **err)
{
    const th_engine_ops *ops = backend(kind, err);
    if (!ops) {
        return NULL;
    }
    th_engine *e = th_calloc(1, sizeof(*e), err);
    if (!e) {
        return NULL;
    }
    e->ops = ops;
    e->kind = kind;
    e->part = part;
    e->in_block = in_block;
    e->out_block = plain_out ? 1 : 0; // 0: the backend's choice, set by its plan
    e->model = model;
    e->tile_w = tile_w;
    e->tile_h = tile_h;
    // int8: the engine's own copies of the calibration it is planned on
    const float *in_mean = q ? q->in_mean : NULL;
    if ((act_max && !(e->act_max = th_memdup(act_max, sizeof(float) * model->n_layers, err))) ||
        (act_mean &&
         !(e->act_mean = th_memdup(
               act_mean, sizeof(float) * th_model_act_offset(model, model->n_layers), err))) ||
        (in_mean && !(e->in_mean = th_memdup(in_mean, sizeof(float) * model->in_c, err)))) {
        th_engine_free(e);
        return NULL;
    }
    e->in_scale = q ? q->in_scale : 0;
    e->out_max = q ? q->out_max : 0;
    e->out_scale = 1;
    if (!check_model(e, err) || !ops->plan(e, err) || !check_workspace(e, err)) {
        th_error_prefix(err, "%s engine: ", ops->name);
        th_engine_free(e);
        return NULL;
    }
    return e;
}

th_engine *th_engine_new(const th_model *model, th_engine_kind kind, int tile_w, int tile_h,
                         th_error **err)
{
    return engine_new(model, kind, tile_w, tile_h, false, 1, true, NULL, NULL, NULL, err);
}

th_engine *th_engine_new_int8(const th_model *model, int tile_w, int tile_h, const float *act_max,
                              const float *act_mean, th_error **err)
{
#ifdef HAVE_DNNL
    return engine_new(model, TH_ENGINE_FAST, tile_w, tile_h, false, 1, true, act_max, act_mean,
                      NULL, err);
#else
    (void)model, (void)tile_w, (void)tile_h, (void)act_max, (void)act_mean;
    th_error_set(err, "int8 needs the fast engine, which is not built into this tileheat");
    return NULL;
#endif
}

bool th_engine_int8_layer(const th_model *model, int i)
{
    bool nonneg = false; // layer i's input: the image, or what the layers before it give
    for (int j = 0; j < i && j < model->n_layers; j++) {
        const th_layer *l = &model->layers[j];
        nonneg = l->kind == TH_LAYER_CONV ? l->relu : l->kind == TH_LAYER_RELU || nonneg;
    }
    return i >= 0 && i < model->n_layers && model->layers[i].kind == TH_LAYER_CONV && nonneg;
}

#ifndef HAVE_DNNL
bool th_engine_int8_vnni(void)
{
    return false;
}
#endif

bool th_engine_calibrate(const th_engine *engine, th_engine_ws *ws, const uint8_t *rgb,
                         float *act_max, float *act_mean, float *logits, float *feat,
                         th_error **err)
{
#ifdef HAVE_DNNL
    if (engine->ops == &th_engine_dnnl_ops && !engine->act_max && !engine->part) {
        return th_engine_dnnl_calibrate(engine, ws, rgb, act_max, act_mean, logits, feat, err);
    }
#else
    (void)ws, (void)rgb, (void)act_max, (void)act_mean, (void)logits, (void)feat;
#endif
    th_error_set(err, "calibration needs a float32 engine of the fast backend, not %s",
                 engine->ops->name);
    return false;
}

th_engine *th_engine_new_part(const th_model *part, th_engine_kind kind, int in_w, int in_h,
                              int in_block, bool plain_out, const th_part_quant *q, th_error **err)
{
    if (q && (q->act_max || q->in_scale > 0 || q->out_max > 0) && kind == TH_ENGINE_REF) {
        th_error_set(err, "int8 needs the fast engine, not the reference one");
        return NULL;
    }
    if (q && q->act_max && !(q->in_scale > 0)) {
        th_error_set(err, "an int8 part takes u8 input");
        return NULL;
    }
    return engine_new(part, kind, in_w, in_h, true, in_block, plain_out, q ? q->act_max : NULL,
                      NULL, q, err);
}

void *th_engine_input(const th_engine *engine, th_engine_ws *ws)
{
    return engine->ops->input(engine, ws);
}

const void *th_engine_forward_part(const th_engine *engine, th_engine_ws *ws, th_error **err)
{
    if (ws->engine != engine) {
        th_error_set(err, "the workspace belongs to another engine");
        return NULL;
    }
    return engine->ops->trunk(engine, ws, err);
}

// Free an engine and its plan. Accepts NULL. Its workspaces may be freed before or after.
void th_engine_free(th_engine *engine)
{
    if (engine) {
        engine->ops->free(engine);
        th_free((void *)engine->act_max);
        th_free((void *)engine->act_mean);
        th_free((void *)engine->in_mean);
        th_free(engine);
    }
}

/*
 * One thread's scratch for `engine`: everything forward needs, allocated here in one aligned
 * block. Call once per thread, outside the tile loop. Caller frees with th_engine_ws_free.
 */
th_engine_ws *th_engine_ws_new(const th_engine *engine, th_error **err)
{
    th_engine_ws *ws = engine->ops->ws_new(engine, err);
    if (!ws) {
        th_error_prefix(err, "%s engine workspace: ", engine->ops->name);
    }
    return ws;
}

// Free a workspace. Accepts NULL.
void th_engine_ws_free(th_engine_ws *ws)
{
    if (ws) {
        ws->ops->ws_free(ws);
    }
}

/*
 * One tile through the model, allocating nothing: rgb (tile_h, tile_w, 3) uint8 in; logits
 * (n_classes) out; probs (n_classes) and feat (feat_c, feat_h, feat_w) out if non-NULL. All
 * buffers are caller-owned. Fails only for a workspace made by another engine. One thread per
 * workspace at a time; the same input gives the same bits on any thread and any workspace.
 */
bool th_engine_forward(const th_engine *engine, th_engine_ws *ws, const uint8_t *rgb, float *logits,
                       float *probs, float *feat, th_error **err)
{
    if (ws->engine != engine) {
        th_error_set(err, "the workspace belongs to another engine");
        return false;
    }
    if (!engine->ops->forward(engine, ws, rgb, logits, feat, err)) {
        return false;
    }
    // The one softmax of the pipeline: the dense output is logits even if the graph had one.
    if (probs) {
        th_kernel_softmax(logits, engine->model->n_classes, probs);
    }
    return true;
}
