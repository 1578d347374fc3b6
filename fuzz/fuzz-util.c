/* SPDX-License-Identifier: MIT */
/* Helpers for the fuzz harnesses: the input bytes as a file, in memory or under a name. */
#include <config.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"

static bool write_all(int fd, const uint8_t *data, size_t size)
{
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n <= 0) {
            return false;
        }
        data += n;
        size -= (size_t)n;
    }
    return true;
}

int fuzz_file_mem(const uint8_t *data, size_t size, char path[64])
{
    int fd = memfd_create("th-fuzz", MFD_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    if (!write_all(fd, data, size)) {
        close(fd);
        return -1;
    }
    snprintf(path, 64, "/proc/self/fd/%d", fd);
    return fd;
}

static char dir[64];
static char file[128];

static void remove_dir(void)
{
    if (file[0]) {
        unlink(file);
    }
    rmdir(dir);
}

const char *fuzz_file_named(const char *name, const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(dir, sizeof(dir), "%s/th-fuzz-XXXXXX", base ? base : "/tmp");
        if (!mkdtemp(dir)) {
            dir[0] = '\0';
            return NULL;
        }
        atexit(remove_dir);
    }
    if (file[0]) {
        unlink(file);
    }
    snprintf(file, sizeof(file), "%s/%s", dir, name);
    FILE *fp = fopen(file, "wb");
    if (!fp) {
        file[0] = '\0';
        return NULL;
    }
    bool ok = fwrite(data, 1, size, fp) == size;
    ok = fclose(fp) == 0 && ok;
    return ok ? file : NULL;
}
