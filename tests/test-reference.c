/* SPDX-License-Identifier: MIT */
/* End-to-end check against PyTorch: for each model of tests/data/models, read the recorded
 * tiles of CMU-1-Small-Region.svs with th_slide_read_region, run the engine, compute the CAMs,
 * and compare logits, softmax and CAMs with what tools/gen-test-models.py computed in float64
 * with the torch modules (openslide-python reading the same tiles). The checks are testutil.c's,
 * shared with test-keras. */
#include <config.h>

#include "model.h"
#include "tap.h"
#include "testutil.h"

static const char *const ref_models[] = {
    "vgg-basic", "vgg-strided", "vgg-dynamic", "vgg-bn", "vgg-nhwc", "vgg-reducemean18",
};

#define SLIDE "slides/CMU-1-Small-Region.svs"

static void test_model(th_slide *slide, const char *name)
{
    tu_model_ref r;
    char rel[256];
    th_error *err = NULL;
    snprintf(rel, sizeof(rel), "tests/data/models/%s.ref", name);
    if (!ok(tu_model_ref_load(&r, rel), "%s: reference file", name)) {
        th_free(r.file.buf);
        return;
    }
    is_string(r.slide, SLIDE, "%s: tiles come from the slide opened here", name);
    snprintf(rel, sizeof(rel), "tests/data/models/%s.onnx", name);
    th_model *m = th_model_load(test_src_path(rel), &err);
    int w = 0, h = 0;
    th_model_get_input_size(m, &w, &h);
    if (ok(m && w == r.in_w && h == r.in_h, "%s: loads, input %d×%d", name, r.in_w, r.in_h)) {
        tu_check_ref_engines(slide, m, &r, name);
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
