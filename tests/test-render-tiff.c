/* SPDX-License-Identifier: MIT */
/* Tests for render-tiff.c: the bundled model on CMU-1-Small-Region, written as heatmap.tiff and
 * read back through OpenSlide (generic-tiff): level sizes, µm/px, the pyramid against a box
 * filter of level 0, level 0 against the PNG heatmap and, where no tile ran, against the slide;
 * the same bytes for 1 and 2 threads; glass left clear (or tinted with tint_glass) as in the
 * PNG; failures leave no file behind. */
#include <config.h>

#include <dirent.h>
#include <inttypes.h>
#include <png.h>
#include <sys/stat.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cam.h"
#include "result.h"
#include "tap.h"
#include "testutil.h"
#include "tissue.h"

#define CMU_W 2220
#define CMU_H 2967

/* Box-filter src down to tw × th: each output pixel is the rounded mean of the source pixels
 * whose centres fall inside it (the rule th_render_heatmap documents). */
static bool box_image(const tu_image *src, int tw, int th, tu_image *out)
{
    double kx = (double)src->w / tw, ky = (double)src->h / th;
    out->w = tw;
    out->h = th;
    out->rgb = th_malloc((size_t)tw * th * 3, NULL);
    uint64_t *sum = th_calloc((size_t)tw * th * 4, sizeof(uint64_t), NULL);
    if (!out->rgb || !sum) {
        TH_FREE(out->rgb);
        th_free(sum);
        return false;
    }
    for (int y = 0; y < src->h; y++) {
        int oy = (int)TH_MIN(floor((y + 0.5) / ky), th - 1.0);
        for (int x = 0; x < src->w; x++) {
            int ox = (int)TH_MIN(floor((x + 0.5) / kx), tw - 1.0);
            uint64_t *s = sum + ((size_t)oy * tw + ox) * 4;
            for (int ch = 0; ch < 3; ch++) {
                s[ch] += src->rgb[((size_t)y * src->w + x) * 3 + ch];
            }
            s[3]++;
        }
    }
    for (size_t i = 0; i < (size_t)tw * th; i++) {
        const uint64_t *s = sum + i * 4;
        for (int ch = 0; ch < 3; ch++) {
            out->rgb[i * 3 + ch] = s[3] ? (uint8_t)((s[ch] + s[3] / 2) / s[3]) : 0;
        }
    }
    th_free(sum);
    return true;
}

// Means of f×f blocks (clipped at the right and bottom): (w + f - 1) / f across.
static bool block_mean(const tu_image *src, int f, tu_image *out)
{
    out->w = (src->w + f - 1) / f;
    out->h = (src->h + f - 1) / f;
    out->rgb = th_malloc((size_t)out->w * out->h * 3, NULL);
    for (int oy = 0; out->rgb && oy < out->h; oy++) {
        for (int ox = 0; ox < out->w; ox++) {
            unsigned s[3] = {0, 0, 0}, n = 0;
            for (int y = oy * f; y < TH_MIN(oy * f + f, src->h); y++) {
                for (int x = ox * f; x < TH_MIN(ox * f + f, src->w); x++) {
                    for (int ch = 0; ch < 3; ch++) {
                        s[ch] += src->rgb[((size_t)y * src->w + x) * 3 + ch];
                    }
                    n++;
                }
            }
            for (int ch = 0; ch < 3; ch++) {
                out->rgb[((size_t)oy * out->w + ox) * 3 + ch] = (uint8_t)((s[ch] + n / 2) / n);
            }
        }
    }
    return out->rgb != NULL;
}

// Mean and largest absolute channel difference over the rectangle [x0, x1) × [y0, y1).
static void diff(const tu_image *a, const tu_image *b, int x0, int y0, int x1, int y1, double *mean,
                 int *max)
{
    double sum = 0;
    int64_t n = 0;
    *max = 0;
    for (int y = y0; y < y1; y++) {
        for (int x = x0; x < x1; x++) {
            for (int ch = 0; ch < 3; ch++) {
                int d = abs((int)a->rgb[((size_t)y * a->w + x) * 3 + ch] -
                            (int)b->rgb[((size_t)y * b->w + x) * 3 + ch]);
                sum += d;
                n++;
                *max = TH_MAX(*max, d);
            }
        }
    }
    *mean = n ? sum / (double)n : 0;
}

// A region of a level as an image.
static bool read_image(th_slide *slide, int level, int64_t x, int64_t y, int w, int h,
                       tu_image *img)
{
    img->w = w;
    img->h = h;
    img->rgb = th_malloc((size_t)w * h * 3, NULL);
    if (img->rgb && th_slide_read_region(slide, img->rgb, x, y, level, w, h, NULL)) {
        return true;
    }
    TH_FREE(img->rgb);
    return false;
}

static char *tmp_file(const char *name)
{
    static char path[4][512];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof(path[0]), "%s/%s", test_tmpdir(), name);
    return p;
}

/* ---------------------------------------------------------------- the pyramid */

static void test_pyramid(th_slide *slide, const char *path, double slide_mpp)
{
    th_error *err = NULL;
    th_slide *t = th_slide_open(path, &err);
    if (!ok(t != NULL, "heatmap.tiff opens: %s", t ? "yes" : th_error_message(err))) {
        th_error_free(err);
        skip(6, "cannot open the TIFF");
        return;
    }
    is_string(th_slide_get_format(t), "generic-tiff", "OpenSlide reads it as generic-tiff");
    // Halving (rounding up) from 2220×2967 until the long side is at most 1024.
    const int64_t want[3][2] = {{CMU_W, CMU_H}, {1110, 1484}, {555, 742}};
    bool sizes = th_slide_get_level_count(t) == 3;
    for (int l = 0; sizes && l < 3; l++) {
        int64_t w, h;
        sizes = th_slide_get_level_dimensions(t, l, &w, &h) && w == want[l][0] && h == want[l][1];
    }
    ok(sizes, "3 levels: 2220x2967 (the slide's level 0), 1110x1484, 555x742 (got %d levels)",
       th_slide_get_level_count(t));
    double mx = 0, my = 0;
    bool has_mpp = th_slide_get_mpp(t, &mx, &my);
    ok(has_mpp && fabs(mx - slide_mpp) < 1e-4 && fabs(my - slide_mpp) < 1e-4,
       "µm/px read back: %.5f x %.5f (slide: %.5f)", mx, my, slide_mpp);

    tu_image l0 = {0}, l2 = {0}, blocks = {0}, plain = {0};
    if (!read_image(t, 0, 0, 0, CMU_W, CMU_H, &l0) || !read_image(t, 2, 0, 0, 555, 742, &l2) ||
        !read_image(slide, 0, 0, 0, CMU_W, CMU_H, &plain) || !block_mean(&l0, 4, &blocks)) {
        skip(3, "cannot read the TIFF or the slide");
        goto out;
    }
    // Each reduced level is the 2×2 mean of the one above, up to JPEG and rounding.
    double mean;
    int max;
    diff(&l2, &blocks, 0, 0, 555, 742, &mean, &max);
    diag("level 2 vs 4x4 block means of level 0: mean %.3f, max %d", mean, max);
    ok(mean < 2, "level 2 is level 0 averaged 4x4 (mean abs diff %.2f)", mean);
    // Tiles cover x < 9 × 224 = 2016 and y < 13 × 224 = 2912: the rest is the plain slide.
    diff(&l0, &plain, 2016, 0, CMU_W, CMU_H, &mean, &max);
    diag("untiled right strip vs the slide: mean %.3f, max %d", mean, max);
    ok(mean < 2, "the untiled right strip is the slide (mean abs diff %.2f)", mean);
    diff(&l0, &plain, 0, 2912, 2016, CMU_H, &mean, &max);
    diag("untiled bottom strip vs the slide: mean %.3f, max %d", mean, max);
    ok(mean < 2, "the untiled bottom strip is the slide (mean abs diff %.2f)", mean);
out:
    TH_FREE(l0.rgb);
    TH_FREE(l2.rgb);
    TH_FREE(blocks.rgb);
    TH_FREE(plain.rgb);
    th_slide_close(t);
}

// Level 0 box-filtered to the PNG's thumbnail size against the PNG's thumbnail pixels.
static void test_vs_png(const char *tiff_path, const char *png_path, const char *what)
{
    th_slide *t = th_slide_open(tiff_path, NULL);
    tu_image png = {0}, l0 = {0}, box = {0};
    if (!t || !tu_png_read(png_path, &png) || !read_image(t, 0, 0, 0, CMU_W, CMU_H, &l0) ||
        !box_image(&l0, 1496, 2000, &box)) {
        ok(false, "%s: cannot read the TIFF or the PNG", what);
    } else {
        double mean;
        int max;
        diff(&box, &png, 0, 0, 1496, 2000, &mean, &max);
        diag("%s: TIFF level 0 box-filtered to 1496x2000 vs the PNG thumbnail: mean %.3f, max %d",
             what, mean, max);
        ok(mean < 3, "%s: level 0 box-filtered matches the PNG heatmap (mean abs diff %.2f)", what,
           mean);
    }
    TH_FREE(png.rgb);
    TH_FREE(l0.rgb);
    TH_FREE(box.rgb);
    th_slide_close(t);
}

/* ---------------------------------------------------------------- glass */

// Mean absolute difference from the slide over level-0 pixels on glass (mask 0 at the pixel's
// centre) inside the tiles run; *n gets their count.
static double glass_diff(const tu_image *l0, const tu_image *plain, const th_result *r, int64_t *n)
{
    const th_tissue *t = r->tissue;
    double sum = 0;
    *n = 0;
    for (int y = 0; y < CMU_H; y += 3) {
        for (int x = 0; x < CMU_W; x += 3) {
            int mx = (int)TH_MIN(floor((x + 0.5) / t->sx), t->w - 1.0);
            int my = (int)TH_MIN(floor((y + 0.5) / t->sy), t->h - 1.0);
            float v;
            if (th_tissue_at(t, mx, my) || !th_cam_sample(r, 0, x + 0.5, y + 0.5, &v)) {
                continue;
            }
            for (int ch = 0; ch < 3; ch++) {
                size_t i = ((size_t)y * CMU_W + x) * 3 + ch;
                sum += abs((int)l0->rgb[i] - (int)plain->rgb[i]);
            }
            ++*n;
        }
    }
    return *n ? sum / (3.0 * (double)*n) : 0;
}

/* With a tissue mask, glass stays clear in heatmap.tiff as in heatmap.png (and the two agree);
 * tint_glass tints it. */
static void test_glass(th_slide *slide, const th_model *model)
{
    th_run_options ro;
    th_run_options_init(&ro);
    ro.min_tissue = 0.1;
    th_result *r = th_run(slide, model, &ro, NULL);
    if (!ok(r && r->tissue, "glass: a run with a tissue mask")) {
        th_result_free(r);
        skip(4, "no run");
        return;
    }
    th_render_options o;
    th_render_options_init(&o);
    o.shown[0] =
        th_model_find_class(model, "stroma") >= 0 ? th_model_find_class(model, "stroma") : 0;
    const char *tiff = tmp_file("glass.tiff"), *png = tmp_file("glass.png");
    const char *tint = tmp_file("tint.tiff");
    bool done = th_render_tiff(slide, r, model, &o, tiff, NULL) &&
                th_render_heatmap(slide, r, model, &o, png, NULL);
    o.tint_glass = true;
    done = done && th_render_tiff(slide, r, model, &o, tint, NULL);
    tu_image l0 = {0}, l0t = {0}, plain = {0};
    th_slide *a = done ? th_slide_open(tiff, NULL) : NULL,
             *b = a ? th_slide_open(tint, NULL) : NULL;
    if (!ok(b && read_image(a, 0, 0, 0, CMU_W, CMU_H, &l0) &&
                read_image(b, 0, 0, 0, CMU_W, CMU_H, &l0t) &&
                read_image(slide, 0, 0, 0, CMU_W, CMU_H, &plain),
            "glass: TIFFs and PNG written and read")) {
        skip(3, "no images");
    } else {
        int64_t n, nt;
        double clear = glass_diff(&l0, &plain, r, &n), tinted = glass_diff(&l0t, &plain, r, &nt);
        diag("glass in tiles run, every 3rd px: %" PRId64 ", mean diff %.2f clear, %.2f tinted", n,
             clear, tinted);
        ok(n > 10000 && clear < 2, "glass: level-0 glass is the slide (mean abs diff %.2f)", clear);
        ok(tinted > 10, "glass: tint_glass tints it (mean abs diff %.2f)", tinted);
        test_vs_png(tiff, png, "glass clear");
    }
    TH_FREE(l0.rgb);
    TH_FREE(l0t.rgb);
    TH_FREE(plain.rgb);
    th_slide_close(a);
    th_slide_close(b);
    th_result_free(r);
}

/* ---------------------------------------------------------------- failures */

int main(void)
{
    plan(0);
    th_error *err = NULL;
    th_slide *slide = th_slide_open(test_data_path("slides/CMU-1-Small-Region.svs"), &err);
    th_model *model = slide ? th_model_load(test_src_path("models/default.onnx"), &err) : NULL;
    if (!model) {
        bail("%s", th_error_message(err));
    }
    th_run_options ro;
    th_run_options_init(&ro);
    ro.engine = TH_ENGINE_REF;
    ro.min_tissue = 0;
    double t0 = tu_now();
    th_result *r = th_run(slide, model, &ro, &err);
    if (!r) {
        bail("run: %s", th_error_message(err));
    }
    diag("model run: %" PRId64 " tiles in %.2f s", th_result_get_tile_count(r), tu_now() - t0);
    double mx = 0, my = 0;
    th_slide_get_mpp(slide, &mx, &my);

    th_render_options o;
    th_render_options_init(&o);
    o.shown[0] =
        th_model_find_class(model, "cellular") >= 0 ? th_model_find_class(model, "cellular") : 0;
    const char *tiff = tmp_file("heatmap.tiff"), *png = tmp_file("heatmap.png");
    t0 = tu_now();
    bool done = th_render_tiff(slide, r, model, &o, tiff, &err);
    ok(done, "single: heatmap.tiff written in %.2f s%s%s", tu_now() - t0, err ? ": " : "",
       err ? th_error_message(err) : "");
    ok(th_render_heatmap(slide, r, model, &o, png, &err), "single: heatmap.png written");
    is_int(tu_files_in(test_tmpdir()), 2, "no temporary files are left");
    test_pyramid(slide, tiff, mx);
    test_vs_png(tiff, png, "single");
    tu_expect_disk_full(th_render_tiff, "heatmap.tiff", slide, r, model);

    o.n_shown = th_result_top_classes(r, model, 3, o.shown);
    o.multi = true;
    const char *tiff_m = tmp_file("multi.tiff"), *png_m = tmp_file("multi.png");
    ok(th_render_tiff(slide, r, model, &o, tiff_m, &err) &&
           th_render_heatmap(slide, r, model, &o, png_m, &err),
       "multi (%d classes): TIFF and PNG written", o.n_shown);
    test_vs_png(tiff_m, png_m, "multi");
#ifdef _OPENMP
    int saved = omp_get_max_threads();
    const char *one = tmp_file("one.tiff"), *two = tmp_file("two.tiff");
    omp_set_num_threads(1);
    done = th_render_tiff(slide, r, model, &o, one, NULL);
    omp_set_num_threads(2);
    done = done && th_render_tiff(slide, r, model, &o, two, NULL);
    omp_set_num_threads(saved);
    ok(done && tu_same_bytes(one, two) && tu_same_bytes(one, tiff_m), "1 and 2 threads: the same bytes");
#else
    skip(1, "built without OpenMP");
#endif
    th_error_free(err);
    tu_expect_render_errors(th_render_tiff, "out.tiff", slide, r, model);
    test_glass(slide, model);

    th_result_free(r);
    th_model_free(model);
    th_slide_close(slide);
    return 0;
}
