/* SPDX-License-Identifier: MIT */
/* Class activation maps (Zhou et al. 2016): CAM_c = Σ_k W[c,k]·A_k over the feature map A that
 * feeds global average pooling. The dense bias is left out: it shifts every cell of a class by
 * the same amount and carries no location. Also the slide-wide display range and the bilinear
 * sampler that stitches tiles without seams. */
#include <config.h>

#include "cam.h"

void th_cam_compute(const float *feat, int c, int h, int w, const float *weight, int n_classes,
                    float *cam)
{
    size_t n = (size_t)h * w;
    for (int cls = 0; cls < n_classes; cls++) {
        float *out = cam + (size_t)cls * n; // (h, w)
        const float *wrow = weight + (size_t)cls * c;
        memset(out, 0, n * sizeof(*out));
        for (int k = 0; k < c; k++) {
            const float wk = wrow[k];
            const float *a = feat + (size_t)k * n; // (h, w)
            for (size_t p = 0; p < n; p++) {
                out[p] += wk * a[p];
            }
        }
    }
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// Linear-interpolated percentile (0..100) of the class's CAM values clipped at 0.
static bool class_percentile(const th_result *r, int cls, double pct, float *out, float *max,
                             th_error **err)
{
    size_t cells = (size_t)r->cam_h * r->cam_w;
    size_t n = (size_t)r->n_tiles * cells;
    float *v = th_calloc(n ? n : 1, sizeof(float), err); // (n) values of this class
    if (!v) {
        return false;
    }
    for (int64_t t = 0; t < r->n_tiles; t++) {
        const float *src = r->cam + ((size_t)t * r->n_classes + cls) * cells;
        for (size_t i = 0; i < cells; i++) {
            v[(size_t)t * cells + i] = src[i] > 0 ? src[i] : 0;
        }
    }
    qsort(v, n, sizeof(float), cmp_float);
    *out = 0;
    *max = 0;
    if (n) {
        double pos = TH_CLAMP(pct, 0.0, 100.0) / 100.0 * (double)(n - 1);
        size_t i = (size_t)pos;
        double frac = pos - (double)i;
        *out = (float)(i + 1 < n ? v[i] * (1 - frac) + v[i + 1] * frac : v[i]);
        *max = v[n - 1];
    }
    th_free(v);
    return true;
}

bool th_cam_range(const th_result *result, th_norm norm, double percentile, const int *classes,
                  int n_classes, float *lo, float *hi, th_error **err)
{
    if (norm == TH_NORM_PERCENTILE) {
        float p, max;
        if (!class_percentile(result, classes[0], percentile, &p, &max, err)) {
            return false;
        }
        // A class present in fewer cells than the percentile leaves it at 0: use the maximum.
        *lo = 0;
        *hi = p > 0 ? p : (max > 0 ? max : 1);
        return true;
    }
    size_t cells = (size_t)result->cam_h * result->cam_w;
    bool any = false;
    for (int i = 0; i < n_classes; i++) {
        for (int64_t t = 0; t < result->n_tiles; t++) {
            const float *src = result->cam + ((size_t)t * result->n_classes + classes[i]) * cells;
            for (size_t j = 0; j < cells; j++) {
                if (!any || src[j] < *lo) {
                    *lo = src[j];
                }
                if (!any || src[j] > *hi) {
                    *hi = src[j];
                }
                any = true;
            }
        }
    }
    if (!any) {
        *lo = 0;
        *hi = 1;
    } else if (*hi <= *lo) {
        *hi = *lo + 1;
    }
    return true;
}

// Raw CAM value of grid cell (gx, gy) for class cls; false if its tile was not run.
static bool cell_value(const th_result *r, int cls, int64_t gx, int64_t gy, float *v)
{
    int64_t col = gx / r->cam_w, row = gy / r->cam_h;
    int64_t t = r->index[row * r->grid.cols + col];
    if (t < 0) {
        return false;
    }
    size_t cells = (size_t)r->cam_h * r->cam_w;
    const float *cam = r->cam + ((size_t)t * r->n_classes + cls) * cells; // (cam_h, cam_w)
    *v = cam[(gy % r->cam_h) * r->cam_w + gx % r->cam_w];
    return true;
}

bool th_cam_sample(const th_result *result, int cls, double x, double y, float *value)
{
    const th_grid *g = &result->grid;
    double tile_w0 = g->tile_w * g->downsample, tile_h0 = g->tile_h * g->downsample;
    if (x < 0 || y < 0 || x >= g->cols * tile_w0 || y >= g->rows * tile_h0) {
        return false;
    }
    if (result->index[(int64_t)(y / tile_h0) * g->cols + (int64_t)(x / tile_w0)] < 0) {
        return false;
    }
    int64_t gw = (int64_t)g->cols * result->cam_w, gh = (int64_t)g->rows * result->cam_h;
    double cell_w0 = tile_w0 / result->cam_w, cell_h0 = tile_h0 / result->cam_h;
    // Continuous cell coordinates: cell centres sit at integer positions.
    double fx = x / cell_w0 - 0.5;
    double fy = y / cell_h0 - 0.5;
    fx = TH_CLAMP(fx, 0.0, (double)(gw - 1));
    fy = TH_CLAMP(fy, 0.0, (double)(gh - 1));
    int64_t x0 = (int64_t)fx, y0 = (int64_t)fy;
    int64_t x1 = TH_MIN(x0 + 1, gw - 1), y1 = TH_MIN(y0 + 1, gh - 1);
    double ax = fx - (double)x0, ay = fy - (double)y0;
    const int64_t cx[4] = {x0, x1, x0, x1}, cy[4] = {y0, y0, y1, y1};
    const double wt[4] = {(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay};
    double sum = 0, wsum = 0;
    for (int i = 0; i < 4; i++) {
        float v;
        if (wt[i] > 0 && cell_value(result, cls, cx[i], cy[i], &v)) {
            sum += wt[i] * v;
            wsum += wt[i];
        }
    }
    if (wsum <= 0) {
        // Only the point's own cell is left (its tile was run, its neighbours' were not).
        return cell_value(result, cls, (int64_t)(x / cell_w0), (int64_t)(y / cell_h0), value);
    }
    *value = (float)(sum / wsum);
    return true;
}
