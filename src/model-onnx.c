/* SPDX-License-Identifier: MIT */
/* ONNX graph walking: follow the graph as one chain from its input (conv trunk -> global average
 * pooling -> one dense layer -> optional softmax), check the weight shapes, fold
 * BatchNormalization into the conv before it; the model owns each decoded weight array. Any
 * other graph is rejected with a message naming the node. onnx-tensor.c decodes attributes and
 * tensors; model.c unpacks the protobuf, reads the metadata and owns the model's lifecycle. */
#include <config.h>

#include <protobuf-c/protobuf-c.h>

#include "onnx.pb-c.h"
#include "model.h"
#include "onnx-tensor.h"

#define NEEDS "tileheat needs conv layers, then global average pooling, then one dense layer"

// Where the walk is in conv trunk -> pooling -> dense -> softmax.
typedef enum stage {
    STAGE_TRUNK = 0,
    STAGE_POOLED,  // after GlobalAveragePool / ReduceMean
    STAGE_MATMUL,  // after MatMul: an Add (the bias) may follow
    STAGE_DENSE,   // after Gemm, or MatMul + Add
    STAGE_SOFTMAX, // after Softmax: nothing may follow
} stage;

static const char *const stage_where[] = {
    "",
    " after global average pooling",
    " after the dense layer",
    " after the dense layer",
    " after Softmax",
};

// State of one graph walk. Weights are decoded into arrays the walk owns until the whole graph
// has been accepted; then the model takes them over.
typedef struct walk {
    th_onnx_at at; // the graph, and the current node's name and op_type
    int64_t opset; // version of the default ONNX domain
    th_model *m;
    int cap;         // allocated entries of m->layers, lw, lb
    float **lw;      // (cap) per layer: conv weight (c_out, c_in, kh, kw), owned
    float **lb;      // (cap) per layer: conv bias (c_out), owned
    float *dense_w;  // (n_classes, feat_c), owned
    float *dense_b;  // (n_classes), owned
    bool *visited;   // (n_node) nodes on the chain
    const char *cur; // name of the tensor at the end of the chain so far
    int ch, h, w;    // its channels and spatial size (h = w = 0 if the input size is dynamic)
    bool nhwc;       // its layout
    stage stage;
    int open_conv;  // a conv layer nothing has followed yet (BN / Relu fold into it), or -1
    char label[80]; // "<op>#<index>" for nodes without a name
} walk;

// n floats set to 0, 64-byte aligned as every weight array (th_onnx_const_floats).
static float *zeros(size_t n, th_error **err)
{
    size_t bytes;
    float *v = th_size_mul(n, sizeof(float), &bytes, err) ? th_malloc_aligned(bytes, err) : NULL;
    if (v) {
        memset(v, 0, bytes);
    }
    return v;
}

/* ------------------------------------------------------------------ trunk */

static th_layer *push_layer(walk *wk, th_layer_kind kind, th_error **err)
{
    th_model *m = wk->m;
    if (m->n_layers == wk->cap) {
        int cap = wk->cap ? 2 * wk->cap : 8;
        th_layer *layers = th_realloc(m->layers, (size_t)cap * sizeof(*layers), err);
        if (!layers) {
            return NULL;
        }
        m->layers = layers;
        float **lw = th_realloc(wk->lw, (size_t)cap * sizeof(*lw), err);
        if (!lw) {
            return NULL;
        }
        wk->lw = lw;
        float **lb = th_realloc(wk->lb, (size_t)cap * sizeof(*lb), err);
        if (!lb) {
            return NULL;
        }
        wk->lb = lb;
        wk->cap = cap;
    }
    th_layer *l = &m->layers[m->n_layers];
    memset(l, 0, sizeof(*l));
    l->kind = kind;
    snprintf(l->name, sizeof(l->name), "%s", wk->at.node);
    l->kh = l->kw = l->sh = l->sw = l->dh = l->dw = 1;
    l->c_in = l->c_out = wk->ch;
    wk->lw[m->n_layers] = wk->lb[m->n_layers] = NULL;
    m->n_layers++;
    return l;
}

// Strides, dilations, pads and auto_pad of a Conv or MaxPool whose kernel is already set.
static bool window_attrs(walk *wk, const Onnx__NodeProto *node, th_layer *l, th_error **err)
{
    int s[2] = {1, 1}, d[2] = {1, 1}, p[4] = {0, 0, 0, 0};
    char autopad[32];
    if (!th_onnx_attr_ints(&wk->at, node, "strides", 2, 1, 4096, s, err) ||
        !th_onnx_attr_ints(&wk->at, node, "dilations", 2, 1, 4096, d, err) ||
        !th_onnx_attr_ints(&wk->at, node, "pads", 4, 0, 65536, p, err) ||
        !th_onnx_attr_string(&wk->at, node, "auto_pad", autopad, sizeof(autopad), err)) {
        return false;
    }
    l->sh = s[0];
    l->sw = s[1];
    l->dh = d[0];
    l->dw = d[1];
    if (l->kind == TH_LAYER_MAXPOOL && (d[0] != 1 || d[1] != 1)) {
        return th_onnx_fail(&wk->at, err, "dilations other than 1 are not supported for pooling");
    }
    bool upper = strcmp(autopad, "SAME_UPPER") == 0;
    if (!autopad[0] || strcmp(autopad, "NOTSET") == 0) {
        l->pad_t = p[0], l->pad_l = p[1], l->pad_b = p[2], l->pad_r = p[3];
    } else if (strcmp(autopad, "VALID") == 0) {
        l->pad_t = l->pad_l = l->pad_b = l->pad_r = 0;
    } else if (upper || strcmp(autopad, "SAME_LOWER") == 0) {
        if (wk->h <= 0) {
            return th_onnx_fail(&wk->at, err,
                                "auto_pad %s needs a fixed input size (graph input dims or "
                                "metadata input_size)",
                                autopad);
        }
        // Output = ceil(in / stride); the odd padding pixel goes at the end (UPPER) or start.
        int64_t in[2] = {wk->h, wk->w};
        int64_t k[2] = {(int64_t)(l->kh - 1) * l->dh + 1, (int64_t)(l->kw - 1) * l->dw + 1};
        int *begin[2] = {&l->pad_t, &l->pad_l}, *end[2] = {&l->pad_b, &l->pad_r};
        for (int i = 0; i < 2; i++) {
            int64_t out = (in[i] + s[i] - 1) / s[i];
            int64_t total = TH_MAX(0, (out - 1) * s[i] + k[i] - in[i]);
            if (total > 65536) {
                return th_onnx_fail(&wk->at, err, "auto_pad %s needs %lld pixels of padding",
                                    autopad, (long long)total);
            }
            *begin[i] = (int)(upper ? total / 2 : total - total / 2);
            *end[i] = (int)total - *begin[i];
        }
    } else {
        return th_onnx_fail(&wk->at, err, "auto_pad '%s' is not supported", autopad);
    }
    return true;
}

// Track the spatial size through a conv or pooling layer when the input size is fixed.
static bool advance_size(walk *wk, const th_layer *l, th_error **err)
{
    int oh, ow;
    if (wk->h <= 0) {
        return true;
    }
    if (!th_layer_out_size(l, wk->h, wk->w, &oh, &ow)) {
        return th_onnx_fail(&wk->at, err, "a %d×%d input leaves no output", wk->w, wk->h);
    }
    wk->h = oh;
    wk->w = ow;
    return true;
}

static bool op_conv(walk *wk, const Onnx__NodeProto *node, th_error **err)
{
    const Onnx__TensorProto *wt = th_onnx_const_input(&wk->at, node, 1, err);
    if (!wt) {
        return false;
    }
    char dims[160];
    th_onnx_dims_string(wt, dims, sizeof(dims));
    if (wt->n_dims != 4 || wt->dims[0] <= 0 || wt->dims[1] <= 0 || wt->dims[2] <= 0 ||
        wt->dims[3] <= 0) {
        return th_onnx_fail(&wk->at, err,
                            "weight '%s' has dims %s; tileheat needs a 2-D convolution",
                            node->input[1], dims);
    }
    if (wt->dims[0] > 65536 || wt->dims[1] > 65536 || wt->dims[2] > 4096 || wt->dims[3] > 4096) {
        return th_onnx_fail(&wk->at, err,
                            "weight '%s' has dims %s: more than tileheat's limits of 65536 "
                            "channels and 4096-pixel kernels",
                            node->input[1], dims);
    }
    int64_t group;
    if (!th_onnx_attr_int(&wk->at, node, "group", 1, &group, err)) {
        return false;
    }
    if (group != 1) {
        return th_onnx_fail(&wk->at, err,
                            "group %lld is not supported (grouped or depthwise convolution)",
                            (long long)group);
    }
    if (wt->dims[1] != wk->ch) {
        return th_onnx_fail(&wk->at, err,
                            "weight '%s' has %lld input channels, the tensor before it has %d",
                            node->input[1], (long long)wt->dims[1], wk->ch);
    }
    th_layer *l = push_layer(wk, TH_LAYER_CONV, err);
    if (!l) {
        return false;
    }
    int n = wk->m->n_layers - 1;
    int k[2] = {(int)wt->dims[2], (int)wt->dims[3]};
    l->c_out = (int)wt->dims[0];
    l->kh = k[0];
    l->kw = k[1];
    if (!th_onnx_attr_ints(&wk->at, node, "kernel_shape", 2, 1, 4096, k, err) ||
        !window_attrs(wk, node, l, err)) {
        return false;
    }
    if (k[0] != l->kh || k[1] != l->kw) {
        return th_onnx_fail(&wk->at, err, "kernel_shape %d×%d does not match the weight", k[0],
                            k[1]);
    }
    size_t nw = (size_t)l->c_out * (size_t)l->c_in * (size_t)l->kh * (size_t)l->kw;
    wk->lw[n] = th_onnx_const_floats(&wk->at, node, 1, nw, NULL, NULL, err);
    bool has_bias = node->n_input >= 3 && node->input[2][0];
    wk->lb[n] = has_bias ? th_onnx_const_floats(&wk->at, node, 2, (size_t)l->c_out, NULL, NULL, err)
                         : zeros((size_t)l->c_out, err);
    if (!wk->lw[n] || !wk->lb[n]) {
        return false;
    }
    wk->ch = l->c_out;
    wk->open_conv = n;
    return advance_size(wk, l, err);
}

static bool op_maxpool(walk *wk, const Onnx__NodeProto *node, th_error **err)
{
    int k[2] = {0, 0};
    int64_t ceil_mode;
    if (!th_onnx_attr_ints(&wk->at, node, "kernel_shape", 2, 1, 4096, k, err) ||
        !th_onnx_attr_int(&wk->at, node, "ceil_mode", 0, &ceil_mode, err)) {
        return false;
    }
    if (k[0] == 0) {
        return th_onnx_fail(&wk->at, err, "kernel_shape is missing");
    }
    if (node->n_output > 1 && node->output[1][0]) {
        return th_onnx_fail(&wk->at, err, "the Indices output is not supported");
    }
    th_layer *l = push_layer(wk, TH_LAYER_MAXPOOL, err);
    if (!l) {
        return false;
    }
    l->kh = k[0];
    l->kw = k[1];
    l->ceil_mode = ceil_mode != 0;
    if (!window_attrs(wk, node, l, err)) {
        return false;
    }
    // Smaller pads keep at least one real pixel in every window (PyTorch allows at most k/2).
    if (l->pad_t >= l->kh || l->pad_b >= l->kh || l->pad_l >= l->kw || l->pad_r >= l->kw) {
        return th_onnx_fail(&wk->at, err, "pads must be smaller than the kernel");
    }
    wk->open_conv = -1;
    return advance_size(wk, l, err);
}

static bool op_relu(walk *wk, th_error **err)
{
    if (wk->open_conv >= 0) {
        wk->m->layers[wk->open_conv].relu = true;
        wk->open_conv = -1;
        return true;
    }
    return push_layer(wk, TH_LAYER_RELU, err) != NULL;
}

// Inference BatchNormalization folded into the conv just before it:
// w' = w·γ/√(var+ε), b' = (b − mean)·γ/√(var+ε) + β, computed in double.
static bool op_batchnorm(walk *wk, const Onnx__NodeProto *node, th_error **err)
{
    if (wk->open_conv < 0) {
        return th_onnx_fail(&wk->at, err,
                            "BatchNormalization is only supported directly after a Conv");
    }
    int64_t training, spatial;
    float eps;
    if (!th_onnx_attr_int(&wk->at, node, "training_mode", 0, &training, err) ||
        !th_onnx_attr_int(&wk->at, node, "spatial", 1, &spatial, err) ||
        !th_onnx_attr_float(&wk->at, node, "epsilon", 1e-5f, &eps, err)) {
        return false;
    }
    if (training || !spatial) {
        return th_onnx_fail(&wk->at, err, "%s is not supported",
                            training ? "training_mode" : "spatial = 0");
    }
    const th_layer *l = &wk->m->layers[wk->open_conv];
    size_t c = (size_t)l->c_out, per = (size_t)l->c_in * (size_t)l->kh * (size_t)l->kw;
    float *v[4] = {NULL, NULL, NULL, NULL}; // scale, B, mean, var: (c_out) each
    bool good = true;
    for (size_t i = 0; i < 4 && good; i++) {
        v[i] = th_onnx_const_floats(&wk->at, node, i + 1, c, NULL, NULL, err);
        good = v[i] != NULL;
    }
    float *w = wk->lw[wk->open_conv], *b = wk->lb[wk->open_conv];
    for (size_t o = 0; o < c && good; o++) {
        double var = (double)v[3][o] + eps;
        if (!(var > 0)) {
            good =
                th_onnx_fail(&wk->at, err, "variance + epsilon is not positive for channel %zu", o);
            break;
        }
        double s = v[0][o] / sqrt(var);
        for (size_t i = 0; i < per; i++) {
            w[o * per + i] = (float)(w[o * per + i] * s);
        }
        b[o] = (float)(((double)b[o] - v[2][o]) * s + v[1][o]);
    }
    for (int i = 0; i < 4; i++) {
        th_free(v[i]);
    }
    return good;
}

static bool perm_is(const Onnx__AttributeProto *a, int p0, int p1, int p2, int p3)
{
    return a && a->n_ints == 4 && a->ints[0] == p0 && a->ints[1] == p1 && a->ints[2] == p2 &&
           a->ints[3] == p3;
}

// tf2onnx wraps the NCHW trunk in layout transposes: NHWC->NCHW after the input, and
// NCHW->NHWC before a ReduceMean over axes [1, 2].
static bool op_transpose(walk *wk, const Onnx__NodeProto *node, th_error **err)
{
    const Onnx__AttributeProto *perm = th_onnx_attr_find(node, "perm");
    if (wk->nhwc && perm_is(perm, 0, 3, 1, 2)) {
        wk->nhwc = false;
    } else if (!wk->nhwc && perm_is(perm, 0, 2, 3, 1)) {
        wk->nhwc = true;
    } else {
        return th_onnx_fail(&wk->at, err, "only NHWC<->NCHW layout transposes are supported");
    }
    wk->open_conv = -1;
    return true;
}

/* ------------------------------------------------------------------ pooling and dense head */

// GlobalAveragePool, or ReduceMean over the spatial axes (attribute before opset 18, input after).
static bool op_pool(walk *wk, const Onnx__NodeProto *node, bool reduce, th_error **err)
{
    if (wk->m->n_layers == 0) {
        return th_onnx_fail(&wk->at, err, "no conv layer before global average pooling; " NEEDS);
    }
    if (reduce) {
        int64_t axes[4], keep;
        size_t n = 0;
        const Onnx__AttributeProto *a = th_onnx_attr_find(node, "axes");
        if (!th_onnx_attr_int(&wk->at, node, "keepdims", 1, &keep, err)) {
            return false;
        }
        if (a) {
            for (n = 0; n < a->n_ints && n < 4; n++) {
                axes[n] = a->ints[n];
            }
            n = a->n_ints;
        } else if (node->n_input >= 2 && node->input[1][0]) {
            const Onnx__TensorProto *t = th_onnx_const_input(&wk->at, node, 1, err);
            if (!t || !th_onnx_tensor_ints(node->input[1], t, axes, 4, &n, err)) {
                return false;
            }
        }
        bool in_range = n == 2 && axes[0] >= -4 && axes[0] < 4 && axes[1] >= -4 && axes[1] < 4;
        int64_t lo = in_range ? TH_MIN((axes[0] + 4) % 4, (axes[1] + 4) % 4) : -1;
        int64_t hi = in_range ? TH_MAX((axes[0] + 4) % 4, (axes[1] + 4) % 4) : -1;
        if (lo != (wk->nhwc ? 1 : 2) || hi != (wk->nhwc ? 2 : 3) || keep < 0 || keep > 1) {
            return th_onnx_fail(&wk->at, err,
                                "must average over exactly the H and W axes of the %s tensor "
                                "(axes %s)",
                                wk->nhwc ? "NHWC" : "NCHW", wk->nhwc ? "[1,2]" : "[2,3]");
        }
    } else if (wk->nhwc) {
        return th_onnx_fail(&wk->at, err, "global average pooling of an NHWC tensor; " NEEDS);
    }
    wk->m->feat_c = wk->ch;
    wk->stage = STAGE_POOLED;
    wk->open_conv = -1;
    return true;
}

// Flatten / Reshape / Squeeze after pooling: no-ops for a (1, C) or (1, C, 1, 1) tensor.
static bool op_flatten(walk *wk, const Onnx__NodeProto *node, th_error **err)
{
    if (strcmp(wk->at.op, "Flatten") == 0) {
        int64_t axis;
        if (!th_onnx_attr_int(&wk->at, node, "axis", 1, &axis, err)) {
            return false;
        }
        return axis == 1 ||
               th_onnx_fail(&wk->at, err, "axis %lld is not supported (only 1)", (long long)axis);
    }
    if (strcmp(wk->at.op, "Reshape") == 0) {
        int64_t shape[8];
        size_t n;
        const Onnx__TensorProto *t = th_onnx_const_input(&wk->at, node, 1, err);
        if (!t || !th_onnx_tensor_ints(node->input[1], t, shape, 8, &n, err)) {
            return false;
        }
        // Allowed targets: (1, C) spelled with 1, 0 (copy) or -1 (infer).
        bool good = n == 2 && (shape[0] == 1 || shape[0] == 0 || shape[0] == -1) &&
                    (shape[1] == wk->ch || (shape[1] == -1 && shape[0] != -1));
        return good || th_onnx_fail(&wk->at, err, "only a reshape to (1, %d) is supported", wk->ch);
    }
    return true;
}

static bool alloc_dense(walk *wk, int n_classes, th_error **err)
{
    size_t n = (size_t)n_classes * (size_t)wk->m->feat_c;
    wk->dense_w = zeros(n, err);
    wk->dense_b = zeros((size_t)n_classes, err);
    wk->m->n_classes = n_classes;
    return wk->dense_w && wk->dense_b;
}

// The dense weight B of a Gemm (transB 0/1) or MatMul (K, N): K must be feat_c.
static bool dense_weight(walk *wk, const Onnx__NodeProto *node, bool trans, float alpha,
                         th_error **err)
{
    const Onnx__TensorProto *t = th_onnx_const_input(&wk->at, node, 1, err);
    if (!t) {
        return false;
    }
    int64_t k = t->n_dims == 2 ? t->dims[trans ? 1 : 0] : -1;
    int64_t n = t->n_dims == 2 ? t->dims[trans ? 0 : 1] : -1;
    if (k != wk->m->feat_c || n < 1 || n > 100000) {
        char dims[160];
        th_onnx_dims_string(t, dims, sizeof(dims));
        return th_onnx_fail(&wk->at, err,
                            "weight '%s' has dims %s; expected %s with K = %d pooled features",
                            node->input[1], dims, trans ? "(N, K)" : "(K, N)", wk->m->feat_c);
    }
    size_t count;
    float *b =
        th_onnx_const_floats(&wk->at, node, 1, 0, NULL, &count, err); // (K, N) or (N, K) row-major
    if (!b || !alloc_dense(wk, (int)n, err)) {
        th_free(b);
        return false;
    }
    for (int64_t c = 0; c < n; c++) {
        for (int64_t j = 0; j < k; j++) {
            wk->dense_w[c * k + j] = alpha * (trans ? b[c * k + j] : b[j * n + c]);
        }
    }
    th_free(b);
    return true;
}

// Add a bias input (N values, or one broadcast value) times beta to dense_b.
static bool dense_bias(walk *wk, const Onnx__NodeProto *node, size_t idx, float beta,
                       th_error **err)
{
    const Onnx__TensorProto *t;
    size_t n;
    float *c =
        th_onnx_const_floats(&wk->at, node, idx, 0, &t, &n, err); // (N) or (1, N) or one value
    if (!c) {
        return false;
    }
    bool shape_ok = t->n_dims == 0 || t->dims[t->n_dims - 1] == (int64_t)n;
    for (size_t i = 0; i + 1 < t->n_dims; i++) {
        shape_ok = shape_ok && t->dims[i] == 1;
    }
    if (!shape_ok || (n != 1 && n != (size_t)wk->m->n_classes)) {
        th_free(c);
        return th_onnx_fail(&wk->at, err, "bias '%s' does not broadcast to %d classes",
                            node->input[idx], wk->m->n_classes);
    }
    for (int i = 0; i < wk->m->n_classes; i++) {
        wk->dense_b[i] += beta * c[n == 1 ? 0 : i];
    }
    th_free(c);
    return true;
}

static bool op_gemm(walk *wk, const Onnx__NodeProto *node, th_error **err)
{
    int64_t ta, tb;
    float alpha, beta;
    if (!th_onnx_attr_int(&wk->at, node, "transA", 0, &ta, err) ||
        !th_onnx_attr_int(&wk->at, node, "transB", 0, &tb, err) ||
        !th_onnx_attr_float(&wk->at, node, "alpha", 1.0f, &alpha, err) ||
        !th_onnx_attr_float(&wk->at, node, "beta", 1.0f, &beta, err)) {
        return false;
    }
    if (ta != 0) {
        return th_onnx_fail(&wk->at, err, "transA is not supported");
    }
    if (!dense_weight(wk, node, tb != 0, alpha, err)) {
        return false;
    }
    if (node->n_input >= 3 && node->input[2][0] && !dense_bias(wk, node, 2, beta, err)) {
        return false;
    }
    wk->stage = STAGE_DENSE;
    return true;
}

static bool op_matmul(walk *wk, const Onnx__NodeProto *node, th_error **err)
{
    if (!dense_weight(wk, node, false, 1.0f, err)) {
        return false;
    }
    wk->stage = STAGE_MATMUL;
    return true;
}

static bool op_softmax(walk *wk, const Onnx__NodeProto *node, th_error **err)
{
    int64_t axis;
    if (!th_onnx_attr_int(&wk->at, node, "axis", wk->opset < 13 ? 1 : -1, &axis, err)) {
        return false;
    }
    if (axis != 1 && axis != -1) {
        return th_onnx_fail(&wk->at, err, "axis %lld is not supported (the class axis is 1)",
                            (long long)axis);
    }
    wk->m->graph_softmax = true;
    wk->stage = STAGE_SOFTMAX;
    return true;
}

/* ------------------------------------------------------------------ the walk */

static bool unsupported(const walk *wk, th_error **err)
{
    return th_onnx_fail(&wk->at, err, "not supported%s; " NEEDS, stage_where[wk->stage]);
}

static bool is_op(const walk *wk, const char *a, const char *b, const char *c)
{
    return strcmp(wk->at.op, a) == 0 || (b && strcmp(wk->at.op, b) == 0) ||
           (c && strcmp(wk->at.op, c) == 0);
}

// One node of the chain; `pos` is the input slot the chain tensor enters.
static bool step(walk *wk, const Onnx__NodeProto *node, size_t pos, th_error **err)
{
    stage st = wk->stage;
    if (node->domain && node->domain[0] && strcmp(node->domain, "ai.onnx") != 0) {
        return th_onnx_fail(&wk->at, err, "operator domain '%s' is not supported", node->domain);
    }
    if (pos != 0 && !(st == STAGE_MATMUL && is_op(wk, "Add", NULL, NULL))) {
        return th_onnx_fail(&wk->at, err, "the image tensor enters as input %zu; " NEEDS, pos);
    }
    if (node->n_output < 1 || !node->output[0][0]) {
        return th_onnx_fail(&wk->at, err, "node has no output");
    }
    if (is_op(wk, "Dropout", "Identity", NULL) && st != STAGE_SOFTMAX) {
        return true;
    }
    if (st == STAGE_TRUNK) {
        if (is_op(wk, "Transpose", NULL, NULL)) {
            return op_transpose(wk, node, err);
        }
        if (is_op(wk, "Relu", NULL, NULL)) {
            return op_relu(wk, err);
        }
        if (is_op(wk, "GlobalAveragePool", "ReduceMean", NULL)) {
            return op_pool(wk, node, is_op(wk, "ReduceMean", NULL, NULL), err);
        }
        if (is_op(wk, "Conv", "MaxPool", "BatchNormalization") && wk->nhwc) {
            return th_onnx_fail(&wk->at, err,
                                "the tensor is NHWC here (a Transpose to NCHW must come first)");
        }
        if (is_op(wk, "Conv", NULL, NULL)) {
            return op_conv(wk, node, err);
        }
        if (is_op(wk, "MaxPool", NULL, NULL)) {
            return op_maxpool(wk, node, err);
        }
        if (is_op(wk, "BatchNormalization", NULL, NULL)) {
            return op_batchnorm(wk, node, err);
        }
    } else if (st == STAGE_POOLED) {
        if (is_op(wk, "Flatten", "Reshape", "Squeeze")) {
            return op_flatten(wk, node, err);
        }
        if (is_op(wk, "Gemm", NULL, NULL)) {
            return op_gemm(wk, node, err);
        }
        if (is_op(wk, "MatMul", NULL, NULL)) {
            return op_matmul(wk, node, err);
        }
    } else if (st == STAGE_MATMUL && is_op(wk, "Add", NULL, NULL)) {
        wk->stage = STAGE_DENSE;
        return dense_bias(wk, node, 1 - pos, 1.0f, err);
    }
    if ((st == STAGE_MATMUL || st == STAGE_DENSE) && is_op(wk, "Softmax", NULL, NULL)) {
        return op_softmax(wk, node, err);
    }
    if (st == STAGE_TRUNK && is_op(wk, "Gemm", "MatMul", "Flatten")) {
        return th_onnx_fail(&wk->at, err, "not supported before global average pooling; " NEEDS);
    }
    return unsupported(wk, err);
}

static bool walk_end(walk *wk, th_error **err)
{
    const Onnx__GraphProto *g = wk->at.g;
    if (wk->stage == STAGE_TRUNK) {
        th_error_set(err, "the graph has no global average pooling (GlobalAveragePool or "
                          "ReduceMean over H and W); " NEEDS);
        return false;
    }
    if (wk->stage == STAGE_POOLED) {
        th_error_set(err, "the graph has no dense layer after global average pooling; " NEEDS);
        return false;
    }
    if (strcmp(wk->cur, th_onnx_str(g->output[0]->name)) != 0) {
        th_error_set(err, "tensor '%s' ends the chain but the graph output is '%s'", wk->cur,
                     th_onnx_str(g->output[0]->name));
        return false;
    }
    for (size_t i = 0; i < g->n_node; i++) {
        const char *op = th_onnx_str(g->node[i]->op_type);
        if (!wk->visited[i] && strcmp(op, "Constant") != 0) {
            th_error_set(err,
                         "node '%s' (%s) is not on the chain from the input to the output; "
                         "branching graphs are not supported",
                         th_onnx_str(g->node[i]->name), op);
            return false;
        }
    }
    return true;
}

// Follow the single consumer of each tensor from the graph input to the graph output.
static bool walk_graph(walk *wk, th_error **err)
{
    const Onnx__GraphProto *g = wk->at.g;
    for (;;) {
        size_t idx[2] = {0, 0}, pos[2] = {0, 0};
        int n = th_onnx_consumers(g, wk->cur, idx, pos);
        if (n == 0) {
            return walk_end(wk, err);
        }
        if (n > 1) {
            th_error_set(err,
                         "tensor '%s' feeds %d node inputs (nodes '%s' and '%s'); branching "
                         "graphs are not supported",
                         wk->cur, n, th_onnx_str(g->node[idx[0]]->name),
                         th_onnx_str(g->node[idx[1]]->name));
            return false;
        }
        const Onnx__NodeProto *node = g->node[idx[0]];
        wk->at.op = th_onnx_str(node->op_type);
        wk->at.node = th_onnx_str(node->name);
        if (!wk->at.node[0]) {
            snprintf(wk->label, sizeof(wk->label), "%s#%zu", wk->at.op, idx[0]);
            wk->at.node = wk->label;
        }
        if (wk->visited[idx[0]]) {
            return th_onnx_fail(&wk->at, err, "the graph has a cycle");
        }
        wk->visited[idx[0]] = true;
        if (!step(wk, node, pos[0], err)) {
            return false;
        }
        wk->cur = node->output[0];
    }
}

/* ------------------------------------------------------------------ input, weights, entry */

static void shape_string(const Onnx__TensorShapeProto *shape, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "[");
    for (size_t i = 0; i < shape->n_dim && n < size; i++) {
        const Onnx__TensorShapeProto__Dimension *d = shape->dim[i];
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? "," : "",
                                  (long long)d->dim_value);
        } else {
            n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? "," : "",
                                  d->value_case ? th_onnx_str(d->dim_param) : "?");
        }
    }
    if (n < size) {
        snprintf(buf + n, size - n, "]");
    }
}

static bool dim_is(const Onnx__TensorShapeProto *shape, int i, int64_t *v)
{
    const Onnx__TensorShapeProto__Dimension *d = shape->dim[i];
    *v = d->dim_value;
    return d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
           d->dim_value > 0 && d->dim_value <= 65536;
}

// The one graph input that is not an initializer: float32, 4-D, 3 channels; NCHW, or NHWC
// when a Transpose to NCHW follows (as tf2onnx writes). Sets the layout and any fixed size.
static bool read_input(walk *wk, th_error **err)
{
    Onnx__GraphProto *g = wk->at.g;
    const Onnx__ValueInfoProto *in = NULL;
    size_t n = 0, idx[2], pos[2];
    for (size_t i = 0; i < g->n_input; i++) {
        if (!th_onnx_find_tensor(g, th_onnx_str(g->input[i]->name))) {
            in = in ? in : g->input[i];
            n++;
        }
    }
    if (n != 1) {
        th_error_set(err, "the graph has %zu inputs; tileheat needs exactly one image input", n);
        return false;
    }
    const char *name = th_onnx_str(in->name);
    const Onnx__TypeProto *type = in->type;
    const Onnx__TypeProto__Tensor *tt =
        type && type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ? type->tensor_type : NULL;
    if (!tt || tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || !tt->shape) {
        th_error_set(err, "input '%s': not a float32 tensor of known rank", name);
        return false;
    }
    char dims[160];
    shape_string(tt->shape, dims, sizeof(dims));
    int64_t d[4];
    bool known[4] = {false, false, false, false};
    for (size_t i = 0; i < 4 && tt->shape->n_dim == 4; i++) {
        known[i] = dim_is(tt->shape, (int)i, &d[i]);
    }
    bool transposed = th_onnx_consumers(g, name, idx, pos) == 1 &&
                      strcmp(th_onnx_str(g->node[idx[0]]->op_type), "Transpose") == 0 &&
                      perm_is(th_onnx_attr_find(g->node[idx[0]], "perm"), 0, 3, 1, 2);
    wk->nhwc = transposed || (!(known[1] && d[1] == 3) && known[3] && d[3] == 3);
    int c = wk->nhwc ? 3 : 1, y = wk->nhwc ? 1 : 2;
    if (tt->shape->n_dim != 4 || !known[c] || d[c] != 3) {
        th_error_set(err,
                     "input '%s' has dims %s; tileheat needs a 4-D RGB image tensor "
                     "(N,3,H,W), or (N,H,W,3) followed by a Transpose",
                     name, dims);
        return false;
    }
    th_model *m = wk->m;
    if (known[y] && known[y + 1]) {
        // model.c has already set in_w, in_h from metadata input_size, if any.
        if (m->in_w && (m->in_w != d[y + 1] || m->in_h != d[y])) {
            th_error_set(err, "metadata input_size %d×%d disagrees with input '%s' (%lld×%lld)",
                         m->in_w, m->in_h, name, (long long)d[y + 1], (long long)d[y]);
            return false;
        }
        m->in_h = (int)d[y];
        m->in_w = (int)d[y + 1];
    }
    m->input_nhwc = wk->nhwc;
    wk->h = m->in_h;
    wk->w = m->in_w;
    wk->cur = name;
    wk->ch = 3;
    return true;
}

// The model takes over every weight array the walk decoded: conv layers and the dense head.
static void adopt_weights(walk *wk)
{
    th_model *m = wk->m;
    for (int i = 0; i < m->n_layers; i++) {
        m->layers[i].weight = wk->lw[i];
        m->layers[i].bias = wk->lb[i];
        wk->lw[i] = wk->lb[i] = NULL;
    }
    m->dense_w = wk->dense_w;
    m->dense_b = wk->dense_b;
    wk->dense_w = wk->dense_b = NULL;
}

bool th_model_onnx_graph(th_model *model, struct Onnx__GraphProto *graph, int64_t opset,
                         th_error **err)
{
    walk wk;
    memset(&wk, 0, sizeof(wk));
    wk.at.g = graph;
    wk.opset = opset;
    wk.m = model;
    wk.open_conv = -1;
    bool ok = false;
    if (graph->n_output != 1) {
        th_error_set(err,
                     "the graph has %zu outputs; tileheat needs one (the class scores), "
                     "branching graphs are not supported",
                     graph->n_output);
        return false;
    }
    wk.visited = th_calloc(graph->n_node + 1, sizeof(bool), err); // (n_node)
    if (wk.visited && read_input(&wk, err) && walk_graph(&wk, err)) {
        adopt_weights(&wk);
        ok = true;
    }
    for (int i = 0; wk.lw && i < model->n_layers; i++) {
        th_free(wk.lw[i]);
        th_free(wk.lb[i]);
    }
    th_free(wk.lw);
    th_free(wk.lb);
    th_free(wk.dense_w);
    th_free(wk.dense_b);
    th_free(wk.visited);
    return ok;
}
