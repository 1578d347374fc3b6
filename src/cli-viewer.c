/* SPDX-License-Identifier: MIT */
/* The viewer in the program: finding the page's files and OpenSeadragon, --viewer's folder for a
 * job, `tileheat view DIR` (the same folder afterwards, from a finished run's run.json and
 * report.json, running the slide again), and a batch's cohort page (OUTDIR/index.html). */
#include <config.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli-state.h"

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// The first of the folders holding `file`, or NULL.
static const char *find_dir(const char *const *dirs, size_t n, const char *file)
{
    for (size_t i = 0; i < n; i++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", dirs[i], file);
        if (dirs[i][0] && is_file(path)) {
            return dirs[i];
        }
    }
    return NULL;
}

bool cli_viewer_find(const char **assets, const char **osd, cli_err *e)
{
    static const char *const page[] = {TH_PKGDATADIR "/viewer", TH_SRCDIR "/viewer"};
    static const char *const libs[] = {TH_PKGDATADIR "/openseadragon",
#ifdef TH_OPENSEADRAGON_DIR
                                       TH_OPENSEADRAGON_DIR,
#endif
                                       TH_SRCDIR "/third_party/node_modules/openseadragon/build/"
                                                 "openseadragon"};
    *assets = find_dir(page, sizeof(page) / sizeof(page[0]), "viewer.js");
    *osd = find_dir(libs, sizeof(libs) / sizeof(libs[0]), "openseadragon.min.js");
    if (!*assets) {
        return cli_fail(e, "--viewer: the viewer's page is not installed (expected %s/viewer.js)",
                        page[0]);
    }
    if (!*osd) {
        return cli_fail(
            e,
            "--viewer: OpenSeadragon is not installed (expected %s/openseadragon.min.js;"
            " run tools/install-deps.sh, then configure and make install again)",
            libs[0]);
    }
    return true;
}

bool cli_viewer_write(cli_job *j, cli_err *e)
{
    const char *assets, *osd;
    if (!cli_viewer_find(&assets, &osd, e)) {
        return false;
    }
    const cli_opts *o = j->o;
    const char *links[6];
    int n = 0;
    links[n++] = "heatmap.png";
    links[n++] = "report.json";
    links[n++] = "tiles.csv";
    if (o->geojson) {
        links[n++] = "tiles.geojson";
    }
    if (o->tiff) {
        links[n++] = "heatmap.tiff";
    }
    const char *base = strrchr(j->slide_path, '/');
    th_viewer_options vo;
    th_viewer_options_init(&vo);
    vo.assets = assets;
    vo.openseadragon = osd;
    vo.title = base ? base + 1 : j->slide_path;
    vo.links = links;
    vo.n_links = n;
    vo.cancel = &cli_signal;
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/viewer", j->out_dir);
    th_error *err = NULL;
    if (!th_viewer_write(j->slide, j->result, j->model, &j->render, &vo, dir, &err)) {
        cli_fail(e, "%s", th_error_message(err));
        th_error_free(err);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- tileheat view DIR */

static cJSON *read_json(const char *dir, const char *name, cli_err *e)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    char *text = cli_read_file(path, NULL, e);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    if (text && !root) {
        cli_fail(e, "%s: not JSON", path);
    }
    free(text);
    return root;
}

static const char *json_str(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItem(o, a);
    v = b ? cJSON_GetObjectItem(v, b) : v;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The run's options: its command line (run.json's command_line) parsed again, then what a batch
 * row or the run's choice added: the slide, its µm/px and ROI (run.json), the classes drawn
 * (report.json's drawing.shown). */
static bool run_options(cli_opts *o, const cJSON *run, const cJSON *report, char **argv,
                        char *shown, size_t size, cli_err *e)
{
    const cJSON *cmd = cJSON_GetObjectItem(run, "command_line"), *a;
    int argc = 0;
    cJSON_ArrayForEach(a, cmd)
    {
        if (!cJSON_IsString(a) || argc == 255) {
            return cli_fail(e, "run.json: command_line is not a list of strings");
        }
        argv[argc++] = a->valuestring;
    }
    argv[argc] = NULL;
    if (argc < 2 || cli_parse(o, argc, argv, e) != CLI_RUN ||
        (o->cmd != CMD_SINGLE && o->cmd != CMD_MULTI && o->cmd != CMD_BATCH)) {
        return e->msg[0] ? cli_prefix(e, "run.json's command line: ")
                         : cli_fail(e, "run.json: not the command line of a run");
    }
    o->cmd = o->single ? CMD_SINGLE : CMD_MULTI;
    o->input = json_str(run, "slide", "path");
    const cJSON *opt = cJSON_GetObjectItem(run, "options");
    const cJSON *mpp = cJSON_GetObjectItem(opt, "mpp"), *roi = cJSON_GetObjectItem(opt, "roi");
    if (cJSON_IsNumber(mpp) && mpp->valuedouble > 0) {
        o->run.slide_mpp = mpp->valuedouble;
    }
    if (cJSON_GetArraySize(roi) == 4) {
        o->run.roi_x = (int64_t)cJSON_GetArrayItem(roi, 0)->valuedouble;
        o->run.roi_y = (int64_t)cJSON_GetArrayItem(roi, 1)->valuedouble;
        o->run.roi_w = (int64_t)cJSON_GetArrayItem(roi, 2)->valuedouble;
        o->run.roi_h = (int64_t)cJSON_GetArrayItem(roi, 3)->valuedouble;
    }
    shown[0] = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(cJSON_GetObjectItem(report, "drawing"), "shown"))
    {
        const char *name = json_str(s, "name", NULL);
        size_t len = strlen(shown);
        if (name) {
            snprintf(shown + len, size - len, "%s%s", len ? "," : "", name);
        }
    }
    if (shown[0]) {
        o->class_name = o->single ? shown : NULL;
        o->shown = o->single ? NULL : shown;
    }
    if (!o->input) {
        return cli_fail(e, "run.json: no slide path");
    }
    if (!is_file(o->input)) {
        return cli_fail(e,
                        "run.json's slide %s: not found from here (run tileheat view in the "
                        "folder the run was started in)",
                        o->input);
    }
    return true;
}

int cli_view(cli_opts *o, cli_err *e)
{
    const char *dir = o->input;
    char *argv[256], shown[1024], sha[65];
    cli_opts r;
    memset(&r, 0, sizeof(r));
    int status = EXIT_FAILURE;
    th_model *model = NULL;
    th_runner *runner = NULL;
    cli_job j = {0};
    cJSON *run = read_json(dir, "run.json", e),
          *report = run ? read_json(dir, "report.json", e) : NULL;
    const char *assets, *osd;
    if (!report || !cli_viewer_find(&assets, &osd, e) ||
        !run_options(&r, run, report, argv, shown, sizeof(shown), e)) {
        goto out;
    }
    r.quiet = o->quiet;
    r.viewer = true;
    if (o->run.threads) {
        r.run.threads = r.render.threads = o->run.threads;
    }
    model = cli_load_model(&r, e);
    const char *want = json_str(run, "model", "sha256");
    th_error *err = NULL;
    if (!model) {
        goto out;
    }
    if (want && want[0] && th_model_get_sha256(model, sha, &err) && strcmp(sha, want) != 0) {
        cli_fail(e,
                 "%s: the model %s is not the one the run used (SHA-256 %.12s..., run.json says "
                 "%.12s...)",
                 dir, r.model_path, sha, want);
        goto out;
    }
    th_error_free(err);
    err = NULL;
    j = (cli_job){.o = &r,
                  .model = model,
                  .slide_path = r.input,
                  .out_dir = dir,
                  .run = r.run,
                  .render = r.render,
                  .viewer_only = true};
    j.run.cancel = &cli_signal;
    if (!cli_name_shown(&r, model, r.class_name, &j.render, e) || !cli_job_open(&j, e)) {
        goto out;
    }
    runner = th_runner_new(model, &j.run, &err);
    if (!runner) {
        cli_fail(e, "%s: %s", r.model_path, th_error_message(err));
        th_error_free(err);
        goto out;
    }
    if (!cli_job_run(&j, runner, e) || !cli_job_write(&j, e)) {
        goto out;
    }
    if (!o->quiet) {
        printf("viewer: %s/viewer/index.html\n", dir);
    }
    status = EXIT_SUCCESS;
out:
    cli_job_free(&j);
    th_runner_free(runner);
    th_model_free(model);
    cli_opts_free(&r);
    cJSON_Delete(run);
    cJSON_Delete(report);
    return status;
}

/* ---------------------------------------------------------------- the cohort page */

static bool has_viewer(const char *outdir, const char *id)
{
    char path[8400];
    snprintf(path, sizeof(path), "%s/%s/viewer/index.html", outdir, id);
    return is_file(path);
}

bool cli_viewer_cohort(const char *outdir, const cJSON *table, cli_err *e)
{
    const cJSON *slides = cJSON_GetObjectItem(table, "slides"), *rec;
    bool any = false;
    cJSON_ArrayForEach(rec, slides)
    {
        const char *id = json_str(rec, "id", NULL);
        any = any || (id && has_viewer(outdir, id));
    }
    if (!any) {
        return true; // no slide of it was run with --viewer
    }
    const char *assets, *osd;
    if (!cli_viewer_find(&assets, &osd, e)) {
        return false;
    }
    // the page's data: the table, and which slides have a viewer
    cJSON *data = cJSON_Duplicate(table, true);
    cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(data, "slides"))
    {
        const char *id = json_str(s, "id", NULL);
        cJSON_AddBoolToObject(s, "viewer", id && has_viewer(outdir, id));
    }
    char *json = cJSON_PrintUnformatted(data);
    cJSON_Delete(data);
    char dir[4200], path[4400], from[4400];
    snprintf(dir, sizeof(dir), "%s/index_files", outdir);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        free(json);
        return cli_fail(e, "%s: cannot create: %s", dir, strerror(errno));
    }
    size_t n = json ? strlen(json) + 64 : 0;
    char *js = json ? malloc(n) : NULL;
    bool ok = js != NULL;
    if (ok) {
        snprintf(js, n, "var tileheatCohort = %s;\n", json);
        snprintf(path, sizeof(path), "%s/cohort-data.js", dir);
        ok = state_write_file(path, js, e);
    } else {
        cli_fail(e, "%s: out of memory", dir);
    }
    static const struct {
        const char *from, *to;
    } files[] = {{"cohort.js", "index_files/cohort.js"},
                 {"viewer.css", "index_files/viewer.css"},
                 {"cohort.html", "index.html"}}; // the page last: it needs the others
    for (size_t i = 0; ok && i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(from, sizeof(from), "%s/%s", assets, files[i].from);
        snprintf(path, sizeof(path), "%s/%s", outdir, files[i].to);
        char *text = cli_read_file(from, NULL, e);
        ok = text && state_write_file(path, text, e);
        free(text);
    }
    free(js);
    free(json);
    return ok;
}
