/* SPDX-License-Identifier: MIT */
/* Tests for report.c: report.json keys and values (parsed back with cJSON), tiles.csv layout,
 * CSV quoting, and that a failed write leaves no file. */
#include <config.h>

#define TH_ALLOW_RAW // tests may use the C library directly

#include <cjson/cJSON.h>
#include <sys/stat.h>

#include "model.h"
#include "result.h"
#include "tap.h"

static char *names[3] = {"background", "stroma", "cells, dense"};
static bool background[3] = {true, false, false};

static th_model make_model(void)
{
    th_model m = {0};
    m.n_classes = 3;
    m.class_names = names;
    m.background = background;
    return m;
}

// 2×2 grid of 224-px tiles at level 1 (downsample 2), probabilities chosen by hand.
static th_result *make_result(void)
{
    th_grid g = {.level = 1, .downsample = 2.0, .tile_w = 224, .tile_h = 224, .cols = 2,
                 .rows = 2, .level_w = 500, .level_h = 460};
    th_result *r = th_result_new(&g, 3, 4, 4, 4, NULL);
    const float p[4][3] = {{0.7f, 0.2f, 0.1f}, {0.1f, 0.6f, 0.3f}, {0.2f, 0.2f, 0.6f},
                           {0.0f, 0.5f, 0.5f}};
    for (int t = 0; t < 4; t++) {
        th_result_add_tile(r, t, t % 2, t / 2, NULL, NULL);
        memcpy(r->probs + t * 3, p[t], sizeof(p[t]));
    }
    th_result_summarize(r);
    return r;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        return NULL;
    }
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    buf[n] = 0;
    fclose(fp);
    return buf;
}

static void test_json(const th_result *r, const th_model *m)
{
    char path[512];
    th_error *err = NULL;
    snprintf(path, sizeof(path), "%s/report.json", test_tmpdir());
    th_report_info info = {.slide_path = "a/slide.svs", .model_path = "m.onnx",
                           .command = "multi", .level = 1};
    ok(th_report_write_json(r, m, &info, path, &err), "report.json written");
    cJSON *root = cJSON_Parse(slurp(path));
    ok(root != NULL, "report.json parses");
    is_int(cJSON_GetObjectItem(root, "schema")->valueint, 3, "schema 3");
    ok(!cJSON_GetObjectItem(root, "performance"), "no performance object: timings are in run.json");
    is_string(cJSON_GetObjectItem(root, "slide")->valuestring, "a/slide.svs", "slide as given");
    is_string(cJSON_GetObjectItem(root, "model")->valuestring, "m.onnx", "model as given");
    cJSON *tiles = cJSON_GetObjectItem(root, "tiles");
    is_int(cJSON_GetObjectItem(tiles, "total")->valueint, 4, "tiles.total");
    is_int(cJSON_GetObjectItem(tiles, "processed")->valueint, 4, "tiles.processed");
    cJSON *classes = cJSON_GetObjectItem(root, "classes");
    is_int(cJSON_GetArraySize(classes), 3, "three classes");
    double sum = 0, argsum = 0;
    const double want[3] = {25, 37.5, 37.5}, want_arg[3] = {25, 50, 25};
    for (int c = 0; c < 3; c++) {
        cJSON *o = cJSON_GetArrayItem(classes, c);
        is_string(cJSON_GetObjectItem(o, "name")->valuestring, names[c], "class %d name", c);
        double pct = cJSON_GetObjectItem(o, "percent")->valuedouble;
        double arg = cJSON_GetObjectItem(o, "argmax_percent")->valuedouble;
        is_double(pct, want[c], 1e-3, "class %d percent", c);
        is_double(arg, want_arg[c], 1e-9, "class %d argmax_percent (ties to the first)", c);
        sum += pct;
        argsum += arg;
    }
    is_double(sum, 100, 1e-3, "percentages sum to 100");
    is_double(argsum, 100, 1e-9, "argmax percentages sum to 100");
    cJSON_Delete(root);
}

static void test_csv(const th_result *r, const th_model *m)
{
    char path[512];
    th_error *err = NULL;
    snprintf(path, sizeof(path), "%s/tiles.csv", test_tmpdir());
    ok(th_report_write_csv(r, m, path, &err), "tiles.csv written");
    const char *text = slurp(path);
    like(text, "col,row,x,y,w,h,background,stroma,\"cells, dense\"\n",
         "header with the class names, quoted where needed");
    like(text, "\n1,0,448,0,448,448,0.100000,0.600000,0.300000\n",
         "tile (1,0) in level-0 pixels at downsample 2");
    like(text, "\n1,1,448,448,448,448,0.000000,0.500000,0.500000\n", "last tile");
    int lines = 0;
    for (const char *p = text; p && *p; p++) {
        lines += *p == '\n';
    }
    is_int(lines, 5, "header + one line per tile");
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// The p-th percentile of class c's CAM cells clipped at 0, by sorting them (linear between ranks,
// the maximum where it comes out 0): the display scale the drawing records, found independently.
static float sorted_percentile(const th_result *r, int c, double p)
{
    int64_t gw, gh;
    th_result_get_cam_grid(r, &gw, &gh, NULL, NULL, NULL, NULL);
    float *all = calloc((size_t)(gw * gh), sizeof(float)), *row = calloc((size_t)gw, sizeof(float));
    size_t n = 0;
    for (int64_t y = 0; y < gh; y++) {
        th_result_read_cam_row(r, c, y, row);
        for (int64_t x = 0; x < gw; x++) {
            all[n++] = row[x] > 0 ? row[x] : 0;
        }
    }
    qsort(all, n, sizeof(float), cmp_float);
    double pos = p / 100 * (double)(n - 1);
    size_t j = (size_t)pos;
    double frac = pos - (double)j;
    float v = (float)(j + 1 < n ? all[j] * (1 - frac) + all[j + 1] * frac : all[j]);
    v = v > 0 ? v : all[n - 1];
    free(all);
    free(row);
    return v;
}

// report.json's `drawing` object and per-class colour and `drawn`, for a multi and a single
// drawing of a result whose CAMs are known.
static void test_drawing(const th_model *m)
{
    th_grid g = {.level = 0, .downsample = 1, .tile_w = 32, .tile_h = 32, .cols = 2, .rows = 2,
                 .level_w = 64, .level_h = 64};
    th_result *r = th_result_new(&g, 3, 4, 4, 4, NULL);
    for (int t = 0; t < 4; t++) {
        float cam[3 * 16];
        for (int i = 0; i < 3 * 16; i++) {
            cam[i] = (float)((i * 7 + t * 13) % 23) - 5.0f; // some negative, all classes differ
        }
        th_result_add_tile(r, t, t % 2, t / 2, cam, NULL);
        r->probs[t * 3 + t % 3] = 1;
    }
    th_result_summarize(r);
    th_render_options ro;
    th_render_options_init(&ro);
    ro.multi = true;
    ro.n_shown = 2;
    ro.shown[0] = 2;
    ro.shown[1] = 1;
    ro.percentile = 90;
    char path[512];
    snprintf(path, sizeof(path), "%s/drawing.json", test_tmpdir());
    th_report_info info = {.command = "multi", .render = &ro, .shown_by = "--top 2"};
    th_error *err = NULL;
    ok(th_report_write_json(r, m, &info, path, &err), "report.json with a drawing written");
    cJSON *root = cJSON_Parse(slurp(path));
    cJSON *d = cJSON_GetObjectItem(root, "drawing");
    ok(d && strcmp(cJSON_GetObjectItem(d, "mode")->valuestring, "multi") == 0 &&
           strcmp(cJSON_GetObjectItem(d, "shown_by")->valuestring, "--top 2") == 0 &&
           cJSON_GetObjectItem(d, "threshold")->valuedouble == ro.threshold &&
           cJSON_GetObjectItem(d, "percentile")->valuedouble == 90,
       "drawing: mode, why, threshold and percentile as drawn");
    cJSON *shown = cJSON_GetObjectItem(d, "shown");
    bool scales = cJSON_GetArraySize(shown) == 2;
    for (int i = 0; scales && i < 2; i++) {
        cJSON *o = cJSON_GetArrayItem(shown, i);
        float want = sorted_percentile(r, ro.shown[i], 90);
        scales = strcmp(cJSON_GetObjectItem(o, "name")->valuestring, names[ro.shown[i]]) == 0 &&
                 cJSON_GetObjectItem(o, "scale_low")->valuedouble == 0 &&
                 (float)cJSON_GetObjectItem(o, "scale_high")->valuedouble == want && want > 0;
        if (!scales) {
            diag("%s: scale_high %g, sorted p90 %g", names[ro.shown[i]],
                 cJSON_GetObjectItem(o, "scale_high")->valuedouble, want);
        }
    }
    ok(scales, "drawing: each shown class's scale is its 90th percentile found by sorting");
    bool colours = true;
    for (int c = 0; c < 3; c++) {
        cJSON *o = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "classes"), c);
        uint8_t rgb[3];
        char hex[8];
        th_render_class_color(&ro, m, c, rgb, NULL);
        snprintf(hex, sizeof(hex), "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
        colours = colours && strcmp(cJSON_GetObjectItem(o, "color")->valuestring, hex) == 0 &&
                  cJSON_IsTrue(cJSON_GetObjectItem(o, "drawn")) == (c != 0);
    }
    ok(colours, "classes: each one's colour as th_render_class_color says, drawn when shown");
    cJSON_Delete(root);
    ro.multi = false;
    ro.n_shown = 1;
    ro.colormap = TH_COLORMAP_MAGMA;
    ro.norm = TH_NORM_RAW;
    ok(th_report_write_json(r, m, &info, path, &err), "report.json with a single drawing");
    root = cJSON_Parse(slurp(path));
    d = cJSON_GetObjectItem(root, "drawing");
    cJSON *o = cJSON_GetArrayItem(cJSON_GetObjectItem(d, "shown"), 0);
    ok(d && strcmp(cJSON_GetObjectItem(d, "mode")->valuestring, "single") == 0 &&
           strcmp(cJSON_GetObjectItem(d, "colormap")->valuestring, "magma") == 0 &&
           strcmp(cJSON_GetObjectItem(d, "norm")->valuestring, "raw") == 0 &&
           cJSON_GetObjectItem(o, "scale_low")->valuedouble == -5 &&
           cJSON_GetObjectItem(o, "scale_high")->valuedouble == 17 &&
           !cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "classes"), 2), "color"),
       "single, raw: the colormap's name and the class's smallest and largest raw values");
    cJSON_Delete(root);
    th_result_free(r);
}

static void test_failure(const th_result *r, const th_model *m)
{
    char path[512];
    th_error *err = NULL;
    struct stat st;
    snprintf(path, sizeof(path), "%s/missing/report.json", test_tmpdir());
    ok(!th_report_write_json(r, m, NULL, path, &err), "writing into a missing directory fails");
    const char *msg = err ? th_error_message(err) : "";
    const char *first = strstr(msg, path);
    ok(err && !strchr(msg, '\n') && first == msg && !strstr(first + 1, path),
       "one-line message naming the file once: %s", msg);
    ok(stat(path, &st) != 0, "no file left behind");
    th_error_free(err);
    err = NULL;
    snprintf(path, sizeof(path), "%s/missing/tiles.csv", test_tmpdir());
    bool failed = !th_report_write_csv(r, m, path, &err);
    ok(failed && err && strncmp(th_error_message(err), path, strlen(path)) == 0,
       "tiles.csv into a missing directory: the message names the file: %s",
       err ? th_error_message(err) : "");
    th_error_free(err);
}

int main(void)
{
    plan(0);
    th_model m = make_model();
    th_result *r = make_result();
    test_json(r, &m);
    test_csv(r, &m);
    test_failure(r, &m);
    test_drawing(&m);
    th_result_free(r);
    return 0;
}
