/* SPDX-License-Identifier: MIT */
/* gen-demo-slide: the pyramidal TIFF writer. Each level is written tile by tile in constant
 * memory; with islands, every all-glass tile of a level is one JPEG written over and over. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tiffio.h>

#include "gen-demo-slide.h"

#define TOP_LEVEL_SIDE 512 // stop halving once the long side is at most this
#define BATCH 16           // tiles rendered (in parallel) before being written in order
#define RES_PER_CM 20000.0 // 0.5 um per pixel at level 0

void pyramid_plan(pyramid *p, uint32_t width, uint32_t height)
{
    p->count = 0;
    for (;;) {
        p->width[p->count] = width;
        p->height[p->count] = height;
        p->count++;
        if ((width <= TOP_LEVEL_SIDE && height <= TOP_LEVEL_SIDE) || p->count == MAX_LEVELS) {
            break;
        }
        width = (width + 1) / 2;
        height = (height + 1) / 2;
    }
}

static int on_tiff_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
    status *st = user;
    if (st->msg[0] == '\0') {
        vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
    }
    return 1;
}

static int on_tiff_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
    return 1; // nothing we write should warn; stay quiet
}

static bool set_level_tags(TIFF *tif, int level, uint32_t w, uint32_t h, int quality, uint32_t seed)
{
    bool ok =
        TIFFSetField(tif, TIFFTAG_SUBFILETYPE, level == 0 ? 0 : FILETYPE_REDUCEDIMAGE) &&
        TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, w) && TIFFSetField(tif, TIFFTAG_IMAGELENGTH, h) &&
        TIFFSetField(tif, TIFFTAG_TILEWIDTH, TILE) && TIFFSetField(tif, TIFFTAG_TILELENGTH, TILE) &&
        TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, 8) &&
        TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, 3) &&
        TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG) &&
        TIFFSetField(tif, TIFFTAG_COMPRESSION, COMPRESSION_JPEG) &&
        TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_YCBCR) &&
        TIFFSetField(tif, TIFFTAG_YCBCRSUBSAMPLING, 2, 2) &&
        TIFFSetField(tif, TIFFTAG_JPEGQUALITY, quality) &&
        TIFFSetField(tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB) &&
        TIFFSetField(tif, TIFFTAG_RESOLUTIONUNIT, RESUNIT_CENTIMETER) &&
        TIFFSetField(tif, TIFFTAG_XRESOLUTION, RES_PER_CM / ldexp(1.0, level)) &&
        TIFFSetField(tif, TIFFTAG_YRESOLUTION, RES_PER_CM / ldexp(1.0, level));
    if (ok && level == 0) {
        char desc[128];
        snprintf(desc, sizeof(desc), "tileheat synthetic H&E demo slide, seed %u", seed);
        ok = TIFFSetField(tif, TIFFTAG_IMAGEDESCRIPTION, desc) &&
             TIFFSetField(tif, TIFFTAG_SOFTWARE, PROG);
    }
    return ok;
}
/* The JPEG of a level's all-glass tile, to be written again wherever one recurs. */
typedef struct {
    int level;     // level it belongs to; -1 before the first
    uint8_t *data; // (size) bytes: one abbreviated JPEG stream (the tables are in JPEGTables)
    tmsize_t size;
} glass_tile;

/* All-glass tile t of `level`. The level's first is rendered and encoded like any tile, then its
 * bytes are read back from the file (libtiff has written them: the file is open read-write); the
 * others are those bytes again, through TIFFWriteRawTile. w is scratch. */
static bool write_glass(TIFF *tif, const scene *s, int level, uint32_t t, uint32_t tiles_x,
                        glass_tile *g, workspace *w, status *st)
{
    if (g->level == level) {
        st->glass++;
        return TIFFWriteRawTile(tif, t, g->data, g->size) == g->size;
    }
    render_tile(s, level, t % tiles_x, t / tiles_x, true, w);
    if (TIFFWriteEncodedTile(tif, t, workspace_pixels(w), TILE_BYTES) < 0) {
        return false;
    }
    uint64_t *offsets = NULL, *counts = NULL;
    if (!TIFFGetField(tif, TIFFTAG_TILEOFFSETS, &offsets) ||
        !TIFFGetField(tif, TIFFTAG_TILEBYTECOUNTS, &counts) || counts[t] == 0) {
        snprintf(st->msg, sizeof(st->msg), "cannot locate the glass tile just written");
        return false;
    }
    uint8_t *data = realloc(g->data, counts[t]);
    if (data == NULL) {
        snprintf(st->msg, sizeof(st->msg), "out of memory");
        return false;
    }
    g->data = data;
    g->size = (tmsize_t)counts[t];
    if (pread(TIFFFileno(tif), data, counts[t], (off_t)offsets[t]) != (ssize_t)counts[t]) {
        snprintf(st->msg, sizeof(st->msg), "cannot read back the glass tile: %s", strerror(errno));
        return false;
    }
    g->level = level;
    return true;
}

/* The tiles [first, *end) of a level whose next BATCH tiles to render (or fewer, at the level's
 * end) are todo[0 .. return value); the others in the range are all glass. */
static int next_batch(const scene *s, int level, uint32_t tiles_x, uint64_t first, uint64_t count,
                      bool cache_glass, uint32_t *todo, uint64_t *end)
{
    int n = 0;
    uint64_t t = first;
    for (; t < count && n < BATCH; t++) {
        if (!cache_glass || !tile_is_glass(s, level, t % tiles_x, t / tiles_x)) {
            todo[n++] = (uint32_t)t;
        }
    }
    *end = t;
    return n;
}

/* Tiles are rendered BATCH at a time, in parallel when built with OpenMP, then compressed and
 * written serially in order; all-glass tiles (with islands) go through write_glass instead. Each
 * tile is a pure function of its position, so the file is the same whatever the thread count,
 * and the same with or without the glass shortcut. ws holds BATCH + 1 workspaces. */
static bool write_level(TIFF *tif, const scene *s, const pyramid *p, int level, int quality,
                        bool cache_glass, workspace *ws, glass_tile *g, status *st)
{
    uint32_t width = p->width[level], height = p->height[level];
    if (!set_level_tags(tif, level, width, height, quality, s->seed)) {
        return false;
    }
    uint32_t tiles_x = (width + TILE - 1) / TILE, tiles_y = (height + TILE - 1) / TILE;
    uint64_t count = (uint64_t)tiles_x * tiles_y, end = 0;
    uint32_t todo[BATCH]; // tiles to render in this batch, ascending
    for (uint64_t first = 0; first < count; first = end) {
        int n = next_batch(s, level, tiles_x, first, count, cache_glass, todo, &end);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic)
#endif
        for (int b = 0; b < n; b++) {
            render_or_mark(s, level, todo[b] % tiles_x, todo[b] / tiles_x, cache_glass,
                           workspace_at(ws, b));
        }
        int b = 0;
        for (uint64_t t = first; t < end; t++) {
            workspace *w =
                b < n && todo[b] == t ? workspace_at(ws, b++) : NULL; // NULL: tile_is_glass
            bool ok =
                w != NULL && !workspace_glass(w)
                    ? TIFFWriteEncodedTile(tif, (uint32_t)t, workspace_pixels(w), TILE_BYTES) >= 0
                    : write_glass(tif, s, level, (uint32_t)t, tiles_x, g, workspace_at(ws, BATCH),
                                  st);
            if (!ok) {
                return false;
            }
        }
        st->done += end - first;
        if (st->show) {
            fprintf(stderr, "\r%s: level %d/%d, %3.0f%%", PROG, level + 1, p->count,
                    100.0 * (double)st->done / (double)st->total);
        }
    }
    return TIFFWriteDirectory(tif) != 0;
}

/* Write the whole pyramid to path. BigTIFF when the raw pixels exceed 2 GiB: JPEG at any quality
 * stays well under twice the raw size, so a classic TIFF never overflows 4 GiB. */
bool write_slide(const char *path, const scene *s, const pyramid *p, int quality, bool cache_glass,
                 status *st)
{
    uint64_t raw = 0;
    for (int k = 0; k < p->count; k++) {
        uint64_t tiles =
            (uint64_t)((p->width[k] + TILE - 1) / TILE) * ((p->height[k] + TILE - 1) / TILE);
        raw += tiles * TILE * TILE * 3;
        st->total += tiles;
    }
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (opts == NULL) {
        snprintf(st->msg, sizeof(st->msg), "out of memory");
        return false;
    }
    TIFFOpenOptionsSetErrorHandlerExtR(opts, on_tiff_error, st);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, on_tiff_warning, st);
    TIFF *tif = TIFFOpenExt(path, raw > (2ull << 30) ? "w8" : "w", opts);
    TIFFOpenOptionsFree(opts);
    workspace *ws = workspace_array_new(BATCH + 1);
    glass_tile g = {-1, NULL, 0};
    bool ok = tif != NULL && ws != NULL;
    for (int k = 0; ok && k < p->count; k++) {
        ok = write_level(tif, s, p, k, quality, cache_glass, ws, &g, st);
    }
    if (tif != NULL) {
        TIFFClose(tif); // flushes; a failed flush reports through on_tiff_error
    }
    if (ws == NULL && st->msg[0] == '\0') {
        snprintf(st->msg, sizeof(st->msg), "out of memory");
    }
    free(g.data);
    workspace_array_free(ws);
    return ok && st->msg[0] == '\0';
}
