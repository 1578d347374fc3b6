/* SPDX-License-Identifier: MIT */
/* TAP output for the test programs (see tap.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"

static int planned = -1;
static int run = 0;
static int failed = 0;
static char tmpdir[256];

static void vdesc(const char *fmt, va_list ap)
{
    if (fmt && *fmt) {
        printf(" - ");
        vprintf(fmt, ap);
    }
    printf("\n");
}

static void finish(void)
{
    if (planned == 0) {
        printf("1..%d\n", run);
    } else if (planned > 0 && run != planned) {
        printf("# planned %d tests but ran %d\n", planned, run);
    }
    if (tmpdir[0] && getenv("TH_KEEP_TMP") == NULL) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) {
            printf("# could not remove %s\n", tmpdir);
        }
    }
    fflush(stdout);
    if (failed || (planned > 0 && run != planned)) {
        _exit(1);
    }
}

void plan(int n)
{
    planned = n;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (n > 0) {
        printf("1..%d\n", n);
    }
    atexit(finish);
}

void skip_all(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("1..0 # SKIP ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    _exit(0);
}

void bail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("Bail out! ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    _exit(255);
}

void diag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static bool report(bool cond, const char *fmt, va_list ap)
{
    run++;
    if (!cond) {
        failed++;
    }
    printf("%sok %d", cond ? "" : "not ", run);
    vdesc(fmt, ap);
    return cond;
}

bool ok(bool cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool r = report(cond, fmt, ap);
    va_end(ap);
    return r;
}

bool is_int(int64_t got, int64_t want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool r = report(got == want, fmt, ap);
    va_end(ap);
    if (!r) {
        diag("     got: %lld", (long long)got);
        diag("expected: %lld", (long long)want);
    }
    return r;
}

bool is_double(double got, double want, double eps, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool cond = (isnan(got) && isnan(want)) || fabs(got - want) <= eps;
    bool r = report(cond, fmt, ap);
    va_end(ap);
    if (!r) {
        diag("     got: %.9g", got);
        diag("expected: %.9g (± %g)", want, eps);
    }
    return r;
}

bool is_string(const char *got, const char *want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool cond = got && want ? strcmp(got, want) == 0 : got == want;
    bool r = report(cond, fmt, ap);
    va_end(ap);
    if (!r) {
        diag("     got: '%s'", got ? got : "(null)");
        diag("expected: '%s'", want ? want : "(null)");
    }
    return r;
}

bool like(const char *got, const char *needle, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool r = report(got && strstr(got, needle), fmt, ap);
    va_end(ap);
    if (!r) {
        diag("          got: '%s'", got ? got : "(null)");
        diag("expected part: '%s'", needle);
    }
    return r;
}

void skip(int n, const char *fmt, ...)
{
    for (int i = 0; i < n; i++) {
        va_list ap;
        va_start(ap, fmt);
        run++;
        printf("ok %d # skip ", run);
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
    }
}

static const char *join(char *buf, size_t size, const char *env, const char *fallback,
                        const char *rel)
{
    const char *base = getenv(env);
    snprintf(buf, size, "%s/%s", base ? base : fallback, rel);
    return buf;
}

const char *test_data_path(const char *rel)
{
    static char buf[1024];
    return join(buf, sizeof(buf), "TH_DATA", "../shared/data", rel);
}

const char *test_src_path(const char *rel)
{
    static char buf[1024];
    return join(buf, sizeof(buf), "TH_SRCDIR", ".", rel);
}

const char *test_tmpdir(void)
{
    if (!tmpdir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof(tmpdir), "%s/tileheat-test-XXXXXX", base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
            bail("cannot create a temporary directory");
        }
    }
    return tmpdir;
}
