/* SPDX-License-Identifier: MIT */
/* Slide backends: one vtable, dispatched by slide.c. Backends: slide-openslide.c (everything
 * OpenSlide opens), slide-tiff.c (plain stripped or tiled TIFF), slide-png.c (PNG). */
#ifndef TH_SLIDE_H
#define TH_SLIDE_H

#include "th-private.h"

typedef struct th_slide_ops {
    /* Read a w×h region of `level` at level-0 (x, y) into dest (w*h*3 RGB). Must be
     * thread-safe (backends lock or pool internally). Pixels outside the level are white. */
    bool (*read_region)(th_slide *slide, uint8_t *dest, int64_t x, int64_t y, int level, int64_t w,
                        int64_t h, th_error **err);
    void (*close)(th_slide *slide); /* frees slide->data only */
    /* Optional: give back the memory of level's decoded-block cache (th_slide_release_level). */
    void (*release)(th_slide *slide, int level);
} th_slide_ops;

#define TH_SLIDE_MAX_LEVELS 32

struct th_slide {
    const th_slide_ops *ops;
    void *data;                           /* backend state */
    char format[32];                      /* "aperio", "generic-tiff", "tiff", "png", ... */
    int level_count;                      /* 1..TH_SLIDE_MAX_LEVELS */
    int64_t level_w[TH_SLIDE_MAX_LEVELS]; /* level sizes in their own pixels */
    int64_t level_h[TH_SLIDE_MAX_LEVELS];
    double downsample[TH_SLIDE_MAX_LEVELS]; /* relative to level 0 */
    double mpp_x, mpp_y;                    /* µm per level-0 px; 0 if unknown */
    char mpp_source[16];                    /* "openslide", "tiff-tags", "png-tags" or "" */
    uint32_t direct_levels;                 /* bit i: level i is read with libtiff directly
                                               instead of through OpenSlide */
};

/* Backend openers. Each returns false with *err unset when the file is not its kind (so the
 * next backend is tried), false with *err set when it is its kind but broken, true on success
 * (having filled in the slide's fields). */
bool th_slide_openslide_open(th_slide *slide, const char *path, th_error **err);
bool th_slide_tiff_open(th_slide *slide, const char *path, th_error **err);
bool th_slide_png_open(th_slide *slide, const char *path, th_error **err);

/* One directory of a TIFF file read as RGB in its own pixel coordinates (slide-tiff.c): pixels
 * outside it are white. Thread-safe; readers decode in parallel on a pool of libtiff handles and
 * share a block cache. Open fails (with *err) on anything it cannot decode. */
typedef struct th_tiff_src th_tiff_src;
/* A slide whose level 0 decodes to at most this many bytes is small: its levels are cached whole
 * (cache_whole), so tissue detection, the tile loop and the heatmap decode each block once between
 * them. Larger slides keep a 16 MB cache that skips blocks a read covers whole. */
#define TH_SMALL_SLIDE_BYTES ((int64_t)32 << 20)
th_tiff_src *th_tiff_src_open(const char *path, int dir, bool cache_whole, th_error **err);
bool th_tiff_src_read(th_tiff_src *src, uint8_t *dest, int64_t x, int64_t y, int64_t w, int64_t h,
                      th_error **err);
void th_tiff_src_close(th_tiff_src *src);
/* Empty the block cache and give its pages back to the system; not while src is being read. */
void th_tiff_src_release(th_tiff_src *src);

/* A reader that is done with `level` (the viewer, level by level): its backend's cache of
 * decoded blocks is emptied and its memory given back; later reads decode again. Not while the
 * slide is being read. */
void th_slide_release_level(th_slide *slide, int level);

/* TIFFOpenExt with per-handle handlers, the one way tileheat opens TIFFs: nothing is printed,
 * warnings are dropped, and the first error message since msg was last emptied is kept in msg
 * (TH_TIFF_MSG bytes, one line), which must outlive the handle. NULL on failure (msg may say
 * why). Returns libtiff's TIFF* (declared here without <tiffio.h>). */
#define TH_TIFF_MSG 256
struct tiff *th_tiff_open(const char *path, const char *mode, char *msg);

/* For each level of an opened slide, the directory of the TIFF file at path that holds it as a
 * tiled 8-bit RGB (or YCbCr JPEG) image of the same size, libtiff being able to decode it; -1 for
 * levels with none (and for every level when path is not a TIFF). Returns the number matched. */
int th_tiff_match_levels(const char *path, const th_slide *slide, int dirs[]);

/* Set the slide's µm/px from resolution tags (pixels per unit_um micrometres: 1e4 for
 * centimetres, 25400 for inches, 1e6 for metres) when the result is a believable microscope
 * scale, TH_MPP_MIN..TH_MPP_MAX µm/px: 72-dpi defaults are common and meaningless. */
#define TH_MPP_MIN 0.05
#define TH_MPP_MAX 20.0
void th_slide_set_resolution_mpp(th_slide *slide, double rx, double ry, double unit_um,
                                 const char *source);

/* Whether th_slide_open reads the levels it can with libtiff instead of OpenSlide
 * (slide-openslide.c; default true). Tests set it false to compare both paths; it is read when a
 * slide opens, so set it before, from one thread. */
extern bool th_slide_direct_reads;

/* The coarsest level whose pixels are at most `limit` level-0 pixels across (level 0 if none
 * is): the one level choice of the tiler, the renderer and tissue detection, which then
 * area-average it down to their own scale when it does not match. */
int th_slide_coarsest_level(const th_slide *slide, double limit);

/* True for plain images (PNG, plain TIFF) as opposed to whole-slide formats. */
bool th_slide_is_plain_image(const th_slide *slide);

/* Fill a w×h RGB buffer with white. */
void th_slide_fill_white(uint8_t *dest, int64_t w, int64_t h);

#endif
