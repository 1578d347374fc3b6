/* SPDX-License-Identifier: MIT */
/* Helpers shared by several test programs (and bench/): splitmix64 PRNG, .ref and .npy file
 * readers, a wall clock, a PNG reader, and what the heatmap tests (test-render, test-legend,
 * test-colors) share: a hand-made CMU result, rendering and reading back, pixel checks. */
#include <config.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <dirent.h>
#include <png.h>
#include <sys/stat.h>
#include <time.h>

#include <protobuf-c/protobuf-c.h>

#include "onnx.pb-c.h"
#include "cam.h"
#include "engine.h"
#include "model.h"
#include "render.h"
#include "result.h"
#include "tap.h"
#include "testutil.h"
#include "th-private.h"
#include "tiler.h"

/* ---------------------------------------------------------------- PRNG */

float tu_rng_float(tu_rng *rng, float lo, float hi)
{
    uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return lo + (hi - lo) * (float)((double)(z >> 40) / 16777216.0);
}

void tu_rng_fill(tu_rng *rng, float *p, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = tu_rng_float(rng, lo, hi);
    }
}

void *tu_xcalloc(size_t n, size_t size)
{
    void *p = th_calloc(n ? n : 1, size, NULL);
    if (!p) {
        bail("out of memory");
    }
    return p;
}

float *tu_rng_floats(tu_rng *rng, size_t n, float lo, float hi)
{
    float *p = tu_xcalloc(n, sizeof(float));
    tu_rng_fill(rng, p, n, lo, hi);
    return p;
}

/* ---------------------------------------------------------------- .ref files */

// Record a "block <name> <count>" line; *off is the data offset of the next block.
static bool ref_block_line(tu_ref *r, const char *line, size_t *off)
{
    size_t count;
    char name[32];
    if (sscanf(line, "block %31s %zu", name, &count) != 2) {
        return false;
    }
    if (r->n_blocks < TU_REF_MAX) {
        snprintf(r->block_name[r->n_blocks], sizeof(r->block_name[0]), "%s", name);
        r->block_count[r->n_blocks] = count;
        r->block_off[r->n_blocks++] = *off;
        *off += count * 4;
    }
    return true;
}

bool tu_ref_load(tu_ref *r, const char *rel, tu_ref_line_fn *line, void *ctx)
{
    memset(r, 0, sizeof(*r));
    r->buf = th_read_file(test_src_path(rel), &r->len, NULL);
    if (!r->buf) {
        return false;
    }
    size_t off = 0; // data bytes after the header
    char *p = r->buf, *end = r->buf + r->len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            return false;
        }
        *nl = 0;
        if (strcmp(p, "data") == 0) {
            size_t start = (size_t)(nl + 1 - r->buf);
            for (int i = 0; i < r->n_blocks; i++) {
                r->block_off[i] += start;
            }
            return start + off == r->len;
        }
        if (!ref_block_line(r, p, &off)) {
            line(ctx, p);
        }
        p = nl + 1;
    }
    return false;
}

float *tu_ref_block(const tu_ref *r, const char *name, size_t *count)
{
    for (int i = 0; i < r->n_blocks; i++) {
        if (strcmp(r->block_name[i], name) == 0) {
            float *v = th_calloc(r->block_count[i] + 1, sizeof(float), NULL);
            const uint8_t *b = (const uint8_t *)r->buf + r->block_off[i];
            for (size_t j = 0; v && j < r->block_count[i]; j++) {
                uint32_t u = (uint32_t)b[4 * j] | (uint32_t)b[4 * j + 1] << 8 |
                             (uint32_t)b[4 * j + 2] << 16 | (uint32_t)b[4 * j + 3] << 24;
                memcpy(&v[j], &u, 4);
            }
            *count = r->block_count[i];
            return v;
        }
    }
    return NULL;
}

double tu_max_rel_diff(const float *got, const float *want, size_t n)
{
    double scale = 0, diff = 0;
    for (size_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs(want[i]));
        diff = fmax(diff, fabs((double)got[i] - want[i]));
    }
    return scale > 0 ? diff / scale : diff;
}

/* ---------------------------------------------------------------- model references */

static void model_ref_line(void *ctx, const char *line)
{
    tu_model_ref *r = ctx;
    int *L = r->layer[r->n_layers < TU_REF_MAX ? r->n_layers : 0];
    long long x, y;
    if (sscanf(line, "slide %255s", r->slide) == 1 || sscanf(line, "model %127s", r->model) == 1 ||
        sscanf(line, "onnx %127s", r->onnx) == 1 ||
        sscanf(line, "preprocess %15s", r->preprocess) == 1) {
        return;
    }
    if (r->n_alt < 4 && sscanf(line, "alt_model %127s", r->alt_model[r->n_alt]) == 1) {
        r->n_alt++;
        return;
    }
    if (r->n_tiles < TU_REF_MAX && sscanf(line, "tile %lld %lld", &x, &y) == 2) {
        r->tile_x[r->n_tiles] = x;
        r->tile_y[r->n_tiles++] = y;
        return;
    }
    if (sscanf(line, "input_size %d %d", &r->in_w, &r->in_h) == 2 ||
        sscanf(line, "graph_size %d %d", &r->graph_w, &r->graph_h) == 2 ||
        sscanf(line, "input_nhwc %d", &r->nhwc) == 1 ||
        sscanf(line, "n_classes %d", &r->n_classes) == 1 ||
        sscanf(line, "feat %d %d %d", &r->feat_c, &r->feat_h, &r->feat_w) == 3 ||
        sscanf(line, "graph_softmax %d", &r->softmax) == 1 ||
        sscanf(line, "input_scale %lf", &r->input_scale) == 1 ||
        sscanf(line, "mpp %lf", &r->mpp) == 1 ||
        sscanf(line, "input_mean %63s", r->input_mean) == 1 ||
        sscanf(line, "input_std %63s", r->input_std) == 1) {
        return;
    }
    if (strncmp(line, "class_names ", 12) == 0) {
        snprintf(r->class_names, sizeof(r->class_names), "%s", line + 12);
    } else if (strncmp(line, "background ", 11) == 0) {
        snprintf(r->background, sizeof(r->background), "%s", line + 11);
    } else if (strncmp(line, "meta ", 5) == 0 && r->n_meta < TU_REF_MAX) {
        snprintf(r->meta[r->n_meta++], sizeof(r->meta[0]), "%s", line + 5);
    } else if (r->n_layers < TU_REF_MAX &&
               sscanf(line, "layer %15s %d %d %d %d %d %d %d %d %d %d %d %d %d %d",
                      r->layer_kind[r->n_layers], &L[0], &L[1], &L[2], &L[3], &L[4], &L[5], &L[6],
                      &L[7], &L[8], &L[9], &L[10], &L[11], &L[12], &L[13]) == 15) {
        r->n_layers++;
    }
}

bool tu_model_ref_load(tu_model_ref *r, const char *rel)
{
    memset(r, 0, sizeof(*r));
    return tu_ref_load(&r->file, rel, model_ref_line, r);
}

// Compare the fields that matter for the layer's kind: conv all but ceil_mode; maxpool the
// window (kernel, strides, pads, ceil_mode); relu none.
static bool layer_matches(const th_layer *l, const char *kind, const int *v)
{
    static const char *const kinds[] = {"conv", "relu", "maxpool"};
    static const bool conv_field[14] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0};
    static const bool pool_field[14] = {0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1};
    int got[14] = {l->c_in, l->c_out, l->kh,    l->kw,    l->sh,    l->sw,   l->dh,
                   l->dw,   l->pad_t, l->pad_l, l->pad_b, l->pad_r, l->relu, l->ceil_mode};
    if (strcmp(kinds[l->kind], kind) != 0) {
        diag("kind %s, expected %s", kinds[l->kind], kind);
        return false;
    }
    for (int i = 0; i < 14; i++) {
        bool relevant = l->kind == TH_LAYER_CONV      ? conv_field[i]
                        : l->kind == TH_LAYER_MAXPOOL ? pool_field[i]
                                                      : false;
        if (relevant && got[i] != v[i]) {
            diag("field %d: got %d, expected %d", i, got[i], v[i]);
            return false;
        }
    }
    return true;
}

void tu_check_model_structure(const th_model *m, const tu_model_ref *r, const char *name)
{
    int w, h, c, fh, fw;
    th_model_get_input_size(m, &w, &h);
    ok(w == r->in_w && h == r->in_h, "%s: input size %d×%d (expected %d×%d)", name, w, h, r->in_w,
       r->in_h);
    is_int(m->input_nhwc, r->nhwc, "%s: input layout", name);
    is_int(th_model_get_class_count(m), r->n_classes, "%s: class count", name);
    is_int(m->feat_c, r->feat_c, "%s: feature channels", name);
    is_int(m->graph_softmax, r->softmax, "%s: graph softmax", name);
    ok(th_model_trunk_shape(m, r->in_h, r->in_w, &c, &fh, &fw, NULL) && c == r->feat_c &&
           fh == r->feat_h && fw == r->feat_w,
       "%s: feature map %d×%d×%d", name, r->feat_c, r->feat_h, r->feat_w);
    is_int(m->n_layers, r->n_layers, "%s: layer count", name);
    for (int i = 0; i < m->n_layers && i < r->n_layers; i++) {
        ok(layer_matches(&m->layers[i], r->layer_kind[i], r->layer[i]), "%s: layer %d (%s '%s')",
           name, i, r->layer_kind[i], m->layers[i].name);
    }
    bool aligned = ((uintptr_t)m->dense_w & 63) == 0 && ((uintptr_t)m->dense_b & 63) == 0;
    for (int i = 0; i < m->n_layers; i++) {
        const th_layer *l = &m->layers[i];
        if (l->kind == TH_LAYER_CONV) {
            aligned = aligned && ((uintptr_t)l->weight & 63) == 0 && ((uintptr_t)l->bias & 63) == 0;
        }
    }
    ok(aligned, "%s: every weight array is 64-byte aligned", name);
}

void tu_check_model_metadata(const th_model *m, const tu_model_ref *r, const char *name)
{
    char names[512];
    names[0] = 0;
    for (int i = 0; i < th_model_get_class_count(m); i++) {
        const char *n = th_model_get_class_name(m, i);
        snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", i ? "," : "", n);
    }
    is_string(names, r->class_names, "%s: class names", name);
    // background: the reference lists names in metadata order.
    int n_bg = 0, n_found = 0, n_listed = 0;
    for (int i = 0; i < th_model_get_class_count(m); i++) {
        n_bg += th_model_is_background_class(m, i);
    }
    char bg[256];
    snprintf(bg, sizeof(bg), "%s", r->background);
    for (char *tok = strtok(bg, ","); tok; tok = strtok(NULL, ",")) {
        n_found += th_model_is_background_class(m, th_model_find_class(m, tok));
        n_listed++;
    }
    ok(n_bg == n_listed && n_found == n_listed, "%s: background classes '%s'", name, r->background);
    is_double(m->input_scale, r->input_scale, 1e-9, "%s: input_scale", name);
    double mean[3], std[3];
    ok(th_parse_double_list(r->input_mean, mean, 3) == 3 &&
           th_parse_double_list(r->input_std, std, 3) == 3,
       "%s: reference mean/std parse", name);
    double d = 0;
    for (int i = 0; i < 3; i++) {
        d = fmax(d, fabs(m->input_mean[i] - mean[i]) + fabs(m->input_std[i] - std[i]));
    }
    ok(d < 1e-6, "%s: input_mean and input_std (diff %g)", name, d);
    is_double(th_model_get_mpp(m), r->mpp, 1e-12, "%s: mpp", name);
    is_int(m->n_meta, r->n_meta, "%s: metadata count", name);
    for (int i = 0; i < r->n_meta; i++) {
        char key[256];
        snprintf(key, sizeof(key), "%s", r->meta[i]);
        char *eq = strchr(key, '=');
        if (eq) {
            *eq = 0;
        }
        is_string(th_model_get_metadata(m, key), eq ? eq + 1 : "", "%s: metadata '%s'", name, key);
    }
}

void tu_check_model_weights(const th_model *m, const tu_model_ref *r, const char *name)
{
    size_t n;
    float *w = tu_ref_block(&r->file, "dense_w", &n);
    ok(w && n == (size_t)m->n_classes * m->feat_c && tu_max_rel_diff(m->dense_w, w, n) < 1e-6,
       "%s: dense weights (n_classes, feat_c), alpha applied", name);
    th_free(w);
    w = tu_ref_block(&r->file, "dense_b", &n);
    ok(w && n == (size_t)m->n_classes && tu_max_rel_diff(m->dense_b, w, n) < 1e-6,
       "%s: dense bias, beta applied", name);
    th_free(w);
    // Conv layers with a BatchNorm: folded weights vs numpy's float64 fold of the raw tensors.
    for (int i = 0; i < m->n_layers; i++) {
        char bw[32], bb[32];
        size_t nb;
        snprintf(bw, sizeof(bw), "weight.%d", i);
        snprintf(bb, sizeof(bb), "bias.%d", i);
        w = tu_ref_block(&r->file, bw, &n);
        float *b = tu_ref_block(&r->file, bb, &nb);
        const th_layer *l = &m->layers[i];
        if (w && b) {
            size_t nw = (size_t)l->c_out * l->c_in * l->kh * l->kw;
            double dw = n == nw ? tu_max_rel_diff(l->weight, w, n) : 1;
            double db = nb == (size_t)l->c_out ? tu_max_rel_diff(l->bias, b, nb) : 1;
            ok(dw < 1e-6 && db < 1e-6, "%s: BatchNorm folded into layer %d (weight %g, bias %g)",
               name, i, dw, db);
        }
        th_free(w);
        th_free(b);
    }
}

// Block "<kind>.<tile>" of exactly `want` floats (caller frees), or NULL.
static float *ref_block(const tu_model_ref *r, const char *kind, int tile, size_t want)
{
    char name[32];
    size_t count = 0;
    snprintf(name, sizeof(name), "%s.%d", kind, tile);
    float *v = tu_ref_block(&r->file, name, &count);
    if (v && count != want) {
        TH_FREE(v);
    }
    return v;
}

// Compare one tile's engine outputs with the reference.
static void check_tile(const tu_model_ref *r, int t, const float *logits, const float *probs,
                       const float *cam, double tol, const char *what)
{
    size_t n = (size_t)r->n_classes, cells = n * r->feat_h * r->feat_w;
    float *want_logits = ref_block(r, "logits", t, n);
    float *want_cam = ref_block(r, "cam", t, cells);
    if (!want_logits || !want_cam) {
        ok(false, "%s: tile %d has reference blocks", what, t);
    } else {
        double e = tu_max_rel_diff(logits, want_logits, n);
        ok(e <= tol, "%s: tile %d logits (rel err %.2g)", what, t, e);
        e = tu_max_rel_diff(cam, want_cam, cells);
        ok(e <= tol, "%s: tile %d CAM (rel err %.2g)", what, t, e);
        double mx = want_logits[0], sum = 0, worst = 0;
        for (size_t c = 1; c < n; c++) {
            mx = fmax(mx, want_logits[c]);
        }
        for (size_t c = 0; c < n; c++) {
            sum += exp(want_logits[c] - mx);
        }
        for (size_t c = 0; c < n; c++) {
            worst = fmax(worst, fabs(probs[c] - exp(want_logits[c] - mx) / sum));
        }
        ok(worst <= tol / 10, "%s: tile %d softmax (max diff %.2g)", what, t, worst);
    }
    th_free(want_logits);
    th_free(want_cam);
}

void tu_check_ref_tiles(th_slide *slide, const th_model *m, const tu_model_ref *r,
                        th_engine_kind kind, const char *what)
{
    th_error *err = NULL;
    th_engine *e = th_engine_new(m, kind, r->in_w, r->in_h, &err);
    th_engine_ws *ws = e ? th_engine_ws_new(e, &err) : NULL;
    size_t n = (size_t)r->n_classes, fsize = (size_t)r->feat_c * r->feat_h * r->feat_w;
    uint8_t *rgb = th_malloc((size_t)r->in_w * r->in_h * 3, &err);          // (h, w, 3)
    float *logits = th_calloc(n, sizeof(float), &err);                      // (n_classes)
    float *probs = th_calloc(n, sizeof(float), &err);                       // (n_classes)
    float *feat = th_calloc(fsize, sizeof(float), &err);                    // (c, fh, fw)
    float *cam = th_calloc(n * r->feat_h * r->feat_w, sizeof(float), &err); // (n, fh, fw)
    if (!ok(ws && rgb && logits && probs && feat && cam, "%s: engine planned", what)) {
        diag("%s", th_error_message(err));
        goto out;
    }
    ok(e->feat_c == r->feat_c && e->feat_h == r->feat_h && e->feat_w == r->feat_w,
       "%s: feature map %d×%d×%d (expected %d×%d×%d)", what, e->feat_c, e->feat_h, e->feat_w,
       r->feat_c, r->feat_h, r->feat_w);
    for (int t = 0; t < r->n_tiles; t++) {
        if (!th_slide_read_region(slide, rgb, r->tile_x[t], r->tile_y[t], 0, r->in_w, r->in_h,
                                  &err) ||
            !th_engine_forward(e, ws, rgb, logits, probs, feat, &err)) {
            ok(false, "%s: tile %d runs: %s", what, t, th_error_message(err));
            break;
        }
        th_cam_compute(feat, e->feat_c, e->feat_h, e->feat_w, m->dense_w, m->n_classes, cam);
        check_tile(r, t, logits, probs, cam, kind == TH_ENGINE_WINOGRAD ? 1e-3 : 1e-4, what);
    }
out:
    th_free(cam);
    th_free(feat);
    th_free(probs);
    th_free(logits);
    th_free(rgb);
    th_engine_ws_free(ws);
    th_engine_free(e);
    th_error_free(err);
}

void tu_check_ref_engines(th_slide *slide, const th_model *m, const tu_model_ref *r,
                          const char *name)
{
    char what[160];
    snprintf(what, sizeof(what), "%s/ref", name);
    tu_check_ref_tiles(slide, m, r, TH_ENGINE_REF, what);
    // The fast backend, when this build has one, must agree with PyTorch too.
    th_engine *fast = th_engine_new(m, TH_ENGINE_FAST, r->in_w, r->in_h, NULL);
    if (fast) {
        th_engine_free(fast);
        snprintf(what, sizeof(what), "%s/fast", name);
        tu_check_ref_tiles(slide, m, r, TH_ENGINE_FAST, what);
        snprintf(what, sizeof(what), "%s/winograd", name);
        tu_check_ref_tiles(slide, m, r, TH_ENGINE_WINOGRAD, what);
    }
}

/* ---------------------------------------------------------------- .npy files */

// The value of 'key' in a .npy header dict: a pointer just past "'key':" and any spaces.
static const char *npy_value(const char *dict, const char *key)
{
    char pat[40];
    snprintf(pat, sizeof(pat), "'%s':", key);
    const char *p = strstr(dict, pat);
    if (!p) {
        return NULL;
    }
    for (p += strlen(pat); *p == ' '; p++) {
    }
    return p;
}

// The dict's dtype, order and shape into npy; false if any is missing or unsupported.
static bool npy_parse_dict(tu_npy *npy, const char *dict)
{
    const char *d = npy_value(dict, "descr"), *f = npy_value(dict, "fortran_order");
    const char *s = npy_value(dict, "shape");
    if (!d || !f || !s || sscanf(d, "'%7[^']'", npy->descr) != 1 || strncmp(f, "False", 5) != 0 ||
        *s != '(') {
        diag("npy: header dict %s", dict);
        return false;
    }
    if (strcmp(npy->descr, "<f4") != 0 && strcmp(npy->descr, "|b1") != 0) {
        diag("npy: unsupported dtype %s", npy->descr);
        return false;
    }
    npy->count = 1;
    for (s++; *s != ')';) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 0 || npy->ndim == TU_NPY_MAXDIM) {
            diag("npy: bad shape in %s", dict);
            return false;
        }
        npy->shape[npy->ndim++] = v;
        npy->count *= (size_t)v;
        for (s = end; *s == ',' || *s == ' '; s++) {
        }
    }
    return true;
}

// Magic, version and header length; the dict is copied (NUL-terminated) into *dict.
static bool npy_parse_preamble(tu_npy *npy, const uint8_t *b, size_t len, char **dict)
{
    if (len < 10 || memcmp(b, "\x93NUMPY", 6) != 0 || (b[6] != 1 && b[6] != 2) || b[7] != 0) {
        diag("npy: not an .npy file of format 1.0 or 2.0");
        return false;
    }
    npy->version = b[6];
    size_t pre = npy->version == 1 ? 10 : 12, hlen = (size_t)b[8] | (size_t)b[9] << 8;
    if (npy->version == 2) {
        hlen = len < 12 ? 0 : hlen | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    }
    if (hlen == 0 || pre + hlen > len || b[pre + hlen - 1] != '\n' || b[pre] != '{') {
        diag("npy: bad header length %zu or no dict ending in a newline", hlen);
        return false;
    }
    npy->data_offset = pre + hlen;
    *dict = tu_xcalloc(hlen + 1, 1);
    memcpy(*dict, b + pre, hlen);
    return true;
}

bool tu_npy_load(tu_npy *npy, const char *path)
{
    size_t len = 0;
    char *dict = NULL;
    memset(npy, 0, sizeof(*npy));
    uint8_t *b = th_read_file(path, &len, NULL);
    if (!b) {
        diag("npy: cannot read %s", path);
    }
    bool ok = b && npy_parse_preamble(npy, b, len, &dict) && npy_parse_dict(npy, dict);
    size_t item = strcmp(npy->descr, "<f4") == 0 ? 4 : 1;
    if (ok && len - npy->data_offset != npy->count * item) {
        diag("npy: %zu data bytes for %zu items of %zu", len - npy->data_offset, npy->count, item);
        ok = false;
    }
    const uint8_t *d = ok ? b + npy->data_offset : NULL;
    if (ok && item == 4) {
        npy->f32 = tu_xcalloc(npy->count, sizeof(float));
        for (size_t i = 0; i < npy->count; i++) {
            uint32_t u = (uint32_t)d[4 * i] | (uint32_t)d[4 * i + 1] << 8 |
                         (uint32_t)d[4 * i + 2] << 16 | (uint32_t)d[4 * i + 3] << 24;
            memcpy(&npy->f32[i], &u, 4);
        }
    } else if (ok) {
        npy->b1 = tu_xcalloc(npy->count, 1);
        for (size_t i = 0; i < npy->count; i++) {
            npy->b1[i] = d[i] != 0;
        }
    }
    th_free(dict);
    th_free(b);
    return ok;
}

void tu_npy_free(tu_npy *npy)
{
    th_free(npy->f32);
    th_free(npy->b1);
    npy->f32 = NULL;
    npy->b1 = NULL;
}

/* ---------------------------------------------------------------- clock and PNG */

double tu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

bool tu_png_read(const char *path, tu_image *img)
{
    png_image pi;
    memset(&pi, 0, sizeof(pi));
    pi.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&pi, path)) {
        diag("%s: %s", path, pi.message);
        return false;
    }
    pi.format = PNG_FORMAT_RGB;
    img->w = (int)pi.width;
    img->h = (int)pi.height;
    img->rgb = th_malloc(PNG_IMAGE_SIZE(pi), NULL);
    if (!img->rgb || !png_image_finish_read(&pi, NULL, img->rgb, 0, NULL)) {
        png_image_free(&pi);
        TH_FREE(img->rgb);
        return false;
    }
    return true;
}

int tu_files_in(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e = d ? readdir(d) : NULL; e; e = readdir(d)) {
        n += e->d_name[0] != '.';
    }
    if (d) {
        closedir(d);
    }
    return n;
}

void tu_expect_render_failure(tu_render_fn *fn, th_slide *slide, const th_result *r,
                              const th_model *model, const th_render_options *o, const char *dir,
                              const char *name, const char *needle, const char *what)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    th_error *err = NULL;
    bool done = fn(slide, r, model, o, path, &err);
    ok(!done && err, "%s: fails", what);
    like(err ? th_error_message(err) : NULL, needle, "%s: message", what);
    struct stat st;
    ok(stat(path, &st) != 0 && tu_files_in(dir) == 0, "%s: leaves no file behind", what);
    th_error_free(err);
}

// A result of `slide` on 8×8 tiles with n_classes classes and the first four tiles run (1×1
// CAMs, all zero): enough for the renderers' checks. NULL if the grid cannot be made.
static th_result *small_result(th_slide *slide, int n_classes)
{
    th_grid g;
    if (!th_grid_init(&g, slide, 0, 8, 8, NULL)) {
        return NULL;
    }
    th_result *r = th_result_new(&g, n_classes, 1, 1, 4, NULL);
    for (int t = 0; r && t < 4; t++) {
        th_result_add_tile(r, t, t % 2, t / 2, NULL, NULL);
    }
    return r;
}

void tu_expect_render_errors(tu_render_fn *fn, const char *name, th_slide *slide,
                             const th_result *r, const th_model *model)
{
    char dir[512], missing[600];
    snprintf(dir, sizeof(dir), "%s/fail", test_tmpdir());
    snprintf(missing, sizeof(missing), "%s/no-such-dir", test_tmpdir());
    if (mkdir(dir, 0777) != 0) {
        bail("mkdir %s", dir);
    }
    th_render_options o;
    th_render_options_init(&o);
    tu_expect_render_failure(fn, slide, r, model, &o, missing, name, "No such file",
                             "missing directory");
    o.n_shown = 0;
    tu_expect_render_failure(fn, slide, r, model, &o, dir, name, "classes to show",
                             "no class shown");
    th_render_options_init(&o);
    o.shown[0] = r->n_classes;
    tu_expect_render_failure(fn, slide, r, model, &o, dir, name, "no class", "class out of range");
    th_render_options_init(&o);
    o.alpha = 1.5;
    tu_expect_render_failure(fn, slide, r, model, &o, dir, name, "between 0 and 1",
                             "alpha above 1");
    o.alpha = -1;
    tu_expect_render_failure(fn, slide, r, model, &o, dir, name, "between 0 and 1",
                             "alpha below 0");
    // Class colours (multi, with the model's class names).
    th_render_options_init(&o);
    o.multi = true;
    o.colors = "nosuch=#ff0000";
    tu_expect_render_failure(fn, slide, r, model, &o, dir, name, "colors: no class named 'nosuch'",
                             "colors: unknown class");
    o.colors = "stroma=red";
    tu_expect_render_failure(fn, slide, r, model, &o, dir, name,
                             "colors: 'stroma=red' is not NAME=#RRGGBB", "colors: bad colour");
    th_render_options_init(&o);
    th_result *other = small_result(slide, r->n_classes == 3 ? 2 : 3);
    tu_expect_render_failure(fn, slide, other, model, &o, dir, name, "the model has",
                             "model/result mismatch");
    th_result_free(other);
    th_slide *bad = th_slide_open(test_data_path("bad/unreadable.svs"), NULL);
    th_result *br = bad ? small_result(bad, r->n_classes) : NULL;
    if (!br) {
        skip(6, "cannot open bad/unreadable.svs");
    } else {
        tu_expect_render_failure(fn, bad, br, model, &o, dir, name, "reading the slide",
                                 "unreadable slide");
        tu_expect_render_failure(fn, bad, r, model, &o, dir, name, "the result was computed on",
                                 "result of another slide");
    }
    th_result_free(br);
    th_slide_close(bad);
}

void tu_model_with_metadata(const char *src_path, const char *key, const char *value,
                            const char *dst_path)
{
    size_t len;
    uint8_t *buf = th_read_file(src_path, &len, NULL);
    Onnx__ModelProto *mp = buf ? onnx__model_proto__unpack(NULL, len, buf) : NULL;
    if (!mp) {
        bail("tu_model_with_metadata: cannot read %s", src_path);
    }
    // The entries without `key`, then the new one: pointers into mp, restored before freeing it.
    Onnx__StringStringEntryProto **saved = mp->metadata_props, entry;
    size_t n_saved = mp->n_metadata_props, n = 0;
    Onnx__StringStringEntryProto **list = tu_xcalloc(n_saved + 1, sizeof(*list));
    for (size_t i = 0; i < n_saved; i++) {
        if (strcmp(saved[i]->key, key) != 0) {
            list[n++] = saved[i];
        }
    }
    onnx__string_string_entry_proto__init(&entry);
    entry.key = (char *)key;
    entry.value = (char *)value;
    list[n++] = &entry;
    mp->metadata_props = list;
    mp->n_metadata_props = n;
    size_t size = onnx__model_proto__get_packed_size(mp);
    uint8_t *packed = tu_xcalloc(size, 1);
    onnx__model_proto__pack(mp, packed);
    mp->metadata_props = saved;
    mp->n_metadata_props = n_saved;
    onnx__model_proto__free_unpacked(mp, NULL);
    FILE *fp = th_fopen(dst_path, "wb", NULL);
    bool written = fp && fwrite(packed, 1, size, fp) == size;
    if (fp && fclose(fp) != 0) {
        written = false;
    }
    if (!written) {
        bail("tu_model_with_metadata: cannot write %s", dst_path);
    }
    th_free(packed);
    th_free(list);
    th_free(buf);
}

/* ---------------------------------------------------------------- heatmaps */

#define INK 0x222222      // font.c's text colour
#define PANEL_BG 0xf7f7f7 // and the panel's background

int tu_rgb_dist(const uint8_t a[3], uint32_t hex)
{
    int d = 0;
    for (int ch = 0; ch < 3; ch++) {
        d = TH_MAX(d, abs((int)a[ch] - (int)((hex >> (16 - 8 * ch)) & 0xff)));
    }
    return d;
}

const uint8_t *tu_px_at(const tu_image *img, int x, int y)
{
    return img->rgb + ((size_t)y * img->w + x) * 3;
}

void tu_ref_pixel(th_slide *slide, int level, double kx, double ky, int ox, int oy, uint8_t rgb[3])
{
    int64_t lw, lh;
    th_slide_get_level_dimensions(slide, level, &lw, &lh);
    double ds = th_slide_get_level_downsample(slide, level);
    double xa = ox * kx, xb = (ox + 1) * kx, ya = oy * ky, yb = (oy + 1) * ky;
    int64_t x0 = (int64_t)floor(xa), x1 = TH_MIN((int64_t)ceil(xb), lw);
    int64_t y0 = (int64_t)floor(ya), y1 = TH_MIN((int64_t)ceil(yb), lh);
    uint8_t buf[16 * 16 * 3];
    if (x1 - x0 > 16 || y1 - y0 > 16 || x1 <= x0 || y1 <= y0 ||
        !th_slide_read_region(slide, buf, llround(x0 * ds), llround(y0 * ds), level, x1 - x0,
                              y1 - y0, NULL)) {
        bail("tu_ref_pixel: cannot read %d,%d", ox, oy);
    }
    double sum[3] = {0, 0, 0}, wsum = 0;
    for (int64_t y = y0; y < y1; y++) {
        double wy = fmin(y + 1, yb) - fmax(y, ya);
        for (int64_t x = x0; x < x1; x++) {
            double w = wy * (fmin(x + 1, xb) - fmax(x, xa));
            const uint8_t *p = buf + ((y - y0) * (x1 - x0) + (x - x0)) * 3;
            for (int ch = 0; ch < 3; ch++) {
                sum[ch] += w * p[ch];
            }
            wsum += w;
        }
    }
    for (int ch = 0; ch < 3; ch++) {
        rgb[ch] = (uint8_t)lrint(sum[ch] / wsum);
    }
}

int tu_swatch_y(const tu_image *img, const th_render_layout *L, uint32_t hex)
{
    for (int y = L->panel_y; y + 4 < img->h; y++) {
        for (int x = L->panel_x; x + 4 < img->w; x++) {
            bool all = true;
            for (int k = 0; k < 25 && all; k++) {
                all = tu_rgb_dist(tu_px_at(img, x + k % 5, y + k / 5), hex) == 0;
            }
            if (all) {
                return y;
            }
        }
    }
    return -1;
}

bool tu_same_result(const th_result *a, const th_result *b)
{
    if (!a || !b || a->n_tiles != b->n_tiles ||
        memcmp(a->probs, b->probs, sizeof(float) * a->n_tiles * a->n_classes) != 0) {
        return false;
    }
    int64_t gw, gh;
    th_result_get_cam_grid(a, &gw, &gh, NULL, NULL, NULL, NULL);
    float *ra = th_malloc(sizeof(float) * gw, NULL), *rb = th_malloc(sizeof(float) * gw, NULL);
    bool same = true;
    for (int c = 0; c < a->n_classes && same; c++) {
        for (int64_t y = 0; y < gh && same; y++) {
            th_result_read_cam_row(a, c, y, ra);
            th_result_read_cam_row(b, c, y, rb);
            same = memcmp(ra, rb, sizeof(float) * gw) == 0;
        }
    }
    th_free(ra);
    th_free(rb);
    return same;
}

th_result *tu_make_cmu_result(th_slide *slide, int n_classes)
{
    th_grid g;
    th_error *err = NULL;
    if (!th_grid_init(&g, slide, 0, 224, 224, &err)) {
        bail("grid: %s", th_error_message(err));
    }
    int nc = n_classes;
    th_result *r = th_result_new(&g, nc, 7, 7, (int64_t)g.cols * g.rows - 1, NULL);
    if (!r || g.cols != 9 || g.rows != 13) {
        bail("th_result_new failed or unexpected grid %dx%d", g.cols, g.rows);
    }
    int64_t t = 0;
    for (int row = 0; row < g.rows; row++) {
        for (int col = 0; col < g.cols; col++) {
            if (col == 8 && row == 0) {
                continue;
            }
            float *p = r->probs + t * nc; // (nc)
            p[0] = col < 3 && row < 6 ? 0.7f : 0.1f;
            p[1] = col >= 4 ? 0.8f : 0.2f;
            p[2] = 1 - p[0] - p[1];
            float cam[TH_MAX_SHOWN * 49] = {0}; // (nc, 7, 7)
            for (int cy = 0; cy < 7; cy++) {
                for (int cx = 0; cx < 7; cx++) {
                    int gx = col * 7 + cx, gy = row * 7 + cy;
                    cam[0 * 49 + cy * 7 + cx] = gx < 21 && gy < 42 ? 5.0f : 0.0f;
                    cam[1 * 49 + cy * 7 + cx] = gx >= 31 ? 0.25f * (float)(gx - 31) : 0.0f;
                }
            }
            if (nc > TH_MAX_SHOWN || !th_result_add_tile(r, t, col, row, cam, NULL)) {
                bail("th_result_add_tile failed");
            }
            t++;
        }
    }
    th_result_summarize(r);
    return r;
}

bool tu_render(th_slide *slide, const th_result *r, const th_model *model,
               const th_render_options *o, const char *name, tu_image *img, th_render_layout *L)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", test_tmpdir(), name);
    th_error *err = NULL;
    double t0 = tu_now();
    if (!th_render_heatmap(slide, r, model, o, path, &err)) {
        diag("%s: %s", name, th_error_message(err));
        th_error_free(err);
        return false;
    }
    diag("%s rendered in %.3f s", name, tu_now() - t0);
    if (L && !th_render_plan(slide, r, model, o, L, NULL)) {
        return false;
    }
    return tu_png_read(path, img);
}

bool tu_same_bytes(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    uint8_t *pa = th_read_file(a, &na, NULL), *pb = th_read_file(b, &nb, NULL);
    bool same = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    th_free(pa);
    th_free(pb);
    return same;
}

th_run_options tu_options(th_cam_mode cam, int threads, th_engine_kind engine)
{
    th_run_options opt;
    th_run_options_init(&opt);
    opt.min_tissue = 0;
    opt.cam = cam;
    opt.threads = threads;
    opt.engine = engine;
    return opt;
}

th_result *tu_run(th_slide *slide, const th_model *model, const th_run_options *opt)
{
    th_error *err = NULL;
    th_result *r = th_run(slide, model, opt, &err);
    if (!r) {
        diag("run: %s", th_error_message(err));
        th_error_free(err);
    }
    return r;
}

th_result *tu_run_default(th_slide *slide, const th_model *model, double min_tissue)
{
    th_run_options ro;
    th_run_options_init(&ro);
    ro.min_tissue = min_tissue;
    th_error *err = NULL;
    th_result *r = th_run(slide, model, &ro, &err);
    if (!r) {
        bail("run: %s", th_error_message(err));
    }
    return r;
}

/* Is text primitive q in the image exactly as th_font_draw draws it: ink where the font has
 * ink, the panel's background elsewhere in its cells, and some ink? */
static bool text_drawn(const tu_image *img, const th_render_layout *L, const th_prim *q)
{
    int s = L->font_scale, w = th_font_text_width(q->text, s), h = TH_FONT_H * s;
    int x0 = L->panel_x + q->x, y0 = L->panel_y + q->y;
    if (w == 0 || x0 < 0 || y0 < 0 || x0 + w > img->w || y0 + h > img->h) {
        return false;
    }
    uint8_t *want = tu_xcalloc((size_t)w * h, 3); // (h, w, 3), ink 255
    th_band band = {.rgb = want, .w = w, .h = h, .y0 = 0};
    const uint8_t on[3] = {255, 255, 255};
    th_font_draw(&band, 0, 0, q->text, s, on);
    bool same = true;
    int inked = 0;
    for (int y = 0; y < h && same; y++) {
        for (int x = 0; x < w && same; x++) {
            bool ink = want[((size_t)y * w + x) * 3] == 255;
            inked += ink;
            same = tu_rgb_dist(tu_px_at(img, x0 + x, y0 + y), ink ? INK : PANEL_BG) == 0;
        }
    }
    th_free(want);
    return same && inked > 0;
}

/* The height of the drawn text q measured in the image: the rows holding dark pixels in its
 * columns, from two font pixels above its cell to two below. */
static int ink_height(const tu_image *img, const th_render_layout *L, const th_prim *q)
{
    int s = L->font_scale, x0 = L->panel_x + q->x;
    int x1 = TH_MIN(img->w, x0 + th_font_text_width(q->text, s));
    int ya = TH_MAX(0, L->panel_y + q->y - 2 * s);
    int yb = TH_MIN(img->h, L->panel_y + q->y + (TH_FONT_H + 2) * s);
    int top = -1, bottom = -1;
    for (int y = ya; y < yb; y++) {
        for (int x = x0; x < x1; x++) {
            const uint8_t *c = tu_px_at(img, x, y);
            if (c[0] < 0x60 && c[1] < 0x60 && c[2] < 0x60) {
                top = top < 0 ? y : top;
                bottom = y;
                break;
            }
        }
    }
    return top < 0 ? 0 : bottom - top + 1;
}

void tu_check_legend_pixels(th_slide *slide, const th_result *r, const th_model *model,
                            const th_render_options *o, const char *name, th_legend *lg,
                            th_render_layout *L)
{
    tu_image img = {0};
    th_panel p;
    bool done = tu_render(slide, r, model, o, name, &img, NULL) &&
                th_render_plan_legend(slide, r, model, o, L, lg, &p, NULL);
    if (!ok(done && img.w == L->image_w && img.h == L->image_h, "%s: rendered, %dx%d as planned",
            name, img.w, img.h)) {
        skip(2, "no image");
        TH_FREE(img.rgb);
        return;
    }
    const th_prim *first = NULL;
    int drawn = 0, texts = 0;
    for (int k = 0; k < p.n; k++) {
        if (p.p[k].kind == PRIM_TEXT) {
            first = first ? first : &p.p[k];
            texts++;
            drawn += text_drawn(&img, L, &p.p[k]);
        }
    }
    int h = first ? ink_height(&img, L, first) : 0, long_px = TH_MAX(img.w, img.h);
    ok(h >= TH_FONT_ASCENT && h * 1000 >= TH_LEGEND_PERMILLE * long_px,
       "%s: \"%s\" is %d px high, >= 1.2 %% of %d (scale %d)", name, first ? first->text : "", h,
       long_px, L->font_scale);
    is_int(drawn, texts, "%s: every legend text drawn exactly, inside the image", name);
    TH_FREE(img.rgb);
}

th_slide *tu_open_slide(const char *data_rel)
{
    th_error *err = NULL;
    th_slide *slide = th_slide_open(test_data_path(data_rel), &err);
    if (!slide) {
        bail("%s: %s", data_rel, th_error_message(err));
    }
    return slide;
}

th_model *tu_load_model(const char *src_rel)
{
    th_error *err = NULL;
    th_model *model = th_model_load(test_src_path(src_rel), &err);
    if (!model) {
        bail("%s: %s", src_rel, th_error_message(err));
    }
    return model;
}

void tu_expect_disk_full(tu_render_fn *fn, const char *name, th_slide *slide, const th_result *r,
                         const th_model *model)
{
    struct rlimit old, lim;
    if (getrlimit(RLIMIT_FSIZE, &old) != 0) {
        skip(3, "no RLIMIT_FSIZE");
        return;
    }
    char dir[512], path[600];
    snprintf(dir, sizeof(dir), "%s/full-%s", test_tmpdir(), name);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (mkdir(dir, 0777) != 0) {
        bail("mkdir %s", dir);
    }
    th_render_options o;
    th_render_options_init(&o);
    th_error *err = NULL;
    lim = old;
    lim.rlim_cur = TH_MIN(old.rlim_max, (rlim_t)1 << 20);
    signal(SIGXFSZ, SIG_IGN);
    fflush(stdout); // nothing may be written to stdout under the limit
    setrlimit(RLIMIT_FSIZE, &lim);
    bool done = fn(slide, r, model, &o, path, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);
    ok(!done && err, "%s on a full disk: fails", name);
    like(err ? th_error_message(err) : NULL, "File too large",
         "%s on a full disk: the message has the system's words", name);
    ok(tu_files_in(dir) == 0, "%s on a full disk: leaves no file behind", name);
    th_error_free(err);
}
