/* SPDX-License-Identifier: MIT */
/* Tests for render.c's class colours and clear glass on real runs of the bundled model on a real
 * slide: each class keeps its colour whatever the order shown, the model's class_colors and the
 * `colors` option over the palette (and their errors), glass left as the plain slide unless
 * tint_glass, and the same bytes for 1 and 2 threads. */
#include <config.h>

#include <inttypes.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cam.h"
#include "render.h"
#include "tap.h"
#include "testutil.h"
#include "tissue.h"

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
            n += tu_rgb_dist(tu_px_at(img, x, y), hex) == 0;
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
            n += memcmp(tu_px_at(a, x, y), tu_px_at(b, x, y), 3) != 0;
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
    if (!tu_render(slide, r, model, &o, "plain.png", &plain, &L)) {
        bail("plain render failed");
    }
    o.alpha = 1;
    o.shown[0] = 1;
    o.shown[1] = 2;
    bool done = tu_render(slide, r, model, &o, "order-12.png", &a, NULL);
    o.shown[0] = 2;
    o.shown[1] = 1;
    done = tu_render(slide, r, model, &o, "order-21.png", &b, NULL) && done;
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
    int a1 = tu_swatch_y(&a, &L, class_hex(NULL, model, 1)), a2 = tu_swatch_y(&a, &L, 0x009e73);
    int b1 = tu_swatch_y(&b, &L, class_hex(NULL, model, 1)), b2 = tu_swatch_y(&b, &L, 0x009e73);
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
    if (ok(tu_render(slide, r, mc, &o, "colors.png", &a, NULL), "colors: rendered")) {
        int64_t red = count_colour(&a, &L, 0xff0000), magenta = count_colour(&a, &L, 0xff00ff);
        diag("colors: %" PRId64 " pixels #ff0000, %" PRId64 " #ff00ff", red, magenta);
        ok(red > 100 && magenta > 100 && count_colour(&a, &L, 0x009e73) == 0 &&
               count_colour(&a, &L, 0x56b4e9) == 0,
           "colors: the overlay draws class_colors' stroma and colors' cellular");
        ok(tu_swatch_y(&a, &L, 0xff0000) >= 0 && tu_swatch_y(&a, &L, 0xff00ff) >= 0,
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
        bool done = tu_render(slide, r, model, &o, name, &img, &L);
        o.tint_glass = true;
        snprintf(name, sizeof(name), "tint-%s.png", mode);
        done = tu_render(slide, r, model, &o, name, &tint, NULL) && done;
        if (!ok(done, "glass, %s: rendered", mode)) {
            skip(3, "no image");
            continue;
        }
        double sx = (double)TU_CMU_W / L.thumb_w, sy = (double)TU_CMU_H / L.thumb_h;
        int64_t glass = 0, wrong = 0, tinted = 0, tissue_differ = 0, in_tiles = 0;
        for (int y = 0; y < L.thumb_h; y++) {
            for (int x = 0; x < L.thumb_w; x++) {
                bool differ = memcmp(tu_px_at(&img, x, y), tu_px_at(&tint, x, y), 3) != 0;
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
                    tu_ref_pixel(slide, 0, sx, sy, x, y, want);
                    wrong += memcmp(want, tu_px_at(&img, x, y), 3) != 0;
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
    ok(done && tu_same_bytes(p1, p2), "no mask: tint_glass writes the same bytes");
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
    ok(done && tu_same_bytes(p1, p2), "glass, multi: 1 and 2 threads write the same bytes");
#else
    skip(1, "built without OpenMP");
#endif
}

int main(void)
{
    plan(0);
    th_slide *slide = tu_open_slide("slides/CMU-1-Small-Region.svs");
    th_model *dflt = tu_load_model("models/default.onnx");
    th_result *real = tu_run_default(slide, dflt, 0.1), *nomask = tu_run_default(slide, dflt, 0);
    test_class_colors(slide, dflt, real);
    test_glass(slide, dflt, real, nomask);
    th_result_free(real);
    th_result_free(nomask);
    th_model_free(dflt);
    th_slide_close(slide);
    return 0;
}
