/* SPDX-License-Identifier: MIT */
/* The model object: the loader chosen by the file's magic bytes (model-onnx.c, model-keras.c,
 * both feeding the builder in model-build.c), what the metadata means (class names,
 * preprocessing and channel order, mpp, input size, background classes), the preprocessing
 * presets, the public getters and setters, and the trunk shape arithmetic shared with the
 * engine. */
#include <config.h>

#include <math.h>
#include <strings.h>

#include "model.h"

bool th_layer_out_size(const th_layer *layer, int in_h, int in_w, int *out_h, int *out_w)
{
    if (layer->kind == TH_LAYER_RELU) {
        *out_h = in_h;
        *out_w = in_w;
        return in_h > 0 && in_w > 0;
    }
    // ONNX Conv / MaxPool output size (dilated kernel extent, optional ceil for pooling).
    int64_t ext_h = (int64_t)(layer->kh - 1) * (layer->kind == TH_LAYER_CONV ? layer->dh : 1) + 1;
    int64_t ext_w = (int64_t)(layer->kw - 1) * (layer->kind == TH_LAYER_CONV ? layer->dw : 1) + 1;
    int64_t span_h = (int64_t)in_h + layer->pad_t + layer->pad_b - ext_h;
    int64_t span_w = (int64_t)in_w + layer->pad_l + layer->pad_r - ext_w;
    if (span_h < 0 || span_w < 0 || layer->sh <= 0 || layer->sw <= 0) {
        return false;
    }
    int64_t oh = span_h / layer->sh + 1;
    int64_t ow = span_w / layer->sw + 1;
    if (layer->kind == TH_LAYER_MAXPOOL && layer->ceil_mode) {
        oh = (span_h + layer->sh - 1) / layer->sh + 1;
        ow = (span_w + layer->sw - 1) / layer->sw + 1;
        // The last window must start inside the input or left padding (ONNX / PyTorch rule).
        if ((oh - 1) * layer->sh >= (int64_t)in_h + layer->pad_t) {
            oh--;
        }
        if ((ow - 1) * layer->sw >= (int64_t)in_w + layer->pad_l) {
            ow--;
        }
    }
    if (oh <= 0 || ow <= 0 || oh > INT32_MAX || ow > INT32_MAX) {
        return false;
    }
    *out_h = (int)oh;
    *out_w = (int)ow;
    return true;
}

const char *th_model_unit_word(const th_model *model)
{
    return model->format == TH_MODEL_ONNX ? "node" : "layer";
}

size_t th_model_act_offset(const th_model *model, int i)
{
    size_t n = 0;
    for (int j = 0; j < i && j < model->n_layers; j++) {
        n += (size_t)model->layers[j].c_out;
    }
    return n;
}

bool th_model_trunk_shape(const th_model *model, int in_h, int in_w, int *c, int *h, int *w,
                          th_error **err)
{
    int ch = model->in_c;
    for (int i = 0; i < model->n_layers; i++) {
        const th_layer *layer = &model->layers[i];
        int oh, ow;
        if (!th_layer_out_size(layer, in_h, in_w, &oh, &ow)) {
            th_error_set(err, "%s '%s': a %d×%d input leaves no output", th_model_unit_word(model),
                         layer->name, in_w, in_h);
            return false;
        }
        if (layer->kind == TH_LAYER_CONV) {
            if (layer->c_in != ch) {
                th_error_set(err, "%s '%s': expects %d input channels, gets %d",
                             th_model_unit_word(model), layer->name, layer->c_in, ch);
                return false;
            }
            ch = layer->c_out;
        }
        in_h = oh;
        in_w = ow;
    }
    *c = ch;
    *h = in_h;
    *w = in_w;
    return true;
}

/* ------------------------------------------------------------------ names and metadata */

// Split "a, b ,c" into trimmed copies (empty items kept as ""); *n gets the count.
static char **split_csv(const char *csv, int *n, th_error **err)
{
    int count = 1;
    for (const char *p = csv; *p; p++) {
        count += *p == ',';
    }
    char **items = th_calloc((size_t)count, sizeof(char *), err); // (count) owned strings
    if (!items) {
        return NULL;
    }
    const char *p = csv;
    for (int i = 0; i < count; i++) {
        const char *end = strchr(p, ',');
        end = end ? end : p + strlen(p);
        const char *next = *end ? end + 1 : end;
        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }
        while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }
        items[i] = th_strdup_printf(err, "%.*s", (int)(end - p), p);
        if (!items[i]) {
            for (int j = 0; j < i; j++) {
                th_free(items[j]);
            }
            th_free(items);
            return NULL;
        }
        p = next;
    }
    *n = count;
    return items;
}

// A class name becomes a JSON string, a CSV column and a legend label: valid UTF-8, no control
// characters, and none of tiles.csv's fixed columns.
static bool check_name(const char *name, th_error **err)
{
    static const char *reserved[] = {"col", "row", "x", "y", "w", "h"};
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        if (strcmp(name, reserved[i]) == 0) {
            th_error_set(err, "class name '%s' is a column of tiles.csv; give another", name);
            return false;
        }
    }
    for (const unsigned char *p = (const unsigned char *)name; *p;) {
        int n = *p < 0x80             ? 0
                : (*p & 0xe0) == 0xc0 ? 1
                : (*p & 0xf0) == 0xe0 ? 2
                : (*p & 0xf8) == 0xf0 ? 3
                                      : -1;
        bool bad =
            n < 0 || *p < 0x20 || *p == 0x7f || (n == 1 && *p < 0xc2) || (n == 3 && *p > 0xf4);
        for (int k = 1; !bad && k <= n; k++) {
            bad = (p[k] & 0xc0) != 0x80;
        }
        if (bad) {
            th_error_set(err, "a class name has %s at byte %zu",
                         n != 0 ? "bytes that are not UTF-8" : "a control character",
                         (size_t)(p - (const unsigned char *)name));
            return false;
        }
        p += n + 1;
    }
    return true;
}

static void free_names(char **names, int n)
{
    for (int i = 0; names && i < n; i++) {
        th_free(names[i]);
    }
    th_free(names);
}

bool th_model_set_class_names(th_model *model, const char *csv, th_error **err)
{
    int n = 0;
    char **names = split_csv(csv, &n, err);
    if (!names) {
        return false;
    }
    if (n != model->n_classes) {
        th_error_set(err, "expected %d class names, got %d", model->n_classes, n);
        free_names(names, n);
        return false;
    }
    for (int i = 0; i < n; i++) {
        bool dup = false;
        for (int j = 0; j < i && !dup; j++) {
            dup = strcmp(names[i], names[j]) == 0;
        }
        if (!names[i][0] || dup || !check_name(names[i], err)) {
            if (dup) {
                th_error_set(err, "class name '%s' appears twice", names[i]);
            } else if (!names[i][0]) {
                th_error_set(err, "class name %d is empty", i + 1);
            }
            free_names(names, n);
            return false;
        }
    }
    free_names(model->class_names, model->n_classes);
    model->class_names = names;
    return true;
}

const char *th_model_meta_label(const th_model *m, const char *key, char *buf, size_t size)
{
    if (m->meta_file[0]) {
        snprintf(buf, size, "%s: %s", m->meta_file, key);
    } else {
        snprintf(buf, size, "metadata %s", key);
    }
    return buf;
}

// input_mean / input_std: exactly three numbers ("0.5,0.5,0.5").
static bool meta_triple(const th_model *m, const char *key, float *out, bool positive,
                        th_error **err)
{
    const char *s = th_model_get_metadata(m, key);
    double v[3];
    if (!s) {
        return true;
    }
    bool good = th_parse_double_list(s, v, 3) == 3;
    for (int i = 0; good && i < 3; i++) {
        good = !positive || v[i] > 0;
        out[i] = (float)v[i];
    }
    if (!good) {
        char label[160];
        th_error_set(err, "%s: expected three%s numbers, got '%s'",
                     th_model_meta_label(m, key, label, sizeof(label)), positive ? " positive" : "",
                     s);
    }
    return good;
}

// A positive number (input_scale, mpp).
static bool meta_positive(const th_model *m, const char *key, double *out, th_error **err)
{
    const char *s = th_model_get_metadata(m, key);
    if (s && (!th_parse_double(s, out) || !(*out > 0))) {
        char label[160];
        th_error_set(err, "%s: expected a positive number, got '%s'",
                     th_model_meta_label(m, key, label, sizeof(label)), s);
        return false;
    }
    return true;
}

// One side of metadata input_size: a trimmed positive integer.
static bool parse_side(const char *s, int *out)
{
    char buf[32];
    size_t len = strlen(s);
    while (len && (*s == ' ' || *s == '\t')) {
        s++, len--;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) {
        len--;
    }
    if (len == 0 || len >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, s, len);
    buf[len] = 0;
    return th_parse_int(buf, out) && *out > 0 && *out <= 65536;
}

// input_size "W" or "W,H" (the builder checks it against fixed input dims).
bool th_model_meta_input_size(th_model *m, th_error **err)
{
    const char *s = th_model_get_metadata(m, "input_size");
    if (!s) {
        return true;
    }
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", s);
    char *comma = strchr(buf, ',');
    if (comma) {
        *comma = 0;
    }
    if (strlen(s) >= sizeof(buf) || !parse_side(buf, &m->in_w) ||
        !parse_side(comma ? comma + 1 : buf, &m->in_h)) {
        char label[160];
        th_error_set(err, "%s: expected \"W\" or \"W,H\" in pixels, got '%s'",
                     th_model_meta_label(m, "input_size", label, sizeof(label)), s);
        m->in_w = m->in_h = 0;
        return false;
    }
    return true;
}

static bool meta_background(th_model *m, th_error **err)
{
    const char *s = th_model_get_metadata(m, "background_classes");
    int n = 0;
    char **names = s ? split_csv(s, &n, err) : NULL;
    if (s && !names) {
        return false;
    }
    for (int i = 0; i < n; i++) {
        int c = th_model_find_class(m, names[i]);
        if (names[i][0] && c < 0) {
            char label[160];
            th_error_set(err, "%s: no class named '%s'",
                         th_model_meta_label(m, "background_classes", label, sizeof(label)),
                         names[i]);
            free_names(names, n);
            return false;
        }
        if (c >= 0) {
            m->background[c] = true;
        }
    }
    free_names(names, n);
    return true;
}

/* ------------------------------------------------------------------ preprocessing */

// The presets of --preprocess and metadata `preprocess`, mean and std in the network's channel
// order: unit = x / 255 (the original tool's); caffe = BGR minus the ImageNet mean, unscaled
// (keras.applications VGG16 / VGG19); tf = x / 127.5 - 1; torch = x / 255, ImageNet mean / std.
static const struct preset {
    const char *name;
    float scale, mean[3], std[3];
    bool bgr;
} presets[] = {
    {"unit", 1.0f / 255.0f, {0, 0, 0}, {1, 1, 1}, false},
    {"caffe", 1.0f, {103.939f, 116.779f, 123.68f}, {1, 1, 1}, true},
    {"tf", 1.0f / 127.5f, {1, 1, 1}, {1, 1, 1}, false},
    {"torch", 1.0f / 255.0f, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, false},
};
#define N_PRESETS (sizeof(presets) / sizeof(presets[0]))

static const struct preset *find_preset(const char *name)
{
    for (size_t i = 0; i < N_PRESETS; i++) {
        if (strcasecmp(name, presets[i].name) == 0) {
            return &presets[i];
        }
    }
    return NULL;
}

bool th_model_preset(const char *name, float *scale, float mean[3], float std[3], bool *bgr)
{
    const struct preset *p = find_preset(name);
    if (p) {
        *scale = p->scale;
        memcpy(mean, p->mean, sizeof(p->mean));
        memcpy(std, p->std, sizeof(p->std));
        *bgr = p->bgr;
    }
    return p != NULL;
}

// Swap input channels 0 and 2 of the network (RGB <-> BGR): in the first conv's weights, or in
// the dense columns when the trunk has no conv (ReLU and max pooling work per channel, so a
// permutation passes through them). The kernels then always get RGB.
static void swap_channels(th_model *m)
{
    for (int i = 0; i < m->n_layers; i++) {
        th_layer *l = &m->layers[i];
        if (l->kind == TH_LAYER_CONV) {
            float *w = (float *)l->weight; // (c_out, 3, kh, kw); owned
            size_t plane = (size_t)l->kh * l->kw;
            for (int o = 0; o < l->c_out; o++) {
                float *a = w + (size_t)o * l->c_in * plane, *b = a + 2 * plane;
                for (size_t k = 0; k < plane; k++) {
                    float t = a[k];
                    a[k] = b[k];
                    b[k] = t;
                }
            }
            return;
        }
    }
    float *d = (float *)m->dense_w; // (n_classes, 3)
    for (int c = 0; c < m->n_classes; c++) {
        float t = d[c * m->feat_c];
        d[c * m->feat_c] = d[c * m->feat_c + 2];
        d[c * m->feat_c + 2] = t;
    }
}

// The network's normalisation (network channel order) into the model (RGB order), swapping the
// weights when the channel order changes.
static void set_norm(th_model *m, float scale, const float mean[3], const float std[3], bool bgr)
{
    if (bgr != m->input_bgr) {
        swap_channels(m);
    }
    m->input_bgr = bgr;
    m->input_scale = scale;
    for (int c = 0; c < 3; c++) {
        m->input_mean[c] = mean[bgr ? 2 - c : c];
        m->input_std[c] = std[bgr ? 2 - c : c];
    }
}

// `preprocess` (a preset), then `channel_order`, then input_scale / input_mean / input_std
// (three numbers each, in the network's channel order) over it.
static bool meta_preprocess(th_model *m, th_error **err)
{
    float scale, mean[3], std[3];
    bool bgr;
    char label[160];
    const char *p = th_model_get_metadata(m, "preprocess");
    th_model_preset(p ? p : "unit", &scale, mean, std, &bgr);
    if (p && !th_model_preset(p, &scale, mean, std, &bgr)) {
        th_error_set(err, "%s: expected unit, caffe, tf or torch, got '%s'",
                     th_model_meta_label(m, "preprocess", label, sizeof(label)), p);
        return false;
    }
    const char *order = th_model_get_metadata(m, "channel_order");
    if (order && strcasecmp(order, "RGB") != 0 && strcasecmp(order, "BGR") != 0) {
        th_error_set(err, "%s: expected RGB or BGR, got '%s'",
                     th_model_meta_label(m, "channel_order", label, sizeof(label)), order);
        return false;
    }
    bgr = order ? strcasecmp(order, "BGR") == 0 : bgr;
    double s = scale;
    if (!meta_positive(m, "input_scale", &s, err) ||
        !meta_triple(m, "input_mean", mean, false, err) ||
        !meta_triple(m, "input_std", std, true, err)) {
        return false;
    }
    set_norm(m, (float)s, mean, std, bgr);
    return true;
}

// The preset the model's normalisation is, or NULL.
static const struct preset *which_preset(const th_model *m)
{
    for (size_t i = 0; i < N_PRESETS; i++) {
        const struct preset *p = &presets[i];
        bool same = p->scale == m->input_scale && p->bgr == m->input_bgr;
        for (int c = 0; c < 3 && same; c++) {
            int n = p->bgr ? 2 - c : c;
            same = p->mean[n] == m->input_mean[c] && p->std[n] == m->input_std[c];
        }
        if (same) {
            return p;
        }
    }
    return NULL;
}

const char *th_model_get_preprocess(const th_model *model)
{
    const struct preset *p = model ? which_preset(model) : NULL;
    return p ? p->name : model ? "custom" : NULL;
}

// Replace (or add) a metadata entry; false only when out of memory.
static bool meta_put(th_model *m, const char *key, const char *value, th_error **err)
{
    char *v = th_strdup(value, err);
    if (!v) {
        return false;
    }
    for (int i = 0; i < m->n_meta; i++) {
        if (strcmp(m->meta_key[i], key) == 0) {
            th_free(m->meta_value[i]);
            m->meta_value[i] = v;
            return true;
        }
    }
    char *k = m->n_meta < TH_MODEL_META_MAX ? th_strdup(key, err) : NULL;
    if (!k) {
        th_free(v);
        return m->n_meta >= TH_MODEL_META_MAX; // full: the field still holds the value
    }
    m->meta_key[m->n_meta] = k;
    m->meta_value[m->n_meta++] = v;
    return true;
}

static void meta_remove(th_model *m, const char *key)
{
    for (int i = 0; i < m->n_meta; i++) {
        if (strcmp(m->meta_key[i], key) == 0) {
            th_free(m->meta_key[i]);
            th_free(m->meta_value[i]);
            memmove(&m->meta_key[i], &m->meta_key[i + 1], sizeof(char *) * (m->n_meta - i - 1));
            memmove(&m->meta_value[i], &m->meta_value[i + 1], sizeof(char *) * (m->n_meta - i - 1));
            m->n_meta--;
            i--;
        }
    }
}

bool th_model_set_preprocess(th_model *model, const char *name, th_error **err)
{
    float scale, mean[3], std[3];
    bool bgr;
    if (!th_model_preset(name, &scale, mean, std, &bgr)) {
        th_error_set(err, "expected unit, caffe, tf or torch, got '%s'", name);
        return false;
    }
    if (!meta_put(model, "preprocess", find_preset(name)->name, err)) {
        return false;
    }
    // the file's own keys no longer apply
    static const char *const keys[] = {"channel_order", "input_scale", "input_mean", "input_std"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        meta_remove(model, keys[i]);
    }
    set_norm(model, scale, mean, std, bgr);
    return true;
}

bool th_model_set_mpp(th_model *model, double mpp, th_error **err)
{
    char buf[40];
    if (!(mpp > 0) || !isfinite(mpp)) {
        th_error_set(err, "expected a positive number of µm per pixel, got %g", mpp);
        return false;
    }
    snprintf(buf, sizeof(buf), "%.17g", mpp);
    if (!meta_put(model, "mpp", buf, err)) {
        return false;
    }
    model->mpp = mpp;
    return true;
}

// "x = (pixel / 255 - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)", values in the network's
// channel order.
static void norm_formula(const th_model *m, char *buf, size_t size)
{
    float mean[3], std[3];
    for (int c = 0; c < 3; c++) {
        mean[c] = m->input_mean[m->input_bgr ? 2 - c : c];
        std[c] = m->input_std[m->input_bgr ? 2 - c : c];
    }
    char px[48], mn[96] = "", sd[96] = "";
    double inv = 1.0 / m->input_scale;
    if (m->input_scale == 1.0f) {
        snprintf(px, sizeof(px), "pixel");
    } else if (fabs(inv - round(inv * 2) / 2) < 1e-4 * inv) {
        snprintf(px, sizeof(px), "pixel / %g", round(inv * 2) / 2);
    } else {
        snprintf(px, sizeof(px), "pixel × %g", m->input_scale);
    }
    bool zero = mean[0] == 0 && mean[1] == 0 && mean[2] == 0;
    bool one = std[0] == 1 && std[1] == 1 && std[2] == 1;
    if (!zero && mean[0] == mean[1] && mean[1] == mean[2]) {
        snprintf(mn, sizeof(mn), " − %g", mean[0]);
    } else if (!zero) {
        snprintf(mn, sizeof(mn), " − (%g, %g, %g)", mean[0], mean[1], mean[2]);
    }
    if (!one && std[0] == std[1] && std[1] == std[2]) {
        snprintf(sd, sizeof(sd), " / %g", std[0]);
    } else if (!one) {
        snprintf(sd, sizeof(sd), " / (%g, %g, %g)", std[0], std[1], std[2]);
    }
    snprintf(buf, size, "x = %s%s%s%s%s", one || zero ? "" : "(", px, mn, one || zero ? "" : ")",
             sd);
}

void th_model_describe_preprocess(const th_model *model, char *buf, size_t size)
{
    char formula[320];
    if (!model) {
        snprintf(buf, size, "%s", "");
        return;
    }
    norm_formula(model, formula, sizeof(formula));
    snprintf(buf, size, "%s (%s, %s)", th_model_get_preprocess(model),
             model->input_bgr ? "BGR" : "RGB", formula);
}

/* ------------------------------------------------------------------ after the graph */

// Everything the metadata says after the graph is known (class count, defaults in place).
bool th_model_read_metadata(th_model *m, th_error **err)
{
    double mpp = 0;
    const char *names = th_model_get_metadata(m, "class_names");
    if (names && !th_model_set_class_names(m, names, err)) {
        char label[160];
        th_error_prefix(err, "%s: ", th_model_meta_label(m, "class_names", label, sizeof(label)));
        return false;
    }
    if (!meta_preprocess(m, err) || !meta_positive(m, "mpp", &mpp, err) ||
        !meta_background(m, err)) {
        return false;
    }
    m->mpp = mpp;
    return true;
}

// Default class names "class0".."classN-1" and the background flags.
bool th_model_init_classes(th_model *m, th_error **err)
{
    m->class_names = th_calloc((size_t)m->n_classes, sizeof(char *), err);
    m->background = th_calloc((size_t)m->n_classes, sizeof(bool), err);
    if (!m->class_names || !m->background) {
        return false;
    }
    for (int i = 0; i < m->n_classes; i++) {
        m->class_names[i] = th_strdup_printf(err, "class%d", i);
        if (!m->class_names[i]) {
            return false;
        }
    }
    return true;
}
/* ------------------------------------------------------------------ loading */

typedef enum file_kind { FILE_ONNX, FILE_HDF5, FILE_ZIP } file_kind;

// The loader goes by the magic bytes, never the extension: a zip (a Keras 3 .keras), the HDF5
// signature at offset 0 or after a userblock of 512·2^k bytes (a Keras 2 .h5), else ONNX (a
// protobuf has no magic; its parser says when it is not one).
static file_kind detect(const void *data, size_t len)
{
    static const uint8_t hdf5[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    const uint8_t *p = data;
    if (len >= 4 && memcmp(p, "PK\003\004", 4) == 0) {
        return FILE_ZIP;
    }
    for (size_t off = 0; len >= 8 && off <= len - 8; off = off ? 2 * off : 512) {
        if (memcmp(p + off, hdf5, sizeof(hdf5)) == 0) {
            return FILE_HDF5;
        }
    }
    return FILE_ONNX;
}

static th_model *load_bytes(const void *data, size_t len, const char *path, th_error **err)
{
    file_kind kind = detect(data, len);
    if (kind == FILE_ONNX) {
        return th_model_onnx_load(data, len, err);
    }
    return th_model_keras_load(data, len, kind == FILE_ZIP, path, err);
}

th_model *th_model_load_from_memory(const void *data, size_t len, th_error **err)
{
    return load_bytes(data, len, NULL, err);
}

th_model *th_model_load(const char *path, th_error **err)
{
    th_file_view file;
    if (!th_map_file(path, &file, err)) {
        return NULL;
    }
    th_model *m = load_bytes(file.data, file.len, path, err);
    th_unmap_file(&file);
    if (m && !(m->path = th_strdup(path, err))) {
        th_model_free(m);
        m = NULL;
    }
    return m;
}

bool th_model_get_sha256(const th_model *model, char hex[65], th_error **err)
{
    hex[0] = '\0';
    if (!model || !model->path) {
        return true;
    }
    // hashed on first use (a model read only for its classes never pays for it), then kept;
    // the cache is not part of what the model means, so the model stays const to its users
    th_model *m = (th_model *)model;
    pthread_mutex_lock(&m->sha_lock);
    bool ok = m->sha256[0] || th_sha256_file(m->path, m->sha256, err);
    if (ok) {
        memcpy(hex, m->sha256, sizeof(m->sha256));
    }
    pthread_mutex_unlock(&m->sha_lock);
    return ok;
}

void th_model_free(th_model *model)
{
    if (!model) {
        return;
    }
    for (int i = 0; i < model->n_meta; i++) {
        th_free(model->meta_key[i]);
        th_free(model->meta_value[i]);
    }
    free_names(model->class_names, model->n_classes);
    th_free(model->background);
    for (int i = 0; model->layers && i < model->n_layers; i++) {
        th_free((void *)model->layers[i].weight); // owned: const only to the model's users
        th_free((void *)model->layers[i].bias);
    }
    th_free(model->layers);
    th_free((void *)model->dense_w);
    th_free((void *)model->dense_b);
    th_free(model->path);
    pthread_mutex_destroy(&model->sha_lock);
    th_free(model);
}

/* ------------------------------------------------------------------ getters */

int th_model_get_class_count(const th_model *model)
{
    return model ? model->n_classes : 0;
}

const char *th_model_get_class_name(const th_model *model, int c)
{
    if (!model || c < 0 || c >= model->n_classes || !model->class_names) {
        return NULL;
    }
    return model->class_names[c];
}

int th_model_find_class(const th_model *model, const char *name)
{
    for (int i = 0; model && name && model->class_names && i < model->n_classes; i++) {
        if (strcmp(model->class_names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

void th_model_get_input_size(const th_model *model, int *w, int *h)
{
    if (w) {
        *w = model ? model->in_w : 0;
    }
    if (h) {
        *h = model ? model->in_h : 0;
    }
}

double th_model_get_mpp(const th_model *model)
{
    return model ? model->mpp : 0;
}

bool th_model_is_background_class(const th_model *model, int c)
{
    return model && model->background && c >= 0 && c < model->n_classes && model->background[c];
}

const char *th_model_get_metadata(const th_model *model, const char *key)
{
    for (int i = 0; model && key && i < model->n_meta; i++) {
        if (strcmp(model->meta_key[i], key) == 0) {
            return model->meta_value[i];
        }
    }
    return NULL;
}

const char *th_model_get_format(const th_model *model)
{
    static const char *const names[] = {"ONNX", "Keras HDF5 (.h5)", "Keras 3 (.keras)"};
    return model ? names[model->format] : NULL;
}

int th_model_get_layer_count(const th_model *model)
{
    return model ? model->n_layers + 2 : 0;
}

// "3×3, stride 1, pad 1,1,1,1 (t,l,b,r)": kernel, stride and dilation as H×W.
static void window_text(const th_layer *l, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%d×%d, stride %d", l->kh, l->kw, l->sh);
    if (l->sh != l->sw) {
        n += snprintf(buf + n, size - (size_t)n, "×%d", l->sw);
    }
    if (l->kind == TH_LAYER_CONV && (l->dh != 1 || l->dw != 1)) {
        n += snprintf(buf + n, size - (size_t)n, ", dilation %d×%d", l->dh, l->dw);
    }
    if (l->pad_t || l->pad_l || l->pad_b || l->pad_r) {
        snprintf(buf + n, size - (size_t)n, ", pad %d,%d,%d,%d (t,l,b,r)", l->pad_t, l->pad_l,
                 l->pad_b, l->pad_r);
    }
}

bool th_model_describe_layer(const th_model *model, int i, char *buf, size_t size)
{
    char win[160];
    if (!model || i < 0 || i >= model->n_layers + 2) {
        if (size) {
            buf[0] = 0;
        }
        return false;
    }
    if (i == model->n_layers) {
        snprintf(buf, size, "global average pooling -> %d features", model->feat_c);
        return true;
    }
    if (i == model->n_layers + 1) {
        snprintf(buf, size, "dense %d -> %d classes%s", model->feat_c, model->n_classes,
                 model->graph_softmax ? ", softmax" : "");
        return true;
    }
    const th_layer *l = &model->layers[i];
    window_text(l, win, sizeof(win));
    if (l->kind == TH_LAYER_CONV) {
        snprintf(buf, size, "conv     %-20s %d -> %d, %s%s", l->name, l->c_in, l->c_out, win,
                 l->relu ? ", relu" : "");
    } else if (l->kind == TH_LAYER_MAXPOOL) {
        snprintf(buf, size, "maxpool  %-20s %s%s", l->name, win, l->ceil_mode ? ", ceil" : "");
    } else {
        snprintf(buf, size, "relu     %s", l->name);
    }
    return true;
}
