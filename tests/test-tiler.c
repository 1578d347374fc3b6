/* SPDX-License-Identifier: MIT */
/* Tests for tiler.c on real slides: grid sizes with exact multiples and partial edges, images
 * smaller than a tile, levels with uneven downsamples (from python3-openslide: TCGA level 1
 * 2221×1783 at 2.0005055, the generic pyramid's level 3 277×370 at 8.0166797), and the levels
 * tileheat hides because OpenSlide garbles them (boxes.tiff 75×62, patch-8-level.tif 128×128
 * and below, each smaller than one TIFF tile). Then the µm/px fallback order and level choice on
 * the real files (mpp values from python3-openslide: CMU 0.499, NDPI 0.2281751, the generic
 * pyramid's TIFF tags 0.499, TCGA none), area resampling against a brute-force integration,
 * and strides, padded edges and regions of interest. */
#include <config.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slide.h"
#include "tap.h"
#include "testutil.h"
#include "tiler.h"

static th_slide *open_or_bail(const char *rel)
{
    th_error *err = NULL;
    th_slide *s = th_slide_open(test_data_path(rel), &err);
    if (!s) {
        bail("%s: %s", rel, th_error_message(err));
    }
    return s;
}

static void expect_grid(th_slide *s, int level, int tile, int cols, int rows, const char *what)
{
    th_grid g;
    th_error *err = NULL;
    bool ok_ = th_grid_init(&g, s, level, tile, tile, &err);
    ok(ok_ && g.cols == cols && g.rows == rows, "%s: %d×%d tiles of %d at level %d (got %d×%d%s%s)",
       what, cols, rows, tile, level, ok_ ? g.cols : -1, ok_ ? g.rows : -1, err ? ": " : "",
       err ? th_error_message(err) : "");
    th_error_free(err);
}

static void expect_error(th_slide *s, int level, int tile, const char *msg, const char *what)
{
    th_grid g;
    th_error *err = NULL;
    ok(!th_grid_init(&g, s, level, tile, tile, &err), "%s: refused", what);
    like(err ? th_error_message(err) : NULL, msg, "%s: message", what);
    th_error_free(err);
}

static void expect_rect(const th_grid *g, int col, int row, int64_t x, int64_t y, int64_t wh,
                        const char *what)
{
    int64_t gx, gy, gw, gh;
    th_grid_tile_rect(g, col, row, &gx, &gy, &gw, &gh);
    ok(gx == x && gy == y && gw == wh && gh == wh,
       "%s: tile (%d,%d) at level-0 %lld,%lld size %lld (got %lld,%lld %lld×%lld)", what, col,
       row, (long long)x, (long long)y, (long long)wh, (long long)gx, (long long)gy,
       (long long)gw, (long long)gh);
}

// Plan a grid for a 224-px model at model_mpp with options changed by the caller.
static bool plan224(th_slide *s, double model_mpp, const th_run_options *opt, th_grid *g,
                    th_error **err)
{
    return th_grid_plan(g, s, model_mpp, 224, 224, opt, err);
}

static void test_mpp(void)
{
    th_run_options opt;
    th_run_options_init(&opt);
    th_grid g;
    th_error *err = NULL;
    th_slide *cmu = open_or_bail("slides/CMU-1-Small-Region.svs");
    ok(plan224(cmu, 0.5, &opt, &g, NULL) && g.level == 0 && !g.resample && g.scale == 1 &&
           g.cols == 9 && g.rows == 13 && fabs(g.mpp - 0.499) < 1e-9 &&
           strcmp(g.mpp_source, "openslide") == 0,
       "CMU 0.499 against a 0.5 model: level 0 as is (within 5%%), mpp from openslide");
    opt.mpp_tolerance = 0.001;
    ok(plan224(cmu, 0.5, &opt, &g, NULL) && g.resample && fabs(g.scale - 0.5 / 0.499) < 1e-12,
       "... with --mpp-tolerance 0.001 it is resampled (scale %g)", g.scale);
    opt.mpp_tolerance = 0.05;
    ok(plan224(cmu, 1.0, &opt, &g, NULL) && g.level == 0 && g.resample &&
           fabs(g.scale - 1.0 / 0.499) < 1e-12 && g.cols == 4 && g.rows == 6,
       "a 1 µm/px model on CMU: level 0 shrunk by 2.004, 4×6 tiles (got %d×%d)", g.cols, g.rows);
    opt.slide_mpp = 0.25;
    ok(plan224(cmu, 0.5, &opt, &g, NULL) && g.resample && g.scale == 2 &&
           strcmp(g.mpp_source, "--mpp") == 0,
       "--mpp overrides the slide's metadata");
    opt.slide_mpp = 0;
    opt.model_mpp = 0.998;
    ok(plan224(cmu, 0.5, &opt, &g, NULL) && fabs(g.scale - 2) < 1e-12,
       "--model-mpp overrides the model's");
    opt.model_mpp = 0;
    ok(plan224(cmu, 0, &opt, &g, NULL) && g.level == 0 && !g.resample && g.cols == 9,
       "a model without µm/px reads level 0 as before");
    th_slide_close(cmu);

    th_slide *pyr = open_or_bail("slides/CMU-1-Small-Region.generic-pyramid.tiff");
    ok(plan224(pyr, 0.5, &opt, &g, NULL) && strcmp(g.mpp_source, "tiff-tags") == 0 &&
           fabs(g.mpp - 0.499) < 1e-6 && g.level == 0,
       "generic pyramid: µm/px from the TIFF resolution tags (%s %g)", g.mpp_source, g.mpp);
    ok(plan224(pyr, 2.0, &opt, &g, NULL) && g.level == 2 && !g.resample,
       "generic pyramid, 2 µm/px model: level 2 (downsample 4.002) read as is (level %d)",
       g.level);
    th_slide_close(pyr);

    th_slide *ndpi = open_or_bail("slides/test3-DAPI-2.ndpi");
    ok(plan224(ndpi, 0.5, &opt, &g, NULL) && g.level == 1 && g.resample &&
           fabs(g.scale - 0.5 / 0.2281750559028887) < 1e-9,
       "NDPI 0.2282 µm/px, 0.5 model: level 1 resampled by 1.096 (level %d, scale %g)", g.level,
       g.scale);
    ok(plan224(ndpi, 2.0, &opt, &g, NULL) && g.level == 3 && g.resample,
       "NDPI, 2 µm/px model: level 3 (downsample 8 of 8.77)");
    th_slide_close(ndpi);

    th_slide *tcga = open_or_bail("slides/TCGA-CR-7395-01A-01-TS1.svs");
    ok(!plan224(tcga, 0.5, &opt, &g, &err), "TCGA has no µm/px: refused");
    like(err ? th_error_message(err) : NULL, "give --mpp", "... the message names --mpp");
    th_error_free(err);
    err = NULL;
    opt.slide_mpp = 1.0;
    ok(plan224(tcga, 0.5, &opt, &g, NULL) && g.level == 0 && g.resample && g.scale == 0.5,
       "TCGA with --mpp 1.0: level 0 enlarged 2×");
    opt.slide_mpp = 0;
    opt.level = 1;
    ok(plan224(tcga, 0.5, &opt, &g, NULL) && g.level == 1 && !g.resample,
       "--level forces a level, read as is, even without µm/px");
    opt.level = -1;
    th_slide_close(tcga);

    th_slide *png = open_or_bail("images/CMU-1-Small-Region.crop1024.png");
    ok(plan224(png, 0.5, &opt, &g, NULL) && strcmp(g.mpp_source, "assumed") == 0 &&
           g.mpp == 0.5 && !g.resample,
       "a plain image without µm/px is taken at the model's resolution (%s)", g.mpp_source);
    th_slide_close(png);
}

// Brute-force reference: integrate the source over the box with 64×64 sample points per output
// pixel (an independent way to get the area average).
static double box_mean(const uint8_t *src, int sw, int sh, double x0, double y0, double r, int ch)
{
    const int n = 64;
    double sum = 0;
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < n; i++) {
            int x = (int)floor(x0 + (i + 0.5) * r / n), y = (int)floor(y0 + (j + 0.5) * r / n);
            x = x < 0 ? 0 : x >= sw ? sw - 1 : x;
            y = y < 0 ? 0 : y >= sh ? sh - 1 : y;
            sum += src[((size_t)y * sw + x) * 3 + ch];
        }
    }
    return sum / (n * n);
}

static void test_resample(void)
{
    enum { SW = 40, SH = 30, DW = 12, DH = 9 };
    uint8_t src[SH * SW * 3], dst[DH * DW * 3];
    uint32_t seed = 7;
    for (int i = 0; i < SH * SW * 3; i++) {
        seed = seed * 1664525u + 1013904223u;
        src[i] = (uint8_t)(seed >> 24);
    }
    const double cases[][3] = {{0, 0, 2}, {0.3, 0.7, 2.7}, {1.25, 0.5, 3.1}, {0.5, 0.25, 0.6}};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        double sx0 = cases[k][0], sy0 = cases[k][1], r = cases[k][2];
        th_resample_area(src, SW, SH, sx0, sy0, r, r, dst, NULL, DW, DH);
        double worst = 0;
        for (int j = 0; j < DH; j++) {
            for (int i = 0; i < DW; i++) {
                for (int ch = 0; ch < 3; ch++) {
                    double want = box_mean(src, SW, SH, sx0 + i * r, sy0 + j * r, r, ch);
                    worst = fmax(worst, fabs(dst[(j * DW + i) * 3 + ch] - want));
                }
            }
        }
        // Rounding to 8 bits (0.5) plus the 64-point integration error of a box edge.
        ok(worst <= 0.5 + 255.0 * 2 / 64, "area resample r=%g from %g,%g: max diff %.3f", r,
           sx0, sy0, worst);
    }
}

static void test_stride_edge_roi(void)
{
    th_run_options opt;
    th_run_options_init(&opt);
    th_grid g;
    th_error *err = NULL;
    th_slide *cmu = open_or_bail("slides/CMU-1-Small-Region.svs");
    opt.stride = 112;
    ok(plan224(cmu, 0.5, &opt, &g, NULL) && g.cols == 18 && g.rows == 25,
       "stride 112: (2220-224)/112+1 = 18 by (2967-224)/112+1 = 25 (got %d×%d)", g.cols, g.rows);
    expect_rect(&g, 1, 1, 112, 112, 224, "stride 112");
    opt.stride = 300;
    ok(!plan224(cmu, 0.5, &opt, &g, &err), "stride larger than the tile: refused");
    th_error_free(err);
    err = NULL;
    opt.stride = 0;
    opt.edge_pad = true;
    ok(plan224(cmu, 0.5, &opt, &g, NULL) && g.cols == 10 && g.rows == 14,
       "--edge pad: partial tiles too, 10×14 (got %d×%d)", g.cols, g.rows);
    th_slide *s = cmu;
    uint8_t *rgb = tu_xcalloc(224 * 224, 3), *ref = tu_xcalloc(224 * 224, 3);
    // Tile (9, 13) covers x 2016..2239 (slide ends at 2220) and y 2912..3135 (ends at 2967).
    ok(th_grid_read_tile(&g, s, 9, 13, rgb, NULL, NULL) &&
           th_slide_read_region(s, ref, 2016, 2912, 0, 224, 224, NULL),
       "padded corner tile read");
    bool inside = true, white = true;
    for (int y = 0; y < 224; y++) {
        for (int x = 0; x < 224; x++) {
            for (int ch = 0; ch < 3; ch++) {
                uint8_t v = rgb[(y * 224 + x) * 3 + ch];
                if (x < 2220 - 2016 && y < 2967 - 2912) {
                    inside &= v == ref[(y * 224 + x) * 3 + ch];
                } else {
                    white &= v == 255;
                }
            }
        }
    }
    ok(inside, "padded tile: the slide's pixels where it covers the slide");
    ok(white, "padded tile: white beyond the slide");
    opt.edge_pad = false;
    opt.roi_x = 300;
    opt.roi_y = 500;
    opt.roi_w = 1000;
    opt.roi_h = 700;
    ok(plan224(cmu, 0.5, &opt, &g, NULL) && g.cols == 4 && g.rows == 3,
       "--roi 300,500,1000,700: 4×3 tiles (got %d×%d)", g.cols, g.rows);
    expect_rect(&g, 1, 2, 524, 948, 224, "ROI: the grid starts at its corner");
    ok(th_grid_read_tile(&g, s, 1, 2, rgb, NULL, NULL) &&
           th_slide_read_region(s, ref, 524, 948, 0, 224, 224, NULL) &&
           memcmp(rgb, ref, 224 * 224 * 3) == 0,
       "ROI tile reads the slide at its level-0 rectangle");
    opt.roi_w = 3000;
    ok(!plan224(cmu, 0.5, &opt, &g, &err), "ROI beyond the slide: refused");
    like(err ? th_error_message(err) : NULL, "not inside the slide", "... with a message");
    th_error_free(err);
    free(rgb);
    free(ref);
    th_slide_close(cmu);
}

// A resampled tile against the level region read whole and resampled by hand.
static void test_resampled_tile(void)
{
    th_run_options opt;
    th_run_options_init(&opt);
    th_grid g;
    th_slide *ndpi = open_or_bail("slides/test3-DAPI-2.ndpi");
    if (!plan224(ndpi, 0.5, &opt, &g, NULL)) {
        bail("NDPI grid");
    }
    size_t n = th_grid_scratch_size(&g);
    uint8_t *scratch = tu_xcalloc(n, 1), *rgb = tu_xcalloc(224 * 224, 3), *ref = tu_xcalloc(224 * 224, 3);
    double r = g.scale / g.downsample;
    // Tile (2, 3): level-1 box from (2·224·r, 3·224·r), read whole from the level.
    double sx = 2 * 224 * r, sy = 3 * 224 * r;
    int64_t ix = (int64_t)floor(sx), iy = (int64_t)floor(sy);
    int64_t iw = (int64_t)ceil(sx + 224 * r) - ix, ih = (int64_t)ceil(sy + 224 * r) - iy;
    uint8_t *region = tu_xcalloc((size_t)iw * ih, 3);
    ok(th_grid_read_tile(&g, ndpi, 2, 3, rgb, scratch, NULL) &&
           th_slide_read_region(ndpi, region, ix * 2, iy * 2, 1, iw, ih, NULL),
       "NDPI resampled tile read (scratch %zu bytes)", n);
    th_resample_area(region, iw, ih, sx - ix, sy - iy, r, r, ref, NULL, 224, 224);
    ok(memcmp(rgb, ref, 224 * 224 * 3) == 0, "it is the area resample of the level region");
    free(region);
    free(scratch);
    free(rgb);
    free(ref);
    th_slide_close(ndpi);
}

int main(void)
{
    plan(0);
    test_mpp();
    test_resample();
    test_stride_edge_roi();
    test_resampled_tile();
    th_slide *cmu = open_or_bail("slides/CMU-1-Small-Region.svs");
    expect_grid(cmu, 0, 224, 9, 13, "CMU 2220×2967: partial edges dropped");
    expect_grid(cmu, 0, 2220, 1, 1, "CMU: tile as wide as the image");
    expect_error(cmu, 0, 2221, "image is 2220×2967, smaller than the model input 2221×2221",
                 "CMU: tile wider than the image");
    expect_error(cmu, 1, 224, "no level 1", "CMU: missing level");
    th_grid g;
    th_grid_init(&g, cmu, 0, 224, 224, NULL);
    expect_rect(&g, 8, 12, 1792, 2688, 224, "CMU");
    th_slide_close(cmu);

    th_slide *p8 = open_or_bail("slides/patch-8-level.tif");
    expect_grid(p8, 0, 128, 2, 2, "256×256: exact multiple");
    expect_grid(p8, 0, 256, 1, 1, "256×256: one tile exactly");
    expect_error(p8, 0, 257, "image is 256×256, smaller than the model input 257×257",
                 "one pixel short");
    // Its levels 1-8 are smaller than one 256-px TIFF tile, which OpenSlide 3.4.1 garbles:
    // tileheat hides them.
    expect_error(p8, 3, 32, "no level 3 (the slide has 1)", "hidden level");
    th_slide_close(p8);

    th_slide *boxes = open_or_bail("slides/boxes.tiff");
    expect_grid(boxes, 1, 64, 2, 1, "boxes level 1 (150×125)");
    expect_error(boxes, 2, 32, "no level 2 (the slide has 2)", "boxes: 75×62 level hidden");
    th_slide_close(boxes);

    // Uneven downsamples: TCGA level 1 is 2221×1783 at 2.0005055; the generic pyramid's level 3
    // is 277×370 at 8.0166797. Tile corners round to the nearest level-0 pixel.
    th_slide *tcga = open_or_bail("slides/TCGA-CR-7395-01A-01-TS1.svs");
    expect_grid(tcga, 1, 224, 9, 7, "TCGA level 1");
    th_grid_init(&g, tcga, 1, 224, 224, NULL);
    expect_rect(&g, 1, 0, 448, 0, 448, "224 × 2.0005 = 448.11");
    expect_rect(&g, 8, 6, 3585, 2689, 448, "8 × 448.11 = 3584.9, 6 × 448.11 = 2688.7");
    th_slide_close(tcga);
    th_slide *pyr = open_or_bail("slides/CMU-1-Small-Region.generic-pyramid.tiff");
    expect_grid(pyr, 3, 64, 4, 5, "generic pyramid level 3");
    th_grid_init(&g, pyr, 3, 64, 64, NULL);
    expect_rect(&g, 3, 4, 1539, 2052, 513, "64 × 8.0167 = 513.07");
    th_slide_close(pyr);

    th_slide *small = open_or_bail("slides/small.svs");
    expect_error(small, 0, 224, "image is 16×16, smaller than the model input 224×224",
                 "small.svs");
    th_slide_close(small);
    return 0;
}
