/* SPDX-License-Identifier: MIT */
/* The loaded model, whatever file it came from: a conv trunk (Conv / Relu / MaxPool, BatchNorm
 * folded into the conv), then global average pooling, then one dense layer (then softmax, always
 * applied once by tileheat). The loaders (model-onnx.c, model-keras.c) read their format and feed
 * one builder (model.c), which owns folding, fusion, padding rules, validation and metadata. */
#ifndef TH_MODEL_H
#define TH_MODEL_H

#include <pthread.h>

#include "th-private.h"

typedef enum th_layer_kind {
    TH_LAYER_CONV = 0,
    TH_LAYER_RELU, /* a Relu that could not be fused into the conv before it */
    TH_LAYER_MAXPOOL,
} th_layer_kind;

typedef struct th_layer {
    th_layer_kind kind;
    char name[64];                  /* the file's node or layer name, for messages */
    int kh, kw;                     /* kernel size (conv, maxpool) */
    int sh, sw;                     /* strides */
    int dh, dw;                     /* dilations (conv; 1 = none) */
    int pad_t, pad_l, pad_b, pad_r; /* explicit padding ("same" resolved at load: for the fixed
                                       input size when a stride > 1 needs one) */
    bool ceil_mode;                 /* maxpool */
    bool relu;                      /* conv: a following Relu is fused */
    int c_in, c_out;                /* conv channels; relu/maxpool: c_in == c_out */
    const float *weight;            /* conv: (c_out, c_in, kh, kw) row-major, owned */
    const float *bias;              /* conv: (c_out), owned; zeros if the node had none */
} th_layer;

#define TH_MODEL_META_MAX 64

typedef enum th_model_format {
    TH_MODEL_ONNX = 0,
    TH_MODEL_KERAS_H5, /* Keras 2 / tf.keras model.save("x.h5") */
    TH_MODEL_KERAS_V3, /* Keras 3 model.save("x.keras"): a zip of config.json + model.weights.h5 */
} th_model_format;

struct th_model {
    th_model_format format;
    int n_layers;
    th_layer *layers;   /* (n_layers) trunk in execution order */
    int in_c;           /* always 3 (RGB) */
    int in_w, in_h;     /* fixed input size from the file or `input_size`; 0 if dynamic */
    bool input_nhwc;    /* graph input was NHWC, followed by a Transpose (informational) */
    bool input_dynamic; /* the file gives no fixed H, W (in_w, in_h come from input_size) */
    int feat_c;         /* channels of the feature map that feeds GAP (= dense inputs) */
    int n_classes;
    const float *dense_w; /* (n_classes, feat_c) row-major, owned */
    const float *dense_b; /* (n_classes), owned */
    bool graph_softmax;   /* the graph ended with Softmax (tileheat applies it exactly once) */
    float input_scale;    /* x = (pixel * input_scale - input_mean[c]) / input_std[c], c RGB */
    float input_mean[3];  /* in RGB order, whatever the network's channel order */
    float input_std[3];
    bool input_bgr;     /* the network takes BGR: the first conv's input channels (or the
                           dense columns, with no conv) were swapped at load to take RGB */
    double mpp;         /* µm/px the model was trained at; 0 if unknown */
    char **class_names; /* (n_classes) owned strings */
    bool *background;   /* (n_classes) from `background_classes` */
    int n_meta;
    char meta_file[64]; /* the sidecar JSON's name (Keras), "" if the keys are the file's */
    char *meta_key[TH_MODEL_META_MAX]; /* metadata_props (Keras: the sidecar JSON), owned */
    char *meta_value[TH_MODEL_META_MAX];
    char *path;               /* the file it was loaded from, owned; NULL from memory */
    pthread_mutex_t sha_lock; /* guards sha256, which is filled on first use */
    char sha256[65];          /* the file's SHA-256 in hex; "" until th_model_get_sha256 */
};

/* What the model's file calls a layer, in messages: "node" (ONNX) or "layer" (Keras). */
const char *th_model_unit_word(const th_model *model);

/* Per-channel values of every layer's output, layer after layer (int8's calibrated means): where
 * layer i's c_out start, and (i = n_layers) how many in all. */
size_t th_model_act_offset(const th_model *model, int i);

/* Output size of one layer for an h×w input; false if the output would be empty. */
bool th_layer_out_size(const th_layer *layer, int in_h, int in_w, int *out_h, int *out_w);

/* Feature map shape (C, H, W) at the end of the trunk for an in_h×in_w input; false with an
 * error naming the layer if some layer's output would be empty. */
bool th_model_trunk_shape(const th_model *model, int in_h, int in_w, int *c, int *h, int *w,
                          th_error **err);

/* model.c, for the builder: metadata `input_size` into in_w, in_h; default class names
 * "class0".. and the background flags; then everything else the metadata says (class names,
 * preprocessing and channel order, mpp, background classes). */
bool th_model_meta_input_size(th_model *model, th_error **err);
/* How messages name metadata key `key`: "metadata class_names", or "model.json: class_names"
 * for a sidecar. */
const char *th_model_meta_label(const th_model *model, const char *key, char *buf, size_t size);
bool th_model_init_classes(th_model *model, th_error **err);
bool th_model_read_metadata(th_model *model, th_error **err);

/* Load a model from bytes, the format chosen by its magic bytes: HDF5 (at 0 or a 512·2^k
 * userblock) or zip are Keras files, anything else is parsed as ONNX. No sidecar JSON (that
 * needs the file's path: th_model_load). */
th_model *th_model_load_from_memory(const void *data, size_t len, th_error **err);

/* ------------------------------------------------------------------ the builder (model.c) */

/* How a window's padding is given: explicit pads, or "same" (output = ceil(in / stride)) with
 * the odd pixel at the end (ONNX SAME_UPPER, TensorFlow / Keras "same") or at the start. */
typedef enum th_pad_mode { TH_PAD_EXPLICIT = 0, TH_PAD_SAME_END, TH_PAD_SAME_BEGIN } th_pad_mode;

/* A Conv or MaxPool window as the file gives it. */
typedef struct th_window {
    int kh, kw, sh, sw, dh, dw;
    th_pad_mode pad_mode;
    int pad_t, pad_l, pad_b, pad_r; /* TH_PAD_EXPLICIT */
    bool ceil_mode;                 /* maxpool */
    const char *pad_name;           /* "auto_pad SAME_UPPER", "padding 'same'": for messages */
} th_window;

/* One load. The loader says where it is (`at`, the prefix of every message: "node 'x' (Conv)",
 * "layer 'x' (Conv2D)"), hands over metadata, the input, then the layers in order; the builder
 * tracks the tensor's channels and size, resolves padding, fuses a ReLU into the conv before it,
 * folds BatchNormalization into it, and th_builder_finish validates and reads the metadata. */
typedef struct th_builder {
    th_model *m;           /* being built; the caller's after th_builder_finish */
    char at[200];          /* where the loader is, for messages */
    const char *size_hint; /* where a fixed input size comes from, for messages */
    int cap;               /* allocated entries of m->layers */
    int ch, h, w;          /* the tensor so far: channels and size (h = w = 0: dynamic) */
    int open_conv;         /* a conv nothing has followed yet (BN / ReLU fold into it), or -1 */
} th_builder;

/* Start a model of this format (defaults: RGB, x / 255, no metadata). */
bool th_builder_init(th_builder *b, th_model_format format, th_error **err);
/* Free the model if th_builder_finish has not handed it over. */
void th_builder_clear(th_builder *b);
/* Set the message prefix (printf-style). */
void th_builder_at(th_builder *b, const char *fmt, ...) TH_PRINTF(2, 3);
/* Set "<at>: <message>"; always returns false. */
bool th_builder_fail(const th_builder *b, th_error **err, const char *fmt, ...) TH_PRINTF(3, 4);
/* One metadata entry (copied; beyond TH_MODEL_META_MAX they are ignored), then, once they are
 * all in, th_builder_meta_end reads `input_size`. */
bool th_builder_meta(th_builder *b, const char *key, const char *value, th_error **err);
bool th_builder_meta_end(th_builder *b, th_error **err);
/* The image input: its fixed size (0, 0 if dynamic: then `input_size` applies) and layout. */
bool th_builder_input(th_builder *b, const char *name, int w, int h, bool nhwc, th_error **err);
/* A convolution over the current tensor's channels; takes weight (c_out, ch, kh, kw) and bias
 * (c_out; NULL = zeros), 64-byte aligned (th_malloc_aligned), also on failure. */
bool th_builder_conv(th_builder *b, const char *name, const th_window *win, int c_out,
                     float *weight, float *bias, th_error **err);
/* A ReLU: fused into the conv just before it, else a layer of its own. */
bool th_builder_relu(th_builder *b, const char *name, th_error **err);
bool th_builder_maxpool(th_builder *b, const char *name, const th_window *win, th_error **err);
/* Inference BatchNormalization folded into the open conv (b->open_conv >= 0: the loader checks
 * and words the message); gamma / beta NULL = 1 / 0; (c_out) each, borrowed. */
bool th_builder_batchnorm(th_builder *b, const float *gamma, const float *beta, const float *mean,
                          const float *var, double eps, th_error **err);
/* Nothing may fold into the conv before this point (a layout transpose). */
void th_builder_break(th_builder *b);
/* Global average pooling: the trunk ends, feat_c is the channel count. */
void th_builder_pool(th_builder *b);
/* The dense layer: takes w (n_classes, feat_c) and bias (n_classes; NULL = zeros), aligned. */
bool th_builder_dense(th_builder *b, int n_classes, float *w, float *bias, th_error **err);
/* Class names, metadata, finite weights, channel order, the trunk at the fixed size: the model
 * (the caller's), or NULL with an error. The builder is cleared either way. */
th_model *th_builder_finish(th_builder *b, th_error **err);

/* n floats set to 0, 64-byte aligned as every weight array. */
float *th_model_zeros(size_t n, th_error **err);

/* ------------------------------------------------------------------ loaders and writer */

/* model-onnx.c: a serialized ONNX ModelProto. */
th_model *th_model_onnx_load(const void *data, size_t len, th_error **err);
/* model-keras.c: a Keras .h5 (HDF5) or .keras (zip) file; `path` (NULL from memory) is where
 * it came from, next to which the sidecar JSON is looked for. Without HDF5 support built in, an
 * error saying so. */
th_model *th_model_keras_load(const void *data, size_t len, bool zip, const char *path,
                              th_error **err);

/* The preprocessing presets (unit, caffe, tf, torch): false if `name` is none of them. */
bool th_model_preset(const char *name, float *scale, float mean[3], float std[3], bool *bgr);

#endif
