/* SPDX-License-Identifier: MIT */
/* The ONNX loader: unpack the protobuf (protobuf-c), hand the metadata_props to the builder,
 * and follow the graph as one chain from its input (conv trunk -> global average pooling -> one
 * dense layer -> optional softmax), checking the weight shapes and feeding every node to the
 * builder (model-build.c), which fuses, folds and validates. Any other graph is rejected with a
 * message naming the node. onnx-tensor.c decodes attributes and tensors. */
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

// State of one graph walk. The builder holds the model being built, the tensor's channels and
// size, and owns every weight array handed to it.
typedef struct walk {
    th_onnx_at at; // the graph, and the current node's name and op_type
    int64_t opset; // version of the default ONNX domain
    th_builder b;
    bool *visited;   // (n_node) nodes on the chain
    const char *cur; // name of the tensor at the end of the chain so far
    bool nhwc;       // its layout
    stage stage;
    char label[80];    // "<op>#<index>" for nodes without a name
    char pad_name[48]; // "auto_pad SAME_UPPER", for the builder's messages
} walk;

/* ------------------------------------------------------------------ trunk */

// Strides, dilations, pads and auto_pad of a Conv or MaxPool whose kernel is already set.
static bool window_attrs(walk *wk, const Onnx__NodeProto *node, bool pool, th_window *l,
                         th_error **err)
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
    if (pool && (d[0] != 1 || d[1] != 1)) {
        return th_onnx_fail(&wk->at, err, "dilations other than 1 are not supported for pooling");
    }
    // SAME_*: output = ceil(in / stride), the odd padding pixel at the end (UPPER) or the start;
    // the builder works the pads out.
    snprintf(wk->pad_name, sizeof(wk->pad_name), "auto_pad %s", autopad);
    l->pad_name = wk->pad_name;
    if (!autopad[0] || strcmp(autopad, "NOTSET") == 0) {
        l->pad_t = p[0], l->pad_l = p[1], l->pad_b = p[2], l->pad_r = p[3];
    } else if (strcmp(autopad, "VALID") == 0) {
        l->pad_t = l->pad_l = l->pad_b = l->pad_r = 0;
    } else if (strcmp(autopad, "SAME_UPPER") == 0) {
        l->pad_mode = TH_PAD_SAME_END;
    } else if (strcmp(autopad, "SAME_LOWER") == 0) {
        l->pad_mode = TH_PAD_SAME_BEGIN;
    } else {
        return th_onnx_fail(&wk->at, err, "auto_pad '%s' is not supported", autopad);
    }
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
    if (wt->dims[1] != wk->b.ch) {
        return th_onnx_fail(&wk->at, err,
                            "weight '%s' has %lld input channels, the tensor before it has %d",
                            node->input[1], (long long)wt->dims[1], wk->b.ch);
    }
    int k[2] = {(int)wt->dims[2], (int)wt->dims[3]}, c_out = (int)wt->dims[0];
    th_window win = {.kh = k[0], .kw = k[1]};
    if (!th_onnx_attr_ints(&wk->at, node, "kernel_shape", 2, 1, 4096, k, err) ||
        !window_attrs(wk, node, false, &win, err)) {
        return false;
    }
    if (k[0] != win.kh || k[1] != win.kw) {
        return th_onnx_fail(&wk->at, err, "kernel_shape %d×%d does not match the weight", k[0],
                            k[1]);
    }
    size_t nw = (size_t)c_out * (size_t)wk->b.ch * (size_t)win.kh * (size_t)win.kw;
    float *w = th_onnx_const_floats(&wk->at, node, 1, nw, NULL, NULL, err); // (c_out, c_in, kh, kw)
    bool has_bias = node->n_input >= 3 && node->input[2][0];
    float *b = w && has_bias
                   ? th_onnx_const_floats(&wk->at, node, 2, (size_t)c_out, NULL, NULL, err)
                   : NULL; // (c_out)
    if (!w || (has_bias && !b)) {
        th_free(w);
        return false;
    }
    return th_builder_conv(&wk->b, wk->at.node, &win, c_out, w, b, err);
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
    th_window win = {.kh = k[0], .kw = k[1], .ceil_mode = ceil_mode != 0};
    return window_attrs(wk, node, true, &win, err) &&
           th_builder_maxpool(&wk->b, wk->at.node, &win, err);
}

// Inference BatchNormalization, folded by the builder into the conv just before it.
static bool op_batchnorm(walk *wk, const Onnx__NodeProto *node, th_error **err)
{
    if (wk->b.open_conv < 0) {
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
    size_t c = (size_t)wk->b.m->layers[wk->b.open_conv].c_out;
    float *v[4] = {NULL, NULL, NULL, NULL}; // scale, B, mean, var: (c_out) each
    bool good = true;
    for (size_t i = 0; i < 4 && good; i++) {
        v[i] = th_onnx_const_floats(&wk->at, node, i + 1, c, NULL, NULL, err);
        good = v[i] != NULL;
    }
    good = good && th_builder_batchnorm(&wk->b, v[0], v[1], v[2], v[3], eps, err);
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
    th_builder_break(&wk->b);
    return true;
}

/* ------------------------------------------------------------------ pooling and dense head */

// GlobalAveragePool, or ReduceMean over the spatial axes (attribute before opset 18, input after).
static bool op_pool(walk *wk, const Onnx__NodeProto *node, bool reduce, th_error **err)
{
    if (wk->b.m->n_layers == 0) {
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
    th_builder_pool(&wk->b);
    wk->stage = STAGE_POOLED;
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
                    (shape[1] == wk->b.ch || (shape[1] == -1 && shape[0] != -1));
        return good ||
               th_onnx_fail(&wk->at, err, "only a reshape to (1, %d) is supported", wk->b.ch);
    }
    return true;
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
    if (k != wk->b.m->feat_c || n < 1 || n > 100000) {
        char dims[160];
        th_onnx_dims_string(t, dims, sizeof(dims));
        return th_onnx_fail(&wk->at, err,
                            "weight '%s' has dims %s; expected %s with K = %d pooled features",
                            node->input[1], dims, trans ? "(N, K)" : "(K, N)", wk->b.m->feat_c);
    }
    size_t count;
    float *b =
        th_onnx_const_floats(&wk->at, node, 1, 0, NULL, &count, err); // (K, N) or (N, K) row-major
    float *w = b ? th_model_zeros((size_t)n * (size_t)k, err) : NULL; // (n_classes, feat_c)
    for (int64_t c = 0; w && c < n; c++) {
        for (int64_t j = 0; j < k; j++) {
            w[c * k + j] = alpha * (trans ? b[c * k + j] : b[j * n + c]);
        }
    }
    th_free(b);
    return w && th_builder_dense(&wk->b, (int)n, w, NULL, err);
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
    th_model *m = wk->b.m;
    if (!shape_ok || (n != 1 && n != (size_t)m->n_classes)) {
        th_free(c);
        return th_onnx_fail(&wk->at, err, "bias '%s' does not broadcast to %d classes",
                            node->input[idx], m->n_classes);
    }
    float *dense_b = (float *)m->dense_b; // (n_classes), owned by the model
    for (int i = 0; i < m->n_classes; i++) {
        dense_b[i] += beta * c[n == 1 ? 0 : i];
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
    wk->b.m->graph_softmax = true;
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
            return th_builder_relu(&wk->b, wk->at.node, err);
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
        th_builder_at(&wk->b, "node '%s' (%s)", wk->at.node, wk->at.op);
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
    bool fixed = known[y] && known[y + 1];
    wk->cur = name;
    return th_builder_input(&wk->b, name, fixed ? (int)d[y + 1] : 0, fixed ? (int)d[y] : 0,
                            wk->nhwc, err);
}

// Walk the graph: one output, the image input, then the chain.
static bool walk_model(walk *wk, Onnx__GraphProto *graph, th_error **err)
{
    if (graph->n_output != 1) {
        th_error_set(err,
                     "the graph has %zu outputs; tileheat needs one (the class scores), "
                     "branching graphs are not supported",
                     graph->n_output);
        return false;
    }
    wk->at.g = graph;
    wk->visited = th_calloc(graph->n_node + 1, sizeof(bool), err); // (n_node)
    return wk->visited && read_input(wk, err) && walk_graph(wk, err);
}

/* ------------------------------------------------------------------ the file */

static bool copy_metadata(th_builder *b, const Onnx__ModelProto *mp, th_error **err)
{
    for (size_t i = 0; i < mp->n_metadata_props; i++) {
        const Onnx__StringStringEntryProto *e = mp->metadata_props[i];
        if (!th_builder_meta(b, th_onnx_str(e->key), th_onnx_str(e->value), err)) {
            return false;
        }
    }
    return true;
}

// Version of the default ONNX domain ("" or "ai.onnx"); 0 if the model does not say.
static int64_t onnx_opset(const Onnx__ModelProto *mp)
{
    int64_t opset = 0;
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const char *domain = mp->opset_import[i]->domain;
        if (!domain || !domain[0] || strcmp(domain, "ai.onnx") == 0) {
            opset = mp->opset_import[i]->version;
        }
    }
    return opset;
}

static th_model *load_parsed(const Onnx__ModelProto *mp, th_error **err)
{
    int64_t opset = onnx_opset(mp);
    if (!mp->graph) {
        th_error_set(err, "not an ONNX model (no graph)");
        return NULL;
    }
    if (opset <= 0) {
        th_error_set(err, "the model has no opset version for the ONNX domain");
        return NULL;
    }
    walk wk;
    memset(&wk, 0, sizeof(wk));
    wk.opset = opset;
    th_model *m = NULL;
    if (th_builder_init(&wk.b, TH_MODEL_ONNX, err) && copy_metadata(&wk.b, mp, err) &&
        th_builder_meta_end(&wk.b, err) && walk_model(&wk, mp->graph, err)) {
        m = th_builder_finish(&wk.b, err);
    }
    th_builder_clear(&wk.b);
    th_free(wk.visited);
    return m;
}

// protobuf-c's allocations 64-byte aligned (on huge pages from 4 MB, see th_malloc_aligned), so
// that a tensor's raw_data buffer can become a weight array as it is (onnx-tensor.c, take_raw).
static void *pb_alloc(void *data, size_t size)
{
    (void)data;
    return th_malloc_aligned(size, NULL);
}

static void pb_free(void *data, void *p)
{
    th_free(p);
}

static ProtobufCAllocator pb_allocator = {.alloc = pb_alloc, .free = pb_free};

th_model *th_model_onnx_load(const void *data, size_t len, th_error **err)
{
    Onnx__ModelProto *mp = onnx__model_proto__unpack(&pb_allocator, len, data);
    if (!mp) {
        th_error_set(err, "not an ONNX model (protobuf parse failed)");
        return NULL;
    }
    th_model *m = load_parsed(mp, err);
    onnx__model_proto__free_unpacked(mp, &pb_allocator);
    return m;
}
