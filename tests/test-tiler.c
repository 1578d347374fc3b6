/* SPDX-License-Identifier: MIT */
/* Tests for tiler.c on real slides: grid sizes with exact multiples and partial edges, images
 * smaller than a tile, levels with uneven downsamples (from python3-openslide: TCGA level 1
 * 2221×1783 at 2.0005055, the generic pyramid's level 3 277×370 at 8.0166797), and the levels
 * tileheat hides because OpenSlide garbles them (boxes.tiff 75×62, patch-8-level.tif 128×128
 * and below, each smaller than one TIFF tile). */
#include <config.h>

#include "tap.h"
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

int main(void)
{
    plan(0);
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
