/* SPDX-License-Identifier: MIT */
/* Keras models (model-keras.c feeding the builder): the files of tests/data/keras, written by
 * tools/gen-keras-models.py with h5py in the layouts Keras itself writes: vgg19-gap.h5 and
 * seq-bn.h5 as tf.keras 2.13 (model_config + model_weights, h5py 3 strings), functional.h5 as
 * tf.keras 2.4 (h5py 2.10 fixed-length strings, a training_config), the .keras files as Keras
 * 3.x (config.json + model.weights.h5, variables by class path); each .ref names its file's
 * keras_format and keras_version. For every reference: the model against what PyTorch computed
 * (structure, sidecar metadata, folded weights, logits and CAMs per tile through every engine),
 * the .keras twin bit-identical to the .h5, the ONNX twin of the same weights giving the same
 * outputs (tiles and a whole run's percentages and CAMs), and the convert round trip. Then the
 * broken files' one-line errors, the preprocessing presets and channel order (also as ONNX
 * metadata), the sidecar, loading from memory and truncated files. A TAP skip without HDF5. */
#include <config.h>

#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cam.h"
#include "engine.h"
#include "model.h"
#include "tap.h"
#include "testutil.h"

#define SLIDE "slides/CMU-1-Small-Region.svs"

static const char *const refs[] = {"vgg19-gap", "vgg19-gap-caffe", "seq-bn", "functional"};

static const char *keras_path(const char *file)
{
    static char rel[512];
    snprintf(rel, sizeof(rel), "tests/data/keras/%s", file);
    return test_src_path(rel);
}

// Load tests/data/keras/FILE (bail()s with the message if it fails), with a preset if not NULL.
static th_model *load(const char *file, const char *preprocess)
{
    th_error *err = NULL;
    th_model *m = th_model_load(keras_path(file), &err);
    if (m && preprocess && !th_model_set_preprocess(m, preprocess, &err)) {
        th_model_free(m);
        m = NULL;
    }
    if (!m) {
        bail("%s: %s", file, th_error_message(err));
    }
    return m;
}

// Two models with the same layers and bit-identical weights and input normalisation.
static bool same_model(const th_model *a, const th_model *b)
{
    bool same = a->n_layers == b->n_layers && a->n_classes == b->n_classes &&
                a->feat_c == b->feat_c && a->in_w == b->in_w && a->in_h == b->in_h &&
                a->graph_softmax == b->graph_softmax && a->input_bgr == b->input_bgr &&
                a->input_scale == b->input_scale &&
                memcmp(a->input_mean, b->input_mean, sizeof(a->input_mean)) == 0 &&
                memcmp(a->input_std, b->input_std, sizeof(a->input_std)) == 0 &&
                memcmp(a->dense_w, b->dense_w, sizeof(float) * a->n_classes * a->feat_c) == 0 &&
                memcmp(a->dense_b, b->dense_b, sizeof(float) * a->n_classes) == 0;
    for (int i = 0; same && i < a->n_layers; i++) {
        const th_layer *x = &a->layers[i], *y = &b->layers[i];
        same = x->kind == y->kind && x->kh == y->kh && x->kw == y->kw && x->sh == y->sh &&
               x->sw == y->sw && x->dh == y->dh && x->dw == y->dw && x->pad_t == y->pad_t &&
               x->pad_l == y->pad_l && x->pad_b == y->pad_b && x->pad_r == y->pad_r &&
               x->relu == y->relu && x->ceil_mode == y->ceil_mode && x->c_in == y->c_in &&
               x->c_out == y->c_out;
        if (same && x->kind == TH_LAYER_CONV) {
            size_t n = (size_t)x->c_out * x->c_in * x->kh * x->kw;
            same = memcmp(x->weight, y->weight, n * sizeof(float)) == 0 &&
                   memcmp(x->bias, y->bias, (size_t)x->c_out * sizeof(float)) == 0;
        }
    }
    return same;
}

// Logits (n_classes) and CAMs (n_classes, fh, fw) of every reference tile, tile after tile,
// with the reference engine (caller frees both).
static bool tile_outputs(th_slide *slide, const th_model *m, const tu_model_ref *r, float **logits,
                         float **cams, size_t *n_cam)
{
    th_error *err = NULL;
    th_engine *e = th_engine_new(m, TH_ENGINE_REF, r->in_w, r->in_h, &err);
    th_engine_ws *ws = e ? th_engine_ws_new(e, &err) : NULL;
    size_t nc = (size_t)r->n_classes, cells = e ? (size_t)e->feat_h * e->feat_w : 0;
    uint8_t *rgb = tu_xcalloc((size_t)r->in_w * r->in_h * 3, 1);
    float *probs = tu_xcalloc(nc, sizeof(float));
    float *feat = tu_xcalloc(e ? (size_t)e->feat_c * cells : 1, sizeof(float));
    *logits = tu_xcalloc(nc * r->n_tiles, sizeof(float));
    *cams = tu_xcalloc(nc * cells * r->n_tiles, sizeof(float));
    *n_cam = nc * cells * r->n_tiles;
    bool good = ws != NULL;
    for (int t = 0; good && t < r->n_tiles; t++) {
        good = th_slide_read_region(slide, rgb, r->tile_x[t], r->tile_y[t], 0, r->in_w, r->in_h,
                                    &err) &&
               th_engine_forward(e, ws, rgb, *logits + nc * t, probs, feat, &err);
        th_cam_compute(feat, e->feat_c, e->feat_h, e->feat_w, m->dense_w, m->n_classes,
                       *cams + nc * cells * t);
    }
    if (!good) {
        diag("%s", th_error_message(err));
    }
    th_free(feat);
    th_free(probs);
    th_free(rgb);
    th_engine_ws_free(ws);
    th_engine_free(e);
    th_error_free(err);
    return good;
}

// A whole run over a 640-px square of the slide, taken at the model's µm/px.
static th_result *run(th_slide *slide, const th_model *m)
{
    th_run_options opt;
    th_run_options_init(&opt);
    opt.engine = TH_ENGINE_REF;
    opt.min_tissue = 0;
    opt.roi_x = 800;
    opt.roi_y = 1400;
    opt.roi_w = opt.roi_h = 640;
    opt.slide_mpp = opt.model_mpp = 0.5;
    opt.threads = 1;
    return tu_run(slide, m, &opt);
}

// The Keras model and its ONNX twin: the same outputs tile by tile, and the same percentages
// (within 1e-4 points) and CAM grid over a run.
static void compare_twin(th_slide *slide, const th_model *keras, const th_model *twin,
                         const tu_model_ref *r, const char *name)
{
    float *la, *ca, *lb, *cb;
    size_t n, n2;
    bool good = tile_outputs(slide, keras, r, &la, &ca, &n);
    good = tile_outputs(slide, twin, r, &lb, &cb, &n2) && good && n == n2;
    double dl = good ? tu_max_rel_diff(lb, la, (size_t)r->n_classes * r->n_tiles) : 1;
    double dc = good ? tu_max_rel_diff(cb, ca, n) : 1;
    ok(dl < 1e-5 && dc < 1e-5, "%s: the ONNX twin gives the same logits and CAMs (rel %.2g, %.2g)",
       name, dl, dc);
    th_free(la), th_free(ca), th_free(lb), th_free(cb);
    th_result *ra = run(slide, keras), *rb = run(slide, twin);
    double dp = 0, dcam = 0, scale = 0;
    int64_t gw = 0, gh = 0;
    if (ra && rb) {
        th_result_get_cam_grid(ra, &gw, &gh, NULL, NULL, NULL, NULL);
        float *rowa = tu_xcalloc((size_t)gw, sizeof(float)), *rowb = tu_xcalloc((size_t)gw, 4);
        for (int c = 0; c < r->n_classes; c++) {
            dp = fmax(dp, fabs(th_result_get_percent(ra, c) - th_result_get_percent(rb, c)));
            for (int64_t y = 0; y < gh; y++) {
                th_result_read_cam_row(ra, c, y, rowa);
                th_result_read_cam_row(rb, c, y, rowb);
                for (int64_t x = 0; x < gw; x++) {
                    scale = fmax(scale, fabs(rowa[x]));
                    dcam = fmax(dcam, fabs((double)rowa[x] - rowb[x]));
                }
            }
        }
        th_free(rowa);
        th_free(rowb);
    }
    ok(ra && rb && gw > 0 && dp <= 1e-4 && dcam <= 1e-5 * fmax(scale, 1e-30),
       "%s: a run with the ONNX twin: percentages within %.2g points, CAMs within %.2g", name, dp,
       scale > 0 ? dcam / scale : dcam);
    th_result_free(ra);
    th_result_free(rb);
}

// tileheat convert's library half: the written ONNX loads as the same model (weights and
// normalisation bit for bit; class names, µm/px, input size and preset in its metadata) and
// reproduces the reference outputs.
static void check_convert(th_slide *slide, const th_model *m, const tu_model_ref *r,
                          const char *name)
{
    char path[1024], what[160];
    th_error *err = NULL;
    snprintf(path, sizeof(path), "%s/%s.onnx", test_tmpdir(), name);
    ok(th_model_write_onnx(m, path, &err), "%s: convert writes %s.onnx", name, name);
    th_model *c = th_model_load(path, &err);
    if (!ok(c != NULL, "%s: the converted model loads", name)) {
        diag("%s", th_error_message(err));
        th_error_free(err);
        return;
    }
    ok(same_model(m, c), "%s: converted: the same layers, weights and normalisation", name);
    bool names = th_model_get_class_count(c) == th_model_get_class_count(m);
    for (int i = 0; names && i < th_model_get_class_count(m); i++) {
        names = strcmp(th_model_get_class_name(c, i), th_model_get_class_name(m, i)) == 0 &&
                th_model_is_background_class(c, i) == th_model_is_background_class(m, i);
    }
    ok(names && th_model_get_mpp(c) == th_model_get_mpp(m) &&
           strcmp(th_model_get_preprocess(c), th_model_get_preprocess(m)) == 0,
       "%s: converted: class names, background classes, mpp and preprocessing (%s)", name,
       th_model_get_preprocess(c));
    snprintf(what, sizeof(what), "%s/converted", name);
    tu_check_ref_tiles(slide, c, r, TH_ENGINE_REF, what);
    th_model_free(c);
}

static void test_reference(th_slide *slide, const char *name)
{
    tu_model_ref r;
    char rel[256];
    snprintf(rel, sizeof(rel), "tests/data/keras/%s.ref", name);
    if (!ok(tu_model_ref_load(&r, rel), "%s: reference file", name)) {
        th_free(r.file.buf);
        return;
    }
    is_string(r.slide, SLIDE, "%s: tiles come from the slide opened here", name);
    bool caffe = strcmp(r.preprocess, "caffe") == 0;
    th_model *m = load(r.model, caffe ? "caffe" : NULL);
    tu_check_model_structure(m, &r, name);
    tu_check_model_weights(m, &r, name);
    if (caffe) {
        double mean[3];
        ok(th_parse_double_list(r.input_mean, mean, 3) == 3 && m->input_scale == 1.0f &&
               fabs(m->input_mean[0] - mean[0]) + fabs(m->input_mean[1] - mean[1]) +
                       fabs(m->input_mean[2] - mean[2]) <
                   1e-4 &&
               m->input_bgr,
           "%s: caffe: BGR, unscaled, ImageNet mean held in RGB order (%s)", name, r.input_mean);
    } else {
        tu_check_model_metadata(m, &r, name);
    }
    tu_check_ref_engines(slide, m, &r, name);
    for (int i = 0; i < r.n_alt; i++) {
        th_model *alt = load(r.alt_model[i], caffe ? "caffe" : NULL);
        ok(same_model(m, alt), "%s: %s is bit for bit the same model as %s", name, r.alt_model[i],
           r.model);
        th_model_free(alt);
    }
    th_model *twin = load(r.onnx, NULL);
    compare_twin(slide, m, twin, &r, name);
    th_model_free(twin);
    check_convert(slide, m, &r, name);
    th_model_free(m);
    th_free(r.file.buf);
}

/* ------------------------------------------------------------------ rejections */

static void expect_fail(const char *path, const char *want, const char *what)
{
    th_error *err = NULL;
    th_model *m = th_model_load(path, &err);
    const char *msg = err ? th_error_message(err) : NULL;
    ok(m == NULL && msg && !strchr(msg, '\n'), "%s: rejected with one line", what);
    like(msg, want, "%s: message", what);
    th_model_free(m);
    th_error_free(err);
}

static void test_rejections(void)
{
    static const struct {
        const char *file, *want;
    } bad[] = {
        {"bad-truncated.h5", "truncated HDF5 file: 2048 bytes of the"},
        {"bad-missing-weight.h5", "layer 'conv2d' (Conv2D): weight "
                                  "'model_weights/conv2d/conv2d/bias:0' cannot be opened"},
        {"bad-kernel-shape.h5", "has shape (3, 3, 4, 4); expected (3, 3, 3, 4)"},
        {"bad-convtranspose.h5", "layer 'conv2d_transpose' (Conv2DTranspose): not supported; "
                                 "tileheat needs conv layers, then global average pooling"},
        {"bad-sigmoid.h5", "layer 'activation' (Activation): activation 'sigmoid' is not "
                           "supported"},
        {"bad-two-dense.h5", "(Dense): activation 'relu' is not supported: tileheat needs one "
                             "dense layer"},
        {"bad-flatten-dense.h5", "(Flatten): Flatten is only supported right after global "
                                 "average pooling"},
        {"bad-channels-first.h5", "(Conv2D): data_format 'channels_first' is not supported"},
        {"bad-branch.h5", "branching models are not supported"},
        {"bad-weights-only.h5", "without a model_config attribute: weights only"},
        {"bad-noconfig.keras", "a zip without config.json"},
        {"bad-truncated.keras", "not a readable zip archive"},
        {"bad-missing-var.keras", "layer 'conv2d' (Conv2D): weight 'layers/conv2d/vars/1' (bias) "
                                  "is missing"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_fail(keras_path(bad[i].file), bad[i].want, bad[i].file);
    }
}

// Every prefix of a file (at a stride, and the last 64) fails with a message, never crashes.
static void test_truncations(const char *file, size_t stride)
{
    size_t len, loaded = 0, no_msg = 0, tried = 0;
    uint8_t *buf = th_read_file(keras_path(file), &len, NULL);
    if (!buf) {
        bail("cannot read %s", file);
    }
    for (size_t n = 0; n < len; n += n + 64 >= len ? 1 : stride) {
        th_error *err = NULL;
        th_model *m = th_model_load_from_memory(buf, n, &err);
        loaded += m != NULL;
        no_msg += m == NULL && (!err || !th_error_message(err)[0]);
        tried++;
        th_model_free(m);
        th_error_free(err);
    }
    ok(loaded == 0 && no_msg == 0, "%s: %zu truncations fail with a message (%zu loaded)", file,
       tried, loaded);
    th_free(buf);
}

/* ------------------------------------------------------------------ preprocessing */

static void test_preprocess(th_slide *slide)
{
    th_model *m = load("vgg19-gap.h5", NULL);
    const th_layer *l = &m->layers[0];
    size_t plane = (size_t)l->kh * l->kw, n = (size_t)l->c_out * l->c_in * plane;
    float *orig = tu_xcalloc(n, sizeof(float));
    memcpy(orig, l->weight, n * sizeof(float));
    char text[256];
    is_string(th_model_get_preprocess(m), "unit", "a Keras file without a sidecar: unit");
    th_model_describe_preprocess(m, text, sizeof(text));
    is_string(text, "unit (RGB, x = pixel / 255)", "unit described");
    th_error *err = NULL;
    ok(th_model_set_preprocess(m, "caffe", &err), "set caffe");
    bool swapped = true;
    for (int o = 0; o < l->c_out; o++) {
        for (size_t k = 0; k < plane; k++) {
            const float *w = l->weight + (size_t)o * 3 * plane, *v = orig + (size_t)o * 3 * plane;
            swapped = swapped && w[k] == v[2 * plane + k] && w[plane + k] == v[plane + k] &&
                      w[2 * plane + k] == v[k];
        }
    }
    ok(swapped && m->input_bgr, "caffe: the first conv's input channels are swapped (BGR)");
    th_model_describe_preprocess(m, text, sizeof(text));
    is_string(text, "caffe (BGR, x = pixel − (103.939, 116.779, 123.68))", "caffe described");
    is_string(th_model_get_metadata(m, "preprocess"), "caffe", "... and in the metadata");
    ok(th_model_set_preprocess(m, "tf", &err) && !m->input_bgr &&
           memcmp(l->weight, orig, n * sizeof(float)) == 0 && m->input_scale == 1.0f / 127.5f &&
           m->input_mean[0] == 1 && m->input_std[2] == 1,
       "tf: RGB again, the weights as loaded, x / 127.5 - 1");
    ok(th_model_set_preprocess(m, "TORCH", &err) && m->input_scale == 1.0f / 255 &&
           m->input_mean[0] == 0.485f && m->input_std[2] == 0.225f,
       "torch (any case): ImageNet mean and std");
    th_model_describe_preprocess(m, text, sizeof(text));
    is_string(text,
              "torch (RGB, x = (pixel / 255 − (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225))",
              "torch described");
    ok(!th_model_set_preprocess(m, "imagenet", &err), "an unknown preset is refused");
    like(err ? th_error_message(err) : NULL, "expected unit, caffe, tf or torch, got 'imagenet'",
         "... saying what is allowed");
    th_error_free(err);
    err = NULL;
    is_string(th_model_get_preprocess(m), "torch", "... and changes nothing");
    th_free(orig);
    th_model_free(m);

    // The same as ONNX metadata: preprocess=caffe on the plain twin is the caffe twin (whose
    // first conv was reversed by hand, with the mean in RGB order).
    char path[1024];
    snprintf(path, sizeof(path), "%s/meta.onnx", test_tmpdir());
    tu_model_with_metadata(keras_path("vgg19-gap.onnx"), "preprocess", "caffe", path);
    th_model *a = th_model_load(path, &err);
    th_model *b = load("vgg19-gap-caffe.onnx", NULL);
    tu_model_ref r;
    float *la = NULL, *ca = NULL, *lb = NULL, *cb = NULL;
    size_t na = 0, nb = 0;
    bool good = a && tu_model_ref_load(&r, "tests/data/keras/vgg19-gap-caffe.ref") &&
                tile_outputs(slide, a, &r, &la, &ca, &na) &&
                tile_outputs(slide, b, &r, &lb, &cb, &nb) && na == nb;
    ok(good && tu_max_rel_diff(la, lb, (size_t)r.n_classes * r.n_tiles) < 1e-5 &&
           tu_max_rel_diff(ca, cb, na) < 1e-5,
       "ONNX metadata preprocess=caffe: the outputs of the hand-reversed caffe twin");
    th_free(la), th_free(ca), th_free(lb), th_free(cb);
    th_free(r.file.buf);
    th_model_free(a);
    th_model_free(b);
    // channel_order alone swaps the weights; input_mean stays in the network's order
    tu_model_with_metadata(keras_path("vgg19-gap.onnx"), "channel_order", "bgr", path);
    a = th_model_load(path, &err);
    b = load("vgg19-gap.onnx", NULL);
    ok(a && a->input_bgr && a->layers[0].weight[0] == b->layers[0].weight[2 * plane] &&
           strcmp(th_model_get_preprocess(a), "custom") == 0,
       "ONNX metadata channel_order=bgr: the weights swapped, preset 'custom'");
    th_model_free(a);
    th_model_free(b);
    static const struct {
        const char *key, *value, *want;
    } bad[] = {
        {"channel_order", "GRB", "metadata channel_order: expected RGB or BGR, got 'GRB'"},
        {"preprocess", "vgg", "metadata preprocess: expected unit, caffe, tf or torch"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tu_model_with_metadata(keras_path("vgg19-gap.onnx"), bad[i].key, bad[i].value, path);
        expect_fail(path, bad[i].want, bad[i].key);
    }
}

/* ------------------------------------------------------------------ sidecar, memory */

static void write_text(const char *path, const char *text)
{
    th_error *err = NULL;
    th_outfile f;
    if (!th_outfile_open(&f, path, &err)) {
        bail("%s: %s", path, th_error_message(err));
    }
    th_outfile_printf(&f, "%s", text);
    if (!th_outfile_commit(&f, &err)) {
        bail("%s: %s", path, th_error_message(err));
    }
}

static void copy_file(const char *from, const char *to)
{
    size_t len;
    uint8_t *b = th_read_file(from, &len, NULL);
    th_outfile f;
    if (!b || !th_outfile_open(&f, to, NULL)) {
        bail("cannot copy %s", from);
    }
    fwrite(b, 1, len, f.fp);
    th_free(b);
    if (!th_outfile_commit(&f, NULL)) {
        bail("cannot write %s", to);
    }
}

static void test_sidecar(void)
{
    char dir[1024], h5[1100], stem[1100], full[1100];
    snprintf(dir, sizeof(dir), "%s/sidecar", test_tmpdir());
    mkdir(dir, 0755);
    snprintf(h5, sizeof(h5), "%s/m.h5", dir);
    snprintf(stem, sizeof(stem), "%s/m.json", dir);
    snprintf(full, sizeof(full), "%s/m.h5.json", dir);
    copy_file(keras_path("seq-bn.h5"), h5);
    th_error *err = NULL;
    // Keras's own architecture JSON (model.to_json()) next to the model is not a sidecar
    write_text(stem, "{\"class_name\": \"Sequential\", \"config\": {\"layers\": []}}");
    th_model *m = th_model_load(h5, &err);
    ok(m && strcmp(th_model_get_class_name(m, 0), "class0") == 0,
       "model.to_json()'s file beside the model is not read as a sidecar");
    th_model_free(m);
    write_text(stem, "{\"class_names\": [\"a\", \"b\", \"c\", \"d\", \"e\"], \"mpp\": 0.25, "
                     "\"input_size\": [64, 64], \"preprocess\": \"torch\", \"note\": null}");
    m = th_model_load(h5, &err);
    ok(m && strcmp(th_model_get_class_name(m, 4), "e") == 0 && th_model_get_mpp(m) == 0.25 &&
           strcmp(th_model_get_preprocess(m), "torch") == 0 &&
           strcmp(th_model_get_metadata(m, "input_size"), "64,64") == 0,
       "sidecar m.json: lists, numbers and a preset");
    th_model_free(m);
    write_text(full, "{\"class_names\": \"v,u,x1,y1,z\"}");
    m = th_model_load(h5, &err);
    ok(m && strcmp(th_model_get_class_name(m, 0), "v") == 0 && th_model_get_mpp(m) == 0,
       "m.h5.json comes before m.json");
    th_model_free(m);
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"{\"class_names\": \"a,b\"}", "m.h5.json: class_names: expected 5 class names, got 2"},
        {"{\"mpp\": \"fast\"}", "m.h5.json: mpp: expected a positive number"},
        {"{\"class_colors\": {\"a\": 1}}", "m.h5.json: class_colors: expected text, a number"},
        {"[1, 2]", "m.h5.json: expected a JSON object of metadata keys"},
        {"{\"mpp\": ", "m.h5.json: not valid JSON"},
        {"{\"input_size\": \"32\"}", "m.h5.json: input_size 32×32 disagrees with input"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_text(full, bad[i].text);
        expect_fail(h5, bad[i].want, bad[i].text);
    }
    unlink(full);
    unlink(stem);
    unlink(h5);
    rmdir(dir);
}

static void test_memory(void)
{
    static const char *const files[] = {"functional.h5", "seq-bn.keras"};
    static const char *const formats[] = {"Keras HDF5 (.h5)", "Keras 3 (.keras)"};
    for (int i = 0; i < 2; i++) {
        size_t len;
        uint8_t *buf = th_read_file(keras_path(files[i]), &len, NULL);
        // a 512-byte userblock before the HDF5 signature, as h5jam writes
        uint8_t *ub = buf ? tu_xcalloc(len + 512, 1) : NULL;
        th_error *err = NULL;
        th_model *m = buf ? th_model_load_from_memory(buf, len, &err) : NULL;
        ok(m && strcmp(th_model_get_format(m), formats[i]) == 0 &&
               strcmp(th_model_get_class_name(m, 0), "class0") == 0,
           "%s from memory: %s, no sidecar", files[i], formats[i]);
        th_model *u = NULL;
        if (i == 0 && ub) {
            memcpy(ub + 512, buf, len);
            u = th_model_load_from_memory(ub, len + 512, &err);
            ok(u && m && same_model(m, u), "%s after a 512-byte userblock: the same model",
               files[i]);
        }
        if (err) {
            diag("%s", th_error_message(err));
        }
        th_model_free(u);
        th_model_free(m);
        th_error_free(err);
        th_free(ub);
        th_free(buf);
    }
}

int main(void)
{
#ifndef HAVE_HDF5
    skip_all("built without HDF5 support (configure --with-hdf5)");
#endif
    plan(0);
    th_error *err = NULL;
    th_slide *slide = th_slide_open(test_data_path(SLIDE), &err);
    if (!slide) {
        bail("cannot open %s: %s", SLIDE, th_error_message(err));
    }
    for (size_t i = 0; i < sizeof(refs) / sizeof(refs[0]); i++) {
        test_reference(slide, refs[i]);
    }
    test_rejections();
    test_truncations("functional.h5", 509);
    test_truncations("seq-bn.keras", 997);
    test_preprocess(slide);
    test_sidecar();
    test_memory();
    th_slide_close(slide);
    return 0;
}
