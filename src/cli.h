/* SPDX-License-Identifier: MIT */
/* What the tileheat program's modules (src/cli-*.c) share: the CLI's error type. The CLI uses the
 * public API (tileheat.h) only; its helpers return false with a message instead of exiting, and
 * only cli-main.c prints errors and chooses exit codes. */
#ifndef TH_CLI_H
#define TH_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>

#include "tileheat.h"

#if defined(__GNUC__)
#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLI_PRINTF(f, a)
#endif

/** A CLI error: one line, without the "tileheat: " prefix. */
typedef struct cli_err {
    char msg[2048];
} cli_err;

/** Set e's message (if e is not NULL) and return false. */
bool cli_fail(cli_err *e, const char *fmt, ...) CLI_PRINTF(2, 3);

/** Put "<prefix>" in front of e's message; returns false. */
bool cli_prefix(cli_err *e, const char *fmt, ...) CLI_PRINTF(2, 3);

/** Replace the first `from` in e's message with `to` (a staging folder's path with the folder
 *  the user named). */
void cli_err_replace(cli_err *e, const char *from, const char *to);

/* ---------------------------------------------------------------- options (cli-options.c) */

typedef enum cli_command {
    CMD_SINGLE,
    CMD_MULTI,
    CMD_INFO,
    CMD_BATCH,
    CMD_SUMMARIZE,
    CMD_CONVERT,
    CMD_VIEW,
    CMD_CALIBRATE,
    CMD_NONE, // not (yet) known
} cli_command;

/** Exit statuses. */
enum { EXIT_USAGE = 2, EXIT_SOME_FAILED = 3 };

/** The command line, parsed. Strings are borrowed from argv. */
typedef struct cli_opts {
    cli_command cmd;
    bool single;       // single (or batch single) rather than multi
    const char *input; // the slide; batch: the cohort; summarize: the output folder;
                       // convert: the model; calibrate: the first of `inputs`
    char **inputs;     // calibrate: slides and cohorts (n_inputs)
    int n_inputs;
    const char *model_path; // -m as given, else the bundled model found
    const char *classes;    // --classes: new names for the model's classes
    const char *preprocess; // --preprocess: unit, caffe, tf or torch
    const char *class_name; // single: --class
    const char *shown;      // multi: --classes-shown
    int top;                // multi: --top
    const char *out_dir;    // -o; NULL = the default (single/multi)
    bool quiet;
    bool tiff, geojson, raw;      // extra outputs
    bool viewer;                  // --viewer: DIR/viewer/ (cli-viewer.c)
    const char *calibration_path; // --calibration FILE (int8 ranges from `tileheat calibrate`)
    th_calibration *calibration;  // ... read by cli_load_model, freed by cli_opts_free
    int sample;                   // calibrate: --sample, tiles in all
    // batch
    bool dry_run, force;
    int shard_i, shard_n; // --shard I/N; shard_n 0 = not given
    double lock_timeout;  // seconds after which another worker's lock is taken over
    int argc;             // the command line as typed, for run.json
    char **argv;
    char **owned_argv; // the copy getopt_long reorders (freed by cli_opts_free)
    th_run_options run;
    th_render_options render;
} cli_opts;

/** What cli_parse found: go on, the help was printed (exit 0), or a usage error (exit 2). */
typedef enum cli_parsed { CLI_RUN, CLI_HELP, CLI_USAGE } cli_parsed;

/** Parse argv (argv[0] is the program) into o; on CLI_USAGE e says why. */
cli_parsed cli_parse(cli_opts *o, int argc, char **argv, cli_err *e);

/** Free what cli_parse allocated. */
void cli_opts_free(cli_opts *o);

/** "multi", "batch multi", ...: the command as typed, for messages and "Try ..." lines; NULL
 *  before the command is known. */
const char *cli_command_name(const cli_opts *o);

/** The top-level usage (tileheat --help). */
void cli_usage_main(FILE *fp);

/* ---------------------------------------------------------------- one slide (cli-job.c) */

/** The CLI's own stage timings: those before the run, then the outputs'. */
typedef struct cli_timings {
    th_stage stage[10];
    int n_before; // stages before the run
    int n;
    double t; // when the current stage started
} cli_timings;

double cli_now(void);
void cli_lap(cli_timings *tm, const char *name);

/** The model (-m or the bundled one, --classes and --preprocess applied), and --calibration's
 *  file read for it (o->calibration, o->run.calibration). */
th_model *cli_load_model(cli_opts *o, cli_err *e);

/** The classes named by --class / --classes-shown (checked before any run); false + e if a name
 *  is unknown. n_shown stays 0 when the run's top classes are to be drawn. */
bool cli_name_shown(const cli_opts *o, const th_model *model, const char *class_name,
                    th_render_options *ro, cli_err *e);

/** One slide's run and outputs, shared by single/multi and batch. */
typedef struct cli_job {
    const cli_opts *o;
    const th_model *model;
    const char *slide_path;
    const char *out_dir;      // where the files go
    th_run_options run;       // o->run with the cohort row's mpp and roi
    th_render_options render; // o->render with the classes shown
    th_slide *slide;
    th_result *result;
    cli_timings tm;
    const char *shown_by; // why these classes are drawn (report.json); NULL: the top ones
    bool viewer_only;     // `tileheat view`: write DIR/viewer and nothing else
    char top_by[64];      // "--top 3": shown_by when the run's top classes are drawn
} cli_job;

/** Open the slide, then run it. */
bool cli_job_open(cli_job *j, cli_err *e);
bool cli_job_run(cli_job *j, th_runner *runner, cli_err *e);
/** The run's warnings on stderr, "tileheat: warning: WHO: message", a line each. */
void cli_job_warn(const cli_job *j, const char *who);
/** Choose the classes drawn (unless named) and write every output file into j->out_dir. */
bool cli_job_write(cli_job *j, cli_err *e);
/** The class table, the tiles and µm/px line, stage timings and peak memory, on fp. */
void cli_job_print(const cli_job *j, FILE *fp);
void cli_job_free(cli_job *j);

/* ---------------------------------------------------------------- progress (cli-progress.c) */

typedef struct cli_progress {
    double start, last;
} cli_progress;

/** th_progress_fn for one slide: a bar on stderr, redrawn at most 5 times a second. */
void cli_progress_fn(void *user, int64_t done, int64_t total);

/** A slide in progress, for the cohort's bar. */
typedef struct cli_progress_slide {
    const char *id;
    int64_t done, total; // tiles
} cli_progress_slide;

/** The cohort's bar on stderr: slides done of total, tiles/s and ETA over the cohort, then the
 *  slides in progress and their tiles. */
void cli_progress_cohort(double elapsed, int slides_done, int slides_total, int64_t tiles,
                         const cli_progress_slide *current, int n_current);

/* ---------------------------------------------------------------- files and signals (cli-util.c)
 */

/** The signal (SIGINT, SIGTERM or SIGHUP) that asked the run to stop, or 0; the runs' cancel
 *  flag. */
extern volatile sig_atomic_t cli_signal;

/** Catch SIGINT, SIGTERM and SIGHUP into cli_signal (a second one ends the process at once);
 *  ignore SIGXFSZ, so that a file past `ulimit -f` is a write error with a message. */
void cli_catch_signals(void);

/** mkdir -p. `first` (if not NULL) gets the shallowest folder it made, "" if none. */
bool cli_mkdirs(const char *dir, char *first, size_t size, cli_err *e);

/** Undo cli_mkdirs: remove DIR and its parents up to `first`, as long as they are empty. */
void cli_rmdirs(const char *dir, const char *first);

/** Whether a file can be created in DIR (a temporary file is made and removed). */
bool cli_dir_writable(const char *dir, cli_err *e);

/** A file's contents, NUL-terminated (caller frees); NULL + e on failure. */
char *cli_read_file(const char *path, size_t *len, cli_err *e);

/* ---------------------------------------------------------------- commands */

int cli_single(cli_opts *o, cli_err *e);    // cli-main.c: single and multi
int cli_batch(cli_opts *o, cli_err *e);     // cli-batch.c
int cli_summarize(cli_opts *o, cli_err *e); // cli-summary.c
int cli_convert(cli_opts *o, cli_err *e);   // cli-main.c
int cli_view(cli_opts *o, cli_err *e);      // cli-viewer.c
int cli_calibrate(cli_opts *o, cli_err *e); // cli-calibrate.c

/* ---------------------------------------------------------------- the viewer (cli-viewer.c) */

/** The page's files and OpenSeadragon (installed, or the source tree's and configure's); false
 *  and a one-line message naming what is missing. */
bool cli_viewer_find(const char **assets, const char **osd, cli_err *e);

/** The job's viewer: j->out_dir/viewer, linking to the files the job wrote beside it. */
bool cli_viewer_write(cli_job *j, cli_err *e);

struct cJSON;
/** OUTDIR/index.html and OUTDIR/index_files/: the cohort page, from the cohort table (cohort.json's
 *  object), when some slide of it has a viewer. */
bool cli_viewer_cohort(const char *outdir, const struct cJSON *table, cli_err *e);

#endif
