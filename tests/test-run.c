/* SPDX-License-Identifier: MIT */
/* Tests for run.c on the real CMU-1-Small-Region slide with the bundled model: tissue skipping
 * leaves the CAMs of the tiles run unchanged; overlapping strides and 1 vs 2 threads give
 * bit-identical CAM grids, in memory or in a temporary file; stage timings are recorded; the
 * Winograd and fast engines give the reference engine's class percentages. */
#include <config.h>

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "result.h"
#include "tap.h"
#include "testutil.h"

static th_model *model;
static th_slide *slide;

static th_result *run_engine(double min_tissue, int stride, int threads, bool pad,
                             th_engine_kind engine)
{
    th_run_options opt;
    th_run_options_init(&opt);
    opt.min_tissue = min_tissue;
    opt.stride = stride;
    opt.threads = threads;
    opt.edge_pad = pad;
    opt.roi_x = 0; // the top half: 9×6 tiles, background and tissue
    opt.roi_y = 0;
    opt.roi_w = 2220;
    opt.roi_h = 1400;
    opt.engine = engine;
    th_error *err = NULL;
    th_result *r = th_run(slide, model, &opt, &err);
    if (!r) {
        bail("run: %s", th_error_message(err));
    }
    return r;
}

static th_result *run(double min_tissue, int stride, int threads, bool pad)
{
#ifdef HAVE_DNNL
    return run_engine(min_tissue, stride, threads, pad, TH_ENGINE_FAST);
#else
    return run_engine(min_tissue, stride, threads, pad, TH_ENGINE_REF);
#endif
}

// The Winograd engine's class percentages against the reference engine's: within 0.05 points.
static void test_winograd(const th_result *fast)
{
#ifdef HAVE_DNNL
    th_result *ref = run_engine(0, 0, 2, false, TH_ENGINE_REF);
    th_result *wino = run_engine(0, 0, 2, false, TH_ENGINE_WINOGRAD);
    double worst = 0, worst_fast = 0;
    for (int c = 0; c < th_result_get_class_count(ref); c++) {
        worst = fmax(worst, fabs(th_result_get_percent(wino, c) - th_result_get_percent(ref, c)));
        worst_fast =
            fmax(worst_fast, fabs(th_result_get_percent(fast, c) - th_result_get_percent(ref, c)));
    }
    ok(worst <= 0.05, "winograd vs reference engine: percentages within %.2g points (<= 0.05)",
       worst);
    ok(worst_fast <= 0.005, "fast vs reference engine: percentages within %.2g points (<= 0.005)",
       worst_fast);
    th_result_free(wino);
    th_result_free(ref);
#else
    skip(2, "the fast engines are not built");
#endif
}

// Cells where b has a value: a has the same bits there. Returns cells compared (-1 on mismatch).
static int64_t same_cams(const th_result *a, const th_result *b)
{
    int64_t n = 0, gw, gh;
    th_result_get_cam_grid(b, &gw, &gh, NULL, NULL, NULL, NULL);
    float *ra = tu_xcalloc((size_t)gw, sizeof(float)), *rb = tu_xcalloc((size_t)gw, sizeof(float));
    for (int c = 0; c < th_result_get_class_count(b); c++) {
        for (int64_t y = 0; y < gh; y++) {
            th_result_read_cam_row(a, c, y, ra);
            th_result_read_cam_row(b, c, y, rb);
            for (int64_t x = 0; x < gw; x++) {
                if (isnan(rb[x])) {
                    continue;
                }
                if (memcmp(&ra[x], &rb[x], sizeof(float)) != 0) {
                    n = -1;
                    goto out;
                }
                n++;
            }
        }
    }
out:
    free(ra);
    free(rb);
    return n;
}

// Two runs of one runner at once, from two threads (as batch runs slides side by side).
typedef struct concurrent {
    th_runner *rn;
    th_slide *slide;
    th_run_options opt;
    th_result *r;
} concurrent;

static void *run_concurrent(void *arg)
{
    concurrent *c = arg;
    c->r = th_runner_run(c->rn, c->slide, &c->opt, NULL);
    return NULL;
}

static void test_concurrent_runs(th_runner *rn, th_slide *pyr, const th_run_options *base,
                                 const th_result *want_pyr, const th_result *want_cmu)
{
    concurrent c[2] = {{rn, pyr, *base, NULL}, {rn, slide, *base, NULL}};
    c[0].opt.min_tissue = 0.1;
    c[0].opt.roi_w = c[0].opt.roi_h = 0;
    c[1].opt.min_tissue = 0;
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        c[i].opt.threads = 1;
        pthread_create(&t[i], NULL, run_concurrent, &c[i]);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
    int64_t n0 = c[0].r ? same_cams(c[0].r, want_pyr) : -1;
    int64_t n1 = c[1].r ? same_cams(c[1].r, want_cmu) : -1;
    ok(n0 > 0 && n1 > 0 && same_cams(want_pyr, c[0].r) == n0 && same_cams(want_cmu, c[1].r) == n1,
       "two runs of one runner at once, on two threads: each CAM grid bit-identical to th_run's "
       "(%lld and %lld cells)",
       (long long)n0, (long long)n1);
    th_result_free(c[0].r);
    th_result_free(c[1].r);
}

static void stop_after_5(void *user, int64_t done, int64_t total)
{
    if (done >= 5 && done < total) {
        *(volatile sig_atomic_t *)user = 1;
    }
}

// One runner over two slides and two option sets: each result bit-identical to th_run's; the
// plan is recorded on the first run only; a set cancel flag stops a run with "cancelled".
static void test_runner(const th_result *all)
{
    th_error *err = NULL;
    th_run_options opt;
    th_run_options_init(&opt);
    opt.engine = TH_ENGINE_FAST;
#ifndef HAVE_DNNL
    opt.engine = TH_ENGINE_REF;
#endif
    opt.threads = 2;
    th_runner *rn = th_runner_new(model, &opt, &err);
    th_slide *pyr = th_slide_open(test_data_path("slides/CMU-1-Small-Region.generic-pyramid.tiff"),
                                  &err);
    if (!rn || !pyr) {
        bail("runner: %s", th_error_message(err));
    }
    opt.min_tissue = 0.1;
    th_result *a = th_runner_run(rn, pyr, &opt, &err);
    th_result *want_a = th_run(pyr, model, &opt, NULL);
    opt.min_tissue = 0;
    opt.roi_w = 2220;
    opt.roi_h = 1400;
    th_result *b = th_runner_run(rn, slide, &opt, &err);
    ok(a && b && want_a, "a runner runs two slides with different options");
    int64_t cells = a && want_a ? same_cams(want_a, a) : -1;
    ok(cells > 0 && same_cams(a, want_a) == cells &&
           th_result_get_tile_count(a) == th_result_get_tile_count(want_a),
       "the first run's CAM grid is th_run's, bit for bit (%lld cells)", (long long)cells);
    bool probs_same = a && want_a;
    for (int64_t t = 0; probs_same && t < th_result_get_tile_count(a); t++) {
        probs_same = memcmp(th_result_get_probs(a, t), th_result_get_probs(want_a, t),
                            sizeof(float) * th_result_get_class_count(a)) == 0;
    }
    ok(probs_same, "... and so are its tile probabilities");
    ok(b && same_cams(all, b) == 54 * 4 * 28 * 28 && same_cams(b, all) == 54 * 4 * 28 * 28,
       "the second run (another slide, other options) matches th_run on that slide");
    test_concurrent_runs(rn, pyr, &opt, want_a, all);
    int na = 0, nb = 0;
    const th_stage *sa = a ? th_result_get_stages(a, &na) : NULL;
    const th_stage *sb = b ? th_result_get_stages(b, &nb) : NULL;
    ok(na > 0 && nb > 0 && strcmp(sa[0].name, "engine plan") == 0 && sa[0].seconds > 0 &&
           strcmp(sb[0].name, "engine plan") == 0 && sb[0].seconds == 0,
       "the engine plan is paid by the first run only");
    volatile sig_atomic_t stop = 1;
    opt.cancel = &stop;
    th_result *c = th_runner_run(rn, slide, &opt, &err);
    ok(!c && err && strcmp(th_error_message(err), "cancelled") == 0,
       "a set cancel flag: the run fails with 'cancelled'");
    th_error_free(err);
    err = NULL;
    stop = 0; // set by the progress callback after the first tiles: the tile loop stops
    opt.progress = stop_after_5;
    opt.progress_user = (void *)&stop;
    c = th_runner_run(rn, slide, &opt, &err);
    ok(!c && err && strcmp(th_error_message(err), "cancelled") == 0 && stop == 1,
       "the cancel flag set after 5 tiles stops the tile loop: %s",
       err ? th_error_message(err) : "(no error)");
    th_error_free(err);
    err = NULL;
    opt.progress = NULL;
    opt.cancel = NULL;
    opt.engine = TH_ENGINE_REF;
    c = th_runner_run(rn, slide, &opt, &err);
    like(err ? th_error_message(err) : NULL, "not the one the runner was made for",
         "a run with another engine is refused");
    th_error_free(err);
    th_result_free(c);
    th_result_free(a);
    th_result_free(b);
    th_result_free(want_a);
    th_slide_close(pyr);
    th_runner_free(rn);
}

// Warnings: the fluorescence slide under the brightfield model gets one, and none once the model
// declares stain=fluorescence; the brightfield slides get none.
static void test_warnings(void)
{
    th_error *err = NULL;
    th_run_options opt;
    th_run_options_init(&opt);
    opt.engine = TH_ENGINE_REF;
    opt.roi_x = opt.roi_y = 0;
    opt.roi_w = opt.roi_h = 1000; // a few tiles: only the tissue mask (whole slide) matters
    th_slide *dapi = th_slide_open(test_data_path("slides/test3-DAPI-2.ndpi"), &err);
    th_result *r = dapi ? th_run(dapi, model, &opt, &err) : NULL;
    if (!r) {
        bail("DAPI: %s", th_error_message(err));
    }
    ok(th_result_get_warning_count(r) == 1 &&
           strstr(th_result_get_warning(r, 0), "looks like fluorescence") != NULL,
       "test3-DAPI-2.ndpi with a brightfield model: one warning (%s)",
       th_result_get_warning_count(r) ? th_result_get_warning(r, 0) : "none");
    th_result_free(r);
    // the same model declaring stain=fluorescence
    model->meta_key[model->n_meta] = th_strdup("stain", NULL);
    model->meta_value[model->n_meta++] = th_strdup("fluorescence", NULL);
    r = th_run(dapi, model, &opt, &err);
    ok(r && th_result_get_warning_count(r) == 0, "... none when the model says stain=fluorescence");
    th_result_free(r);
    model->n_meta--;
    th_free(model->meta_key[model->n_meta]);
    th_free(model->meta_value[model->n_meta]);
    th_slide_close(dapi);
    const char *brightfield[] = {"slides/CMU-1-Small-Region.svs",
                                 "slides/TCGA-CR-7395-01A-01-TS1.svs"};
    for (int i = 0; i < 2; i++) {
        th_slide *s = th_slide_open(test_data_path(brightfield[i]), &err);
        opt.slide_mpp = i == 1 ? 1.0 : 0; // TCGA has none
        r = s ? th_run(s, model, &opt, &err) : NULL;
        ok(r && th_result_get_warning_count(r) == 0 && th_result_get_warning(r, 0) == NULL,
           "%s: no warning", brightfield[i]);
        th_result_free(r);
        th_slide_close(s);
    }
}

int main(void)
{
    plan(0);
    th_error *err = NULL;
    model = th_model_load(test_src_path("models/default.onnx"), &err);
    slide = th_slide_open(test_data_path("slides/CMU-1-Small-Region.svs"), &err);
    if (!model || !slide) {
        bail("%s", th_error_message(err));
    }
    th_result *all = run(0, 0, 2, false);
    th_result *tissue = run(0.5, 0, 2, false);
    int64_t total, skipped;
    th_result_get_tile_counts(tissue, &total, &skipped);
    ok(total == 54 && skipped > 0 && skipped < 54 &&
           th_result_get_tile_count(tissue) == 54 - skipped,
       "tissue skipping: %lld of %lld tiles skipped", (long long)skipped, (long long)total);
    int64_t cells = same_cams(all, tissue);
    ok(cells == (54 - skipped) * 4 * 28 * 28,
       "the CAM grid of the tiles run is bit-identical with and without skipping (%lld cells)",
       (long long)cells);
    int n;
    const th_stage *st = th_result_get_stages(tissue, &n);
    ok(n >= 4 && strcmp(st[0].name, "engine plan") == 0 && st[0].seconds > 0 &&
           strcmp(st[1].name, "tissue") == 0 && st[1].seconds > 0,
       "stage timings recorded in order (%d stages, engine plan %.3f s, tissue %.3f s)", n,
       n ? st[0].seconds : 0, n > 1 ? st[1].seconds : 0);

    test_winograd(all);
    test_runner(all);
    test_warnings();

    th_result *s1 = run(0, 112, 1, false);
    th_result *s2 = run(0, 112, 2, false);
    int64_t gw, gh;
    th_result_get_cam_grid(s2, &gw, &gh, NULL, NULL, NULL, NULL);
    ok(th_result_get_tile_count(s2) == 18 * 11 && gw == 17 * 14 + 28,
       "stride 112: 18×11 overlapping tiles, %lld cells across", (long long)gw);
    ok(same_cams(s1, s2) == 4 * gw * gh, "stride 112: 1 and 2 threads give the same CAM grid");
    // Where tiles overlap the CAM is their mean: the grid differs from the unstrided one but
    // stays close (the same tissue seen with different context).
    // The CAM grid in a temporary file (as for slides whose grid outgrows the budget): the same.
    size_t budget = th_camgrid_budget;
    th_camgrid_budget = 0;
    th_result *filed = run(0, 112, 2, false);
    th_camgrid_budget = budget;
    ok(filed->cams.fd >= 0, "budget 0: the CAM grid lives in a temporary file");
    ok(same_cams(s1, filed) == 4 * gw * gh, "... and holds the same CAM grid");
    float lo1 = 0, hi1 = 0, lo2 = 0, hi2 = -1;
    int cls = 2;
    bool ranged = th_cam_range(s1, TH_NORM_PERCENTILE, 99, &cls, 1, &lo1, &hi1, NULL, NULL) &&
                  th_cam_range(filed, TH_NORM_PERCENTILE, 99, &cls, 1, &lo2, &hi2, NULL, NULL);
    ok(ranged && hi1 == hi2 && hi1 > 0, "... and the same display range (%g)", hi2);
    th_result_free(filed);
    th_result *pad = run(0, 0, 2, true);
    ok(th_result_get_tile_count(pad) == 10 * 7, "--edge pad: 10×7 tiles (got %lld)",
       (long long)th_result_get_tile_count(pad));
    th_result_free(pad);
    th_result_free(s1);
    th_result_free(s2);
    th_result_free(tissue);
    th_result_free(all);
    th_slide_close(slide);
    th_model_free(model);
    return 0;
}
