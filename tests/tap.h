/* SPDX-License-Identifier: MIT */
/* A small TAP producer in the style of c-tap-harness: plan, ok, is_*, diag, skip_all, bail.
 * Each test program exits non-zero if any test failed, so it also works without a TAP driver. */
#ifndef TH_TAP_H
#define TH_TAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define TAP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TAP_PRINTF(f, a)
#endif

/* Declare n tests (0: print the plan at exit, "no_plan"). Registers an exit handler. */
void plan(int n);
void skip_all(const char *fmt, ...) TAP_PRINTF(1, 2);
void bail(const char *fmt, ...) TAP_PRINTF(1, 2);
void diag(const char *fmt, ...) TAP_PRINTF(1, 2);

bool ok(bool cond, const char *fmt, ...) TAP_PRINTF(2, 3);
bool is_int(int64_t got, int64_t want, const char *fmt, ...) TAP_PRINTF(3, 4);
bool is_double(double got, double want, double eps, const char *fmt, ...) TAP_PRINTF(4, 5);
bool is_string(const char *got, const char *want, const char *fmt, ...) TAP_PRINTF(3, 4);
/* Passes when `got` is non-NULL and contains `needle`. */
bool like(const char *got, const char *needle, const char *fmt, ...) TAP_PRINTF(3, 4);
void skip(int n, const char *fmt, ...) TAP_PRINTF(2, 3);

/* Path to a file of the shared real data ($TH_DATA, default ../shared/data next to the source
 * tree) or of the repo's tests/data ($TH_SRCDIR/tests/data). Static buffer, valid until the next
 * call of the same function. */
const char *test_data_path(const char *rel);
const char *test_src_path(const char *rel);
/* A fresh temporary directory for this test program (removed at exit if empty of failures). */
const char *test_tmpdir(void);

#endif
