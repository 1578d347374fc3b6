/* SPDX-License-Identifier: MIT */
/* Checks of the bundled model (models/default.onnx) on real data, through the public API:
 * the nine NCT-CRC tiles go to sensible classes, and on CMU-1-Small-Region the tiles whose top
 * class is background agree with the non-tissue part of the reference mask (≥ 0.85). */
#include <config.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "tileheat.h"

static th_model *model;

// The checks run with tissue skipping switched off: every full tile is classified.
static th_result *run_all(th_slide *s, th_error **err)
{
    th_run_options opt;
    th_run_options_init(&opt);
    opt.min_tissue = 0;
    return th_run(s, model, &opt, err);
}

static const char *top_class(const char *rel)
{
    th_error *err = NULL;
    th_slide *s = th_slide_open(test_data_path(rel), &err);
    th_result *r = s ? run_all(s, &err) : NULL;
    const char *name = NULL;
    if (r && th_result_get_tile_count(r) == 1) {
        const float *p = th_result_get_probs(r, 0);
        int best = 0;
        for (int c = 1; c < th_model_get_class_count(model); c++) {
            best = p[c] > p[best] ? c : best;
        }
        name = th_model_get_class_name(model, best);
    } else {
        diag("%s: %s", rel, err ? th_error_message(err) : "not one tile");
    }
    th_result_free(r);
    th_slide_close(s);
    th_error_free(err);
    return name;
}

// A numpy .npy file holding a 2-D C-order bool array: returns the data (caller frees).
static uint8_t *read_npy_bool(const char *path, int *rows, int *cols)
{
    FILE *fp = fopen(path, "rb");
    unsigned char pre[10];
    char header[1024] = "";
    uint8_t *data = NULL;
    if (!fp || fread(pre, 1, 10, fp) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0 || pre[6] != 1) {
        goto out;
    }
    size_t hlen = pre[8] | (size_t)pre[9] << 8, n;
    if (hlen >= sizeof(header) || fread(header, 1, hlen, fp) != hlen ||
        !strstr(header, "'descr': '|b1'") || !strstr(header, "'fortran_order': False")) {
        goto out;
    }
    const char *shape = strstr(header, "'shape': (");
    if (!shape || sscanf(shape, "'shape': (%d, %d)", rows, cols) != 2) {
        goto out;
    }
    n = (size_t)*rows * (size_t)*cols;
    data = malloc(n);
    if (data && fread(data, 1, n, fp) != n) {
        free(data);
        data = NULL;
    }
out:
    if (fp) {
        fclose(fp);
    }
    return data;
}

// A tile counts as tissue when at least half of the mask cells under it are tissue.
static bool tile_is_tissue(const uint8_t *mask, int mrows, int mcols, double sy, double sx,
                           int64_t x, int64_t y, int64_t w, int64_t h)
{
    int r0 = (int)lround(y * sy), r1 = (int)lround((y + h) * sy);
    int c0 = (int)lround(x * sx), c1 = (int)lround((x + w) * sx);
    int n = 0, tissue = 0;
    for (int r = r0; r < r1 && r < mrows; r++) {
        for (int c = c0; c < c1 && c < mcols; c++) {
            tissue += mask[r * mcols + c] != 0;
            n++;
        }
    }
    return n > 0 && 2 * tissue >= n;
}

static void test_mask_agreement(void)
{
    th_error *err = NULL;
    int mrows, mcols;
    uint8_t *mask = read_npy_bool(test_data_path("masks/tissue-mask-cmu-1-small-region.npy"),
                                  &mrows, &mcols);
    th_slide *s = th_slide_open(test_data_path("slides/CMU-1-Small-Region.svs"), &err);
    th_result *r = s ? run_all(s, &err) : NULL;
    if (!ok(mask && r, "mask read and CMU-1-Small-Region run")) {
        diag("%s", err ? th_error_message(err) : "cannot read the mask");
        return;
    }
    ok(mrows == 296 && mcols == 221, "mask is 296 rows × 221 columns (got %d × %d)", mrows, mcols);
    int64_t w0, h0;
    th_slide_get_level_dimensions(s, 0, &w0, &h0);
    int bg = th_model_find_class(model, "background"), agree = 0;
    int64_t n = th_result_get_tile_count(r);
    for (int64_t t = 0; t < n; t++) {
        int col, row;
        int64_t x, y, w, h;
        th_result_get_tile(r, t, &col, &row, &x, &y, &w, &h);
        const float *p = th_result_get_probs(r, t);
        int best = 0;
        for (int c = 1; c < th_result_get_class_count(r); c++) {
            best = p[c] > p[best] ? c : best;
        }
        bool tissue = tile_is_tissue(mask, mrows, mcols, (double)mrows / h0, (double)mcols / w0,
                                     x, y, w, h);
        agree += (best == bg) == !tissue;
    }
    double share = (double)agree / (double)n;
    ok(n == 117 && share >= 0.85, "background tiles agree with the mask on %d of %lld tiles (%.3f)",
       agree, (long long)n, share);
    free(mask);
    th_result_free(r);
    th_slide_close(s);
}

int main(void)
{
    th_error *err = NULL;
    plan(0);
    model = th_model_load(test_src_path("models/default.onnx"), &err);
    if (!model) {
        bail("models/default.onnx: %s", th_error_message(err));
    }
    static const struct {
        const char *tile, *want;
    } cases[] = {
        {"tiles/ADI-AAQEFMRI.tif", "fat"},      {"tiles/BACK-AAQSHYMA.tif", "background"},
        {"tiles/STR-AACRYYNQ.tif", "stroma"},   {"tiles/MUS-AACVWIEK.tif", "stroma"},
        {"tiles/LYM-AATTSRNN.tif", "cellular"}, {"tiles/TUM-AACHEHDV.tif", "cellular"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        is_string(top_class(cases[i].tile), cases[i].want, "%s", cases[i].tile);
    }
    test_mask_agreement();
    th_model_free(model);
    return 0;
}
