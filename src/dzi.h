/* SPDX-License-Identifier: MIT */
/* The Deep Zoom layout of a pyramid (pyramid.h): NAME.dzi, and NAME_files/L/C_R.jpg or .png with
 * L counted from the 1-pixel top level, as OpenSeadragon, libvips' dzsave and OpenSlide's
 * deepzoom write it. Tiles are encoded here (JPEG through libjpeg, PNG with alpha through
 * png-bands.c); a tile that is one of a few shared images (glass, nothing drawn) is a hard link
 * to that image's file, so it is written once. */
#ifndef TH_DZI_H
#define TH_DZI_H

#include <pthread.h>

#include "png-bands.h"
#include "pyramid.h"

#define TH_DZI_TILE 256
#define TH_DZI_OVERLAP 1
#define TH_DZI_JPEG_QUALITY 85

typedef struct th_dzi {
    th_pyramid pyr; /* lv[0] is the full size: Deep Zoom level pyr.n - 1 */
    char *files;    /* "DIR/NAME_files" */
    bool png;       /* PNG tiles with alpha, else JPEG */
} th_dzi;

/* A shared tile: the file its links go to, and its bytes for file systems without hard links.
 * A file takes at most so many links (ext4: 65 000), so when one is full the next tile is written
 * as a copy and becomes the file the following links go to. */
typedef struct th_dzi_shared {
    pthread_mutex_t lock; /* over path */
    bool locked;          /* lock was initialised */
    char path[4200];      /* the file links are made to */
    uint8_t *bytes;
    size_t len;
} th_dzi_shared;

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

/* Tile (col, row) of level k is the shared tile: a hard link to it (a copy where links fail). */
bool th_dzi_put_shared(const th_dzi *d, int k, int64_t col, int64_t row, const th_dzi_shared *sh,
                       th_error **err);

/* Encode a shared tile (w×h, as th_dzi_put) into `path`. */
bool th_dzi_shared_make(th_dzi_shared *sh, const char *path, bool png, const uint8_t *px, int w,
                        int h, th_error **err);
void th_dzi_shared_free(th_dzi_shared *sh);

void th_dzi_scratch_free(th_dzi_scratch *s);

#endif
