/* SPDX-License-Identifier: MIT */
/* Slides: pick a backend (PNG, then anything OpenSlide recognises, then a plain TIFF), validate
 * arguments, and forward reads through the backend vtable. Backends live in slide-openslide.c,
 * slide-tiff.c and slide-png.c. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>

#include "slide.h"

// Largest |x| or |y| accepted (level-0 pixels): far beyond any real slide, small enough that
// backends can add offsets times a downsample without overflowing.
#define COORD_MAX ((int64_t)1 << 48)

typedef bool (*opener_fn)(th_slide *slide, const char *path, th_error **err);

// Order matters: PNG by signature first (OpenSlide never reads PNG), then OpenSlide (which also
// claims tiled TIFFs as "generic-tiff"), then plain TIFFs that OpenSlide does not recognise.
static const opener_fn openers[] = {
    th_slide_png_open,
    th_slide_openslide_open,
    th_slide_tiff_open,
};

// Library messages (OpenSlide, libtiff, libpng) are not promised to be one line: replace line
// breaks so the CLI's "tileheat: <file>: <message>" stays on one line.
static void make_one_line(th_error **err)
{
    if (!*err) {
        return;
    }
    const char *msg = th_error_message(*err);
    if (!strpbrk(msg, "\r\n")) {
        return;
    }
    char *copy = th_strdup(msg, NULL);
    if (!copy) {
        return;
    }
    for (char *p = copy; *p; p++) {
        if (*p == '\r' || *p == '\n') {
            *p = ' ';
        }
    }
    th_error_free(*err);
    *err = NULL;
    th_error_set(err, "%s", copy);
    th_free(copy);
}

// Fail early, with the system's message, on files that cannot be read at all (missing,
// unreadable, a directory); backends would otherwise just say "not a supported format".
static bool check_readable(const char *path, th_error **err)
{
    FILE *fp = th_fopen(path, "rb", err);
    if (!fp) {
        return false;
    }
    uint8_t head[8];
    size_t n = fread(head, 1, sizeof(head), fp);
    bool ok = !ferror(fp);
    int saved = errno;
    fclose(fp);
    if (!ok) {
        th_error_set(err, "cannot read: %s", strerror(saved));
    } else if (n == 0) {
        th_error_set(err, "empty file");
        ok = false;
    }
    return ok;
}

static bool check_geometry(const th_slide *slide, th_error **err)
{
    if (slide->level_count < 1 || slide->level_count > TH_SLIDE_MAX_LEVELS) {
        th_error_set(err, "unsupported level count %d", slide->level_count);
        return false;
    }
    for (int i = 0; i < slide->level_count; i++) {
        if (slide->level_w[i] <= 0 || slide->level_h[i] <= 0 || slide->downsample[i] <= 0) {
            th_error_set(err, "level %d has an invalid size %" PRId64 "x%" PRId64, i,
                         slide->level_w[i], slide->level_h[i]);
            return false;
        }
    }
    return true;
}

th_slide *th_slide_open(const char *path, th_error **err)
{
    th_error *tmp = NULL;
    th_slide *slide = NULL;
    bool opened = false;

    if (!path || !*path) {
        th_error_set(err, "no slide path given");
        return NULL;
    }
    if (!check_readable(path, &tmp)) {
        goto out;
    }
    slide = th_calloc(1, sizeof(*slide), &tmp);
    if (!slide) {
        goto out;
    }
    for (size_t i = 0; i < sizeof(openers) / sizeof(openers[0]) && !opened && !tmp; i++) {
        opened = openers[i](slide, path, &tmp);
    }
    if (!opened && !tmp) {
        th_error_set(&tmp, "not a supported slide or image format");
    }
    if (opened && !check_geometry(slide, &tmp)) {
        opened = false;
    }
out:
    if (!opened) {
        th_slide_close(slide);
        slide = NULL;
        make_one_line(&tmp);
        th_error_propagate(err, &tmp);
    }
    return slide;
}

void th_slide_close(th_slide *slide)
{
    if (!slide) {
        return;
    }
    if (slide->ops && slide->ops->close) {
        slide->ops->close(slide);
    }
    th_free(slide);
}

const char *th_slide_get_format(const th_slide *slide)
{
    return slide ? slide->format : NULL;
}

int th_slide_get_level_count(const th_slide *slide)
{
    return slide ? slide->level_count : 0;
}

bool th_slide_get_level_dimensions(const th_slide *slide, int level, int64_t *w, int64_t *h)
{
    bool ok = slide && level >= 0 && level < slide->level_count;
    if (w) {
        *w = ok ? slide->level_w[level] : 0;
    }
    if (h) {
        *h = ok ? slide->level_h[level] : 0;
    }
    return ok;
}

double th_slide_get_level_downsample(const th_slide *slide, int level)
{
    if (!slide || level < 0 || level >= slide->level_count) {
        return 0;
    }
    return slide->downsample[level];
}

bool th_slide_get_mpp(const th_slide *slide, double *mpp_x, double *mpp_y)
{
    bool ok = slide && slide->mpp_x > 0 && slide->mpp_y > 0;
    if (mpp_x) {
        *mpp_x = ok ? slide->mpp_x : 0;
    }
    if (mpp_y) {
        *mpp_y = ok ? slide->mpp_y : 0;
    }
    return ok;
}

void th_slide_release_level(th_slide *slide, int level)
{
    if (slide && slide->ops && slide->ops->release && level >= 0 && level < slide->level_count) {
        slide->ops->release(slide, level);
    }
}

static bool check_region(const th_slide *slide, const uint8_t *dest, int64_t x, int64_t y,
                         int level, int64_t w, int64_t h, th_error **err)
{
    if (!slide || !slide->ops || !dest) {
        th_error_set(err, "read_region: no slide or no destination buffer");
        return false;
    }
    if (level < 0 || level >= slide->level_count) {
        th_error_set(err, "level %d does not exist (the slide has %d)", level, slide->level_count);
        return false;
    }
    if (w <= 0 || h <= 0) {
        th_error_set(err, "invalid region size %" PRId64 "x%" PRId64, w, h);
        return false;
    }
    if ((uint64_t)w > SIZE_MAX / 3 / (uint64_t)h || w > INT64_MAX / 3 / h) {
        th_error_set(err, "region %" PRId64 "x%" PRId64 " is too large", w, h);
        return false;
    }
    if (x < -COORD_MAX || x > COORD_MAX || y < -COORD_MAX || y > COORD_MAX) {
        th_error_set(err, "region position %" PRId64 ",%" PRId64 " is out of range", x, y);
        return false;
    }
    return true;
}

bool th_slide_read_region(th_slide *slide, uint8_t *dest, int64_t x, int64_t y, int level,
                          int64_t w, int64_t h, th_error **err)
{
    th_error *tmp = NULL;
    bool ok = check_region(slide, dest, x, y, level, w, h, &tmp) &&
              slide->ops->read_region(slide, dest, x, y, level, w, h, &tmp);
    if (!ok) {
        if (!tmp) {
            th_error_set(&tmp, "read failed");
        }
        make_one_line(&tmp);
        th_error_propagate(err, &tmp);
    }
    return ok;
}

void th_slide_set_resolution_mpp(th_slide *slide, double rx, double ry, double unit_um,
                                 const char *source)
{
    if (!(rx > 0 && ry > 0)) {
        return;
    }
    double mx = unit_um / rx, my = unit_um / ry;
    if (mx >= TH_MPP_MIN && mx <= TH_MPP_MAX && my >= TH_MPP_MIN && my <= TH_MPP_MAX) {
        slide->mpp_x = mx;
        slide->mpp_y = my;
        snprintf(slide->mpp_source, sizeof(slide->mpp_source), "%s", source);
    }
}

int th_slide_coarsest_level(const th_slide *slide, double limit)
{
    int best = 0;
    double best_ds = th_slide_get_level_downsample(slide, 0);
    for (int l = 1; l < th_slide_get_level_count(slide); l++) {
        double ds = th_slide_get_level_downsample(slide, l);
        if (ds <= limit * (1 + 1e-9) && ds > best_ds) {
            best = l;
            best_ds = ds;
        }
    }
    return best;
}

bool th_slide_is_plain_image(const th_slide *slide)
{
    return strcmp(slide->format, "tiff") == 0 || strcmp(slide->format, "png") == 0;
}

void th_slide_fill_white(uint8_t *dest, int64_t w, int64_t h)
{
    if (dest && w > 0 && h > 0) {
        memset(dest, 255, (size_t)w * (size_t)h * 3);
    }
}
