/* SPDX-License-Identifier: MIT */
/* Cohort files for `tileheat batch`: a directory of slides, a CSV (RFC 4180) or TSV whose header
 * names its columns, or a list of paths. Every row is parsed and checked, ids included, before
 * cohort_load returns, so that a typo on row 900 stops the batch before slide 1 rather than after
 * slide 899. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli-cohort.h"

#define ID_MAX 200 // bytes: an id names the slide's output directory

enum { COL_SLIDE, COL_ID, COL_MPP, COL_CLASS, COL_ROI, NCOL };
static const char *const column_names[NCOL] = {"slide", "id", "mpp", "class", "roi"};

// What one load shares.
struct loader {
    const char *file; // the cohort path as given: messages start with it
    size_t dir_len;   // length of its folder, up to and including the last '/' (0: none)
    const char *hint; // how to tell duplicate ids apart, for the message
    cohort *c;
    int cap; // rows allocated in c->rows
    cli_err *e;
};

// The cohort file's text and a read position.
struct text {
    char *s; // (len + 1) bytes, NUL-terminated; BOM and CRs before LF removed
    size_t len, pos;
    int line; // 1-based line of s[pos]
};

// One CSV/TSV record: its fields back to back in buf, each NUL-terminated.
struct record {
    char *buf;
    size_t len, size;
    size_t *off; // (n) where each field starts in buf
    int n, cap;
    int line; // 1-based line where the record starts
};

static bool blank(char ch, char sep)
{
    return ch == ' ' || (ch == '\t' && sep != '\t');
}

static const char *field(const struct record *r, int i)
{
    return r->buf + r->off[i];
}

static bool put(struct record *r, char ch)
{
    if (r->len == r->size) {
        size_t size = r->size ? 2 * r->size : 256;
        char *p = realloc(r->buf, size);
        if (!p) {
            return false;
        }
        r->buf = p;
        r->size = size;
    }
    r->buf[r->len++] = ch;
    return true;
}

// Close the field that started at buf[start]; unquoted fields lose their trailing spaces.
static bool end_field(struct record *r, size_t start, bool trim)
{
    while (trim && r->len > start && blank(r->buf[r->len - 1], 0)) {
        r->len--;
    }
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 16;
        size_t *p = realloc(r->off, (size_t)cap * sizeof(*p));
        if (!p) {
            return false;
        }
        r->off = p;
        r->cap = cap;
    }
    r->off[r->n++] = start;
    return put(r, '\0');
}

// A double-quoted CSV field at t->pos: "" is a quote; separators and newlines are content.
static bool read_quoted(struct text *t, struct record *r, char sep, const char *file, cli_err *e)
{
    int line = t->line;
    for (t->pos++;; t->pos++) {
        if (t->pos >= t->len) {
            return cli_fail(e, "%s:%d: a quoted field is not closed", file, line);
        }
        char ch = t->s[t->pos];
        if (ch == '"' && t->s[t->pos + 1] != '"') {
            break;
        }
        t->pos += ch == '"'; // the first of "" is dropped
        t->line += ch == '\n';
        if (!put(r, ch)) {
            return cli_fail(e, "%s: out of memory", file);
        }
    }
    for (t->pos++; t->pos < t->len && blank(t->s[t->pos], sep); t->pos++) {
    }
    if (t->pos < t->len && t->s[t->pos] != sep && t->s[t->pos] != '\n') {
        return cli_fail(e,
                        "%s:%d: text after a closing quote (a quote inside a quoted field is \"\")",
                        file, t->line);
    }
    return true;
}

// Read the next record, skipping blank lines: 1, or 0 at the end, or -1 on an error.
static int next_record(struct text *t, char sep, struct record *r, const char *file, cli_err *e)
{
    for (;;) {
        size_t p = t->pos;
        while (p < t->len && blank(t->s[p], 0)) {
            p++;
        }
        t->pos = p;
        if (p == t->len) {
            return 0;
        }
        if (t->s[p] != '\n') {
            break;
        }
        t->pos++;
        t->line++;
    }
    r->line = t->line;
    r->n = 0;
    r->len = 0;
    for (;;) {
        while (t->pos < t->len && blank(t->s[t->pos], sep)) {
            t->pos++;
        }
        size_t start = r->len;
        bool quoted = sep == ',' && t->s[t->pos] == '"';
        if (quoted && !read_quoted(t, r, sep, file, e)) {
            return -1;
        }
        for (; !quoted && t->pos < t->len && t->s[t->pos] != sep && t->s[t->pos] != '\n';
             t->pos++) {
            if (!put(r, t->s[t->pos])) {
                cli_fail(e, "%s: out of memory", file);
                return -1;
            }
        }
        if (!end_field(r, start, !quoted)) {
            cli_fail(e, "%s: out of memory", file);
            return -1;
        }
        if (t->pos < t->len && t->s[t->pos] == sep) {
            t->pos++;
            continue;
        }
        if (t->pos < t->len) { // the newline
            t->pos++;
            t->line++;
        }
        return 1;
    }
}

static bool read_text(const char *path, struct text *t, cli_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return cli_fail(e, "%s: cannot open: %s", path, strerror(errno));
    }
    size_t size = 0;
    for (;;) {
        if (size - t->len < 2) {
            size = size ? 2 * size : 4096;
            char *p = realloc(t->s, size);
            if (!p) {
                fclose(f);
                return cli_fail(e, "%s: out of memory", path);
            }
            t->s = p;
        }
        size_t got = fread(t->s + t->len, 1, size - t->len - 1, f);
        t->len += got;
        if (got == 0) {
            break;
        }
    }
    int failed = ferror(f) ? errno : 0;
    fclose(f);
    if (failed) {
        return cli_fail(e, "%s: cannot read: %s", path, strerror(failed));
    }
    t->s[t->len] = 0;
    t->line = 1;
    return true;
}

// Drop a UTF-8 BOM and every CR before a LF (or at the end), and refuse binary files.
static bool clean_text(struct text *t, const char *file, cli_err *e)
{
    size_t r = t->len >= 3 && memcmp(t->s, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0, w = 0;
    int line = 1;
    for (; r < t->len; r++) {
        char ch = t->s[r];
        if (ch == '\0') {
            return cli_fail(e,
                            "%s:%d: a NUL byte: a cohort is a CSV, a TSV, a list of paths or a "
                            "directory",
                            file, line);
        }
        if (ch == '\r' && (r + 1 == t->len || t->s[r + 1] == '\n')) {
            continue;
        }
        line += ch == '\n';
        t->s[w++] = ch;
    }
    t->s[w] = 0;
    t->len = w;
    return true;
}

// Header names are compared after trimming, quoted or not.
static void trim_fields(struct record *r)
{
    for (int i = 0; i < r->n; i++) {
        char *s = r->buf + r->off[i];
        size_t n = strlen(s);
        while (n > 0 && blank(s[n - 1], 0)) {
            s[--n] = 0;
        }
        while (blank(r->buf[r->off[i]], 0)) {
            r->off[i]++;
        }
    }
}

static bool has_slide(const struct record *r)
{
    for (int i = 0; i < r->n; i++) {
        if (strcmp(field(r, i), "slide") == 0) {
            return true;
        }
    }
    return false;
}

// The first line decides: a tab-separated `slide` field makes a TSV, a comma-separated one a CSV.
// Returns the separator with r holding the header, 0 for a list of paths, -1 on an error.
static int detect(struct text *t, struct record *r, const char *file, cli_err *e)
{
    const char *base = strrchr(file, '/');
    const char *ext = strrchr(base ? base : file, '.');
    static const char seps[2] = {'\t', ','};
    for (int i = 0; i < 2; i++) {
        struct text probe = *t;
        cli_err quiet;
        int rc = next_record(&probe, seps[i], r, file, &quiet);
        trim_fields(r);
        if (rc == 1 && has_slide(r)) {
            *t = probe;
            return seps[i];
        }
        // a .csv or .tsv file was meant as a table: a list of paths would be a surprise
        if (rc != 0 && ext && strcasecmp(ext, i == 0 ? ".tsv" : ".csv") == 0) {
            if (rc < 0) {
                *e = quiet;
                return -1;
            }
            char got[512] = "";
            for (int k = 0, n = 0; k < r->n && n < (int)sizeof(got); k++) {
                n += snprintf(got + n, sizeof(got) - n, "%s%s", k ? ", " : "", field(r, k));
            }
            cli_fail(e, "%s:%d: no 'slide' column in the header (got: %s)", file, r->line, got);
            return -1;
        }
    }
    return 0;
}

static bool map_columns(const struct record *r, bool single, int col[NCOL], const char *file,
                        cli_err *e)
{
    for (int k = 0; k < NCOL; k++) {
        col[k] = -1;
    }
    for (int i = 0; i < r->n; i++) {
        const char *name = field(r, i);
        int k = 0;
        while (k < NCOL && strcmp(name, column_names[k]) != 0) {
            k++;
        }
        if (k == NCOL) {
            return cli_fail(e, "%s:%d: unknown column '%s' (columns: slide, id, mpp, class, roi)",
                            file, r->line, name);
        }
        if (k == COL_CLASS && !single) {
            return cli_fail(e, "%s:%d: column 'class' applies to single only", file, r->line);
        }
        if (col[k] >= 0) {
            return cli_fail(e, "%s:%d: column '%s' appears twice", file, r->line, name);
        }
        col[k] = i;
    }
    return true;
}

static bool check_id(const char *id, bool derived, cli_err *e)
{
    size_t n = strlen(id);
    const char *why = NULL;
    if (n == 0) {
        why = "is empty";
    } else if (id[0] == '.') {
        why = "starts with '.'";
    } else if (n > ID_MAX) {
        why = "is longer than 200 bytes";
    } else if (strchr(id, '/')) {
        why = "contains '/'";
    }
    for (size_t i = 0; !why && i < n; i++) {
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f) {
            why = "contains a control character";
        }
    }
    if (!why) {
        return true;
    }
    return cli_fail(e, "id '%s'%s: %s (an id names the slide's output directory)", id,
                    derived ? " (from the file name)" : "", why);
}

// The file name without its last extension; a name starting with '.' is kept whole.
static char *default_id(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = base[0] == '.' ? NULL : strrchr(base, '.');
    return strndup(base, dot ? (size_t)(dot - base) : strlen(base));
}

static bool parse_mpp(const char *s, double *mpp, cli_err *e)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || !(v > 0)) {
        return cli_fail(e, "mpp: expected a number > 0, got '%s'", s);
    }
    *mpp = v;
    return true;
}

static bool parse_roi(const char *s, int64_t roi[4], cli_err *e)
{
    const char *p = s;
    int i = 0;
    for (; i < 4; i++) {
        while (*p == ' ') {
            p++;
        }
        if (*p < '0' || *p > '9') { // strtoll would take a sign
            break;
        }
        char *end;
        errno = 0;
        roi[i] = strtoll(p, &end, 10);
        for (p = end; *p == ' '; p++) {
        }
        if (errno || *p != (i < 3 ? ',' : '\0')) {
            break;
        }
        p += i < 3;
    }
    if (i == 4 && roi[2] > 0 && roi[3] > 0) {
        return true;
    }
    return cli_fail(e, "roi: expected X,Y,W,H in level-0 pixels (W, H > 0), got '%s'", s);
}

// Append a row for `slide` (relative: to the cohort file's folder); its id is `id`, or else the
// file name's. The error, if any, comes without its place.
static cohort_row *add_row(struct loader *ld, const char *slide, const char *id, int line)
{
    cohort *c = ld->c;
    if (!*slide) {
        cli_fail(ld->e, "the slide path is empty");
        return NULL;
    }
    if (c->n == ld->cap) {
        int cap = ld->cap < INT_MAX / 4 ? 2 * ld->cap + 64 : 0;
        cohort_row *p = cap ? realloc(c->rows, (size_t)cap * sizeof(*p)) : NULL;
        if (!p) {
            cli_fail(ld->e, "out of memory");
            return NULL;
        }
        c->rows = p;
        ld->cap = cap;
    }
    cohort_row *row = &c->rows[c->n++];
    memset(row, 0, sizeof(*row));
    row->line = line;
    size_t dir_len = slide[0] == '/' ? 0 : ld->dir_len, n = strlen(slide);
    row->slide = malloc(dir_len + n + 1);
    row->id = *id ? strdup(id) : default_id(slide);
    if (!row->slide || !row->id) {
        cli_fail(ld->e, "out of memory");
        return NULL;
    }
    memcpy(row->slide, ld->file, dir_len);
    memcpy(row->slide + dir_len, slide, n + 1);
    return check_id(row->id, !*id, ld->e) ? row : NULL;
}

static bool table_row(struct loader *ld, const struct record *r, const int col[NCOL], int ncol)
{
    if (r->n != ncol) {
        return cli_fail(ld->e, "%s:%d: %d field%s, the header has %d", ld->file, r->line, r->n,
                        r->n == 1 ? "" : "s", ncol);
    }
    const char *id = col[COL_ID] >= 0 ? field(r, col[COL_ID]) : "";
    cohort_row *row = add_row(ld, field(r, col[COL_SLIDE]), id, r->line);
    const char *mpp = col[COL_MPP] >= 0 ? field(r, col[COL_MPP]) : "";
    const char *class_name = col[COL_CLASS] >= 0 ? field(r, col[COL_CLASS]) : "";
    const char *roi = col[COL_ROI] >= 0 ? field(r, col[COL_ROI]) : "";
    if (!row || (*mpp && !parse_mpp(mpp, &row->mpp, ld->e)) ||
        (*roi && !parse_roi(roi, row->roi, ld->e))) {
        return cli_prefix(ld->e, "%s:%d: ", ld->file, r->line);
    }
    row->has_roi = *roi;
    if (*class_name && !(row->class_name = strdup(class_name))) {
        return cli_fail(ld->e, "%s: out of memory", ld->file);
    }
    return true;
}

static bool load_table(struct loader *ld, struct text *t, char sep, struct record *r, bool single)
{
    int col[NCOL];
    if (!map_columns(r, single, col, ld->file, ld->e)) {
        return false;
    }
    ld->hint = col[COL_ID] >= 0 ? "ids must be unique (an empty id is the file name)"
                                : "give an id column to tell them apart";
    int ncol = r->n, rc;
    while ((rc = next_record(t, sep, r, ld->file, ld->e)) == 1) {
        if (!table_row(ld, r, col, ncol)) {
            return false;
        }
    }
    return rc == 0;
}

// One path per line; blank lines and '#' comments are skipped, spaces around a path dropped.
static bool load_list(struct loader *ld, struct text *t)
{
    ld->hint = "list the slides in a CSV with an id column to tell them apart";
    char *p = t->s;
    for (int line = 1;; line++) {
        char *nl = strchr(p, '\n');
        char *end = nl ? nl : p + strlen(p);
        while (p < end && (blank(*p, 0) || *p == '\r')) {
            p++;
        }
        while (end > p && (blank(end[-1], 0) || end[-1] == '\r')) {
            end--;
        }
        *end = 0;
        if (*p && *p != '#' && !add_row(ld, p, "", line)) {
            return cli_prefix(ld->e, "%s:%d: ", ld->file, line);
        }
        if (!nl) {
            return true;
        }
        p = nl + 1;
    }
}

static int by_slide(const void *a, const void *b)
{
    return strcmp(((const cohort_row *)a)->slide, ((const cohort_row *)b)->slide);
}

static bool load_dir(struct loader *ld, cohort_probe_fn probe, void *user)
{
    ld->hint = "rename one, or list the slides in a CSV with an id column";
    DIR *d = opendir(ld->file);
    if (!d) {
        return cli_fail(ld->e, "%s: cannot list: %s", ld->file, strerror(errno));
    }
    size_t n = strlen(ld->file);
    bool slash = n > 0 && ld->file[n - 1] == '/', good = true;
    const struct dirent *de;
    char *path = NULL;
    while (good && (de = readdir(d))) {
        if (de->d_name[0] == '.') {
            continue;
        }
        free(path);
        path = malloc(n + strlen(de->d_name) + 2);
        if (!path) {
            good = cli_fail(ld->e, "%s: out of memory", ld->file);
            break;
        }
        sprintf(path, "%s%s%s", ld->file, slash ? "" : "/", de->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || (probe && !probe(path, user))) {
            continue;
        }
        if (!add_row(ld, path, "", 0)) {
            good = cli_prefix(ld->e, "%s: ", path);
        }
    }
    free(path);
    closedir(d);
    if (good && ld->c->n == 0) {
        good = cli_fail(ld->e, "%s: no slide in this directory that tileheat opens", ld->file);
    }
    // every slide path is the directory's plus a name: sorting paths sorts names
    if (good) {
        qsort(ld->c->rows, ld->c->n, sizeof(cohort_row), by_slide);
    }
    return good;
}

static int by_id(const void *a, const void *b)
{
    const cohort_row *x = *(const cohort_row *const *)a, *y = *(const cohort_row *const *)b;
    int d = strcmp(x->id, y->id);
    return d ? d : (x > y) - (x < y);
}

// Ids name output directories, so they must differ. Of several clashes, the one that comes first
// in the file is reported.
static bool check_unique(struct loader *ld)
{
    const cohort *c = ld->c;
    const cohort_row **v = malloc((size_t)c->n * sizeof(*v));
    if (!v) {
        return cli_fail(ld->e, "%s: out of memory", ld->file);
    }
    for (int i = 0; i < c->n; i++) {
        v[i] = &c->rows[i];
    }
    qsort(v, c->n, sizeof(*v), by_id);
    const cohort_row *first = NULL, *dup = NULL;
    for (int i = 1, start = 0; i < c->n; i++) {
        if (strcmp(v[i]->id, v[start]->id) != 0) {
            start = i;
        } else if (i == start + 1 && (!dup || v[i] < dup)) {
            first = v[start];
            dup = v[i];
        }
    }
    free(v);
    if (!dup) {
        return true;
    }
    if (dup->line == 0) {
        return cli_fail(ld->e, "%s: id '%s' is both %s's and %s's; %s", ld->file, dup->id,
                        strrchr(first->slide, '/') + 1, strrchr(dup->slide, '/') + 1, ld->hint);
    }
    return cli_fail(ld->e, "%s:%d: id '%s' is also line %d's; %s", ld->file, dup->line, dup->id,
                    first->line, ld->hint);
}

bool cohort_load(cohort *c, const char *path, bool single, cohort_probe_fn probe, void *user,
                 cli_err *e)
{
    memset(c, 0, sizeof(*c));
    struct loader ld = {.file = path, .c = c, .e = e};
    struct text t = {0};
    struct record r = {0};
    struct stat st;
    bool good = false;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        good = load_dir(&ld, probe, user);
    } else if (read_text(path, &t, e) && clean_text(&t, path, e)) {
        const char *slash = strrchr(path, '/');
        ld.dir_len = slash ? (size_t)(slash - path) + 1 : 0;
        int sep = detect(&t, &r, path, e);
        good =
            sep > 0 ? load_table(&ld, &t, (char)sep, &r, single) : sep == 0 && load_list(&ld, &t);
        if (good && c->n == 0) {
            good = cli_fail(e, "%s: no slides", path);
        }
    }
    good = good && check_unique(&ld);
    free(t.s);
    free(r.buf);
    free(r.off);
    if (!good) {
        cohort_free(c);
    }
    return good;
}

bool cohort_probe_slide(const char *path, void *user)
{
    (void)user;
    th_slide *s = th_slide_open(path, NULL);
    th_slide_close(s);
    return s != NULL;
}

void cohort_free(cohort *c)
{
    for (int i = 0; i < c->n; i++) {
        free(c->rows[i].id);
        free(c->rows[i].slide);
        free(c->rows[i].class_name);
    }
    free(c->rows);
    memset(c, 0, sizeof(*c));
}
