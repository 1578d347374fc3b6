/* SPDX-License-Identifier: MIT */
/* Tests for cli-cohort.c: CSV (quoting, CRLF, BOM), TSV, lists of paths and directories read into
 * rows; relative paths, default ids; and one failing file per error message. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli-cohort.h"
#include "tap.h"

// tmpdir/name; static buffer, valid until the next call
static const char *tmp(const char *name)
{
    static char buf[1024];
    snprintf(buf, sizeof(buf), "%s/%s", test_tmpdir(), name);
    return buf;
}

static const char *put_bytes(const char *name, const char *text, size_t n)
{
    const char *path = tmp(name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(text, 1, n, f) != n || fclose(f) != 0) {
        bail("cannot write %s", path);
    }
    return path;
}

static const char *put(const char *name, const char *text)
{
    return put_bytes(name, text, strlen(text));
}

static void make_dir(const char *name)
{
    if (mkdir(tmp(name), 0700) != 0) {
        bail("cannot create %s", tmp(name));
    }
}

// Load `name` (in tmpdir) written with `text`, expecting a failure whose message holds `needle`.
static void fails(const char *name, const char *text, bool single, const char *needle)
{
    cohort c;
    cli_err e = {{0}};
    bool loaded = cohort_load(&c, put(name, text), single, NULL, NULL, &e);
    ok(!loaded && c.rows == NULL && c.n == 0, "%s fails and leaves no rows", name);
    like(e.msg, needle, "%s: message", name);
    cohort_free(&c);
}

static void test_csv(void)
{
    make_dir("sub");
    // BOM, CRLF, a blank line, quoted roi, a comma and "" inside quotes, a quoted newline
    const char *path = put("sub/a.csv", "\xEF\xBB\xBF"
                                        "slide, id ,mpp,class,roi\r\n"
                                        "x.svs, first ,0.25,tumour,\"10,20,300,400\"\r\n"
                                        "\r\n"
                                        "\"dir/with,comma.svs\",,,,\r\n"
                                        "\"say \"\"hi\"\".tif\",q2, 0.5 ,\"two\r\nlines\",\r\n"
                                        "/abs/y.svs,abs,,,\" 0, 1 ,2,3 \"");
    cohort c;
    cli_err e = {{0}};
    if (!ok(cohort_load(&c, path, true, NULL, NULL, &e), "CSV loads")) {
        diag("%s", e.msg);
        return;
    }
    is_int(c.n, 4, "CSV: 4 rows");
    char want[1024];
    snprintf(want, sizeof(want), "%s/sub/x.svs", test_tmpdir());
    is_string(c.rows[0].slide, want, "CSV: a relative path joins the cohort file's folder");
    is_string(c.rows[0].id, "first", "CSV: unquoted fields are trimmed");
    is_double(c.rows[0].mpp, 0.25, 0, "CSV: mpp");
    is_string(c.rows[0].class_name, "tumour", "CSV: class");
    ok(c.rows[0].has_roi && c.rows[0].roi[0] == 10 && c.rows[0].roi[1] == 20 &&
           c.rows[0].roi[2] == 300 && c.rows[0].roi[3] == 400,
       "CSV: quoted roi");
    is_int(c.rows[0].line, 2, "CSV: line of the first row");
    snprintf(want, sizeof(want), "%s/sub/dir/with,comma.svs", test_tmpdir());
    is_string(c.rows[1].slide, want, "CSV: a comma inside quotes");
    is_string(c.rows[1].id, "with,comma", "CSV: empty id defaults to the file name");
    ok(c.rows[1].mpp == 0 && c.rows[1].class_name == NULL && !c.rows[1].has_roi,
       "CSV: empty mpp, class and roi are not given");
    is_int(c.rows[1].line, 4, "CSV: the blank line counts");
    snprintf(want, sizeof(want), "%s/sub/say \"hi\".tif", test_tmpdir());
    is_string(c.rows[2].slide, want, "CSV: \"\" is a quote");
    is_double(c.rows[2].mpp, 0.5, 0, "CSV: mpp with spaces around it");
    is_string(c.rows[2].class_name, "two\nlines", "CSV: a newline inside quotes (CRLF to LF)");
    is_string(c.rows[3].slide, "/abs/y.svs", "CSV: an absolute path as written");
    is_int(c.rows[3].line, 7, "CSV: a row after a quoted newline starts two lines later");
    ok(c.rows[3].has_roi && c.rows[3].roi[0] == 0 && c.rows[3].roi[1] == 1 &&
           c.rows[3].roi[2] == 2 && c.rows[3].roi[3] == 3,
       "CSV: roi with spaces, x = 0, at the end of the file without a newline");
    cohort_free(&c);
    ok(c.rows == NULL && c.n == 0, "cohort_free empties the cohort");
    cohort_free(&c); // twice is fine
}

static void test_tsv(void)
{
    // named .txt: the header decides the format, not the extension
    const char *path = put("t.txt", "slide\tid\troi\tmpp\n"
                                    " a.svs \tA\t1,2,3,4\t\n"
                                    "b.svs\t\t\t0.5\n"
                                    "\n"
                                    "\"q\",r.svs\tq\t\t\n");
    cohort c;
    cli_err e = {{0}};
    if (!ok(cohort_load(&c, path, false, NULL, NULL, &e), "TSV loads")) {
        diag("%s", e.msg);
        return;
    }
    is_int(c.n, 3, "TSV: 3 rows");
    char want[1024];
    snprintf(want, sizeof(want), "%s/a.svs", test_tmpdir());
    is_string(c.rows[0].slide, want, "TSV: trimmed and joined");
    ok(c.rows[0].has_roi && c.rows[0].roi[0] == 1 && c.rows[0].roi[3] == 4, "TSV: unquoted roi");
    is_string(c.rows[1].id, "b", "TSV: default id");
    is_double(c.rows[1].mpp, 0.5, 0, "TSV: mpp");
    snprintf(want, sizeof(want), "%s/\"q\",r.svs", test_tmpdir());
    is_string(c.rows[2].slide, want, "TSV: quotes and commas are plain text");
    is_int(c.rows[2].line, 5, "TSV: line");
    cohort_free(&c);
}

static void test_list(void)
{
    const char *path = put("list.txt", "# my slides\n"
                                       "\n"
                                       "  /abs/one.svs  \r\n"
                                       "two.tiff\n"
                                       "   # an indented comment\n"
                                       "dir/three,3.ndpi\n"
                                       "noext");
    cohort c;
    cli_err e = {{0}};
    if (!ok(cohort_load(&c, path, false, NULL, NULL, &e), "list loads")) {
        diag("%s", e.msg);
        return;
    }
    is_int(c.n, 4, "list: 4 rows");
    is_string(c.rows[0].slide, "/abs/one.svs", "list: spaces and CR trimmed, absolute kept");
    is_int(c.rows[0].line, 3, "list: line numbers count comments and blanks");
    char want[1024];
    snprintf(want, sizeof(want), "%s/two.tiff", test_tmpdir());
    is_string(c.rows[1].slide, want, "list: relative joined");
    is_string(c.rows[2].id, "three,3", "list: the whole line is the path");
    is_int(c.rows[2].line, 6, "list: line after a comment");
    is_string(c.rows[3].id, "noext", "list: a name without extension is its own id");
    cohort_free(&c);

    // a header without `slide` in a file not named .csv is a list of paths
    ok(cohort_load(&c, put("ids.txt", "id,mpp\nA,0.5\n"), false, NULL, NULL, &e) && c.n == 2 &&
           strcmp(c.rows[0].id, "id,mpp") == 0,
       "a header without slide in a .txt is a list of paths");
    cohort_free(&c);
}

static void test_relative_cwd(void)
{
    char cwd[1024];
    if (!getcwd(cwd, sizeof(cwd)) || chdir(test_tmpdir()) != 0) {
        bail("cannot change to %s", test_tmpdir());
    }
    put("here.csv", "slide\nx.svs\n../up/y.svs\n");
    cohort c;
    cli_err e = {{0}};
    ok(cohort_load(&c, "here.csv", false, NULL, NULL, &e), "cohort file without a folder loads");
    is_string(c.n == 2 ? c.rows[0].slide : NULL, "x.svs", "no folder: the path as written");
    is_string(c.n == 2 ? c.rows[1].slide : NULL, "../up/y.svs", "no folder: ../ kept");
    cohort_free(&c);
    if (chdir(cwd) != 0) {
        bail("cannot change back to %s", cwd);
    }
}

static void test_errors(void)
{
    cohort c;
    cli_err e = {{0}};
    ok(!cohort_load(&c, "/nonexistent/x.csv", false, NULL, NULL, &e) && c.rows == NULL,
       "a missing file fails");
    like(e.msg, "/nonexistent/x.csv: cannot open: No such file or directory", "missing: message");

    fails("dup.csv", "slide\nx/CMU.svs\nother.svs\n\ny/CMU.tiff\nz/CMU.svs\n", false,
          "dup.csv:5: id 'CMU' is also line 2's; give an id column to tell them apart");
    fails("dupid.csv", "slide,id\na.svs,b\nb.svs,\n", false,
          "dupid.csv:3: id 'b' is also line 2's");
    fails("unk.csv", "slide,foo\na.svs,1\n", true,
          "unk.csv:1: unknown column 'foo' (columns: slide, id, mpp, class, roi)");
    fails("Slide.csv", "Slide,id\na.svs,a\n", true, "Slide.csv:1: no 'slide' column");
    fails("class.csv", "slide,class\na.svs,x\n", false,
          "class.csv:1: column 'class' applies to single only");
    fails("twice.tsv", "slide\tid\tid\na.svs\ta\tb\n", false,
          "twice.tsv:1: column 'id' appears twice");
    fails("noslide.csv", "id,mpp\nA,0.5\n", false,
          "noslide.csv:1: no 'slide' column in the header (got: id, mpp)");
    fails("noslide.tsv", "\n id\tmpp\n", false,
          "noslide.tsv:2: no 'slide' column in the header (got: id, mpp)");
    fails("fields.csv", "slide,id,mpp,roi\na.svs,a,1,\"1,2,3,4\"\nb.svs,b,1\n", false,
          "fields.csv:3: 3 fields, the header has 4");
    fails("fields1.tsv", "slide\tid\na.svs\n", false, "fields1.tsv:2: 1 field, the header has 2");
    fails("noslidefield.csv", "slide,id\n,x\n", false,
          "noslidefield.csv:2: the slide path is empty");

    static const char *const bad_mpp[] = {"x", "0", "-1", "inf", "nan", "1.5um"};
    for (size_t i = 0; i < sizeof(bad_mpp) / sizeof(*bad_mpp); i++) {
        char name[32], text[100], needle[100];
        snprintf(name, sizeof(name), "mpp%zu.csv", i);
        snprintf(text, sizeof(text), "slide,mpp\na.svs,0.5\nb.svs,%s\n", bad_mpp[i]);
        snprintf(needle, sizeof(needle), "%s:3: mpp: expected a number > 0, got '%s'", name,
                 bad_mpp[i]);
        fails(name, text, false, needle);
    }
    static const char *const bad_roi[] = {
        "1,2,3",     "1,2,0,4", "1,2,3,0", "-1,2,3,4",
        "1,2,3,4,5", "a,b,c,d", "1;2;3;4", "1,2,3,99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_roi) / sizeof(*bad_roi); i++) {
        char name[32], text[100], needle[200];
        snprintf(name, sizeof(name), "roi%zu.tsv", i);
        snprintf(text, sizeof(text), "slide\troi\na.svs\t%s\n", bad_roi[i]);
        snprintf(needle, sizeof(needle),
                 "%s:2: roi: expected X,Y,W,H in level-0 pixels (W, H > 0), got '%s'", name,
                 bad_roi[i]);
        fails(name, text, false, needle);
    }
    char long_id[260];
    memset(long_id, 'a', 201);
    long_id[201] = 0;
    const char *const bad_id[] = {"a/b", "..", ".", ".x", "a\tb", long_id};
    static const char *const why[] = {"contains '/'",
                                      "starts with '.'",
                                      "starts with '.'",
                                      "starts with '.'",
                                      "contains a control character",
                                      "is longer than 200 bytes"};
    for (size_t i = 0; i < sizeof(bad_id) / sizeof(*bad_id); i++) {
        char name[32], text[400], needle[400];
        snprintf(name, sizeof(name), "id%zu.csv", i);
        snprintf(text, sizeof(text), "slide,id\n\"a.svs\",\"%s\"\n", bad_id[i]);
        snprintf(needle, sizeof(needle), "%s:2: id '%s': %s", name, bad_id[i], why[i]);
        fails(name, text, false, needle);
    }
    fails("hidden.csv", "slide\ndir/.hidden.svs\n", false,
          "hidden.csv:2: id '.hidden.svs' (from the file name): starts with '.'");
    fails("trailing.txt", "dir/\n", false, "trailing.txt:1: id '' (from the file name): is empty");

    fails("empty.txt", "", false, "empty.txt: no slides");
    fails("blank.csv", " \r\n\n\t\n", false, "blank.csv: no slides");
    fails("comments.txt", "# nothing\n", false, "comments.txt: no slides");
    fails("header.csv", "slide,id\r\n", false, "header.csv: no slides");
    fails("open.csv", "slide,id\na.svs,\"x\nb.svs,y\n", false,
          "open.csv:2: a quoted field is not closed");
    fails("after.csv", "slide,id\na.svs,\"x\"y\n", false,
          "after.csv:2: text after a closing quote");
    fails("openhdr.csv", "\"slide,id\n", false, "openhdr.csv:1: a quoted field is not closed");
    put_bytes("binary.svs", "II*\0\x08\0\0\0", 8);
    cli_err e2 = {{0}};
    ok(!cohort_load(&c, tmp("binary.svs"), false, NULL, NULL, &e2), "a binary file fails");
    like(e2.msg, "binary.svs:1: a NUL byte", "binary: message");
}

static bool slide_ext(const char *path, void *user)
{
    ++*(int *)user;
    size_t n = strlen(path);
    return (n > 4 && strcmp(path + n - 4, ".svs") == 0) ||
           (n > 4 && strcmp(path + n - 4, ".tif") == 0);
}

static void test_dir(void)
{
    make_dir("d");
    make_dir("d/sub.svs"); // a directory, though the probe would take its name
    static const char *const names[] = {"d/b.svs", "d/a.txt", "d/.hidden.svs",
                                        "d/Z.svs", "d/c.tif", "d/sub.svs/inner.svs"};
    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
        put(names[i], "x");
    }
    cohort c;
    cli_err e = {{0}};
    int calls = 0;
    if (!ok(cohort_load(&c, tmp("d"), false, slide_ext, &calls, &e), "directory loads")) {
        diag("%s", e.msg);
        return;
    }
    is_int(calls, 4, "probe: called for the regular, non-hidden files only");
    char got[1024] = "";
    for (int i = 0; i < c.n; i++) {
        snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s:%d", i ? " " : "",
                 c.rows[i].id, c.rows[i].line);
    }
    is_string(got, "Z:0 b:0 c:0", "directory: accepted files, sorted bytewise, line 0");
    char want[1024];
    snprintf(want, sizeof(want), "%s/d/Z.svs", test_tmpdir());
    is_string(c.n > 0 ? c.rows[0].slide : NULL, want, "directory: slide is DIR/NAME");
    cohort_free(&c);

    char slash[1024];
    snprintf(slash, sizeof(slash), "%s/", tmp("d"));
    ok(cohort_load(&c, slash, false, NULL, NULL, &e), "directory with a trailing slash loads");
    is_int(c.n, 4, "no probe: every regular, non-hidden file");
    snprintf(want, sizeof(want), "%s/d/Z.svs", test_tmpdir());
    is_string(c.n > 0 ? c.rows[0].slide : NULL, want, "trailing slash: no double slash");
    cohort_free(&c);

    make_dir("dup");
    put("dup/CMU.svs", "x");
    put("dup/CMU.tif", "x");
    put("dup/other.svs", "x");
    ok(!cohort_load(&c, tmp("dup"), false, slide_ext, &calls, &e) && c.n == 0,
       "directory with a duplicate id fails");
    like(e.msg, "dup: id 'CMU' is both CMU.svs's and CMU.tif's", "directory duplicate: message");

    make_dir("none");
    put("none/notes.txt", "x");
    ok(!cohort_load(&c, tmp("none"), false, slide_ext, &calls, &e) && c.n == 0,
       "directory without a slide fails");
    like(e.msg, "none: no slide in this directory that tileheat opens", "no slide: message");
}

static bool accept_all(const char *path, void *user)
{
    return true;
}

static void test_data_dir(void)
{
    cohort c;
    cli_err e = {{0}};
    if (!ok(cohort_load(&c, test_data_path("slides"), false, accept_all, NULL, &e),
            "the shared slides directory loads")) {
        diag("%s", e.msg);
        return;
    }
    is_int(c.n, 7, "7 slides");
    char got[1024] = "";
    for (int i = 0; i < c.n; i++) {
        snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? " " : "", c.rows[i].id);
    }
    is_string(got,
              "CMU-1-Small-Region.generic-pyramid CMU-1-Small-Region TCGA-CR-7395-01A-01-TS1 "
              "boxes patch-8-level small test3-DAPI-2",
              "sorted by file name; ids drop the last extension only");
    char want[1024];
    snprintf(want, sizeof(want), "%s", test_data_path("slides/CMU-1-Small-Region.svs"));
    is_string(c.n > 1 ? c.rows[1].slide : NULL, want, "slide path of row 2");
    cohort_free(&c);
}

int main(void)
{
    plan(0);
    test_csv();
    test_tsv();
    test_list();
    test_relative_cwd();
    test_errors();
    test_dir();
    test_data_dir();
    return 0;
}
