/* SPDX-License-Identifier: MIT */
/*
 * Internal umbrella header: config, the public API, error helpers, checked allocation and I/O
 * wrappers (util.c), and the poison list that bans the raw calls elsewhere.
 * Every src/ file starts with `#include <config.h>` (feature macros before any system header),
 * then its system and library headers, and includes this header LAST, so the poison list does
 * not trip over declarations in those headers.
 */
#ifndef TH_PRIVATE_H
#define TH_PRIVATE_H

#include <config.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "tileheat.h"

#define TH_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TH_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TH_CLAMP(v, lo, hi) TH_MIN(TH_MAX((v), (lo)), (hi))
#define TH_FREE(p)                                                                                 \
    do {                                                                                           \
        th_free(p);                                                                                \
        (p) = NULL;                                                                                \
    } while (0)

#if defined(__GNUC__)
#define TH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TH_PRINTF(f, a)
#endif

/* ---- errors (error.c). Setting an error that is already set keeps the first one. */
void th_error_set(th_error **err, const char *fmt, ...) TH_PRINTF(2, 3);
void th_error_prefix(th_error **err, const char *fmt, ...) TH_PRINTF(2, 3);
/* Move *src into *dst if *dst is empty (first error sticks); *src becomes NULL. */
void th_error_propagate(th_error **dst, th_error **src);

/* ---- memory (util.c). Allocation failure is an error, never an abort. Sizes are checked for
 * overflow. th_malloc_aligned returns 64-byte aligned memory, freed with th_free too. */
void *th_malloc(size_t size, th_error **err);
void *th_calloc(size_t n, size_t size, th_error **err);
void *th_malloc_aligned(size_t size, th_error **err);
/* For large buffers (th_malloc uses it from 4 MB): 2 MB aligned and advised to use transparent
 * huge pages, so that filling takes one page fault per 2 MB instead of per 4 KB (each costs
 * microseconds in a VM). Not zeroed. Freed with th_free. */
void *th_malloc_huge(size_t size, th_error **err);

/* Vectorise the loop that follows (OpenMP's simd; a no-op without OpenMP). -O2 alone leaves
 * most loops scalar. Not a parallel region: the iterations stay on the calling thread. */
#ifdef _OPENMP
#define TH_SIMD _Pragma("omp simd")
#else
#define TH_SIMD
#endif
/* Threads for a parallel region: wanted if > 0, else omp_get_max_threads(); 1 without OpenMP.
 * And the calling thread's number inside one (0 without OpenMP). */
int th_threads(int wanted);
/* Planning (oneDNN sizes its kernels and runs weight reorders with OpenMP's default threads):
 * make `threads` (0: as it is) the default until th_plan_threads_end(the returned value). */
int th_plan_threads_begin(int threads);
void th_plan_threads_end(int outer);
int th_thread_num(void);

void *th_realloc(void *p, size_t size, th_error **err);
char *th_strdup(const char *s, th_error **err);
/* n bytes of p in a new allocation. */
void *th_memdup(const void *p, size_t n, th_error **err);
char *th_strdup_printf(th_error **err, const char *fmt, ...) TH_PRINTF(2, 3);
void th_free(void *p);
/* n*size without overflow; false (and an error) if it would overflow. */
bool th_size_mul(size_t n, size_t size, size_t *out, th_error **err);

/* ---- numbers (util.c): whole string must parse. */
bool th_parse_int(const char *s, int *out);
bool th_parse_int64(const char *s, int64_t *out);
bool th_parse_double(const char *s, double *out);
/* Split "a, b ,c" into up to `max` trimmed doubles; returns how many, or -1 on a bad number. */
int th_parse_double_list(const char *s, double *out, int max);

/* ---- files (util.c). */
FILE *th_fopen(const char *path, const char *mode, th_error **err);
/* Whole file into memory (for model files); *len receives the size. Caller frees with th_free. */
void *th_read_file(const char *path, size_t *len, th_error **err);

/* The SHA-256 of a file's bytes in lowercase hex (65 bytes with the NUL). */
bool th_sha256_file(const char *path, char hex[65], th_error **err);

/* A whole file, read-only: mapped when it is a regular file (its pages are the page cache's, so
 * a 59 MB model costs no fresh memory; in a VM fresh memory is what loading costs), else read
 * with th_read_file. Released with th_unmap_file. */
typedef struct th_file_view {
    const void *data;
    size_t len;
    bool mapped;
} th_file_view;
bool th_map_file(const char *path, th_file_view *v, th_error **err);
void th_unmap_file(th_file_view *v);

/* An output file written under a temporary name in the same directory, and renamed over `path`
 * only by th_outfile_commit. th_outfile_abort (or commit failing) removes the temporary file. */
typedef struct th_outfile {
    FILE *fp;
    char *path;
    char *tmp_path;
} th_outfile;
bool th_outfile_open(th_outfile *out, const char *path, th_error **err);
bool th_outfile_commit(th_outfile *out, th_error **err);
void th_outfile_abort(th_outfile *out);
/* Formatted write into the file (errors surface at commit). */
void th_outfile_printf(th_outfile *out, const char *fmt, ...) TH_PRINTF(2, 3);

/* Ban raw calls outside their wrappers (OpenSlide's poison list). A wrapper file defines
 * TH_ALLOW_RAW before including this header and marks each raw use with // th-allow. */
#if defined(__GNUC__) && !defined(TH_ALLOW_RAW)
#pragma GCC poison malloc calloc realloc strdup atoi atol strtod fopen TIFFOpen
#endif

#endif /* TH_PRIVATE_H */
