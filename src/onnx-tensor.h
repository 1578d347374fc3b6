/* SPDX-License-Identifier: MIT */
/* ONNX values for the graph walk in model-onnx.c: node attributes, initializers and Constant
 * tensors, decoded and checked against their dims (onnx-tensor.c). */
#ifndef TH_ONNX_TENSOR_H
#define TH_ONNX_TENSOR_H

#include "th-private.h"
#include "onnx.pb-c.h"

/* Where a value is read: the graph it is looked up in and the node named in messages. */
typedef struct th_onnx_at {
    Onnx__GraphProto *g; /* initializers and Constant nodes; their weights may be taken */
    const char *node;    /* current node's name (or "<op>#<index>"), for messages */
    const char *op;      /* current node's op_type */
} th_onnx_at;

/* protobuf-c leaves unset optional strings NULL; this reads them as "". */
static inline const char *th_onnx_str(const char *s)
{
    return s ? s : "";
}

/* Sets "node '<name>' (<op>): <message>"; always returns false. */
bool th_onnx_fail(const th_onnx_at *at, th_error **err, const char *fmt, ...) TH_PRINTF(3, 4);

/* The attribute `name` of the node (borrowed), or NULL if it has none. */
const Onnx__AttributeProto *th_onnx_attr_find(const Onnx__NodeProto *node, const char *name);

/* Scalar attributes; *out = def if absent, an error if present with another type (or, for a
 * float, not finite). */
bool th_onnx_attr_int(const th_onnx_at *at, const Onnx__NodeProto *node, const char *name,
                      int64_t def, int64_t *out, th_error **err);
bool th_onnx_attr_float(const th_onnx_at *at, const Onnx__NodeProto *node, const char *name,
                        float def, float *out, th_error **err);

/* An integer-list attribute of exactly n values in [lo, hi] into out[n]; out is left alone if
 * it is absent. */
bool th_onnx_attr_ints(const th_onnx_at *at, const Onnx__NodeProto *node, const char *name,
                       size_t n, int lo, int hi, int *out, th_error **err);

/* The string attribute `name`, as a NUL-terminated copy in buf[size] ("" if absent). */
bool th_onnx_attr_string(const th_onnx_at *at, const Onnx__NodeProto *node, const char *name,
                         char *buf, size_t size, th_error **err);

/* An initializer, or the value of a Constant node, called `name` (borrowed); NULL if none. */
Onnx__TensorProto *th_onnx_find_tensor(Onnx__GraphProto *g, const char *name);

/* How many node inputs read `name`; idx[] and pos[] get the first two readers and input slots. */
int th_onnx_consumers(const Onnx__GraphProto *g, const char *name, size_t idx[2], size_t pos[2]);

/* The tensor's dims as "[a,b,...]" into buf[size] (truncated to fit). */
void th_onnx_dims_string(const Onnx__TensorProto *t, char *buf, size_t size);

/* Decode a small int64 or int32 tensor (axes, shapes) into out[max]; *count gets its size. */
bool th_onnx_tensor_ints(const char *name, const Onnx__TensorProto *t, int64_t *out, size_t max,
                         size_t *count, th_error **err);

/* The constant tensor feeding input `idx` of the node (borrowed), or NULL with an error. */
Onnx__TensorProto *th_onnx_const_input(const th_onnx_at *at, const Onnx__NodeProto *node,
                                       size_t idx, th_error **err);

/* Decode input `idx` as float32 and check it holds `want` values (want 0: any count). Returns
 * a 64-byte aligned array the caller owns (frees with th_free), or NULL with an error; *tp
 * (borrowed) and *count get the tensor and its size when not NULL. A little-endian raw_data
 * tensor that this node alone reads is not copied: its buffer is taken from the tensor (see
 * take_raw), which is left empty. */
float *th_onnx_const_floats(const th_onnx_at *at, const Onnx__NodeProto *node, size_t idx,
                            size_t want, const Onnx__TensorProto **tp, size_t *count,
                            th_error **err);

#endif
