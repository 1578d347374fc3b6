/* SPDX-License-Identifier: MIT */
/* libtiff reader for one directory of a TIFF file: the backend for plain (single-level) stripped
 * or tiled TIFFs that OpenSlide does not recognise, and the fast path of slide-openslide.c for
 * the levels of tiled TIFF slides (Aperio JPEG, generic tiled TIFF). Tiles, or bands of
 * scanlines for stripped files, are decoded into RGB blocks kept in a small direct-mapped cache.
 * A TIFF* is not thread-safe, so each source has a pool of handles, opened on first use: readers
 * decode in parallel on different handles, and only the cache is shared (under a mutex).
 * Samples are converted to 8-bit RGB: gray, palette, 1-16 bit, alpha composited on white. */
#include <config.h>

#include <errno.h>

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <tiffio.h>

#include "slide.h"

#ifndef HAVE_TIFFOPENOPTIONSSETERRORHANDLEREXTR
#error "libtiff >= 4.5 (TIFFOpenOptionsSetErrorHandlerExtR) is required"
#endif

// Largest decoded RGB block (one tile, or one band of rows of a stripped file).
#define BLOCK_MAX_BYTES ((size_t)16 << 20)
// Budget for the block cache; at least one block is always kept. 16 MB holds a row of 256²
// tiles across 20 000 pixels, so the tile loop decodes each tile once on such slides.
#define CACHE_MAX_BYTES ((size_t)16 << 20)
// The most a level cached whole may take (a small slide's level 0 with its blocks' padding).
#define WHOLE_LEVEL_BYTES ((uint64_t)2 * TH_SMALL_SLIDE_BYTES)
// libtiff handles per source: as many readers decode at the same time.
#define HANDLES 16

enum color { COLOR_GRAY, COLOR_RGB, COLOR_PALETTE };
enum alpha { ALPHA_NONE, ALPHA_ASSOC, ALPHA_UNASSOC };

// One libtiff handle on the source's directory, used by one reader at a time.
typedef struct tiff_handle {
    pthread_mutex_t lock;  // held while a reader uses the handle
    TIFF *tiff;            // NULL until first used
    char msg[TH_TIFF_MSG]; // first libtiff error since the last clear_msg(), one line
    uint8_t *raw;          // (raw_size) one decoded tile or scanline, packed samples
    uint8_t *block;        // (block_h, block_w, 3) RGB, the block being decoded
    uint32_t next_row;     // stripped files: the row after the last one decoded, 0 if unknown
} tiff_handle;

struct th_tiff_src {
    char *path;
    int dir;        // the TIFF directory read
    bool ycbcr_rgb; // YCbCr JPEG: libjpeg converts to RGB (set on every handle)
    uint32_t img_w, img_h;
    // pixel layout of the decoded samples
    enum color color;
    enum alpha alpha;
    bool min_is_white;
    int bps, spp, base;      // bits per sample, samples per pixel, colour samples (1 or 3)
    uint8_t palette[3][256]; // (channel, index) 8-bit colour map, for COLOR_PALETTE
    // blocks: the TIFF's tiles, or bands of block_h full-width rows of a stripped file
    bool tiled;
    uint32_t block_w, block_h, blocks_across;
    uint32_t strip_rows; // stripped files: rows per strip (at most img_h)
    tmsize_t raw_size;   // bytes of a handle's raw
    tmsize_t raw_stride; // bytes per decoded row of raw
    tiff_handle handles[HANDLES];
    atomic_uint next_handle; // where a reader that finds every handle busy waits
    pthread_mutex_t cache_lock;
    pthread_cond_t cache_ready; // a slot's decode has finished (or failed)
    uint8_t *cache;             // (slots, block_h, block_w, 3) RGB, row-major
    int64_t *cache_tag; // (slots) block index held or being decoded by each slot, -1 if none
    bool *cache_busy;   // (slots) its block is being decoded into it
    int64_t slots;
    bool cache_whole;  // asked for: a small slide (TH_SMALL_SLIDE_BYTES)
    bool holds_all;    // one slot per block: the whole level stays cached
    size_t slot_bytes; // block_h * block_w * 3
};
typedef th_tiff_src tiff_src;

// Per-handle libtiff handlers: keep the first message (later ones are usually consequences),
// never print. Returning 1 stops libtiff from also calling the global handler. A write that
// failed for want of room gets the system's words: libtiff's "Write error at scanline N" alone
// does not say the disk is full.
static int on_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
    int e = errno;
    char *msg = user; // TH_TIFF_MSG bytes
    if (msg && !msg[0]) {
        vsnprintf(msg, TH_TIFF_MSG, fmt, ap);
        if (e == ENOSPC || e == EFBIG || e == EDQUOT || e == EIO) {
            size_t n = strlen(msg);
            snprintf(msg + n, TH_TIFF_MSG - n, ": %s", strerror(e));
        }
        for (char *p = msg; *p; p++) {
            if (*p == '\n' || *p == '\r') {
                *p = ' ';
            }
        }
    }
    return 1;
}

static int on_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
    return 1;
}

TIFF *th_tiff_open(const char *path, const char *mode, char *msg)
{
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (!opts) {
        snprintf(msg, TH_TIFF_MSG, "out of memory");
        return NULL;
    }
    // copied into the TIFF* by TIFFOpenExt; never the global handlers
    TIFFOpenOptionsSetErrorHandlerExtR(opts, on_error, msg);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, on_warning, msg);
    TIFF *tif = TIFFOpenExt(path, mode, opts);
    TIFFOpenOptionsFree(opts);
    return tif;
}

static void clear_msg(tiff_handle *t)
{
    t->msg[0] = '\0';
}

static const char *lib_msg(const tiff_handle *t)
{
    return t->msg[0] ? t->msg : "libtiff error";
}

static bool is_tiff(const char *path)
{
    uint8_t m[4] = {0};
    FILE *fp = th_fopen(path, "rb", NULL);
    if (!fp) {
        return false;
    }
    size_t n = fread(m, 1, sizeof(m), fp);
    fclose(fp);
    // little- or big-endian, classic (42) or BigTIFF (43)
    return n == 4 && ((m[0] == 'I' && m[1] == 'I' && (m[2] == 42 || m[2] == 43) && m[3] == 0) ||
                      (m[0] == 'M' && m[1] == 'M' && m[2] == 0 && (m[3] == 42 || m[3] == 43)));
}

// Colour maps are 16-bit, but some writers store 8-bit values; like libtiff's RGBA interface,
// treat a map whose entries all fit in 8 bits as 8-bit.
static bool read_palette(tiff_src *t, TIFF *tif, th_error **err)
{
    uint16_t *map[3];
    if (!TIFFGetField(tif, TIFFTAG_COLORMAP, &map[0], &map[1], &map[2])) {
        th_error_set(err, "palette TIFF has no colour map");
        return false;
    }
    int n = 1 << t->bps;
    bool eight_bit = true;
    for (int c = 0; c < 3; c++) {
        for (int i = 0; i < n; i++) {
            eight_bit = eight_bit && map[c][i] < 256;
        }
    }
    for (int c = 0; c < 3; c++) {
        for (int i = 0; i < n; i++) {
            t->palette[c][i] = (uint8_t)(eight_bit ? map[c][i] : map[c][i] >> 8);
        }
    }
    return true;
}

// Photometric interpretation -> colour kind, colour sample count and allowed bit depths.
static bool check_photometric(tiff_src *t, uint16_t photometric, uint16_t compression,
                              th_error **err)
{
    switch (photometric) {
    case PHOTOMETRIC_MINISWHITE:
    case PHOTOMETRIC_MINISBLACK:
        t->color = COLOR_GRAY;
        t->min_is_white = photometric == PHOTOMETRIC_MINISWHITE;
        return true;
    case PHOTOMETRIC_RGB:
        t->color = COLOR_RGB;
        return true;
    case PHOTOMETRIC_PALETTE:
        t->color = COLOR_PALETTE;
        return true;
    case PHOTOMETRIC_YCBCR:
        if (compression != COMPRESSION_JPEG) {
            th_error_set(err, "YCbCr TIFF is only supported with JPEG compression");
            return false;
        }
        // libjpeg converts to RGB (and upsamples chroma) for us: see open_handle
        t->ycbcr_rgb = true;
        t->color = COLOR_RGB;
        return true;
    case PHOTOMETRIC_SEPARATED:
        th_error_set(err, "CMYK TIFF is not supported");
        return false;
    default:
        th_error_set(err, "TIFF photometric interpretation %u is not supported",
                     (unsigned)photometric);
        return false;
    }
}

// Bit depths we convert: 8 always, 16 except for palettes, 1-4 for gray and palette.
static bool depth_supported(enum color color, int bps)
{
    switch (bps) {
    case 8:
        return true;
    case 16:
        return color != COLOR_PALETTE;
    case 1:
    case 2:
    case 4:
        return color != COLOR_RGB;
    default:
        return false;
    }
}

static const char *color_name(enum color color)
{
    return color == COLOR_RGB ? "RGB" : color == COLOR_PALETTE ? "palette" : "gray";
}

static bool check_samples(tiff_src *t, TIFF *tif, uint16_t sample_format, th_error **err)
{
    int bps = t->bps;
    if (sample_format == SAMPLEFORMAT_IEEEFP) {
        th_error_set(err, "floating-point TIFF is not supported");
        return false;
    }
    if (sample_format != SAMPLEFORMAT_UINT && sample_format != SAMPLEFORMAT_VOID) {
        th_error_set(err, "signed or complex TIFF samples are not supported");
        return false;
    }
    if (!depth_supported(t->color, bps)) {
        th_error_set(err, "%d-bit %s TIFF is not supported", bps, color_name(t->color));
        return false;
    }
    t->base = t->color == COLOR_RGB ? 3 : 1;
    if (t->spp > 4) {
        th_error_set(err, "TIFF with %d samples per pixel is not supported", t->spp);
        return false;
    }
    if (t->spp < t->base) {
        th_error_set(err, "RGB TIFF with only %d sample(s) per pixel", t->spp);
        return false;
    }
    if (t->spp > t->base) {
        // the first extra sample is alpha if it says so; unspecified extras are ignored
        uint16_t count = 0;
        uint16_t *types = NULL;
        if (TIFFGetField(tif, TIFFTAG_EXTRASAMPLES, &count, &types) && count > 0) {
            t->alpha = types[0] == EXTRASAMPLE_ASSOCALPHA   ? ALPHA_ASSOC
                       : types[0] == EXTRASAMPLE_UNASSALPHA ? ALPHA_UNASSOC
                                                            : ALPHA_NONE;
        }
    }
    return true;
}

static bool inspect(tiff_src *t, TIFF *tif, th_error **err)
{
    uint32_t w = 0, h = 0;
    uint16_t photometric = 0, compression = 0, bps = 0, spp = 0, sample_format = 0, planar = 0;

    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h) ||
        w == 0 || h == 0) {
        th_error_set(err, "TIFF has no valid image size");
        return false;
    }
    t->img_w = w;
    t->img_h = h;
    if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photometric)) {
        th_error_set(err, "TIFF has no photometric interpretation");
        return false;
    }
    TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &compression);
    if (!TIFFIsCODECConfigured(compression)) {
        th_error_set(err, "TIFF compression %u is not supported", (unsigned)compression);
        return false;
    }
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bps);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &sample_format);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
    t->bps = bps;
    t->spp = spp;
    if (!check_photometric(t, photometric, compression, err) ||
        !check_samples(t, tif, sample_format, err)) {
        return false;
    }
    if (spp > 1 && planar != PLANARCONFIG_CONTIG) {
        th_error_set(err, "planar (separate-plane) TIFF is not supported");
        return false;
    }
    return t->color != COLOR_PALETTE || read_palette(t, tif, err);
}

// Block geometry and the cache (a handle's buffers are allocated when it opens): nothing is
// allocated per read.
static bool plan_blocks(tiff_src *t, tiff_handle *h, th_error **err)
{
    TIFF *tif = h->tiff;
    t->tiled = TIFFIsTiled(tif);
    if (t->tiled) {
        uint32_t tw = 0, th = 0;
        TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw);
        TIFFGetField(tif, TIFFTAG_TILELENGTH, &th);
        if (tw == 0 || th == 0 || (uint64_t)tw * th * 3 > BLOCK_MAX_BYTES) {
            th_error_set(err, "TIFF tile size %ux%u is not supported", (unsigned)tw, (unsigned)th);
            return false;
        }
        t->block_w = tw;
        t->block_h = th;
        t->raw_size = TIFFTileSize(tif);
        t->raw_stride = TIFFTileRowSize(tif);
    } else {
        uint32_t rps = 0;
        if ((uint64_t)t->img_w * 3 > BLOCK_MAX_BYTES) { // one decoded row must fit in a block
            th_error_set(err,
                         "TIFF rows of %u px are wider than tileheat reads from a stripped "
                         "TIFF (%zu px)",
                         (unsigned)t->img_w, BLOCK_MAX_BYTES / 3);
            return false;
        }
        TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &rps);
        // a band is one strip when that fits, else as many rows as fit (at least one)
        uint64_t max_rows = TH_MAX(1, BLOCK_MAX_BYTES / ((uint64_t)t->img_w * 3));
        t->block_w = t->img_w;
        t->strip_rows = (uint32_t)TH_MIN((uint64_t)TH_MAX(rps, 1), t->img_h);
        t->block_h = (uint32_t)TH_MIN(t->strip_rows, max_rows);
        t->raw_size = TIFFScanlineSize(tif);
        t->raw_stride = t->raw_size;
    }
    if (t->raw_size <= 0 || t->raw_stride <= 0) {
        th_error_set(err, "cannot size TIFF buffers: %s", lib_msg(h));
        return false;
    }
    // convert_row reads block_w packed pixels from each of block_h (tile) rows of raw
    if ((uint64_t)t->raw_stride * 8 < (uint64_t)t->block_w * t->spp * t->bps ||
        (t->tiled && (uint64_t)t->raw_stride * t->block_h > (uint64_t)t->raw_size)) {
        th_error_set(err, "unexpected TIFF row layout");
        return false;
    }
    t->blocks_across = (t->img_w + t->block_w - 1) / t->block_w;
    int64_t blocks = (int64_t)t->blocks_across * ((t->img_h + t->block_h - 1) / t->block_h);
    t->slot_bytes = (size_t)t->block_w * t->block_h * 3;
    t->holds_all = t->cache_whole && (int64_t)t->img_w * t->img_h * 3 <= TH_SMALL_SLIDE_BYTES &&
                   (uint64_t)blocks * t->slot_bytes <= WHOLE_LEVEL_BYTES;
    t->slots = t->holds_all ? blocks
                            : TH_MAX(1, TH_MIN(blocks, (int64_t)(CACHE_MAX_BYTES / t->slot_bytes)));
    t->cache = th_malloc_huge((size_t)t->slots * t->slot_bytes, err); // tags say what is valid
    t->cache_tag = t->cache ? th_calloc((size_t)t->slots, sizeof(int64_t), err) : NULL;
    t->cache_busy = t->cache_tag ? th_calloc((size_t)t->slots, sizeof(bool), err) : NULL;
    if (!t->cache_busy) {
        return false;
    }
    for (int64_t i = 0; i < t->slots; i++) {
        t->cache_tag[i] = -1;
    }
    return true;
}

// Sample i (counting every sample of every pixel) of a packed, MSB-first row, as libtiff
// decodes it (16-bit samples are in native byte order).
static inline uint32_t sample(const uint8_t *row, size_t i, int bps)
{
    if (bps == 8) {
        return row[i];
    }
    if (bps == 16) {
        uint16_t v;
        memcpy(&v, row + 2 * i, 2);
        return v;
    }
    size_t bit = i * (size_t)bps; // 1, 2 and 4-bit samples never straddle a byte
    return (row[bit >> 3] >> (8 - bps - (int)(bit & 7))) & ((1u << bps) - 1);
}

// To 8 bits: 16-bit samples keep their high byte (v >> 8, as libpng's strip_16); 1-4 bit
// samples are scaled so that the maximum maps to 255.
static inline uint32_t to8(uint32_t v, int bps)
{
    return bps == 16 ? v >> 8 : bps == 8 ? v : v * 255 / ((1u << bps) - 1);
}

// Alpha over white. Unassociated: c*a/255 + (255 - a), rounded; associated (premultiplied):
// c + 255 - a, clamped for broken data with c > a.
static inline uint8_t over_white(uint32_t c, uint32_t a, enum alpha kind)
{
    if (kind == ALPHA_UNASSOC) {
        return (uint8_t)((c * a + 255 * (255 - a) + 127) / 255);
    }
    uint32_t v = c + 255 - a;
    return (uint8_t)(v > 255 ? 255 : v);
}

// n pixels of a decoded row -> (n, 3) RGB.
static void convert_row(const tiff_src *t, const uint8_t *raw, uint8_t *out, uint32_t n)
{
    if (t->color == COLOR_RGB && t->bps == 8 && t->spp == 3) {
        memcpy(out, raw, (size_t)n * 3); // the common case
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        size_t s = (size_t)i * t->spp;
        uint32_t c[3];
        if (t->color == COLOR_PALETTE) {
            uint32_t idx = sample(raw, s, t->bps);
            c[0] = t->palette[0][idx];
            c[1] = t->palette[1][idx];
            c[2] = t->palette[2][idx];
        } else if (t->color == COLOR_GRAY) {
            uint32_t g = to8(sample(raw, s, t->bps), t->bps);
            c[0] = c[1] = c[2] = t->min_is_white ? 255 - g : g;
        } else {
            for (int k = 0; k < 3; k++) {
                c[k] = to8(sample(raw, s + k, t->bps), t->bps);
            }
        }
        uint32_t a = t->alpha == ALPHA_NONE ? 255 : to8(sample(raw, s + t->base, t->bps), t->bps);
        for (int k = 0; k < 3; k++) {
            out[3 * i + k] = a == 255 ? (uint8_t)c[k] : over_white(c[k], a, t->alpha);
        }
    }
}

static void close_handle(tiff_handle *h)
{
    if (h->tiff) {
        TIFFClose(h->tiff);
    }
    h->tiff = NULL;
    TH_FREE(h->raw);
    TH_FREE(h->block);
    h->next_row = 0;
}

// Handle h's libtiff handle on the source's directory (JPEG decoded to RGB once inspect has
// found YCbCr). Handle lock held.
static bool open_tiff(tiff_src *t, tiff_handle *h, th_error **err)
{
    clear_msg(h);
    // "m": no memory mapping: mapped file pages would count in RSS as the slide is read, up to
    // the file size (1 GB for a 100 000² slide); pread costs the same here.
    h->tiff = th_tiff_open(t->path, "rm", h->msg);
    if (!h->tiff || !TIFFSetDirectory(h->tiff, (tdir_t)t->dir)) {
        th_error_set(err, "cannot open TIFF: %s", lib_msg(h));
        return false;
    }
    if (t->ycbcr_rgb) {
        TIFFSetField(h->tiff, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    }
    return true;
}

// Handle h's decode buffers, sized by plan_blocks.
static bool alloc_handle(const tiff_src *t, tiff_handle *h, th_error **err)
{
    h->raw = th_malloc((size_t)t->raw_size, err);
    h->block = h->raw ? th_malloc(t->slot_bytes, err) : NULL;
    return h->block != NULL;
}

// Open handle h with its buffers; on failure it stays closed. Handle lock held.
static bool open_handle(tiff_src *t, tiff_handle *h, th_error **err)
{
    if (!open_tiff(t, h, err) || !alloc_handle(t, h, err)) {
        close_handle(h);
        return false;
    }
    return true;
}

// A handle for this reader, locked: a free one if there is one, else wait for one in turn.
static tiff_handle *acquire(tiff_src *t, th_error **err)
{
    tiff_handle *h = NULL;
    for (int i = 0; i < HANDLES && !h; i++) {
        if (pthread_mutex_trylock(&t->handles[i].lock) == 0) {
            h = &t->handles[i];
        }
    }
    if (!h) {
        h = &t->handles[atomic_fetch_add(&t->next_handle, 1) % HANDLES];
        pthread_mutex_lock(&h->lock);
    }
    if (!h->tiff && !open_handle(t, h, err)) {
        pthread_mutex_unlock(&h->lock);
        return NULL;
    }
    return h;
}

// Decode block idx into h->block, (block_h, block_w, 3) RGB; rows and columns past the image
// edge are left untouched (never copied out).
static bool decode_block(tiff_src *t, tiff_handle *h, int64_t idx, th_error **err)
{
    uint32_t x0 = (uint32_t)(idx % t->blocks_across) * t->block_w;
    uint32_t y0 = (uint32_t)(idx / t->blocks_across) * t->block_h;
    uint32_t rows = TH_MIN(t->block_h, t->img_h - y0);
    uint32_t cols = TH_MIN(t->block_w, t->img_w - x0);
    size_t out_stride = (size_t)t->block_w * 3;

    clear_msg(h);
    if (t->tiled) {
        ttile_t tile = TIFFComputeTile(h->tiff, x0, y0, 0, 0);
        if (TIFFReadEncodedTile(h->tiff, tile, h->raw, t->raw_size) < 0) {
            th_error_set(err, "cannot decode TIFF tile at %u,%u: %s", (unsigned)x0, (unsigned)y0,
                         lib_msg(h));
            return false;
        }
        for (uint32_t r = 0; r < rows; r++) {
            convert_row(t, h->raw + r * t->raw_stride, h->block + r * out_stride, cols);
        }
        return true;
    }
    // Scanlines: libtiff restarts a strip's decoder when asked for an earlier row, but most
    // codecs cannot skip forward, so rows from the strip's start (or from where this handle
    // stopped, if that is in between) are decoded and dropped first.
    uint32_t start = y0 - y0 % t->strip_rows;
    uint32_t from = h->next_row > start && h->next_row <= y0 ? h->next_row : start;
    h->next_row = 0;
    for (uint32_t r = from; r < y0 + rows; r++) {
        if (TIFFReadScanline(h->tiff, h->raw, r, 0) < 0) {
            th_error_set(err, "cannot decode TIFF row %u: %s", (unsigned)r, lib_msg(h));
            return false;
        }
        if (r >= y0) {
            convert_row(t, h->raw, h->block + (r - y0) * out_stride, cols);
        }
    }
    h->next_row = y0 + rows;
    return true;
}

// The part of block (bx, by) inside the region goes to dest (the region's w × h RGB at x, y).
static void copy_part(const tiff_src *t, const uint8_t *blk, int64_t bx, int64_t by, uint8_t *dest,
                      int64_t x, int64_t y, int64_t w, int64_t h)
{
    int64_t bw = t->block_w, bh = t->block_h;
    int64_t r0 = TH_MAX(TH_MAX(y, 0), by * bh);
    int64_t r1 = TH_MIN(TH_MIN(y + h, (int64_t)t->img_h), (by + 1) * bh);
    int64_t c0 = TH_MAX(TH_MAX(x, 0), bx * bw);
    int64_t c1 = TH_MIN(TH_MIN(x + w, (int64_t)t->img_w), (bx + 1) * bw);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *src = blk + ((r - by * bh) * bw + (c0 - bx * bw)) * 3;
        memcpy(dest + ((r - y) * w + (c0 - x)) * 3, src, (size_t)(c1 - c0) * 3);
    }
}

// Slot `slot` holding block idx, under the cache lock: true if it is there; waits while another
// reader decodes it (each block is decoded once while it stays cached: two threads on
// neighbouring tiles want the same blocks at the same moment, and without the wait they decoded
// 16 % of the blocks of the demo slide twice).
static bool cached_or_wait(tiff_src *t, int64_t slot, int64_t idx)
{
    while (t->cache_tag[slot] == idx && t->cache_busy[slot]) {
        pthread_cond_wait(&t->cache_ready, &t->cache_lock);
    }
    return t->cache_tag[slot] == idx;
}

// Block (bx, by) into the region: from the cache if it holds it, else decoded on a handle outside
// the cache lock into the slot, which the decoder claims first (unless another block is being
// decoded there: then this one is decoded without caching).
static bool read_block(tiff_src *t, int64_t bx, int64_t by, uint8_t *dest, int64_t x, int64_t y,
                       int64_t w, int64_t h, th_error **err)
{
    int64_t idx = by * t->blocks_across + bx, slot = idx % t->slots;
    uint8_t *cached = t->cache + (size_t)slot * t->slot_bytes;
    // A tile the region covers whole is not cached (unless the whole level is): its reader has it
    // all (bands read for the tissue mask and the heatmap), and caching it would only evict tiles
    // that patches share.
    // (Bands of a stripped file stay cached: decoding one again may mean its whole strip.)
    bool whole = !t->holds_all && t->tiled && x <= bx * t->block_w && y <= by * t->block_h &&
                 x + w >= TH_MIN((bx + 1) * t->block_w, (int64_t)t->img_w) &&
                 y + h >= TH_MIN((by + 1) * t->block_h, (int64_t)t->img_h);
    pthread_mutex_lock(&t->cache_lock);
    bool hit = cached_or_wait(t, slot, idx);
    if (hit) {
        copy_part(t, cached, bx, by, dest, x, y, w, h);
    }
    bool claim = !hit && !whole && !t->cache_busy[slot];
    if (claim) {
        t->cache_tag[slot] = idx;
        t->cache_busy[slot] = true;
    }
    pthread_mutex_unlock(&t->cache_lock);
    if (hit) {
        return true;
    }
    tiff_handle *hd = acquire(t, err);
    bool ok = hd && decode_block(t, hd, idx, err);
    if (ok) {
        copy_part(t, hd->block, bx, by, dest, x, y, w, h);
        if (claim) {
            memcpy(cached, hd->block, t->slot_bytes); // the slot is ours while busy
        }
    }
    if (hd) {
        pthread_mutex_unlock(&hd->lock);
    }
    if (claim) {
        pthread_mutex_lock(&t->cache_lock);
        t->cache_tag[slot] = ok ? idx : -1;
        t->cache_busy[slot] = false;
        pthread_cond_broadcast(&t->cache_ready);
        pthread_mutex_unlock(&t->cache_lock);
    }
    return ok;
}

bool th_tiff_src_read(th_tiff_src *t, uint8_t *dest, int64_t x, int64_t y, int64_t w, int64_t h,
                      th_error **err)
{
    if (x < 0 || y < 0 || x + w > (int64_t)t->img_w || y + h > (int64_t)t->img_h) {
        th_slide_fill_white(dest, w, h); // only what lies outside the image stays white
    }
    if (x >= (int64_t)t->img_w || y >= (int64_t)t->img_h || x + w <= 0 || y + h <= 0) {
        return true;
    }
    int64_t ix0 = TH_MAX(x, 0), iy0 = TH_MAX(y, 0);
    int64_t ix1 = TH_MIN(x + w, (int64_t)t->img_w), iy1 = TH_MIN(y + h, (int64_t)t->img_h);
    for (int64_t by = iy0 / t->block_h; by <= (iy1 - 1) / t->block_h; by++) {
        for (int64_t bx = ix0 / t->block_w; bx <= (ix1 - 1) / t->block_w; bx++) {
            if (!read_block(t, bx, by, dest, x, y, w, h, err)) {
                return false;
            }
        }
    }
    return true;
}

void th_tiff_src_release(th_tiff_src *t)
{
    if (!t || !t->cache) {
        return;
    }
    pthread_mutex_lock(&t->cache_lock);
    for (int64_t i = 0; i < t->slots; i++) {
        t->cache_tag[i] = -1;
    }
    pthread_mutex_unlock(&t->cache_lock);
    // th_malloc_huge's block is page-aligned: its pages go back and read as zeros when touched
    madvise(t->cache, (size_t)t->slots * t->slot_bytes, MADV_DONTNEED);
}

void th_tiff_src_close(th_tiff_src *t)
{
    if (!t) {
        return;
    }
    for (int i = 0; i < HANDLES; i++) {
        close_handle(&t->handles[i]);
        pthread_mutex_destroy(&t->handles[i].lock);
    }
    pthread_mutex_destroy(&t->cache_lock);
    pthread_cond_destroy(&t->cache_ready);
    th_free(t->cache_busy);
    th_free(t->cache_tag);
    th_free(t->cache);
    th_free(t->path);
    th_free(t);
}

th_tiff_src *th_tiff_src_open(const char *path, int dir, bool cache_whole, th_error **err)
{
    tiff_src *t = th_calloc(1, sizeof(*t), err);
    if (!t) {
        return NULL;
    }
    t->dir = dir;
    t->cache_whole = cache_whole;
    t->path = th_strdup(path, err);
    bool ok = t->path && pthread_mutex_init(&t->cache_lock, NULL) == 0 &&
              pthread_cond_init(&t->cache_ready, NULL) == 0;
    for (int i = 0; i < HANDLES && ok; i++) {
        ok = pthread_mutex_init(&t->handles[i].lock, NULL) == 0;
    }
    if (!ok) {
        th_error_set(err, t->path ? "cannot create a mutex" : "out of memory");
        th_tiff_src_close(t);
        return NULL;
    }
    // Handle 0 reads the directory's layout; its buffers are sized once that is known.
    tiff_handle *h = &t->handles[0];
    ok = open_tiff(t, h, err) && inspect(t, h->tiff, err);
    if (ok && t->ycbcr_rgb) {
        TIFFSetField(h->tiff, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB); // before sizing
    }
    if (!ok || !plan_blocks(t, h, err) || !alloc_handle(t, h, err)) {
        th_tiff_src_close(t);
        return NULL;
    }
    return t;
}

// Whether the current directory is a tiled 8-bit RGB image (or JPEG-compressed YCbCr) that
// libtiff decodes: the kind slide levels are made of.
static bool simple_tiled_rgb(TIFF *tif)
{
    uint16_t photometric = 0, compression = 0, bps = 0, spp = 0, planar = 0;
    TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &compression);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bps);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
    return TIFFIsTiled(tif) && TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photometric) &&
           (photometric == PHOTOMETRIC_RGB ||
            (photometric == PHOTOMETRIC_YCBCR && compression == COMPRESSION_JPEG)) &&
           bps == 8 && spp == 3 && planar == PLANARCONFIG_CONTIG &&
           TIFFIsCODECConfigured(compression);
}

int th_tiff_match_levels(const char *path, const th_slide *slide, int dirs[])
{
    char msg[TH_TIFF_MSG] = "";
    int matched = 0;
    for (int i = 0; i < slide->level_count; i++) {
        dirs[i] = -1;
    }
    TIFF *tif = th_tiff_open(path, "rm", msg);
    for (int d = 0; tif && d < 4 * TH_SLIDE_MAX_LEVELS; d++) {
        uint32_t w = 0, hh = 0;
        if (simple_tiled_rgb(tif) && TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w) &&
            TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &hh)) {
            for (int i = 0; i < slide->level_count; i++) {
                if (dirs[i] < 0 && slide->level_w[i] == w && slide->level_h[i] == hh) {
                    dirs[i] = d;
                    matched++;
                    break;
                }
            }
        }
        if (!TIFFReadDirectory(tif)) {
            break;
        }
    }
    if (tif) {
        TIFFClose(tif);
    }
    return matched;
}

// µm per pixel from resolution tags in pixels per centimetre or inch, if believable.
static void set_mpp(th_slide *slide, TIFF *tif)
{
    uint16_t unit = 0;
    float rx = 0, ry = 0;
    if (TIFFGetField(tif, TIFFTAG_RESOLUTIONUNIT, &unit) &&
        (unit == RESUNIT_CENTIMETER || unit == RESUNIT_INCH) &&
        TIFFGetField(tif, TIFFTAG_XRESOLUTION, &rx) &&
        TIFFGetField(tif, TIFFTAG_YRESOLUTION, &ry)) {
        th_slide_set_resolution_mpp(slide, rx, ry, unit == RESUNIT_CENTIMETER ? 1e4 : 25400,
                                    "tiff-tags");
    }
}

static bool tiff_read_region(th_slide *slide, uint8_t *dest, int64_t x, int64_t y, int level,
                             int64_t w, int64_t h, th_error **err)
{
    return th_tiff_src_read(slide->data, dest, x, y, w, h, err);
}

static void tiff_close(th_slide *slide)
{
    th_tiff_src_close(slide->data);
    slide->data = NULL;
}

static void tiff_release(th_slide *slide, int level)
{
    th_tiff_src_release(slide->data);
}

static const th_slide_ops tiff_ops = {
    .read_region = tiff_read_region,
    .close = tiff_close,
    .release = tiff_release,
};

bool th_slide_tiff_open(th_slide *slide, const char *path, th_error **err)
{
    if (!is_tiff(path)) {
        return false; // not ours
    }
    tiff_src *t = th_tiff_src_open(path, 0, true, err); // cached whole if it is small
    if (!t) {
        return false;
    }
    snprintf(slide->format, sizeof(slide->format), "tiff");
    slide->level_count = 1;
    slide->level_w[0] = t->img_w;
    slide->level_h[0] = t->img_h;
    slide->downsample[0] = 1.0;
    set_mpp(slide, t->handles[0].tiff);
    slide->ops = &tiff_ops;
    slide->data = t;
    return true;
}
