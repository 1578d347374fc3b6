/* SPDX-License-Identifier: MIT */
/* `tileheat batch single|multi COHORT -o OUTDIR`: every slide of a cohort in one process. The
 * whole cohort is checked before any slide runs; the model is loaded and its engine planned once.
 * The threads are shared out among workers, one slide at a time each (with as many threads as
 * there are slides, one thread a slide): while one worker is in a slide's serial parts (open,
 * tissue detection, heatmap.png, fsync), the others' tiles keep the cores busy. A slide that
 * fails is recorded and the batch goes on. */
#include <config.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli-cohort.h"
#include "cli-state.h"

// A slide being run.
typedef struct item {
    cli_job job;
    const cohort_row *row;
    slide_key key;
    char work[4096]; // its staging folder
    double start;
} item;

typedef struct batch batch;

// A worker: takes the next row, runs the slide with its threads, writes it, and so on.
typedef struct worker {
    batch *b;
    int threads;
    pthread_t thread;
    const char *current; // the slide it runs (progress bar)
    int64_t done, total; // its tiles
} worker;

struct batch {
    cli_opts *o;
    th_model *model;
    th_runner *runner;
    batch_state st;
    cohort cohort;
    char model_sha[65];
    int *rows; // the shard's rows, indices into cohort.rows
    int n_rows;
    int counts[4];        // done, skipped, failed, locked
    pthread_mutex_t lock; // the next row, the counts, stdout and the progress bar
    int next;             // the next row to take, index into rows
    worker *workers;
    int n_workers;
    bool show_progress;
    double start, last_drawn;
    int64_t tiles_before; // tiles of the slides finished
};

enum { DONE, SKIPPED, FAILED, LOCKED };
static const char *outcome_names[] = {"done", "skipped", "failed", "locked"};

// "<id>\t<outcome>\t<seconds>\t<message>" on stdout (tabs and line breaks in the message become
// spaces), flushed at once: it is the log of a batch script.
#define TH_MAX_I(a, b) ((a) > (b) ? (a) : (b))

static void report(batch *b, const char *id, int outcome, double seconds, const char *msg)
{
    pthread_mutex_lock(&b->lock);
    char clean[2048];
    snprintf(clean, sizeof(clean), "%s", msg ? msg : "");
    for (char *p = clean; *p; p++) {
        *p = *p == '\t' || *p == '\n' || *p == '\r' ? ' ' : *p;
    }
    if (b->show_progress) {
        fprintf(stderr, "\r\033[K");
    }
    printf("%s\t%s\t%.2f\t%s\n", id, outcome_names[outcome], seconds, clean);
    fflush(stdout);
    b->counts[outcome]++;
    pthread_mutex_unlock(&b->lock);
}

// The options that change a slide's outputs, as text: part of its completion key.
static void options_text(const batch *b, const cohort_row *row, const item *it, char *out,
                         size_t size)
{
    const cli_opts *o = b->o;
    const th_run_options *r = &it->job.run;
    const th_render_options *d = &it->job.render;
    char shown[64] = "", pre[256];
    for (int i = 0; i < d->n_shown; i++) {
        size_t len = strlen(shown);
        snprintf(shown + len, sizeof(shown) - len, "%s%d", i ? "," : "", d->shown[i]);
    }
    size_t n = (size_t)snprintf(
        out, size,
        "tileheat=%s;command=%s;model=%s;classes=%s;shown=%s;top=%d;engine=%d;level=%d;"
        "tile=%d;mpp=%.17g;model_mpp=%.17g;mpp_tolerance=%.17g;min_tissue=%.17g;stride=%d;"
        "edge=%d;roi=%lld,%lld,%lld,%lld;width=%d;alpha=%.17g;norm=%d;percentile=%.17g;"
        "threshold=%.17g;colormap=%d;tiff=%d;geojson=%d;raw=%d;cam=%d;tint_glass=%d",
        th_version(), o->single ? "single" : "multi", o->model_path, o->classes ? o->classes : "",
        shown, o->top, (int)r->engine, r->level, r->tile, r->slide_mpp, r->model_mpp,
        r->mpp_tolerance, r->min_tissue, r->stride, (int)r->edge_pad, (long long)r->roi_x,
        (long long)r->roi_y, (long long)r->roi_w, (long long)r->roi_h, d->width, d->alpha,
        (int)d->norm, d->percentile, d->threshold, (int)d->colormap, (int)o->tiff, (int)o->geojson,
        (int)o->raw, (int)r->cam, (int)d->tint_glass);
    // what tells the model apart beyond its file's hash: --preprocess, or a Keras model's
    // sidecar JSON (preprocessing, µm/px, class names)
    th_model_describe_preprocess(b->model, pre, sizeof(pre));
    n = n < size ? n : size - 1;
    n += (size_t)snprintf(out + n, size - n, ";preprocess=%s;model_file_mpp=%.17g;names=", pre,
                          th_model_get_mpp(b->model));
    for (int c = 0; c < th_model_get_class_count(b->model) && n < size; c++) {
        n += (size_t)snprintf(out + n, size - n, "%s%s", c ? "," : "",
                              th_model_get_class_name(b->model, c));
    }
    if (o->viewer) { // only then: the keys of runs without it stay as they were
        n = n < size ? n : size - 1;
        n += (size_t)snprintf(out + n, size - n, ";viewer=1");
    }
    if (r->precision != TH_PRECISION_FP32) { // likewise
        n = n < size ? n : size - 1;
        n += (size_t)snprintf(out + n, size - n, ";precision=%s", th_precision_name(r->precision));
    }
    if (r->calibration) { // the ranges the slides run on: the file's bytes
        n = n < size ? n : size - 1;
        snprintf(out + n, size - n, ";calibration=%s", th_calibration_get_sha256(r->calibration));
    }
    (void)row;
}

// A slide's job: the batch's options with its row's µm/px, ROI and class.
static bool make_item(batch *b, const cohort_row *row, item *it, cli_err *e)
{
    memset(it, 0, sizeof(*it));
    it->row = row;
    it->job = (cli_job){.o = b->o,
                        .model = b->model,
                        .slide_path = row->slide,
                        .run = b->o->run,
                        .render = b->o->render};
    if (row->mpp > 0) {
        it->job.run.slide_mpp = row->mpp;
    }
    if (row->has_roi) {
        it->job.run.roi_x = row->roi[0];
        it->job.run.roi_y = row->roi[1];
        it->job.run.roi_w = row->roi[2];
        it->job.run.roi_h = row->roi[3];
    }
    const char *cls = row->class_name ? row->class_name : b->o->class_name;
    if (!cli_name_shown(b->o, b->model, cls, &it->job.render, e)) {
        return row->line ? cli_prefix(e, "line %d: ", row->line) : false;
    }
    it->job.shown_by = row->class_name    ? "the cohort's class column"
                       : b->o->class_name ? "--class"
                       : b->o->shown      ? "--classes-shown"
                                          : NULL;
    memcpy(it->key.model, b->model_sha, sizeof(it->key.model));
    options_text(b, row, it, it->key.options, sizeof(it->key.options));
    // a slide that is missing now fails when it runs, as a slide that does not open
    state_slide_key(&it->key, row->slide, NULL);
    return true;
}

static cJSON *record_new(const item *it, const char *status, const char *error, double seconds)
{
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "id", it->row->id);
    cJSON_AddStringToObject(rec, "slide", it->row->slide);
    cJSON_AddStringToObject(rec, "status", status);
    if (error) {
        cJSON_AddStringToObject(rec, "error", error);
    } else {
        cJSON_AddNullToObject(rec, "error");
    }
    cJSON_AddNumberToObject(rec, "seconds", round(seconds * 100) / 100);
    return rec;
}

// The done record: the completion key and the slide's row of the cohort table.
static cJSON *done_record(const item *it, double seconds)
{
    const th_result *r = it->job.result;
    cJSON *rec = record_new(it, "done", NULL, seconds);
    cJSON *key = cJSON_AddObjectToObject(rec, "key");
    cJSON_AddStringToObject(key, "model", it->key.model);
    cJSON_AddStringToObject(key, "slide", it->key.slide);
    cJSON_AddNumberToObject(key, "size", (double)it->key.size);
    cJSON_AddNumberToObject(key, "mtime_ns", (double)it->key.mtime_ns);
    cJSON_AddStringToObject(key, "options", it->key.options);
    cJSON *classes = cJSON_AddArrayToObject(rec, "classes");
    for (int c = 0; c < th_result_get_class_count(r); c++) {
        cJSON *cls = cJSON_CreateObject();
        cJSON_AddStringToObject(cls, "name", th_model_get_class_name(it->job.model, c));
        cJSON_AddNumberToObject(cls, "percent", round(th_result_get_percent(r, c) * 1e4) / 1e4);
        cJSON_AddNumberToObject(cls, "argmax_percent",
                                round(th_result_get_argmax_percent(r, c) * 1e4) / 1e4);
        cJSON_AddItemToArray(classes, cls);
    }
    int64_t total, skipped;
    th_result_get_tile_counts(r, &total, &skipped);
    cJSON *tiles = cJSON_AddObjectToObject(rec, "tiles");
    cJSON_AddNumberToObject(tiles, "run", (double)th_result_get_tile_count(r));
    cJSON_AddNumberToObject(tiles, "skipped", (double)skipped);
    cJSON_AddNumberToObject(tiles, "total", (double)total);
    cJSON_AddNumberToObject(rec, "background_percent",
                            total ? round(1e6 * (double)skipped / (double)total) / 1e4 : 0);
    const char *source;
    double mpp = th_result_get_mpp(r, &source);
    if (mpp > 0) {
        cJSON_AddNumberToObject(rec, "slide_mpp", mpp);
        cJSON_AddNumberToObject(rec, "tile_mpp", mpp * th_result_get_scale(r));
    }
    cJSON_AddStringToObject(rec, "mpp_source", source);
    return rec;
}

// A slide failed: its record says why, its staging folder and lock go. A slide stopped by a
// signal is not a failure: it is left as if never started.
static void fail_item(batch *b, item *it, cli_err *why)
{
    double seconds = cli_now() - it->start;
    cli_err e;
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/%s", b->st.outdir, it->row->id);
    cli_err_replace(why, it->work, dir); // the slide's folder, not its staging folder
    bool stopped = cli_signal != 0;
    if (!stopped &&
        !state_write_record(&b->st, it->row->id, record_new(it, "failed", why->msg, seconds), &e)) {
        // the outcome line still says why the slide failed; the table will show it pending
    }
    if (it->work[0]) {
        state_abort(it->work);
    }
    state_unlock(&b->st, it->row->id);
    if (!stopped) {
        report(b, it->row->id, FAILED, seconds, why->msg);
    }
}

// Files into the staging folder, fsync, rename into place, record, unlock.
static void finish_item(batch *b, item *it)
{
    cli_err e = {""};
    it->job.out_dir = it->work;
    it->job.tm.t = cli_now();
    if (!cli_job_write(&it->job, &e) || !state_commit(&b->st, it->row->id, it->work, &e)) {
        fail_item(b, it, &e);
        return;
    }
    double seconds = cli_now() - it->start;
    if (!state_write_record(&b->st, it->row->id, done_record(it, seconds), &e)) {
        fail_item(b, it, &e);
        return;
    }
    state_unlock(&b->st, it->row->id);
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/%s", b->st.outdir, it->row->id);
    report(b, it->row->id, DONE, seconds, dir);
}

// A worker's tiles: the cohort's bar, redrawn at most 5 times a second (th_progress_fn).
static void progress(void *user, int64_t done, int64_t total)
{
    worker *w = user;
    batch *b = w->b;
    pthread_mutex_lock(&b->lock);
    w->done = done;
    w->total = total;
    double t = cli_now();
    if (t - b->last_drawn >= 0.2) {
        b->last_drawn = t;
        cli_progress_slide cur[4];
        int n = 0;
        int64_t tiles = b->tiles_before;
        for (int i = 0; i < b->n_workers; i++) {
            tiles += b->workers[i].current ? b->workers[i].done : 0;
            if (b->workers[i].current && n < 4) {
                cur[n++] = (cli_progress_slide){b->workers[i].current, b->workers[i].done,
                                                b->workers[i].total};
            }
        }
        int finished = b->counts[DONE] + b->counts[SKIPPED] + b->counts[FAILED] + b->counts[LOCKED];
        cli_progress_cohort(t - b->start, finished, b->n_rows, tiles, cur, n);
    }
    pthread_mutex_unlock(&b->lock);
}

// The worker's current slide for the progress bar (NULL: none), and its tiles once it is done.
static void set_current(worker *w, const char *id, int64_t tiles_done)
{
    pthread_mutex_lock(&w->b->lock);
    w->current = id;
    w->done = w->total = 0;
    w->b->tiles_before += tiles_done;
    pthread_mutex_unlock(&w->b->lock);
}

// One slide: skipped if done, locked if another worker has it, else run and written.
static void run_row(worker *w, const cohort_row *row)
{
    batch *b = w->b;
    cli_err e = {""};
    char why[512], holder[512];
    item *it = malloc(sizeof(*it));
    if (!it || !make_item(b, row, it, &e)) {
        free(it);
        report(b, row->id, FAILED, 0, it ? e.msg : "out of memory");
        return;
    }
    it->start = cli_now();
    it->job.run.threads = it->job.render.threads = w->threads;
    it->job.run.progress_user = w;
    if (!b->o->force && state_is_done(&b->st, row->id, &it->key, why, sizeof(why))) {
        state_reap_lock(&b->st, row->id);
        report(b, row->id, SKIPPED, 0, "done before");
        free(it);
        return;
    }
    switch (state_lock(&b->st, row->id, holder, sizeof(holder), &e)) {
    case LOCK_BUSY:
        report(b, row->id, LOCKED, 0, holder);
        free(it);
        return;
    case LOCK_ERROR:
        report(b, row->id, FAILED, 0, e.msg);
        free(it);
        return;
    case LOCK_TAKEN:
        break;
    }
    // another worker may have finished it between our look and our lock
    if (!b->o->force && state_is_done(&b->st, row->id, &it->key, why, sizeof(why))) {
        state_unlock(&b->st, row->id);
        report(b, row->id, SKIPPED, 0, "done before");
        free(it);
        return;
    }
    set_current(w, row->id, 0);
    it->job.tm.t = cli_now();
    if (!state_begin(&b->st, row->id, it->work, sizeof(it->work), &e) ||
        !cli_job_open(&it->job, &e) || !cli_job_run(&it->job, b->runner, &e)) {
        fail_item(b, it, &e);
    } else {
        pthread_mutex_lock(&b->lock);
        cli_job_warn(&it->job, row->id);
        pthread_mutex_unlock(&b->lock);
        finish_item(b, it);
    }
    set_current(w, NULL, it->job.result ? th_result_get_tile_count(it->job.result) : 0);
    cli_job_free(&it->job);
    free(it);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    batch *b = w->b;
    for (;;) {
        pthread_mutex_lock(&b->lock);
        int i = cli_signal ? b->n_rows : b->next++;
        pthread_mutex_unlock(&b->lock);
        if (i >= b->n_rows) {
            return NULL;
        }
        run_row(w, &b->cohort.rows[b->rows[i]]);
    }
}

// --shard, else a Slurm job array's task: rows whose 0-based position is I modulo N.
static bool choose_shard(cli_opts *o, cli_err *e)
{
    const char *id = getenv("SLURM_ARRAY_TASK_ID");
    if (o->shard_n > 0 || !id) {
        return true;
    }
    const char *min = getenv("SLURM_ARRAY_TASK_MIN"), *max = getenv("SLURM_ARRAY_TASK_MAX");
    const char *count = getenv("SLURM_ARRAY_TASK_COUNT"), *step = getenv("SLURM_ARRAY_TASK_STEP");
    long lo = min ? atol(min) : 0, st = step && atol(step) > 0 ? atol(step) : 1;
    long n = count ? atol(count) : min && max ? (atol(max) - lo) / st + 1 : 0;
    long i = (atol(id) - lo) / st;
    if (n < 1 || i < 0 || i >= n) {
        return cli_fail(e,
                        "SLURM_ARRAY_TASK_ID=%s but no usable SLURM_ARRAY_TASK_MIN/MAX or "
                        "SLURM_ARRAY_TASK_COUNT; give --shard I/N",
                        id);
    }
    o->shard_i = (int)i;
    o->shard_n = (int)n;
    return true;
}

// Under Slurm, without --threads: the CPUs the job asked for per task, else the node's.
static void slurm_threads(cli_opts *o)
{
    const char *cpus = getenv("SLURM_CPUS_PER_TASK");
    if (!cpus || atoi(cpus) < 1) {
        cpus = getenv("SLURM_JOB_ID") ? getenv("SLURM_CPUS_ON_NODE") : NULL;
    }
    if (o->run.threads == 0 && cpus && atoi(cpus) > 0) {
        o->run.threads = o->render.threads = atoi(cpus);
    }
}

// The cohort's ids and slides, for summarize (every shard writes the same file).
static bool write_rows(batch *b, cli_err *e)
{
    cJSON *rows = cJSON_CreateArray();
    for (int i = 0; i < b->cohort.n; i++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "id", b->cohort.rows[i].id);
        cJSON_AddStringToObject(r, "slide", b->cohort.rows[i].slide);
        cJSON_AddItemToArray(rows, r);
    }
    char *text = cJSON_Print(rows), path[4096];
    cJSON_Delete(rows);
    snprintf(path, sizeof(path), "%s/cohort-rows.json", b->st.dir);
    int lock = text ? state_lock_table(&b->st, e) : -1;
    if (lock < 0) {
        free(text);
        return text ? false : cli_fail(e, "%s: out of memory", path);
    }
    state_remove_temps(path); // under the lock: left by a killed worker
    bool ok = state_write_file(path, text, e);
    close(lock);
    free(text);
    return ok;
}

// Everything checked before any slide runs: the cohort (every row parsed, ids unique, classes
// known), the options, the output folder.
static bool prepare(batch *b, cli_err *e)
{
    cli_opts *o = b->o;
    if (!choose_shard(o, e)) {
        return false;
    }
    slurm_threads(o);
    if (!cohort_load(&b->cohort, o->input, o->single, cohort_probe_slide, NULL, e) ||
        !(b->model = cli_load_model(o, e))) {
        return false;
    }
    th_error *err = NULL;
    if (!th_model_get_sha256(b->model, b->model_sha, &err)) { // part of every slide's key
        cli_fail(e, "%s", th_error_message(err));
        th_error_free(err);
        return false;
    }
    th_render_options probe;
    const char *assets, *osd;
    if (!cli_name_shown(o, b->model, o->class_name, &probe, e) ||
        (o->viewer && !cli_viewer_find(&assets, &osd, e))) {
        return false;
    }
    b->rows = malloc(sizeof(int) * (size_t)(b->cohort.n + 1));
    if (!b->rows) {
        return cli_fail(e, "out of memory");
    }
    for (int i = 0; i < b->cohort.n; i++) {
        const cohort_row *row = &b->cohort.rows[i];
        if (row->class_name && !cli_name_shown(o, b->model, row->class_name, &probe, e)) {
            return cli_prefix(e, "%s:%d: ", o->input, row->line);
        }
        if (strcmp(row->id, "cohort.csv") == 0 || strcmp(row->id, "cohort.json") == 0) {
            return cli_fail(e, "%s:%d: id '%s' is the name of the cohort table; give another id",
                            o->input, row->line, row->id);
        }
        if (o->shard_n == 0 || i % o->shard_n == o->shard_i) {
            b->rows[b->n_rows++] = i;
        }
    }
    return state_open(&b->st, o->out_dir, o->lock_timeout, !o->dry_run, e) &&
           (o->dry_run || write_rows(b, e));
}

// --dry-run: "<id>\trun|skip\t<why>" per row of the shard.
static void dry_run(batch *b)
{
    for (int i = 0; i < b->n_rows; i++) {
        const cohort_row *row = &b->cohort.rows[b->rows[i]];
        item it;
        cli_err e;
        char why[512] = "--force";
        bool done = make_item(b, row, &it, &e) && !b->o->force &&
                    state_is_done(&b->st, row->id, &it.key, why, sizeof(why));
        printf("%s\t%s\t%s\n", row->id, done ? "skip" : "run", why);
    }
}

// The threads to use: --threads (or Slurm's), else OMP_NUM_THREADS, else the CPUs we may run on.
static int thread_count(const cli_opts *o)
{
    const char *omp = getenv("OMP_NUM_THREADS");
    cpu_set_t set;
    if (o->run.threads > 0) {
        return o->run.threads;
    }
    if (omp && atoi(omp) > 0) {
        return atoi(omp);
    }
    return sched_getaffinity(0, sizeof(set), &set) == 0 ? TH_MAX_I(1, CPU_COUNT(&set)) : 1;
}

// One worker per thread, or fewer when there are fewer slides, the threads shared out among them.
static bool start_workers(batch *b, cli_err *e)
{
    int threads = thread_count(b->o);
    b->n_workers = TH_MAX_I(1, threads < b->n_rows ? threads : b->n_rows);
    b->workers = calloc((size_t)b->n_workers, sizeof(worker));
    if (!b->workers) {
        return cli_fail(e, "out of memory");
    }
    for (int i = 0; i < b->n_workers; i++) {
        b->workers[i].b = b;
        b->workers[i].threads = threads / b->n_workers + (i < threads % b->n_workers);
    }
    for (int i = 0; i < b->n_workers; i++) {
        if (pthread_create(&b->workers[i].thread, NULL, worker_main, &b->workers[i]) != 0) {
            b->n_workers = i;
            return cli_fail(e, "cannot start a worker thread");
        }
    }
    return true;
}

static void batch_free(batch *b)
{
    for (int i = 0; i < b->n_workers; i++) {
        pthread_join(b->workers[i].thread, NULL);
    }
    free(b->workers);
    th_runner_free(b->runner);
    th_model_free(b->model);
    cohort_free(&b->cohort);
    free(b->rows);
    pthread_mutex_destroy(&b->lock);
}

int cli_batch(cli_opts *o, cli_err *e)
{
    batch b = {.o = o};
    pthread_mutex_init(&b.lock, NULL);
    int status = EXIT_FAILURE;
    th_error *err = NULL;
    if (!prepare(&b, e)) {
        goto out;
    }
    if (o->dry_run) {
        dry_run(&b);
        status = EXIT_SUCCESS;
        goto out;
    }
    o->run.cancel = &cli_signal;
    b.runner = th_runner_new(b.model, &o->run, &err);
    if (!b.runner) {
        cli_fail(e, "%s: %s", o->model_path, th_error_message(err));
        th_error_free(err);
        goto out;
    }
    b.show_progress = !o->quiet && isatty(STDERR_FILENO);
    b.start = cli_now();
    o->run.progress = b.show_progress ? progress : NULL;
    if (!start_workers(&b, e)) {
        goto out;
    }
    for (int i = 0; i < b.n_workers; i++) {
        pthread_join(b.workers[i].thread, NULL);
    }
    b.n_workers = 0;
    if (b.show_progress) {
        fprintf(stderr, "\r\033[K");
    }
    int counts[3];
    if (!cli_write_summary(&b.st, counts, e)) {
        goto out;
    }
    status = b.counts[FAILED] ? EXIT_SOME_FAILED : EXIT_SUCCESS;
out:
    batch_free(&b);
    return status;
}
