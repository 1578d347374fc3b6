/* SPDX-License-Identifier: MIT */
/* Class colours: the palette, the model's class_colors metadata and --colors, resolved in one
 * place (th_class_color) for the overlay, the legend, heatmap.tiff and tiles.geojson. */
#include <config.h>

#include <ctype.h>
#include <limits.h>

#include "model.h"
#include "render.h"

/* The class palette: Okabe & Ito (2008), "Color Universal Design", chosen because it stays
 * distinguishable under deuteranopia and protanopia. Reddish purple (#CC79A7) is left out: it is
 * the colour of eosin, and black reads as ink or necrosis. Class c gets entry c mod 6, so a class
 * keeps its colour on every slide and in every output, whatever is shown. The order is Okabe and
 * Ito's own: its first four (orange, sky blue, bluish green, yellow) are the ones farthest from
 * H&E's pink and purple and from each other, so models with up to four classes never get a close
 * pair, and the set's two close pairs (orange/vermillion, bluish green/blue) are split between
 * the first four and the last two. */
const uint8_t th_palette[TH_MAX_SHOWN][3] = {
    {0xe6, 0x9f, 0x00}, // orange
    {0x56, 0xb4, 0xe9}, // sky blue
    {0x00, 0x9e, 0x73}, // bluish green
    {0xf0, 0xe4, 0x42}, // yellow
    {0x00, 0x72, 0xb2}, // blue
    {0xd5, 0x5e, 0x00}, // vermillion
};

// A background class with no colour of its own: neutral grey, and clear in the overlay.
static const uint8_t background_rgb[3] = {0xa0, 0xa0, 0xa0};

// The next item of a comma-separated list at *p, trimmed of blanks: (*item, *len); *p moves past
// its comma. False at the end of the list.
static bool next_item(const char **p, const char **item, size_t *len)
{
    if (!*p) {
        return false;
    }
    const char *s = *p, *end = strchr(s, ',');
    *p = end ? end + 1 : NULL;
    end = end ? end : s + strlen(s);
    while (s < end && (*s == ' ' || *s == '\t')) {
        s++;
    }
    while (end > s && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }
    *item = s;
    *len = (size_t)(end - s);
    return true;
}

// "#rrggbb" (either case), exactly len bytes.
static bool parse_hex(const char *s, size_t len, uint8_t rgb[3])
{
    if (len != 7 || s[0] != '#') {
        return false;
    }
    for (int i = 1; i < 7; i++) {
        if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    for (int ch = 0; ch < 3; ch++) {
        char two[3] = {s[1 + 2 * ch], s[2 + 2 * ch], 0};
        rgb[ch] = (uint8_t)strtoul(two, NULL, 16);
    }
    return true;
}

// Metadata class_colors: exactly one #rrggbb per class; class c's into rgb. All are checked.
static bool meta_colors(const char *s, int n_classes, int c, uint8_t rgb[3], th_error **err)
{
    const char *p = s, *item;
    size_t len;
    int i = 0;
    for (; next_item(&p, &item, &len); i++) {
        uint8_t v[3];
        if (!parse_hex(item, len, v)) {
            th_error_set(err, "metadata class_colors: colour %d '%.*s' is not #rrggbb", i + 1,
                         (int)len, item);
            return false;
        }
        if (i == c) {
            memcpy(rgb, v, 3);
        }
    }
    if (i != n_classes) {
        th_error_set(err, "metadata class_colors: %d colours for %d classes", i, n_classes);
        return false;
    }
    return true;
}

// The class called name[0..len): the model's, or "class<c>" without a model; -1 if none.
static int find_class(const th_model *model, int n_classes, const char *name, size_t len)
{
    char buf[256];
    if (len >= sizeof(buf)) {
        return -1;
    }
    memcpy(buf, name, len);
    buf[len] = 0;
    if (model) {
        return th_model_find_class(model, buf);
    }
    int c, end = 0;
    return sscanf(buf, "class%d%n", &c, &end) == 1 && end == (int)len && c >= 0 && c < n_classes
               ? c
               : -1;
}

// opt->colors, "name=#rrggbb,...": *found = whether it names class c (its colour into rgb).
static bool option_colors(const char *s, const th_model *model, int n_classes, int c,
                          uint8_t rgb[3], bool *found, th_error **err)
{
    const char *p = s, *item;
    size_t len;
    while (next_item(&p, &item, &len)) {
        const char *eq = memchr(item, '=', len);
        size_t name_len = eq ? (size_t)(eq - item) : 0;
        while (name_len > 0 && (item[name_len - 1] == ' ' || item[name_len - 1] == '\t')) {
            name_len--;
        }
        const char *hex = eq ? eq + 1 : NULL;
        size_t hex_len = eq ? len - (size_t)(hex - item) : 0;
        while (hex_len > 0 && (*hex == ' ' || *hex == '\t')) {
            hex++;
            hex_len--;
        }
        uint8_t v[3];
        if (!eq || name_len == 0 || !parse_hex(hex, hex_len, v)) {
            th_error_set(err, "colors: '%.*s' is not NAME=#RRGGBB", (int)len, item);
            return false;
        }
        int k = find_class(model, n_classes, item, name_len);
        if (k < 0) {
            th_error_set(err, "colors: no class named '%.*s'", (int)name_len, item);
            return false;
        }
        if (k == c) {
            memcpy(rgb, v, 3);
            *found = true;
        }
    }
    return true;
}

bool th_class_color(const th_render_options *opt, const th_model *model, int c, uint8_t rgb[3],
                    bool *clear, th_error **err)
{
    int n_classes = model ? th_model_get_class_count(model) : INT_MAX;
    if (c < 0 || c >= n_classes) {
        th_error_set(err, "no class %d (the model has %d)", c, n_classes);
        return false;
    }
    bool own = false;
    const char *meta = model ? th_model_get_metadata(model, "class_colors") : NULL;
    if (meta) {
        if (!meta_colors(meta, n_classes, c, rgb, err)) {
            return false;
        }
        own = true;
    }
    if (opt && opt->colors && !option_colors(opt->colors, model, n_classes, c, rgb, &own, err)) {
        return false;
    }
    *clear = !own && th_model_is_background_class(model, c);
    if (!own) {
        memcpy(rgb, *clear ? background_rgb : th_palette[c % TH_MAX_SHOWN], 3);
    }
    return true;
}

bool th_render_class_color(const th_render_options *opt, const th_model *model, int c,
                           uint8_t rgb[3], th_error **err)
{
    bool clear;
    return th_class_color(opt, model, c, rgb, &clear, err);
}
