/* SPDX-License-Identifier: MIT */
/* What the Keras loader (model-keras.c) reads files with: an HDF5 file opened from memory
 * (libhdf5: string attributes, float datasets, the error text HDF5 leaves behind), a member of a
 * zip archive (libzip) and the sidecar JSON. Only built with HDF5 support (HAVE_HDF5). */
#ifndef TH_KERAS_IO_H
#define TH_KERAS_IO_H

#include <hdf5.h>

#include "th-private.h"

#define TH_H5_MAXDIM 8

/* One HDF5 file, opened read-only from bytes that must outlive it (they are not copied). HDF5
 * is not thread-safe in every build: every call between th_h5_lock and th_h5_unlock. */
typedef struct th_h5 {
    hid_t file;
    const void *image; /* the file's bytes (borrowed) */
    size_t image_len;
} th_h5;

void th_h5_lock(void);
void th_h5_unlock(void);

/* Open `data` (len bytes) as an HDF5 file, read in place (h must stay put while it is open);
 * false with an error naming what HDF5 found wrong. */
bool th_h5_open(th_h5 *h, const void *data, size_t len, th_error **err);
void th_h5_close(th_h5 *h);

/* Whether the object (group or dataset) at `path` exists, every component of the path checked. */
bool th_h5_exists(const th_h5 *h, const char *path);

/* The string attribute `name` of the object at `obj` ("/" for the root): a scalar or a 1-D
 * array of fixed-length or variable-length strings, or (Keras's way with long lists) the
 * chunks name0, name1, ... concatenated. *found is false when there is no such attribute (no
 * error). Returns an array of *n owned strings (free with th_h5_free_strings), NULL with an
 * error, or NULL with *found false. */
char **th_h5_attr_strings(const th_h5 *h, const char *obj, const char *name, int *n, bool *found,
                          th_error **err);
void th_h5_free_strings(char **s, int n);

/* The float dataset at `path` (any floating-point type, converted), 64-byte aligned (caller
 * frees with th_free); its rank and dims into *rank and dims[TH_H5_MAXDIM]. NULL with an error
 * if it is missing, not floating point or more than TH_H5_MAXDIM-D. */
float *th_h5_read_floats(const th_h5 *h, const char *path, int *rank, int64_t *dims,
                         th_error **err);

/* The member `name` of the zip archive in `data` (len bytes) into a new buffer (caller frees
 * with th_free; NUL-terminated after *out_len bytes), at most `max` bytes. *found false (no
 * error) when the archive has no such member; false with an error when it is not a readable
 * zip or the member is damaged. */
bool th_zip_read(const void *data, size_t len, const char *name, size_t max, void **out,
                 size_t *out_len, bool *found, th_error **err);

/* The sidecar JSON next to a Keras model at `path` (at most `max` bytes): PATH.json, else PATH
 * with its extension replaced by .json ("model.h5" -> "model.json"), skipping Keras's own
 * architecture JSON (model.to_json(), often saved as model.json). Its members become *n
 * metadata entries (*keys, *values: owned, free each with th_h5_free_strings(.., *n)): text as
 * is, numbers, lists joined with commas. `file` gets the sidecar's name ("" if none). False with
 * an error naming the file. */
bool th_sidecar_read(const char *path, size_t max, char ***keys, char ***values, int *n, char *file,
                     size_t size, th_error **err);

#endif
