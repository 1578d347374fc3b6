/* SPDX-License-Identifier: MIT */
/* The browser viewer (th_viewer_write): a folder with index.html, OpenSeadragon, the slide as a
 * Deep Zoom pyramid, one RGBA pyramid per heatmap layer and the per-tile results as script
 * files, all opened from file:// with no server. viewer.c writes the page's data and puts the
 * folder together; viewer-tiles.c writes the pyramids. */
#ifndef TH_VIEWER_H
#define TH_VIEWER_H

#include "dzi.h"
#include "render.h"
#include "slide.h"
#include "tissue.h"

/* A unit of the slide's pyramid walk: TH_VIEWER_UNIT² tiles, read at once where a level of the
 * slide has the pyramid level's scale (a slide tile under a unit's edge is decoded again by the
 * units on both sides: larger units decode fewer twice), else in blocks of TH_VIEWER_BOX² tiles
 * (the box filter's sums are (h, w, 4) uint64 per block). */
#define TH_VIEWER_UNIT 4
#define TH_VIEWER_BOX 2
#define TH_VIEWER_SIDE(tiles) ((tiles)*TH_DZI_TILE + 2 * TH_DZI_OVERLAP)

/* Reading the slide at any scale (th_viewer_read_scaled): one thread's buffers. */
typedef struct th_viewer_reader {
    uint8_t *region; /* (READ_MAX_PX, 3) a piece of a slide level */
    int32_t *col_of; /* (READ_MAX_PX) output column of each of its columns */
    uint64_t *sum;   /* (max_h, max_w, 4) sums of R, G, B and the count per output pixel */
} th_viewer_reader;

typedef struct th_viewer_worker {
    th_viewer_reader rd;
    uint8_t *unit;         /* (side, side, 3) the slide under a unit: side TH_VIEWER_SIDE(UNIT) */
    uint8_t *tile;         /* (258, 258, 3) one slide tile */
    uint8_t *layers;       /* (n_layers, 258, 258, 4) one layer tile per layer */
    th_overlay_axis *cols; /* (258) where a layer tile's columns sample the CAM */
    th_overlay_cache cache;
    th_dzi_scratch enc;
} th_viewer_worker;

typedef struct th_viewer {
    th_slide *slide_handle;
    const th_result *res;
    const th_tissue *tissue; /* the run's mask, or NULL: no glass shortcut */
    th_overlay ov;           /* the heatmap as heatmap.png draws it */
    char *tmp;               /* the folder being written, renamed to the viewer folder at the end */
    int threads;
    const volatile sig_atomic_t *cancel;
    th_dzi slide;            /* slide_files/ */
    bool has_glass;          /* glass tiles are shared (a mask, and glass on the thumbnail) */
    uint8_t glass_rgb[3];    /* their colour */
    int n_layers;            /* multi: one per class shown; single: 1 */
    double layer_scale;      /* level-0 px per pixel of the layers' finest level */
    th_dzi layer[TH_MAX_SHOWN]; /* layer0_files/ ... */
    int n_workers;
    th_viewer_worker *wk;    /* (n_workers) */
} th_viewer;

bool th_viewer_is_glass(const th_tissue *t, double x0, double y0, double x1, double y1);
bool th_viewer_reads_directly(th_slide *slide, double scale);
bool th_viewer_read_scaled(th_slide *slide, th_viewer_reader *rd, double scale, int64_t x,
                           int64_t y, int w, int h, uint8_t *out, th_error **err);
bool th_viewer_reader_init(th_viewer_reader *rd, int max_w, int max_h, th_error **err);
void th_viewer_reader_free(th_viewer_reader *rd);
/* A shared tile (side×side, RGB for .jpg, RGBA for .png) written as shared/NAME (viewer.c). */
bool th_viewer_shared(const th_viewer *v, const char *name, const uint8_t *px, int side,
                      th_error **err);

/* viewer-tiles.c: the slide's pyramid, the layers' pyramids. */
bool th_viewer_write_slide(th_viewer *v, th_error **err);
bool th_viewer_write_layers(th_viewer *v, th_error **err);

#endif
