/* SPDX-License-Identifier: MIT */
/* Write the small generated seed inputs of the fuzz targets: gen-seeds DIR makes DIR/tiff (plain,
 * tiled, pyramidal, gray, palette, alpha, 16-bit, compressed TIFFs), DIR/png (colour types, bit
 * depths, interlaced, pHYs) and DIR/cohort (CSV, TSV and list files, with fuzz-cohort.c's leading
 * selector byte). Every pixel is computed here: nothing is derived from third-party files. */
#include <config.h>

#include <errno.h>
#include <png.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>

static const char *out_dir;

static const char *path_of(const char *sub, const char *name)
{
    static char buf[1024];
    snprintf(buf, sizeof(buf), "%s/%s", out_dir, sub);
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "gen-seeds: cannot create %s: %s\n", buf, strerror(errno));
        exit(1);
    }
    snprintf(buf, sizeof(buf), "%s/%s/%s", out_dir, sub, name);
    return buf;
}

static void die(const char *what)
{
    fprintf(stderr, "gen-seeds: %s failed\n", what);
    exit(1);
}

// A sample value that varies with position: something for tissue detection to threshold.
static uint8_t sample(uint32_t x, uint32_t y, int c)
{
    return (uint8_t)((x * 37 + y * 11 + (uint32_t)c * 85) ^ (x * y));
}

typedef struct tiff_spec {
    const char *name;
    uint32_t w, h;
    int spp, bps, photometric, compression;
    uint32_t tile; // 0: stripped, rows_per_strip 4
    int levels;    // > 1: a pyramid of tiled directories, each half the size
    bool extra_alpha;
} tiff_spec;

static void tiff_dir(TIFF *tif, const tiff_spec *s, uint32_t w, uint32_t h, int level)
{
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, w);
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, h);
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, s->spp);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, s->bps);
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, s->photometric);
    TIFFSetField(tif, TIFFTAG_COMPRESSION, s->compression);
    TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(tif, TIFFTAG_RESOLUTIONUNIT, RESUNIT_CENTIMETER);
    TIFFSetField(tif, TIFFTAG_XRESOLUTION, 20000.0 / (1 << level));
    TIFFSetField(tif, TIFFTAG_YRESOLUTION, 20000.0 / (1 << level));
    if (level > 0) {
        TIFFSetField(tif, TIFFTAG_SUBFILETYPE, FILETYPE_REDUCEDIMAGE);
    }
    if (s->extra_alpha) {
        uint16_t extra = EXTRASAMPLE_UNASSALPHA;
        TIFFSetField(tif, TIFFTAG_EXTRASAMPLES, 1, &extra);
    }
    if (s->photometric == PHOTOMETRIC_PALETTE) {
        static uint16_t map[3][256];
        for (int i = 0; i < 256; i++) {
            map[0][i] = (uint16_t)(i * 257);
            map[1][i] = (uint16_t)((255 - i) * 257);
            map[2][i] = (uint16_t)((i * 3 % 256) * 257);
        }
        TIFFSetField(tif, TIFFTAG_COLORMAP, map[0], map[1], map[2]);
    }
    size_t bits_per_px = (size_t)s->spp * (size_t)s->bps;
    if (s->tile) {
        TIFFSetField(tif, TIFFTAG_TILEWIDTH, s->tile);
        TIFFSetField(tif, TIFFTAG_TILELENGTH, s->tile);
        size_t row_bytes = (s->tile * bits_per_px + 7) / 8;
        uint8_t *buf = calloc(row_bytes * s->tile, 1);
        for (uint32_t ty = 0; ty < h; ty += s->tile) {
            for (uint32_t tx = 0; tx < w; tx += s->tile) {
                for (size_t i = 0; i < row_bytes * s->tile; i++) {
                    buf[i] = sample((uint32_t)(tx + i % row_bytes), ty + (uint32_t)(i / row_bytes),
                                    level);
                }
                if (TIFFWriteTile(tif, buf, tx, ty, 0, 0) < 0) {
                    die("TIFFWriteTile");
                }
            }
        }
        free(buf);
    } else {
        TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, 4);
        size_t row_bytes = (w * bits_per_px + 7) / 8;
        uint8_t *row = calloc(row_bytes, 1);
        for (uint32_t y = 0; y < h; y++) {
            for (size_t i = 0; i < row_bytes; i++) {
                row[i] = sample((uint32_t)i, y, 0);
            }
            if (TIFFWriteScanline(tif, row, y, 0) < 0) {
                die("TIFFWriteScanline");
            }
        }
        free(row);
    }
    if (!TIFFWriteDirectory(tif)) {
        die("TIFFWriteDirectory");
    }
}

static void write_tiff(const tiff_spec *s)
{
    TIFF *tif = TIFFOpen(path_of("tiff", s->name), "w");
    if (!tif) {
        die(s->name);
    }
    for (int level = 0; level < (s->levels > 0 ? s->levels : 1); level++) {
        tiff_dir(tif, s, s->w >> level, s->h >> level, level);
    }
    TIFFClose(tif);
}

typedef struct png_spec {
    const char *name;
    uint32_t w, h;
    int color_type, depth;
    bool interlaced, phys, trns;
} png_spec;

static void write_png(const png_spec *s)
{
    FILE *fp = fopen(path_of("png", s->name), "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!fp || !info || setjmp(png_jmpbuf(png))) {
        die(s->name);
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, s->w, s->h, s->depth, s->color_type,
                 s->interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (s->color_type == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[16];
        for (int i = 0; i < 16; i++) {
            pal[i] = (png_color){(uint8_t)(i * 16), (uint8_t)(255 - i * 16), (uint8_t)(i * 7)};
        }
        png_set_PLTE(png, info, pal, 16);
        if (s->trns) {
            png_byte alpha[4] = {0, 64, 128, 255};
            png_set_tRNS(png, info, alpha, 4, NULL);
        }
    } else if (s->trns) {
        png_color_16 key = {.red = 1, .green = 2, .blue = 3, .gray = 1};
        png_set_tRNS(png, info, NULL, 0, &key);
    }
    if (s->phys) {
        png_set_pHYs(png, info, 4000000, 4000000, PNG_RESOLUTION_METER); // 0.25 µm/px
    }
    png_write_info(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    png_bytep *rows = calloc(s->h, sizeof(*rows));
    for (uint32_t y = 0; y < s->h; y++) {
        rows[y] = malloc(row_bytes);
        for (size_t i = 0; i < row_bytes; i++) {
            rows[y][i] = sample((uint32_t)i, y, 1);
        }
    }
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(fp);
    for (uint32_t y = 0; y < s->h; y++) {
        free(rows[y]);
    }
    free(rows);
}

// fuzz-cohort.c's input: a selector byte (bits 0-1: .csv .tsv .txt none; bit 2: single),
// then the file.
static void write_cohort(const char *name, int selector, const char *text)
{
    FILE *fp = fopen(path_of("cohort", name), "wb");
    if (!fp) {
        die(name);
    }
    fputc(selector, fp);
    fputs(text, fp);
    fclose(fp);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen-seeds DIR\n");
        return 2;
    }
    out_dir = argv[1];
    mkdir(out_dir, 0755);

    static const tiff_spec tiffs[] = {
        {"strip-rgb.tif", 17, 13, 3, 8, PHOTOMETRIC_RGB, COMPRESSION_NONE, 0, 1, false},
        {"strip-gray1.tif", 21, 9, 1, 1, PHOTOMETRIC_MINISWHITE, COMPRESSION_PACKBITS, 0, 1, false},
        {"strip-palette.tif", 12, 12, 1, 8, PHOTOMETRIC_PALETTE, COMPRESSION_LZW, 0, 1, false},
        {"strip-rgba16.tif", 9, 7, 4, 16, PHOTOMETRIC_RGB, COMPRESSION_ADOBE_DEFLATE, 0, 1, true},
        {"tile-rgb.tif", 40, 24, 3, 8, PHOTOMETRIC_RGB, COMPRESSION_ADOBE_DEFLATE, 16, 1, false},
        {"tile-gray4.tif", 20, 20, 1, 4, PHOTOMETRIC_MINISBLACK, COMPRESSION_NONE, 16, 1, false},
        {"pyramid-rgb.tif", 64, 48, 3, 8, PHOTOMETRIC_RGB, COMPRESSION_LZW, 16, 3, false},
    };
    for (size_t i = 0; i < sizeof(tiffs) / sizeof(tiffs[0]); i++) {
        write_tiff(&tiffs[i]);
    }
    static const png_spec pngs[] = {
        {"rgb8.png", 11, 7, PNG_COLOR_TYPE_RGB, 8, false, true, false},
        {"gray1.png", 13, 5, PNG_COLOR_TYPE_GRAY, 1, false, false, false},
        {"palette4-trns.png", 9, 9, PNG_COLOR_TYPE_PALETTE, 4, false, false, true},
        {"rgba16.png", 6, 6, PNG_COLOR_TYPE_RGB_ALPHA, 16, false, false, false},
        {"gray-alpha8.png", 5, 8, PNG_COLOR_TYPE_GRAY_ALPHA, 8, false, false, false},
        {"rgb8-trns.png", 4, 4, PNG_COLOR_TYPE_RGB, 8, false, false, true},
        {"interlaced-rgb8.png", 10, 10, PNG_COLOR_TYPE_RGB, 8, true, false, false},
    };
    for (size_t i = 0; i < sizeof(pngs) / sizeof(pngs[0]); i++) {
        write_png(&pngs[i]);
    }
    write_cohort("table.csv", 0, "id,slide,mpp,roi\na,a.svs,0.25,\"0,0,100,100\"\nb,/x/b.tif,,\n");
    write_cohort("single.csv", 4, "slide,class,mpp\n\"q\"\"uoted.png\",tumor,0.5\nz.tif,,1\n");
    write_cohort("table.tsv", 1, "slide\tid\n a.svs \tone\nsub/b.svs\ttwo\n");
    write_cohort("list.txt", 2, "# slides\na.svs\n\n/abs/b.tif\r\nc.png\n");
    write_cohort("list", 3, "\xef\xbb\xbf" "x.svs\ny.svs\n");
    return 0;
}
