/* SPDX-License-Identifier: MIT */
/* The tile grid at the model's resolution. The slide's µm/px comes from --mpp, the slide's
 * metadata or believable resolution tags; the model's from its metadata or --model-mpp. Tiles are
 * read from the coarsest level that is not coarser than the model, and resampled (area average)
 * unless the level is within the tolerance of the model's resolution. */
#include <config.h>

#include "slide.h"
#include "tiler.h"

// The slide's µm/px: --mpp, else the slide's own (metadata or resolution tags), else none.
static void slide_mpp(th_grid *g, const th_slide *slide, const th_run_options *opt)
{
    double mx, my;
    if (opt->slide_mpp > 0) {
        g->mpp = opt->slide_mpp;
        snprintf(g->mpp_source, sizeof(g->mpp_source), "--mpp");
    } else if (th_slide_get_mpp(slide, &mx, &my)) {
        g->mpp = (mx + my) / 2;
        snprintf(g->mpp_source, sizeof(g->mpp_source), "%s", slide->mpp_source);
    } else {
        g->mpp = 0;
        snprintf(g->mpp_source, sizeof(g->mpp_source), "none");
    }
}

// Choose the level and the scale. A forced level, or a model without µm/px, reads a level as
// is; otherwise the coarsest level no coarser than the model (within the tolerance) is read,
// resampled unless it is within the tolerance.
static bool choose_level(th_grid *g, const th_slide *slide, double model_mpp,
                         const th_run_options *opt, th_error **err)
{
    int n = th_slide_get_level_count(slide);
    if (opt->level >= 0 || model_mpp <= 0) {
        int level = opt->level >= 0 ? opt->level : 0;
        if (level >= n) {
            th_error_set(err, "no level %d (the slide has %d)", level, n);
            return false;
        }
        g->level = level;
        g->downsample = g->scale = th_slide_get_level_downsample(slide, level);
        return true;
    }
    if (g->mpp <= 0) {
        if (!th_slide_is_plain_image(slide)) {
            th_error_set(err, "the slide has no µm/px (no openslide.mpp-x/y and no believable "
                              "TIFF resolution tags): give --mpp");
            return false;
        }
        g->mpp = model_mpp; // a plain image is taken to be at the model's resolution
        snprintf(g->mpp_source, sizeof(g->mpp_source), "assumed");
    }
    double tol = opt->mpp_tolerance > 0 ? opt->mpp_tolerance : 0;
    double target = model_mpp / g->mpp; // level-0 px per model px
    g->level = th_slide_coarsest_level(slide, target * (1 + tol));
    g->downsample = th_slide_get_level_downsample(slide, g->level);
    double r = target / g->downsample;
    g->resample = fabs(r - 1) > tol;
    g->scale = g->resample ? target : g->downsample;
    return true;
}

// The region of interest (level 0), or the whole slide.
static bool choose_area(th_grid *g, const th_slide *slide, const th_run_options *opt,
                        th_error **err)
{
    int64_t w0, h0;
    th_slide_get_level_dimensions(slide, 0, &w0, &h0);
    g->slide_w = w0;
    g->slide_h = h0;
    if (opt->roi_w == 0 && opt->roi_h == 0) {
        g->area_w = w0;
        g->area_h = h0;
        return true;
    }
    // compared without sums: x + w may not fit in 64 bits
    if (opt->roi_x < 0 || opt->roi_y < 0 || opt->roi_w <= 0 || opt->roi_h <= 0 || opt->roi_x > w0 ||
        opt->roi_y > h0 || opt->roi_w > w0 - opt->roi_x || opt->roi_h > h0 - opt->roi_y) {
        th_error_set(err, "region %lld,%lld,%lld,%lld is not inside the slide (%lld×%lld)",
                     (long long)opt->roi_x, (long long)opt->roi_y, (long long)opt->roi_w,
                     (long long)opt->roi_h, (long long)w0, (long long)h0);
        return false;
    }
    g->x0 = opt->roi_x;
    g->y0 = opt->roi_y;
    g->area_w = opt->roi_w;
    g->area_h = opt->roi_h;
    return true;
}

// Tiles along one side of `extent` model pixels: full ones, or with edge padding every tile
// that starts inside. The epsilon absorbs the float error of extents computed by division.
static int64_t tile_count(double extent, int tile, int stride, bool pad)
{
    const double eps = 1e-6;
    if (pad) {
        return extent > tile ? (int64_t)ceil((extent - tile) / stride - eps) + 1
                             : (extent > 0 ? 1 : 0);
    }
    return extent + eps >= tile ? (int64_t)floor((extent - tile) / stride + eps) + 1 : 0;
}

bool th_grid_plan(th_grid *grid, const th_slide *slide, double model_mpp, int tile_w, int tile_h,
                  const th_run_options *opt, th_error **err)
{
    th_grid *g = grid;
    memset(g, 0, sizeof(*g));
    if (tile_w <= 0 || tile_h <= 0) {
        th_error_set(err, "invalid tile size %d×%d", tile_w, tile_h);
        return false;
    }
    if (opt->model_mpp > 0) {
        model_mpp = opt->model_mpp;
    }
    slide_mpp(g, slide, opt);
    if (!choose_level(g, slide, model_mpp, opt, err) || !choose_area(g, slide, opt, err)) {
        return false;
    }
    g->tile_w = tile_w;
    g->tile_h = tile_h;
    if (opt->stride < 0 || opt->stride > TH_MIN(tile_w, tile_h)) {
        th_error_set(err, "stride %d: must be from 1 to the tile size (%d)", opt->stride,
                     TH_MIN(tile_w, tile_h));
        return false;
    }
    g->stride_x = opt->stride > 0 ? opt->stride : tile_w;
    g->stride_y = opt->stride > 0 ? opt->stride : tile_h;
    g->edge_pad = opt->edge_pad;
    // Extent in model pixels; a level read as is (no ROI) uses its own pixel count exactly.
    int64_t lw, lh;
    th_slide_get_level_dimensions(slide, g->level, &lw, &lh);
    bool whole_level = !g->resample && g->x0 == 0 && g->y0 == 0 && opt->roi_w == 0;
    double ew = whole_level ? (double)lw : (double)g->area_w / g->scale;
    double eh = whole_level ? (double)lh : (double)g->area_h / g->scale;
    int64_t cols = tile_count(ew, tile_w, g->stride_x, g->edge_pad);
    int64_t rows = tile_count(eh, tile_h, g->stride_y, g->edge_pad);
    if (cols <= 0 || rows <= 0) {
        th_error_set(err, "image is %lld×%lld, smaller than the model input %d×%d",
                     (long long)llround(ew), (long long)llround(eh), tile_w, tile_h);
        return false;
    }
    if (cols > TH_MAX_GRID_TILES / rows) { // per-tile arrays are sized by the grid
        th_error_set(err,
                     "the grid would have %lld × %lld tiles, more than tileheat's limit of "
                     "%lld: give a larger --stride or a --roi",
                     (long long)cols, (long long)rows, (long long)TH_MAX_GRID_TILES);
        return false;
    }
    g->cols = (int)cols;
    g->rows = (int)rows;
    g->level_w = lw;
    g->level_h = lh;
    return true;
}

bool th_grid_init(th_grid *grid, const th_slide *slide, int level, int tile_w, int tile_h,
                  th_error **err)
{
    th_run_options opt;
    th_run_options_init(&opt);
    opt.level = level;
    return th_grid_plan(grid, slide, 0, tile_w, tile_h, &opt, err);
}

void th_grid_tile_rect(const th_grid *grid, int col, int row, int64_t *x, int64_t *y, int64_t *w,
                       int64_t *h)
{
    *x = grid->x0 + llround((double)col * grid->stride_x * grid->scale);
    *y = grid->y0 + llround((double)row * grid->stride_y * grid->scale);
    *w = llround(grid->tile_w * grid->scale);
    *h = llround(grid->tile_h * grid->scale);
}

// The grid as a view of its level: model pixel (0, 0) at the tiled area's corner, `scale` level-0
// pixels a model pixel.
static th_view grid_view(const th_grid *g)
{
    return (th_view){.level = g->level,
                     .downsample = g->downsample,
                     .x0 = (double)g->x0,
                     .y0 = (double)g->y0,
                     .sx = g->scale,
                     .sy = g->scale,
                     .resample = g->resample};
}

size_t th_view_scratch_size(const th_view *v, int w, int h)
{
    if (!v->resample) {
        return 0;
    }
    double rx = v->sx / v->downsample, ry = v->sy / v->downsample;
    return ((size_t)ceil(w * rx) + 2) * ((size_t)ceil(h * ry) + 2) * 3;
}

bool th_view_read(const th_view *v, th_slide *slide, int64_t ox, int64_t oy, int w, int h,
                  uint8_t *rgb, float *rgbf, uint8_t *scratch, th_error **err)
{
    if (!v->resample) {
        return th_slide_read_region(slide, rgb, (int64_t)v->x0 + llround((double)ox * v->sx),
                                    (int64_t)v->y0 + llround((double)oy * v->sy), v->level, w, h,
                                    err);
    }
    // The level region the rectangle covers, in level pixels, and the whole pixels around it.
    double rx = v->sx / v->downsample, ry = v->sy / v->downsample, ds = v->downsample;
    double sx = (v->x0 + (double)ox * v->sx) / ds;
    double sy = (v->y0 + (double)oy * v->sy) / ds;
    int64_t ix = (int64_t)floor(sx), iy = (int64_t)floor(sy);
    int64_t iw = (int64_t)ceil(sx + w * rx) - ix;
    int64_t ih = (int64_t)ceil(sy + h * ry) - iy;
    iw = TH_MIN(iw, (int64_t)ceil(w * rx) + 2);
    ih = TH_MIN(ih, (int64_t)ceil(h * ry) + 2);
    if (!th_slide_read_region(slide, scratch, llround((double)ix * ds), llround((double)iy * ds),
                              v->level, iw, ih, err)) {
        return false;
    }
    th_resample_area(scratch, iw, ih, sx - (double)ix, sy - (double)iy, rx, ry, rgb, rgbf, w, h);
    return true;
}

size_t th_grid_rect_scratch_size(const th_grid *grid, int w, int h)
{
    th_view v = grid_view(grid);
    return th_view_scratch_size(&v, w, h);
}

size_t th_grid_scratch_size(const th_grid *grid)
{
    return th_grid_rect_scratch_size(grid, grid->tile_w, grid->tile_h);
}

bool th_grid_read_rect(const th_grid *grid, th_slide *slide, int64_t mx, int64_t my, int w, int h,
                       uint8_t *rgb, uint8_t *scratch, th_error **err)
{
    th_view v = grid_view(grid);
    return th_view_read(&v, slide, mx, my, w, h, rgb, NULL, scratch, err);
}

// Paint white the tile pixels (model pixels) that lie beyond the tiled area's right and bottom
// edges: padded edge tiles, and tiles of a ROI that reach past it.
static void clip_to_area(const th_grid *g, int col, int row, uint8_t *rgb)
{
    int64_t x, y, w, h;
    th_grid_tile_rect(g, col, row, &x, &y, &w, &h);
    double vw = (double)(g->x0 + g->area_w - x) / g->scale;
    double vh = (double)(g->y0 + g->area_h - y) / g->scale;
    int valid_w = (int)TH_CLAMP(llround(vw), 0, (long long)g->tile_w);
    int valid_h = (int)TH_CLAMP(llround(vh), 0, (long long)g->tile_h);
    for (int j = 0; j < g->tile_h; j++) {
        uint8_t *line = rgb + (size_t)j * g->tile_w * 3;
        if (j >= valid_h) {
            memset(line, 255, (size_t)g->tile_w * 3);
        } else if (valid_w < g->tile_w) {
            memset(line + (size_t)valid_w * 3, 255, (size_t)(g->tile_w - valid_w) * 3);
        }
    }
}

bool th_grid_read_tile(const th_grid *grid, th_slide *slide, int col, int row, uint8_t *rgb,
                       uint8_t *scratch, th_error **err)
{
    const th_grid *g = grid;
    int64_t x, y, w, h;
    th_grid_tile_rect(g, col, row, &x, &y, &w, &h);
    if (!th_grid_read_rect(g, slide, (int64_t)col * g->stride_x, (int64_t)row * g->stride_y,
                           g->tile_w, g->tile_h, rgb, scratch, err)) {
        return false;
    }
    if (x + w > g->x0 + g->area_w || y + h > g->y0 + g->area_h) {
        clip_to_area(g, col, row, rgb);
    }
    return true;
}

// Overlap of source pixel p with the interval [a, b).
static double overlap(int64_t p, double a, double b)
{
    double lo = TH_MAX((double)p, a), hi = TH_MIN((double)(p + 1), b);
    return hi > lo ? hi - lo : 0;
}

static inline void add_weighted(double acc[3], double *wsum, double wt, const uint8_t *px)
{
    acc[0] += wt * px[0];
    acc[1] += wt * px[1];
    acc[2] += wt * px[2];
    *wsum += wt;
}

void th_resample_area(const uint8_t *src, int64_t sw, int64_t sh, double sx0, double sy0, double rx,
                      double ry, uint8_t *dst, float *dstf, int dw, int dh)
{
    for (int j = 0; j < dh; j++) {
        double ya = sy0 + j * ry, yb = ya + ry;
        int64_t y_lo = TH_CLAMP((int64_t)floor(ya), (int64_t)0, sh - 1);
        int64_t y_hi = TH_CLAMP((int64_t)ceil(yb), y_lo + 1, sh);
        for (int i = 0; i < dw; i++) {
            double xa = sx0 + i * rx, xb = xa + rx;
            int64_t x_lo = TH_CLAMP((int64_t)floor(xa), (int64_t)0, sw - 1);
            int64_t x_hi = TH_CLAMP((int64_t)ceil(xb), x_lo + 1, sw);
            double acc[3] = {0, 0, 0}, wsum = 0;
            // Pixels strictly inside the box overlap it by exactly 1: only the two edge columns
            // need overlap().
            double w_first = overlap(x_lo, xa, xb), w_last = overlap(x_hi - 1, xa, xb);
            for (int64_t y = y_lo; y < y_hi; y++) {
                double wy = overlap(y, ya, yb);
                const uint8_t *line = src + (size_t)y * sw * 3; // (sw, 3)
                add_weighted(acc, &wsum, wy * w_first, line + x_lo * 3);
                for (int64_t x = x_lo + 1; x < x_hi - 1; x++) {
                    add_weighted(acc, &wsum, wy, line + x * 3); // wy · 1
                }
                if (x_hi - 1 > x_lo) {
                    add_weighted(acc, &wsum, wy * w_last, line + (x_hi - 1) * 3);
                }
            }
            size_t at = ((size_t)j * dw + i) * 3;
            const uint8_t *near = src + ((size_t)y_lo * sw + x_lo) * 3;
            for (int ch = 0; ch < 3; ch++) {
                // Boxes clamped away entirely (past the source) take the nearest pixel.
                if (dst) {
                    dst[at + ch] = wsum > 0 ? (uint8_t)lrint(acc[ch] / wsum) : near[ch];
                } else {
                    dstf[at + ch] = wsum > 0 ? (float)(acc[ch] / wsum) : near[ch];
                }
            }
        }
    }
}
