/* SPDX-License-Identifier: MIT */
/* Tissue detection on a low-resolution level: a binary mask at about 8 µm/px, and the tissue
 * fraction of any level-0 rectangle. Used by run.c to skip tiles that are mostly glass. */
#ifndef TH_TISSUE_H
#define TH_TISSUE_H

#include "th-private.h"

typedef struct th_tissue {
    int w, h;         /* mask size in pixels */
    double sx, sy;    /* level-0 pixels per mask pixel: the mask covers the slide exactly */
    uint8_t *mask;    /* (h, stride) bytes of bits: th_tissue_at(); 1 = tissue, 0 = background */
    size_t stride;    /* bytes per mask row: (w + 7) / 8 */
    double threshold; /* the saturation threshold used (0..1): Otsu's, clamped */
    double otsu;      /* Otsu's threshold on the saturation histogram, before clamping (0..1) */
    double fraction;  /* tissue share of the whole mask, 0..1 */
    int median_luma;  /* median luminance (0-255, Rec. 601) of the mask's pixels: brightfield is
                         light (glass ~240, H&E tissue ~150), fluorescence dark (~3) */
    int level;        /* the pyramid level that was read */
} th_tissue;

/* Detect tissue. mpp0 = µm per level-0 pixel (0 if unknown: 0.5 µm/px, a 20× scan, is assumed).
 * The mask has 8 µm pixels (no finer than level 0, long side at most 8192 px), each the area
 * average of the coarsest level that is not coarser than the mask (th_view_read), read in chunks
 * of mask rows shared among the threads (threads ≤ 0: OpenMP's default; the mask is the same for
 * any count); memory is one byte per mask pixel plus about 4 MB of level pixels and 4 MB of
 * means per thread while it runs, one bit per mask pixel after. Method and constants: see
 * tissue.c. Errors: read failures. */
th_tissue *th_tissue_detect(th_slide *slide, double mpp0, int threads, th_error **err);

void th_tissue_free(th_tissue *tissue);

/* Whether mask pixel (x, y) is tissue: bit x % 8 of byte x / 8 of row y. */
static inline bool th_tissue_at(const th_tissue *t, int x, int y)
{
    return (t->mask[(size_t)y * t->stride + (size_t)x / 8] >> (x % 8)) & 1;
}

/* Share (0..1) of the level-0 rectangle [x, x+w) × [y, y+h) that is tissue; mask pixels count
 * by their overlap area; parts outside the slide count as background. 0 for an empty rectangle. */
double th_tissue_fraction(const th_tissue *tissue, double x, double y, double w, double h);

/* The mask as an 8-bit grayscale PNG, 255 = tissue (temporary name + rename). */
bool th_tissue_write_png(const th_tissue *tissue, const char *path, th_error **err);

#endif
