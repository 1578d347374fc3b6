/* SPDX-License-Identifier: MIT */
/* Cohort files for `tileheat batch`: a CSV or TSV with a header, a list of paths, or a directory.
 */
#ifndef TH_CLI_COHORT_H
#define TH_CLI_COHORT_H

#include "cli.h"

/** One slide of a cohort. */
typedef struct cohort_row {
    char *id;         // unique within the cohort: the `id` column, else the file name without its
                      // last extension
    char *slide;      // the slide's path: as written when absolute, else joined to the cohort
                      // file's folder ("DIR/PATH"; a cohort file in "." gives PATH as written)
    double mpp;       // the `mpp` column (µm per level-0 pixel, > 0); 0 = not given
    char *class_name; // the `class` column (single only); NULL = not given
    bool has_roi;     // the `roi` column was given
    int64_t roi[4];   // x, y, w, h in level-0 pixels ("X,Y,W,H", x, y >= 0, w, h > 0)
    int line;         // 1-based line in the cohort file; 0 for an entry of a directory cohort
} cohort_row;

/** A cohort: its rows in file order (a directory: sorted by file name, bytewise). */
typedef struct cohort {
    cohort_row *rows;
    int n;
} cohort;

/** For directory cohorts: whether a reader opens this file (only those are rows). */
typedef bool (*cohort_probe_fn)(const char *path, void *user);

/**
 * Read a cohort from `path`: a directory (every regular, non-hidden file in it that `probe`
 * accepts, sorted by name), a CSV or TSV whose header has a `slide` column (optional `id`, `mpp`,
 * `class` when `single`, `roi`), or else a text file of one path per line (blank lines and lines
 * starting with '#' ignored). The first non-blank line decides: a CSV or TSV is a file whose first
 * line has a field `slide`; a .csv or .tsv file without one is an error, not a list. Every row is
 * parsed and ids are checked unique before it returns; errors name the file and line
 * ("cohort.csv:7: mpp: expected a number > 0, got 'x'").
 * On failure *c is left empty.
 */
bool cohort_load(cohort *c, const char *path, bool single, cohort_probe_fn probe, void *user,
                 cli_err *e);

/** A cohort_probe_fn: the file opens as a slide. */
bool cohort_probe_slide(const char *path, void *user);

/** Free the rows. Accepts an empty cohort. */
void cohort_free(cohort *c);

#endif
