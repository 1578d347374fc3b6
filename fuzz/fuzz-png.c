/* SPDX-License-Identifier: MIT */
/* Fuzz target: a PNG opened with th_slide_open (slide-png.c) and read as fuzz-tiff.c reads.
 * libpng rejects a chunk whose CRC is wrong, so random mutations would rarely get past the
 * header: the custom mutator keeps the signature and recomputes every chunk's CRC after
 * libFuzzer's own mutation. */
#include <config.h>

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#include "fuzz.h"
#include "tileheat.h"

int fuzz_png(const uint8_t *data, size_t size)
{
    return fuzz_slide_bytes(data, size);
}

#ifdef TH_LIBFUZZER
static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

// Chunks are length (4), type (4), data (length), CRC over type and data (4).
static void fix_crcs(uint8_t *data, size_t size)
{
    size_t pos = sizeof(signature);
    while (pos + 12 <= size) {
        uint32_t len = get_be32(data + pos);
        if (len > size - pos - 12) {
            break;
        }
        uint32_t crc = (uint32_t)crc32(0, data + pos + 4, 4 + len);
        put_be32(data + pos + 8 + len, crc);
        pos += 12 + (size_t)len;
    }
}

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    size = LLVMFuzzerMutate(data, size, max_size);
    if (size >= sizeof(signature)) {
        memcpy(data, signature, sizeof(signature));
        fix_crcs(data, size);
    }
    return size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_png(data, size);
}
#endif
