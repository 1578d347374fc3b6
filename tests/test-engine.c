/* SPDX-License-Identifier: MIT */
/* Tests for kernels.c and engine.c: every reference kernel against a naive oracle written here in
 * the most literal form (nested loops, a bounds check per tap, double sums) on many shapes; a
 * hand-built conv-relu-pool-conv-relu-GAP-dense model through th_engine_forward against the
 * composed oracles; bit-identical repeats; and th_engine_new's errors. */
#include <config.h>

#include "engine.h"
#include "kernels.h"
#include "tap.h"
#include "testutil.h"

/* ---------------------------------------------------------------- helpers */

static tu_rng rng = {0x9e3779b97f4a7c15ull}; // splitmix64: the same weights on every machine

// Largest |got - want| relative to the largest |want| (1e-5 of the max magnitude passes).
static double rel_err(const float *got, const double *want, size_t n)
{
    double maxdiff = 0, maxmag = 1e-30;
    for (size_t i = 0; i < n; i++) {
        maxdiff = fmax(maxdiff, fabs((double)got[i] - want[i]));
        maxmag = fmax(maxmag, fabs(want[i]));
    }
    return maxdiff / maxmag;
}

typedef struct conv_case {
    int c_in, c_out, h, w, kh, kw, sh, sw, dh, dw, pad_t, pad_l, pad_b, pad_r;
    bool relu;
} conv_case;

// A conv layer with PRNG weights in [-1, 1) (caller frees weight and bias).
static th_layer make_conv(const conv_case *k)
{
    th_layer l = TU_MODEL_CONV(k, k->c_in, k->c_out);
    snprintf(l.name, sizeof(l.name), "conv%dx%d", k->kh, k->kw);
    l.weight = tu_rng_floats(&rng, (size_t)k->c_out * k->c_in * k->kh * k->kw, -1, 1);
    l.bias = tu_rng_floats(&rng, (size_t)k->c_out, -1, 1);
    return l;
}

static void free_layer(th_layer *l)
{
    th_free((void *)l->weight);
    th_free((void *)l->bias);
}

/* ---------------------------------------------------------------- oracles */

// ONNX output size, floor mode: (in + pads - dilated kernel) / stride + 1.
static int oracle_out(int in, int pad0, int pad1, int k, int d, int s)
{
    return (in + pad0 + pad1 - ((k - 1) * d + 1)) / s + 1;
}

static void oracle_input(const uint8_t *rgb, int h, int w, const th_model *m, double *out)
{
    for (int c = 0; c < 3; c++) {
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                double v = rgb[(y * w + x) * 3 + c];
                out[(c * h + y) * w + x] =
                    (v * m->input_scale - m->input_mean[c]) / m->input_std[c];
            }
        }
    }
}

static void oracle_conv(const th_layer *l, const double *in, int h, int w, double *out, int oh,
                        int ow)
{
    for (int co = 0; co < l->c_out; co++) {
        for (int oy = 0; oy < oh; oy++) {
            for (int ox = 0; ox < ow; ox++) {
                double s = l->bias[co];
                for (int ci = 0; ci < l->c_in; ci++) {
                    for (int ky = 0; ky < l->kh; ky++) {
                        for (int kx = 0; kx < l->kw; kx++) {
                            int iy = oy * l->sh - l->pad_t + ky * l->dh;
                            int ix = ox * l->sw - l->pad_l + kx * l->dw;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
                                continue;
                            }
                            s +=
                                (double)l->weight[((co * l->c_in + ci) * l->kh + ky) * l->kw + kx] *
                                in[(ci * h + iy) * w + ix];
                        }
                    }
                }
                if (l->relu && s < 0) {
                    s = 0;
                }
                out[(co * oh + oy) * ow + ox] = s;
            }
        }
    }
}

static void oracle_maxpool(const th_layer *l, const double *in, int c, int h, int w, double *out,
                           int oh, int ow)
{
    for (int ch = 0; ch < c; ch++) {
        for (int oy = 0; oy < oh; oy++) {
            for (int ox = 0; ox < ow; ox++) {
                double m = -INFINITY;
                for (int ky = 0; ky < l->kh; ky++) {
                    for (int kx = 0; kx < l->kw; kx++) {
                        int iy = oy * l->sh - l->pad_t + ky;
                        int ix = ox * l->sw - l->pad_l + kx;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
                            continue;
                        }
                        m = fmax(m, in[(ch * h + iy) * w + ix]);
                    }
                }
                out[(ch * oh + oy) * ow + ox] = m;
            }
        }
    }
}

static void oracle_gap(const double *in, int c, int h, int w, double *out)
{
    for (int ch = 0; ch < c; ch++) {
        double s = 0;
        for (int i = 0; i < h * w; i++) {
            s += in[ch * h * w + i];
        }
        out[ch] = s / (h * w);
    }
}

static void oracle_dense(const double *x, int n_in, const float *w, const float *b, int n_out,
                         double *out)
{
    for (int i = 0; i < n_out; i++) {
        double s = b[i];
        for (int k = 0; k < n_in; k++) {
            s += (double)w[i * n_in + k] * x[k];
        }
        out[i] = s;
    }
}

static void oracle_softmax(const double *x, int n, double *out)
{
    double max = x[0], sum = 0;
    for (int i = 1; i < n; i++) {
        max = fmax(max, x[i]);
    }
    for (int i = 0; i < n; i++) {
        sum += exp(x[i] - max);
    }
    for (int i = 0; i < n; i++) {
        out[i] = exp(x[i] - max) / sum;
    }
}

static double *to_double(const float *x, size_t n)
{
    double *d = th_calloc(n ? n : 1, sizeof(double), NULL);
    if (!d) {
        bail("out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        d[i] = x[i];
    }
    return d;
}

/* ---------------------------------------------------------------- kernels */

// clang-format off
static const conv_case conv_cases[] = {
    // c_in c_out  h   w  kh kw sh sw dh dw  t  l  b  r  relu
    {3, 4, 9, 11, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, false},
    {3, 5, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, true},
    {5, 3, 13, 7, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, false},
    {16, 8, 12, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, true},
    {5, 6, 15, 17, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2, false},
    {3, 4, 15, 17, 5, 5, 2, 2, 1, 1, 2, 2, 2, 2, true},
    {16, 4, 11, 13, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, false},
    {5, 4, 14, 9, 3, 3, 2, 1, 1, 1, 0, 1, 1, 0, true},
    {3, 3, 12, 12, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, false},
    {16, 5, 17, 19, 3, 5, 1, 2, 2, 2, 1, 3, 0, 2, true},
    {5, 2, 7, 33, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, false},
    {3, 7, 31, 29, 3, 3, 1, 1, 1, 1, 0, 2, 1, 0, false},
    {16, 16, 10, 10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, true},
    {5, 3, 6, 6, 5, 5, 1, 1, 1, 1, 4, 4, 4, 4, false}, // mostly padding
    {3, 2, 40, 37, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, false},
};
// clang-format on
#define N_CONV (int)(sizeof(conv_cases) / sizeof(conv_cases[0]))

static void test_conv(const conv_case *k)
{
    th_layer l = make_conv(k);
    int oh = oracle_out(k->h, k->pad_t, k->pad_b, k->kh, k->dh, k->sh);
    int ow = oracle_out(k->w, k->pad_l, k->pad_r, k->kw, k->dw, k->sw);
    int got_h = 0, got_w = 0;
    bool sized = th_layer_out_size(&l, k->h, k->w, &got_h, &got_w);
    size_t n_in = (size_t)k->c_in * k->h * k->w, n_out = (size_t)k->c_out * oh * ow;
    float *in = tu_rng_floats(&rng, n_in, -1, 1);
    float *out = tu_xcalloc(n_out, sizeof(float));
    double *din = to_double(in, n_in), *want = th_calloc(n_out, sizeof(double), NULL);
    th_kernel_conv(&l, in, k->h, k->w, out, oh, ow);
    oracle_conv(&l, din, k->h, k->w, want, oh, ow);
    double e = rel_err(out, want, n_out);
    ok(sized && got_h == oh && got_w == ow && e < 1e-5,
       "conv %d->%d %dx%d k%dx%d s%d,%d d%d,%d pads %d,%d,%d,%d%s: %dx%d, rel err %.2g", k->c_in,
       k->c_out, k->h, k->w, k->kh, k->kw, k->sh, k->sw, k->dh, k->dw, k->pad_t, k->pad_l, k->pad_b,
       k->pad_r, k->relu ? " relu" : "", ow, oh, e);
    th_free(want);
    th_free(din);
    th_free(out);
    th_free(in);
    free_layer(&l);
}

typedef struct pool_case {
    int c, h, w, k, s, pad, out_h, out_w; // out_h/out_w: expected, worked out by hand
    bool ceil_mode;
    float lo, hi; // input range; all-negative inputs catch padding that wins as 0
} pool_case;

// clang-format off
static const pool_case pool_cases[] = {
    {3, 8, 10, 2, 2, 0, 4, 5, false, -1, 1},
    {2, 7, 9, 2, 2, 0, 3, 4, false, -1, 1},
    {4, 7, 9, 3, 2, 1, 4, 5, false, -2, -0.5f},
    {2, 8, 8, 3, 2, 1, 4, 4, false, -2, -0.5f},
    {3, 7, 9, 2, 2, 0, 4, 5, true, -2, -0.5f},
    {2, 6, 12, 3, 2, 0, 3, 6, true, -1, 1},
    {2, 6, 6, 3, 2, 1, 4, 4, true, -2, -0.5f}, // the last window holds one input cell
    {2, 5, 5, 2, 2, 1, 3, 3, true, -2, -0.5f}, // ceil's 4th window would start in padding
};
// clang-format on
#define N_POOL (int)(sizeof(pool_cases) / sizeof(pool_cases[0]))

static void test_maxpool(const pool_case *k)
{
    th_layer l = {.kind = TH_LAYER_MAXPOOL,
                  .name = "pool",
                  .kh = k->k,
                  .kw = k->k,
                  .sh = k->s,
                  .sw = k->s,
                  .dh = 1,
                  .dw = 1,
                  .pad_t = k->pad,
                  .pad_l = k->pad,
                  .pad_b = k->pad,
                  .pad_r = k->pad,
                  .ceil_mode = k->ceil_mode,
                  .c_in = k->c,
                  .c_out = k->c};
    int oh = 0, ow = 0;
    bool sized = th_layer_out_size(&l, k->h, k->w, &oh, &ow);
    if (!sized || oh != k->out_h || ow != k->out_w) {
        ok(false, "maxpool %dx%d k%d s%d p%d%s: size %dx%d, want %dx%d", k->h, k->w, k->k, k->s,
           k->pad, k->ceil_mode ? " ceil" : "", ow, oh, k->out_w, k->out_h);
        return;
    }
    size_t n_in = (size_t)k->c * k->h * k->w, n_out = (size_t)k->c * oh * ow;
    float *in = tu_rng_floats(&rng, n_in, k->lo, k->hi);
    float *out = tu_xcalloc(n_out, sizeof(float));
    double *din = to_double(in, n_in), *want = th_calloc(n_out, sizeof(double), NULL);
    th_kernel_maxpool(&l, in, k->c, k->h, k->w, out, oh, ow);
    oracle_maxpool(&l, din, k->c, k->h, k->w, want, oh, ow);
    bool same = true; // max is exact: equal to the bit
    for (size_t i = 0; i < n_out; i++) {
        same = same && (double)out[i] == want[i];
    }
    ok(same, "maxpool %dx%d k%d s%d p%d%s -> %dx%d equals the oracle", k->h, k->w, k->k, k->s,
       k->pad, k->ceil_mode ? " ceil" : "", ow, oh);
    th_free(want);
    th_free(din);
    th_free(out);
    th_free(in);
}

static void test_small_kernels(void)
{
    float x[7] = {-3, -0.0f, 0.5f, 2, -1e-30f, 1e30f, -INFINITY};
    th_kernel_relu(x, 7);
    ok(x[0] == 0 && x[1] == 0 && x[2] == 0.5f && x[3] == 2 && x[4] == 0 && x[5] == 1e30f &&
           x[6] == 0,
       "relu clamps negatives to 0 and keeps positives");

    enum { C = 5, H = 7, W = 9, N_OUT = 4 };
    float *map = tu_rng_floats(&rng, C * H * W, -1, 3);
    double *dmap = to_double(map, C * H * W), want[C], dwant[N_OUT];
    float gap[C], dense[N_OUT];
    th_kernel_gap(map, C, H, W, gap);
    oracle_gap(dmap, C, H, W, want);
    ok(rel_err(gap, want, C) < 1e-6, "gap equals the mean of each channel");

    float *dw = tu_rng_floats(&rng, N_OUT * C, -1, 1), *db = tu_rng_floats(&rng, N_OUT, -1, 1);
    double dgap[C];
    for (int i = 0; i < C; i++) {
        dgap[i] = gap[i];
    }
    th_kernel_dense(gap, C, dw, db, N_OUT, dense);
    oracle_dense(dgap, C, dw, db, N_OUT, dwant);
    ok(rel_err(dense, dwant, N_OUT) < 1e-6, "dense equals W·x + b");
    th_free(dw);
    th_free(db);
    th_free(dmap);
    th_free(map);
}

static void test_input(void)
{
    enum { H = 5, W = 7 };
    th_model m = {.in_c = 3,
                  .input_scale = 1 / 255.0f,
                  .input_mean = {0.485f, 0.456f, 0.406f},
                  .input_std = {0.229f, 0.224f, 0.225f}};
    uint8_t rgb[H * W * 3];
    for (int i = 0; i < H * W * 3; i++) {
        rgb[i] = (uint8_t)(i * 37 + 11);
    }
    float out[3 * H * W];
    double want[3 * H * W];
    th_kernel_input(rgb, H, W, &m, out);
    oracle_input(rgb, H, W, &m, want);
    ok(rel_err(out, want, 3 * H * W) < 1e-6, "input: interleaved RGB to normalised planes");
}

static void test_softmax(void)
{
    const float x[4] = {0.5f, -1, 2, 0};
    const float big[3] = {1000, 1001, 1002};
    const float neg[3] = {-1000, -1001, -1e30f};
    float p[4];
    double d[4], want[4];

    th_kernel_softmax(x, 4, p);
    for (int i = 0; i < 4; i++) {
        d[i] = x[i];
    }
    oracle_softmax(d, 4, want);
    ok(rel_err(p, want, 4) < 1e-6 && fabs((double)p[0] + p[1] + p[2] + p[3] - 1) < 1e-6,
       "softmax matches exp(x)/Σexp(x) and sums to 1");

    th_kernel_softmax(big, 3, p);
    for (int i = 0; i < 3; i++) {
        d[i] = big[i];
    }
    oracle_softmax(d, 3, want);
    ok(isfinite(p[0]) && isfinite(p[2]) && rel_err(p, want, 3) < 1e-6,
       "softmax of 1000, 1001, 1002 does not overflow (%g %g %g)", p[0], p[1], p[2]);

    th_kernel_softmax(neg, 3, p);
    ok(p[0] > 0.73f && p[0] < 0.74f && p[2] == 0 && isfinite(p[1]),
       "softmax of large negative logits does not underflow to NaN");
}

/* ---------------------------------------------------------------- engine */

enum { N_CLASSES = 4, FEAT_C = 8, TILE_W = 21, TILE_H = 17 };

// conv 3->6 3×3 pad 1 (ReLU fused), maxpool 2×2 s2, conv 6->8 3×3 pad 1, Relu, GAP, dense 8->4.
static th_layer test_layers[4];
static th_model test_model = {.n_layers = 4,
                              .layers = test_layers,
                              .in_c = 3,
                              .feat_c = FEAT_C,
                              .n_classes = N_CLASSES,
                              .input_scale = 1 / 255.0f,
                              .input_mean = {0.485f, 0.456f, 0.406f},
                              .input_std = {0.229f, 0.224f, 0.225f}};

static void build_model(void)
{
    static const conv_case c0 = {3, 6, 0, 0, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, true};
    static const conv_case c1 = {6, FEAT_C, 0, 0, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, false};
    test_layers[0] = make_conv(&c0);
    test_layers[1] = (th_layer){.kind = TH_LAYER_MAXPOOL,
                                .name = "pool",
                                .kh = 2,
                                .kw = 2,
                                .sh = 2,
                                .sw = 2,
                                .dh = 1,
                                .dw = 1,
                                .c_in = 6,
                                .c_out = 6};
    test_layers[2] = make_conv(&c1);
    test_layers[3] =
        (th_layer){.kind = TH_LAYER_RELU, .name = "relu", .c_in = FEAT_C, .c_out = FEAT_C};
    test_model.dense_w = tu_rng_floats(&rng, N_CLASSES * FEAT_C, -1, 1);
    test_model.dense_b = tu_rng_floats(&rng, N_CLASSES, -1, 1);
}

static void free_model(void)
{
    free_layer(&test_layers[0]);
    free_layer(&test_layers[2]);
    th_free((void *)test_model.dense_w);
    th_free((void *)test_model.dense_b);
}

// The whole forward pass composed from the oracles: feat (8, 8, 10), logits and probs (4).
static void oracle_forward(const uint8_t *rgb, double *feat, double *logits, double *probs)
{
    double *x = th_calloc(3 * TILE_H * TILE_W, sizeof(double), NULL);
    double *a = th_calloc(6 * TILE_H * TILE_W, sizeof(double), NULL);
    double *b = th_calloc(6 * 8 * 10, sizeof(double), NULL);
    double gap[FEAT_C];
    oracle_input(rgb, TILE_H, TILE_W, &test_model, x);
    oracle_conv(&test_layers[0], x, TILE_H, TILE_W, a, TILE_H, TILE_W);
    oracle_maxpool(&test_layers[1], a, 6, TILE_H, TILE_W, b, 8, 10);
    oracle_conv(&test_layers[2], b, 8, 10, feat, 8, 10);
    for (int i = 0; i < FEAT_C * 8 * 10; i++) {
        feat[i] = fmax(feat[i], 0);
    }
    oracle_gap(feat, FEAT_C, 8, 10, gap);
    oracle_dense(gap, FEAT_C, test_model.dense_w, test_model.dense_b, N_CLASSES, logits);
    oracle_softmax(logits, N_CLASSES, probs);
    th_free(b);
    th_free(a);
    th_free(x);
}

static void random_tile(uint8_t *rgb)
{
    for (int i = 0; i < TILE_W * TILE_H * 3; i++) {
        rgb[i] = (uint8_t)tu_rng_float(&rng, 0, 256);
    }
}

static void test_forward(void)
{
    th_error *err = NULL;
    th_engine *e = th_engine_new(&test_model, TH_ENGINE_REF, TILE_W, TILE_H, &err);
    if (!e) {
        bail("th_engine_new: %s", th_error_message(err));
    }
    ok(e->feat_c == FEAT_C && e->feat_h == 8 && e->feat_w == 10,
       "feature shape planned as (%d, %d, %d)", e->feat_c, e->feat_h, e->feat_w);
    th_engine_ws *ws = th_engine_ws_new(e, &err);
    uint8_t rgb[TILE_H * TILE_W * 3];
    float feat[FEAT_C * 8 * 10], logits[N_CLASSES], probs[N_CLASSES];
    double dfeat[FEAT_C * 8 * 10], dlogits[N_CLASSES], dprobs[N_CLASSES];
    random_tile(rgb);
    bool ran = ws && th_engine_forward(e, ws, rgb, logits, probs, feat, &err);
    ok(ran, "forward runs (%s)", err ? th_error_message(err) : "no error");
    oracle_forward(rgb, dfeat, dlogits, dprobs);
    double ef = rel_err(feat, dfeat, FEAT_C * 8 * 10), el = rel_err(logits, dlogits, N_CLASSES);
    double ep = rel_err(probs, dprobs, N_CLASSES);
    ok(ran && ef < 1e-5, "feature map equals the composed oracles (rel err %.2g)", ef);
    ok(ran && el < 1e-5, "logits equal the composed oracles (rel err %.2g)", el);
    ok(ran && ep < 1e-5, "probs are softmax(logits), applied once (rel err %.2g)", ep);

    float logits2[N_CLASSES];
    ran = ws && th_engine_forward(e, ws, rgb, logits2, NULL, NULL, &err);
    ok(ran && memcmp(logits, logits2, sizeof(logits)) == 0, "probs and feat may be NULL");
    th_engine_ws_free(ws);
    th_engine_free(e);
    th_error_free(err);
}

static void test_deterministic(void)
{
    th_error *err = NULL;
    th_engine *e = th_engine_new(&test_model, TH_ENGINE_REF, TILE_W, TILE_H, &err);
    th_engine_ws *ws1 = e ? th_engine_ws_new(e, &err) : NULL;
    th_engine_ws *ws2 = e ? th_engine_ws_new(e, &err) : NULL;
    if (!ws1 || !ws2) {
        bail("engine setup: %s", th_error_message(err));
    }
    uint8_t a[TILE_H * TILE_W * 3], b[TILE_H * TILE_W * 3];
    random_tile(a);
    random_tile(b);
    float fa[3][FEAT_C * 8 * 10], la[3][N_CLASSES], fb[FEAT_C * 8 * 10], lb[N_CLASSES];
    bool ran = th_engine_forward(e, ws1, a, la[0], NULL, fa[0], &err) &&
               th_engine_forward(e, ws1, b, lb, NULL, fb, &err) && // dirty the buffers
               th_engine_forward(e, ws1, a, la[1], NULL, fa[1], &err) &&
               th_engine_forward(e, ws2, a, la[2], NULL, fa[2], &err);
    ok(ran && memcmp(la[0], la[1], sizeof(la[0])) == 0 && memcmp(fa[0], fa[1], sizeof(fa[0])) == 0,
       "repeated calls on one workspace give identical bits");
    ok(ran && memcmp(la[0], la[2], sizeof(la[0])) == 0 && memcmp(fa[0], fa[2], sizeof(fa[0])) == 0,
       "two workspaces give identical bits");
    ok(memcmp(la[0], lb, sizeof(lb)) != 0, "a different tile gives different logits");

    th_engine *other = th_engine_new(&test_model, TH_ENGINE_REF, TILE_W, TILE_H, &err);
    ok(other && !th_engine_forward(other, ws1, a, lb, NULL, NULL, &err) && err &&
           strstr(th_error_message(err), "another engine"),
       "a workspace of another engine is refused");
    th_engine_free(other);
    th_engine_ws_free(ws2);
    th_engine_ws_free(ws1);
    th_engine_free(e);
    th_error_free(err);
}

static void test_errors(void)
{
    th_error *err = NULL;
    th_engine *e = th_engine_new(&test_model, TH_ENGINE_FAST, TILE_W, TILE_H, &err);
#ifdef HAVE_DNNL
    ok(e != NULL, "TH_ENGINE_FAST is built in (oneDNN) and plans the test model");
    ok(err == NULL, "... with no error");
    th_engine_free(e);
#else
    ok(!e, "TH_ENGINE_FAST is refused");
    is_string(err ? th_error_message(err) : NULL, "the fast engine is not built into this tileheat",
              "... with its message");
#endif
    th_error_free(err);
    err = NULL;

    // 1×1 after the 2×2 pool: conv 3×3 with pad 1 still works; a 1-pixel tile leaves the pool
    // with nothing.
    e = th_engine_new(&test_model, TH_ENGINE_REF, 1, 1, &err);
    ok(!e, "a 1×1 tile is too small");
    like(err ? th_error_message(err) : NULL, "too small", "... and the message says so");
    like(err ? th_error_message(err) : NULL, "node 'pool'", "... and names the layer");
    th_error_free(err);
    err = NULL;

    e = th_engine_new(&test_model, TH_ENGINE_REF, 0, 5, &err);
    like(err ? th_error_message(err) : NULL, "not positive", "a 0-wide tile is refused");
    th_error_free(err);
    err = NULL;

    test_model.feat_c = FEAT_C + 1; // dense layer wider than the trunk
    e = th_engine_new(&test_model, TH_ENGINE_REF, TILE_W, TILE_H, &err);
    test_model.feat_c = FEAT_C;
    ok(!e, "a trunk/dense channel mismatch is refused");
    like(err ? th_error_message(err) : NULL, "dense layer", "... with a message");
    th_error_free(err);

    // a plan whose activations would need more than 1 GiB a thread is refused when made
    err = NULL;
    e = th_engine_new(&test_model, TH_ENGINE_REF, 20000, 20000, &err);
    ok(!e, "a 20000×20000 tile (several GiB of activations) is refused at plan time");
    like(err ? th_error_message(err) : NULL, "more than tileheat's limit of 1024 MiB",
         "... naming the limit");
    like(err ? th_error_message(err) : NULL, "the widest layer: '", "... and the widest layer");
    th_error_free(err);

    th_engine_free(NULL);
    th_engine_ws_free(NULL);
    ok(true, "free functions accept NULL");
}

int main(void)
{
    plan(N_CONV + N_POOL + 7 + 6 + 4 + 12);
    test_input();
    for (int i = 0; i < N_CONV; i++) {
        test_conv(&conv_cases[i]);
    }
    for (int i = 0; i < N_POOL; i++) {
        test_maxpool(&pool_cases[i]);
    }
    test_small_kernels();
    test_softmax();
    build_model();
    test_forward();
    test_deterministic();
    test_errors();
    free_model();
    return 0;
}
