/* SPDX-License-Identifier: MIT */
/* Tests for render.c and font.c: colormaps against matplotlib's published values, the palette,
 * the bitmap font, and whole heatmaps of a real slide with a hand-made result, read back with
 * libpng and checked pixel by pixel against an independent box filter of the slide; the fast
 * overlay against th_cam_sample at every pixel; class colours (whatever the order shown, the
 * model's class_colors, `colors`) and clear glass on real runs of the bundled model; the same
 * bytes for 1, 2 and 3 threads, a PNG stream checked chunk by chunk with zlib, and a full disk. */
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
#include "tissue.h"

/* ---------------------------------------------------------------- colormaps */

static int rgb_dist(const uint8_t a[3], uint32_t hex)
{
    int d = 0;
    for (int ch = 0; ch < 3; ch++) {
        d = TH_MAX(d, abs((int)a[ch] - (int)((hex >> (16 - 8 * ch)) & 0xff)));
    }
    return d;
}

static void is_colour(th_colormap cmap, float t, uint32_t want, int tol, const char *name)
{
    uint8_t rgb[3];
    th_colormap_rgb(cmap, t, rgb);
    int d = rgb_dist(rgb, want);
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
        same += rgb_dist(th_palette[i], okabe_ito[i]) == 0;
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

static const uint8_t *px_at(const tu_image *img, int x, int y)
{
    return img->rgb + ((size_t)y * img->w + x) * 3;
}

/* The plain thumbnail pixel (ox, oy), computed here from the documented rule: the mean of the
 * level pixels whose centres fall inside the output pixel, rounded; k = level pixels per output
 * pixel. */
static void ref_pixel(th_slide *slide, int level, double kx, double ky, int ox, int oy,
                      uint8_t rgb[3])
{
    int64_t lw, lh;
    th_slide_get_level_dimensions(slide, level, &lw, &lh);
    double ds = th_slide_get_level_downsample(slide, level);
    int64_t x0 = (int64_t)ceil(ox * kx - 0.5), x1 = (int64_t)ceil((ox + 1) * kx - 0.5);
    int64_t y0 = (int64_t)ceil(oy * ky - 0.5), y1 = (int64_t)ceil((oy + 1) * ky - 0.5);
    x1 = TH_MIN(x1, lw);
    y1 = TH_MIN(y1, lh);
    uint8_t buf[16 * 16 * 3];
    uint64_t sum[3] = {0, 0, 0}, n = (uint64_t)((x1 - x0) * (y1 - y0));
    if (x1 - x0 > 16 || y1 - y0 > 16 || n == 0 ||
        !th_slide_read_region(slide, buf, llround(x0 * ds), llround(y0 * ds), level, x1 - x0,
                              y1 - y0, NULL)) {
        bail("ref_pixel: cannot read %d,%d", ox, oy);
    }
    for (uint64_t i = 0; i < n; i++) {
        for (int ch = 0; ch < 3; ch++) {
            sum[ch] += buf[i * 3 + ch];
        }
    }
    for (int ch = 0; ch < 3; ch++) {
        rgb[ch] = (uint8_t)((sum[ch] + n / 2) / n);
    }
}

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
            ref_pixel(slide, level, kx, ky, x, y, want);
            const uint8_t *got = px_at(img, x, y);
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

/* The top row of the first legend swatch of colour `hex` (a 5×5 block of exactly that colour in
 * the panel), or -1. */
static int swatch_y(const tu_image *img, const th_render_layout *L, uint32_t hex)
{
    for (int y = L->panel_y; y + 4 < img->h; y++) {
        for (int x = L->panel_x; x + 4 < img->w; x++) {
            bool all = true;
            for (int k = 0; k < 25 && all; k++) {
                all = rgb_dist(px_at(img, x + k % 5, y + k / 5), hex) == 0;
            }
            if (all) {
                return y;
            }
        }
    }
    return -1;
}

/* A hand-made result on the CMU slide (2220×2967): 224-px tiles, 9×13 grid, 7×7 CAM cells of
 * 32 px, tile (8, 0) not run. Class 0 is 5 in tile columns 0-2, rows 0-5 and 0 elsewhere;
 * class 1 a ramp of 0.25 per cell from global cell column 31 to the right edge (0 before it);
 * the other classes are zero. */
static th_result *make_cmu_result(th_slide *slide, int n_classes)
{
    th_grid g;
    th_error *err = NULL;
    if (!th_grid_init(&g, slide, 0, 224, 224, &err)) {
        bail("grid: %s", th_error_message(err));
    }
    int nc = n_classes;
    th_result *r = th_result_new(&g, nc, 7, 7, (int64_t)g.cols * g.rows - 1, NULL);
    if (!r || g.cols != 9 || g.rows != 13) {
        bail("th_result_new failed or unexpected grid %dx%d", g.cols, g.rows);
    }
    int64_t t = 0;
    for (int row = 0; row < g.rows; row++) {
        for (int col = 0; col < g.cols; col++) {
            if (col == 8 && row == 0) {
                continue;
            }
            float *p = r->probs + t * nc; // (nc)
            p[0] = col < 3 && row < 6 ? 0.7f : 0.1f;
            p[1] = col >= 4 ? 0.8f : 0.2f;
            p[2] = 1 - p[0] - p[1];
            float cam[TH_MAX_SHOWN * 49] = {0}; // (nc, 7, 7)
            for (int cy = 0; cy < 7; cy++) {
                for (int cx = 0; cx < 7; cx++) {
                    int gx = col * 7 + cx, gy = row * 7 + cy;
                    cam[0 * 49 + cy * 7 + cx] = gx < 21 && gy < 42 ? 5.0f : 0.0f;
                    cam[1 * 49 + cy * 7 + cx] = gx >= 31 ? 0.25f * (float)(gx - 31) : 0.0f;
                }
            }
            if (nc > TH_MAX_SHOWN || !th_result_add_tile(r, t, col, row, cam, NULL)) {
                bail("th_result_add_tile failed");
            }
            t++;
        }
    }
    th_result_summarize(r);
    return r;
}

static bool render(th_slide *slide, const th_result *r, const th_model *model,
                   const th_render_options *o, const char *name, tu_image *img, th_render_layout *L)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", test_tmpdir(), name);
    th_error *err = NULL;
    double t0 = tu_now();
    if (!th_render_heatmap(slide, r, model, o, path, &err)) {
        diag("%s: %s", name, th_error_message(err));
        th_error_free(err);
        return false;
    }
    diag("%s rendered in %.3f s", name, tu_now() - t0);
    if (L && !th_render_plan(slide, r, model, o, L, NULL)) {
        return false;
    }
    return tu_png_read(path, img);
}

#define CMU_W 2220
#define CMU_H 2967

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
    if (!ok(render(slide, r, model, &o, "single-ramp.png", &img, &L), "single: rendered")) {
        skip(11, "no image");
        return;
    }
    is_int(img.h, 2000, "single: long side (height) is the default 2000");
    ok(L.thumb_w == 1496 && L.thumb_h == 2000, "single: thumbnail %dx%d keeps the aspect",
       L.thumb_w, L.thumb_h);
    ok(img.w == L.image_w && img.w > L.thumb_w && L.panel_x == L.thumb_w,
       "single: PNG %dx%d = thumbnail + colour bar strip on the right", img.w, img.h);
    double sx = (double)CMU_W / L.thumb_w, sy = (double)CMU_H / L.thumb_h;
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
            const uint8_t *got = px_at(&img, ox, oy), *prev = px_at(&img, ox - 1, oy);
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
    ok(rgb_dist(px_at(&img, 300, 700), 0x440154) == 0 && rgb_dist(px_at(&img, 5, 5), 0x440154) == 0,
       "single: CAM 0 is viridis(0) at alpha 1");
    is_int(plain_diff(&img, slide, 0, sx, sy, 1360, 0, 1496, 1960, 17), 0,
           "single: the untiled right strip is the plain slide");
    is_int(plain_diff(&img, slide, 0, sx, sy, 0, 1964, 1496, 2000, 13), 0,
           "single: the untiled bottom strip is the plain slide");
    is_int(plain_diff(&img, slide, 0, sx, sy, 1212, 4, 1355, 149, 11), 0,
           "single: the tile that was not run shows the plain slide");
    const uint8_t *corner = px_at(&img, img.w - 2, img.h - 2);
    ok(corner[0] > 240 && corner[1] > 240 && corner[2] > 240, "single: light legend panel");
    // The colour bar: somewhere in the panel's upper half sits viridis' yellow end.
    bool yellow = false;
    for (int y = 0; y < img.h / 3 && !yellow; y++) {
        for (int x = L.panel_x; x < img.w && !yellow; x++) {
            yellow = rgb_dist(px_at(&img, x, y), 0xfde725) <= 2;
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
    if (!ok(render(slide, r, model, &o, "multi.png", &img, &L), "multi: rendered")) {
        skip(5, "no image");
        return;
    }
    ok(img.h == 2000 && img.w == L.image_w, "multi: %dx%d", img.w, img.h);
    double sx = (double)CMU_W / L.thumb_w, sy = (double)CMU_H / L.thumb_h;
    // Class 0 is 5 (its p99, so t = 1) up to cell 20 across and 41 down: x < 656, y < 1328.
    int worst = 0;
    for (int oy = 10; oy < 890; oy += 29) {
        for (int ox = 10; ox < 440; ox += 23) {
            uint8_t s[3];
            ref_pixel(slide, 0, sx, sy, ox, oy, s);
            const uint8_t *got = px_at(&img, ox, oy);
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
    if (ok(render(slide, r, model, &o, "wide.png", &img, &L), "width 5000: rendered")) {
        ok(img.h == CMU_H && L.thumb_w == CMU_W, "width above the slide's: capped at %d (%dx%d)",
           CMU_H, img.w, img.h);
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
    if (ok(render(slide, r, model, &o, "small-multi.png", &img, &L), "width 300: rendered")) {
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
    if (ok(render(slide, r, model, &o, "six.png", &img, &L), "six classes: rendered")) {
        // Entries are stacked from the top of the panel, in the order shown, each in its
        // class's colour: Okabe-Ito by class index, the background class (5) grey.
        const uint32_t want[TH_MAX_SHOWN] = {0xe69f00, 0x56b4e9, 0x009e73,
                                             0xf0e442, 0x0072b2, 0xa0a0a0};
        int prev = -1, in_order = 0;
        for (int i = 0; i < TH_MAX_SHOWN; i++) {
            int y = swatch_y(&img, &L, want[i]);
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
        bool done = render(slide, r, model, &o, "tiny.png", &img, &L);
        ok(done && img.w == L.image_w && img.h == L.image_h && L.thumb_h == tiny[i],
           "width %d: %dx%d image, %dx%d thumbnail", tiny[i], img.w, img.h, L.thumb_w, L.thumb_h);
        TH_FREE(img.rgb);
    }
}

static void check_legend_pixels(th_slide *slide, const th_result *r, const th_model *model,
                                const th_render_options *o, const char *name, th_legend *lg,
                                th_render_layout *L);

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
    if (ok(r && render(slide, r, NULL, &o, "landscape.png", &img, &L), "landscape: rendered")) {
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
    ok(render(slide, r, NULL, &o, "landscape-multi.png", &img, NULL), "landscape multi: rendered");
    TH_FREE(img.rgb);
    // At 400 px the six legend entries wrap onto more than one row.
    o.width = 400;
    bool done = render(slide, r, NULL, &o, "landscape-multi-400.png", &img, &L);
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
        check_legend_pixels(slide, r, NULL, &o, multi ? "tcga-multi-4000.png" : "tcga-4000.png",
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
                     &lo[i], &hi[i], NULL);
        hi[i] = hi[i] > lo[i] ? hi[i] : lo[i] + 1;
    }
    int64_t w0, h0, wrong = 0, drawn = 0;
    th_slide_get_level_dimensions(slide, 0, &w0, &h0);
    double sx = (double)w0 / L->thumb_w, sy = (double)h0 / L->thumb_h;
    for (int oy = 0; oy < L->thumb_h; oy++) {
        for (int ox = 0; ox < L->thumb_w; ox++) {
            uint8_t want[3];
            memcpy(want, px_at(plain, ox, oy), 3);
            oracle_pixel(r, o, lo, hi, (ox + 0.5) * sx, (oy + 0.5) * sy, want);
            wrong += memcmp(want, px_at(img, ox, oy), 3) != 0;
            drawn += memcmp(want, px_at(plain, ox, oy), 3) != 0;
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
            if (!render(slide, r, NULL, &o, "plain.png", &plain, &L)) {
                bail("plain render failed");
            }
            o.shown[0] = 2;
            o.alpha = 0.7;
            o.norm = TH_NORM_RAW;
            o.colormap = TH_COLORMAP_INFERNO;
            snprintf(what, sizeof(what), "stride %d, width %d, single", strides[s], widths[s][k]);
            if (ok(render(slide, r, NULL, &o, "oracle.png", &img, NULL), "%s: rendered", what)) {
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
            if (ok(render(slide, r, NULL, &o, "oracle.png", &img, NULL), "%s: rendered", what)) {
                check_oracle(slide, r, &o, &img, &plain, &L, what);
            }
            TH_FREE(img.rgb);
            TH_FREE(plain.rgb);
        }
        th_result_free(r);
    }
    (void)model;
}

/* ---------------------------------------------------------------- class colours, glass */

static bool same_bytes(const char *a, const char *b);

// The bundled model run on CMU (min_tissue 0: no mask; 0.1: a tissue mask in the result).
static th_result *run_default(th_slide *slide, const th_model *model, double min_tissue)
{
    th_run_options ro;
    th_run_options_init(&ro);
    ro.min_tissue = min_tissue;
    th_error *err = NULL;
    th_result *r = th_run(slide, model, &ro, &err);
    if (!r) {
        bail("run: %s", th_error_message(err));
    }
    return r;
}

static uint32_t hex_of(const uint8_t rgb[3])
{
    return (uint32_t)rgb[0] << 16 | (uint32_t)rgb[1] << 8 | rgb[2];
}

// Thumbnail pixels of exactly colour `hex`.
static int64_t count_colour(const tu_image *img, const th_render_layout *L, uint32_t hex)
{
    int64_t n = 0;
    for (int y = 0; y < L->thumb_h; y++) {
        for (int x = 0; x < L->thumb_w; x++) {
            n += rgb_dist(px_at(img, x, y), hex) == 0;
        }
    }
    return n;
}

// Thumbnail pixels where a and b differ.
static int64_t count_diff(const tu_image *a, const tu_image *b, const th_render_layout *L)
{
    int64_t n = 0;
    for (int y = 0; y < L->thumb_h; y++) {
        for (int x = 0; x < L->thumb_w; x++) {
            n += memcmp(px_at(a, x, y), px_at(b, x, y), 3) != 0;
        }
    }
    return n;
}

static uint32_t class_hex(const th_render_options *o, const th_model *m, int c)
{
    uint8_t rgb[3] = {0};
    th_error *err = NULL;
    if (!th_render_class_color(o, m, c, rgb, &err)) {
        diag("th_render_class_color(%d): %s", c, th_error_message(err));
        th_error_free(err);
        return 0xffffffff;
    }
    return hex_of(rgb);
}

/* Colours belong to classes: the bundled model (background, stroma, cellular, fat) on CMU. */
static void test_class_colors(th_slide *slide, const th_model *model, const th_result *r)
{
    is_int(class_hex(NULL, model, 0), 0xa0a0a0, "class colour: background class grey");
    ok(class_hex(NULL, model, 1) == 0x56b4e9 && class_hex(NULL, model, 2) == 0x009e73 &&
           class_hex(NULL, model, 3) == 0xf0e442,
       "class colour: class c is Okabe-Ito entry c (sky blue, bluish green, yellow)");
    is_int(class_hex(NULL, NULL, 7), 0x56b4e9, "class colour: no model, class 7 = entry 7 mod 6");

    // Shown {1, 2} and {2, 1}, alpha 1: pixels at full strength are exactly their class colour.
    th_render_options o;
    th_render_options_init(&o);
    o.multi = true;
    o.n_shown = 2;
    o.width = 800;
    o.alpha = 0;
    tu_image plain = {0}, a = {0}, b = {0};
    th_render_layout L;
    if (!render(slide, r, model, &o, "plain.png", &plain, &L)) {
        bail("plain render failed");
    }
    o.alpha = 1;
    o.shown[0] = 1;
    o.shown[1] = 2;
    bool done = render(slide, r, model, &o, "order-12.png", &a, NULL);
    o.shown[0] = 2;
    o.shown[1] = 1;
    done = render(slide, r, model, &o, "order-21.png", &b, NULL) && done;
    if (!ok(done, "order: {1,2} and {2,1} rendered")) {
        skip(5, "no image");
        goto out;
    }
    int64_t n2 = count_colour(&a, &L, 0x009e73), tinted = count_diff(&a, &plain, &L);
    int64_t differ = count_diff(&a, &b, &L);
    diag("order: %" PRId64 " tinted, %" PRId64 " at class 2's full colour, %" PRId64 " differ",
         tinted, n2, differ);
    ok(n2 > 100 && n2 == count_colour(&b, &L, 0x009e73),
       "order: class 2 has its colour #009e73 at the same %" PRId64 " pixels either way", n2);
    // Only ties (both classes at full strength: the first shown wins) may differ.
    ok(tinted > (int64_t)L.thumb_w * L.thumb_h / 10 && differ * 1000 <= tinted,
       "order: the overlays are the same but for ties (%" PRId64 " of %" PRId64 " pixels)", differ,
       tinted);
    int a1 = swatch_y(&a, &L, class_hex(NULL, model, 1)), a2 = swatch_y(&a, &L, 0x009e73);
    int b1 = swatch_y(&b, &L, class_hex(NULL, model, 1)), b2 = swatch_y(&b, &L, 0x009e73);
    ok(a1 >= 0 && a2 > a1 && b2 >= 0 && b1 > b2,
       "legend: each swatch is th_render_class_color's, in the order shown (%d %d, %d %d)", a1, a2,
       b1, b2);
    TH_FREE(a.rgb);
    TH_FREE(b.rgb);

    // The model's class_colors metadata, and colors over it.
    char path[600];
    snprintf(path, sizeof(path), "%s/class-colors.onnx", test_tmpdir());
    tu_model_with_metadata(test_src_path("models/default.onnx"), "class_colors",
                           "#111111, #FF0000,#00ff00 ,#0000ff", path);
    th_model *mc = th_model_load(path, NULL);
    if (!mc) {
        bail("cannot load %s", path);
    }
    ok(class_hex(NULL, mc, 0) == 0x111111 && class_hex(NULL, mc, 1) == 0xff0000 &&
           class_hex(NULL, mc, 2) == 0x00ff00 && class_hex(NULL, mc, 3) == 0x0000ff,
       "class_colors: one colour per class, the background's too");
    th_render_options_init(&o);
    o.colors = " cellular = #FF00ff,fat=#123456";
    ok(class_hex(&o, mc, 1) == 0xff0000 && class_hex(&o, mc, 2) == 0xff00ff &&
           class_hex(&o, mc, 3) == 0x123456 && class_hex(&o, model, 1) == 0x56b4e9,
       "colors: named classes over class_colors and the palette, the others as they were");
    o.multi = true;
    o.n_shown = 2;
    o.shown[0] = 1;
    o.shown[1] = 2;
    o.width = 800;
    o.alpha = 1;
    if (ok(render(slide, r, mc, &o, "colors.png", &a, NULL), "colors: rendered")) {
        int64_t red = count_colour(&a, &L, 0xff0000), magenta = count_colour(&a, &L, 0xff00ff);
        diag("colors: %" PRId64 " pixels #ff0000, %" PRId64 " #ff00ff", red, magenta);
        ok(red > 100 && magenta > 100 && count_colour(&a, &L, 0x009e73) == 0 &&
               count_colour(&a, &L, 0x56b4e9) == 0,
           "colors: the overlay draws class_colors' stroma and colors' cellular");
        ok(swatch_y(&a, &L, 0xff0000) >= 0 && swatch_y(&a, &L, 0xff00ff) >= 0,
           "colors: the legend's swatches too");
    } else {
        skip(2, "no image");
    }
    TH_FREE(a.rgb);

    // Bad values: a clear error and no file.
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/fail-colors", test_tmpdir());
    if (mkdir(dir, 0777) != 0) {
        bail("mkdir %s", dir);
    }
    o.colors = "cellular=#ff00f";
    tu_expect_render_failure(th_render_heatmap, slide, r, mc, &o, dir, "out.png",
                             "colors: 'cellular=#ff00f' is not NAME=#RRGGBB", "colors: 5 digits");
    o.colors = "cellular";
    tu_expect_render_failure(th_render_heatmap, slide, r, mc, &o, dir, "out.png",
                             "colors: 'cellular' is not NAME=#RRGGBB", "colors: no colour");
    o.colors = "stroma=#000000,tumour=#ffffff";
    tu_expect_render_failure(th_render_heatmap, slide, r, mc, &o, dir, "out.png",
                             "colors: no class named 'tumour'", "colors: unknown class");
    o.colors = NULL;
    const char *bad[2][2] = {
        {"#111111,#ff0000,#00ff00", "metadata class_colors: 3 colours for 4"},
        {"#111111,red,#00ff00,#0000ff", "metadata class_colors: colour 2 'red' is not #rrggbb"}};
    for (int i = 0; i < 2; i++) {
        tu_model_with_metadata(test_src_path("models/default.onnx"), "class_colors", bad[i][0],
                               path);
        th_model *mb = th_model_load(path, NULL);
        tu_expect_render_failure(th_render_heatmap, slide, r, mb, &o, dir, "out.png", bad[i][1],
                                 bad[i][1]);
        th_model_free(mb);
    }
    th_model_free(mc);
out:
    TH_FREE(plain.rgb);
}

// Whether thumbnail pixel (x, y) lies on glass: its level-0 centre's mask pixel is 0.
static bool on_glass(const th_tissue *t, double sx, double sy, int x, int y)
{
    int mx = (int)TH_MIN(floor((x + 0.5) * sx / t->sx), t->w - 1.0);
    int my = (int)TH_MIN(floor((y + 0.5) * sy / t->sy), t->h - 1.0);
    return !th_tissue_at(t, mx, my);
}

/* Glass stays clear: single and multi, against the plain thumbnail (box-filtered here from the
 * slide), and with tint_glass as before; without a mask tint_glass changes nothing. */
static void test_glass(th_slide *slide, const th_model *model, const th_result *r,
                       const th_result *nomask)
{
    const th_tissue *t = r->tissue;
    if (!ok(t != NULL && nomask->tissue == NULL, "glass: a result with a mask, one without")) {
        return;
    }
    for (int multi = 0; multi < 2; multi++) {
        const char *mode = multi ? "multi" : "single";
        th_render_options o;
        th_render_options_init(&o);
        o.width = 800;
        o.shown[0] = 2;
        if (multi) {
            o.n_shown = th_result_top_classes(r, model, 3, o.shown);
            o.multi = true;
            o.threshold = 0;
        }
        tu_image img = {0}, tint = {0};
        th_render_layout L;
        char name[64];
        snprintf(name, sizeof(name), "glass-%s.png", mode);
        bool done = render(slide, r, model, &o, name, &img, &L);
        o.tint_glass = true;
        snprintf(name, sizeof(name), "tint-%s.png", mode);
        done = render(slide, r, model, &o, name, &tint, NULL) && done;
        if (!ok(done, "glass, %s: rendered", mode)) {
            skip(3, "no image");
            continue;
        }
        double sx = (double)CMU_W / L.thumb_w, sy = (double)CMU_H / L.thumb_h;
        int64_t glass = 0, wrong = 0, tinted = 0, tissue_differ = 0, in_tiles = 0;
        for (int y = 0; y < L.thumb_h; y++) {
            for (int x = 0; x < L.thumb_w; x++) {
                bool differ = memcmp(px_at(&img, x, y), px_at(&tint, x, y), 3) != 0;
                if (!on_glass(t, sx, sy, x, y)) {
                    tissue_differ += differ;
                    continue;
                }
                float v;
                glass++;
                in_tiles += th_cam_sample(r, o.shown[0], (x + 0.5) * sx, (y + 0.5) * sy, &v);
                tinted += differ;
                if (glass % 3 == 0) { // a third of them against the slide itself
                    uint8_t want[3];
                    ref_pixel(slide, 0, sx, sy, x, y, want);
                    wrong += memcmp(want, px_at(&img, x, y), 3) != 0;
                }
            }
        }
        diag("glass, %s: %" PRId64 " glass pixels, %" PRId64 " in tiles run, %" PRId64
             " tinted with tint_glass",
             mode, glass, in_tiles, tinted);
        ok(glass > 1000 && wrong == 0,
           "glass, %s: glass pixels are the plain slide (%" PRId64 " of %" PRId64 " differ)", mode,
           wrong, glass / 3);
        // Single tints every pixel of a tile run; multi only where a class passes 0.
        ok(in_tiles > 1000 && (multi ? tinted > 1000 : tinted >= in_tiles * 99 / 100),
           "glass, %s: tint_glass tints glass in the tiles run (%" PRId64 " of %" PRId64 ")", mode,
           tinted, in_tiles);
        is_int(tissue_differ, 0, "glass, %s: tissue pixels are the same either way", mode);
        TH_FREE(img.rgb);
        TH_FREE(tint.rgb);
    }
    // No mask (min_tissue 0): tint_glass makes no difference.
    th_render_options o;
    th_render_options_init(&o);
    o.width = 800;
    o.shown[0] = 2;
    char p1[600], p2[600];
    snprintf(p1, sizeof(p1), "%s/nomask.png", test_tmpdir());
    snprintf(p2, sizeof(p2), "%s/nomask-tint.png", test_tmpdir());
    bool done = th_render_heatmap(slide, nomask, model, &o, p1, NULL);
    o.tint_glass = true;
    done = done && th_render_heatmap(slide, nomask, model, &o, p2, NULL);
    ok(done && same_bytes(p1, p2), "no mask: tint_glass writes the same bytes");
#ifdef _OPENMP
    // Glass and class colours: still the same bytes for 1 and 2 threads.
    o.tint_glass = false;
    o.multi = true;
    o.n_shown = 2;
    o.shown[0] = 2;
    o.shown[1] = 1;
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    done = th_render_heatmap(slide, r, model, &o, p1, NULL);
    omp_set_num_threads(2);
    done = done && th_render_heatmap(slide, r, model, &o, p2, NULL);
    omp_set_num_threads(saved);
    ok(done && same_bytes(p1, p2), "glass, multi: 1 and 2 threads write the same bytes");
#else
    skip(1, "built without OpenMP");
#endif
}

/* ---------------------------------------------------------------- threads */

static bool same_bytes(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    uint8_t *pa = th_read_file(a, &na, NULL), *pb = th_read_file(b, &nb, NULL);
    bool same = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    th_free(pa);
    th_free(pb);
    return same;
}

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
    ok(same_bytes(path[0], path[1]) && same_bytes(path[0], path[2]),
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

/* A full disk, simulated with a 1 MB file size limit: the PNG (about 3 MB) fails midway, with
 * "write error", and leaves no file behind. */
static void test_disk_full(th_slide *slide, const th_result *r, const th_model *model)
{
    struct rlimit old, lim;
    if (getrlimit(RLIMIT_FSIZE, &old) != 0) {
        skip(3, "no RLIMIT_FSIZE");
        return;
    }
    char dir[512], path[600];
    snprintf(dir, sizeof(dir), "%s/full", test_tmpdir());
    snprintf(path, sizeof(path), "%s/heatmap.png", dir);
    if (mkdir(dir, 0777) != 0) {
        bail("mkdir %s", dir);
    }
    th_render_options o;
    th_render_options_init(&o);
    th_error *err = NULL;
    lim = old;
    lim.rlim_cur = TH_MIN(old.rlim_max, (rlim_t)1 << 20);
    signal(SIGXFSZ, SIG_IGN);
    fflush(stdout); // nothing may be written to stdout under the limit
    setrlimit(RLIMIT_FSIZE, &lim);
    bool done = th_render_heatmap(slide, r, model, &o, path, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);
    ok(!done && err, "full disk: fails");
    like(err ? th_error_message(err) : NULL, "write error", "full disk: message");
    ok(tu_files_in(dir) == 0, "full disk: leaves no file behind");
    th_error_free(err);
}

/* ---------------------------------------------------------------- the legend */

#define INK 0x222222      // font.c's text colour
#define PANEL_BG 0xf7f7f7 // and the panel's background

typedef struct box {
    int x0, y0, x1, y1;
} box;

// A primitive's extent in panel pixels (a text's: its cells, descender rows included).
static box prim_box(const th_prim *q, int s)
{
    if (q->kind == PRIM_TEXT) {
        return (box){q->x, q->y, q->x + th_font_text_width(q->text, s), q->y + TH_FONT_H * s};
    }
    return (box){q->x, q->y, q->x + q->w, q->y + q->h};
}

static bool overlap(box a, box b)
{
    return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
}

static bool has_text(const th_panel *p, const char *s)
{
    for (int k = 0; k < p->n; k++) {
        if (p->p[k].kind == PRIM_TEXT && strcmp(p->p[k].text, s) == 0) {
            return true;
        }
    }
    return false;
}

/* What is wrong with the planned legend (NULL if nothing): text too small or larger than needed,
 * a primitive outside the panel, a text overlapping anything but the background, a string of the
 * legend not drawn, or image sizes that do not add up. */
static const char *legend_problem(const th_legend *lg, const th_render_layout *L, const th_panel *p,
                                  int out_long)
{
    int s = L->font_scale, long_px = TH_MAX(L->image_w, L->image_h);
    bool below = L->thumb_w > L->thumb_h;
    if (s < 1 || TH_FONT_ASCENT * s * 1000 < TH_LEGEND_PERMILLE * long_px) {
        return "capitals below 1.2 % of the long side";
    }
    if (s > 1 && TH_FONT_ASCENT * (s - 1) * 1000 >= TH_LEGEND_PERMILLE * long_px) {
        return "font larger than needed";
    }
    if (TH_MAX(L->thumb_w, L->thumb_h) != out_long ||
        (below ? L->image_w != L->panel_w || L->panel_w < L->thumb_w ||
                     L->image_h != L->thumb_h + L->panel_h || L->panel_y != L->thumb_h
               : L->image_w != L->thumb_w + L->panel_w || L->image_h != L->panel_h ||
                     L->panel_h < L->thumb_h || L->panel_x != L->thumb_w)) {
        return "image, thumbnail and panel sizes do not add up";
    }
    for (int k = 0; k < p->n; k++) {
        box b = prim_box(&p->p[k], s);
        if (b.x0 < 0 || b.y0 < 0 || b.x1 > L->panel_w || b.y1 > L->panel_h || b.x1 <= b.x0 ||
            b.y1 <= b.y0) {
            return "a primitive outside the panel (or empty)";
        }
        for (int j = 2; j < p->n && p->p[k].kind == PRIM_TEXT; j++) {
            if (j != k && overlap(b, prim_box(&p->p[j], s))) {
                return "a text overlaps another primitive";
            }
        }
    }
    for (int i = 0; i < lg->n; i++) {
        if (!has_text(p, lg->label[i])) {
            return "a class label is not drawn";
        }
    }
    if ((lg->note[0] && !has_text(p, lg->note)) ||
        (!lg->multi && (!has_text(p, lg->tick_lo) || !has_text(p, lg->tick_hi)))) {
        return "the note or a tick label is not drawn";
    }
    return NULL;
}

// The widest legend render.c makes: n classes with 32-byte names at 100.0 %, long ticks.
static void wide_legend(th_legend *lg, bool multi, int n, bool note)
{
    memset(lg, 0, sizeof(*lg));
    lg->multi = multi;
    lg->n = n;
    for (int i = 0; i < n; i++) {
        snprintf(lg->label[i], TH_LABEL_MAX, "c%d_%s 100.0%%", i, "WWWWWWWWWWWWWWWWWWWWWWWWWWWWW");
        memcpy(lg->rgb[i], th_palette[i], 3);
    }
    snprintf(lg->tick_lo, TH_LABEL_MAX, "-1.23e+04");
    snprintf(lg->tick_hi, TH_LABEL_MAX, "-1.23e+04 (p99.9)");
    snprintf(lg->note, TH_LABEL_MAX, "%s", note ? "% of tissue tiles" : "");
}

// th_panel_plan over widths 1 .. 4000 and slides of every shape, for the widest legends.
static void test_legend_layout(void)
{
    const int widths[] = {1, 2, 3, 16, 50, 100, 299, 300, 400, 583, 600, 1000, 2000, 3000, 4000};
    const int64_t shapes[][2] = {{4000, 3000}, {3000, 4000}, {4000, 4000},
                                 {4000, 60},   {60, 4000},   {2220, 2967}};
    const char *what[4] = {"multi, six classes, note", "multi, one class", "single, note",
                           "single"};
    for (int mode = 0; mode < 4; mode++) {
        th_legend lg;
        wide_legend(&lg, mode < 2, mode == 0 ? TH_MAX_SHOWN : 1, mode % 2 == 0);
        int bad = 0, max_s = 0;
        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
            for (size_t j = 0; j < sizeof(widths) / sizeof(widths[0]); j++) {
                th_render_layout L;
                th_panel p;
                th_panel_plan(&lg, shapes[i][0], shapes[i][1], widths[j], &L, &p);
                int out_long = (int)TH_MIN((int64_t)widths[j], TH_MAX(shapes[i][0], shapes[i][1]));
                const char *why = legend_problem(&lg, &L, &p, out_long);
                if (why && bad++ == 0) {
                    diag("%s, %" PRId64 "x%" PRId64 " at width %d (scale %d, image %dx%d): %s",
                         what[mode], shapes[i][0], shapes[i][1], widths[j], L.font_scale, L.image_w,
                         L.image_h, why);
                }
                max_s = TH_MAX(max_s, L.font_scale);
            }
        }
        ok(bad == 0 && max_s >= 7,
           "legend layout, %s: legible, fits, nothing overlaps, widths 1..4000 (%d bad; "
           "largest scale %d)",
           what[mode], bad, max_s);
    }
}

/* Is text primitive q in the image exactly as th_font_draw draws it: ink where the font has
 * ink, the panel's background elsewhere in its cells, and some ink? */
static bool text_drawn(const tu_image *img, const th_render_layout *L, const th_prim *q)
{
    int s = L->font_scale, w = th_font_text_width(q->text, s), h = TH_FONT_H * s;
    int x0 = L->panel_x + q->x, y0 = L->panel_y + q->y;
    if (w == 0 || x0 < 0 || y0 < 0 || x0 + w > img->w || y0 + h > img->h) {
        return false;
    }
    uint8_t *want = tu_xcalloc((size_t)w * h, 3); // (h, w, 3), ink 255
    th_band band = {.rgb = want, .w = w, .h = h, .y0 = 0};
    const uint8_t on[3] = {255, 255, 255};
    th_font_draw(&band, 0, 0, q->text, s, on);
    bool same = true;
    int inked = 0;
    for (int y = 0; y < h && same; y++) {
        for (int x = 0; x < w && same; x++) {
            bool ink = want[((size_t)y * w + x) * 3] == 255;
            inked += ink;
            same = rgb_dist(px_at(img, x0 + x, y0 + y), ink ? INK : PANEL_BG) == 0;
        }
    }
    th_free(want);
    return same && inked > 0;
}

/* The height of the drawn text q measured in the image: the rows holding dark pixels in its
 * columns, from two font pixels above its cell to two below. */
static int ink_height(const tu_image *img, const th_render_layout *L, const th_prim *q)
{
    int s = L->font_scale, x0 = L->panel_x + q->x;
    int x1 = TH_MIN(img->w, x0 + th_font_text_width(q->text, s));
    int ya = TH_MAX(0, L->panel_y + q->y - 2 * s);
    int yb = TH_MIN(img->h, L->panel_y + q->y + (TH_FONT_H + 2) * s);
    int top = -1, bottom = -1;
    for (int y = ya; y < yb; y++) {
        for (int x = x0; x < x1; x++) {
            const uint8_t *c = px_at(img, x, y);
            if (c[0] < 0x60 && c[1] < 0x60 && c[2] < 0x60) {
                top = top < 0 ? y : top;
                bottom = y;
                break;
            }
        }
    }
    return top < 0 ? 0 : bottom - top + 1;
}

/* Render, then check the legend in the pixels: the first label's measured height at least 1.2 %
 * of the image's long side (and the font's native size), and every text drawn as planned. The
 * legend and layout go to *lg and *L. */
static void check_legend_pixels(th_slide *slide, const th_result *r, const th_model *model,
                                const th_render_options *o, const char *name, th_legend *lg,
                                th_render_layout *L)
{
    tu_image img = {0};
    th_panel p;
    bool done = render(slide, r, model, o, name, &img, NULL) &&
                th_render_plan_legend(slide, r, model, o, L, lg, &p, NULL);
    if (!ok(done && img.w == L->image_w && img.h == L->image_h, "%s: rendered, %dx%d as planned",
            name, img.w, img.h)) {
        skip(2, "no image");
        TH_FREE(img.rgb);
        return;
    }
    const th_prim *first = NULL;
    int drawn = 0, texts = 0;
    for (int k = 0; k < p.n; k++) {
        if (p.p[k].kind == PRIM_TEXT) {
            first = first ? first : &p.p[k];
            texts++;
            drawn += text_drawn(&img, L, &p.p[k]);
        }
    }
    int h = first ? ink_height(&img, L, first) : 0, long_px = TH_MAX(img.w, img.h);
    ok(h >= TH_FONT_ASCENT && h * 1000 >= TH_LEGEND_PERMILLE * long_px,
       "%s: \"%s\" is %d px high, >= 1.2 %% of %d (scale %d)", name, first ? first->text : "", h,
       long_px, L->font_scale);
    is_int(drawn, texts, "%s: every legend text drawn exactly, inside the image", name);
    TH_FREE(img.rgb);
}

// Glyph heights and texts in real renders at 400, 2000 and (at the slide's 2967) 4000 px.
static void test_legend_sizes(th_slide *slide, const th_result *r, const th_model *model)
{
    const int widths[3] = {400, 2000, 4000};
    for (int i = 0; i < 6; i++) {
        th_render_options o;
        th_render_options_init(&o);
        o.width = widths[i / 2];
        o.multi = i % 2;
        o.n_shown = o.multi ? 3 : 1;
        for (int k = 0; k < o.n_shown; k++) {
            o.shown[k] = k;
        }
        char name[64];
        snprintf(name, sizeof(name), "legend-%s-%d.png", o.multi ? "multi" : "single", o.width);
        th_legend lg;
        th_render_layout L;
        check_legend_pixels(slide, r, model, &o, name, &lg, &L);
    }
}

// The colour bar's labels are the display range's real values, drawn (check_legend_pixels).
static void test_legend_values(th_slide *slide, const th_result *r, const th_model *model)
{
    th_render_options o;
    th_render_options_init(&o);
    o.width = 1000;
    th_legend lg;
    th_render_layout L;
    // Class 0 is 5 on 18 % of the cells, 0 elsewhere: its p99 is 5.
    bool done = th_render_plan_legend(slide, r, model, &o, &L, &lg, NULL, NULL);
    ok(done && strcmp(lg.tick_lo, "0") == 0 && strcmp(lg.tick_hi, "5 (p99)") == 0,
       "colour bar of class 0: \"%s\" to \"%s\", want \"0\" to \"5 (p99)\"", lg.tick_lo,
       lg.tick_hi);
    // Class 1 (the ramp) at p90: the value th_render_ranges gives report.json, as %.3g.
    o.shown[0] = 1;
    o.percentile = 90;
    float lo, hi;
    char want[TH_LABEL_MAX];
    done = th_render_ranges(r, &o, &lo, &hi, NULL);
    snprintf(want, sizeof(want), "%.3g (p90)", hi);
    check_legend_pixels(slide, r, model, &o, "legend-p90.png", &lg, &L);
    ok(done && lo == 0 && hi > 1 && hi < 7.75f && strcmp(lg.tick_hi, want) == 0 &&
           strcmp(lg.tick_lo, "0") == 0,
       "colour bar at p90: \"%s\" to \"%s\", want \"0\" to \"%s\"", lg.tick_lo, lg.tick_hi, want);
    // Raw: the ramp runs from 0 to 7.75.
    o.norm = TH_NORM_RAW;
    done = th_render_plan_legend(slide, r, model, &o, &L, &lg, NULL, NULL);
    ok(done && strcmp(lg.tick_lo, "0") == 0 && strcmp(lg.tick_hi, "7.75") == 0,
       "colour bar, raw: \"%s\" to \"%s\", want \"0\" to \"7.75\"", lg.tick_lo, lg.tick_hi);
}

// The note "% of tissue tiles" is in the legend exactly when tiles were skipped.
static void check_note(th_slide *slide, const th_result *r, const th_model *model, bool multi,
                       const char *what)
{
    th_render_options o;
    th_render_options_init(&o);
    o.multi = multi;
    o.width = 600;
    th_legend lg;
    th_render_layout L;
    th_panel p;
    int64_t skipped;
    th_result_get_tile_counts(r, NULL, &skipped);
    bool done = th_render_plan_legend(slide, r, model, &o, &L, &lg, &p, NULL);
    bool want = skipped > 0;
    ok(done && has_text(&p, "% of tissue tiles") == want &&
           strcmp(lg.note, want ? "% of tissue tiles" : "") == 0,
       "%s, %s, %" PRId64 " tiles skipped: the note is %s", multi ? "multi" : "single", what,
       skipped, want ? "drawn" : "absent");
}

/* The note on runs of the bundled model `dflt` (with and without tissue detection) and on the
 * hand-made result r of `model`, placed and drawn; the same bytes for 1 and 2 threads. */
static void test_legend_note(th_slide *slide, th_result *r, const th_model *model,
                             const th_model *dflt, const th_result *real, const th_result *nomask)
{
    check_note(slide, real, dflt, true, "bundled model, min_tissue 0.1");
    check_note(slide, nomask, dflt, false, "bundled model, min_tissue 0");
    int64_t saved = r->n_skipped;
    check_note(slide, r, model, false, "hand-made result");
    r->n_skipped = 4;
    check_note(slide, r, model, false, "hand-made result");
    check_note(slide, r, model, true, "hand-made result");
    // Where the note goes, drawn: under the classes (multi) and the class name (single).
    th_render_options o;
    th_render_options_init(&o);
    th_legend lg;
    th_render_layout L;
    check_legend_pixels(slide, r, model, &o, "legend-note-single.png", &lg, &L);
    o.multi = true;
    check_legend_pixels(slide, r, model, &o, "legend-note-multi.png", &lg, &L);
#ifdef _OPENMP
    // The same bytes for 1 and 2 threads, with the note, at 2000 px (font scale 4).
    char p1[512], p2[512];
    snprintf(p1, sizeof(p1), "%s/legend-t1.png", test_tmpdir());
    snprintf(p2, sizeof(p2), "%s/legend-t2.png", test_tmpdir());
    int threads = omp_get_max_threads();
    bool done = true;
    for (int multi = 0; multi < 2; multi++) {
        o.multi = multi;
        omp_set_num_threads(1);
        done = done && th_render_heatmap(slide, r, model, &o, p1, NULL);
        omp_set_num_threads(2);
        done = done && th_render_heatmap(slide, r, model, &o, p2, NULL) && same_bytes(p1, p2);
    }
    omp_set_num_threads(threads);
    ok(done, "legend with the note, single and multi: 1 and 2 threads write the same bytes");
#else
    skip(1, "no OpenMP");
#endif
    r->n_skipped = saved;
}

int main(void)
{
    plan(0);
    test_colormaps();
    test_names();
    test_palette();
    test_font();
    test_legend_layout();

    th_error *err = NULL;
    th_slide *slide = th_slide_open(test_data_path("slides/CMU-1-Small-Region.svs"), &err);
    if (!slide) {
        bail("CMU-1-Small-Region.svs: %s", th_error_message(err));
    }
    // A model only for its class names (tumor, stroma, lymphocytes, ...): 6 classes.
    th_model *model = th_model_load(test_src_path("tests/data/models/vgg-strided.onnx"), &err);
    if (!model) {
        bail("vgg-strided.onnx: %s", th_error_message(err));
    }
    th_result *r = make_cmu_result(slide, th_model_get_class_count(model));
    test_single(slide, r, model);
    test_multi(slide, r, model);
    test_sizes(slide, r, model);
    test_landscape();
    test_oracle(slide, model);
    test_threads(slide, r, model);
    test_legend_sizes(slide, r, model);
    test_legend_values(slide, r, model);
    tu_expect_render_errors(th_render_heatmap, "out.png", slide, r, model);
    th_model *dflt = th_model_load(test_src_path("models/default.onnx"), &err);
    if (!dflt) {
        bail("models/default.onnx: %s", th_error_message(err));
    }
    th_result *real = run_default(slide, dflt, 0.1), *nomask = run_default(slide, dflt, 0);
    test_class_colors(slide, dflt, real);
    test_glass(slide, dflt, real, nomask);
    test_legend_note(slide, r, model, dflt, real, nomask);
    th_result_free(real);
    th_result_free(nomask);
    th_model_free(dflt);
    th_render_options o; // the PNG's width (the TIFF is at the slide's resolution)
    th_render_options_init(&o);
    o.width = 0;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/fail", test_tmpdir());
    tu_expect_render_failure(th_render_heatmap, slide, r, model, &o, dir, "out.png", "width",
                             "width 0");
    test_disk_full(slide, r, model);

    th_result_free(r);
    th_model_free(model);
    th_slide_close(slide);
    return 0;
}
