/* SPDX-License-Identifier: MIT */
/* The viewer's pyramids (viewer.h): the slide as JPEG Deep Zoom tiles read through tileheat's
 * slide readers, and the heatmap as one RGBA PNG pyramid per layer at twice the CAM grid's
 * resolution. Both are walked with th_pyramid_walk: units of tiles, one thread each; memory is
 * a few tile-sized buffers per thread whatever the slide's size. Tiles the tissue mask calls
 * glass are not read: they are one flat tile of the glass colour (and, in the layers, one clear
 * tile), written once as shared/glass.jpg (shared/clear.png); the pyramid only marks them, and
 * the page maps them to that file. */
#include <config.h>

#include <inttypes.h>
#include <math.h>

#include "viewer.h"

#define READ_MAX_PX (1 << 20)  // slide pixels read at a time when shrinking (3 MB of RGB)
#define GLASS_THUMB 512        // long side of the thumbnail the glass colour is measured on

/* ---------------------------------------------------------------- glass */

// Whether the level-0 rectangle [x0, x1) × [y0, y1), grown by one mask pixel on every side, holds
// no tissue. False without a mask.
bool th_viewer_is_glass(const th_tissue *t, double x0, double y0, double x1, double y1)
{
    if (!t) {
        return false;
    }
    int mx0 = (int)TH_CLAMP(floor(x0 / t->sx) - 1, 0.0, (double)t->w - 1);
    int mx1 = (int)TH_CLAMP(floor((x1 - 1) / t->sx) + 1, 0.0, (double)t->w - 1);
    int my0 = (int)TH_CLAMP(floor(y0 / t->sy) - 1, 0.0, (double)t->h - 1);
    int my1 = (int)TH_CLAMP(floor((y1 - 1) / t->sy) + 1, 0.0, (double)t->h - 1);
    for (int y = my0; y <= my1; y++) {
        for (int x = mx0; x <= mx1; x++) {
            if (th_tissue_at(t, x, y)) {
                return false;
            }
        }
    }
    return true;
}

/* ---------------------------------------------------------------- reading at any scale */

/* A w×h region of an image whose pixels are `scale` level-0 pixels wide, from pixel (x, y), into
 * out ((h, w, 3)): straight from a level of that downsample, or else a box filter of the
 * coarsest level not coarser than it (each level pixel counts for the output pixel holding its
 * centre), read in pieces of at most READ_MAX_PX. Pixels past the slide are white. */
// Whether th_viewer_read_scaled reads `scale` straight from a slide level (no box filter).
bool th_viewer_reads_directly(th_slide *slide, double scale)
{
    return scale == th_slide_get_level_downsample(slide, th_slide_coarsest_level(slide, scale));
}

bool th_viewer_read_scaled(th_slide *slide, th_viewer_reader *rd, double scale, int64_t x,
                           int64_t y, int w, int h, uint8_t *out, th_error **err)
{
    int l = th_slide_coarsest_level(slide, scale);
    double ds = th_slide_get_level_downsample(slide, l), r = scale / ds;
    int64_t lw, lh;
    th_slide_get_level_dimensions(slide, l, &lw, &lh);
    if (r == 1) {
        return th_slide_read_region(slide, out, llround((double)x * ds), llround((double)y * ds),
                                    l, w, h, err);
    }
    memset(rd->sum, 0, (size_t)w * h * 4 * sizeof(uint64_t));
    int64_t lx0 = (int64_t)floor((double)x * r), lx1 = (int64_t)ceil((double)(x + w) * r);
    int64_t ly0 = (int64_t)floor((double)y * r), ly1 = (int64_t)ceil((double)(y + h) * r);
    lx0 = TH_CLAMP(lx0, 0, lw);
    lx1 = TH_CLAMP(lx1, 0, lw);
    ly0 = TH_CLAMP(ly0, 0, lh);
    ly1 = TH_CLAMP(ly1, 0, lh);
    int64_t pw = TH_MIN(lx1 - lx0, (int64_t)READ_MAX_PX);
    for (int64_t px = lx0; px < lx1; px += pw) {
        int64_t cw = TH_MIN(pw, lx1 - px), ph = TH_MAX(1, READ_MAX_PX / cw);
        for (int64_t i = 0; i < cw; i++) {
            rd->col_of[i] = (int32_t)(floor(((double)(px + i) + 0.5) / r) - (double)x);
        }
        for (int64_t py = ly0; py < ly1; py += ph) {
            int64_t ch = TH_MIN(ph, ly1 - py);
            if (!th_slide_read_region(slide, rd->region, llround((double)px * ds),
                                      llround((double)py * ds), l, cw, ch, err)) {
                return false;
            }
            for (int64_t j = 0; j < ch; j++) {
                int64_t oy = (int64_t)floor(((double)(py + j) + 0.5) / r) - y;
                if (oy < 0 || oy >= h) {
                    continue;
                }
                const uint8_t *src = rd->region + (size_t)j * cw * 3;
                uint64_t *acc = rd->sum + (size_t)oy * w * 4;
                for (int64_t i = 0; i < cw; i++) {
                    int32_t ox = rd->col_of[i];
                    if (ox < 0 || ox >= w) {
                        continue;
                    }
                    uint64_t *a = acc + (size_t)ox * 4;
                    a[0] += src[i * 3];
                    a[1] += src[i * 3 + 1];
                    a[2] += src[i * 3 + 2];
                    a[3]++;
                }
            }
        }
    }
    for (size_t i = 0; i < (size_t)w * h; i++) {
        const uint64_t *a = rd->sum + i * 4;
        for (int c = 0; c < 3; c++) {
            out[i * 3 + c] = a[3] ? (uint8_t)((a[c] + a[3] / 2) / a[3]) : 255;
        }
    }
    return true;
}

bool th_viewer_reader_init(th_viewer_reader *rd, int max_w, int max_h, th_error **err)
{
    memset(rd, 0, sizeof(*rd));
    rd->region = th_malloc((size_t)READ_MAX_PX * 3, err);
    rd->col_of = th_malloc((size_t)READ_MAX_PX * sizeof(int32_t), err);
    rd->sum = th_malloc((size_t)max_w * max_h * 4 * sizeof(uint64_t), err);
    return rd->region && rd->col_of && rd->sum;
}

void th_viewer_reader_free(th_viewer_reader *rd)
{
    TH_FREE(rd->region);
    TH_FREE(rd->col_of);
    TH_FREE(rd->sum);
}

/* The glass colour: the per-channel median of the pixels the mask calls glass, on a thumbnail
 * of at most GLASS_THUMB px. False (no glass tiles) without a mask or without glass. */
static bool glass_colour(th_viewer *v, th_error **err)
{
    const th_tissue *t = v->tissue;
    const th_pyramid *p = &v->slide.pyr;
    int k = 0;
    while (k + 1 < p->n && TH_MAX(p->lv[k].w, p->lv[k].h) > GLASS_THUMB) {
        k++;
    }
    const th_pyr_level *l = &p->lv[k];
    int w = (int)l->w, h = (int)l->h;
    uint8_t *rgb = th_malloc((size_t)w * h * 3, err);
    if (!rgb) {
        return false;
    }
    uint64_t hist[3][256] = {{0}}, n = 0;
    th_viewer_reader *rd = &v->wk[0].rd;
    bool ok = th_viewer_read_scaled(v->slide_handle, rd, l->scale, 0, 0, w, h, rgb, err);
    for (int y = 0; ok && t && y < h; y++) {
        int my = (int)TH_MIN(floor((y + 0.5) * l->scale / t->sy), (double)t->h - 1);
        for (int x = 0; x < w; x++) {
            int mx = (int)TH_MIN(floor((x + 0.5) * l->scale / t->sx), (double)t->w - 1);
            if (!th_tissue_at(t, mx, my)) {
                for (int c = 0; c < 3; c++) {
                    hist[c][rgb[((size_t)y * w + x) * 3 + c]]++;
                }
                n++;
            }
        }
    }
    th_free(rgb);
    v->has_glass = ok && n > 0;
    for (int c = 0; v->has_glass && c < 3; c++) {
        uint64_t seen = 0;
        int i = 0;
        while (i < 255 && (seen += hist[c][i]) < (n + 1) / 2) {
            i++;
        }
        v->glass_rgb[c] = (uint8_t)i;
    }
    return ok;
}

/* ---------------------------------------------------------------- the slide pyramid */

// The slide under tiles (c0, r0) .. (c1, r1) of level k: the rectangle from the first's corner
// to the last's far corner, in level-k pixels.
static void span_rect(const th_pyramid *p, int k, int64_t c0, int64_t r0, int64_t c1, int64_t r1,
                      int64_t rect[4])
{
    int64_t x, y, w, h;
    th_pyramid_tile_rect(p, k, c0, r0, &rect[0], &rect[1], &w, &h);
    th_pyramid_tile_rect(p, k, c1, r1, &x, &y, &w, &h);
    rect[2] = x + w - rect[0];
    rect[3] = y + h - rect[1];
}

/* Read the slide under tiles (c0, r0) .. (c1, r1) of level k into wk->unit and write those of
 * them that are not glass. */
static bool read_and_put(th_viewer *v, th_viewer_worker *wk, int k, int64_t c0, int64_t r0,
                         int64_t c1, int64_t r1, bool glass[TH_VIEWER_UNIT][TH_VIEWER_UNIT],
                         int64_t col, int64_t row, th_error **err)
{
    const th_pyramid *p = &v->slide.pyr;
    double s = p->lv[k].scale;
    int64_t u[4]; // x, y, w, h
    span_rect(p, k, c0, r0, c1, r1, u);
    if (!th_viewer_read_scaled(v->slide_handle, &wk->rd, s, u[0], u[1], (int)u[2], (int)u[3],
                               wk->unit, err)) {
        th_error_prefix(err, "reading the slide at level-0 %.0f,%.0f: ", u[0] * s, u[1] * s);
        return false;
    }
    for (int64_t r = r0; r <= r1; r++) {
        for (int64_t c = c0; c <= c1; c++) {
            if (glass[r - row][c - col]) {
                continue;
            }
            int64_t x, y, w, h;
            th_pyramid_tile_rect(p, k, c, r, &x, &y, &w, &h);
            for (int64_t j = 0; j < h; j++) {
                memcpy(wk->tile + (size_t)j * w * 3,
                       wk->unit + ((size_t)(y - u[1] + j) * u[2] + (size_t)(x - u[0])) * 3,
                       (size_t)w * 3);
            }
            if (!th_dzi_put(&v->slide, &wk->enc, k, c, r, wk->tile, (int)w, (int)h, err)) {
                return false;
            }
        }
    }
    return true;
}

/* A unit of the slide's pyramid: its glass tiles marked shared, the others read and written:
 * in one read over the ones not glass where the slide has this level's scale, else in blocks
 * of TH_VIEWER_BOX² tiles (the box filter's buffers). */
static bool slide_unit(void *user, int worker, int k, int64_t col, int64_t row, int n_cols,
                       int n_rows, th_error **err)
{
    th_viewer *v = user;
    th_viewer_worker *wk = &v->wk[worker];
    const th_pyramid *p = &v->slide.pyr;
    double s = p->lv[k].scale;
    bool glass[TH_VIEWER_UNIT][TH_VIEWER_UNIT];
    int64_t c0 = INT64_MAX, r0 = INT64_MAX, c1 = -1, r1 = -1; // the tiles not glass
    for (int j = 0; j < n_rows; j++) {
        for (int i = 0; i < n_cols; i++) {
            int64_t x, y, w, h;
            th_pyramid_tile_rect(p, k, col + i, row + j, &x, &y, &w, &h);
            glass[j][i] = v->has_glass &&
                          th_viewer_is_glass(v->tissue, x * s, y * s, (x + w) * s, (y + h) * s);
            if (glass[j][i]) {
                th_dzi_put_shared(&v->slide, k, col + i, row + j);
            } else {
                c0 = TH_MIN(c0, col + i);
                r0 = TH_MIN(r0, row + j);
                c1 = TH_MAX(c1, col + i);
                r1 = TH_MAX(r1, row + j);
            }
        }
    }
    if (c1 < 0) {
        return true; // all glass
    }
    if (th_viewer_reads_directly(v->slide_handle, s)) {
        return read_and_put(v, wk, k, c0, r0, c1, r1, glass, col, row, err);
    }
    for (int64_t by = r0; by <= r1; by += TH_VIEWER_BOX) {
        for (int64_t bx = c0; bx <= c1; bx += TH_VIEWER_BOX) {
            int64_t ex = TH_MIN(bx + TH_VIEWER_BOX - 1, c1),
                    ey = TH_MIN(by + TH_VIEWER_BOX - 1, r1);
            bool any = false;
            for (int64_t r = by; r <= ey; r++) {
                for (int64_t c = bx; c <= ex; c++) {
                    any = any || !glass[r - row][c - col];
                }
            }
            if (any && !read_and_put(v, wk, k, bx, by, ex, ey, glass, col, row, err)) {
                return false;
            }
        }
    }
    return true;
}

/* Level k of the pyramid is written: the slide level it was read from gives back its cache of
 * decoded tiles unless the next level reads it too (each slide level's cache is up to 16 MB, and
 * the walk reads every level once, finest first). */
static void slide_level_done(void *user, int k)
{
    th_viewer *v = user;
    const th_pyramid *p = &v->slide.pyr;
    int l = th_slide_coarsest_level(v->slide_handle, p->lv[k].scale);
    if (k + 1 == p->n || th_slide_coarsest_level(v->slide_handle, p->lv[k + 1].scale) != l) {
        th_slide_release_level(v->slide_handle, l);
    }
}

bool th_viewer_write_slide(th_viewer *v, th_error **err)
{
    if (!glass_colour(v, err)) {
        return false;
    }
    if (v->has_glass) {
        int side = TH_DZI_TILE + 2 * TH_DZI_OVERLAP;
        uint8_t *px = th_malloc((size_t)side * side * 3, err);
        if (!px) {
            return false;
        }
        for (size_t i = 0; i < (size_t)side * side; i++) {
            memcpy(px + i * 3, v->glass_rgb, 3);
        }
        bool ok = th_viewer_shared(v, "glass.jpg", px, side, err);
        th_free(px);
        if (!ok) {
            return false;
        }
    }
    return th_pyramid_walk(&v->slide.pyr, v->threads, TH_VIEWER_UNIT, slide_unit, slide_level_done,
                           v, v->cancel, err);
}

/* ---------------------------------------------------------------- the heatmap layers */

static bool layer_unit(void *user, int worker, int k, int64_t col, int64_t row, int n_cols,
                       int n_rows, th_error **err)
{
    th_viewer *v = user;
    th_viewer_worker *wk = &v->wk[worker];
    const th_pyramid *p = &v->layer[0].pyr;
    double s = v->layer_scale * p->lv[k].scale; // level-0 px per pixel of this level
    int64_t x, y, w, h;
    th_pyramid_tile_rect(p, k, col, row, &x, &y, &w, &h);
    size_t plane = (size_t)w * h * 4;
    bool clear = v->ov.glass && th_viewer_is_glass(v->ov.glass, x * s, y * s, (x + w) * s,
                                                   (y + h) * s);
    if (!clear) {
        memset(wk->layers, 0, plane * v->n_layers);
        th_overlay_plan_axis(&v->ov, false, s, x, w, wk->cols);
        for (int64_t j = 0; j < h; j++) {
            th_overlay_axis ra;
            th_overlay_plan_axis(&v->ov, true, s, y + j, 1, &ra);
            th_overlay_layers_row(&v->ov, &wk->cache, &ra, wk->cols, w,
                                  wk->layers + (size_t)j * w * 4, plane);
        }
    }
    for (int i = 0; i < v->n_layers; i++) {
        const uint8_t *px = wk->layers + plane * i;
        bool empty = true;
        for (size_t q = 3; !clear && empty && q < plane; q += 4) {
            empty = px[q] == 0;
        }
        if (clear || empty) {
            th_dzi_put_shared(&v->layer[i], k, col, row);
        } else if (!th_dzi_put(&v->layer[i], &wk->enc, k, col, row, px, (int)w, (int)h, err)) {
            return false;
        }
    }
    return true;
}

bool th_viewer_write_layers(th_viewer *v, th_error **err)
{
    int side = TH_DZI_TILE + 2 * TH_DZI_OVERLAP;
    uint8_t *px = th_calloc((size_t)side * side, 4, err);
    bool ok = px && th_viewer_shared(v, "clear.png", px, side, err);
    th_free(px);
    return ok &&
           th_pyramid_walk(&v->layer[0].pyr, v->threads, 1, layer_unit, NULL, v, v->cancel, err);
}
