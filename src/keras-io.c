/* SPDX-License-Identifier: MIT */
/* The files of the Keras loader: an HDF5 file image opened in place (no copy), string
 * attributes (fixed or variable length, Keras's chunked lists), float datasets converted to
 * float32, HDF5's own error text; one member of a zip archive read whole; the sidecar JSON next
 * to a model. HDF5 prints its error stack by default; that is switched off, since the library
 * never prints. */
#include <config.h>

#include <pthread.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <hdf5.h>
#include <zip.h>

#include "keras-io.h"

// HDF5 builds are not all thread-safe: one load at a time.
static pthread_mutex_t h5_mutex = PTHREAD_MUTEX_INITIALIZER;

void th_h5_lock(void)
{
    pthread_mutex_lock(&h5_mutex);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); // per thread in thread-safe builds, so every time
}

void th_h5_unlock(void)
{
    pthread_mutex_unlock(&h5_mutex);
}

typedef struct h5_msg {
    char text[256];
} h5_msg;

// The most specific description on the error stack (walked from the API call down).
static herr_t walk_error(unsigned n, const H5E_error2_t *e, void *data)
{
    h5_msg *m = data;
    if (e->desc && e->desc[0]) {
        snprintf(m->text, sizeof(m->text), "%s", e->desc);
    }
    return 0;
}

static const char *h5_message(h5_msg *m)
{
    m->text[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_error, m);
    H5Eclear2(H5E_DEFAULT);
    return m->text[0] ? m->text : "unknown HDF5 error";
}

// Little-endian unsigned of n bytes (superblock addresses are 2, 4 or 8 bytes).
static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

// The file size the superblock asks for (base address + end-of-file address), or 0 if the
// superblock cannot be read: a truncated file is told apart from a damaged one.
static uint64_t superblock_size(const uint8_t *p, size_t len)
{
    static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    size_t at = 0;
    while (len >= 8 && at <= len - 8 && memcmp(p + at, sig, 8) != 0) {
        at = at ? 2 * at : 512;
    }
    if (len < 64 || at > len - 64) {
        return 0;
    }
    const uint8_t *s = p + at;
    int version = s[8], off;
    size_t base; // offset of the base address field
    if (version <= 1) {
        off = s[13];
        base = 24 + (version == 1 ? 4 : 0);
        if (off != 2 && off != 4 && off != 8) {
            return 0;
        }
        return le(s + base, off) + le(s + base + 2 * (size_t)off, off);
    }
    off = s[9];
    if (off != 2 && off != 4 && off != 8) {
        return 0;
    }
    return le(s + 12, off) + le(s + 12 + 2 * (size_t)off, off);
}

// HDF5's file image callbacks, made to read the caller's bytes where they are: every buffer
// HDF5 asks for (when the property is set, copied or read, and when the file opens) is the
// image itself, copying it onto itself is nothing, and freeing it is nothing. Read-only, so
// nothing is ever written into it or grown. (H5LTopen_file_image does the same but leaks its
// user data in libhdf5 1.10.)
static void *image_malloc(size_t size, H5FD_file_image_op_t op, void *udata)
{
    const th_h5 *h = udata;
    (void)op;
    return size == h->image_len ? (void *)h->image : NULL;
}

static void *image_memcpy(void *dest, const void *src, size_t size, H5FD_file_image_op_t op,
                          void *udata)
{
    (void)size, (void)op, (void)udata;
    return dest == src ? dest : NULL;
}

static void *image_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)ptr, (void)size, (void)op, (void)udata;
    return NULL;
}

static herr_t image_free(void *ptr, H5FD_file_image_op_t op, void *udata)
{
    (void)ptr, (void)op, (void)udata;
    return 0;
}

static void *udata_copy(void *udata)
{
    return udata;
}

static herr_t udata_free(void *udata)
{
    (void)udata;
    return 0;
}

bool th_h5_open(th_h5 *h, const void *data, size_t len, th_error **err)
{
    h5_msg msg;
    H5FD_file_image_callbacks_t cb = {
        image_malloc, image_memcpy, image_realloc, image_free, udata_copy, udata_free, h};
    H5Eclear2(H5E_DEFAULT);
    h->image = data;
    h->image_len = len;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    h->file = -1;
    if (fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 16, false) >= 0 &&
        H5Pset_file_image_callbacks(fapl, &cb) >= 0 &&
        H5Pset_file_image(fapl, (void *)data, len) >= 0) {
        h->file = H5Fopen("model", H5F_ACC_RDONLY, fapl);
    }
    h5_message(&msg);
    if (fapl >= 0) {
        H5Pclose(fapl);
    }
    if (h->file < 0) {
        uint64_t want = superblock_size(data, len);
        if (want > len) {
            th_error_set(err, "truncated HDF5 file: %zu bytes of the %llu its superblock gives",
                         len, (unsigned long long)want);
        } else {
            th_error_set(err, "not a readable HDF5 file (%s)",
                         msg.text[0] ? msg.text : "damaged superblock or root group");
        }
        return false;
    }
    return true;
}

void th_h5_close(th_h5 *h)
{
    if (h->file >= 0) {
        H5Fclose(h->file);
    }
    h->file = -1;
    H5Eclear2(H5E_DEFAULT);
}

bool th_h5_exists(const th_h5 *h, const char *path)
{
    char buf[1024];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, path, len + 1);
    // H5Lexists wants every component before the last to exist: check them one by one.
    for (char *p = buf + 1;; p++) {
        if ((*p == '/' || *p == 0) && p[-1] != '/') {
            char c = *p;
            *p = 0;
            htri_t e = H5Lexists(h->file, buf, H5P_DEFAULT);
            *p = c;
            if (e <= 0) {
                H5Eclear2(H5E_DEFAULT);
                return false;
            }
        }
        if (!*p) {
            return true;
        }
    }
}

void th_h5_free_strings(char **s, int n)
{
    for (int i = 0; s && i < n; i++) {
        th_free(s[i]);
    }
    th_free(s);
}

// Append the strings of one open attribute to *list (*n entries so far).
static bool read_strings(hid_t a, const char *name, char ***list, int *n, th_error **err)
{
    h5_msg msg;
    hid_t type = H5Aget_type(a), space = H5Aget_space(a), mem = -1;
    hssize_t count = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    bool ok = false, vlen = type >= 0 && H5Tis_variable_str(type) > 0;
    size_t size = type >= 0 ? H5Tget_size(type) : 0;
    char *buf = NULL, **v = NULL;
    if (count == 0) { // Keras writes an empty list as a float64 array of shape (0,)
        ok = true;
        goto out;
    }
    if (type < 0 || H5Tget_class(type) != H5T_STRING || count < 0 || count > 1000000 ||
        (!vlen && (size == 0 || size > ((size_t)1 << 26)))) {
        th_error_set(err, "attribute '%s' is not text", name);
        goto out;
    }
    char **grown = th_realloc(*list, sizeof(char *) * (size_t)(*n + count + 1), err);
    if (!grown) {
        goto out;
    }
    *list = grown;
    mem = H5Tcopy(H5T_C_S1);
    H5Tset_size(mem, vlen ? H5T_VARIABLE : size);
    H5Tset_cset(mem, H5Tget_cset(type));
    if (!vlen) {
        H5Tset_strpad(mem, H5T_STR_NULLPAD);
    }
    buf = vlen ? NULL : th_malloc(size * (size_t)count + 1, err);
    v = vlen ? th_calloc((size_t)count + 1, sizeof(char *), err) : NULL;
    if ((vlen && !v) || (!vlen && !buf)) {
        goto out;
    }
    if (H5Aread(a, mem, vlen ? (void *)v : (void *)buf) < 0) {
        th_error_set(err, "attribute '%s' cannot be read (%s)", name, h5_message(&msg));
        goto out;
    }
    ok = true;
    for (hssize_t i = 0; i < count; i++) {
        const char *s = vlen ? (v[i] ? v[i] : "") : buf + (size_t)i * size;
        size_t l = vlen ? strlen(s) : strnlen(s, size);
        char *copy = ok ? th_strdup_printf(err, "%.*s", (int)l, s) : NULL;
        ok = ok && copy;
        if (copy) {
            (*list)[(*n)++] = copy;
        }
    }
    if (vlen) {
#if H5_VERSION_GE(1, 12, 0)
        H5Treclaim(mem, space, H5P_DEFAULT, v);
#else
        H5Dvlen_reclaim(mem, space, H5P_DEFAULT, v);
#endif
    }
out:
    th_free(v);
    th_free(buf);
    if (mem >= 0) {
        H5Tclose(mem);
    }
    if (space >= 0) {
        H5Sclose(space);
    }
    if (type >= 0) {
        H5Tclose(type);
    }
    H5Eclear2(H5E_DEFAULT);
    return ok;
}

static bool has_attr(const th_h5 *h, const char *obj, const char *name)
{
    htri_t e = H5Aexists_by_name(h->file, obj, name, H5P_DEFAULT);
    H5Eclear2(H5E_DEFAULT);
    return e > 0;
}

static bool read_attr(const th_h5 *h, const char *obj, const char *name, char ***list, int *n,
                      th_error **err)
{
    h5_msg msg;
    hid_t a = H5Aopen_by_name(h->file, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) {
        th_error_set(err, "attribute '%s' cannot be opened (%s)", name, h5_message(&msg));
        return false;
    }
    bool ok = read_strings(a, name, list, n, err);
    H5Aclose(a);
    return ok;
}

char **th_h5_attr_strings(const th_h5 *h, const char *obj, const char *name, int *n, bool *found,
                          th_error **err)
{
    char **list = NULL, chunk[128];
    *n = 0;
    *found = true;
    if (!th_h5_exists(h, obj) && strcmp(obj, "/") != 0) {
        *found = false;
        return NULL;
    }
    bool ok = true;
    if (has_attr(h, obj, name)) {
        ok = read_attr(h, obj, name, &list, n, err);
    } else {
        // Keras splits lists longer than an object header holds into name0, name1, ...
        int k = 0;
        for (; ok; k++) {
            snprintf(chunk, sizeof(chunk), "%s%d", name, k);
            if (!has_attr(h, obj, chunk)) {
                break;
            }
            ok = read_attr(h, obj, chunk, &list, n, err);
        }
        *found = k > 0;
    }
    if (!ok || !*found) {
        th_h5_free_strings(list, *n);
        *n = 0;
        return NULL;
    }
    if (!list) { // an empty list
        list = th_calloc(1, sizeof(char *), err);
    }
    return list;
}

float *th_h5_read_floats(const th_h5 *h, const char *path, int *rank, int64_t *dims, th_error **err)
{
    h5_msg msg;
    float *v = NULL;
    hid_t d = H5Dopen2(h->file, path, H5P_DEFAULT);
    hid_t type = d >= 0 ? H5Dget_type(d) : -1, space = d >= 0 ? H5Dget_space(d) : -1;
    int r = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    hsize_t hd[TH_H5_MAXDIM];
    size_t count = 1;
    if (d < 0) {
        th_error_set(err, "weight '%s' cannot be opened (%s)", path, h5_message(&msg));
        goto out;
    }
    if (type < 0 || H5Tget_class(type) != H5T_FLOAT) {
        th_error_set(err, "weight '%s' is not floating point", path);
        goto out;
    }
    if (r < 0 || r > TH_H5_MAXDIM || H5Sget_simple_extent_dims(space, hd, NULL) != r) {
        th_error_set(err, "weight '%s' has an unreadable shape", path);
        goto out;
    }
    for (int i = 0; i < r; i++) {
        dims[i] = (int64_t)hd[i];
        if (hd[i] > ((hsize_t)1 << 31) || !th_size_mul(count, (size_t)hd[i], &count, err) ||
            count > ((size_t)1 << 31)) {
            th_error_set(err, "weight '%s' is too large", path);
            goto out;
        }
    }
    *rank = r;
    v = th_malloc_aligned(count * sizeof(float), err);
    if (v && count && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
        th_error_set(err, "weight '%s': its values cannot be read (%s)", path, h5_message(&msg));
        TH_FREE(v);
    }
out:
    if (space >= 0) {
        H5Sclose(space);
    }
    if (type >= 0) {
        H5Tclose(type);
    }
    if (d >= 0) {
        H5Dclose(d);
    }
    H5Eclear2(H5E_DEFAULT);
    return v;
}

/* ------------------------------------------------------------------ zip */

static bool zip_member(zip_t *za, zip_int64_t idx, const char *name, size_t max, void **out,
                       size_t *out_len, th_error **err)
{
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(za, (zip_uint64_t)idx, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE)) {
        th_error_set(err, "'%s' in the archive: %s", name, zip_strerror(za));
        return false;
    }
    if (st.size > max) {
        th_error_set(err, "'%s' in the archive is %llu bytes, more than tileheat reads (%zu)", name,
                     (unsigned long long)st.size, max);
        return false;
    }
    char *buf = th_malloc_aligned((size_t)st.size + 1, err);
    zip_file_t *zf = buf ? zip_fopen_index(za, (zip_uint64_t)idx, 0) : NULL;
    if (buf && !zf) {
        th_error_set(err, "'%s' in the archive: %s", name, zip_strerror(za));
    }
    char extra;
    // Reading past the end makes libzip check the CRC.
    bool ok =
        zf && zip_fread(zf, buf, st.size) == (zip_int64_t)st.size && zip_fread(zf, &extra, 1) == 0;
    if (zf && !ok) {
        th_error_set(err, "'%s' in the archive is damaged (%s)", name,
                     zip_error_strerror(zip_file_get_error(zf)));
    }
    if (zf) {
        zip_fclose(zf);
    }
    if (!ok) {
        th_free(buf);
        return false;
    }
    buf[st.size] = 0;
    *out = buf;
    *out_len = (size_t)st.size;
    return true;
}

bool th_zip_read(const void *data, size_t len, const char *name, size_t max, void **out,
                 size_t *out_len, bool *found, th_error **err)
{
    zip_error_t ze;
    zip_error_init(&ze);
    *found = false;
    zip_source_t *src = zip_source_buffer_create(data, len, 0, &ze);
    zip_t *za = src ? zip_open_from_source(src, ZIP_RDONLY, &ze) : NULL;
    if (!za) {
        th_error_set(err, "not a readable zip archive (%s)", zip_error_strerror(&ze));
        zip_source_free(src);
        zip_error_fini(&ze);
        return false;
    }
    zip_error_fini(&ze);
    zip_int64_t idx = zip_name_locate(za, name, 0);
    bool ok = true;
    if (idx >= 0) {
        *found = true;
        ok = zip_member(za, idx, name, max, out, out_len, err);
    }
    zip_discard(za); // read-only: nothing to write back
    return ok;
}

/* ------------------------------------------------------------------ sidecar */

// A JSON value as metadata text: a string as is, a number, or a list joined with commas.
static char *meta_text(const cJSON *v, th_error **err)
{
    if (cJSON_IsString(v)) {
        return th_strdup(v->valuestring, err);
    }
    if (cJSON_IsNumber(v)) {
        return th_strdup_printf(err, "%.17g", v->valuedouble);
    }
    if (cJSON_IsBool(v)) {
        return th_strdup(cJSON_IsTrue(v) ? "true" : "false", err);
    }
    if (!cJSON_IsArray(v)) {
        return NULL;
    }
    char *text = th_strdup("", err);
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        char *item = text && (cJSON_IsString(e) || cJSON_IsNumber(e)) ? meta_text(e, err) : NULL;
        char *joined =
            item ? th_strdup_printf(err, "%s%s%s", text, text[0] ? "," : "", item) : NULL;
        th_free(item);
        th_free(text);
        text = joined;
        if (!text) {
            return NULL;
        }
    }
    return text;
}

// Every non-null member of the object as metadata text; a message names the file and the key.
static bool sidecar_entries(const char *file, const cJSON *root, char **keys, char **values, int *n,
                            th_error **err)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, root)
    {
        if (cJSON_IsNull(item)) {
            continue;
        }
        th_error *e = NULL;
        char *value = meta_text(item, &e);
        char *key = value ? th_strdup(item->string, err) : NULL;
        if (!value) {
            th_error_set(err, "%s: %s: %s", file, item->string,
                         e ? th_error_message(e) : "expected text, a number or a list of them");
        }
        th_error_free(e);
        if (!key) {
            th_free(value);
            return false;
        }
        keys[*n] = key;
        values[(*n)++] = value;
    }
    return true;
}

// One candidate: *done when it was read (or failed), not when it is missing or Keras's own.
static bool sidecar_file(const char *path, size_t max, char ***keys, char ***values, int *n,
                         bool *done, th_error **err)
{
    struct stat st;
    *done = false;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        return true;
    }
    size_t len = 0;
    char *text = (size_t)st.st_size <= max ? th_read_file(path, &len, err) : NULL;
    cJSON *root = text ? cJSON_ParseWithLength(text, len) : NULL;
    th_free(text);
    const char *file = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    bool ok = root && cJSON_IsObject(root);
    if (!ok) {
        th_error_set(err, "sidecar %s: %s", path,
                     (size_t)st.st_size > max ? "too large for a sidecar"
                     : root                   ? "expected a JSON object of metadata keys"
                                              : "not valid JSON");
    } else if (cJSON_GetObjectItemCaseSensitive(root, "class_name") &&
               cJSON_GetObjectItemCaseSensitive(root, "config")) {
        cJSON_Delete(root); // Keras's own architecture JSON (model.to_json()): not ours
        return true;
    } else {
        int count = cJSON_GetArraySize(root);
        *keys = th_calloc((size_t)count + 1, sizeof(char *), err);
        *values = th_calloc((size_t)count + 1, sizeof(char *), err);
        ok = *keys && *values && sidecar_entries(file, root, *keys, *values, n, err);
    }
    cJSON_Delete(root);
    *done = true;
    return ok;
}

bool th_sidecar_read(const char *path, size_t max, char ***keys, char ***values, int *n, char *file,
                     size_t size, th_error **err)
{
    char cand[2][4200];
    const char *base = strrchr(path, '/'), *dot;
    base = base ? base + 1 : path;
    dot = strrchr(base, '.');
    int n_cand = 1;
    *keys = *values = NULL;
    *n = 0;
    file[0] = 0;
    snprintf(cand[0], sizeof(cand[0]), "%s.json", path);
    if (dot && dot != base) {
        snprintf(cand[1], sizeof(cand[1]), "%.*s.json", (int)(dot - path), path);
        n_cand = 2;
    }
    for (int i = 0; i < n_cand; i++) {
        bool done;
        if (!sidecar_file(cand[i], max, keys, values, n, &done, err)) {
            return false;
        }
        if (done) {
            const char *name = strrchr(cand[i], '/') ? strrchr(cand[i], '/') + 1 : cand[i];
            snprintf(file, size, "%s", name);
            return true;
        }
    }
    return true;
}
