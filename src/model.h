/* SPDX-License-Identifier: MIT */
/* The loaded model: a conv trunk (Conv / Relu / MaxPool, BatchNorm folded into the conv), then
 * global average pooling, then one dense layer (then softmax, always applied once by tileheat).
 * model.c and model-onnx.c parse ONNX (protobuf-c, onnx.proto) into this and reject every other
 * graph. */
#ifndef TH_MODEL_H
#define TH_MODEL_H

#include <pthread.h>

#include "th-private.h"

typedef enum th_layer_kind {
    TH_LAYER_CONV = 0,
    TH_LAYER_RELU,    /* a Relu that could not be fused into the conv before it */
    TH_LAYER_MAXPOOL,
} th_layer_kind;

typedef struct th_layer {
    th_layer_kind kind;
    char name[64];                  /* ONNX node name (or "<op>#<index>"), for messages */
    int kh, kw;                     /* kernel size (conv, maxpool) */
    int sh, sw;                     /* strides */
    int dh, dw;                     /* dilations (conv; 1 = none) */
    int pad_t, pad_l, pad_b, pad_r; /* explicit padding (auto_pad resolved at load for the
                                       model's fixed input size; SAME_* needs a fixed size) */
    bool ceil_mode;                 /* maxpool */
    bool relu;                      /* conv: a following Relu is fused */
    int c_in, c_out;                /* conv channels; relu/maxpool: c_in == c_out */
    const float *weight;            /* conv: (c_out, c_in, kh, kw) row-major, owned */
    const float *bias;              /* conv: (c_out), owned; zeros if the node had none */
} th_layer;

#define TH_MODEL_META_MAX 64

struct th_model {
    int n_layers;
    th_layer *layers;        /* (n_layers) trunk in execution order */
    int in_c;                /* always 3 (RGB) */
    int in_w, in_h;          /* fixed input size from the graph or `input_size`; 0 if dynamic */
    bool input_nhwc;         /* graph input was NHWC, followed by a Transpose (informational) */
    int feat_c;              /* channels of the feature map that feeds GAP (= dense inputs) */
    int n_classes;
    const float *dense_w;    /* (n_classes, feat_c) row-major, owned */
    const float *dense_b;    /* (n_classes), owned */
    bool graph_softmax;      /* the graph ended with Softmax (tileheat applies it exactly once) */
    float input_scale;       /* x = (pixel * input_scale - input_mean[c]) / input_std[c] */
    float input_mean[3];
    float input_std[3];
    double mpp;              /* µm/px the model was trained at; 0 if unknown */
    char **class_names;      /* (n_classes) owned strings */
    bool *background;        /* (n_classes) from `background_classes` */
    int n_meta;
    char *meta_key[TH_MODEL_META_MAX];   /* metadata_props, owned */
    char *meta_value[TH_MODEL_META_MAX];
    char *path;              /* the file it was loaded from, owned; NULL from memory */
    pthread_mutex_t sha_lock; /* guards sha256, which is filled on first use */
    char sha256[65];         /* the file's SHA-256 in hex; "" until th_model_get_sha256 */
};

/* Output size of one layer for an h×w input; false if the output would be empty. */
bool th_layer_out_size(const th_layer *layer, int in_h, int in_w, int *out_h, int *out_w);

/* Feature map shape (C, H, W) at the end of the trunk for an in_h×in_w input; false with an
 * error naming the layer if some layer's output would be empty. */
bool th_model_trunk_shape(const th_model *model, int in_h, int in_w, int *c, int *h, int *w,
                          th_error **err);

struct Onnx__GraphProto;

/* model-onnx.c: walk an unpacked ONNX graph into `model`: layers, dense head, input layout and
 * fixed size (checked against in_w/in_h, which model.c sets from metadata input_size), and
 * the weights (owned by the model from then on). opset is the version of the default ONNX domain. */
bool th_model_onnx_graph(th_model *model, struct Onnx__GraphProto *graph, int64_t opset,
                         th_error **err);

/* Parse ONNX bytes (for tests and for th_model_load). */
th_model *th_model_load_from_memory(const void *data, size_t len, th_error **err);

#endif
