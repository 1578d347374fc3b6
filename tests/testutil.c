/* SPDX-License-Identifier: MIT */
/* Helpers shared by several test programs (and bench/): splitmix64 PRNG, .ref file reader. */
#include <config.h>

#include "tap.h"
#include "testutil.h"
#include "th-private.h"

/* ---------------------------------------------------------------- PRNG */

float tu_rng_float(tu_rng *rng, float lo, float hi)
{
    uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return lo + (hi - lo) * (float)((double)(z >> 40) / 16777216.0);
}

void tu_rng_fill(tu_rng *rng, float *p, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = tu_rng_float(rng, lo, hi);
    }
}

void *tu_xcalloc(size_t n, size_t size)
{
    void *p = th_calloc(n ? n : 1, size, NULL);
    if (!p) {
        bail("out of memory");
    }
    return p;
}

float *tu_rng_floats(tu_rng *rng, size_t n, float lo, float hi)
{
    float *p = tu_xcalloc(n, sizeof(float));
    tu_rng_fill(rng, p, n, lo, hi);
    return p;
}

/* ---------------------------------------------------------------- .ref files */

// Record a "block <name> <count>" line; *off is the data offset of the next block.
static bool ref_block_line(tu_ref *r, const char *line, size_t *off)
{
    size_t count;
    char name[32];
    if (sscanf(line, "block %31s %zu", name, &count) != 2) {
        return false;
    }
    if (r->n_blocks < TU_REF_MAX) {
        snprintf(r->block_name[r->n_blocks], sizeof(r->block_name[0]), "%s", name);
        r->block_count[r->n_blocks] = count;
        r->block_off[r->n_blocks++] = *off;
        *off += count * 4;
    }
    return true;
}

bool tu_ref_load(tu_ref *r, const char *name, tu_ref_line_fn *line, void *ctx)
{
    char rel[256];
    memset(r, 0, sizeof(*r));
    snprintf(rel, sizeof(rel), "tests/data/models/%s.ref", name);
    r->buf = th_read_file(test_src_path(rel), &r->len, NULL);
    if (!r->buf) {
        return false;
    }
    size_t off = 0; // data bytes after the header
    char *p = r->buf, *end = r->buf + r->len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            return false;
        }
        *nl = 0;
        if (strcmp(p, "data") == 0) {
            size_t start = (size_t)(nl + 1 - r->buf);
            for (int i = 0; i < r->n_blocks; i++) {
                r->block_off[i] += start;
            }
            return start + off == r->len;
        }
        if (!ref_block_line(r, p, &off)) {
            line(ctx, p);
        }
        p = nl + 1;
    }
    return false;
}

float *tu_ref_block(const tu_ref *r, const char *name, size_t *count)
{
    for (int i = 0; i < r->n_blocks; i++) {
        if (strcmp(r->block_name[i], name) == 0) {
            float *v = th_calloc(r->block_count[i] + 1, sizeof(float), NULL);
            const uint8_t *b = (const uint8_t *)r->buf + r->block_off[i];
            for (size_t j = 0; v && j < r->block_count[i]; j++) {
                uint32_t u = (uint32_t)b[4 * j] | (uint32_t)b[4 * j + 1] << 8 |
                             (uint32_t)b[4 * j + 2] << 16 | (uint32_t)b[4 * j + 3] << 24;
                memcpy(&v[j], &u, 4);
            }
            *count = r->block_count[i];
            return v;
        }
    }
    return NULL;
}

double tu_max_rel_diff(const float *got, const float *want, size_t n)
{
    double scale = 0, diff = 0;
    for (size_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs(want[i]));
        diff = fmax(diff, fabs((double)got[i] - want[i]));
    }
    return scale > 0 ? diff / scale : diff;
}
