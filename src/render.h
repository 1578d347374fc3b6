/* SPDX-License-Identifier: MIT */
/* Heatmap rendering: colormaps, the fixed multi-class palette, a built-in bitmap font, and the
 * streaming PNG writer (th_render_heatmap in the public API). */
#ifndef TH_RENDER_H
#define TH_RENDER_H

#include "result.h"

/* Colour of t in [0, 1] (clamped) on a colormap. */
void th_colormap_rgb(th_colormap cmap, float t, uint8_t rgb[3]);

/* The six fixed multi-class colours, in order (colour-blind-aware). */
extern const uint8_t th_palette[TH_MAX_SHOWN][3];

#endif
