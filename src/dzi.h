/* SPDX-License-Identifier: MIT */
/* The Deep Zoom layout of a pyramid (pyramid.h): NAME.dzi, and NAME_files/L/C_R.jpg or .png with
 * L counted from the 1-pixel top level, as OpenSeadragon, libvips' dzsave and OpenSlide's
 * deepzoom write it. Tiles are encoded here (JPEG through libjpeg, PNG with alpha through
 * png-bands.c). A tile that is the pyramid's one shared image (glass, nothing drawn) gets no
 * file: it is only marked, and the page maps it to that image's one file (th_dzi_is_shared). */
#ifndef TH_DZI_H
#define TH_DZI_H

#include "png-bands.h"
#include "pyramid.h"

#define TH_DZI_TILE 256
#define TH_DZI_OVERLAP 1
#define TH_DZI_JPEG_QUALITY 85

typedef struct th_dzi {
    th_pyramid pyr; /* lv[0] is the full size: Deep Zoom level pyr.n - 1 */
    char *files;    /* "DIR/NAME_files" */
    bool png;       /* PNG tiles with alpha, else JPEG */
    uint8_t *shared; /* (tiles of all levels) 1: the tile is the shared image and has no file;
                        level k's (rows, cols) row-major from first[k]. One byte a tile, so
                        threads mark their own tiles without locking. */
    int64_t first[TH_PYR_MAX_LEVELS];
} th_dzi;

/* One thread's encoder state: a PNG band for the largest tile, libjpeg's output buffer. */
typedef struct th_dzi_scratch {
    th_png_band png;
    bool png_ready;
    unsigned char *jpeg; /* (jpeg_cap) bytes: where libjpeg encodes a tile */
    unsigned long jpeg_cap;
    unsigned char *out; /* the tile encoded: jpeg, or libjpeg's own buffer if it outgrew it */
    unsigned long out_len;
} th_dzi_scratch;

/* Plan a w×h pyramid, make DIR/NAME_files/0 .. N-1 and write DIR/NAME.dzi. */
bool th_dzi_open(th_dzi *d, const char *dir, const char *name, int64_t w, int64_t h, bool png,
                 th_error **err);
void th_dzi_close(th_dzi *d);

/* Encode w×h pixels (RGB for JPEG, RGBA for PNG; (h, w, channels) row-major) as tile (col, row)
 * of pyramid level k. */
bool th_dzi_put(const th_dzi *d, th_dzi_scratch *s, int k, int64_t col, int64_t row,
                const uint8_t *px, int w, int h, th_error **err);

/* Tile (col, row) of level k is the shared image: no file is written. */
void th_dzi_put_shared(th_dzi *d, int k, int64_t col, int64_t row);
bool th_dzi_is_shared(const th_dzi *d, int k, int64_t col, int64_t row);

/* Encode w×h pixels (as th_dzi_put) into the file `path`: a pyramid's shared image. */
bool th_dzi_write_image(const char *path, bool png, const uint8_t *px, int w, int h,
                        th_error **err);

void th_dzi_scratch_free(th_dzi_scratch *s);

#endif
