/* SPDX-License-Identifier: MIT */
/* Tests for the slide module: every real slide and image against tests/data/slide-refs.txt
 * (written by tools/gen-slide-refs.py with python3-openslide and Pillow), clean one-line errors
 * for every bad file, argument checks, concurrent reads, and TIFF/PNG fixtures written here with
 * libtiff and libpng whose decoded pixels must equal the values written. */
#include <config.h>

#include <dirent.h>
#include <inttypes.h>
#include <png.h>
#include <pthread.h>
#include <tiffio.h>
#include <unistd.h>

#include "tap.h"
#include "slide.h"

/* ------------------------------------------------------------------ helpers */

// FNV-1a 64 of a buffer, as the generator computes it.
static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 0x100000001b3ULL;
    }
    return h;
}

// For `ok(...) || explain(msg)`: print why a test failed; false so conditions stay false.
static bool explain(const char *msg)
{
    diag("%s", msg);
    return false;
}

static bool one_line(const char *msg)
{
    return msg && *msg && !strpbrk(msg, "\r\n");
}

// A region read into a fresh buffer; NULL (and *err set) on failure.
static uint8_t *read_new(th_slide *s, int64_t x, int64_t y, int level, int64_t w, int64_t h,
                         th_error **err)
{
    uint8_t *buf = th_malloc((size_t)(w * h * 3), err);
    if (buf && !th_slide_read_region(s, buf, x, y, level, w, h, err)) {
        TH_FREE(buf);
    }
    return buf;
}

/* ------------------------------------------------------------------ reference data */

typedef struct ref_state {
    th_slide *slide;
    char name[256];
} ref_state;

static void ref_region(ref_state *st, const char *line)
{
    char tag[32], hash[32];
    int level;
    int64_t x, y, w, h;
    unsigned long long sum[3];
    if (sscanf(line,
               "region %31s %d %" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64 " %31s %llu %llu %llu",
               tag, &level, &x, &y, &w, &h, hash, &sum[0], &sum[1], &sum[2]) != 10) {
        bail("bad reference line: %s", line);
    }
    if (!st->slide) {
        skip(1, "%s: not open", st->name);
        return;
    }
    th_error *err = NULL;
    uint8_t *buf = read_new(st->slide, x, y, level, w, h, &err);
    if (!ok(buf != NULL, "%s: read %s", st->name, tag)) {
        diag("%s", th_error_message(err));
        th_error_free(err);
        return;
    }
    unsigned long long got[3] = {0, 0, 0};
    for (int64_t i = 0; i < w * h * 3; i++) {
        got[i % 3] += buf[i];
    }
    char got_hash[32];
    snprintf(got_hash, sizeof(got_hash), "%016" PRIx64, fnv1a(buf, (size_t)(w * h * 3)));
    is_string(got_hash, hash,
              "%s: %s pixels (level %d, %" PRId64 ",%" PRId64 " %" PRId64 "x%" PRId64 ")", st->name,
              tag, level, x, y, w, h);
    if (strcmp(got_hash, hash) != 0) {
        diag("sums got %llu %llu %llu, expected %llu %llu %llu", got[0], got[1], got[2], sum[0],
             sum[1], sum[2]);
    }
    th_free(buf);
}

static void ref_line(ref_state *st, const char *line)
{
    char fmt[64];
    int n, i;
    int64_t w, h, gw, gh;
    double a, b;
    th_error *err = NULL;

    if (sscanf(line, "file %255s", st->name) == 1) {
        st->slide = th_slide_open(test_data_path(st->name), &err);
        if (!ok(st->slide != NULL, "%s: opens", st->name)) {
            explain(th_error_message(err));
        }
        th_error_free(err);
    } else if (sscanf(line, "format %63s %d %lf %lf", fmt, &n, &a, &b) == 4 && st->slide) {
        is_string(th_slide_get_format(st->slide), fmt, "%s: format", st->name);
        is_int(th_slide_get_level_count(st->slide), n, "%s: level count", st->name);
        double mx, my;
        bool has = th_slide_get_mpp(st->slide, &mx, &my);
        ok(has == (a > 0) && fabs(mx - a) < 1e-6 && fabs(my - b) < 1e-6,
           "%s: mpp %g %g (got %g %g)", st->name, a, b, mx, my);
    } else if (sscanf(line, "level %d %" SCNd64 " %" SCNd64 " %lf", &i, &w, &h, &a) == 4 &&
               st->slide) {
        ok(th_slide_get_level_dimensions(st->slide, i, &gw, &gh) && gw == w && gh == h,
           "%s: level %d is %" PRId64 "x%" PRId64, st->name, i, w, h);
        is_double(th_slide_get_level_downsample(st->slide, i), a, 1e-9 * a,
                  "%s: level %d downsample", st->name, i);
    } else if (strncmp(line, "region ", 7) == 0) {
        ref_region(st, line);
    } else if (strncmp(line, "end", 3) == 0) {
        th_slide_close(st->slide);
        st->slide = NULL;
    }
}

static void test_references(void)
{
    th_error *err = NULL;
    FILE *fp = th_fopen(test_src_path("tests/data/slide-refs.txt"), "r", &err);
    if (!fp) {
        bail("slide-refs.txt: %s", th_error_message(err));
    }
    ref_state st = {NULL, ""};
    char line[512];
    while (fgets(line, sizeof(line), fp)) {
        if (line[0] != '#') {
            ref_line(&st, line);
        }
    }
    fclose(fp);
    th_slide_close(st.slide);
}

/* ------------------------------------------------------------------ bad files */

// Known messages (from OpenSlide 3.4.1 and our backends); other bad files just need an error.
static const struct {
    const char *file, *needle;
} known_errors[] = {
    {"unopenable.tiff", "Unsupported TIFF compression"},
    {"unreadable.svs", "Bogus marker length"},
    {"not-an-image.svs", "not a supported slide or image format"},
    {"broken.svs", "not a supported slide or image format"},
    {"crop1024.truncated.png", "PNG"},
    {"CMU-1-Small-Region.truncated.svs", "TIFF"},
};

// Open, then read level 0 in 512x512 chunks: one of the two must fail, with a one-line message.
static th_error *open_and_read_all(const char *path, bool *opened)
{
    th_error *err = NULL;
    th_slide *s = th_slide_open(path, &err);
    *opened = s != NULL;
    int64_t w = 0, h = 0;
    th_slide_get_level_dimensions(s, 0, &w, &h);
    uint8_t *buf = s ? th_malloc(512 * 512 * 3, &err) : NULL;
    for (int64_t y = 0; buf && !err && y < h; y += 512) {
        for (int64_t x = 0; !err && x < w; x += 512) {
            th_slide_read_region(s, buf, x, y, 0, 512, 512, &err);
        }
    }
    th_free(buf);
    th_slide_close(s);
    return err;
}

static void test_bad_files(void)
{
    DIR *dir = opendir(test_data_path("bad"));
    if (!dir) {
        bail("cannot list %s", test_data_path("bad"));
    }
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char rel[300];
        snprintf(rel, sizeof(rel), "bad/%s", e->d_name);
        bool opened;
        th_error *err = open_and_read_all(test_data_path(rel), &opened);
        const char *msg = err ? th_error_message(err) : NULL;
        ok(err && one_line(msg), "%s: clean one-line error on %s: %s", rel,
           opened ? "read" : "open", msg ? msg : "(none)");
        for (size_t i = 0; i < sizeof(known_errors) / sizeof(known_errors[0]); i++) {
            if (strcmp(known_errors[i].file, e->d_name) == 0) {
                like(msg, known_errors[i].needle, "%s: message names the problem", rel);
            }
        }
        th_error_free(err);
    }
    closedir(dir);

    th_error *err = NULL;
    ok(!th_slide_open(test_data_path("no-such-file.svs"), &err), "missing file fails");
    like(th_error_message(err), "No such file", "missing file: system message");
    th_error_free(err);
    err = NULL;
    th_slide *s = th_slide_open(test_data_path("slides"), &err);
    ok(!s && err && one_line(th_error_message(err)), "a directory fails cleanly: %s",
       th_error_message(err));
    th_slide_close(s);
    th_error_free(err);
}

/* ------------------------------------------------------------------ arguments */

static void expect_read_error(th_slide *s, uint8_t *buf, int64_t x, int64_t y, int level, int64_t w,
                              int64_t h, const char *needle, const char *what)
{
    th_error *err = NULL;
    ok(!th_slide_read_region(s, buf, x, y, level, w, h, &err), "%s is refused", what);
    like(th_error_message(err), needle, "%s: message", what);
    th_error_free(err);
}

static void test_arguments(void)
{
    th_error *err = NULL;
    th_slide *s = th_slide_open(test_data_path("slides/boxes.tiff"), &err);
    if (!ok(s != NULL, "boxes.tiff opens")) {
        th_error_free(err);
        return;
    }
    uint8_t buf[16 * 16 * 3];
    expect_read_error(s, buf, 0, 0, -1, 4, 4, "level -1", "level -1");
    expect_read_error(s, buf, 0, 0, 4, 4, 4, "level 4", "level past the last");
    expect_read_error(s, buf, 0, 0, 0, 0, 4, "size", "w = 0");
    expect_read_error(s, buf, 0, 0, 0, 4, -3, "size", "h < 0");
    expect_read_error(s, buf, 0, 0, 0, (int64_t)1 << 40, (int64_t)1 << 40, "too large",
                      "w*h*3 overflow");
    expect_read_error(s, NULL, 0, 0, 0, 4, 4, "buffer", "NULL destination");
    expect_read_error(s, buf, INT64_MAX - 2, 0, 0, 4, 4, "out of range", "huge x");
    int64_t w, h;
    ok(!th_slide_get_level_dimensions(s, 9, &w, &h) && w == 0 && h == 0,
       "dimensions of a missing level: false and zeros");
    is_double(th_slide_get_level_downsample(s, 9), 0, 0, "downsample of a missing level is 0");
    ok(th_slide_read_region(s, buf, 1000, 1000, 0, 16, 16, NULL) && buf[0] == 255 &&
           buf[sizeof(buf) - 1] == 255,
       "a region wholly outside the image is white");
    th_slide_close(s);
    th_slide_close(NULL);
    ok(th_slide_get_level_count(NULL) == 0 && th_slide_get_format(NULL) == NULL,
       "getters accept NULL");
}

/* ------------------------------------------------------------------ threads */

#define N_REGIONS 24

typedef struct job {
    th_slide *slide;
    int64_t w, h; // level 0 size
    int first, step;
    uint64_t hash[N_REGIONS];
    bool failed;
} job;

// Region i: 224x224 at a pseudo-random position (some crossing the edges).
static void *run_job(void *arg)
{
    job *j = arg;
    uint8_t *buf = th_malloc(224 * 224 * 3, NULL);
    for (int i = j->first; buf && i < N_REGIONS; i += j->step) {
        uint64_t r = fnv1a((const uint8_t *)&i, sizeof(i));
        int64_t x = (int64_t)(r % (uint64_t)(j->w + 100)) - 50;
        int64_t y = (int64_t)((r >> 32) % (uint64_t)(j->h + 100)) - 50;
        th_error *err = NULL;
        if (!th_slide_read_region(j->slide, buf, x, y, 0, 224, 224, &err)) {
            j->failed = true;
            th_error_free(err);
        }
        j->hash[i] = fnv1a(buf, 224 * 224 * 3);
    }
    j->failed |= buf == NULL;
    th_free(buf);
    return NULL;
}

static void test_threads(const char *rel)
{
    th_error *err = NULL;
    th_slide *s = th_slide_open(test_data_path(rel), &err);
    if (!ok(s != NULL, "%s opens", rel)) {
        th_error_free(err);
        return;
    }
    job serial = {s, 0, 0, 0, 1, {0}, false};
    th_slide_get_level_dimensions(s, 0, &serial.w, &serial.h);
    job par[2] = {serial, serial};
    par[0].first = 0; // thread 0 reads even regions, thread 1 odd ones, both at once
    par[1].first = 1;
    par[0].step = par[1].step = 2;
    run_job(&serial);
    pthread_t t[2];
    bool started = pthread_create(&t[0], NULL, run_job, &par[0]) == 0 &&
                   pthread_create(&t[1], NULL, run_job, &par[1]) == 0;
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    bool same = started && !serial.failed && !par[0].failed && !par[1].failed;
    for (int i = 0; i < N_REGIONS; i++) {
        same = same && par[i % 2].hash[i] == serial.hash[i];
    }
    ok(same, "%s: 2 threads reading one handle equal serial reads", rel);
    // Both threads read every region in the same order: they want the same tiles at the same
    // moment, so one waits for the other's decode (the cache's claim-and-wait).
    job both[2] = {serial, serial};
    started = pthread_create(&t[0], NULL, run_job, &both[0]) == 0 &&
              pthread_create(&t[1], NULL, run_job, &both[1]) == 0;
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    same = started && !both[0].failed && !both[1].failed;
    for (int i = 0; i < N_REGIONS; i++) {
        same = same && both[0].hash[i] == serial.hash[i] && both[1].hash[i] == serial.hash[i];
    }
    ok(same, "%s: 2 threads reading the same regions at once equal serial reads", rel);
    th_slide_close(s);
}

// A big read equals the same area read as four pieces, the pieces read bottom-up (which makes
// the PNG backend restart its decoder and the OpenSlide backend read in chunks).
static void test_pieces(const char *rel, int64_t x, int64_t y, int64_t w, int64_t h)
{
    th_error *err = NULL;
    th_slide *s = th_slide_open(test_data_path(rel), &err);
    uint8_t *all = s ? read_new(s, x, y, 0, w, h, &err) : NULL;
    uint8_t *piece = all ? th_malloc((size_t)(w * h * 3), &err) : NULL;
    bool same = piece != NULL;
    for (int q = 3; same && q >= 0; q--) {
        int64_t px = (q % 2) * (w / 2), py = (q / 2) * (h / 2);
        int64_t pw = q % 2 ? w - w / 2 : w / 2, ph = q / 2 ? h - h / 2 : h / 2;
        same = th_slide_read_region(s, piece, x + px, y + py, 0, pw, ph, &err);
        for (int64_t r = 0; same && r < ph; r++) {
            same = memcmp(piece + r * pw * 3, all + ((py + r) * w + px) * 3, (size_t)pw * 3) == 0;
        }
    }
    if (!ok(same, "%s: a %" PRId64 "x%" PRId64 " read equals its four pieces", rel, w, h)) {
        explain(err ? th_error_message(err) : "pixels differ");
    }
    th_error_free(err);
    th_free(piece);
    th_free(all);
    th_slide_close(s);
}

/* ------------------------------------------------------------------ fixtures */

// A fixture: samples written to the file, and the RGB the reader must return.
typedef struct fixture {
    const char *name;
    uint32_t w, h;
    uint8_t *want; // (h, w, 3) expected RGB
} fixture;

static uint8_t over_white(uint32_t c, uint32_t a)
{
    return (uint8_t)((c * a + 255 * (255 - a) + 127) / 255);
}

// Reads (-3, -2, w + 6, h + 5): the image where expected, white around it; then a 1x1 read of
// the last pixel and an interior region.
static void check_fixture(th_slide *s, const fixture *f, const char *how)
{
    int64_t W = f->w + 6, H = f->h + 5;
    th_error *err = NULL;
    uint8_t *got = read_new(s, -3, -2, 0, W, H, &err);
    int64_t bad = -1;
    for (int64_t i = 0; got && bad < 0 && i < W * H; i++) {
        int64_t x = i % W - 3, y = i / W - 2;
        bool in = x >= 0 && y >= 0 && x < f->w && y < f->h;
        for (int c = 0; c < 3; c++) {
            uint8_t want = in ? f->want[(y * f->w + x) * 3 + c] : 255;
            bad = got[i * 3 + c] != want ? i : bad;
        }
    }
    if (!ok(got && bad < 0, "%s (%s): pixels as written, white outside", f->name, how)) {
        explain(got ? "mismatch" : th_error_message(err));
    }
    if (got && bad >= 0) {
        int64_t x = bad % W - 3, y = bad / W - 2;
        diag("first mismatch at %" PRId64 ",%" PRId64 ": got %u %u %u", x, y, got[bad * 3],
             got[bad * 3 + 1], got[bad * 3 + 2]);
    }
    uint8_t px[3];
    const uint8_t *last = f->want + ((size_t)f->h * f->w - 1) * 3;
    ok(th_slide_read_region(s, px, f->w - 1, f->h - 1, 0, 1, 1, NULL) && memcmp(px, last, 3) == 0,
       "%s (%s): last pixel", f->name, how);
    // then the first: the PNG and big-strip TIFF readers must go back to the top
    ok(th_slide_read_region(s, px, 0, 0, 0, 1, 1, NULL) && memcmp(px, f->want, 3) == 0,
       "%s (%s): first pixel after the last", f->name, how);
    th_free(got);
    th_error_free(err);
}

typedef struct tiff_spec {
    uint16_t photometric, spp, bps, sample_format, extra, compression;
    uint32_t tile, rps; // tile size (0 = strips), rows per strip
} tiff_spec;

// Write (h, w, spp) samples (uint16 holding 1-16 bit values, or float for IEEEFP).
static bool write_tiff(const char *path, const tiff_spec *sp, uint32_t w, uint32_t h,
                       const uint16_t *samples, const uint16_t *cmap)
{
    TIFF *t = TIFFOpenExt(path, "w", NULL);
    if (!t) {
        return false;
    }
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, sp->spp);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, sp->bps);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, sp->photometric);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(t, TIFFTAG_COMPRESSION, sp->compression);
    TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, sp->sample_format);
    if (sp->extra) {
        TIFFSetField(t, TIFFTAG_EXTRASAMPLES, 1, &sp->extra);
    }
    if (cmap) {
        int n = 1 << sp->bps;
        TIFFSetField(t, TIFFTAG_COLORMAP, cmap, cmap + n, cmap + 2 * n);
    }
    uint32_t bw = sp->tile ? sp->tile : w, bh = sp->tile ? sp->tile : sp->rps;
    if (sp->tile) {
        TIFFSetField(t, TIFFTAG_TILEWIDTH, bw);
        TIFFSetField(t, TIFFTAG_TILELENGTH, bh);
    } else {
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, bh);
    }
    // pack block by block: (bh, bw, spp) samples, rows padded to whole bytes
    size_t row_bytes = ((size_t)bw * sp->spp * sp->bps + 7) / 8;
    uint8_t *blk = th_calloc(bh, row_bytes, NULL);
    bool good = blk != NULL;
    for (uint32_t by = 0; good && by < h; by += bh) {
        for (uint32_t bx = 0; good && bx < w; bx += bw) {
            memset(blk, 0, bh * row_bytes);
            for (uint32_t r = 0; r < bh && by + r < h; r++) {
                for (uint32_t i = 0; i < bw * sp->spp && bx + i / sp->spp < w; i++) {
                    uint16_t v = samples[((size_t)(by + r) * w + bx) * sp->spp + i];
                    uint8_t *row = blk + r * row_bytes;
                    if (sp->sample_format == SAMPLEFORMAT_IEEEFP) {
                        float f = v / 255.0f;
                        memcpy(row + 4 * i, &f, 4);
                    } else if (sp->bps == 16) {
                        memcpy(row + 2 * i, &v, 2);
                    } else if (sp->bps == 8) {
                        row[i] = (uint8_t)v;
                    } else {
                        size_t bit = (size_t)i * sp->bps;
                        row[bit / 8] |= (uint8_t)(v << (8 - sp->bps - bit % 8));
                    }
                }
            }
            tmsize_t n = (tmsize_t)(row_bytes * TH_MIN(bh, sp->tile ? bh : h - by));
            good = sp->tile ? TIFFWriteEncodedTile(t, TIFFComputeTile(t, bx, by, 0, 0), blk,
                                                   (tmsize_t)(row_bytes * bh)) >= 0
                            : TIFFWriteEncodedStrip(t, by / bh, blk, n) >= 0;
        }
    }
    th_free(blk);
    TIFFClose(t);
    return good;
}

// Sample s of pixel (x, y): a pattern using the whole range of `bits`, with alpha (when
// alpha_at >= 0) hitting 0 and 255 on row 0.
static uint16_t pattern(uint32_t x, uint32_t y, int s, int bits, int alpha_at)
{
    if (s == alpha_at) {
        return (uint16_t)(y == 0 ? (x % 2 ? 255 : 0) : (x * 37 + y * 11) & 255);
    }
    uint32_t v = x * 2111u + y * 977u + (uint32_t)s * 12345u;
    return (uint16_t)(bits >= 16 ? v & 0xffff : (v ^ (v >> 7)) & ((1u << bits) - 1));
}

static void tiff_case(const char *name, const tiff_spec *sp, uint32_t w, uint32_t h,
                      const char *reject)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.tif", test_tmpdir(), name);
    int alpha_at = sp->extra ? sp->spp - 1 : -1;
    size_t n = (size_t)w * h;
    uint16_t *smp = th_malloc(n * sp->spp * sizeof(uint16_t), NULL);
    uint8_t *want = th_malloc(n * 3, NULL);
    uint16_t cmap[3 * 16];
    for (int i = 0; i < 16; i++) {
        cmap[i] = (uint16_t)(i * 4369), cmap[16 + i] = (uint16_t)(65535 - i * 4000);
        cmap[32 + i] = (uint16_t)(i * 1000 + 77);
    }
    bool palette = sp->photometric == PHOTOMETRIC_PALETTE;
    for (size_t p = 0; p < n; p++) {
        uint32_t x = (uint32_t)(p % w), y = (uint32_t)(p / w);
        for (int s = 0; s < sp->spp; s++) {
            smp[p * sp->spp + s] = pattern(x, y, s, sp->bps, alpha_at);
        }
        for (int c = 0; c < 3; c++) {
            int s = sp->spp >= 3 ? c : 0;
            uint32_t v = smp[p * sp->spp + s];
            v = palette         ? cmap[c * 16 + v] >> 8u
                : sp->bps == 16 ? v >> 8
                : sp->bps < 8   ? v * 255 / ((1u << sp->bps) - 1)
                                : v;
            if (sp->photometric == PHOTOMETRIC_MINISWHITE) {
                v = 255 - v;
            }
            uint32_t a = alpha_at >= 0 ? smp[p * sp->spp + alpha_at] : 255;
            if (sp->extra == EXTRASAMPLE_ASSOCALPHA) {
                v = TH_MIN(v, a); // valid premultiplied data
                smp[p * sp->spp + s] = (uint16_t)v;
                want[p * 3 + c] = (uint8_t)(v + 255 - a);
            } else {
                want[p * 3 + c] = alpha_at >= 0 ? over_white(v, a) : (uint8_t)v;
            }
        }
    }
    bool written = write_tiff(path, sp, w, h, smp, palette ? cmap : NULL);
    ok(written, "%s: fixture written", name);
    th_error *err = NULL;
    th_slide *s = th_slide_open(path, &err);
    fixture f = {name, w, h, want};
    if (reject) {
        ok(!s && one_line(th_error_message(err)), "%s: refused at open", name);
        like(th_error_message(err), reject, "%s: message says why", name);
    } else if (ok(s != NULL, "%s: opens", name) || explain(th_error_message(err))) {
        is_string(th_slide_get_format(s), sp->tile ? "generic-tiff" : "tiff", "%s: backend", name);
        check_fixture(s, &f, th_slide_get_format(s));
    }
    th_slide_close(s);
    th_error_free(err);
    err = NULL;
    if (sp->tile) { // the libtiff backend reads tiled files too (OpenSlide claims them first)
        th_slide *t = th_calloc(1, sizeof(*t), NULL);
        ok(t && th_slide_tiff_open(t, path, &err), "%s: libtiff backend opens it", name);
        if (t && t->ops) {
            check_fixture(t, &f, "libtiff");
        }
        th_slide_close(t);
        th_error_free(err);
    }
    th_free(want);
    th_free(smp);
}

// JPEG-compressed YCbCr (2x2 chroma subsampling) strips: lossy, so a flat colour must come back
// within a small tolerance everywhere, including the partial last strip and columns.
static void test_tiff_jpeg(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/jpeg-ycbcr.tif", test_tmpdir());
    const uint32_t w = 45, h = 37;
    const uint8_t rgb[3] = {200, 100, 50};
    uint8_t row[45 * 3];
    for (uint32_t x = 0; x < w; x++) {
        memcpy(row + 3 * x, rgb, 3);
    }
    TIFF *t = TIFFOpenExt(path, "w", NULL);
    bool good = t != NULL;
    if (t) {
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
        TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
        TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_JPEG);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_YCBCR);
        TIFFSetField(t, TIFFTAG_YCBCRSUBSAMPLING, 2, 2);
        TIFFSetField(t, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 16);
        for (uint32_t y = 0; good && y < h; y++) {
            good = TIFFWriteScanline(t, row, y, 0) >= 0;
        }
        TIFFClose(t);
    }
    ok(good, "jpeg-ycbcr: fixture written");
    th_error *err = NULL;
    th_slide *s = th_slide_open(path, &err);
    uint8_t *got = s ? read_new(s, 0, 0, 0, w, h, &err) : NULL;
    int worst = got ? 0 : 999;
    for (uint32_t i = 0; got && i < w * h * 3; i++) {
        worst = TH_MAX(worst, abs((int)got[i] - rgb[i % 3]));
    }
    ok(worst <= 3, "jpeg-ycbcr (%s): flat colour within 3 (worst %d)",
       s ? th_slide_get_format(s) : "not opened", worst);
    if (err) {
        explain(th_error_message(err));
    }
    th_free(got);
    th_slide_close(s);
    th_error_free(err);
}

/* A tile that cannot be decoded, wanted by two threads at once, over and over: every read that
 * needs it fails with libtiff's reader's own message, not OpenSlide's (a slot claimed for it is
 * released on failure, and a thread that waited for it decodes it itself and fails too), reads
 * beside it still succeed, nothing hangs (alarm: a hang fails the test instead of stalling make
 * check). */
typedef struct corrupt_job {
    th_slide *slide;
    int failed_as_wanted, read_beside;
} corrupt_job;

static void *read_corrupt(void *arg)
{
    corrupt_job *j = arg;
    uint8_t buf[32 * 32 * 3]; // (32, 32, 3) RGB
    for (int i = 0; i < 50; i++) {
        th_error *err = NULL;
        // a part of tile (1, 1) (a tile read whole is not cached, so no thread would wait)
        bool read = th_slide_read_region(j->slide, buf, 20, 20, 0, 16, 16, &err);
        j->failed_as_wanted +=
            !read && err && strstr(th_error_message(err), "cannot decode TIFF tile at 16,16");
        th_error_free(err);
        j->read_beside += th_slide_read_region(j->slide, buf, 32, 32, 0, 32, 32, NULL);
    }
    return NULL;
}

static void test_corrupt_tile(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/corrupt-tile.tif", test_tmpdir());
    const uint32_t w = 64, h = 64;
    uint16_t *smp = th_malloc((size_t)w * h * 3 * sizeof(uint16_t), NULL);
    for (uint32_t p = 0; smp && p < w * h; p++) {
        for (int c = 0; c < 3; c++) {
            smp[p * 3 + c] = pattern(p % w, p / w, c, 8, -1);
        }
    }
    tiff_spec sp = {PHOTOMETRIC_RGB, 3, 8, SAMPLEFORMAT_UINT, 0, COMPRESSION_ADOBE_DEFLATE, 16, 0};
    bool written = smp && write_tiff(path, &sp, w, h, smp, NULL);
    th_free(smp);
    // tile (1, 1) of the 4×4: its compressed bytes overwritten with 0xff
    TIFF *t = written ? TIFFOpenExt(path, "r", NULL) : NULL;
    uint64_t *off = NULL, *cnt = NULL;
    bool found = t && TIFFGetField(t, TIFFTAG_TILEOFFSETS, &off) &&
                 TIFFGetField(t, TIFFTAG_TILEBYTECOUNTS, &cnt);
    uint64_t at = found ? off[5] : 0, n = found ? cnt[5] : 0;
    if (t) {
        TIFFClose(t);
    }
    FILE *f = found ? th_fopen(path, "r+b", NULL) : NULL;
    bool broken = f && fseek(f, (long)at, SEEK_SET) == 0;
    for (uint64_t i = 0; broken && i < n; i++) {
        broken = fputc(0xff, f) != EOF;
    }
    broken = f && fclose(f) == 0 && broken;
    th_slide *s = broken ? th_slide_open(path, NULL) : NULL;
    if (!ok(s != NULL, "a tiled TIFF with one broken tile written and opened")) {
        return;
    }
    alarm(120);
    corrupt_job jobs[2] = {{s, 0, 0}, {s, 0, 0}};
    pthread_t th[2];
    bool started = pthread_create(&th[0], NULL, read_corrupt, &jobs[0]) == 0 &&
                   pthread_create(&th[1], NULL, read_corrupt, &jobs[1]) == 0;
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    alarm(0);
    ok(started && jobs[0].failed_as_wanted == 50 && jobs[1].failed_as_wanted == 50 &&
           jobs[0].read_beside == 50 && jobs[1].read_beside == 50,
       "2 threads at once: the broken tile fails every time (%d, %d of 50) naming it, the "
       "tiles beside it read (%d, %d of 50)",
       jobs[0].failed_as_wanted, jobs[1].failed_as_wanted, jobs[0].read_beside,
       jobs[1].read_beside);
    th_slide_close(s);
}

static void test_tiff_fixtures(void)
{
    const uint16_t UINT = SAMPLEFORMAT_UINT, LZW = COMPRESSION_LZW, NONE = COMPRESSION_NONE;
    tiff_spec gray8 = {PHOTOMETRIC_MINISBLACK, 1, 8, UINT, 0, LZW, 0, 5};
    tiff_case("gray8", &gray8, 37, 23, NULL);
    tiff_spec white4 = {PHOTOMETRIC_MINISWHITE, 1, 4, UINT, 0, NONE, 0, 3};
    tiff_case("miniswhite4", &white4, 21, 9, NULL);
    tiff_spec rgb16 = {PHOTOMETRIC_RGB, 3, 16, UINT, 0, COMPRESSION_ADOBE_DEFLATE, 0, 4};
    tiff_case("rgb16", &rgb16, 29, 17, NULL);
    tiff_spec unass = {PHOTOMETRIC_RGB, 4, 8, UINT, EXTRASAMPLE_UNASSALPHA, LZW, 0, 7};
    tiff_case("rgba-unassociated", &unass, 31, 19, NULL);
    tiff_spec assoc = {PHOTOMETRIC_RGB, 4, 8, UINT, EXTRASAMPLE_ASSOCALPHA, NONE, 0, 19};
    tiff_case("rgba-associated", &assoc, 31, 19, NULL);
    tiff_spec pal4 = {PHOTOMETRIC_PALETTE, 1, 4, UINT, 0, NONE, 0, 2};
    tiff_case("palette4", &pal4, 23, 11, NULL);
    tiff_spec tiled = {PHOTOMETRIC_RGB, 3, 8, UINT, 0, LZW, 16, 0};
    tiff_case("tiled-rgb8", &tiled, 50, 40, NULL);
    // one 36 MB strip: 3 bands of scanlines (932, 932, 136 rows) through a 2-slot cache
    tiff_spec big = {PHOTOMETRIC_MINISBLACK, 1, 8, UINT, 0, COMPRESSION_ADOBE_DEFLATE, 0, 2000};
    tiff_case("big-strip-gray8", &big, 6000, 2000, NULL);
    tiff_spec cmyk = {PHOTOMETRIC_SEPARATED, 4, 8, UINT, 0, NONE, 0, 8};
    tiff_case("cmyk", &cmyk, 8, 8, "CMYK");
    tiff_spec flt = {PHOTOMETRIC_MINISBLACK, 1, 32, SAMPLEFORMAT_IEEEFP, 0, NONE, 0, 8};
    tiff_case("float32", &flt, 8, 8, "floating-point");
    test_tiff_jpeg();
}

typedef struct png_spec {
    int color_type, depth, interlace;
} png_spec;

// Write (h, w, channels) samples; palette PNGs get a 16-entry PLTE and tRNS.
static bool write_png(const char *path, const png_spec *sp, uint32_t w, uint32_t h,
                      const uint16_t *samples, int channels, const png_color *plte,
                      const uint8_t *trns)
{
    FILE *fp = th_fopen(path, "wb", NULL);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    size_t bytes = sp->depth == 16 ? 2 : 1;
    uint8_t *row = th_malloc((size_t)w * channels * bytes, NULL);
    bool good = fp && info && row;
    if (good && setjmp(png_jmpbuf(png))) {
        good = false;
    } else if (good) {
        png_init_io(png, fp);
        png_set_IHDR(png, info, w, h, sp->depth, sp->color_type, sp->interlace,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        if (plte) {
            png_set_PLTE(png, info, plte, 16);
            png_set_tRNS(png, info, trns, 16, NULL);
        }
        png_write_info(png, info);
        int passes = png_set_interlace_handling(png);
        for (int pass = 0; pass < passes; pass++) {
            for (uint32_t y = 0; y < h; y++) {
                for (size_t i = 0; i < (size_t)w * channels; i++) {
                    uint16_t v = samples[(size_t)y * w * channels + i];
                    if (bytes == 2) {
                        row[2 * i] = (uint8_t)(v >> 8), row[2 * i + 1] = (uint8_t)v;
                    } else {
                        row[i] = (uint8_t)v;
                    }
                }
                png_write_row(png, row);
            }
        }
        png_write_end(png, NULL);
    }
    png_destroy_write_struct(&png, &info);
    th_free(row);
    if (fp) {
        fclose(fp);
    }
    return good;
}

static void png_case(const char *name, const png_spec *sp, uint32_t w, uint32_t h)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.png", test_tmpdir(), name);
    int ct = sp->color_type;
    int channels = ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_PALETTE ? 1
                   : ct == PNG_COLOR_TYPE_GRAY_ALPHA                         ? 2
                   : ct == PNG_COLOR_TYPE_RGB                                ? 3
                                                                             : 4;
    bool has_alpha = ct & PNG_COLOR_MASK_ALPHA;
    png_color plte[16];
    uint8_t trns[16];
    for (int i = 0; i < 16; i++) {
        plte[i] = (png_color){(uint8_t)(i * 16), (uint8_t)(255 - i * 16), (uint8_t)(i * 5)};
        trns[i] = (uint8_t)(i * 17);
    }
    size_t n = (size_t)w * h;
    uint16_t *smp = th_malloc(n * channels * sizeof(uint16_t), NULL);
    uint8_t *want = th_malloc(n * 3, NULL);
    int bits = ct == PNG_COLOR_TYPE_PALETTE ? 4 : sp->depth;
    for (size_t p = 0; p < n; p++) {
        uint32_t x = (uint32_t)(p % w), y = (uint32_t)(p / w);
        for (int s = 0; s < channels; s++) {
            smp[p * channels + s] = pattern(x, y, s, bits, has_alpha ? channels - 1 : -1);
        }
        uint16_t *px = smp + p * channels;
        for (int c = 0; c < 3; c++) {
            uint32_t v = channels >= 3 ? px[c] : px[0], a = has_alpha ? px[channels - 1] : 255;
            if (ct == PNG_COLOR_TYPE_PALETTE) {
                const uint8_t *e = &plte[px[0]].red;
                v = e[c];
                a = trns[px[0]];
            }
            v = sp->depth == 16 ? v >> 8 : v;
            want[p * 3 + c] = over_white(v, a);
        }
    }
    bool written =
        write_png(path, sp, w, h, smp, channels, ct == PNG_COLOR_TYPE_PALETTE ? plte : NULL, trns);
    ok(written, "%s: fixture written", name);
    th_error *err = NULL;
    th_slide *s = th_slide_open(path, &err);
    fixture f = {name, w, h, want};
    if (ok(s != NULL, "%s: opens", name) || explain(th_error_message(err))) {
        is_string(th_slide_get_format(s), "png", "%s: backend", name);
        check_fixture(s, &f, "png");
    }
    th_slide_close(s);
    th_error_free(err);
    th_free(want);
    th_free(smp);
}

static void test_png_fixtures(void)
{
    const int NI = PNG_INTERLACE_NONE;
    png_case("gray-alpha", &(png_spec){PNG_COLOR_TYPE_GRAY_ALPHA, 8, NI}, 33, 21);
    png_case("rgb16", &(png_spec){PNG_COLOR_TYPE_RGB, 16, NI}, 27, 19);
    png_case("palette-trns", &(png_spec){PNG_COLOR_TYPE_PALETTE, 8, NI}, 25, 13);
    png_case("rgba", &(png_spec){PNG_COLOR_TYPE_RGB_ALPHA, 8, NI}, 35, 23);
    png_case("interlaced-rgba", &(png_spec){PNG_COLOR_TYPE_RGB_ALPHA, 8, PNG_INTERLACE_ADAM7}, 41,
             29);
    // taller than the 1024-row band: reads in check_fixture and below restart the decoder
    png_case("tall-gray16", &(png_spec){PNG_COLOR_TYPE_GRAY, 16, NI}, 40, 2600);
}

// The libtiff fast path of slide-openslide.c against OpenSlide itself (th_slide_direct_reads off):
// the same bytes for regions on every level, aligned (served by libtiff) or not (OpenSlide),
// straddling the edges; and which levels it serves.
static void test_direct(const char *rel, uint32_t want_levels)
{
    th_error *err = NULL;
    th_slide *fast = th_slide_open(test_data_path(rel), &err);
    th_slide_direct_reads = false;
    th_slide *slow = th_slide_open(test_data_path(rel), &err);
    th_slide_direct_reads = true;
    if (!ok(fast && slow, "%s opens twice", rel)) {
        diag("%s", err ? th_error_message(err) : "");
        th_error_free(err);
        th_slide_close(fast);
        th_slide_close(slow);
        return;
    }
    ok(fast->direct_levels == want_levels && slow->direct_levels == 0,
       "%s: levels read with libtiff: mask %#x (want %#x), none without direct reads", rel,
       (unsigned)fast->direct_levels, (unsigned)want_levels);
    int compared = 0, same = 0;
    for (int level = 0; level < th_slide_get_level_count(fast); level++) {
        int64_t lw, lh, ds = (int64_t)th_slide_get_level_downsample(fast, level);
        th_slide_get_level_dimensions(fast, level, &lw, &lh);
        // level pixels: inside, across the right and bottom edges, above-left, one pixel
        const int64_t regions[][4] = {{3, 5, 300, 200},
                                      {lw - 100, lh - 50, 240, 130},
                                      {-20, -30, 90, 70},
                                      {lw / 2, lh / 3, 1, 1},
                                      {lw / 3, 7, 256, 256}};
        for (size_t i = 0; i < sizeof(regions) / sizeof(regions[0]); i++) {
            for (int shift = 0; shift < 2; shift++) { // shift 1: not on a level pixel
                int64_t x = regions[i][0] * ds + shift, y = regions[i][1] * ds + shift;
                int64_t w = regions[i][2], h = regions[i][3];
                uint8_t *a = read_new(fast, x, y, level, w, h, &err);
                uint8_t *b = read_new(slow, x, y, level, w, h, &err);
                compared++;
                same += a && b && memcmp(a, b, (size_t)(w * h * 3)) == 0;
                th_free(a);
                th_free(b);
            }
        }
    }
    ok(same == compared, "%s: %d of %d regions on %d levels equal OpenSlide's bytes%s%s", rel, same,
       compared, th_slide_get_level_count(fast), err ? ": " : "", err ? th_error_message(err) : "");
    th_error_free(err);
    th_slide_close(fast);
    th_slide_close(slow);
}

// A TIFF whose header claims a huge image and holds no pixel data (as the fuzzer's were).
static bool write_header_only(const char *path, uint32_t w, uint32_t h, uint32_t tile)
{
    TIFF *t = TIFFOpenExt(path, "w8", NULL); // BigTIFF: a million tile offsets may not fit in 4 GB
    if (!t) {
        return false;
    }
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    if (tile) {
        TIFFSetField(t, TIFFTAG_TILEWIDTH, tile);
        TIFFSetField(t, TIFFTAG_TILELENGTH, tile);
    } else {
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, h);
    }
    uint8_t byte = 0; // one byte of the first block, so that libtiff writes the offset table
    bool ok = (tile ? TIFFWriteRawTile(t, 0, &byte, 1) : TIFFWriteRawStrip(t, 0, &byte, 1)) == 1 &&
              TIFFWriteDirectory(t) != 0;
    TIFFClose(t);
    return ok;
}

// Sizes a header claims are bounded before anything is allocated for them: a stripped TIFF's
// row, the tile grid of a huge image.
static void test_huge_headers(void)
{
    char path[512];
    th_error *err = NULL;
    snprintf(path, sizeof(path), "%s/wide-strip.tif", test_tmpdir());
    th_slide *s = write_header_only(path, 1u << 31, 256, 0) ? th_slide_open(path, &err) : NULL;
    ok(!s, "a stripped TIFF 2^31 px wide is refused");
    like(err ? th_error_message(err) : NULL, "wider than tileheat reads from a stripped TIFF",
         "... saying which limit");
    th_error_free(err);
    th_slide_close(s);
    err = NULL;
    snprintf(path, sizeof(path), "%s/huge-grid.tif", test_tmpdir());
    s = write_header_only(path, 1u << 20, 1u << 20, 4096) ? th_slide_open(path, &err) : NULL;
    th_model *m = s ? th_model_load(test_src_path("models/default.onnx"), &err) : NULL;
    th_run_options opt;
    th_run_options_init(&opt);
    opt.slide_mpp = 0.5;
    opt.min_tissue = 0;
    th_result *r = m ? th_run(s, m, &opt, &err) : NULL;
    ok(s && m && !r, "a 2^20-px square image (21.9 M tiles of 224 px) is refused before running");
    like(err ? th_error_message(err) : NULL, "more than tileheat's limit of 16777216",
         "... naming the grid limit");
    th_error_free(err);
    th_model_free(m);
    th_slide_close(s);
}

int main(void)
{
    plan(0);
    test_huge_headers();
    test_direct("slides/CMU-1-Small-Region.svs", 0x1);
    // levels 1-4 have downsamples 2.0003, 4.002, 8.01, 16.03: OpenSlide interpolates there
    test_direct("slides/CMU-1-Small-Region.generic-pyramid.tiff", 0x1);
    test_direct("slides/TCGA-CR-7395-01A-01-TS1.svs", 0x0); // JPEG 2000: libtiff cannot
    test_direct("slides/test3-DAPI-2.ndpi", 0x0);           // NDPI: not tiled TIFF levels
    test_references();
    test_bad_files();
    test_arguments();
    test_threads("slides/CMU-1-Small-Region.svs");
    test_threads("slides/CMU-1-Small-Region.generic-pyramid.tiff");
    test_threads("images/CMU-1-Small-Region.half.lzw.tif");
    test_threads("images/CMU-1-Small-Region.crop1024.png");
    test_pieces("slides/CMU-1-Small-Region.svs", 100, 200, 700, 500);
    test_pieces("images/CMU-1-Small-Region.half.lzw.tif", 50, 60, 900, 1300);
    test_pieces("images/CMU-1-Small-Region.crop1024.png", 10, 20, 1000, 1000);
    test_tiff_fixtures();
    test_corrupt_tile();
    test_png_fixtures();
    return 0;
}
