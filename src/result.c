/* SPDX-License-Identifier: MIT */
/* th_result: allocation, the per-class summary (percentages), and the public getters. */
#include <config.h>

#include "result.h"

th_result *th_result_new(const th_grid *grid, int n_classes, int cam_w, int cam_h,
                         int64_t n_tiles, th_error **err)
{
    th_result *r = th_calloc(1, sizeof(*r), err);
    if (!r) {
        return NULL;
    }
    r->grid = *grid;
    r->n_classes = n_classes;
    r->cam_w = cam_w;
    r->cam_h = cam_h;
    r->n_tiles = n_tiles;
    size_t nt = (size_t)n_tiles, nc = (size_t)n_classes;
    size_t cells = (size_t)grid->cols * (size_t)grid->rows, cam_per_tile;
    if (!th_size_mul(nc, (size_t)cam_w * (size_t)cam_h, &cam_per_tile, err)) {
        goto fail;
    }
    r->tile_col = th_calloc(nt, sizeof(int32_t), err);
    r->tile_row = th_calloc(nt, sizeof(int32_t), err);
    r->index = th_calloc(cells, sizeof(int64_t), err);
    r->logits = th_calloc(nt * nc, sizeof(float), err);
    r->probs = th_calloc(nt * nc, sizeof(float), err);
    r->cam = th_calloc(nt, cam_per_tile * sizeof(float), err);
    r->percent = th_calloc(nc, sizeof(double), err);
    r->argmax_percent = th_calloc(nc, sizeof(double), err);
    if (!r->tile_col || !r->tile_row || !r->index || !r->logits || !r->probs || !r->cam ||
        !r->percent || !r->argmax_percent) {
        goto fail;
    }
    for (size_t i = 0; i < cells; i++) {
        r->index[i] = -1;
    }
    return r;
fail:
    th_result_free(r);
    return NULL;
}

void th_result_free(th_result *result)
{
    if (!result) {
        return;
    }
    th_free(result->tile_col);
    th_free(result->tile_row);
    th_free(result->index);
    th_free(result->logits);
    th_free(result->probs);
    th_free(result->cam);
    th_free(result->percent);
    th_free(result->argmax_percent);
    th_free(result);
}

void th_result_summarize(th_result *r)
{
    int nc = r->n_classes;
    for (int c = 0; c < nc; c++) {
        r->percent[c] = 0;
        r->argmax_percent[c] = 0;
    }
    // Serial, in tile order, in double: the same sums whatever the thread count of the run.
    for (int64_t t = 0; t < r->n_tiles; t++) {
        const float *p = r->probs + (size_t)t * nc;
        int best = 0;
        for (int c = 0; c < nc; c++) {
            r->percent[c] += p[c];
            if (p[c] > p[best]) {
                best = c;
            }
        }
        r->argmax_percent[best] += 1;
    }
    for (int c = 0; c < nc && r->n_tiles > 0; c++) {
        r->percent[c] *= 100.0 / (double)r->n_tiles;
        r->argmax_percent[c] *= 100.0 / (double)r->n_tiles;
    }
}

int th_result_get_class_count(const th_result *result)
{
    return result->n_classes;
}

void th_result_get_grid(const th_result *result, int *cols, int *rows)
{
    *cols = result->grid.cols;
    *rows = result->grid.rows;
}

int64_t th_result_get_tile_count(const th_result *result)
{
    return result->n_tiles;
}

void th_result_get_tile(const th_result *result, int64_t i, int *col, int *row, int64_t *x,
                        int64_t *y, int64_t *w, int64_t *h)
{
    *col = result->tile_col[i];
    *row = result->tile_row[i];
    th_grid_tile_rect(&result->grid, *col, *row, x, y, w, h);
}

const float *th_result_get_probs(const th_result *result, int64_t i)
{
    return result->probs + (size_t)i * result->n_classes;
}

void th_result_get_cam_size(const th_result *result, int *fw, int *fh)
{
    *fw = result->cam_w;
    *fh = result->cam_h;
}

void th_result_get_cam_grid(const th_result *result, int64_t *gw, int64_t *gh, double *x0,
                            double *y0, double *cell_w0, double *cell_h0)
{
    const th_grid *g = &result->grid;
    if (gw) {
        *gw = (int64_t)g->cols * result->cam_w;
    }
    if (gh) {
        *gh = (int64_t)g->rows * result->cam_h;
    }
    if (x0) {
        *x0 = 0;
    }
    if (y0) {
        *y0 = 0;
    }
    if (cell_w0) {
        *cell_w0 = g->tile_w * g->downsample / result->cam_w;
    }
    if (cell_h0) {
        *cell_h0 = g->tile_h * g->downsample / result->cam_h;
    }
}

void th_result_read_cam_row(const th_result *result, int c, int64_t gy, float *out)
{
    const th_grid *g = &result->grid;
    int64_t row = gy / result->cam_h;
    size_t cells = (size_t)result->cam_h * result->cam_w;
    for (int col = 0; col < g->cols; col++) {
        int64_t t = result->index[row * g->cols + col];
        float *dst = out + (size_t)col * result->cam_w;
        for (int i = 0; i < result->cam_w; i++) {
            dst[i] = t < 0 ? NAN
                           : result->cam[((size_t)t * result->n_classes + c) * cells +
                                         (size_t)(gy % result->cam_h) * result->cam_w + i];
        }
    }
}

double th_result_get_mpp(const th_result *result, const char **source)
{
    if (source) {
        *source = "none";
    }
    return 0;
}

double th_result_get_scale(const th_result *result)
{
    return result->grid.downsample;
}

int th_result_get_level(const th_result *result)
{
    return result->grid.level;
}

void th_result_get_tile_counts(const th_result *result, int64_t *total, int64_t *skipped)
{
    if (total) {
        *total = (int64_t)result->grid.cols * result->grid.rows;
    }
    if (skipped) {
        *skipped = 0;
    }
}

bool th_result_write_tissue_png(const th_result *result, const char *path, th_error **err)
{
    th_error_set(err, "the run had no tissue detection");
    return false;
}

const th_stage *th_result_get_stages(const th_result *result, int *n)
{
    *n = 0;
    return NULL;
}

double th_result_get_percent(const th_result *result, int c)
{
    return result->percent[c];
}

double th_result_get_argmax_percent(const th_result *result, int c)
{
    return result->argmax_percent[c];
}

int th_result_top_classes(const th_result *result, const th_model *model, int n, int *out)
{
    int count = 0;
    while (count < n) {
        int best = -1;
        for (int c = 0; c < result->n_classes; c++) {
            bool taken = false;
            for (int i = 0; i < count; i++) {
                taken |= out[i] == c;
            }
            if (taken || (model && th_model_is_background_class(model, c))) {
                continue;
            }
            if (best < 0 || result->percent[c] > result->percent[best]) {
                best = c;
            }
        }
        if (best < 0) {
            break;
        }
        out[count++] = best;
    }
    return count;
}
