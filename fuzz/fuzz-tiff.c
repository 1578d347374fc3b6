/* SPDX-License-Identifier: MIT */
/* Fuzz target: th_slide_open on the bytes as a file (a memfd), then what a run reads: the level
 * geometry, small regions at level 0 and the last level, and tissue detection (fuzz-slide.c).
 * TIFF inputs go through OpenSlide (tiled TIFFs, with tileheat's direct libtiff reads) or
 * slide-tiff.c. */
#include <config.h>

#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "fuzz.h"
#include "tileheat.h"

int fuzz_tiff(const uint8_t *data, size_t size)
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

#ifdef TH_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_tiff(data, size);
}
#endif
