/* SPDX-License-Identifier: MIT */
/* int8 inference (--precision int8) against float32 on the real CMU-1-Small-Region slide, every
 * full tile run, with the bundled model, the same trained with BatchNorm (tissue-bn), and two
 * generated ones with random weights (BatchNorm; VGG16's layer pattern), seam-free and in tile
 * mode:
 *   - the int8 engine really quantises (every convolution whose input is never negative is
 *     int8) and its outputs differ from float32's;
 *   - per-class percentages within 0.5 points of float32 in the same CAM mode, the tiles' top
 *     class the same for at least 98 % of tiles, and every class's CAM grid correlated with
 *     float32's by at least 0.98 (Pearson): issue 18's accuracy bar;
 *   - 1 and 2 threads give the same bytes (the calibration sample and its maxima do not depend on
 *     the thread count);
 *   - report fields: precision int8, the calibration tiles; the reference engine refuses int8
 *     with one line;
 *   - a calibration file (th_calibration_*, `tileheat calibrate`) made on the same sample as a
 *     run's own gives the same bytes, round-trips its ranges exactly, takes tiles from several
 *     slides, and is refused for another model or when it is not one. */
#include <config.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"
#include "engine.h"
#include "result.h"
#include "stream.h"
#include "tap.h"
#include "testutil.h"

static th_slide *slide;

static th_run_options options(th_precision precision, th_cam_mode cam, int threads,
                              th_engine_kind engine)
{
    th_run_options opt = tu_options(cam, threads, engine);
    opt.precision = precision;
    return opt;
}

static th_result *run(const th_model *m, th_precision precision, th_cam_mode cam, int threads,
                      th_engine_kind engine, th_error **err)
{
    th_run_options opt = options(precision, cam, threads, engine);
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

// Convolutions the int8 plan should quantise: those whose input comes after a ReLU (the first
// convolution takes the normalised image).
static int int8_convs_expected(const th_model *m)
{
    int n = 0;
    bool nonneg = false;
    for (int i = 0; i < m->n_layers; i++) {
        const th_layer *l = &m->layers[i];
        if (l->kind == TH_LAYER_CONV) {
            n += nonneg;
            nonneg = l->relu;
        } else if (l->kind == TH_LAYER_RELU) {
            nonneg = true;
        }
    }
    return n;
}

// What int8 must hold to against float32: issue 18's bar, or where a test model is known to
// miss it, the deviation measured when the test was written (a guard against it growing).
typedef struct bar {
    double percent, agreement, correlation;
} bar;
static const bar issue_bar = {0.5, 0.98, 0.98};

// int8 against float32 in one CAM mode.
static void check_mode(const th_model *m, const char *model_name, th_cam_mode cam, bar b)
{
    char name[64];
    snprintf(name, sizeof(name), "%s, %s", model_name,
             cam == TH_CAM_SEAMLESS ? "seam-free" : "tile mode");
    th_error *err = NULL;
    th_result *f = run(m, TH_PRECISION_FP32, cam, 2, TH_ENGINE_WINOGRAD, &err);
    th_result *q = f ? run(m, TH_PRECISION_INT8, cam, 2, TH_ENGINE_WINOGRAD, &err) : NULL;
    if (!ok(f && q, "%s: float32 and int8 runs%s%s", name, err ? ": " : "",
            err ? th_error_message(err) : "")) {
        th_error_free(err);
        th_result_free(f);
        th_result_free(q);
        return;
    }
    ok(q->int8.tiles == 16 && q->opt.precision == TH_PRECISION_INT8 &&
           th_result_get_cam_mode(q) == cam && th_result_get_warning_count(q) == 0,
       "%s: int8 calibrated on %d tiles, no warning; on them: %.3f points, top class differs on "
       "%d, CAM correlation %.4f",
       name, q->int8.tiles, q->int8.percent, q->int8.flips, q->int8.correlation);
    ok(!tu_same_result(f, q), "%s: int8 outputs differ from float32's (it is not float32 again)",
       name);
    double worst = 0;
    for (int c = 0; c < f->n_classes; c++) {
        worst = fmax(worst, fabs(f->percent[c] - q->percent[c]));
    }
    ok(worst <= b.percent, "%s: per-class percentages within %.3f points of float32 (<= %.2f)",
       name, worst, b.percent);
    int64_t agree = 0;
    for (int64_t t = 0; t < f->n_tiles; t++) {
        int bf = 0, bq = 0;
        for (int c = 1; c < f->n_classes; c++) {
            bf = f->probs[t * f->n_classes + c] > f->probs[t * f->n_classes + bf] ? c : bf;
            bq = q->probs[t * q->n_classes + c] > q->probs[t * q->n_classes + bq] ? c : bq;
        }
        agree += bf == bq;
    }
    ok(agree >= b.agreement * (double)f->n_tiles,
       "%s: top class agrees on %lld of %lld tiles (>= %.0f %%)", name, (long long)agree,
       (long long)f->n_tiles, 100 * b.agreement);
    double least = 1;
    for (int c = 0; c < f->n_classes; c++) {
        least = fmin(least, cam_pearson(f, q, c));
    }
    ok(least >= b.correlation,
       "%s: every class's CAM grid correlates with float32's by >= %.4f (>= %.2f)", name, least,
       b.correlation);
    th_result *one = run(m, TH_PRECISION_INT8, cam, 1, TH_ENGINE_WINOGRAD, NULL);
    ok(tu_same_result(q, one), "%s: int8 on 1 and 2 threads gives the same bytes", name);
    th_result_free(one);
    th_result_free(f);
    th_result_free(q);
}

static void check_model(const char *src_rel, const char *name, bar seamless)
{
    th_model *m = tu_load_model(src_rel);
    int tw, th;
    th_model_get_input_size(m, &tw, &th);
    float *ones = th_malloc(sizeof(float) * m->n_layers, NULL);
    for (int i = 0; i < m->n_layers; i++) {
        ones[i] = 1;
    }
    th_error *err = NULL;
    th_engine *e = th_engine_new_int8(m, tw, th, ones, NULL, &err);
    int want = int8_convs_expected(m);
    ok(e && e->n_int8 == want && want > 0, "%s: the int8 plan quantises %d convolutions (%d)", name,
       e ? e->n_int8 : -1, want);
    th_engine_free(e);
    th_stream st;
    int got = -1;
    if (th_stream_plan(&st, m, TH_ENGINE_WINOGRAD, tw, th, 3, ones, NULL, &err)) {
        got = 0;
        for (int g = 0; g < st.n_groups; g++) {
            got += st.groups[g].int8 && st.groups[g].engine->n_int8 == 1;
        }
        th_stream_free(&st);
    }
    ok(got == want, "%s: the seam-free plan has %d int8 groups (%d)", name, got, want);
    th_free(ones);
    th_error_free(err);
    err = NULL;

    check_mode(m, name, TH_CAM_SEAMLESS, seamless);
    check_mode(m, name, TH_CAM_TILE, issue_bar);
    th_model_free(m);
}

// A cohort's calibration file: made on the sample a run would take itself it gives that run's
// bytes; several slides; refusals.
static void check_calibration_file(const th_model *m)
{
    th_run_options opt = options(TH_PRECISION_INT8, TH_CAM_SEAMLESS, 2, TH_ENGINE_WINOGRAD);
    th_error *err = NULL;
    char path[512], other[512];
    snprintf(path, sizeof(path), "%s/cmu.json", test_tmpdir());
    snprintf(other, sizeof(other), "%s/two.json", test_tmpdir());
    th_calibration *cal = th_calibration_new(m, &opt, 16, &err);
    bool made =
        cal &&
        th_calibration_add(cal, test_data_path("slides/CMU-1-Small-Region.svs"), &opt, 16, &err) &&
        th_calibration_finish(cal, &err) && th_calibration_write(cal, path, &err);
    if (!ok(made, "calibration on CMU's 16 sample tiles, written%s%s", err ? ": " : "",
            err ? th_error_message(err) : "")) {
        th_calibration_free(cal);
        th_error_free(err);
        return;
    }
    th_calibration *back = th_calibration_read(path, m, &err);
    bool same = back != NULL;
    for (int i = 0; same && i < m->n_layers; i++) {
        same = back->act_max[i] == cal->act_max[i];
    }
    size_t n_means = th_model_act_offset(m, m->n_layers), measured = 0;
    for (size_t j = 0; same && j < n_means; j++) {
        float a = back->act_mean[j], b = cal->act_mean[j];
        same = a == b || (isnan(a) && isnan(b));
        measured += !isnan(b);
    }
    ok(same && measured == n_means && back->check.tiles == 16 &&
           back->check.flips == cal->check.flips &&
           fabs(back->check.percent - cal->check.percent) < 1e-12,
       "the file gives back every layer's range, its %zu channel means and the check exactly",
       n_means);
    th_result *own = th_run(slide, m, &opt, NULL);
    opt.calibration = back;
    th_result *filed = th_run(slide, m, &opt, NULL);
    ok(own && filed && tu_same_result(own, filed) && filed->int8.tiles == 16,
       "a run on the file's ranges gives the bytes of the run that calibrated itself");
    th_result_free(own);
    th_result_free(filed);
    opt.calibration = NULL;

    // Two slides, 8 tiles each: 16 in all.
    th_calibration *two = th_calibration_new(m, &opt, 16, NULL);
    made =
        two &&
        th_calibration_add(two, test_data_path("slides/CMU-1-Small-Region.svs"), &opt, 8, &err) &&
        th_calibration_add(two, test_data_path("images/CMU-1-Small-Region.crop1024.png"), &opt, 8,
                           &err) &&
        th_calibration_finish(two, &err) && th_calibration_write(two, other, &err);
    int tiles = 0;
    double pct = -1, agree = -1, corr = -1;
    if (two) {
        th_calibration_get_check(two, &tiles, &pct, &agree, &corr);
    }
    ok(made && tiles == 16 && two->n_slides == 2 && two->slide_tiles[1] == 8,
       "two slides' tiles in one calibration: %d tiles, %.3f points, agreement %.3f, CAM "
       "correlation %.4f%s%s",
       tiles, pct, agree, corr, err ? ": " : "", err ? th_error_message(err) : "");
    th_error_free(err);
    err = NULL;
    th_calibration *full = th_calibration_new(m, &opt, 4, NULL);
    ok(full &&
           th_calibration_add(full, test_data_path("slides/CMU-1-Small-Region.svs"), &opt, 16,
                              NULL) &&
           full->n == 4,
       "the sample stops at its room (4 tiles)");
    bool refused = full && !th_calibration_add(full, test_data_path("no/such.svs"), &opt, 4, &err);
    ok(refused && err && strstr(th_error_message(err), "such.svs"),
       "a slide that does not open: %s", err ? th_error_message(err) : "(no error)");
    th_error_free(err);
    err = NULL;

    th_model *bn = tu_load_model("tests/data/models/seam-bn.onnx");
    th_calibration *wrong = th_calibration_read(path, bn, &err);
    ok(!wrong && err && strstr(th_error_message(err), "another model"),
       "another model's file is refused: %s", err ? th_error_message(err) : "(no error)");
    th_error_free(err);
    err = NULL;
    th_model_free(bn);
    static const char *const junk[][2] = {{"{\"format\": \"x\"}", "not a tileheat calibration"},
                                          {"garbage", "not JSON"}};
    for (int i = 0; i < 2; i++) {
        char jp[512];
        snprintf(jp, sizeof(jp), "%s/junk%d.json", test_tmpdir(), i);
        FILE *f = th_fopen(jp, "w", NULL);
        fputs(junk[i][0], f);
        fclose(f);
        th_calibration *j = th_calibration_read(jp, m, &err);
        ok(!j && err && strstr(th_error_message(err), junk[i][1]), "'%s' is refused: %s",
           junk[i][0], err ? th_error_message(err) : "(no error)");
        th_error_free(err);
        err = NULL;
        th_calibration_free(j);
    }
    th_calibration_free(full);
    th_calibration_free(two);
    th_calibration_free(back);
    th_calibration_free(cal);
}

int main(void)
{
#ifndef HAVE_DNNL
    skip_all("int8 needs the fast engine (oneDNN), not built in");
#else
    plan(0);
    slide = tu_open_slide("slides/CMU-1-Small-Region.svs");
    // The BatchNorm model of issue 18's bar is tissue-bn (trained, as the bundled model, with
    // BatchNorm). seam-bn (random weights) is a harder case: its classes 0 and 2 are near-ties on
    // most of the slide (23 of 117 tiles within 1 point), and seam-free its top class flips on 3
    // tiles, all within 0.4 points (97.4 %; the check's 16 isolated tiles see one). Its bar guards
    // against that growing. Before the bias correction: 11 flips.
    check_model("models/default.onnx", "default", issue_bar);
    check_model("tests/data/models/tissue-bn.onnx", "tissue-bn", issue_bar);
    check_model("tests/data/models/seam-bn.onnx", "seam-bn", (bar){0.5, 0.97, 0.98});
    check_model("tests/data/models/seam-vgg16.onnx", "seam-vgg16", issue_bar);

    th_model *m = tu_load_model("models/default.onnx");
    th_error *err = NULL;
    th_result *r = run(m, TH_PRECISION_INT8, TH_CAM_SEAMLESS, 2, TH_ENGINE_REF, &err);
    ok(!r && err && strstr(th_error_message(err), "fast") != NULL,
       "the reference engine refuses int8: %s", err ? th_error_message(err) : "(no error)");
    th_error_free(err);
    th_result_free(r);
    check_calibration_file(m);
    th_model_free(m);
    th_slide_close(slide);
#endif
    return 0;
}
