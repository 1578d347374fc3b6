/* SPDX-License-Identifier: MIT */
/* Class activation maps (Zhou et al. 2016): CAM_c = Σ_k W[c,k]·A_k over the feature map A that
 * feeds global average pooling. The dense bias is left out: it shifts every cell of a class by
 * the same amount and carries no location. Also the sparse slide-wide CAM grid, the display
 * range and the bilinear sampler that stitches tiles without seams. */
#include <config.h>

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cam.h"
#include "result.h"

/* ---------------------------------------------------------------- the grid */

size_t th_camgrid_budget = (size_t)256 << 20;

// The grid's storage: anonymous memory, or above the budget an unlinked sparse temporary file.
static bool map_storage(th_camgrid *cg, th_error **err)
{
    cg->fd = -1;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    if (cg->map_bytes > th_camgrid_budget) {
        const char *dir = getenv("TMPDIR");
        char *path = th_strdup_printf(err, "%s/tileheat-cam-XXXXXX", dir && *dir ? dir : "/tmp");
        if (!path) {
            return false;
        }
        cg->fd = mkstemp(path);
        if (cg->fd >= 0) {
            unlink(path); // gone with the process, whatever happens
        }
        if (cg->fd < 0 || ftruncate(cg->fd, (off_t)cg->map_bytes) != 0) {
            th_error_set(err, "%s: cannot create the CAM grid's temporary file: %s", path,
                         strerror(errno));
            th_free(path);
            return false;
        }
        th_free(path);
        flags = MAP_SHARED;
    }
    void *p = mmap(NULL, cg->map_bytes, PROT_READ | PROT_WRITE, flags, cg->fd, 0);
    if (p == MAP_FAILED) {
        th_error_set(err, "cannot map %zu bytes for the CAM grid: %s", cg->map_bytes,
                     strerror(errno));
        return false;
    }
#ifdef MADV_HUGEPAGE
    if (cg->fd < 0) {
        madvise(p, cg->map_bytes, MADV_HUGEPAGE); // advice only (see th_malloc_huge)
    }
#endif
    cg->base = p;
    return true;
}

bool th_camgrid_init(th_camgrid *cg, const th_grid *grid, int n_classes, int cam_w, int cam_h,
                     th_error **err)
{
    memset(cg, 0, sizeof(*cg));
    cg->fd = -1;
    atomic_init(&cg->touched, 0);
    // Overlapping tiles line up only if the stride is a whole number of feature cells.
    if (grid->stride_x * cam_w % grid->tile_w || grid->stride_y * cam_h % grid->tile_h) {
        th_error_set(err, "stride %d is not a multiple of the model's feature stride (%g px)",
                     grid->stride_x, (double)grid->tile_w / cam_w);
        return false;
    }
    cg->n_classes = n_classes;
    cg->chunk_w = cam_w;
    cg->chunk_h = cam_h;
    cg->step_x = grid->stride_x * cam_w / grid->tile_w;
    cg->step_y = grid->stride_y * cam_h / grid->tile_h;
    cg->gw = (int64_t)(grid->cols - 1) * cg->step_x + cam_w;
    cg->gh = (int64_t)(grid->rows - 1) * cg->step_y + cam_h;
    cg->chunks_x = (cg->gw + cam_w - 1) / cam_w;
    cg->chunks_y = (cg->gh + cam_h - 1) / cam_h;
    cg->x0 = (double)grid->x0;
    cg->y0 = (double)grid->y0;
    cg->cell_w0 = grid->tile_w * grid->scale / cam_w;
    cg->cell_h0 = grid->tile_h * grid->scale / cam_h;
    cg->chunk_floats = (size_t)(n_classes + 1) * cam_w * cam_h;
    size_t n;
    if (!th_size_mul((size_t)cg->chunks_x, (size_t)cg->chunks_y, &n, err) ||
        !th_size_mul(n, cg->chunk_floats * sizeof(float), &cg->map_bytes, err)) {
        return false;
    }
    cg->used = th_calloc(n, 1, err);
    return cg->used && map_storage(cg, err);
}

void th_camgrid_free(th_camgrid *cg)
{
    if (cg->base) {
        munmap(cg->base, cg->map_bytes);
        cg->base = NULL;
    }
    if (cg->fd >= 0) {
        close(cg->fd);
        cg->fd = -1;
    }
    TH_FREE(cg->used);
}

void th_camgrid_touch(const th_camgrid *cg, size_t bytes)
{
    if (cg->fd < 0) {
        return;
    }
    th_camgrid *m = (th_camgrid *)cg; // the counter is bookkeeping, not the grid's contents
    long long limit = (long long)(th_camgrid_budget / 64 + 1); // 4 MB by default
    if (atomic_fetch_add(&m->touched, (long long)bytes) + (long long)bytes >= limit) {
        atomic_store(&m->touched, 0);
        // Shared file pages leave the process; their data stays in the page cache and file.
        madvise(cg->base, cg->map_bytes, MADV_DONTNEED);
    }
}

static size_t chunk_cells(const th_camgrid *cg)
{
    return (size_t)cg->chunk_w * cg->chunk_h;
}

static float *chunk_at(const th_camgrid *cg, int64_t i)
{
    return cg->used[i] ? cg->base + (size_t)i * cg->chunk_floats : NULL;
}

// Chunk i, marked used (its pages become resident as it is written).
static float *use_chunk(th_camgrid *cg, int64_t i)
{
    cg->used[i] = 1;
    return chunk_at(cg, i); // (n_classes + 1, chunk_h, chunk_w)
}

bool th_camgrid_disjoint(const th_camgrid *cg)
{
    return cg->step_x == cg->chunk_w && cg->step_y == cg->chunk_h;
}

// A tile that is exactly chunk i (always so without --stride), added plane by plane: the same
// sums, cell by cell, as the general loop in th_camgrid_add.
static void add_aligned(th_camgrid *cg, int64_t i, const float *cam)
{
    size_t cells = chunk_cells(cg);
    float *restrict ch = use_chunk(cg, i);
    for (int c = 0; c < cg->n_classes; c++) {
        const float *restrict src = cam + (size_t)c * cells;
        float *restrict dst = ch + (size_t)c * cells;
        TH_SIMD
        for (size_t at = 0; at < cells; at++) {
            dst[at] += src[at];
        }
    }
    float *restrict count = ch + (size_t)cg->n_classes * cells;
    TH_SIMD
    for (size_t at = 0; at < cells; at++) {
        count[at] += 1;
    }
}

bool th_camgrid_add(th_camgrid *cg, int col, int row, const float *cam, th_error **err)
{
    size_t cells = chunk_cells(cg); // a tile has as many cells as a chunk
    int64_t gx0 = (int64_t)col * cg->step_x, gy0 = (int64_t)row * cg->step_y;
    if (gx0 % cg->chunk_w == 0 && gy0 % cg->chunk_h == 0) {
        add_aligned(cg, (gy0 / cg->chunk_h) * cg->chunks_x + gx0 / cg->chunk_w, cam);
    } else {
        for (int cy = 0; cy < cg->chunk_h; cy++) {
            int64_t gy = gy0 + cy;
            for (int cx = 0; cx < cg->chunk_w; cx++) {
                int64_t gx = gx0 + cx;
                float *ch = use_chunk(cg, (gy / cg->chunk_h) * cg->chunks_x + gx / cg->chunk_w);
                size_t at = (size_t)(gy % cg->chunk_h) * cg->chunk_w + (size_t)(gx % cg->chunk_w);
                for (int c = 0; c < cg->n_classes; c++) {
                    ch[c * cells + at] += cam[(size_t)c * cells + (size_t)cy * cg->chunk_w + cx];
                }
                ch[cg->n_classes * cells + at] += 1;
            }
        }
    }
    th_camgrid_touch(cg, cg->chunk_floats * sizeof(float));
    return true;
}

void th_camgrid_finish(th_camgrid *cg)
{
    if (th_camgrid_disjoint(cg)) {
        return; // every cell has been added to once at most: its sum is its mean
    }
    size_t cells = chunk_cells(cg);
    for (int64_t i = 0; i < cg->chunks_x * cg->chunks_y; i++) {
        float *ch = chunk_at(cg, i);
        if (!ch) {
            continue;
        }
        for (size_t at = 0; at < cells; at++) {
            float n = ch[cg->n_classes * cells + at];
            for (int c = 0; n > 1 && c < cg->n_classes; c++) {
                ch[c * cells + at] /= n;
            }
        }
        th_camgrid_touch(cg, cg->chunk_floats * sizeof(float));
    }
}

void th_camgrid_read_span(const th_camgrid *cg, int cls, int64_t gy, int64_t gx0, int64_t gx1,
                          float *out)
{
    size_t cells = chunk_cells(cg);
    size_t off = (size_t)(gy % cg->chunk_h) * cg->chunk_w; // the row inside its chunks
    gx0 = TH_MAX(gx0, 0);
    gx1 = TH_MIN(gx1, cg->gw);
    for (int64_t cx = gx0 / cg->chunk_w; cx * cg->chunk_w < gx1; cx++) {
        const float *ch = chunk_at(cg, (gy / cg->chunk_h) * cg->chunks_x + cx);
        int64_t first = cx * cg->chunk_w;
        int i0 = (int)(TH_MAX(gx0, first) - first),
            n = (int)(TH_MIN(gx1, first + cg->chunk_w) - first);
        for (int i = i0; i < n; i++) {
            bool has = ch && ch[cg->n_classes * cells + off + i] != 0;
            out[first + i] = has ? ch[cls * cells + off + i] : NAN;
        }
    }
}

void th_camgrid_read_row(const th_camgrid *cg, int cls, int64_t gy, float *out)
{
    th_camgrid_read_span(cg, cls, gy, 0, cg->gw, out);
}

bool th_camgrid_get(const th_camgrid *cg, int cls, int64_t gx, int64_t gy, float *v)
{
    if (gx < 0 || gy < 0 || gx >= cg->gw || gy >= cg->gh) {
        return false;
    }
    const float *ch = chunk_at(cg, (gy / cg->chunk_h) * cg->chunks_x + gx / cg->chunk_w);
    if (!ch) {
        return false;
    }
    size_t cells = chunk_cells(cg);
    size_t at = (size_t)(gy % cg->chunk_h) * cg->chunk_w + (size_t)(gx % cg->chunk_w);
    if (ch[cg->n_classes * cells + at] == 0) {
        return false;
    }
    *v = ch[cls * cells + at];
    return true;
}

/* ---------------------------------------------------------------- CAM of one tile */

// Vectorised across cells (omp simd; -O2 alone does not), so each cell still sums its channels
// in order k = 0, 1, ...: the same bits as the plain loop.
void th_cam_compute(const float *restrict feat, int c, int h, int w, const float *restrict weight,
                    int n_classes, float *restrict cam)
{
    size_t n = (size_t)h * w;
    for (int cls = 0; cls < n_classes; cls++) {
        float *restrict out = cam + (size_t)cls * n; // (h, w)
        const float *wrow = weight + (size_t)cls * c;
        memset(out, 0, n * sizeof(*out));
        for (int k = 0; k < c; k++) {
            const float wk = wrow[k];
            const float *restrict a = feat + (size_t)k * n; // (h, w)
            TH_SIMD
            for (size_t p = 0; p < n; p++) {
                out[p] += wk * a[p];
            }
        }
    }
}

/* ---------------------------------------------------------------- display range */

// Calls fn(ctx, value) for class cls at every cell where a tile ran, chunk by chunk.
typedef void cell_fn(void *ctx, float v);
static inline __attribute__((always_inline)) void for_each_cell(const th_camgrid *cg, int cls,
                                                                cell_fn *fn, void *ctx)
{
    size_t cells = chunk_cells(cg);
    for (int64_t i = 0; i < cg->chunks_x * cg->chunks_y; i++) {
        const float *ch = chunk_at(cg, i);
        if (!ch) {
            continue;
        }
        for (size_t at = 0; at < cells; at++) {
            if (ch[cg->n_classes * cells + at] > 0) {
                fn(ctx, ch[cls * cells + at]);
            }
        }
        th_camgrid_touch(cg, cg->chunk_floats * sizeof(float));
    }
}

/* The percentile is found exactly by a radix select on the bits of the values: a positive float
 * orders as its bit pattern, so the first pass counts the positive values by their high 16 bits
 * (with the cell count and the maximum), and the second counts, inside the one or two bins that
 * hold the wanted ranks, their low 16 bits. Two passes over the grid, integer counts only. */
#define HI_BINS 32768 // positive finite floats have bit patterns below 0x7f800000
#define LO_BINS 65536

typedef struct radix {
    int64_t n, positive; // cells; cells > 0
    float max;
    int64_t hi[HI_BINS]; // positive values per high half
    uint32_t want[2];    // high halves holding the wanted ranks
    int64_t *lo[2];      // (LO_BINS) values of bin want[i] per low half; lo[1] is NULL when
                         // want[1] == want[0] (lo[0] serves both)
} radix;

static uint32_t float_bits(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof(u));
    return u;
}

static float bits_float(uint32_t u)
{
    float v;
    memcpy(&v, &u, sizeof(v));
    return v;
}

static void count_high(void *ctx, float v)
{
    radix *r = ctx;
    r->n++;
    if (v > 0) {
        r->positive++;
        r->max = TH_MAX(r->max, v);
        r->hi[TH_MIN(float_bits(v) >> 16, HI_BINS - 1)]++;
    }
}

static void count_low(void *ctx, float v)
{
    radix *r = ctx;
    if (v > 0) {
        uint32_t u = float_bits(v);
        for (int i = 0; i < 2; i++) {
            if (r->lo[i] && u >> 16 == r->want[i]) {
                r->lo[i][u & 0xffff]++;
            }
        }
    }
}

// The high half holding the k-th smallest positive value (0-based); k becomes its rank there.
static uint32_t find_high(const radix *r, int64_t *k)
{
    uint32_t b = 0;
    while (b < HI_BINS - 1 && *k >= r->hi[b]) {
        *k -= r->hi[b++];
    }
    return b;
}

static float find_low(const int64_t *lo, uint32_t high, int64_t k)
{
    uint32_t b = 0;
    while (b < LO_BINS - 1 && k >= lo[b]) {
        k -= lo[b++];
    }
    return bits_float(high << 16 | b);
}

// Linear-interpolated percentile (0..100) of the class's CAM values clipped at 0.
static bool class_percentile(const th_result *res, int cls, double pct, float *out, float *max,
                             th_error **err)
{
    radix *r = th_calloc(1, sizeof(*r), err);
    if (!r) {
        return false;
    }
    for_each_cell(&res->cams, cls, count_high, r);
    int64_t n = r->n, zeros = r->n - r->positive;
    *max = r->max;
    *out = 0;
    bool ok = true;
    if (n > 0) {
        double pos = TH_CLAMP(pct, 0.0, 100.0) / 100.0 * (double)(n - 1);
        int64_t i = (int64_t)pos;
        double frac = pos - (double)i;
        bool two = frac > 0 && i + 1 < n;
        // Ranks i and i + 1 among all cells; those below `zeros` are 0.
        int64_t rank[2] = {i - zeros, i + 1 - zeros}, k[2];
        float v[2] = {0, 0};
        bool wanted[2] = {false, false};
        for (int j = 0; j < 1 + two; j++) {
            if (rank[j] >= 0) {
                wanted[j] = true;
                k[j] = rank[j];
                r->want[j] = find_high(r, &k[j]);
                if (j == 0 || !r->lo[0] || r->want[1] != r->want[0]) {
                    r->lo[j] = th_calloc(LO_BINS, sizeof(int64_t), err);
                    ok = ok && r->lo[j];
                }
            }
        }
        if (ok && (wanted[0] || wanted[1])) {
            for_each_cell(&res->cams, cls, count_low, r);
        }
        for (int j = 0; ok && j < 2; j++) {
            if (wanted[j]) {
                v[j] = find_low(r->lo[j] ? r->lo[j] : r->lo[0], r->want[j], k[j]);
            }
        }
        *out = two ? (float)(v[0] * (1 - frac) + v[1] * frac) : v[0];
    }
    th_free(r->lo[0]);
    th_free(r->lo[1]);
    th_free(r);
    return ok;
}

typedef struct minmax {
    bool any;
    float lo, hi;
} minmax;

static void minmax_cell(void *ctx, float v)
{
    minmax *m = ctx;
    if (!m->any || v < m->lo) {
        m->lo = v;
    }
    if (!m->any || v > m->hi) {
        m->hi = v;
    }
    m->any = true;
}

const char *th_scale_basis_name(th_scale_basis basis)
{
    static const char *const names[] = {"percentile", "max", "flat", "raw"};
    return basis >= TH_SCALE_PERCENTILE && basis <= TH_SCALE_RAW ? names[basis] : "?";
}

bool th_cam_range(const th_result *result, th_norm norm, double percentile, const int *classes,
                  int n_classes, float *lo, float *hi, th_scale_basis *basis, th_error **err)
{
    th_scale_basis b;
    if (norm == TH_NORM_PERCENTILE) {
        float p, max;
        if (!class_percentile(result, classes[0], percentile, &p, &max, err)) {
            return false;
        }
        // A class present in fewer cells than the percentile leaves it at 0: use the maximum.
        *lo = 0;
        *hi = p > 0 ? p : (max > 0 ? max : 1);
        b = p > 0 ? TH_SCALE_PERCENTILE : max > 0 ? TH_SCALE_MAX : TH_SCALE_FLAT;
    } else {
        minmax m = {0};
        for (int i = 0; i < n_classes; i++) {
            for_each_cell(&result->cams, classes[i], minmax_cell, &m);
        }
        *lo = m.any ? m.lo : 0;
        *hi = m.any ? m.hi : 1;
        b = m.any && m.hi > m.lo ? TH_SCALE_RAW : TH_SCALE_FLAT;
        if (*hi <= *lo) {
            *hi = *lo + 1;
        }
    }
    if (basis) {
        *basis = b;
    }
    return true;
}

/* ---------------------------------------------------------------- sampling */

bool th_cam_sample(const th_result *result, int cls, double x, double y, float *value)
{
    const th_camgrid *cg = &result->cams;
    double px = (x - cg->x0) / cg->cell_w0, py = (y - cg->y0) / cg->cell_h0;
    if (px < 0 || py < 0 || px >= (double)cg->gw || py >= (double)cg->gh) {
        return false;
    }
    float own;
    if (!th_camgrid_get(cg, cls, (int64_t)px, (int64_t)py, &own)) {
        return false;
    }
    // Continuous cell coordinates: cell centres sit at integer positions.
    double fx = TH_CLAMP(px - 0.5, 0.0, (double)(cg->gw - 1));
    double fy = TH_CLAMP(py - 0.5, 0.0, (double)(cg->gh - 1));
    int64_t x0 = (int64_t)fx, y0 = (int64_t)fy;
    int64_t x1 = TH_MIN(x0 + 1, cg->gw - 1), y1 = TH_MIN(y0 + 1, cg->gh - 1);
    double ax = fx - (double)x0, ay = fy - (double)y0;
    const int64_t cx[4] = {x0, x1, x0, x1}, cy[4] = {y0, y0, y1, y1};
    const double wt[4] = {(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay};
    double sum = 0, wsum = 0;
    for (int i = 0; i < 4; i++) {
        float v;
        if (wt[i] > 0 && th_camgrid_get(cg, cls, cx[i], cy[i], &v)) {
            sum += wt[i] * v;
            wsum += wt[i];
        }
    }
    // Only the point's own cell is left when its neighbours had no tile.
    *value = wsum > 0 ? (float)(sum / wsum) : own;
    return true;
}
