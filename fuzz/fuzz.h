/* SPDX-License-Identifier: MIT */
/* The fuzz harnesses: one function per target, called by libFuzzer's LLVMFuzzerTestOneInput in
 * the fuzzer builds (configure --enable-fuzz) and by tests/test-fuzz-regress.c on the committed
 * regression inputs (tests/data/fuzz/<target>/) in every build. Each returns 0, whatever the
 * input; a bug shows as a crash, a sanitizer report, a leak or a hang. */
#ifndef TH_FUZZ_H
#define TH_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int fuzz_onnx(const uint8_t *data, size_t size);
int fuzz_tiff(const uint8_t *data, size_t size);
int fuzz_png(const uint8_t *data, size_t size);
int fuzz_cohort(const uint8_t *data, size_t size);

/* fuzz-util.c: the bytes as a file. fuzz_file_mem: an anonymous memfd, its path
 * "/proc/self/fd/N" in path (64 bytes) and its descriptor returned (-1 on failure; close it).
 * fuzz_file_named: a file called `name` in a private temporary directory made on first use
 * (removed at exit); returns its path (static buffer) or NULL. */
int fuzz_file_mem(const uint8_t *data, size_t size, char path[64]);
const char *fuzz_file_named(const char *name, const uint8_t *data, size_t size);

/* fuzz-slide.c: read a few small regions and detect tissue, as a run would; fuzz_slide_bytes
 * opens the bytes as a file with th_slide_open first (fuzz-tiff and fuzz-png). */
struct th_slide;
void fuzz_exercise_slide(struct th_slide *slide);
int fuzz_slide_bytes(const uint8_t *data, size_t size);

#endif
