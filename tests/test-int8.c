/* SPDX-License-Identifier: MIT */
/* int8 inference (--precision int8) against float32 on the real CMU-1-Small-Region slide, every
 * full tile run, with the bundled model and two generated ones (BatchNorm; VGG16's layer
 * pattern), both in tile mode (int8 runs isolated tiles):
 *   - the int8 engine really quantises (its convolutions before the last pooling are int8) and
 *     its outputs differ from float32's;
 *   - per-class percentages within 0.5 points of float32, the tiles' top class the same for at
 *     least 98 % of tiles, and every class's CAM grid correlated with float32's by at least 0.98
 *     (Pearson): issue 18's accuracy bar;
 *   - 1 and 2 threads give the same bytes (the calibration sample and its maxima do not depend on
 *     the thread count);
 *   - report fields: precision int8, the calibration tiles, a warning that the run is not
 *     seam-free; the reference engine refuses int8 with one line. */
#include <config.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "result.h"
#include "tap.h"
#include "testutil.h"

static th_slide *slide;

static th_result *run(const th_model *m, th_precision precision, int threads, th_engine_kind engine,
                      th_error **err)
{
    th_run_options opt;
    th_run_options_init(&opt);
    opt.min_tissue = 0;
    opt.cam = precision == TH_PRECISION_INT8 ? TH_CAM_SEAMLESS : TH_CAM_TILE; // int8: falls back
    opt.threads = threads;
    opt.engine = engine;
    opt.precision = precision;
    return th_run(slide, m, &opt, err);
}

// Pearson correlation of class c's CAM grids over the cells both ran.
static double cam_pearson(const th_result *a, const th_result *b, int c)
{
    int64_t gw, gh;
    th_result_get_cam_grid(a, &gw, &gh, NULL, NULL, NULL, NULL);
    float *ra = th_malloc(sizeof(float) * gw, NULL), *rb = th_malloc(sizeof(float) * gw, NULL);
    double n = 0, sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
    for (int64_t y = 0; y < gh; y++) {
        th_result_read_cam_row(a, c, y, ra);
        th_result_read_cam_row(b, c, y, rb);
        for (int64_t x = 0; x < gw; x++) {
            if (!isnan(ra[x]) && !isnan(rb[x])) {
                n++;
                sa += ra[x];
                sb += rb[x];
                saa += (double)ra[x] * ra[x];
                sbb += (double)rb[x] * rb[x];
                sab += (double)ra[x] * rb[x];
            }
        }
    }
    th_free(ra);
    th_free(rb);
    double cov = sab / n - sa / n * sb / n;
    return cov / sqrt((saa / n - sa / n * sa / n) * (sbb / n - sb / n * sb / n));
}

// Convolutions the int8 plan should quantise: those before the last pooling whose input comes
// after a ReLU (the first convolution takes the normalised image).
static int int8_convs_expected(const th_model *m)
{
    int last_pool = -1, n = 0;
    for (int i = 0; i < m->n_layers; i++) {
        last_pool = m->layers[i].kind == TH_LAYER_MAXPOOL ? i : last_pool;
    }
    bool nonneg = false;
    for (int i = 0; i < m->n_layers; i++) {
        const th_layer *l = &m->layers[i];
        if (l->kind == TH_LAYER_CONV) {
            n += nonneg && i < last_pool;
            nonneg = l->relu;
        } else if (l->kind == TH_LAYER_RELU) {
            nonneg = true;
        }
    }
    return n;
}

static void check_model(const char *src_rel, const char *name)
{
    th_model *m = tu_load_model(src_rel);
    int tw, th;
    th_model_get_input_size(m, &tw, &th);
    float *ones = th_malloc(sizeof(float) * m->n_layers, NULL);
    for (int i = 0; i < m->n_layers; i++) {
        ones[i] = 1;
    }
    th_error *err = NULL;
    th_engine *e = th_engine_new_int8(m, tw, th, ones, &err);
    int want = int8_convs_expected(m);
    ok(e && e->n_int8 == want && want > 0, "%s: the int8 plan quantises %d convolutions (%d)", name,
       e ? e->n_int8 : -1, want);
    th_engine_free(e);
    th_free(ones);
    th_error_free(err);
    err = NULL;

    th_result *f = run(m, TH_PRECISION_FP32, 2, TH_ENGINE_WINOGRAD, &err);
    th_result *q = run(m, TH_PRECISION_INT8, 2, TH_ENGINE_WINOGRAD, &err);
    if (!ok(f && q, "%s: float32 and int8 runs%s%s", name, err ? ": " : "",
            err ? th_error_message(err) : "")) {
        th_error_free(err);
        th_result_free(f);
        th_result_free(q);
        th_model_free(m);
        return;
    }
    ok(q->int8.tiles == 16 && q->opt.precision == TH_PRECISION_INT8 &&
           th_result_get_cam_mode(q) == TH_CAM_TILE,
       "%s: int8 calibrated on %d tiles, tile mode; on them: %.3f points, top class differs on %d, "
       "CAM correlation %.4f",
       name, q->int8.tiles, q->int8.percent, q->int8.flips, q->int8.correlation);
    ok(th_result_get_warning_count(q) == 1 && strstr(th_result_get_warning(q, 0), "int8") != NULL,
       "%s: and says it is not seam-free: %s", name,
       th_result_get_warning_count(q) ? th_result_get_warning(q, 0) : "");
    ok(!tu_same_result(f, q), "%s: int8 outputs differ from float32's (it is not float32 again)",
       name);
    double worst = 0;
    for (int c = 0; c < f->n_classes; c++) {
        worst = fmax(worst, fabs(f->percent[c] - q->percent[c]));
    }
    ok(worst <= 0.5, "%s: per-class percentages within %.3f points of float32 (<= 0.5)", name,
       worst);
    int64_t agree = 0;
    for (int64_t t = 0; t < f->n_tiles; t++) {
        int bf = 0, bq = 0;
        for (int c = 1; c < f->n_classes; c++) {
            bf = f->probs[t * f->n_classes + c] > f->probs[t * f->n_classes + bf] ? c : bf;
            bq = q->probs[t * q->n_classes + c] > q->probs[t * q->n_classes + bq] ? c : bq;
        }
        agree += bf == bq;
    }
    ok(agree >= 0.98 * (double)f->n_tiles, "%s: top class agrees on %lld of %lld tiles (>= 98 %%)",
       name, (long long)agree, (long long)f->n_tiles);
    double least = 1;
    for (int c = 0; c < f->n_classes; c++) {
        least = fmin(least, cam_pearson(f, q, c));
    }
    ok(least >= 0.98, "%s: every class's CAM grid correlates with float32's by >= %.4f (>= 0.98)",
       name, least);
    th_result *one = run(m, TH_PRECISION_INT8, 1, TH_ENGINE_WINOGRAD, NULL);
    ok(tu_same_result(q, one), "%s: int8 on 1 and 2 threads gives the same bytes", name);
    th_result_free(one);
    th_result_free(f);
    th_result_free(q);
    th_model_free(m);
}

int main(void)
{
#ifndef HAVE_DNNL
    skip_all("int8 needs the fast engine (oneDNN), not built in");
#else
    plan(0);
    slide = tu_open_slide("slides/CMU-1-Small-Region.svs");
    check_model("models/default.onnx", "default");
    check_model("tests/data/models/seam-bn.onnx", "seam-bn");
    check_model("tests/data/models/seam-vgg16.onnx", "seam-vgg16");

    th_model *m = tu_load_model("models/default.onnx");
    th_error *err = NULL;
    th_result *r = run(m, TH_PRECISION_INT8, 2, TH_ENGINE_REF, &err);
    ok(!r && err && strstr(th_error_message(err), "fast") != NULL,
       "the reference engine refuses int8: %s", err ? th_error_message(err) : "(no error)");
    th_error_free(err);
    th_result_free(r);
    th_model_free(m);
    th_slide_close(slide);
#endif
    return 0;
}
