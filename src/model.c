/* SPDX-License-Identifier: MIT */
/* The model object: load an ONNX file (protobuf-c unpack here, graph walk in model-onnx.c), read
 * the metadata (class names, input normalisation, mpp, input size, background classes), the
 * public getters, and the trunk shape arithmetic shared with the engine. */
#include <config.h>

#include <math.h>

#include <protobuf-c/protobuf-c.h>

#include "onnx.pb-c.h"
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

bool th_model_trunk_shape(const th_model *model, int in_h, int in_w, int *c, int *h, int *w,
                          th_error **err)
{
    int ch = model->in_c;
    for (int i = 0; i < model->n_layers; i++) {
        const th_layer *layer = &model->layers[i];
        int oh, ow;
        if (!th_layer_out_size(layer, in_h, in_w, &oh, &ow)) {
            th_error_set(err, "node '%s': a %d×%d input leaves no output", layer->name, in_w, in_h);
            return false;
        }
        if (layer->kind == TH_LAYER_CONV) {
            if (layer->c_in != ch) {
                th_error_set(err, "node '%s': expects %d input channels, gets %d", layer->name,
                             layer->c_in, ch);
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
        int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2
                : (*p & 0xf8) == 0xf0                 ? 3
                                                      : -1;
        bool bad = n < 0 || *p < 0x20 || *p == 0x7f || (n == 1 && *p < 0xc2) ||
                   (n == 3 && *p > 0xf4);
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
        th_error_set(err, "metadata %s: expected three%s numbers, got '%s'", key,
                     positive ? " positive" : "", s);
    }
    return good;
}

// A positive number (input_scale, mpp).
static bool meta_positive(const th_model *m, const char *key, double *out, th_error **err)
{
    const char *s = th_model_get_metadata(m, key);
    if (s && (!th_parse_double(s, out) || !(*out > 0))) {
        th_error_set(err, "metadata %s: expected a positive number, got '%s'", key, s);
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

// input_size "W" or "W,H" (the graph walk checks it against fixed input dims).
static bool meta_input_size(th_model *m, th_error **err)
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
        th_error_set(err, "metadata input_size: expected \"W\" or \"W,H\" in pixels, got '%s'", s);
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
            th_error_set(err, "metadata background_classes: no class named '%s'", names[i]);
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

// Everything the metadata says after the graph is known (class count, defaults in place).
static bool read_metadata(th_model *m, th_error **err)
{
    double scale = m->input_scale, mpp = 0;
    const char *names = th_model_get_metadata(m, "class_names");
    if (names && !th_model_set_class_names(m, names, err)) {
        th_error_prefix(err, "metadata class_names: ");
        return false;
    }
    if (!meta_positive(m, "input_scale", &scale, err) || !meta_positive(m, "mpp", &mpp, err) ||
        !meta_triple(m, "input_mean", m->input_mean, false, err) ||
        !meta_triple(m, "input_std", m->input_std, true, err) || !meta_background(m, err)) {
        return false;
    }
    m->input_scale = (float)scale;
    m->mpp = mpp;
    return true;
}

// Default class names "class0".."classN-1" and the background flags.
static bool init_classes(th_model *m, th_error **err)
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

static bool copy_metadata(th_model *m, const Onnx__ModelProto *mp, th_error **err)
{
    // Kept in file order; beyond TH_MODEL_META_MAX entries the rest are ignored.
    for (size_t i = 0; i < mp->n_metadata_props && m->n_meta < TH_MODEL_META_MAX; i++) {
        const Onnx__StringStringEntryProto *e = mp->metadata_props[i];
        char *key = th_strdup(e->key ? e->key : "", err);
        char *value = key ? th_strdup(e->value ? e->value : "", err) : NULL;
        if (!value) {
            th_free(key);
            return false;
        }
        m->meta_key[m->n_meta] = key;
        m->meta_value[m->n_meta] = value;
        m->n_meta++;
    }
    return true;
}

// Version of the default ONNX domain ("" or "ai.onnx"); 0 if the model does not say.
static int64_t onnx_opset(const Onnx__ModelProto *mp)
{
    int64_t opset = 0;
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const char *domain = mp->opset_import[i]->domain;
        if (!domain || !domain[0] || strcmp(domain, "ai.onnx") == 0) {
            opset = mp->opset_import[i]->version;
        }
    }
    return opset;
}

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

static bool load_parsed(th_model *m, const Onnx__ModelProto *mp, th_error **err)
{
    int64_t opset = onnx_opset(mp);
    if (!mp->graph) {
        th_error_set(err, "not an ONNX model (no graph)");
        return false;
    }
    if (opset <= 0) {
        th_error_set(err, "the model has no opset version for the ONNX domain");
        return false;
    }
    if (!copy_metadata(m, mp, err) || !meta_input_size(m, err) ||
        !th_model_onnx_graph(m, mp->graph, opset, err) || !init_classes(m, err) ||
        !read_metadata(m, err)) {
        return false;
    }
    int c, h, w;
    return check_finite(m, err) &&
           (!m->in_w || th_model_trunk_shape(m, m->in_h, m->in_w, &c, &h, &w, err));
}

// protobuf-c's allocations 64-byte aligned (on huge pages from 4 MB, see th_malloc_aligned), so
// that a tensor's raw_data buffer can become a weight array as it is (onnx-tensor.c, take_raw).
static void *pb_alloc(void *data, size_t size)
{
    (void)data;
    return th_malloc_aligned(size, NULL);
}

static void pb_free(void *data, void *p)
{
    th_free(p);
}

static ProtobufCAllocator pb_allocator = {.alloc = pb_alloc, .free = pb_free};

th_model *th_model_load_from_memory(const void *data, size_t len, th_error **err)
{
    Onnx__ModelProto *mp = onnx__model_proto__unpack(&pb_allocator, len, data);
    if (!mp) {
        th_error_set(err, "not an ONNX model (protobuf parse failed)");
        return NULL;
    }
    th_model *m = th_calloc(1, sizeof(*m), err);
    if (m) {
        pthread_mutex_init(&m->sha_lock, NULL);
        m->in_c = 3;
        m->input_scale = 1.0f / 255.0f;
        m->input_std[0] = m->input_std[1] = m->input_std[2] = 1.0f;
        if (!load_parsed(m, mp, err)) {
            th_model_free(m);
            m = NULL;
        }
    }
    onnx__model_proto__free_unpacked(mp, &pb_allocator);
    return m;
}

th_model *th_model_load(const char *path, th_error **err)
{
    th_file_view file;
    if (!th_map_file(path, &file, err)) {
        return NULL;
    }
    th_model *m = th_model_load_from_memory(file.data, file.len, err);
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
