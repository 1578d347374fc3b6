/* SPDX-License-Identifier: MIT */
/* Heatmap rendering: colormaps, the CAM overlay (shared with render-tiff.c; class colours come
 * from palette.c, glass stays clear by the tissue mask) and the streaming PNG writer (its legend
 * panel is in font.c). The image is produced in bands of rows: each band's slide pixels are read
 * through a view of the best pyramid level (th_view: area averages), blended with the CAMs,
 * filtered and deflated into an IDAT chunk (png-bands.c), so memory stays O(output width × band
 * height) whatever the slide size. Bands are rendered and compressed in parallel and written in
 * order. */
#include <config.h>

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <strings.h>

#include "cam.h"
#include "png-bands.h"
#include "slide.h"
#include "render.h"
#include "result.h"
#include "tiler.h"
#include "tissue.h"

#define BAND_ROWS 32            // output rows rendered at a time
#define REGION_MAX_PX (1 << 21) // slide pixels read at a time (6 MB of RGB)
#define NAME_MAX_CHARS 32       // class names are cut to this many bytes in the legend

// BEGIN gen-colormaps (tools/gen-colormaps.py, matplotlib 3.6.3; do not edit)
static const uint32_t cmap_viridis[256] = {
    0x440154, 0x440256, 0x450457, 0x450559, 0x46075a, 0x46085c, 0x460a5d, 0x460b5e, 0x470d60,
    0x470e61, 0x471063, 0x471164, 0x471365, 0x481467, 0x481668, 0x481769, 0x48186a, 0x481a6c,
    0x481b6d, 0x481c6e, 0x481d6f, 0x481f70, 0x482071, 0x482173, 0x482374, 0x482475, 0x482576,
    0x482677, 0x482878, 0x482979, 0x472a7a, 0x472c7a, 0x472d7b, 0x472e7c, 0x472f7d, 0x46307e,
    0x46327e, 0x46337f, 0x463480, 0x453581, 0x453781, 0x453882, 0x443983, 0x443a83, 0x443b84,
    0x433d84, 0x433e85, 0x423f85, 0x424086, 0x424186, 0x414287, 0x414487, 0x404588, 0x404688,
    0x3f4788, 0x3f4889, 0x3e4989, 0x3e4a89, 0x3e4c8a, 0x3d4d8a, 0x3d4e8a, 0x3c4f8a, 0x3c508b,
    0x3b518b, 0x3b528b, 0x3a538b, 0x3a548c, 0x39558c, 0x39568c, 0x38588c, 0x38598c, 0x375a8c,
    0x375b8d, 0x365c8d, 0x365d8d, 0x355e8d, 0x355f8d, 0x34608d, 0x34618d, 0x33628d, 0x33638d,
    0x32648e, 0x32658e, 0x31668e, 0x31678e, 0x31688e, 0x30698e, 0x306a8e, 0x2f6b8e, 0x2f6c8e,
    0x2e6d8e, 0x2e6e8e, 0x2e6f8e, 0x2d708e, 0x2d718e, 0x2c718e, 0x2c728e, 0x2c738e, 0x2b748e,
    0x2b758e, 0x2a768e, 0x2a778e, 0x2a788e, 0x29798e, 0x297a8e, 0x297b8e, 0x287c8e, 0x287d8e,
    0x277e8e, 0x277f8e, 0x27808e, 0x26818e, 0x26828e, 0x26828e, 0x25838e, 0x25848e, 0x25858e,
    0x24868e, 0x24878e, 0x23888e, 0x23898e, 0x238a8d, 0x228b8d, 0x228c8d, 0x228d8d, 0x218e8d,
    0x218f8d, 0x21908d, 0x21918c, 0x20928c, 0x20928c, 0x20938c, 0x1f948c, 0x1f958b, 0x1f968b,
    0x1f978b, 0x1f988b, 0x1f998a, 0x1f9a8a, 0x1e9b8a, 0x1e9c89, 0x1e9d89, 0x1f9e89, 0x1f9f88,
    0x1fa088, 0x1fa188, 0x1fa187, 0x1fa287, 0x20a386, 0x20a486, 0x21a585, 0x21a685, 0x22a785,
    0x22a884, 0x23a983, 0x24aa83, 0x25ab82, 0x25ac82, 0x26ad81, 0x27ad81, 0x28ae80, 0x29af7f,
    0x2ab07f, 0x2cb17e, 0x2db27d, 0x2eb37c, 0x2fb47c, 0x31b57b, 0x32b67a, 0x34b679, 0x35b779,
    0x37b878, 0x38b977, 0x3aba76, 0x3bbb75, 0x3dbc74, 0x3fbc73, 0x40bd72, 0x42be71, 0x44bf70,
    0x46c06f, 0x48c16e, 0x4ac16d, 0x4cc26c, 0x4ec36b, 0x50c46a, 0x52c569, 0x54c568, 0x56c667,
    0x58c765, 0x5ac864, 0x5cc863, 0x5ec962, 0x60ca60, 0x63cb5f, 0x65cb5e, 0x67cc5c, 0x69cd5b,
    0x6ccd5a, 0x6ece58, 0x70cf57, 0x73d056, 0x75d054, 0x77d153, 0x7ad151, 0x7cd250, 0x7fd34e,
    0x81d34d, 0x84d44b, 0x86d549, 0x89d548, 0x8bd646, 0x8ed645, 0x90d743, 0x93d741, 0x95d840,
    0x98d83e, 0x9bd93c, 0x9dd93b, 0xa0da39, 0xa2da37, 0xa5db36, 0xa8db34, 0xaadc32, 0xaddc30,
    0xb0dd2f, 0xb2dd2d, 0xb5de2b, 0xb8de29, 0xbade28, 0xbddf26, 0xc0df25, 0xc2df23, 0xc5e021,
    0xc8e020, 0xcae11f, 0xcde11d, 0xd0e11c, 0xd2e21b, 0xd5e21a, 0xd8e219, 0xdae319, 0xdde318,
    0xdfe318, 0xe2e418, 0xe5e419, 0xe7e419, 0xeae51a, 0xece51b, 0xefe51c, 0xf1e51d, 0xf4e61e,
    0xf6e620, 0xf8e621, 0xfbe723, 0xfde725,
};
static const uint32_t cmap_inferno[256] = {
    0x000004, 0x010005, 0x010106, 0x010108, 0x02010a, 0x02020c, 0x02020e, 0x030210, 0x040312,
    0x040314, 0x050417, 0x060419, 0x07051b, 0x08051d, 0x09061f, 0x0a0722, 0x0b0724, 0x0c0826,
    0x0d0829, 0x0e092b, 0x10092d, 0x110a30, 0x120a32, 0x140b34, 0x150b37, 0x160b39, 0x180c3c,
    0x190c3e, 0x1b0c41, 0x1c0c43, 0x1e0c45, 0x1f0c48, 0x210c4a, 0x230c4c, 0x240c4f, 0x260c51,
    0x280b53, 0x290b55, 0x2b0b57, 0x2d0b59, 0x2f0a5b, 0x310a5c, 0x320a5e, 0x340a5f, 0x360961,
    0x380962, 0x390963, 0x3b0964, 0x3d0965, 0x3e0966, 0x400a67, 0x420a68, 0x440a68, 0x450a69,
    0x470b6a, 0x490b6a, 0x4a0c6b, 0x4c0c6b, 0x4d0d6c, 0x4f0d6c, 0x510e6c, 0x520e6d, 0x540f6d,
    0x550f6d, 0x57106e, 0x59106e, 0x5a116e, 0x5c126e, 0x5d126e, 0x5f136e, 0x61136e, 0x62146e,
    0x64156e, 0x65156e, 0x67166e, 0x69166e, 0x6a176e, 0x6c186e, 0x6d186e, 0x6f196e, 0x71196e,
    0x721a6e, 0x741a6e, 0x751b6e, 0x771c6d, 0x781c6d, 0x7a1d6d, 0x7c1d6d, 0x7d1e6d, 0x7f1e6c,
    0x801f6c, 0x82206c, 0x84206b, 0x85216b, 0x87216b, 0x88226a, 0x8a226a, 0x8c2369, 0x8d2369,
    0x8f2469, 0x902568, 0x922568, 0x932667, 0x952667, 0x972766, 0x982766, 0x9a2865, 0x9b2964,
    0x9d2964, 0x9f2a63, 0xa02a63, 0xa22b62, 0xa32c61, 0xa52c60, 0xa62d60, 0xa82e5f, 0xa92e5e,
    0xab2f5e, 0xad305d, 0xae305c, 0xb0315b, 0xb1325a, 0xb3325a, 0xb43359, 0xb63458, 0xb73557,
    0xb93556, 0xba3655, 0xbc3754, 0xbd3853, 0xbf3952, 0xc03a51, 0xc13a50, 0xc33b4f, 0xc43c4e,
    0xc63d4d, 0xc73e4c, 0xc83f4b, 0xca404a, 0xcb4149, 0xcc4248, 0xce4347, 0xcf4446, 0xd04545,
    0xd24644, 0xd34743, 0xd44842, 0xd54a41, 0xd74b3f, 0xd84c3e, 0xd94d3d, 0xda4e3c, 0xdb503b,
    0xdd513a, 0xde5238, 0xdf5337, 0xe05536, 0xe15635, 0xe25734, 0xe35933, 0xe45a31, 0xe55c30,
    0xe65d2f, 0xe75e2e, 0xe8602d, 0xe9612b, 0xea632a, 0xeb6429, 0xeb6628, 0xec6726, 0xed6925,
    0xee6a24, 0xef6c23, 0xef6e21, 0xf06f20, 0xf1711f, 0xf1731d, 0xf2741c, 0xf3761b, 0xf37819,
    0xf47918, 0xf57b17, 0xf57d15, 0xf67e14, 0xf68013, 0xf78212, 0xf78410, 0xf8850f, 0xf8870e,
    0xf8890c, 0xf98b0b, 0xf98c0a, 0xf98e09, 0xfa9008, 0xfa9207, 0xfa9407, 0xfb9606, 0xfb9706,
    0xfb9906, 0xfb9b06, 0xfb9d07, 0xfc9f07, 0xfca108, 0xfca309, 0xfca50a, 0xfca60c, 0xfca80d,
    0xfcaa0f, 0xfcac11, 0xfcae12, 0xfcb014, 0xfcb216, 0xfcb418, 0xfbb61a, 0xfbb81d, 0xfbba1f,
    0xfbbc21, 0xfbbe23, 0xfac026, 0xfac228, 0xfac42a, 0xfac62d, 0xf9c72f, 0xf9c932, 0xf9cb35,
    0xf8cd37, 0xf8cf3a, 0xf7d13d, 0xf7d340, 0xf6d543, 0xf6d746, 0xf5d949, 0xf5db4c, 0xf4dd4f,
    0xf4df53, 0xf4e156, 0xf3e35a, 0xf3e55d, 0xf2e661, 0xf2e865, 0xf2ea69, 0xf1ec6d, 0xf1ed71,
    0xf1ef75, 0xf1f179, 0xf2f27d, 0xf2f482, 0xf3f586, 0xf3f68a, 0xf4f88e, 0xf5f992, 0xf6fa96,
    0xf8fb9a, 0xf9fc9d, 0xfafda1, 0xfcffa4,
};
static const uint32_t cmap_magma[256] = {
    0x000004, 0x010005, 0x010106, 0x010108, 0x020109, 0x02020b, 0x02020d, 0x03030f, 0x030312,
    0x040414, 0x050416, 0x060518, 0x06051a, 0x07061c, 0x08071e, 0x090720, 0x0a0822, 0x0b0924,
    0x0c0926, 0x0d0a29, 0x0e0b2b, 0x100b2d, 0x110c2f, 0x120d31, 0x130d34, 0x140e36, 0x150e38,
    0x160f3b, 0x180f3d, 0x19103f, 0x1a1042, 0x1c1044, 0x1d1147, 0x1e1149, 0x20114b, 0x21114e,
    0x221150, 0x241253, 0x251255, 0x271258, 0x29115a, 0x2a115c, 0x2c115f, 0x2d1161, 0x2f1163,
    0x311165, 0x331067, 0x341069, 0x36106b, 0x38106c, 0x390f6e, 0x3b0f70, 0x3d0f71, 0x3f0f72,
    0x400f74, 0x420f75, 0x440f76, 0x451077, 0x471078, 0x491078, 0x4a1079, 0x4c117a, 0x4e117b,
    0x4f127b, 0x51127c, 0x52137c, 0x54137d, 0x56147d, 0x57157e, 0x59157e, 0x5a167e, 0x5c167f,
    0x5d177f, 0x5f187f, 0x601880, 0x621980, 0x641a80, 0x651a80, 0x671b80, 0x681c81, 0x6a1c81,
    0x6b1d81, 0x6d1d81, 0x6e1e81, 0x701f81, 0x721f81, 0x732081, 0x752181, 0x762181, 0x782281,
    0x792282, 0x7b2382, 0x7c2382, 0x7e2482, 0x802582, 0x812581, 0x832681, 0x842681, 0x862781,
    0x882781, 0x892881, 0x8b2981, 0x8c2981, 0x8e2a81, 0x902a81, 0x912b81, 0x932b80, 0x942c80,
    0x962c80, 0x982d80, 0x992d80, 0x9b2e7f, 0x9c2e7f, 0x9e2f7f, 0xa02f7f, 0xa1307e, 0xa3307e,
    0xa5317e, 0xa6317d, 0xa8327d, 0xaa337d, 0xab337c, 0xad347c, 0xae347b, 0xb0357b, 0xb2357b,
    0xb3367a, 0xb5367a, 0xb73779, 0xb83779, 0xba3878, 0xbc3978, 0xbd3977, 0xbf3a77, 0xc03a76,
    0xc23b75, 0xc43c75, 0xc53c74, 0xc73d73, 0xc83e73, 0xca3e72, 0xcc3f71, 0xcd4071, 0xcf4070,
    0xd0416f, 0xd2426f, 0xd3436e, 0xd5446d, 0xd6456c, 0xd8456c, 0xd9466b, 0xdb476a, 0xdc4869,
    0xde4968, 0xdf4a68, 0xe04c67, 0xe24d66, 0xe34e65, 0xe44f64, 0xe55064, 0xe75263, 0xe85362,
    0xe95462, 0xea5661, 0xeb5760, 0xec5860, 0xed5a5f, 0xee5b5e, 0xef5d5e, 0xf05f5e, 0xf1605d,
    0xf2625d, 0xf2645c, 0xf3655c, 0xf4675c, 0xf4695c, 0xf56b5c, 0xf66c5c, 0xf66e5c, 0xf7705c,
    0xf7725c, 0xf8745c, 0xf8765c, 0xf9785d, 0xf9795d, 0xf97b5d, 0xfa7d5e, 0xfa7f5e, 0xfa815f,
    0xfb835f, 0xfb8560, 0xfb8761, 0xfc8961, 0xfc8a62, 0xfc8c63, 0xfc8e64, 0xfc9065, 0xfd9266,
    0xfd9467, 0xfd9668, 0xfd9869, 0xfd9a6a, 0xfd9b6b, 0xfe9d6c, 0xfe9f6d, 0xfea16e, 0xfea36f,
    0xfea571, 0xfea772, 0xfea973, 0xfeaa74, 0xfeac76, 0xfeae77, 0xfeb078, 0xfeb27a, 0xfeb47b,
    0xfeb67c, 0xfeb77e, 0xfeb97f, 0xfebb81, 0xfebd82, 0xfebf84, 0xfec185, 0xfec287, 0xfec488,
    0xfec68a, 0xfec88c, 0xfeca8d, 0xfecc8f, 0xfecd90, 0xfecf92, 0xfed194, 0xfed395, 0xfed597,
    0xfed799, 0xfed89a, 0xfdda9c, 0xfddc9e, 0xfddea0, 0xfde0a1, 0xfde2a3, 0xfde3a5, 0xfde5a7,
    0xfde7a9, 0xfde9aa, 0xfdebac, 0xfcecae, 0xfceeb0, 0xfcf0b2, 0xfcf2b4, 0xfcf4b6, 0xfcf6b8,
    0xfcf7b9, 0xfcf9bb, 0xfcfbbd, 0xfcfdbf,
};
static const uint32_t cmap_ylorrd[9] = {
    0xffffcc, 0xffeda0, 0xfed976, 0xfeb24c, 0xfd8d3c, 0xfc4e2a, 0xe31a1c, 0xbd0026, 0x800026,
};
// END gen-colormaps

/* lrintf for 0 <= x < 2^22, inline (the library call was a tenth of the overlay's time): after
 * adding 1.5 · 2^23 no bits below the units are left, so the sum is x rounded as lrintf rounds
 * (the current mode: to nearest, ties to even). Needs float arithmetic in float precision. */
static inline uint8_t round_u8(float x)
{
#if FLT_EVAL_METHOD == 0
    const float magic = 12582912.0f;
    return (uint8_t)(int)((x + magic) - magic);
#else
    return (uint8_t)lrintf(x);
#endif
}

// Linear interpolation in a table of n 0xRRGGBB entries spread evenly over [0, 1].
static void lut_rgb(const uint32_t *lut, int n, float t, uint8_t rgb[3])
{
    float pos = t * (float)(n - 1);
    int i = TH_MIN((int)pos, n - 2);
    float f = pos - (float)i;
    for (int ch = 0; ch < 3; ch++) {
        int shift = 16 - 8 * ch;
        float a = (float)((lut[i] >> shift) & 0xff), b = (float)((lut[i + 1] >> shift) & 0xff);
        rgb[ch] = round_u8(a + (b - a) * f);
    }
}

void th_colormap_rgb(th_colormap cmap, float t, uint8_t rgb[3])
{
    t = TH_CLAMP(t, 0.0f, 1.0f); // NaN becomes 0
    switch (cmap) {
    case TH_COLORMAP_INFERNO:
        lut_rgb(cmap_inferno, 256, t, rgb);
        return;
    case TH_COLORMAP_MAGMA:
        lut_rgb(cmap_magma, 256, t, rgb);
        return;
    case TH_COLORMAP_JET:
        // The classic piecewise-linear jet: dark blue, blue, cyan, yellow, red, dark red.
        for (int ch = 0; ch < 3; ch++) {
            float v = 1.5f - fabsf(4.0f * t - (float)(3 - ch));
            rgb[ch] = round_u8(255.0f * TH_CLAMP(v, 0.0f, 1.0f));
        }
        return;
    case TH_COLORMAP_YLORRD:
        lut_rgb(cmap_ylorrd, 9, t, rgb);
        return;
    case TH_COLORMAP_VIRIDIS:
    default:
        lut_rgb(cmap_viridis, 256, t, rgb);
        return;
    }
}

static const struct {
    const char *name;
    th_colormap cmap;
} colormap_names[] = {
    {"viridis", TH_COLORMAP_VIRIDIS}, {"inferno", TH_COLORMAP_INFERNO},
    {"magma", TH_COLORMAP_MAGMA},     {"jet", TH_COLORMAP_JET},
    {"ylorrd", TH_COLORMAP_YLORRD},
};
#define N_COLORMAPS (sizeof(colormap_names) / sizeof(colormap_names[0]))

const char *th_colormap_name(th_colormap cmap)
{
    for (size_t i = 0; i < N_COLORMAPS; i++) {
        if (colormap_names[i].cmap == cmap) {
            return colormap_names[i].name;
        }
    }
    return "viridis";
}

bool th_colormap_from_name(const char *name, th_colormap *out)
{
    for (size_t i = 0; name && i < N_COLORMAPS; i++) {
        if (strcasecmp(name, colormap_names[i].name) == 0) {
            if (out) {
                *out = colormap_names[i].cmap;
            }
            return true;
        }
    }
    return false;
}

void th_render_options_init(th_render_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->n_shown = 1;
    opt->shown[0] = 0;
    opt->multi = false;
    opt->colormap = TH_COLORMAP_VIRIDIS;
    opt->alpha = 0.5;
    opt->threshold = 0.2;
    opt->width = 2000;
    opt->norm = TH_NORM_PERCENTILE;
    opt->percentile = 99;
}

/* ---------------------------------------------------------------- the overlay */

static bool check_options(const th_result *res, const th_render_options *opt, th_error **err)
{
    if (opt->n_shown < 1 || opt->n_shown > TH_MAX_SHOWN) {
        th_error_set(err, "%d classes to show (must be 1 to %d)", opt->n_shown, TH_MAX_SHOWN);
        return false;
    }
    for (int i = 0; i < opt->n_shown; i++) {
        if (opt->shown[i] < 0 || opt->shown[i] >= res->n_classes) {
            th_error_set(err, "no class %d (the result has %d)", opt->shown[i], res->n_classes);
            return false;
        }
    }
    if (!(opt->alpha >= 0 && opt->alpha <= 1) || !(opt->threshold >= 0 && opt->threshold <= 1)) {
        th_error_set(err, "alpha %g and threshold %g must be between 0 and 1", opt->alpha,
                     opt->threshold);
        return false;
    }
    if (opt->norm != TH_NORM_PERCENTILE && opt->norm != TH_NORM_RAW) {
        th_error_set(err, "unknown normalisation %d", (int)opt->norm);
        return false;
    }
    if (opt->norm == TH_NORM_PERCENTILE && !(opt->percentile > 0 && opt->percentile <= 100)) {
        th_error_set(err, "percentile %g must be in (0, 100]", opt->percentile);
        return false;
    }
    if ((unsigned)opt->colormap > TH_COLORMAP_YLORRD) {
        th_error_set(err, "unknown colormap %d", (int)opt->colormap);
        return false;
    }
    return true;
}

// The result must come from this slide: its grid's level has to have the grid's size.
static bool check_result(const th_slide *slide, const th_result *res, const th_model *model,
                         th_error **err)
{
    int64_t w, h;
    const th_grid *g = &res->grid;
    if (!th_slide_get_level_dimensions(slide, g->level, &w, &h) || w != g->level_w ||
        h != g->level_h) {
        th_error_set(err,
                     "the result was computed on a %" PRId64 "×%" PRId64 " level %d, "
                     "which this slide does not have",
                     g->level_w, g->level_h, g->level);
        return false;
    }
    if (model && th_model_get_class_count(model) != res->n_classes) {
        th_error_set(err, "the model has %d classes, the result %d",
                     th_model_get_class_count(model), res->n_classes);
        return false;
    }
    return true;
}

bool th_render_ranges(const th_result *res, const th_render_options *opt, float *lo, float *hi,
                      th_scale_basis *basis, th_error **err)
{
    th_scale_basis own[TH_MAX_SHOWN];
    basis = basis ? basis : own;
    int n = opt->norm == TH_NORM_RAW ? 1 : opt->n_shown;
    th_error *errs[TH_MAX_SHOWN] = {NULL};
#ifdef _OPENMP
#pragma omp parallel for num_threads(th_threads(opt->threads)) schedule(dynamic)
#endif
    for (int i = 0; i < n; i++) {
        const int *classes = opt->norm == TH_NORM_RAW ? opt->shown : &opt->shown[i];
        int n_classes = opt->norm == TH_NORM_RAW ? opt->n_shown : 1;
        if (th_cam_range(res, opt->norm, opt->percentile, classes, n_classes, &lo[i], &hi[i],
                         &basis[i], &errs[i]) &&
            !(hi[i] > lo[i])) {
            hi[i] = lo[i] + 1; // a flat class: everything at the low end
            basis[i] = TH_SCALE_FLAT;
        }
    }
    bool ok = true;
    for (int i = 0; i < n; i++) {
        if (errs[i] && ok) {
            th_error_propagate(err, &errs[i]); // the first failure, in class order
            ok = false;
        }
        th_error_free(errs[i]);
    }
    for (int i = n; i < opt->n_shown; i++) { // TH_NORM_RAW: every class shares the range
        lo[i] = lo[0];
        hi[i] = hi[0];
        basis[i] = basis[0];
    }
    return ok;
}

bool th_overlay_init(th_overlay *ov, const th_slide *slide, const th_result *res,
                     const th_model *model, const th_render_options *opt, th_error **err)
{
    memset(ov, 0, sizeof(*ov));
    if (!check_options(res, opt, err) || !check_result(slide, res, model, err)) {
        return false;
    }
    ov->res = res;
    ov->cmap = opt->colormap;
    ov->multi = opt->multi || opt->n_shown > 1;
    ov->n = opt->n_shown;
    memcpy(ov->cls, opt->shown, sizeof(ov->cls));
    ov->alpha = (float)opt->alpha;
    ov->threshold = (float)opt->threshold;
    for (int i = 0; ov->multi && i < ov->n; i++) {
        if (!th_class_color(opt, model, ov->cls[i], ov->rgb[i], &ov->clear[i], err)) {
            return false;
        }
    }
    ov->glass = opt->tint_glass ? NULL : res->tissue;
    th_result_get_cam_grid(res, &ov->gw, &ov->gh, &ov->x0, &ov->y0, &ov->cell_w0, &ov->cell_h0);
    return th_render_ranges(ov->res, opt, ov->lo, ov->hi, ov->basis, err);
}

/* The arithmetic of th_cam_sample (cam.c), one axis at a time: p is the point in cells, cell
 * centres sit at integer positions, and the neighbours' weights are a and 1 - a. The blend in
 * th_overlay_row multiplies the two axes' weights exactly as th_cam_sample does, so the values
 * are bit-identical (tests/test-render.c checks every pixel against th_cam_sample). */
void th_overlay_plan_axis(const th_overlay *ov, bool rows, double s, int64_t first, int64_t n,
                          th_overlay_axis *out)
{
    double origin = rows ? ov->y0 : ov->x0, cell = rows ? ov->cell_h0 : ov->cell_w0;
    int64_t g = rows ? ov->gh : ov->gw;
    const th_tissue *t = ov->glass;
    for (int64_t i = 0; i < n; i++) {
        double centre = ((double)(first + i) + 0.5) * s; // level 0
        double p = (centre - origin) / cell;
        th_overlay_axis *ax = &out[i];
        if (p < 0 || p >= (double)g) {
            *ax = (th_overlay_axis){.c0 = -1, .c1 = -1, .own = -1};
            continue;
        }
        // The mask pixel that holds the centre (the mask covers the slide exactly).
        ax->m = t ? (int)TH_CLAMP(floor(centre / (rows ? t->sy : t->sx)), 0.0,
                                  (double)((rows ? t->h : t->w) - 1))
                  : 0;
        double f = TH_CLAMP(p - 0.5, 0.0, (double)(g - 1));
        ax->c0 = (int64_t)f;
        ax->c1 = TH_MIN(ax->c0 + 1, g - 1);
        ax->own = (int64_t)p;
        ax->a = f - (double)ax->c0;
        ax->b = 1 - ax->a;
    }
}

bool th_overlay_cache_init(th_overlay_cache *c, const th_overlay *ov, th_error **err)
{
    memset(c, 0, sizeof(*c));
    size_t n = (size_t)ov->n * (size_t)TH_MAX(ov->gw, 1);
    c->row[0] = c->row[1] = -1;
    c->v[0] = th_malloc(n * sizeof(float), err);
    c->v[1] = c->v[0] ? th_malloc(n * sizeof(float), err) : NULL;
    return c->v[1] != NULL;
}

void th_overlay_cache_free(th_overlay_cache *c)
{
    TH_FREE(c->v[0]);
    TH_FREE(c->v[1]);
}

// Grid row gy of every class shown, (n, gw), valid over the columns [lo, hi): from the cache,
// else read over the slot used least recently.
static const float *cam_rows(const th_overlay *ov, th_overlay_cache *c, int64_t gy, int64_t lo,
                             int64_t hi)
{
    int slot = -1;
    for (int s = 0; s < 2 && slot < 0; s++) {
        slot = c->row[s] == gy && c->lo[s] <= lo && hi <= c->hi[s] ? s : -1;
    }
    if (slot < 0) {
        slot = 1 - c->last;
        for (int i = 0; i < ov->n; i++) {
            th_result_read_cam_span(ov->res, ov->cls[i], gy, lo, hi,
                                    c->v[slot] + (size_t)i * ov->gw);
        }
        c->row[slot] = gy;
        c->lo[slot] = lo;
        c->hi[slot] = hi;
    }
    c->last = slot;
    return c->v[slot];
}

static inline uint8_t mix(uint8_t a, uint8_t b, float op)
{
    return round_u8((float)a + op * ((float)b - (float)a));
}

// All three channels are read before any is written: px and rgb might alias, so a loop that
// stored each channel before loading the next ran the three one after another.
static void blend(uint8_t *px, const uint8_t rgb[3], float op)
{
    uint8_t r = mix(px[0], rgb[0], op), g = mix(px[1], rgb[1], op), b = mix(px[2], rgb[2], op);
    px[0] = r;
    px[1] = g;
    px[2] = b;
}

/* th_cam_sample at one pixel for class row i of the cached grid rows r0, r1 (wt: the four
 * neighbours' bilinear weights): the own cell must have a tile; the neighbours that do are
 * averaged with their weights. False where the own cell has no tile. */
static bool sample(const float *r0, const float *r1, const float *own_row,
                   const th_overlay_axis *ax, const double wt[4], float *value)
{
    float own = own_row[ax->own];
    if (isnan(own)) {
        return false;
    }
    const float v[4] = {r0[ax->c0], r0[ax->c1], r1[ax->c0], r1[ax->c1]};
    double sum = 0, wsum = 0;
    for (int k = 0; k < 4; k++) {
        if (wt[k] > 0 && !isnan(v[k])) {
            sum += wt[k] * v[k];
            wsum += wt[k];
        }
    }
    *value = wsum > 0 ? (float)(sum / wsum) : own;
    return true;
}

// Display strength of CAM value v for class i, in [0, 1].
static inline float strength(const th_overlay *ov, int i, float v)
{
    float t = (v - ov->lo[i]) / (ov->hi[i] - ov->lo[i]);
    return TH_CLAMP(t, 0.0f, 1.0f);
}

// The strongest class at the pixel (0-based) and its strength t in [0, 1]; -1 where no tile ran.
static int strongest(const th_overlay *ov, const float *r0, const float *r1, const float *own_row,
                     const th_overlay_axis *ax, const double wt[4], float *best_t)
{
    int best = -1;
    for (int i = 0; i < ov->n; i++) {
        size_t o = (size_t)i * ov->gw;
        float v;
        if (!sample(r0 + o, r1 + o, own_row + o, ax, wt, &v)) {
            return -1; // no tile covers the point (the untiled edge strips): plain slide
        }
        float t = strength(ov, i, v);
        if (best < 0 || t > *best_t) {
            best = i;
            *best_t = t;
        }
    }
    return best;
}

/* The four neighbours of every class shown, gathered (and checked for NaN) once for a run of
 * output columns that share the cells c0 and c1 rather than at every pixel: a cell spans several
 * output pixels (on CMU: 5.4 in the 2000-px heatmap, 8 at level 0 in the TIFF). */
typedef struct quad {
    int64_t c0, c1;            // the columns' cells; -1 before the first gather
    bool full;                 // every value is a number (inside the tiled area)
    double v[TH_MAX_SHOWN][4]; // (n, 4): r0[c0], r0[c1], r1[c0], r1[c1] (sample()'s order), exact
} quad;

static void gather(const th_overlay *ov, const float *r0, const float *r1,
                   const th_overlay_axis *ax, quad *q)
{
    q->c0 = ax->c0;
    q->c1 = ax->c1;
    q->full = true;
    for (int i = 0; i < ov->n; i++) {
        const float *a = r0 + (size_t)i * ov->gw, *b = r1 + (size_t)i * ov->gw;
        double *v = q->v[i];
        v[0] = a[ax->c0];
        v[1] = a[ax->c1];
        v[2] = b[ax->c0];
        v[3] = b[ax->c1];
        q->full = q->full && !isnan(v[0]) && !isnan(v[1]) && !isnan(v[2]) && !isnan(v[3]);
    }
}

/* strongest() where sample() would skip nothing: every weight positive, every neighbour (so the
 * own cell too, which is one of them) a number; most pixels inside the tiled area. The same sums
 * in the same order (values widened to double exactly) give the same bits; the tests, the loads
 * and the weight sum (one per pixel, not per class) are what is saved. */
static int strongest_full(const th_overlay *ov, const quad *q, const double wt[4], float *best_t)
{
    const double w0 = wt[0], w1 = wt[1], w2 = wt[2], w3 = wt[3];
    const double wsum = 0 + w0 + w1 + w2 + w3;
    int best = -1;
    for (int i = 0; i < ov->n; i++) {
        const double *v = q->v[i];
        double sum = 0 + w0 * v[0] + w1 * v[1] + w2 * v[2] + w3 * v[3];
        // x / 1 is x exactly, and the weights of 98% of CMU's pixels sum to exactly 1: a
        // division saved per class, 7% of the overlay's time.
        float t = strength(ov, i, (float)(wsum == 1 ? sum : sum / wsum));
        if (best < 0 || t > *best_t) {
            best = i;
            *best_t = t;
        }
    }
    return best;
}

// What the overlay draws at one pixel: the class shown (single: its one class), its strength t
// and its opacity.
typedef void paint_fn(void *ctx, int64_t x, int best, float t, float opacity);

// The overlay along one output row: every pixel in the grid and not glass gets paint() with the
// strongest class, unless (multi) it is below the threshold or a background class. Inlined into
// each caller with its paint.
static inline __attribute__((always_inline)) void
overlay_walk(const th_overlay *ov, th_overlay_cache *c, const th_overlay_axis *row,
             const th_overlay_axis *cols, int64_t n, paint_fn *paint, void *ctx)
{
    if (row->c0 < 0) {
        return; // the row lies outside the grid: nothing drawn
    }
    const th_tissue *glass = ov->glass;
    // the grid columns the row samples: cols run left to right, -1 outside the grid
    int64_t lo = ov->gw, hi = 0;
    for (int64_t x = 0; x < n; x++) {
        if (cols[x].c0 >= 0) {
            lo = TH_MIN(lo, cols[x].c0);
            hi = TH_MAX(hi, cols[x].c1 + 1);
        }
    }
    if (lo >= hi) {
        return; // the row lies left or right of the grid
    }
    const float *r0 = cam_rows(ov, c, row->c0, lo, hi), *r1 = cam_rows(ov, c, row->c1, lo, hi);
    const float *own_row = row->own == row->c0 ? r0 : r1;
    quad q = {.c0 = -1, .c1 = -1};
    for (int64_t x = 0; x < n; x++) {
        const th_overlay_axis *ax = &cols[x];
        if (ax->c0 < 0 || (glass && !th_tissue_at(glass, ax->m, row->m))) {
            continue; // outside the grid, or glass: nothing drawn
        }
        if (ax->c0 != q.c0 || ax->c1 != q.c1) {
            gather(ov, r0, r1, ax, &q);
        }
        const double wt[4] = {ax->b * row->b, ax->a * row->b, ax->b * row->a, ax->a * row->a};
        bool full = q.full && wt[0] > 0 && wt[1] > 0 && wt[2] > 0 && wt[3] > 0;
        float t = 0;
        int best =
            full ? strongest_full(ov, &q, wt, &t) : strongest(ov, r0, r1, own_row, ax, wt, &t);
        if (best < 0) {
            continue;
        }
        if (!ov->multi) {
            paint(ctx, x, best, t, ov->alpha);
            continue;
        }
        // Multi: the strongest class, fading in from nothing at the threshold to alpha at t = 1.
        if (t < ov->threshold || t <= 0 || ov->clear[best]) {
            continue;
        }
        paint(ctx, x, best, t,
              ov->threshold < 1 ? ov->alpha * (t - ov->threshold) / (1 - ov->threshold)
                                : ov->alpha);
    }
}

// th_overlay_row's paint: blended into RGB. Single: the colour of the last strength drawn is
// kept, since runs of equal t (0 below the range) are common.
typedef struct blend_ctx {
    const th_overlay *ov;
    uint8_t *rgb;
    float cm_t;
    uint8_t cm[3];
} blend_ctx;

static void paint_blend(void *ctx, int64_t x, int best, float t, float opacity)
{
    blend_ctx *b = ctx;
    if (!b->ov->multi) {
        if (t != b->cm_t) {
            th_colormap_rgb(b->ov->cmap, t, b->cm);
            b->cm_t = t;
        }
        blend(b->rgb + x * 3, b->cm, opacity);
    } else {
        blend(b->rgb + x * 3, b->ov->rgb[best], opacity);
    }
}

void th_overlay_row(const th_overlay *ov, th_overlay_cache *c, const th_overlay_axis *row,
                    const th_overlay_axis *cols, int64_t n, uint8_t *rgb)
{
    blend_ctx b = {.ov = ov, .rgb = rgb, .cm_t = -1};
    overlay_walk(ov, c, row, cols, n, paint_blend, &b);
}

// th_overlay_layers_row's paint: the colour and opacity into the class's RGBA layer.
typedef struct layers_ctx {
    const th_overlay *ov;
    uint8_t *rgba;
    size_t plane;
} layers_ctx;

static void paint_layer(void *ctx, int64_t x, int best, float t, float opacity)
{
    layers_ctx *l = ctx;
    uint8_t *px = l->rgba + x * 4;
    if (!l->ov->multi) {
        th_colormap_rgb(l->ov->cmap, t, px);
    } else {
        px += (size_t)best * l->plane;
        memcpy(px, l->ov->rgb[best], 3);
    }
    px[3] = round_u8(opacity * 255.0f);
}

void th_overlay_layers_row(const th_overlay *ov, th_overlay_cache *c, const th_overlay_axis *row,
                           const th_overlay_axis *cols, int64_t n, uint8_t *rgba, size_t plane)
{
    layers_ctx l = {.ov = ov, .rgba = rgba, .plane = plane};
    overlay_walk(ov, c, row, cols, n, paint_layer, &l);
}

/* ---------------------------------------------------------------- planning */

// One thread's buffers, all O(output width × band height) or bounded.
typedef struct worker {
    uint8_t *scratch; // the level region a chunk covers (th_view_scratch_size)
    uint8_t *chunk;   // (BAND_ROWS, chunk_cols, 3) a chunk of the band's thumbnail
    uint8_t *band;    // (BAND_ROWS, image_w, 3) RGB rows of the band
    th_png_band png;  // the band filtered and deflated into its IDAT chunk
    th_overlay_cache cache;
    th_error *err; // this band's failure, handed over in band order
} worker;

// The whole render: options resolved, ranges computed, layout planned, buffers.
typedef struct render {
    th_slide *slide;
    th_overlay ov;
    th_legend lg;
    th_render_layout L;
    th_panel pn;
    // source geometry
    int level;
    double ds;             // downsample of `level`
    double sx, sy;         // level-0 pixels per output pixel
    th_view view;          // the thumbnail: area averages of `level`
    int chunk_cols;        // thumbnail columns read at a time
    th_overlay_axis *cols; // (thumb_w) where each thumbnail column samples the CAM
    th_overlay_axis *rows; // (thumb_h) where each thumbnail row samples the CAM
    int n_workers;         // threads of the rendering region
    worker *w;             // (n_workers)
} render;

static void make_legend(render *r, const th_model *model, const th_render_options *opt)
{
    th_legend *lg = &r->lg;
    const th_overlay *ov = &r->ov;
    lg->multi = ov->multi;
    lg->n = ov->n;
    memcpy(lg->rgb, ov->rgb, sizeof(lg->rgb));
    for (int i = 0; i < ov->n; i++) {
        int c = ov->cls[i];
        const char *name = th_model_get_class_name(model, c);
        char fallback[24];
        if (!name) {
            snprintf(fallback, sizeof(fallback), "class%d", c);
            name = fallback;
        }
        snprintf(lg->label[i], TH_LABEL_MAX, "%.*s %.1f%%", NAME_MAX_CHARS, name,
                 ov->res->percent[c]);
    }
    // The colour bar's ends in CAM units, the percentile's value named as such.
    snprintf(lg->tick_lo, TH_LABEL_MAX, "%.3g", ov->lo[0]);
    if (ov->basis[0] == TH_SCALE_PERCENTILE) {
        snprintf(lg->tick_hi, TH_LABEL_MAX, "%.3g (p%g)", ov->hi[0], opt->percentile);
    } else if (ov->basis[0] == TH_SCALE_MAX) { // the percentile was 0: the maximum is the top
        snprintf(lg->tick_hi, TH_LABEL_MAX, "%.3g (max)", ov->hi[0]);
    } else {
        snprintf(lg->tick_hi, TH_LABEL_MAX, "%.3g", ov->hi[0]);
    }
    int64_t skipped;
    th_result_get_tile_counts(ov->res, NULL, &skipped);
    snprintf(lg->note, TH_LABEL_MAX, "%s", skipped > 0 ? "% of tissue tiles" : "");
}

// Validate, compute the display ranges, the legend and the layout (no pixel buffers yet).
static bool prepare(render *r, th_slide *slide, const th_result *res, const th_model *model,
                    const th_render_options *opt, th_error **err)
{
    memset(r, 0, sizeof(*r));
    if (!slide || !res || !opt) {
        th_error_set(err, "render: no slide, result or options");
        return false;
    }
    if (opt->width < 1) {
        th_error_set(err, "image width %d must be at least 1", opt->width);
        return false;
    }
    if (!th_overlay_init(&r->ov, slide, res, model, opt, err)) {
        return false;
    }
    r->slide = slide;
    make_legend(r, model, opt);
    int64_t w0, h0;
    th_slide_get_level_dimensions(slide, 0, &w0, &h0);
    th_panel_plan(&r->lg, w0, h0, opt->width, &r->L, &r->pn);
    r->sx = (double)w0 / r->L.thumb_w;
    r->sy = (double)h0 / r->L.thumb_h;
    // Read the coarsest level that still has at least one pixel per output pixel.
    r->level = r->L.level = th_slide_coarsest_level(slide, TH_MIN(r->sx, r->sy));
    r->ds = th_slide_get_level_downsample(slide, r->level);
    r->view = (th_view){
        .level = r->level, .downsample = r->ds, .sx = r->sx, .sy = r->sy, .resample = true};
    return true;
}

bool th_render_plan_legend(const th_slide *slide, const th_result *result, const th_model *model,
                           const th_render_options *opt, th_render_layout *layout,
                           th_legend *legend, th_panel *panel, th_error **err)
{
    render *r = th_malloc(sizeof(*r), err);
    if (!r) {
        return false;
    }
    // prepare() only reads the slide; the cast lets th_render_heatmap share it.
    bool ok = prepare(r, (th_slide *)slide, result, model, opt, err);
    if (ok) {
        *layout = r->L;
        if (legend) {
            *legend = r->lg;
        }
        if (panel) {
            *panel = r->pn;
        }
    }
    th_free(r);
    return ok;
}

bool th_render_plan(const th_slide *slide, const th_result *result, const th_model *model,
                    const th_render_options *opt, th_render_layout *layout, th_error **err)
{
    return th_render_plan_legend(slide, result, model, opt, layout, NULL, NULL, err);
}

/* ---------------------------------------------------------------- streaming */

// Size the buffers: everything bounded, nothing slide-sized; one set per thread.
static bool alloc_buffers(render *r, int threads, th_error **err)
{
    // Columns a read: about REGION_MAX_PX level pixels for BAND_ROWS rows.
    double kx = r->sx / r->ds, ky = r->sy / r->ds;
    double per_row = (double)REGION_MAX_PX / (ceil(BAND_ROWS * ky) + 2) - 2;
    r->chunk_cols = (int)TH_CLAMP(floor(per_row / kx), 1.0, (double)r->L.thumb_w);
    size_t scratch = th_view_scratch_size(&r->view, r->chunk_cols, BAND_ROWS);
    r->cols = th_malloc((size_t)r->L.thumb_w * sizeof(*r->cols), err);
    r->rows = th_malloc((size_t)r->L.thumb_h * sizeof(*r->rows), err);
    r->n_workers = th_threads(threads);
    r->w = th_calloc((size_t)r->n_workers, sizeof(*r->w), err);
    if (!r->cols || !r->rows || !r->w) {
        return false;
    }
    th_overlay_plan_axis(&r->ov, false, r->sx, 0, r->L.thumb_w, r->cols);
    th_overlay_plan_axis(&r->ov, true, r->sy, 0, r->L.thumb_h, r->rows);
    for (int i = 0; i < r->n_workers; i++) {
        worker *w = &r->w[i];
        w->scratch = th_malloc(scratch, err);
        w->chunk = th_malloc((size_t)BAND_ROWS * r->chunk_cols * 3, err);
        w->band = th_malloc((size_t)BAND_ROWS * r->L.image_w * 3, err);
        if (!w->scratch || !w->chunk || !w->band ||
            !th_overlay_cache_init(&w->cache, &r->ov, err) ||
            !th_png_band_init(&w->png, r->L.image_w, 3, BAND_ROWS, err)) {
            return false;
        }
    }
    return true;
}

static void free_buffers(render *r)
{
    for (int i = 0; r->w && i < r->n_workers; i++) {
        worker *w = &r->w[i];
        TH_FREE(w->scratch);
        TH_FREE(w->chunk);
        TH_FREE(w->band);
        th_png_band_free(&w->png);
        th_overlay_cache_free(&w->cache);
        th_error_free(w->err);
    }
    TH_FREE(r->w);
    TH_FREE(r->cols);
    TH_FREE(r->rows);
}

// The thumbnail's rows oy0 .. oy1-1 into the band (rows from 0), a chunk of columns at a time.
static bool read_thumbnail(const render *r, worker *wk, int oy0, int oy1, th_error **err)
{
    int tw = r->L.thumb_w, rows = oy1 - oy0;
    for (int ox0 = 0; ox0 < tw; ox0 += r->chunk_cols) {
        int cw = TH_MIN(r->chunk_cols, tw - ox0);
        if (!th_view_read(&r->view, r->slide, ox0, oy0, cw, rows, wk->chunk, NULL, wk->scratch,
                          err)) {
            th_error_prefix(err,
                            "reading the slide at %lld,%lld: ", (long long)llround(ox0 * r->sx),
                            (long long)llround(oy0 * r->sy));
            return false;
        }
        for (int j = 0; j < rows; j++) {
            memcpy(wk->band + ((size_t)j * r->L.image_w + ox0) * 3, wk->chunk + (size_t)j * cw * 3,
                   (size_t)cw * 3);
        }
    }
    return true;
}

// Render output rows y0 .. y0+h-1 into the worker's band.
static bool render_band(const render *r, worker *w, int y0, int h, th_error **err)
{
    memset(w->band, 255, (size_t)h * r->L.image_w * 3);
    int ty1 = TH_MIN(y0 + h, r->L.thumb_h);
    if (y0 < ty1) {
        if (!read_thumbnail(r, w, y0, ty1, err)) {
            return false;
        }
        for (int oy = y0; oy < ty1; oy++) { // the overlay on the slide
            th_overlay_row(&r->ov, &w->cache, &r->rows[oy], r->cols, r->L.thumb_w,
                           w->band + (size_t)(oy - y0) * r->L.image_w * 3);
        }
    }
    th_band band = {.rgb = w->band, .w = r->L.image_w, .h = h, .y0 = y0};
    th_panel_draw(&r->pn, &r->L, r->ov.cmap, &band);
    return true;
}

/* The rendering parallel region (see HACKING.md, "Rendering"): each band is rendered, filtered
 * and deflated whole by one thread into its own buffers, then written in band order (an ordered
 * loop whose body is an fwrite and an adler32_combine). Bands do not depend on the thread count
 * or on each other, so neither does the file. A failed band stops the bands after it; its error
 * is taken in band order, so the first failure is reported. */
static bool write_bands(render *r, FILE *fp, th_error **err)
{
    int n_bands = (r->L.image_h + BAND_ROWS - 1) / BAND_ROWS;
    _Atomic bool failed = false;
    th_error *first = NULL;
    uint32_t adler = th_png_adler_init();
#ifdef _OPENMP
#pragma omp parallel for num_threads(r->n_workers) schedule(dynamic) ordered
#endif
    for (int b = 0; b < n_bands; b++) {
        worker *w = &r->w[th_thread_num()];
        int y0 = b * BAND_ROWS, h = TH_MIN(BAND_ROWS, r->L.image_h - y0);
        bool ok = !failed && render_band(r, w, y0, h, &w->err) &&
                  th_png_band_encode(&w->png, w->band, y0, h, &w->err);
#ifdef _OPENMP
#pragma omp ordered
#endif
        {
            ok = ok && !failed && th_png_write_band(fp, &w->png, &adler, &w->err);
            if (!ok && !failed) {
                failed = true;
                first = w->err;
                w->err = NULL;
            }
        }
        th_error_free(w->err);
        w->err = NULL;
    }
    th_error_propagate(err, &first);
    return !failed && th_png_end(fp, adler, err);
}

bool th_render_heatmap(th_slide *slide, const th_result *result, const th_model *model,
                       const th_render_options *opt, const char *path, th_error **err)
{
    th_outfile out = {0};
    bool ok = false;
    render *r = th_malloc(sizeof(*r), err);
    if (!r || !prepare(r, slide, result, model, opt, err) || !alloc_buffers(r, opt->threads, err)) {
        goto out;
    }
    if (!path) {
        th_error_set(err, "no output path");
        goto out;
    }
    if (!th_outfile_open(&out, path, err)) {
        goto out;
    }
    if (!th_png_begin(out.fp, r->L.image_w, r->L.image_h, 3, err) || !write_bands(r, out.fp, err)) {
        th_outfile_abort(&out);
        goto out;
    }
    ok = th_outfile_commit(&out, err);
out:
    if (r) {
        free_buffers(r);
    }
    th_free(r);
    if (!ok) {
        th_error_prefix(err, "%s: ", path ? path : "heatmap");
    }
    return ok;
}
