/* SPDX-License-Identifier: MIT */
/* The model builder that every loader feeds (model-onnx.c, model-keras.c): it tracks the tensor
 * through the trunk, resolves "same" padding, fuses a ReLU into the conv before it, folds
 * BatchNormalization into that conv, takes the dense head, and at the end reads the metadata
 * (model.c), checks the weights are finite and the trunk fits the fixed input size. What a file
 * format says is the loader's business; what it means is decided here, once. */
#include <config.h>

#include <math.h>

#include "model.h"

float *th_model_zeros(size_t n, th_error **err)
{
    size_t bytes;
    float *v = th_size_mul(n, sizeof(float), &bytes, err) ? th_malloc_aligned(bytes, err) : NULL;
    if (v) {
        memset(v, 0, bytes);
    }
    return v;
}

bool th_builder_init(th_builder *b, th_model_format format, th_error **err)
{
    memset(b, 0, sizeof(*b));
    b->open_conv = -1;
    b->ch = 3;
    b->size_hint = "graph input dims or metadata input_size";
    th_model *m = th_calloc(1, sizeof(*m), err);
    if (!m) {
        return false;
    }
    pthread_mutex_init(&m->sha_lock, NULL);
    m->format = format;
    m->in_c = 3;
    m->input_scale = 1.0f / 255.0f;
    m->input_std[0] = m->input_std[1] = m->input_std[2] = 1.0f;
    b->m = m;
    return true;
}

void th_builder_clear(th_builder *b)
{
    th_model_free(b->m);
    b->m = NULL;
}

void th_builder_at(th_builder *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->at, sizeof(b->at), fmt, ap);
    va_end(ap);
}

bool th_builder_fail(const th_builder *b, th_error **err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    th_error_set(err, "%s: %s", b->at, msg);
    return false;
}

bool th_builder_meta(th_builder *b, const char *key, const char *value, th_error **err)
{
    th_model *m = b->m;
    if (m->n_meta >= TH_MODEL_META_MAX) {
        return true; // kept in file order; the rest are ignored
    }
    char *k = th_strdup(key, err);
    char *v = k ? th_strdup(value, err) : NULL;
    if (!v) {
        th_free(k);
        return false;
    }
    m->meta_key[m->n_meta] = k;
    m->meta_value[m->n_meta] = v;
    m->n_meta++;
    return true;
}

bool th_builder_meta_end(th_builder *b, th_error **err)
{
    return th_model_meta_input_size(b->m, err);
}

bool th_builder_input(th_builder *b, const char *name, int w, int h, bool nhwc, th_error **err)
{
    th_model *m = b->m;
    if (w > 0 && h > 0) {
        if (m->in_w && (m->in_w != w || m->in_h != h)) {
            char label[160];
            th_error_set(err, "%s %d×%d disagrees with input '%s' (%d×%d)",
                         th_model_meta_label(m, "input_size", label, sizeof(label)), m->in_w,
                         m->in_h, name, w, h);
            return false;
        }
        m->in_w = w;
        m->in_h = h;
    } else {
        m->input_dynamic = true;
    }
    m->input_nhwc = nhwc;
    b->h = m->in_h;
    b->w = m->in_w;
    b->ch = 3;
    return true;
}

/* ------------------------------------------------------------------ trunk */

static th_layer *push_layer(th_builder *b, th_layer_kind kind, const char *name, th_error **err)
{
    th_model *m = b->m;
    if (m->n_layers == b->cap) {
        int cap = b->cap ? 2 * b->cap : 8;
        th_layer *layers = th_realloc(m->layers, (size_t)cap * sizeof(*layers), err);
        if (!layers) {
            return NULL;
        }
        m->layers = layers;
        b->cap = cap;
    }
    th_layer *l = &m->layers[m->n_layers++];
    memset(l, 0, sizeof(*l));
    l->kind = kind;
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->kh = l->kw = l->sh = l->sw = l->dh = l->dw = 1;
    l->c_in = l->c_out = b->ch;
    return l;
}

// The window's strides, dilations and padding into l. "Same" padding: output = ceil(in /
// stride), pad_total = max((out - 1)·stride + (k - 1)·dilation + 1 - in, 0), the odd pixel at
// the end (TensorFlow, ONNX SAME_UPPER) or the start. With stride 1 that is (k - 1)·dilation
// whatever the size, so only strides > 1 need a fixed input size.
static bool set_window(th_builder *b, th_layer *l, const th_window *win, th_error **err)
{
    l->kh = win->kh;
    l->kw = win->kw;
    l->sh = win->sh;
    l->sw = win->sw;
    l->dh = l->kind == TH_LAYER_CONV ? win->dh : 1;
    l->dw = l->kind == TH_LAYER_CONV ? win->dw : 1;
    l->ceil_mode = l->kind == TH_LAYER_MAXPOOL && win->ceil_mode;
    if (win->pad_mode == TH_PAD_EXPLICIT) {
        l->pad_t = win->pad_t, l->pad_l = win->pad_l, l->pad_b = win->pad_b, l->pad_r = win->pad_r;
        return true;
    }
    bool at_end = win->pad_mode == TH_PAD_SAME_END;
    int64_t in[2] = {b->h, b->w}, s[2] = {l->sh, l->sw};
    int64_t k[2] = {(int64_t)(l->kh - 1) * l->dh + 1, (int64_t)(l->kw - 1) * l->dw + 1};
    int *begin[2] = {&l->pad_t, &l->pad_l}, *end[2] = {&l->pad_b, &l->pad_r};
    for (int i = 0; i < 2; i++) {
        int64_t total = k[i] - 1;
        if (s[i] != 1) {
            if (b->h <= 0) {
                return th_builder_fail(b, err, "%s needs a fixed input size (%s)", win->pad_name,
                                       b->size_hint);
            }
            int64_t out = (in[i] + s[i] - 1) / s[i];
            total = TH_MAX(0, (out - 1) * s[i] + k[i] - in[i]);
        }
        if (total > 65536) {
            return th_builder_fail(b, err, "%s needs %lld pixels of padding", win->pad_name,
                                   (long long)total);
        }
        *begin[i] = (int)(at_end ? total / 2 : total - total / 2);
        *end[i] = (int)total - *begin[i];
    }
    return true;
}

// Track the spatial size through a conv or pooling layer when the input size is fixed.
static bool advance_size(th_builder *b, const th_layer *l, th_error **err)
{
    int oh, ow;
    if (b->h <= 0) {
        return true;
    }
    if (!th_layer_out_size(l, b->h, b->w, &oh, &ow)) {
        return th_builder_fail(b, err, "a %d×%d input leaves no output", b->w, b->h);
    }
    b->h = oh;
    b->w = ow;
    return true;
}

bool th_builder_conv(th_builder *b, const char *name, const th_window *win, int c_out,
                     float *weight, float *bias, th_error **err)
{
    if (!bias) {
        bias = th_model_zeros((size_t)c_out, err);
    }
    th_layer *l = weight && bias ? push_layer(b, TH_LAYER_CONV, name, err) : NULL;
    if (!l) {
        th_free(weight);
        th_free(bias);
        return false;
    }
    l->c_out = c_out;
    l->weight = weight; // owned by the model from here on
    l->bias = bias;
    if (!set_window(b, l, win, err)) {
        return false;
    }
    b->ch = c_out;
    b->open_conv = b->m->n_layers - 1;
    return advance_size(b, l, err);
}

bool th_builder_relu(th_builder *b, const char *name, th_error **err)
{
    if (b->open_conv >= 0) {
        b->m->layers[b->open_conv].relu = true;
        b->open_conv = -1;
        return true;
    }
    return push_layer(b, TH_LAYER_RELU, name, err) != NULL;
}

bool th_builder_maxpool(th_builder *b, const char *name, const th_window *win, th_error **err)
{
    th_layer *l = push_layer(b, TH_LAYER_MAXPOOL, name, err);
    if (!l || !set_window(b, l, win, err)) {
        return false;
    }
    // Smaller pads keep at least one real pixel in every window (PyTorch allows at most k/2).
    if (l->pad_t >= l->kh || l->pad_b >= l->kh || l->pad_l >= l->kw || l->pad_r >= l->kw) {
        return th_builder_fail(b, err, "pads must be smaller than the kernel");
    }
    b->open_conv = -1;
    return advance_size(b, l, err);
}

// Inference BatchNormalization folded into the conv just before it:
// w' = w·γ/√(var+ε), b' = (b − mean)·γ/√(var+ε) + β, computed in double.
bool th_builder_batchnorm(th_builder *b, const float *gamma, const float *beta, const float *mean,
                          const float *var, double eps, th_error **err)
{
    if (b->open_conv < 0) {
        return th_builder_fail(b, err,
                               "BatchNormalization is only supported directly after a "
                               "convolution");
    }
    th_layer *l = &b->m->layers[b->open_conv];
    size_t c = (size_t)l->c_out, per = (size_t)l->c_in * (size_t)l->kh * (size_t)l->kw;
    float *w = (float *)l->weight, *bias = (float *)l->bias; // owned: const only to users
    for (size_t o = 0; o < c; o++) {
        double v = (double)var[o] + eps;
        if (!(v > 0)) {
            return th_builder_fail(b, err, "variance + epsilon is not positive for channel %zu", o);
        }
        double s = (gamma ? (double)gamma[o] : 1.0) / sqrt(v);
        for (size_t i = 0; i < per; i++) {
            w[o * per + i] = (float)(w[o * per + i] * s);
        }
        bias[o] = (float)(((double)bias[o] - mean[o]) * s + (beta ? beta[o] : 0.0));
    }
    return true;
}

void th_builder_break(th_builder *b)
{
    b->open_conv = -1;
}

void th_builder_pool(th_builder *b)
{
    b->m->feat_c = b->ch;
    b->open_conv = -1;
}

bool th_builder_dense(th_builder *b, int n_classes, float *w, float *bias, th_error **err)
{
    th_model *m = b->m;
    if (!bias) {
        bias = th_model_zeros((size_t)n_classes, err);
    }
    if (!w || !bias || m->dense_w) {
        th_free(w);
        th_free(bias);
        return w && bias ? th_builder_fail(b, err, "a second dense layer") : false;
    }
    m->dense_w = w;
    m->dense_b = bias;
    m->n_classes = n_classes;
    return true;
}

/* ------------------------------------------------------------------ the end */

// A non-finite weight would make every percentage NaN: refused, naming the layer.
static bool finite_array(const float *v, size_t n, const char *what, const char *layer,
                         th_error **err)
{
    for (size_t i = 0; v && i < n; i++) {
        if (!isfinite(v[i])) {
            th_error_set(err, "%s of '%s': value %zu is %g; the weights must be finite numbers",
                         what, layer, i, v[i]);
            return false;
        }
    }
    return true;
}

static bool check_finite(const th_model *m, th_error **err)
{
    for (int i = 0; i < m->n_layers; i++) {
        const th_layer *l = &m->layers[i];
        if (l->kind == TH_LAYER_CONV &&
            (!finite_array(l->weight, (size_t)l->c_out * l->c_in * l->kh * l->kw, "weights",
                           l->name, err) ||
             !finite_array(l->bias, (size_t)l->c_out, "bias", l->name, err))) {
            return false;
        }
    }
    return finite_array(m->dense_w, (size_t)m->n_classes * m->feat_c, "weights", "dense layer",
                        err) &&
           finite_array(m->dense_b, (size_t)m->n_classes, "bias", "dense layer", err);
}

th_model *th_builder_finish(th_builder *b, th_error **err)
{
    th_model *m = b->m;
    int c, h, w;
    b->m = NULL;
    bool ok = m->n_layers > 0 && m->feat_c > 0 && m->dense_w;
    if (!ok) {
        th_error_set(err,
                     "the model has no %s; tileheat needs conv layers, then global average "
                     "pooling, then one dense layer",
                     m->n_layers == 0 ? "conv layer"
                     : m->feat_c == 0 ? "global average pooling"
                                      : "dense layer");
    }
    ok = ok && th_model_init_classes(m, err) && th_model_read_metadata(m, err) &&
         check_finite(m, err) &&
         (!m->in_w || th_model_trunk_shape(m, m->in_h, m->in_w, &c, &h, &w, err));
    if (!ok) {
        th_model_free(m);
        return NULL;
    }
    return m;
}
