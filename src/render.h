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

/* Geometry of a heatmap image: the slide thumbnail at (0, 0), and the legend panel appended
 * along the thumbnail's short side (right of a portrait or square slide, below a landscape
 * one), so the thumbnail's long side is exactly min(width, slide long side). */
typedef struct th_render_layout {
    int thumb_w, thumb_h; /* slide thumbnail in output pixels */
    int panel_x, panel_y; /* legend panel's top-left corner */
    int panel_w, panel_h;
    int image_w, image_h; /* the whole PNG */
    int font_scale;       /* integer scale of the 5×9 font */
    int level;            /* pyramid level the slide pixels are read from */
} th_render_layout;

/* Plan the image th_render_heatmap would write for these arguments, without reading pixels (the
 * panel's size depends on the class names and the mode). Errors: as th_render_heatmap's. */
bool th_render_plan(const th_slide *slide, const th_result *result, const th_model *model,
                    const th_render_options *opt, th_render_layout *layout, th_error **err);

/* ---- font.c: 5×9 bitmap font for ASCII 32..126 (other bytes draw as '?'). */
#define TH_FONT_W 5       /* glyph columns */
#define TH_FONT_H 9       /* glyph rows: 7 above the baseline, 2 descender rows */
#define TH_FONT_ASCENT 7  /* rows above the baseline (cap height) */
#define TH_FONT_ADVANCE 6 /* columns from one glyph to the next */

/* A band of image rows being rendered: rows y0 .. y0+h-1 of an image w pixels wide. */
typedef struct th_band {
    uint8_t *rgb; /* (h, w, 3) row-major RGB */
    int w, h;
    int64_t y0;
} th_band;

/* Width in pixels of s drawn at integer scale. */
int th_font_text_width(const char *s, int scale);

/* Draw s with its cell's top-left corner at image (x, y), clipped to the band. */
void th_font_draw(const th_band *band, int64_t x, int64_t y, const char *s, int scale,
                  const uint8_t rgb[3]);

#endif
