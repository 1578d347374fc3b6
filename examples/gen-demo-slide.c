/* SPDX-License-Identifier: MIT */
/* gen-demo-slide: write a synthetic H&E-like pyramidal tiled TIFF (256x256 JPEG tiles, 0.5 um/px)
 * that OpenSlide opens as "generic-tiff". Every pixel is a procedural function of its level-0
 * position and the seed, so each level is generated tile by tile in constant memory, at any size,
 * and the same seed and size always give the same bytes. With --islands, a few blobs of tissue lie
 * on clean glass, and every all-glass tile of a level is one JPEG written over and over: fast at
 * 100 000 x 100 000. A standalone example: libtiff and libm. This file is the command line;
 * gen-demo-slide-render.c draws the tiles, gen-demo-slide-tiff.c writes the pyramid. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gen-demo-slide.h"

#define MAX_SIDE 1000000

/* ---- command line */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s [--width W] [--height H] [--seed S] [--quality Q] [--islands N]\n"
            "       [-o OUT.tif]\n"
            "Write a synthetic H&E-like pyramidal TIFF (256x256 JPEG tiles, 0.5 um/px) that\n"
            "OpenSlide opens as generic-tiff. The same seed and size give identical files.\n"
            "\n"
            "  --width W     level-0 width in pixels (default 8000)\n"
            "  --height H    level-0 height in pixels (default 6000)\n"
            "  --seed S      seed, 0 to 4294967295 (default 1)\n"
            "  --quality Q   JPEG quality, 1 to 100 (default 85)\n"
            "  --islands N   N islands of tissue, 1 to %d, on spotless glass, covering about\n"
            "                %.0f%% of the slide; all-glass tiles are encoded once per level,\n"
            "                so even 100000x100000 takes minutes (default: one tissue mass\n"
            "                over about half of the slide, on glass with dust)\n"
            "  --no-glass-cache  render and encode every all-glass tile (slow; same file)\n"
            "  -o OUT.tif    output file (default demo-slide.tif)\n"
            "  -v, --verbose print the speed summary even when stderr is not a terminal\n"
            "  --help        show this help\n"
            "\n"
            "Exit status: 0 success, 1 failure while writing, 2 usage error.\n",
            PROG, MAX_ISLANDS, 100.0 * ISLAND_FRACTION);
}

static bool parse_uint(const char *name, const char *arg, unsigned long long lo,
                       unsigned long long hi, unsigned long long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (arg[0] < '0' || arg[0] > '9' || *end != '\0' || errno != 0 || v < lo || v > hi) {
        fprintf(stderr, "%s: %s: expected an integer from %llu to %llu, got '%s'\n", PROG, name, lo,
                hi, arg);
        return false;
    }
    *out = v;
    return true;
}

typedef struct {
    unsigned long long width, height, seed, quality, islands;
    const char *out;
    bool verbose;
    bool cache_glass; // false: --no-glass-cache
} options;

// Returns 0 to go on, 2 on a usage error, -1 after --help.
static int parse_args(int argc, char **argv, options *o)
{
    static const struct option longopts[] = {
        {"width", required_argument, NULL, 'W'},   {"height", required_argument, NULL, 'H'},
        {"seed", required_argument, NULL, 'S'},    {"quality", required_argument, NULL, 'Q'},
        {"output", required_argument, NULL, 'o'},  {"verbose", no_argument, NULL, 'v'},
        {"islands", required_argument, NULL, 'I'}, {"no-glass-cache", no_argument, NULL, 'G'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    *o = (options){8000, 6000, 1, 85, 0, "demo-slide.tif", false, true};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:vh", longopts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'W':
            ok = parse_uint("--width", optarg, 16, MAX_SIDE, &o->width);
            break;
        case 'H':
            ok = parse_uint("--height", optarg, 16, MAX_SIDE, &o->height);
            break;
        case 'S':
            ok = parse_uint("--seed", optarg, 0, UINT32_MAX, &o->seed);
            break;
        case 'Q':
            ok = parse_uint("--quality", optarg, 1, 100, &o->quality);
            break;
        case 'I':
            ok = parse_uint("--islands", optarg, 1, MAX_ISLANDS, &o->islands);
            break;
        case 'G':
            o->cache_glass = false;
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'v':
            o->verbose = true;
            break;
        case 'h':
            usage(stdout);
            return -1;
        case ':':
            fprintf(stderr, "%s: %s: missing value\n", PROG, argv[optind - 1]);
            ok = false;
            break;
        default:
            if (optopt != 0) {
                fprintf(stderr, "%s: unknown option '-%c'\n", PROG, optopt);
            } else {
                fprintf(stderr, "%s: unknown option '%s'\n", PROG, argv[optind - 1]);
            }
            ok = false;
            break;
        }
        if (!ok) {
            fprintf(stderr, "Try '%s --help'.\n", PROG);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\nTry '%s --help'.\n", PROG, argv[optind],
                PROG);
        return 2;
    }
    if (o->out[0] == '\0') {
        fprintf(stderr, "%s: -o: empty file name\nTry '%s --help'.\n", PROG, PROG);
        return 2;
    }
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void report_speed(const char *out, const pyramid *p, const status *st, double seconds)
{
    double mpx0 = (double)p->width[0] * p->height[0] / 1e6, mpx = 0.0;
    for (int k = 0; k < p->count; k++) {
        mpx += (double)p->width[k] * p->height[k] / 1e6;
    }
    struct stat sb;
    double mb = stat(out, &sb) == 0 ? (double)sb.st_size / 1e6 : 0.0;
    fprintf(stderr,
            "%s: wrote %s: %ux%u, %d levels, %.1f MB; %.1f Mpx at level 0 (%.1f Mpx in all) "
            "in %.2f s: %.1f Mpx/s (level 0)\n",
            PROG, out, p->width[0], p->height[0], p->count, mb, mpx0, mpx, seconds, mpx0 / seconds);
    struct rusage ru;
    double peak_mb = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss / 1024.0 : 0.0; // KiB
    fprintf(stderr,
            "%s: %llu tiles, %llu of them copies of their level's glass tile; "
            "peak RSS %.1f MiB\n",
            PROG, (unsigned long long)st->total, (unsigned long long)st->glass, peak_mb);
}

static char tmp_name[4096]; // the temporary output, removed if a signal stops us

static void on_signal(int sig)
{
    unlink(tmp_name); // async-signal-safe
    signal(sig, SIG_DFL);
    raise(sig);
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) {
        return rc < 0 ? 0 : rc;
    }
    struct stat sb;
    if (stat(o.out, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "%s: %s: is a directory\n", PROG, o.out);
        return 1;
    }
    double t0 = now();
    scene s;
    pyramid p;
    status st = {.show = isatty(STDERR_FILENO) != 0};
    if (!scene_init(&s, (uint32_t)o.seed, (uint32_t)o.width, (uint32_t)o.height, (int)o.islands)) {
        fprintf(stderr, "%s: out of memory\n", PROG);
        return 1;
    }
    pyramid_plan(&p, (uint32_t)o.width, (uint32_t)o.height);
    // Write to a temporary name beside the output, then rename: no half-written slide.
    char *tmp = tmp_name;
    if (snprintf(tmp, sizeof(tmp_name), "%s.tmp%ld", o.out, (long)getpid()) >=
        (int)sizeof(tmp_name)) {
        fprintf(stderr, "%s: %s: path too long\n", PROG, o.out);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    bool ok = write_slide(tmp, &s, &p, (int)o.quality, o.cache_glass, &st);
    if (st.show) {
        fputc('\n', stderr);
    }
    if (ok && rename(tmp, o.out) != 0) {
        snprintf(st.msg, sizeof(st.msg), "cannot rename the temporary file: %s", strerror(errno));
        ok = false;
    }
    if (!ok) {
        fprintf(stderr, "%s: %s: %s\n", PROG, o.out, st.msg[0] ? st.msg : "write failed");
        unlink(tmp);
    } else if (st.show || o.verbose) {
        report_speed(o.out, &p, &st, now() - t0);
    }
    return ok ? 0 : 1;
}
