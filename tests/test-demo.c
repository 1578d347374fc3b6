/* SPDX-License-Identifier: MIT */
/* The demo slide generator (examples/gen-demo-slide): the file it writes opens in OpenSlide as a
 * generic-tiff pyramid with the expected levels and resolution, shows glass and H&E-like tissue,
 * is byte-identical for the same seed (and thread count), and bad arguments or an unwritable
 * output give exit status 2 or 1 with a message and leave no file behind. With --islands, the
 * slide opens through th_slide_open, is mostly identical white glass tiles around a little
 * tissue, and the glass shortcut changes no byte. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openslide.h>

#include "tap.h"
#include "tileheat.h"

// From src/slide.h, whose th-private.h poisons the plain libc calls this test makes.
extern bool th_slide_direct_reads;

static char gen[1024];  // path of the generator
static char errf[1024]; // its captured stderr

/* Run the generator with `args` (shell syntax), stderr to errf; returns the exit status or -1. */
static int run(const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "'%s' %s >/dev/null 2>'%s'", gen, args, errf);
    int rc = system(cmd);
    return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Whole file into a malloc'd buffer (NUL-terminated); NULL if unreadable.
static char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) != NULL) {
            *size = fread(buf, 1, (size_t)n, f);
            buf[*size] = '\0';
        }
    }
    fclose(f);
    return buf;
}

// The generator's last stderr, its lines joined by " | " so that it fits in one TAP line.
static const char *last_stderr(void)
{
    static char msg[2048];
    size_t n = 0, len = 0;
    char *buf = slurp(errf, &n);
    for (size_t i = 0; buf != NULL && i < n && len + 4 < sizeof(msg); i++) {
        if (buf[i] != '\n') {
            msg[len++] = buf[i];
        } else if (i + 1 < n) {
            memcpy(msg + len, " | ", 3);
            len += 3;
        }
    }
    msg[len] = '\0';
    free(buf);
    return msg;
}

// 1 when both files exist and have the same bytes, 0 when they differ, -1 if one is unreadable.
static int same_bytes(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    int r = x == NULL || y == NULL ? -1 : na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return r;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (d == NULL) {
        return -1;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    }
    closedir(d);
    return n;
}

static const char *tmp_path(const char *name)
{
    static char buf[4][1024];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof(buf[0]), "%s/%s", test_tmpdir(), name);
    return p;
}

/* Pixel statistics of an OpenSlide ARGB region (opaque: the demo slide has no empty tiles). */
typedef struct {
    double glass;  // bright and unsaturated: mean > 215, max - min < 20
    double tissue; // the rest
    double eosin;  // pink: r > g + 40 and r >= b - 5
    double haem;   // dark purple: mean < 130 and b > g + 15
    double opaque; // alpha 255
} stats;

static stats measure(const uint32_t *px, size_t n)
{
    stats st = {0};
    for (size_t i = 0; i < n; i++) {
        int a = px[i] >> 24, r = (px[i] >> 16) & 255, g = (px[i] >> 8) & 255, b = px[i] & 255;
        int hi = r > g ? (r > b ? r : b) : (g > b ? g : b);
        int lo = r < g ? (r < b ? r : b) : (g < b ? g : b);
        double mean = (r + g + b) / 3.0;
        bool glass = mean > 215 && hi - lo < 20;
        st.glass += glass;
        st.tissue += !glass;
        st.eosin += r > g + 40 && r >= b - 5;
        st.haem += mean < 130 && b > g + 15;
        st.opaque += a == 255;
    }
    st.glass /= (double)n, st.tissue /= (double)n, st.eosin /= (double)n;
    st.haem /= (double)n, st.opaque /= (double)n;
    return st;
}

static void test_slide(const char *path)
{
    static const int64_t want_w[] = {3000, 1500, 750, 375}, want_h[] = {2000, 1000, 500, 250};
    is_string(openslide_detect_vendor(path), "generic-tiff", "vendor is generic-tiff");
    openslide_t *osr = openslide_open(path);
    if (!ok(osr != NULL && openslide_get_error(osr) == NULL, "OpenSlide opens the slide")) {
        if (osr != NULL) {
            diag("%s", openslide_get_error(osr));
            openslide_close(osr);
        }
        skip(16, "slide did not open");
        return;
    }
    is_int(openslide_get_level_count(osr), 4, "4 levels: halved until the long side <= 512");
    for (int k = 0; k < 4; k++) {
        int64_t w = -1, h = -1;
        openslide_get_level_dimensions(osr, k, &w, &h);
        ok(w == want_w[k] && h == want_h[k], "level %d is %lldx%lld (got %lldx%lld)", k,
           (long long)want_w[k], (long long)want_h[k], (long long)w, (long long)h);
    }
    is_double(openslide_get_level_downsample(osr, 3), 8.0, 1e-9, "level 3 downsample 8");
    const char *xres = openslide_get_property_value(osr, "tiff.XResolution");
    const char *yres = openslide_get_property_value(osr, "tiff.YResolution");
    is_double(xres ? strtod(xres, NULL) : 0.0, 20000.0, 1e-6, "tiff.XResolution 20000 / cm");
    is_double(yres ? strtod(yres, NULL) : 0.0, 20000.0, 1e-6, "tiff.YResolution 20000 / cm");
    is_string(openslide_get_property_value(osr, "tiff.ResolutionUnit"), "centimeter",
              "tiff.ResolutionUnit centimeter (0.5 um/px)");

    // The corners are glass: a margin along the slide's border is kept free of tissue.
    uint32_t corner[64 * 64]; // (64, 64) row-major premultiplied ARGB
    double glass = 1.0;
    for (int c = 0; c < 4; c++) {
        openslide_read_region(osr, corner, c % 2 ? 3000 - 64 : 0, c / 2 ? 2000 - 64 : 0, 0, 64, 64);
        stats st = measure(corner, 64 * 64);
        glass = st.glass < glass ? st.glass : glass;
    }
    ok(glass > 0.99, "corners are bright, unsaturated glass (worst corner %.3f)", glass);

    // Level 1 as a whole: tissue covers about half, with pink eosin and purple nuclei.
    uint32_t *px = malloc(1500 * 1000 * sizeof(*px)); // (1000, 1500) row-major ARGB
    if (px == NULL) {
        bail("out of memory");
    }
    openslide_read_region(osr, px, 0, 0, 1, 1500, 1000);
    ok(openslide_get_error(osr) == NULL, "level 1 reads without error");
    stats st = measure(px, 1500 * 1000);
    diag("level 1: glass %.3f tissue %.3f eosin %.3f haematoxylin %.3f", st.glass, st.tissue,
         st.eosin, st.haem);
    is_double(st.opaque, 1.0, 0.0, "every pixel is opaque");
    ok(st.tissue > 0.3 && st.tissue < 0.7, "tissue covers 30-70%% of the slide (%.3f)", st.tissue);
    ok(st.glass > 0.3, "glass covers over 30%% (%.3f)", st.glass);
    ok(st.eosin > 0.1, "pink eosin stroma present (%.3f)", st.eosin);
    ok(st.haem > 0.005 && st.haem < 0.3, "purple haematoxylin present (%.3f)", st.haem);
    free(px);
    openslide_close(osr);
}

static void test_determinism(const char *a)
{
    const char *b = tmp_path("b.tif"), *c = tmp_path("c.tif"), *d = tmp_path("d.tif");
    char args[2048];
    snprintf(args, sizeof(args), "--width 3000 --height 2000 --seed 7 -o '%s'", b);
    is_int(run(args), 0, "second run, same seed");
    is_int(same_bytes(a, b), 1, "same seed and size: identical bytes");
    snprintf(args, sizeof(args), "--width 3000 --height 2000 --seed 7 -o '%s'", c);
    setenv("OMP_NUM_THREADS", "1", 1);
    is_int(run(args), 0, "run with one thread");
    unsetenv("OMP_NUM_THREADS");
    is_int(same_bytes(a, c), 1, "one thread: identical bytes");
    snprintf(args, sizeof(args), "--width 3000 --height 2000 --seed 8 -o '%s'", d);
    is_int(run(args), 0, "run with another seed");
    is_int(same_bytes(a, d), 0, "another seed: different file");
}

// Level-0 tile (tx, ty) of an RGB slide, TILE x TILE (white beyond the edge), into px.
enum { TILE = 256 };
static bool read_tile(th_slide *slide, int tx, int ty, uint8_t *px)
{
    th_error *err = NULL;
    bool okay = th_slide_read_region(slide, px, (int64_t)tx * TILE, (int64_t)ty * TILE, 0, TILE,
                                     TILE, &err);
    if (!okay) {
        diag("tile %d,%d: %s", tx, ty, th_error_message(err));
        th_error_free(err);
    }
    return okay;
}

/* The corner tile is glass (islands keep off the border): white, unsaturated, and most tiles
 * are exact copies of it (the generator encodes a level's glass tile once). */
static void test_islands_glass(th_slide *slide, int64_t w, int64_t h)
{
    uint8_t *corner = malloc(TILE * TILE * 3), *px = malloc(TILE * TILE * 3); // (256, 256, 3)
    if (corner == NULL || px == NULL) {
        bail("out of memory");
    }
    bool read = read_tile(slide, 0, 0, corner);
    double sum[3] = {0, 0, 0};
    int spread = 0; // largest max - min over the channels of a pixel
    for (int i = 0; i < TILE * TILE; i++) {
        const uint8_t *p = corner + 3 * i;
        int hi = p[0] > p[1] ? p[0] : p[1], lo = p[0] < p[1] ? p[0] : p[1];
        hi = p[2] > hi ? p[2] : hi, lo = p[2] < lo ? p[2] : lo;
        spread = hi - lo > spread ? hi - lo : spread;
        for (int c = 0; c < 3; c++) {
            sum[c] += p[c];
        }
    }
    for (int c = 0; c < 3; c++) {
        sum[c] /= TILE * TILE;
    }
    ok(read && sum[0] > 238 && sum[1] > 238 && sum[2] > 238 && spread < 20,
       "corner tile is white glass (mean %.1f,%.1f,%.1f, channel spread <= %d)", sum[0], sum[1],
       sum[2], spread);
    int full = 0, copies = 0; // whole tiles inside the slide; those equal to the corner tile
    for (int ty = 0; (ty + 1) * TILE <= h; ty++) {
        for (int tx = 0; (tx + 1) * TILE <= w; tx++) {
            full++;
            copies += read_tile(slide, tx, ty, px) && memcmp(px, corner, TILE * TILE * 3) == 0;
        }
    }
    diag("%d of %d level-0 tiles are identical glass tiles", copies, full);
    ok(copies > full / 2 && copies < full, "most level-0 tiles, not all, are that glass tile");
    free(px);
    free(corner);
}

// Level 1 whole: tissue (not glass-coloured) covers a few percent up to a third.
static void test_islands_tissue(th_slide *slide, int64_t w, int64_t h)
{
    uint8_t *rgb = malloc((size_t)w * h * 3); // (h, w, 3) row-major RGB
    uint32_t *argb = malloc((size_t)w * h * sizeof(*argb));
    if (rgb == NULL || argb == NULL) {
        bail("out of memory");
    }
    th_error *err = NULL;
    ok(th_slide_read_region(slide, rgb, 0, 0, 1, w, h, &err), "level 1 reads");
    th_error_free(err);
    for (size_t i = 0; i < (size_t)w * h; i++) {
        argb[i] = 0xff000000u | (uint32_t)rgb[3 * i] << 16 | (uint32_t)rgb[3 * i + 1] << 8 |
                  rgb[3 * i + 2];
    }
    stats st = measure(argb, (size_t)w * h);
    diag("islands, level 1: glass %.3f tissue %.3f eosin %.3f haematoxylin %.3f", st.glass,
         st.tissue, st.eosin, st.haem);
    ok(st.tissue > 0.03 && st.tissue < 0.3, "tissue covers 3-30%% of the slide (%.3f)", st.tissue);
    ok(st.eosin > 0.005 && st.haem > 0.0005, "the islands hold eosin and haematoxylin");
    free(argb);
    free(rgb);
}

// Every level of the slide read by tileheat's libtiff fast path equals OpenSlide's own reads
// (th_slide_direct_reads off): the demo pyramid halves exactly, so every level is read directly.
static void test_direct_levels(const char *path, th_slide *fast)
{
    th_error *err = NULL;
    th_slide_direct_reads = false;
    th_slide *slow = th_slide_open(path, &err);
    th_slide_direct_reads = true;
    int levels = th_slide_get_level_count(fast), same = 0, n = 0;
    for (int level = 0; slow && level < levels; level++) {
        int64_t lw, lh, ds = (int64_t)th_slide_get_level_downsample(fast, level);
        th_slide_get_level_dimensions(fast, level, &lw, &lh);
        const int64_t lx = lw / 3, ly = lh / 4, rw = lw < 300 ? lw : 300, rh = lh < 200 ? lh : 200;
        uint8_t *a = calloc((size_t)(rw * rh * 3), 1), *b = calloc((size_t)(rw * rh * 3), 1);
        n++;
        same += a && b && th_slide_read_region(fast, a, lx * ds, ly * ds, level, rw, rh, &err) &&
                th_slide_read_region(slow, b, lx * ds, ly * ds, level, rw, rh, &err) &&
                memcmp(a, b, (size_t)(rw * rh * 3)) == 0;
        free(a);
        free(b);
    }
    ok(slow && levels >= 4 && same == n, "%d of %d levels read directly equal OpenSlide's pixels",
       same, n);
    th_slide_close(slow);
    th_error_free(err);
}

static void test_islands(void)
{
    const char *a = tmp_path("isl-a.tif"), *b = tmp_path("isl-b.tif");
    char args[2048];
    snprintf(args, sizeof(args), "--width 4000 --height 3000 --islands 3 --seed 5 -o '%s'", a);
    if (!is_int(run(args), 0, "generate 4000x3000 with 3 islands")) {
        diag("%s", last_stderr());
    }
    th_error *err = NULL;
    th_slide *slide = th_slide_open(a, &err);
    int64_t w = 0, h = 0, w1 = 0, h1 = 0;
    double mx = 0, my = 0;
    if (!ok(slide != NULL, "th_slide_open opens the islands slide")) {
        diag("%s", th_error_message(err));
        th_error_free(err);
        skip(9, "slide did not open");
    } else {
        is_string(th_slide_get_format(slide), "generic-tiff", "format generic-tiff");
        ok(th_slide_get_level_dimensions(slide, 0, &w, &h) && w == 4000 && h == 3000 &&
               th_slide_get_level_dimensions(slide, 1, &w1, &h1) &&
               th_slide_get_mpp(slide, &mx, &my),
           "level 0 is 4000x3000, with a resolution");
        is_double(mx, 0.5, 1e-9, "0.5 um/px");
        test_islands_glass(slide, w, h);
        test_islands_tissue(slide, w1, h1);
        test_direct_levels(a, slide);
        th_slide_close(slide);
    }
    snprintf(args, sizeof(args), "--width 4000 --height 3000 --islands 3 --seed 5 -o '%s'", b);
    is_int(run(args), 0, "second run");
    is_int(same_bytes(a, b), 1, "same seed: identical bytes");
    snprintf(args, sizeof(args),
             "--width 4000 --height 3000 --islands 3 --seed 5 --no-glass-cache -o '%s'", b);
    setenv("OMP_NUM_THREADS", "1", 1);
    is_int(run(args), 0, "run without the glass shortcut, one thread");
    unsetenv("OMP_NUM_THREADS");
    is_int(same_bytes(a, b), 1, "no glass shortcut, one thread: identical bytes");
    snprintf(args, sizeof(args), "--width 4000 --height 3000 --islands 3 --seed 6 -o '%s'", b);
    is_int(run(args), 0, "run with another seed");
    is_int(same_bytes(a, b), 0, "another seed: different file");
}

static void test_usage_errors(void)
{
    static const struct {
        const char *args, *needle;
    } bad[] = {
        {"--width abc", "--width"},       {"--width 12", "--width"},
        {"--height 3000000", "--height"}, {"--seed -1", "--seed"},
        {"--seed 4294967296", "--seed"},  {"--quality 0", "--quality"},
        {"--quality 101", "--quality"},   {"--width", "missing"},
        {"--bogus", "unknown option"},    {"-o x.tif extra", "unexpected argument"},
        {"--islands 0", "--islands"},     {"--islands 101", "--islands"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = run(bad[i].args);
        const char *msg = last_stderr();
        int line = (int)(strstr(msg, " | ") ? strstr(msg, " | ") - msg : (long)strlen(msg));
        ok(rc == 2 && strstr(msg, bad[i].needle) != NULL && strstr(msg, "gen-demo-slide: ") == msg,
           "'%s': exit 2, '%.*s'", bad[i].args, line, msg);
    }
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "'%s' --help 2>/dev/null | grep -q '^Usage: gen-demo-slide'", gen);
    int rc = system(cmd);
    ok(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "--help prints the usage");
}

static void test_write_errors(void)
{
    char args[2048];
    const char *missing = tmp_path("no-such-dir/x.tif");
    snprintf(args, sizeof(args), "--width 600 --height 400 -o '%s'", missing);
    is_int(run(args), 1, "output in a missing directory: exit 1");
    like(last_stderr(), "no-such-dir/x.tif", "the message names the output");
    ok(access(missing, F_OK) != 0, "no file left behind");

    // The output is an existing directory: refused, and nothing is written into its parent.
    const char *dir = tmp_path("dir.tif");
    mkdir(dir, 0755);
    int before = count_entries(test_tmpdir());
    snprintf(args, sizeof(args), "--width 600 --height 400 -o '%s'", dir);
    is_int(run(args), 1, "output is a directory: exit 1");
    like(last_stderr(), "is a directory", "the message says why");
    is_int(count_entries(test_tmpdir()), before, "no temporary file left behind");
}

int main(void)
{
    plan(62);
    const char *builddir = getenv("TH_BUILDDIR");
    snprintf(gen, sizeof(gen), "%s/examples/gen-demo-slide", builddir ? builddir : ".");
    snprintf(errf, sizeof(errf), "%s", tmp_path("stderr.txt"));
    if (access(gen, X_OK) != 0) {
        bail("%s not built (set TH_BUILDDIR)", gen);
    }
    const char *a = tmp_path("a.tif");
    char args[2048];
    snprintf(args, sizeof(args), "--width 3000 --height 2000 --seed 7 -o '%s'", a);
    if (!is_int(run(args), 0, "generate 3000x2000, seed 7")) {
        diag("%s", last_stderr());
    }
    is_string(last_stderr(), "", "quiet when stderr is not a terminal");
    test_slide(a);
    test_determinism(a);
    test_islands();
    test_usage_errors();
    test_write_errors();
    return 0;
}
