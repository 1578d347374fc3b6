/* SPDX-License-Identifier: MIT */
/* th_result: allocation, the per-class summary (percentages), and the public getters. */
#include <config.h>

#include <stdarg.h>

#include "result.h"
#include "tissue.h"

th_result *th_result_new(const th_grid *grid, int n_classes, int cam_w, int cam_h, int64_t n_tiles,
                         th_error **err)
{
    th_result *r = th_calloc(1, sizeof(*r), err);
    if (!r) {
        return NULL;
    }
    r->grid = *grid;
    // Hand-made grids (tests) may leave the stride and scale out: tiles side by side, as read.
    if (r->grid.stride_x <= 0 || r->grid.stride_y <= 0) {
        r->grid.stride_x = r->grid.tile_w;
        r->grid.stride_y = r->grid.tile_h;
    }
    if (r->grid.scale <= 0) {
        r->grid.scale = r->grid.downsample > 0 ? r->grid.downsample : 1;
    }
    r->n_classes = n_classes;
    r->cam_w = cam_w;
    r->cam_h = cam_h;
    r->n_tiles = n_tiles;
    size_t nt = (size_t)n_tiles, nc = (size_t)n_classes;
    if (!th_camgrid_init(&r->cams, &r->grid, n_classes, cam_w, cam_h, err)) {
        goto fail;
    }
    r->tile_col = th_calloc(nt ? nt : 1, sizeof(int32_t), err);
    r->tile_row = th_calloc(nt ? nt : 1, sizeof(int32_t), err);
    r->logits = th_calloc(TH_MAX(nt * nc, (size_t)1), sizeof(float), err);
    r->probs = th_calloc(TH_MAX(nt * nc, (size_t)1), sizeof(float), err);
    r->percent = th_calloc(nc, sizeof(double), err);
    r->argmax_percent = th_calloc(nc, sizeof(double), err);
    if (!r->tile_col || !r->tile_row || !r->logits || !r->probs || !r->percent ||
        !r->argmax_percent) {
        goto fail;
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
    th_free(result->logits);
    th_free(result->probs);
    th_camgrid_free(&result->cams);
    th_free(result->percent);
    th_free(result->argmax_percent);
    th_tissue_free(result->tissue);
    th_free(result->calibration_file);
    th_free(result);
}

bool th_result_add_tile(th_result *r, int64_t t, int col, int row, const float *cam, th_error **err)
{
    r->tile_col[t] = col;
    r->tile_row[t] = row;
    if (cam) {
        return th_camgrid_add(&r->cams, col, row, cam, err);
    }
    size_t n = (size_t)r->n_classes * r->cam_w * r->cam_h;
    float *zeros = th_calloc(n, sizeof(float), err);
    bool ok = zeros && th_camgrid_add(&r->cams, col, row, zeros, err);
    th_free(zeros);
    return ok;
}

void th_result_add_warning(th_result *r, const char *fmt, ...)
{
    if (r->n_warnings < TH_MAX_WARNINGS) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->warnings[r->n_warnings++], TH_WARNING_LEN, fmt, ap);
        va_end(ap);
    }
}

th_cam_mode th_result_get_cam_mode(const th_result *r)
{
    return r->cam_mode;
}

const char *th_cam_mode_name(th_cam_mode mode)
{
    return mode == TH_CAM_TILE ? "tile" : "seamless";
}

int th_result_get_warning_count(const th_result *r)
{
    return r->n_warnings;
}

const char *th_result_get_warning(const th_result *r, int i)
{
    return i >= 0 && i < r->n_warnings ? r->warnings[i] : NULL;
}

void th_result_add_stage(th_result *r, const char *name, double seconds)
{
    if (r->n_stages < TH_MAX_STAGES) {
        r->stages[r->n_stages].name = name;
        r->stages[r->n_stages].seconds = seconds;
        r->n_stages++;
    }
}

void th_result_summarize(th_result *r)
{
    th_camgrid_finish(&r->cams);
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
    const th_camgrid *cg = &result->cams;
    if (gw) {
        *gw = cg->gw;
    }
    if (gh) {
        *gh = cg->gh;
    }
    if (x0) {
        *x0 = cg->x0;
    }
    if (y0) {
        *y0 = cg->y0;
    }
    if (cell_w0) {
        *cell_w0 = cg->cell_w0;
    }
    if (cell_h0) {
        *cell_h0 = cg->cell_h0;
    }
}

void th_result_read_cam_row(const th_result *result, int c, int64_t gy, float *out)
{
    th_result_read_cam_span(result, c, gy, 0, result->cams.gw, out);
}

void th_result_read_cam_span(const th_result *result, int c, int64_t gy, int64_t gx0, int64_t gx1,
                             float *out)
{
    const th_camgrid *cg = &result->cams;
    th_camgrid_read_span(cg, c, gy, gx0, gx1, out);
    // A row of cells makes a page of the class plane and one of the counts resident per chunk.
    int64_t chunks =
        (TH_MIN(gx1, cg->gw) + cg->chunk_w - 1) / cg->chunk_w - TH_MAX(gx0, 0) / cg->chunk_w;
    th_camgrid_touch(cg, (size_t)TH_MAX(chunks, 0) * 2 * 4096);
}

double th_result_get_mpp(const th_result *result, const char **source)
{
    if (source) {
        *source = result->grid.mpp_source[0] ? result->grid.mpp_source : "none";
    }
    return result->grid.mpp;
}

double th_result_get_scale(const th_result *result)
{
    return result->grid.scale;
}

int th_result_get_level(const th_result *result)
{
    return result->grid.level;
}

void th_result_get_tile_counts(const th_result *result, int64_t *total, int64_t *skipped)
{
    if (total) {
        *total = result->n_tiles + result->n_skipped;
    }
    if (skipped) {
        *skipped = result->n_skipped;
    }
}

bool th_result_write_tissue_png(const th_result *result, const char *path, th_error **err)
{
    if (!result->tissue) {
        th_error_set(err, "the run had no tissue detection");
        return false;
    }
    return th_tissue_write_png(result->tissue, path, err);
}

const th_stage *th_result_get_stages(const th_result *result, int *n)
{
    *n = result->n_stages;
    return result->stages;
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
