/* SPDX-License-Identifier: MIT */
/* The orchestrator and the library's only OpenMP parallel region (libvips' pattern): plan the
 * tile list serially, run tiles in parallel, each thread with its own workspace and each tile's
 * result written to its own slot, then summarise serially in tile order. One tile is computed by
 * exactly one thread, so results are byte-identical whatever the thread count. */
#include <config.h>

#include <stdatomic.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cam.h"
#include "engine.h"
#include "result.h"

void th_run_options_init(th_run_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->engine = TH_ENGINE_REF;
}

// The tile size: the model's fixed input, or --tile for a model whose input is dynamic.
static bool tile_size(const th_model *model, const th_run_options *opt, int *w, int *h,
                      th_error **err)
{
    th_model_get_input_size(model, w, h);
    if (*w > 0 && *h > 0) {
        if (opt->tile > 0 && (opt->tile != *w || opt->tile != *h)) {
            th_error_set(err, "the model's input is %d×%d; --tile only applies to models with a "
                              "dynamic input size", *w, *h);
            return false;
        }
        return true;
    }
    if (opt->tile <= 0) {
        th_error_set(err, "the model's input size is dynamic and its metadata has no input_size: "
                          "give --tile N");
        return false;
    }
    *w = *h = opt->tile;
    return true;
}

// Shared state of the parallel loop.
typedef struct run_ctx {
    th_slide *slide;
    const th_engine *engine;
    const th_model *model;
    th_result *result;
    const th_run_options *opt;
    atomic_bool failed;
    _Atomic(th_error *) first_error; // the first failure, published by compare-and-exchange
    atomic_llong done;
} run_ctx;

static void publish_error(run_ctx *ctx, th_error **err)
{
    th_error *expected = NULL;
    if (!atomic_compare_exchange_strong(&ctx->first_error, &expected, *err)) {
        th_error_free(*err); // a later failure: the first one is kept
    }
    *err = NULL;
    atomic_store(&ctx->failed, true);
}

// One tile: read, forward, CAM; everything written into tile t's slots.
static bool run_tile(run_ctx *ctx, int64_t t, th_engine_ws *ws, uint8_t *rgb, float *feat,
                     th_error **err)
{
    th_result *r = ctx->result;
    const th_engine *e = ctx->engine;
    int nc = r->n_classes;
    int64_t x, y, w, h;
    th_grid_tile_rect(&r->grid, r->tile_col[t], r->tile_row[t], &x, &y, &w, &h);
    if (!th_slide_read_region(ctx->slide, rgb, x, y, r->grid.level, r->grid.tile_w,
                              r->grid.tile_h, err) ||
        !th_engine_forward(e, ws, rgb, r->logits + (size_t)t * nc, r->probs + (size_t)t * nc,
                           feat, err)) {
        th_error_prefix(err, "tile at %lld,%lld: ", (long long)x, (long long)y);
        return false;
    }
    size_t cells = (size_t)e->feat_h * e->feat_w;
    th_cam_compute(feat, e->feat_c, e->feat_h, e->feat_w, ctx->model->dense_w, nc,
                   r->cam + (size_t)t * nc * cells);
    return true;
}

// What each thread does: allocate its scratch once, then take tiles until none are left.
static void worker(run_ctx *ctx)
{
    th_error *err = NULL;
    const th_engine *e = ctx->engine;
    const th_result *r = ctx->result;
    th_engine_ws *ws = th_engine_ws_new(e, &err);
    uint8_t *rgb = th_malloc((size_t)r->grid.tile_w * r->grid.tile_h * 3, &err); // (h, w, 3)
    float *feat = th_malloc_aligned(sizeof(float) * e->feat_c * e->feat_h * e->feat_w, &err);
    if (!ws || !rgb || !feat) {
        publish_error(ctx, &err);
    }
#ifdef _OPENMP
#pragma omp for schedule(dynamic)
#endif
    for (int64_t t = 0; t < r->n_tiles; t++) {
        if (atomic_load(&ctx->failed)) {
            continue;
        }
        if (!run_tile(ctx, t, ws, rgb, feat, &err)) {
            publish_error(ctx, &err);
            continue;
        }
        long long done = atomic_fetch_add(&ctx->done, 1) + 1;
#ifdef _OPENMP
        bool reporter = omp_get_thread_num() == 0;
#else
        bool reporter = true;
#endif
        if (ctx->opt->progress && reporter) {
            ctx->opt->progress(ctx->opt->progress_user, done, r->n_tiles);
        }
    }
    th_free(feat);
    th_free(rgb);
    th_engine_ws_free(ws);
}

// Fill the tile list: every full tile, in row-major grid order.
static void plan_tiles(th_result *r)
{
    int64_t t = 0;
    for (int row = 0; row < r->grid.rows; row++) {
        for (int col = 0; col < r->grid.cols; col++) {
            r->tile_col[t] = col;
            r->tile_row[t] = row;
            r->index[(int64_t)row * r->grid.cols + col] = t;
            t++;
        }
    }
}

th_result *th_run(th_slide *slide, const th_model *model, const th_run_options *opt,
                  th_error **err)
{
    th_run_options defaults;
    if (!opt) {
        th_run_options_init(&defaults);
        opt = &defaults;
    }
    th_engine *engine = NULL;
    th_result *result = NULL;
    th_grid grid;
    int tile_w, tile_h;
    if (!tile_size(model, opt, &tile_w, &tile_h, err) ||
        !th_grid_init(&grid, slide, opt->level, tile_w, tile_h, err)) {
        goto fail;
    }
    engine = th_engine_new(model, opt->engine, tile_w, tile_h, err);
    if (!engine) {
        goto fail;
    }
    result = th_result_new(&grid, model->n_classes, engine->feat_w, engine->feat_h,
                           (int64_t)grid.cols * grid.rows, err);
    if (!result) {
        goto fail;
    }
    plan_tiles(result);

    run_ctx ctx = {.slide = slide, .engine = engine, .model = model, .result = result, .opt = opt};
    atomic_init(&ctx.failed, false);
    atomic_init(&ctx.first_error, NULL);
    atomic_init(&ctx.done, 0);
#ifdef _OPENMP
    int threads = opt->threads > 0 ? opt->threads : omp_get_max_threads();
#pragma omp parallel num_threads(threads)
#endif
    worker(&ctx);

    th_error *first = atomic_load(&ctx.first_error);
    if (first) {
        th_error_propagate(err, &first);
        goto fail;
    }
    if (opt->progress) {
        opt->progress(opt->progress_user, result->n_tiles, result->n_tiles);
    }
    th_result_summarize(result);
    th_engine_free(engine);
    return result;
fail:
    th_result_free(result);
    th_engine_free(engine);
    return NULL;
}
