/* SPDX-License-Identifier: MIT */
/* Seam-free CAMs on the real CMU-1-Small-Region slide, every full tile run (no tissue mask, so
 * that tiles at the tissue's edge do not bias the border statistics), with the bundled model and
 * two generated ones (BatchNorm; VGG16's layer pattern):
 *   - tile probabilities and CAM cells at every tile's corners and centre match PyTorch run once
 *     over the whole slide (tools/gen-seamless-refs.py, tests/data/seamless-*.ref);
 *   - the seam ratio (mean |difference| of neighbouring cells across tile borders over the same
 *     inside tiles) is at most 1.15 for every class, and --cam tile, which runs tiles on their
 *     own, shows its seams (at least 1.3);
 *   - 1 and 2 threads give the same bytes; the reference engine agrees with PyTorch too;
 *   - an overlapping --stride falls back to tile mode and says so;
 *   - the cut into units: even strips, runs of rows with tiles, even pieces of at most max_rows. */
#include <config.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "result.h"
#include "stream.h"
#include "tap.h"
#include "testutil.h"

static th_slide *slide;

static th_result *run(const th_model *m, th_cam_mode cam, int threads, th_engine_kind engine,
                      int stride)
{
    th_run_options opt = tu_options(cam, threads, engine);
    opt.stride = stride;
    return tu_run(slide, m, &opt);
}

// Seam ratio of class c: mean |Δ| between neighbouring cells across tile borders / inside.
static double seam_ratio(const th_result *r, int c)
{
    int64_t gw, gh;
    th_result_get_cam_grid(r, &gw, &gh, NULL, NULL, NULL, NULL);
    float *a = th_malloc(sizeof(float) * gw, NULL), *b = th_malloc(sizeof(float) * gw, NULL);
    double border = 0, inside = 0;
    long nb = 0, ni = 0;
    for (int64_t y = 0; y < gh; y++) {
        th_result_read_cam_row(r, c, y, a);
        if (y + 1 < gh) {
            th_result_read_cam_row(r, c, y + 1, b);
        }
        for (int64_t x = 0; x < gw; x++) {
            if (x + 1 < gw && !isnan(a[x]) && !isnan(a[x + 1])) {
                double d = fabs(a[x] - a[x + 1]);
                bool across = (x + 1) % r->cam_w == 0;
                border += across ? d : 0;
                inside += across ? 0 : d;
                nb += across;
                ni += !across;
            }
            if (y + 1 < gh && !isnan(a[x]) && !isnan(b[x])) {
                double d = fabs(a[x] - b[x]);
                bool across = (y + 1) % r->cam_h == 0;
                border += across ? d : 0;
                inside += across ? 0 : d;
                nb += across;
                ni += !across;
            }
        }
    }
    th_free(a);
    th_free(b);
    return nb && ni && inside > 0 ? (border / nb) / (inside / ni) : NAN;
}

// The tile index of (col, row), or -1.
static int64_t tile_at(const th_result *r, int col, int row)
{
    for (int64_t t = 0; t < r->n_tiles; t++) {
        if (r->tile_col[t] == col && r->tile_row[t] == row) {
            return t;
        }
    }
    return -1;
}

// The next number of a reference line (NAN if none).
static double next_double(char **p)
{
    double v;
    int n;
    if (sscanf(*p, "%lf%n", &v, &n) != 1) {
        return NAN;
    }
    *p += n;
    return v;
}

// Compare with the PyTorch reference: every tile's probabilities, sampled CAM cells.
static void check_reference(const th_result *r, const char *name)
{
    char rel[128];
    snprintf(rel, sizeof(rel), "tests/data/seamless-%s.ref", name);
    const char *path = test_src_path(rel);
    FILE *f = th_fopen(path, "r", NULL);
    if (!ok(f != NULL, "%s: reference %s opens", name, path)) {
        return;
    }
    char line[1024];
    int n_tiles = 0, n_cells = 0, bad_p = 0, bad_cam = 0;
    double worst_p = 0, worst_cam = 0, cam_scale = 0;
    int nc = r->n_classes;
    while (fgets(line, sizeof(line), f)) {
        int col, row, cx, cy, n;
        char *p = line;
        if (sscanf(line, "tile %d %d%n", &col, &row, &n) == 2) {
            int64_t t = tile_at(r, col, row);
            p += n;
            n_tiles++;
            for (int c = 0; c < nc; c++) {
                double want = next_double(&p);
                double got = t >= 0 ? r->probs[t * nc + c] : NAN;
                double d = fabs(got - want);
                worst_p = isnan(d) ? INFINITY : fmax(worst_p, d);
                bad_p += !(d <= 1e-4);
            }
        } else if (sscanf(line, "cam %d %d %d %d%n", &col, &row, &cx, &cy, &n) == 4) {
            p += n;
            n_cells++;
            for (int c = 0; c < nc; c++) {
                double want = next_double(&p);
                float got = NAN;
                th_camgrid_get(&r->cams, c, (int64_t)col * r->cam_w + cx,
                               (int64_t)row * r->cam_h + cy, &got);
                double d = fabs(got - want) / fmax(1.0, fabs(want));
                worst_cam = isnan(d) ? INFINITY : fmax(worst_cam, d);
                cam_scale = fmax(cam_scale, fabs(want));
                bad_cam += !(d <= 1e-4);
            }
        }
    }
    fclose(f);
    ok(n_tiles == r->grid.cols * r->grid.rows && n_tiles == r->n_tiles,
       "%s: the reference has every one of the %d tiles", name, n_tiles);
    ok(bad_p == 0, "%s: probabilities of %d tiles match PyTorch on the whole slide (worst %.2g)",
       name, n_tiles, worst_p);
    ok(bad_cam == 0 && n_cells > 0,
       "%s: CAM at %d tile corners and centres matches PyTorch (worst relative %.2g, values up "
       "to %.3g)",
       name, n_cells, worst_cam, cam_scale);
}

// The default engine (Winograd when built with oneDNN) throughout; the reference engine too
// when `ref_engine`, which must give the same probabilities and CAMs within float rounding.
static void check_model(const char *src_rel, const char *name, bool ref_engine)
{
    th_model *m = tu_load_model(src_rel);
    th_run_options defaults;
    th_run_options_init(&defaults);
    th_engine_kind engine = defaults.engine;
    th_result *seamless = run(m, TH_CAM_SEAMLESS, 2, engine, 0);
    th_result *tile = run(m, TH_CAM_TILE, 2, engine, 0);
    if (!ok(seamless && tile, "%s: seam-free and tile runs", name)) {
        bail("no result");
    }
    is_int(th_result_get_cam_mode(seamless), TH_CAM_SEAMLESS, "%s: the default is seam-free",
           name);
    is_int(th_result_get_warning_count(seamless), 0, "%s: no warning", name);
    // The trunk's extra area: strips' margins, units' receptive fields, rounding to whole steps.
    ok(tile->trunk_area == 1 && seamless->trunk_area > 1.05 && seamless->trunk_area < 2,
       "%s: the trunk ran over %.3f× the tiles' area seam-free, 1× in tile mode (%.3f)", name,
       seamless->trunk_area, tile->trunk_area);
    check_reference(seamless, name);
    for (int c = 0; c < seamless->n_classes; c++) {
        double s = seam_ratio(seamless, c), t = seam_ratio(tile, c);
        ok(s <= 1.15, "%s: class %d seam ratio %.3f <= 1.15 (--cam tile: %.3f)", name, c, s, t);
        ok(t >= 1.3, "%s: class %d --cam tile shows the seams the ratio measures (%.3f)", name, c,
           t);
    }
    th_result *one = run(m, TH_CAM_SEAMLESS, 1, engine, 0);
    ok(tu_same_result(seamless, one), "%s: 1 and 2 threads give the same bytes", name);
    th_result_free(one);
    if (ref_engine && engine != TH_ENGINE_REF) {
        th_result *ref = run(m, TH_CAM_SEAMLESS, 2, TH_ENGINE_REF, 0);
        ok(ref != NULL, "%s: reference engine runs seam-free", name);
        if (ref) {
            check_reference(ref, name);
        }
        th_result_free(ref);
    }
    th_result_free(seamless);
    th_result_free(tile);
    th_model_free(m);
}

// Tiles of a 7-column grid (row-major) in 2 strips, of columns 0-2 and 3-6: strip 0 has rows 0-1,
// a row without tiles, rows 3-7 (cut into 2 + 3 at max_rows 3); strip 1 rows 0, 5 and 6. Units
// come in the order their runs end.
static void test_units(void)
{
    static const int col[] = {0, 3, 1, 0, 2, 0, 1, 2, 3, 6, 0, 3, 0};
    static const int row[] = {0, 0, 1, 3, 3, 4, 5, 5, 5, 5, 6, 6, 7};
    int n_strips;
    th_model m = {0}; // no layers, no margin: strips cost nothing at their sides, one tile each
    int width = th_stream_strips(&m, 224, 7, false, &n_strips);
    ok(n_strips == 7 && width == 1, "a trunk without padding: 7 strips of 1 tile (got %d of %d)",
       n_strips, width);
    th_stream_unit *u = NULL;
    int64_t n = 0;
    bool done = th_stream_units(7, 2, col, row, 13, 3, &u, &n, NULL);
    static const th_stream_unit want[] = {
        {0, 3, 0, 1}, {3, 4, 0, 0}, {0, 3, 3, 4}, {0, 3, 5, 7}, {3, 4, 5, 6},
    };
    bool same = done && n == 5;
    for (int i = 0; same && i < 5; i++) {
        same = u[i].col0 == want[i].col0 && u[i].cols == want[i].cols &&
               u[i].row0 == want[i].row0 && u[i].row1 == want[i].row1;
    }
    ok(same, "units: strips of 3 and 4 columns, cut at rows without tiles and into even "
             "pieces of at most 3 rows (%lld units)",
       (long long)n);
    for (int64_t i = 0; i < n; i++) {
        diag("unit %lld: columns %d+%d, rows %d-%d", (long long)i, u[i].col0, u[i].cols,
             u[i].row0, u[i].row1);
    }
    th_free(u);
    // Real trunks: the bundled model's padding reaches 40 px (5 cells of 8), so strips of 4 tiles
    // keep both margins under a tenth; VGG16's reaches 96 px (6 cells of 16): 9 tiles.
    th_model *bundled = tu_load_model("models/default.onnx");
    th_model *vgg = tu_load_model("tests/data/models/seam-vgg16.onnx");
    ok(th_stream_strips(bundled, 224, 1000, false, &n_strips) == 4 && n_strips == 250,
       "bundled model on 1000 columns: 250 strips of 4 tiles");
    ok(th_stream_strips(vgg, 224, 1000, false, &n_strips) == 9 && n_strips == 112,
       "VGG16-shaped model on 1000 columns: 112 strips of at most 9 tiles");
    ok(th_stream_strips(bundled, 224, 9, false, &n_strips) == 3 && n_strips == 3,
       "bundled model on CMU's 9 columns: 3 strips of 3");
    // int8: VGG16's own widths (64-512 channels) make u8 windows of 1.4 MB at 9 tiles; 6 keep
    // them within 1 MiB (64 channels × 10 rows × (6 · 224 + 2 · 96) px). The bundled and the
    // narrow VGG16-shaped models' windows are far smaller: the same strips as float32.
    static const int vgg16[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0,
                                512, 512, 512};
    th_layer layers[17];
    int c = 3;
    for (int i = 0; i < 17; i++) {
        layers[i] = vgg16[i] ? (th_layer){.kind = TH_LAYER_CONV, .c_in = c, .c_out = vgg16[i],
                                          .kh = 3, .kw = 3, .sh = 1, .sw = 1, .dh = 1, .dw = 1,
                                          .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1,
                                          .relu = true}
                             : (th_layer){.kind = TH_LAYER_MAXPOOL, .c_in = c, .c_out = c,
                                          .kh = 2, .kw = 2, .sh = 2, .sw = 2, .dh = 1, .dw = 1};
        c = vgg16[i] ? vgg16[i] : c;
    }
    th_model v16 = {.layers = layers, .n_layers = 17, .in_c = 3};
    int fp32_w = th_stream_strips(&v16, 224, 1000, false, &n_strips);
    int int8_w = th_stream_strips(&v16, 224, 1000, true, &n_strips);
    ok(fp32_w == 9 && int8_w == 6 && n_strips == 167,
       "VGG16 on 1000 columns: strips of %d tiles in float32 (9), %d in int8 (6, %d strips)",
       fp32_w, int8_w, n_strips);
    int b8 = th_stream_strips(bundled, 224, 1000, true, &n_strips),
        v8 = th_stream_strips(vgg, 224, 1000, true, &n_strips);
    ok(b8 == 4 && v8 == 9, "int8 keeps the small models' strips: bundled %d (4), VGG16-shaped %d (9)",
       b8, v8);
    th_model_free(bundled);
    th_model_free(vgg);
}

int main(void)
{
    plan(0);
    test_units();
    slide = tu_open_slide("slides/CMU-1-Small-Region.svs");
    check_model("models/default.onnx", "default", true);
    check_model("tests/data/models/seam-bn.onnx", "seam-bn", false);
    check_model("tests/data/models/seam-vgg16.onnx", "seam-vgg16", false);

    th_model *m = tu_load_model("models/default.onnx");
    th_result *r = run(m, TH_CAM_SEAMLESS, 2, TH_ENGINE_REF, 112);
    ok(r && th_result_get_cam_mode(r) == TH_CAM_TILE, "--stride 112 falls back to tile mode");
    ok(r && th_result_get_warning_count(r) == 1 &&
           strstr(th_result_get_warning(r, 0), "--stride") != NULL,
       "and says why: %s", r && th_result_get_warning_count(r) ? th_result_get_warning(r, 0) : "");
    th_result_free(r);
    th_model_free(m);
    th_slide_close(slide);
    return 0;
}
