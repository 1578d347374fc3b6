/* SPDX-License-Identifier: MIT */
/* libpng backend. PNG has no random access, so a sequential decoder fills a band cache of RGB
 * rows; a request that starts above the decoder's position restarts it from the top of the
 * file. Memory stays at width x band height, except for interlaced PNGs (up to 64 Mpx), which
 * are decoded whole on first read. One mutex per handle serialises reads. */
#include <config.h>

#include <errno.h>
#include <png.h>
#include <pthread.h>

#include "slide.h"

// Budget for the band of decoded RGB rows (non-interlaced), and its height limits in rows.
#define BAND_MAX_BYTES ((size_t)48 << 20)
#define BAND_MAX_ROWS 1024
// Largest interlaced PNG, decoded whole, in pixels.
#define INTERLACED_MAX_PX ((uint64_t)64 << 20)
// Largest believable µm per pixel from a pHYs chunk (see slide-openslide.c).

typedef struct png_src {
    pthread_mutex_t lock; // held for every libpng call after open
    FILE *fp;
    png_structp png; // the live sequential decoder, or NULL
    png_infop info;
    uint32_t next_row; // row the live decoder yields next
    uint32_t w, h;
    int channels; // 3 (RGB) or 4 (RGBA) after the transforms
    int passes;   // 1, or 7 for an interlaced PNG
    uint8_t *row; // (w, channels) one decoded row
    // (band_cap, w, 3) RGB rows [band_y, band_y + band_n); for an interlaced PNG,
    // (h, w, channels) while decoding, then (h, w, 3) RGB
    uint8_t *band;
    uint32_t band_cap, band_y, band_n;
    char msg[256]; // libpng's message for the last error
} png_src;

// libpng error callback: keep the message and jump back to the setjmp of the calling function.
static void on_error(png_structp png, png_const_charp msg)
{
    png_src *p = png_get_error_ptr(png);
    snprintf(p->msg, sizeof(p->msg), "%s", msg ? msg : "libpng error");
    for (char *c = p->msg; *c; c++) {
        if (*c == '\n' || *c == '\r') {
            *c = ' ';
        }
    }
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    // warnings (bad gamma, unknown chunks, ...) never stop a read and are not printed
}

static void dec_stop(png_src *p)
{
    if (p->png) {
        png_destroy_read_struct(&p->png, p->info ? &p->info : NULL, NULL);
    }
    p->png = NULL;
    p->info = NULL;
}

// Transforms to 8-bit RGB or RGBA: palette -> RGB, low-bit gray -> 8 bits, tRNS -> alpha,
// 16 -> 8 bits keeping the high byte (v >> 8, as the TIFF backend), gray -> RGB.
static void set_transforms(png_src *p)
{
    int depth = png_get_bit_depth(p->png, p->info);
    int type = png_get_color_type(p->png, p->info);
    png_set_expand(p->png);
    if (depth == 16) {
        png_set_strip_16(p->png);
    }
    if (type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA) {
        png_set_gray_to_rgb(p->png);
    }
    p->passes = png_set_interlace_handling(p->png);
    png_read_update_info(p->png, p->info);
}

// (Re)start the decoder at row 0: rewind, read the header, set the transforms.
static bool dec_start(png_src *p, th_error **err)
{
    png_src *volatile ctx = p;

    dec_stop(p);
    if (fseek(p->fp, 0, SEEK_SET) != 0) {
        th_error_set(err, "cannot rewind PNG: %s", strerror(errno));
        return false;
    }
    p->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, p, on_error, on_warning);
    p->info = p->png ? png_create_info_struct(p->png) : NULL;
    if (!p->info) {
        dec_stop(p);
        th_error_set(err, "out of memory");
        return false;
    }
    if (setjmp(png_jmpbuf(p->png))) {
        th_error_set(err, "cannot read PNG header: %s", ctx->msg);
        dec_stop(ctx);
        return false;
    }
    png_init_io(p->png, p->fp);
    png_read_info(p->png, p->info);
    set_transforms(p);
    uint32_t w = png_get_image_width(p->png, p->info);
    uint32_t h = png_get_image_height(p->png, p->info);
    int channels = png_get_channels(p->png, p->info);
    if ((channels != 3 && channels != 4) ||
        png_get_rowbytes(p->png, p->info) != (size_t)w * (size_t)channels) {
        png_error(p->png, "unexpected pixel layout after conversion");
    }
    // a restart must find the image the buffers were sized for
    if (p->band && (w != p->w || h != p->h || channels != p->channels)) {
        png_error(p->png, "the file changed since it was opened");
    }
    p->w = w;
    p->h = h;
    p->channels = channels;
    p->next_row = 0;
    return true;
}

// Unassociated (PNG) alpha over white, rounded: c*a/255 + (255 - a). n pixels, (n, 4) -> (n, 3);
// in place is fine since the output never overtakes the input.
static void rgba_to_rgb(const uint8_t *src, uint8_t *dest, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t r = src[4 * i], g = src[4 * i + 1], b = src[4 * i + 2], a = src[4 * i + 3];
        uint32_t bg = 255 * (255 - a) + 127;
        dest[3 * i + 0] = (uint8_t)((r * a + bg) / 255);
        dest[3 * i + 1] = (uint8_t)((g * a + bg) / 255);
        dest[3 * i + 2] = (uint8_t)((b * a + bg) / 255);
    }
}

static void row_to_rgb(const png_src *p, const uint8_t *src, uint8_t *dest)
{
    if (p->channels == 4) {
        rgba_to_rgb(src, dest, p->w);
    } else {
        memcpy(dest, src, (size_t)p->w * 3);
    }
}

// Fill the band with rows [y, y + band_cap) (clipped), restarting the decoder if it is past y.
static bool dec_band(png_src *p, uint32_t y, th_error **err)
{
    png_src *volatile ctx = p;

    p->band_n = 0;
    if ((!p->png || p->next_row > y) && !dec_start(p, err)) {
        return false;
    }
    if (setjmp(png_jmpbuf(p->png))) {
        th_error_set(err, "cannot decode PNG row %u: %s", (unsigned)ctx->next_row, ctx->msg);
        dec_stop(ctx);
        return false;
    }
    while (p->next_row < y) {
        png_read_row(p->png, p->row, NULL);
        p->next_row++;
    }
    uint32_t n = TH_MIN(p->band_cap, p->h - y);
    for (uint32_t i = 0; i < n; i++) {
        png_read_row(p->png, p->row, NULL);
        p->next_row++;
        row_to_rgb(p, p->row, p->band + (size_t)i * p->w * 3);
    }
    p->band_y = y;
    p->band_n = n;
    return true;
}

// Interlaced: decode every pass of the whole image into the band, then convert it in place.
static bool dec_whole(png_src *p, th_error **err)
{
    png_src *volatile ctx = p;
    size_t stride = (size_t)p->w * (size_t)p->channels;

    p->band_n = 0;
    if (!dec_start(p, err)) {
        return false;
    }
    if (setjmp(png_jmpbuf(p->png))) {
        th_error_set(err, "cannot decode interlaced PNG: %s", ctx->msg);
        dec_stop(ctx);
        return false;
    }
    for (int pass = 0; pass < p->passes; pass++) {
        for (uint32_t r = 0; r < p->h; r++) {
            png_read_row(p->png, p->band + r * stride, NULL);
        }
    }
    dec_stop(p);
    if (p->channels == 4) {
        rgba_to_rgb(p->band, p->band, (size_t)p->w * p->h);
    }
    p->band_y = 0;
    p->band_n = p->h;
    return true;
}

static bool copy_rows(png_src *p, uint8_t *dest, int64_t x, int64_t y, int64_t w, int64_t h,
                      th_error **err)
{
    int64_t ix0 = TH_MAX(x, 0), iy0 = TH_MAX(y, 0);
    int64_t ix1 = TH_MIN(x + w, (int64_t)p->w), iy1 = TH_MIN(y + h, (int64_t)p->h);

    for (int64_t r = iy0; r < iy1; r++) {
        if (p->band_n == 0 || r < p->band_y || r >= (int64_t)p->band_y + p->band_n) {
            bool ok = p->passes > 1 ? dec_whole(p, err) : dec_band(p, (uint32_t)r, err);
            if (!ok) {
                return false;
            }
        }
        const uint8_t *src = p->band + ((size_t)(r - p->band_y) * p->w + (size_t)ix0) * 3;
        memcpy(dest + ((r - y) * w + (ix0 - x)) * 3, src, (size_t)(ix1 - ix0) * 3);
    }
    return true;
}

static bool read_region_png(th_slide *slide, uint8_t *dest, int64_t x, int64_t y, int level,
                            int64_t w, int64_t h, th_error **err)
{
    png_src *p = slide->data;
    th_slide_fill_white(dest, w, h);
    if (x >= (int64_t)p->w || y >= (int64_t)p->h || x + w <= 0 || y + h <= 0) {
        return true;
    }
    pthread_mutex_lock(&p->lock);
    bool ok = copy_rows(p, dest, x, y, w, h, err);
    pthread_mutex_unlock(&p->lock);
    return ok;
}

static void free_src(png_src *p)
{
    if (!p) {
        return;
    }
    dec_stop(p);
    if (p->fp) {
        fclose(p->fp);
    }
    pthread_mutex_destroy(&p->lock);
    th_free(p->band);
    th_free(p->row);
    th_free(p);
}

static void close_png(th_slide *slide)
{
    free_src(slide->data);
    slide->data = NULL;
}

static const th_slide_ops ops_png = {
    .read_region = read_region_png,
    .close = close_png,
};

static bool is_png(const char *path)
{
    uint8_t sig[8];
    FILE *fp = th_fopen(path, "rb", NULL);
    if (!fp) {
        return false;
    }
    size_t n = fread(sig, 1, sizeof(sig), fp);
    fclose(fp);
    return n == sizeof(sig) && png_sig_cmp(sig, 0, sizeof(sig)) == 0;
}

// Row buffer and band; an interlaced PNG gets a whole-image band.
static bool alloc_buffers(png_src *p, th_error **err)
{
    size_t rgb_row = (size_t)p->w * 3;
    if (p->passes > 1) {
        if ((uint64_t)p->w * p->h > INTERLACED_MAX_PX) {
            th_error_set(err, "interlaced PNG larger than 64 megapixels is not supported");
            return false;
        }
        p->band_cap = p->h;
        p->band = th_malloc((size_t)p->w * p->h * (size_t)p->channels, err);
        return p->band != NULL;
    }
    p->band_cap = (uint32_t)TH_MIN(TH_MAX(BAND_MAX_BYTES / rgb_row, 1), BAND_MAX_ROWS);
    p->band_cap = TH_MIN(p->band_cap, p->h);
    p->row = th_malloc((size_t)p->w * (size_t)p->channels, err);
    p->band = p->row ? th_malloc(rgb_row * p->band_cap, err) : NULL;
    return p->band != NULL;
}

// µm per pixel from pHYs in pixels per metre, if believable.
static void set_mpp(th_slide *slide, png_src *p)
{
    png_uint_32 rx = 0, ry = 0;
    int unit = 0;
    if (png_get_pHYs(p->png, p->info, &rx, &ry, &unit) && unit == PNG_RESOLUTION_METER) {
        th_slide_set_resolution_mpp(slide, rx, ry, 1e6, "png-tags");
    }
}

bool th_slide_png_open(th_slide *slide, const char *path, th_error **err)
{
    if (!is_png(path)) {
        return false; // not ours
    }
    png_src *p = th_calloc(1, sizeof(*p), err);
    if (!p) {
        return false;
    }
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        th_error_set(err, "cannot create a mutex");
        th_free(p);
        return false;
    }
    p->fp = th_fopen(path, "rb", err);
    if (!p->fp || !dec_start(p, err) || !alloc_buffers(p, err)) {
        free_src(p);
        return false;
    }
    snprintf(slide->format, sizeof(slide->format), "png");
    slide->level_count = 1;
    slide->level_w[0] = p->w;
    slide->level_h[0] = p->h;
    slide->downsample[0] = 1.0;
    set_mpp(slide, p);
    slide->ops = &ops_png;
    slide->data = p;
    return true;
}
