/* SPDX-License-Identifier: MIT */
/* Slide backends: one vtable, dispatched by slide.c. Backends: slide-openslide.c (everything
 * OpenSlide opens), slide-tiff.c (plain stripped or tiled TIFF), slide-png.c (PNG). */
#ifndef TH_SLIDE_H
#define TH_SLIDE_H

#include "th-private.h"

typedef struct th_slide_ops {
    /* Read a w×h region of `level` at level-0 (x, y) into dest (w*h*3 RGB). Must be
     * thread-safe (backends lock or pool internally). Pixels outside the level are white. */
    bool (*read_region)(th_slide *slide, uint8_t *dest, int64_t x, int64_t y, int level,
                        int64_t w, int64_t h, th_error **err);
    void (*close)(th_slide *slide); /* frees slide->data only */
} th_slide_ops;

#define TH_SLIDE_MAX_LEVELS 32

struct th_slide {
    const th_slide_ops *ops;
    void *data;                               /* backend state */
    char format[32];                          /* "aperio", "generic-tiff", "tiff", "png", ... */
    int level_count;                          /* 1..TH_SLIDE_MAX_LEVELS */
    int64_t level_w[TH_SLIDE_MAX_LEVELS];     /* level sizes in their own pixels */
    int64_t level_h[TH_SLIDE_MAX_LEVELS];
    double downsample[TH_SLIDE_MAX_LEVELS];   /* relative to level 0 */
    double mpp_x, mpp_y;                      /* µm per level-0 px; 0 if unknown */
};

/* Backend openers. Each returns false with *err unset when the file is not its kind (so the
 * next backend is tried), false with *err set when it is its kind but broken, true on success
 * (having filled in the slide's fields). */
bool th_slide_openslide_open(th_slide *slide, const char *path, th_error **err);
bool th_slide_tiff_open(th_slide *slide, const char *path, th_error **err);
bool th_slide_png_open(th_slide *slide, const char *path, th_error **err);

/* Fill a w×h RGB buffer with white. */
void th_slide_fill_white(uint8_t *dest, int64_t w, int64_t h);

#endif
