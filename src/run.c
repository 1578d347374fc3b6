/* SPDX-License-Identifier: MIT */
/* The orchestrator and the library's only OpenMP parallel region over tiles (libvips' pattern):
 * plan the grid and the tissue mask, list the tiles to run serially, then run them. Tiles that
 * do not overlap (the default stride) each own their cells of the slide-wide CAM grid, so a
 * thread adds its tile's CAM as soon as it has it, in one dynamic loop over every tile. Tiles
 * that overlap (--stride) run in waves: each wave's tiles in parallel (each thread with its own
 * scratch, each tile's CAM in its own slot), then the wave's CAMs added to the grid serially in
 * tile order. One tile is computed by exactly one thread and every sum runs in tile order, so
 * results are byte-identical whatever the thread count. */
#include <config.h>

#include <math.h>
#include <stdatomic.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cam.h"
#include "engine.h"
#include "result.h"
#include "tissue.h"

#define WAVE_TILES 256 // tiles per wave: their CAMs wait in slots until added in order

void th_run_options_init(th_run_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->level = -1;
#ifdef HAVE_DNNL
    // the fastest engine, checked against the reference engine by test-engine-fast and test-run
    opt->engine = TH_ENGINE_WINOGRAD;
#else
    opt->engine = TH_ENGINE_REF;
#endif
    opt->mpp_tolerance = 0.05;
    opt->min_tissue = 0.1;
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

static bool cancelled(const th_run_options *opt)
{
    return opt->cancel && *opt->cancel;
}

// Shared state of the parallel loop.
typedef struct run_ctx {
    th_slide *slide;
    const th_engine *engine;
    const th_model *model;
    th_result *result;
    const th_run_options *opt;
    bool waves;           // tiles overlap: their CAMs are added in tile order, wave by wave
    float *wave_cam;      // (WAVE_TILES, n_classes, cam_h, cam_w) CAMs of the current wave
    int64_t wave_start;   // first tile of the current wave
    int64_t wave_len;
    atomic_bool failed;
    _Atomic(th_error *) first_error; // the first failure, published by compare-and-exchange
    atomic_llong done;
    double sec[3];        // thread-seconds reading, in inference, computing CAMs (summed after)
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

// Per-thread scratch, allocated once.
typedef struct scratch {
    th_engine_ws *ws;
    uint8_t *rgb;     // (tile_h, tile_w, 3)
    uint8_t *region;  // resampling source, th_grid_scratch_size bytes (NULL if not resampling)
    float *feat;      // (feat_c, feat_h, feat_w)
    float *cam;       // (n_classes, feat_h, feat_w) the tile's CAM when it goes straight to the grid
    double sec[3];
} scratch;

// Finite weights can still overflow (3e38 times a pixel): a non-finite probability is an error,
// never a "nan%" in the outputs.
static bool finite_probs(const float *p, int n, th_error **err)
{
    for (int c = 0; c < n; c++) {
        if (!isfinite(p[c])) {
            th_error_set(err, "the model's output is not a number (%g for class %d): its weights "
                              "overflow on this input",
                         p[c], c);
            return false;
        }
    }
    return true;
}

// One tile: read, forward, CAM; probabilities into tile t's slots, the CAM into its wave slot or
// straight into the grid.
static bool run_tile(run_ctx *ctx, int64_t t, scratch *s, th_error **err)
{
    th_result *r = ctx->result;
    const th_engine *e = ctx->engine;
    int nc = r->n_classes, col = r->tile_col[t], row = r->tile_row[t];
    double t0 = th_engine_clock();
    if (!th_grid_read_tile(&r->grid, ctx->slide, col, row, s->rgb, s->region, err)) {
        goto fail;
    }
    double t1 = th_engine_clock();
    if (!th_engine_forward(e, s->ws, s->rgb, r->logits + (size_t)t * nc, r->probs + (size_t)t * nc,
                           s->feat, err) ||
        !finite_probs(r->probs + (size_t)t * nc, nc, err)) {
        goto fail;
    }
    double t2 = th_engine_clock();
    size_t cells = (size_t)e->feat_h * e->feat_w;
    float *cam = ctx->waves ? ctx->wave_cam + (size_t)(t - ctx->wave_start) * nc * cells : s->cam;
    th_cam_compute(s->feat, e->feat_c, e->feat_h, e->feat_w, ctx->model->dense_w, nc, cam);
    if (!ctx->waves && !th_camgrid_add(&r->cams, col, row, cam, err)) {
        goto fail;
    }
    s->sec[0] += t1 - t0;
    s->sec[1] += t2 - t1;
    s->sec[2] += th_engine_clock() - t2;
    return true;
fail:;
    int64_t x, y, w, h;
    th_grid_tile_rect(&r->grid, col, row, &x, &y, &w, &h);
    th_error_prefix(err, "tile at %lld,%lld: ", (long long)x, (long long)y);
    return false;
}

static bool scratch_init(scratch *s, const run_ctx *ctx, th_error **err)
{
    const th_engine *e = ctx->engine;
    const th_grid *g = &ctx->result->grid;
    size_t region = th_grid_scratch_size(g);
    memset(s, 0, sizeof(*s));
    s->ws = th_engine_ws_new(e, err);
    s->rgb = th_malloc((size_t)g->tile_w * g->tile_h * 3, err);
    s->region = region ? th_malloc(region, err) : NULL;
    s->feat = th_malloc_aligned(sizeof(float) * e->feat_c * e->feat_h * e->feat_w, err);
    s->cam = ctx->waves ? NULL
                        : th_malloc(sizeof(float) * ctx->result->n_classes * e->feat_h * e->feat_w,
                                    err);
    return s->ws && s->rgb && (s->region || !region) && s->feat && (s->cam || ctx->waves);
}

static void scratch_free(scratch *s)
{
    th_free(s->cam);
    th_free(s->feat);
    th_free(s->region);
    th_free(s->rgb);
    th_engine_ws_free(s->ws);
}

// The wave's CAMs into the grid, in tile order (one thread).
static void add_wave(run_ctx *ctx)
{
    th_result *r = ctx->result;
    size_t per_tile = (size_t)r->n_classes * r->cam_w * r->cam_h;
    th_error *err = NULL;
    for (int64_t i = 0; i < ctx->wave_len && !atomic_load(&ctx->failed); i++) {
        int64_t t = ctx->wave_start + i;
        if (!th_camgrid_add(&r->cams, r->tile_col[t], r->tile_row[t],
                            ctx->wave_cam + i * per_tile, &err)) {
            publish_error(ctx, &err);
        }
    }
}

// Tiles start .. end-1, shared among the threads (a dynamic omp for, ending in a barrier).
static void run_tiles(run_ctx *ctx, scratch *s, int64_t start, int64_t end)
{
    th_error *err = NULL;
    int64_t n_tiles = ctx->result->n_tiles;
#ifdef _OPENMP
#pragma omp for schedule(dynamic)
#endif
    for (int64_t t = start; t < end; t++) {
        if (atomic_load(&ctx->failed)) {
            continue;
        }
        if (cancelled(ctx->opt)) {
            th_error_set(&err, "cancelled");
            publish_error(ctx, &err);
            continue;
        }
        if (!run_tile(ctx, t, s, &err)) {
            publish_error(ctx, &err);
            continue;
        }
        long long done = atomic_fetch_add(&ctx->done, 1) + 1;
        if (ctx->opt->progress && th_thread_num() == 0) {
            ctx->opt->progress(ctx->opt->progress_user, done, n_tiles);
        }
    } // implicit barrier
}

// What each thread does: allocate its scratch once, then take tiles, all at once or wave by wave.
static void worker(run_ctx *ctx)
{
    th_error *err = NULL;
    const th_result *r = ctx->result;
    scratch s;
    if (!scratch_init(&s, ctx, &err)) {
        publish_error(ctx, &err);
    }
    if (!ctx->waves) {
        run_tiles(ctx, &s, 0, r->n_tiles);
    }
    for (int64_t start = 0; ctx->waves && start < r->n_tiles; start += WAVE_TILES) {
#ifdef _OPENMP
#pragma omp single
#endif
        {
            ctx->wave_start = start;
            ctx->wave_len = TH_MIN((int64_t)WAVE_TILES, r->n_tiles - start);
        } // implicit barrier
        run_tiles(ctx, &s, start, start + ctx->wave_len);
#ifdef _OPENMP
#pragma omp single
#endif
        add_wave(ctx); // implicit barrier
    }
#ifdef _OPENMP
#pragma omp critical
#endif
    for (int i = 0; i < 3; i++) {
        ctx->sec[i] += s.sec[i];
    }
    scratch_free(&s);
}

// Fill the tile list: every grid tile with enough tissue, in row-major grid order.
static void plan_tiles(th_result *r, const th_tissue *tissue, double min_tissue)
{
    int64_t t = 0;
    for (int row = 0; row < r->grid.rows; row++) {
        for (int col = 0; col < r->grid.cols; col++) {
            if (tissue) {
                int64_t x, y, w, h;
                th_grid_tile_rect(&r->grid, col, row, &x, &y, &w, &h);
                if (th_tissue_fraction(tissue, (double)x, (double)y, (double)w, (double)h) <
                    min_tissue) {
                    r->n_skipped++;
                    continue;
                }
            }
            r->tile_col[t] = col;
            r->tile_row[t] = row;
            t++;
        }
    }
    r->n_tiles = t;
}

// A model's engine, planned once for many slides.
struct th_runner {
    const th_model *model; // borrowed
    th_engine *engine;
    th_engine_kind kind;
    int tile_w, tile_h;
    double plan_sec; // recorded as the "engine plan" stage of the first run only
    atomic_llong runs; // runs started: several may run at once, from different threads
};

th_runner *th_runner_new(const th_model *model, const th_run_options *opt, th_error **err)
{
    th_run_options defaults;
    if (!opt) {
        th_run_options_init(&defaults);
        opt = &defaults;
    }
    th_runner *rn = th_calloc(1, sizeof(*rn), err);
    if (!rn || !tile_size(model, opt, &rn->tile_w, &rn->tile_h, err)) {
        th_free(rn);
        return NULL;
    }
    rn->model = model;
    rn->kind = opt->engine;
#ifdef _OPENMP
    // The engine's one-off weight reorders use the threads the run may use, no more.
    int outer = omp_get_max_threads();
    omp_set_num_threads(opt->threads > 0 ? opt->threads : outer);
#endif
    double t0 = th_engine_clock();
    rn->engine = th_engine_new(model, opt->engine, rn->tile_w, rn->tile_h, err);
    rn->plan_sec = th_engine_clock() - t0;
#ifdef _OPENMP
    omp_set_num_threads(outer);
#endif
    if (!rn->engine) {
        th_free(rn);
        return NULL;
    }
    return rn;
}

void th_runner_free(th_runner *runner)
{
    if (runner) {
        th_engine_free(runner->engine);
        th_free(runner);
    }
}

// Below this median brightness (of 255, at the tissue mask's resolution) a slide is not
// brightfield: the H&E slides and images in ../shared/data measure 243-244 with glass, 144-157
// filled with tissue; test3-DAPI-2.ndpi (fluorescence) measures 3.
#define DARK_LUMA 80

// What the user should hear about: a resolution taken on trust, a dark slide under a
// brightfield model.
static void add_warnings(th_result *r, const th_model *model)
{
    if (strcmp(r->grid.mpp_source, "assumed") == 0) {
        th_result_add_warning(r, "no µm/px in the image; taken to be the model's (%g); give --mpp "
                                 "to set it",
                              r->grid.mpp);
    }
    const char *stain = th_model_get_metadata(model, "stain");
    if (r->tissue && r->tissue->median_luma < DARK_LUMA &&
        !(stain && strcmp(stain, "fluorescence") == 0)) {
        th_result_add_warning(r, "the slide looks like fluorescence, not brightfield (dark: "
                                 "median brightness %d of 255), and the model does not declare "
                                 "stain=fluorescence; its classes may mean nothing here",
                              r->tissue->median_luma);
    }
}

// The grid, the tissue mask, and a result with the tiles to run listed.
static th_result *plan(th_runner *rn, th_slide *slide, const th_run_options *opt, th_error **err)
{
    th_grid grid;
    int tile_w, tile_h;
    if (!tile_size(rn->model, opt, &tile_w, &tile_h, err)) {
        return NULL;
    }
    if (opt->engine != rn->kind || tile_w != rn->tile_w || tile_h != rn->tile_h) {
        th_error_set(err, "the run's engine or tile size is not the one the runner was made for");
        return NULL;
    }
    if (!th_grid_plan(&grid, slide, th_model_get_mpp(rn->model), tile_w, tile_h, opt, err)) {
        return NULL;
    }
    const th_engine *e = rn->engine;
    th_result *r = th_result_new(&grid, rn->model->n_classes, e->feat_w, e->feat_h,
                                 (int64_t)grid.cols * grid.rows, err);
    if (!r) {
        return NULL;
    }
    r->opt = *opt;
    th_result_add_stage(r, "engine plan", atomic_fetch_add(&rn->runs, 1) == 0 ? rn->plan_sec : 0);
    double t0 = th_engine_clock();
    if (opt->min_tissue > 0) {
        r->tissue = th_tissue_detect(slide, grid.mpp, opt->threads, err);
        if (!r->tissue) {
            th_error_prefix(err, "tissue detection: ");
            th_result_free(r);
            return NULL;
        }
    }
    plan_tiles(r, r->tissue, opt->min_tissue);
    th_result_add_stage(r, "tissue", th_engine_clock() - t0);
    add_warnings(r, rn->model);
    return r;
}

th_result *th_runner_run(th_runner *runner, th_slide *slide, const th_run_options *opt,
                         th_error **err)
{
    th_run_options defaults;
    if (!opt) {
        th_run_options_init(&defaults);
        opt = &defaults;
    }
    th_result *result = NULL;
    if (cancelled(opt)) {
        th_error_set(err, "cancelled");
        return NULL;
    }
    result = plan(runner, slide, opt, err);
    run_ctx ctx = {.slide = slide,
                   .engine = runner->engine,
                   .model = runner->model,
                   .result = result,
                   .opt = opt};
    if (!result) {
        goto fail;
    }
    ctx.waves = !th_camgrid_disjoint(&result->cams);
    if (ctx.waves) {
        ctx.wave_cam = th_malloc(sizeof(float) * WAVE_TILES * result->n_classes * result->cam_w *
                                     result->cam_h, err);
        if (!ctx.wave_cam) {
            goto fail;
        }
    }
    atomic_init(&ctx.failed, false);
    atomic_init(&ctx.first_error, NULL);
    atomic_init(&ctx.done, 0);
    double t0 = th_engine_clock();
    int threads = th_threads(opt->threads);
    result->threads = threads;
#ifdef _OPENMP
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
    double t1 = th_engine_clock();
    th_result_summarize(result);
    th_result_add_stage(result, "tiles", t1 - t0);
    th_result_add_stage(result, "tiles: reading (thread-s)", ctx.sec[0]);
    th_result_add_stage(result, "tiles: inference (thread-s)", ctx.sec[1]);
    th_result_add_stage(result, "tiles: CAM (thread-s)", ctx.sec[2]);
    th_result_add_stage(result, "summary", th_engine_clock() - t1);
    th_free(ctx.wave_cam);
    return result;
fail:
    th_free(ctx.wave_cam);
    th_result_free(result);
    return NULL;
}

th_result *th_run(th_slide *slide, const th_model *model, const th_run_options *opt,
                  th_error **err)
{
    th_runner *runner = th_runner_new(model, opt, err);
    if (!runner) {
        return NULL;
    }
    th_result *r = th_runner_run(runner, slide, opt, err);
    th_runner_free(runner);
    return r;
}
