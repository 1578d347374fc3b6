/* SPDX-License-Identifier: MIT */
/* th_render_tiff: the slide blended with the CAM overlay at level-0 resolution, written as a tiled
 * pyramidal BigTIFF (256×256 JPEG tiles) that OpenSlide opens as generic-tiff. Level 0 streams in
 * strips of 256 rows cut into chunks of columns: threads read and overlay chunks in parallel, and
 * each chunk is then encoded in order. The levels are pyramid.c's plan, and each reduced level
 * the 2×2 mean of the level above, built by pyramid.c's strip reducer as level 0's rows arrive
 * and written to a temporary TIFF next to the output; at the end their raw JPEG tiles are
 * appended to the output as reduced-resolution pages. */
#include <config.h>

#include <inttypes.h>
#include <tiffio.h>

#include "pyramid.h"
#include "render.h"
#include "slide.h"

#define TILE 256        // tile side; also the rows of a strip
#define CHUNK_COLS 1024 // level-0 columns read and overlaid at a time
#define TOP_MAX 1024    // halve until the long side is at most this
#define JPEG_QUALITY 90
// YCbCr 4:4:4: the overlay's information is its colour, and 4:2:0 chroma subsampling smears it
// (on H&E at quality 90, mean error 3.9 instead of 1.2, for 1.25 to 1.5 times the size)
#define CHROMA_SUBSAMPLING 1

// One TIFF handle and the first message its libtiff error handler received.
typedef struct tiff_file {
    TIFF *tif;
    th_outfile file;       // the temporary name it is written under
    char msg[TH_TIFF_MSG]; // see th_tiff_open
} tiff_file;

typedef struct level {
    int64_t w, h;        // pyr.lv[k]'s
    double res_x, res_y; // pixels per centimetre, 0 if the slide's µm/px is unknown
    tiff_file out;       // level 0: the output; the others: a temporary TIFF each
} level;

// One thread's scratch for overlaying chunks of level 0.
typedef struct tworker {
    uint8_t *rgb;          // (≤ TILE, ≤ CHUNK_COLS, 3) one chunk: slide pixels, then overlaid
    th_overlay_axis *cols; // (CHUNK_COLS) where the chunk's columns sample the CAM
    th_overlay_cache cache;
    th_error *err; // this chunk's failure, handed over in chunk order
} tworker;

typedef struct tctx {
    th_slide *slide;
    th_overlay ov;
    th_pyramid pyr;     // the levels' plan: tiles of TILE, no overlap
    th_pyr_reducer red; // levels ≥ 1 from level 0's rows
    int n_levels;
    level lv[TH_PYR_MAX_LEVELS];
    uint8_t *tile; // (TILE, TILE, 3) the tile being encoded (one thread at a time)
    int64_t n_strips, n_chunks;
    int n_workers;
    tworker *wk;         // (n_workers)
    _Atomic bool failed; // set by the first failure, in chunk order; later work is skipped
    th_error *first;     // that failure
} tctx;

/* ---------------------------------------------------------------- libtiff */

static bool tiff_fail(tiff_file *f, const char *what, th_error **err)
{
    th_error_set(err, "%s: %s", what, f->msg[0] ? f->msg : "libtiff error");
    return false;
}

// Open `path` with per-handle error handlers ("w8": BigTIFF for writing; "rm": reading without
// memory mapping, whose pages would count in RSS).
static bool tiff_open(tiff_file *f, const char *path, const char *mode, th_error **err)
{
    f->msg[0] = '\0';
    f->tif = th_tiff_open(path, mode, f->msg);
    return f->tif ? true : tiff_fail(f, "cannot open TIFF", err);
}

// A TIFF written under a temporary name next to `path` (renamed only for the output itself).
static bool tiff_create(tiff_file *f, const char *path, th_error **err)
{
    return th_outfile_open(&f->file, path, err) && tiff_open(f, f->file.tmp_path, "w8", err);
}

// Close and remove (the output too, unless it was committed).
static void tiff_discard(tiff_file *f)
{
    if (f->tif) {
        TIFFClose(f->tif);
        f->tif = NULL;
    }
    if (f->file.tmp_path) {
        th_outfile_abort(&f->file);
    }
}

// The tags of one page. encode: pixels go through libtiff's JPEG encoder (else raw tiles).
static bool set_tags(TIFF *tif, const level *l, bool reduced, bool encode)
{
    bool ok = TIFFSetField(tif, TIFFTAG_SUBFILETYPE, reduced ? FILETYPE_REDUCEDIMAGE : 0) &&
              TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, (uint32_t)l->w) &&
              TIFFSetField(tif, TIFFTAG_IMAGELENGTH, (uint32_t)l->h) &&
              TIFFSetField(tif, TIFFTAG_TILEWIDTH, TILE) &&
              TIFFSetField(tif, TIFFTAG_TILELENGTH, TILE) &&
              TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, 8) &&
              TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, 3) &&
              TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG) &&
              TIFFSetField(tif, TIFFTAG_COMPRESSION, COMPRESSION_JPEG) &&
              TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_YCBCR) &&
              TIFFSetField(tif, TIFFTAG_YCBCRSUBSAMPLING, CHROMA_SUBSAMPLING, CHROMA_SUBSAMPLING) &&
              TIFFSetField(tif, TIFFTAG_SOFTWARE, "tileheat " PACKAGE_VERSION);
    if (ok && encode) {
        ok = TIFFSetField(tif, TIFFTAG_JPEGQUALITY, JPEG_QUALITY) &&
             TIFFSetField(tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    }
    if (ok && l->res_x > 0 && l->res_y > 0) {
        ok = TIFFSetField(tif, TIFFTAG_RESOLUTIONUNIT, RESUNIT_CENTIMETER) &&
             TIFFSetField(tif, TIFFTAG_XRESOLUTION, l->res_x) &&
             TIFFSetField(tif, TIFFTAG_YRESOLUTION, l->res_y);
    }
    if (ok && !reduced) {
        ok = TIFFSetField(tif, TIFFTAG_IMAGEDESCRIPTION, "tileheat heatmap overlay");
    }
    return ok;
}

/* ---------------------------------------------------------------- writing (one thread) */

// Encode `rows` rows × `cols` columns of a level, from buf ((rows, stride, 3)) whose first pixel
// is at (x0, y0), x0 and y0 multiples of TILE, as tiles. Edge tiles repeat the last column and
// row, which JPEG compresses best.
static bool encode_tiles(tctx *t, level *l, const uint8_t *buf, int64_t stride, int64_t x0,
                         int64_t cols, int64_t y0, int rows, th_error **err)
{
    for (int64_t tx = 0; tx < cols; tx += TILE) {
        int n = (int)TH_MIN((int64_t)TILE, cols - tx);
        for (int j = 0; j < TILE; j++) {
            const uint8_t *src = buf + ((size_t)TH_MIN(j, rows - 1) * stride + tx) * 3;
            uint8_t *dst = t->tile + (size_t)j * TILE * 3;
            memcpy(dst, src, (size_t)n * 3);
            for (int i = n; i < TILE; i++) {
                memcpy(dst + i * 3, dst + (n - 1) * 3, 3);
            }
        }
        uint32_t tile = TIFFComputeTile(l->out.tif, (uint32_t)(x0 + tx), (uint32_t)y0, 0, 0);
        if (TIFFWriteEncodedTile(l->out.tif, tile, t->tile, (tmsize_t)TILE * TILE * 3) < 0) {
            return tiff_fail(&l->out, "writing a tile", err);
        }
    }
    return true;
}

// A strip of reduced level k is complete (pyramid.c's reducer): its tiles.
static bool emit_strip(void *user, int k, const uint8_t *rgb, int64_t y0, int rows, th_error **err)
{
    tctx *t = user;
    level *l = &t->lv[k];
    return encode_tiles(t, l, rgb, l->w, 0, l->w, y0, rows, err);
}

// Chunk c of level-0 strip s, overlaid in rgb ((h, cw, 3)): its tiles, and its share of level 1.
static bool write_chunk(tctx *t, const uint8_t *rgb, int64_t s, int64_t c, th_error **err)
{
    int64_t y0 = s * TILE, x0 = c * CHUNK_COLS;
    int h = (int)TH_MIN((int64_t)TILE, t->lv[0].h - y0);
    int64_t cw = TH_MIN((int64_t)CHUNK_COLS, t->lv[0].w - x0);
    if (!encode_tiles(t, &t->lv[0], rgb, cw, x0, cw, y0, h, err)) {
        return false;
    }
    if (t->n_levels == 1) {
        return true;
    }
    th_pyr_reducer_add(&t->red, rgb, cw, h, x0, y0);
    return c + 1 < t->n_chunks || th_pyr_reducer_rows_done(&t->red, y0, h, err);
}

/* ---------------------------------------------------------------- overlaying (all threads) */

// Read chunk c of level-0 strip s into the worker's buffer and overlay it.
static bool overlay_chunk(tctx *t, tworker *w, int64_t s, int64_t c, th_error **err)
{
    int64_t y0 = s * TILE, x0 = c * CHUNK_COLS;
    int64_t h = TH_MIN((int64_t)TILE, t->lv[0].h - y0);
    int64_t cw = TH_MIN((int64_t)CHUNK_COLS, t->lv[0].w - x0);
    if (!th_slide_read_region(t->slide, w->rgb, x0, y0, 0, cw, h, err)) {
        th_error_prefix(err, "reading the slide at %" PRId64 ",%" PRId64 ": ", x0, y0);
        return false;
    }
    th_overlay_plan_axis(&t->ov, false, 1.0, x0, cw, w->cols);
    for (int64_t j = 0; j < h; j++) {
        th_overlay_axis row;
        th_overlay_plan_axis(&t->ov, true, 1.0, y0 + j, 1, &row);
        th_overlay_row(&t->ov, &w->cache, &row, w->cols, cw, w->rgb + (size_t)(j * cw) * 3);
    }
    return true;
}

/* The rendering parallel region (HACKING.md, "Rendering"), as for the PNG: an ordered loop over
 * the chunks of level 0, strip by strip. Each chunk is read and overlaid whole by one thread in
 * its own buffer, then encoded, and reduced into the pyramid, in chunk order, so the file does
 * not depend on the thread count. A failure stops the chunks after it; its error, taken in
 * chunk order, is the one reported. */
static void stream_chunks(tctx *t)
{
    int64_t n = t->n_strips * t->n_chunks;
#ifdef _OPENMP
#pragma omp parallel for num_threads(t->n_workers) schedule(dynamic) ordered
#endif
    for (int64_t i = 0; i < n; i++) {
        tworker *w = &t->wk[th_thread_num()];
        int64_t s = i / t->n_chunks, c = i % t->n_chunks;
        bool ok = !t->failed && overlay_chunk(t, w, s, c, &w->err);
#ifdef _OPENMP
#pragma omp ordered
#endif
        {
            ok = ok && !t->failed && write_chunk(t, w->rgb, s, c, &w->err);
            if (!ok && !t->failed) {
                t->failed = true;
                t->first = w->err;
                w->err = NULL;
            }
        }
        th_error_free(w->err);
        w->err = NULL;
    }
}

/* ---------------------------------------------------------------- the pyramid */

// Append level k's tiles from its temporary TIFF to the output as a reduced-resolution page:
// raw JPEG tiles, with the JPEG tables and YCbCr reference the encoder wrote there.
static bool append_level(tctx *t, int k, th_error **err)
{
    level *l = &t->lv[k];
    tiff_file *dst = &t->lv[0].out, in = {0};
    uint8_t *buf = NULL;
    bool ok = false;
    TIFF *tmp = l->out.tif;
    l->out.tif = NULL;
    bool written = TIFFWriteDirectory(tmp);
    TIFFClose(tmp);
    if (!written || l->out.msg[0]) {
        return tiff_fail(&l->out, "writing a reduced level", err);
    }
    if (!tiff_open(&in, l->out.file.tmp_path, "rm", err)) {
        return false;
    }
    uint32_t n_tables = 0;
    void *tables = NULL;
    float *refbw = NULL;
    uint64_t *counts = NULL, max = 0;
    if (!TIFFGetField(in.tif, TIFFTAG_JPEGTABLES, &n_tables, &tables) ||
        !TIFFGetField(in.tif, TIFFTAG_REFERENCEBLACKWHITE, &refbw) ||
        !TIFFGetField(in.tif, TIFFTAG_TILEBYTECOUNTS, &counts)) {
        tiff_fail(&in, "reading back a reduced level", err);
        goto out;
    }
    uint32_t n = TIFFNumberOfTiles(in.tif);
    for (uint32_t i = 0; i < n; i++) {
        max = TH_MAX(max, counts[i]);
    }
    buf = th_malloc((size_t)TH_MAX(max, 1), err);
    if (!buf) {
        goto out;
    }
    if (!set_tags(dst->tif, l, true, false) ||
        !TIFFSetField(dst->tif, TIFFTAG_JPEGTABLES, n_tables, tables) ||
        !TIFFSetField(dst->tif, TIFFTAG_REFERENCEBLACKWHITE, refbw)) {
        tiff_fail(dst, "writing the tags of a reduced level", err);
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        tmsize_t got = TIFFReadRawTile(in.tif, i, buf, (tmsize_t)max);
        if (got < 0) {
            tiff_fail(&in, "reading back a reduced level", err);
            goto out;
        }
        if (TIFFWriteRawTile(dst->tif, i, buf, got) != got) {
            tiff_fail(dst, "writing a tile", err);
            goto out;
        }
    }
    ok = TIFFWriteDirectory(dst->tif) || tiff_fail(dst, "writing a directory", err);
out:
    th_free(buf);
    TIFFClose(in.tif);
    return ok;
}

// Level sizes (pyramid.c's plan: halving until the long side is at most TOP_MAX) and
// resolution in pixels/cm.
static void plan_levels(tctx *t, const th_result *res)
{
    int64_t w0, h0;
    th_slide_get_level_dimensions(t->slide, 0, &w0, &h0);
    th_pyramid_plan(&t->pyr, w0, h0, TILE, 0, TOP_MAX);
    t->n_levels = t->pyr.n;
    for (int k = 0; k < t->n_levels; k++) {
        t->lv[k].w = t->pyr.lv[k].w;
        t->lv[k].h = t->pyr.lv[k].h;
    }
    level *l = t->lv;
    const char *source = NULL;
    double mpp = th_result_get_mpp(res, &source), mx = 0, my = 0;
    if (mpp > 0 && strcmp(source, "assumed") != 0) {
        mx = my = mpp;
    } else if (!th_slide_get_mpp(t->slide, &mx, &my)) {
        mx = my = 0;
    }
    l->res_x = mx > 0 ? 1e4 / mx : 0;
    l->res_y = my > 0 ? 1e4 / my : 0;
    for (int k = 1; k < t->n_levels; k++) {
        t->lv[k].res_x = l->res_x * (double)t->lv[k].w / (double)l->w;
        t->lv[k].res_y = l->res_y * (double)t->lv[k].h / (double)l->h;
    }
    t->n_strips = (t->lv[0].h + TILE - 1) / TILE;
    t->n_chunks = (t->lv[0].w + CHUNK_COLS - 1) / CHUNK_COLS;
}

// Buffers (each O(slide width) at most, none O(slide area)) and the files: the output and one
// temporary TIFF per reduced level, all next to `path`.
static bool setup(tctx *t, const char *path, int threads, th_error **err)
{
    t->tile = th_malloc((size_t)TILE * TILE * 3, err);
    t->n_workers = th_threads(threads);
    t->wk = th_calloc((size_t)t->n_workers, sizeof(*t->wk), err);
    if (!t->tile || !t->wk) {
        return false;
    }
    for (int i = 0; i < t->n_workers; i++) {
        tworker *w = &t->wk[i];
        w->rgb = th_malloc((size_t)TILE * CHUNK_COLS * 3, err);
        w->cols = th_malloc(CHUNK_COLS * sizeof(*w->cols), err);
        if (!w->rgb || !w->cols || !th_overlay_cache_init(&w->cache, &t->ov, err)) {
            return false;
        }
    }
    if (!th_pyr_reducer_init(&t->red, &t->pyr, emit_strip, t, err)) {
        return false;
    }
    if (!tiff_create(&t->lv[0].out, path, err) || !set_tags(t->lv[0].out.tif, t->lv, false, true)) {
        return t->lv[0].out.tif ? tiff_fail(&t->lv[0].out, "writing the tags", err) : false;
    }
    for (int k = 1; k < t->n_levels; k++) {
        level *l = &t->lv[k];
        char name[32];
        snprintf(name, sizeof(name), ".level%d", k);
        char *tmp = th_strdup_printf(err, "%s%s", path, name);
        bool ok = tmp && tiff_create(&l->out, tmp, err);
        th_free(tmp);
        if (!ok || !set_tags(l->out.tif, l, true, true)) {
            return ok ? tiff_fail(&l->out, "writing the tags", err) : false;
        }
    }
    return true;
}

static void teardown(tctx *t)
{
    for (int k = 0; k < t->n_levels; k++) {
        tiff_discard(&t->lv[k].out);
    }
    th_pyr_reducer_free(&t->red);
    for (int i = 0; t->wk && i < t->n_workers; i++) {
        TH_FREE(t->wk[i].rgb);
        TH_FREE(t->wk[i].cols);
        th_overlay_cache_free(&t->wk[i].cache);
        th_error_free(t->wk[i].err);
    }
    TH_FREE(t->wk);
    TH_FREE(t->tile);
}

// Level 0's directory, then the reduced levels; close and rename the output.
static bool finish(tctx *t, th_error **err)
{
    tiff_file *out = &t->lv[0].out;
    if (!TIFFWriteDirectory(out->tif)) {
        return tiff_fail(out, "writing a directory", err);
    }
    for (int k = 1; k < t->n_levels; k++) {
        if (!append_level(t, k, err)) {
            return false;
        }
    }
    TIFFClose(out->tif);
    out->tif = NULL;
    if (out->msg[0]) {
        return tiff_fail(out, "closing", err);
    }
    return th_outfile_commit(&out->file, err);
}

bool th_render_tiff(th_slide *slide, const th_result *result, const th_model *model,
                    const th_render_options *opt, const char *path, th_error **err)
{
    bool ok = false;
    tctx *t = th_calloc(1, sizeof(*t), err);
    if (!t) {
        goto out;
    }
    if (!slide || !result || !opt || !path) {
        th_error_set(err, "render: no slide, result, options or path");
        goto out;
    }
    if (!th_overlay_init(&t->ov, slide, result, model, opt, err)) {
        goto out;
    }
    t->slide = slide;
    plan_levels(t, result);
    if (t->lv[0].w > UINT32_MAX || t->lv[0].h > UINT32_MAX) {
        th_error_set(err, "the slide is too large for TIFF");
        goto out;
    }
    if (!setup(t, path, opt->threads, err)) {
        goto out;
    }
    stream_chunks(t);
    th_error_propagate(err, &t->first);
    ok = !t->failed && finish(t, err);
out:
    if (t) {
        teardown(t);
    }
    th_free(t);
    if (!ok) {
        th_error_prefix(err, "%s: ", path ? path : "heatmap.tiff");
    }
    return ok;
}
