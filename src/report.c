/* SPDX-License-Identifier: MIT */
/* The per-class breakdown as files: report.json (cJSON) and tiles.csv, and the run's provenance
 * as run.json. report.json and tiles.csv depend only on the inputs and the options that change
 * results (so two runs' reports compare byte for byte); timings, threads and memory are in
 * run.json. */
#include <config.h>

#include <cjson/cJSON.h>

#include "model.h"
#include "render.h"
#include "result.h"

#define TH_REPORT_SCHEMA 3 // 3: the performance object moved to run.json

// Percentages are rounded to 1e-4 so the file reads well; the sums still come to 100.
static double round4(double v)
{
    return round(v * 1e4) / 1e4;
}

// Level-0 area of one tile's share of the grid (the stride × stride step) in mm², 0 if unknown.
static double tile_area_mm2(const th_result *r)
{
    const th_grid *g = &r->grid;
    double um = g->mpp * g->scale;
    return g->mpp > 0 ? (double)g->stride_x * um * g->stride_y * um * 1e-6 : 0;
}

static void add_resolution(cJSON *root, const th_result *r)
{
    const char *source;
    double mpp = th_result_get_mpp(r, &source);
    cJSON *res = cJSON_AddObjectToObject(root, "resolution");
    if (mpp > 0) {
        cJSON_AddNumberToObject(res, "slide_mpp", mpp);
        cJSON_AddNumberToObject(res, "tile_mpp", mpp * r->grid.scale);
    } else {
        cJSON_AddNullToObject(res, "slide_mpp");
        cJSON_AddNullToObject(res, "tile_mpp");
    }
    cJSON_AddStringToObject(res, "source", source);
    cJSON_AddNumberToObject(res, "level", r->grid.level);
    cJSON_AddNumberToObject(res, "scale", r->grid.scale);
    cJSON_AddBoolToObject(res, "resampled", r->grid.resample);
}

static void add_tiles(cJSON *root, const th_result *r)
{
    cJSON *tile = cJSON_AddObjectToObject(root, "tile");
    cJSON_AddNumberToObject(tile, "width", r->grid.tile_w);
    cJSON_AddNumberToObject(tile, "height", r->grid.tile_h);
    cJSON_AddNumberToObject(tile, "stride", r->grid.stride_x);
    cJSON_AddStringToObject(tile, "edge", r->grid.edge_pad ? "pad" : "ignore");
    cJSON_AddStringToObject(tile, "cam", th_cam_mode_name(r->cam_mode));
    cJSON_AddStringToObject(tile, "precision", th_precision_name(r->opt.precision));
    if (r->int8.tiles > 0) {
        cJSON *c = cJSON_AddObjectToObject(tile, "int8_check");
        cJSON_AddNumberToObject(c, "calibration_tiles", r->int8.tiles);
        // where the ranges came from: the slide's own sample, or a cohort's calibration file
        cJSON_AddStringToObject(c, "calibration", r->calibration_file ? "file" : "slide");
        // the check runs the sample's tiles one by one, whatever the run's CAM mode
        cJSON_AddStringToObject(c, "measured_on", "isolated tiles");
        if (r->calibration_file) {
            cJSON_AddStringToObject(c, "calibration_file", r->calibration_file);
            cJSON_AddStringToObject(c, "calibration_sha256", r->calibration_sha256);
        }
        cJSON_AddNumberToObject(c, "max_percent_difference", round4(r->int8.percent));
        cJSON_AddNumberToObject(c, "top_class_agreement",
                                round4(1.0 - (double)r->int8.flips / r->int8.tiles));
        cJSON_AddNumberToObject(c, "min_cam_correlation", round4(r->int8.correlation));
    }
    cJSON_AddNumberToObject(tile, "cam_width", r->cam_w);
    cJSON_AddNumberToObject(tile, "cam_height", r->cam_h);
    cJSON *tiles = cJSON_AddObjectToObject(root, "tiles");
    int64_t total, skipped;
    th_result_get_tile_counts(r, &total, &skipped);
    cJSON_AddNumberToObject(tiles, "columns", r->grid.cols);
    cJSON_AddNumberToObject(tiles, "rows", r->grid.rows);
    cJSON_AddNumberToObject(tiles, "total", (double)total);
    cJSON_AddNumberToObject(tiles, "processed", (double)r->n_tiles);
    cJSON_AddNumberToObject(tiles, "skipped", (double)skipped);
    cJSON_AddNumberToObject(tiles, "background_percent",
                            total ? round4(100.0 * (double)skipped / (double)total) : 0);
    cJSON_AddNumberToObject(tiles, "min_tissue", r->opt.min_tissue);
}

static void add_performance(cJSON *root, const th_result *r, const th_report_info *info)
{
    cJSON *perf = cJSON_AddObjectToObject(root, "performance");
    cJSON *stages = cJSON_AddObjectToObject(perf, "stages_seconds");
    for (int i = 0; i < r->n_stages; i++) {
        cJSON_AddNumberToObject(stages, r->stages[i].name, round4(r->stages[i].seconds));
    }
    for (int i = 0; info && i < info->n_stages; i++) {
        cJSON_AddNumberToObject(stages, info->stages[i].name, round4(info->stages[i].seconds));
    }
    cJSON_AddNumberToObject(perf, "threads", r->threads);
    cJSON_AddNumberToObject(perf, "trunk_area", round4(r->trunk_area));
    if (info && info->peak_rss > 0) {
        cJSON_AddNumberToObject(perf, "peak_rss_bytes", (double)info->peak_rss);
    }
}

static cJSON *build_json(const th_result *r, const th_model *model, const th_report_info *info)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "schema", TH_REPORT_SCHEMA);
    cJSON_AddStringToObject(root, "tileheat", th_version());
    cJSON_AddStringToObject(root, "slide", info && info->slide_path ? info->slide_path : "");
    cJSON_AddStringToObject(root, "model", info && info->model_path ? info->model_path : "");
    if (info && info->command) {
        cJSON_AddStringToObject(root, "command", info->command);
    }
    cJSON_AddNumberToObject(root, "level", r->grid.level);
    cJSON *warnings = cJSON_AddArrayToObject(root, "warnings");
    for (int i = 0; i < r->n_warnings; i++) {
        cJSON_AddItemToArray(warnings, cJSON_CreateString(r->warnings[i]));
    }
    add_resolution(root, r);
    add_tiles(root, r);
    cJSON *classes = cJSON_AddArrayToObject(root, "classes");
    double area = tile_area_mm2(r);
    for (int c = 0; c < r->n_classes; c++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", th_model_get_class_name(model, c));
        cJSON_AddNumberToObject(o, "percent", round4(r->percent[c]));
        cJSON_AddNumberToObject(o, "argmax_percent", round4(r->argmax_percent[c]));
        if (area > 0) {
            double tiles = r->argmax_percent[c] / 100 * (double)r->n_tiles;
            cJSON_AddNumberToObject(o, "area_mm2", round(tiles * area * 1e6) / 1e6);
        }
        cJSON_AddBoolToObject(o, "background", th_model_is_background_class(model, c));
        cJSON_AddItemToArray(classes, o);
    }
    return root;
}

static void add_hex(cJSON *o, const char *key, const uint8_t rgb[3])
{
    char hex[8];
    snprintf(hex, sizeof(hex), "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
    cJSON_AddStringToObject(o, key, hex);
}

// Per class, the colour it has (multi) and whether it was drawn; the `drawing` object: how the
// heatmap was drawn, down to each shown class's display scale.
static bool add_drawing(cJSON *root, const th_result *r, const th_model *model,
                        const th_report_info *info, th_error **err)
{
    const th_render_options *ro = info->render;
    float lo[TH_MAX_SHOWN], hi[TH_MAX_SHOWN];
    th_scale_basis basis[TH_MAX_SHOWN];
    if (ro->n_shown < 1 || ro->n_shown > TH_MAX_SHOWN ||
        !th_render_ranges(r, ro, lo, hi, basis, err)) {
        th_error_prefix(err, "drawing: ");
        return false;
    }
    bool multi = ro->multi || ro->n_shown > 1;
    const cJSON *cls;
    int c = 0;
    cJSON_ArrayForEach(cls, cJSON_GetObjectItem(root, "classes"))
    {
        uint8_t rgb[3];
        bool clear = false, drawn = false;
        if (multi && !th_class_color(ro, model, c, rgb, &clear, err)) {
            return false;
        }
        for (int i = 0; i < ro->n_shown; i++) {
            drawn |= ro->shown[i] == c && !clear;
        }
        if (multi) {
            add_hex((cJSON *)cls, "color", rgb);
        }
        cJSON_AddBoolToObject((cJSON *)cls, "drawn", drawn);
        c++;
    }
    cJSON *d = cJSON_AddObjectToObject(root, "drawing");
    cJSON_AddStringToObject(d, "mode", multi ? "multi" : "single");
    cJSON_AddStringToObject(d, "shown_by", info->shown_by ? info->shown_by : "");
    if (!multi) {
        cJSON_AddStringToObject(d, "colormap", th_colormap_name(ro->colormap));
    } else {
        cJSON_AddNumberToObject(d, "threshold", ro->threshold);
    }
    cJSON_AddNumberToObject(d, "alpha", ro->alpha);
    cJSON_AddStringToObject(d, "norm", ro->norm == TH_NORM_RAW ? "raw" : "percentile");
    if (ro->norm == TH_NORM_PERCENTILE) {
        cJSON_AddNumberToObject(d, "percentile", ro->percentile);
    }
    cJSON_AddBoolToObject(d, "tint_glass", ro->tint_glass);
    cJSON_AddNumberToObject(d, "width", ro->width);
    cJSON *shown = cJSON_AddArrayToObject(d, "shown");
    for (int i = 0; i < ro->n_shown; i++) {
        // the raw CAM values shown as 0 and as full strength
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", th_model_get_class_name(model, ro->shown[i]));
        cJSON_AddNumberToObject(o, "scale_low", lo[i]);
        cJSON_AddNumberToObject(o, "scale_high", hi[i]);
        cJSON_AddStringToObject(o, "scale_basis", th_scale_basis_name(basis[i]));
        cJSON_AddItemToArray(shown, o);
    }
    return true;
}

// Print a cJSON tree to `path` (temporary name + rename); frees the tree. Errors name the path.
static bool write_tree(cJSON *root, const char *path, th_error **err)
{
    th_outfile out;
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) {
        th_error_set(err, "out of memory");
        return false;
    }
    bool ok = th_outfile_open(&out, path, err);
    if (ok) {
        fputs(text, out.fp);
        fputc('\n', out.fp);
        ok = th_outfile_commit(&out, err);
    }
    cJSON_free(text);
    if (!ok) {
        th_error_prefix(err, "%s: ", path);
    }
    return ok;
}

bool th_report_write_json(const th_result *result, const th_model *model,
                          const th_report_info *info, const char *path, th_error **err)
{
    cJSON *root = build_json(result, model, info);
    if (info && info->render && !add_drawing(root, result, model, info, err)) {
        cJSON_Delete(root);
        return false;
    }
    return write_tree(root, path, err);
}

// A CSV field: quoted when it holds a comma, quote or line break.
static void csv_field(FILE *fp, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, fp);
        return;
    }
    fputc('"', fp);
    for (; *s; s++) {
        if (*s == '"') {
            fputc('"', fp);
        }
        fputc(*s, fp);
    }
    fputc('"', fp);
}

static bool write_csv(const th_result *result, const th_model *model, const char *path,
                      th_error **err)
{
    th_outfile out;
    if (!th_outfile_open(&out, path, err)) {
        return false;
    }
    FILE *fp = out.fp;
    fputs("col,row,x,y,w,h", fp);
    for (int c = 0; c < result->n_classes; c++) {
        fputc(',', fp);
        csv_field(fp, th_model_get_class_name(model, c));
    }
    fputc('\n', fp);
    for (int64_t t = 0; t < result->n_tiles; t++) {
        int col, row;
        int64_t x, y, w, h;
        th_result_get_tile(result, t, &col, &row, &x, &y, &w, &h);
        th_outfile_printf(&out, "%d,%d,%lld,%lld,%lld,%lld", col, row, (long long)x, (long long)y,
                          (long long)w, (long long)h);
        const float *p = th_result_get_probs(result, t);
        for (int c = 0; c < result->n_classes; c++) {
            th_outfile_printf(&out, ",%.6f", p[c]);
        }
        fputc('\n', fp);
    }
    return th_outfile_commit(&out, err);
}

bool th_report_write_csv(const th_result *result, const th_model *model, const char *path,
                         th_error **err)
{
    if (!write_csv(result, model, path, err)) {
        th_error_prefix(err, "%s: ", path);
        return false;
    }
    return true;
}

// Hex SHA-256 of a file (65 bytes with the terminator).

static void add_run_options(cJSON *root, const th_result *r, const th_report_info *info)
{
    cJSON *cmd = cJSON_AddArrayToObject(root, "command_line");
    for (int i = 0; info && i < info->argc; i++) {
        cJSON_AddItemToArray(cmd, cJSON_CreateString(info->argv[i]));
    }
    const th_run_options *o = &r->opt;
    cJSON *opt = cJSON_AddObjectToObject(root, "options");
    cJSON_AddStringToObject(opt, "engine",
                            o->engine == TH_ENGINE_WINOGRAD ? "winograd"
                            : o->engine == TH_ENGINE_FAST   ? "fast"
                                                            : "ref");
    cJSON_AddNumberToObject(opt, "threads", r->threads);
    cJSON_AddNumberToObject(opt, "level", o->level);
    cJSON_AddNumberToObject(opt, "mpp", o->slide_mpp);
    cJSON_AddNumberToObject(opt, "model_mpp", o->model_mpp);
    cJSON_AddNumberToObject(opt, "mpp_tolerance", o->mpp_tolerance);
    cJSON_AddNumberToObject(opt, "min_tissue", o->min_tissue);
    cJSON_AddNumberToObject(opt, "stride", r->grid.stride_x);
    cJSON_AddStringToObject(opt, "edge", o->edge_pad ? "pad" : "ignore");
    cJSON_AddStringToObject(opt, "cam", th_cam_mode_name(o->cam));
    cJSON_AddStringToObject(opt, "precision", th_precision_name(o->precision));
    if (o->roi_w > 0) {
        double roi[4] = {(double)o->roi_x, (double)o->roi_y, (double)o->roi_w, (double)o->roi_h};
        cJSON_AddItemToObject(opt, "roi", cJSON_CreateDoubleArray(roi, 4));
    } else {
        cJSON_AddNullToObject(opt, "roi");
    }
}

bool th_report_write_run_json(const th_result *result, const th_model *model,
                              const th_report_info *info, const char *path, th_error **err)
{
    // the model's file, hashed once per model; a model from memory: the path the caller gives
    char sha[65] = "";
    if (!th_model_get_sha256(model, sha, err) ||
        (!sha[0] && info && info->model_path && !th_sha256_file(info->model_path, sha, err))) {
        return false;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "tileheat", th_version());
    cJSON *m = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(m, "path", info && info->model_path ? info->model_path : "");
    cJSON_AddStringToObject(m, "sha256", sha);
    char pre[256];
    th_model_describe_preprocess(model, pre, sizeof(pre));
    cJSON_AddStringToObject(m, "format", th_model_get_format(model));
    cJSON_AddStringToObject(m, "preprocess", pre);
    if (model->meta_file[0]) { // a Keras model's sidecar JSON, next to the model file
        cJSON_AddStringToObject(m, "sidecar", model->meta_file);
    }
    cJSON *sl = cJSON_AddObjectToObject(root, "slide");
    cJSON_AddStringToObject(sl, "path", info && info->slide_path ? info->slide_path : "");
    int64_t total, skipped;
    th_result_get_tile_counts(result, &total, &skipped);
    cJSON_AddNumberToObject(sl, "width", (double)result->grid.slide_w);
    cJSON_AddNumberToObject(sl, "height", (double)result->grid.slide_h);
    add_resolution(root, result);
    add_run_options(root, result, info);
    cJSON *tiles = cJSON_AddObjectToObject(root, "tiles");
    cJSON_AddNumberToObject(tiles, "total", (double)total);
    cJSON_AddNumberToObject(tiles, "processed", (double)result->n_tiles);
    cJSON_AddNumberToObject(tiles, "skipped", (double)skipped);
    add_performance(root, result, info);
    return write_tree(root, path, err);
}
