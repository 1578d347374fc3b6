/* SPDX-License-Identifier: MIT */
/* The Keras loader: a Keras 2 / tf.keras HDF5 file (model.save("x.h5"): the `model_config` JSON
 * attribute and the `model_weights` group, a group per layer with its `weight_names`) or a
 * Keras 3 .keras zip (config.json and model.weights.h5, whose variables sit at
 * layers/<class_in_snake_case>[_N]/vars/<i>). The config is walked as one chain (Sequential, a
 * single-chain Functional model, or either with a nested model as its trunk); every layer is
 * checked against its weights, HWIO kernels become OIHW, and the layers are fed to the builder
 * (model-build.c). What the file does not carry comes from the sidecar JSON next to it. */
#include <config.h>

#include <ctype.h>

#include <cjson/cJSON.h>

#ifdef HAVE_HDF5
#include "keras-io.h"
#endif
#include "model.h"

#ifndef HAVE_HDF5

th_model *th_model_keras_load(const void *data, size_t len, bool zip, const char *path,
                              th_error **err)
{
    (void)data, (void)len, (void)path;
    th_error_set(err, "a Keras %s file, but this tileheat was built without Keras (HDF5) support",
                 zip ? ".keras" : ".h5");
    return NULL;
}

#else

#define NEEDS "tileheat needs conv layers, then global average pooling, then one dense layer"
#define MAX_DEPTH 8                 // nested models
#define MAX_JSON ((size_t)64 << 20) // config.json, model_config, sidecar

// Where the walk is in conv trunk -> pooling -> dense -> softmax.
typedef enum stage { STAGE_TRUNK = 0, STAGE_POOLED, STAGE_DENSE, STAGE_SOFTMAX } stage;

static const char *const stage_where[] = {"", " after global average pooling",
                                          " after the dense layer", " after the softmax"};

typedef struct keras {
    th_builder b;
    th_h5 h5;
    bool v3; // Keras 3 weights: <path>/vars/<i>; else Keras 2: model_weights/<layer>/...
    stage stage;
    int depth; // nested models entered
} keras;

// Where one layer's variables are.
typedef struct wloc {
    char group[1024];  // v3: "layers/conv2d/vars"; Keras 2: "model_weights/<top-level layer>"
    const char *inner; // Keras 2, inside a nested model: the layer's name in its weight names
} wloc;

/* ------------------------------------------------------------------ JSON */

static const cJSON *jget(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = jget(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *key, bool def)
{
    const cJSON *v = jget(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

// A whole number in [lo, hi].
static bool jint(const cJSON *v, int lo, int hi, int *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble ||
        v->valuedouble < lo || v->valuedouble > hi) {
        return false;
    }
    *out = (int)v->valuedouble;
    return true;
}

// kernel_size, strides, dilation_rate, pool_size: an int or two (absent: def, def).
static bool pair(keras *k, const cJSON *cfg, const char *key, int def, int lo, int hi, int out[2],
                 th_error **err)
{
    const cJSON *v = jget(cfg, key);
    out[0] = out[1] = def;
    if (!v || cJSON_IsNull(v) || jint(v, lo, hi, &out[0])) {
        out[1] = out[0];
        return true;
    }
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2 &&
        jint(cJSON_GetArrayItem(v, 0), lo, hi, &out[0]) &&
        jint(cJSON_GetArrayItem(v, 1), lo, hi, &out[1])) {
        return true;
    }
    return th_builder_fail(&k->b, err, "%s: expected one or two whole numbers from %d to %d", key,
                           lo, hi);
}

// The activation's name: a string, or Keras 3's {"class_name": "function", "config": "relu"}.
static const char *activation(const cJSON *cfg)
{
    const cJSON *a = jget(cfg, "activation");
    if (!a || cJSON_IsNull(a)) {
        return "linear";
    }
    if (cJSON_IsString(a)) {
        return a->valuestring;
    }
    const char *c = jstr(a, "config");
    return c ? c : "?";
}

static bool channels_last(keras *k, const cJSON *cfg, th_error **err)
{
    const char *f = jstr(cfg, "data_format");
    if (f && strcmp(f, "channels_last") != 0) {
        return th_builder_fail(&k->b, err, "data_format '%s' is not supported (channels_last)", f);
    }
    return true;
}

static const char *entry_name(const cJSON *entry)
{
    const char *n = jstr(entry, "name");
    return n ? n : jstr(jget(entry, "config"), "name");
}

static bool is_model(const char *cls)
{
    return strcmp(cls, "Sequential") == 0 || strcmp(cls, "Functional") == 0 ||
           strcmp(cls, "Model") == 0;
}

/* ------------------------------------------------------------------ weights */

// "conv2d/kernel:0" -> var "kernel", layer "conv2d" (the component before it, "" if none).
static void split_weight_name(const char *full, char *layer, char *var, size_t size)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", full);
    char *colon = strrchr(buf, ':');
    if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
        *colon = 0;
    }
    char *last = strrchr(buf, '/');
    snprintf(var, size, "%s", last ? last + 1 : buf);
    layer[0] = 0;
    if (last) {
        *last = 0;
        char *prev = strrchr(buf, '/');
        snprintf(layer, size, "%s", prev ? prev + 1 : buf);
    }
}

// Keras 2: the dataset path of variable `var`, found by name in the group's weight_names (the
// layer's own group; or a nested model's, where names are "<layer>/<var>"), else by position
// when the names say nothing (Keras 1's "conv2d_1_W").
static bool legacy_path(keras *k, const wloc *loc, const char *var, int pos, int n_vars, char *path,
                        size_t size, th_error **err)
{
    int n = 0, at = -1;
    bool found;
    char **names = th_h5_attr_strings(&k->h5, loc->group, "weight_names", &n, &found, err);
    if (!names && found) {
        return false;
    }
    for (int i = 0; i < n && at < 0; i++) {
        char layer[512], v[512];
        split_weight_name(names[i], layer, v, sizeof(layer));
        if (strcmp(v, var) == 0 && (!loc->inner || strcmp(layer, loc->inner) == 0)) {
            at = i;
        }
    }
    at = at < 0 && !loc->inner && n == n_vars ? pos : at;
    if (at < 0) {
        char list[512] = "";
        for (int i = 0; i < n; i++) {
            size_t len = strlen(list);
            snprintf(list + len, sizeof(list) - len, "%s'%s'", i ? ", " : "", names[i]);
        }
        th_h5_free_strings(names, n);
        return found ? th_builder_fail(&k->b, err,
                                       "weight '%s' is missing from %s (weight_names: %s)", var,
                                       loc->group, n ? list : "none")
                     : th_builder_fail(&k->b, err, "the file has no weights for it (no group %s)",
                                       loc->group);
    }
    snprintf(path, size, "%s/%s", loc->group, names[at]);
    th_h5_free_strings(names, n);
    return true;
}

static void shape_text(int rank, const int64_t *dims, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < rank && n < size; i++) {
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "", (long long)dims[i]);
    }
    if (n < size) {
        snprintf(buf + n, size - n, ")");
    }
}

// Variable `var`, the layer's pos-th of n_vars, whose shape must be want[0..rank) (what the
// config says). Returns the values (caller frees) or NULL with an error naming the layer.
static float *layer_var(keras *k, const wloc *loc, const char *var, int pos, int n_vars, int rank,
                        const int64_t *want, const char *meaning, th_error **err)
{
    char path[1200], got_s[96], want_s[96];
    if (k->v3) {
        snprintf(path, sizeof(path), "%s/%d", loc->group, pos);
        if (!th_h5_exists(&k->h5, path)) {
            return th_builder_fail(&k->b, err, "weight '%s' (%s) is missing from model.weights.h5",
                                   path, var),
                   NULL;
        }
    } else if (!legacy_path(k, loc, var, pos, n_vars, path, sizeof(path), err)) {
        return NULL;
    }
    int got_rank = 0;
    int64_t dims[TH_H5_MAXDIM];
    float *v = th_h5_read_floats(&k->h5, path, &got_rank, dims, err);
    if (!v) {
        th_error_prefix(err, "%s: ", k->b.at);
        return NULL;
    }
    bool same = got_rank == rank;
    for (int i = 0; same && i < rank; i++) {
        same = dims[i] == want[i];
    }
    if (!same) {
        shape_text(got_rank, dims, got_s, sizeof(got_s));
        shape_text(rank, want, want_s, sizeof(want_s));
        th_free(v);
        return th_builder_fail(&k->b, err, "weight '%s' has shape %s; expected %s (%s)", path,
                               got_s, want_s, meaning),
               NULL;
    }
    return v;
}

/* ------------------------------------------------------------------ layers */

static bool unsupported(keras *k, th_error **err)
{
    return th_builder_fail(&k->b, err, "not supported%s; " NEEDS, stage_where[k->stage]);
}

static bool check_trunk(keras *k, th_error **err)
{
    if (k->stage != STAGE_TRUNK) {
        return unsupported(k, err);
    }
    return true;
}

// A conv's padding: "valid" or "same" (TensorFlow's: the odd pixel at the bottom / right).
static bool padding(keras *k, const cJSON *cfg, th_window *win, th_error **err)
{
    const char *p = jstr(cfg, "padding");
    p = p ? p : "valid";
    win->pad_name = "padding 'same'";
    if (strcmp(p, "same") == 0) {
        win->pad_mode = TH_PAD_SAME_END;
    } else if (strcmp(p, "valid") != 0) {
        return th_builder_fail(&k->b, err, "padding '%s' is not supported (valid or same)", p);
    }
    return true;
}

static bool layer_conv(keras *k, const cJSON *cfg, const char *name, const wloc *loc,
                       th_error **err)
{
    int ks[2], st[2], dl[2], filters, groups = 1;
    const char *act = activation(cfg);
    bool bias = jbool(cfg, "use_bias", true), relu = strcmp(act, "relu") == 0;
    th_window win = {0};
    if (!check_trunk(k, err) || !channels_last(k, cfg, err) ||
        !pair(k, cfg, "kernel_size", 0, 1, 4096, ks, err) ||
        !pair(k, cfg, "strides", 1, 1, 4096, st, err) ||
        !pair(k, cfg, "dilation_rate", 1, 1, 4096, dl, err) || !padding(k, cfg, &win, err)) {
        return false;
    }
    if (!jint(jget(cfg, "filters"), 1, 65536, &filters) || ks[0] == 0) {
        return th_builder_fail(&k->b, err,
                               "filters and kernel_size must be given (filters up to "
                               "65536)");
    }
    if (jget(cfg, "groups") && (!jint(jget(cfg, "groups"), 1, 65536, &groups) || groups != 1)) {
        return th_builder_fail(&k->b, err,
                               "groups other than 1 are not supported (grouped "
                               "convolution)");
    }
    if (!relu && strcmp(act, "linear") != 0) {
        return th_builder_fail(&k->b, err, "activation '%s' is not supported (relu or linear)",
                               act);
    }
    int c = k->b.ch;
    int64_t kd[4] = {ks[0], ks[1], c, filters}, bd[1] = {filters};
    float *kern = layer_var(k, loc, "kernel", 0, bias ? 2 : 1, 4, kd,
                            "kernel_size, input channels, filters", err); // (kh, kw, c, filters)
    float *b = kern && bias ? layer_var(k, loc, "bias", 1, 2, 1, bd, "filters", err) : NULL;
    float *w = kern && (b || !bias)
                   ? th_malloc_aligned(sizeof(float) * (size_t)filters * c * ks[0] * ks[1], err)
                   : NULL; // (filters, c, kh, kw)
    if (!w) {
        th_free(kern);
        th_free(b);
        return false;
    }
    // HWIO -> OIHW, once.
    for (int o = 0; o < filters; o++) {
        for (int i = 0; i < c; i++) {
            for (int y = 0; y < ks[0]; y++) {
                for (int x = 0; x < ks[1]; x++) {
                    w[(((size_t)o * c + i) * ks[0] + y) * ks[1] + x] =
                        kern[(((size_t)y * ks[1] + x) * c + i) * filters + o];
                }
            }
        }
    }
    th_free(kern);
    win.kh = ks[0], win.kw = ks[1], win.sh = st[0], win.sw = st[1], win.dh = dl[0], win.dw = dl[1];
    return th_builder_conv(&k->b, name, &win, filters, w, b, err) &&
           (!relu || th_builder_relu(&k->b, name, err));
}

static bool layer_batchnorm(keras *k, const cJSON *cfg, const wloc *loc, th_error **err)
{
    const cJSON *axis = jget(cfg, "axis"), *eps_j = jget(cfg, "epsilon");
    if (cJSON_IsArray(axis) && cJSON_GetArraySize(axis) == 1) {
        axis = cJSON_GetArrayItem(axis, 0);
    }
    int ax = -1;
    if (!check_trunk(k, err)) {
        return false;
    }
    if (axis && (!jint(axis, -4, 3, &ax) || (ax != -1 && ax != 3))) {
        return th_builder_fail(&k->b, err, "only the channel axis (-1) is supported");
    }
    if (k->b.open_conv < 0) {
        return th_builder_fail(&k->b, err,
                               "BatchNormalization is only supported directly after a Conv2D "
                               "without activation (it is folded into the convolution)");
    }
    double eps = cJSON_IsNumber(eps_j) ? eps_j->valuedouble : 1e-3;
    bool scale = jbool(cfg, "scale", true), center = jbool(cfg, "center", true);
    int64_t c[1] = {k->b.ch};
    int n = scale + center + 2, pos = 0;
    const char *vars[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    bool used[4] = {scale, center, true, true};
    float *v[4] = {NULL, NULL, NULL, NULL}; // (c) each
    bool ok = true;
    for (int i = 0; i < 4 && ok; i++) {
        if (used[i]) {
            v[i] = layer_var(k, loc, vars[i], pos++, n, 1, c, "channels", err);
            ok = v[i] != NULL;
        }
    }
    ok = ok && th_builder_batchnorm(&k->b, v[0], v[1], v[2], v[3], eps, err);
    for (int i = 0; i < 4; i++) {
        th_free(v[i]);
    }
    return ok;
}

static bool layer_maxpool(keras *k, const cJSON *cfg, const char *name, th_error **err)
{
    int ps[2], st[2];
    th_window win = {.dh = 1, .dw = 1};
    if (!check_trunk(k, err) || !channels_last(k, cfg, err) ||
        !pair(k, cfg, "pool_size", 2, 1, 4096, ps, err) ||
        !pair(k, cfg, "strides", 0, 1, 4096, st, err) || !padding(k, cfg, &win, err)) {
        return false;
    }
    win.kh = ps[0], win.kw = ps[1];
    win.sh = st[0] ? st[0] : ps[0]; // strides None: the pool size
    win.sw = st[1] ? st[1] : ps[1];
    return th_builder_maxpool(&k->b, name, &win, err);
}

// Activation layers: relu / linear in the trunk, softmax (or linear) after the dense layer.
static bool layer_activation(keras *k, const char *act, const char *name, th_error **err)
{
    if (strcmp(act, "linear") == 0) {
        return true;
    }
    if (strcmp(act, "relu") == 0 && k->stage == STAGE_TRUNK) {
        return th_builder_relu(&k->b, name, err);
    }
    if (strcmp(act, "softmax") == 0 && k->stage == STAGE_DENSE) {
        k->b.m->graph_softmax = true;
        k->stage = STAGE_SOFTMAX;
        return true;
    }
    return th_builder_fail(&k->b, err,
                           "activation '%s' is not supported%s (relu in the trunk, softmax "
                           "after the dense layer)",
                           act, stage_where[k->stage]);
}

static bool layer_relu(keras *k, const cJSON *cfg, const char *name, th_error **err)
{
    const cJSON *mx = jget(cfg, "max_value"), *slope = jget(cfg, "negative_slope");
    const cJSON *thr = jget(cfg, "threshold");
    if ((mx && !cJSON_IsNull(mx)) || (cJSON_IsNumber(slope) && slope->valuedouble != 0) ||
        (cJSON_IsNumber(thr) && thr->valuedouble != 0)) {
        return th_builder_fail(&k->b, err,
                               "max_value, negative_slope and threshold are not "
                               "supported (a plain ReLU)");
    }
    return check_trunk(k, err) && th_builder_relu(&k->b, name, err);
}

static bool layer_pool(keras *k, const cJSON *cfg, th_error **err)
{
    if (!check_trunk(k, err) || !channels_last(k, cfg, err)) {
        return false;
    }
    if (k->b.m->n_layers == 0) {
        return th_builder_fail(&k->b, err, "no conv layer before global average pooling; " NEEDS);
    }
    th_builder_pool(&k->b);
    k->stage = STAGE_POOLED;
    return true;
}

static bool layer_dense(keras *k, const cJSON *cfg, const wloc *loc, th_error **err)
{
    int units;
    const char *act = activation(cfg);
    bool bias = jbool(cfg, "use_bias", true), softmax = strcmp(act, "softmax") == 0;
    if (k->stage == STAGE_TRUNK) {
        return th_builder_fail(&k->b, err, "not supported before global average pooling; " NEEDS);
    }
    if (k->stage != STAGE_POOLED) {
        return unsupported(k, err);
    }
    if (!jint(jget(cfg, "units"), 1, 100000, &units)) {
        return th_builder_fail(&k->b, err, "units: expected a whole number from 1 to 100000");
    }
    if (!softmax && strcmp(act, "linear") != 0) {
        return th_builder_fail(&k->b, err,
                               "activation '%s' is not supported: tileheat needs one dense "
                               "layer after global average pooling, linear or softmax",
                               act);
    }
    int feat = k->b.m->feat_c;
    int64_t kd[2] = {feat, units}, bd[1] = {units};
    float *kern = layer_var(k, loc, "kernel", 0, bias ? 2 : 1, 2, kd, "pooled features, units",
                            err); // (feat, units)
    float *b = kern && bias ? layer_var(k, loc, "bias", 1, 2, 1, bd, "units", err) : NULL;
    float *w = kern && (b || !bias) ? th_model_zeros((size_t)units * feat, err) : NULL;
    for (int c = 0; w && c < units; c++) { // (units, feat), as th_model holds it
        for (int j = 0; j < feat; j++) {
            w[(size_t)c * feat + j] = kern[(size_t)j * units + c];
        }
    }
    th_free(kern);
    if (!w) {
        th_free(b);
        return false;
    }
    k->stage = softmax ? STAGE_SOFTMAX : STAGE_DENSE;
    k->b.m->graph_softmax = softmax;
    return th_builder_dense(&k->b, units, w, b, err);
}

static bool walk_model(keras *k, const cJSON *entry, const char *v3_path, const char *group,
                       th_error **err);

// One layer of the chain, its weights at `loc` (a nested model's Keras 3 path: `base`).
static bool layer(keras *k, const cJSON *entry, const wloc *loc, const char *base, th_error **err)
{
    const char *cls = jstr(entry, "class_name"), *name = entry_name(entry);
    const cJSON *cfg = jget(entry, "config");
    th_builder_at(&k->b, "layer '%s' (%s)", name ? name : "?", cls ? cls : "?");
    if (!cls || !name || !cJSON_IsObject(cfg)) {
        return th_builder_fail(&k->b, err, "the config has no class_name, name or config");
    }
    static const char *const dropouts[] = {"Dropout", "SpatialDropout2D", "GaussianDropout",
                                           "GaussianNoise", "AlphaDropout"};
    for (size_t i = 0; i < sizeof(dropouts) / sizeof(dropouts[0]); i++) {
        if (strcmp(cls, dropouts[i]) == 0) {
            return true; // the identity at inference
        }
    }
    if (strcmp(cls, "InputLayer") == 0) {
        return true; // a nested model's input: the outer input flows in
    }
    if (strcmp(cls, "Conv2D") == 0 || strcmp(cls, "Convolution2D") == 0) {
        return layer_conv(k, cfg, name, loc, err);
    }
    if (strcmp(cls, "BatchNormalization") == 0) {
        return layer_batchnorm(k, cfg, loc, err);
    }
    if (strcmp(cls, "MaxPooling2D") == 0 || strcmp(cls, "MaxPool2D") == 0) {
        return layer_maxpool(k, cfg, name, err);
    }
    if (strcmp(cls, "Activation") == 0) {
        return layer_activation(k, activation(cfg), name, err);
    }
    if (strcmp(cls, "ReLU") == 0) {
        return layer_relu(k, cfg, name, err);
    }
    if (strcmp(cls, "GlobalAveragePooling2D") == 0 || strcmp(cls, "GlobalAvgPool2D") == 0) {
        return layer_pool(k, cfg, err);
    }
    if (strcmp(cls, "Flatten") == 0) {
        return k->stage == STAGE_POOLED ||
               th_builder_fail(&k->b, err,
                               "Flatten is only supported right after global "
                               "average pooling; " NEEDS);
    }
    if (strcmp(cls, "Dense") == 0) {
        return layer_dense(k, cfg, loc, err);
    }
    if (is_model(cls)) {
        return walk_model(k, entry, base, k->v3 ? NULL : loc->group, err);
    }
    return unsupported(k, err);
}

/* ------------------------------------------------------------------ the chain */

// Keras 3's name for a layer's weights: its class in snake_case (keras.src.utils.naming).
static void snake_case(const char *cls, char *out, size_t size)
{
    char a[128], b[256];
    size_t n = 0, m = 0;
    for (const char *p = cls; *p && n + 1 < sizeof(a); p++) { // drop non-word characters
        if (isalnum((unsigned char)*p) || *p == '_') {
            a[n++] = *p;
        }
    }
    a[n] = 0;
    // (.)([A-Z][a-z]+) -> \1_\2, left to right without overlap, as re.sub
    for (size_t i = 0; i < n && m + 3 < sizeof(b);) {
        if (i + 2 < n + 1 && isupper((unsigned char)a[i + 1]) && islower((unsigned char)a[i + 2])) {
            b[m++] = a[i];
            b[m++] = '_';
            b[m++] = a[i + 1];
            i += 2;
            while (i < n && islower((unsigned char)a[i]) && m + 1 < sizeof(b)) {
                b[m++] = a[i++];
            }
        } else {
            b[m++] = a[i++];
        }
    }
    b[m] = 0;
    // ([a-z])([A-Z]) -> \1_\2, then lower case
    n = 0;
    for (size_t i = 0; b[i] && n + 3 < size; i++) {
        out[n++] = (char)tolower((unsigned char)b[i]);
        if (islower((unsigned char)b[i]) && isupper((unsigned char)b[i + 1])) {
            out[n++] = '_';
            out[n++] = (char)tolower((unsigned char)b[++i]);
        }
    }
    out[n] = 0;
}

// The names of the layers feeding a Functional model's layer: Keras 2's [[["name", 0, 0,
// {}]]], Keras 3's [{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history":
// ["name", 0, 0]}}], "kwargs": {}}]. Counts the inputs into *n; *parent gets the first.
static void find_history(const cJSON *v, const char **parent, int *n)
{
    const cJSON *hist = jget(jget(v, "config"), "keras_history");
    if (cJSON_IsObject(v) && cJSON_IsArray(hist) && cJSON_IsString(cJSON_GetArrayItem(hist, 0))) {
        *parent = *n ? *parent : cJSON_GetArrayItem(hist, 0)->valuestring;
        (*n)++;
        return;
    }
    const cJSON *c;
    cJSON_ArrayForEach(c, v)
    {
        find_history(c, parent, n);
    }
}

static bool inbound(keras *k, const cJSON *entry, const char **parent, th_error **err)
{
    const cJSON *nodes = jget(entry, "inbound_nodes");
    int n = 0, n_nodes = cJSON_GetArraySize(nodes);
    *parent = NULL;
    if (n_nodes > 1) {
        return th_builder_fail(&k->b, err,
                               "the layer is called %d times (a shared layer); "
                               "branching models are not supported",
                               n_nodes);
    }
    const cJSON *node = cJSON_GetArrayItem(nodes, 0);
    if (cJSON_IsArray(node)) {
        const cJSON *in;
        cJSON_ArrayForEach(in, node)
        {
            if (cJSON_IsString(cJSON_GetArrayItem(in, 0))) {
                *parent = n ? *parent : cJSON_GetArrayItem(in, 0)->valuestring;
                n++;
            }
        }
    } else if (node) {
        find_history(node, parent, &n); // args, or an input given by keyword
    }
    if (n > 1) {
        return th_builder_fail(&k->b, err,
                               "the layer takes %d inputs; branching models are not "
                               "supported",
                               n);
    }
    return true;
}

// ["name", 0, 0] or [["name", 0, 0]]: the one input or output layer of a Functional model.
static const char *end_layer(keras *k, const cJSON *cfg, const char *key, th_error **err)
{
    const cJSON *v = jget(cfg, key);
    if (cJSON_IsArray(v) && cJSON_IsString(cJSON_GetArrayItem(v, 0))) {
        return cJSON_GetArrayItem(v, 0)->valuestring;
    }
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1 &&
        cJSON_IsString(cJSON_GetArrayItem(cJSON_GetArrayItem(v, 0), 0))) {
        return cJSON_GetArrayItem(cJSON_GetArrayItem(v, 0), 0)->valuestring;
    }
    th_builder_fail(&k->b, err, "%s: the model has %d; tileheat needs exactly one", key,
                    cJSON_GetArraySize(v));
    return NULL;
}

static int find_layer(const cJSON *layers, const char *name)
{
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, layers)
    {
        const char *n = entry_name(e);
        if (n && strcmp(n, name) == 0) {
            return i;
        }
        i++;
    }
    return -1;
}

// A Functional model's layers in the order of its one chain, from its input to its output, as
// indices into `layers` (order[*len_out]); anything off the chain or branching is refused.
static bool functional_order(keras *k, const cJSON *cfg, const cJSON *layers, int *order, int n,
                             int *len_out, th_error **err)
{
    const char *in = end_layer(k, cfg, "input_layers", err);
    const char *out = in ? end_layer(k, cfg, "output_layers", err) : NULL;
    if (!out) {
        return false;
    }
    int *parent = th_calloc((size_t)n + 1, sizeof(int), err); // (n) index of the input, or -1
    bool ok = parent != NULL;
    for (int i = 0; ok && i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(layers, i);
        const char *p;
        th_builder_at(&k->b, "layer '%s' (%s)", entry_name(e) ? entry_name(e) : "?",
                      jstr(e, "class_name") ? jstr(e, "class_name") : "?");
        ok = inbound(k, e, &p, err);
        parent[i] = p ? find_layer(layers, p) : -1;
    }
    int cur = find_layer(layers, in), last = find_layer(layers, out), len = 0;
    if (ok && (cur < 0 || last < 0)) {
        ok = th_builder_fail(&k->b, err, "the input or output layer '%s' is not in the model",
                             cur < 0 ? in : out);
    }
    while (ok) {
        order[len++] = cur;
        if (cur == last) {
            break;
        }
        int next = -1, count = 0;
        for (int i = 0; i < n; i++) {
            if (parent[i] == cur) {
                next = next < 0 ? i : next;
                count++;
            }
        }
        const char *name = entry_name(cJSON_GetArrayItem(layers, cur));
        if (count > 1) {
            th_error_set(err, "layer '%s' feeds %d layers; branching models are not supported",
                         name, count);
            ok = false;
        } else if (count == 0 || len >= n) {
            th_error_set(err, "layer '%s' does not lead to the output '%s'", name, out);
            ok = false;
        }
        cur = next;
    }
    for (int i = 0; ok && i < n; i++) {
        bool on = false;
        for (int j = 0; j < len && !on; j++) {
            on = order[j] == i;
        }
        const cJSON *e = cJSON_GetArrayItem(layers, i);
        if (!on) {
            th_error_set(err,
                         "layer '%s' (%s) is not on the chain from the input to the output; "
                         "branching models are not supported",
                         entry_name(e), jstr(e, "class_name"));
            ok = false;
        }
    }
    th_free(parent);
    *len_out = len;
    return ok;
}

// Walk one model's layers (the top level: v3_path "" and group NULL; a nested model: its
// Keras 3 path, and in Keras 2 the group of the top-level layer that holds all its weights).
static bool walk_model(keras *k, const cJSON *entry, const char *v3_path, const char *group,
                       th_error **err)
{
    const char *cls = jstr(entry, "class_name");
    const cJSON *cfg = jget(entry, "config");
    const cJSON *layers = cJSON_IsArray(cfg) ? cfg : jget(cfg, "layers"); // Keras 2.0-2.2: a list
    int n = cJSON_GetArraySize(layers);
    if (k->depth >= MAX_DEPTH) {
        return th_builder_fail(&k->b, err, "models nested more than %d deep", MAX_DEPTH);
    }
    if (!cJSON_IsArray(layers) || n == 0 || n > 100000) {
        return th_builder_fail(&k->b, err, "the model config has no list of layers");
    }
    int *order = th_calloc((size_t)n, sizeof(int), err); // (n) the chain, indices into layers
    char(*base)[512] = th_calloc((size_t)n, 512, err);   // (n) Keras 3 path of each layer
    bool ok = order && base, sequential = cls && strcmp(cls, "Sequential") == 0;
    int len = n;
    // Keras 3 names a container's layers by class, numbered in list order: conv2d, conv2d_1, ...
    for (int i = 0; ok && i < n; i++) {
        char snake[128], seen[128];
        const char *c = jstr(cJSON_GetArrayItem(layers, i), "class_name");
        snake_case(c ? c : "", snake, sizeof(snake));
        int count = 0;
        for (int j = 0; j < i; j++) {
            const char *cj = jstr(cJSON_GetArrayItem(layers, j), "class_name");
            snake_case(cj ? cj : "", seen, sizeof(seen));
            count += strcmp(seen, snake) == 0;
        }
        snprintf(base[i], 512, "%s%slayers/%s", v3_path, v3_path[0] ? "/" : "", snake);
        if (count) {
            snprintf(base[i] + strlen(base[i]), 512 - strlen(base[i]), "_%d", count);
        }
        order[i] = i;
    }
    if (ok && !sequential && !cJSON_IsArray(cfg)) {
        ok = functional_order(k, cfg, layers, order, n, &len, err);
    }
    k->depth++;
    for (int i = 0; ok && i < len; i++) {
        const cJSON *e = cJSON_GetArrayItem(layers, order[i]);
        const char *name = entry_name(e);
        wloc loc = {.inner = group ? name : NULL};
        if (k->v3) {
            snprintf(loc.group, sizeof(loc.group), "%s/vars", base[order[i]]);
        } else {
            snprintf(loc.group, sizeof(loc.group), group ? "%s" : "model_weights/%s",
                     group  ? group
                     : name ? name
                            : "");
        }
        ok = layer(k, e, &loc, base[order[i]], err);
    }
    k->depth--;
    th_free(base);
    th_free(order);
    return ok;
}

/* ------------------------------------------------------------------ input */

// The model's input shape [N, H, W, C]: its InputLayer (Keras 3 batch_shape, Keras 2
// batch_input_shape), the first layer's batch_input_shape (older Sequential models), a nested
// model's input, or build_input_shape. NULL if none says.
static const cJSON *input_shape(const cJSON *entry, const char **name, int depth)
{
    const cJSON *cfg = jget(entry, "config");
    const cJSON *layers = cJSON_IsArray(cfg) ? cfg : jget(cfg, "layers");
    const cJSON *first = cJSON_GetArrayItem(layers, 0), *v;
    const char *cls = jstr(entry, "class_name");
    if (depth > MAX_DEPTH) {
        return NULL;
    }
    if (cls && strcmp(cls, "Sequential") != 0 && cJSON_IsObject(cfg)) {
        const cJSON *in = jget(cfg, "input_layers");
        in = cJSON_IsArray(cJSON_GetArrayItem(in, 0)) ? cJSON_GetArrayItem(in, 0) : in;
        const cJSON *n = cJSON_GetArrayItem(in, 0);
        int i = cJSON_IsString(n) ? find_layer(layers, n->valuestring) : -1;
        first = i >= 0 ? cJSON_GetArrayItem(layers, i) : NULL;
    }
    static const char *const keys[] = {"batch_shape", "batch_input_shape"};
    for (size_t i = 0; first && i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (cJSON_IsArray(v = jget(jget(first, "config"), keys[i]))) {
            *name = entry_name(first);
            return v;
        }
    }
    if (first && jstr(first, "class_name") && is_model(jstr(first, "class_name")) &&
        (v = input_shape(first, name, depth + 1))) {
        return v;
    }
    *name = "input";
    if (cJSON_IsArray(v = jget(cfg, "build_input_shape")) ||
        cJSON_IsArray(v = jget(jget(entry, "build_config"), "input_shape"))) {
        return v;
    }
    return NULL;
}

// (None, H, W, 3), H and W fixed or None.
static bool set_input(keras *k, const cJSON *top, th_error **err)
{
    const char *name = "input";
    const cJSON *shape = input_shape(top, &name, 0);
    int d[4] = {0, 0, 0, 3};
    bool good = true;
    for (int i = 1; shape && i < 4; i++) {
        const cJSON *v = cJSON_GetArrayItem(shape, i);
        good = good && (cJSON_IsNull(v) || jint(v, 1, 65536, &d[i]));
    }
    if (shape && (cJSON_GetArraySize(shape) != 4 || !good || d[3] != 3)) {
        char *text = cJSON_PrintUnformatted(shape);
        th_error_set(err,
                     "input '%s' has shape %s; tileheat needs an RGB image input (None, H, W, "
                     "3), channels_last",
                     name, text ? text : "?");
        cJSON_free(text);
        return false;
    }
    return th_builder_input(&k->b, name, d[2], d[1], true, err);
}

/* ------------------------------------------------------------------ sidecar */

// The sidecar's keys (keras-io.c finds and reads it) into the builder's metadata.
static bool read_sidecar(keras *k, const char *path, th_error **err)
{
    char **keys = NULL, **values = NULL, file[64];
    int n = 0;
    bool ok = th_sidecar_read(path, MAX_JSON, &keys, &values, &n, file, sizeof(file), err);
    for (int i = 0; ok && i < n; i++) {
        ok = th_builder_meta(&k->b, keys[i], values[i], err);
    }
    if (ok && file[0]) {
        snprintf(k->b.m->meta_file, sizeof(k->b.m->meta_file), "%.63s", file);
    }
    th_h5_free_strings(keys, n);
    th_h5_free_strings(values, n);
    return ok;
}

/* ------------------------------------------------------------------ the file */

// The model config (JSON text): Keras 2's model_config attribute, or a .keras's config.json.
static char *h5_config(keras *k, th_error **err)
{
    int n = 0;
    bool found;
    char **s = th_h5_attr_strings(&k->h5, "/", "model_config", &n, &found, err);
    if (!s && found) {
        return NULL;
    }
    if (!found || n != 1) {
        th_h5_free_strings(s, n);
        th_error_set(err, "%s",
                     th_h5_exists(&k->h5, "layers") || th_h5_exists(&k->h5, "vars") || !found
                         ? "an HDF5 file without a model_config attribute: weights "
                           "only (model.save_weights)? tileheat needs a whole model "
                           "saved with model.save()"
                         : "attribute model_config is not one text");
        return NULL;
    }
    char *text = s[0];
    s[0] = NULL;
    th_h5_free_strings(s, n);
    if (!th_h5_exists(&k->h5, "model_weights")) {
        th_error_set(err, "the HDF5 file has a model_config but no model_weights group");
        TH_FREE(text);
    }
    return text;
}

static bool keras_member(const void *data, size_t len, const char *name, size_t max, void **out,
                         size_t *out_len, th_error **err)
{
    bool found;
    if (!th_zip_read(data, len, name, max, out, out_len, &found, err)) {
        return false;
    }
    if (!found) {
        th_error_set(err, "a zip without %s: not a Keras 3 .keras file", name);
    }
    return found;
}

// The walk from the config's text to the model.
static th_model *build(keras *k, const char *text, size_t text_len, const char *path,
                       th_error **err)
{
    cJSON *root = cJSON_ParseWithLength(text, text_len);
    const char *cls = jstr(root, "class_name");
    th_model *m = NULL;
    if (!root) {
        th_error_set(err, "the model config is not valid JSON");
        return NULL;
    }
    if (!cls || !is_model(cls)) {
        th_error_set(err, "the file holds a '%s', not a Sequential or Functional model",
                     cls ? cls : "?");
    } else if ((!path || read_sidecar(k, path, err)) && th_builder_meta_end(&k->b, err) &&
               set_input(k, root, err) && walk_model(k, root, "", NULL, err)) {
        if (k->stage == STAGE_TRUNK) {
            th_error_set(err, "the model has no global average pooling (GlobalAveragePooling2D); "
                              "" NEEDS);
        } else if (k->stage == STAGE_POOLED) {
            th_error_set(err, "the model has no dense layer after global average pooling; " NEEDS);
        } else {
            m = th_builder_finish(&k->b, err);
        }
    }
    cJSON_Delete(root);
    return m;
}

th_model *th_model_keras_load(const void *data, size_t len, bool zip, const char *path,
                              th_error **err)
{
    keras k;
    memset(&k, 0, sizeof(k));
    k.h5.file = -1;
    k.v3 = zip;
    void *config = NULL, *weights = NULL;
    size_t config_len = 0, weights_len = 0;
    th_model *m = NULL;
    // a deflated member is at most ~1032 times its compressed size
    size_t max = len > SIZE_MAX / 1100 ? SIZE_MAX / 2 : len * 1100 + 4096;
    if (zip && (!keras_member(data, len, "config.json", MAX_JSON, &config, &config_len, err) ||
                !keras_member(data, len, "model.weights.h5", max, &weights, &weights_len, err))) {
        goto out;
    }
    if (!th_builder_init(&k.b, zip ? TH_MODEL_KERAS_V3 : TH_MODEL_KERAS_H5, err)) {
        goto out;
    }
    k.b.size_hint = "the input layer's shape, or input_size in the sidecar JSON";
    th_h5_lock();
    if (th_h5_open(&k.h5, zip ? weights : data, zip ? weights_len : len, err)) {
        if (zip) {
            m = build(&k, config, config_len, path, err);
        } else if ((config = h5_config(&k, err))) {
            m = build(&k, config, strlen(config), path, err);
        }
    }
    if (zip && !m) {
        th_error_prefix(err, "%s", k.h5.file < 0 ? "model.weights.h5: " : "");
    }
    th_h5_close(&k.h5);
    th_h5_unlock();
out:
    th_builder_clear(&k.b);
    th_free(config);
    th_free(weights);
    return m;
}

#endif /* HAVE_HDF5 */
