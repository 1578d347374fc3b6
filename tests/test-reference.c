/* SPDX-License-Identifier: MIT */
/* End-to-end check against PyTorch: for each model of tests/data/models, read the recorded
 * tiles of CMU-1-Small-Region.svs with th_slide_read_region, run the engine, compute the CAMs,
 * and compare logits, softmax and CAMs with what tools/gen-test-models.py computed in float64
 * with the torch modules (openslide-python reading the same tiles). */
#include <config.h>

#include "cam.h"
#include "engine.h"
#include "model.h"
#include "tap.h"
#include "testutil.h"

static const char *const ref_models[] = {
    "vgg-basic", "vgg-strided", "vgg-dynamic", "vgg-bn", "vgg-nhwc", "vgg-reducemean18",
};

#define REF_MAX TU_REF_MAX
#define SLIDE "slides/CMU-1-Small-Region.svs"

// What test-reference needs of a .ref file (format in tools/gen-test-models.py).
typedef struct ref {
    tu_ref file; // buffer and float32 blocks
    char slide[256];
    int in_w, in_h, n_classes, feat_c, feat_h, feat_w;
    int n_tiles;
    int64_t tile_x[REF_MAX], tile_y[REF_MAX];
} ref;

static void ref_line(void *ctx, const char *line)
{
    ref *r = ctx;
    long long x, y;
    if (sscanf(line, "slide %255s", r->slide) == 1 ||
        sscanf(line, "input_size %d %d", &r->in_w, &r->in_h) == 2 ||
        sscanf(line, "n_classes %d", &r->n_classes) == 1 ||
        sscanf(line, "feat %d %d %d", &r->feat_c, &r->feat_h, &r->feat_w) == 3) {
        return;
    }
    if (sscanf(line, "tile %lld %lld", &x, &y) == 2 && r->n_tiles < REF_MAX) {
        r->tile_x[r->n_tiles] = x;
        r->tile_y[r->n_tiles++] = y;
    }
}

static bool ref_load(ref *r, const char *name)
{
    memset(r, 0, sizeof(*r));
    return tu_ref_load(&r->file, name, ref_line, r);
}

// Block "<kind>.<tile>" of exactly `want` floats (caller frees), or NULL.
static float *ref_block(const ref *r, const char *kind, int tile, size_t want)
{
    char name[32];
    size_t count = 0;
    snprintf(name, sizeof(name), "%s.%d", kind, tile);
    float *v = tu_ref_block(&r->file, name, &count);
    if (v && count != want) {
        TH_FREE(v);
    }
    return v;
}

// Compare one tile's engine outputs with the reference.
static void check_tile(const ref *r, int t, const float *logits, const float *probs,
                       const float *cam, double tol, const char *what)
{
    size_t n = (size_t)r->n_classes, cells = n * r->feat_h * r->feat_w;
    float *want_logits = ref_block(r, "logits", t, n);
    float *want_cam = ref_block(r, "cam", t, cells);
    if (!want_logits || !want_cam) {
        ok(false, "%s: tile %d has reference blocks", what, t);
    } else {
        double e = tu_max_rel_diff(logits, want_logits, n);
        ok(e <= tol, "%s: tile %d logits (rel err %.2g)", what, t, e);
        e = tu_max_rel_diff(cam, want_cam, cells);
        ok(e <= tol, "%s: tile %d CAM (rel err %.2g)", what, t, e);
        double mx = want_logits[0], sum = 0, worst = 0;
        for (size_t c = 1; c < n; c++) {
            mx = fmax(mx, want_logits[c]);
        }
        for (size_t c = 0; c < n; c++) {
            sum += exp(want_logits[c] - mx);
        }
        for (size_t c = 0; c < n; c++) {
            worst = fmax(worst, fabs(probs[c] - exp(want_logits[c] - mx) / sum));
        }
        ok(worst <= tol / 10, "%s: tile %d softmax (max diff %.2g)", what, t, worst);
    }
    th_free(want_logits);
    th_free(want_cam);
}

// Run every reference tile of one model through one engine kind. Tolerance (relative to the
// largest reference value): 1e-4, 1e-3 for Winograd (its transforms add rounding error; see
// TH_ENGINE_WINOGRAD).
static void run_model(th_slide *slide, const th_model *m, const ref *r, th_engine_kind kind,
                      const char *what)
{
    th_error *err = NULL;
    th_engine *e = th_engine_new(m, kind, r->in_w, r->in_h, &err);
    th_engine_ws *ws = e ? th_engine_ws_new(e, &err) : NULL;
    size_t n = (size_t)r->n_classes, fsize = (size_t)r->feat_c * r->feat_h * r->feat_w;
    uint8_t *rgb = th_malloc((size_t)r->in_w * r->in_h * 3, &err);          // (h, w, 3)
    float *logits = th_calloc(n, sizeof(float), &err);                      // (n_classes)
    float *probs = th_calloc(n, sizeof(float), &err);                       // (n_classes)
    float *feat = th_calloc(fsize, sizeof(float), &err);                    // (c, fh, fw)
    float *cam = th_calloc(n * r->feat_h * r->feat_w, sizeof(float), &err); // (n, fh, fw)
    if (!ok(ws && rgb && logits && probs && feat && cam, "%s: engine planned", what)) {
        diag("%s", th_error_message(err));
        goto out;
    }
    ok(e->feat_c == r->feat_c && e->feat_h == r->feat_h && e->feat_w == r->feat_w,
       "%s: feature map %d×%d×%d (expected %d×%d×%d)", what, e->feat_c, e->feat_h, e->feat_w,
       r->feat_c, r->feat_h, r->feat_w);
    for (int t = 0; t < r->n_tiles; t++) {
        if (!th_slide_read_region(slide, rgb, r->tile_x[t], r->tile_y[t], 0, r->in_w, r->in_h,
                                  &err) ||
            !th_engine_forward(e, ws, rgb, logits, probs, feat, &err)) {
            ok(false, "%s: tile %d runs: %s", what, t, th_error_message(err));
            break;
        }
        th_cam_compute(feat, e->feat_c, e->feat_h, e->feat_w, m->dense_w, m->n_classes, cam);
        check_tile(r, t, logits, probs, cam, kind == TH_ENGINE_WINOGRAD ? 1e-3 : 1e-4, what);
    }
out:
    th_free(cam);
    th_free(feat);
    th_free(probs);
    th_free(logits);
    th_free(rgb);
    th_engine_ws_free(ws);
    th_engine_free(e);
    th_error_free(err);
}

static void test_model(th_slide *slide, const char *name)
{
    ref r;
    char rel[256], what[128];
    th_error *err = NULL;
    if (!ok(ref_load(&r, name), "%s: reference file", name)) {
        th_free(r.file.buf);
        return;
    }
    is_string(r.slide, SLIDE, "%s: tiles come from the slide opened here", name);
    snprintf(rel, sizeof(rel), "tests/data/models/%s.onnx", name);
    th_model *m = th_model_load(test_src_path(rel), &err);
    int w = 0, h = 0;
    th_model_get_input_size(m, &w, &h);
    if (ok(m && w == r.in_w && h == r.in_h, "%s: loads, input %d×%d", name, r.in_w, r.in_h)) {
        snprintf(what, sizeof(what), "%s/ref", name);
        run_model(slide, m, &r, TH_ENGINE_REF, what);
        // The fast backend, when this build has one, must agree with PyTorch too.
        th_engine *fast = th_engine_new(m, TH_ENGINE_FAST, w, h, NULL);
        if (fast) {
            th_engine_free(fast);
            snprintf(what, sizeof(what), "%s/fast", name);
            run_model(slide, m, &r, TH_ENGINE_FAST, what);
            snprintf(what, sizeof(what), "%s/winograd", name);
            run_model(slide, m, &r, TH_ENGINE_WINOGRAD, what);
        }
    } else {
        diag("%s", err ? th_error_message(err) : "wrong input size");
    }
    th_model_free(m);
    th_error_free(err);
    th_free(r.file.buf);
}

int main(void)
{
    plan(0);
    th_error *err = NULL;
    th_slide *slide = th_slide_open(test_data_path(SLIDE), &err);
    if (!slide) {
        bail("cannot open CMU-1-Small-Region.svs: %s", th_error_message(err));
    }
    for (size_t i = 0; i < sizeof(ref_models) / sizeof(ref_models[0]); i++) {
        test_model(slide, ref_models[i]);
    }
    th_slide_close(slide);
    return 0;
}
