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
/* ---------------------------------------------------------------- options (cli-options.c) */

typedef enum cli_command {
    CMD_SINGLE,
    CMD_MULTI,
    CMD_INFO,
    CMD_BATCH,
    CMD_SUMMARIZE,
    CMD_NONE, // not (yet) known
} cli_command;

/** Exit statuses. */
enum { EXIT_USAGE = 2, EXIT_SOME_FAILED = 3 };

/** The command line, parsed. Strings are borrowed from argv. */
typedef struct cli_opts {
    cli_command cmd;
    bool single;            // single (or batch single) rather than multi
    const char *input;      // the slide; batch: the cohort; summarize: the output folder
    const char *model_path; // -m as given, else the bundled model found
    const char *classes;    // --classes: new names for the model's classes
    const char *class_name; // single: --class
    const char *shown;      // multi: --classes-shown
    int top;                // multi: --top
    const char *out_dir;    // -o; NULL = the default (single/multi)
    bool quiet;
    bool tiff, geojson, raw; // extra outputs
    // batch
    bool dry_run, force;
    int shard_i, shard_n;   // --shard I/N; shard_n 0 = not given
    double lock_timeout;    // seconds after which another worker's lock is taken over
    int argc;               // the command line, for run.json
    char **argv;
    th_run_options run;
    th_render_options render;
} cli_opts;

/** What cli_parse found: go on, the help was printed (exit 0), or a usage error (exit 2). */
typedef enum cli_parsed { CLI_RUN, CLI_HELP, CLI_USAGE } cli_parsed;

/** Parse argv (argv[0] is the program) into o; on CLI_USAGE e says why. */
cli_parsed cli_parse(cli_opts *o, int argc, char **argv, cli_err *e);

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

/** The model (-m or the bundled one, --classes applied). */
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
    const char *out_dir;        // where the files go
    const char *model_sha256;   // hex, or NULL to hash the model file for run.json
    th_run_options run;         // o->run with the cohort row's mpp and roi
    th_render_options render;   // o->render with the classes shown
    th_slide *slide;
    th_result *result;
    cli_timings tm;
    bool assumed_mpp;           // a plain image taken at the model's µm/px: warn
} cli_job;

/** Open the slide, then run it. */
bool cli_job_open(cli_job *j, cli_err *e);
bool cli_job_run(cli_job *j, th_runner *runner, cli_err *e);
/** Choose the classes drawn (unless named) and write every output file into j->out_dir. */
bool cli_job_write(cli_job *j, cli_err *e);
/** The class table, the tiles and µm/px line, stage timings and peak memory, on fp. */
void cli_job_print(const cli_job *j, FILE *fp);
void cli_job_free(cli_job *j);

/* ---------------------------------------------------------------- progress (cli-progress.c) */

typedef struct cli_progress {
    double start, last;
    // batch: the cohort's bar above the current slide's tiles
    int slides_done, slides_total;
    int64_t tiles_before; // tiles of the slides already finished, for tiles/s
    const char *current;  // the current slide's id
} cli_progress;

/** th_progress_fn: a bar on stderr, redrawn at most 5 times a second. */
void cli_progress_fn(void *user, int64_t done, int64_t total);

/* ---------------------------------------------------------------- files and signals (cli-util.c) */

/** The signal (SIGINT or SIGTERM) that asked the run to stop, or 0; the runs' cancel flag. */
extern volatile sig_atomic_t cli_signal;

/** Catch SIGINT and SIGTERM into cli_signal (a second one ends the process at once). */
void cli_catch_signals(void);

/** mkdir -p. `first` (if not NULL) gets the shallowest folder it made, "" if none. */
bool cli_mkdirs(const char *dir, char *first, size_t size, cli_err *e);

/** Undo cli_mkdirs: remove DIR and its parents up to `first`, as long as they are empty. */
void cli_rmdirs(const char *dir, const char *first);

/** Whether a file can be created in DIR (a temporary file is made and removed). */
bool cli_dir_writable(const char *dir, cli_err *e);

/** A file's contents, NUL-terminated (caller frees); NULL + e on failure. */
char *cli_read_file(const char *path, size_t *len, cli_err *e);

/** The SHA-256 of a file in hex (65 bytes with the NUL). */
bool cli_sha256_file(const char *path, char hex[65], cli_err *e);

/* ---------------------------------------------------------------- batch state (cli-state.c) */

/*
 * A batch's bookkeeping lives in OUTDIR/.tileheat/:
 *   locks/ID.lock     a worker's claim on a slide: "host pid started proc_start" (O_EXCL)
 *   records/ID.json   the slide's outcome, written last: done (with the key and the cohort
 *                     table's row) or failed (with the message)
 *   work/ID/HOST.PID/ the slide's files while they are written; renamed to OUTDIR/ID when all
 *                     are fsynced
 *   cohort.tsv        the cohort's ids and slides (for summarize)
 *   summary.lock      serialises writers of cohort.csv and cohort.json
 */
typedef struct batch_state {
    char outdir[2048];
    char dir[2200]; // OUTDIR/.tileheat
    char host[256];
    double lock_timeout;
} batch_state;

/** What a completion record must match for its slide to count as done. */
typedef struct slide_key {
    char model[65];     // the model file's SHA-256
    char slide[4096];   // the slide's path
    int64_t size;       // the slide file's size and modification time (ns since the epoch)
    int64_t mtime_ns;
    char options[2048]; // the options that change results, as text
} slide_key;

/** Set up (create = make the folders) OUTDIR/.tileheat. */
bool state_open(batch_state *st, const char *outdir, double lock_timeout, bool create, cli_err *e);

/** Fill a key's slide part from the file (size, mtime). */
bool state_slide_key(slide_key *k, const char *slide, cli_err *e);

/** Whether ID is done under key k; if not, why (for --dry-run and the log). */
bool state_is_done(const batch_state *st, const char *id, const slide_key *k, char *why,
                   size_t size);

typedef enum lock_result { LOCK_TAKEN, LOCK_BUSY, LOCK_ERROR } lock_result;

/** Claim ID: create its lock with O_EXCL, taking over a lock whose process is gone (same host)
 *  or that is older than the lock timeout. LOCK_BUSY: holder describes who has it. */
lock_result state_lock(const batch_state *st, const char *id, char *holder, size_t size,
                       cli_err *e);
void state_unlock(const batch_state *st, const char *id);

/** Remove ID's lock if it is stale (a worker killed after its slide's record was written). */
void state_reap_lock(const batch_state *st, const char *id);

/** Before working on ID (locked): drop its record and any staging folder left by a killed
 *  worker, and make a fresh staging folder (path into work, size bytes). */
bool state_begin(const batch_state *st, const char *id, char *work, size_t size, cli_err *e);

/** fsync every file of the staging folder, rename it to OUTDIR/ID (replacing an older one). */
bool state_commit(const batch_state *st, const char *id, const char *work, cli_err *e);

/** Remove a staging folder (after a failure). */
void state_abort(const char *work);

/** Write ID's record (a cJSON object, consumed) durably: temporary file, fsync, rename. */
struct cJSON;
bool state_write_record(const batch_state *st, const char *id, struct cJSON *rec, cli_err *e);

/** ID's record, or NULL (caller frees with cJSON_Delete). */
struct cJSON *state_read_record(const batch_state *st, const char *id);

/** Write a file durably: PATH.tmp-XXXXXX, fsync, rename, fsync the folder. */
bool state_write_file(const char *path, const char *text, cli_err *e);

/** Remove a folder and everything in it. */
void state_remove_tree(const char *path);

/** Write OUTDIR/cohort.csv and cohort.json from .tileheat/cohort-rows.json and the records,
 *  under .tileheat/summary.lock; counts[] = done, failed, pending. (cli-summary.c) */
bool cli_write_summary(const batch_state *st, int counts[3], cli_err *e);

/* ---------------------------------------------------------------- commands */

int cli_single(cli_opts *o, cli_err *e);    // cli-main.c: single and multi
int cli_batch(cli_opts *o, cli_err *e);     // cli-batch.c
int cli_summarize(cli_opts *o, cli_err *e); // cli-summary.c

#endif

/** A CLI error: one line, without the "tileheat: " prefix. */
typedef struct cli_err {
    char msg[2048];
} cli_err;

/** Set e's message (if e is not NULL) and return false. */
bool cli_fail(cli_err *e, const char *fmt, ...) CLI_PRINTF(2, 3);

/** Put "<prefix>" in front of e's message; returns false. */
bool cli_prefix(cli_err *e, const char *fmt, ...) CLI_PRINTF(2, 3);

/* ---------------------------------------------------------------- options (cli-options.c) */

typedef enum cli_command {
    CMD_SINGLE,
    CMD_MULTI,
    CMD_INFO,
    CMD_BATCH,
    CMD_SUMMARIZE,
    CMD_NONE, // not (yet) known
} cli_command;

/** Exit statuses. */
enum { EXIT_USAGE = 2, EXIT_SOME_FAILED = 3 };

/** The command line, parsed. Strings are borrowed from argv. */
typedef struct cli_opts {
    cli_command cmd;
    bool single;            // single (or batch single) rather than multi
    const char *input;      // the slide; batch: the cohort; summarize: the output folder
    const char *model_path; // -m as given, else the bundled model found
    const char *classes;    // --classes: new names for the model's classes
    const char *class_name; // single: --class
    const char *shown;      // multi: --classes-shown
    int top;                // multi: --top
    const char *out_dir;    // -o; NULL = the default (single/multi)
    bool quiet;
    bool tiff, geojson, raw; // extra outputs
    // batch
    bool dry_run, force;
    int shard_i, shard_n;   // --shard I/N; shard_n 0 = not given
    double lock_timeout;    // seconds after which another worker's lock is taken over
    int argc;               // the command line, for run.json
    char **argv;
    th_run_options run;
    th_render_options render;
} cli_opts;

/** What cli_parse found: go on, the help was printed (exit 0), or a usage error (exit 2). */
typedef enum cli_parsed { CLI_RUN, CLI_HELP, CLI_USAGE } cli_parsed;

/** Parse argv (argv[0] is the program) into o; on CLI_USAGE e says why. */
cli_parsed cli_parse(cli_opts *o, int argc, char **argv, cli_err *e);

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

/** The model (-m or the bundled one, --classes applied). */
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
    const char *out_dir;        // where the files go
    const char *model_sha256;   // hex, or NULL to hash the model file for run.json
    th_run_options run;         // o->run with the cohort row's mpp and roi
    th_render_options render;   // o->render with the classes shown
    th_slide *slide;
    th_result *result;
    cli_timings tm;
    bool assumed_mpp;           // a plain image taken at the model's µm/px: warn
} cli_job;

/** Open the slide, then run it. */
bool cli_job_open(cli_job *j, cli_err *e);
bool cli_job_run(cli_job *j, th_runner *runner, cli_err *e);
/** Choose the classes drawn (unless named) and write every output file into j->out_dir. */
bool cli_job_write(cli_job *j, cli_err *e);
/** The class table, the tiles and µm/px line, stage timings and peak memory, on fp. */
void cli_job_print(const cli_job *j, FILE *fp);
void cli_job_free(cli_job *j);

/* ---------------------------------------------------------------- progress (cli-progress.c) */

typedef struct cli_progress {
    double start, last;
    // batch: the cohort's bar above the current slide's tiles
    int slides_done, slides_total;
    int64_t tiles_before; // tiles of the slides already finished, for tiles/s
    const char *current;  // the current slide's id
} cli_progress;

/** th_progress_fn: a bar on stderr, redrawn at most 5 times a second. */
void cli_progress_fn(void *user, int64_t done, int64_t total);

/* ---------------------------------------------------------------- files and signals (cli-util.c) */

/** The signal (SIGINT or SIGTERM) that asked the run to stop, or 0; the runs' cancel flag. */
extern volatile sig_atomic_t cli_signal;

/** Catch SIGINT and SIGTERM into cli_signal (a second one ends the process at once). */
void cli_catch_signals(void);

/** mkdir -p. `first` (if not NULL) gets the shallowest folder it made, "" if none. */
bool cli_mkdirs(const char *dir, char *first, size_t size, cli_err *e);

/** Undo cli_mkdirs: remove DIR and its parents up to `first`, as long as they are empty. */
void cli_rmdirs(const char *dir, const char *first);

/** Whether a file can be created in DIR (a temporary file is made and removed). */
bool cli_dir_writable(const char *dir, cli_err *e);

/** A file's contents, NUL-terminated (caller frees); NULL + e on failure. */
char *cli_read_file(const char *path, size_t *len, cli_err *e);

/** The SHA-256 of a file in hex (65 bytes with the NUL). */
bool cli_sha256_file(const char *path, char hex[65], cli_err *e);

/* ---------------------------------------------------------------- batch state (cli-state.c) */

/*
 * A batch's bookkeeping lives in OUTDIR/.tileheat/:
 *   locks/ID.lock     a worker's claim on a slide: "host pid started proc_start" (O_EXCL)
 *   records/ID.json   the slide's outcome, written last: done (with the key and the cohort
 *                     table's row) or failed (with the message)
 *   work/ID/HOST.PID/ the slide's files while they are written; renamed to OUTDIR/ID when all
 *                     are fsynced
 *   cohort.tsv        the cohort's ids and slides (for summarize)
 *   summary.lock      serialises writers of cohort.csv and cohort.json
 */
typedef struct batch_state {
    char outdir[2048];
    char dir[2200]; // OUTDIR/.tileheat
    char host[256];
    double lock_timeout;
} batch_state;

/** What a completion record must match for its slide to count as done. */
typedef struct slide_key {
    char model[65];     // the model file's SHA-256
    char slide[4096];   // the slide's path
    int64_t size;       // the slide file's size and modification time (ns since the epoch)
    int64_t mtime_ns;
    char options[2048]; // the options that change results, as text
} slide_key;

/** Set up (create = make the folders) OUTDIR/.tileheat. */
bool state_open(batch_state *st, const char *outdir, double lock_timeout, bool create, cli_err *e);

/** Fill a key's slide part from the file (size, mtime). */
bool state_slide_key(slide_key *k, const char *slide, cli_err *e);

/** Whether ID is done under key k; if not, why (for --dry-run and the log). */
bool state_is_done(const batch_state *st, const char *id, const slide_key *k, char *why,
                   size_t size);

typedef enum lock_result { LOCK_TAKEN, LOCK_BUSY, LOCK_ERROR } lock_result;

/** Claim ID: create its lock with O_EXCL, taking over a lock whose process is gone (same host)
 *  or that is older than the lock timeout. LOCK_BUSY: holder describes who has it. */
lock_result state_lock(const batch_state *st, const char *id, char *holder, size_t size,
                       cli_err *e);
void state_unlock(const batch_state *st, const char *id);

/** Remove ID's lock if it is stale (a worker killed after its slide's record was written). */
void state_reap_lock(const batch_state *st, const char *id);

/** Before working on ID (locked): drop its record and any staging folder left by a killed
 *  worker, and make a fresh staging folder (path into work, size bytes). */
bool state_begin(const batch_state *st, const char *id, char *work, size_t size, cli_err *e);

/** fsync every file of the staging folder, rename it to OUTDIR/ID (replacing an older one). */
bool state_commit(const batch_state *st, const char *id, const char *work, cli_err *e);

/** Remove a staging folder (after a failure). */
void state_abort(const char *work);

/** Write ID's record (a cJSON object, consumed) durably: temporary file, fsync, rename. */
struct cJSON;
bool state_write_record(const batch_state *st, const char *id, struct cJSON *rec, cli_err *e);

/** ID's record, or NULL (caller frees with cJSON_Delete). */
struct cJSON *state_read_record(const batch_state *st, const char *id);

/** Write a file durably: PATH.tmp-XXXXXX, fsync, rename, fsync the folder. */
bool state_write_file(const char *path, const char *text, cli_err *e);

/** Remove a folder and everything in it. */
void state_remove_tree(const char *path);

/** Write OUTDIR/cohort.csv and cohort.json from .tileheat/cohort-rows.json and the records,
 *  under .tileheat/summary.lock; counts[] = done, failed, pending. (cli-summary.c) */
bool cli_write_summary(const batch_state *st, int counts[3], cli_err *e);

/* ---------------------------------------------------------------- commands */

int cli_single(cli_opts *o, cli_err *e);    // cli-main.c: single and multi
int cli_batch(cli_opts *o, cli_err *e);     // cli-batch.c
int cli_summarize(cli_opts *o, cli_err *e); // cli-summary.c

#endif
