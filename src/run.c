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

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "calibrate.h"
#include "cam.h"
#include "engine.h"
#include "kernels.h"
#include "result.h"
#include "stream.h"
#include "tissue.h"

#define WAVE_TILES 256 // tiles per wave: their CAMs wait in slots until added in order
// Seam-free units: rows of tiles down a strip at most, for threads to share. Each unit reads the
// receptive field above and below it once, so units are as tall as UNIT_ROWS_MAX allows while
// there are UNIT_MIN of them, down to UNIT_ROWS_MIN (the cut depends on the slide, never on the
// thread count).
#define UNIT_ROWS_MAX 32
#define UNIT_ROWS_MIN 8
#define UNIT_MIN 16
const char *th_precision_name(th_precision precision)
{
    return precision == TH_PRECISION_INT8 ? "int8" : "fp32";
}

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
bool th_run_tile_size(const th_model *model, const th_run_options *opt, int *w, int *h,
                      th_error **err)
{
    th_model_get_input_size(model, w, h);
    if (*w > 0 && *h > 0) {
        if (opt->tile > 0 && (opt->tile != *w || opt->tile != *h)) {
            th_error_set(err,
                         "the model's input is %d×%d; --tile only applies to models with a "
                         "dynamic input size",
                         *w, *h);
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
    bool waves;         // tiles overlap: their CAMs are added in tile order, wave by wave
    float *wave_cam;    // (WAVE_TILES, n_classes, cam_h, cam_w) CAMs of the current wave
    int64_t wave_start; // first tile of the current wave
    int64_t wave_len;
    atomic_bool failed;
    _Atomic(th_error *) first_error; // the first failure, published by compare-and-exchange
    atomic_llong done;
    atomic_flag reporting; // held by the thread calling the progress callback
    th_engine *int8;       // int8: the engine calibrated for this run (owned), else NULL
    th_stream *stream;     // seam-free: the plan for this grid's strips (NULL in tile mode)
    bool stream_owned;     // ... made for this run alone (stream_release frees it)
    int n_strips;          // ... and the number of strips across the grid
    double sec[3];         // thread-seconds reading, in inference, computing CAMs (summed after)
    int64_t trunk_pixels;  // seam-free: model pixels run through the trunk (summed after)
} run_ctx;

// Count a tile done and tell the progress callback, from whichever thread is free to: the
// callback never runs on two threads at once (a thread that finds it busy goes on).
static void tile_done(run_ctx *ctx)
{
    atomic_fetch_add(&ctx->done, 1);
    if (ctx->opt->progress && !atomic_flag_test_and_set(&ctx->reporting)) {
        // the count read under the flag, so the callback sees it only grow
        ctx->opt->progress(ctx->opt->progress_user, atomic_load(&ctx->done), ctx->result->n_tiles);
        atomic_flag_clear(&ctx->reporting);
    }
}

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
    uint8_t *rgb;    // (tile_h, tile_w, 3)
    uint8_t *region; // resampling source, th_grid_scratch_size bytes (NULL if not resampling)
    float *feat;     // (feat_c, feat_h, feat_w)
    float *cam;      // (n_classes, feat_h, feat_w) the tile's CAM when it goes straight to the grid
    double sec[3];
} scratch;

// Finite weights can still overflow (3e38 times a pixel): a non-finite probability is an error,
// never a "nan%" in the outputs. Checked after the tile loop, in tile order, so that the error
// names the same tile whatever the threads did first.
static bool finite_probs(const th_result *r, th_error **err)
{
    for (int64_t i = 0; i < r->n_tiles * r->n_classes; i++) {
        if (!isfinite(r->probs[i])) {
            int64_t t = i / r->n_classes, x, y, w, h;
            th_grid_tile_rect(&r->grid, r->tile_col[t], r->tile_row[t], &x, &y, &w, &h);
            th_error_set(err,
                         "tile at %lld,%lld: the model's output is not a number (%g for "
                         "class %d): its weights overflow on this input",
                         (long long)x, (long long)y, r->probs[i], (int)(i % r->n_classes));
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
                           s->feat, err)) {
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

// A thread's buffers for running tiles through engine e on grid g; cam_floats > 0 adds a CAM
// buffer of that many floats (tiles whose CAM goes straight to the grid).
static bool scratch_init(scratch *s, const th_engine *e, const th_grid *g, size_t cam_floats,
                         th_error **err)
{
    size_t region = th_grid_scratch_size(g);
    memset(s, 0, sizeof(*s));
    s->ws = th_engine_ws_new(e, err);
    s->rgb = th_malloc((size_t)g->tile_w * g->tile_h * 3, err);
    s->region = region ? th_malloc(region, err) : NULL;
    s->feat = th_malloc_aligned(sizeof(float) * e->feat_c * e->feat_h * e->feat_w, err);
    s->cam = cam_floats ? th_malloc(sizeof(float) * cam_floats, err) : NULL;
    return s->ws && s->rgb && (s->region || !region) && s->feat && (s->cam || !cam_floats);
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
        if (!th_camgrid_add(&r->cams, r->tile_col[t], r->tile_row[t], ctx->wave_cam + i * per_tile,
                            &err)) {
            publish_error(ctx, &err);
        }
    }
}

// Tiles start .. end-1, shared among the threads (a dynamic omp for, ending in a barrier).
static void run_tiles(run_ctx *ctx, scratch *s, int64_t start, int64_t end)
{
    th_error *err = NULL;
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
        tile_done(ctx);
    } // implicit barrier
}

// What each thread does: allocate its scratch once, then take tiles, all at once or wave by wave.
static void worker(run_ctx *ctx)
{
    th_error *err = NULL;
    const th_result *r = ctx->result;
    scratch s;
    const th_engine *e = ctx->engine;
    size_t cam = ctx->waves ? 0 : (size_t)r->n_classes * e->feat_h * e->feat_w;
    if (!scratch_init(&s, e, &r->grid, cam, &err)) {
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

/* A model's engines, planned once for many slides: the tile mode's engine and the seam-free
 * plans (one per strip width; small slides need narrower strips), each made when a run first
 * needs it, the one the runner's options ask for at once (so that a model the engine refuses
 * fails here). Plans are read-only once made: runs share them. */
#define STREAM_PLANS 2

struct th_runner {
    const th_model *model; // borrowed
    th_engine_kind kind;
    int tile_w, tile_h;
    int cam_w, cam_h;     // the trunk's map for one tile: CAM cells per tile
    bool streamable;      // th_stream_supported for the tile size
    int threads;          // the threads planning may use (oneDNN's one-off weight reorders)
    pthread_mutex_t lock; // guards the plans
    th_engine *engine;    // tile mode's, or NULL until needed
    th_stream *streams[STREAM_PLANS]; // seam-free plans by strip width, NULL until needed
    double plan_sec;   // the first plan's, recorded as the "engine plan" stage of the first run
    atomic_llong runs; // runs started: several may run at once, from different threads
};

// The tile mode's engine, planned on first use; *sec gets the planning time (0 if it was made).
static const th_engine *runner_engine(th_runner *rn, double *sec, th_error **err)
{
    pthread_mutex_lock(&rn->lock);
    *sec = 0;
    if (!rn->engine) {
        int outer = th_plan_threads_begin(rn->threads);
        double t0 = th_engine_clock();
        rn->engine = th_engine_new(rn->model, rn->kind, rn->tile_w, rn->tile_h, err);
        *sec = th_engine_clock() - t0;
        th_plan_threads_end(outer);
    }
    const th_engine *e = rn->engine;
    pthread_mutex_unlock(&rn->lock);
    return e;
}

// The seam-free plan for strips of strip_tiles tiles: kept by the runner (*owned false) or, when
// its slots hold other widths, made for this run alone (*owned true: the caller frees it).
static th_stream *runner_stream(th_runner *rn, int strip_tiles, bool *owned, double *sec,
                                th_error **err)
{
    pthread_mutex_lock(&rn->lock);
    *sec = 0;
    *owned = false;
    th_stream *s = NULL;
    int slot = -1;
    for (int i = 0; i < STREAM_PLANS && !s; i++) {
        if (rn->streams[i] && rn->streams[i]->strip_tiles == strip_tiles) {
            s = rn->streams[i];
        } else if (!rn->streams[i] && slot < 0) {
            slot = i;
        }
    }
    if (!s && (s = th_calloc(1, sizeof(*s), err))) {
        int outer = th_plan_threads_begin(rn->threads);
        double t0 = th_engine_clock();
        if (!th_stream_plan(s, rn->model, rn->kind, rn->tile_w, rn->tile_h, strip_tiles, NULL, NULL,
                            err)) {
            th_stream_free(s);
            TH_FREE(s);
        }
        *sec = th_engine_clock() - t0;
        th_plan_threads_end(outer);
        if (s && slot >= 0) {
            rn->streams[slot] = s;
        } else {
            *owned = s != NULL;
        }
    }
    pthread_mutex_unlock(&rn->lock);
    return s;
}

static void stream_release(th_stream *s, bool owned)
{
    if (owned) {
        th_stream_free(s);
        th_free(s);
    }
}

th_runner *th_runner_new(const th_model *model, const th_run_options *opt, th_error **err)
{
    th_run_options defaults;
    if (!opt) {
        th_run_options_init(&defaults);
        opt = &defaults;
    }
    th_runner *rn = th_calloc(1, sizeof(*rn), err);
    int feat_c;
    if (!rn || !th_run_tile_size(model, opt, &rn->tile_w, &rn->tile_h, err)) {
        th_free(rn);
        return NULL;
    }
    if (!th_model_trunk_shape(model, rn->tile_h, rn->tile_w, &feat_c, &rn->cam_h, &rn->cam_w,
                              err)) {
        th_error_prefix(err, "a %d×%d tile is too small for the model: ", rn->tile_w, rn->tile_h);
        th_free(rn);
        return NULL;
    }
    rn->model = model;
    rn->kind = opt->engine;
    rn->threads = opt->threads;
    char why[160];
    rn->streamable = th_stream_supported(model, rn->tile_w, rn->tile_h, why, sizeof(why));
    pthread_mutex_init(&rn->lock, NULL);
    // What the options ask for, planned now: a seam-free plan for wide grids, or the engine (int8:
    // the float32 one its calibration runs, unless it has its ranges; its own is per run).
    bool ok = true;
    if (opt->precision == TH_PRECISION_INT8) {
        ok = opt->calibration || runner_engine(rn, &rn->plan_sec, err) != NULL;
    } else if (opt->cam == TH_CAM_SEAMLESS && rn->streamable) {
        int n_strips;
        bool owned;
        ok = runner_stream(rn, th_stream_strips(model, rn->tile_w, INT_MAX / 2, false, &n_strips),
                           &owned, &rn->plan_sec, err) != NULL;
    } else {
        ok = runner_engine(rn, &rn->plan_sec, err) != NULL;
    }
    if (!ok) {
        th_runner_free(rn);
        return NULL;
    }
    return rn;
}

void th_runner_free(th_runner *runner)
{
    if (runner) {
        th_engine_free(runner->engine);
        for (int i = 0; i < STREAM_PLANS; i++) {
            stream_release(runner->streams[i], runner->streams[i] != NULL);
        }
        pthread_mutex_destroy(&runner->lock);
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
        th_result_add_warning(r,
                              "no µm/px in the image; taken to be the model's (%g); give --mpp "
                              "to set it",
                              r->grid.mpp);
    }
    const char *stain = th_model_get_metadata(model, "stain");
    if (r->tissue && r->tissue->median_luma < DARK_LUMA &&
        !(stain && strcmp(stain, "fluorescence") == 0)) {
        th_result_add_warning(r,
                              "the slide looks like fluorescence, not brightfield (dark: "
                              "median brightness %d of 255), and the model does not declare "
                              "stain=fluorescence; its classes may mean nothing here",
                              r->tissue->median_luma);
    }
}

// Why the run cannot be seam-free (a warning), or "" if it can.
static void stream_refusal(const th_result *r, const th_model *model, char *why, size_t n)
{
    why[0] = 0;
    const th_grid *g = &r->grid;
    if (g->stride_x != g->tile_w || g->stride_y != g->tile_h) {
        snprintf(why, n, "--stride overlaps the tiles");
        return;
    }
    th_stream_supported(model, g->tile_w, g->tile_h, why, n);
}

// The CAM mode of the run (r->cam_mode: tile mode, with why[] saying why, where seam-free
// cannot run) and what it runs on: ctx->engine, or ctx->stream for the grid's strips (int8: none
// yet; plan_int8 plans them once calibrated). *sec gets the planning this run did (0 when the
// runner had it).
static bool choose_mode(th_runner *rn, th_result *r, const th_run_options *opt, run_ctx *ctx,
                        char *why, size_t why_len, double *sec, th_error **err)
{
    why[0] = 0;
    if (opt->cam == TH_CAM_SEAMLESS) {
        stream_refusal(r, rn->model, why, why_len);
    }
    r->cam_mode = opt->cam == TH_CAM_SEAMLESS && !why[0] ? TH_CAM_SEAMLESS : TH_CAM_TILE;
    if (opt->precision == TH_PRECISION_INT8) {
        return true; // plan_int8 cuts the strips and plans them once calibrated
    }
    int width = th_stream_strips(rn->model, r->grid.tile_w, r->grid.cols, false, &ctx->n_strips);
    if (r->cam_mode == TH_CAM_TILE) {
        return (ctx->engine = runner_engine(rn, sec, err)) != NULL;
    }
    return (ctx->stream = runner_stream(rn, width, &ctx->stream_owned, sec, err)) != NULL;
}

// int8 from the ranges in `cal` (finished): what the run uses, the tile engine or the seam-free
// plan for the run's strips.
static bool plan_int8(th_runner *rn, th_result *r, run_ctx *ctx, const th_calibration *cal,
                      th_error **err)
{
    int outer = th_plan_threads_begin(rn->threads);
    bool ok = true;
    if (r->cam_mode == TH_CAM_TILE) {
        ok = ctx->int8 || (ctx->int8 = th_engine_new_int8(rn->model, rn->tile_w, rn->tile_h,
                                                          cal->act_max, cal->act_mean, err));
        ctx->engine = ctx->int8;
    } else {
        int width = th_stream_strips(rn->model, r->grid.tile_w, r->grid.cols, true, &ctx->n_strips);
        th_stream *s = th_calloc(1, sizeof(*s), err);
        ok =
            s && th_stream_plan(s, rn->model, rn->kind == TH_ENGINE_REF ? TH_ENGINE_FAST : rn->kind,
                                rn->tile_w, rn->tile_h, width, cal->act_max, cal->act_mean, err);
        if (ok) {
            ctx->stream = s;
            ctx->stream_owned = true;
        } else if (s) {
            stream_release(s, true);
        }
    }
    th_plan_threads_end(outer);
    return ok;
}

// int8: the activation ranges of opt->calibration, or else measured on a fixed sample of the
// run's tiles (TH_CALIBRATION_TILES evenly spaced in tile order) through the float32 tile engine,
// int8 measured against float32 on it (r->int8) and, past issue 18's bar, said in a warning;
// then the run's int8 engine.
static bool calibrate(th_runner *rn, th_result *r, run_ctx *ctx, th_error **err)
{
    const th_calibration *given = ctx->opt->calibration;
    th_calibration *own = NULL;
    if (!given) {
        double sec;
        const th_engine *fp32 = runner_engine(rn, &sec, err);
        own = fp32 ? th_calibration_alloc(rn->model, rn->kind, ctx->opt->threads, rn->tile_w,
                                          rn->tile_h, TH_CALIBRATION_TILES, err)
                   : NULL;
        bool ok =
            own && th_calibration_add_tiles(own, r, ctx->slide, TH_CALIBRATION_TILES, NULL, err) &&
            th_calibration_measure(own, fp32, r->cam_mode == TH_CAM_TILE ? &ctx->int8 : NULL, err);
        if (!ok) {
            th_calibration_free(own);
            return false;
        }
    } else if (given->tile_w != rn->tile_w || given->tile_h != rn->tile_h) {
        th_error_set(err, "%s: made on %d×%d tiles, the run's are %d×%d",
                     given->path ? given->path : "the calibration", given->tile_w, given->tile_h,
                     rn->tile_w, rn->tile_h);
        return false;
    }
    const th_calibration *cal = own ? own : given;
    r->int8 = cal->check;
    if (given && !(r->calibration_file = th_strdup(given->path ? given->path : "", err))) {
        return false;
    }
    memcpy(r->calibration_sha256, cal->sha256, sizeof(cal->sha256));
    if (cal->warning[0]) {
        th_result_add_warning(r, "%s", cal->warning);
    }
    if (!th_engine_int8_vnni()) {
        th_result_add_warning(r, "this CPU has no VNNI or AMX: int8 runs through oneDNN's slower "
                                 "int8 kernels and may be no faster than --precision fp32");
    }
    bool ok = plan_int8(rn, r, ctx, cal, err);
    th_calibration_free(own);
    return ok;
}

// The grid and an empty result on it (tile_w×tile_h tiles of cam_w×cam_h cells).
static th_result *plan_grid(const th_model *model, th_slide *slide, const th_run_options *opt,
                            int tile_w, int tile_h, int cam_w, int cam_h, th_error **err)
{
    th_grid grid;
    if (!th_grid_plan(&grid, slide, th_model_get_mpp(model), tile_w, tile_h, opt, err)) {
        return NULL;
    }
    th_result *r =
        th_result_new(&grid, model->n_classes, cam_w, cam_h, (int64_t)grid.cols * grid.rows, err);
    if (r) {
        r->opt = *opt;
        r->opt.calibration = NULL; // borrowed for the run only (r->calibration_file says which)
    }
    return r;
}

// The tissue mask and the tiles to run.
static bool plan_tissue(th_result *r, th_slide *slide, const th_run_options *opt, th_error **err)
{
    double t0 = th_engine_clock();
    if (opt->min_tissue > 0) {
        r->tissue = th_tissue_detect(slide, r->grid.mpp, opt->threads, err);
        if (!r->tissue) {
            th_error_prefix(err, "tissue detection: ");
            return false;
        }
    }
    plan_tiles(r, r->tissue, opt->min_tissue);
    th_result_add_stage(r, "tissue", th_engine_clock() - t0);
    return true;
}

th_result *th_run_plan_tiles(th_slide *slide, const th_model *model, const th_run_options *opt,
                             th_error **err)
{
    int tile_w, tile_h, feat_c, cam_w, cam_h;
    if (!th_run_tile_size(model, opt, &tile_w, &tile_h, err) ||
        !th_model_trunk_shape(model, tile_h, tile_w, &feat_c, &cam_h, &cam_w, err)) {
        return NULL;
    }
    th_result *r = plan_grid(model, slide, opt, tile_w, tile_h, cam_w, cam_h, err);
    if (r && !plan_tissue(r, slide, opt, err)) {
        th_result_free(r);
        r = NULL;
    }
    return r;
}

// The grid, the CAM mode and what it runs on (into ctx), the tissue mask, int8's calibration,
// and a result with the tiles to run listed.
static th_result *plan(th_runner *rn, th_slide *slide, const th_run_options *opt, run_ctx *ctx,
                       th_error **err)
{
    int tile_w, tile_h;
    if (!th_run_tile_size(rn->model, opt, &tile_w, &tile_h, err)) {
        return NULL;
    }
    if (opt->engine != rn->kind || tile_w != rn->tile_w || tile_h != rn->tile_h) {
        th_error_set(err, "the run's engine or tile size is not the one the runner was made for");
        return NULL;
    }
    th_result *r = plan_grid(rn->model, slide, opt, tile_w, tile_h, rn->cam_w, rn->cam_h, err);
    if (!r) {
        return NULL;
    }
    char why[160];
    double sec = 0;
    if (!choose_mode(rn, r, opt, ctx, why, sizeof(why), &sec, err)) {
        th_result_free(r);
        return NULL;
    }
    // The runner's first plan counts in its first run; what this run planned, in this one.
    th_result_add_stage(r, "engine plan",
                        (atomic_fetch_add(&rn->runs, 1) == 0 ? rn->plan_sec : 0) + sec);
    if (!plan_tissue(r, slide, opt, err)) {
        th_result_free(r);
        return NULL;
    }
    if (opt->precision == TH_PRECISION_INT8 && r->n_tiles > 0) {
        double t0 = th_engine_clock();
        if (!calibrate(rn, r, ctx, err)) {
            th_result_free(r);
            return NULL;
        }
        th_result_add_stage(r, "int8 calibration", th_engine_clock() - t0);
    }
    add_warnings(r, rn->model);
    if (why[0]) {
        th_result_add_warning(r, "tiles run one by one (--cam tile): %s", why);
    }
    return r;
}

/* ---------------------------------------------------------------- seam-free runs */

// One thread's state in a seam-free run.
typedef struct stream_thread {
    run_ctx *ctx;
    th_stream_ws *ws;
    double cam_sec;
} stream_thread;

// The index of tile (col, row) in the row-major tile list, or -1 if it is not run.
static int64_t find_tile(const th_result *r, int col, int row)
{
    int64_t lo = 0, hi = r->n_tiles;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (r->tile_row[mid] < row || (r->tile_row[mid] == row && r->tile_col[mid] < col)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < r->n_tiles && r->tile_row[lo] == row && r->tile_col[lo] == col ? lo : -1;
}

// A tile's features are in: its probabilities (the dense layer over the mean of its cells) and
// its CAM. Tiles do not overlap, so its cells of the grid are its own.
static bool stream_tile(void *user, int col, int row, const float *means, const float *cam,
                        th_error **err)
{
    stream_thread *st = user;
    run_ctx *ctx = st->ctx;
    th_result *r = ctx->result;
    int64_t t = find_tile(r, col, row);
    if (t < 0) {
        return true; // in the strip for its neighbours' sake
    }
    double t0 = th_engine_clock();
    const th_model *m = ctx->model;
    int nc = r->n_classes;
    float *logits = r->logits + (size_t)t * nc, *probs = r->probs + (size_t)t * nc;
    th_kernel_dense(means, m->feat_c, m->dense_w, m->dense_b, nc, logits);
    th_kernel_softmax(logits, nc, probs);
    if (!th_camgrid_add(&r->cams, col, row, cam, err)) {
        int64_t x, y, w, h;
        th_grid_tile_rect(&r->grid, col, row, &x, &y, &w, &h);
        th_error_prefix(err, "tile at %lld,%lld: ", (long long)x, (long long)y);
        return false;
    }
    st->cam_sec += th_engine_clock() - t0;
    tile_done(ctx);
    return true;
}

// The units shared among the threads, each thread with its own buffers.
static void stream_worker(run_ctx *ctx, const th_stream *s, th_stream_unit *const *units,
                          int64_t n_units)
{
    th_error *err = NULL;
    const th_result *r = ctx->result;
    stream_thread st = {.ctx = ctx};
    st.ws = th_stream_ws_new(s, &r->grid, &err);
    if (!st.ws) {
        publish_error(ctx, &err);
    }
    double t0 = th_engine_clock();
#ifdef _OPENMP
#pragma omp for schedule(dynamic)
#endif
    for (int64_t u = 0; u < n_units; u++) {
        if (atomic_load(&ctx->failed)) {
            continue;
        }
        if (!th_stream_run_unit(s, st.ws, ctx->slide, &r->grid, units[u], stream_tile, &st,
                                ctx->opt->cancel, &err)) {
            publish_error(ctx, &err);
        }
    } // implicit barrier
#ifdef _OPENMP
#pragma omp critical
#endif
    {
        double read = st.ws ? th_stream_ws_read_seconds(st.ws) : 0;
        ctx->sec[0] += read;
        ctx->sec[1] += th_engine_clock() - t0 - st.cam_sec - read;
        ctx->sec[2] += st.cam_sec;
        ctx->trunk_pixels += st.ws ? th_stream_ws_pixels(st.ws) : 0;
    }
    th_stream_ws_free(st.ws);
}

// Largest first, then in order: the last units the threads take are short.
static int cmp_unit_size(const void *a, const void *b)
{
    const th_stream_unit *u = *(th_stream_unit *const *)a, *v = *(th_stream_unit *const *)b;
    int64_t su = (int64_t)(u->row1 - u->row0 + 1) * u->cols;
    int64_t sv = (int64_t)(v->row1 - v->row0 + 1) * v->cols;
    return su != sv ? (su < sv) - (su > sv) : (u > v) - (u < v);
}

// Every tile of the result through the seam-free trunk.
static bool run_stream(run_ctx *ctx, th_error **err)
{
    th_result *r = ctx->result;
    if (r->n_tiles == 0) {
        return true; // nothing planned to run them on (int8 plans after its calibration)
    }
    th_stream_unit *units = NULL;
    int64_t n_units = 0;
    for (int rows = UNIT_ROWS_MAX;; rows /= 2) {
        th_free(units);
        if (!th_stream_units(r->grid.cols, ctx->n_strips, r->tile_col, r->tile_row, r->n_tiles,
                             rows, &units, &n_units, err)) {
            return false;
        }
        if (n_units >= UNIT_MIN || rows <= UNIT_ROWS_MIN) {
            break;
        }
    }
    th_stream_unit **order = th_malloc(sizeof(*order) * TH_MAX(n_units, 1), err);
    if (!order) {
        th_free(units);
        return false;
    }
    for (int64_t u = 0; u < n_units; u++) {
        order[u] = &units[u];
    }
    qsort(order, (size_t)n_units, sizeof(*order), cmp_unit_size);
#ifdef _OPENMP
#pragma omp parallel num_threads(r->threads)
#endif
    stream_worker(ctx, ctx->stream, order, n_units);
    th_free(order);
    th_free(units);
    return true;
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
    run_ctx ctx = {.slide = slide, .model = runner->model, .opt = opt};
    result = ctx.result = plan(runner, slide, opt, &ctx, err);
    if (!result) {
        goto fail;
    }
    ctx.waves = !th_camgrid_disjoint(&result->cams);
    if (ctx.waves) {
        ctx.wave_cam = th_malloc(
            sizeof(float) * WAVE_TILES * result->n_classes * result->cam_w * result->cam_h, err);
        if (!ctx.wave_cam) {
            goto fail;
        }
    }
    atomic_init(&ctx.failed, false);
    atomic_init(&ctx.first_error, NULL);
    atomic_init(&ctx.done, 0);
    atomic_flag_clear(&ctx.reporting);
    double t0 = th_engine_clock();
    int threads = th_threads(opt->threads);
    result->threads = threads;
    if (result->cam_mode == TH_CAM_SEAMLESS) {
        th_error *e = NULL;
        if (!run_stream(&ctx, &e)) {
            publish_error(&ctx, &e);
        }
    } else {
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
        worker(&ctx);
    }

    th_error *first = atomic_load(&ctx.first_error);
    if (first) {
        th_error_propagate(err, &first);
        goto fail;
    }
    if (!finite_probs(result, err)) {
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
    double tile_pixels = (double)result->n_tiles * result->grid.tile_w * result->grid.tile_h;
    result->trunk_area = !ctx.stream ? 1 : tile_pixels > 0 ? ctx.trunk_pixels / tile_pixels : 0;
    th_result_add_stage(result, "summary", th_engine_clock() - t1);
    th_free(ctx.wave_cam);
    stream_release(ctx.stream, ctx.stream_owned);
    th_engine_free(ctx.int8);
    return result;
fail:
    th_free(ctx.wave_cam);
    stream_release(ctx.stream, ctx.stream_owned);
    th_engine_free(ctx.int8);
    th_result_free(result);
    return NULL;
}

th_result *th_run(th_slide *slide, const th_model *model, const th_run_options *opt, th_error **err)
{
    th_runner *runner = th_runner_new(model, opt, err);
    if (!runner) {
        return NULL;
    }
    th_result *r = th_runner_run(runner, slide, opt, err);
    th_runner_free(runner);
    return r;
}
