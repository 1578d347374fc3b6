/* SPDX-License-Identifier: MIT */
/* The heatmap's legend: a built-in 5×9 bitmap font for printable ASCII (32..126), drawn by hand
 * (7 rows down to the baseline plus 2 descender rows, one column of spacing), and the legend
 * panel laid out as primitives. Both are drawn into one band of rows of an RGB image at a time,
 * clipped to the band, so the streaming renderer never holds the whole image. */
#include <config.h>

#include <assert.h>

#include "render.h"

// (95 glyphs, 9 rows, 5 columns + NUL): '#' is ink. Rows left out are blank.
// clang-format off
static const char glyphs[95][TH_FONT_H][TH_FONT_W + 1] = {
    {""},                                                               // ' '
    {"  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "     ", "  #  "},     // !
    {" # # ", " # # ", " # # "},                                        // "
    {" # # ", " # # ", "#####", " # # ", "#####", " # # ", " # # "},     // #
    {"  #  ", " ####", "# #  ", " ### ", "  # #", "#### ", "  #  "},     // $
    {"##   ", "##  #", "   # ", "  #  ", " #   ", "#  ##", "   ##"},     // %
    {" #   ", "# #  ", "# #  ", " #   ", "# # #", "#  # ", " ## #"},     // &
    {"  #  ", "  #  ", " #   "},                                        // '
    {"   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # "},     // (
    {" #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   "},     // )
    {"     ", "  #  ", "# # #", " ### ", "# # #", "  #  "},              // *
    {"     ", "  #  ", "  #  ", "#####", "  #  ", "  #  "},              // +
    {"", "", "", "", "", " ##  ", " ##  ", "  #  ", " #   "},           // ,
    {"", "", "", "#####"},                                              // -
    {"", "", "", "", "", " ##  ", " ##  "},                             // .
    {"    #", "    #", "   # ", "  #  ", " #   ", "#    ", "#    "},     // /
    {" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "},     // 0
    {"  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "},     // 1
    {" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"},     // 2
    {"#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "},     // 3
    {"   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "},     // 4
    {"#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "},     // 5
    {"  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "},     // 6
    {"#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "},     // 7
    {" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "},     // 8
    {" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "},     // 9
    {"", " ##  ", " ##  ", "", " ##  ", " ##  "},                       // :
    {"", " ##  ", " ##  ", "", " ##  ", " ##  ", "  #  ", " #   "},     // ;
    {"   # ", "  #  ", " #   ", "#    ", " #   ", "  #  ", "   # "},     // <
    {"", "", "#####", "", "#####"},                                     // =
    {" #   ", "  #  ", "   # ", "    #", "   # ", "  #  ", " #   "},     // >
    {" ### ", "#   #", "    #", "   # ", "  #  ", "     ", "  #  "},     // ?
    {" ### ", "#   #", "    #", " ## #", "# # #", "# # #", " ### "},     // @
    {" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"},     // A
    {"#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "},     // B
    {" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "},     // C
    {"###  ", "#  # ", "#   #", "#   #", "#   #", "#  # ", "###  "},     // D
    {"#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"},     // E
    {"#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "},     // F
    {" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"},     // G
    {"#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"},     // H
    {" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "},     // I
    {"  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "},     // J
    {"#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"},     // K
    {"#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"},     // L
    {"#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"},     // M
    {"#   #", "#   #", "##  #", "# # #", "#  ##", "#   #", "#   #"},     // N
    {" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "},     // O
    {"#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "},     // P
    {" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"},     // Q
    {"#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"},     // R
    {" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "},     // S
    {"#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "},     // T
    {"#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "},     // U
    {"#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "},     // V
    {"#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # "},     // W
    {"#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"},     // X
    {"#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "},     // Y
    {"#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"},     // Z
    {" ### ", " #   ", " #   ", " #   ", " #   ", " #   ", " ### "},     // [
    {"#    ", "#    ", " #   ", "  #  ", "   # ", "    #", "    #"},     // backslash
    {" ### ", "   # ", "   # ", "   # ", "   # ", "   # ", " ### "},     // ]
    {"  #  ", " # # ", "#   #"},                                        // ^
    {"", "", "", "", "", "", "", "#####"},                              // _
    {" #   ", "  #  "},                                                 // `
    {"", "", " ### ", "    #", " ####", "#   #", " ####"},              // a
    {"#    ", "#    ", "#### ", "#   #", "#   #", "#   #", "#### "},     // b
    {"", "", " ### ", "#    ", "#    ", "#   #", " ### "},              // c
    {"    #", "    #", " ####", "#   #", "#   #", "#   #", " ####"},     // d
    {"", "", " ### ", "#   #", "#####", "#    ", " ### "},              // e
    {"  ## ", " #  #", " #   ", "###  ", " #   ", " #   ", " #   "},     // f
    {"", "", " ####", "#   #", "#   #", "#   #", " ####", "    #", " ### "}, // g
    {"#    ", "#    ", "# ## ", "##  #", "#   #", "#   #", "#   #"},     // h
    {"  #  ", "", " ##  ", "  #  ", "  #  ", "  #  ", " ### "},         // i
    {"   # ", "", "  ## ", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "}, // j
    {"#    ", "#    ", "#  # ", "# #  ", "##   ", "# #  ", "#  # "},     // k
    {" ##  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "},     // l
    {"", "", "## # ", "# # #", "# # #", "# # #", "# # #"},              // m
    {"", "", "# ## ", "##  #", "#   #", "#   #", "#   #"},              // n
    {"", "", " ### ", "#   #", "#   #", "#   #", " ### "},              // o
    {"", "", "#### ", "#   #", "#   #", "#   #", "#### ", "#    ", "#    "}, // p
    {"", "", " ####", "#   #", "#   #", "#   #", " ####", "    #", "    #"}, // q
    {"", "", "# ## ", "##  #", "#    ", "#    ", "#    "},              // r
    {"", "", " ####", "#    ", " ### ", "    #", "#### "},              // s
    {" #   ", " #   ", "###  ", " #   ", " #   ", " #  #", "  ## "},     // t
    {"", "", "#   #", "#   #", "#   #", "#  ##", " ## #"},              // u
    {"", "", "#   #", "#   #", "#   #", " # # ", "  #  "},              // v
    {"", "", "#   #", "#   #", "# # #", "# # #", " # # "},              // w
    {"", "", "#   #", " # # ", "  #  ", " # # ", "#   #"},              // x
    {"", "", "#   #", "#   #", "#   #", "#   #", " ####", "    #", " ### "}, // y
    {"", "", "#####", "   # ", "  #  ", " #   ", "#####"},              // z
    {"   ##", "  #  ", "  #  ", "##   ", "  #  ", "  #  ", "   ##"},     // {
    {"  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "},     // |
    {"##   ", "  #  ", "  #  ", "   ##", "  #  ", "  #  ", "##   "},     // }
    {"", "", " #   ", "# # #", "   # "},                                // ~
};
// clang-format on

// Glyph index of the next character of s, advancing *s. A multi-byte UTF-8 sequence (class
// names may hold any) becomes one '?'.
static int next_glyph(const char **s)
{
    unsigned char c = (unsigned char)**s;
    (*s)++;
    if (c >= 0x80) {
        while (((unsigned char)**s & 0xC0) == 0x80) {
            (*s)++;
        }
        return '?' - 32;
    }
    return c >= 32 && c <= 126 ? c - 32 : '?' - 32;
}

int th_font_text_width(const char *s, int scale)
{
    int n = 0;
    while (*s) {
        next_glyph(&s);
        n++;
    }
    // The last glyph's spacing column is not part of the text.
    return n ? (n * TH_FONT_ADVANCE - 1) * scale : 0;
}

// Fill the scale×scale block of ink at image (x, y), clipped to the band.
static void fill_block(const th_band *band, int64_t x, int64_t y, int scale, const uint8_t rgb[3])
{
    int64_t y0 = TH_MAX(y, band->y0), y1 = TH_MIN(y + scale, band->y0 + band->h);
    int64_t x0 = TH_MAX(x, 0), x1 = TH_MIN(x + scale, (int64_t)band->w);
    for (int64_t yy = y0; yy < y1; yy++) {
        uint8_t *row = band->rgb + ((size_t)(yy - band->y0) * band->w) * 3;
        for (int64_t xx = x0; xx < x1; xx++) {
            memcpy(row + xx * 3, rgb, 3);
        }
    }
}

void th_font_draw(const th_band *band, int64_t x, int64_t y, const char *s, int scale,
                  const uint8_t rgb[3])
{
    // Nothing of a text whose cell misses the band's rows.
    if (y >= band->y0 + band->h || y + (int64_t)TH_FONT_H * scale <= band->y0) {
        return;
    }
    for (int64_t gx = x; *s; gx += (int64_t)TH_FONT_ADVANCE * scale) {
        const char(*g)[TH_FONT_W + 1] = glyphs[next_glyph(&s)];
        for (int r = 0; r < TH_FONT_H; r++) {
            for (int c = 0; c < TH_FONT_W && g[r][c]; c++) {
                if (g[r][c] == '#') {
                    fill_block(band, gx + (int64_t)c * scale, y + (int64_t)r * scale, scale, rgb);
                }
            }
        }
    }
}

/* ---------------------------------------------------------------- the legend panel */

static const uint8_t ink[3] = {0x22, 0x22, 0x22};       // text, frames and ticks
static const uint8_t panel_bg[3] = {0xf7, 0xf7, 0xf7};  // the legend panel
static const uint8_t separator[3] = {0xb0, 0xb0, 0xb0}; // between thumbnail and panel

// The next free primitive; TH_PANEL_MAX is sized for the largest legend.
static th_prim *new_prim(th_panel *p)
{
    assert(p->n < TH_PANEL_MAX);
    return &p->p[p->n++];
}

static void add_fill(th_panel *p, int x, int y, int w, int h, const uint8_t rgb[3])
{
    th_prim *q = new_prim(p);
    *q = (th_prim){.kind = PRIM_FILL, .x = x, .y = y, .w = w, .h = h};
    memcpy(q->rgb, rgb, 3);
}

// A filled rectangle with a frame of thickness ft drawn just inside it.
static void add_framed(th_panel *p, th_prim_kind kind, int x, int y, int w, int h,
                       const uint8_t *rgb, int ft)
{
    th_prim *q = new_prim(p);
    *q = (th_prim){.kind = kind, .x = x, .y = y, .w = w, .h = h};
    if (rgb) {
        memcpy(q->rgb, rgb, 3);
    }
    add_fill(p, x, y, w, ft, ink);
    add_fill(p, x, y + h - ft, w, ft, ink);
    add_fill(p, x, y, ft, h, ink);
    add_fill(p, x + w - ft, y, ft, h, ink);
}

static void add_text(th_panel *p, int x, int y, const char *s)
{
    th_prim *q = new_prim(p);
    *q = (th_prim){.kind = PRIM_TEXT, .x = x, .y = y};
    memcpy(q->rgb, ink, 3);
    snprintf(q->text, sizeof(q->text), "%s", s);
}

/* The text above a single class's colour bar: the label and, when tiles were skipped, the note
 * under it. Returns the y just below it; *w gets its width. */
static int add_heading(const th_legend *lg, int s, th_panel *p, int *w)
{
    int m = 6 * s, y = m;
    add_text(p, m, y, lg->label[0]);
    *w = th_font_text_width(lg->label[0], s);
    if (lg->note[0]) {
        y += (TH_FONT_H + 2) * s;
        add_text(p, m, y, lg->note);
        *w = TH_MAX(*w, th_font_text_width(lg->note, s));
    }
    return y + TH_FONT_H * s;
}

/* Single class beside a portrait thumbnail: the heading on top, then a vertical colour bar (high
 * end up) with its two tick labels to the right. Sets the content size in *w, *h. */
static void panel_single_right(const th_legend *lg, int thumb_h, int s, th_panel *p, int *w, int *h)
{
    int m = 6 * s, cap = TH_FONT_ASCENT * s, ft = TH_MAX(1, s / 2);
    int bar_w = 8 * s, tick = 3 * s, head_w;
    int bar_y = add_heading(lg, s, p, &head_w) + m + cap / 2;
    int bar_h = TH_MAX(24 * s, TH_MIN(thumb_h / 2, thumb_h - bar_y - cap - m));
    int label_x = m + bar_w + tick + s;
    add_framed(p, PRIM_GRAD_V, m, bar_y, bar_w, bar_h, NULL, ft);
    add_fill(p, m + bar_w, bar_y, tick, ft, ink);
    add_fill(p, m + bar_w, bar_y + bar_h - ft, tick, ft, ink);
    add_text(p, label_x, bar_y - cap / 2, lg->tick_hi);
    add_text(p, label_x, bar_y + bar_h - cap / 2, lg->tick_lo);
    int ticks_w = TH_MAX(th_font_text_width(lg->tick_hi, s), th_font_text_width(lg->tick_lo, s));
    *w = m + TH_MAX(head_w, label_x - m + ticks_w) + m;
    // The low tick's cell (TH_FONT_H rows from bar end - cap / 2) ends inside this.
    *h = bar_y + bar_h + cap + m;
}

/* Single class below a landscape thumbnail: the heading, then a horizontal colour bar (high end
 * right) with the tick labels centred under its ends. */
static void panel_single_below(const th_legend *lg, int thumb_w, int s, th_panel *p, int *w, int *h)
{
    int m = 6 * s, ft = TH_MAX(1, s / 2), tick = 3 * s, head_w;
    int lo_w = th_font_text_width(lg->tick_lo, s), hi_w = th_font_text_width(lg->tick_hi, s);
    int bar_x = m + lo_w / 2, bar_y = add_heading(lg, s, p, &head_w) + m, bar_h = 8 * s;
    // Half the thumbnail, and long enough that the tick labels under its ends keep 2s apart.
    int bar_w = TH_MAX(TH_MAX(24 * s, thumb_w / 2), lo_w - lo_w / 2 + hi_w / 2 + 2 * s);
    int label_y = bar_y + bar_h + tick + s;
    add_framed(p, PRIM_GRAD_H, bar_x, bar_y, bar_w, bar_h, NULL, ft);
    add_fill(p, bar_x, bar_y + bar_h, ft, tick, ink);
    add_fill(p, bar_x + bar_w - ft, bar_y + bar_h, ft, tick, ink);
    add_text(p, bar_x - lo_w / 2, label_y, lg->tick_lo);
    add_text(p, bar_x + bar_w - hi_w / 2, label_y, lg->tick_hi);
    *w = TH_MAX(m + head_w, bar_x + bar_w + hi_w - hi_w / 2) + m;
    *h = label_y + TH_FONT_H * s + m;
}

/* Multi: one swatch and label per class, stacked (right of a portrait thumbnail) or in rows
 * that wrap at the thumbnail's width (below a landscape one); the note, if any, on a line of its
 * own under them. */
static void panel_multi(const th_legend *lg, bool below, int thumb_w, int s, th_panel *p, int *w,
                        int *h)
{
    int m = 6 * s, ft = TH_MAX(1, s / 2), sw = TH_FONT_H * s, pitch = sw + 4 * s;
    int x = m, y = m, right = m;
    for (int i = 0; i < lg->n; i++) {
        int item_w = sw + 3 * s + th_font_text_width(lg->label[i], s);
        if (below && x > m && x + item_w + m > thumb_w) {
            x = m;
            y += pitch;
        }
        add_framed(p, PRIM_FILL, x, y, sw, sw, lg->rgb[i], ft);
        add_text(p, x + sw + 3 * s, y + s, lg->label[i]);
        right = TH_MAX(right, x + item_w);
        if (below) {
            x += item_w + 3 * m;
        } else {
            y += pitch;
        }
    }
    if (below) {
        y += pitch; // y is now below the last row, as in the stacked case
    }
    if (lg->note[0]) {
        add_text(p, m, y + s, lg->note);
        right = TH_MAX(right, m + th_font_text_width(lg->note, s));
        y += pitch;
    }
    *w = right + m;
    *h = y - 4 * s + m;
}

// The panel at font scale s, beside or below the thumbnail already in *L.
static void plan_at_scale(const th_legend *lg, int s, th_render_layout *L, th_panel *p)
{
    bool below = L->thumb_w > L->thumb_h;
    L->font_scale = s;
    p->n = 0;
    add_fill(p, 0, 0, 0, 0, panel_bg); // resized to the whole panel below
    add_fill(p, 0, 0, below ? 0 : TH_MAX(1, s / 2), below ? TH_MAX(1, s / 2) : 0, separator);
    int cw, ch;
    if (lg->multi) {
        panel_multi(lg, below, L->thumb_w, s, p, &cw, &ch);
    } else if (below) {
        panel_single_below(lg, L->thumb_w, s, p, &cw, &ch);
    } else {
        panel_single_right(lg, L->thumb_h, s, p, &cw, &ch);
    }
    L->panel_x = below ? 0 : L->thumb_w;
    L->panel_y = below ? L->thumb_h : 0;
    L->panel_w = below ? TH_MAX(L->thumb_w, cw) : cw;
    L->panel_h = below ? ch : TH_MAX(L->thumb_h, ch);
    L->image_w = below ? L->panel_w : L->thumb_w + L->panel_w;
    L->image_h = below ? L->thumb_h + L->panel_h : L->panel_h;
    if (below) {
        p->p[1].w = L->panel_w;
    } else {
        p->p[1].h = L->panel_h;
    }
    p->p[0].w = L->panel_w;
    p->p[0].h = L->panel_h;
}

// Is text at scale s tall enough for an image whose long side is long_px?
static bool legible(int s, int64_t long_px)
{
    return (int64_t)TH_FONT_ASCENT * s * 1000 >= TH_LEGEND_PERMILLE * long_px;
}

void th_panel_plan(const th_legend *lg, int64_t slide_w, int64_t slide_h, int width,
                   th_render_layout *L, th_panel *p)
{
    int64_t long0 = TH_MAX(slide_w, slide_h);
    int out_long = (int)TH_MIN((int64_t)width, long0);
    memset(L, 0, sizeof(*L));
    if (slide_w >= slide_h) {
        L->thumb_w = out_long;
        L->thumb_h = (int)TH_MAX(1, llround((double)slide_h * out_long / (double)slide_w));
    } else {
        L->thumb_h = out_long;
        L->thumb_w = (int)TH_MAX(1, llround((double)slide_w * out_long / (double)slide_h));
    }
    // The smallest scale whose capitals are legible on the thumbnail's long side, then larger
    // while the panel makes the image's long side longer still. This ends: one step of scale
    // adds TH_FONT_ASCENT rows of cap height but lengthens the panel by at most ~300 px
    // (a 47-byte label and the margins), whose 1.2 % is under 4.
    int s = 1;
    while (!legible(s, out_long)) {
        s++;
    }
    plan_at_scale(lg, s, L, p);
    while (!legible(s, TH_MAX(L->image_w, L->image_h))) {
        plan_at_scale(lg, ++s, L, p);
    }
}

void th_panel_draw(const th_panel *p, const th_render_layout *L, th_colormap cmap,
                   const th_band *band)
{
    for (int k = 0; k < p->n; k++) {
        const th_prim *q = &p->p[k];
        int64_t x = (int64_t)L->panel_x + q->x, y = (int64_t)L->panel_y + q->y;
        if (q->kind == PRIM_TEXT) {
            th_font_draw(band, x, y, q->text, L->font_scale, q->rgb);
            continue;
        }
        int64_t y0 = TH_MAX(y, band->y0), y1 = TH_MIN(y + q->h, band->y0 + band->h);
        int64_t x0 = TH_MAX(x, 0), x1 = TH_MIN(x + q->w, (int64_t)band->w);
        for (int64_t yy = y0; yy < y1; yy++) {
            uint8_t *row = band->rgb + (size_t)(yy - band->y0) * band->w * 3;
            for (int64_t xx = x0; xx < x1; xx++) {
                uint8_t rgb[3];
                if (q->kind == PRIM_GRAD_V) { // high end at the top
                    th_colormap_rgb(cmap, 1.0f - (float)((yy - y) + 0.5) / q->h, rgb);
                } else if (q->kind == PRIM_GRAD_H) {
                    th_colormap_rgb(cmap, (float)((xx - x) + 0.5) / q->w, rgb);
                } else {
                    memcpy(rgb, q->rgb, 3);
                }
                memcpy(row + xx * 3, rgb, 3);
            }
        }
    }
}
