/* SPDX-License-Identifier: MIT */
/* One slide's job, shared by single/multi and batch: load the model, name the classes to draw,
 * open and run the slide, write its output files, print its table. Every helper returns an
 * error instead of exiting, so batch can record a slide's failure and go on. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli-state.h"

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void cli_lap(cli_timings *tm, const char *name)
{
    double t = cli_now();
    if (tm->n < (int)(sizeof(tm->stage) / sizeof(tm->stage[0]))) {
        tm->stage[tm->n].name = name;
        tm->stage[tm->n].seconds = t - tm->t;
        tm->n++;
    }
    tm->t = t;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// The bundled model: $TILEHEAT_MODEL, installed in pkgdatadir, or in the source tree.
static const char *default_model(void)
{
    static const char *candidates[] = {TH_PKGDATADIR "/default.onnx",
                                       TH_SRCDIR "/models/default.onnx"};
    const char *env = getenv("TILEHEAT_MODEL");
    if (env && *env) {
        return env;
    }
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
        if (file_exists(candidates[i])) {
            return candidates[i];
        }
    }
    return NULL;
}

th_model *cli_load_model(cli_opts *o, cli_err *e)
{
    th_error *err = NULL;
    if (!o->model_path) {
        o->model_path = default_model();
        if (!o->model_path) {
            cli_fail(e,
                     "no --model given and the bundled model is not installed (expected "
                     "%s/default.onnx)",
                     TH_PKGDATADIR);
            return NULL;
        }
    }
    th_model *model = th_model_load(o->model_path, &err);
    uint8_t rgb[3];
    if (!model) {
        cli_fail(e, "%s: %s", o->model_path, th_error_message(err));
    } else if (o->classes && !th_model_set_class_names(model, o->classes, &err)) {
        cli_fail(e, "--classes: %s", th_error_message(err));
        th_model_free(model);
        model = NULL;
    } else if (o->preprocess && !th_model_set_preprocess(model, o->preprocess, &err)) {
        cli_fail(e, "--preprocess: %s", th_error_message(err));
        th_model_free(model);
        model = NULL;
    } else if (!th_render_class_color(NULL, model, 0, rgb, &err)) {
        cli_fail(e, "%s: %s", o->model_path, th_error_message(err)); // its class_colors
        th_model_free(model);
        model = NULL;
    } else if (o->calibration_path && !o->calibration &&
               !(o->calibration = th_calibration_read(o->calibration_path, model, &err))) {
        cli_fail(e, "--calibration: %s", th_error_message(err)); // the message names the file
        th_model_free(model);
        model = NULL;
    }
    o->run.calibration = model ? o->calibration : NULL;
    th_error_free(err);
    return model;
}

static bool find_class(const th_model *model, const char *name, int *c, cli_err *e)
{
    *c = th_model_find_class(model, name);
    if (*c >= 0) {
        return true;
    }
    char list[1024] = "";
    for (int i = 0; i < th_model_get_class_count(model); i++) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "",
                 th_model_get_class_name(model, i));
    }
    return cli_fail(e, "unknown class '%s' (the model has: %s)", name, list);
}

// --classes-shown A,B: names to indices, in the order given.
static bool parse_shown(const char *shown, const th_model *model, th_render_options *ro, cli_err *e)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", shown);
    ro->n_shown = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') {
            tok++;
        }
        for (char *end = tok + strlen(tok); end > tok && end[-1] == ' ';) {
            *--end = 0;
        }
        if (ro->n_shown == TH_MAX_SHOWN) {
            return cli_fail(e, "--classes-shown: at most %d classes", TH_MAX_SHOWN);
        }
        if (!find_class(model, tok, &ro->shown[ro->n_shown++], e)) {
            return false;
        }
    }
    return ro->n_shown > 0 || cli_fail(e, "--classes-shown: no class named");
}

bool cli_name_shown(const cli_opts *o, const th_model *model, const char *class_name,
                    th_render_options *ro, cli_err *e)
{
    ro->multi = !o->single;
    ro->n_shown = 0;
    uint8_t rgb[3];
    th_error *err = NULL;
    if (ro->multi && !th_render_class_color(ro, model, 0, rgb, &err)) {
        // --colors, every entry checked before the run (class_colors was, at load)
        cli_fail(e, "--%s", th_error_message(err));
        th_error_free(err);
        return false;
    }
    if (class_name) {
        ro->n_shown = 1;
        return find_class(model, class_name, &ro->shown[0], e);
    }
    return !o->shown || parse_shown(o->shown, model, ro, e);
}

// After the run, unless named: the top class (single) or the --top classes (multi).
static bool choose_top(cli_job *j, cli_err *e)
{
    th_render_options *ro = &j->render;
    if (ro->n_shown > 0) {
        return true;
    }
    if (j->o->single) {
        ro->n_shown = 1;
        if (th_result_top_classes(j->result, j->model, 1, ro->shown) < 1) {
            ro->shown[0] = 0;
        }
        j->shown_by = "the top non-background class";
        return true;
    }
    ro->n_shown = th_result_top_classes(j->result, j->model, j->o->top, ro->shown);
    snprintf(j->top_by, sizeof(j->top_by), "--top %d", j->o->top);
    j->shown_by = j->top_by;
    if (ro->n_shown == 0) {
        return cli_fail(e, "every class of the model is a background class; name the classes to "
                           "draw with --classes-shown");
    }
    if (ro->n_shown < j->o->top && !j->o->quiet) {
        fprintf(stderr,
                "tileheat: note: --top %d: the model has %d non-background classes; "
                "drawing %d\n",
                j->o->top, ro->n_shown, ro->n_shown);
    }
    return true;
}

bool cli_job_open(cli_job *j, cli_err *e)
{
    th_error *err = NULL;
    j->slide = th_slide_open(j->slide_path, &err);
    if (!j->slide) {
        cli_fail(e, "%s: %s", j->slide_path, th_error_message(err));
        th_error_free(err);
        return false;
    }
    cli_lap(&j->tm, "slide open");
    j->tm.n_before = j->tm.n;
    return true;
}

bool cli_job_run(cli_job *j, th_runner *runner, cli_err *e)
{
    th_error *err = NULL;
    j->result = th_runner_run(runner, j->slide, &j->run, &err);
    if (!j->result) {
        cli_fail(e, "%s: %s", j->slide_path, th_error_message(err));
        th_error_free(err);
        return false;
    }
    return true;
}

void cli_job_warn(const cli_job *j, const char *who)
{
    for (int i = 0; i < th_result_get_warning_count(j->result); i++) {
        fprintf(stderr, "tileheat: warning: %s: %s\n", who, th_result_get_warning(j->result, i));
    }
}

// One output file: "DIR/NAME: message" on failure.
typedef enum out_kind { OUT_PNG, OUT_TIFF, OUT_CSV, OUT_TISSUE, OUT_GEOJSON, OUT_NPY } out_kind;

static bool write_one(cli_job *j, const char *name, out_kind kind, cli_err *e)
{
    th_error *err = NULL;
    char path[4096], probs[4096];
    snprintf(path, sizeof(path), "%s/%s", j->out_dir, name);
    snprintf(probs, sizeof(probs), "%s/probabilities.npy", j->out_dir);
    const th_result *r = j->result;
    bool ok = false;
    switch (kind) {
    case OUT_PNG:
        ok = th_render_heatmap(j->slide, r, j->model, &j->render, path, &err);
        break;
    case OUT_TIFF:
        ok = th_render_tiff(j->slide, r, j->model, &j->render, path, &err);
        break;
    case OUT_CSV:
        ok = th_report_write_csv(r, j->model, path, &err);
        break;
    case OUT_TISSUE:
        ok = th_result_write_tissue_png(r, path, &err);
        break;
    case OUT_GEOJSON:
        ok = th_export_geojson(r, j->model, &j->render, path, &err);
        break;
    case OUT_NPY:
        ok = th_export_npy(r, path, probs, &err);
        break;
    }
    if (!ok) {
        cli_fail(e, "%s", th_error_message(err)); // the library's message names the file
        th_error_free(err);
    }
    return ok;
}

// report.json and run.json, with the output stages' timings and the peak memory so far.
static bool write_reports(cli_job *j, cli_err *e)
{
    th_error *err = NULL;
    th_report_info info = {.slide_path = j->slide_path,
                           .model_path = j->o->model_path,
                           .command = j->o->single ? "single" : "multi",
                           .level = th_result_get_level(j->result),
                           .stages = j->tm.stage,
                           .n_stages = j->tm.n,
                           .peak_rss = th_peak_rss(),
                           .argc = j->o->argc,
                           .argv = j->o->argv,
                           .render = &j->render,
                           .shown_by = j->shown_by};
    char json[4096], run[4096];
    snprintf(json, sizeof(json), "%s/report.json", j->out_dir);
    snprintf(run, sizeof(run), "%s/run.json", j->out_dir);
    bool ok = th_report_write_json(j->result, j->model, &info, json, &err) &&
              th_report_write_run_json(j->result, j->model, &info, run, &err);
    if (!ok) {
        cli_fail(e, "%s", th_error_message(err)); // the library's message names the file
        th_error_free(err);
    }
    return ok;
}

bool cli_job_write(cli_job *j, cli_err *e)
{
    const cli_opts *o = j->o;
    if (!choose_top(j, e)) {
        return false;
    }
    j->tm.t = cli_now();
    if (j->viewer_only) {
        return cli_viewer_write(j, e);
    }
    if (!write_one(j, "heatmap.png", OUT_PNG, e)) {
        return false;
    }
    cli_lap(&j->tm, "heatmap.png");
    if (o->tiff) {
        if (!write_one(j, "heatmap.tiff", OUT_TIFF, e)) {
            return false;
        }
        cli_lap(&j->tm, "heatmap.tiff");
    }
    if (!write_one(j, "tiles.csv", OUT_CSV, e) ||
        (j->run.min_tissue > 0 && !write_one(j, "tissue.png", OUT_TISSUE, e)) ||
        (o->geojson && !write_one(j, "tiles.geojson", OUT_GEOJSON, e)) ||
        (o->raw && !write_one(j, "cam.npy", OUT_NPY, e))) {
        return false;
    }
    cli_lap(&j->tm, "other outputs");
    if (o->viewer) {
        if (!cli_viewer_write(j, e)) {
            return false;
        }
        cli_lap(&j->tm, "viewer");
    }
    return write_reports(j, e);
}

// Stage timings in the order they ran (the CLI's before the run, the run's, the outputs') and
// the peak resident memory.
static void print_timings(const cli_job *j, FILE *fp)
{
    int n;
    const th_stage *st = th_result_get_stages(j->result, &n);
    const cli_timings *tm = &j->tm;
    fprintf(fp, "time:");
    for (int i = 0; i < n + tm->n; i++) {
        const th_stage *s = i < tm->n_before       ? &tm->stage[i]
                            : i < tm->n_before + n ? &st[i - tm->n_before]
                                                   : &tm->stage[i - n];
        fprintf(fp, "%s %s %.2f s", i ? "," : "", s->name, s->seconds);
    }
    fprintf(fp, "\npeak memory: %.1f MiB\n", (double)th_peak_rss() / (1 << 20));
}

void cli_job_print(const cli_job *j, FILE *fp)
{
    const th_result *r = j->result;
    int cols, rows, name_w = 5, nc = th_result_get_class_count(r);
    th_result_get_grid(r, &cols, &rows);
    for (int c = 0; c < nc; c++) {
        int len = (int)strlen(th_model_get_class_name(j->model, c));
        name_w = len > name_w ? len : name_w;
    }
    fprintf(fp, "%-*s  %8s  %9s\n", name_w, "class", "percent", "top tiles");
    for (int c = 0; c < nc; c++) {
        fprintf(fp, "%-*s  %7.2f%%  %8.2f%%\n", name_w, th_model_get_class_name(j->model, c),
                th_result_get_percent(r, c), th_result_get_argmax_percent(r, c));
    }
    int64_t total, skipped;
    th_result_get_tile_counts(r, &total, &skipped);
    const char *source;
    double mpp = th_result_get_mpp(r, &source);
    fprintf(fp, "%lld tiles run of %lld (%d × %d), %lld skipped as background; level %d",
            (long long)th_result_get_tile_count(r), (long long)total, cols, rows,
            (long long)skipped, th_result_get_level(r));
    if (mpp > 0) {
        fprintf(fp, ", slide %.4g µm/px (%s), tiles %.4g µm/px", mpp, source,
                mpp * th_result_get_scale(r));
    }
    fprintf(fp, "\noutputs in %s/\n", j->out_dir);
    print_timings(j, fp);
}

void cli_job_free(cli_job *j)
{
    th_result_free(j->result);
    th_slide_close(j->slide);
    j->result = NULL;
    j->slide = NULL;
}

/* ---------------------------------------------------------------- a single run's output set */

// Every file a run may write, the reports last: a commit moves them in this order, and removes
// those of an earlier run that this one did not write.
static const char *const outputs[] = {
    "heatmap.png", "heatmap.tiff",      "tiles.csv", "tissue.png",  "tiles.geojson",
    "cam.npy",     "probabilities.npy", "viewer",    "report.json", "run.json"};

bool cli_outset_begin(cli_outset *set, const char *dir, double lock_timeout, cli_err *e)
{
    char holder[512];
    memset(set, 0, sizeof(*set));
    snprintf(set->dir, sizeof(set->dir), "%s", dir);
    snprintf(set->lock, sizeof(set->lock), "%s/.tileheat.lock", dir);
    if (!state_open(&set->st, dir, lock_timeout, false, e)) {
        return false;
    }
    switch (state_lock_file(&set->st, set->lock, holder, sizeof(holder), e)) {
    case LOCK_BUSY:
        return cli_fail(e, "%s: another tileheat run is writing here (%s)", dir, holder);
    case LOCK_ERROR:
        return false;
    case LOCK_TAKEN:
        break;
    }
    set->locked = true;
    state_remove_prefixed(dir, ".tileheat-run-"); // left by a killed run: we hold DIR's lock
    snprintf(set->staging, sizeof(set->staging), "%s/.tileheat-run-XXXXXX", dir);
    if (!mkdtemp(set->staging)) {
        set->staging[0] = 0;
        return cli_fail(e, "%s: cannot create a folder: %s", dir, strerror(errno));
    }
    return true;
}

bool cli_outset_commit(cli_outset *set, cli_err *e)
{
    for (size_t i = 0; i < sizeof(outputs) / sizeof(outputs[0]); i++) {
        char from[8400], to[8400];
        snprintf(from, sizeof(from), "%s/%s", set->staging, outputs[i]);
        snprintf(to, sizeof(to), "%s/%s", set->dir, outputs[i]);
        struct stat st;
        bool folder = stat(from, &st) == 0 && S_ISDIR(st.st_mode);
        if (folder || (access(from, F_OK) != 0 && stat(to, &st) == 0 && S_ISDIR(st.st_mode))) {
            // a folder (viewer/): an earlier one goes first, as rename does not replace it
            state_remove_tree(to);
        }
        if (rename(from, to) != 0 && errno == ENOENT) {
            unlink(to); // not written this time: an earlier run's
        } else if (access(to, F_OK) != 0) {
            return cli_fail(e, "%s: cannot move into place: %s", to, strerror(errno));
        }
    }
    return true;
}

void cli_outset_end(cli_outset *set)
{
    if (set->staging[0]) {
        state_remove_tree(set->staging);
    }
    if (set->locked) {
        unlink(set->lock);
    }
    set->locked = false;
    set->staging[0] = 0;
}
