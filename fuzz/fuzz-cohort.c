/* SPDX-License-Identifier: MIT */
/* Fuzz target: the cohort file parser (cohort_load in src/cli-cohort.c). The first byte picks
 * the file's extension (.csv, .tsv, .txt, none) and whether the batch is `single` (which admits
 * the class column); the rest is the file. */
#include <config.h>

#include <stdint.h>

#include "cli-cohort.h"
#include "fuzz.h"

int fuzz_cohort(const uint8_t *data, size_t size)
{
    static const char *const names[4] = {"cohort.csv", "cohort.tsv", "cohort.txt", "cohort"};
    if (size < 1) {
        return 0;
    }
    const char *path = fuzz_file_named(names[data[0] & 3], data + 1, size - 1);
    if (!path) {
        return 0;
    }
    cohort c;
    cli_err e;
    if (cohort_load(&c, path, (data[0] & 4) != 0, NULL, NULL, &e)) {
        cohort_free(&c);
    }
    return 0;
}

#ifdef TH_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_cohort(data, size);
}
#endif
