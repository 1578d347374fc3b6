/* SPDX-License-Identifier: MIT */
/* The per-class breakdown as files: report.json (cJSON) and tiles.csv. Both depend only on the
 * inputs and the options that change results: no timings, thread counts or temporary paths. */
#include <config.h>

#include <cjson/cJSON.h>

#include "model.h"
#include "result.h"

#define TH_REPORT_SCHEMA 1

// Percentages are rounded to 1e-4 so the file reads well; the sums still come to 100.
static double round4(double v)
{
    return round(v * 1e4) / 1e4;
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
    cJSON *tile = cJSON_AddObjectToObject(root, "tile");
    cJSON_AddNumberToObject(tile, "width", r->grid.tile_w);
    cJSON_AddNumberToObject(tile, "height", r->grid.tile_h);
    cJSON_AddNumberToObject(tile, "cam_width", r->cam_w);
    cJSON_AddNumberToObject(tile, "cam_height", r->cam_h);
    cJSON *tiles = cJSON_AddObjectToObject(root, "tiles");
    cJSON_AddNumberToObject(tiles, "columns", r->grid.cols);
    cJSON_AddNumberToObject(tiles, "rows", r->grid.rows);
    cJSON_AddNumberToObject(tiles, "total", (double)r->grid.cols * r->grid.rows);
    cJSON_AddNumberToObject(tiles, "processed", (double)r->n_tiles);
    cJSON *classes = cJSON_AddArrayToObject(root, "classes");
    for (int c = 0; c < r->n_classes; c++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", th_model_get_class_name(model, c));
        cJSON_AddNumberToObject(o, "percent", round4(r->percent[c]));
        cJSON_AddNumberToObject(o, "argmax_percent", round4(r->argmax_percent[c]));
        cJSON_AddBoolToObject(o, "background", th_model_is_background_class(model, c));
        cJSON_AddItemToArray(classes, o);
    }
    return root;
}

bool th_report_write_json(const th_result *result, const th_model *model,
                          const th_report_info *info, const char *path, th_error **err)
{
    th_outfile out;
    cJSON *root = build_json(result, model, info);
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
    return ok;
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

bool th_report_write_csv(const th_result *result, const th_model *model, const char *path,
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
        th_outfile_printf(&out, "%d,%d,%lld,%lld,%lld,%lld", col, row, (long long)x,
                          (long long)y, (long long)w, (long long)h);
        const float *p = th_result_get_probs(result, t);
        for (int c = 0; c < result->n_classes; c++) {
            th_outfile_printf(&out, ",%.6f", p[c]);
        }
        fputc('\n', fp);
    }
    return th_outfile_commit(&out, err);
}

bool th_report_write_run_json(const th_result *result, const th_model *model,
                              const th_report_info *info, const char *path, th_error **err)
{
    th_error_set(err, "run.json is not implemented yet");
    return false;
}
