/* SPDX-License-Identifier: MIT */
/* The cohort table: OUTDIR/cohort.csv and cohort.json, one row per slide of the cohort (every
 * shard's), from the records in OUTDIR/.tileheat. Written at the end of every batch and by
 * `tileheat summarize OUTDIR`, under an flock so that the last writer sees every record. */
#include <config.h>

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli-state.h"

// Growable text.
typedef struct text {
    char *s;
    size_t len, cap;
    bool oom;
} text;

static void put(text *t, const char *s, size_t n)
{
    if (t->oom) {
        return;
    }
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *bigger = realloc(t->s, cap);
        if (!bigger) {
            t->oom = true;
            return;
        }
        t->s = bigger;
        t->cap = cap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = 0;
}

static void puts_(text *t, const char *s)
{
    put(t, s, strlen(s));
}

// One CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
static void put_field(text *t, const char *s, bool first)
{
    if (!first) {
        put(t, ",", 1);
    }
    if (!strpbrk(s, ",\"\r\n")) {
        puts_(t, s);
        return;
    }
    put(t, "\"", 1);
    for (const char *p = s; *p; p++) {
        put(t, p, 1);
        if (*p == '"') {
            put(t, "\"", 1);
        }
    }
    put(t, "\"", 1);
}

// A number with that many decimals (-1: six significant digits); empty if absent.
static void put_number(text *t, const cJSON *v, int decimals)
{
    char buf[64] = "";
    if (cJSON_IsNumber(v) && decimals >= 0) {
        snprintf(buf, sizeof(buf), "%.*f", decimals, v->valuedouble);
    } else if (cJSON_IsNumber(v)) {
        snprintf(buf, sizeof(buf), "%.6g", v->valuedouble);
    }
    put_field(t, buf, false);
}

static const char *str_or(const cJSON *v, const char *dflt)
{
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

// The class names of every record, in the order first seen.
static cJSON *class_names(const cJSON *records)
{
    cJSON *names = cJSON_CreateArray();
    const cJSON *rec, *cls;
    cJSON_ArrayForEach(rec, records)
    {
        cJSON_ArrayForEach(cls, cJSON_GetObjectItem(rec, "classes"))
        {
            const char *name = str_or(cJSON_GetObjectItem(cls, "name"), "");
            bool seen = false;
            const cJSON *n;
            cJSON_ArrayForEach(n, names)
            {
                seen = seen || strcmp(n->valuestring, name) == 0;
            }
            if (!seen) {
                cJSON_AddItemToArray(names, cJSON_CreateString(name));
            }
        }
    }
    return names;
}

static const cJSON *find_class(const cJSON *rec, const char *name)
{
    const cJSON *cls;
    cJSON_ArrayForEach(cls, cJSON_GetObjectItem(rec, "classes"))
    {
        if (strcmp(str_or(cJSON_GetObjectItem(cls, "name"), ""), name) == 0) {
            return cls;
        }
    }
    return NULL;
}

static char *csv_table(const cJSON *records, const cJSON *names)
{
    text t = {0};
    const cJSON *n, *rec;
    puts_(&t, "id,slide,status,error");
    cJSON_ArrayForEach(n, names)
    {
        char col[512];
        snprintf(col, sizeof(col), "percent_%s", n->valuestring);
        put_field(&t, col, false);
        snprintf(col, sizeof(col), "argmax_percent_%s", n->valuestring);
        put_field(&t, col, false);
    }
    puts_(&t, ",tiles_run,tiles_skipped,background_percent,slide_mpp,tile_mpp,mpp_source,"
              "seconds\n");
    cJSON_ArrayForEach(rec, records)
    {
        put_field(&t, str_or(cJSON_GetObjectItem(rec, "id"), ""), true);
        put_field(&t, str_or(cJSON_GetObjectItem(rec, "slide"), ""), false);
        put_field(&t, str_or(cJSON_GetObjectItem(rec, "status"), ""), false);
        put_field(&t, str_or(cJSON_GetObjectItem(rec, "error"), ""), false);
        cJSON_ArrayForEach(n, names)
        {
            const cJSON *cls = find_class(rec, n->valuestring);
            put_number(&t, cJSON_GetObjectItem(cls, "percent"), 4);
            put_number(&t, cJSON_GetObjectItem(cls, "argmax_percent"), 4);
        }
        const cJSON *tiles = cJSON_GetObjectItem(rec, "tiles");
        put_number(&t, cJSON_GetObjectItem(tiles, "run"), 0);
        put_number(&t, cJSON_GetObjectItem(tiles, "skipped"), 0);
        put_number(&t, cJSON_GetObjectItem(rec, "background_percent"), 4);
        put_number(&t, cJSON_GetObjectItem(rec, "slide_mpp"), -1);
        put_number(&t, cJSON_GetObjectItem(rec, "tile_mpp"), -1);
        put_field(&t, str_or(cJSON_GetObjectItem(rec, "mpp_source"), ""), false);
        put_number(&t, cJSON_GetObjectItem(rec, "seconds"), 2);
        put(&t, "\n", 1);
    }
    if (t.oom) {
        free(t.s);
        return NULL;
    }
    return t.s;
}

// Every cohort row's record (a "pending" stub where there is none), in cohort order.
static cJSON *gather(const batch_state *st, const cJSON *rows, int counts[3])
{
    cJSON *records = cJSON_CreateArray();
    const cJSON *row;
    cJSON_ArrayForEach(row, rows)
    {
        const char *id = str_or(cJSON_GetObjectItem(row, "id"), "");
        cJSON *rec = state_read_record(st, id);
        if (!rec) {
            rec = cJSON_CreateObject();
            cJSON_AddStringToObject(rec, "id", id);
            cJSON_AddStringToObject(rec, "slide", str_or(cJSON_GetObjectItem(row, "slide"), ""));
            cJSON_AddStringToObject(rec, "status", "pending");
        }
        cJSON_DeleteItemFromObject(rec, "key");
        const char *status = str_or(cJSON_GetObjectItem(rec, "status"), "");
        counts[strcmp(status, "done") == 0 ? 0 : strcmp(status, "failed") == 0 ? 1 : 2]++;
        cJSON_AddItemToArray(records, rec);
    }
    return records;
}

bool cli_write_summary(const batch_state *st, int counts[3], cli_err *e)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/cohort-rows.json", st->dir);
    if (access(path, F_OK) != 0) {
        return cli_fail(e, "%s: not a batch output folder (no .tileheat/cohort-rows.json)",
                        st->outdir);
    }
    int lock = state_lock_table(st, e);
    if (lock < 0) {
        return false;
    }
    char *rows_text = cli_read_file(path, NULL, e);
    cJSON *rows = rows_text ? cJSON_Parse(rows_text) : NULL;
    free(rows_text);
    bool ok = false;
    if (!cJSON_IsArray(rows)) {
        cli_fail(e, "%s: %s", st->outdir,
                 "not a batch output folder (no readable .tileheat/cohort-rows.json)");
        goto out;
    }
    counts[0] = counts[1] = counts[2] = 0;
    cJSON *records = gather(st, rows, counts);
    cJSON *names = class_names(records);
    char *csv = csv_table(records, names);
    cJSON *root = cJSON_CreateObject();
    cJSON *count = cJSON_AddObjectToObject(root, "counts");
    cJSON_AddNumberToObject(count, "done", counts[0]);
    cJSON_AddNumberToObject(count, "failed", counts[1]);
    cJSON_AddNumberToObject(count, "pending", counts[2]);
    cJSON_AddItemToObject(root, "classes", names);
    cJSON_AddItemToObject(root, "slides", records);
    char *json = cJSON_Print(root);
    bool page = cli_viewer_cohort(st->outdir, root, e); // index.html, if slides have viewers
    cJSON_Delete(root);
    char csv_path[4096], json_path[4096];
    snprintf(csv_path, sizeof(csv_path), "%s/cohort.csv", st->outdir);
    snprintf(json_path, sizeof(json_path), "%s/cohort.json", st->outdir);
    state_remove_temps(csv_path); // under the lock: left by a killed writer
    state_remove_temps(json_path);
    ok = page && csv && json && state_write_file(csv_path, csv, e) &&
         state_write_file(json_path, json, e);
    if (!csv || !json) {
        cli_fail(e, "%s: out of memory", csv_path);
    }
    free(csv);
    free(json);
out:
    cJSON_Delete(rows);
    close(lock); // releases the flock
    return ok;
}

int cli_summarize(cli_opts *o, cli_err *e)
{
    batch_state st;
    int counts[3];
    if (!state_open(&st, o->input, 0, false, e) || !cli_write_summary(&st, counts, e)) {
        return EXIT_FAILURE;
    }
    if (!o->quiet) {
        printf("%d done, %d failed, %d pending: %s/cohort.csv, %s/cohort.json\n", counts[0],
               counts[1], counts[2], st.outdir, st.outdir);
    }
    return EXIT_SUCCESS;
}
