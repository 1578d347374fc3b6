/* SPDX-License-Identifier: MIT */
/* PNGs in independently compressed bands (see png-bands.h): libpng writes the header, each band
 * becomes an IDAT chunk holding a raw deflate stream of its filtered rows that ends with a sync
 * flush, and a last IDAT ends the zlib stream. */
#include <config.h>

#include <errno.h>
#include <png.h>
#include <zlib.h>

#include "png-bands.h"

/* Compression: Paeth on every row (Sub on a band's first row), zlib's Z_RLE (matches at
 * distance 1 only; the level makes no difference to it). On CMU-1-Small-Region's multi heatmap
 * (1817×2000 RGB, 10.9 MB of pixels), filtering + deflate on one thread, best of 5, whole image:
 *   libpng's defaults (adaptive filter, level 6, Z_FILTERED)  2 963 140 B  1.00×  0.209 s
 *   adaptive, Z_RLE                                           3 009 432 B  1.02×  0.151 s
 *   Paeth, level 6 Z_FILTERED                                 2 950 569 B  1.00×  0.147 s
 *   Paeth, level 1                                            3 257 288 B  1.10×  0.086 s
 *   Paeth, Z_RLE                                              2 973 451 B  1.00×  0.056 s
 *   Up, Z_RLE                                                 3 235 662 B  1.09×  0.054 s
 *   Sub, Z_RLE                                                3 604 749 B  1.22×  0.057 s
 *   none, Z_RLE                                               5 136 377 B  1.73×  0.065 s
 * In 32-row bands (Sub first rows, a sync flush each) Paeth + Z_RLE makes 1.01× the size of
 * libpng's defaults on CMU and 1.07× on the demo slide (gen-demo-slide); with it in the bands'
 * threads, CMU's whole heatmap.png stage went from 0.43 to 0.16 s on one thread, 0.24 to 0.09 s
 * on two. */
#define PNG_ZLEVEL 1
#define PNG_ZSTRATEGY Z_RLE

bool th_png_band_init(th_png_band *b, int width, int channels, int max_rows, th_error **err)
{
    memset(b, 0, sizeof(*b));
    b->width = width;
    b->channels = channels;
    int rc = deflateInit2(&b->z, PNG_ZLEVEL, Z_DEFLATED, -15, 8, PNG_ZSTRATEGY);
    if (rc != Z_OK) {
        th_error_set(err, "%s", rc == Z_MEM_ERROR ? "out of memory" : "cannot start zlib");
        return false;
    }
    b->z_open = true;
    size_t row_bytes = (size_t)width * channels + 1;
    // deflateBound assumes one Z_FINISH; the sync flush adds an empty stored block (5 bytes)
    // after at most 7 bits. Then the chunk's length, type and CRC, and band 0's zlib header.
    b->cap = deflateBound(&b->z, (uLong)((size_t)max_rows * row_bytes)) + 8 + 12 + 2;
    if (b->cap > INT32_MAX) {
        th_error_set(err, "image width %d is too large for PNG bands", width);
        return false;
    }
    b->filtered = th_malloc(row_bytes, err);
    b->chunk = b->filtered ? th_malloc(b->cap, err) : NULL;
    return b->chunk != NULL;
}

void th_png_band_free(th_png_band *b)
{
    TH_FREE(b->filtered);
    TH_FREE(b->chunk);
    if (b->z_open) {
        deflateEnd(&b->z);
        b->z_open = false;
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

// Frame a chunk whose len bytes of data already sit at chunk + 8: length and type before them,
// the CRC of type and data after them. Returns the chunk's whole size.
static size_t frame_chunk(uint8_t *chunk, const char type[4], size_t len)
{
    put_be32(chunk, (uint32_t)len);
    memcpy(chunk + 4, type, 4);
    put_be32(chunk + 8 + len, (uint32_t)crc32(0, chunk + 4, (uInt)(len + 4)));
    return len + 12;
}

static bool write_all(FILE *fp, const uint8_t *buf, size_t n, th_error **err)
{
    if (fwrite(buf, 1, n, fp) != n) {
        th_error_set(err, "write error: %s", strerror(errno));
        return false;
    }
    return true;
}

/* One row of n bytes, bpp bytes per pixel, with its filter type byte in front: Sub for a band's
 * first row (it needs no row above, so a band never waits for the one before it), Paeth for the
 * others. Paeth's inputs are all unfiltered bytes, so the loop vectorises. */
static void filter_row(const uint8_t *restrict cur, const uint8_t *restrict prev, size_t n,
                       size_t bpp, uint8_t *restrict out)
{
    out[0] = prev ? 4 : 1;
    out++;
    for (size_t i = 0; i < bpp; i++) {
        out[i] = (uint8_t)(cur[i] - (prev ? prev[i] : 0)); // no pixel to the left: Paeth is Up
    }
    if (!prev) {
        for (size_t i = bpp; i < n; i++) {
            out[i] = (uint8_t)(cur[i] - cur[i - bpp]);
        }
        return;
    }
    TH_SIMD
    for (size_t i = bpp; i < n; i++) {
        int a = cur[i - bpp], b = prev[i], c = prev[i - bpp];
        int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
        int pred = pb <= pc ? b : c;
        pred = pa <= pb && pa <= pc ? a : pred;
        out[i] = (uint8_t)(cur[i] - pred);
    }
}

bool th_png_band_encode(th_png_band *b, const uint8_t *rows, int y0, int h, th_error **err)
{
    size_t n = (size_t)b->width * b->channels, head = 0;
    uint8_t *data = b->chunk + 8; // after the chunk's length and type
    if (y0 == 0) {
        data[0] = 0x78; // deflate, 32 KB window
        data[1] = 0x01; // no dictionary, "fastest" (0x7801 is a multiple of 31)
        head = 2;
    }
    z_stream *z = &b->z;
    deflateReset(z);
    z->next_out = data + head;
    z->avail_out = (uInt)(b->cap - 12 - head);
    uLong adler = adler32(0, NULL, 0);
    for (int j = 0; j < h; j++) {
        const uint8_t *row = rows + (size_t)j * n;
        filter_row(row, j ? row - n : NULL, n, (size_t)b->channels, b->filtered);
        adler = adler32(adler, b->filtered, (uInt)(n + 1));
        z->next_in = b->filtered;
        z->avail_in = (uInt)(n + 1);
        int rc = deflate(z, j == h - 1 ? Z_SYNC_FLUSH : Z_NO_FLUSH);
        if (rc != Z_OK || z->avail_in || !z->avail_out) {
            th_error_set(err, "compressing rows %d to %d: zlib error %d (%s)", y0, y0 + h - 1, rc,
                         z->msg ? z->msg : "output full");
            return false;
        }
    }
    b->len = frame_chunk(b->chunk, "IDAT", head + z->total_out);
    b->adler = (uint32_t)adler;
    b->raw_bytes = (size_t)h * (n + 1);
    return true;
}

uint32_t th_png_adler_init(void)
{
    return (uint32_t)adler32(0, NULL, 0);
}

bool th_png_write_band(FILE *fp, const th_png_band *b, uint32_t *adler, th_error **err)
{
    if (!write_all(fp, b->chunk, b->len, err)) {
        return false;
    }
    *adler = (uint32_t)adler32_combine(*adler, b->adler, (z_off_t)b->raw_bytes);
    return true;
}

/* A final empty fixed-Huffman block (BFINAL set, then the end-of-block code: bytes 03 00) and
 * the adler32 of all filtered rows in a last IDAT; then IEND. */
bool th_png_end(FILE *fp, uint32_t adler, th_error **err)
{
    uint8_t buf[18 + 12]; // IDAT with 6 bytes of data, IEND with none
    buf[8] = 0x03;
    buf[9] = 0x00;
    put_be32(buf + 10, adler);
    frame_chunk(buf, "IDAT", 6);
    frame_chunk(buf + 18, "IEND", 0);
    return write_all(fp, buf, sizeof(buf), err);
}

typedef struct png_ctx {
    char msg[256]; // libpng's error message (written by the error callback)
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->msg, sizeof(ctx->msg), "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    // The library never prints; libpng's warnings do not affect the output.
}

/* libpng reports errors by longjmp: this function is its only caller here and sets the jump
 * target; ctx lives in the caller's frame, so nothing longjmp could clobber is read after it. */
static bool write_header(png_ctx *ctx, FILE *fp, int width, int height, int channels,
                         th_error **err)
{
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        th_error_set(err, "out of memory");
        return false;
    }
    // png and info are not changed between here and the end: safe to use after longjmp.
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        th_error_set(err, "%s", ctx->msg);
        return false;
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
                 channels == 1   ? PNG_COLOR_TYPE_GRAY
                 : channels == 4 ? PNG_COLOR_TYPE_RGB_ALPHA
                                 : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_text text = {.compression = PNG_TEXT_COMPRESSION_NONE,
                     .key = (png_charp) "Software",
                     .text = (png_charp) "tileheat " PACKAGE_VERSION};
    png_set_text(png, info, &text, 1);
    png_write_info(png, info);
    png_destroy_write_struct(&png, &info);
    return true;
}

bool th_png_begin(FILE *fp, int width, int height, int channels, th_error **err)
{
    png_ctx ctx = {""};
    return write_header(&ctx, fp, width, height, channels, err);
}
