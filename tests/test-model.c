/* SPDX-License-Identifier: MIT */
/* Tests for the ONNX loader (model.c, model-onnx.c): every reference model of tests/data/models
 * against the layers, sizes, metadata and folded weights that tools/gen-test-models.py recorded
 * from PyTorch (the checks are testutil.c's, shared with test-keras); rejection messages for the
 * real U-Net, the broken models, edited copies of a good model and every truncation of one; class
 * names and the getters. */
#include <config.h>

#include <math.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "onnx.pb-c.h"
#include "model.h"
#include "tap.h"
#include "testutil.h"

static const char *const ref_models[] = {
    "vgg-basic", "vgg-strided", "vgg-dynamic", "vgg-bn", "vgg-nhwc", "vgg-reducemean18",
};

/* ------------------------------------------------------------------ reference models */

static void test_reference_models(void)
{
    for (size_t i = 0; i < sizeof(ref_models) / sizeof(ref_models[0]); i++) {
        const char *name = ref_models[i];
        char rel[256];
        tu_model_ref r;
        snprintf(rel, sizeof(rel), "tests/data/models/%s.ref", name);
        if (!ok(tu_model_ref_load(&r, rel), "%s: reference file", name)) {
            th_free(r.file.buf);
            continue;
        }
        th_error *err = NULL;
        snprintf(rel, sizeof(rel), "tests/data/models/%s.onnx", name);
        th_model *m = th_model_load(test_src_path(rel), &err);
        if (!ok(m != NULL, "%s: loads", name)) {
            diag("%s", th_error_message(err));
        } else {
            tu_check_model_structure(m, &r, name);
            tu_check_model_metadata(m, &r, name);
            tu_check_model_weights(m, &r, name);
        }
        th_model_free(m);
        th_error_free(err);
        th_free(r.file.buf);
    }
}

/* ------------------------------------------------------------------ rejections */

// Load a file and expect failure with a message containing `want` (and, if set, `want2`).
static void expect_fail(const char *path, const char *want, const char *want2, const char *what)
{
    th_error *err = NULL;
    th_model *m = th_model_load(path, &err);
    ok(m == NULL && err != NULL, "%s: rejected", what);
    like(err ? th_error_message(err) : NULL, want, "%s: message", what);
    if (want2) {
        like(err ? th_error_message(err) : NULL, want2, "%s: message names the problem", what);
    }
    th_model_free(m);
    th_error_free(err);
}

static void test_rejections(void)
{
    expect_fail(test_data_path("models/tissue-unet.onnx"),
                "node 'unet_370k_1/zero_padding2d_4_1/Pad' (Pad): not supported",
                "tileheat needs conv layers, then global average pooling, then one dense layer",
                "U-Net (tf2onnx)");
    expect_fail(test_data_path("bad/tissue-unet.truncated.onnx"), "not an ONNX model", NULL,
                "truncated U-Net");
    expect_fail(test_data_path("slides/small.svs"), "not an ONNX model", NULL, "a slide");
    expect_fail(test_src_path("tests/data/models/no-such-model.onnx"), "No such file", NULL,
                "missing file (the caller adds the path)");
    static const struct {
        const char *file, *want, *want2;
    } bad[] = {
        {"bad-dims", "tensor 'w1': 100 values for dims [8,3,3,3]", NULL},
        {"bad-rawlen", "tensor 'w1': 430 raw_data bytes for dims [4,3,3,3]", NULL},
        {"bad-sigmoid", "node 'sig1' (Sigmoid): not supported", "tileheat needs conv layers"},
        {"bad-convtranspose", "node 'up1' (ConvTranspose): not supported", "global average"},
        {"bad-branch", "tensor 'r1' feeds 2 node inputs", "branching"},
        {"bad-group", "node 'conv2' (Conv): group 2 is not supported", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char rel[256];
        snprintf(rel, sizeof(rel), "tests/data/models/%s.onnx", bad[i].file);
        expect_fail(test_src_path(rel), bad[i].want, bad[i].want2, bad[i].file);
    }
}

// Every prefix of a valid model must fail cleanly: protobuf-c rejects most; the prefixes that
// end on a field boundary parse but lack the graph or the opset.
static void test_truncations(const uint8_t *buf, size_t len)
{
    size_t loaded = 0, no_msg = 0;
    for (size_t n = 0; n < len; n++) {
        th_error *err = NULL;
        th_model *m = th_model_load_from_memory(buf, n, &err);
        loaded += m != NULL;
        no_msg += m == NULL && (!err || !th_error_message(err)[0]);
        th_model_free(m);
        th_error_free(err);
    }
    ok(loaded == 0 && no_msg == 0,
       "all %zu truncations of vgg-basic fail with a message (%zu "
       "loaded)",
       len, loaded);
}

// Random byte corruptions of good models must load or fail with a message, never crash
// (run under ASan/valgrind to make "never crash" strict).
static void test_corruptions(void)
{
    static const char *const names[] = {"vgg-basic", "vgg-nhwc", "vgg-reducemean18"};
    uint32_t seed = 20240601;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char rel[256];
        size_t len, loaded = 0, no_msg = 0;
        snprintf(rel, sizeof(rel), "tests/data/models/%s.onnx", names[i]);
        uint8_t *good = th_read_file(test_src_path(rel), &len, NULL);
        uint8_t *buf = good ? th_malloc(len, NULL) : NULL;
        if (!buf) {
            bail("cannot read %s", rel);
        }
        for (int iter = 0; iter < 1000; iter++) {
            memcpy(buf, good, len);
            for (int k = 0; k < 1 + iter % 3; k++) {
                seed = seed * 1664525u + 1013904223u;
                size_t at = (seed >> 8) % len;
                seed = seed * 1664525u + 1013904223u;
                buf[at] ^= (uint8_t)(1u << ((seed >> 16) % 8));
            }
            th_error *err = NULL;
            th_model *m = th_model_load_from_memory(buf, len, &err);
            loaded += m != NULL;
            no_msg += m == NULL && (!err || !th_error_message(err)[0]);
            th_model_free(m);
            th_error_free(err);
        }
        ok(no_msg == 0, "%s: 1000 corrupted copies load or fail with a message (%zu loaded)",
           names[i], loaded);
        th_free(buf);
        th_free(good);
    }
}

/* ------------------------------------------------------------------ edited copies */

enum edit {
    EDIT_FLOAT16,
    EDIT_EXTERNAL,
    EDIT_ONE_CHANNEL,
    EDIT_3D_INPUT,
    EDIT_INT_INPUT,
    EDIT_TINY_INPUT,
    EDIT_MISSING_WEIGHT,
    EDIT_TWO_OUTPUTS,
    EDIT_NO_OPSET,
    EDIT_NO_GRAPH,
    EDIT_METADATA,
    EDIT_NAN_WEIGHT,  // initializer 0's first value NaN
    EDIT_HUGE_WEIGHT, // every weight times 1e38: finite, but they overflow in a run
};

// tests/data/models/NAME read (*buf, *len: the file's bytes, th_free them) and unpacked (free with
// onnx__model_proto__free_unpacked(mp, NULL)); bail()s if either fails.
static Onnx__ModelProto *unpack_file(const char *name, uint8_t **buf, size_t *len)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "tests/data/models/%s", name);
    *buf = th_read_file(test_src_path(rel), len, NULL);
    Onnx__ModelProto *mp = *buf ? onnx__model_proto__unpack(NULL, *len, *buf) : NULL;
    if (!mp) {
        bail("cannot read %s", rel);
    }
    return mp;
}

// The edited model packed into a new buffer (th_free it); *size gets its length.
static uint8_t *pack(const Onnx__ModelProto *mp, size_t *size)
{
    *size = onnx__model_proto__get_packed_size(mp);
    uint8_t *packed = th_malloc(*size, NULL);
    if (!packed) {
        bail("out of memory");
    }
    onnx__model_proto__pack(mp, packed);
    return packed;
}

// A float tensor's first value made NaN, or every value times 1e38 (stored as float_data or as
// little-endian raw_data).
static void scale_weights(Onnx__TensorProto *t, bool nan)
{
    size_t n = t->n_float_data ? t->n_float_data : t->raw_data.len / sizeof(float);
    for (size_t i = 0; i < n; i++) {
        float v;
        if (t->n_float_data) {
            v = t->float_data[i];
        } else {
            memcpy(&v, t->raw_data.data + i * sizeof(float), sizeof(v));
        }
        v = nan ? (i == 0 ? NAN : v) : v * 1e38f;
        if (t->n_float_data) {
            t->float_data[i] = v;
        } else {
            memcpy(t->raw_data.data + i * sizeof(float), &v, sizeof(v));
        }
    }
}

// Unpack `buf`, apply one edit, pack, restore what free_unpacked needs, load the packed copy.
static th_model *load_edited(const uint8_t *buf, size_t len, enum edit e, const char *meta_key,
                             const char *meta_value, th_error **err)
{
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
    if (!mp) {
        bail("cannot unpack the model to edit");
    }
    Onnx__GraphProto *g = mp->graph;
    Onnx__TensorShapeProto *shape = g->input[0]->type->tensor_type->shape;
    Onnx__TensorProto *t0 = g->initializer[0];
    Onnx__ValueInfoProto *outs[2] = {g->output[0], g->output[0]}, **saved_outs = g->output;
    Onnx__StringStringEntryProto entry = ONNX__STRING_STRING_ENTRY_PROTO__INIT, *entries[1];
    Onnx__StringStringEntryProto **saved_meta = mp->metadata_props;
    size_t n_meta = mp->n_metadata_props, n_opset = mp->n_opset_import, n_dim = shape->n_dim;
    char *saved_input = g->node[0]->input[1], missing[] = "no-such-weight";
    switch (e) {
    case EDIT_FLOAT16:
        t0->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16;
        break;
    case EDIT_EXTERNAL:
        t0->has_data_location = true;
        t0->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
        break;
    case EDIT_ONE_CHANNEL:
        shape->dim[1]->dim_value = 1;
        break;
    case EDIT_3D_INPUT:
        shape->n_dim = 3;
        break;
    case EDIT_INT_INPUT:
        g->input[0]->type->tensor_type->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
        break;
    case EDIT_TINY_INPUT:
        shape->dim[2]->dim_value = shape->dim[3]->dim_value = 4;
        break;
    case EDIT_MISSING_WEIGHT:
        g->node[0]->input[1] = missing;
        break;
    case EDIT_TWO_OUTPUTS:
        g->output = outs;
        g->n_output = 2;
        break;
    case EDIT_NO_OPSET:
        mp->n_opset_import = 0;
        break;
    case EDIT_NO_GRAPH:
        mp->graph = NULL;
        break;
    case EDIT_NAN_WEIGHT:
        scale_weights(t0, true);
        break;
    case EDIT_HUGE_WEIGHT:
        for (size_t i = 0; i < g->n_initializer; i++) {
            scale_weights(g->initializer[i], false);
        }
        break;
    case EDIT_METADATA:
        entry.key = (char *)meta_key;
        entry.value = (char *)meta_value;
        entries[0] = &entry;
        mp->metadata_props = entries;
        mp->n_metadata_props = 1;
        break;
    }
    size_t size;
    uint8_t *packed = pack(mp, &size);
    mp->graph = g;
    g->output = saved_outs;
    g->n_output = 1;
    g->node[0]->input[1] = saved_input;
    shape->n_dim = n_dim;
    mp->n_opset_import = n_opset;
    mp->metadata_props = saved_meta;
    mp->n_metadata_props = n_meta;
    onnx__model_proto__free_unpacked(mp, NULL);
    th_model *m = th_model_load_from_memory(packed, size, err);
    th_free(packed);
    return m;
}

static void expect_edit_fails(const uint8_t *buf, size_t len, enum edit e, const char *key,
                              const char *value, const char *want, const char *what)
{
    th_error *err = NULL;
    th_model *m = load_edited(buf, len, e, key, value, &err);
    ok(m == NULL, "%s: rejected", what);
    like(err ? th_error_message(err) : NULL, want, "%s: message", what);
    th_model_free(m);
    th_error_free(err);
}

static void test_edits(const uint8_t *buf, size_t len)
{
    th_error *err = NULL;
    th_model *m = load_edited(buf, len, EDIT_METADATA, "note", "unchanged", &err);
    ok(m != NULL, "the edit-and-repack path itself loads");
    th_model_free(m);
    th_error_free(err);
    err = NULL;
    expect_edit_fails(buf, len, EDIT_FLOAT16, NULL, NULL,
                      "data type float16; tileheat needs "
                      "float32",
                      "float16 weights");
    expect_edit_fails(buf, len, EDIT_EXTERNAL, NULL, NULL, "external data is not supported",
                      "external data");
    expect_edit_fails(buf, len, EDIT_ONE_CHANNEL, NULL, NULL,
                      "has dims [1,1,32,32]; tileheat "
                      "needs a 4-D RGB image tensor",
                      "grey input");
    expect_edit_fails(buf, len, EDIT_3D_INPUT, NULL, NULL, "needs a 4-D RGB image tensor",
                      "3-D input");
    expect_edit_fails(buf, len, EDIT_INT_INPUT, NULL, NULL, "not a float32 tensor", "int input");
    expect_edit_fails(buf, len, EDIT_TINY_INPUT, NULL, NULL, "input leaves no output", "4×4 input");
    expect_edit_fails(buf, len, EDIT_MISSING_WEIGHT, NULL, NULL,
                      "input 'no-such-weight' is not "
                      "an initializer",
                      "missing initializer");
    expect_edit_fails(buf, len, EDIT_TWO_OUTPUTS, NULL, NULL, "the graph has 2 outputs",
                      "two outputs");
    expect_edit_fails(buf, len, EDIT_NO_OPSET, NULL, NULL, "no opset version", "no opset_import");
    expect_edit_fails(buf, len, EDIT_NO_GRAPH, NULL, NULL, "no graph", "no graph");
    static const struct {
        const char *key, *value, *want;
    } meta[] = {
        {"class_names", "a,b", "metadata class_names: expected 3 class names, got 2"},
        {"class_names", "a,,c", "metadata class_names: class name 2 is empty"},
        {"class_names", "a,b,a", "class name 'a' appears twice"},
        {"input_std", "1,0,1", "metadata input_std: expected three positive numbers"},
        {"input_mean", "0.5,0.5", "metadata input_mean: expected three numbers"},
        {"input_scale", "-1", "metadata input_scale: expected a positive number"},
        {"mpp", "abc", "metadata mpp: expected a positive number, got 'abc'"},
        {"input_size", "64", "metadata input_size 64×64 disagrees with input 'input' (32×32)"},
        {"input_size", "32x32", "metadata input_size: expected \"W\" or \"W,H\""},
        {"background_classes", "class1, nope", "background_classes: no class named 'nope'"},
    };
    for (size_t i = 0; i < sizeof(meta) / sizeof(meta[0]); i++) {
        expect_edit_fails(buf, len, EDIT_METADATA, meta[i].key, meta[i].value, meta[i].want,
                          meta[i].key);
    }
    m = load_edited(buf, len, EDIT_METADATA, "input_size", " 32 , 32 ", &err);
    ok(m != NULL, "input_size agreeing with the graph loads");
    th_model_free(m);
    m = load_edited(buf, len, EDIT_METADATA, "background_classes", "class2, class0", &err);
    ok(m && th_model_is_background_class(m, 0) && !th_model_is_background_class(m, 1) &&
           th_model_is_background_class(m, 2),
       "background_classes with default names");
    th_model_free(m);
    th_error_free(err);
}

/* ------------------------------------------------------------------ class names, getters */

// Non-finite weights are refused at load, naming the layer; finite ones that overflow make the
// run fail, naming the tile, instead of writing "nan%".
static void test_non_finite(const uint8_t *buf, size_t len)
{
    expect_edit_fails(buf, len, EDIT_NAN_WEIGHT, NULL, NULL, "is nan; the weights must be finite",
                      "a NaN weight");
    th_error *err = NULL;
    th_model *m = load_edited(buf, len, EDIT_HUGE_WEIGHT, NULL, NULL, &err);
    th_slide *s = th_slide_open(test_data_path("slides/CMU-1-Small-Region.svs"), &err);
    if (!m || !s) {
        bail("huge weights: %s", th_error_message(err));
    }
    th_run_options opt;
    th_run_options_init(&opt);
    opt.engine = TH_ENGINE_REF;
    opt.min_tissue = 0;
    opt.roi_w = opt.roi_h = 600;
    opt.slide_mpp = 1;
    opt.model_mpp = 1;
    th_result *r = th_run(s, m, &opt, &err);
    ok(!r, "weights times 1e38 load, and the run fails");
    like(err ? th_error_message(err) : NULL, "tile at 0,0: the model's output is not a number",
         "... naming the tile");
    th_error_free(err);
    th_result_free(r);
    th_slide_close(s);
    th_model_free(m);
}

static void test_class_names(const uint8_t *buf, size_t len)
{
    th_error *err = NULL;
    th_model *m = th_model_load_from_memory(buf, len, &err);
    if (!m) {
        bail("vgg-basic does not load: %s", th_error_message(err));
    }
    is_string(th_model_get_class_name(m, 2), "class2", "default class names");
    char sha[65] = "x";
    ok(th_model_get_sha256(m, sha, NULL) && sha[0] == '\0', "a model from memory has no SHA-256");
    th_model *f = th_model_load(test_src_path("tests/data/models/vgg-basic.onnx"), NULL);
    char again[65] = "";
    ok(f && th_model_get_sha256(f, sha, NULL) && strlen(sha) == 64 &&
           strspn(sha, "0123456789abcdef") == 64 && th_model_get_sha256(f, again, NULL) &&
           strcmp(sha, again) == 0,
       "a model from a file: its SHA-256 in hex, the same on the second call (%s)", sha);
    th_model_free(f);
    ok(th_model_set_class_names(m, " tumour, stroma ,fat", &err), "set three names");
    is_string(th_model_get_class_name(m, 1), "stroma", "names are trimmed");
    is_int(th_model_find_class(m, "fat"), 2, "find_class");
    is_int(th_model_find_class(m, "Fat"), -1, "find_class is exact");
    static const char *const bad[] = {"a,b", "a,b,c,d", "a,,c", " ,b,c", "a,b,a", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        th_error *e = NULL;
        ok(!th_model_set_class_names(m, bad[i], &e) && e, "class names '%s' rejected", bad[i]);
        th_error_free(e);
    }
    // names become JSON strings and CSV columns: UTF-8, no control characters, not a fixed column
    static const struct {
        const char *names, *why;
    } invalid[] = {{"a,x,c", "is a column of tiles.csv"},
                   {"a,b\001,c", "a control character at byte 1"},
                   {"a,b\377,c", "not UTF-8 at byte 1"},
                   {"a,\xc3,c", "not UTF-8 at byte 0"},
                   {"a,\xc0\xaf,c", "not UTF-8 at byte 0"}};
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        th_error *e = NULL;
        ok(!th_model_set_class_names(m, invalid[i].names, &e), "invalid class names %zu rejected",
           i);
        like(e ? th_error_message(e) : NULL, invalid[i].why, "... %s", invalid[i].why);
        th_error_free(e);
    }
    ok(th_model_set_class_names(m, "tumour,stroma,t\xc3\xa9ssue \xe4\xb8\xad", &err) &&
           th_model_set_class_names(m, "tumour, stroma ,fat", &err),
       "UTF-8 names are fine");
    expect_edit_fails(buf, len, EDIT_METADATA, "class_names", "a,row,c", "is a column of tiles.csv",
                      "metadata class_names with a reserved name");
    is_string(th_model_get_class_name(m, 0), "tumour", "a rejected list leaves the names alone");
    ok(th_model_get_class_name(m, -1) == NULL && th_model_get_class_name(m, 3) == NULL,
       "class name out of range is NULL");
    ok(th_model_get_metadata(m, "class_names") == NULL, "absent metadata is NULL");
    is_double(th_model_get_mpp(m), 0, 0, "mpp unknown");
    is_int(th_model_get_class_count(NULL), 0, "class count of NULL");
    th_model_free(m);
    th_model_free(NULL);
    th_error_free(err);
}

// The dynamic model without its input_size metadata: no fixed size, any tile size plans.
static void test_dynamic(void)
{
    size_t len;
    uint8_t *buf;
    Onnx__ModelProto *mp = unpack_file("vgg-dynamic.onnx", &buf, &len);
    size_t n_meta = mp->n_metadata_props;
    mp->n_metadata_props = 0;
    size_t size;
    uint8_t *packed = pack(mp, &size);
    mp->n_metadata_props = n_meta;
    onnx__model_proto__free_unpacked(mp, NULL);
    th_error *err = NULL;
    th_model *m = th_model_load_from_memory(packed, size, &err);
    int w = -1, h = -1, c, fh, fw;
    if (m) {
        th_model_get_input_size(m, &w, &h);
    }
    ok(m && w == 0 && h == 0, "dynamic input without input_size: size 0×0");
    ok(m && th_model_trunk_shape(m, 100, 80, &c, &fh, &fw, NULL) && c == 8 && fh == 13 && fw == 10,
       "trunk shape at 80×100: 8×13×10");
    ok(m && !th_model_trunk_shape(m, 2, 2, &c, &fh, &fw, &err), "2×2 leaves no output");
    like(err ? th_error_message(err) : NULL, "leaves no output", "message names the layer");
    th_model_free(m);
    th_error_free(err);
    th_free(packed);
    th_free(buf);
}

/* ------------------------------------------------------------------ shared initializers */

// A little-endian raw_data tensor is decoded without a copy (its buffer is taken) only when one
// node input reads it. Here vgg-bn's first Conv takes the BatchNorm's scale as its bias, so two
// inputs read 't1.scale' and the fold rewrites the conv bias in place: both reads must see the
// file's values. Expected, from the file's own tensors in double: the folded bias moves by
// (scale - t0.b) · scale / sqrt(var + eps) against the unedited model, the weights do not.
static const float *raw_floats(const Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_initializer; i++) {
        if (strcmp(g->initializer[i]->name, name) == 0) {
            return (const float *)(const void *)g->initializer[i]->raw_data.data;
        }
    }
    bail("vgg-bn.onnx has no initializer '%s'", name);
    return NULL;
}

static void test_shared_initializer(void)
{
    size_t len;
    uint8_t *buf;
    Onnx__ModelProto *mp = unpack_file("vgg-bn.onnx", &buf, &len);
    Onnx__NodeProto *conv = mp->graph->node[0], *bn = mp->graph->node[1];
    char *bias_name = conv->input[2];
    conv->input[2] = bn->input[1]; // 't1.scale'
    size_t size;
    uint8_t *packed = pack(mp, &size);
    conv->input[2] = bias_name;
    th_error *err = NULL;
    th_model *orig = th_model_load_from_memory(buf, len, &err);
    th_model *shared = th_model_load_from_memory(packed, size, &err);
    if (ok(orig && shared, "a tensor read by two node inputs (conv bias and BN scale) loads")) {
        const Onnx__GraphProto *g = mp->graph;
        const float *b0 = raw_floats(g, "t0.b"), *sc = raw_floats(g, "t1.scale");
        const float *var = raw_floats(g, "t1.var");
        float eps = 1e-5f; // ONNX's default
        for (size_t i = 0; i < bn->n_attribute; i++) {
            eps = strcmp(bn->attribute[i]->name, "epsilon") == 0 ? bn->attribute[i]->f : eps;
        }
        const th_layer *l0 = &orig->layers[0], *l1 = &shared->layers[0];
        double worst = 0;
        for (int c = 0; c < l0->c_out; c++) {
            double want = ((double)sc[c] - b0[c]) * sc[c] / sqrt((double)var[c] + eps);
            double got = (double)l1->bias[c] - l0->bias[c];
            worst = fmax(worst, fabs(got - want) / fmax(1.0, fabs(want)));
        }
        size_t nw = (size_t)l0->c_out * l0->c_in * l0->kh * l0->kw;
        ok(worst < 1e-5 && memcmp(l0->weight, l1->weight, nw * sizeof(float)) == 0,
           "... both readers see the file's values (bias shift off by %.2g, weights the same)",
           worst);
    } else {
        diag("%s", err ? th_error_message(err) : "?");
    }
    th_model_free(orig);
    th_model_free(shared);
    th_error_free(err);
    onnx__model_proto__free_unpacked(mp, NULL);
    th_free(packed);
    th_free(buf);
}

int main(void)
{
    plan(0);
    size_t len;
    uint8_t *basic = th_read_file(test_src_path("tests/data/models/vgg-basic.onnx"), &len, NULL);
    if (!basic) {
        bail("cannot read tests/data/models/vgg-basic.onnx (TH_SRCDIR?)");
    }
    test_reference_models();
    test_rejections();
    test_truncations(basic, len);
    test_corruptions();
    test_edits(basic, len);
    test_class_names(basic, len);
    test_non_finite(basic, len);
    test_dynamic();
    test_shared_initializer();
    th_free(basic);
    return 0;
}
