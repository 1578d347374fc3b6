/* SPDX-License-Identifier: MIT */
/* int8 calibration: the sample, its float32 and int8 passes, the check, and the calibration file
 * (see calibrate.h). */
#include <config.h>

#include <cjson/cJSON.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "calibrate.h"
#include "cam.h"
#include "kernels.h"
#include "th-private.h"
#include "tiler.h"

/* The bar int8 must clear against float32 on the sample (issue 18), or the run warns. */
#define INT8_PERCENT 0.5
#define INT8_AGREEMENT 0.98
#define INT8_CORRELATION 0.98

/* The calibration file's format name and version. */
#define FILE_FORMAT "tileheat-calibration"
#define FILE_VERSION 1

th_calibration *th_calibration_alloc(const th_model *model, th_engine_kind kind, int threads,
                                     int tile_w, int tile_h, int cap, th_error **err)
{
    th_calibration *cal = th_calloc(1, sizeof(*cal), err);
    if (!cal) {
        return NULL;
    }
    *cal = (th_calibration){.model = model,
                            .kind = kind == TH_ENGINE_REF ? TH_ENGINE_FAST : kind,
                            .threads = threads,
                            .tile_w = tile_w,
                            .tile_h = tile_h,
                            .cap = TH_MAX(cap, 0)};
    size_t bytes;
    if (!th_size_mul((size_t)cal->cap, (size_t)tile_w * tile_h * 3, &bytes, err) ||
        !(cal->rgb = th_malloc(bytes + 1, err))) {
        th_calibration_free(cal);
        return NULL;
    }
    return cal;
}

void th_calibration_free(th_calibration *cal)
{
    if (!cal) {
        return;
    }
    for (int i = 0; i < cal->n_slides; i++) {
        th_free(cal->slide_names[i]);
    }
    th_free(cal->slide_names);
    th_free(cal->slide_tiles);
    th_free(cal->rgb);
    th_free(cal->act_max);
    th_free(cal->act_mean);
    th_free(cal->path);
    th_free(cal);
}

// A thread's error (or NULL) kept if it is the first one; the others are freed.
static void keep_first(_Atomic(th_error *) *first, th_error *e)
{
    th_error *expected = NULL;
    if (e && !atomic_compare_exchange_strong(first, &expected, e)) {
        th_error_free(e);
    }
}

// After the threads: false with the first error, if any.
static bool take_first(_Atomic(th_error *) *first, th_error **err)
{
    th_error *e = atomic_load(first);
    if (e) {
        th_error_propagate(err, &e);
        return false;
    }
    return true;
}

bool th_calibration_add_tiles(th_calibration *cal, const th_result *r, th_slide *slide, int k,
                              const char *name, th_error **err)
{
    const th_grid *g = &r->grid;
    if (g->tile_w != cal->tile_w || g->tile_h != cal->tile_h) {
        th_error_set(err, "the slide's tiles are %d×%d, the calibration's %d×%d", g->tile_w,
                     g->tile_h, cal->tile_w, cal->tile_h);
        return false;
    }
    int n = (int)TH_MIN((int64_t)TH_MIN(k, cal->cap - cal->n), r->n_tiles);
    char **names = th_realloc(cal->slide_names, sizeof(char *) * (cal->n_slides + 1), err);
    cal->slide_names = names ? names : cal->slide_names;
    int *counts =
        names ? th_realloc(cal->slide_tiles, sizeof(int) * (cal->n_slides + 1), err) : NULL;
    cal->slide_tiles = counts ? counts : cal->slide_tiles;
    char *copy = counts ? th_strdup(name ? name : "", err) : NULL;
    if (!copy) {
        return false;
    }
    cal->slide_names[cal->n_slides] = copy;
    cal->slide_tiles[cal->n_slides++] = n;
    const size_t tile = (size_t)cal->tile_w * cal->tile_h * 3;
    size_t region = th_grid_scratch_size(g);
    _Atomic(th_error *) first = NULL;
#ifdef _OPENMP
#pragma omp parallel num_threads(TH_MIN(th_threads(cal->threads), TH_MAX(n, 1)))
#endif
    {
        th_error *e = NULL;
        uint8_t *scratch = region ? th_malloc(region, &e) : NULL;
        bool ok = scratch || !region;
#ifdef _OPENMP
#pragma omp for schedule(dynamic)
#endif
        for (int i = 0; i < n; i++) {
            int64_t t = (int64_t)i * r->n_tiles / n;
            ok = ok && th_grid_read_tile(g, slide, r->tile_col[t], r->tile_row[t],
                                         cal->rgb + (size_t)(cal->n + i) * tile, scratch, &e);
        }
        keep_first(&first, e);
        th_free(scratch);
    }
    if (!take_first(&first, err)) {
        return false;
    }
    cal->n += n;
    return true;
}

// The sample through `engine`: tile k's logits and CAM into its slots and (when act_max is not
// NULL, a float32 engine) each layer's largest output into act_max and its channel means, tile
// k's, into tile_means' slot k. The first error found is reported.
static bool sample_pass(const th_calibration *cal, const th_engine *engine, float *act_max,
                        float *tile_means, float *logits, float *cams, th_error **err)
{
    const size_t per_tile = th_model_act_offset(cal->model, cal->model->n_layers);
    const th_model *m = cal->model;
    const int nc = m->n_classes;
    const size_t cells = (size_t)engine->feat_w * engine->feat_h;
    const size_t tile = (size_t)cal->tile_w * cal->tile_h * 3;
    _Atomic(th_error *) first = NULL;
#ifdef _OPENMP
#pragma omp parallel num_threads(TH_MIN(th_threads(cal->threads), TH_MAX(cal->n, 1)))
#endif
    {
        th_error *e = NULL;
        th_engine_ws *ws = th_engine_ws_new(engine, &e);
        float *feat = th_malloc(sizeof(float) * engine->feat_c * cells + 1, &e);
        float *mine = act_max ? th_calloc(TH_MAX(m->n_layers, 1), sizeof(float), &e) : NULL;
        bool ok = ws && feat && (mine || !act_max);
#ifdef _OPENMP
#pragma omp for schedule(dynamic)
#endif
        for (int k = 0; k < cal->n; k++) {
            const uint8_t *rgb = cal->rgb + (size_t)k * tile;
            float *lg = logits + (size_t)k * nc;
            ok = ok &&
                 (act_max ? th_engine_calibrate(engine, ws, rgb, mine,
                                                tile_means + (size_t)k * per_tile, lg, feat, &e)
                          : th_engine_forward(engine, ws, rgb, lg, NULL, feat, &e));
            if (ok) {
                th_cam_compute(feat, engine->feat_c, engine->feat_h, engine->feat_w, m->dense_w, nc,
                               cams + (size_t)k * nc * cells);
            }
        }
#ifdef _OPENMP
#pragma omp critical
#endif
        {
            for (int i = 0; mine && i < m->n_layers; i++) {
                act_max[i] = fmaxf(act_max[i], mine[i]); // a maximum: the same in any order
            }
            keep_first(&first, e);
        }
        th_free(mine);
        th_free(feat);
        th_engine_ws_free(ws);
    }
    return take_first(&first, err);
}

// How far int8 is from float32 on the sample (f: float32's logits and CAMs, q: int8's): the
// largest per-class percentage difference, the tiles whose top class differs, the least CAM
// correlation (Pearson, over every cell of the sample) of any class.
static bool int8_check(int n, int nc, size_t cells, const float *lf, const float *lq,
                       const float *cf, const float *cq, th_int8_check *c, th_error **err)
{
    float *pf = th_malloc(sizeof(float) * 2 * nc, err), *pq = pf + nc;
    double *sum = pf ? th_calloc(nc, sizeof(double), err) : NULL;
    if (!sum) {
        th_free(pf);
        return false;
    }
    c->flips = 0;
    for (int k = 0; k < n; k++) {
        th_kernel_softmax(lf + (size_t)k * nc, nc, pf);
        th_kernel_softmax(lq + (size_t)k * nc, nc, pq);
        int bf = 0, bq = 0;
        for (int j = 0; j < nc; j++) {
            sum[j] += (double)pq[j] - pf[j];
            bf = pf[j] > pf[bf] ? j : bf;
            bq = pq[j] > pq[bq] ? j : bq;
        }
        c->flips += bf != bq;
    }
    c->tiles = n;
    c->percent = 0;
    c->correlation = 1;
    for (int j = 0; j < nc; j++) {
        c->percent = fmax(c->percent, fabs(100.0 * sum[j] / TH_MAX(n, 1)));
        double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0, cnt = (double)n * cells;
        for (int k = 0; k < n; k++) {
            const float *x = cf + ((size_t)k * nc + j) * cells,
                        *y = cq + ((size_t)k * nc + j) * cells;
            for (size_t i = 0; i < cells; i++) {
                sx += x[i];
                sy += y[i];
                sxx += (double)x[i] * x[i];
                syy += (double)y[i] * y[i];
                sxy += (double)x[i] * y[i];
            }
        }
        double vx = sxx / cnt - sx / cnt * sx / cnt, vy = syy / cnt - sy / cnt * sy / cnt;
        double rho = vx > 0 && vy > 0 ? (sxy / cnt - sx / cnt * sy / cnt) / sqrt(vx * vy) : 1;
        c->correlation = fmin(c->correlation, rho);
    }
    th_free(sum);
    th_free(pf);
    return true;
}

// Planning under the calibration's threads (weight reorders), then back to the caller's.
static th_engine *new_int8(const th_calibration *cal, th_error **err)
{
    int outer = th_plan_threads_begin(cal->threads);
    th_engine *e =
        th_engine_new_int8(cal->model, cal->tile_w, cal->tile_h, cal->act_max, cal->act_mean, err);
    th_plan_threads_end(outer);
    return e;
}

bool th_calibration_measure(th_calibration *cal, const th_engine *fp32, th_engine **int8,
                            th_error **err)
{
    const th_model *m = cal->model;
    const int n = cal->n, nc = m->n_classes;
    const size_t cells = (size_t)fp32->feat_w * fp32->feat_h;
    const size_t per_tile = th_model_act_offset(m, m->n_layers);
    th_free(cal->act_max);
    th_free(cal->act_mean);
    cal->act_max = th_calloc(TH_MAX(m->n_layers, 1), sizeof(float), err);
    cal->act_mean = cal->act_max ? th_calloc(per_tile + 1, sizeof(float), err) : NULL;
    float *tile_means = cal->act_mean ? th_malloc(sizeof(float) * n * per_tile + 1, err) : NULL;
    float *lg = tile_means ? th_malloc(sizeof(float) * 2 * n * nc + 1, err) : NULL;
    float *cam = lg ? th_malloc(sizeof(float) * 2 * n * nc * cells + 1, err) : NULL;
    th_engine *q = NULL;
    bool ok = cam && sample_pass(cal, fp32, cal->act_max, tile_means, lg, cam, err);
    for (size_t j = 0; ok && j < per_tile; j++) { // the tiles' means in tile order: any threads
        double sum = 0;
        for (int k = 0; k < n; k++) {
            sum += tile_means[(size_t)k * per_tile + j];
        }
        cal->act_mean[j] = (float)(sum / n);
    }
    th_free(tile_means);
    ok = ok && (q = new_int8(cal, err)) != NULL &&
         sample_pass(cal, q, NULL, NULL, lg + (size_t)n * nc, cam + (size_t)n * nc * cells, err) &&
         int8_check(n, nc, cells, lg, lg + (size_t)n * nc, cam, cam + (size_t)n * nc * cells,
                    &cal->check, err);
    th_calibration_short(cal);
    if (ok && int8) {
        *int8 = q;
        q = NULL;
    }
    th_engine_free(q);
    th_free(cam);
    th_free(lg);
    if (!ok) {
        TH_FREE(cal->act_max);
        TH_FREE(cal->act_mean);
        th_error_prefix(err, "int8 calibration: ");
    }
    return ok;
}

bool th_calibration_short(th_calibration *cal)
{
    const th_int8_check *c = &cal->check;
    cal->warning[0] = 0;
    // One flip in a small sample is a tile on a class boundary, not a trend: the agreement bar
    // allows it.
    int allowed = TH_MAX(1, (int)floor((1 - INT8_AGREEMENT) * c->tiles));
    if (c->tiles == 0 ||
        (c->percent <= INT8_PERCENT && c->correlation >= INT8_CORRELATION && c->flips <= allowed)) {
        return false;
    }
    snprintf(cal->warning, sizeof(cal->warning),
             "int8 is further from float32 than it should be on the %d calibration "
             "tiles (percentages by up to %.2f points, the top class the same on "
             "%.0f %%, CAM correlation %.3f): use --precision fp32",
             c->tiles, c->percent, 100.0 * (c->tiles - c->flips) / c->tiles, c->correlation);
    return true;
}

/* ---------------------------------------------------------------- the public calibration */

th_calibration *th_calibration_new(const th_model *model, const th_run_options *opt, int tiles,
                                   th_error **err)
{
    th_run_options defaults;
    if (!opt) {
        th_run_options_init(&defaults);
        opt = &defaults;
    }
    int w, h;
    if (!th_run_tile_size(model, opt, &w, &h, err)) {
        return NULL;
    }
    if (tiles < 1) {
        th_error_set(err, "a calibration needs at least one tile, not %d", tiles);
        return NULL;
    }
    return th_calibration_alloc(model, opt->engine, opt->threads, w, h, tiles, err);
}

bool th_calibration_add(th_calibration *cal, const char *path, const th_run_options *opt, int tiles,
                        th_error **err)
{
    if (cal->act_max) {
        th_error_set(err, "the calibration is finished: no more slides");
        return false;
    }
    th_slide *slide = th_slide_open(path, err);
    th_result *r = slide ? th_run_plan_tiles(slide, cal->model, opt, err) : NULL;
    bool ok = r && th_calibration_add_tiles(cal, r, slide, tiles, path, err);
    th_result_free(r);
    th_slide_close(slide);
    if (!ok) {
        th_error_prefix(err, "%s: ", path);
    }
    return ok;
}

bool th_calibration_finish(th_calibration *cal, th_error **err)
{
    if (cal->n == 0) {
        th_error_set(err, "int8 calibration: no tissue tiles in the slides");
        return false;
    }
    int outer = th_plan_threads_begin(cal->threads);
    th_engine *fp32 = th_engine_new(cal->model, cal->kind, cal->tile_w, cal->tile_h, err);
    th_plan_threads_end(outer);
    bool ok = fp32 && th_calibration_measure(cal, fp32, NULL, err);
    th_engine_free(fp32);
    return ok;
}

void th_calibration_get_check(const th_calibration *cal, int *tiles, double *max_percent_difference,
                              double *top_class_agreement, double *min_cam_correlation)
{
    const th_int8_check *c = &cal->check;
    *tiles = c->tiles;
    *max_percent_difference = c->percent;
    *top_class_agreement = c->tiles ? 1.0 - (double)c->flips / c->tiles : 1.0;
    *min_cam_correlation = c->correlation;
}

const char *th_calibration_get_path(const th_calibration *cal)
{
    return cal->path;
}

const char *th_calibration_get_sha256(const th_calibration *cal)
{
    return cal->sha256;
}

const char *th_calibration_get_warning(const th_calibration *cal)
{
    return cal->warning[0] ? cal->warning : NULL;
}

bool th_calibration_write(const th_calibration *cal, const char *path, th_error **err)
{
    const th_model *m = cal->model;
    char sha[65];
    if (!cal->act_max) {
        th_error_set(err, "the calibration is not finished");
        return false;
    }
    if (!th_model_get_sha256(m, sha, err)) {
        return false;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", FILE_FORMAT);
    cJSON_AddNumberToObject(root, "version", FILE_VERSION);
    cJSON_AddStringToObject(root, "tileheat", PACKAGE_VERSION);
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "sha256", sha);
    cJSON_AddNumberToObject(model, "tile_width", cal->tile_w);
    cJSON_AddNumberToObject(model, "tile_height", cal->tile_h);
    cJSON *sample = cJSON_AddObjectToObject(root, "sample");
    cJSON_AddNumberToObject(sample, "tiles", cal->n);
    cJSON *slides = cJSON_AddArrayToObject(sample, "slides");
    for (int i = 0; i < cal->n_slides; i++) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "path", cal->slide_names[i]);
        cJSON_AddNumberToObject(s, "tiles", cal->slide_tiles[i]);
        cJSON_AddItemToArray(slides, s);
    }
    cJSON *layers = cJSON_AddArrayToObject(root, "layers");
    for (int i = 0; i < m->n_layers; i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "name", m->layers[i].name);
        cJSON_AddNumberToObject(l, "max", cal->act_max[i]); // a float: %.17g gives it back
        cJSON *mean = cJSON_AddArrayToObject(l, "mean");    // per channel; null: not measured
        const float *mv = cal->act_mean + th_model_act_offset(m, i);
        for (int c = 0; c < m->layers[i].c_out; c++) {
            cJSON_AddItemToArray(mean,
                                 isfinite(mv[c]) ? cJSON_CreateNumber(mv[c]) : cJSON_CreateNull());
        }
        cJSON_AddItemToArray(layers, l);
    }
    cJSON *check = cJSON_AddObjectToObject(root, "int8_check");
    double agree, corr, pct;
    int tiles;
    th_calibration_get_check(cal, &tiles, &pct, &agree, &corr);
    cJSON_AddNumberToObject(check, "tiles", tiles);
    cJSON_AddNumberToObject(check, "max_percent_difference", pct);
    cJSON_AddNumberToObject(check, "top_class_agreement", agree);
    cJSON_AddNumberToObject(check, "min_cam_correlation", corr);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    th_outfile out;
    if (!text) {
        th_error_set(err, "out of memory");
        return false;
    }
    bool ok = th_outfile_open(&out, path, err);
    if (ok) {
        th_outfile_printf(&out, "%s\n", text);
        ok = th_outfile_commit(&out, err);
    }
    cJSON_free(text);
    return ok;
}

// A number member of o, or NaN.
static double number(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

// What the file says, checked against the model; false with why[] otherwise.
static bool parse_file(th_calibration *cal, const cJSON *root, char *why, size_t len)
{
    const th_model *m = cal->model;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(model, "sha256");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    const cJSON *check = cJSON_GetObjectItemCaseSensitive(root, "int8_check");
    char want[65];
    th_error *e = NULL;
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, FILE_FORMAT) != 0) {
        snprintf(why, len, "not a tileheat calibration file (no \"format\": \"%s\")", FILE_FORMAT);
        return false;
    }
    if (number(root, "version") != FILE_VERSION) {
        snprintf(why, len, "version %g; this tileheat reads version %d", number(root, "version"),
                 FILE_VERSION);
        return false;
    }
    if (!th_model_get_sha256(m, want, &e)) {
        snprintf(why, len, "%s", th_error_message(e));
        th_error_free(e);
        return false;
    }
    if (!cJSON_IsString(sha) || strcmp(sha->valuestring, want) != 0) {
        snprintf(why, len, "made for another model (SHA-256 %.12s…, this model's %.12s…)",
                 cJSON_IsString(sha) ? sha->valuestring : "missing", want);
        return false;
    }
    cal->tile_w = (int)number(model, "tile_width");
    cal->tile_h = (int)number(model, "tile_height");
    if (!cJSON_IsArray(layers) || cJSON_GetArraySize(layers) != m->n_layers) {
        snprintf(why, len, "\"layers\" is not a list of the model's %d layers", m->n_layers);
        return false;
    }
    for (int i = 0; i < m->n_layers; i++) {
        const cJSON *l = cJSON_GetArrayItem(layers, i);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(l, "name");
        double mx = number(l, "max");
        if (!cJSON_IsString(name) || strcmp(name->valuestring, m->layers[i].name) != 0) {
            snprintf(why, len, "layer %d is not '%s'", i, m->layers[i].name);
            return false;
        }
        if (!(mx >= 0 && mx <= FLT_MAX)) {
            snprintf(why, len, "layer '%s': its \"max\" is not a finite number >= 0",
                     m->layers[i].name);
            return false;
        }
        cal->act_max[i] = (float)mx;
        const cJSON *mean = cJSON_GetObjectItemCaseSensitive(l, "mean");
        if (!cJSON_IsArray(mean) || cJSON_GetArraySize(mean) != m->layers[i].c_out) {
            snprintf(why, len, "layer '%s': its \"mean\" is not a list of its %d channels",
                     m->layers[i].name, m->layers[i].c_out);
            return false;
        }
        float *mv = cal->act_mean + th_model_act_offset(m, i);
        for (int c = 0; c < m->layers[i].c_out; c++) {
            const cJSON *v = cJSON_GetArrayItem(mean, c);
            if (!cJSON_IsNumber(v) && !cJSON_IsNull(v)) {
                snprintf(why, len, "layer '%s': a \"mean\" that is not a number",
                         m->layers[i].name);
                return false;
            }
            mv[c] = cJSON_IsNumber(v) ? (float)v->valuedouble : NAN;
        }
    }
    double tiles = number(check, "tiles"), pct = number(check, "max_percent_difference");
    double agree = number(check, "top_class_agreement"),
           corr = number(check, "min_cam_correlation");
    if (!(tiles >= 1 && tiles <= INT_MAX && pct >= 0 && agree >= 0 && agree <= 1 && corr >= -1 &&
          corr <= 1)) {
        snprintf(why, len, "\"int8_check\" is missing or out of range");
        return false;
    }
    cal->check = (th_int8_check){.tiles = (int)tiles,
                                 .percent = pct,
                                 .flips = (int)lround((1 - agree) * tiles),
                                 .correlation = corr};
    th_calibration_short(cal);
    return true;
}

th_calibration *th_calibration_read(const char *path, const th_model *model, th_error **err)
{
    size_t len = 0;
    char *text = th_read_file(path, &len, err);
    if (!text) {
        th_error_prefix(err, "%s: ", path);
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    th_free(text);
    th_calibration *cal = th_calloc(1, sizeof(*cal), err);
    char why[200] = "not JSON";
    bool ok = cal && (cal->model = model) &&
              (cal->act_max = th_calloc(TH_MAX(model->n_layers, 1), sizeof(float), err)) &&
              (cal->act_mean = th_calloc(th_model_act_offset(model, model->n_layers) + 1,
                                         sizeof(float), err)) &&
              (cal->path = th_strdup(path, err)) && th_sha256_file(path, cal->sha256, err);
    if (ok && !(root && parse_file(cal, root, why, sizeof(why)))) {
        th_error_set(err, "%s: %s", path, why);
        ok = false;
    }
    cJSON_Delete(root);
    if (!ok) {
        th_calibration_free(cal);
        return NULL;
    }
    return cal;
}
