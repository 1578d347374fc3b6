/* SPDX-License-Identifier: MIT */
/* Tests for the fast engine (engine-dnnl.c) against the reference engine: every op (conv shapes,
 * max pooling with padding and ceil_mode, standalone ReLU) and whole hand-built models, within
 * 1e-4 of the largest reference value (the Winograd engine within 1e-3); bit-identical repeats,
 * workspaces, thread counts and concurrent threads; oneDNN spawning no threads; the per-layer
 * profile. */
#include <config.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef HAVE_DNNL
#include <dnnl.h>
#endif

#include "engine.h"
#include "tap.h"
#include "testutil.h"

#ifndef HAVE_DNNL
int main(void)
{
    skip_all("the fast engine (oneDNN) is not built");
    return 0;
}
#else

/* ---------------------------------------------------------------- helpers */

static tu_rng rng = {0x2545f4914f6cdd1dull}; // splitmix64: the same weights on every machine

// max|got - want| / max|want|: the fast engine must stay within 1e-4.
static double rel_err(const float *got, const float *want, size_t n)
{
    double maxdiff = 0, maxmag = 1e-30;
    for (size_t i = 0; i < n; i++) {
        maxdiff = fmax(maxdiff, fabs((double)got[i] - want[i]));
        maxmag = fmax(maxmag, fabs((double)want[i]));
    }
    return maxdiff / maxmag;
}

/* ---------------------------------------------------------------- hand-built models */

enum { MAX_LAYERS = 12, N_CLASSES = 5 };

// A model with its layers inline; never copied once built (model.layers points into it).
typedef struct net {
    th_model m;
    th_layer layers[MAX_LAYERS];
    int c; // channels at the end of the trunk so far
} net;

static void net_init(net *n)
{
    memset(n, 0, sizeof(*n));
    n->m = (th_model){.layers = n->layers,
                      .in_c = 3,
                      .n_classes = N_CLASSES,
                      .input_scale = 1 / 255.0f,
                      .input_mean = {0.485f, 0.456f, 0.406f},
                      .input_std = {0.229f, 0.224f, 0.225f}};
    n->c = 3;
}

typedef struct conv_spec {
    int c_out, kh, kw, sh, sw, dh, dw, pad_t, pad_l, pad_b, pad_r;
    bool relu;
} conv_spec;

// Append a conv with weights scaled like He initialisation, so activations keep their size.
static th_layer *net_conv(net *n, const conv_spec *k)
{
    th_layer *l = &n->layers[n->m.n_layers++];
    *l = TU_MODEL_CONV(k, n->c, k->c_out);
    snprintf(l->name, sizeof(l->name), "conv%d", n->m.n_layers - 1);
    float a = sqrtf(6.0f / (float)(n->c * k->kh * k->kw));
    l->weight = tu_rng_floats(&rng, (size_t)k->c_out * n->c * k->kh * k->kw, -a, a);
    l->bias = tu_rng_floats(&rng, (size_t)k->c_out, -0.5f, 0.5f);
    n->c = k->c_out;
    return l;
}

// Same-size 3×3 conv (pad 1).
static th_layer *net_conv3(net *n, int c_out, bool relu)
{
    const conv_spec k = {c_out, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, relu};
    return net_conv(n, &k);
}

static void net_pool(net *n, int k, int s, int pad, bool ceil_mode)
{
    th_layer *l = &n->layers[n->m.n_layers++];
    *l = (th_layer){.kind = TH_LAYER_MAXPOOL,
                    .kh = k,
                    .kw = k,
                    .sh = s,
                    .sw = s,
                    .dh = 1,
                    .dw = 1,
                    .pad_t = pad,
                    .pad_l = pad,
                    .pad_b = pad,
                    .pad_r = pad,
                    .ceil_mode = ceil_mode,
                    .c_in = n->c,
                    .c_out = n->c};
    snprintf(l->name, sizeof(l->name), "pool%d", n->m.n_layers - 1);
}

static void net_relu(net *n)
{
    th_layer *l = &n->layers[n->m.n_layers++];
    *l = (th_layer){.kind = TH_LAYER_RELU, .c_in = n->c, .c_out = n->c};
    snprintf(l->name, sizeof(l->name), "relu%d", n->m.n_layers - 1);
}

// The dense head on whatever the trunk ends with.
static void net_finish(net *n)
{
    n->m.feat_c = n->c;
    n->m.dense_w = tu_rng_floats(&rng, (size_t)N_CLASSES * n->c, -1, 1);
    n->m.dense_b = tu_rng_floats(&rng, N_CLASSES, -1, 1);
}

static void net_free(net *n)
{
    for (int i = 0; i < n->m.n_layers; i++) {
        th_free((void *)n->layers[i].weight);
        th_free((void *)n->layers[i].bias);
    }
    th_free((void *)n->m.dense_w);
    th_free((void *)n->m.dense_b);
}

/* ---------------------------------------------------------------- fast vs reference */

static uint8_t *random_tile(int w, int h)
{
    uint8_t *rgb = tu_xcalloc((size_t)w * h * 3, 1);
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        rgb[i] = (uint8_t)tu_rng_float(&rng, 0, 256);
    }
    return rgb;
}

// One tile through a fresh engine of `kind`: feat (c, h, w) and logits; the shape in *c, *h, *w.
static bool run_engine(const th_model *m, th_engine_kind kind, const uint8_t *rgb, int tw, int th,
                       float **feat, float *logits, int shape[4])
{
    th_error *err = NULL;
    th_engine *e = th_engine_new(m, kind, tw, th, &err);
    th_engine_ws *ws = e ? th_engine_ws_new(e, &err) : NULL;
    bool ran = false;
    if (ws) {
        shape[0] = e->feat_c;
        shape[1] = e->feat_h;
        shape[2] = e->feat_w;
        shape[3] = e->n_winograd;
        *feat = tu_xcalloc((size_t)e->feat_c * e->feat_h * e->feat_w, sizeof(float));
        ran = th_engine_forward(e, ws, rgb, logits, NULL, *feat, &err);
    }
    if (!ran) {
        diag("%s engine: %s", kind == TH_ENGINE_REF ? "reference" : "fast",
             err ? th_error_message(err) : "?");
    }
    th_engine_ws_free(ws);
    th_engine_free(e);
    th_error_free(err);
    return ran;
}

// Whether oneDNN has Winograd convolutions on this CPU (AVX-512 in oneDNN 2.6).
static bool cpu_has_winograd(void)
{
    return dnnl_get_effective_cpu_isa() >= dnnl_cpu_isa_avx512_core;
}

/*
 * The fast and Winograd engines against the reference on one random tile of `n`: same feature
 * shape, feature map and logits within 1e-4 of the largest reference value (1e-3 for Winograd,
 * TH_ENGINE_WINOGRAD's documented tolerance). The Winograd engine must have used Winograd for
 * at least `want_wino` convolutions where the CPU has it (those with 16 or more input channels).
 */
static void compare_wino(const net *n, int tw, int th, int want_wino, const char *what)
{
    uint8_t *rgb = random_tile(tw, th);
    float *feat[3] = {NULL}, logits[3][N_CLASSES];
    int shape[3][4] = {{0}};
    static const th_engine_kind kinds[3] = {TH_ENGINE_REF, TH_ENGINE_FAST, TH_ENGINE_WINOGRAD};
    bool ran = true;
    for (int k = 0; k < 3 && ran; k++) {
        ran = run_engine(&n->m, kinds[k], rgb, tw, th, &feat[k], logits[k], shape[k]);
    }
    for (int k = 1; k < 3; k++) {
        bool same_shape = ran && memcmp(shape[0], shape[k], 3 * sizeof(int)) == 0;
        size_t cells = (size_t)shape[0][0] * shape[0][1] * shape[0][2];
        double ef = same_shape ? rel_err(feat[k], feat[0], cells) : INFINITY;
        double el = same_shape ? rel_err(logits[k], logits[0], N_CLASSES) : INFINITY;
        double tol = k == 1 ? 1e-4 : 1e-3;
        ok(ef <= tol && el <= tol,
           "%s%s, tile %dx%d -> (%d, %d, %d): feat err %.2g, logits err %.2g", what,
           k == 1 ? "" : " (winograd)", tw, th, shape[0][0], shape[0][1], shape[0][2], ef, el);
    }
    if (want_wino > 0) {
        int got = shape[2][3];
        ok(!cpu_has_winograd() || got >= want_wino,
           "%s: the winograd engine ran %d convolutions with Winograd (want >= %d%s)", what, got,
           want_wino, cpu_has_winograd() ? "" : "; none on this CPU");
    }
    for (int k = 0; k < 3; k++) {
        th_free(feat[k]);
    }
    th_free(rgb);
}

static void compare(const net *n, int tw, int th, const char *what)
{
    compare_wino(n, tw, th, 0, what);
}

// clang-format off
static const conv_spec conv_cases[] = {
    // c_out kh kw sh sw dh dw  t  l  b  r  relu
    {13, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, false},
    {20, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, true},
    {16, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, false},
    {64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, true},
    {7, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2, true},
    {12, 5, 5, 2, 2, 1, 1, 2, 2, 2, 2, false},
    {9, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, true},
    {11, 3, 3, 2, 1, 1, 1, 0, 1, 1, 0, true},
    {8, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, false},
    {5, 3, 5, 1, 2, 2, 2, 1, 3, 0, 2, true},
    {6, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, false},
    {17, 3, 3, 1, 1, 1, 1, 0, 2, 1, 0, true},
    {3, 5, 5, 1, 1, 1, 1, 4, 4, 4, 4, false},  // mostly padding
    {24, 7, 7, 2, 2, 1, 1, 3, 3, 3, 3, true},
};
// clang-format on
#define N_CONV (int)(sizeof(conv_cases) / sizeof(conv_cases[0]))

// Each conv twice: straight on the RGB input (c_in 3), and after a 3×3 conv to 10 channels.
static void test_convs(void)
{
    for (int i = 0; i < N_CONV; i++) {
        const conv_spec *k = &conv_cases[i];
        for (int stem = 0; stem < 2; stem++) {
            net n;
            net_init(&n);
            if (stem) {
                net_conv3(&n, 10, false);
            }
            net_conv(&n, k);
            net_finish(&n);
            char what[160];
            snprintf(what, sizeof(what), "conv %d->%d k%dx%d s%d,%d d%d,%d pads %d,%d,%d,%d%s",
                     n.layers[stem].c_in, k->c_out, k->kh, k->kw, k->sh, k->sw, k->dh, k->dw,
                     k->pad_t, k->pad_l, k->pad_b, k->pad_r, k->relu ? " relu" : "");
            compare(&n, 19 + 2 * i, 23 - i / 2, what);
            net_free(&n);
        }
    }
}

typedef struct pool_case {
    int c, h, w, k, s, pad;
    bool ceil_mode;
} pool_case;

// clang-format off
static const pool_case pool_cases[] = {
    {6, 8, 10, 2, 2, 0, false},
    {5, 7, 9, 2, 2, 0, false},   // odd sizes: the last row and column are dropped
    {4, 7, 9, 3, 2, 1, false},
    {9, 8, 8, 3, 2, 1, false},
    {3, 7, 9, 2, 2, 0, true},    // ceil: an extra half window at the right and bottom
    {7, 6, 12, 3, 2, 0, true},
    {2, 6, 6, 3, 2, 1, true},    // the last window holds one input cell
    {5, 5, 5, 2, 2, 1, true},    // ceil's 4th window would start in padding: dropped
    {16, 13, 11, 3, 3, 1, true},
    {12, 9, 14, 3, 1, 1, false},
};
// clang-format on
#define N_POOL (int)(sizeof(pool_cases) / sizeof(pool_cases[0]))

// Max pooling after a conv whose bias of -100 makes every value negative: a padded cell that
// won as 0 would show.
static void test_pools(void)
{
    for (int i = 0; i < N_POOL; i++) {
        const pool_case *k = &pool_cases[i];
        net n;
        net_init(&n);
        th_layer *stem = net_conv3(&n, k->c, false);
        for (int co = 0; co < k->c; co++) {
            ((float *)stem->bias)[co] = -100;
        }
        net_pool(&n, k->k, k->s, k->pad, k->ceil_mode);
        net_finish(&n);
        char what[120];
        snprintf(what, sizeof(what), "maxpool c%d k%d s%d p%d%s on all-negative input", k->c, k->k,
                 k->s, k->pad, k->ceil_mode ? " ceil" : "");
        compare(&n, k->w, k->h, what);
        net_free(&n);
    }
}

static void test_relu(void)
{
    net n;
    net_init(&n);
    net_conv3(&n, 11, false);
    net_relu(&n); // a ReLU that was not fused
    net_finish(&n);
    compare(&n, 15, 13, "conv 3->11 then a standalone relu");
    net_free(&n);

    net_init(&n);
    net_conv3(&n, 9, false);
    net_pool(&n, 3, 2, 1, true);
    net_relu(&n);
    net_relu(&n); // twice in place
    net_finish(&n);
    compare(&n, 17, 21, "conv, maxpool ceil, relu, relu");
    net_free(&n);

    net_init(&n);
    net_relu(&n); // on the normalised input itself
    net_conv3(&n, 4, true);
    net_finish(&n);
    compare(&n, 9, 7, "relu on the input, then conv 3->4 relu");
    net_free(&n);
}

/* ---------------------------------------------------------------- whole models */

// A VGG-like trunk: 3x3 convs, 2x2 pools, GAP, dense (widths not multiples of 8 on request).
static void build_vgg(net *n, const int *widths, int n_widths)
{
    net_init(n);
    for (int i = 0; i < n_widths; i++) {
        if (widths[i] == 0) {
            net_pool(n, 2, 2, 0, false);
        } else {
            net_conv3(n, widths[i], true);
        }
    }
    net_finish(n);
}

// A mixed trunk: strided 5×5, 1×1, dilated and asymmetric convs, both pool modes, a lone ReLU.
static void build_mixed(net *n)
{
    static const conv_spec c0 = {12, 5, 5, 2, 2, 1, 1, 2, 2, 2, 2, true};
    static const conv_spec c1 = {20, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, true};
    static const conv_spec c2 = {13, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, false};
    static const conv_spec c3 = {7, 3, 5, 1, 1, 1, 1, 1, 2, 1, 2, true};
    net_init(n);
    net_conv(n, &c0);
    net_pool(n, 3, 2, 1, true);
    net_conv(n, &c1);
    net_conv(n, &c2);
    net_relu(n);
    net_pool(n, 2, 2, 0, true);
    net_conv(n, &c3);
    net_finish(n);
}

static void test_models(void)
{
    static const int small[] = {8, 8, 0, 16, 16, 0, 32, 32};
    static const int odd[] = {5, 11, 0, 13, 0, 21, 19};
    static const int vgg64[] = {64, 64, 0, 128, 0, 256, 0, 512};
    net n;
    build_vgg(&n, small, 8);
    compare_wino(&n, 64, 64, 3, "model: small VGG 8,8,M,16,16,M,32,32");
    compare(&n, 45, 37, "model: small VGG 8,8,M,16,16,M,32,32");
    net_free(&n);
    build_vgg(&n, odd, 7);
    compare(&n, 31, 29, "model: VGG with odd widths 5,11,M,13,M,21,19");
    net_free(&n);
    build_vgg(&n, vgg64, 8);
    compare_wino(&n, 48, 40, 4, "model: wide VGG 64,64,M,128,M,256,M,512");
    net_free(&n);
    build_mixed(&n);
    compare(&n, 57, 43, "model: strided 5x5, pool ceil, 1x1, dilated, relu, pool ceil, 3x5");
    net_free(&n);
}

/* ---------------------------------------------------------------- determinism and threads */

enum { TW = 45, TH = 37, N_TILES = 6 };

typedef struct outputs {
    float *feat;   // (N_TILES, feat_c, feat_h, feat_w)
    float *logits; // (N_TILES, N_CLASSES)
    size_t feat_n; // floats per tile
} outputs;

static void outputs_init(outputs *o, const th_engine *e)
{
    o->feat_n = (size_t)e->feat_c * e->feat_h * e->feat_w;
    o->feat = tu_xcalloc(N_TILES * o->feat_n, sizeof(float));
    o->logits = tu_xcalloc(N_TILES * N_CLASSES, sizeof(float));
}

static bool same_outputs(const outputs *a, const outputs *b)
{
    return memcmp(a->feat, b->feat, N_TILES * a->feat_n * sizeof(float)) == 0 &&
           memcmp(a->logits, b->logits, N_TILES * N_CLASSES * sizeof(float)) == 0;
}

static void outputs_free(outputs *o)
{
    th_free(o->feat);
    th_free(o->logits);
}

static bool forward_tile(const th_engine *e, th_engine_ws *ws, uint8_t *const *tiles, int t,
                         outputs *o)
{
    th_error *err = NULL;
    bool ran = th_engine_forward(e, ws, tiles[t], o->logits + t * N_CLASSES, NULL,
                                 o->feat + t * o->feat_n, &err);
    if (!ran) {
        diag("forward: %s", th_error_message(err));
    }
    th_error_free(err);
    return ran;
}

// Every tile in order on one workspace, on the calling thread.
static bool run_serial(const th_engine *e, uint8_t *const *tiles, outputs *o)
{
    th_engine_ws *ws = th_engine_ws_new(e, NULL);
    bool ran = ws != NULL;
    for (int t = 0; ran && t < N_TILES; t++) {
        ran = forward_tile(e, ws, tiles, t, o);
    }
    th_engine_ws_free(ws);
    return ran;
}

// The tiles shared out between two OpenMP threads as run.c does; *team gets the team size.
static bool run_parallel(const th_engine *e, uint8_t *const *tiles, outputs *o, int *team)
{
    bool ran = true;
    *team = 1;
#ifdef _OPENMP
#pragma omp parallel num_threads(2) reduction(&& : ran)
    {
        th_engine_ws *ws = th_engine_ws_new(e, NULL);
        ran = ws != NULL;
#pragma omp single
        *team = omp_get_num_threads();
#pragma omp for schedule(dynamic)
        for (int t = 0; t < N_TILES; t++) {
            ran = ran && forward_tile(e, ws, tiles, t, o);
        }
        th_engine_ws_free(ws);
    }
#else
    ran = run_serial(e, tiles, o);
#endif
    return ran;
}

// The thread count of this process from /proc (Linux); -1 where it cannot be read.
static int process_threads(void)
{
    FILE *f = th_fopen("/proc/self/status", "r", NULL);
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "Threads:", 8) == 0) {
            th_parse_int(strtok(line + 8, " \t\n"), &n);
        }
    }
    if (f) {
        fclose(f);
    }
    return n;
}

static void set_threads(int n)
{
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

static th_engine *new_kind(const net *n, int threads, th_engine_kind kind)
{
    th_error *err = NULL;
    set_threads(threads);
    th_engine *e = th_engine_new(&n->m, kind, TW, TH, &err);
    set_threads(2);
    if (!e) {
        bail("fast engine: %s", th_error_message(err));
    }
    return e;
}

static th_engine *new_fast(const net *n, int threads)
{
    return new_kind(n, threads, TH_ENGINE_FAST);
}

/*
 * Run first, before any parallel region of this program: a workspace and forward calls from a
 * serial caller, with 2 OpenMP threads available, must start no thread (oneDNN would open its
 * own parallel region if its thread count were not pinned to 1). The engine is planned with one
 * thread available: planning may use every thread for its one-off weight reorders.
 */
static void test_no_threads(const net *n, uint8_t *const *tiles)
{
    int before = process_threads();
    th_engine *e = new_fast(n, 1); // back to 2 threads available when it returns
    outputs o;
    outputs_init(&o, e);
    bool ran = run_serial(e, tiles, &o);
    int after = process_threads();
#ifndef _OPENMP
    // Without OpenMP tileheat cannot pin oneDNN's own (OpenMP) threads to 1: the tile loop is
    // serial then, and oneDNN may use its threads inside each tile.
    before = -1;
#endif
    if (before < 0) {
        skip(1, "no /proc/self/status, or built without OpenMP");
    } else {
        ok(ran && after == before,
           "workspace and forward from a serial caller start no thread (%d -> %d)", before, after);
    }
    outputs_free(&o);
    th_engine_free(e);
}

static void test_repeat(const net *n, uint8_t *const *tiles)
{
    th_engine *e = new_fast(n, 2);
    th_engine_ws *ws = th_engine_ws_new(e, NULL);
    outputs o;
    outputs_init(&o, e);
    // Tiles 0, 1, then 0 again into slot 2: the buffers are dirty the second time.
    uint8_t *order[3] = {tiles[0], tiles[1], tiles[0]};
    bool ran = ws && forward_tile(e, ws, order, 0, &o) && forward_tile(e, ws, order, 1, &o) &&
               forward_tile(e, ws, order, 2, &o);
    ok(ran && memcmp(o.feat, o.feat + 2 * o.feat_n, o.feat_n * sizeof(float)) == 0 &&
           memcmp(o.logits, o.logits + 2 * N_CLASSES, N_CLASSES * sizeof(float)) == 0,
       "repeated calls on one workspace give identical bits");
    ok(ran && memcmp(o.logits, o.logits + N_CLASSES, N_CLASSES * sizeof(float)) != 0,
       "a different tile gives different logits");
    th_engine_ws_free(ws);
    outputs_free(&o);
    th_engine_free(e);
}

// The same bits whichever thread count the engine was planned under (its weight reorders and
// Winograd transforms run on all of them) and whichever thread and workspace runs a tile, two
// threads at once included.
static void test_threads(const net *n, uint8_t *const *tiles, th_engine_kind kind)
{
    th_engine *e1 = new_kind(n, 1, kind), *e2 = new_kind(n, 2, kind);
    diag("%s engine, %d Winograd convolutions", kind == TH_ENGINE_FAST ? "fast" : "winograd",
         e1->n_winograd);
    outputs o1, o2, o3, o4;
    outputs_init(&o1, e1);
    outputs_init(&o2, e2);
    outputs_init(&o3, e2);
    outputs_init(&o4, e2);
    int team = 0;
    bool ran = run_serial(e1, tiles, &o1) && run_serial(e2, tiles, &o2) &&
               run_serial(e2, tiles, &o3) && run_parallel(e2, tiles, &o4, &team);
    ok(ran && same_outputs(&o1, &o2),
       "engines planned with 1 and 2 OpenMP threads available give the same bits");
    ok(ran && same_outputs(&o2, &o3), "a second workspace gives the same bits");
    ok(ran && same_outputs(&o1, &o4),
       "%d tiles on 2 threads at once, a workspace each, give the serial bits", N_TILES);
#ifdef _OPENMP
    is_int(team, 2, "... and the parallel region really had 2 threads");
#else
    skip(1, "built without OpenMP: no parallel region");
#endif
    int threads = process_threads();
    ok(threads <= 2, "... and oneDNN opened no nested region inside it (%d threads now)", threads);
    outputs_free(&o4);
    outputs_free(&o3);
    outputs_free(&o2);
    outputs_free(&o1);
    th_engine_free(e2);
    th_engine_free(e1);
}

// ws->layer_sec: both engines add every layer's time when the caller asks for it.
static void test_profile(const net *n, uint8_t *const *tiles)
{
    for (int k = 0; k < 2; k++) {
        th_engine_kind kind = k ? TH_ENGINE_FAST : TH_ENGINE_REF;
        th_engine *e = th_engine_new(&n->m, kind, TW, TH, NULL);
        th_engine_ws *ws = e ? th_engine_ws_new(e, NULL) : NULL;
        double sec[MAX_LAYERS] = {0};
        float logits[N_CLASSES];
        bool ran = false, all = true;
        if (ws) {
            ws->layer_sec = sec;
            ran = th_engine_forward(e, ws, tiles[0], logits, NULL, NULL, NULL);
            ws->layer_sec = NULL;
            ran = ran && th_engine_forward(e, ws, tiles[0], logits, NULL, NULL, NULL);
        }
        for (int i = 0; i < n->m.n_layers; i++) {
            all = all && sec[i] > 0 && sec[i] < 10;
        }
        ok(ran && all, "%s engine: the profile has a time for each of the %d layers",
           k ? "fast" : "reference", n->m.n_layers);
        th_engine_ws_free(ws);
        th_engine_free(e);
    }
}

static void test_errors(const net *n, uint8_t *const *tiles)
{
    th_error *err = NULL;
    th_engine *e = th_engine_new(&n->m, TH_ENGINE_FAST, 1, 1, &err);
    ok(!e && err && strstr(th_error_message(err), "too small") &&
           strstr(th_error_message(err), "fast"),
       "a tile too small for the model is refused (%s)", err ? th_error_message(err) : "");
    th_error_free(err);
    err = NULL;

    th_engine *fast = new_fast(n, 2);
    th_engine *ref = th_engine_new(&n->m, TH_ENGINE_REF, TW, TH, &err);
    th_engine_ws *ws = ref ? th_engine_ws_new(ref, &err) : NULL;
    float logits[N_CLASSES];
    ok(ws && !th_engine_forward(fast, ws, tiles[0], logits, NULL, NULL, &err) && err &&
           strstr(th_error_message(err), "another engine"),
       "a workspace of another engine is refused");
    th_engine_ws_free(ws);
    th_engine_free(ref);
    th_engine_free(fast);
    th_error_free(err);
}

/* ---------------------------------------------------------------- int8 */

// int8 where a convolution without a ReLU feeds the next: its output can be negative, so it must
// leave in float32 (u8 would cut its negatives off), and the next one, whose input is not
// non-negative, stays float32.
static void test_int8_negative(void)
{
    net n;
    net_init(&n);
    net_conv3(&n, 16, true);
    net_conv3(&n, 16, false);
    net_conv3(&n, 16, true);
    net_finish(&n);
    enum { W = 32, H = 24 };
    uint8_t *rgb = random_tile(W, H);
    th_error *err = NULL;
    th_engine *f = th_engine_new(&n.m, TH_ENGINE_FAST, W, H, &err);
    th_engine_ws *fws = f ? th_engine_ws_new(f, &err) : NULL;
    float act_max[3] = {0}, lf[N_CLASSES], lq[N_CLASSES];
    float *ff = f ? tu_xcalloc((size_t)f->feat_c * f->feat_h * f->feat_w, sizeof(float)) : NULL;
    float *fq = f ? tu_xcalloc((size_t)f->feat_c * f->feat_h * f->feat_w, sizeof(float)) : NULL;
    bool ok_f = fws && th_engine_calibrate(f, fws, rgb, act_max, NULL, lf, ff, &err);
    th_engine *q = ok_f ? th_engine_new_int8(&n.m, W, H, act_max, NULL, &err) : NULL;
    th_engine_ws *qws = q ? th_engine_ws_new(q, &err) : NULL;
    bool ok_q = qws && th_engine_forward(q, qws, rgb, lq, NULL, fq, &err);
    double e = ok_q ? rel_err(fq, ff, (size_t)f->feat_c * f->feat_h * f->feat_w) : 1;
    ok(ok_q && q->n_int8 == 1 && e < 0.05,
       "int8: a convolution without a ReLU before another gives float32 (1 int8 convolution: %d; "
       "features within %.3f of float32's, <= 0.05)%s%s",
       q ? q->n_int8 : -1, e, err ? ": " : "", err ? th_error_message(err) : "");
    th_engine_ws_free(qws);
    th_engine_free(q);
    th_engine_ws_free(fws);
    th_engine_free(f);
    th_free(ff);
    th_free(fq);
    th_free(rgb);
    th_error_free(err);
    net_free(&n);
}

int main(void)
{
    // every compare() checks fast and winograd; the two compare_wino() also count Winograd
    plan(2 * (2 * N_CONV + N_POOL + 3 + 5) + 2 + 1 + 2 + 2 * 5 + 2 + 2 + 1);
    net mixed;
    build_mixed(&mixed);
    uint8_t *tiles[N_TILES];
    for (int t = 0; t < N_TILES; t++) {
        tiles[t] = random_tile(TW, TH);
    }
    test_no_threads(&mixed, tiles); // first: no parallel region may have run yet
    test_convs();
    test_pools();
    test_relu();
    test_models();
    test_repeat(&mixed, tiles);
    test_threads(&mixed, tiles, TH_ENGINE_FAST);
    net wide;
    static const int vgg64[] = {64, 64, 0, 128, 0, 256, 0, 512};
    build_vgg(&wide, vgg64, 8);
    test_threads(&wide, tiles, TH_ENGINE_WINOGRAD);
    net_free(&wide);
    test_profile(&mixed, tiles);
    test_errors(&mixed, tiles);
    test_int8_negative();
    for (int t = 0; t < N_TILES; t++) {
        th_free(tiles[t]);
    }
    net_free(&mixed);
    return 0;
}

#endif /* HAVE_DNNL */
