/* SPDX-License-Identifier: MIT */
/* Tests for pyramid.c, the builder both pyramid layouts use: the level plan (Deep Zoom's and
 * heatmap.tiff's), tile rectangles with an overlap, the tile walk (every tile once, levels in
 * order, the level hook after each) and the strip reducer against a plain 2×2 mean of each whole
 * level, with level 0's rows given in chunks of columns as render-tiff.c gives them. */
#include <config.h>

#include <inttypes.h>

#include "pyramid.h"
#include "tap.h"

/* ---------------------------------------------------------------- the walk */

typedef struct walk_seen {
    const th_pyramid *p;
    uint8_t *count[TH_PYR_MAX_LEVELS]; // (rows, cols) times each tile was visited
    int level_done[TH_PYR_MAX_LEVELS]; // the order the hook saw the levels in, -1 = not yet
    int n_done;
    bool out_of_order; // a unit of a level the hook had already finished
} walk_seen;

static bool visit(void *user, int worker, int k, int64_t col, int64_t row, int n_cols, int n_rows,
                  th_error **err)
{
    walk_seen *w = user;
    if (w->n_done > k) {
        w->out_of_order = true;
    }
    for (int j = 0; j < n_rows; j++) {
        for (int i = 0; i < n_cols; i++) {
#ifdef _OPENMP
#pragma omp atomic
#endif
            w->count[k][(row + j) * w->p->lv[k].cols + col + i]++;
        }
    }
    return true;
}

static void level_done(void *user, int k)
{
    walk_seen *w = user;
    w->level_done[w->n_done++] = k;
}

static void test_walk(void)
{
    th_pyramid p;
    th_pyramid_plan(&p, 2220, 2967, 256, 1, 1);
    walk_seen w = {.p = &p};
    for (int k = 0; k < p.n; k++) {
        w.count[k] = th_calloc((size_t)(p.lv[k].cols * p.lv[k].rows), 1, NULL);
    }
    th_error *err = NULL;
    ok(th_pyramid_walk(&p, 2, 3, visit, level_done, &w, NULL, &err), "the walk runs");
    bool once = true, order = w.n_done == p.n;
    for (int k = 0; k < p.n; k++) {
        for (int64_t i = 0; i < p.lv[k].cols * p.lv[k].rows; i++) {
            once = once && w.count[k][i] == 1;
        }
        order = order && w.level_done[k] == k;
        th_free(w.count[k]);
    }
    ok(once, "every tile of every level is visited once (units of 3×3 tiles, 2 threads)");
    ok(order && !w.out_of_order, "levels finest first, the hook after each, no unit after it");
    th_error_free(err);
}

/* ---------------------------------------------------------------- the reducer */

typedef struct reduce_check {
    const th_pyramid *p;
    uint8_t *want[TH_PYR_MAX_LEVELS]; // (h, w, 3) each level, reduced whole
    int64_t next_y[TH_PYR_MAX_LEVELS];
    bool in_order, same;
} reduce_check;

static bool got_strip(void *user, int k, const uint8_t *rgb, int64_t y0, int rows, th_error **err)
{
    reduce_check *c = user;
    c->in_order = c->in_order && y0 == c->next_y[k] && rows > 0 && rows <= c->p->tile;
    c->next_y[k] = y0 + rows;
    size_t n = (size_t)rows * c->p->lv[k].w * 3;
    c->same = c->same && memcmp(rgb, c->want[k] + (size_t)y0 * c->p->lv[k].w * 3, n) == 0;
    return true;
}

// Level k from level k-1 whole, pixel by pixel: the rounded mean of the 1, 2 or 4 it covers.
static void reference_level(const th_pyramid *p, int k, const uint8_t *src, uint8_t *dst)
{
    const th_pyr_level *a = &p->lv[k - 1], *b = &p->lv[k];
    for (int64_t y = 0; y < b->h; y++) {
        for (int64_t x = 0; x < b->w; x++) {
            for (int ch = 0; ch < 3; ch++) {
                unsigned s = 0, n = 0;
                for (int64_t v = 2 * y; v < TH_MIN(2 * y + 2, a->h); v++) {
                    for (int64_t u = 2 * x; u < TH_MIN(2 * x + 2, a->w); u++) {
                        s += src[(v * a->w + u) * 3 + ch];
                        n++;
                    }
                }
                dst[(y * b->w + x) * 3 + ch] = (uint8_t)((s + n / 2) / n);
            }
        }
    }
}

static void test_reducer(int64_t w0, int64_t h0, int64_t chunk)
{
    th_pyramid p;
    th_pyramid_plan(&p, w0, h0, 64, 0, 40);
    reduce_check c = {.p = &p, .in_order = true, .same = true};
    for (int k = 0; k < p.n; k++) {
        c.want[k] = th_malloc((size_t)(p.lv[k].w * p.lv[k].h * 3), NULL);
    }
    uint32_t seed = 12345;
    for (int64_t i = 0; i < w0 * h0 * 3; i++) {
        seed = seed * 1664525u + 1013904223u;
        c.want[0][i] = (uint8_t)(seed >> 24);
    }
    for (int k = 1; k < p.n; k++) {
        reference_level(&p, k, c.want[k - 1], c.want[k]);
    }
    th_pyr_reducer r;
    th_error *err = NULL;
    bool ok_all = th_pyr_reducer_init(&r, &p, got_strip, &c, &err);
    uint8_t *piece = th_malloc((size_t)(64 * chunk * 3), NULL);
    for (int64_t y = 0; ok_all && y < h0; y += 64) {
        int h = (int)TH_MIN((int64_t)64, h0 - y);
        for (int64_t x = 0; x < w0; x += chunk) {
            int64_t w = TH_MIN(chunk, w0 - x);
            for (int j = 0; j < h; j++) {
                memcpy(piece + (size_t)j * w * 3, c.want[0] + ((y + j) * w0 + x) * 3,
                       (size_t)w * 3);
            }
            th_pyr_reducer_add(&r, piece, w, h, x, y);
        }
        ok_all = th_pyr_reducer_rows_done(&r, y, h, &err);
    }
    bool complete = true;
    for (int k = 1; k < p.n; k++) {
        complete = complete && c.next_y[k] == p.lv[k].h;
    }
    ok(ok_all && c.in_order && complete && c.same,
       "%" PRId64 "×%" PRId64 " in chunks of %" PRId64 " columns: %d levels, each strip in order "
       "and the 2×2 mean of the level above",
       w0, h0, chunk, p.n);
    th_free(piece);
    th_pyr_reducer_free(&r);
    for (int k = 0; k < p.n; k++) {
        th_free(c.want[k]);
    }
    th_error_free(err);
}

int main(void)
{
    plan(9);
    th_pyramid p;
    th_pyramid_plan(&p, 2220, 2967, 256, 1, 1);
    ok(p.n == 13 && p.lv[0].cols == 9 && p.lv[0].rows == 12 && p.lv[12].w == 1 && p.lv[12].h == 1 &&
           p.lv[1].w == 1110 && p.lv[1].h == 1484 && p.lv[11].scale == 2048,
       "Deep Zoom plan of 2220×2967: 13 levels down to 1 px, halving rounded up, 9×12 tiles");
    th_pyramid_plan(&p, 2220, 2967, 256, 0, 1024);
    ok(p.n == 3 && p.lv[2].w == 555 && p.lv[2].h == 742, "heatmap.tiff's plan: down to 1024 px");
    int64_t x, y, w, h;
    th_pyramid_plan(&p, 600, 300, 256, 1, 1);
    th_pyramid_tile_rect(&p, 0, 0, 0, &x, &y, &w, &h);
    bool first = x == 0 && y == 0 && w == 257 && h == 257;
    th_pyramid_tile_rect(&p, 0, 1, 1, &x, &y, &w, &h);
    ok(first && x == 255 && y == 255 && w == 258 && h == 45,
       "tile rectangles: one pixel of overlap inside, clipped at the edges");
    test_walk();
    test_reducer(300, 200, 64);
    test_reducer(1001, 513, 130);
    test_reducer(37, 1000, 1000);
    return 0;
}
