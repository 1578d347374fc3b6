/* SPDX-License-Identifier: MIT */
/* The pyramid builder (pyramid.h): level plan, tile rectangles and the parallel walk over every
 * tile of every level. */
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

static int64_t units_of(const th_pyr_level *l, int unit)
{
    return units_across(l, unit) * ((l->rows + unit - 1) / unit);
}

bool th_pyramid_walk(const th_pyramid *p, int threads, int unit, th_pyr_unit_fn fn, void *user,
                     const volatile sig_atomic_t *cancel, th_error **err)
{
    int64_t first[TH_PYR_MAX_LEVELS + 1]; // index of each level's first unit
    first[0] = 0;
    for (int k = 0; k < p->n; k++) {
        first[k + 1] = first[k] + units_of(&p->lv[k], unit);
    }
    int64_t n = first[p->n];
    _Atomic bool failed = false;
    th_error *_Atomic published = NULL;
#ifdef _OPENMP
#pragma omp parallel for num_threads(th_threads(threads)) schedule(dynamic, 1)
#endif
    for (int64_t i = 0; i < n; i++) {
        if (failed || (cancel && *cancel)) {
            continue;
        }
        int k = 0;
        while (i >= first[k + 1]) {
            k++;
        }
        const th_pyr_level *l = &p->lv[k];
        int64_t u = i - first[k], across = units_across(l, unit);
        int64_t col = (u % across) * unit, row = (u / across) * unit;
        int nc = (int)TH_MIN((int64_t)unit, l->cols - col);
        int nr = (int)TH_MIN((int64_t)unit, l->rows - row);
        th_error *e = NULL;
        if (!fn(user, th_thread_num(), k, col, row, nc, nr, &e)) {
            th_error *expected = NULL;
            failed = true;
            if (!atomic_compare_exchange_strong(&published, &expected, e)) {
                th_error_free(e); // another unit failed first
            }
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
