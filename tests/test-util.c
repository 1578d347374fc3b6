/* SPDX-License-Identifier: MIT */
/* Tests for error.c and util.c: first error sticks, prefixes, number parsing, temp-then-rename. */
#include <config.h>

#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "th-private.h"

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int count_entries(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1) {
        n = -1;
    }
    if (p) {
        pclose(p);
    }
    return n;
}

static void test_errors(void)
{
    th_error *err = NULL;
    th_error_set(&err, "first %d", 1);
    th_error_set(&err, "second");
    is_string(th_error_message(err), "first 1", "the first error sticks");
    th_error_prefix(&err, "tile %d,%d: ", 3, 4);
    is_string(th_error_message(err), "tile 3,4: first 1", "prefix adds context in front");
    th_error *other = NULL;
    th_error_set(&other, "later");
    th_error_propagate(&err, &other);
    ok(other == NULL, "propagate empties the source");
    is_string(th_error_message(err), "tile 3,4: first 1", "propagate keeps the first error");
    th_error_free(err);
    th_error_set(NULL, "ignored"); // a NULL error pointer is allowed
    th_error_free(NULL);
    ok(true, "NULL error pointers are accepted");
}

static void test_numbers(void)
{
    int i;
    int64_t l;
    double d, list[4];
    ok(th_parse_int("42", &i) && i == 42, "int parses");
    ok(!th_parse_int("42x", &i), "trailing junk is refused");
    ok(!th_parse_int("", &i), "empty is refused");
    ok(!th_parse_int("99999999999", &i), "int overflow is refused");
    ok(th_parse_int64("99999999999", &l) && l == 99999999999LL, "int64 parses");
    ok(th_parse_double("0.00392156862745098", &d) && fabs(d - 1 / 255.0) < 1e-15,
       "double parses");
    ok(!th_parse_double("nan", &d) && !th_parse_double("inf", &d), "non-finite is refused");
    is_int(th_parse_double_list("0.485, 0.456 ,0.406", list, 4), 3, "list of three");
    is_double(list[1], 0.456, 1e-12, "list value");
    is_int(th_parse_double_list("1,,2", list, 4), -1, "empty item is refused");
    is_int(th_parse_double_list("1,2,", list, 4), -1, "trailing comma is refused");
    is_int(th_parse_double_list("1,2,3,4,5", list, 4), -1, "too many items is refused");
    is_int(th_parse_double_list("1,x", list, 4), -1, "bad number is refused");
}

static void test_outfile(void)
{
    char path[512];
    th_error *err = NULL;
    th_outfile out;
    const char *dir = test_tmpdir();
    snprintf(path, sizeof(path), "%s/out.txt", dir);
    ok(th_outfile_open(&out, path, &err), "outfile opens");
    th_outfile_printf(&out, "hello %d\n", 7);
    ok(!exists(path), "nothing at the final path before commit");
    ok(th_outfile_commit(&out, &err), "commit succeeds");
    ok(exists(path), "file exists after commit");
    is_int(count_entries(dir), 1, "no temporary file left after commit");

    ok(th_outfile_open(&out, path, &err), "second open");
    th_outfile_printf(&out, "partial");
    th_outfile_abort(&out);
    FILE *fp = th_fopen(path, "r", &err);
    char line[64] = "";
    ok(fp && fgets(line, sizeof(line), fp), "old file still readable after abort");
    is_string(line, "hello 7\n", "abort leaves the previous file untouched");
    if (fp) {
        fclose(fp);
    }
    is_int(count_entries(dir), 1, "no temporary file left after abort");

    snprintf(path, sizeof(path), "%s/no/such/dir/out.txt", dir);
    ok(!th_outfile_open(&out, path, &err), "open in a missing directory fails");
    ok(err && strchr(th_error_message(err), '\n') == NULL, "with a one-line message");
    th_error_free(err);
    err = NULL;
    ok(th_fopen(path, "r", &err) == NULL && err, "th_fopen reports errors");
    th_error_free(err);
}

// Sizes near SIZE_MAX: an error, never a small buffer from a wrapped round-up.
static void test_huge_sizes(void)
{
    const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - ((size_t)1 << 20)};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        th_error *e1 = NULL, *e2 = NULL;
        void *a = th_malloc(sizes[i], &e1), *b = th_malloc_aligned(sizes[i], &e2);
        ok(!a && !b && e1 && e2 && strstr(th_error_message(e1), "out of memory"),
           "th_malloc and th_malloc_aligned(%zu) fail with a message", sizes[i]);
        th_free(a);
        th_free(b);
        th_error_free(e1);
        th_error_free(e2);
    }
}

// Reading a directory or a FIFO fails at once with what it is.
static void test_input_kinds(void)
{
    th_error *err = NULL;
    size_t len;
    bool refused = !th_read_file(test_tmpdir(), &len, &err);
    ok(refused && err && strstr(th_error_message(err), "a directory, not a file"),
       "a directory: %s", err ? th_error_message(err) : "no error");
    th_error_free(err);
    err = NULL;
    char fifo[512];
    snprintf(fifo, sizeof(fifo), "%s/fifo", test_tmpdir());
    th_file_view v;
    bool made = mkfifo(fifo, 0600) == 0;
    refused = made && !th_map_file(fifo, &v, &err);
    ok(refused && err && strstr(th_error_message(err), "a FIFO (named pipe), not a file"),
       "a FIFO is refused without blocking: %s", err ? th_error_message(err) : "no error");
    th_error_free(err);
    unlink(fifo);
}

int main(void)
{
    plan(0);
    test_errors();
    test_numbers();
    test_outfile();
    test_huge_sizes();
    test_input_kinds();
    return 0;
}
