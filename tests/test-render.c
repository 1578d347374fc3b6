/* SPDX-License-Identifier: MIT */
/* Tests for render.c and font.c (the legend: test-legend.c; class colours, glass: test-colors.c):
 * colormaps against matplotlib's values, the palette, the bitmap font, and whole heatmaps of a real
 * slide with a hand-made result, checked pixel by pixel against a box filter of the slide; the fast
 * overlay against th_cam_sample at every pixel; the same bytes for 1, 2 and 3 threads, a PNG
 * stream checked chunk by chunk with zlib, and a full disk. */
#include <config.h>

#include <dirent.h>
#include <inttypes.h>
#include <png.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cam.h"
#include "render.h"
#include "tap.h"
#include "testutil.h"

/* ---------------------------------------------------------------- colormaps */

static void is_colour(th_colormap cmap, float t, uint32_t want, int tol, const char *name)
{
    uint8_t rgb[3];
    th_colormap_rgb(cmap, t, rgb);
    int d = tu_rgb_dist(rgb, want);
    ok(d <= tol, "%s(%g) = #%02x%02x%02x, want #%06x ± %d", name, t, rgb[0], rgb[1], rgb[2],
       (unsigned)want, tol);
}

static void test_colormaps(void)
{
    // Published matplotlib values (cmap(t) of the 256-entry tables; t = 0.5 is entry 128).
    is_colour(TH_COLORMAP_VIRIDIS, 0, 0x440154, 0, "viridis");
    is_colour(TH_COLORMAP_VIRIDIS, 0.25f, 0x3b528b, 2, "viridis");
    is_colour(TH_COLORMAP_VIRIDIS, 0.5f, 0x21918c, 2, "viridis");
    is_colour(TH_COLORMAP_VIRIDIS, 0.75f, 0x5ec962, 2, "viridis");
    is_colour(TH_COLORMAP_VIRIDIS, 1, 0xfde725, 0, "viridis");
    is_colour(TH_COLORMAP_INFERNO, 0, 0x000004, 0, "inferno");
    is_colour(TH_COLORMAP_INFERNO, 0.5f, 0xbc3754, 2, "inferno");
    is_colour(TH_COLORMAP_INFERNO, 1, 0xfcffa4, 0, "inferno");
    is_colour(TH_COLORMAP_MAGMA, 0, 0x000004, 0, "magma");
    is_colour(TH_COLORMAP_MAGMA, 0.5f, 0xb73779, 2, "magma");
    is_colour(TH_COLORMAP_MAGMA, 1, 0xfcfdbf, 0, "magma");
    // Classic jet: dark blue, blue, cyan, yellow, red, dark red at t = 0, 1/8, 3/8, 5/8, 7/8, 1.
    is_colour(TH_COLORMAP_JET, 0, 0x000080, 1, "jet");
    is_colour(TH_COLORMAP_JET, 0.125f, 0x0000ff, 0, "jet");
    is_colour(TH_COLORMAP_JET, 0.375f, 0x00ffff, 0, "jet");
    is_colour(TH_COLORMAP_JET, 0.5f, 0x80ff80, 1, "jet");
    is_colour(TH_COLORMAP_JET, 0.625f, 0xffff00, 0, "jet");
    is_colour(TH_COLORMAP_JET, 0.875f, 0xff0000, 0, "jet");
    is_colour(TH_COLORMAP_JET, 1, 0x800000, 1, "jet");
    // ColorBrewer YlOrRd 9-class: first, middle (5th) and last colours.
    is_colour(TH_COLORMAP_YLORRD, 0, 0xffffcc, 0, "ylorrd");
    is_colour(TH_COLORMAP_YLORRD, 0.5f, 0xfd8d3c, 0, "ylorrd");
    is_colour(TH_COLORMAP_YLORRD, 1, 0x800026, 0, "ylorrd");
    // Out of range and NaN clamp.
    is_colour(TH_COLORMAP_VIRIDIS, -3, 0x440154, 0, "viridis");
    is_colour(TH_COLORMAP_VIRIDIS, 7, 0xfde725, 0, "viridis");
    is_colour(TH_COLORMAP_VIRIDIS, NAN, 0x440154, 0, "viridis");

    // viridis and friends are perceptually uniform: luminance rises steadily, no jumps (a
    // garbled table would break this).
    const th_colormap seq[3] = {TH_COLORMAP_VIRIDIS, TH_COLORMAP_INFERNO, TH_COLORMAP_MAGMA};
    for (int k = 0; k < 3; k++) {
        double prev = -1, max_step = 0;
        bool rising = true;
        for (int i = 0; i <= 256; i++) {
            uint8_t c[3];
            th_colormap_rgb(seq[k], (float)i / 256, c);
            double lum = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
            rising &= lum >= prev - 0.5;
            max_step = i ? fmax(max_step, lum - prev) : 0;
            prev = lum;
        }
        ok(rising && max_step < 3, "colormap %d: luminance rises smoothly (max step %.2f)", k,
           max_step);
    }
}

static void test_names(void)
{
    const char *names[] = {"viridis", "inferno", "magma", "jet", "ylorrd"};
    const th_colormap want[] = {TH_COLORMAP_VIRIDIS, TH_COLORMAP_INFERNO, TH_COLORMAP_MAGMA,
                                TH_COLORMAP_JET, TH_COLORMAP_YLORRD};
    for (int i = 0; i < 5; i++) {
        th_colormap c = (th_colormap)-1;
        ok(th_colormap_from_name(names[i], &c) && c == want[i], "colormap name %s", names[i]);
    }
    th_colormap c = TH_COLORMAP_JET;
    ok(th_colormap_from_name("YlOrRd", &c) && c == TH_COLORMAP_YLORRD, "names ignore case");
    ok(!th_colormap_from_name("rainbow", &c) && c == TH_COLORMAP_YLORRD,
       "unknown name: false, output untouched");
    ok(!th_colormap_from_name(NULL, &c), "NULL name: false");

    th_render_options o;
    memset(&o, 0x55, sizeof(o));
    th_render_options_init(&o);
    ok(o.n_shown == 1 && o.shown[0] == 0 && !o.multi && o.colormap == TH_COLORMAP_VIRIDIS &&
           o.alpha == 0.5 && o.threshold == 0.2 && o.width == 2000 &&
           o.norm == TH_NORM_PERCENTILE && o.percentile == 99,
       "render option defaults as documented");
}

static double dist3(const uint8_t a[3], const uint8_t b[3])
{
    double d = 0;
    for (int ch = 0; ch < 3; ch++) {
        d += ((double)a[ch] - b[ch]) * ((double)a[ch] - b[ch]);
    }
    return sqrt(d);
}

static void test_palette(void)
{
    // Okabe-Ito's six, whose closest pairs (orange/vermillion 67, bluish green/blue 77) differ
    // in lightness; no six colour-blind-safe colours are much farther apart.
    double min_d = 1e9;
    for (int i = 0; i < TH_MAX_SHOWN; i++) {
        for (int j = i + 1; j < TH_MAX_SHOWN; j++) {
            min_d = fmin(min_d, dist3(th_palette[i], th_palette[j]));
        }
    }
    ok(min_d > 60, "palette colours pairwise distinct (min RGB distance %.0f)", min_d);
    double min4 = 1e9;
    for (int i = 0; i < 4; i++) {
        for (int j = i + 1; j < 4; j++) {
            min4 = fmin(min4, dist3(th_palette[i], th_palette[j]));
        }
    }
    ok(min4 > 90, "the first four are farther apart (min %.0f)", min4);
    // Typical eosin pink and haematoxylin purple.
    const uint8_t he[2][3] = {{0xe8, 0x9c, 0xc4}, {0x5a, 0x3c, 0x8c}};
    double min_he = 1e9;
    for (int i = 0; i < 4; i++) {
        min_he = fmin(min_he, fmin(dist3(th_palette[i], he[0]), dist3(th_palette[i], he[1])));
    }
    ok(min_he > 120, "the first four stand apart from H&E pink and purple (min %.0f)", min_he);
    // Okabe and Ito's own order, without reddish purple and black.
    const uint32_t okabe_ito[TH_MAX_SHOWN] = {0xe69f00, 0x56b4e9, 0x009e73,
                                              0xf0e442, 0x0072b2, 0xd55e00};
    int same = 0;
    for (int i = 0; i < TH_MAX_SHOWN; i++) {
        same += tu_rgb_dist(th_palette[i], okabe_ito[i]) == 0;
    }
    is_int(same, TH_MAX_SHOWN, "the palette is Okabe-Ito's in their order");
}

/* ---------------------------------------------------------------- font */

static void test_font(void)
{
    is_int(th_font_text_width("", 3), 0, "empty text has no width");
    is_int(th_font_text_width("ab", 2), 22, "two glyphs at scale 2: (2 * 6 - 1) * 2 px");
    is_int(th_font_text_width("\xc2\xb5m", 1), 11, "a UTF-8 sequence counts as one glyph");
    enum { W = 12, H = 4 };
    uint8_t buf[H * W * 3];
    memset(buf, 255, sizeof(buf));
    const uint8_t black[3] = {0, 0, 0};
    // Band rows 3..6 of an image; "H" at (-1, 0): glyph rows 3..6 land in the band, the first
    // glyph column is clipped.
    th_band band = {.rgb = buf, .w = W, .h = H, .y0 = 3};
    th_font_draw(&band, -1, 0, "H", 1, black);
    char got[H][W + 1];
    for (int y = 0; y < H; y++) {
        for (int x = 0; x < W; x++) {
            got[y][x] = buf[(y * W + x) * 3] == 0 ? '#' : '.';
        }
        got[y][W] = 0;
    }
    is_string(got[0], "####........", "font: H crossbar row (clipped at x < 0)");
    is_string(got[1], "...#........", "font: H stem rows");
    is_string(got[3], "...#........", "font: last row inside the band");
    // Scale 2, drawn entirely below the band: nothing changes.
    memset(buf, 255, sizeof(buf));
    th_font_draw(&band, 0, 7, "W", 2, black);
    bool clean = true;
    for (size_t i = 0; i < sizeof(buf); i++) {
        clean &= buf[i] == 255;
    }
    ok(clean, "font: text outside the band draws nothing");
}

/* ---------------------------------------------------------------- whole heatmaps */

// Largest channel difference between the tu_image and the plain slide over a rectangle of
// output pixels (every `step`-th); *mean (if not NULL) gets the mean absolute difference.
static int plain_diff_mean(const tu_image *img, th_slide *slide, int level, double kx, double ky,
                           int x0, int y0, int x1, int y1, int step, double *mean)
{
    int worst = 0;
    double sum = 0;
    int64_t n = 0;
    for (int y = y0; y < y1; y += step) {
        for (int x = x0; x < x1; x += step) {
            uint8_t want[3];
            tu_ref_pixel(slide, level, kx, ky, x, y, want);
            const uint8_t *got = tu_px_at(img, x, y);
            for (int ch = 0; ch < 3; ch++) {
                int d = abs((int)got[ch] - (int)want[ch]);
                worst = TH_MAX(worst, d);
                sum += d;
                n++;
            }
        }
    }
    if (mean) {
        *mean = n ? sum / (double)n : 0;
    }
    return worst;
}

static int plain_diff(const tu_image *img, th_slide *slide, int level, double kx, double ky, int x0,
                      int y0, int x1, int y1, int step)
{
    return plain_diff_mean(img, slide, level, kx, ky, x0, y0, x1, y1, step, NULL);
}

// Single class 1 (the ramp), raw scale, alpha 1: every tiled pixel is exactly viridis(t).
static void test_single(th_slide *slide, const th_result *r, const th_model *model)
{
    th_render_options o;
    th_render_options_init(&o);
    o.shown[0] = 1;
    o.alpha = 1;
    o.norm = TH_NORM_RAW;
    tu_image img = {0};
    th_render_layout L;
    if (!ok(tu_render(slide, r, model, &o, "single-ramp.png", &img, &L), "single: rendered")) {
        skip(11, "no image");
        return;
    }
    is_int(img.h, 2000, "single: long side (height) is the default 2000");
    ok(L.thumb_w == 1496 && L.thumb_h == 2000, "single: thumbnail %dx%d keeps the aspect",
       L.thumb_w, L.thumb_h);
    ok(img.w == L.image_w && img.w > L.thumb_w && L.panel_x == L.thumb_w,
       "single: PNG %dx%d = thumbnail + colour bar strip on the right", img.w, img.h);
    double sx = (double)TU_CMU_W / L.thumb_w, sy = (double)TU_CMU_H / L.thumb_h;
    // Cell centres sit at 32k + 16 level-0 px; from cell 31 the CAM is 0.25 per cell, linear,
    // so bilinear sampling reproduces it exactly: v(x) = 0.25 (x / 32 - 0.5 - 31). Raw range
    // 0 .. 7.75. Compare along several rows, across four tile borders.
    // Rows from 170 down: tile (8, 0) at the top right was not run.
    int worst = 0, seam_jump = 0, other_jump = 0;
    for (int oy = 170; oy < 1950; oy += 97) {
        for (int ox = 690; ox <= 1336; ox++) {
            double cx = (ox + 0.5) * sx, v = 0.25 * (cx / 32 - 0.5 - 31);
            uint8_t want[3];
            th_colormap_rgb(TH_COLORMAP_VIRIDIS, (float)(v / 7.75), want);
            const uint8_t *got = tu_px_at(&img, ox, oy), *prev = tu_px_at(&img, ox - 1, oy);
            // Does a tile border (every 224 level-0 px) lie between this pixel and the last?
            bool seam = (int64_t)((ox - 0.5) * sx / 224) != (int64_t)(cx / 224);
            for (int ch = 0; ch < 3; ch++) {
                worst = TH_MAX(worst, abs(got[ch] - want[ch]));
                int jump = abs(got[ch] - prev[ch]);
                if (seam) {
                    seam_jump = TH_MAX(seam_jump, jump);
                } else {
                    other_jump = TH_MAX(other_jump, jump);
                }
            }
        }
    }
    ok(worst <= 1, "single: tiled pixels are viridis of the bilinear CAM (max diff %d)", worst);
    ok(seam_jump <= other_jump + 1,
       "single: no seams at tile borders (jump %d there, %d elsewhere)", seam_jump, other_jump);
    ok(tu_rgb_dist(tu_px_at(&img, 300, 700), 0x440154) == 0 &&
           tu_rgb_dist(tu_px_at(&img, 5, 5), 0x440154) == 0,
       "single: CAM 0 is viridis(0) at alpha 1");
    is_int(plain_diff(&img, slide, 0, sx, sy, 1360, 0, 1496, 1960, 17), 0,
           "single: the untiled right strip is the plain slide");
    is_int(plain_diff(&img, slide, 0, sx, sy, 0, 1964, 1496, 2000, 13), 0,
           "single: the untiled bottom strip is the plain slide");
    is_int(plain_diff(&img, slide, 0, sx, sy, 1212, 4, 1355, 149, 11), 0,
           "single: the tile that was not run shows the plain slide");
    const uint8_t *corner = tu_px_at(&img, img.w - 2, img.h - 2);
    ok(corner[0] > 240 && corner[1] > 240 && corner[2] > 240, "single: light legend panel");
    // The colour bar: somewhere in the panel's upper half sits viridis' yellow end.
    bool yellow = false;
    for (int y = 0; y < img.h / 3 && !yellow; y++) {
        for (int x = L.panel_x; x < img.w && !yellow; x++) {
            yellow = tu_rgb_dist(tu_px_at(&img, x, y), 0xfde725) <= 2;
        }
    }
    ok(yellow, "single: the colour bar's top end is viridis(1)");
    TH_FREE(img.rgb);
}

// Multi, classes 0 and 1, defaults (alpha 0.5, threshold 0.2, p99 per class).
static void test_multi(th_slide *slide, const th_result *r, const th_model *model)
{
    th_render_options o;
    th_render_options_init(&o);
    o.n_shown = 2;
    o.shown[0] = 0;
    o.shown[1] = 1;
    o.multi = true;
    tu_image img = {0};
    th_render_layout L;
    if (!ok(tu_render(slide, r, model, &o, "multi.png", &img, &L), "multi: rendered")) {
        skip(5, "no image");
        return;
    }
    ok(img.h == 2000 && img.w == L.image_w, "multi: %dx%d", img.w, img.h);
    double sx = (double)TU_CMU_W / L.thumb_w, sy = (double)TU_CMU_H / L.thumb_h;
    // Class 0 is 5 (its p99, so t = 1) up to cell 20 across and 41 down: x < 656, y < 1328.
    int worst = 0;
    for (int oy = 10; oy < 890; oy += 29) {
        for (int ox = 10; ox < 440; ox += 23) {
            uint8_t s[3];
            tu_ref_pixel(slide, 0, sx, sy, ox, oy, s);
            const uint8_t *got = tu_px_at(&img, ox, oy);
            for (int ch = 0; ch < 3; ch++) {
                int want = (int)lrint(s[ch] + 0.5 * (th_palette[0][ch] - s[ch]));
                worst = TH_MAX(worst, abs(got[ch] - want));
            }
        }
    }
    ok(worst <= 1, "multi: strong class 0 is slide + 0.5 (palette[0] - slide) (max diff %d)",
       worst);
    // Both CAMs are 0 from cell 21 to cell 31 across (x 688 .. 1008), and below cell 42
    // (y >= 1360) left of cell 31.
    is_int(plain_diff(&img, slide, 0, sx, sy, 470, 0, 671, 1960, 11), 0,
           "multi: where every CAM is zero the tu_image is the plain slide (band)");
    is_int(plain_diff(&img, slide, 0, sx, sy, 0, 920, 671, 1960, 19), 0,
           "multi: where every CAM is zero the tu_image is the plain slide (lower left)");
    is_int(plain_diff(&img, slide, 0, sx, sy, 1360, 0, 1496, 1960, 23), 0,
           "multi: the untiled right strip is the plain slide");
    TH_FREE(img.rgb);
}

static void test_sizes(th_slide *slide, const th_result *r, const th_model *model)
{
    th_render_options o;
    th_render_options_init(&o);
    o.width = 5000;
    tu_image img = {0};
    th_render_layout L;
    if (ok(tu_render(slide, r, model, &o, "wide.png", &img, &L), "width 5000: rendered")) {
        ok(img.h == TU_CMU_H && L.thumb_w == TU_CMU_W,
           "width above the slide's: capped at %d (%dx%d)", TU_CMU_H, img.w, img.h);
        is_int(plain_diff(&img, slide, 0, 1, 1, 2020, 100, 2220, 2900, 29), 0,
               "full size: the untiled strip is the slide's own pixels");
        TH_FREE(img.rgb);
    } else {
        skip(2, "no image");
    }
    o.width = 300;
    o.n_shown = 3;
    o.shown[1] = 1;
    o.shown[2] = 2;
    if (ok(tu_render(slide, r, model, &o, "small-multi.png", &img, &L), "width 300: rendered")) {
        ok(img.h == 300 && L.thumb_w == 224 && img.w > 224 && img.w < 400,
           "width 300: %dx%d, the legend fits beside the 224x300 thumbnail", img.w, img.h);
        TH_FREE(img.rgb);
    } else {
        skip(1, "no image");
    }
    // All six classes of the model, at 1000 px: six legend entries.
    o.width = 1000;
    o.n_shown = TH_MAX_SHOWN;
    for (int i = 0; i < TH_MAX_SHOWN; i++) {
        o.shown[i] = i;
    }
    if (ok(tu_render(slide, r, model, &o, "six.png", &img, &L), "six classes: rendered")) {
        // Entries are stacked from the top of the panel, in the order shown, each in its
        // class's colour: Okabe-Ito by class index, the background class (5) grey.
        const uint32_t want[TH_MAX_SHOWN] = {0xe69f00, 0x56b4e9, 0x009e73,
                                             0xf0e442, 0x0072b2, 0xa0a0a0};
        int prev = -1, in_order = 0;
        for (int i = 0; i < TH_MAX_SHOWN; i++) {
            int y = tu_swatch_y(&img, &L, want[i]);
            in_order += y > prev;
            prev = y;
        }
        is_int(in_order, TH_MAX_SHOWN, "six classes: six swatches top to bottom, class colours");
        TH_FREE(img.rgb);
    } else {
        skip(1, "no image");
    }
    // Absurdly small images still work: the legend simply dominates.
    const int tiny[3] = {1, 2, 16};
    for (int i = 0; i < 3; i++) {
        o.width = tiny[i];
        o.n_shown = 1 + 2 * (i % 2);
        bool done = tu_render(slide, r, model, &o, "tiny.png", &img, &L);
        ok(done && img.w == L.image_w && img.h == L.image_h && L.thumb_h == tiny[i],
           "width %d: %dx%d image, %dx%d thumbnail", tiny[i], img.w, img.h, L.thumb_w, L.thumb_h);
        TH_FREE(img.rgb);
    }
}

// TCGA (4443×3567, levels 1 and 2.0005): landscape, so the legend goes below; width 1000
// reads level 1.
static void test_landscape(void)
{
    th_slide *slide = th_slide_open(test_data_path("slides/TCGA-CR-7395-01A-01-TS1.svs"), NULL);
    th_grid g;
    if (!slide || !th_grid_init(&g, slide, 0, 224, 224, NULL)) {
        skip(5, "cannot open the TCGA slide");
        th_slide_close(slide);
        return;
    }
    // Six classes: 0 a diagonal ramp, 1 a ramp in the lower part, 2-5 vertical stripes.
    enum { NC = 6 };
    th_result *r = th_result_new(&g, NC, 7, 7, (int64_t)g.cols * g.rows, NULL);
    for (int64_t t = 0; r && t < r->n_tiles; t++) {
        int col = (int)(t % g.cols), row = (int)(t / g.cols);
        for (int k = 0; k < NC; k++) {
            r->probs[t * NC + k] = (float)(k + 1) / (NC * (NC + 1) / 2);
        }
        float cam[NC * 49]; // (NC, 7, 7)
        for (int c = 0; c < 49; c++) {
            int gx = col * 7 + c % 7, gy = row * 7 + c / 7;
            cam[c] = (float)(gx + gy);
            cam[49 + c] = (float)(gy > 50 ? 100 - gx : 0);
            for (int k = 2; k < NC; k++) {
                cam[k * 49 + c] = gx / 12 == k && gy < 50 ? 50.0f : 0.0f;
            }
        }
        if (!th_result_add_tile(r, t, col, row, cam, NULL)) {
            bail("th_result_add_tile failed");
        }
    }
    th_result_summarize(r);
    th_render_options o;
    th_render_options_init(&o);
    o.width = 1000;
    o.colormap = TH_COLORMAP_JET;
    tu_image img = {0};
    th_render_layout L;
    if (ok(r && tu_render(slide, r, NULL, &o, "landscape.png", &img, &L), "landscape: rendered")) {
        ok(L.thumb_w == 1000 && L.thumb_h == 803 && img.w == 1000 && img.h > 803 &&
               L.panel_y == 803,
           "landscape: %dx%d thumbnail, colour bar below (%dx%d)", L.thumb_w, L.thumb_h, img.w,
           img.h);
        // The tiles end at 19 × 224 = 4256: output columns from 958 are plain slide, read
        // from level 1. OpenSlide places reads at a non-integer downsample (2.0005) with
        // sub-pixel shifts that depend on where a read starts, so allow small differences.
        double sx = 4443.0 / 1000, sy = 3567.0 / 803, ds = th_slide_get_level_downsample(slide, 1);
        double mean1, mean0;
        int max1 = plain_diff_mean(&img, slide, 1, sx / ds, sy / ds, 960, 0, 1000, 803, 3, &mean1);
        int max0 = plain_diff_mean(&img, slide, 0, sx, sy, 960, 0, 1000, 803, 3, &mean0);
        diag("landscape strip vs level 1: max %d mean %.3f; vs level 0: max %d mean %.3f", max1,
             mean1, max0, mean0);
        ok(L.level == 1 && max1 <= 16 && mean1 < 0.5,
           "landscape: level 1, box-filtered (max diff %d, mean %.2f)", max1, mean1);
        TH_FREE(img.rgb);
    } else {
        skip(2, "no image");
    }
    o.n_shown = NC;
    for (int k = 0; k < NC; k++) {
        o.shown[k] = k;
    }
    ok(tu_render(slide, r, NULL, &o, "landscape-multi.png", &img, NULL),
       "landscape multi: rendered");
    TH_FREE(img.rgb);
    // At 400 px the six legend entries wrap onto more than one row.
    o.width = 400;
    bool done = tu_render(slide, r, NULL, &o, "landscape-multi-400.png", &img, &L);
    int pitch = (TH_FONT_H + 4) * L.font_scale;
    ok(done && img.w == 400 && L.panel_h >= 2 * pitch,
       "landscape multi at 400 px: %dx%d, the "
       "legend wraps (panel %d px high)",
       img.w, img.h, L.panel_h);
    TH_FREE(img.rgb);
    // At 4000 px (the legend below, font scale 7): one class, and six.
    for (int multi = 0; multi < 2; multi++) {
        th_render_options_init(&o);
        o.width = 4000;
        o.multi = multi;
        o.n_shown = multi ? NC : 1;
        for (int k = 0; k < o.n_shown; k++) {
            o.shown[k] = k;
        }
        th_legend lg;
        tu_check_legend_pixels(slide, r, NULL, &o, multi ? "tcga-multi-4000.png" : "tcga-4000.png",
                               &lg, &L);
    }
    th_result_free(r);
    th_slide_close(slide);
}

/* ---------------------------------------------------------------- fast overlay vs th_cam_sample */

/* A result on the CMU slide with pseudo-random CAMs (3 classes, 7×7 cells of 224-px tiles) on a
 * grid with the given stride (128: overlapping tiles, averaged); every 7th tile is not run. */
static th_result *make_random_result(th_slide *slide, int stride)
{
    th_grid g;
    if (!th_grid_init(&g, slide, 0, 224, 224, NULL)) {
        bail("grid");
    }
    g.stride_x = g.stride_y = stride;
    g.cols = (int)((g.level_w - 224) / stride + 1);
    g.rows = (int)((g.level_h - 224) / stride + 1);
    enum { NC = 3 };
    int64_t n = 0, total = (int64_t)g.cols * g.rows;
    for (int64_t t = 0; t < total; t++) {
        n += t % 7 != 3;
    }
    th_result *r = th_result_new(&g, NC, 7, 7, n, NULL);
    uint32_t seed = 12345;
    int64_t k = 0;
    for (int64_t t = 0; r && t < total; t++) {
        if (t % 7 == 3) {
            continue;
        }
        float cam[NC * 49]; // (NC, 7, 7)
        for (int c = 0; c < NC * 49; c++) {
            seed = seed * 1664525u + 1013904223u;
            cam[c] = (float)(seed >> 8) / (float)(1 << 24) * 8 - 2; // -2 .. 6
        }
        for (int c = 0; c < NC; c++) {
            r->probs[k * NC + c] = 1.0f / NC;
        }
        if (!th_result_add_tile(r, k++, (int)(t % g.cols), (int)(t / g.cols), cam, NULL)) {
            bail("th_result_add_tile failed");
        }
    }
    if (!r) {
        bail("th_result_new failed");
    }
    th_result_summarize(r);
    return r;
}

static uint8_t mix(uint8_t px, uint8_t c, float op)
{
    return (uint8_t)lrintf((float)px + op * ((float)c - (float)px));
}

/* The documented overlay at one pixel, from th_cam_sample: single = colormap(t) at alpha; multi =
 * the strongest class's colour (class c: palette entry c mod 6, whatever its place in `shown`),
 * its opacity rising from 0 at the threshold to alpha at t = 1. */
static void oracle_pixel(const th_result *r, const th_render_options *o, const float *lo,
                         const float *hi, double cx, double cy, uint8_t px[3])
{
    int best = -1;
    float best_t = 0;
    for (int i = 0; i < o->n_shown; i++) {
        float v;
        if (!th_cam_sample(r, o->shown[i], cx, cy, &v)) {
            return;
        }
        float t = TH_CLAMP((v - lo[i]) / (hi[i] - lo[i]), 0.0f, 1.0f);
        if (best < 0 || t > best_t) {
            best = i;
            best_t = t;
        }
    }
    uint8_t c[3];
    float op = (float)o->alpha;
    if (o->n_shown == 1 && !o->multi) {
        th_colormap_rgb(o->colormap, best_t, c);
    } else {
        float thr = (float)o->threshold;
        if (best_t < thr || best_t <= 0) {
            return;
        }
        op = thr < 1 ? op * (best_t - thr) / (1 - thr) : op;
        memcpy(c, th_palette[o->shown[best] % TH_MAX_SHOWN], 3); // class c: palette c mod 6
    }
    for (int ch = 0; ch < 3; ch++) {
        px[ch] = mix(px[ch], c[ch], op);
    }
}

// Every thumbnail pixel of `img` against the plain thumbnail `plain` + oracle_pixel.
static void check_oracle(th_slide *slide, const th_result *r, const th_render_options *o,
                         const tu_image *img, const tu_image *plain, const th_render_layout *L,
                         const char *what)
{
    float lo[TH_MAX_SHOWN], hi[TH_MAX_SHOWN];
    for (int i = 0; i < o->n_shown; i++) {
        bool raw = o->norm == TH_NORM_RAW;
        th_cam_range(r, o->norm, o->percentile, raw ? o->shown : &o->shown[i], raw ? o->n_shown : 1,
                     &lo[i], &hi[i], NULL, NULL);
        hi[i] = hi[i] > lo[i] ? hi[i] : lo[i] + 1;
    }
    int64_t w0, h0, wrong = 0, drawn = 0;
    th_slide_get_level_dimensions(slide, 0, &w0, &h0);
    double sx = (double)w0 / L->thumb_w, sy = (double)h0 / L->thumb_h;
    for (int oy = 0; oy < L->thumb_h; oy++) {
        for (int ox = 0; ox < L->thumb_w; ox++) {
            uint8_t want[3];
            memcpy(want, tu_px_at(plain, ox, oy), 3);
            oracle_pixel(r, o, lo, hi, (ox + 0.5) * sx, (oy + 0.5) * sy, want);
            wrong += memcmp(want, tu_px_at(img, ox, oy), 3) != 0;
            drawn += memcmp(want, tu_px_at(plain, ox, oy), 3) != 0;
        }
    }
    int64_t n = (int64_t)L->thumb_w * L->thumb_h;
    ok(wrong == 0 && drawn > n / 4,
       "%s: all %" PRId64 " thumbnail pixels are the plain slide + the overlay from th_cam_sample "
       "(%" PRId64 " differ; %" PRId64 " overlaid)",
       what, n, wrong, drawn);
}

static void test_oracle(th_slide *slide, const th_model *model)
{
    // Thumbnail pixels larger and smaller than CAM cells, and (5000) the slide's own pixels.
    const int strides[2] = {224, 128}, widths[2][2] = {{2000, 300}, {5000, 700}};
    for (int s = 0; s < 2; s++) {
        th_result *r = make_random_result(slide, strides[s]);
        for (int k = 0; k < 2; k++) {
            th_render_options o;
            th_render_options_init(&o);
            o.width = widths[s][k];
            o.alpha = 0;
            tu_image plain = {0}, img = {0};
            th_render_layout L;
            char what[64];
            if (!tu_render(slide, r, NULL, &o, "plain.png", &plain, &L)) {
                bail("plain render failed");
            }
            o.shown[0] = 2;
            o.alpha = 0.7;
            o.norm = TH_NORM_RAW;
            o.colormap = TH_COLORMAP_INFERNO;
            snprintf(what, sizeof(what), "stride %d, width %d, single", strides[s], widths[s][k]);
            if (ok(tu_render(slide, r, NULL, &o, "oracle.png", &img, NULL), "%s: rendered", what)) {
                check_oracle(slide, r, &o, &img, &plain, &L, what);
            }
            TH_FREE(img.rgb);
            th_render_options_init(&o);
            o.width = widths[s][k];
            o.n_shown = 3;
            o.shown[0] = 1;
            o.shown[1] = 0;
            o.shown[2] = 2;
            o.threshold = 0.3;
            snprintf(what, sizeof(what), "stride %d, width %d, multi", strides[s], widths[s][k]);
            if (ok(tu_render(slide, r, NULL, &o, "oracle.png", &img, NULL), "%s: rendered", what)) {
                check_oracle(slide, r, &o, &img, &plain, &L, what);
            }
            TH_FREE(img.rgb);
            TH_FREE(plain.rgb);
        }
        th_result_free(r);
    }
    (void)model;
}

/* ---------------------------------------------------------------- threads */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The file's structure checked with zlib alone, independently of libpng: the signature, every
 * chunk's CRC, IHDR first and IEND last, and the IDAT data together one zlib stream (its adler32
 * checked by uncompress) of exactly h rows of 1 + 3w bytes, each with a filter type 0 to 4. */
static bool png_stream_ok(const char *path, int *n_idat, char *why, size_t why_n)
{
    size_t n = 0, pos = 8, z_len = 0;
    uint8_t *file = th_read_file(path, &n, NULL), *z = th_malloc(n, NULL), *raw = NULL;
    bool ok = false;
    uLongf raw_len = 0, want = 0;
    const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    *n_idat = 0;
    snprintf(why, why_n, "cannot read the file");
    if (!file || !z || n < 8 + 25 || memcmp(file, sig, 8) != 0 || memcmp(file + 12, "IHDR", 4)) {
        goto out;
    }
    uint32_t w = be32(file + 16), h = be32(file + 20);
    want = (uLongf)h * (3 * (uLongf)w + 1);
    const uint8_t *last = NULL;
    while (pos + 12 <= n) {
        uint32_t len = be32(file + pos);
        const uint8_t *type = file + pos + 4;
        if (len > n - pos - 12 || crc32(0, type, len + 4) != be32(file + pos + 8 + len)) {
            snprintf(why, why_n, "bad chunk at byte %zu", pos);
            goto out;
        }
        if (memcmp(type, "IDAT", 4) == 0) {
            memcpy(z + z_len, type + 4, len);
            z_len += len;
            ++*n_idat;
        }
        last = type;
        pos += 12 + len;
    }
    raw = th_malloc(want + 1, NULL);
    raw_len = want + 1;
    int rc = raw ? uncompress(raw, &raw_len, z, z_len) : Z_MEM_ERROR;
    bool filters = rc == Z_OK && raw_len == want;
    for (uint32_t y = 0; filters && y < h; y++) {
        filters = raw[(size_t)y * (3 * (size_t)w + 1)] <= 4;
    }
    ok = pos == n && last && memcmp(last, "IEND", 4) == 0 && filters;
    snprintf(why, why_n, "%zu of %zu bytes in chunks, zlib %d, %lu of %lu bytes inflated", pos, n,
             rc, (unsigned long)raw_len, (unsigned long)want);
out:
    th_free(file);
    th_free(z);
    th_free(raw);
    return ok;
}

// The same PNG, byte for byte, whatever the number of rendering threads.
static void test_threads(th_slide *slide, const th_result *r, const th_model *model)
{
#ifdef _OPENMP
    th_render_options o;
    th_render_options_init(&o);
    o.n_shown = 3;
    o.shown[0] = 0;
    o.shown[1] = 1;
    o.shown[2] = 2;
    int saved = omp_get_max_threads();
    const int counts[3] = {1, 2, 3};
    char path[3][512];
    for (int i = 0; i < 3; i++) {
        snprintf(path[i], sizeof(path[i]), "%s/threads-%d.png", test_tmpdir(), counts[i]);
        omp_set_num_threads(counts[i]);
        th_error *err = NULL;
        double t0 = tu_now();
        bool done = th_render_heatmap(slide, r, model, &o, path[i], &err);
        ok(done, "threads %d: rendered in %.3f s %s", counts[i], tu_now() - t0,
           done ? "" : th_error_message(err));
        th_error_free(err);
    }
    omp_set_num_threads(saved);
    ok(tu_same_bytes(path[0], path[1]) && tu_same_bytes(path[0], path[2]),
       "1, 2 and 3 threads write the same bytes");
    // Each band is filtered and deflated by the thread that rendered it: libpng's simplified
    // API reads the same pixels back whatever the thread count.
    tu_image img[3] = {{0}};
    bool read = true, same = true;
    for (int i = 0; i < 3; i++) {
        read &= tu_png_read(path[i], &img[i]);
        same &= read && img[i].w == img[0].w && img[i].h == img[0].h &&
                memcmp(img[i].rgb, img[0].rgb, (size_t)img[0].w * img[0].h * 3) == 0;
    }
    ok(read && same && img[0].h == 2000,
       "1, 2 and 3 threads: png_image reads the same %dx%d pixels", img[0].w, img[0].h);
    for (int i = 0; i < 3; i++) {
        TH_FREE(img[i].rgb);
    }
    char why[160];
    int n_idat = 0;
    bool stream = png_stream_ok(path[1], &n_idat, why, sizeof(why));
    ok(stream && n_idat == (2000 + 31) / 32 + 1,
       "2 threads: CRCs, one zlib stream with its adler32, %d IDAT chunks (a band each + the end; "
       "%s)",
       n_idat, why);
#else
    skip(6, "built without OpenMP");
#endif
}

int main(void)
{
    plan(0);
    test_colormaps();
    test_names();
    test_palette();
    test_font();

    th_slide *slide = tu_open_slide("slides/CMU-1-Small-Region.svs");
    // A model only for its class names (tumor, stroma, lymphocytes, ...): 6 classes.
    th_model *model = tu_load_model("tests/data/models/vgg-strided.onnx");
    th_result *r = tu_make_cmu_result(slide, th_model_get_class_count(model));
    test_single(slide, r, model);
    test_multi(slide, r, model);
    test_sizes(slide, r, model);
    test_landscape();
    test_oracle(slide, model);
    test_threads(slide, r, model);
    tu_expect_render_errors(th_render_heatmap, "out.png", slide, r, model);
    th_render_options o; // the PNG's width (the TIFF is at the slide's resolution)
    th_render_options_init(&o);
    o.width = 0;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/fail", test_tmpdir());
    tu_expect_render_failure(th_render_heatmap, slide, r, model, &o, dir, "out.png", "width",
                             "width 0");
    tu_expect_disk_full(th_render_heatmap, "heatmap.png", slide, r, model);

    th_result_free(r);
    th_model_free(model);
    th_slide_close(slide);
    return 0;
}
