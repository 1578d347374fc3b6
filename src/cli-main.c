/* SPDX-License-Identifier: MIT */
/* The tileheat command: dispatch, `single`, `multi`, `info` and `convert`. The only place that
 * prints an error or chooses the exit code (0 success, 1 runtime failure, 2 usage error, 3 a batch
 * with failed slides, 128 + signal when stopped by SIGINT/SIGTERM). Uses the public API only. */
#include <config.h>

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <tiffio.h>

#include "cli-state.h"

// SLIDE-NAME.tileheat in the current directory: the slide's base name without its extension.
static void default_out_dir(const char *slide, char *out, size_t size)
{
    const char *base = strrchr(slide, '/');
    base = base ? base + 1 : slide;
    const char *dot = strrchr(base, '.');
    int len = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
    snprintf(out, size, "%.*s.tileheat", len, base);
}

// The slide whose run a folder holds (run.json's slide path), or false if it holds none.
static bool previous_slide(const char *dir, char *slide, size_t size)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/run.json", dir);
    char *text = cli_read_file(path, NULL, NULL);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    const cJSON *p = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "slide"), "path");
    bool found = cJSON_IsString(p);
    if (found) {
        snprintf(slide, size, "%s", p->valuestring);
    }
    cJSON_Delete(root);
    free(text);
    return found;
}

static bool same_file(const char *a, const char *b)
{
    char ra[PATH_MAX], rb[PATH_MAX];
    if (realpath(a, ra) && realpath(b, rb)) {
        return strcmp(ra, rb) == 0;
    }
    return strcmp(a, b) == 0;
}

// The output folder: -o, or the default one, which must not hold another slide's run. Created
// (with its parents) and checked writable before the long run.
static bool prepare_out_dir(cli_opts *o, char *dir, size_t size, char *created, cli_err *e)
{
    char prev[4096];
    if (o->out_dir) {
        snprintf(dir, size, "%s", o->out_dir);
    } else {
        default_out_dir(o->input, dir, size);
        if (previous_slide(dir, prev, sizeof(prev)) && !same_file(prev, o->input)) {
            return cli_fail(e,
                            "%s: holds the run of another slide (%s); give -o to write there or "
                            "elsewhere",
                            dir, prev);
        }
    }
    return cli_mkdirs(dir, created, 4096, e) && cli_dir_writable(dir, e);
}

int cli_single(cli_opts *o, cli_err *e)
{
    cli_job j = {.o = o, .slide_path = o->input, .run = o->run, .render = o->render};
    char dir[4096], created[4096] = "";
    cli_outset set = {0};
    bool ok = false;
    th_runner *runner = NULL;
    th_model *model = NULL;
    j.tm.t = cli_now();
    model = cli_load_model(o, e);
    if (!model) {
        return EXIT_FAILURE;
    }
    j.model = model;
    j.run.calibration = o->run.calibration; // read with the model
    cli_lap(&j.tm, "model load");
    cli_progress pst = {.start = cli_now()};
    if (!o->quiet && isatty(STDERR_FILENO)) {
        j.run.progress = cli_progress_fn;
        j.run.progress_user = &pst;
    }
    j.run.cancel = &cli_signal;
    th_error *err = NULL;
    if (!cli_name_shown(o, model, o->class_name, &j.render, e)) {
        th_model_free(model);
        return EXIT_USAGE;
    }
    j.shown_by = o->class_name ? "--class" : o->shown ? "--classes-shown" : NULL;
    const char *assets, *osd;
    if (o->viewer && !cli_viewer_find(&assets, &osd, e)) { // before the long run
        th_model_free(model);
        return EXIT_FAILURE;
    }
    // the output folder is made and checked before the slide is read, so that a folder that
    // cannot be written fails at once
    if (!prepare_out_dir(o, dir, sizeof(dir), created, e) ||
        !cli_outset_begin(&set, dir, o->lock_timeout, e) || !cli_job_open(&j, e)) {
        goto out;
    }
    j.out_dir = set.staging;
    runner = th_runner_new(model, &j.run, &err);
    if (!runner) {
        cli_fail(e, "%s: %s", o->model_path, th_error_message(err));
        th_error_free(err);
        goto out;
    }
    if (!cli_job_run(&j, runner, e)) {
        goto out;
    }
    cli_job_warn(&j, o->input);
    // a signal while the outputs were written leaves the earlier set as it was
    ok = cli_job_write(&j, e) && !cli_signal && cli_outset_commit(&set, e);
    j.out_dir = dir;
    if (ok && !o->quiet) {
        cli_job_print(&j, stdout);
    }
out:
    cli_err_replace(e, set.staging, dir); // the user knows the folder, not its staging folder
    cli_outset_end(&set);
    if (!ok) {
        cli_rmdirs(dir, created); // the folders it made, if the failed run left them empty
    }
    cli_job_free(&j);
    th_runner_free(runner);
    th_model_free(model);
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}

static void print_model_info(const cli_opts *o, const th_model *model)
{
    int w, h;
    char line[512];
    th_model_get_input_size(model, &w, &h);
    printf("model:       %s\n", o->model_path);
    printf("format:      %s\n", th_model_get_format(model));
    printf("classes:     %d\n", th_model_get_class_count(model));
    for (int c = 0; c < th_model_get_class_count(model); c++) {
        printf("  %d  %s%s\n", c, th_model_get_class_name(model, c),
               th_model_is_background_class(model, c) ? "  (background)" : "");
    }
    if (w > 0) {
        printf("input:       %d × %d px\n", w, h);
    } else {
        printf("input:       dynamic (give --tile)\n");
    }
    if (th_model_get_mpp(model) > 0) {
        printf("mpp:         %g µm/px\n", th_model_get_mpp(model));
    } else {
        printf("mpp:         unknown\n");
    }
    th_model_describe_preprocess(model, line, sizeof(line));
    printf("preprocess:  %s\n", line);
    printf("layers:\n");
    for (int i = 0; th_model_describe_layer(model, i, line, sizeof(line)); i++) {
        printf("  %s\n", line);
    }
    static const char *keys[] = {"source", "created_by", "license"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *v = th_model_get_metadata(model, keys[i]);
        if (v) {
            printf("%-12s %s\n", keys[i], v);
        }
    }
}

static void print_slide_info(const char *path, th_slide *slide)
{
    double mx, my;
    printf("\nslide:       %s\n", path);
    printf("format:      %s\n", th_slide_get_format(slide));
    if (th_slide_get_mpp(slide, &mx, &my)) {
        printf("mpp:         %g × %g µm/px\n", mx, my);
    } else {
        printf("mpp:         unknown\n");
    }
    for (int l = 0; l < th_slide_get_level_count(slide); l++) {
        int64_t w, h;
        th_slide_get_level_dimensions(slide, l, &w, &h);
        printf("level %-2d     %lld × %lld (downsample %g)\n", l, (long long)w, (long long)h,
               th_slide_get_level_downsample(slide, l));
    }
}

// A file named like a model (.onnx, .h5, .hdf5, .keras): `tileheat info MODEL`.
static bool model_name(const char *path)
{
    static const char *const ext[] = {".onnx", ".h5", ".hdf5", ".keras"};
    size_t len = strlen(path);
    for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
        size_t n = strlen(ext[i]);
        if (len > n && strcasecmp(path + len - n, ext[i]) == 0) {
            return true;
        }
    }
    return false;
}

static int cli_info(cli_opts *o, cli_err *e)
{
    th_error *err = NULL;
    if (o->input && !o->model_path && model_name(o->input)) {
        o->model_path = o->input;
        o->input = NULL;
    }
    th_model *model = cli_load_model(o, e);
    if (!model) {
        return EXIT_FAILURE;
    }
    th_slide *slide = o->input ? th_slide_open(o->input, &err) : NULL;
    if (o->input && !slide) {
        cli_fail(e, "%s: %s", o->input, th_error_message(err));
        th_error_free(err);
        th_model_free(model);
        return EXIT_FAILURE;
    }
    print_model_info(o, model);
    if (slide) {
        print_slide_info(o->input, slide);
    }
    th_slide_close(slide);
    th_model_free(model);
    return EXIT_SUCCESS;
}

// convert: load (any format, --classes, --preprocess), set --model-mpp, write ONNX.
int cli_convert(cli_opts *o, cli_err *e)
{
    th_error *err = NULL;
    o->model_path = o->input;
    th_model *model = cli_load_model(o, e);
    if (!model) {
        return EXIT_FAILURE;
    }
    bool ok = true;
    if (o->run.model_mpp > 0 && !th_model_set_mpp(model, o->run.model_mpp, &err)) {
        ok = cli_fail(e, "--model-mpp: %s", th_error_message(err));
    } else if (!th_model_write_onnx(model, o->out_dir, &err)) {
        ok = cli_fail(e, "%s: %s", o->out_dir, th_error_message(err));
    }
    if (ok && !o->quiet) {
        char line[512], size[64] = "dynamic";
        int w, h;
        th_model_get_input_size(model, &w, &h);
        if (w > 0) {
            snprintf(size, sizeof(size), "%d × %d px", w, h);
        }
        th_model_describe_preprocess(model, line, sizeof(line));
        printf("%s: %s model, %d classes, input %s, preprocess %s\n", o->out_dir,
               th_model_get_format(model), th_model_get_class_count(model), size, line);
        if (th_model_get_mpp(model) <= 0) {
            printf("no µm/px in the model: give --model-mpp when converting or running\n");
        }
    }
    th_error_free(err);
    th_model_free(model);
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}

// "tileheat: <message>" and "Try 'tileheat [COMMAND] --help'."
static void usage_error(const cli_opts *o, const cli_err *e)
{
    const char *cmd = cli_command_name(o);
    fprintf(stderr, "tileheat: %s\nTry 'tileheat %s%s--help'.\n", e->msg, cmd ? cmd : "",
            cmd ? " " : "");
}

int main(int argc, char **argv)
{
    // libtiff's process-wide handlers print to stderr from inside OpenSlide's reads; the library
    // reports every failure itself, as the one line this program prints.
    TIFFSetErrorHandler(NULL);
    TIFFSetWarningHandler(NULL);
    if (argc < 2) {
        cli_usage_main(stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        cli_usage_main(stdout);
        return EXIT_SUCCESS;
    }
    if (strcmp(sub, "--version") == 0 || strcmp(sub, "-V") == 0) {
        printf("tileheat %s\n", th_version());
        return EXIT_SUCCESS;
    }
    cli_opts o;
    cli_err e = {""};
    switch (cli_parse(&o, argc, argv, &e)) {
    case CLI_HELP:
        cli_opts_free(&o);
        return EXIT_SUCCESS;
    case CLI_USAGE:
        usage_error(&o, &e);
        cli_opts_free(&o);
        return EXIT_USAGE;
    case CLI_RUN:
        break;
    }
    cli_catch_signals();
    int status = o.cmd == CMD_INFO        ? cli_info(&o, &e)
                 : o.cmd == CMD_CONVERT   ? cli_convert(&o, &e)
                 : o.cmd == CMD_BATCH     ? cli_batch(&o, &e)
                 : o.cmd == CMD_SUMMARIZE ? cli_summarize(&o, &e)
                 : o.cmd == CMD_VIEW      ? cli_view(&o, &e)
                 : o.cmd == CMD_CALIBRATE ? cli_calibrate(&o, &e)
                                          : cli_single(&o, &e);
    cli_opts_free(&o);
    if (cli_signal) {
        fprintf(stderr, "tileheat: stopped by %s\n",
                cli_signal == SIGINT   ? "SIGINT"
                : cli_signal == SIGHUP ? "SIGHUP"
                                       : "SIGTERM");
        return 128 + cli_signal;
    }
    if (status == EXIT_USAGE) {
        usage_error(&o, &e);
    } else if (status != EXIT_SUCCESS && e.msg[0]) {
        fprintf(stderr, "tileheat: %s\n", e.msg);
    }
    return status;
}
