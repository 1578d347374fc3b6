/* SPDX-License-Identifier: MIT */
/*
 * tileheat public API: open a slide, load a VGG-GAP classifier (ONNX or Keras), run it on every
 * tile, and turn the class activation maps into heatmaps and a per-class report.
 *
 * Conventions (OpenSlide's): fallible functions take `th_error **err` last, return false or NULL
 * on failure and set *err (caller frees with th_error_free). Pass NULL to ignore the error.
 * Coordinates are level-0 pixels unless a name says otherwise.
 *
 * Thread safety:
 *   th_slide   read_region may be called from several threads at once on one handle.
 *   th_runner  th_runner_run may be called from several threads at once (each run has its own
 *              workspaces); the model it was made for must outlive it.
 *   th_model   immutable after load (except the th_model_set_* calls): share freely.
 *   th_result  read-only after th_run: share freely.
 *   everything else: one thread at a time.
 */
#ifndef TILEHEAT_H
#define TILEHEAT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TH_BUILDING) && defined(__GNUC__)
#define TH_API __attribute__((visibility("default")))
#else
#define TH_API
#endif

/** Most classes `multi` draws at once (and the size of its palette). @since 0.1 */
#define TH_MAX_SHOWN 6

/* ---------------------------------------------------------------- errors */

/** An error: a one-line message. @since 0.1 */
typedef struct th_error th_error;

/** The message (borrowed; valid until th_error_free). @since 0.1 */
TH_API const char *th_error_message(const th_error *err);

/** Free an error. Accepts NULL. @since 0.1 */
TH_API void th_error_free(th_error *err);

/** The library version, e.g. "0.1.0" (static string). @since 0.1 */
TH_API const char *th_version(void);

/* ---------------------------------------------------------------- slides */

/** An open slide or plain image. @since 0.1 */
typedef struct th_slide th_slide;

/**
 * Open a whole-slide image (anything OpenSlide reads), a plain TIFF or a PNG.
 * @return the slide (caller frees with th_slide_close), or NULL and *err set.
 * @since 0.1
 */
TH_API th_slide *th_slide_open(const char *path, th_error **err);

/** Close a slide. Accepts NULL. @since 0.1 */
TH_API void th_slide_close(th_slide *slide);

/** Backend and vendor, e.g. "aperio", "generic-tiff", "tiff", "png" (borrowed). @since 0.1 */
TH_API const char *th_slide_get_format(const th_slide *slide);

/** Number of pyramid levels (1 for plain images). @since 0.1 */
TH_API int th_slide_get_level_count(const th_slide *slide);

/** Size of a level in its own pixels; false if the level does not exist. @since 0.1 */
TH_API bool th_slide_get_level_dimensions(const th_slide *slide, int level, int64_t *w, int64_t *h);

/** Downsample factor of a level relative to level 0 (1.0 for level 0; 0 if no such level). @since
 * 0.1 */
TH_API double th_slide_get_level_downsample(const th_slide *slide, int level);

/** µm per level-0 pixel, if the file says; false (and 0s) otherwise. @since 0.1 */
TH_API bool th_slide_get_mpp(const th_slide *slide, double *mpp_x, double *mpp_y);

/**
 * Read a w×h region of `level` whose top-left corner is (x, y) in level-0 pixels, into `dest`
 * as 8-bit RGB, interleaved, row-major (w*h*3 bytes, caller-owned). Alpha is composited on white;
 * pixels outside the image are white. Thread-safe on one handle.
 * @since 0.1
 */
TH_API bool th_slide_read_region(th_slide *slide, uint8_t *dest, int64_t x, int64_t y, int level,
                                 int64_t w, int64_t h, th_error **err);

/* ---------------------------------------------------------------- models */

/** A loaded VGG-GAP classifier: conv trunk, global average pooling, one dense layer. @since 0.1 */
typedef struct th_model th_model;

/**
 * Load and validate a model: ONNX, a Keras 2 / tf.keras HDF5 file (.h5) or a Keras 3 .keras
 * file, told apart by their first bytes, not the name (Keras files need a build with HDF5
 * support; otherwise they are refused with a message saying so). What a Keras file does not
 * carry (class names, µm/px, preprocessing) comes from a sidecar JSON file next to it,
 * `PATH.json` or the path with its extension replaced by `.json`, holding the metadata keys as
 * a JSON object. Anything that is not conv layers, then global average pooling, then one dense
 * layer is rejected with a message naming the node or layer.
 * @return the model (caller frees with th_model_free), or NULL and *err set.
 * @since 0.1 (Keras files @since 0.6)
 */
TH_API th_model *th_model_load(const char *path, th_error **err);

/** Free a model. Accepts NULL. @since 0.1 */
TH_API void th_model_free(th_model *model);

/** Number of classes (rows of the dense layer). @since 0.1 */
TH_API int th_model_get_class_count(const th_model *model);

/** Name of class c (borrowed): from --classes, metadata `class_names`, or "class<c>". @since 0.1 */
TH_API const char *th_model_get_class_name(const th_model *model, int c);

/** Index of the class called `name`, or -1. @since 0.1 */
TH_API int th_model_find_class(const th_model *model, const char *name);

/** Replace the class names with a comma-separated list of exactly class-count names. @since 0.1 */
TH_API bool th_model_set_class_names(th_model *model, const char *csv, th_error **err);

/** Fixed input width and height in pixels, or 0 and 0 if the graph's are dynamic and no
 *  `input_size` metadata says. @since 0.1 */
TH_API void th_model_get_input_size(const th_model *model, int *w, int *h);

/** µm per pixel the model was trained at (metadata `mpp`), or 0 if unknown. @since 0.1 */
TH_API double th_model_get_mpp(const th_model *model);

/** Whether metadata `background_classes` names class c. @since 0.1 */
TH_API bool th_model_is_background_class(const th_model *model, int c);

/** The SHA-256 of the model's file in lowercase hex, into hex (65 bytes with the NUL): hashed on
 *  the first call, then remembered (thread-safe); "" for a model loaded from memory. False and
 *  *err set if the file cannot be read any more. @since 0.4 */
TH_API bool th_model_get_sha256(const th_model *model, char hex[65], th_error **err);

/** A metadata_props value (borrowed), or NULL if the key is absent. @since 0.1 */
TH_API const char *th_model_get_metadata(const th_model *model, const char *key);

/** The file's format: "ONNX", "Keras HDF5 (.h5)" or "Keras 3 (.keras)" (static string). @since 0.6
 */
TH_API const char *th_model_get_format(const th_model *model);

/** Lines th_model_describe_layer describes: the trunk's layers (a ReLU after a convolution is
 *  part of it), then global average pooling, then the dense layer. @since 0.6 */
TH_API int th_model_get_layer_count(const th_model *model);

/** One line about layer i into buf (NUL-terminated, truncated to size): its kind, name, channels,
 *  window, padding and ReLU. False (and "") if i is out of range. @since 0.6 */
TH_API bool th_model_describe_layer(const th_model *model, int i, char *buf, size_t size);

/**
 * Use one of the input preprocessings the Keras world uses, replacing what the file says:
 * "unit" (x = pixel / 255: the original tool's, and the default), "caffe" (BGR, minus the
 * ImageNet mean 103.939, 116.779, 123.68, unscaled: keras.applications VGG16 / VGG19), "tf"
 * (x = pixel / 127.5 - 1) or "torch" (x = pixel / 255, then ImageNet mean and std). Call it
 * before the model is run or shared (it changes the model; not thread-safe).
 * @since 0.6
 */
TH_API bool th_model_set_preprocess(th_model *model, const char *name, th_error **err);

/** The preprocessing preset the model's input normalisation is ("unit", "caffe", "tf",
 *  "torch"), or "custom" (static string). @since 0.6 */
TH_API const char *th_model_get_preprocess(const th_model *model);

/** The input normalisation as text, e.g. "caffe (BGR, x = pixel − (103.939, 116.779, 123.68))",
 *  into buf (NUL-terminated, truncated to size). @since 0.6 */
TH_API void th_model_describe_preprocess(const th_model *model, char *buf, size_t size);

/** Set the µm per pixel the model was trained at (metadata `mpp`); mpp must be > 0. Not
 *  thread-safe (as th_model_set_class_names). @since 0.6 */
TH_API bool th_model_set_mpp(th_model *model, double mpp, th_error **err);

/**
 * Write the model as a standard ONNX file (opset 13: Conv, Relu, MaxPool, GlobalAveragePool,
 * Flatten, Gemm, and Softmax if the model has one; weights as float32 initializers, BatchNorm
 * folded) with metadata_props holding its class names, µm/px, input size and preprocessing
 * (`preprocess`, `channel_order`, `input_scale`, `input_mean`, `input_std`) and the file's other
 * metadata, so that tileheat, ONNX Runtime and netron read it. Written under a temporary name
 * and renamed: `path` is never left half-written.
 * @since 0.6
 */
TH_API bool th_model_write_onnx(const th_model *model, const char *path, th_error **err);

/* ---------------------------------------------------------------- running */

/** Inference backend. @since 0.1 */
typedef enum th_engine_kind {
    TH_ENGINE_REF = 0,  /**< plain-C reference (direct convolution) */
    TH_ENGINE_FAST,     /**< optimised backend, when built; falls back to an error if absent */
    TH_ENGINE_WINOGRAD, /**< the fast backend with oneDNN's Winograd convolution (F(4×4,3×3) or
                             F(2×2,3×3), its choice) for 3×3 stride-1 convolutions with at least
                             16 input channels, where oneDNN has it (AVX-512 CPUs; elsewhere the
                             same as TH_ENGINE_FAST): fewer multiplications; promised within 1e-3
                             of the reference instead of 1e-4 (measured: 1e-6) @since 0.3 */
} th_engine_kind;

/** How CAMs and tile probabilities are computed. @since 0.5 */
typedef enum th_cam_mode {
    TH_CAM_SEAMLESS = 0, /**< default: the trunk runs over strips of the slide with a margin of
                              context, so a CAM cell is the network's value at that place of the
                              slide and tile borders leave no seams; a tile's probabilities are
                              the dense layer over the mean of its own cells. Falls back to
                              TH_CAM_TILE (with a warning) for a --stride that overlaps tiles or
                              a trunk it cannot stream (strided convolutions, overlapping pools) */
    TH_CAM_TILE,         /**< every tile run on its own, zero-padded at its border (the original
                              tool's per-tile definition; tile borders show in the CAMs) */
} th_cam_mode;

/** Called after tiles complete, from one thread at a time; done ≤ total. @since 0.1 */
typedef void (*th_progress_fn)(void *user, int64_t done, int64_t total);

/** Options for th_run. Fill with th_run_options_init, then change fields. @since 0.1 */
/** Arithmetic of the convolutions. @since 0.6 */
typedef enum th_precision {
    TH_PRECISION_FP32 = 0, /**< float32 throughout (default) */
    TH_PRECISION_INT8,     /**< int8 convolutions (u8 activations, s8 weights with a scale per
                                output channel, s32 sums) after a calibration pass over a fixed
                                sample of the slide's tiles; the first convolution and the CAM
                                features stay float32. Needs the fast engine. */
} th_precision;

/** "fp32" or "int8". @since 0.6 */
TH_API const char *th_precision_name(th_precision precision);

/** int8 activation ranges measured once for a model over a sample of tiles from many slides
 *  (`tileheat calibrate`), so that a cohort's slides run in int8 on the same ranges without each
 *  calibrating on its own. @since 0.7 */
typedef struct th_calibration th_calibration;

typedef struct th_run_options {
    int level;   /**< pyramid level to tile; -1 (default) = chosen from the µm/px of
                      slide and model, with resampling; >= 0 forces that level as is */
    int tile;    /**< tile size in level pixels for models with dynamic input; 0 = from the model */
    int threads; /**< worker threads; 0 = OpenMP default */
    th_engine_kind engine;   /**< default TH_ENGINE_WINOGRAD when built with oneDNN, else
                                  TH_ENGINE_REF (before 0.3: TH_ENGINE_FAST) */
    th_progress_fn progress; /**< optional */
    void *progress_user;
    double
        slide_mpp; /**< µm per level-0 pixel; 0 (default) = from the slide's metadata @since 0.2 */
    double model_mpp; /**< µm per model input pixel; 0 (default) = from the model @since 0.2 */
    double
        mpp_tolerance; /**< relative; within it no resampling is done (default 0.05) @since 0.2 */
    double min_tissue; /**< tiles with a smaller tissue fraction are not run (default 0.1;
                            0 = no tissue detection) @since 0.2 */
    int stride;        /**< tile step in model pixels; 0 (default) = the tile size. Smaller
                            strides overlap tiles and average their CAMs; a multiple of the
                            model's feature stride @since 0.2 */
    bool edge_pad;     /**< also run the partial right/bottom tiles, padded with white @since 0.2 */
    int64_t roi_x, roi_y, roi_w,
        roi_h; /**< level-0 region to run; roi_w = 0 (default) = all @since 0.2 */
    const volatile sig_atomic_t *cancel; /**< optional: read before tissue detection and before
                                              each tile; once *cancel is non-zero the run stops
                                              and fails with the message "cancelled" (set it from
                                              a signal handler or another thread) @since 0.4 */
    th_cam_mode cam;                     /**< default TH_CAM_SEAMLESS @since 0.5 */
    th_precision precision;              /**< default TH_PRECISION_FP32 @since 0.6 */
    const th_calibration *calibration;   /**< int8: the activation ranges (borrowed; from
                                              th_calibration_read or _finish, for the same model
                                              and tile size) instead of a calibration on the
                                              slide's own tiles; NULL (default): calibrate on the
                                              slide @since 0.7 */
} th_run_options;

/** Set defaults. @since 0.1 */
TH_API void th_run_options_init(th_run_options *opt);

/** Results of a run: per-tile probabilities and raw class activation maps. @since 0.1 */
typedef struct th_result th_result;

/**
 * Tile the slide at the model's input size (partial tiles at the right and bottom edges are
 * ignored), run the model on every tile in parallel and compute a CAM per class per tile.
 * Results are identical whatever the thread count.
 * @return the result (caller frees with th_result_free), or NULL and *err set.
 * @since 0.1
 */
TH_API th_result *th_run(th_slide *slide, const th_model *model, const th_run_options *opt,
                         th_error **err);

/**
 * A model's inference engine, planned once for many slides (the weight reorders and code
 * generation th_run pays per slide). `opt` gives the engine, the tile size (for dynamic-input
 * models) and the threads used for planning; the runs must use the same engine and tile size.
 * @return the runner (caller frees with th_runner_free; `model` is borrowed and must outlive it),
 * or NULL and *err set.
 * @since 0.4
 */
typedef struct th_runner th_runner;
TH_API th_runner *th_runner_new(const th_model *model, const th_run_options *opt, th_error **err);

/**
 * th_run with a planned engine: the same result, byte for byte. The "engine plan" stage holds the
 * planning time on the runner's first run and 0 afterwards. Runs on different slides may go on
 * at once from different threads (each with opt->threads of its own).
 * @since 0.4
 */
TH_API th_result *th_runner_run(th_runner *runner, th_slide *slide, const th_run_options *opt,
                                th_error **err);

/** Free a runner. Accepts NULL. @since 0.4 */
TH_API void th_runner_free(th_runner *runner);

/**
 * A calibration of `model` for int8 runs with `opt` (its engine, tile size and threads) on a
 * sample of at most `tiles` tiles in all, filled by th_calibration_add and measured by
 * th_calibration_finish. @return it (free with th_calibration_free), or NULL and *err set.
 * @since 0.7
 */
TH_API th_calibration *th_calibration_new(const th_model *model, const th_run_options *opt,
                                          int tiles, th_error **err);

/** Add `tiles` of the slide at `path` to the sample: its tissue tiles as th_run would tile it with
 *  `opt`, evenly spaced in tile order (fewer if it has fewer, or the sample is full). @since 0.7 */
TH_API bool th_calibration_add(th_calibration *cal, const char *path, const th_run_options *opt,
                               int tiles, th_error **err);

/** Measure: the sample through the float32 engine gives each layer's largest output (the int8
 *  ranges); the int8 engine planned on them is then run on the same sample and compared with
 *  float32 (th_calibration_get_check). @since 0.7 */
TH_API bool th_calibration_finish(th_calibration *cal, th_error **err);

/** int8 against float32 on the calibration's sample: tiles, the largest per-class percentage
 *  difference (points), the share of tiles whose top class agrees, the least per-class CAM
 *  correlation (Pearson). @since 0.7 */
TH_API void th_calibration_get_check(const th_calibration *cal, int *tiles,
                                     double *max_percent_difference, double *top_class_agreement,
                                     double *min_cam_correlation);

/** Why int8 should not be used with this calibration (its check misses the bar: percentages
 *  within 0.5 points, the top class the same on 98 % of tiles, CAM correlation at least 0.98),
 *  or NULL. Runs on it add the same warning. @since 0.7 */
TH_API const char *th_calibration_get_warning(const th_calibration *cal);

/** The file a calibration was read from, or NULL; and that file's SHA-256 in hex ("" if none).
 *  @since 0.7 */
TH_API const char *th_calibration_get_path(const th_calibration *cal);
TH_API const char *th_calibration_get_sha256(const th_calibration *cal);

/** Write a finished calibration as JSON (format "tileheat-calibration", version 1: the model's
 *  SHA-256 and tile size, the sample's slides, each layer's name and largest output, the check),
 *  under a temporary name and renamed. @since 0.7 */
TH_API bool th_calibration_write(const th_calibration *cal, const char *path, th_error **err);

/** Read a calibration file for `model` (borrowed; it must be the file's model: same SHA-256 and
 *  layers). @since 0.7 */
TH_API th_calibration *th_calibration_read(const char *path, const th_model *model, th_error **err);

/** Free a calibration. Accepts NULL. @since 0.7 */
TH_API void th_calibration_free(th_calibration *cal);

/** Free a result. Accepts NULL. @since 0.1 */
TH_API void th_result_free(th_result *result);

/** Number of classes. @since 0.1 */
TH_API int th_result_get_class_count(const th_result *result);

/** Grid size in tiles (full tiles only). @since 0.1 */
TH_API void th_result_get_grid(const th_result *result, int *cols, int *rows);

/** Number of tiles run. @since 0.1 */
TH_API int64_t th_result_get_tile_count(const th_result *result);

/** Tile i (0 ≤ i < tile count, in row-major grid order): grid column and row, and its
 *  level-0 rectangle. @since 0.1 */
TH_API void th_result_get_tile(const th_result *result, int64_t i, int *col, int *row, int64_t *x,
                               int64_t *y, int64_t *w, int64_t *h);

/** Softmax probabilities of tile i, class-count floats (borrowed). @since 0.1 */
TH_API const float *th_result_get_probs(const th_result *result, int64_t i);

/** CAM feature cells per tile: fw columns × fh rows. @since 0.1 */
TH_API void th_result_get_cam_size(const th_result *result, int *fw, int *fh);

/**
 * The slide-wide CAM grid: gw × gh cells of the last feature map, cell (0,0)'s top-left corner at
 * level-0 (x0, y0), each cell cell_w0 × cell_h0 level-0 pixels. Overlapping tiles (stride) are
 * averaged. Any pointer may be NULL. @since 0.2
 */
TH_API void th_result_get_cam_grid(const th_result *result, int64_t *gw, int64_t *gh, double *x0,
                                   double *y0, double *cell_w0, double *cell_h0);

/** Row gy of class c's raw CAM grid into out (gw floats), NaN where no tile ran. @since 0.2 */
TH_API void th_result_read_cam_row(const th_result *result, int c, int64_t gy, float *out);

/** µm per level-0 pixel used (0 if none) and where it came from: "--mpp", "openslide",
 *  "tiff-tags", "png-tags", "assumed" (plain image taken at the model's resolution) or "none".
 * @since 0.2 */
TH_API double th_result_get_mpp(const th_result *result, const char **source);

/** Level-0 pixels per model pixel (the resampling scale; 1 with no mpp). @since 0.2 */
TH_API double th_result_get_scale(const th_result *result);

/** The pyramid level tiles were read from. @since 0.2 */
TH_API int th_result_get_level(const th_result *result);

/** Tiles in the grid, tiles skipped for too little tissue (not run). @since 0.2 */
TH_API void th_result_get_tile_counts(const th_result *result, int64_t *total, int64_t *skipped);

/** Write the tissue mask found by tissue detection as a grayscale PNG (255 = tissue). Errors if
 *  the run had no tissue detection (min_tissue 0). @since 0.2 */
TH_API bool th_result_write_tissue_png(const th_result *result, const char *path, th_error **err);

/** Warnings about the run, for the user (one line each, without the slide's name): e.g. a plain
 *  image without µm/px taken at the model's, or a slide that looks like fluorescence run with a
 *  brightfield model. Count, then each (borrowed; NULL out of range). @since 0.4 */
TH_API int th_result_get_warning_count(const th_result *result);
TH_API const char *th_result_get_warning(const th_result *result, int i);

/** The CAM mode the run used (TH_CAM_TILE when it fell back). @since 0.5 */
TH_API th_cam_mode th_result_get_cam_mode(const th_result *result);

/** "seamless" or "tile". @since 0.5 */
TH_API const char *th_cam_mode_name(th_cam_mode mode);

/** Wall seconds of named stages, in order; n of them. Borrowed. @since 0.2 */
typedef struct th_stage {
    const char *name;
    double seconds;
} th_stage;
TH_API const th_stage *th_result_get_stages(const th_result *result, int *n);

/** Mean over tiles of the softmax probability of class c, 0–100. @since 0.1 */
TH_API double th_result_get_percent(const th_result *result, int c);

/** Share of tiles whose top class is c, 0–100. @since 0.1 */
TH_API double th_result_get_argmax_percent(const th_result *result, int c);

/**
 * The n classes with the highest percentage, background classes excluded, into out[] (highest
 * first, ties by index). Returns how many were written (≤ n).
 * @since 0.1
 */
TH_API int th_result_top_classes(const th_result *result, const th_model *model, int n, int *out);

/* ---------------------------------------------------------------- output */

/** How CAM values become display intensity in [0, 1]. @since 0.1 */
typedef enum th_norm {
    TH_NORM_PERCENTILE =
        0,       /**< clip negatives to 0, divide by the class's percentile over the slide */
    TH_NORM_RAW, /**< one linear scale from the smallest to the largest raw value shown */
} th_norm;

/** Colormaps for single-class heatmaps. @since 0.1 */
typedef enum th_colormap {
    TH_COLORMAP_VIRIDIS = 0,
    TH_COLORMAP_INFERNO,
    TH_COLORMAP_MAGMA,
    TH_COLORMAP_JET,
    TH_COLORMAP_YLORRD,
} th_colormap;

/** Parse a colormap name ("viridis", ...); false if unknown. @since 0.1 */
TH_API bool th_colormap_from_name(const char *name, th_colormap *out);

/** Options for th_render_heatmap. Fill with th_render_options_init. @since 0.1 */
typedef struct th_render_options {
    int n_shown;             /**< 1 = single-class map with a colormap; 2..6 = multi */
    int shown[TH_MAX_SHOWN]; /**< class indices, in the legend's order (colours go by class,
                                  not by this order: th_render_class_color) */
    bool multi;           /**< multi-class overlay (class colours, legend) even if n_shown is 1 */
    th_colormap colormap; /**< single only; default viridis */
    double alpha;         /**< overlay opacity at full strength, 0–1; default 0.5 */
    double threshold;     /**< multi: normalised strength below which nothing is drawn; above
                               it the opacity rises linearly to alpha at 1; default 0.2 */
    int width;            /**< long side of the slide thumbnail in px; default 2000, capped at
                               the slide's level-0 long side. The legend is a strip appended
                               along the short side (right of a portrait or square slide,
                               below a landscape one), so the PNG is larger by that strip */
    th_norm norm;         /**< default TH_NORM_PERCENTILE */
    double percentile;    /**< for TH_NORM_PERCENTILE, default 99 */
    int threads;          /**< rendering threads; 0 (default) = OpenMP default. The output
                               does not depend on it @since 0.2 */
    const char *colors;   /**< multi: "name=#rrggbb,..." colours of named classes, over the
                               palette and the model's `class_colors`; NULL (default) = none.
                               Borrowed; checked when rendering @since 0.4 */
    bool tint_glass;      /**< also tint pixels the tissue mask calls glass; default false:
                               they show the plain slide. No effect without a tissue mask
                               (min_tissue 0) @since 0.4 */
} th_render_options;

/** Set defaults: class 0, single, viridis, alpha 0.5, threshold 0.2, width 2000, percentile 99,
 *  colors NULL, tint_glass false. @since 0.1 */
TH_API void th_render_options_init(th_render_options *opt);

/**
 * The colour of class c, the same in heatmap.png (overlay and legend), heatmap.tiff and
 * tiles.geojson, whichever classes are shown and in what order: from `opt->colors` if it names
 * the class, else from the model's metadata `class_colors` (one `#rrggbb` per class), else
 * palette entry c mod 6 (Okabe-Ito: orange, sky blue, bluish green, yellow, blue, vermillion),
 * except that a background class (th_model_is_background_class) without a colour of its own is
 * grey #a0a0a0 and left clear in the overlay. opt and model may be NULL (no overrides).
 * Errors: c out of range, a malformed `colors` or `class_colors`, or a name in `colors` that is
 * no class of the model (every entry is checked, not only class c's).
 * @since 0.4
 */
TH_API bool th_render_class_color(const th_render_options *opt, const th_model *model, int c,
                                  uint8_t rgb[3], th_error **err);

/**
 * Write `path` (PNG): the slide thumbnail blended with the CAMs of the shown classes, the CAM
 * upsampled bilinearly across tile borders, plus a colour bar (single) or legend (multi) on a
 * light strip appended along the thumbnail's short side. Labels are the class names (from
 * `model`, or "class<c>" if model is NULL) with th_result_get_percent. The image is streamed in
 * bands of rows, so memory stays O(image width) whatever the slide size.
 * Written to a temporary name and renamed, so a failure leaves no file.
 * @since 0.1
 */
TH_API bool th_render_heatmap(th_slide *slide, const th_result *result, const th_model *model,
                              const th_render_options *opt, const char *path, th_error **err);

/** What report.json and run.json record besides the result. Strings are borrowed. @since 0.1 */
typedef struct th_report_info {
    const char *slide_path; /**< as given by the user */
    const char *model_path; /**< as given by the user (run.json hashes this file only for a
                                 model loaded from memory) */
    const char *command;    /**< "single" or "multi" */
    int level;
    const th_stage *stages; /**< extra stages after the run (render, outputs) @since 0.2 */
    int n_stages;
    int64_t peak_rss; /**< bytes, 0 if unknown @since 0.2 */
    int argc;         /**< run.json: the command line, as given @since 0.2 */
    char *const *argv;
    const th_render_options *render; /**< report.json: how the heatmap was drawn (the `drawing`
                                          object, each class's colour and whether it was drawn);
                                          NULL = not recorded @since 0.4 */
    const char *shown_by;            /**< report.json: why these classes were drawn, e.g. "--top 3"
                                          @since 0.4 */
} th_report_info;

/** Write report.json (schema 1; see README). Temporary name + rename. @since 0.1 */
TH_API bool th_report_write_json(const th_result *result, const th_model *model,
                                 const th_report_info *info, const char *path, th_error **err);

/** Write tiles.csv: col,row,x,y,w,h,<class names...>. Temporary name + rename. @since 0.1 */
TH_API bool th_report_write_csv(const th_result *result, const th_model *model, const char *path,
                                th_error **err);

/** Write run.json: the run's provenance (version, model SHA-256, slide path and size, options,
 *  µm/px and its source, stage timings, peak RSS). Temporary name + rename. @since 0.2 */
TH_API bool th_report_write_run_json(const th_result *result, const th_model *model,
                                     const th_report_info *info, const char *path, th_error **err);

/* ---------------------------------------------------------------- exports */

/** Write tiles.geojson: a FeatureCollection QuPath 0.4+ imports, one Feature per tile run:
 *  Polygon in level-0 px, properties objectType "tile", classification {name, color} = the top
 *  class in th_render_class_color's colour (`opt` may be NULL: no --colors), measurements =
 *  class probabilities. Temporary name + rename. @since 0.2 (opt @since 0.4) */
TH_API bool th_export_geojson(const th_result *result, const th_model *model,
                              const th_render_options *opt, const char *path, th_error **err);

/** Write cam.npy (classes × gh × gw float32, the raw CAM grid, NaN where no tile ran) and
 *  probabilities.npy (tiles × classes float32, tiles in tiles.csv order). Either path may be
 *  NULL. Streams; temporary name + rename. @since 0.2 */
TH_API bool th_export_npy(const th_result *result, const char *cam_path, const char *probs_path,
                          th_error **err);

/** Write heatmap.tiff: the slide blended with the heatmap (as th_render_heatmap draws it, no
 *  legend) at level-0 resolution, as a tiled pyramidal BigTIFF (256×256 JPEG tiles, a page per
 *  level halving down to ≤ 1024 px, SUBFILETYPE reduced-image, resolution tags from the slide's
 *  µm/px) that OpenSlide opens. Streams rows; memory does not grow with the slide. @since 0.2 */
TH_API bool th_render_tiff(th_slide *slide, const th_result *result, const th_model *model,
                           const th_render_options *opt, const char *path, th_error **err);

/* ---------------------------------------------------------------- viewer */

/** Options for th_viewer_write. Fill with th_viewer_options_init. Strings are borrowed. @since 0.6
 */
typedef struct th_viewer_options {
    const char *assets;        /**< folder holding the page's files: index.html, viewer.js,
                                    viewer.css (installed in the package's data folder) */
    const char *openseadragon; /**< OpenSeadragon's build folder: openseadragon.min.js, images/ */
    const char *title; /**< the page's title (e.g. the slide's file name); NULL = "tileheat" */
    const char *const *links; /**< files beside the viewer folder the page links to
                                   (e.g. "heatmap.png"), n_links of them */
    int n_links;
    const volatile sig_atomic_t *cancel; /**< optional: stops the writing when non-zero */
} th_viewer_options;

/** Set defaults (everything NULL or 0). @since 0.6 */
TH_API void th_viewer_options_init(th_viewer_options *opt);

/**
 * Write `dir`, a folder that a browser opens from the file system with no server (index.html):
 * the slide as a Deep Zoom pyramid of 256-px JPEG tiles (overlap 1) read through tileheat's
 * slide readers, the heatmap as RGBA PNG pyramids at twice the CAM grid's resolution drawn as
 * th_render_heatmap draws it (one layer per class shown in multi, where each pixel is in the
 * layer of its strongest class; one layer in single), the tiles' probabilities, and OpenSeadragon.
 * Tiles the run's tissue mask calls glass are not read: they share one flat tile of the glass
 * colour (hard links). Streams: memory is a few tiles per thread. Written into a temporary
 * folder next to `dir` and renamed (an earlier `dir` is replaced), so a failure leaves no
 * half-written viewer. Threads: opt->threads. @since 0.6
 */
TH_API bool th_viewer_write(th_slide *slide, const th_result *result, const th_model *model,
                            const th_render_options *opt, const th_viewer_options *vopt,
                            const char *dir, th_error **err);

/** Peak resident memory of this process so far, in bytes (0 if unknown). @since 0.2 */
TH_API int64_t th_peak_rss(void);

#ifdef __cplusplus
}
#endif
#endif /* TILEHEAT_H */
