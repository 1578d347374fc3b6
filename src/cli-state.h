/* SPDX-License-Identifier: MIT */
/* A batch's bookkeeping in OUTDIR/.tileheat: locks, staging folders, completion records, and the
 * cohort table written from them (cli-state.c, cli-summary.c). */
#ifndef TH_CLI_STATE_H
#define TH_CLI_STATE_H

#include <cjson/cJSON.h>

#include "cli.h"

/*
 * A batch's bookkeeping lives in OUTDIR/.tileheat/:
 *   locks/ID.lock     a worker's claim on a slide: "host pid started proc_start" (O_EXCL)
 *   records/ID.json   the slide's outcome, written last: done (with the key and the cohort
 *                     table's row) or failed (with the message)
 *   work/ID/HOST.PID/ the slide's files while they are written; renamed to OUTDIR/ID when all
 *                     are fsynced
 *   cohort-rows.json  the cohort's ids and slides (for summarize)
 *   shards/           the Slurm example's markers of finished array tasks
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
    char model[65];   // the model file's SHA-256
    char slide[4096]; // the slide's path
    int64_t size;     // the slide file's size and modification time (ns since the epoch)
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

/** The same claim on any lock file (a single run's output folder: DIR/.tileheat.lock). */
lock_result state_lock_file(const batch_state *st, const char *path, char *holder, size_t size,
                            cli_err *e);

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
bool state_write_record(const batch_state *st, const char *id, cJSON *rec, cli_err *e);

/** ID's record, or NULL (caller frees with cJSON_Delete). */
cJSON *state_read_record(const batch_state *st, const char *id);

/** Write a file durably: PATH.tmp-XXXXXX, fsync, rename, fsync the folder. */
bool state_write_file(const char *path, const char *text, cli_err *e);

/** Take .tileheat/summary.lock (flock), which serialises the writers of cohort.csv, cohort.json
 *  and cohort-rows.json; close the descriptor to release it. -1 + e on failure. */
int state_lock_table(const batch_state *st, cli_err *e);

/** Remove PATH.tmp-* (state_write_file's temporary files, left by a killed worker): only where
 *  no other worker can be writing PATH. */
void state_remove_temps(const char *path);

/** Remove every entry of DIR whose name starts with prefix (files, or folders with all in them). */
void state_remove_prefixed(const char *dir, const char *prefix);

/** Remove a folder and everything in it. */
void state_remove_tree(const char *path);

/** Write OUTDIR/cohort.csv and cohort.json from .tileheat/cohort-rows.json and the records,
 *  under .tileheat/summary.lock; counts[] = done, failed, pending. (cli-summary.c) */
bool cli_write_summary(const batch_state *st, int counts[3], cli_err *e);

/* A single run's output set (cli-job.c): files are written into DIR/.tileheat-run-XXXXXX, then
 * moved into DIR together (an earlier run's files that this run does not write are removed in the
 * same step); DIR/.tileheat.lock keeps a second run out meanwhile. A failed or interrupted run
 * leaves an earlier complete set as it was. */
typedef struct cli_outset {
    char dir[4096];
    char staging[4200]; // where the run writes; "" once removed
    char lock[4200];
    bool locked;
    batch_state st; // for the lock: host, timeout
} cli_outset;

bool cli_outset_begin(cli_outset *set, const char *dir, double lock_timeout, cli_err *e);
bool cli_outset_commit(cli_outset *set, cli_err *e);
/** Remove the staging folder (if any) and the lock: after a commit or a failure. */
void cli_outset_end(cli_outset *set);

#endif
