/* SPDX-License-Identifier: MIT */
/* The ONNX writer (tileheat convert): a loaded model, whatever its source, as a standard ONNX
 * file (IR 7, opset 13): Conv (+ Relu), Relu, MaxPool, GlobalAveragePool, Flatten, Gemm and
 * Softmax if the model had one, weights as float32 raw_data initializers (BatchNorm already
 * folded), and metadata_props saying everything tileheat needs (class names, mpp, input size,
 * preprocessing in the network's own channel order). Built with protobuf-c from onnx.proto and
 * streamed into a temporary file that is renamed over the target only when complete. */
#include <config.h>

#include <protobuf-c/protobuf-c.h>

#include "onnx.pb-c.h"
#include "model.h"

#define NAME_MAX_LEN 160
#define MAX_ATTRS 5 // per node

// Every message of the graph lives in these pools, sized from the layer count up front (so
// pointers into them stay put); nothing in them is owned but `copies`.
typedef struct writer {
    const th_model *m;
    Onnx__NodeProto *node, **node_p;      // (cap_node)
    Onnx__AttributeProto *attr, **attr_p; // (cap_node · MAX_ATTRS)
    Onnx__TensorProto *init, **init_p;    // (cap_init)
    int64_t *ints;                        // attribute values and tensor dims
    char **io;                            // node inputs and outputs (4 per node)
    char *names;                          // (cap_node + cap_init) · NAME_MAX_LEN
    float **copies;                       // (cap_init) weights rewritten for the file, owned
    size_t n_node, n_attr, n_init, n_ints, n_io, n_names, n_copies;
    char cur[NAME_MAX_LEN]; // the tensor at the end of the graph so far
} writer;

static char *name(writer *w, const char *fmt, ...) TH_PRINTF(2, 3);
static char *name(writer *w, const char *fmt, ...)
{
    char *s = w->names + NAME_MAX_LEN * w->n_names++;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s, NAME_MAX_LEN, fmt, ap);
    va_end(ap);
    return s;
}

static int64_t *ints(writer *w, const int64_t *v, size_t n)
{
    int64_t *p = w->ints + w->n_ints;
    memcpy(p, v, n * sizeof(*v));
    w->n_ints += n;
    return p;
}

// A node reading the current tensor (and `extra` initializers), writing a new one.
static Onnx__NodeProto *node(writer *w, const char *op, const char *node_name, const char *extra0,
                             const char *extra1)
{
    Onnx__NodeProto *n = &w->node[w->n_node];
    w->node_p[w->n_node++] = n;
    *n = (Onnx__NodeProto)ONNX__NODE_PROTO__INIT;
    n->op_type = (char *)op;
    n->name = name(w, "%s", node_name);
    n->input = w->io + w->n_io;
    n->input[n->n_input++] = name(w, "%s", w->cur);
    if (extra0) {
        n->input[n->n_input++] = (char *)extra0;
    }
    if (extra1) {
        n->input[n->n_input++] = (char *)extra1;
    }
    n->output = n->input + n->n_input;
    n->output[n->n_output++] = name(w, "t%zu", w->n_node);
    w->n_io += n->n_input + 1;
    snprintf(w->cur, sizeof(w->cur), "%s", n->output[0]);
    n->attribute = w->attr_p + w->n_attr;
    return n;
}

static void attr_ints(writer *w, Onnx__NodeProto *n, const char *key, const int64_t *v, size_t k)
{
    Onnx__AttributeProto *a = &w->attr[w->n_attr];
    w->attr_p[w->n_attr++] = a;
    *a = (Onnx__AttributeProto)ONNX__ATTRIBUTE_PROTO__INIT;
    a->name = (char *)key;
    a->has_type = true;
    if (k == 0) { // one int
        a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
        a->has_i = true;
        a->i = v[0];
    } else {
        a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
        a->ints = ints(w, v, k);
        a->n_ints = k;
    }
    n->n_attribute++;
}

// A float32 initializer (little-endian raw_data, pointing at `v` or a swapped copy).
static const char *initializer(writer *w, const char *tensor, const float *v, const int64_t *dims,
                               size_t n_dims, th_error **err)
{
    size_t count = 1;
    for (size_t i = 0; i < n_dims; i++) {
        count *= (size_t)dims[i];
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    float *copy = th_malloc(count * sizeof(float) + 1, err);
    if (!copy) {
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        u = __builtin_bswap32(u);
        memcpy(&copy[i], &u, 4);
    }
    w->copies[w->n_copies++] = copy;
    v = copy;
#else
    (void)err;
#endif
    Onnx__TensorProto *t = &w->init[w->n_init];
    w->init_p[w->n_init++] = t;
    *t = (Onnx__TensorProto)ONNX__TENSOR_PROTO__INIT;
    t->name = name(w, "%s", tensor);
    t->dims = ints(w, dims, n_dims);
    t->n_dims = n_dims;
    t->has_data_type = true;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->has_raw_data = true;
    t->raw_data.data = (uint8_t *)v;
    t->raw_data.len = count * sizeof(float);
    return t->name;
}

// The first conv's weights as the network takes them: channels swapped back to BGR when the
// model holds them swapped to take RGB (see swap_channels in model.c).
static const float *network_weights(writer *w, const th_layer *l, bool first, th_error **err)
{
    if (!first || !w->m->input_bgr) {
        return l->weight;
    }
    size_t plane = (size_t)l->kh * l->kw, n = (size_t)l->c_out * l->c_in * plane;
    float *copy = th_malloc(n * sizeof(float) + 1, err);
    if (!copy) {
        return NULL;
    }
    for (int o = 0; o < l->c_out; o++) {
        for (int c = 0; c < l->c_in; c++) {
            memcpy(copy + ((size_t)o * l->c_in + c) * plane,
                   l->weight + ((size_t)o * l->c_in + (l->c_in - 1 - c)) * plane,
                   plane * sizeof(float));
        }
    }
    w->copies[w->n_copies++] = copy;
    return copy;
}

static void window(writer *w, Onnx__NodeProto *n, const th_layer *l)
{
    int64_t k[2] = {l->kh, l->kw}, s[2] = {l->sh, l->sw}, d[2] = {l->dh, l->dw};
    int64_t p[4] = {l->pad_t, l->pad_l, l->pad_b, l->pad_r};
    attr_ints(w, n, "kernel_shape", k, 2);
    attr_ints(w, n, "strides", s, 2);
    attr_ints(w, n, "pads", p, 4);
    if (l->kind == TH_LAYER_CONV) {
        attr_ints(w, n, "dilations", d, 2);
    } else if (l->ceil_mode) {
        int64_t one = 1;
        attr_ints(w, n, "ceil_mode", &one, 0);
    }
}

// A layer name not used by an earlier layer, for the node and its initializers.
static const char *unique(writer *w, int i, char *buf, size_t size)
{
    const th_layer *l = &w->m->layers[i];
    bool seen = !l->name[0];
    for (int j = 0; j < i && !seen; j++) {
        seen = strcmp(w->m->layers[j].name, l->name) == 0;
    }
    if (seen) {
        snprintf(buf, size, "%s#%d", l->name[0] ? l->name : "layer", i);
    } else {
        snprintf(buf, size, "%s", l->name);
    }
    return buf;
}

static bool build_graph(writer *w, th_error **err)
{
    const th_model *m = w->m;
    bool first = true;
    snprintf(w->cur, sizeof(w->cur), "input");
    for (int i = 0; i < m->n_layers; i++) {
        const th_layer *l = &m->layers[i];
        char nm[100], tn[NAME_MAX_LEN];
        unique(w, i, nm, sizeof(nm));
        if (l->kind == TH_LAYER_CONV) {
            int64_t wd[4] = {l->c_out, l->c_in, l->kh, l->kw}, bd[1] = {l->c_out};
            const float *wv = network_weights(w, l, first, err);
            snprintf(tn, sizeof(tn), "%s.weight", nm);
            const char *wn = wv ? initializer(w, tn, wv, wd, 4, err) : NULL;
            snprintf(tn, sizeof(tn), "%s.bias", nm);
            const char *bn = wn ? initializer(w, tn, l->bias, bd, 1, err) : NULL;
            if (!bn) {
                return false;
            }
            window(w, node(w, "Conv", nm, wn, bn), l);
            first = false;
            if (l->relu) {
                snprintf(tn, sizeof(tn), "%s/relu", nm);
                node(w, "Relu", tn, NULL, NULL);
            }
        } else if (l->kind == TH_LAYER_MAXPOOL) {
            window(w, node(w, "MaxPool", nm, NULL, NULL), l);
        } else {
            node(w, "Relu", nm, NULL, NULL);
        }
    }
    int64_t one = 1, wd[2] = {m->n_classes, m->feat_c}, bd[1] = {m->n_classes};
    node(w, "GlobalAveragePool", "global_average_pool", NULL, NULL);
    attr_ints(w, node(w, "Flatten", "flatten", NULL, NULL), "axis", &one, 0);
    const char *wn = initializer(w, "dense.weight", m->dense_w, wd, 2, err);
    const char *bn = wn ? initializer(w, "dense.bias", m->dense_b, bd, 1, err) : NULL;
    if (!bn) {
        return false;
    }
    attr_ints(w, node(w, "Gemm", "dense", wn, bn), "transB", &one, 0);
    if (m->graph_softmax) {
        attr_ints(w, node(w, "Softmax", "softmax", NULL, NULL), "axis", &one, 0);
    }
    return true;
}

/* ------------------------------------------------------------------ inputs, metadata */

typedef struct vinfo {
    Onnx__ValueInfoProto info;
    Onnx__TypeProto type;
    Onnx__TypeProto__Tensor tensor;
    Onnx__TensorShapeProto shape;
    Onnx__TensorShapeProto__Dimension dim[4], *dim_p[4];
} vinfo;

// A float32 tensor value: dims > 0 fixed, else the symbol.
static void value_info(vinfo *v, const char *tensor, const int64_t *dims, const char *const *sym,
                       size_t n)
{
    v->info = (Onnx__ValueInfoProto)ONNX__VALUE_INFO_PROTO__INIT;
    v->type = (Onnx__TypeProto)ONNX__TYPE_PROTO__INIT;
    v->tensor = (Onnx__TypeProto__Tensor)ONNX__TYPE_PROTO__TENSOR__INIT;
    v->shape = (Onnx__TensorShapeProto)ONNX__TENSOR_SHAPE_PROTO__INIT;
    for (size_t i = 0; i < n; i++) {
        v->dim[i] = (Onnx__TensorShapeProto__Dimension)ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
        if (dims[i] > 0) {
            v->dim[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            v->dim[i].dim_value = dims[i];
        } else {
            v->dim[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            v->dim[i].dim_param = (char *)sym[i];
        }
        v->dim_p[i] = &v->dim[i];
    }
    v->shape.dim = v->dim_p;
    v->shape.n_dim = n;
    v->tensor.has_elem_type = true;
    v->tensor.elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    v->tensor.shape = &v->shape;
    v->type.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    v->type.tensor_type = &v->tensor;
    v->info.name = (char *)tensor;
    v->info.type = &v->type;
}

// The keys the writer says itself; the model's other metadata is copied as it is.
static const char *const own_keys[] = {"class_names",   "mpp",         "input_size", "preprocess",
                                       "channel_order", "input_scale", "input_mean", "input_std"};
#define N_OWN (sizeof(own_keys) / sizeof(own_keys[0]))

typedef struct meta {
    Onnx__StringStringEntryProto entry[TH_MODEL_META_MAX + N_OWN],
        *entry_p[TH_MODEL_META_MAX + N_OWN];
    char *text[N_OWN]; // owned values
    size_t n, n_text;
} meta;

static void meta_add(meta *mt, const char *key, char *value)
{
    Onnx__StringStringEntryProto *e = &mt->entry[mt->n];
    *e = (Onnx__StringStringEntryProto)ONNX__STRING_STRING_ENTRY_PROTO__INIT;
    e->key = (char *)key;
    e->value = value;
    mt->entry_p[mt->n++] = e;
}

static bool meta_own(meta *mt, const char *key, char *value)
{
    mt->text[mt->n_text++] = value;
    if (value) {
        meta_add(mt, key, value);
    }
    return value != NULL;
}

// Three values in the network's channel order.
static char *triple(const th_model *m, const float *v, th_error **err)
{
    int a = m->input_bgr ? 2 : 0, c = m->input_bgr ? 0 : 2;
    return th_strdup_printf(err, "%.9g,%.9g,%.9g", v[a], v[1], v[c]);
}

static bool fill_meta(const th_model *m, meta *mt, th_error **err)
{
    for (int i = 0; i < m->n_meta; i++) {
        bool own = false;
        for (size_t k = 0; k < N_OWN && !own; k++) {
            own = strcmp(m->meta_key[i], own_keys[k]) == 0;
        }
        if (!own) {
            meta_add(mt, m->meta_key[i], m->meta_value[i]);
        }
    }
    char *names = th_strdup("", err);
    for (int c = 0; names && c < m->n_classes; c++) {
        char *more = th_strdup_printf(err, "%s%s%s", names, c ? "," : "", m->class_names[c]);
        th_free(names);
        names = more;
    }
    const char *preset = th_model_get_preprocess(m);
    bool ok =
        meta_own(mt, "class_names", names) &&
        (!(m->mpp > 0) || meta_own(mt, "mpp", th_strdup_printf(err, "%.17g", m->mpp))) &&
        (!m->in_w ||
         meta_own(mt, "input_size", th_strdup_printf(err, "%d,%d", m->in_w, m->in_h))) &&
        (strcmp(preset, "custom") == 0 || meta_own(mt, "preprocess", th_strdup(preset, err))) &&
        meta_own(mt, "channel_order", th_strdup(m->input_bgr ? "BGR" : "RGB", err)) &&
        meta_own(mt, "input_scale", th_strdup_printf(err, "%.9g", m->input_scale)) &&
        meta_own(mt, "input_mean", triple(m, m->input_mean, err)) &&
        meta_own(mt, "input_std", triple(m, m->input_std, err));
    return ok;
}

/* ------------------------------------------------------------------ the file */

typedef struct file_buffer {
    ProtobufCBuffer base;
    FILE *fp;
} file_buffer;

static void append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
    fwrite(data, 1, len, ((file_buffer *)b)->fp); // errors surface at th_outfile_commit
}

static bool alloc_pools(writer *w, th_error **err)
{
    size_t cap_node = 2 * (size_t)w->m->n_layers + 4, cap_init = 2 * (size_t)w->m->n_layers + 2;
    w->node = th_calloc(cap_node, sizeof(*w->node), err);
    w->node_p = th_calloc(cap_node, sizeof(*w->node_p), err);
    w->attr = th_calloc(cap_node * MAX_ATTRS, sizeof(*w->attr), err);
    w->attr_p = th_calloc(cap_node * MAX_ATTRS, sizeof(*w->attr_p), err);
    w->init = th_calloc(cap_init, sizeof(*w->init), err);
    w->init_p = th_calloc(cap_init, sizeof(*w->init_p), err);
    w->ints = th_calloc(cap_node * MAX_ATTRS * 4 + cap_init * 4, sizeof(int64_t), err);
    w->io = th_calloc(cap_node * 4, sizeof(char *), err);
    w->names = th_calloc(cap_node * 4 + cap_init, NAME_MAX_LEN, err);
    w->copies = th_calloc(cap_init, sizeof(float *), err);
    return w->node && w->node_p && w->attr && w->attr_p && w->init && w->init_p && w->ints &&
           w->io && w->names && w->copies;
}

static void free_pools(writer *w)
{
    for (size_t i = 0; w->copies && i < w->n_copies; i++) {
        th_free(w->copies[i]);
    }
    th_free(w->copies);
    th_free(w->names);
    th_free(w->io);
    th_free(w->ints);
    th_free(w->init_p);
    th_free(w->init);
    th_free(w->attr_p);
    th_free(w->attr);
    th_free(w->node_p);
    th_free(w->node);
}

bool th_model_write_onnx(const th_model *m, const char *path, th_error **err)
{
    writer w = {.m = m};
    meta *mt = th_calloc(1, sizeof(*mt), err);
    vinfo in, out;
    static const char *const in_sym[4] = {"N", "", "H", "W"}, *const out_sym[2] = {"N", ""};
    bool fixed = m->in_w > 0 && !m->input_dynamic;
    int64_t in_dims[4] = {0, 3, fixed ? m->in_h : 0, fixed ? m->in_w : 0};
    int64_t out_dims[2] = {0, m->n_classes};
    bool ok = mt && alloc_pools(&w, err) && build_graph(&w, err) && fill_meta(m, mt, err);
    if (ok) {
        value_info(&in, "input", in_dims, in_sym, 4);
        value_info(&out, w.cur, out_dims, out_sym, 2);
        Onnx__ValueInfoProto *in_p = &in.info, *out_p = &out.info;
        Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT, *opset_p = &opset;
        opset.domain = (char *)"";
        opset.has_version = true;
        opset.version = 13;
        Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
        g.name = (char *)"tileheat";
        g.node = w.node_p;
        g.n_node = w.n_node;
        g.initializer = w.init_p;
        g.n_initializer = w.n_init;
        g.input = &in_p;
        g.n_input = 1;
        g.output = &out_p;
        g.n_output = 1;
        Onnx__ModelProto mp = ONNX__MODEL_PROTO__INIT;
        mp.has_ir_version = true;
        mp.ir_version = 7;
        mp.opset_import = &opset_p;
        mp.n_opset_import = 1;
        mp.producer_name = (char *)"tileheat";
        mp.producer_version = (char *)th_version();
        mp.doc_string = (char *)th_model_get_format(m);
        mp.graph = &g;
        mp.metadata_props = mt->entry_p;
        mp.n_metadata_props = mt->n;
        th_outfile f;
        ok = th_outfile_open(&f, path, err);
        if (ok) {
            file_buffer buf = {.base = {.append = append}, .fp = f.fp};
            onnx__model_proto__pack_to_buffer(&mp, &buf.base);
            ok = th_outfile_commit(&f, err);
        }
    }
    for (size_t i = 0; mt && i < mt->n_text; i++) {
        th_free(mt->text[i]);
    }
    th_free(mt);
    free_pools(&w);
    return ok;
}
