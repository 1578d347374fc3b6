/* SPDX-License-Identifier: MIT */
/* Tests for tissue.c: the area-weighted tissue fraction on a hand-made mask; generated PNG images
 * (glass, tissue everywhere, ink, specks, small and large holes) with exact expected masks; the
 * real H&E slides against histolab's reference masks (../shared/data/masks) and against
 * tools/gen-tissue-refs.py (openslide + Pillow + skimage + scipy, tests/data/tissue-*); the mask
 * PNG written and read back; and every other real or broken slide that opens. */
#include <config.h>

#include <png.h>
#include <time.h>

#include "tap.h"
#include "testutil.h"
#include "tissue.h"

/* ---------------------------------------------------------------- helpers */

static th_slide *open_slide(const char *path)
{
    th_error *err = NULL;
    th_slide *s = th_slide_open(path, &err);
    if (!s) {
        diag("%s: %s", path, th_error_message(err));
    }
    th_error_free(err);
    return s;
}

// Detect tissue on a slide; NULL (and a diag) on failure. *secs receives the time taken.
static th_tissue *detect(th_slide *s, double mpp0, double *secs)
{
    th_error *err = NULL;
    double t0 = tu_now();
    th_tissue *t = s ? th_tissue_detect(s, mpp0, 0, &err) : NULL;
    if (secs) {
        *secs = tu_now() - t0;
    }
    if (s && !t) {
        diag("th_tissue_detect: %s", th_error_message(err));
    }
    th_error_free(err);
    return t;
}

// A whole file of the source tree, NUL-terminated (caller frees with th_free), or NULL.
static char *read_src(const char *rel, size_t *len)
{
    char *b = th_read_file(test_src_path(rel), len, NULL), *text = NULL;
    if (b) {
        text = tu_xcalloc(*len + 1, 1);
        memcpy(text, b, *len);
    }
    th_free(b);
    return text;
}

// A P4 (binary) PBM from the source tree as 0/1 bytes (caller frees with th_free), 1 = black.
static uint8_t *read_pbm(const char *name, int *w, int *h)
{
    size_t len = 0;
    uint8_t *b = (uint8_t *)read_src(name, &len), *m = NULL;
    int off = 0;
    if (!b || sscanf((char *)b, "P4 %d %d%n", w, h, &off) != 2 || *w <= 0 || *h <= 0) {
        goto out;
    }
    size_t stride = ((size_t)*w + 7) / 8;
    off++; // the single whitespace byte after the height
    if ((size_t)off + stride * (size_t)*h != len) {
        goto out;
    }
    m = tu_xcalloc((size_t)*w * (size_t)*h, 1);
    for (int y = 0; y < *h; y++) {
        for (int x = 0; x < *w; x++) {
            m[(size_t)y * *w + x] = (b[off + y * stride + x / 8] >> (7 - x % 8)) & 1;
        }
    }
out:
    th_free(b);
    return m;
}

// Share of a reference mask (rows × cols, covering the whole slide) that our mask agrees with:
// each reference pixel is tissue for us when at least half of its level-0 area is.
static double agreement(const th_tissue *t, const uint8_t *ref, int rows, int cols, int64_t w0,
                        int64_t h0)
{
    double sx = (double)w0 / cols, sy = (double)h0 / rows;
    int64_t agree = 0;
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) {
            bool ours = th_tissue_fraction(t, c * sx, r * sy, sx, sy) >= 0.5;
            agree += ours == (ref[(size_t)r * cols + c] != 0);
        }
    }
    return (double)agree / ((double)rows * cols);
}

static double share(const uint8_t *m, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        k += m[i] != 0;
    }
    return (double)k / (double)n;
}

/* ---------------------------------------------------------------- generated images */

typedef void pixel_fn(int x, int y, uint8_t *rgb);

static void png_fail(png_structp png, png_const_charp msg)
{
    bail("libpng: %s", msg);
}

// Write a w × h RGB PNG whose pixels come from fn, into the test's temporary directory.
static const char *write_image(const char *name, int w, int h, pixel_fn *fn)
{
    static char path[512];
    th_error *err = NULL;
    snprintf(path, sizeof(path), "%s/%s", test_tmpdir(), name);
    FILE *fp = th_fopen(path, "wb", &err);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, png_fail, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    uint8_t *row = tu_xcalloc((size_t)w, 3);
    if (!fp || !info) {
        bail("%s: cannot write", path);
    }
    png_init_io(png, fp);
    png_set_compression_level(png, 1);
    png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            fn(x, y, row + 3 * x);
        }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(fp);
    th_free(row);
    return path;
}

static void set(uint8_t *p, int r, int g, int b)
{
    p[0] = (uint8_t)r;
    p[1] = (uint8_t)g;
    p[2] = (uint8_t)b;
}

static bool in(int x, int y, int x0, int y0, int side)
{
    return x >= x0 && x < x0 + side && y >= y0 && y < y0 + side;
}

// Eosin-like pink (S 0.35), a pale pink (S 0.15) and a dark purple (S 0.6).
#define PINK 230, 150, 200
static void px_glass(int x, int y, uint8_t *p)
{
    set(p, 246, 244, 245);
}
static void px_tissue(int x, int y, uint8_t *p)
{
    if (x < 160) {
        set(p, 240, 205, 225);
    } else {
        set(p, 150, 60, 130);
    }
}
static void px_half(int x, int y, uint8_t *p)
{
    if (x < 240) {
        set(p, PINK);
    } else {
        set(p, 255, 255, 255);
    }
}
static void px_ink(int x, int y, uint8_t *p)
{
    if (x >= 64 && x < 192) {
        set(p, 60, 160, 90); // green marker
    } else if (x >= 256 && x < 384) {
        set(p, 40, 70, 170); // blue marker
    } else {
        set(p, 255, 255, 255);
    }
}
static void px_specks(int x, int y, uint8_t *p)
{
    if (in(x, y, 80, 80, 160) || in(x, y, 560, 240, 240)) {
        set(p, PINK);
    } else {
        set(p, 255, 255, 255);
    }
}
static void px_small_hole(int x, int y, uint8_t *p)
{
    if (in(x, y, 288, 288, 400)) {
        set(p, 255, 255, 255);
    } else {
        set(p, PINK);
    }
}
static void px_large_hole(int x, int y, uint8_t *p)
{
    if (in(x, y, 320, 320, 2080)) {
        set(p, 255, 255, 255);
    } else {
        set(p, PINK);
    }
}

typedef struct synth_case {
    const char *name;
    int w, h;
    pixel_fn *fn;
    double fraction;       // expected share of the mask (-1: not checked)
    double rx, ry, rw, rh; // a level-0 rectangle ...
    double rect_fraction;  // ... and its expected tissue fraction
    const char *why;
} synth_case;

// Generated at 0.5 µm/px, so mask pixels are exactly 16 × 16 image pixels (8 µm).
static const synth_case synth[] = {
    {"glass.png", 320, 240, px_glass, 0, 0, 0, 320, 240, 0, "all glass: no tissue"},
    {"tissue.png", 320, 240, px_tissue, 1, 0, 0, 320, 240, 1,
     "pale and dark tissue everywhere: all tissue (Otsu's split between them is clamped)"},
    // 15 tissue columns of 30 and the 3-pixel (24 µm) margin: 18 / 30.
    {"half.png", 480, 320, px_half, 0.6, 320, 0, 160, 320, 0,
     "left half tissue: 15 + 3 margin columns of 30; right third glass"},
    {"ink.png", 448, 320, px_ink, 0, 0, 0, 448, 320, 0, "green and blue marker are not tissue"},
    // 10 × 10 mask pixels = 6400 µm² < 0.01 mm² goes; 15 × 15 = 14400 µm² stays.
    // The kept one grows by the disk of radius 3: 225 + 4 × 15 × 3 + 4 × 4 corner cells.
    {"specks.png", 960, 640, px_specks, (225 + 180 + 16) / 2400.0, 80, 80, 160, 160, 0,
     "an 80 µm speck is removed, a 120 µm one stays"},
    // A 25 × 25 hole (0.04 mm²) is filled.
    {"small-hole.png", 976, 976, px_small_hole, 1, 288, 288, 400, 400, 1,
     "a 200 µm hole is filled"},
    // A 130 × 130 hole (1.08 mm²) stays, less the 3-pixel margin.
    {"large-hole.png", 2720, 2720, px_large_hole, -1, 1000, 1000, 700, 700, 0,
     "a 1.04 mm hole stays a hole"},
};

static void test_synthetic(void)
{
    for (size_t i = 0; i < sizeof(synth) / sizeof(synth[0]); i++) {
        const synth_case *c = &synth[i];
        th_slide *s = open_slide(write_image(c->name, c->w, c->h, c->fn));
        th_tissue *t = detect(s, 0.5, NULL);
        if (!ok(t != NULL, "%s: detected", c->name)) {
            th_slide_close(s);
            continue;
        }
        ok(t->w == c->w / 16 && t->h == c->h / 16 && t->sx == 16 && t->sy == 16,
           "%s: %d × %d mask of 16-pixel cells (got %d × %d, %g × %g)", c->name, c->w / 16,
           c->h / 16, t->w, t->h, t->sx, t->sy);
        if (c->fraction >= 0) {
            is_double(t->fraction, c->fraction, 1e-12, "%s: %s", c->name, c->why);
        }
        is_double(th_tissue_fraction(t, c->rx, c->ry, c->rw, c->rh), c->rect_fraction, 1e-12,
                  "%s: rectangle (%g, %g) %g × %g", c->name, c->rx, c->ry, c->rw, c->rh);
        is_double(th_tissue_fraction(t, 0, 0, c->w, c->h), t->fraction, 1e-12,
                  "%s: the whole image's fraction is the mask's", c->name);
        th_tissue_free(t);
        th_slide_close(s);
    }
}

/* ---------------------------------------------------------------- hand-made mask */

static void test_fraction(void)
{
    // A 40 × 20 slide as 4 × 2 cells of 10 × 10: row 0 = 1 1 0 0, row 1 = 1 0 0 1.
    uint8_t m[2] = {0x3, 0x9}; // bit x of byte y
    th_tissue t = {.w = 4, .h = 2, .sx = 10, .sy = 10, .mask = m, .stride = 1, .fraction = 0.5};
    is_double(th_tissue_fraction(&t, 0, 0, 40, 20), 0.5, 1e-15, "whole slide = mask fraction");
    is_double(th_tissue_fraction(&t, -40, -20, 120, 60), 0.5 * 800 / 7200, 1e-15,
              "rectangle around the slide: outside is background");
    is_double(th_tissue_fraction(&t, 50, 0, 10, 10), 0, 0, "rectangle right of the slide");
    is_double(th_tissue_fraction(&t, -20, -20, 15, 25), 0, 0, "rectangle above-left");
    is_double(th_tissue_fraction(&t, 5, 0, 10, 10), 1, 1e-15, "two tissue halves");
    is_double(th_tissue_fraction(&t, 15, 0, 10, 10), 0.5, 1e-15, "half tissue, half glass");
    is_double(th_tissue_fraction(&t, 35, 5, 10, 10), 0.25, 1e-15,
              "corner across the edge: 25 tissue of 100 (50 outside)");
    is_double(th_tissue_fraction(&t, 7.5, 7.5, 5, 5), 0.75, 1e-15,
              "fractional rectangle over 4 cells: 18.75 of 25");
    is_double(th_tissue_fraction(&t, 2, 3, 36, 14), (8 * 7 + 10 * 7 + 8 * 7 + 8 * 7) / 504.0, 1e-15,
              "rectangle cutting every cell");
    is_double(th_tissue_fraction(&t, 10, 10, 0, 5), 0, 0, "empty rectangle");
    is_double(th_tissue_fraction(&t, NAN, 0, 10, 10), 0, 0, "NaN rectangle");
}

/* ---------------------------------------------------------------- real slides */

// histolab's reference mask of a slide (in ../shared/data/masks) and the least agreement we
// accept. Agreement at the time of writing: CMU 0.9873 (its generic pyramid 0.9832), TCGA 0.9857
// with mpp unknown (0.5 assumed) and 0.9678 with mpp 1.0 (our margin is then half the
// reference's, whose masks are at about 1/10 scale).
typedef struct ref_mask {
    const char *slide, *mask;
    double mpp0, min_agree;
} ref_mask;

static const ref_mask ref_masks[] = {
    {"CMU-1-Small-Region.svs", "tissue-mask-cmu-1-small-region.npy", 0.499, 0.975},
    {"CMU-1-Small-Region.generic-pyramid.tiff", "tissue-mask-cmu-1-small-region.npy", 0.499, 0.975},
    {"TCGA-CR-7395-01A-01-TS1.svs", "tissue-mask-tcga-cr-7395.npy", 0, 0.975},
    {"TCGA-CR-7395-01A-01-TS1.svs", "tissue-mask-tcga-cr-7395.npy", 1.0, 0.955},
};

static void check_histolab(const th_tissue *t, th_slide *s, const char *slide, double mpp0)
{
    char rel[256];
    for (size_t i = 0; i < sizeof(ref_masks) / sizeof(ref_masks[0]); i++) {
        const ref_mask *c = &ref_masks[i];
        tu_npy npy;
        if (strcmp(c->slide, slide) != 0 || c->mpp0 != mpp0) {
            continue;
        }
        snprintf(rel, sizeof(rel), "masks/%s", c->mask);
        if (ok(tu_npy_load(&npy, test_data_path(rel)) && npy.b1 && npy.ndim == 2, "%s read", rel)) {
            int64_t w0, h0;
            th_slide_get_level_dimensions(s, 0, &w0, &h0);
            int rows = (int)npy.shape[0], cols = (int)npy.shape[1];
            double a = agreement(t, npy.b1, rows, cols, w0, h0);
            ok(a >= c->min_agree,
               "%s (mpp %g): agrees with histolab's %d × %d mask on %.4f of pixels (>= %.3f); "
               "tissue %.4f, reference %.4f",
               slide, mpp0, rows, cols, a, c->min_agree, t->fraction, share(npy.b1, npy.count));
        }
        tu_npy_free(&npy);
    }
}

// Compare with one line of tests/data/tissue-refs.txt (the same method in openslide, numpy,
// skimage and scipy).
static void check_refs(const th_tissue *t, const char *slide, double mpp0, int level, int w, int h,
                       double otsu, double thr, double frac, const char *pbm)
{
    char rel[256];
    int pw = 0, ph = 0;
    ok(t->level == level && t->w == w && t->h == h,
       "%s (mpp %g): level %d, %d × %d mask (got level %d, %d × %d)", slide, mpp0, level, w, h,
       t->level, t->w, t->h);
    is_double(t->otsu, otsu, 1.01 / 255, "%s (mpp %g): Otsu's threshold as skimage's", slide, mpp0);
    is_double(t->threshold, thr, 1e-6, "%s (mpp %g): clamped threshold", slide, mpp0);
    is_double(t->fraction, frac, 0.001, "%s (mpp %g): tissue fraction", slide, mpp0);
    if (strcmp(pbm, "-") == 0) {
        return;
    }
    snprintf(rel, sizeof(rel), "tests/data/%s", pbm);
    uint8_t *ref = read_pbm(rel, &pw, &ph);
    size_t n = (size_t)w * h, same = 0;
    if (ok(ref && pw == w && ph == h && t->w == w && t->h == h, "%s read, %d × %d", rel, w, h)) {
        for (size_t i = 0; i < n; i++) {
            same += th_tissue_at(t, (int)(i % (size_t)w), (int)(i / (size_t)w)) == (ref[i] != 0);
        }
        ok((double)same / n >= 0.999, "%s (mpp %g): mask agrees with scipy's on %.4f of pixels",
           slide, mpp0, (double)same / n);
    }
    th_free(ref);
}

// The mask written as PNG and read back with libpng's simplified API.
static void check_png(const th_tissue *t)
{
    char path[512];
    th_error *err = NULL;
    snprintf(path, sizeof(path), "%s/tissue.png", test_tmpdir());
    ok(th_tissue_write_png(t, path, &err), "tissue.png written%s%s", err ? ": " : "",
       err ? th_error_message(err) : "");
    png_image img = {.version = PNG_IMAGE_VERSION};
    uint8_t *px = NULL;
    if (png_image_begin_read_from_file(&img, path)) {
        img.format = PNG_FORMAT_GRAY;
        px = tu_xcalloc(PNG_IMAGE_SIZE(img), 1);
        if (!png_image_finish_read(&img, NULL, px, 0, NULL)) {
            TH_FREE(px);
        }
    }
    ok(px && img.width == (png_uint_32)t->w && img.height == (png_uint_32)t->h,
       "tissue.png read back: %u × %u, the mask is %d × %d", img.width, img.height, t->w, t->h);
    bool same = px != NULL;
    for (size_t i = 0; same && i < (size_t)t->w * t->h; i++) {
        same = px[i] == (th_tissue_at(t, (int)(i % (size_t)t->w), (int)(i / (size_t)t->w)) ? 255 : 0);
    }
    ok(same, "tissue.png: 255 for tissue, 0 for background");
    th_free(px);
    png_image_free(&img);

    th_error_free(err);
    err = NULL;
    snprintf(path, sizeof(path), "%s/no-such-dir/tissue.png", test_tmpdir());
    ok(!th_tissue_write_png(t, path, &err), "writing into a missing directory fails");
    like(err ? th_error_message(err) : NULL, "no-such-dir/tissue.png",
         "... and the message names the file");
    th_error_free(err);
}

// Each slide of tests/data/tissue-refs.txt is detected once, then checked against the
// independent implementation and histolab's masks.
static void test_real_slides(void)
{
    size_t len = 0;
    char *text = read_src("tests/data/tissue-refs.txt", &len), *save = NULL;
    bool png_done = false;
    if (!ok(text != NULL, "tests/data/tissue-refs.txt read")) {
        return;
    }
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char slide[128], pbm[128], rel[256];
        double mpp0, otsu, thr, frac, secs;
        int level, w, h;
        if (line[0] == '#' || sscanf(line, "%127s %lf %d %d %d %lf %lf %lf %127s", slide, &mpp0,
                                     &level, &w, &h, &otsu, &thr, &frac, pbm) != 9) {
            continue;
        }
        snprintf(rel, sizeof(rel), "slides/%s", slide);
        th_slide *s = open_slide(test_data_path(rel));
        th_tissue *t = detect(s, mpp0, &secs);
        if (ok(t != NULL, "%s (mpp %g): detected", slide, mpp0)) {
            diag("%s mpp %g: level %d, mask %d × %d, Otsu %.3f, threshold %.3f, tissue %.4f, "
                 "%.3f s",
                 slide, mpp0, t->level, t->w, t->h, t->otsu, t->threshold, t->fraction, secs);
            int64_t w0, h0;
            th_slide_get_level_dimensions(s, 0, &w0, &h0);
            is_double(th_tissue_fraction(t, 0, 0, (double)w0, (double)h0), t->fraction, 1e-9,
                      "%s: the whole slide's fraction is the mask's", slide);
            check_refs(t, slide, mpp0, level, w, h, otsu, thr, frac, pbm);
            check_histolab(t, s, slide, mpp0);
            if (!png_done) {
                check_png(t);
                png_done = true;
            }
        }
        th_tissue_free(t);
        th_slide_close(s);
    }
    th_free(text);
}

// Other real files: they must give a mask (or a clear read error), never crash.
static void test_other_files(void)
{
    static const char *files[] = {
        "slides/small.svs",
        "slides/test3-DAPI-2.ndpi",
        "slides/boxes.tiff",
        "slides/patch-8-level.tif",
        "images/CMU-1-Small-Region.crop1024.png",
        "images/CMU-1-Small-Region.half.lzw.tif",
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        th_slide *s = open_slide(test_data_path(files[i]));
        double mpp = 0, my, secs;
        if (s && !th_slide_get_mpp(s, &mpp, &my)) {
            mpp = 0;
        }
        th_tissue *t = detect(s, mpp, &secs);
        if (ok(t != NULL, "%s: detected", files[i])) {
            ok(t->fraction >= 0 && t->fraction <= 1 && t->w >= 1 && t->h >= 1,
               "%s (mpp %g): level %d, mask %d × %d, Otsu %.3f, threshold %.3f, tissue %.4f, "
               "%.3f s",
               files[i], mpp, t->level, t->w, t->h, t->otsu, t->threshold, t->fraction, secs);
        }
        th_tissue_free(t);
        th_slide_close(s);
    }
}

// Every broken file that opens must fail with a message (or succeed), never crash.
static void test_bad_files(void)
{
    static const char *files[] = {
        "CMU-1-Small-Region.truncated.svs",
        "broken.svs",
        "crop1024.truncated.png",
        "not-an-image.svs",
        "unopenable.tiff",
        "unreadable.svs",
    };
    char rel[256];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        th_error *err = NULL;
        snprintf(rel, sizeof(rel), "bad/%s", files[i]);
        th_slide *s = th_slide_open(test_data_path(rel), &err);
        if (!s) {
            diag("%s does not open: %s", rel, th_error_message(err));
            th_error_free(err);
            continue;
        }
        th_tissue *t = th_tissue_detect(s, 0.499, 0, &err);
        ok(t || (err && th_error_message(err)[0]), "%s: %s%s", rel,
           t ? "detected" : "read error: ", t ? "" : th_error_message(err));
        if (strcmp(files[i], "unreadable.svs") == 0) {
            ok(!t, "%s: the read error is reported", rel);
        }
        th_tissue_free(t);
        th_error_free(err);
        th_slide_close(s);
    }
}

// The mask and threshold are the same whatever the thread count (one band of mask rows per
// thread; the bands' boundary rows are shared by two readers).
static void test_threads(void)
{
    static const char *const files[] = {
        "slides/CMU-1-Small-Region.svs",
        "slides/TCGA-CR-7395-01A-01-TS1.svs",
        "slides/test3-DAPI-2.ndpi",
        "images/CMU-1-Small-Region.half.lzw.tif",
    };
    static const int counts[] = {2, 3, 7};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        th_error *err = NULL;
        th_slide *s = th_slide_open(test_data_path(files[i]), &err);
        th_tissue *one = s ? th_tissue_detect(s, 0, 1, &err) : NULL;
        if (!one) {
            ok(0, "%s: detected on 1 thread: %s", files[i], th_error_message(err));
            th_error_free(err);
            th_slide_close(s);
            continue;
        }
        for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
            th_tissue *t = th_tissue_detect(s, 0, counts[k], NULL);
            ok(t && t->w == one->w && t->h == one->h && t->threshold == one->threshold &&
                   memcmp(t->mask, one->mask, (size_t)one->h * one->stride) == 0,
               "%s: %d threads give the 1-thread mask (%d×%d, %.1f%% tissue)", files[i],
               counts[k], one->w, one->h, 100 * one->fraction);
            th_tissue_free(t);
        }
        th_tissue_free(one);
        th_slide_close(s);
    }
}

int main(void)
{
    plan(0);
    test_threads();
    test_fraction();
    test_synthetic();
    test_real_slides();
    test_other_files();
    test_bad_files();
    return 0;
}
