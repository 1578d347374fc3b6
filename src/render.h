/* SPDX-License-Identifier: MIT */
/* Heatmap rendering: colormaps, the fixed multi-class palette, the CAM overlay, a built-in bitmap
 * font, and the streaming PNG (render.c) and pyramidal TIFF (render-tiff.c) writers. */
#ifndef TH_RENDER_H
#define TH_RENDER_H

#include "result.h"

/* Colour of t in [0, 1] (clamped) on a colormap. */
void th_colormap_rgb(th_colormap cmap, float t, uint8_t rgb[3]);

/* The six class colours (colour-blind-aware): class c's is entry c mod 6 unless the options or
 * the model say otherwise (th_render_class_color). */
extern const uint8_t th_palette[TH_MAX_SHOWN][3];

/* The display range of each shown class (opt->shown, n_shown), as the heatmaps draw it: per class
 * for TH_NORM_PERCENTILE (the classes spread over opt->threads), one shared range for
 * TH_NORM_RAW; a flat class gets hi = lo + 1. lo, hi, basis (what each top is; may be NULL):
 * (n_shown). */
bool th_render_ranges(const th_result *res, const th_render_options *opt, float *lo, float *hi,
                      th_scale_basis *basis, th_error **err);

/* A colormap's name, as th_colormap_from_name takes it ("viridis", ...). */
const char *th_colormap_name(th_colormap cmap);

/* th_render_class_color (palette.c), and whether the class is left clear in the overlay (*clear:
 * a background class with no colour from opt->colors or class_colors). */
bool th_class_color(const th_render_options *opt, const th_model *model, int c, uint8_t rgb[3],
                    bool *clear, th_error **err);

/* ---- The CAM overlay, one implementation shared by the PNG (render.c) and TIFF (render-tiff.c)
 * writers. A regular grid of output pixels (s level-0 pixels each, centre of pixel i at level-0
 * (i + 0.5)·s) samples the CAM exactly as th_cam_sample does, but the bilinear weights are
 * planned once per output column and row, and the CAM grid rows are fetched once per grid row
 * rather than once per pixel. */

/* What to draw: the classes shown, their display ranges and colours, the CAM grid, and the glass
 * left clear. */
typedef struct th_overlay {
    const th_result *res;
    th_colormap cmap;
    bool multi;
    int n;                         /* classes shown */
    int cls[TH_MAX_SHOWN];         /* their indices */
    uint8_t rgb[TH_MAX_SHOWN][3];  /* multi: each one's th_render_class_color */
    bool clear[TH_MAX_SHOWN];      /* multi: a background class, not drawn where it is strongest */
    const struct th_tissue *glass; /* pixels whose mask pixel is 0 stay plain; NULL = tint all
                                      (tint_glass, or no tissue detection) */
    float lo[TH_MAX_SHOWN];        /* display range of each: t = (v - lo) / (hi - lo) */
    float hi[TH_MAX_SHOWN];
    th_scale_basis basis[TH_MAX_SHOWN]; /* what each hi is */
    float alpha, threshold;
    int64_t gw, gh;          /* CAM grid cells (th_result_get_cam_grid) */
    double x0, y0;           /* level-0 corner of cell (0, 0) */
    double cell_w0, cell_h0; /* level-0 size of a cell */
} th_overlay;

/* Check that `res` comes from `slide` (and has `model`'s class count, if model is not NULL) and
 * that opt's classes, alpha, threshold, norm and colormap are valid (not the width), then compute
 * the display ranges. */
bool th_overlay_init(th_overlay *ov, const th_slide *slide, const th_result *res,
                     const th_model *model, const th_render_options *opt, th_error **err);

/* Where one output column (or row) samples the grid: th_cam_sample's cells and weights. */
typedef struct th_overlay_axis {
    int64_t c0, c1; /* the cells whose centres bracket the point (c1 = c0 at the edges); -1 when
                       the point is outside the grid */
    int64_t own;    /* the cell the point lies in: c0 or c1 */
    double a, b;    /* weights of c1 and c0 along this axis (b = 1 - a) */
    int m;          /* the tissue-mask column (row) holding the point, nearest; 0 without glass */
} th_overlay_axis;

/* Plan n columns (rows = false) or rows of output pixels, the first at output index `first`,
 * s level-0 pixels per output pixel, into out[0..n). */
void th_overlay_plan_axis(const th_overlay *ov, bool rows, double s, int64_t first, int64_t n,
                          th_overlay_axis *out);

/* Per-thread scratch of th_overlay_row: two cached rows of the CAM grid, each read only over
 * the columns the output row needs (a viewer tile needs a few hundred of a row's thousands). */
typedef struct th_overlay_cache {
    int64_t row[2];       /* grid row held by each slot, -1 = none */
    int64_t lo[2], hi[2]; /* its columns read: [lo, hi) */
    int last;             /* slot used most recently */
    float *v[2];          /* each (n shown, gw) raw CAM, NaN where no tile ran; valid in [lo, hi) */
} th_overlay_cache;

bool th_overlay_cache_init(th_overlay_cache *c, const th_overlay *ov, th_error **err);
void th_overlay_cache_free(th_overlay_cache *c);

/* Blend the overlay into n RGB pixels (n, 3) of one output row: pixel i samples at column
 * cols[i] and row *row. Pixels where no tile ran, and glass (ov->glass), stay as they are. */
void th_overlay_row(const th_overlay *ov, th_overlay_cache *c, const th_overlay_axis *row,
                    const th_overlay_axis *cols, int64_t n, uint8_t *rgb);

/* th_overlay_row's colours as layers over a clear background, for the viewer: n RGBA pixels of
 * one row in each layer (one per class shown in multi, where a pixel is drawn in the layer of
 * its strongest class; one in single), layer i's row at rgba + i * plane. A pixel drawn with
 * opacity op gets alpha round(op × 255); the rest are left as they are (clear). */
void th_overlay_layers_row(const th_overlay *ov, th_overlay_cache *c, const th_overlay_axis *row,
                           const th_overlay_axis *cols, int64_t n, uint8_t *rgba, size_t plane);

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

/* ---- font.c: the legend panel, planned as primitives in panel coordinates and rasterised band
 * by band: a colour bar (single) or one swatch per class (multi), with labels. */
#define TH_LABEL_MAX 48 /* bytes of a legend label, NUL included */
/* background, separator, 6 per legend entry, the note */
#define TH_PANEL_MAX (3 + 6 * TH_MAX_SHOWN)
/* The legend's capitals (TH_FONT_ASCENT rows at the font scale) are at least this many
 * thousandths of the image's long side, and never below the font's native size. */
#define TH_LEGEND_PERMILLE 12

/* What the panel shows: labels are "name 41.2%"; ticks are the colour bar's ends, in CAM units
 * (the overlay's display range: "0" and "6.99 (p99)"); the note says what the percentages are of
 * when it is not every tile of the grid. */
typedef struct th_legend {
    bool multi;
    int n;                        /* classes shown */
    uint8_t rgb[TH_MAX_SHOWN][3]; /* multi: each class's swatch, as the overlay draws it */
    char label[TH_MAX_SHOWN][TH_LABEL_MAX];
    char tick_lo[TH_LABEL_MAX], tick_hi[TH_LABEL_MAX];
    char note[TH_LABEL_MAX]; /* "% of tissue tiles" when tiles were skipped, else "" */
} th_legend;

typedef enum th_prim_kind { PRIM_FILL, PRIM_GRAD_V, PRIM_GRAD_H, PRIM_TEXT } th_prim_kind;

typedef struct th_prim {
    th_prim_kind kind;
    int x, y, w, h;          /* PRIM_TEXT: only x, y (top-left of the text cell) */
    uint8_t rgb[3];          /* PRIM_FILL and PRIM_TEXT */
    char text[TH_LABEL_MAX]; /* PRIM_TEXT */
} th_prim;

typedef struct th_panel {
    int n;
    th_prim p[TH_PANEL_MAX];
} th_panel;

/* th_render_plan, and also the legend's text (*legend) and the panel's primitives (*panel), as
 * th_render_heatmap draws them; either may be NULL. */
bool th_render_plan_legend(const th_slide *slide, const th_result *result, const th_model *model,
                           const th_render_options *opt, th_render_layout *layout,
                           th_legend *legend, th_panel *panel, th_error **err);

/* Lay out the image: the thumbnail's long side is min(width, slide long side); the panel goes
 * along the short side, so it never covers tissue and the thumbnail's long side stays as asked.
 * The font scale (and with it every margin, swatch and bar) is the smallest that keeps the text
 * TH_LEGEND_PERMILLE of the whole image's long side; everything fits inside the panel. Fills
 * every field of *L but `level`. */
void th_panel_plan(const th_legend *lg, int64_t slide_w, int64_t slide_h, int width,
                   th_render_layout *L, th_panel *p);

/* Rasterise the panel's primitives that fall in the band (gradients in cmap). */
void th_panel_draw(const th_panel *p, const th_render_layout *L, th_colormap cmap,
                   const th_band *band);

#endif
