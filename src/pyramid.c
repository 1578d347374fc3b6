/* SPDX-License-Identifier: MIT */
/* The pyramid builder (pyramid.h): level plan, tile rectangles, the parallel walk over every
 * tile of every level, and the strip reducer. */
#include <config.h>

#include <signal.h>
#include <stdatomic.h>

#include "pyramid.h"

void th_pyramid_plan(th_pyramid *p, int64_t w, int64_t h, int tile, int overlap, int64_t top_max)
{
    memset(p, 0, sizeof(*p));
    p->tile = tile;
    p->overlap = overlap;
    for (double scale = 1;; scale *= 2) {
        th_pyr_level *l = &p->lv[p->n++];
        l->w = w;
        l->h = h;
        l->cols = (w + tile - 1) / tile;
        l->rows = (h + tile - 1) / tile;
        l->scale = scale;
        if (TH_MAX(w, h) <= top_max || p->n == TH_PYR_MAX_LEVELS) {
            break;
        }
        w = (w + 1) / 2;
        h = (h + 1) / 2;
    }
}

void th_pyramid_tile_rect(const th_pyramid *p, int k, int64_t col, int64_t row, int64_t *x,
                          int64_t *y, int64_t *w, int64_t *h)
{
    const th_pyr_level *l = &p->lv[k];
    int64_t x0 = TH_MAX(col * p->tile - p->overlap, 0);
    int64_t y0 = TH_MAX(row * p->tile - p->overlap, 0);
    int64_t x1 = TH_MIN((col + 1) * p->tile + p->overlap, l->w);
    int64_t y1 = TH_MIN((row + 1) * p->tile + p->overlap, l->h);
    *x = x0;
    *y = y0;
    *w = x1 - x0;
    *h = y1 - y0;
}

// Units of level k: unit×unit tiles each, row-major.
static int64_t units_across(const th_pyr_level *l, int unit)
{
    return (l->cols + unit - 1) / unit;
}

// The units of level k, in parallel; false if one failed (the first failure is in *published).
static bool walk_level(const th_pyramid *p, int k, int threads, int unit, th_pyr_unit_fn fn,
                       void *user, const volatile sig_atomic_t *cancel,
                       th_error *_Atomic *published)
{
    const th_pyr_level *l = &p->lv[k];
    int64_t across = units_across(l, unit), n = across * ((l->rows + unit - 1) / unit);
    _Atomic bool failed = false;
#ifdef _OPENMP
#pragma omp parallel for num_threads(th_threads(threads)) schedule(dynamic, 1)
#endif
    for (int64_t u = 0; u < n; u++) {
        if (failed || (cancel && *cancel)) {
            continue;
        }
        int64_t col = (u % across) * unit, row = (u / across) * unit;
        int nc = (int)TH_MIN((int64_t)unit, l->cols - col);
        int nr = (int)TH_MIN((int64_t)unit, l->rows - row);
        th_error *e = NULL;
        if (!fn(user, th_thread_num(), k, col, row, nc, nr, &e)) {
            th_error *expected = NULL;
            failed = true;
            if (!atomic_compare_exchange_strong(published, &expected, e)) {
                th_error_free(e); // another unit failed first
            }
        }
    }
    return !failed;
}

bool th_pyramid_walk(const th_pyramid *p, int threads, int unit, th_pyr_unit_fn fn,
                     th_pyr_level_fn done, void *user, const volatile sig_atomic_t *cancel,
                     th_error **err)
{
    th_error *_Atomic published = NULL;
    for (int k = 0; k < p->n && !(cancel && *cancel); k++) {
        if (!walk_level(p, k, threads, unit, fn, user, cancel, &published)) {
            break;
        }
        if (done) {
            done(user, k);
        }
    }
    th_error *e = published;
    if (e) {
        th_error_propagate(err, &e);
        return false;
    }
    if (cancel && *cancel) {
        th_error_set(err, "cancelled");
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- the strip reducer */

bool th_pyr_reducer_init(th_pyr_reducer *r, const th_pyramid *p, th_pyr_strip_fn emit, void *user,
                         th_error **err)
{
    memset(r, 0, sizeof(*r));
    r->p = p;
    r->emit = emit;
    r->user = user;
    for (int k = 1; k < p->n; k++) {
        r->strip[k] = th_malloc((size_t)p->lv[k].w * 3 * p->tile, err);
        if (!r->strip[k]) {
            return false;
        }
    }
    return true;
}

void th_pyr_reducer_free(th_pyr_reducer *r)
{
    for (int k = 0; k < TH_PYR_MAX_LEVELS; k++) {
        TH_FREE(r->strip[k]);
    }
}

// Row of 2×2 means: a and b (b NULL at an odd bottom edge) are rows of wa pixels; out has
// (wa + 1) / 2. Each output pixel is the rounded mean of the 1, 2 or 4 pixels it covers.
static void reduce_row(const uint8_t *a, const uint8_t *b, int64_t wa, uint8_t *out)
{
    for (int64_t i = 0; 2 * i < wa; i++) {
        int64_t x0 = 2 * i, x1 = TH_MIN(x0 + 1, wa - 1);
        unsigned n = (x1 > x0 ? 2 : 1) * (b ? 2 : 1);
        for (int ch = 0; ch < 3; ch++) {
            unsigned s = a[x0 * 3 + ch] + (x1 > x0 ? a[x1 * 3 + ch] : 0);
            if (b) {
                s += b[x0 * 3 + ch] + (x1 > x0 ? b[x1 * 3 + ch] : 0);
            }
            out[i * 3 + ch] = (uint8_t)((s + n / 2) / n);
        }
    }
}

// The 2×2 means of h rows × wa columns of level k-1 (src, (h, wa, 3)) at (x, y), both even,
// into level k's strip.
static void reduce_into(th_pyr_reducer *r, int k, const uint8_t *src, int64_t wa, int h, int64_t x,
                        int64_t y)
{
    int64_t w = r->p->lv[k].w;
    for (int j = 0; 2 * j < h; j++) {
        const uint8_t *a = src + (size_t)(2 * j) * wa * 3;
        const uint8_t *b = 2 * j + 1 < h ? a + (size_t)wa * 3 : NULL;
        reduce_row(a, b, wa, r->strip[k] + ((size_t)(y / 2 + j - r->y0[k]) * w + x / 2) * 3);
    }
}

void th_pyr_reducer_add(th_pyr_reducer *r, const uint8_t *rgb, int64_t w, int h, int64_t x,
                        int64_t y)
{
    if (r->p->n > 1) {
        reduce_into(r, 1, rgb, w, h, x, y);
    }
}

/* Rows y .. y+h-1 of level k-1 (y a multiple of the tile) are complete in level k: once level
 * k's strip is full, emit it, reduce it into level k+1, and so on down the pyramid. */
static bool rows_done(th_pyr_reducer *r, int k, int64_t y, int h, th_error **err)
{
    const th_pyramid *p = r->p;
    if (k >= p->n) {
        return true;
    }
    const th_pyr_level *l = &p->lv[k];
    int64_t end = y / 2 + (h + 1) / 2; // level-k rows complete so far
    if (end - r->y0[k] < p->tile && end < l->h) {
        return true; // the strip's second half comes with the next strip above
    }
    int rows = (int)(end - r->y0[k]);
    bool ok = r->emit(r->user, k, r->strip[k], r->y0[k], rows, err);
    if (ok && k + 1 < p->n) {
        reduce_into(r, k + 1, r->strip[k], l->w, rows, 0, r->y0[k]);
        ok = rows_done(r, k + 1, r->y0[k], rows, err);
    }
    r->y0[k] += p->tile;
    return ok;
}

bool th_pyr_reducer_rows_done(th_pyr_reducer *r, int64_t y, int h, th_error **err)
{
    return rows_done(r, 1, y, h, err);
}
