/* SPDX-License-Identifier: MIT */
/* Deep Zoom layout (dzi.h): the .dzi descriptor, level folders, JPEG and PNG tiles, and which
 * tiles are the shared image (no file). */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

#include "dzi.h"

bool th_dzi_open(th_dzi *d, const char *dir, const char *name, int64_t w, int64_t h, bool png,
                 th_error **err)
{
    memset(d, 0, sizeof(*d));
    d->png = png;
    th_pyramid_plan(&d->pyr, w, h, TH_DZI_TILE, TH_DZI_OVERLAP, 1);
    int64_t n = 0;
    for (int k = 0; k < d->pyr.n; k++) {
        d->first[k] = n;
        n += d->pyr.lv[k].cols * d->pyr.lv[k].rows;
    }
    d->shared = th_calloc((size_t)n, 1, err);
    d->files = d->shared ? th_strdup_printf(err, "%s/%s_files", dir, name) : NULL;
    if (!d->files) {
        return false;
    }
    if (mkdir(d->files, 0777) != 0) {
        th_error_set(err, "%s: cannot create: %s", d->files, strerror(errno));
        return false;
    }
    for (int l = 0; l < d->pyr.n; l++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%d", d->files, l);
        if (mkdir(path, 0777) != 0) {
            th_error_set(err, "%s: cannot create: %s", path, strerror(errno));
            return false;
        }
    }
    // The descriptor, for Deep Zoom viewers other than ours (index.html describes the pyramid
    // inline: a page opened from file:// may not fetch XML).
    char *xml = th_strdup_printf(err, "%s/%s.dzi", dir, name);
    th_outfile out = {0};
    if (!xml || !th_outfile_open(&out, xml, err)) {
        th_free(xml);
        return false;
    }
    th_free(xml);
    th_outfile_printf(&out,
                      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<Image xmlns=\"http://schemas.microsoft.com/deepzoom/2008\" Format=\"%s\" "
                      "Overlap=\"%d\" TileSize=\"%d\">\n  <Size Width=\"%" PRId64
                      "\" Height=\"%" PRId64 "\"/>\n</Image>\n",
                      png ? "png" : "jpg", TH_DZI_OVERLAP, TH_DZI_TILE, w, h);
    return th_outfile_commit(&out, err);
}

void th_dzi_close(th_dzi *d)
{
    TH_FREE(d->files);
    TH_FREE(d->shared);
}

void th_dzi_scratch_free(th_dzi_scratch *s)
{
    if (s->png_ready) {
        th_png_band_free(&s->png);
    }
    TH_FREE(s->jpeg);
    memset(s, 0, sizeof(*s));
}

typedef struct jpeg_err {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

// A buffer libjpeg allocated when ours was too small.
static void release_out(th_dzi_scratch *s)
{
    if (s->out && s->out != s->jpeg) {
        free(s->out); // th-allow: libjpeg's jpeg_mem_dest allocated it with malloc
    }
    s->out = NULL;
}

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jump, 1);
}

// The encoded tile goes to s->jpeg, sized for any tile (twice the raw pixels: JPEG at quality
// 85 never comes near); should libjpeg still outgrow it, it mallocs a larger one (s->out).
static bool jpeg_buffer(th_dzi_scratch *s, th_error **err)
{
    int side = TH_DZI_TILE + 2 * TH_DZI_OVERLAP;
    s->jpeg_cap = (unsigned long)side * side * 3 * 2 + 4096;
    s->jpeg = s->jpeg ? s->jpeg : th_malloc(s->jpeg_cap, err);
    return s->jpeg != NULL;
}

/* libjpeg reports errors by longjmp: this is its one setjmp. The output pointer and size live
 * in *s (not in locals), so nothing the jump could clobber is read after it. */
static bool encode_jpeg(th_dzi_scratch *s, const uint8_t *rgb, int w, int h, th_error **err)
{
    if (!jpeg_buffer(s, err)) {
        return false;
    }
    s->out = s->jpeg;
    s->out_len = s->jpeg_cap;
    struct jpeg_compress_struct c;
    jpeg_err je;
    c.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jpeg_on_error;
    if (setjmp(je.jump)) {
        jpeg_destroy_compress(&c);
        release_out(s);
        th_error_set(err, "JPEG: %s", je.msg);
        return false;
    }
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &s->out, &s->out_len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, TH_DZI_JPEG_QUALITY, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)c.next_scanline * w * 3);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c); // s->out_len is now the size written
    jpeg_destroy_compress(&c);
    return true;
}

static bool write_bytes(const char *path, const uint8_t *buf, size_t len, th_error **err)
{
    FILE *fp = th_fopen(path, "wb", err);
    if (!fp) {
        return false;
    }
    bool ok = fwrite(buf, 1, len, fp) == len;
    ok = (fclose(fp) == 0) && ok;
    if (!ok) {
        th_error_set(err, "%s: write error: %s", path, strerror(errno));
        unlink(path);
    }
    return ok;
}

static bool write_png(th_dzi_scratch *s, const char *path, const uint8_t *rgba, int w, int h,
                      th_error **err)
{
    if (!s->png_ready) {
        int side = TH_DZI_TILE + 2 * TH_DZI_OVERLAP;
        if (!th_png_band_init(&s->png, side, 4, side, err)) {
            th_png_band_free(&s->png);
            return false;
        }
        s->png_ready = true;
    }
    s->png.width = w; // the band was sized for the widest tile
    if (!th_png_band_encode(&s->png, rgba, 0, h, err)) {
        return false;
    }
    FILE *fp = th_fopen(path, "wb", err);
    if (!fp) {
        return false;
    }
    uint32_t adler = th_png_adler_init();
    bool ok = th_png_begin(fp, w, h, 4, err) && th_png_write_band(fp, &s->png, &adler, err) &&
              th_png_end(fp, adler, err);
    if (fclose(fp) != 0 && ok) {
        th_error_set(err, "%s: write error: %s", path, strerror(errno));
        ok = false;
    }
    if (!ok) {
        th_error_prefix(err, "%s: ", path);
        unlink(path);
    }
    return ok;
}

static void tile_path(const th_dzi *d, int k, int64_t col, int64_t row, char *path, size_t size)
{
    snprintf(path, size, "%s/%d/%" PRId64 "_%" PRId64 ".%s", d->files, d->pyr.n - 1 - k, col, row,
             d->png ? "png" : "jpg");
}

bool th_dzi_put(const th_dzi *d, th_dzi_scratch *s, int k, int64_t col, int64_t row,
                const uint8_t *px, int w, int h, th_error **err)
{
    char path[4200];
    tile_path(d, k, col, row, path, sizeof(path));
    if (d->png) {
        return write_png(s, path, px, w, h, err);
    }
    if (!encode_jpeg(s, px, w, h, err)) {
        th_error_prefix(err, "%s: ", path);
        return false;
    }
    bool ok = write_bytes(path, s->out, s->out_len, err);
    release_out(s);
    return ok;
}

void th_dzi_put_shared(th_dzi *d, int k, int64_t col, int64_t row)
{
    d->shared[d->first[k] + row * d->pyr.lv[k].cols + col] = 1;
}

bool th_dzi_is_shared(const th_dzi *d, int k, int64_t col, int64_t row)
{
    return d->shared[d->first[k] + row * d->pyr.lv[k].cols + col] != 0;
}

bool th_dzi_write_image(const char *path, bool png, const uint8_t *px, int w, int h, th_error **err)
{
    th_dzi_scratch s = {0};
    bool ok = false;
    if (png) {
        ok = write_png(&s, path, px, w, h, err);
    } else {
        ok = encode_jpeg(&s, px, w, h, err) && write_bytes(path, s.out, s.out_len, err);
        release_out(&s);
    }
    th_dzi_scratch_free(&s);
    return ok;
}
