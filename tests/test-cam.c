/* SPDX-License-Identifier: MIT */
/* Tests for cam.c and result.c: CAM = W·A against a literal sum, the slide-wide display range,
 * bilinear sampling across tile borders, tiles not run, and the percentage summary. */
#include <config.h>

#include "cam.h"
#include "result.h"
#include "tap.h"
#include "testutil.h"

static uint32_t rng = 12345;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 65536.0f * 2 - 1;
}

static int cmp_float_asc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void test_compute(void)
{
    enum { C = 7, H = 3, W = 5, K = 4 };
    float feat[C * H * W], weight[K * C], cam[K * H * W];
    for (int i = 0; i < C * H * W; i++) {
        feat[i] = frand();
    }
    for (int i = 0; i < K * C; i++) {
        weight[i] = frand();
    }
    th_cam_compute(feat, C, H, W, weight, K, cam);
    double maxdiff = 0;
    for (int k = 0; k < K; k++) {
        for (int p = 0; p < H * W; p++) {
            double s = 0;
            for (int c = 0; c < C; c++) {
                s += (double)weight[k * C + c] * feat[c * H * W + p];
            }
            maxdiff = fmax(maxdiff, fabs(s - cam[k * H * W + p]));
        }
    }
    ok(maxdiff < 1e-5, "CAM equals sum_k W[c,k] A_k (max diff %g)", maxdiff);
}

// A 3×2 grid of 100-px tiles at level 0 (plus a partial strip), 2×2 CAM cells per tile; tile
// `skip` (or none if -1) is not run.
static th_result *make_result(int skip)
{
    th_grid g = {.level = 0, .downsample = 1, .tile_w = 100, .tile_h = 100, .cols = 3,
                 .rows = 2, .level_w = 350, .level_h = 230};
    th_result *r = th_result_new(&g, 2, 2, 2, skip < 0 ? 6 : 5, NULL);
    if (!r) {
        bail("th_result_new failed");
    }
    int64_t i = 0;
    for (int t = 0; t < 6; t++) {
        // class 0: value = global cell column (a ramp in x); class 1: constant -1
        float cam[2 * 2 * 2]; // (classes, cy, cx)
        for (int cy = 0; cy < 2; cy++) {
            for (int cx = 0; cx < 2; cx++) {
                cam[(0 * 2 + cy) * 2 + cx] = (float)((t % 3) * 2 + cx);
                cam[(1 * 2 + cy) * 2 + cx] = -1;
            }
        }
        if (t != skip && !th_result_add_tile(r, i++, t % 3, t / 3, cam, NULL)) {
            bail("th_result_add_tile failed");
        }
    }
    th_camgrid_finish(&r->cams);
    return r;
}

static void test_sample(void)
{
    th_result *r = make_result(-1);
    float v = -99;
    // Cell centres are at 25, 75, 125, ... in x.
    ok(th_cam_sample(r, 0, 25, 25, &v) && v == 0, "cell centre (0) exact");
    ok(th_cam_sample(r, 0, 125, 25, &v) && v == 2, "cell centre (2) exact");
    ok(th_cam_sample(r, 0, 100, 60, &v) && fabsf(v - 1.5f) < 1e-6, "tile border interpolates "
       "across tiles (%g)", v);
    ok(th_cam_sample(r, 0, 5, 5, &v) && v == 0, "before the first centre: clamped");
    ok(th_cam_sample(r, 0, 299, 199, &v) && v == 5, "last pixel: clamped to last cell");
    ok(!th_cam_sample(r, 0, 300, 50, &v), "the untiled right strip has no CAM");
    ok(!th_cam_sample(r, 0, 50, 200, &v), "the untiled bottom strip has no CAM");
    ok(!th_cam_sample(r, 0, -1, 50, &v), "negative coordinates have no CAM");
    // Continuity: the largest jump between neighbouring pixels equals the ramp's slope.
    float prev = 0, maxjump = 0;
    for (int x = 0; x < 300; x++) {
        th_cam_sample(r, 0, x + 0.5, 50, &v);
        if (x) {
            maxjump = fmaxf(maxjump, fabsf(v - prev));
        }
        prev = v;
    }
    ok(maxjump <= 1.0f / 50 + 1e-5, "no seams: largest step %g per pixel", maxjump);

    // A tile that was not run: its area has no CAM, and neighbours do not use its cells.
    th_result_free(r);
    r = make_result(1);
    ok(!th_cam_sample(r, 0, 150, 50, &v), "a tile not run has no CAM");
    ok(th_cam_sample(r, 0, 99, 25, &v) && v == 1, "its neighbour's edge uses only run cells");
    th_result_free(r);
}

static void test_range(void)
{
    th_result *r = make_result(-1);
    float lo, hi;
    int cls0 = 0, both[2] = {0, 1};
    ok(th_cam_range(r, TH_NORM_PERCENTILE, 100, &cls0, 1, &lo, &hi, NULL, NULL), "range p100");
    ok(lo == 0 && hi == 5, "p100 is the max (%g..%g)", lo, hi);
    // 24 values: 0,1,...,5 four times each; p50 sits between positions 11 and 12.
    ok(th_cam_range(r, TH_NORM_PERCENTILE, 50, &cls0, 1, &lo, &hi, NULL, NULL) && hi == 2.5f,
       "p50 interpolates (%g)", hi);
    int cls1 = 1;
    ok(th_cam_range(r, TH_NORM_PERCENTILE, 99, &cls1, 1, &lo, &hi, NULL, NULL) && hi == 1,
       "an all-negative class gets a unit scale (%g)", hi);
    ok(th_cam_range(r, TH_NORM_RAW, 99, both, 2, &lo, &hi, NULL, NULL) && lo == -1 && hi == 5,
       "raw range spans both classes (%g..%g)", lo, hi);
    // What each top is: the percentile, the maximum when the percentile is 0 (class 0 is 0 in a
    // sixth of its cells, so its p10 is), 1 for a class never positive, the raw maximum.
    th_scale_basis b = -1;
    ok(th_cam_range(r, TH_NORM_PERCENTILE, 50, &cls0, 1, &lo, &hi, &b, NULL) &&
           b == TH_SCALE_PERCENTILE,
       "p50 of class 0: basis %s", th_scale_basis_name(b));
    ok(th_cam_range(r, TH_NORM_PERCENTILE, 10, &cls0, 1, &lo, &hi, &b, NULL) && hi == 5 &&
           b == TH_SCALE_MAX,
       "p10 of class 0 is 0: the top is the maximum (%g, %s)", hi, th_scale_basis_name(b));
    ok(th_cam_range(r, TH_NORM_PERCENTILE, 99, &cls1, 1, &lo, &hi, &b, NULL) &&
           b == TH_SCALE_FLAT,
       "a class never positive: basis %s", th_scale_basis_name(b));
    ok(th_cam_range(r, TH_NORM_RAW, 99, both, 2, &lo, &hi, &b, NULL) && b == TH_SCALE_RAW,
       "raw: basis %s", th_scale_basis_name(b));
    th_result_free(r);
}

static void test_summary(void)
{
    th_result *r = make_result(-1);
    const float p[6][2] = {{0.9f, 0.1f}, {0.2f, 0.8f}, {0.6f, 0.4f},
                           {0.5f, 0.5f}, {0.3f, 0.7f}, {1.0f, 0.0f}};
    memcpy(r->probs, p, sizeof(p));
    th_result_summarize(r);
    is_double(r->percent[0], 100 * 3.5 / 6, 1e-4, "percent = mean probability");
    is_double(r->percent[0] + r->percent[1], 100, 1e-4, "percentages sum to 100");
    is_double(r->argmax_percent[0], 100 * 4.0 / 6, 1e-9, "argmax share (ties go to the first)");
    int top[2];
    is_int(th_result_top_classes(r, NULL, 2, top), 2, "two top classes");
    ok(top[0] == 0 && top[1] == 1, "ordered by percent");
    th_result_free(r);
}

// The percentile against a brute-force sort of every value (independent of the histogram
// search), on 1.96 M cells packed into a narrow range so the search has to narrow its bins.
static void test_percentile_large(void)
{
    enum { COLS = 200, ROWS = 200, CW = 7, NC = 2 };
    th_grid g = {.level = 0, .downsample = 1, .tile_w = 70, .tile_h = 70, .cols = COLS,
                 .rows = ROWS};
    th_result *r = th_result_new(&g, NC, CW, CW, COLS * ROWS, NULL);
    size_t n = (size_t)COLS * ROWS * CW * CW;
    float *all = tu_xcalloc(n, sizeof(float));
    uint32_t seed = 99;
    size_t k = 0;
    for (int t = 0; r && t < COLS * ROWS; t++) {
        float cam[NC * CW * CW];
        for (int i = 0; i < CW * CW; i++) {
            seed = seed * 1664525u + 1013904223u;
            float u = (float)(seed >> 8) / 16777216.0f;
            // a third negative (clipped to 0), the rest crowded into [1, 1.001] with ties
            cam[i] = u < 0.33f ? -u : 1.0f + (float)((int)(u * 4000)) * 2.5e-7f;
            cam[CW * CW + i] = 0;
            all[k++] = cam[i] > 0 ? cam[i] : 0;
        }
        th_result_add_tile(r, t, t % COLS, t / COLS, cam, NULL);
    }
    th_camgrid_finish(&r->cams);
    qsort(all, n, sizeof(float), cmp_float_asc);
    const double pcts[] = {0, 20, 50, 90, 99, 99.9, 100};
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
        double pos = pcts[i] / 100 * (double)(n - 1);
        size_t j = (size_t)pos;
        double frac = pos - (double)j;
        float want = (float)(j + 1 < n ? all[j] * (1 - frac) + all[j + 1] * frac : all[j]);
        float lo, hi;
        int cls = 0;
        bool okr = th_cam_range(r, TH_NORM_PERCENTILE, pcts[i], &cls, 1, &lo, &hi, NULL, NULL);
        if (want == 0) {
            want = all[n - 1]; // a percentile at 0 falls back to the maximum
        }
        ok(okr && hi == want, "p%g of 1.96 M cells equals the sorted reference (%.9g vs %.9g)",
           pcts[i], hi, want);
    }
    free(all);
    th_result_free(r);
}

// Overlapping tiles: stride of half a tile; each cell is the mean of the tiles covering it.
static void test_stride(void)
{
    th_grid g = {.level = 0, .downsample = 1, .tile_w = 32, .tile_h = 32, .stride_x = 16,
                 .stride_y = 16, .cols = 3, .rows = 2};
    th_result *r = th_result_new(&g, 1, 4, 4, 6, NULL);
    ok(r && r->cams.gw == 8 && r->cams.gh == 6 && r->cams.step_x == 2,
       "stride 16 of 32 with 4 cells per tile: an 8×6 cell grid, step 2");
    for (int t = 0; r && t < 6; t++) {
        float cam[16];
        for (int i = 0; i < 16; i++) {
            cam[i] = (float)(t + 1);
        }
        th_result_add_tile(r, t, t % 3, t / 3, cam, NULL);
    }
    th_camgrid_finish(&r->cams);
    float v = 0;
    ok(th_camgrid_get(&r->cams, 0, 0, 0, &v) && v == 1, "a cell of one tile: its value");
    ok(th_camgrid_get(&r->cams, 0, 2, 0, &v) && v == 1.5f, "two tiles: their mean (%g)", v);
    ok(th_camgrid_get(&r->cams, 0, 3, 3, &v) && v == 3.0f, "four tiles (1,2,4,5): mean 3 (%g)",
       v);
    th_grid g2 = g;
    g2.stride_x = g2.stride_y = 12;
    th_error *err = NULL;
    ok(!th_result_new(&g2, 1, 4, 4, 6, &err), "stride 12 is not a whole number of 8-px cells");
    like(err ? th_error_message(err) : NULL, "feature stride", "... and the message says so");
    th_error_free(err);
    th_result_free(r);
}

int main(void)
{
    plan(0);
    test_percentile_large();
    test_stride();
    test_compute();
    test_sample();
    test_range();
    test_summary();
    return 0;
}
