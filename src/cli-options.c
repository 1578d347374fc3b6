/* SPDX-License-Identifier: MIT */
/* The command line: one table of options (name, value, the commands it applies to, how it is
 * stored, its help line), from which getopt_long's list, the parser and every --help are made. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

// Which commands an option applies to (bits of 1 << cli_command; batch goes by its mode).
#define ON_SINGLE (1u << CMD_SINGLE)
#define ON_MULTI (1u << CMD_MULTI)
#define ON_INFO (1u << CMD_INFO)
#define ON_BATCH (1u << CMD_BATCH)
#define ON_SUMMARIZE (1u << CMD_SUMMARIZE)
#define ON_CONVERT (1u << CMD_CONVERT)
#define ON_VIEW (1u << CMD_VIEW)
#define ON_CALIBRATE (1u << CMD_CALIBRATE)
#define ON_RUN (ON_SINGLE | ON_MULTI)

typedef enum kind { K_FLAG, K_STR, K_INT, K_DOUBLE, K_FN } kind;

typedef struct option_def {
    const char *name;
    char short_name;
    const char *value; // metavariable shown in --help; NULL for a flag
    unsigned on;       // ON_* bits
    kind kind;
    size_t field;  // offsetof(cli_opts, ...) for K_FLAG, K_STR, K_INT, K_DOUBLE
    double lo, hi; // K_INT, K_DOUBLE bounds
    bool (*set)(cli_opts *o, const char *arg, cli_err *e); // K_FN
    const char *section;
    const char *help;
} option_def;

#define F(member) offsetof(cli_opts, member)

static bool set_engine(cli_opts *o, const char *arg, cli_err *e)
{
    static const struct {
        const char *name;
        th_engine_kind kind;
    } engines[] = {
        {"ref", TH_ENGINE_REF}, {"fast", TH_ENGINE_FAST}, {"winograd", TH_ENGINE_WINOGRAD}};
    for (size_t i = 0; i < sizeof(engines) / sizeof(engines[0]); i++) {
        if (strcmp(arg, engines[i].name) == 0) {
            o->run.engine = engines[i].kind;
            return true;
        }
    }
    return cli_fail(e, "--engine: expected ref, fast or winograd, got '%s'", arg);
}

static bool set_norm(cli_opts *o, const char *arg, cli_err *e)
{
    if (strcmp(arg, "percentile") == 0 || strcmp(arg, "raw") == 0) {
        o->render.norm = strcmp(arg, "raw") == 0 ? TH_NORM_RAW : TH_NORM_PERCENTILE;
        return true;
    }
    return cli_fail(e, "--norm: expected percentile or raw, got '%s'", arg);
}

static bool set_cam(cli_opts *o, const char *arg, cli_err *e)
{
    if (strcmp(arg, "seamless") == 0 || strcmp(arg, "tile") == 0) {
        o->run.cam = strcmp(arg, "tile") == 0 ? TH_CAM_TILE : TH_CAM_SEAMLESS;
        return true;
    }
    return cli_fail(e, "--cam: expected seamless or tile, got '%s'", arg);
}

static bool set_precision(cli_opts *o, const char *arg, cli_err *e)
{
    if (strcmp(arg, "fp32") == 0 || strcmp(arg, "int8") == 0) {
        o->run.precision = strcmp(arg, "int8") == 0 ? TH_PRECISION_INT8 : TH_PRECISION_FP32;
        return true;
    }
    return cli_fail(e, "--precision: expected fp32 or int8, got '%s'", arg);
}

static bool set_edge(cli_opts *o, const char *arg, cli_err *e)
{
    if (strcmp(arg, "ignore") == 0 || strcmp(arg, "pad") == 0) {
        o->run.edge_pad = strcmp(arg, "pad") == 0;
        return true;
    }
    return cli_fail(e, "--edge: expected ignore or pad, got '%s'", arg);
}

static bool set_colormap(cli_opts *o, const char *arg, cli_err *e)
{
    if (th_colormap_from_name(arg, &o->render.colormap)) {
        return true;
    }
    return cli_fail(e, "--colormap: unknown colour map '%s' (viridis, inferno, magma, jet, ylorrd)",
                    arg);
}

// --roi X,Y,W,H in level-0 pixels.
static bool set_roi(cli_opts *o, const char *arg, cli_err *e)
{
    long long v[4];
    char tail;
    if (sscanf(arg, "%lld,%lld,%lld,%lld%c", &v[0], &v[1], &v[2], &v[3], &tail) != 4 || v[0] < 0 ||
        v[1] < 0 || v[2] <= 0 || v[3] <= 0) {
        return cli_fail(e, "--roi: expected X,Y,W,H in level-0 pixels (W, H > 0), got '%s'", arg);
    }
    o->run.roi_x = v[0];
    o->run.roi_y = v[1];
    o->run.roi_w = v[2];
    o->run.roi_h = v[3];
    return true;
}

// --preprocess: checked here, applied to the model when it is loaded (cli_load_model).
static bool set_preprocess(cli_opts *o, const char *arg, cli_err *e)
{
    static const char *const modes[] = {"unit", "caffe", "tf", "torch"};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strcmp(arg, modes[i]) == 0) {
            o->preprocess = modes[i];
            return true;
        }
    }
    return cli_fail(e, "--preprocess: expected unit, caffe, tf or torch, got '%s'", arg);
}

// --shard I/N: the rows whose 0-based position is I modulo N.
static bool set_shard(cli_opts *o, const char *arg, cli_err *e)
{
    int i, n;
    char tail;
    if (sscanf(arg, "%d/%d%c", &i, &n, &tail) != 2 || n < 1 || i < 0 || i >= n) {
        return cli_fail(e, "--shard: expected I/N with 0 <= I < N, got '%s'", arg);
    }
    o->shard_i = i;
    o->shard_n = n;
    return true;
}

static const option_def options[] = {
    {"class", 'c', "NAME", ON_SINGLE, K_STR, F(class_name), 0, 0, NULL, NULL,
     "class to show (default: the top non-background class)"},
    {"colormap", 0, "NAME", ON_SINGLE, K_FN, 0, 0, 0, set_colormap, NULL,
     "viridis (default), inferno, magma, jet, ylorrd"},
    {"top", 0, "N", ON_MULTI, K_INT, F(top), 1, TH_MAX_SHOWN, NULL, NULL,
     "show the N classes with the highest slide percentage, 1-6 (default 3)"},
    {"classes-shown", 0, "A,B", ON_MULTI, K_STR, F(shown), 0, 0, NULL, NULL,
     "show these classes instead, in this order"},
    {"threshold", 0, "T", ON_MULTI, K_DOUBLE, F(render.threshold), 0, 0.99, NULL, NULL,
     "normalised strength below which a pixel stays clear, 0-1 (default 0.2)"},
    {"colors", 0, "N=#HEX,...", ON_MULTI, K_STR, F(render.colors), 0, 0, NULL, NULL,
     "class colours, e.g. stroma=#56B4E9,fat=#F0E442 (default: by class)"},
    {"model", 'm', "FILE", ON_RUN | ON_INFO | ON_CALIBRATE, K_STR, F(model_path), 0, 0, NULL, NULL,
     "ONNX or Keras (.h5, .keras) model (default: the bundled tissue model)"},
    {"classes", 0, "A,B,...", ON_RUN | ON_INFO | ON_CONVERT, K_STR, F(classes), 0, 0, NULL, NULL,
     "rename the model's classes"},
    {"preprocess", 0, "MODE", ON_RUN | ON_INFO | ON_CONVERT | ON_CALIBRATE, K_FN, 0, 0, 0,
     set_preprocess, NULL,
     "input preprocessing: unit (x/255), caffe (BGR, ImageNet mean), tf or torch (default: the "
     "model's)"},
    {"output", 'o', "DIR", ON_RUN | ON_BATCH | ON_CONVERT | ON_CALIBRATE, K_STR, F(out_dir), 0, 0,
     NULL, NULL, "output directory (default: SLIDE-NAME.tileheat; batch: required)"},
    {"threads", 0, "N", ON_RUN | ON_VIEW | ON_CALIBRATE, K_INT, F(run.threads), 1, 1024, NULL, NULL,
     "worker threads (default: all cores; under Slurm its CPUs per task)"},
    {"engine", 0, "NAME", ON_RUN | ON_CALIBRATE, K_FN, 0, 0, 0, set_engine, NULL,
     "winograd (default when built with oneDNN), fast or ref"},
    {"quiet", 'q', NULL, ON_RUN | ON_SUMMARIZE | ON_CONVERT | ON_VIEW | ON_CALIBRATE, K_FLAG,
     F(quiet), 0, 0, NULL, NULL, "no progress bar, no table"},
    {"help", 'h', NULL, ~0u, K_FLAG, 0, 0, 0, NULL, NULL, "this help"},
    {"dry-run", 0, NULL, ON_BATCH, K_FLAG, F(dry_run), 0, 0, NULL,
     "Cohorts (batch):", "print what would run, what is done and why; run nothing"},
    {"force", 0, NULL, ON_BATCH, K_FLAG, F(force), 0, 0, NULL, NULL,
     "redo every slide, done or not"},
    {"shard", 0, "I/N", ON_BATCH, K_FN, 0, 0, 0, set_shard, NULL,
     "rows whose position (from 0) is I modulo N (default: Slurm's array task)"},
    {"lock-timeout", 0, "S", ON_BATCH, K_DOUBLE, F(lock_timeout), 1, 1e9, NULL, NULL,
     "take over another worker's slide lock after S seconds (default 86400)"},
    {"mpp", 0, "X", ON_RUN | ON_CALIBRATE, K_DOUBLE, F(run.slide_mpp), 0.01, 1000, NULL,
     "Resolution and tiling:", "the slide's µm/px (default: from the slide)"},
    {"model-mpp", 0, "X", ON_RUN | ON_CONVERT | ON_CALIBRATE, K_DOUBLE, F(run.model_mpp), 0.01,
     1000, NULL, NULL, "the model's µm/px (default: from the model)"},
    {"mpp-tolerance", 0, "T", ON_RUN | ON_CALIBRATE, K_DOUBLE, F(run.mpp_tolerance), 0, 0.5, NULL,
     NULL, "no resampling within this relative difference (0.05)"},
    {"level", 0, "N", ON_RUN | ON_CALIBRATE, K_INT, F(run.level), 0, 1000, NULL, NULL,
     "read this pyramid level as is (default: chosen from µm/px)"},
    {"tile", 0, "N", ON_RUN | ON_CALIBRATE, K_INT, F(run.tile), 1, 65536, NULL, NULL,
     "tile size, for models with a dynamic input size"},
    {"stride", 0, "N", ON_RUN, K_INT, F(run.stride), 1, 65536, NULL, NULL,
     "step between tiles in model pixels (default: the tile size)"},
    {"cam", 0, "MODE", ON_RUN, K_FN, 0, 0, 0, set_cam, NULL,
     "seamless (default: the trunk runs over the slide with context, no tile seams) or tile "
     "(every tile on its own, as the original tool)"},
    {"precision", 0, "P", ON_RUN, K_FN, 0, 0, 0, set_precision, NULL,
     "fp32 (default) or int8: int8 convolutions calibrated on 16 of the slide's tiles (fast "
     "engine)"},
    {"calibration", 0, "FILE", ON_RUN, K_STR, F(calibration_path), 0, 0, NULL, NULL,
     "int8: the ranges in FILE (from tileheat calibrate) instead of the slide's own"},
    {"sample", 0, "N", ON_CALIBRATE, K_INT, F(sample), 1, 100000, NULL, NULL,
     "tiles in the calibration sample, spread evenly over the slides (default 64)"},
    {"edge", 0, "MODE", ON_RUN, K_FN, 0, 0, 0, set_edge, NULL,
     "ignore (default) or pad the partial right/bottom tiles"},
    {"roi", 0, "X,Y,W,H", ON_RUN, K_FN, 0, 0, 0, set_roi, NULL, "run only this level-0 region"},
    {"min-tissue", 0, "F", ON_RUN | ON_CALIBRATE, K_DOUBLE, F(run.min_tissue), 0, 1, NULL, NULL,
     "skip tiles with less tissue, 0-1; 0 = no tissue detection (0.1)"},
    {"width", 0, "N", ON_RUN, K_INT, F(render.width), 16, 1000000, NULL,
     "Drawing and outputs:", "heatmap long side in pixels (default 2000)"},
    {"alpha", 0, "A", ON_RUN, K_DOUBLE, F(render.alpha), 0, 1, NULL, NULL,
     "overlay opacity, 0-1 (default 0.5)"},
    {"tint-glass", 0, NULL, ON_RUN, K_FLAG, F(render.tint_glass), 0, 0, NULL, NULL,
     "tint glass too (default: pixels the tissue mask calls glass stay clear)"},
    {"norm", 0, "MODE", ON_RUN, K_FN, 0, 0, 0, set_norm, NULL, "percentile (default) or raw"},
    {"percentile", 0, "P", ON_RUN, K_DOUBLE, F(render.percentile), 1, 100, NULL, NULL,
     "percentile for --norm percentile (default 99)"},
    {"tiff", 0, NULL, ON_RUN, K_FLAG, F(tiff), 0, 0, NULL, NULL,
     "also heatmap.tiff: full-resolution pyramidal BigTIFF"},
    {"geojson", 0, NULL, ON_RUN, K_FLAG, F(geojson), 0, 0, NULL, NULL,
     "also tiles.geojson for QuPath"},
    {"raw", 0, NULL, ON_RUN, K_FLAG, F(raw), 0, 0, NULL, NULL,
     "also cam.npy and probabilities.npy"},
    {"viewer", 0, NULL, ON_RUN, K_FLAG, F(viewer), 0, 0, NULL, NULL,
     "also viewer/: a zoomable slide + heatmap page (viewer/index.html; no server needed)"},
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static const struct {
    const char *name;
    cli_command cmd;
} commands[] = {{"single", CMD_SINGLE}, {"multi", CMD_MULTI},         {"info", CMD_INFO},
                {"batch", CMD_BATCH},   {"summarize", CMD_SUMMARIZE}, {"convert", CMD_CONVERT},
                {"view", CMD_VIEW},     {"calibrate", CMD_CALIBRATE}};

// The ON_* bit an option needs: batch options are those of its mode plus its own.
static bool applies(const cli_opts *o, const option_def *d)
{
    if (o->cmd == CMD_BATCH) {
        return (d->on & ON_BATCH) || (d->on & (o->single ? ON_SINGLE : ON_MULTI));
    }
    return (d->on & (1u << o->cmd)) != 0;
}

const char *cli_command_name(const cli_opts *o)
{
    switch (o->cmd) {
    case CMD_BATCH:
        return o->single ? "batch single" : "batch multi";
    case CMD_SUMMARIZE:
        return "summarize";
    case CMD_VIEW:
        return "view";
    case CMD_CALIBRATE:
        return "calibrate";
    case CMD_INFO:
        return "info";
    case CMD_CONVERT:
        return "convert";
    case CMD_NONE:
        return NULL;
    default:
        return o->single ? "single" : "multi";
    }
}

void cli_usage_main(FILE *fp)
{
    fprintf(fp, "Usage: tileheat COMMAND [OPTION...] SLIDE\n"
                "Class activation heatmaps of whole-slide images with a VGG-GAP classifier.\n\n"
                "Commands:\n"
                "  single SLIDE             one class over the slide with a colour map\n"
                "  multi SLIDE              up to six classes at once, each in its own colour, "
                "with a legend\n"
                "  info [SLIDE | MODEL]     describe the model (and the slide)\n"
                "  batch single|multi COHORT -o OUTDIR\n"
                "                           every slide of a cohort, resumable, shardable\n"
                "  summarize OUTDIR         write a batch's cohort.csv and cohort.json\n"
                "  convert MODEL -o OUT.onnx\n"
                "                           write a Keras (.h5, .keras) or ONNX model as one "
                "ONNX file\n\n"
                "  view DIR                 write DIR/viewer/ from a finished run's folder\n"
                "  calibrate SLIDE|COHORT... -o FILE.json\n"
                "                           int8 ranges measured once for a cohort "
                "(--calibration)\n\n"
                "  tileheat COMMAND --help   options of a command\n"
                "  tileheat --version        print the version\n\n"
                "Outputs (in -o DIR, default SLIDE-NAME.tileheat/): heatmap.png, report.json, "
                "tiles.csv.\n");
}

static void usage_command(const cli_opts *o, FILE *fp)
{
    switch (o->cmd) {
    case CMD_INFO:
        fprintf(fp, "Usage: tileheat info [SLIDE | MODEL] [OPTION...]\n"
                    "Describe the model (its classes, input size, preprocessing and layers), and "
                    "the slide if one is\ngiven. A file ending .onnx, .h5, .hdf5 or .keras is "
                    "taken as the model.\n\n");
        break;
    case CMD_CONVERT:
        fprintf(fp, "Usage: tileheat convert MODEL -o OUT.onnx [OPTION...]\n"
                    "Write MODEL (Keras .h5 or .keras, or ONNX) as a standard ONNX file, with "
                    "its class names, µm/px,\ninput size and preprocessing in its metadata, for "
                    "tileheat, ONNX Runtime and netron.\n\n");
        break;
    case CMD_VIEW:
        fprintf(fp, "Usage: tileheat view DIR [OPTION...]\n"
                    "Write DIR/viewer/ (what --viewer writes) from the output folder of a finished "
                    "run:\nthe slide, model and options come from DIR/run.json and report.json, "
                    "and the slide is run again.\n\n");
        break;
    case CMD_CALIBRATE:
        fprintf(fp, "Usage: tileheat calibrate SLIDE|COHORT... -o FILE.json [OPTION...]\n"
                    "Measure int8's activation ranges once for a cohort: a sample of tissue "
                    "tiles, spread evenly\nover the slides (a COHORT is what batch takes), run "
                    "in float32, then in int8 on those ranges and\ncompared. Runs use FILE with "
                    "--precision int8 --calibration FILE.\n\n");
        break;
    case CMD_SUMMARIZE:
        fprintf(fp, "Usage: tileheat summarize OUTDIR [OPTION...]\n"
                    "Write OUTDIR/cohort.csv and cohort.json from a batch's results (every "
                    "shard's).\n\n");
        break;
    case CMD_BATCH:
        fprintf(fp,
                "Usage: tileheat %s COHORT -o OUTDIR [OPTION...]\n"
                "Run every slide of COHORT (a CSV or TSV with a 'slide' column and optional "
                "id, mpp,%s roi;\na file of one path per line; or a directory) into "
                "OUTDIR/<id>/. Done slides are skipped.\nstdout: one line per slide, "
                "<id> TAB <done|skipped|failed|locked> TAB <seconds> TAB <message>.\n"
                "Exit status 0 when no slide failed, 3 when some did.\n\n",
                cli_command_name(o), o->single ? " class," : "");
        break;
    default:
        fprintf(fp, "Usage: tileheat %s SLIDE [OPTION...]\n%s\n\n", cli_command_name(o),
                o->single ? "Draw one class's activation map over the slide."
                          : "Draw up to six classes at once, each in its own fixed colour.");
    }
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const option_def *d = &options[i];
        if (!applies(o, d)) {
            continue;
        }
        if (d->section) {
            fprintf(fp, "\n%s\n", d->section);
        }
        char left[64];
        bool file = o->cmd == CMD_CONVERT && d->field == F(out_dir); // convert -o: a file
        snprintf(left, sizeof(left), "%c%c%c --%s%s%s", d->short_name ? '-' : ' ',
                 d->short_name ? d->short_name : ' ', d->short_name ? ',' : ' ', d->name,
                 d->value ? " " : "",
                 file       ? "FILE"
                 : d->value ? d->value
                            : "");
        fprintf(fp, "  %-25s %s\n", left, file ? "the ONNX file to write (required)" : d->help);
    }
}

static bool parse_int(const option_def *d, const char *s, int *out, cli_err *e)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < d->lo || v > d->hi) {
        return cli_fail(e, "--%s: expected a whole number from %g to %g, got '%s'", d->name, d->lo,
                        d->hi, s);
    }
    *out = (int)v;
    return true;
}

static bool parse_double(const option_def *d, const char *s, double *out, cli_err *e)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !(v >= d->lo && v <= d->hi)) {
        return cli_fail(e, "--%s: expected a number from %g to %g, got '%s'", d->name, d->lo, d->hi,
                        s);
    }
    *out = v;
    return true;
}

static bool set_option(cli_opts *o, const option_def *d, const char *arg, cli_err *e)
{
    char *field = (char *)o + d->field;
    switch (d->kind) {
    case K_FLAG:
        *(bool *)field = true;
        return true;
    case K_STR:
        *(const char **)field = arg;
        return true;
    case K_INT:
        return parse_int(d, arg, (int *)field, e);
    case K_DOUBLE:
        return parse_double(d, arg, (double *)field, e);
    case K_FN:
        return d->set(o, arg, e);
    }
    return false;
}

// getopt_long's list and short-option string, from the table.
static void getopt_tables(struct option *longs, char *shorts)
{
    char *p = shorts;
    *p++ = ':';
    for (size_t i = 0; i < N_OPTIONS; i++) {
        longs[i] =
            (struct option){options[i].name, options[i].value ? required_argument : no_argument,
                            NULL, (int)(256 + i)};
        if (options[i].short_name) {
            *p++ = options[i].short_name;
            if (options[i].value) {
                *p++ = ':';
            }
        }
    }
    longs[N_OPTIONS] = (struct option){NULL, 0, NULL, 0};
    *p = 0;
}

static const option_def *find_short(int c)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (options[i].short_name == c) {
            return &options[i];
        }
    }
    return NULL;
}

// The command word(s): "single", "batch multi", ... Returns how many arguments they took.
static int parse_command(cli_opts *o, int argc, char **argv, cli_err *e)
{
    const char *sub = argv[1];
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(sub, commands[i].name) == 0) {
            o->cmd = commands[i].cmd;
            o->single = o->cmd == CMD_SINGLE;
            if (o->cmd != CMD_BATCH) {
                return 1;
            }
            const char *mode = argc > 2 ? argv[2] : "";
            if (strcmp(mode, "single") != 0 && strcmp(mode, "multi") != 0) {
                if (strcmp(mode, "--help") == 0 || strcmp(mode, "-h") == 0) {
                    return 1; // batch --help: the multi mode's
                }
                cli_fail(e, "batch: expected single or multi after 'batch', got '%s'", mode);
                return -1;
            }
            o->single = strcmp(mode, "single") == 0;
            return 2;
        }
    }
    cli_fail(e,
             "unknown command '%s' (single, multi, info, batch, summarize, convert, view, "
             "calibrate)",
             sub);
    return -1;
}

static void defaults(cli_opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof(*o));
    o->cmd = CMD_NONE;
    o->top = 3;
    o->lock_timeout = 86400;
    o->sample = 64;
    o->argc = argc;
    o->argv = argv;
    th_run_options_init(&o->run);
    th_render_options_init(&o->render);
}

// The positional arguments: one slide (info: at most one), one cohort, one folder.
static cli_parsed positional(cli_opts *o, int rest, char **args, cli_err *e)
{
    const char *what = o->cmd == CMD_BATCH                             ? "cohort"
                       : o->cmd == CMD_SUMMARIZE || o->cmd == CMD_VIEW ? "output folder"
                       : o->cmd == CMD_CONVERT                         ? "model"
                       : o->cmd == CMD_CALIBRATE                       ? "slide or cohort"
                                                                       : "slide";
    if (rest == 0 && o->cmd != CMD_INFO) {
        cli_fail(e, "no %s given", what);
        return CLI_USAGE;
    }
    if (rest > 1 && o->cmd != CMD_CALIBRATE) {
        cli_fail(e, "one %s at a time (got '%s' and '%s')", what, args[0], args[1]);
        return CLI_USAGE;
    }
    o->input = rest ? args[0] : NULL;
    o->inputs = args;
    o->n_inputs = rest;
    if (o->cmd == CMD_CALIBRATE && !o->out_dir) {
        cli_fail(e, "calibrate needs an output file: -o FILE.json");
        return CLI_USAGE;
    }
    if (o->calibration_path && o->run.precision != TH_PRECISION_INT8) {
        cli_fail(e, "--calibration needs --precision int8");
        return CLI_USAGE;
    }
    if (o->run.precision == TH_PRECISION_INT8 && o->run.engine == TH_ENGINE_REF) {
        cli_fail(e, "--precision int8 needs the fast engine (--engine fast or winograd), not ref");
        return CLI_USAGE;
    }
    if (o->cmd == CMD_BATCH && !o->out_dir) {
        cli_fail(e, "batch needs an output folder: -o OUTDIR");
        return CLI_USAGE;
    }
    if (o->cmd == CMD_CONVERT && !o->out_dir) {
        cli_fail(e, "convert needs an output file: -o OUT.onnx");
        return CLI_USAGE;
    }
    return CLI_RUN;
}

void cli_opts_free(cli_opts *o)
{
    free(o->owned_argv);
    o->owned_argv = NULL;
    th_calibration_free(o->calibration);
    o->calibration = NULL;
}

cli_parsed cli_parse(cli_opts *o, int argc, char **argv, cli_err *e)
{
    defaults(o, argc, argv);
    int taken = parse_command(o, argc, argv, e);
    if (taken < 0) {
        return CLI_USAGE;
    }
    struct option longs[N_OPTIONS + 1];
    char shorts[2 * N_OPTIONS + 2];
    getopt_tables(longs, shorts);
    // getopt_long moves the operands behind the options: it gets a copy, so that argv stays as
    // typed (run.json records it)
    int sub_argc = argc - taken;
    char **sub_argv = calloc((size_t)sub_argc + 1, sizeof(char *));
    if (!sub_argv) {
        cli_fail(e, "out of memory");
        return CLI_USAGE;
    }
    memcpy(sub_argv, argv + taken, sizeof(char *) * (size_t)sub_argc);
    o->owned_argv = sub_argv;
    int c, li = -1;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(sub_argc, sub_argv, shorts, longs, &li)) != -1) {
        const option_def *d = c >= 256 ? &options[c - 256] : find_short(c);
        li = -1;
        if (c == '?') {
            cli_fail(e, "unknown option '%s'", sub_argv[optind - 1]);
            return CLI_USAGE;
        }
        if (c == ':') {
            cli_fail(e, "option '%s' needs a value", sub_argv[optind - 1]);
            return CLI_USAGE;
        }
        if (strcmp(d->name, "help") == 0) {
            usage_command(o, stdout);
            return CLI_HELP;
        }
        if (!applies(o, d)) {
            cli_fail(e, "option '--%s' does not apply to '%s'", d->name, cli_command_name(o));
            return CLI_USAGE;
        }
        if (!set_option(o, d, optarg, e)) {
            return CLI_USAGE;
        }
    }
    o->render.threads = o->run.threads;
    return positional(o, sub_argc - optind, sub_argv + optind, e);
}
