/* SPDX-License-Identifier: MIT */
/* Fuzz target: th_slide_open on the bytes as a file (a memfd), then what a run reads: the level
 * geometry, small regions at level 0 and the last level, and tissue detection (fuzz-slide.c).
 * TIFF inputs go through OpenSlide (tiled TIFFs, with tileheat's direct libtiff reads) or
 * slide-tiff.c. */
#include <config.h>

#include <stdbool.h>
#include <stdint.h>

#include "fuzz.h"
#include "tileheat.h"

int fuzz_tiff(const uint8_t *data, size_t size)
{
    return fuzz_slide_bytes(data, size);
}

#ifdef TH_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_tiff(data, size);
}
#endif
