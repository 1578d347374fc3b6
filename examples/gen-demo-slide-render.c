/* SPDX-License-Identifier: MIT */
/* gen-demo-slide: the synthetic tissue and its tiles. Every pixel is a procedural function of its
 * level-0 position and the seed: value noise makes the slow fields (tissue islands, cellularity,
 * fat, fibre direction, stain), which are sampled on a coarse grid per tile; stroma fibres,
 * cytoplasm, adipocytes and nuclei are drawn on top, and each output pixel averages a few samples
 * plus sensor grain. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "gen-demo-slide.h"

#define TISSUE_FRACTION 0.5      // share of the slide covered by tissue
#define ISLAND_NOISE 0.6f        // amplitude of the noise that makes the islands ragged
#define ISLAND_EDGE_NOISE 0.025f // amplitude of the islands' finer raggedness (half of it)
#define CELL_THR 0.6f            // cellular areas where the cellular field exceeds this
#define FAT_THR 0.65f            // adipocytes where the fat field exceeds this
#define FAT_CELL 130.0           // grid of adipocyte centres, level-0 px
#define NUCLEUS_CELL 18.0        // grid of nucleus centres, level-0 px

/* Colours measured on the real H&E slide CMU-1-Small-Region.svs (OpenSlide test data, 0.5 um/px,
 * level 0 read whole with openslide-python; skimage rgb2hsv and rgb2hed), as RGB median
 * [25th .. 75th percentile]:
 *   glass: saturation < 0.08 and mean > 200 (66% of the slide)
 *       246,243,243 (std ~3 per channel)
 *   eosin stroma: hue > 0.88 or < 0.02, haematoxylin (H) below its tissue median
 *       198,116,153 [179,88,130 .. 219,151,179]
 *   pale tissue: non-glass with mean > 190
 *       231,194,212
 *   purple cellular areas: hue 0.72-0.86, H above its 40th percentile, nuclei excluded
 *       120,73,126 [90,50,101 .. 147,100,151]
 *   nuclei: interiors of blobs of H > 0.12, 60-600 px
 *       33,17,52 [22,10,41 .. 42,25,63]; major axis 13-20 px, minor 7-10 px
 *   fat (NCT-CRC-HE-100K ADI tile): lumen 239,236,239; membrane ~200,164,193
 * The same measurements on this program's default slide (level 0, 3000 x 3000 from (1000, 1000))
 * give glass 245,243,244 (243,238,242 with the fat lumens it also counts), stroma 197,118,155
 * [191,108,146 .. 229,186,210], cellular 130,83,135, nuclei 58,28,77 (paler on average: fewer
 * lymphocyte-dark ones). */
typedef struct {
    float r, g, b;
} rgb;

static const rgb GLASS = {245.0f, 243.0f, 243.5f};
static const rgb SPECK = {196.0f, 190.0f, 198.0f};
static const rgb FIBRE_CLEFT = {238.0f, 224.0f, 233.0f};
static const rgb FIBRE_PALE = {222.0f, 165.0f, 195.0f};
static const rgb FIBRE_MID = {192.0f, 105.0f, 145.0f};
static const rgb FIBRE_DENSE = {170.0f, 75.0f, 118.0f};
static const rgb CYTO_LIGHT = {160.0f, 108.0f, 160.0f};
static const rgb CYTO_DARK = {112.0f, 66.0f, 118.0f};
static const rgb NUCLEUS_LIGHT = {88.0f, 50.0f, 115.0f};
static const rgb NUCLEUS_DARK = {30.0f, 15.0f, 50.0f};
static const rgb FAT_LUMEN = {241.0f, 237.0f, 240.0f};
static const rgb FAT_MEMBRANE = {206.0f, 150.0f, 188.0f};

// Salts keep the noise fields independent of each other; fields with octaves use salt + octave.
enum {
    SALT_ISLAND = 0,
    SALT_EDGE = 10,
    SALT_GLASS = 20,
    SALT_SPECK = 30,
    SALT_CELL = 50,
    SALT_FAT = 60,
    SALT_FAT_CELL = 70,
    SALT_FAT_WOBBLE = 80,
    SALT_WARP_X = 90,
    SALT_WARP_Y = 100,
    SALT_ORIENT = 110,
    SALT_LOOSE = 120,
    SALT_FIBRE = 130,
    SALT_CYTO = 150,
    SALT_STAIN = 160,
    SALT_NUCLEUS = 170,
    SALT_CHROMATIN = 180,
    SALT_PLACE = 190,
    SALT_GRAIN = 1000, // + level
};

/* ---- hashing and value noise */

// MurmurHash3's finaliser: every input bit affects every output bit.
static uint32_t fmix(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static uint32_t hash(const scene *s, int64_t x, int64_t y, uint32_t salt)
{
    return fmix((uint32_t)x * 0x8da6b343u + (uint32_t)y * 0xd8163841u + salt * 0xcb1ab31fu +
                s->seed_mix);
}

// Uniform in [0, 1) from the top 24 bits.
static float unit(uint32_t h)
{
    return (float)(h >> 8) * (1.0f / 16777216.0f);
}

// Byte k (0-3) of h as a number in [0, 1): four cheap random numbers from one hash.
static float byte(uint32_t h, int k)
{
    return (float)((h >> (8 * k)) & 0xffu) * (1.0f / 256.0f);
}

// floor() as an integer, inline (libm's floor is a call without SSE4.1).
static int64_t ifloor(double x)
{
    int64_t i = (int64_t)x;
    return i - (x < (double)i);
}

// x - floor(x), as a float: keeps the argument of sinf small.
static float fraction(double x)
{
    return (float)(x - (double)ifloor(x));
}

// sin(2 pi turns), approximated within 0.001 by parabolas: cheaper than sinf.
static float wave(double turns)
{
    float t = 2.0f * fraction(turns) - 1.0f;
    float p = 4.0f * t * (1.0f - fabsf(t)); // ~ sin(pi t)
    return -(p + 0.225f * (p * fabsf(p) - p));
}

static float lerp(float a, float b, float t)
{
    return a + (b - a) * t;
}

static float smoothstep(float lo, float hi, float x)
{
    float t = (x - lo) * (1.0f / (hi - lo)); // a constant reciprocal once inlined: no division
    t = t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t;
    return t * t * (3.0f - 2.0f * t);
}

static rgb mix(rgb a, rgb b, float t)
{
    return (rgb){lerp(a.r, b.r, t), lerp(a.g, b.g, t), lerp(a.b, b.b, t)};
}

// Value noise in [0, 1]: random values on the integer lattice, smoothly interpolated.
static float vnoise(const scene *s, double x, double y, uint32_t salt)
{
    int64_t ix = ifloor(x), iy = ifloor(y);
    float tx = (float)(x - (double)ix), ty = (float)(y - (double)iy);
    tx = tx * tx * (3.0f - 2.0f * tx);
    ty = ty * ty * (3.0f - 2.0f * ty);
    float a = unit(hash(s, ix, iy, salt)), b = unit(hash(s, ix + 1, iy, salt));
    float c = unit(hash(s, ix, iy + 1, salt)), d = unit(hash(s, ix + 1, iy + 1, salt));
    return lerp(lerp(a, b, tx), lerp(c, d, tx), ty);
}

// Fractal sum of octaves of value noise, normalised to [0, 1].
static float fbm(const scene *s, double x, double y, uint32_t salt, int octaves)
{
    float sum = 0.0f, amp = 1.0f, norm = 0.0f;
    for (int i = 0; i < octaves; i++) {
        sum += amp * vnoise(s, x, y, salt + (uint32_t)i);
        norm += amp;
        amp *= 0.5f;
        x = x * 2.03 + 17.0; // odd factor and shift: no lattice alignment between octaves
        y = y * 2.03 + 31.0;
    }
    return sum / norm;
}

/* ---- slow fields: everything that varies over 200 um or more. They are computed on a coarse
 * grid per tile (every GRID_STEP output pixels) and interpolated, which makes them cheap. */

enum {
    F_ISLAND,              // tissue field without its fine raggedness
    F_LIGHT,               // illumination offset of the glass, grey levels
    F_TISSUE,              // the fields from here on are needed in tissue only
    F_CELLULAR = F_TISSUE, // 0 stroma .. 1 densely cellular
    F_FAT,                 // fat field; adipocytes where it is high
    F_VERTICAL,            // 0 horizontal .. 1 vertical fibre family
    F_WARP_X,              // bend of the fibres, level-0 pixels
    F_WARP_Y,
    F_LOOSE, // 0 dense .. 1 loose, pale stroma
    F_STAIN, // stain intensity factor, ~1
    F_COUNT
};

#define GRID_STEP 8
#define GRID_N (TILE / GRID_STEP + 1)

typedef struct {
    double x0, y0, step, inv_step;    // level-0 position of grid point (0, 0); spacing, 1/it
    float f[GRID_N][GRID_N][F_COUNT]; // (GRID_N, GRID_N, F_COUNT) row-major slow fields
} field_grid;

// Cellular areas (features ~0.7 mm) are where this exceeds CELL_THR.
static float cellular_field(const scene *s, double x, double y)
{
    return fbm(s, x / 1400.0, y / 1400.0, SALT_CELL, 3);
}

// Fat (features ~0.9 mm) is where this exceeds FAT_THR.
static float fat_field(const scene *s, double x, double y)
{
    return fbm(s, x / 1800.0, y / 1800.0, SALT_FAT, 2);
}

// 0 in stroma .. 1 in a cellular area, with a sharp edge.
static float cellularity(float cellular_field_value)
{
    return smoothstep(CELL_THR - 0.005f, CELL_THR + 0.005f, cellular_field_value);
}

// Share of the NUCLEUS_CELL grid cells that hold a nucleus.
static float nucleus_density(float cellular)
{
    return 0.05f + 0.85f * cellular;
}

// The default tissue field: one large ragged mass gathered towards the middle of the slide.
static float mass_field(const scene *s, double x, double y)
{
    float m = fbm(s, x / s->island_scale, y / s->island_scale, SALT_ISLAND, 3);
    m += 0.05f * (vnoise(s, x / 220.0, y / 220.0, SALT_EDGE) - 0.5f);
    // Gather the tissue towards the middle, and keep a glass margin along the slide's border.
    double u = 2.0 * x / s->width - 1.0, v = 2.0 * y / s->height - 1.0;
    m -= 0.3f * (float)(u * u + v * v);
    double border = fmin(fmin(x, s->width - x), fmin(y, s->height - y));
    double margin = 0.15 * fmin(s->width, s->height);
    if (border < margin) {
        float t = (float)(1.0 - border / margin);
        m -= 0.6f * t * t * t;
    }
    return m;
}

/* The --islands tissue field: the highest of the islands' cones 1 - d / r, made ragged by noise
 * of amplitude at most ISLAND_NOISE / 2 + ISLAND_EDGE_NOISE (tile_is_glass relies on that). */
static float islands_field(const scene *s, double x, double y)
{
    double cone = -1e30;
    for (int i = 0; i < s->islands; i++) {
        const island *b = &s->island[i];
        double d = sqrt((x - b->x) * (x - b->x) + (y - b->y) * (y - b->y));
        cone = fmax(cone, 1.0 - d / b->r);
    }
    float m = (float)cone;
    m += ISLAND_NOISE * (fbm(s, x / s->island_scale, y / s->island_scale, SALT_ISLAND, 3) - 0.5f);
    m += 2.0f * ISLAND_EDGE_NOISE * (vnoise(s, x / 220.0, y / 220.0, SALT_EDGE) - 0.5f);
    return m;
}

static void slow_fields(const scene *s, double x, double y, float *f)
{
    f[F_ISLAND] = s->islands > 0 ? islands_field(s, x, y) : mass_field(s, x, y);
    f[F_CELLULAR] = cellular_field(s, x, y);
    f[F_FAT] = fat_field(s, x, y);
    f[F_VERTICAL] = smoothstep(0.46f, 0.54f, fbm(s, x / 2600.0, y / 2600.0, SALT_ORIENT, 3));
    f[F_WARP_X] = 520.0f * (fbm(s, x / 900.0, y / 900.0, SALT_WARP_X, 2) - 0.5f);
    f[F_WARP_Y] = 520.0f * (fbm(s, x / 900.0, y / 900.0, SALT_WARP_Y, 2) - 0.5f);
    f[F_LOOSE] = smoothstep(0.45f, 0.8f, vnoise(s, x / 500.0, y / 500.0, SALT_LOOSE));
    f[F_STAIN] = 0.88f + 0.24f * vnoise(s, x / 1500.0, y / 1500.0, SALT_STAIN);
    f[F_LIGHT] = 3.0f * (vnoise(s, x / 3000.0, y / 3000.0, SALT_GLASS) - 0.5f);
}

static void grid_fill(const scene *s, field_grid *g, double x0, double y0, double step)
{
    g->x0 = x0;
    g->y0 = y0;
    g->step = step;
    g->inv_step = 1.0 / step;
    for (int j = 0; j < GRID_N; j++) {
        for (int i = 0; i < GRID_N; i++) {
            slow_fields(s, x0 + i * step, y0 + j * step, g->f[j][i]);
        }
    }
}

// Fields [first, end) at (x, y) into f, interpolated bilinearly.
static void grid_at(const field_grid *g, double x, double y, int first, int end, float *f)
{
    double gx = (x - g->x0) * g->inv_step, gy = (y - g->y0) * g->inv_step;
    gx = gx < 0.0 ? 0.0 : gx > GRID_N - 1.001 ? GRID_N - 1.001 : gx;
    gy = gy < 0.0 ? 0.0 : gy > GRID_N - 1.001 ? GRID_N - 1.001 : gy;
    int i = (int)gx, j = (int)gy;
    float tx = (float)(gx - i), ty = (float)(gy - j);
    for (int k = first; k < end; k++) {
        float top = lerp(g->f[j][i][k], g->f[j][i + 1][k], tx);
        float bottom = lerp(g->f[j + 1][i][k], g->f[j + 1][i + 1][k], tx);
        f[k] = lerp(top, bottom, ty);
    }
}

/* ---- layers, all in level-0 pixel coordinates. Hot paths multiply by constant reciprocals,
 * x * (1 / 45.0), rather than divide: the compiler folds them and a division costs ~15 cycles. */

// Clean glass: uneven illumination and a few faint dust specks.
static rgb glass(const scene *s, const float *f, double x, double y)
{
    if (s->islands > 0) {
        return GLASS; // spotless and evenly lit: every all-glass tile is the same
    }
    rgb c = {GLASS.r + f[F_LIGHT], GLASS.g + f[F_LIGHT], GLASS.b + f[F_LIGHT]};
    const double cell = 320.0;
    int64_t cx = ifloor(x * (1 / cell)), cy = ifloor(y * (1 / cell));
    uint32_t h = hash(s, cx, cy, SALT_SPECK);
    if (byte(h, 3) < 0.04f) {
        double px = (cx + 0.1 + 0.8 * byte(h, 0)) * cell, py = (cy + 0.1 + 0.8 * byte(h, 1)) * cell;
        float radius = 1.5f + 3.5f * byte(h, 2);
        float d = (float)sqrt((x - px) * (x - px) + (y - py) * (y - py));
        c = mix(c, SPECK, 0.8f * (1.0f - smoothstep(radius - 1.0f, radius + 1.0f, d)));
    }
    return c;
}

/* One family of collagen fibres running along `along`: stripes ~16 px apart whose phase wanders
 * (so they bend, change width, merge and split). Where `fill` is high the gaps close into solid
 * bundles, where it is low they open into slit-like clefts. Returns the fibre coverage in [0, 1];
 * *tone is the fibre's eosin density (fine fibrils). */
static float fibres(const scene *s, double along, double across, uint32_t salt, float *tone)
{
    float phase = 3.2f * vnoise(s, along * (1 / 200.0), across * (1 / 60.0), salt) +
                  0.64f * vnoise(s, along * (1 / 50.0), across * (1 / 15.0), salt + 1);
    float fill =
        smoothstep(0.25f, 0.75f, vnoise(s, along * (1 / 90.0), across * (1 / 25.0), salt + 2));
    // Crimp: each fibre's fine waviness, out of step with its neighbours'.
    across += 2.5f * wave(along * (1 / 88.0) + across * (1 / 56.5) + phase);
    float stripe = wave(across * (1 / 16.0) + phase);
    float lo = 0.2f - 1.6f * fill;
    *tone = vnoise(s, along * (1 / 30.0), across * (1 / 3.0), salt + 3);
    return smoothstep(lo - 0.2f, lo + 0.2f, stripe);
}

// Pink eosin stroma: two fibre families (roughly horizontal, roughly vertical) bent by a warp.
static rgb stroma(const scene *s, const float *f, double x, double y)
{
    double wx = x + f[F_WARP_X], wy = y + f[F_WARP_Y];
    float v = f[F_VERTICAL], cover = 0.0f, tone = 0.0f, t;
    if (v < 1.0f) {
        cover += (1.0f - v) * fibres(s, wx, wy, SALT_FIBRE, &t);
        tone += (1.0f - v) * t;
    }
    if (v > 0.0f) {
        cover += v * fibres(s, wy, wx, SALT_FIBRE + 5, &t);
        tone += v * t;
    }
    // Loose stroma: paler fibres, whiter gaps.
    float loose = f[F_LOOSE];
    rgb gap = mix(FIBRE_PALE, FIBRE_CLEFT, 0.3f + 0.7f * loose);
    rgb fibre = mix(FIBRE_MID, FIBRE_DENSE, smoothstep(0.2f, 0.8f, tone) * (1.0f - 0.6f * loose));
    return mix(gap, fibre, cover);
}

// Purple granular cytoplasm of densely cellular areas.
static rgb cytoplasm(const scene *s, double x, double y)
{
    float g = 0.6f * vnoise(s, x * (1 / 7.0), y * (1 / 7.0), SALT_CYTO) +
              0.4f * vnoise(s, x * (1 / 2.5), y * (1 / 2.5), SALT_CYTO + 1);
    return mix(CYTO_LIGHT, CYTO_DARK, smoothstep(0.1f, 0.9f, g));
}

/* Memo of the random points in the 3 x 3 grid cells around the last cell visited. Neighbouring
 * samples share their neighbourhood, so cells are hashed once per run of samples, not per sample.
 * A pure cache: the slide does not depend on it. */
typedef struct {
    int64_t cx, cy; // centre cell of the stored neighbourhood
    bool valid;
    double px[9], py[9]; // (3, 3) row-major point positions, level-0 px
    float size[9];       // fat: radius of the cell; nuclei: semi-major axis
    float u[9];          // uniform draw; nuclei: present when u < density
    uint32_t h[9];       // further random bytes
    bool open[9];        // fat: the cell is an adipocyte
    bool any_open;
} cell_memo;

typedef struct {
    cell_memo fat, nuclei;
} memo;

static void fat_fill(const scene *s, cell_memo *m, int64_t cx, int64_t cy)
{
    const double cell = FAT_CELL;
    m->any_open = false;
    for (int k = 0; k < 9; k++) {
        int64_t i = cx - 1 + k % 3, j = cy - 1 + k / 3;
        uint32_t h = hash(s, i, j, SALT_FAT_CELL);
        m->px[k] = (i + 0.15 + 0.7 * byte(h, 0)) * cell;
        m->py[k] = (j + 0.15 + 0.7 * byte(h, 1)) * cell;
        m->size[k] = (0.75f + 0.15f * byte(h, 2)) * (float)cell;
        // The fat field at the cell's point decides for the whole cell: no cut cells.
        m->open[k] = fat_field(s, m->px[k], m->py[k]) >= FAT_THR;
        m->any_open |= m->open[k];
    }
}

/* Adipocytes: Voronoi cells of jittered points on a 130 px grid (cells ~ 40-90 um), each clipped
 * to a circle so that the corners round off. Returns false outside fat. */
static bool fat(const scene *s, cell_memo *m, double x, double y, rgb *col)
{
    // A small wobble rounds the straight Voronoi walls.
    x += 10.0 * (vnoise(s, x * (1 / 45.0), y * (1 / 45.0), SALT_FAT_WOBBLE) - 0.5);
    y += 10.0 * (vnoise(s, x * (1 / 45.0), y * (1 / 45.0), SALT_FAT_WOBBLE + 1) - 0.5);
    int64_t cx = ifloor(x * (1 / FAT_CELL)), cy = ifloor(y * (1 / FAT_CELL));
    if (!m->valid || m->cx != cx || m->cy != cy) {
        fat_fill(s, m, cx, cy);
        m->cx = cx, m->cy = cy, m->valid = true;
    }
    if (!m->any_open) {
        return false;
    }
    double d1 = 1e30, d2 = 1e30;
    int k1 = 0, k2 = 0;
    for (int k = 0; k < 9; k++) {
        double d = (x - m->px[k]) * (x - m->px[k]) + (y - m->py[k]) * (y - m->py[k]);
        if (d < d1) {
            d2 = d1, k2 = k1, d1 = d, k1 = k;
        } else if (d < d2) {
            d2 = d, k2 = k;
        }
    }
    if (!m->open[k1]) {
        return false;
    }
    // Distance to the cell's edge: the bisector with the next point, or the clipping circle.
    double dx = m->px[k2] - m->px[k1], dy = m->py[k2] - m->py[k1];
    double wall = (d2 - d1) / (2.0 * sqrt(dx * dx + dy * dy));
    wall = fmin(wall, m->size[k1] - sqrt(d1));
    float membrane = 1.0f - smoothstep(0.9f, 2.3f, (float)wall);
    *col = mix(FAT_LUMEN, FAT_MEMBRANE, membrane);
    return true;
}

static void nuclei_fill(const scene *s, cell_memo *m, int64_t cx, int64_t cy)
{
    const double cell = NUCLEUS_CELL;
    for (int k = 0; k < 9; k++) {
        int64_t i = cx - 1 + k % 3, j = cy - 1 + k / 3;
        uint32_t h = hash(s, i, j, SALT_NUCLEUS);
        m->u[k] = unit(h);
        m->h[k] = fmix(h ^ 0x68e31da4u);
        m->px[k] = (i + byte(m->h[k], 0)) * cell;
        m->py[k] = (j + byte(m->h[k], 1)) * cell;
        m->size[k] = 6.0f + 4.0f * byte(m->h[k], 2);
    }
}

/* Haematoxylin nuclei: ellipses, semi-major axis 6-10 px, at most one per 18 px grid cell. They
 * are sparse dark spindles along the fibres in stroma, dense, plumper, paler and randomly oriented
 * in cellular areas. Near the edge of a cellular area, the cellularity at the nucleus' centre
 * decides, so that no nucleus is cut by the edge. */
static void nuclei(const scene *s, cell_memo *m, const float *f, double x, double y, rgb *col)
{
    bool edge = fabsf(f[F_CELLULAR] - CELL_THR) < 0.02f;
    float here = cellularity(f[F_CELLULAR]);
    int64_t cx = ifloor(x * (1 / NUCLEUS_CELL)), cy = ifloor(y * (1 / NUCLEUS_CELL));
    if (!m->valid || m->cx != cx || m->cy != cy) {
        nuclei_fill(s, m, cx, cy);
        m->cx = cx, m->cy = cy, m->valid = true;
    }
    float best = 0.0f, dark = 0.0f;
    for (int k = 0; k < 9; k++) {
        double dx = x - m->px[k], dy = y - m->py[k];
        float a = m->size[k];
        if (m->u[k] >= nucleus_density(1.0f) || dx * dx + dy * dy >= a * a) {
            continue;
        }
        float cellular = edge ? cellularity(cellular_field(s, m->px[k], m->py[k])) : here;
        if (m->u[k] >= nucleus_density(cellular)) {
            continue;
        }
        uint32_t h = fmix(m->h[k]); // shape, orientation, darkness
        bool spindle = byte(m->h[k], 3) >= cellular;
        float b = a * (spindle ? 0.32f + 0.2f * byte(h, 0) : 0.6f + 0.3f * byte(h, 0));
        float angle =
            spindle ? 1.5708f * f[F_VERTICAL] + 0.6f * (byte(h, 1) - 0.5f) : 3.1416f * byte(h, 1);
        float ca = cosf(angle), sa = sinf(angle);
        float u = (float)(dx * ca + dy * sa) / a, v = (float)(-dx * sa + dy * ca) / b;
        float r = sqrtf(u * u + v * v), cover = 1.0f - smoothstep(0.8f, 1.0f, r);
        if (cover > best) {
            best = cover;
            // Chromatin gathers under the nuclear membrane: a darker rim.
            dark = spindle ? 0.7f + 0.3f * byte(h, 2) : 0.2f + 0.45f * byte(h, 2);
            dark = fminf(1.0f, dark + 0.3f * smoothstep(0.55f, 0.85f, r));
        }
    }
    if (best > 0.0f) {
        float chromatin = vnoise(s, x * (1 / 2.5), y * (1 / 2.5), SALT_CHROMATIN) - 0.5f;
        rgb n = mix(NUCLEUS_LIGHT, NUCLEUS_DARK, dark);
        n = (rgb){n.r + 30.0f * chromatin, n.g + 24.0f * chromatin, n.b + 30.0f * chromatin};
        *col = mix(*col, n, 0.96f * best);
    }
}

// Tissue: stroma, cellular areas, fat, nuclei, and a slowly varying stain intensity.
static rgb tissue(const scene *s, memo *m, const float *f, double x, double y)
{
    float cellular = cellularity(f[F_CELLULAR]);
    rgb c = {0.0f, 0.0f, 0.0f};
    if (cellular < 1.0f) {
        c = stroma(s, f, x, y);
    }
    if (cellular > 0.0f) {
        c = mix(c, cytoplasm(s, x, y), cellular);
    }
    bool in_fat = f[F_FAT] > FAT_THR - 0.1f && fat(s, &m->fat, x, y, &c);
    if (!in_fat) {
        nuclei(s, &m->nuclei, f, x, y, &c);
    }
    // Stain intensity scales the optical path, i.e. the distance from white.
    float k = f[F_STAIN];
    return (rgb){255.0f - (255.0f - c.r) * k, 255.0f - (255.0f - c.g) * k,
                 255.0f - (255.0f - c.b) * k};
}

// The whole slide at one point, before sensor grain.
static rgb shade(const scene *s, memo *m, const field_grid *g, double x, double y)
{
    float f[F_COUNT];
    grid_at(g, x, y, 0, F_TISSUE, f);
    // Fine raggedness of the tissue border (+-0.0075), only needed near the border.
    float t = f[F_ISLAND];
    if (fabsf(t - s->tissue_thr) < 0.009f) {
        t += 0.015f * (vnoise(s, x * (1 / 40.0), y * (1 / 40.0), SALT_EDGE + 1) - 0.5f);
    }
    float w = smoothstep(s->tissue_thr - 0.00025f, s->tissue_thr + 0.00025f, t);
    rgb c = w < 1.0f ? glass(s, f, x, y) : (rgb){0.0f, 0.0f, 0.0f};
    if (w > 0.0f) {
        grid_at(g, x, y, F_TISSUE, F_COUNT, f);
        c = mix(c, tissue(s, m, f, x, y), w);
    }
    return c;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Scatter the islands: radii 0.75-1.25 times the mean, sized so that the cones cover about
 * ISLAND_FRACTION of the slide, each clear of the border (the noise can push an island out to 1.33
 * radii) and, as far as they fit, of the others; the spacing loosens after every 100 misses. */
static void place_islands(scene *s, int count)
{
    double side = fmin(s->width, s->height);
    double mean = sqrt(ISLAND_FRACTION * s->width * s->height / (count * M_PI));
    double gap = 1.2; // centres at least gap * (r_i + r_j) apart
    uint32_t attempt = 0;
    s->islands = 0;
    while (s->islands < count) {
        island *b = &s->island[s->islands];
        uint32_t h = hash(s, s->islands, attempt++, SALT_PLACE);
        b->r = fmin(mean * (0.75 + 0.5 * byte(h, 0)), 0.33 * side);
        double lo = 0.02 * side + 1.35 * b->r;
        b->x = lo + (s->width - 2.0 * lo) * unit(fmix(h));
        b->y = lo + (s->height - 2.0 * lo) * unit(fmix(h ^ 0x9e3779b9u));
        bool clear = true;
        for (int i = 0; i < s->islands && clear; i++) {
            const island *o = &s->island[i];
            clear = hypot(b->x - o->x, b->y - o->y) >= gap * (b->r + o->r);
        }
        if (clear) {
            s->islands++;
            attempt = 0;
        } else if (attempt % 100 == 0) {
            gap *= 0.9;
        }
    }
    s->island_scale = 0.8 * mean;
}

/* Set up the slide. The tissue threshold is chosen so that TISSUE_FRACTION (ISLAND_FRACTION with
 * islands) of a 128 x 128 grid of samples is tissue, whatever the seed. */
bool scene_init(scene *s, uint32_t seed, uint32_t width, uint32_t height, int islands)
{
    enum { N = 128 };
    s->seed = seed;
    s->seed_mix = fmix(seed ^ 0x5bd1e995u);
    s->width = width;
    s->height = height;
    s->island_scale = fmax(width, height) / 2.5;
    s->islands = 0;
    if (islands > 0) {
        place_islands(s, islands);
    }
    float *v = malloc(N * N * sizeof(*v)); // (N, N) row-major samples of the tissue field
    if (v == NULL) {
        return false;
    }
    float f[F_COUNT];
    for (int j = 0; j < N; j++) {
        for (int i = 0; i < N; i++) {
            slow_fields(s, (i + 0.5) * width / N, (j + 0.5) * height / N, f);
            v[j * N + i] = f[F_ISLAND];
        }
    }
    qsort(v, N * N, sizeof(*v), cmp_float);
    double fraction = islands > 0 ? ISLAND_FRACTION : TISSUE_FRACTION;
    s->tissue_thr = v[(int)((1.0 - fraction) * N * N)];
    free(v);
    return true;
}

/* ---- pyramid and TIFF writing */

/* ---- tiles */

/* Scratch for one tile, allocated once. */
struct workspace {
    field_grid grid;
    memo memo;
    uint8_t pixels[TILE_BYTES]; // (TILE, TILE, 3) row-major uint8 RGB
    bool glass;                 // render_or_mark found the tile all glass; pixels not set
};

workspace *workspace_array_new(int n)
{
    return calloc(n, sizeof(workspace)); // calloc: the memos start empty
}

void workspace_array_free(workspace *ws)
{
    free(ws);
}

workspace *workspace_at(workspace *ws, int i)
{
    return &ws[i];
}

uint8_t *workspace_pixels(workspace *w)
{
    return w->pixels;
}

bool workspace_glass(const workspace *w)
{
    return w->glass;
}

/* With islands: true when the tissue field on a tile's grid (grid_fill's points, whose values its
 * samples interpolate) stays below tissue_thr - 0.01. shade() then adds no raggedness and blends
 * in no tissue (that needs tissue_thr - 0.009; 0.001 covers float rounding): all glass. */
static bool grid_is_glass(const scene *s, double x0, double y0, double step)
{
    for (int j = 0; j < GRID_N; j++) {
        for (int i = 0; i < GRID_N; i++) {
            if (islands_field(s, x0 + i * step, y0 + j * step) >= s->tissue_thr - 0.01f) {
                return false;
            }
        }
    }
    return true;
}

/* One tile of level `level` into w->pixels. A pixel of level k covers 2^k x 2^k level-0 pixels
 * and averages samples spread over that square: one at level 0, two (a diagonal) at level 1,
 * four (a rotated grid) below. The whole pyramid costs about twice level 0. With islands the
 * glass is uniform and the sensor grain repeats from tile to tile, so every all-glass tile of a
 * level is the same; `all_glass` renders it without looking at the scene, bit for bit as the
 * full path renders a tile whose samples are all glass. */
void render_tile(const scene *s, int level, uint32_t tx, uint32_t ty, bool all_glass, workspace *w)
{
    w->glass = false;
    static const double at[3][4][2] = {
        {{0.5, 0.5}},
        {{0.25, 0.75}, {0.75, 0.25}},
        {{0.375, 0.125}, {0.875, 0.375}, {0.125, 0.625}, {0.625, 0.875}},
    }; // (pattern, sample, x|y) sample positions within a pixel
    int pattern = level < 2 ? level : 2, n = 1 << pattern;
    double d = ldexp(1.0, level);
    double x0 = (double)tx * TILE * d, y0 = (double)ty * TILE * d;
    if (!all_glass) {
        grid_fill(s, &w->grid, x0, y0, GRID_STEP * d);
    }
    int64_t gx = s->islands > 0 ? 0 : (int64_t)tx * TILE,
            gy = s->islands > 0 ? 0 : (int64_t)ty * TILE;
    for (int j = 0; j < TILE; j++) {
        for (int i = 0; i < TILE; i++) {
            rgb sum = {0.0f, 0.0f, 0.0f};
            for (int k = 0; k < n; k++) {
                double x = x0 + (i + at[pattern][k][0]) * d;
                double y = y0 + (j + at[pattern][k][1]) * d;
                rgb c = all_glass ? GLASS : shade(s, &w->memo, &w->grid, x, y);
                sum.r += c.r, sum.g += c.g, sum.b += c.b;
            }
            // Sensor grain, mostly shared by the three channels.
            uint32_t h = hash(s, gx + i, gy + j, SALT_GRAIN + level);
            uint32_t h2 = fmix(h);
            float grain = 3.0f * (byte(h, 0) + byte(h, 1) - 1.0f);
            float v[3] = {sum.r / n + grain + 1.5f * (byte(h, 2) - 0.5f),
                          sum.g / n + grain + 1.5f * (byte(h, 3) - 0.5f),
                          sum.b / n + grain + 1.5f * (byte(h2, 0) - 0.5f)};
            uint8_t *p = w->pixels + ((size_t)j * TILE + i) * 3;
            for (int c = 0; c < 3; c++) {
                float q = v[c] + 0.5f;
                p[c] = (uint8_t)(q < 0.0f ? 0.0f : q > 255.0f ? 255.0f : q);
            }
        }
    }
}

/* A tile to write: with islands and the glass shortcut, a tile whose grid is all glass is only
 * marked (w->glass), for write_glass; the others are rendered. Same file either way. */
void render_or_mark(const scene *s, int level, uint32_t tx, uint32_t ty, bool cache_glass,
                    workspace *w)
{
    double d = ldexp(1.0, level);
    double x0 = (double)tx * TILE * d, y0 = (double)ty * TILE * d; // as in render_tile
    if (cache_glass && s->islands > 0 && grid_is_glass(s, x0, y0, GRID_STEP * d)) {
        w->glass = true;
        return;
    }
    render_tile(s, level, tx, ty, false, w);
}

/* True when no sample of tile (tx, ty) of `level` can be tissue, from a bound on the islands field
 * over the tile's square: the tile's field grid lies in the square and every sample interpolates
 * the grid. The cones bound the field before noise; the noise adds at most ISLAND_NOISE / 2 +
 * ISLAND_EDGE_NOISE. Below tissue_thr - 0.009, shade() adds no raggedness and blends in no tissue;
 * 0.001 more covers float rounding. Such a tile renders as render_tile(all_glass). Conservative:
 * a glass tile close to an island gets false and is simply rendered. */
bool tile_is_glass(const scene *s, int level, uint32_t tx, uint32_t ty)
{
    if (s->islands == 0) {
        return false;
    }
    double side = TILE * ldexp(1.0, level);
    double x0 = tx * side, y0 = ty * side, x1 = x0 + side, y1 = y0 + side;
    double cone = -1e30;
    for (int i = 0; i < s->islands; i++) {
        const island *b = &s->island[i];
        double dx = fmax(fmax(x0 - b->x, b->x - x1), 0.0);
        double dy = fmax(fmax(y0 - b->y, b->y - y1), 0.0);
        cone = fmax(cone, 1.0 - hypot(dx, dy) / b->r);
    }
    return cone + ISLAND_NOISE / 2.0 + ISLAND_EDGE_NOISE < s->tissue_thr - 0.009 - 0.001;
}
