/* SPDX-License-Identifier: MIT */
/* Tests for the heatmap legend (render.c and font.c): th_panel_plan's layout over every width and
 * slide shape for the widest legends (legible, fits, nothing overlaps), glyph heights and texts
 * in real renders, the colour bar's values, and the "% of tissue tiles" note, placed, drawn and
 * the same bytes for 1 and 2 threads. */
#include <config.h>

#include <inttypes.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "render.h"
#include "tap.h"
#include "testutil.h"

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
        tu_check_legend_pixels(slide, r, model, &o, name, &lg, &L);
    }
}

// The colour bar's labels are the display range's real values, drawn (tu_check_legend_pixels).
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
    // At p50 class 0's percentile is 0 (it is 0 on 82 % of the cells): the top is its maximum,
    // and the label says so rather than "(p50)".
    o.percentile = 50;
    done = th_render_plan_legend(slide, r, model, &o, &L, &lg, NULL, NULL);
    ok(done && strcmp(lg.tick_hi, "5 (max)") == 0,
       "colour bar of class 0 at p50: \"%s\", want \"5 (max)\"", lg.tick_hi);
    // Class 1 (the ramp) at p90: the value th_render_ranges gives report.json, as %.3g.
    o.shown[0] = 1;
    o.percentile = 90;
    float lo, hi;
    char want[TH_LABEL_MAX];
    done = th_render_ranges(r, &o, &lo, &hi, NULL, NULL);
    snprintf(want, sizeof(want), "%.3g (p90)", hi);
    tu_check_legend_pixels(slide, r, model, &o, "legend-p90.png", &lg, &L);
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
    tu_check_legend_pixels(slide, r, model, &o, "legend-note-single.png", &lg, &L);
    o.multi = true;
    tu_check_legend_pixels(slide, r, model, &o, "legend-note-multi.png", &lg, &L);
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
        done = done && th_render_heatmap(slide, r, model, &o, p2, NULL) && tu_same_bytes(p1, p2);
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
    test_legend_layout();

    th_slide *slide = tu_open_slide("slides/CMU-1-Small-Region.svs");
    // A model only for its class names (tumor, stroma, lymphocytes, ...): 6 classes.
    th_model *model = tu_load_model("tests/data/models/vgg-strided.onnx");
    th_result *r = tu_make_cmu_result(slide, th_model_get_class_count(model));
    test_legend_sizes(slide, r, model);
    test_legend_values(slide, r, model);
    th_model *dflt = tu_load_model("models/default.onnx");
    th_result *real = tu_run_default(slide, dflt, 0.1), *nomask = tu_run_default(slide, dflt, 0);
    test_legend_note(slide, r, model, dflt, real, nomask);
    th_result_free(real);
    th_result_free(nomask);
    th_model_free(dflt);

    th_result_free(r);
    th_model_free(model);
    th_slide_close(slide);
    return 0;
}
