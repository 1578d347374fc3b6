/* SPDX-License-Identifier: MIT */
/* Helpers shared by several test programs (and bench/): a splitmix64 PRNG, the reader of the
 * .ref files that tools/gen-test-models.py writes, a .npy reader, a conv th_layer built from a
 * spec, and the heatmap tests' (test-render, test-legend, test-colors) shared helpers. */
#ifndef TH_TESTUTIL_H
#define TH_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tileheat.h"

/* ---------------------------------------------------------------- PRNG */

// splitmix64; each program seeds its own state so its weights stay what they were.
typedef struct tu_rng {
    uint64_t state;
} tu_rng;

// Uniform float in [lo, hi): the same values on every machine.
float tu_rng_float(tu_rng *rng, float lo, float hi);
// Fill p[0..n) with tu_rng_float(rng, lo, hi).
void tu_rng_fill(tu_rng *rng, float *p, size_t n, float lo, float hi);
// A new array of n (at least 1) zeroed elements of `size` bytes; bail()s when out of memory.
void *tu_xcalloc(size_t n, size_t size);
// tu_xcalloc'ed n floats filled by tu_rng_fill (caller frees with th_free).
float *tu_rng_floats(tu_rng *rng, size_t n, float lo, float hi);

/* ---------------------------------------------------------------- .ref files */

#define TU_REF_MAX 64

// A .ref file (format in tools/gen-test-models.py): its text header goes line by line to the
// caller; "block <name> <count>" lines are kept here with the offsets of their float32 data.
typedef struct tu_ref {
    char *buf; // whole file, owned (caller frees with th_free)
    size_t len;
    int n_blocks;
    char block_name[TU_REF_MAX][32];
    size_t block_count[TU_REF_MAX], block_off[TU_REF_MAX]; // offsets in buf
} tu_ref;

// Called with each header line (NUL-terminated) that is not a block line.
typedef void tu_ref_line_fn(void *ctx, const char *line);

// Read the .ref file at `rel` in the source tree ("tests/data/models/vgg-bn.ref"); false unless
// the header ends in "data" and the blocks fill the rest of the file exactly. r->buf may be set
// even on failure.
bool tu_ref_load(tu_ref *r, const char *rel, tu_ref_line_fn *line, void *ctx);
// Block `name` decoded from little-endian float32 (caller frees), its length in *count; or NULL.
float *tu_ref_block(const tu_ref *r, const char *name, size_t *count);
// max|got - want| relative to max|want| (the absolute difference when want is all zero).
double tu_max_rel_diff(const float *got, const float *want, size_t n);

/* ---------------------------------------------------------------- model references */

// A model's .ref file as tools/gen-test-models.py and tools/gen-keras-models.py write it: what
// the loader must find (layers, sizes, metadata, folded weights) and, for a few tiles of a
// slide, what the engine must compute.
typedef struct tu_model_ref {
    tu_ref file; // buffer and float32 blocks
    char slide[256];
    char model[128], onnx[128], preprocess[16]; // Keras refs: the files and the preprocessing
    int n_alt;
    char alt_model[4][128];
    int in_w, in_h, graph_w, graph_h, nhwc, n_classes, feat_c, feat_h, feat_w, softmax;
    char class_names[512], background[256], input_mean[64], input_std[64];
    double input_scale, mpp;
    int n_meta;
    char meta[TU_REF_MAX][256]; // "key=value"
    int n_layers;
    char layer_kind[TU_REF_MAX][16];
    int layer[TU_REF_MAX][14]; // c_in c_out kh kw sh sw dh dw pad_t pad_l pad_b pad_r relu ceil
    int n_tiles;
    int64_t tile_x[TU_REF_MAX], tile_y[TU_REF_MAX];
} tu_model_ref;

// Read the .ref at `rel` in the source tree (free r->file.buf with th_free, also on failure).
bool tu_model_ref_load(tu_model_ref *r, const char *rel);

struct th_model;
// TAP checks of a loaded model against its reference: input size and layout, classes, feature
// map, every layer, 64-byte aligned weights; class names, background classes, input
// normalisation, mpp and every metadata entry; dense weights and BatchNorm-folded conv weights.
void tu_check_model_structure(const struct th_model *m, const tu_model_ref *r, const char *name);
void tu_check_model_metadata(const struct th_model *m, const tu_model_ref *r, const char *name);
void tu_check_model_weights(const struct th_model *m, const tu_model_ref *r, const char *name);

// Run every reference tile of `slide` through an engine of `kind` and compare logits, softmax
// and CAMs with the reference (relative to the largest reference value: 1e-4, 1e-3 for
// Winograd, whose transforms add rounding error). TAP checks named `what`.
void tu_check_ref_tiles(th_slide *slide, const struct th_model *m, const tu_model_ref *r,
                        th_engine_kind kind, const char *what);
// tu_check_ref_tiles with the reference engine, then, when this build has the fast backend,
// with it and with Winograd ("<name>/ref", "<name>/fast", "<name>/winograd").
void tu_check_ref_engines(th_slide *slide, const struct th_model *m, const tu_model_ref *r,
                          const char *name);

/* ---------------------------------------------------------------- .npy files */

#define TU_NPY_MAXDIM 8

// A numpy .npy file (format 1.0 or 2.0) holding a C-order array of little-endian float32 ('<f4')
// or bool ('|b1').
typedef struct tu_npy {
    int version;                  // format major version: 1 or 2
    size_t data_offset;           // bytes before the data: preamble, dict, padding, newline
    char descr[8];                // "<f4" or "|b1"
    int ndim;                     // 0 for a scalar
    int64_t shape[TU_NPY_MAXDIM]; // (ndim)
    size_t count;                 // product of the shape
    float *f32;                   // (count) decoded values if descr is "<f4", else NULL; owned
    uint8_t *b1;                  // (count) 0/1 if descr is "|b1", else NULL; owned
} tu_npy;

// Read and check a .npy file: magic, version, header length, a dict that ends in a newline, C
// order, a known dtype, and a file size that matches the shape exactly. False (and a diag()
// saying why) otherwise. Free with tu_npy_free even on failure.
bool tu_npy_load(tu_npy *npy, const char *path);
void tu_npy_free(tu_npy *npy);

/* ---------------------------------------------------------------- hand-built models */

// A conv th_layer (no name, no weights) from any spec `k` with fields kh, kw, sh, sw, dh, dw,
// pad_t, pad_l, pad_b, pad_r and relu.
#define TU_MODEL_CONV(k, cin, cout)                                                                \
    ((th_layer){.kind = TH_LAYER_CONV,                                                             \
                .kh = (k)->kh,                                                                     \
                .kw = (k)->kw,                                                                     \
                .sh = (k)->sh,                                                                     \
                .sw = (k)->sw,                                                                     \
                .dh = (k)->dh,                                                                     \
                .dw = (k)->dw,                                                                     \
                .pad_t = (k)->pad_t,                                                               \
                .pad_l = (k)->pad_l,                                                               \
                .pad_b = (k)->pad_b,                                                               \
                .pad_r = (k)->pad_r,                                                               \
                .relu = (k)->relu,                                                                 \
                .c_in = (cin),                                                                     \
                .c_out = (cout)})

/* Copy the ONNX model at src_path to dst_path with metadata `key` set to `value` (replacing an
 * entry of that key, else appended); bail()s on failure. */
void tu_model_with_metadata(const char *src_path, const char *key, const char *value,
                            const char *dst_path);

/* Monotonic wall clock in seconds. */
double tu_now(void);

/* An RGB image read from a PNG. */
typedef struct tu_image {
    int w, h;
    uint8_t *rgb; /* (h, w, 3), freed with th_free */
} tu_image;

/* Read a PNG as 8-bit RGB (diag and false on failure). */
bool tu_png_read(const char *path, tu_image *img);

/* Entries of a directory other than dot files (0 if it cannot be opened). */
int tu_files_in(const char *dir);

/* A renderer (th_render_heatmap, th_render_tiff) and a failure it must report: it fails with a
 * message containing `needle` and leaves neither DIR/NAME nor anything else in DIR (three TAP
 * checks, named after `what`). */
typedef bool tu_render_fn(th_slide *slide, const th_result *result, const th_model *model,
                          const th_render_options *opt, const char *path, th_error **err);
void tu_expect_render_failure(tu_render_fn *fn, th_slide *slide, const th_result *r,
                              const th_model *model, const th_render_options *o, const char *dir,
                              const char *name, const char *needle, const char *what);

/* The failures every renderer must report cleanly, writing NAME into TMPDIR/fail (made here):
 * a missing output directory, no class shown, a class out of range, alpha out of [0, 1], a
 * result with another class count than the model's, a slide whose reads fail midway
 * (../shared/data/bad/unreadable.svs, with a result of its own), a result of another slide, and
 * `colors` naming no class or with a bad colour (the model must have a class "stroma").
 * `r` is a result of `slide` with `model` (30 TAP checks, 6 skipped without the bad slide). */
void tu_expect_render_errors(tu_render_fn *fn, const char *name, th_slide *slide,
                             const th_result *r, const th_model *model);

/* ---------------------------------------------------------------- heatmaps */

/* From render.h, which is not included here: it brings th-private.h's poison list, and some test
 * programs call fopen and calloc themselves. */
struct th_render_layout;
struct th_legend;

/* Largest channel difference between rgb a and the colour 0xRRGGBB `hex`. */
int tu_rgb_dist(const uint8_t a[3], uint32_t hex);
/* Pixel (x, y) of img: its 3 bytes. */
const uint8_t *tu_px_at(const tu_image *img, int x, int y);
/* The plain thumbnail pixel (ox, oy), computed here from the documented rule: the mean of the
 * level over the output pixel's box [ox·kx, (ox + 1)·kx) × [oy·ky, (oy + 1)·ky), each level pixel
 * weighted by its overlap, rounded; k = level pixels per output pixel. */
void tu_ref_pixel(th_slide *slide, int level, double kx, double ky, int ox, int oy, uint8_t rgb[3]);
/* The top row of the first legend swatch of colour `hex` (a 5×5 block of exactly that colour in
 * the panel), or -1. */
int tu_swatch_y(const tu_image *img, const struct th_render_layout *L, uint32_t hex);

/* The CMU slide (slides/CMU-1-Small-Region.svs), level 0. */
#define TU_CMU_W 2220
#define TU_CMU_H 2967

/* A hand-made result on the CMU slide (2220×2967): 224-px tiles, 9×13 grid, 7×7 CAM cells of
 * 32 px, tile (8, 0) not run. Class 0 is 5 in tile columns 0-2, rows 0-5 and 0 elsewhere;
 * class 1 a ramp of 0.25 per cell from global cell column 31 to the right edge (0 before it);
 * the other classes are zero. */
th_result *tu_make_cmu_result(th_slide *slide, int n_classes);
/* Whether two results have the same tile probabilities and CAM grids, byte for byte. */
bool tu_same_result(const th_result *a, const th_result *b);
/* Run options for every tile (no tissue detection) in CAM mode `cam` on `engine`. */
th_run_options tu_options(th_cam_mode cam, int threads, th_engine_kind engine);
/* th_run, with a diag() saying why when it fails (NULL). */
th_result *tu_run(th_slide *slide, const struct th_model *model, const th_run_options *opt);
/* The bundled model run on CMU (min_tissue 0: no mask; 0.1: a tissue mask in the result). */
th_result *tu_run_default(th_slide *slide, const th_model *model, double min_tissue);
/* th_render_heatmap into TMPDIR/name, read back into *img; the layout into *L if not NULL
 * (diag and false on failure). */
bool tu_render(th_slide *slide, const th_result *r, const th_model *model,
               const th_render_options *o, const char *name, tu_image *img,
               struct th_render_layout *L);
/* Whether files a and b both read and hold the same bytes. */
bool tu_same_bytes(const char *a, const char *b);
/* Render, then check the legend in the pixels: the first label's measured height at least 1.2 %
 * of the image's long side (and the font's native size), and every text drawn as planned (three
 * TAP checks). The legend and layout go to *lg and *L. */
void tu_check_legend_pixels(th_slide *slide, const th_result *r, const th_model *model,
                            const th_render_options *o, const char *name, struct th_legend *lg,
                            struct th_render_layout *L);

/* The shared slide data_rel ($TH_DATA) opened, or the model src_rel ($TH_SRCDIR) loaded; bail()
 * with the message if it fails. */
th_slide *tu_open_slide(const char *data_rel);
th_model *tu_load_model(const char *src_rel);

/* A full disk, simulated with a 1 MB file size limit (RLIMIT_FSIZE, SIGXFSZ ignored): the
 * writer `fn` fails midway with the system's words ("File too large") and leaves no file (3
 * TAP checks). */
void tu_expect_disk_full(tu_render_fn *fn, const char *name, th_slide *slide, const th_result *r,
                         const th_model *model);

#endif
