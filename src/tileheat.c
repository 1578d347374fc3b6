/* SPDX-License-Identifier: MIT */
/* The tileheat command: `single`, `multi` and `info`. The only place that prints to the user or
 * chooses an exit code (0 success, 1 runtime failure, 2 usage error). Uses the public API only. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <tiffio.h>

#include "tileheat.h"

#define EXIT_USAGE 2

typedef enum { CMD_SINGLE, CMD_MULTI, CMD_INFO } command;

typedef struct cli {
    command cmd;
    const char *slide_path;
    const char *model_path; // as given, or the default model found
    const char *classes;    // --classes: new names for the model's classes
    const char *class_name; // single: --class
    const char *shown;      // multi: --classes-shown
    int top;                // multi: --top
    const char *out_dir;
    char *out_dir_owned;
    bool quiet;
    bool tiff, geojson, raw; // extra outputs
    int argc;                // the command line, for run.json
    char **argv;
    th_run_options run;
    th_render_options render;
} cli;

static const char *progname = "tileheat";

static void die_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", progname);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry '%s %s--help'.\n", progname, cmd ? cmd : "");
    va_end(ap);
    exit(EXIT_USAGE);
}

// "tileheat: <context>: <message>", exit 1; frees nothing (the process ends).
static void die_error(const char *context, th_error *err)
{
    fprintf(stderr, "%s: %s%s%s\n", progname, context ? context : "", context ? ": " : "",
            th_error_message(err));
    th_error_free(err);
    exit(EXIT_FAILURE);
}

static const char *cmd_name(command c)
{
    return c == CMD_SINGLE ? "single " : c == CMD_MULTI ? "multi " : "info ";
}

static void usage_main(FILE *fp)
{
    fprintf(fp,
            "Usage: tileheat COMMAND [OPTION...] SLIDE\n"
            "Class activation heatmaps of whole-slide images with a VGG-GAP classifier.\n\n"
            "Commands:\n"
            "  single SLIDE   one class over the slide with a colour map\n"
            "  multi SLIDE    up to six classes at once, each in its own colour, with a legend\n"
            "  info [SLIDE]   describe the model (and the slide)\n\n"
            "  tileheat COMMAND --help   options of a command\n"
            "  tileheat --version        print the version\n\n"
            "Outputs (in -o DIR, default SLIDE-NAME.tileheat/): heatmap.png, report.json, "
            "tiles.csv.\n");
}

static void usage_run(FILE *fp, command c)
{
    fprintf(fp, "Usage: tileheat %sSLIDE [OPTION...]\n", cmd_name(c));
    if (c == CMD_SINGLE) {
        fprintf(fp, "Draw one class's activation map over the slide.\n\n"
                    "  -c, --class NAME        class to show (default: the top non-background "
                    "class)\n"
                    "      --colormap NAME     viridis (default), inferno, magma, jet, ylorrd\n");
    } else {
        fprintf(fp, "Draw up to six classes at once, each in its own fixed colour.\n\n"
                    "      --top N             show the N classes with the highest slide "
                    "percentage, 1-6 (default 3)\n"
                    "      --classes-shown A,B show these classes instead, in this order\n"
                    "      --threshold T       normalised strength below which a pixel stays "
                    "clear, 0-1 (default 0.2)\n");
    }
    fprintf(fp, "  -m, --model FILE        ONNX model (default: the bundled tissue model)\n"
                "      --classes A,B,...   rename the model's classes\n"
                "  -o, --output DIR        output directory (default: SLIDE-NAME.tileheat)\n"
                "      --threads N         worker threads (default: all cores)\n"
                "      --engine NAME       winograd (default when built with oneDNN), fast or ref\n"
                "  -q, --quiet             no progress bar, no table\n"
                "  -h, --help              this help\n\n"
                "Resolution and tiling:\n"
                "      --mpp X             the slide's µm/px (default: from the slide)\n"
                "      --model-mpp X       the model's µm/px (default: from the model)\n"
                "      --mpp-tolerance T   no resampling within this relative difference (0.05)\n"
                "      --level N           read this pyramid level as is (default: chosen from "
                "µm/px)\n"
                "      --tile N            tile size, for models with a dynamic input size\n"
                "      --stride N          step between tiles in model pixels (default: the tile "
                "size)\n"
                "      --edge MODE         ignore (default) or pad the partial right/bottom tiles\n"
                "      --roi X,Y,W,H       run only this level-0 region\n"
                "      --min-tissue F      skip tiles with less tissue, 0-1; 0 = no tissue "
                "detection (0.1)\n\n"
                "Drawing and outputs:\n"
                "      --width N           heatmap long side in pixels (default 2000)\n"
                "      --alpha A           overlay opacity, 0-1 (default 0.5)\n"
                "      --norm MODE         percentile (default) or raw\n"
                "      --percentile P      percentile for --norm percentile (default 99)\n"
                "      --tiff              also heatmap.tiff: full-resolution pyramidal BigTIFF\n"
                "      --geojson           also tiles.geojson for QuPath\n"
                "      --raw               also cam.npy and probabilities.npy\n");
}

static void usage_info(FILE *fp)
{
    fprintf(fp, "Usage: tileheat info [SLIDE] [OPTION...]\n"
                "Describe the model, and the slide if one is given.\n\n"
                "  -m, --model FILE        ONNX model (default: the bundled tissue model)\n"
                "      --classes A,B,...   rename the model's classes\n"
                "  -h, --help              this help\n");
}

static int parse_int_arg(const char *cmd, const char *opt, const char *s, int lo, int hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        die_usage(cmd, "%s: expected a whole number from %d to %d, got '%s'", opt, lo, hi, s);
    }
    return (int)v;
}

static double parse_double_arg(const char *cmd, const char *opt, const char *s, double lo,
                               double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !(v >= lo && v <= hi)) {
        die_usage(cmd, "%s: expected a number from %g to %g, got '%s'", opt, lo, hi, s);
    }
    return v;
}

enum {
    OPT_CLASSES = 256,
    OPT_LEVEL,
    OPT_TILE,
    OPT_THREADS,
    OPT_ENGINE,
    OPT_WIDTH,
    OPT_ALPHA,
    OPT_NORM,
    OPT_PERCENTILE,
    OPT_COLORMAP,
    OPT_TOP,
    OPT_SHOWN,
    OPT_THRESHOLD,
    OPT_MPP,
    OPT_MODEL_MPP,
    OPT_MPP_TOLERANCE,
    OPT_MIN_TISSUE,
    OPT_STRIDE,
    OPT_EDGE,
    OPT_ROI,
    OPT_TIFF,
    OPT_GEOJSON,
    OPT_RAW,
};

static const struct option long_options[] = {
    {"model", required_argument, NULL, 'm'},
    {"classes", required_argument, NULL, OPT_CLASSES},
    {"output", required_argument, NULL, 'o'},
    {"level", required_argument, NULL, OPT_LEVEL},
    {"tile", required_argument, NULL, OPT_TILE},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"engine", required_argument, NULL, OPT_ENGINE},
    {"width", required_argument, NULL, OPT_WIDTH},
    {"alpha", required_argument, NULL, OPT_ALPHA},
    {"norm", required_argument, NULL, OPT_NORM},
    {"percentile", required_argument, NULL, OPT_PERCENTILE},
    {"class", required_argument, NULL, 'c'},
    {"colormap", required_argument, NULL, OPT_COLORMAP},
    {"top", required_argument, NULL, OPT_TOP},
    {"classes-shown", required_argument, NULL, OPT_SHOWN},
    {"threshold", required_argument, NULL, OPT_THRESHOLD},
    {"mpp", required_argument, NULL, OPT_MPP},
    {"model-mpp", required_argument, NULL, OPT_MODEL_MPP},
    {"mpp-tolerance", required_argument, NULL, OPT_MPP_TOLERANCE},
    {"min-tissue", required_argument, NULL, OPT_MIN_TISSUE},
    {"stride", required_argument, NULL, OPT_STRIDE},
    {"edge", required_argument, NULL, OPT_EDGE},
    {"roi", required_argument, NULL, OPT_ROI},
    {"tiff", no_argument, NULL, OPT_TIFF},
    {"geojson", no_argument, NULL, OPT_GEOJSON},
    {"raw", no_argument, NULL, OPT_RAW},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

// Options that belong to one command only: refuse them elsewhere rather than ignore them.
static bool option_allowed(command c, int opt)
{
    switch (opt) {
    case 'c':
    case OPT_COLORMAP:
        return c == CMD_SINGLE;
    case OPT_TOP:
    case OPT_SHOWN:
    case OPT_THRESHOLD:
        return c == CMD_MULTI;
    case 'm':
    case OPT_CLASSES:
    case 'h':
        return true;
    default:
        return c != CMD_INFO;
    }
}

// --roi x,y,w,h in level-0 pixels.
static void parse_roi(cli *a, const char *arg)
{
    long long v[4];
    char tail;
    if (sscanf(arg, "%lld,%lld,%lld,%lld%c", &v[0], &v[1], &v[2], &v[3], &tail) != 4 || v[0] < 0 ||
        v[1] < 0 || v[2] <= 0 || v[3] <= 0) {
        die_usage(cmd_name(a->cmd),
                  "--roi: expected X,Y,W,H in level-0 pixels (W, H > 0), got "
                  "'%s'",
                  arg);
    }
    a->run.roi_x = v[0];
    a->run.roi_y = v[1];
    a->run.roi_w = v[2];
    a->run.roi_h = v[3];
}

static void parse_option(cli *a, int opt, const char *arg)
{
    const char *cmd = cmd_name(a->cmd);
    switch (opt) {
    case 'm':
        a->model_path = arg;
        break;
    case OPT_CLASSES:
        a->classes = arg;
        break;
    case 'o':
        a->out_dir = arg;
        break;
    case OPT_LEVEL:
        a->run.level = parse_int_arg(cmd, "--level", arg, 0, 1000);
        break;
    case OPT_MPP:
        a->run.slide_mpp = parse_double_arg(cmd, "--mpp", arg, 0.01, 1000);
        break;
    case OPT_MODEL_MPP:
        a->run.model_mpp = parse_double_arg(cmd, "--model-mpp", arg, 0.01, 1000);
        break;
    case OPT_MPP_TOLERANCE:
        a->run.mpp_tolerance = parse_double_arg(cmd, "--mpp-tolerance", arg, 0, 0.5);
        break;
    case OPT_MIN_TISSUE:
        a->run.min_tissue = parse_double_arg(cmd, "--min-tissue", arg, 0, 1);
        break;
    case OPT_STRIDE:
        a->run.stride = parse_int_arg(cmd, "--stride", arg, 1, 65536);
        break;
    case OPT_EDGE:
        if (strcmp(arg, "ignore") != 0 && strcmp(arg, "pad") != 0) {
            die_usage(cmd, "--edge: expected ignore or pad, got '%s'", arg);
        }
        a->run.edge_pad = strcmp(arg, "pad") == 0;
        break;
    case OPT_ROI:
        parse_roi(a, arg);
        break;
    case OPT_TIFF:
        a->tiff = true;
        break;
    case OPT_GEOJSON:
        a->geojson = true;
        break;
    case OPT_RAW:
        a->raw = true;
        break;
    case OPT_TILE:
        a->run.tile = parse_int_arg(cmd, "--tile", arg, 1, 65536);
        break;
    case OPT_THREADS:
        a->run.threads = parse_int_arg(cmd, "--threads", arg, 1, 1024);
        break;
    case OPT_WIDTH:
        a->render.width = parse_int_arg(cmd, "--width", arg, 16, 1000000);
        break;
    case OPT_ALPHA:
        a->render.alpha = parse_double_arg(cmd, "--alpha", arg, 0, 1);
        break;
    case OPT_PERCENTILE:
        a->render.percentile = parse_double_arg(cmd, "--percentile", arg, 1, 100);
        break;
    case OPT_THRESHOLD:
        a->render.threshold = parse_double_arg(cmd, "--threshold", arg, 0, 0.99);
        break;
    case OPT_TOP:
        a->top = parse_int_arg(cmd, "--top", arg, 1, TH_MAX_SHOWN);
        break;
    case 'c':
        a->class_name = arg;
        break;
    case OPT_SHOWN:
        a->shown = arg;
        break;
    case 'q':
        a->quiet = true;
        break;
    case OPT_ENGINE:
        if (strcmp(arg, "ref") == 0) {
            a->run.engine = TH_ENGINE_REF;
        } else if (strcmp(arg, "fast") == 0) {
            a->run.engine = TH_ENGINE_FAST;
        } else if (strcmp(arg, "winograd") == 0) {
            a->run.engine = TH_ENGINE_WINOGRAD;
        } else {
            die_usage(cmd, "--engine: expected ref, fast or winograd, got '%s'", arg);
        }
        break;
    case OPT_NORM:
        if (strcmp(arg, "percentile") == 0) {
            a->render.norm = TH_NORM_PERCENTILE;
        } else if (strcmp(arg, "raw") == 0) {
            a->render.norm = TH_NORM_RAW;
        } else {
            die_usage(cmd, "--norm: expected percentile or raw, got '%s'", arg);
        }
        break;
    case OPT_COLORMAP:
        if (!th_colormap_from_name(arg, &a->render.colormap)) {
            die_usage(cmd,
                      "--colormap: unknown colour map '%s' (viridis, inferno, magma, jet, "
                      "ylorrd)",
                      arg);
        }
        break;
    }
}

static void parse_args(cli *a, int argc, char **argv)
{
    const char *cmd = cmd_name(a->cmd);
    int opt, li = -1;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":m:o:c:qh", long_options, &li)) != -1) {
        char name[64];
        if (li >= 0) {
            snprintf(name, sizeof(name), "--%s", long_options[li].name);
        } else {
            snprintf(name, sizeof(name), "-%c", opt);
        }
        li = -1;
        if (opt == '?') {
            die_usage(cmd, "unknown option '%s'", argv[optind - 1]);
        } else if (opt == ':') {
            die_usage(cmd, "option '%s' needs a value", argv[optind - 1]);
        } else if (opt == 'h') {
            a->cmd == CMD_INFO ? usage_info(stdout) : usage_run(stdout, a->cmd);
            exit(EXIT_SUCCESS);
        } else if (!option_allowed(a->cmd, opt)) {
            die_usage(cmd, "option '%s' does not apply to '%.*s'", name, (int)strlen(cmd) - 1, cmd);
        }
        parse_option(a, opt, optarg);
    }
    int rest = argc - optind;
    if (a->cmd != CMD_INFO && rest == 0) {
        die_usage(cmd, "no slide given");
    }
    if (rest > 1) {
        die_usage(cmd, "one slide at a time (got '%s' and '%s')", argv[optind], argv[optind + 1]);
    }
    a->slide_path = rest ? argv[optind] : NULL;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// The bundled model: installed in pkgdatadir, or in the source tree before installation.
static const char *default_model(void)
{
    static const char *candidates[] = {TH_PKGDATADIR "/default.onnx",
                                       TH_SRCDIR "/models/default.onnx"};
    const char *env = getenv("TILEHEAT_MODEL");
    if (env && *env) {
        return env;
    }
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
        if (file_exists(candidates[i])) {
            return candidates[i];
        }
    }
    return NULL;
}

static th_model *load_model(cli *a)
{
    th_error *err = NULL;
    if (!a->model_path) {
        a->model_path = default_model();
        if (!a->model_path) {
            fprintf(stderr,
                    "%s: no --model given and the bundled model is not installed "
                    "(expected %s/default.onnx)\n",
                    progname, TH_PKGDATADIR);
            exit(EXIT_FAILURE);
        }
    }
    th_model *model = th_model_load(a->model_path, &err);
    if (!model) {
        die_error(a->model_path, err);
    }
    if (a->classes && !th_model_set_class_names(model, a->classes, &err)) {
        die_error("--classes", err);
    }
    return model;
}

static int class_or_die(const cli *a, const th_model *model, const char *name)
{
    int c = th_model_find_class(model, name);
    if (c < 0) {
        char list[1024] = "";
        for (int i = 0; i < th_model_get_class_count(model); i++) {
            size_t len = strlen(list);
            snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "",
                     th_model_get_class_name(model, i));
        }
        die_usage(cmd_name(a->cmd), "unknown class '%s' (the model has: %s)", name, list);
    }
    return c;
}

// --classes-shown A,B: resolve names to indices, in the order given.
static int parse_shown(const cli *a, const th_model *model, int *out)
{
    char buf[1024];
    int n = 0;
    snprintf(buf, sizeof(buf), "%s", a->shown);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') {
            tok++;
        }
        for (char *e = tok + strlen(tok); e > tok && e[-1] == ' ';) {
            *--e = 0;
        }
        if (n == TH_MAX_SHOWN) {
            die_usage("multi ", "--classes-shown: at most %d classes", TH_MAX_SHOWN);
        }
        out[n++] = class_or_die(a, model, tok);
    }
    if (n == 0) {
        die_usage("multi ", "--classes-shown: no class named");
    }
    return n;
}

// SLIDE-NAME.tileheat in the current directory: the slide's base name without its extension.
static const char *default_out_dir(cli *a)
{
    const char *base = strrchr(a->slide_path, '/');
    base = base ? base + 1 : a->slide_path;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    a->out_dir_owned = malloc(len + sizeof(".tileheat"));
    if (!a->out_dir_owned) {
        fprintf(stderr, "%s: out of memory\n", progname);
        exit(EXIT_FAILURE);
    }
    memcpy(a->out_dir_owned, base, len);
    strcpy(a->out_dir_owned + len, ".tileheat");
    return a->out_dir_owned;
}

// mkdir -p: the output directory and any missing parents.
static void make_out_dir(const char *dir)
{
    char path[4096];
    struct stat st;
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
        fprintf(stderr, "%s: %s: path too long\n", progname, dir);
        exit(EXIT_FAILURE);
    }
    for (char *p = path + 1;; p++) {
        bool end = *p == 0;
        if (*p == '/' || end) {
            *p = 0;
            if (mkdir(path, 0777) != 0 && errno != EEXIST) {
                fprintf(stderr, "%s: %s: cannot create directory: %s\n", progname, path,
                        strerror(errno));
                exit(EXIT_FAILURE);
            }
            if (end) {
                break;
            }
            *p = '/';
        }
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: %s: not a directory\n", progname, dir);
        exit(EXIT_FAILURE);
    }
}

typedef struct progress_state {
    double start, last;
} progress_state;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// "[#####.....] 1234/5678 tiles  45%  ETA 1:23" on one line, redrawn at most 5 times a second.
static void progress(void *user, int64_t done, int64_t total)
{
    progress_state *st = user;
    double t = now_seconds();
    if (done < total && t - st->last < 0.2) {
        return;
    }
    st->last = t;
    if (done >= total) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
        return;
    }
    enum { BAR = 30 };
    char bar[BAR + 1];
    int fill = total ? (int)(BAR * done / total) : BAR;
    for (int i = 0; i < BAR; i++) {
        bar[i] = i < fill ? '#' : '.';
    }
    bar[BAR] = 0;
    char eta[32] = "--:--";
    if (done > 0) {
        long left = lround((t - st->start) / (double)done * (double)(total - done));
        snprintf(eta, sizeof(eta), "%ld:%02ld", left / 60, left % 60);
    }
    fprintf(stderr, "\r\033[K[%s] %lld/%lld tiles %3d%%  ETA %s", bar, (long long)done,
            (long long)total, total ? (int)(100 * done / total) : 100, eta);
    fflush(stderr);
}

static void print_table(const cli *a, const th_result *r, const th_model *model)
{
    int cols, rows;
    th_result_get_grid(r, &cols, &rows);
    int name_w = 5;
    for (int c = 0; c < th_result_get_class_count(r); c++) {
        int len = (int)strlen(th_model_get_class_name(model, c));
        name_w = len > name_w ? len : name_w;
    }
    printf("%-*s  %8s  %9s\n", name_w, "class", "percent", "top tiles");
    for (int c = 0; c < th_result_get_class_count(r); c++) {
        printf("%-*s  %7.2f%%  %8.2f%%\n", name_w, th_model_get_class_name(model, c),
               th_result_get_percent(r, c), th_result_get_argmax_percent(r, c));
    }
    int64_t total, skipped;
    th_result_get_tile_counts(r, &total, &skipped);
    const char *source;
    double mpp = th_result_get_mpp(r, &source);
    printf("%lld tiles run of %lld (%d × %d), %lld skipped as background; level %d",
           (long long)th_result_get_tile_count(r), (long long)total, cols, rows, (long long)skipped,
           th_result_get_level(r));
    if (mpp > 0) {
        printf(", %.4g µm/px (%s)", mpp * th_result_get_scale(r), source);
    }
    printf("\noutputs in %s/\n", a->out_dir);
}

// The CLI's own stage timings: those before the run (model load, slide open), then the outputs'.
typedef struct timings {
    th_stage stage[10];
    int n_before; // stages before th_run
    int n;
    double t;
} timings;

static void lap(timings *tm, const char *name)
{
    double t = now_seconds();
    tm->stage[tm->n].name = name;
    tm->stage[tm->n].seconds = t - tm->t;
    tm->n++;
    tm->t = t;
}

// Stage timings in the order they ran (the CLI's before the run, the run's, the outputs') and the
// peak resident memory.
static void print_timings(const th_result *r, const timings *tm)
{
    int n;
    const th_stage *st = th_result_get_stages(r, &n);
    printf("time:");
    for (int i = 0; i < n + tm->n; i++) {
        const th_stage *s = i < tm->n_before       ? &tm->stage[i]
                            : i < tm->n_before + n ? &st[i - tm->n_before]
                                                   : &tm->stage[i - n];
        printf("%s %s %.2f s", i ? "," : "", s->name, s->seconds);
    }
    printf("\npeak memory: %.1f MiB\n", (double)th_peak_rss() / (1 << 20));
}

static char *join_path(const char *dir, const char *name)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = malloc(len);
    if (!p) {
        fprintf(stderr, "%s: out of memory\n", progname);
        exit(EXIT_FAILURE);
    }
    snprintf(p, len, "%s/%s", dir, name);
    return p;
}

// Classes named on the command line (--class, --classes-shown), resolved before the long run so
// that a wrong name fails at once. n_shown stays 0 when the run's top classes are to be drawn.
static void name_shown(cli *a, const th_model *model)
{
    th_render_options *ro = &a->render;
    ro->multi = a->cmd == CMD_MULTI;
    ro->n_shown = 0;
    if (a->class_name) {
        ro->shown[0] = class_or_die(a, model, a->class_name);
        ro->n_shown = 1;
    } else if (a->shown) {
        ro->n_shown = parse_shown(a, model, ro->shown);
    }
}

// After the run, unless named: the top class (single) or the --top classes (multi).
static void choose_top(cli *a, const th_result *r, const th_model *model)
{
    th_render_options *ro = &a->render;
    if (ro->n_shown > 0) {
        return;
    }
    if (a->cmd == CMD_SINGLE) {
        ro->n_shown = 1;
        if (th_result_top_classes(r, model, 1, ro->shown) < 1) {
            ro->shown[0] = 0;
        }
        return;
    }
    ro->n_shown = th_result_top_classes(r, model, a->top, ro->shown);
    if (ro->n_shown == 0) {
        fprintf(stderr,
                "%s: every class of the model is a background class; name the classes "
                "to draw with --classes-shown\n",
                progname);
        exit(EXIT_FAILURE);
    }
}

// One output file in the output directory; dies with "tileheat: PATH: message".
typedef bool (*output_fn)(cli *a, th_slide *slide, const th_result *r, const th_model *model,
                          const char *path, th_error **err);

static void write_one(cli *a, th_slide *slide, const th_result *r, const th_model *model,
                      const char *name, output_fn fn)
{
    th_error *err = NULL;
    char *path = join_path(a->out_dir, name);
    if (!fn(a, slide, r, model, path, &err)) {
        die_error(path, err);
    }
    free(path);
}

static bool out_png(cli *a, th_slide *s, const th_result *r, const th_model *m, const char *p,
                    th_error **err)
{
    return th_render_heatmap(s, r, m, &a->render, p, err);
}

static bool out_tiff(cli *a, th_slide *s, const th_result *r, const th_model *m, const char *p,
                     th_error **err)
{
    return th_render_tiff(s, r, m, &a->render, p, err);
}

static bool out_csv(cli *a, th_slide *s, const th_result *r, const th_model *m, const char *p,
                    th_error **err)
{
    return th_report_write_csv(r, m, p, err);
}

static bool out_geojson(cli *a, th_slide *s, const th_result *r, const th_model *m, const char *p,
                        th_error **err)
{
    return th_export_geojson(r, m, p, err);
}

static bool out_tissue(cli *a, th_slide *s, const th_result *r, const th_model *m, const char *p,
                       th_error **err)
{
    return th_result_write_tissue_png(r, p, err);
}

static void write_raw(cli *a, const th_result *r)
{
    th_error *err = NULL;
    char *cam = join_path(a->out_dir, "cam.npy");
    char *probs = join_path(a->out_dir, "probabilities.npy");
    if (!th_export_npy(r, cam, probs, &err)) {
        die_error(a->out_dir, err);
    }
    free(cam);
    free(probs);
}

// report.json and run.json, with the output stages' timings and the peak memory so far.
static void write_reports(cli *a, const th_result *r, const th_model *model, const timings *tm)
{
    th_error *err = NULL;
    th_report_info info = {.slide_path = a->slide_path,
                           .model_path = a->model_path,
                           .command = a->cmd == CMD_SINGLE ? "single" : "multi",
                           .level = th_result_get_level(r),
                           .stages = tm->stage,
                           .n_stages = tm->n,
                           .peak_rss = th_peak_rss(),
                           .argc = a->argc,
                           .argv = a->argv};
    char *json = join_path(a->out_dir, "report.json");
    char *run = join_path(a->out_dir, "run.json");
    if (!th_report_write_json(r, model, &info, json, &err)) {
        die_error(json, err);
    }
    if (!th_report_write_run_json(r, model, &info, run, &err)) {
        die_error(run, err);
    }
    free(json);
    free(run);
}

static void write_outputs(cli *a, th_slide *slide, const th_result *r, const th_model *model,
                          timings *tm)
{
    tm->t = now_seconds();
    write_one(a, slide, r, model, "heatmap.png", out_png);
    lap(tm, "heatmap.png");
    if (a->tiff) {
        write_one(a, slide, r, model, "heatmap.tiff", out_tiff);
        lap(tm, "heatmap.tiff");
    }
    write_one(a, slide, r, model, "tiles.csv", out_csv);
    if (a->run.min_tissue > 0) {
        write_one(a, slide, r, model, "tissue.png", out_tissue);
    }
    if (a->geojson) {
        write_one(a, slide, r, model, "tiles.geojson", out_geojson);
    }
    if (a->raw) {
        write_raw(a, r);
    }
    lap(tm, "other outputs");
    write_reports(a, r, model, tm);
    if (!a->quiet) {
        print_table(a, r, model);
        print_timings(r, tm);
    }
}

static int cmd_run(cli *a)
{
    th_error *err = NULL;
    timings tm = {.t = now_seconds()};
    th_model *model = load_model(a);
    lap(&tm, "model load");
    name_shown(a, model);
    th_slide *slide = th_slide_open(a->slide_path, &err);
    if (!slide) {
        die_error(a->slide_path, err);
    }
    lap(&tm, "slide open");
    tm.n_before = tm.n;
    if (!a->out_dir) {
        a->out_dir = default_out_dir(a);
    }
    make_out_dir(a->out_dir);
    progress_state pst = {.start = now_seconds()};
    if (!a->quiet && isatty(STDERR_FILENO)) {
        a->run.progress = progress;
        a->run.progress_user = &pst;
    }
    th_result *r = th_run(slide, model, &a->run, &err);
    if (!r) {
        die_error(a->slide_path, err);
    }
    const char *source;
    if (th_result_get_mpp(r, &source) > 0 && strcmp(source, "assumed") == 0) {
        fprintf(stderr,
                "%s: warning: %s: no µm/px in the image; taken to be the model's (%g); "
                "give --mpp to set it\n",
                progname, a->slide_path, th_result_get_mpp(r, NULL));
    }
    choose_top(a, r, model);
    write_outputs(a, slide, r, model, &tm);
    th_result_free(r);
    th_slide_close(slide);
    th_model_free(model);
    free(a->out_dir_owned);
    return EXIT_SUCCESS;
}

static void print_model_info(const cli *a, const th_model *model)
{
    int w, h;
    th_model_get_input_size(model, &w, &h);
    printf("model:       %s\n", a->model_path);
    printf("classes:     %d\n", th_model_get_class_count(model));
    for (int c = 0; c < th_model_get_class_count(model); c++) {
        printf("  %d  %s%s\n", c, th_model_get_class_name(model, c),
               th_model_is_background_class(model, c) ? "  (background)" : "");
    }
    if (w > 0) {
        printf("input:       %d × %d px\n", w, h);
    } else {
        printf("input:       dynamic (give --tile)\n");
    }
    if (th_model_get_mpp(model) > 0) {
        printf("mpp:         %g µm/px\n", th_model_get_mpp(model));
    } else {
        printf("mpp:         unknown\n");
    }
    static const char *keys[] = {"source", "created_by", "license"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *v = th_model_get_metadata(model, keys[i]);
        if (v) {
            printf("%-12s %s\n", keys[i], v);
        }
    }
}

static void print_slide_info(const char *path, th_slide *slide)
{
    double mx, my;
    printf("\nslide:       %s\n", path);
    printf("format:      %s\n", th_slide_get_format(slide));
    if (th_slide_get_mpp(slide, &mx, &my)) {
        printf("mpp:         %g × %g µm/px\n", mx, my);
    } else {
        printf("mpp:         unknown\n");
    }
    for (int l = 0; l < th_slide_get_level_count(slide); l++) {
        int64_t w, h;
        th_slide_get_level_dimensions(slide, l, &w, &h);
        printf("level %-2d     %lld × %lld (downsample %g)\n", l, (long long)w, (long long)h,
               th_slide_get_level_downsample(slide, l));
    }
}

static int cmd_info(cli *a)
{
    th_error *err = NULL;
    th_model *model = load_model(a);
    print_model_info(a, model);
    if (a->slide_path) {
        th_slide *slide = th_slide_open(a->slide_path, &err);
        if (!slide) {
            die_error(a->slide_path, err);
        }
        print_slide_info(a->slide_path, slide);
        th_slide_close(slide);
    }
    th_model_free(model);
    return EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
    // libtiff's process-wide handlers print to stderr from inside OpenSlide's reads; the library
    // reports every failure itself, as the one line this program prints.
    TIFFSetErrorHandler(NULL);
    TIFFSetWarningHandler(NULL);
    if (argc < 2) {
        usage_main(stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        usage_main(stdout);
        return EXIT_SUCCESS;
    }
    if (strcmp(sub, "--version") == 0 || strcmp(sub, "-V") == 0) {
        printf("tileheat %s\n", th_version());
        return EXIT_SUCCESS;
    }
    cli a = {.top = 3};
    th_run_options_init(&a.run);
    th_render_options_init(&a.render);
    if (strcmp(sub, "single") == 0) {
        a.cmd = CMD_SINGLE;
    } else if (strcmp(sub, "multi") == 0) {
        a.cmd = CMD_MULTI;
    } else if (strcmp(sub, "info") == 0) {
        a.cmd = CMD_INFO;
    } else {
        die_usage(NULL, "unknown command '%s' (single, multi, info)", sub);
    }
    a.argc = argc;
    a.argv = argv;
    parse_args(&a, argc - 1, argv + 1);
    a.render.threads = a.run.threads;
    return a.cmd == CMD_INFO ? cmd_info(&a) : cmd_run(&a);
}
