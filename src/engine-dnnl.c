/* SPDX-License-Identifier: MIT */
/* The fast backend on oneDNN's C API: at plan time one primitive per trunk layer (convolution
 * with its ReLU fused as a post-op, max pooling, standalone ReLU) in formats oneDNN picks, plus
 * the reorders between them, with conv weights reordered once; each workspace owns a stream,
 * memory objects and scratchpad. oneDNN runs single-threaded: tiles are the parallel unit. */
#include <config.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#include <dnnl.h>
#include <math.h>
#include <dnnl_debug.h>

#include "engine.h"
#include "kernels.h"

/* Buffers of a workspace: the normalised input, two ping-pong activations, the final map in
 * plain (C, H, W), its channel means, and the oneDNN scratchpad shared by every step (they run
 * one at a time). */
enum { BUF_INPUT, BUF_A, BUF_B, BUF_FEAT, BUF_GAP, BUF_SCRATCH, N_BUFS };

/* Fewest input channels for a Winograd convolution (see use_winograd). */
#define WINO_MIN_C 16

/* The arguments of a step, in the order of step_arg_ids. */
enum { ARG_SRC, ARG_DST, ARG_WEIGHTS, ARG_BIAS, ARG_SCRATCH, N_ARGS };
static const int step_arg_ids[N_ARGS] = {DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_WEIGHTS,
                                         DNNL_ARG_BIAS, DNNL_ARG_SCRATCHPAD};

// One primitive of the plan: its argument layouts and where each argument lives.
typedef struct step {
    dnnl_primitive_t prim;
    int layer;                     // trunk layer it belongs to (a reorder: the layer it feeds)
    dnnl_memory_desc_t md[N_ARGS]; // layouts; zero md = argument unused
    int buf[2];                    // BUF_* of src and dst (equal for the in-place ReLU)
    void *wei;                     // conv weights in md[ARG_WEIGHTS]'s layout, owned, aligned
    float *bias;                   // (c_out) conv bias, owned
    bool main;                     // the layer's own primitive (not a reorder before it)
} step;

typedef struct dnnl_plan {
    dnnl_engine_t eng;
    int n_steps;
    step *steps;              // (n_steps) in execution order
    size_t buf_bytes[N_BUFS]; // size of each workspace buffer
    size_t off[N_BUFS];       // byte offset of each buffer in the workspace (64-aligned)
    size_t ws_bytes;
    int outer_threads; // the caller's OpenMP thread count, for the reorders run at plan time
    int out_buf;       // BUF_* holding the trunk's output: BUF_FEAT (plain) or a part's blocked
} dnnl_plan;

// A workspace: the common struct first, so a th_engine_ws * of this backend is a dnnl_ws *.
typedef struct dnnl_ws {
    th_engine_ws base;
    dnnl_stream_t stream;
    dnnl_memory_t *mem; // (n_steps, N_ARGS) memory objects on this workspace's buffers
} dnnl_ws;

// The layout and place of the activation between two steps while the plan is built.
typedef struct act {
    dnnl_memory_desc_t md;
    int buf;
    int c, h, w;
    bool nonneg; // never negative (after a ReLU): an int8 convolution may take it as u8
    float scale; // u8 activations: the value times this (255 / the calibrated maximum)
} act;

static bool check(dnnl_status_t s, const char *what, th_error **err)
{
    if (s != dnnl_success) {
        th_error_set(err, "oneDNN %s: %s", what, dnnl_status2str(s));
        return false;
    }
    return true;
}

/*
 * oneDNN's OpenMP build sizes its kernels for omp_get_max_threads() when a primitive is made,
 * and runs a parallel region of that many threads when called outside one. Tiles are our
 * parallel unit and nested parallelism is banned, so oneDNN must plan and run with one thread
 * wherever it is called from: serial_begin makes this task's thread count 1 (inside the tile
 * loop oneDNN already runs serially; a serial caller gets the same kernels and the same bits),
 * serial_end restores it. Without OpenMP here oneDNN keeps its own threading.
 */
static int serial_begin(void)
{
#ifdef _OPENMP
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    return saved;
#else
    return 0;
#endif
}

static void serial_end(int saved)
{
#ifdef _OPENMP
    omp_set_num_threads(saved);
#else
    (void)saved;
#endif
}

// The layout of c channels in blocks of b: plain (nchw) for 1, nhwc for c, else nChw8c or
// nChw16c; 0 if none.
static dnnl_format_tag_t block_tag(int b, int c)
{
    return b == 1    ? dnnl_nchw
           : b == c  ? dnnl_nhwc
           : b == 8  ? dnnl_nChw8c
           : b == 16 ? dnnl_nChw16c
                     : 0;
}

// The channel block of md (float32 or u8) if it is one of block_tag's layouts, else 0.
static int md_block(const dnnl_memory_desc_t *md, int c, int h, int w)
{
    const int blocks[] = {1, 8, 16, c};
    const dnnl_dims_t dims = {1, c, h, w};
    for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
        dnnl_memory_desc_t want;
        if (block_tag(blocks[i], c) &&
            dnnl_memory_desc_init_by_tag(&want, 4, dims, md->data_type, block_tag(blocks[i], c)) ==
                dnnl_success &&
            dnnl_memory_desc_equal(md, &want)) {
            return blocks[i];
        }
    }
    return 0;
}

// A buffer must hold every layout placed in it.
static void place(dnnl_plan *p, int buf, const dnnl_memory_desc_t *md)
{
    p->buf_bytes[buf] = TH_MAX(p->buf_bytes[buf], dnnl_memory_desc_get_size(md));
}

static step *new_step(dnnl_plan *p, int layer, int src_buf, int dst_buf)
{
    step *s = &p->steps[p->n_steps++];
    s->layer = layer;
    s->buf[0] = src_buf;
    s->buf[1] = dst_buf;
    return s;
}

static int other_buf(int buf)
{
    return buf == BUF_A ? BUF_B : BUF_A;
}

/*
 * Make the primitive of pd into step s: record its src, dst and scratchpad layouts (the
 * scratchpad goes to BUF_SCRATCH), then create it. Takes pd over.
 */
static bool finish_step(dnnl_plan *p, step *s, dnnl_primitive_desc_t pd, th_error **err)
{
    static const dnnl_query_t queries[N_ARGS] = {dnnl_query_src_md, dnnl_query_dst_md,
                                                 dnnl_query_weights_md, dnnl_query_weights_md,
                                                 dnnl_query_scratchpad_md};
    const int index[N_ARGS] = {0, 0, 0, 1, 0}; // bias is weights #1
    for (int a = 0; a < N_ARGS; a++) {
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, queries[a], index[a]);
        if (md) {
            s->md[a] = *md;
        }
    }
    place(p, s->buf[0], &s->md[ARG_SRC]);
    place(p, s->buf[1], &s->md[ARG_DST]);
    place(p, BUF_SCRATCH, &s->md[ARG_SCRATCH]);
    bool ok = check(dnnl_primitive_create(&s->prim, pd), "primitive", err);
    dnnl_primitive_desc_destroy(pd);
    return ok;
}

// Reorder the activation into `want` (another buffer) if it is in a different layout or type,
// multiplying by `scale` (1: none; float32 into u8: the u8 scale; back: its inverse).
static bool plan_reorder(dnnl_plan *p, act *cur, const dnnl_memory_desc_t *want, int dst_buf,
                         int layer, float scale, th_error **err)
{
    if (dnnl_memory_desc_equal(&cur->md, want)) {
        return true;
    }
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    bool ok = check(dnnl_primitive_attr_create(&attr), "attribute", err) &&
              (scale == 1 ||
               check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale), "scales", err)) &&
              check(dnnl_reorder_primitive_desc_create(&pd, &cur->md, p->eng, want, p->eng, attr),
                    "reorder", err);
    dnnl_primitive_attr_destroy(attr);
    if (!ok) {
        return false;
    }
    step *s = new_step(p, layer, cur->buf, dst_buf);
    cur->md = *want;
    cur->buf = dst_buf;
    return finish_step(p, s, pd, err);
}

// A primitive attribute: user scratchpad (one per workspace), and a fused ReLU if asked.
static bool make_attr(dnnl_primitive_attr_t *attr, bool relu, th_error **err)
{
    dnnl_post_ops_t po = NULL;
    bool ok = check(dnnl_primitive_attr_create(attr), "attribute", err) &&
              check(dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user),
                    "scratchpad mode", err);
    if (ok && relu) {
        ok = check(dnnl_post_ops_create(&po), "post-ops", err) &&
             check(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0, 0), "post-ops",
                   err) &&
             check(dnnl_primitive_attr_set_post_ops(*attr, po), "post-ops", err);
        dnnl_post_ops_destroy(po);
    }
    return ok;
}

// Run one reorder from a user buffer to another now, on a temporary stream (plan time only:
// weights into the layout a convolution wants; Winograd's weight transform is one, and slow,
// 0.9 s for VGG16 on one thread). It may use every thread the plan's caller had: each output value
// is computed the same way whatever the split, which test-engine-fast checks (engines planned under
// 1 and 2 threads give the same bits).
static bool reorder_now(dnnl_engine_t eng, const dnnl_memory_desc_t *from, void *src,
                        const dnnl_memory_desc_t *to, void *dst, int threads, th_error **err)
{
    serial_end(threads); // all the threads the plan's caller had
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_stream_t stream = NULL;
    dnnl_memory_t m_src = NULL, m_dst = NULL;
    bool ok =
        check(dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, NULL), "reorder", err) &&
        check(dnnl_primitive_create(&prim, pd), "reorder", err) &&
        check(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags), "stream", err) &&
        check(dnnl_memory_create(&m_src, from, eng, src), "memory", err) &&
        check(dnnl_memory_create(&m_dst, to, eng, dst), "memory", err);
    if (ok) {
        const dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, m_src}, {DNNL_ARG_TO, m_dst}};
        ok = check(dnnl_primitive_execute(prim, stream, 2, args), "reorder", err) &&
             check(dnnl_stream_wait(stream), "stream", err);
    }
    dnnl_memory_destroy(m_dst);
    dnnl_memory_destroy(m_src);
    dnnl_stream_destroy(stream);
    dnnl_primitive_destroy(prim);
    dnnl_primitive_desc_destroy(pd);
    serial_begin(); // back to the plan's serial mode; the count it returns is `threads`
    return ok;
}

// The conv step's own copies of its weights (in oneDNN's chosen layout) and bias.
static bool conv_weights(dnnl_plan *p, step *s, const th_layer *l, th_error **err)
{
    const dnnl_dims_t dims = {l->c_out, l->c_in, l->kh, l->kw};
    dnnl_memory_desc_t oihw;
    size_t bytes = dnnl_memory_desc_get_size(&s->md[ARG_WEIGHTS]);
    s->wei = th_malloc_aligned(bytes ? bytes : 1, err);
    s->bias = th_malloc_aligned(sizeof(float) * l->c_out, err);
    if (!s->wei || !s->bias ||
        !check(dnnl_memory_desc_init_by_tag(&oihw, 4, dims, dnnl_f32, dnnl_oihw), "memory", err)) {
        return false;
    }
    memcpy(s->bias, l->bias, sizeof(float) * l->c_out);
    // weight: (c_out, c_in, kh, kw) row-major, only read by the reorder
    return reorder_now(p->eng, &oihw, (void *)l->weight, &s->md[ARG_WEIGHTS], s->wei,
                       p->outer_threads, err);
}

static bool conv_desc(const th_layer *l, const act *cur, int oh, int ow, dnnl_alg_kind_t alg,
                      dnnl_convolution_desc_t *cd, th_error **err)
{
    const dnnl_dims_t src_dims = {1, l->c_in, cur->h, cur->w};
    const dnnl_dims_t wei_dims = {l->c_out, l->c_in, l->kh, l->kw};
    const dnnl_dims_t bias_dims = {l->c_out}, dst_dims = {1, l->c_out, oh, ow};
    const dnnl_dims_t strides = {l->sh, l->sw}, dilates = {l->dh - 1, l->dw - 1};
    const dnnl_dims_t pad_l = {l->pad_t, l->pad_l}, pad_r = {l->pad_b, l->pad_r};
    dnnl_memory_desc_t src, wei, bias, dst;
    return check(dnnl_memory_desc_init_by_tag(&src, 4, src_dims, dnnl_f32, dnnl_format_tag_any),
                 "memory", err) &&
           check(dnnl_memory_desc_init_by_tag(&wei, 4, wei_dims, dnnl_f32, dnnl_format_tag_any),
                 "memory", err) &&
           check(dnnl_memory_desc_init_by_tag(&bias, 1, bias_dims, dnnl_f32, dnnl_x), "memory",
                 err) &&
           check(dnnl_memory_desc_init_by_tag(&dst, 4, dst_dims, dnnl_f32, dnnl_format_tag_any),
                 "memory", err) &&
           check(dnnl_dilated_convolution_forward_desc_init(cd, dnnl_forward_inference, alg, &src,
                                                            &wei, &bias, &dst, strides, dilates,
                                                            pad_l, pad_r),
                 "convolution", err);
}

// Whether layer l gets Winograd: the winograd engine, a 3×3 stride-1 undilated convolution, and
// at least WINO_MIN_C input channels (below that the transforms cost more than they save:
// measured with bench/bench-engine --model models/default.onnx, see bench/README.md).
static bool use_winograd(const th_engine *e, const th_layer *l)
{
    return e->kind == TH_ENGINE_WINOGRAD && l->kh == 3 && l->kw == 3 && l->sh == 1 && l->sw == 1 &&
           l->dh == 1 && l->dw == 1 && l->c_in >= WINO_MIN_C;
}

// The convolution's primitive descriptor: Winograd when asked for and oneDNN implements it for
// this shape on this CPU (F(4×4,3×3) or F(2×2,3×3), its choice, on AVX-512 only in oneDNN
// 2.6), else direct.
static bool conv_pd(const dnnl_plan *p, const th_layer *l, const act *cur, int oh, int ow,
                    bool *winograd, dnnl_primitive_desc_t *pd, th_error **err)
{
    dnnl_convolution_desc_t cd;
    dnnl_primitive_attr_t attr = NULL;
    bool ok = make_attr(&attr, l->relu, err);
    if (ok && *winograd && conv_desc(l, cur, oh, ow, dnnl_convolution_winograd, &cd, NULL) &&
        dnnl_primitive_desc_create(pd, &cd, attr, p->eng, NULL) == dnnl_success) {
        dnnl_primitive_attr_destroy(attr);
        return true;
    }
    *winograd = false;
    ok = ok && conv_desc(l, cur, oh, ow, dnnl_convolution_direct, &cd, err) &&
         check(dnnl_primitive_desc_create(pd, &cd, attr, p->eng, NULL), "convolution", err);
    dnnl_primitive_attr_destroy(attr);
    return ok;
}

// Convolution + bias (+ fused ReLU); its input reordered first if it wants another layout.
static bool plan_conv(th_engine *e, dnnl_plan *p, int i, const th_layer *l, act *cur, int oh,
                      int ow, th_error **err)
{
    dnnl_primitive_desc_t pd = NULL;
    bool winograd = use_winograd(e, l);
    if (!conv_pd(p, l, cur, oh, ow, &winograd, &pd, err)) {
        return false;
    }
    e->n_winograd += winograd;
    const dnnl_memory_desc_t want = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    if (!plan_reorder(p, cur, &want, other_buf(cur->buf), i, 1.0f / cur->scale, err)) {
        dnnl_primitive_desc_destroy(pd);
        return false;
    }
    step *s = new_step(p, i, cur->buf, other_buf(cur->buf));
    s->main = true;
    if (!finish_step(p, s, pd, err) || !conv_weights(p, s, l, err)) {
        return false;
    }
    *cur = (act){.md = s->md[ARG_DST],
                 .buf = s->buf[1],
                 .c = l->c_out,
                 .h = oh,
                 .w = ow,
                 .nonneg = l->relu,
                 .scale = 1};
    return true;
}

/* ---------------------------------------------------------------- int8 */

// 255 / the calibrated maximum: the scale of a u8 activation (1 for an all-zero one).
static float u8_scale(float max)
{
    return max > 0 ? 255.0f / max : 1.0f;
}

// The convolution in int8: u8 input (the activation quantised first if it is float), s8 weights
// with a scale per output channel (127 / its largest |weight|), s32 sums, the bias added before
// the output scale, the fused ReLU after it; u8 output (255 = the calibrated maximum of its
// output), or float32 (float_out: the CAM features, a part's float output, or an output that can
// be negative).
static bool plan_conv_int8(th_engine *e, dnnl_plan *p, int i, const th_layer *l, act *cur, int oh,
                           int ow, bool float_out, th_error **err)
{
    const int co = l->c_out;
    const size_t per_oc = (size_t)l->c_in * l->kh * l->kw;
    float s_in = cur->md.data_type == dnnl_u8 ? cur->scale : u8_scale(e->act_max[i - 1]);
    float s_out = float_out ? 1.0f : u8_scale(e->act_max[i]);
    // its input's channel means (a part's first layer: the part's input's), if all are known
    const float *in_mean = e->part       ? (i == 0 ? e->in_mean : NULL)
                           : e->act_mean ? e->act_mean + th_model_act_offset(e->model, i - 1)
                                         : NULL;
    for (int c = 0; in_mean && c < l->c_in; c++) {
        in_mean = isfinite(in_mean[c]) ? in_mean : NULL;
    }
    float *oscale = th_malloc(sizeof(float) * co, err);
    int8_t *wq = th_malloc(per_oc * co + 1, err);
    bool ok = oscale && wq;
    step *s = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    float *bias_q = ok ? th_malloc_aligned(sizeof(float) * co, err) : NULL;
    ok = ok && bias_q;
    for (int o = 0; ok && o < co; o++) {
        const float *w = l->weight + o * per_oc;
        float mx = 0;
        for (size_t k = 0; k < per_oc; k++) {
            mx = fmaxf(mx, fabsf(w[k]));
        }
        float s_w = mx > 0 ? 127.0f / mx : 1.0f;
        double shift = 0; // what the rounded weights add on average: their error times in_mean
        for (size_t k = 0; k < per_oc; k++) {
            wq[o * per_oc + k] = (int8_t)lrintf(fminf(fmaxf(w[k] * s_w, -127.0f), 127.0f));
            shift += in_mean ? ((double)wq[o * per_oc + k] / s_w - w[k]) *
                                   in_mean[k / ((size_t)l->kh * l->kw)]
                             : 0;
        }
        bias_q[o] = (float)(l->bias[o] - shift) * s_in * s_w;
        oscale[o] = s_out / (s_in * s_w);
    }
    const dnnl_dims_t src_dims = {1, l->c_in, cur->h, cur->w};
    const dnnl_dims_t wei_dims = {co, l->c_in, l->kh, l->kw};
    const dnnl_dims_t bias_dims = {co}, dst_dims = {1, co, oh, ow};
    const dnnl_dims_t strides = {l->sh, l->sw}, dilates = {l->dh - 1, l->dw - 1};
    const dnnl_dims_t pad_l = {l->pad_t, l->pad_l}, pad_r = {l->pad_b, l->pad_r};
    dnnl_memory_desc_t src, wei, bias, dst, oihw;
    dnnl_convolution_desc_t cd;
    ok =
        ok &&
        check(dnnl_memory_desc_init_by_tag(&src, 4, src_dims, dnnl_u8, dnnl_format_tag_any),
              "memory", err) &&
        check(dnnl_memory_desc_init_by_tag(&wei, 4, wei_dims, dnnl_s8, dnnl_format_tag_any),
              "memory", err) &&
        check(dnnl_memory_desc_init_by_tag(&bias, 1, bias_dims, dnnl_f32, dnnl_x), "memory", err) &&
        check(dnnl_memory_desc_init_by_tag(&dst, 4, dst_dims, float_out ? dnnl_f32 : dnnl_u8,
                                           dnnl_format_tag_any),
              "memory", err) &&
        check(dnnl_memory_desc_init_by_tag(&oihw, 4, wei_dims, dnnl_s8, dnnl_oihw), "memory",
              err) &&
        check(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference,
                                                         dnnl_convolution_direct, &src, &wei, &bias,
                                                         &dst, strides, dilates, pad_l, pad_r),
              "convolution", err) &&
        make_attr(&attr, l->relu, err) &&
        check(dnnl_primitive_attr_set_output_scales(attr, co, 1 << 1, oscale), "scales", err) &&
        check(dnnl_primitive_desc_create(&pd, &cd, attr, p->eng, NULL), "int8 convolution", err);
    dnnl_primitive_attr_destroy(attr);
    if (ok) {
        const dnnl_memory_desc_t want = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
        ok = plan_reorder(p, cur, &want, other_buf(cur->buf), i,
                          cur->md.data_type == dnnl_u8 ? 1.0f : s_in, err);
    }
    if (ok) {
        s = new_step(p, i, cur->buf, other_buf(cur->buf));
        s->main = true;
        s->bias = bias_q;
        bias_q = NULL;
        ok = finish_step(p, s, pd, err);
        pd = NULL;
    }
    if (ok) {
        size_t bytes = dnnl_memory_desc_get_size(&s->md[ARG_WEIGHTS]);
        ok = (s->wei = th_malloc_aligned(bytes ? bytes : 1, err)) != NULL &&
             reorder_now(p->eng, &oihw, wq, &s->md[ARG_WEIGHTS], s->wei, p->outer_threads, err);
    }
    dnnl_primitive_desc_destroy(pd);
    th_free(bias_q);
    th_free(wq);
    th_free(oscale);
    if (!ok) {
        return false;
    }
    e->n_int8++;
    *cur = (act){.md = s->md[ARG_DST],
                 .buf = s->buf[1],
                 .c = co,
                 .h = oh,
                 .w = ow,
                 .nonneg = l->relu,
                 .scale = s_out};
    return true;
}

/*
 * Max pooling in the activation's layout. oneDNN's max pooling never lets a padded cell win,
 * as ONNX. It has no ceil_mode: the right/bottom padding it gets is the least one that gives
 * th_layer_out_size's output (any such padding adds only cells that never win).
 */
static bool plan_pool(dnnl_plan *p, int i, const th_layer *l, act *cur, int oh, int ow,
                      th_error **err)
{
    const int need_b = (oh - 1) * l->sh + l->kh - cur->h - l->pad_t;
    const int need_r = (ow - 1) * l->sw + l->kw - cur->w - l->pad_l;
    const dnnl_dims_t dst_dims = {1, cur->c, oh, ow}, strides = {l->sh, l->sw};
    const dnnl_dims_t kernel = {l->kh, l->kw}, dilation = {0, 0};
    const dnnl_dims_t pad_l = {l->pad_t, l->pad_l}, pad_r = {TH_MAX(need_b, 0), TH_MAX(need_r, 0)};
    dnnl_memory_desc_t dst;
    dnnl_pooling_v2_desc_t pdesc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    bool ok =
        check(
            dnnl_memory_desc_init_by_tag(&dst, 4, dst_dims, cur->md.data_type, dnnl_format_tag_any),
            "memory", err) &&
        check(dnnl_pooling_v2_forward_desc_init(&pdesc, dnnl_forward_inference, dnnl_pooling_max,
                                                &cur->md, &dst, strides, kernel, dilation, pad_l,
                                                pad_r),
              "max pooling", err) &&
        make_attr(&attr, false, err) &&
        check(dnnl_primitive_desc_create(&pd, &pdesc, attr, p->eng, NULL), "max pooling", err);
    dnnl_primitive_attr_destroy(attr);
    if (!ok) {
        return false;
    }
    step *s = new_step(p, i, cur->buf, other_buf(cur->buf));
    s->main = true;
    if (!finish_step(p, s, pd, err)) {
        return false;
    }
    cur->md = s->md[ARG_DST];
    cur->buf = s->buf[1];
    cur->h = oh;
    cur->w = ow;
    return true;
}

// A standalone ReLU, in place in the activation's buffer and layout.
static bool plan_relu(dnnl_plan *p, int i, act *cur, th_error **err)
{
    cur->nonneg = true;
    if (cur->md.data_type == dnnl_u8) {
        return true; // u8 is never negative
    }
    dnnl_eltwise_desc_t ed;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    bool ok = check(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, dnnl_eltwise_relu,
                                                   &cur->md, 0, 0),
                    "relu", err) &&
              make_attr(&attr, false, err) &&
              check(dnnl_primitive_desc_create(&pd, &ed, attr, p->eng, NULL), "relu", err);
    dnnl_primitive_attr_destroy(attr);
    step *s = ok ? new_step(p, i, cur->buf, cur->buf) : NULL;
    if (s) {
        s->main = true;
    }
    return ok && finish_step(p, s, pd, err);
}

// Every layer in turn, then a reorder of the last map into plain (C, H, W) in BUF_FEAT.
static bool plan_steps(th_engine *e, dnnl_plan *p, th_error **err)
{
    const th_model *m = e->model;
    // A part's u8 input (th_engine_new_part) is never negative.
    const bool u8_in = e->part && e->in_scale > 0;
    act cur = {.buf = BUF_INPUT,
               .c = m->in_c,
               .h = e->tile_h,
               .w = e->tile_w,
               .scale = u8_in ? e->in_scale : 1,
               .nonneg = u8_in};
    // int8: the convolutions th_engine_int8_layer names; a part's all (its caller chose them).
    // The last convolution's output (the CAM features), and any without a ReLU, are float32.
    int last_conv = -1;
    for (int i = 0; i < m->n_layers; i++) {
        last_conv = m->layers[i].kind == TH_LAYER_CONV ? i : last_conv;
    }
    const dnnl_dims_t in_dims = {1, cur.c, cur.h, cur.w};
    if (!block_tag(e->in_block, cur.c)) {
        th_error_set(err, "no %d-channel blocked layout", e->in_block);
        return false;
    }
    if (!check(dnnl_memory_desc_init_by_tag(&cur.md, 4, in_dims, u8_in ? dnnl_u8 : dnnl_f32,
                                            block_tag(e->in_block, cur.c)),
               "memory", err)) {
        return false;
    }
    place(p, BUF_INPUT, &cur.md);
    for (int i = 0; i < m->n_layers; i++) {
        const th_layer *l = &m->layers[i];
        int oh, ow;
        bool ok = th_layer_out_size(l, cur.h, cur.w, &oh, &ow); // checked by th_engine_new
        switch (l->kind) {
        case TH_LAYER_CONV:
            ok = ok &&
                 (e->act_max && (e->part ? cur.nonneg : th_engine_int8_layer(m, i))
                      ? plan_conv_int8(e, p, i, l, &cur, oh, ow,
                                       (i == last_conv && !(e->out_max > 0)) || !l->relu, err)
                      : plan_conv(e, p, i, l, &cur, oh, ow, err));
            break;
        case TH_LAYER_MAXPOOL:
            ok = ok && plan_pool(p, i, l, &cur, oh, ow, err);
            break;
        case TH_LAYER_RELU:
            ok = ok && plan_relu(p, i, &cur, err);
            break;
        }
        if (!ok) {
            th_error_prefix(err, "node '%s': ", l->name);
            return false;
        }
    }
    // The output: float32, or u8 for a part asked for it (its own u8 scale if its last layer is
    // u8, else 255 at out_max).
    const bool u8_out = e->part && e->out_max > 0, u8_cur = cur.md.data_type == dnnl_u8;
    e->out_scale = !u8_out ? 1 : u8_cur ? cur.scale : u8_scale(e->out_max);
    p->out_buf = BUF_FEAT;
    if (e->part && e->out_block == 0) { // the next part takes a blocked output as it is
        int b = md_block(&cur.md, cur.c, cur.h, cur.w);
        e->out_block = b > 1 && cur.buf != BUF_INPUT ? b : 1;
        if (e->out_block > 1 && u8_cur == u8_out) {
            p->out_buf = cur.buf;
            return true;
        }
    }
    // Into out_block's layout (set: plain, or a part's blocking), converting the type.
    dnnl_memory_desc_t feat;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    float scale = u8_cur == u8_out ? 1 : u8_cur ? 1.0f / cur.scale : e->out_scale;
    const dnnl_dims_t feat_dims = {1, cur.c, cur.h, cur.w};
    bool ok = check(dnnl_memory_desc_init_by_tag(&feat, 4, feat_dims, u8_out ? dnnl_u8 : dnnl_f32,
                                                 block_tag(e->out_block, cur.c)),
                    "memory", err) &&
              check(dnnl_primitive_attr_create(&attr), "attribute", err) &&
              (scale == 1 ||
               check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale), "scales", err)) &&
              check(dnnl_reorder_primitive_desc_create(&pd, &cur.md, p->eng, &feat, p->eng, attr),
                    "reorder", err);
    dnnl_primitive_attr_destroy(attr);
    // Profiled as part of the last layer, if any.
    return ok && finish_step(p, new_step(p, m->n_layers - 1, cur.buf, BUF_FEAT), pd, err);
}

static void fast_free(th_engine *e)
{
    dnnl_plan *p = e->data;
    if (p) {
        for (int i = 0; i < p->n_steps; i++) {
            dnnl_primitive_destroy(p->steps[i].prim);
            th_free(p->steps[i].wei);
            th_free(p->steps[i].bias);
        }
        th_free(p->steps);
        if (p->eng) {
            dnnl_engine_destroy(p->eng);
        }
        th_free(p);
    }
    e->data = NULL;
}

// Lay the buffers out one after another, each on whole 64-byte lines.
static bool layout(dnnl_plan *p, th_error **err)
{
    p->ws_bytes = 0;
    for (int b = 0; b < N_BUFS; b++) {
        size_t lines = p->buf_bytes[b] / 64 + (p->buf_bytes[b] % 64 != 0);
        if (lines > (SIZE_MAX - p->ws_bytes) / 64) {
            th_error_set(err, "the workspace would be larger than memory");
            return false;
        }
        p->off[b] = p->ws_bytes;
        p->ws_bytes += lines * 64;
    }
    return true;
}

static bool fast_plan(th_engine *e, th_error **err)
{
    const dnnl_version_t *v = dnnl_version();
    if (v->cpu_runtime != DNNL_RUNTIME_OMP && v->cpu_runtime != DNNL_RUNTIME_SEQ) {
        th_error_set(err,
                     "oneDNN %d.%d uses the %s CPU runtime; tileheat needs OpenMP or "
                     "sequential",
                     v->major, v->minor, dnnl_runtime2str(v->cpu_runtime));
        return false;
    }
    dnnl_plan *p = th_calloc(1, sizeof(*p), err);
    e->data = p;
    // At most a reorder before each layer, plus the final reorder.
    if (!p || !(p->steps = th_calloc(2 * (size_t)e->model->n_layers + 1, sizeof(step), err)) ||
        !check(dnnl_engine_create(&p->eng, dnnl_cpu, 0), "CPU engine", err)) {
        return false;
    }
    int saved = serial_begin();
    p->outer_threads = saved;
    bool ok = plan_steps(e, p, err);
    serial_end(saved);
    p->buf_bytes[BUF_GAP] = sizeof(float) * (size_t)e->feat_c;
    ok = ok && layout(p, err);
    e->ws_bytes = p->ws_bytes;
    return ok;
}

static void fast_ws_free(th_engine_ws *base)
{
    dnnl_ws *ws = (dnnl_ws *)base;
    const dnnl_plan *p = base->engine->data;
    if (ws->mem) {
        for (int i = 0; i < p->n_steps * N_ARGS; i++) {
            dnnl_memory_destroy(ws->mem[i]);
        }
        th_free(ws->mem);
    }
    if (ws->stream) {
        dnnl_stream_destroy(ws->stream);
    }
    th_free(base->mem);
    th_free(ws);
}

// The memory objects of one step: activations and scratchpad in the workspace, weights shared.
static bool step_memories(const dnnl_plan *p, const step *s, dnnl_ws *ws, dnnl_memory_t *mem,
                          th_error **err)
{
    char *base = (char *)ws->base.mem;
    void *where[N_ARGS] = {base + p->off[s->buf[0]], base + p->off[s->buf[1]], s->wei, s->bias,
                           base + p->off[BUF_SCRATCH]};
    for (int a = 0; a < N_ARGS; a++) {
        if (dnnl_memory_desc_get_size(&s->md[a]) == 0) {
            continue; // argument not used by this primitive
        }
        if (!check(dnnl_memory_create(&mem[a], &s->md[a], p->eng, where[a]), "memory", err)) {
            return false;
        }
    }
    return true;
}

static th_engine_ws *fast_ws_new(const th_engine *e, th_error **err)
{
    const dnnl_plan *p = e->data;
    dnnl_ws *ws = th_calloc(1, sizeof(*ws), err);
    if (!ws) {
        return NULL;
    }
    ws->base.ops = e->ops;
    ws->base.engine = e;
    int saved = serial_begin(); // creating memory may zero the padding of blocked layouts
    bool ok =
        (ws->base.mem = th_malloc_aligned(p->ws_bytes, err)) &&
        (ws->mem = th_calloc((size_t)p->n_steps * N_ARGS, sizeof(dnnl_memory_t), err)) &&
        check(dnnl_stream_create(&ws->stream, p->eng, dnnl_stream_default_flags), "stream", err);
    for (int i = 0; ok && i < p->n_steps; i++) {
        ok = step_memories(p, &p->steps[i], ws, ws->mem + (size_t)i * N_ARGS, err);
    }
    serial_end(saved);
    if (!ok) {
        fast_ws_free(&ws->base);
        return NULL;
    }
    return &ws->base;
}

// Calibration: what run_steps measures of each layer's output (layer i's main step).
typedef struct stats {
    const th_model *model;
    float *max;  // (n_layers) raised to each layer's largest value
    float *mean; // (th_model_act_offset(n_layers)) each layer's channel means, or NULL
} stats;

// The largest float of step s's output and (into mean, c floats) its channel means, NaN where its
// layout is not one of block_tag's (the padding of blocked layouts is zero).
static float step_stats(const dnnl_plan *p, const dnnl_ws *ws, const step *s, int c, float *mean)
{
    const float *v = (const float *)((const char *)ws->base.mem + p->off[s->buf[1]]);
    const dnnl_dims_t *dims = &s->md[ARG_DST].dims;
    const size_t hw = (size_t)(*dims)[2] * (*dims)[3];
    const int b = mean ? md_block(&s->md[ARG_DST], c, (int)(*dims)[2], (int)(*dims)[3]) : 0;
    // [c/b][h][w][b]: channel ch is lane ch % b of block ch / b. One pass over the memory: each
    // lane summed in float over runs of 64 places, the runs in double, in order.
    double *sum = b ? th_malloc(sizeof(double) * b + sizeof(float) * 2 * b, NULL) : NULL;
    float *part = sum ? (float *)(sum + b) : NULL, *lane_max = sum ? part + b : NULL, mx = 0;
    for (int cb = 0; sum && cb * b < c; cb++) {
        const float *x = v + (size_t)cb * hw * b;
        for (int j = 0; j < b; j++) {
            sum[j] = lane_max[j] = 0;
        }
        for (size_t k0 = 0; k0 < hw; k0 += 64) {
            for (int j = 0; j < b; j++) {
                part[j] = 0;
            }
            for (size_t k = k0; k < TH_MIN(hw, k0 + 64); k++) {
                for (int j = 0; j < b; j++) {
                    const float y = x[k * b + j];
                    part[j] += y;
                    lane_max[j] = y > lane_max[j] ? y : lane_max[j]; // (fmaxf is a call here)
                }
            }
            for (int j = 0; j < b; j++) {
                sum[j] += part[j];
            }
        }
        for (int j = 0; j < b; j++) {
            mx = lane_max[j] > mx ? lane_max[j] : mx;
            if (cb * b + j < c) {
                mean[cb * b + j] = (float)(sum[j] / (double)hw);
            }
        }
    }
    if (!sum) { // not blocked (or no memory): the largest value alone
        size_t n = dnnl_memory_desc_get_size(&s->md[ARG_DST]) / sizeof(float);
        for (size_t k = 0; k < n; k++) {
            mx = v[k] > mx ? v[k] : mx;
        }
        for (int ch = 0; mean && ch < c; ch++) {
            mean[ch] = NAN; // not measured
        }
    }
    th_free(sum);
    return mx;
}

// Every step in order; what st (if not NULL) measures, after each layer's main step.
static bool run_steps(const dnnl_plan *p, dnnl_ws *ws, const stats *st, th_error **err)
{
    for (int i = 0; i < p->n_steps; i++) {
        const double t0 = ws->base.layer_sec ? th_engine_clock() : 0;
        dnnl_memory_t *mem = ws->mem + (size_t)i * N_ARGS;
        dnnl_exec_arg_t args[N_ARGS];
        int n = 0;
        for (int a = 0; a < N_ARGS; a++) {
            if (mem[a]) {
                args[n++] = (dnnl_exec_arg_t){step_arg_ids[a], mem[a]};
            }
        }
        if (!check(dnnl_primitive_execute(p->steps[i].prim, ws->stream, n, args), "execute", err)) {
            return false;
        }
        if (ws->base.layer_sec && p->steps[i].layer >= 0) {
            ws->base.layer_sec[p->steps[i].layer] += th_engine_clock() - t0;
        }
        if (st && p->steps[i].main) {
            if (!check(dnnl_stream_wait(ws->stream), "stream", err)) {
                return false;
            }
            const int l = p->steps[i].layer;
            float *mean = st->mean ? st->mean + th_model_act_offset(st->model, l) : NULL;
            float mx = step_stats(p, ws, &p->steps[i], st->model->layers[l].c_out, mean);
            st->max[l] = fmaxf(st->max[l], mx);
        }
    }
    return check(dnnl_stream_wait(ws->stream), "stream", err);
}

// One tile: normalise, the trunk (st as in run_steps), GAP and the dense layer.
static bool forward_tile(const th_engine *e, th_engine_ws *base, const uint8_t *rgb, float *logits,
                         float *feat, const stats *st, th_error **err)
{
    const th_model *m = e->model;
    const dnnl_plan *p = e->data;
    char *mem = (char *)base->mem;
    float *map = (float *)(mem + p->off[BUF_FEAT]); // (feat_c, feat_h, feat_w)
    float *gap = (float *)(mem + p->off[BUF_GAP]);  // (feat_c)

    th_kernel_input(rgb, e->tile_h, e->tile_w, m, (float *)(mem + p->off[BUF_INPUT]));
    int saved = serial_begin();
    bool ok = run_steps(p, (dnnl_ws *)base, st, err);
    serial_end(saved);
    if (!ok) {
        return false;
    }
    if (feat) {
        memcpy(feat, map, (size_t)e->feat_c * e->feat_h * e->feat_w * sizeof(float));
    }
    th_kernel_gap(map, e->feat_c, e->feat_h, e->feat_w, gap);
    th_kernel_dense(gap, e->feat_c, m->dense_w, m->dense_b, m->n_classes, logits);
    return true;
}

static bool fast_forward(const th_engine *e, th_engine_ws *base, const uint8_t *rgb, float *logits,
                         float *feat, th_error **err)
{
    return forward_tile(e, base, rgb, logits, feat, NULL, err);
}

static void *fast_input(const th_engine *e, th_engine_ws *base)
{
    const dnnl_plan *p = e->data;
    return (char *)base->mem + p->off[BUF_INPUT];
}

static const void *fast_part(const th_engine *e, th_engine_ws *base, th_error **err)
{
    const dnnl_plan *p = e->data;
    int saved = serial_begin();
    bool ok = run_steps(p, (dnnl_ws *)base, NULL, err);
    serial_end(saved);
    return ok ? (const void *)((char *)base->mem + p->off[p->out_buf]) : NULL;
}

bool th_engine_dnnl_calibrate(const th_engine *e, th_engine_ws *base, const uint8_t *rgb,
                              float *act_max, float *act_mean, float *logits, float *feat,
                              th_error **err)
{
    const stats st = {.model = e->model, .max = act_max, .mean = act_mean};
    return forward_tile(e, base, rgb, logits, feat, &st, err);
}

bool th_engine_int8_vnni(void)
{
    const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core_vnni) == dnnl_cpu_isa_avx512_core_vnni ||
           (isa & dnnl_cpu_isa_avx2_vnni) == dnnl_cpu_isa_avx2_vnni;
}

const th_engine_ops th_engine_dnnl_ops = {
    .name = "fast (oneDNN)",
    .plan = fast_plan,
    .free = fast_free,
    .ws_new = fast_ws_new,
    .ws_free = fast_ws_free,
    .forward = fast_forward,
    .input = fast_input,
    .trunk = fast_part,
};
