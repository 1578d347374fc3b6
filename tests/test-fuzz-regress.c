/* SPDX-License-Identifier: MIT */
/* The fuzz harnesses (fuzz/) run without libFuzzer on the committed inputs in
 * tests/data/fuzz/<target>/: minimised crashers that fuzzing found (since fixed) and small
 * generated corpus entries. Each input passes when its harness returns; a regression shows as a
 * crash (or, in sanitizer builds, a sanitizer report). With arguments, `TARGET FILE...` runs those
 * files through one harness (to reproduce a finding). */
#include <config.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/fuzz.h"
#include "tap.h"

// In ASan builds (--enable-asan), let an impossible allocation fail as glibc's malloc does instead
// of aborting: libtiff, inside OpenSlide, asks for one as large as a tag's declared count (32 GB for
// tiff/oom-*), gets NULL and fails cleanly. Unused in other builds.
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

typedef int harness_fn(const uint8_t *data, size_t size);

static const struct {
    const char *name;
    harness_fn *fn;
} targets[] = {
    {"onnx", fuzz_onnx},
    {"tiff", fuzz_tiff},
    {"png", fuzz_png},
    {"cohort", fuzz_cohort},
};
#define N_TARGETS (sizeof(targets) / sizeof(targets[0]))

// The whole file (caller frees), or NULL.
static uint8_t *slurp(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        return NULL;
    }
    uint8_t *buf = NULL;
    long len = -1;
    if (fseek(fp, 0, SEEK_END) == 0 && (len = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)len + 1);
        if (buf && fread(buf, 1, (size_t)len, fp) != (size_t)len) {
            free(buf);
            buf = NULL;
        }
    }
    fclose(fp);
    *size = (size_t)len;
    return buf;
}

static void run_file(harness_fn *fn, const char *target, const char *path, const char *label)
{
    size_t size = 0;
    uint8_t *data = slurp(path, &size);
    if (!data) {
        ok(false, "%s/%s: cannot read %s", target, label, path);
        return;
    }
    ok(fn(data, size) == 0, "%s/%s (%zu bytes)", target, label, size);
    free(data);
}

static int not_hidden(const struct dirent *d)
{
    return d->d_name[0] != '.' && strcmp(d->d_name, "README.md") != 0;
}

static void run_dir(size_t t)
{
    char dir[1024], path[2048];
    snprintf(dir, sizeof(dir), "%s", test_src_path("tests/data/fuzz"));
    snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "/%s", targets[t].name);
    struct dirent **list = NULL;
    int n = scandir(dir, &list, not_hidden, alphasort);
    ok(n > 0, "%s: %d regression inputs in %s", targets[t].name, n, dir);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
        run_file(targets[t].fn, targets[t].name, path, list[i]->d_name);
        free(list[i]);
    }
    free(list);
}

int main(int argc, char **argv)
{
    plan(0);
    if (argc > 2) {
        for (size_t t = 0; t < N_TARGETS; t++) {
            if (strcmp(argv[1], targets[t].name) == 0) {
                for (int i = 2; i < argc; i++) {
                    run_file(targets[t].fn, targets[t].name, argv[i], argv[i]);
                }
                return 0;
            }
        }
        bail("unknown target '%s' (onnx, tiff, png, cohort)", argv[1]);
    }
    for (size_t t = 0; t < N_TARGETS; t++) {
        run_dir(t);
    }
    return 0;
}
