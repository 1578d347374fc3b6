/* SPDX-License-Identifier: MIT */
/* Tests for tiler.c on real slides: grid sizes with exact multiples and partial edges, images
 * smaller than a tile, levels with uneven downsamples (boxes.tiff, from python3-openslide:
 * 300×250, 150×125, 75×62, 37×31 at 1, 2, 4.016129, 8.086312), and levels smaller than a tile
 * (patch-8-level.tif, 256×256 halving down to 1×1). */
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
    expect_grid(p8, 3, 32, 1, 1, "level 3 (32×32): one tile exactly");
    expect_error(p8, 4, 32, "image is 16×16, smaller than the model input 32×32",
                 "level 4 smaller than the tile");
    expect_error(p8, 8, 2, "image is 1×1", "the 1×1 level");
    th_grid_init(&g, p8, 1, 64, 64, NULL);
    expect_rect(&g, 1, 1, 128, 128, 128, "downsample 2");
    th_slide_close(p8);

    th_slide *boxes = open_or_bail("slides/boxes.tiff");
    expect_grid(boxes, 2, 32, 2, 1, "boxes level 2 (75×62)");
    th_grid_init(&g, boxes, 2, 32, 32, NULL);
    // 32 × 4.016129 = 128.52: rounded to the nearest level-0 pixel.
    expect_rect(&g, 1, 0, 129, 0, 129, "uneven downsample 4.016");
    expect_grid(boxes, 3, 16, 2, 1, "boxes level 3 (37×31)");
    th_grid_init(&g, boxes, 3, 16, 16, NULL);
    expect_rect(&g, 1, 0, 129, 0, 129, "uneven downsample 8.086 (16 × 8.086 = 129.4)");
    th_slide_close(boxes);

    th_slide *small = open_or_bail("slides/small.svs");
    expect_error(small, 0, 224, "image is 16×16, smaller than the model input 224×224",
                 "small.svs");
    th_slide_close(small);
    return 0;
}
