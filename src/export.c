/* SPDX-License-Identifier: MIT */
/* Exports for other tools: tiles.geojson (one QuPath 0.4+ tile object per tile run, classified
 * by its top class, with the class probabilities as measurements) and the raw arrays as numpy
 * .npy files (cam.npy, probabilities.npy). Everything streams from the result through its public
 * getters, a tile or a CAM row at a time, so memory does not grow with the slide. */
#include <config.h>

#include <inttypes.h>

#include "render.h"
#include "result.h"

// How often (in tiles or rows) the writers look for a write error, to stop early on a full disk.
#define CHECK_EVERY 256

/* ---------------------------------------------------------------- GeoJSON */

// A JSON string literal. Quote, backslash and control bytes are escaped; other bytes (UTF-8)
// are copied as they are.
static void json_string(FILE *fp, const char *s)
{
    fputc('"', fp);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            fputc('\\', fp);
            fputc(*p, fp);
        } else if (*p == '\n') {
            fputs("\\n", fp);
        } else if (*p == '\t') {
            fputs("\\t", fp);
        } else if (*p < 0x20) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            fputs(esc, fp);
        } else {
            fputc(*p, fp);
        }
    }
    fputc('"', fp);
}

// A float as a JSON number that reads back as the same float32 (%.9g). The decimal separator
// is forced to '.', whatever LC_NUMERIC the application chose.
static void json_float(FILE *fp, float v)
{
    char num[48];
    snprintf(num, sizeof(num), "%.9g", (double)v);
    for (const char *p = num; *p; p++) {
        bool plain = (*p >= '0' && *p <= '9') || *p == '-' || *p == '+' || *p == 'e';
        if (plain) {
            fputc(*p, fp);
        } else if (p > num && strchr("0123456789-+e", p[-1])) {
            fputc('.', fp); // for the first byte of a (possibly multibyte) separator
        }
    }
}

// Class colours, (n_classes, 3) RGB: th_render_class_color's, as the heatmaps draw them. Caller
// frees.
static uint8_t *class_colors(const th_render_options *opt, const th_model *model, int n_classes,
                             th_error **err)
{
    uint8_t *rgb = th_calloc((size_t)n_classes, 3, err); // (n_classes, 3) RGB
    for (int c = 0; rgb && c < n_classes; c++) {
        if (!th_render_class_color(opt, model, c, rgb + 3 * c, err)) {
            TH_FREE(rgb);
        }
    }
    return rgb;
}

// Class c's name: the model's, or "class<c>" without a model.
static void class_name(th_outfile *out, const th_model *model, int c)
{
    const char *name = model ? th_model_get_class_name(model, c) : NULL;
    if (name) {
        json_string(out->fp, name);
    } else {
        th_outfile_printf(out, "\"class%d\"", c);
    }
}

// One Feature: the tile's level-0 rectangle as a closed ring, its top class and probabilities.
static void write_feature(th_outfile *out, const th_result *r, const th_model *model,
                          const uint8_t *rgb, int64_t t)
{
    int col, row, nc = th_result_get_class_count(r);
    int64_t x, y, w, h;
    th_result_get_tile(r, t, &col, &row, &x, &y, &w, &h);
    const float *p = th_result_get_probs(r, t);
    int best = 0; // first of equal maxima, as th_result_get_argmax_percent counts them
    for (int c = 1; c < nc; c++) {
        best = p[c] > p[best] ? c : best;
    }
    // Counter-clockwise with y up, as RFC 7946 asks of an exterior ring.
    const int64_t ring[5][2] = {{x, y}, {x + w, y}, {x + w, y + h}, {x, y + h}, {x, y}};
    fputs("{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[", out->fp);
    for (int i = 0; i < 5; i++) {
        th_outfile_printf(out, "%s[%" PRId64 ",%" PRId64 "]", i ? "," : "", ring[i][0], ring[i][1]);
    }
    fputs("]]},\"properties\":{\"objectType\":\"tile\",\"classification\":{\"name\":", out->fp);
    class_name(out, model, best);
    const uint8_t *color = rgb + 3 * best;
    th_outfile_printf(out, ",\"color\":[%d,%d,%d]},\"measurements\":{", color[0], color[1],
                      color[2]);
    for (int c = 0; c < nc; c++) {
        if (c > 0) {
            fputc(',', out->fp);
        }
        class_name(out, model, c);
        fputc(':', out->fp);
        json_float(out->fp, p[c]);
    }
    fputs("}}}", out->fp);
}

// Probabilities are softmax outputs; a NaN or infinity has no JSON spelling.
static bool check_probs(const th_result *r, th_error **err)
{
    int nc = th_result_get_class_count(r);
    for (int64_t t = 0; t < th_result_get_tile_count(r); t++) {
        const float *p = th_result_get_probs(r, t);
        for (int c = 0; c < nc; c++) {
            if (!isfinite(p[c])) {
                th_error_set(err, "tile %" PRId64 ": probability of class %d is not finite", t, c);
                return false;
            }
        }
    }
    return true;
}

static bool write_geojson(const th_result *r, const th_model *model, const th_render_options *opt,
                          const char *path, th_error **err)
{
    int nc = th_result_get_class_count(r);
    if (model && th_model_get_class_count(model) != nc) {
        th_error_set(err, "the model has %d classes, the result %d",
                     th_model_get_class_count(model), nc);
        return false;
    }
    if (!check_probs(r, err)) {
        return false;
    }
    th_outfile out;
    uint8_t *rgb = class_colors(opt, model, nc, err); // (nc, 3)
    if (!rgb || !th_outfile_open(&out, path, err)) {
        th_free(rgb);
        return false;
    }
    // One feature per line: the file stays greppable and diffable.
    fputs("{\"type\":\"FeatureCollection\",\"features\":[\n", out.fp);
    int64_t n = th_result_get_tile_count(r);
    for (int64_t t = 0; t < n; t++) {
        if (t % CHECK_EVERY == 0 && ferror(out.fp)) {
            break; // th_outfile_commit reports it
        }
        write_feature(&out, r, model, rgb, t);
        fputs(t + 1 < n ? ",\n" : "\n", out.fp);
    }
    fputs("]}\n", out.fp);
    th_free(rgb);
    return th_outfile_commit(&out, err);
}

bool th_export_geojson(const th_result *result, const th_model *model, const th_render_options *opt,
                       const char *path, th_error **err)
{
    if (!write_geojson(result, model, opt, path, err)) {
        th_error_prefix(err, "%s: ", path);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- .npy */

// The .npy header for a C-order little-endian float32 array of the given shape: magic, version,
// header length, the dict, padded with spaces and a final newline so that the data starts at a
// multiple of 64 bytes. Version 1.0 (16-bit length) unless the dict is too long for it.
static void npy_header(FILE *fp, const int64_t *shape, int ndim)
{
    char dict[256];
    int n = snprintf(dict, sizeof(dict), "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < ndim; i++) {
        n += snprintf(dict + n, sizeof(dict) - (size_t)n, "%" PRId64 "%s", shape[i],
                      ndim == 1      ? ","
                      : i + 1 < ndim ? ", "
                                     : "");
    }
    n += snprintf(dict + n, sizeof(dict) - (size_t)n, "), }");
    size_t pre = 10, total = (pre + (size_t)n + 1 + 63) / 64 * 64;
    if (total - pre > 65535) {
        pre = 12;
        total = (pre + (size_t)n + 1 + 63) / 64 * 64;
    }
    size_t hlen = total - pre; // dict, padding and newline
    uint8_t magic[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', pre == 10 ? 1 : 2, 0};
    for (size_t i = 0; i < pre - 8; i++) {
        magic[8 + i] = (uint8_t)(hlen >> (8 * i));
    }
    fwrite(magic, 1, pre, fp);
    fputs(dict, fp);
    for (size_t i = (size_t)n; i + 1 < hlen; i++) {
        fputc(' ', fp);
    }
    fputc('\n', fp);
}

// n floats as little-endian float32, whatever the host's byte order.
static void write_f32le(FILE *fp, const float *v, size_t n)
{
    uint8_t buf[4096]; // (1024, 4) bytes
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int b = 0; b < 4; b++) {
            buf[k++] = (uint8_t)(u >> (8 * b));
        }
        if (k == sizeof(buf)) {
            fwrite(buf, 1, k, fp);
            k = 0;
        }
    }
    fwrite(buf, 1, k, fp);
}

// cam.npy: (classes, gh, gw), one grid row at a time.
static bool write_cam(const th_result *r, const char *path, th_error **err)
{
    int64_t gw, gh;
    th_result_get_cam_grid(r, &gw, &gh, NULL, NULL, NULL, NULL);
    int nc = th_result_get_class_count(r);
    float *row = th_calloc(gw > 0 ? (size_t)gw : 1, sizeof(float), err); // (gw) one grid row
    th_outfile out;
    if (!row || !th_outfile_open(&out, path, err)) {
        th_free(row);
        return false;
    }
    int64_t shape[3] = {nc, gh, gw};
    npy_header(out.fp, shape, 3);
    for (int c = 0; c < nc; c++) {
        for (int64_t gy = 0; gy < gh; gy++) {
            if (gy % CHECK_EVERY == 0 && ferror(out.fp)) {
                c = nc; // stop; th_outfile_commit reports it
                break;
            }
            th_result_read_cam_row(r, c, gy, row);
            write_f32le(out.fp, row, (size_t)gw);
        }
    }
    th_free(row);
    return th_outfile_commit(&out, err);
}

// probabilities.npy: (tiles, classes) in tile order.
static bool write_probs(const th_result *r, const char *path, th_error **err)
{
    th_outfile out;
    if (!th_outfile_open(&out, path, err)) {
        return false;
    }
    int nc = th_result_get_class_count(r);
    int64_t n = th_result_get_tile_count(r), shape[2] = {n, nc};
    npy_header(out.fp, shape, 2);
    for (int64_t t = 0; t < n; t++) {
        if (t % CHECK_EVERY == 0 && ferror(out.fp)) {
            break;
        }
        write_f32le(out.fp, th_result_get_probs(r, t), (size_t)nc);
    }
    return th_outfile_commit(&out, err);
}

bool th_export_npy(const th_result *result, const char *cam_path, const char *probs_path,
                   th_error **err)
{
    if (cam_path && !write_cam(result, cam_path, err)) {
        th_error_prefix(err, "%s: ", cam_path);
        return false;
    }
    if (probs_path && !write_probs(result, probs_path, err)) {
        th_error_prefix(err, "%s: ", probs_path);
        return false;
    }
    return true;
}
