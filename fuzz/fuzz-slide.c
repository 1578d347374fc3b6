/* SPDX-License-Identifier: MIT */
/* What the slide harnesses (fuzz-tiff.c, fuzz-png.c) do with an opened slide: what a run reads. */
#include <config.h>

#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "fuzz.h"
#include "tissue.h"

// Tissue detection decodes the whole coarsest level: skip it on levels larger than this, whose
// decoding is slow by design (a 1 KB file can declare a gigapixel image of compressible data).
#define TISSUE_MAX_PX ((int64_t)4 << 20)

static void read_one(th_slide *slide, uint8_t *buf, int64_t x, int64_t y, int level, int64_t w,
                     int64_t h)
{
    th_error *err = NULL;
    th_slide_read_region(slide, buf, x, y, level, w, h, &err);
    th_error_free(err);
}

void fuzz_exercise_slide(th_slide *slide)
{
    static uint8_t buf[64 * 64 * 3];
    int levels = th_slide_get_level_count(slide);
    int64_t w = 0, h = 0;
    double mx, my;

    th_slide_get_format(slide);
    th_slide_get_mpp(slide, &mx, &my);
    for (int i = 0; i < levels; i++) {
        th_slide_get_level_dimensions(slide, i, &w, &h);
        th_slide_get_level_downsample(slide, i);
    }
    // level 0: the top-left corner, a region straddling the right/bottom edge, one past it
    th_slide_get_level_dimensions(slide, 0, &w, &h);
    read_one(slide, buf, 0, 0, 0, 64, 64);
    read_one(slide, buf, w - 32, h - 32, 0, 64, 64);
    read_one(slide, buf, 0, 0, 0, 1, 1);
    read_one(slide, buf, -10, -10, 0, 20, 20);
    if (levels > 1) {
        double ds = th_slide_get_level_downsample(slide, levels - 1);
        read_one(slide, buf, 0, 0, levels - 1, 64, 64);
        read_one(slide, buf, (int64_t)((double)w - 32 * ds), (int64_t)((double)h - 32 * ds),
                 levels - 1, 64, 64);
    }
    th_slide_get_level_dimensions(slide, levels - 1, &w, &h);
    if (w > 0 && h > 0 && w <= TISSUE_MAX_PX / h) {
        th_error *err = NULL;
        th_tissue_free(th_tissue_detect(slide, 0, 1, &err));
        th_error_free(err);
    }
}

int fuzz_slide_bytes(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_file_mem(data, size, path);
    if (fd < 0) {
        return 0;
    }
    th_error *err = NULL;
    th_slide *slide = th_slide_open(path, &err);
    if (slide) {
        fuzz_exercise_slide(slide);
        th_slide_close(slide);
    }
    th_error_free(err);
    close(fd);
    return 0;
}
