/* SPDX-License-Identifier: MIT */
/* Decoding the parts of an ONNX graph that hold values: node attributes, initializers and
 * Constant tensors (float32 weights, int64 axes and shapes), checked against their dims. Errors
 * about a node name it as "node '<name>' (<op>): ...". model-onnx.c walks the graph itself. */
#include <config.h>

#include <protobuf-c/protobuf-c.h>

#include "onnx.pb-c.h"
#include "onnx-tensor.h"

bool th_onnx_fail(const th_onnx_at *at, th_error **err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    th_error_set(err, "node '%s' (%s): %s", at->node, at->op, msg);
    return false;
}

/* ------------------------------------------------------------------ attributes */

const Onnx__AttributeProto *th_onnx_attr_find(const Onnx__NodeProto *node, const char *name)
{
    for (size_t i = 0; i < node->n_attribute; i++) {
        if (node->attribute[i]->name && strcmp(node->attribute[i]->name, name) == 0) {
            return node->attribute[i];
        }
    }
    return NULL;
}

bool th_onnx_attr_int(const th_onnx_at *at, const Onnx__NodeProto *node, const char *name,
                      int64_t def, int64_t *out, th_error **err)
{
    const Onnx__AttributeProto *a = th_onnx_attr_find(node, name);
    *out = def;
    if (!a) {
        return true;
    }
    if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT) {
        return th_onnx_fail(at, err, "attribute '%s' is not an integer", name);
    }
    *out = a->i;
    return true;
}

bool th_onnx_attr_float(const th_onnx_at *at, const Onnx__NodeProto *node, const char *name,
                        float def, float *out, th_error **err)
{
    const Onnx__AttributeProto *a = th_onnx_attr_find(node, name);
    *out = def;
    if (!a) {
        return true;
    }
    if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT || !isfinite(a->f)) {
        return th_onnx_fail(at, err, "attribute '%s' is not a finite float", name);
    }
    *out = a->f;
    return true;
}

// An integer-list attribute of exactly n values in [lo, hi]; out is left alone if it is absent.
bool th_onnx_attr_ints(const th_onnx_at *at, const Onnx__NodeProto *node, const char *name,
                       size_t n, int lo, int hi, int *out, th_error **err)
{
    const Onnx__AttributeProto *a = th_onnx_attr_find(node, name);
    if (!a) {
        return true;
    }
    bool good = a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS && a->n_ints == n;
    for (size_t i = 0; good && i < n; i++) {
        good = a->ints[i] >= lo && a->ints[i] <= hi;
        out[i] = good ? (int)a->ints[i] : 0;
    }
    if (!good) {
        return th_onnx_fail(at, err, "attribute '%s' must be %zu integers in [%d, %d]", name, n, lo,
                            hi);
    }
    return true;
}

// The string attribute `name`, as a NUL-terminated copy in buf ("" if absent).
bool th_onnx_attr_string(const th_onnx_at *at, const Onnx__NodeProto *node, const char *name,
                         char *buf, size_t size, th_error **err)
{
    const Onnx__AttributeProto *a = th_onnx_attr_find(node, name);
    buf[0] = 0;
    if (!a) {
        return true;
    }
    if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING || a->s.len >= size) {
        return th_onnx_fail(at, err, "attribute '%s' is not a short string", name);
    }
    if (a->s.len) {
        memcpy(buf, a->s.data, a->s.len);
    }
    buf[a->s.len] = 0;
    return true;
}

/* ------------------------------------------------------------------ tensors */

// An initializer, or the value of a Constant node, called `name`; NULL if there is none.
Onnx__TensorProto *th_onnx_find_tensor(Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_initializer; i++) {
        if (g->initializer[i]->name && strcmp(g->initializer[i]->name, name) == 0) {
            return g->initializer[i];
        }
    }
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *node = g->node[i];
        if (strcmp(th_onnx_str(node->op_type), "Constant") == 0 && node->n_output >= 1 &&
            strcmp(node->output[0], name) == 0) {
            const Onnx__AttributeProto *a = th_onnx_attr_find(node, "value");
            return a && a->t ? a->t : NULL;
        }
    }
    return NULL;
}

int th_onnx_consumers(const Onnx__GraphProto *g, const char *name, size_t idx[2], size_t pos[2])
{
    int n = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        for (size_t j = 0; j < g->node[i]->n_input; j++) {
            if (strcmp(g->node[i]->input[j], name) == 0) {
                if (n < 2) {
                    idx[n] = i;
                    pos[n] = j;
                }
                n++;
            }
        }
    }
    return n;
}

void th_onnx_dims_string(const Onnx__TensorProto *t, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "[");
    for (size_t i = 0; i < t->n_dims && n < size; i++) {
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? "," : "", (long long)t->dims[i]);
    }
    if (n < size) {
        snprintf(buf + n, size - n, "]");
    }
}

static const char *type_name(int32_t type)
{
    static const char *const names[] = {
        "undefined", "float32", "uint8",     "int8",       "uint16",   "int16",
        "int32",     "int64",   "string",    "bool",       "float16",  "double",
        "uint32",    "uint64",  "complex64", "complex128", "bfloat16",
    };
    return type >= 0 && type < (int32_t)(sizeof(names) / sizeof(names[0])) ? names[type]
                                                                           : "unknown";
}

// Element count from the dims; false for negative dims, external data or absurd sizes.
static bool tensor_count(const char *name, const Onnx__TensorProto *t, size_t *count,
                         th_error **err)
{
    if ((t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) ||
        t->n_external_data) {
        th_error_set(err,
                     "tensor '%s': external data is not supported (keep the weights in the "
                     "model file)",
                     name);
        return false;
    }
    size_t n = 1;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0 || t->dims[i] > INT32_MAX ||
            (t->dims[i] && n > ((size_t)1 << 28) / (size_t)t->dims[i])) {
            char dims[160];
            th_onnx_dims_string(t, dims, sizeof(dims));
            th_error_set(err, "tensor '%s': bad dims %s", name, dims);
            return false;
        }
        n *= (size_t)t->dims[i];
    }
    *count = n;
    return true;
}

static bool size_mismatch(const char *name, const Onnx__TensorProto *t, const char *what,
                          size_t got, th_error **err)
{
    char dims[160];
    th_onnx_dims_string(t, dims, sizeof(dims));
    th_error_set(err, "tensor '%s': %zu %s for dims %s", name, got, what, dims);
    return false;
}

/* The raw_data buffer itself when it can serve as the float array: the host is little-endian as
 * ONNX's raw_data, the buffer is 64-byte aligned (model.c's protobuf-c allocator makes every
 * buffer so) and `sole` (no other node input reads the tensor). The tensor is left empty, so
 * protobuf-c does not free the buffer; NULL when it must be copied. This saves VGG16-GAP a
 * second 59 MB of fresh memory and its copy at load. */
static float *take_raw(Onnx__TensorProto *t, bool sole)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (sole && t->has_raw_data && t->raw_data.data && (uintptr_t)t->raw_data.data % 64 == 0) {
        float *out = (float *)(void *)t->raw_data.data;
        t->raw_data.data = NULL;
        t->raw_data.len = 0;
        t->has_raw_data = false;
        return out;
    }
#else
    (void)t;
    (void)sole;
#endif
    return NULL;
}

// Decode a float32 tensor (float_data, or little-endian raw_data) into a 64-byte aligned array:
// raw_data's own buffer when take_raw allows, else a new copy.
static float *tensor_floats(const char *name, Onnx__TensorProto *t, bool sole, size_t *count,
                            th_error **err)
{
    size_t n;
    if (!tensor_count(name, t, &n, err)) {
        return NULL;
    }
    if (t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
        th_error_set(err, "tensor '%s': data type %s; tileheat needs float32 weights", name,
                     type_name(t->data_type));
        return NULL;
    }
    if (t->has_raw_data ? t->raw_data.len != n * 4 : t->n_float_data != n) {
        size_mismatch(name, t, t->has_raw_data ? "raw_data bytes" : "values",
                      t->has_raw_data ? t->raw_data.len : t->n_float_data, err);
        return NULL;
    }
    size_t bytes;
    float *out = n ? take_raw(t, sole) : NULL;
    if (out) {
        *count = n;
        return out;
    }
    out = th_size_mul(n ? n : 1, sizeof(float), &bytes, err) ? th_malloc_aligned(bytes, err) : NULL;
    if (!out) { // (n) in the tensor's order, every value written below
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (t->has_raw_data) {
            const uint8_t *p = t->raw_data.data + 4 * i;
            uint32_t u =
                (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            memcpy(&out[i], &u, 4);
        } else {
            out[i] = t->float_data[i];
        }
    }
    *count = n;
    return out;
}

// Decode a small int64 or int32 tensor (axes, shapes) into out[max]; *count gets its size.
bool th_onnx_tensor_ints(const char *name, const Onnx__TensorProto *t, int64_t *out, size_t max,
                         size_t *count, th_error **err)
{
    size_t n;
    if (!tensor_count(name, t, &n, err)) {
        return false;
    }
    bool i64 = t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    if (!i64 && t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__INT32) {
        th_error_set(err, "tensor '%s': data type %s, expected int64", name,
                     type_name(t->data_type));
        return false;
    }
    size_t have = t->has_raw_data ? t->raw_data.len / (i64 ? 8 : 4)
                                  : (i64 ? t->n_int64_data : t->n_int32_data);
    if (have != n || (t->has_raw_data && t->raw_data.len % (i64 ? 8 : 4)) || n > max) {
        return size_mismatch(name, t, "values", have, err);
    }
    for (size_t i = 0; i < n; i++) {
        if (!t->has_raw_data) {
            out[i] = i64 ? t->int64_data[i] : t->int32_data[i];
            continue;
        }
        uint64_t u = 0;
        for (int b = (i64 ? 8 : 4) - 1; b >= 0; b--) {
            u = u << 8 | t->raw_data.data[(i64 ? 8 : 4) * i + (size_t)b];
        }
        out[i] = i64 ? (int64_t)u : (int64_t)(int32_t)(uint32_t)u;
    }
    *count = n;
    return true;
}

// The constant tensor feeding input `idx` of the node, or NULL with an error.
Onnx__TensorProto *th_onnx_const_input(const th_onnx_at *at, const Onnx__NodeProto *node,
                                       size_t idx, th_error **err)
{
    if (idx >= node->n_input || !node->input[idx][0]) {
        th_onnx_fail(at, err, "input %zu is missing", idx);
        return NULL;
    }
    Onnx__TensorProto *t = th_onnx_find_tensor(at->g, node->input[idx]);
    if (!t) {
        th_onnx_fail(at, err,
                     "input '%s' is not an initializer (weights computed in the graph are not "
                     "supported)",
                     node->input[idx]);
    }
    return t;
}

// Decode input `idx` as float32 and check it holds `want` values (want 0: any count).
float *th_onnx_const_floats(const th_onnx_at *at, const Onnx__NodeProto *node, size_t idx,
                            size_t want, const Onnx__TensorProto **tp, size_t *count,
                            th_error **err)
{
    Onnx__TensorProto *t = th_onnx_const_input(at, node, idx, err);
    size_t n = 0, who[2], slot[2];
    bool sole = t && th_onnx_consumers(at->g, node->input[idx], who, slot) == 1;
    float *v = t ? tensor_floats(node->input[idx], t, sole, &n, err) : NULL;
    if (v && want && n != want) {
        char dims[160];
        th_onnx_dims_string(t, dims, sizeof(dims));
        th_onnx_fail(at, err, "tensor '%s' has dims %s, expected %zu values", node->input[idx],
                     dims, want);
        TH_FREE(v);
    }
    if (tp) {
        *tp = t;
    }
    if (count) {
        *count = n;
    }
    return v;
}
