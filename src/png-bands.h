/* SPDX-License-Identifier: MIT */
/* 8-bit gray or RGB PNGs written in bands of rows that are filtered and deflated independently
 * (by any thread, into a band's own IDAT chunk) and written in order, pigz's way of joining
 * deflate streams. Used by render.c (heatmap.png, bands compressed in parallel) and tissue.c
 * (tissue.png). Settings and measurements: png-bands.c. */
#ifndef TH_PNG_BANDS_H
#define TH_PNG_BANDS_H

#include <zlib.h>

#include "th-private.h"

/* One band encoder: a worker's buffers, reused band after band. */
typedef struct th_png_band {
    int width, channels; /* image width in pixels; 1 (gray), 3 (RGB) or 4 (RGBA) */
    uint8_t *filtered;   /* (1 + width * channels) one filtered row: filter type, then bytes */
    uint8_t *chunk;      /* (cap) the band's IDAT chunk: length, type, zlib data, CRC */
    size_t cap, len;     /* bytes of chunk allocated, in use */
    size_t raw_bytes;    /* filtered bytes of the band encoded last (its rows × row bytes) */
    uint32_t adler;      /* adler32 of those filtered bytes */
    z_stream z;          /* raw deflate (no zlib header or trailer), reset for each band */
    bool z_open;         /* z needs deflateEnd */
} th_png_band;

/* Buffers for bands of at most max_rows rows of a width × channels image. */
bool th_png_band_init(th_png_band *b, int width, int channels, int max_rows, th_error **err);
void th_png_band_free(th_png_band *b);

/* Filter and deflate rows ((h, width, channels) bytes, the image's rows y0 .. y0+h-1) into the
 * band's chunk. y0 == 0 adds the zlib header. */
bool th_png_band_encode(th_png_band *b, const uint8_t *rows, int y0, int h, th_error **err);

/* The signature, IHDR (8-bit gray or RGB) and a tEXt "Software" chunk, written by libpng. */
bool th_png_begin(FILE *fp, int width, int height, int channels, th_error **err);

/* Write an encoded band; *adler (start with th_png_adler_init()) accumulates the stream's
 * checksum. Bands must be written in order, all of them. */
bool th_png_write_band(FILE *fp, const th_png_band *b, uint32_t *adler, th_error **err);
uint32_t th_png_adler_init(void);

/* The end of the zlib stream (a final empty block and the checksum) and IEND. */
bool th_png_end(FILE *fp, uint32_t adler, th_error **err);

#endif
