/* SPDX-License-Identifier: MIT */
/* Wrappers around the C library calls the rest of the code may not use directly: checked
 * allocation, whole-string number parsing, fopen with an error, and temp-then-rename output. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/sha2.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define TH_ALLOW_RAW
#include "th-private.h"

int th_threads(int wanted)
{
#ifdef _OPENMP
    return wanted > 0 ? wanted : omp_get_max_threads();
#else
    return 1;
#endif
}

int th_plan_threads_begin(int threads)
{
#ifdef _OPENMP
    int outer = omp_get_max_threads();
    omp_set_num_threads(threads > 0 ? threads : outer);
    return outer;
#else
    (void)threads;
    return 0;
#endif
}

void th_plan_threads_end(int outer)
{
#ifdef _OPENMP
    omp_set_num_threads(outer);
#else
    (void)outer;
#endif
}

int th_thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

bool th_size_mul(size_t n, size_t size, size_t *out, th_error **err)
{
    if (size && n > SIZE_MAX / size) {
        th_error_set(err, "size overflow (%zu × %zu)", n, size);
        return false;
    }
    *out = n * size;
    return true;
}

// From this size th_malloc takes huge pages (th_malloc_huge): a big buffer is filled soon after
// it is allocated (a model file, its weights), and in a VM each 4 KB page fault costs
// microseconds: loading VGG16's 59 MB went from 0.7 s to 0.2 s.
#define HUGE_MIN ((size_t)4 << 20)

void *th_malloc(size_t size, th_error **err)
{
    if (size >= HUGE_MIN) {
        return th_malloc_huge(size, err);
    }
    void *p = malloc(size ? size : 1); // th-allow
    if (!p) {
        th_error_set(err, "out of memory (%zu bytes)", size);
    }
    return p;
}

void *th_calloc(size_t n, size_t size, th_error **err)
{
    size_t total;
    if (!th_size_mul(n, size, &total, err)) {
        return NULL;
    }
    void *p = calloc(total ? total : 1, 1); // th-allow
    if (!p) {
        th_error_set(err, "out of memory (%zu bytes)", total);
    }
    return p;
}

void *th_malloc_aligned(size_t size, th_error **err)
{
    if (size >= HUGE_MIN) {
        return th_malloc_huge(size, err); // 2 MB aligned is 64-byte aligned
    }
    void *p = NULL;
    size = (size + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, size ? size : 64) != 0) {
        th_error_set(err, "out of memory (%zu bytes)", size);
        return NULL;
    }
    return p;
}

void *th_malloc_huge(size_t size, th_error **err)
{
    const size_t huge = (size_t)2 << 20;
    void *p = NULL;
    if (size > SIZE_MAX - huge) { // the round-up below would wrap to a small size
        th_error_set(err, "out of memory (%zu bytes)", size);
        return NULL;
    }
    size = (size + huge - 1) & ~(huge - 1);
    if (posix_memalign(&p, huge, size ? size : huge) != 0) {
        th_error_set(err, "out of memory (%zu bytes)", size);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE); // advice only: without it the buffer works the same
#endif
    return p;
}

void *th_realloc(void *p, size_t size, th_error **err)
{
    void *q = realloc(p, size ? size : 1); // th-allow
    if (!q) {
        th_error_set(err, "out of memory (%zu bytes)", size);
    }
    return q;
}

char *th_strdup(const char *s, th_error **err)
{
    size_t n = strlen(s) + 1;
    char *d = th_malloc(n, err);
    if (d) {
        memcpy(d, s, n);
    }
    return d;
}

void *th_memdup(const void *p, size_t n, th_error **err)
{
    void *d = th_malloc(n ? n : 1, err);
    if (d && n) {
        memcpy(d, p, n);
    }
    return d;
}

char *th_strdup_printf(th_error **err, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    char *s = n >= 0 ? th_malloc((size_t)n + 1, err) : NULL;
    if (s) {
        vsnprintf(s, (size_t)n + 1, fmt, ap);
    }
    va_end(ap);
    return s;
}

void th_free(void *p)
{
    free(p);
}

bool th_parse_int64(const char *s, int64_t *out)
{
    if (!s || !*s) {
        return false;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s) {
        return false;
    }
    *out = v;
    return true;
}

bool th_parse_int(const char *s, int *out)
{
    int64_t v;
    if (!th_parse_int64(s, &v) || v < INT32_MIN || v > INT32_MAX) {
        return false;
    }
    *out = (int)v;
    return true;
}

bool th_parse_double(const char *s, double *out)
{
    if (!s || !*s) {
        return false;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end); // th-allow
    while (*end == ' ' || *end == '\t') {
        end++;
    }
    if (errno || *end || end == s || !isfinite(v)) {
        return false;
    }
    *out = v;
    return true;
}

int th_parse_double_list(const char *s, double *out, int max)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char buf[64];
        while (len && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        if (len == 0 || len >= sizeof(buf) || n >= max) {
            return -1;
        }
        memcpy(buf, p, len);
        buf[len] = 0;
        if (!th_parse_double(buf, &out[n])) {
            return -1;
        }
        n++;
        if (!comma) {
            break;
        }
        p = comma + 1;
        if (!*p) {
            return -1;
        }
    }
    return n;
}

// Inputs are regular files or block devices: open() on a FIFO would block for ever, and a
// directory would read as a size of 2^63. A missing file passes (open() then says so).
static bool input_file(const char *path, th_error **err)
{
    struct stat st;
    if (stat(path, &st) != 0 || S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
        return true;
    }
    th_error_set(err, "%s, not a file",
                 S_ISDIR(st.st_mode)    ? "a directory"
                 : S_ISFIFO(st.st_mode) ? "a FIFO (named pipe)"
                 : S_ISSOCK(st.st_mode) ? "a socket"
                 : S_ISCHR(st.st_mode)  ? "a character device"
                                        : "not a regular file");
    return false;
}

FILE *th_fopen(const char *path, const char *mode, th_error **err)
{
    if (mode[0] == 'r' && !input_file(path, err)) {
        return NULL;
    }
    FILE *fp = fopen(path, mode); // th-allow
    if (!fp) {
        th_error_set(err, "%s", strerror(errno));
    }
    return fp;
}

void *th_read_file(const char *path, size_t *len, th_error **err)
{
    void *buf = NULL;
    FILE *fp = th_fopen(path, "rb", err);
    if (!fp) {
        return NULL;
    }
    if (fseek(fp, 0, SEEK_END) != 0) {
        th_error_set(err, "cannot seek: %s", strerror(errno));
        goto out;
    }
    long size = ftell(fp);
    if (size < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        th_error_set(err, "cannot determine size: %s", strerror(errno));
        goto out;
    }
    buf = th_malloc((size_t)size, err);
    if (!buf) {
        goto out;
    }
    if (fread(buf, 1, (size_t)size, fp) != (size_t)size) {
        th_error_set(err, "read error");
        TH_FREE(buf);
        goto out;
    }
    *len = (size_t)size;
out:
    fclose(fp);
    return buf;
}

static const char empty_file[1]; // the view of an empty regular file

bool th_map_file(const char *path, th_file_view *v, th_error **err)
{
    memset(v, 0, sizeof(*v));
    if (!input_file(path, err)) {
        return false;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        v->len = (size_t)st.st_size;
        void *p = v->len ? mmap(NULL, v->len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0)
                         : (void *)empty_file;
        if (p != MAP_FAILED) {
            v->data = p;
            v->mapped = v->len > 0;
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    if (!v->data) { // not a regular file, or mmap failed: read it (th_read_file reports errors)
        v->data = th_read_file(path, &v->len, err);
    }
    return v->data != NULL;
}

void th_unmap_file(th_file_view *v)
{
    if (v->mapped) {
        munmap((void *)v->data, v->len);
    } else if (v->data != empty_file) {
        th_free((void *)v->data);
    }
    memset(v, 0, sizeof(*v));
}

bool th_outfile_open(th_outfile *out, const char *path, th_error **err)
{
    memset(out, 0, sizeof(*out));
    out->path = th_strdup(path, err);
    out->tmp_path = th_strdup_printf(err, "%s.tmp-XXXXXX", path);
    if (!out->path || !out->tmp_path) {
        goto fail;
    }
    int fd = mkstemp(out->tmp_path);
    if (fd < 0) {
        th_error_set(err, "%s", strerror(errno));
        goto fail;
    }
    out->fp = fdopen(fd, "wb");
    if (!out->fp) {
        th_error_set(err, "%s", strerror(errno));
        close(fd);
        unlink(out->tmp_path);
        goto fail;
    }
    return true;
fail:
    TH_FREE(out->path);
    TH_FREE(out->tmp_path);
    return false;
}

void th_outfile_abort(th_outfile *out)
{
    if (out->fp) {
        fclose(out->fp);
        out->fp = NULL;
    }
    if (out->tmp_path) {
        unlink(out->tmp_path);
    }
    TH_FREE(out->path);
    TH_FREE(out->tmp_path);
}

bool th_outfile_commit(th_outfile *out, th_error **err)
{
    bool ok = !ferror(out->fp);
    // mkstemp creates 0600; outputs should be as readable as any file the user writes.
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fileno(out->fp), 0666 & ~mask);
    if (fclose(out->fp) != 0) {
        ok = false;
    }
    out->fp = NULL;
    if (!ok) {
        th_error_set(err, "write error: %s", strerror(errno));
    } else if (rename(out->tmp_path, out->path) != 0) {
        th_error_set(err, "cannot rename %s: %s", out->tmp_path, strerror(errno));
        ok = false;
    }
    if (ok) {
        TH_FREE(out->tmp_path);
    }
    th_outfile_abort(out);
    return ok;
}

void th_outfile_printf(th_outfile *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(out->fp, fmt, ap);
    va_end(ap);
}

const char *th_version(void)
{
    return PACKAGE_VERSION;
}

int64_t th_peak_rss(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        return 0;
    }
    return (int64_t)ru.ru_maxrss * 1024; // Linux reports kilobytes
}

bool th_sha256_file(const char *path, char hex[65], th_error **err)
{
    FILE *fp = th_fopen(path, "rb", err);
    if (!fp) {
        return false;
    }
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    uint8_t buf[65536], digest[SHA256_DIGEST_SIZE];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), fp)) > 0) {
        sha256_update(&ctx, n, buf);
    }
    bool ok = !ferror(fp);
    fclose(fp);
    if (!ok) {
        th_error_set(err, "%s: read error", path);
        return false;
    }
    sha256_digest(&ctx, sizeof(digest), digest);
    for (int i = 0; i < SHA256_DIGEST_SIZE; i++) {
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    }
    return true;
}
