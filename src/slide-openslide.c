/* SPDX-License-Identifier: MIT */
/* OpenSlide backend: every format OpenSlide recognises (Aperio, Hamamatsu, generic tiled TIFF,
 * ...). Reads go through a fixed per-thread ARGB scratch buffer in chunks, and the premultiplied
 * ARGB is composited on white into RGB. OpenSlide handles are thread-safe, so no lock here.
 * Fast path: levels stored as plain tiled TIFF directories (Aperio JPEG, generic tiled TIFF) are
 * read with libtiff (slide-tiff.c), the same pixels without OpenSlide's cairo/pixman compositing,
 * 8 times faster (see HACKING.md, "Reading"). */
#include <config.h>

#include <openslide.h>

#include "slide.h"

// Pixels of the per-thread scratch buffer: a 256x256 region is read in one call.
#define SCRATCH_PX ((int64_t)1 << 16)

// (rows, cols) row-major premultiplied ARGB, one uint32 per pixel, as OpenSlide writes it.
// Thread-local so concurrent readers never share it and nothing is allocated per read.
static _Thread_local uint32_t scratch[SCRATCH_PX];

typedef struct os_slide {
    openslide_t *osr;
    th_tiff_src *fast[TH_SLIDE_MAX_LEVELS]; // libtiff readers of levels, NULL where OpenSlide reads
} os_slide;

// Premultiplied ARGB over white: out = c + (255 - a). Transparent (a = 0, c = 0) gives white.
// Valid premultiplied data has c <= a; the clamp only guards against broken input.
static void argb_to_rgb(uint8_t *dest, int64_t dest_stride, const uint32_t *src, int64_t cols,
                        int64_t rows)
{
    for (int64_t r = 0; r < rows; r++) {
        const uint32_t *s = src + r * cols;
        uint8_t *d = dest + r * dest_stride;
        for (int64_t c = 0; c < cols; c++) {
            uint32_t p = s[c];
            uint32_t bg = 255 - (p >> 24);
            uint32_t red = ((p >> 16) & 0xff) + bg;
            uint32_t green = ((p >> 8) & 0xff) + bg;
            uint32_t blue = (p & 0xff) + bg;
            d[3 * c + 0] = (uint8_t)(red > 255 ? 255 : red);
            d[3 * c + 1] = (uint8_t)(green > 255 ? 255 : green);
            d[3 * c + 2] = (uint8_t)(blue > 255 ? 255 : blue);
        }
    }
}

// Read in chunks of at most SCRATCH_PX pixels. A chunk at level offset (dx, dy) starts at
// level-0 (x + round(dx * ds), y + round(dy * ds)). On level 0 and on levels with an integer
// downsample this is exact, so a chunked read equals one big read; otherwise OpenSlide's own
// sub-pixel placement of each chunk may differ from a single read by less than half a level-0
// pixel. Regions of up to 65536 pixels (e.g. 256x256 tiles) are always one call.
static bool openslide_read(th_slide *slide, uint8_t *dest, int64_t x, int64_t y, int level,
                           int64_t w, int64_t h, th_error **err)
{
    openslide_t *osr = ((os_slide *)slide->data)->osr;
    double ds = slide->downsample[level];
    int64_t chunk_w = TH_MIN(w, SCRATCH_PX);
    int64_t chunk_h = TH_MAX(1, TH_MIN(h, SCRATCH_PX / chunk_w));

    for (int64_t dy = 0; dy < h; dy += chunk_h) {
        int64_t rows = TH_MIN(chunk_h, h - dy);
        int64_t y0 = y + llround((double)dy * ds);
        for (int64_t dx = 0; dx < w; dx += chunk_w) {
            int64_t cols = TH_MIN(chunk_w, w - dx);
            int64_t x0 = x + llround((double)dx * ds);
            openslide_read_region(osr, scratch, x0, y0, level, cols, rows);
            // Errors are terminal per handle: once set, every later read fails the same way.
            const char *msg = openslide_get_error(osr);
            if (msg) {
                th_error_set(err, "%s", msg);
                return false;
            }
            argb_to_rgb(dest + (dy * w + dx) * 3, w * 3, scratch, cols, rows);
        }
    }
    return true;
}

// The fast path serves a level when it has a reader and the region starts on a level pixel
// (integral downsample, x and y multiples of it): OpenSlide then copies pixels too, without
// the sub-pixel interpolation it applies elsewhere. If libtiff fails (a missing or broken tile
// that OpenSlide may handle), OpenSlide reads the region and reports its own error.
static bool os_read_region(th_slide *slide, uint8_t *dest, int64_t x, int64_t y, int level,
                           int64_t w, int64_t h, th_error **err)
{
    os_slide *os = slide->data;
    int64_t ds = (int64_t)slide->downsample[level];
    if (!os->fast[level] || x % ds != 0 || y % ds != 0) {
        return openslide_read(slide, dest, x, y, level, w, h, err);
    }
    th_error *fast_err = NULL;
    if (th_tiff_src_read(os->fast[level], dest, x / ds, y / ds, w, h, &fast_err)) {
        return true;
    }
    // What libtiff cannot give, OpenSlide may (a tile missing from the file is transparent to
    // it); if it fails too, the libtiff reader's message says which tile and why, where
    // OpenSlide's says "TIFFRGBAImageGet failed".
    if (openslide_read(slide, dest, x, y, level, w, h, NULL)) {
        th_error_free(fast_err);
        return true;
    }
    th_error_propagate(err, &fast_err);
    return false;
}

static void os_close(th_slide *slide)
{
    os_slide *os = slide->data;
    if (os) {
        for (int i = 0; i < TH_SLIDE_MAX_LEVELS; i++) {
            th_tiff_src_close(os->fast[i]);
        }
        openslide_close(os->osr);
        th_free(os);
        slide->data = NULL;
    }
}

bool th_slide_direct_reads = true;

// Readers for the levels that are plain tiled TIFF directories with an integral downsample
// (the vendors whose levels are exactly those directories), unless th_slide_direct_reads is off.
static void attach_fast(th_slide *slide, os_slide *os, const char *path, const char *vendor)
{
    int dirs[TH_SLIDE_MAX_LEVELS];
    if (!th_slide_direct_reads ||
        (strcmp(vendor, "aperio") != 0 && strcmp(vendor, "generic-tiff") != 0) ||
        th_tiff_match_levels(path, slide, dirs) == 0) {
        return;
    }
    bool small = slide->level_w[0] * slide->level_h[0] * 3 <= TH_SMALL_SLIDE_BYTES;
    for (int i = 0; i < slide->level_count; i++) {
        double ds = slide->downsample[i];
        if (dirs[i] >= 0 && ds == floor(ds)) {
            os->fast[i] = th_tiff_src_open(path, dirs[i], small, NULL);
            slide->direct_levels |= os->fast[i] ? 1u << i : 0;
        }
    }
}

static void os_release(th_slide *slide, int level)
{
    os_slide *os = slide->data;
    th_tiff_src_release(os->fast[level]);
}

static const th_slide_ops os_ops = {
    .read_region = os_read_region,
    .close = os_close,
    .release = os_release,
};

// A positive, finite numeric property, or 0 if absent or malformed.
static double get_positive(openslide_t *osr, const char *name)
{
    const char *s = openslide_get_property_value(osr, name);
    double v = 0;
    if (!s || !th_parse_double(s, &v) || !isfinite(v) || v <= 0) {
        return 0;
    }
    return v;
}

// µm per level-0 pixel: OpenSlide's openslide.mpp-x/y; if absent (OpenSlide 3.4.1 sets none for
// generic TIFF), the TIFF resolution tags in centimetres or inches, as OpenSlide 4 does, when they
// give a believable microscope scale. Anything else leaves 0 (unknown).
static void set_mpp(th_slide *slide, openslide_t *osr)
{
    double mx = get_positive(osr, OPENSLIDE_PROPERTY_NAME_MPP_X);
    double my = get_positive(osr, OPENSLIDE_PROPERTY_NAME_MPP_Y);
    if (mx > 0 && my > 0) {
        slide->mpp_x = mx;
        slide->mpp_y = my;
        snprintf(slide->mpp_source, sizeof(slide->mpp_source), "openslide");
        return;
    }
    const char *unit = openslide_get_property_value(osr, "tiff.ResolutionUnit");
    double unit_um = !unit                             ? 0
                     : strcmp(unit, "centimeter") == 0 ? 1e4
                     : strcmp(unit, "inch") == 0       ? 25400
                                                       : 0;
    if (unit_um > 0) {
        th_slide_set_resolution_mpp(slide, get_positive(osr, "tiff.XResolution"),
                                    get_positive(osr, "tiff.YResolution"), unit_um, "tiff-tags");
    }
}

// OpenSlide 3.4.1 with libtiff 4.5 returns garbled, run-to-run different pixels on generic-TIFF
// levels smaller than one tile (seen on boxes.tiff levels 2-3 and patch-8-level.tif levels
// 1-8): such a level, and every smaller one after it, is hidden. Level 0 always stays.
static bool level_unreliable(openslide_t *osr, bool generic_tiff, int32_t level, int64_t w,
                             int64_t h)
{
    char kw[64], kh[64];
    snprintf(kw, sizeof(kw), "openslide.level[%d].tile-width", (int)level);
    snprintf(kh, sizeof(kh), "openslide.level[%d].tile-height", (int)level);
    const char *tw = openslide_get_property_value(osr, kw);
    const char *tht = openslide_get_property_value(osr, kh);
    int64_t tile_w, tile_h;
    return generic_tiff && level > 0 && tw && tht && th_parse_int64(tw, &tile_w) &&
           th_parse_int64(tht, &tile_h) && (w < tile_w || h < tile_h);
}

static bool read_levels(th_slide *slide, openslide_t *osr, bool generic_tiff, th_error **err)
{
    int32_t n = openslide_get_level_count(osr);
    if (n < 1 || n > TH_SLIDE_MAX_LEVELS) {
        th_error_set(err, "unsupported level count %d", (int)n);
        return false;
    }
    slide->level_count = n;
    for (int32_t i = 0; i < n; i++) {
        openslide_get_level_dimensions(osr, i, &slide->level_w[i], &slide->level_h[i]);
        slide->downsample[i] = openslide_get_level_downsample(osr, i);
        if (level_unreliable(osr, generic_tiff, i, slide->level_w[i], slide->level_h[i])) {
            slide->level_count = i;
            break;
        }
    }
    const char *msg = openslide_get_error(osr);
    if (msg) {
        th_error_set(err, "%s", msg);
        return false;
    }
    return true;
}

bool th_slide_openslide_open(th_slide *slide, const char *path, th_error **err)
{
    const char *vendor = openslide_detect_vendor(path);
    if (!vendor) {
        return false; // not ours: let the next backend try
    }
    openslide_t *osr = openslide_open(path);
    if (!osr) {
        th_error_set(err, "OpenSlide could not open this %s file", vendor);
        return false;
    }
    const char *msg = openslide_get_error(osr);
    if (msg) {
        th_error_set(err, "%s", msg);
        openslide_close(osr);
        return false;
    }
    if (!read_levels(slide, osr, strcmp(vendor, "generic-tiff") == 0, err)) {
        openslide_close(osr);
        return false;
    }
    os_slide *os = th_calloc(1, sizeof(*os), err);
    if (!os) {
        openslide_close(osr);
        return false;
    }
    os->osr = osr;
    set_mpp(slide, osr);
    snprintf(slide->format, sizeof(slide->format), "%s", vendor);
    slide->ops = &os_ops;
    slide->data = os;
    attach_fast(slide, os, path, vendor);
    return true;
}
