/* SPDX-License-Identifier: MIT */
/* Seam-free CAMs: the trunk run down strips of the slide, band by band (see stream.h). */
#include <config.h>

#include <math.h>

#include "kernels.h"
#include "slide.h"
#include "stream.h"

/* A thread's buffers are planned within this many bytes (the engines' workspaces for one band of
 * every group and the tile row's features): bands get shorter to fit. VGG16-GAP on 9-tile strips
 * needs 135 MB at 4 rows; the bundled model 8 MB. */
#define STREAM_WS_BYTES ((size_t)192 << 20)

/* A strip is at least this wide, in tiles, and its two margins at most MARGIN_PERCENT % of it. */
#define MAX_STRIP_TILES 16
#define MARGIN_PERCENT 10

/* Rows every group gives a run (fewer if the budget says so): Winograd F(4×4) wants 4; more rows
 * a run cost more rows computed past a unit's last tile and more memory (measured on the demo
 * slide and VGG16-GAP, bench/README.md: 1, 2-8 and 16 rows were all slower). */
#define STEP_ROWS 4

/* int8 strips: the largest u8 window of an int8 convolution (its input channels × the rows of a
 * run × the strip's width there) stays within this many bytes, even where margins then pass a
 * tenth. Wider strips ran slower a pixel, their windows falling out of L2 (2 MB a core here):
 * VGG16-GAP, demo slide, 2 threads, tile phase: 9 tiles (1.4 MB windows) 35.6 s, 8 (1.26 MB)
 * 31.8 s, 6 (0.97 MB) 30.3 s, 3-5 30-32 s; on an 8000² slide float32 gained 4 % at 6 tiles (all
 * of it fewer glass pixels), int8 17 %. */
#define INT8_WINDOW_BYTES ((double)(1 << 20))

/* Model pixels read from the slide at once (beyond what one step needs). */
#define READ_ROWS 256

static bool conv_ok(const th_layer *l)
{
    int ext_h = (l->kh - 1) * l->dh, ext_w = (l->kw - 1) * l->dw;
    return l->sh == 1 && l->sw == 1 && ext_h % 2 == 0 && ext_w % 2 == 0 && l->pad_t == ext_h / 2 &&
           l->pad_b == ext_h / 2 && l->pad_l == ext_w / 2 && l->pad_r == ext_w / 2 &&
           l->pad_t == l->pad_l;
}

static bool pool_ok(const th_layer *l)
{
    return l->kh == l->sh && l->kw == l->sw && l->sh == l->sw && l->pad_t == 0 && l->pad_l == 0 &&
           l->pad_b == 0 && l->pad_r == 0;
}

// Model pixels per cell of the trunk's map: the product of its poolings' strides.
static int trunk_cell(const th_model *m)
{
    int cell = 1;
    for (int i = 0; i < m->n_layers; i++) {
        cell *= m->layers[i].kind == TH_LAYER_MAXPOOL ? m->layers[i].sh : 1;
    }
    return cell;
}

bool th_stream_supported(const th_model *model, int tile_w, int tile_h, char *why, size_t why_len)
{
    for (int i = 0; i < model->n_layers; i++) {
        const th_layer *l = &model->layers[i];
        if (l->kind == TH_LAYER_CONV && !conv_ok(l)) {
            snprintf(why, why_len,
                     "%s '%s' is not a stride-1 convolution padded the same on "
                     "every side",
                     th_model_unit_word(model), l->name);
            return false;
        }
        if (l->kind == TH_LAYER_MAXPOOL && !pool_ok(l)) {
            snprintf(why, why_len, "%s '%s' is a max pooling whose windows overlap or are padded",
                     th_model_unit_word(model), l->name);
            return false;
        }
    }
    int cell = trunk_cell(model);
    if (tile_w % cell != 0 || tile_h % cell != 0) {
        snprintf(why, why_len, "the %d×%d tile is not a whole number of the trunk's %d-pixel cells",
                 tile_w, tile_h, cell);
        return false;
    }
    return true;
}

// Cut the trunk into groups: a new one at every convolution after the first layer.
static bool make_groups(th_stream *s, th_error **err)
{
    const th_model *m = s->model;
    s->n_groups = 0;
    for (int i = 0; i < m->n_layers; i++) {
        s->n_groups += i == 0 || m->layers[i].kind == TH_LAYER_CONV;
    }
    s->groups = th_calloc(TH_MAX(s->n_groups, 1), sizeof(th_stream_group), err);
    if (!s->groups) {
        return false;
    }
    int g = -1, c = m->in_c;
    for (int i = 0; i < m->n_layers; i++) {
        const th_layer *l = &m->layers[i];
        if (i == 0 || l->kind == TH_LAYER_CONV) {
            th_stream_group *gr = &s->groups[++g];
            gr->first = i;
            gr->pool = 1;
            gr->c_in = c;
        }
        th_stream_group *gr = &s->groups[g];
        gr->n_layers++;
        if (l->kind == TH_LAYER_CONV) {
            gr->pad = l->pad_t;
            c = l->c_out;
        } else if (l->kind == TH_LAYER_MAXPOOL) {
            gr->pool *= l->sh;
        }
        gr->c_out = c;
    }
    s->feat_c = c;
    return true;
}

// Model pixels of context at each side of a strip: as far as the convolutions' zero padding
// reaches, counted in cells of the trunk's map (+pad per convolution, divided by each pooling).
static int strip_margin(const th_model *m)
{
    int h = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const th_layer *l = &m->layers[i];
        if (l->kind == TH_LAYER_CONV) {
            h += l->pad_l;
        } else if (l->kind == TH_LAYER_MAXPOOL) {
            h = (h + l->sw - 1) / l->sw;
        }
    }
    return h * trunk_cell(m);
}

// Rows and columns of every group for strips of `tiles` tiles, each group giving `rows` rows a run.
static void shape_groups(th_stream *s, int tiles, int rows)
{
    s->strip_tiles = tiles;
    s->width = tiles * s->tile_w + 2 * s->margin;
    s->step_rows = rows;
    int w = s->width;
    for (int g = 0; g < s->n_groups; g++) {
        th_stream_group *gr = &s->groups[g];
        gr->w_in = w;
        gr->w_out = w / gr->pool;
        w = gr->w_out;
        gr->rows_out = rows;
        gr->rows_new = rows * gr->pool;
    }
}

// What a thread's buffers come to, roughly: each group's window, two activations of its widest
// layer and its output (a byte a value where it is u8, else a float); the band of pixels; the
// features of a row of tiles.
static double ws_estimate(const th_stream *s)
{
    double bytes = 0;
    for (int g = 0; g < s->n_groups; g++) {
        const th_stream_group *gr = &s->groups[g];
        double in = (double)gr->c_in * (gr->rows_new + 2 * gr->pad) * gr->w_in;
        double act = (double)gr->c_out * gr->rows_new * gr->w_in;
        double out = (double)gr->c_out * gr->rows_out * gr->w_out;
        bytes += (in + 2 * act) * (gr->int8 ? 1 : sizeof(float)) +
                 out * (gr->u8_out ? 1 : sizeof(float));
    }
    bytes += (double)s->strip_tiles * s->feat_c * s->cam_h * s->cam_w * sizeof(float);
    return bytes + (double)s->width * (READ_ROWS + 64) * 3;
}

// int8 (act_max): the groups whose convolution th_engine_new_int8 would run in int8
// (th_engine_int8_layer). The rows between such a group and the one before it go in u8.
static void int8_groups(th_stream *s, const float *act_max)
{
    for (int g = 0; g < s->n_groups; g++) {
        th_stream_group *gr = &s->groups[g];
        gr->int8 = act_max && th_engine_int8_layer(s->model, gr->first);
        gr->u8_out = false;
        if (g > 0) {
            s->groups[g - 1].u8_out = gr->int8;
        }
    }
}

static bool plan_engines(th_stream *s, th_engine_kind kind, const float *act_max,
                         const float *act_mean, th_error **err)
{
    const th_model *m = s->model;
    for (int g = 0; g < s->n_groups; g++) {
        th_stream_group *gr = &s->groups[g];
        gr->layers = th_malloc(sizeof(th_layer) * gr->n_layers, err);
        if (!gr->layers) {
            return false;
        }
        memcpy(gr->layers, m->layers + gr->first, sizeof(th_layer) * gr->n_layers);
        for (int i = 0; i < gr->n_layers; i++) {
            gr->layers[i].pad_t = gr->layers[i].pad_b = 0;
        }
        gr->part.n_layers = gr->n_layers;
        gr->part.layers = gr->layers;
        gr->part.in_c = gr->c_in;
        gr->part.feat_c = gr->c_out;
        const th_engine *before = g > 0 ? s->groups[g - 1].engine : NULL;
        const th_part_quant q = {.act_max = gr->int8 ? act_max + gr->first : NULL,
                                 .in_scale = gr->int8 ? before->out_scale : 0,
                                 .out_max = gr->u8_out ? act_max[gr->first + gr->n_layers - 1] : 0,
                                 .in_mean = gr->int8 && act_mean
                                                ? act_mean + th_model_act_offset(m, gr->first - 1)
                                                : NULL};
        gr->engine =
            th_engine_new_part(&gr->part, kind, gr->w_in, gr->rows_new + 2 * gr->pad,
                               before ? before->out_block : 1, g == s->n_groups - 1, &q, err);
        if (!gr->engine) {
            return false;
        }
        const th_engine *e = gr->engine;
        if (e->feat_c != gr->c_out || e->feat_h != gr->rows_out || e->feat_w != gr->w_out) {
            th_error_set(err, "seam-free trunk: group at node '%s' gives %d×%d×%d, not %d×%d×%d",
                         m->layers[gr->first].name, e->feat_c, e->feat_h, e->feat_w, gr->c_out,
                         gr->rows_out, gr->w_out);
            return false;
        }
    }
    return true;
}

// The most tiles an int8 strip may have (INT8_WINDOW_BYTES), at least 1.
static int int8_strip_tiles(const th_model *m, int tile_w, int margin, int want)
{
    for (int t = want; t > 1; t--) {
        double worst = 0;
        int scale = 1;
        for (int i = 0; i < m->n_layers; i++) {
            const th_layer *l = &m->layers[i];
            if (l->kind == TH_LAYER_MAXPOOL) {
                scale *= l->sw;
            } else if (th_engine_int8_layer(m, i)) {
                double w = ((double)t * tile_w + 2 * margin) / scale;
                worst = fmax(worst, (double)l->c_in * w * (2 * STEP_ROWS + (l->kh - 1) * l->dh));
            }
        }
        if (worst <= INT8_WINDOW_BYTES) {
            return t;
        }
    }
    return 1;
}

int th_stream_strips(const th_model *model, int tile_w, int cols, bool int8, int *n_strips)
{
    int margin = strip_margin(model);
    int want =
        TH_CLAMP((2 * margin * 100 + MARGIN_PERCENT * tile_w - 1) / (MARGIN_PERCENT * tile_w), 1,
                 MAX_STRIP_TILES);
    if (int8) {
        want = int8_strip_tiles(model, tile_w, margin, want);
    }
    cols = TH_MAX(cols, 1);
    *n_strips = (cols + want - 1) / want;
    return (cols + *n_strips - 1) / *n_strips;
}

bool th_stream_plan(th_stream *s, const th_model *model, th_engine_kind kind, int tile_w,
                    int tile_h, int strip_tiles, const float *act_max, const float *act_mean,
                    th_error **err)
{
    memset(s, 0, sizeof(*s));
    s->model = model;
    s->tile_w = tile_w;
    s->tile_h = tile_h;
    if (!make_groups(s, err)) {
        return false;
    }
    s->cell = trunk_cell(model);
    s->cam_w = tile_w / s->cell;
    s->cam_h = tile_h / s->cell;
    s->margin = strip_margin(model);
    int8_groups(s, act_max);
    // STEP_ROWS a run, fewer if the memory budget says so.
    for (int rows = TH_MIN(STEP_ROWS, s->cam_h);; rows /= 2) {
        shape_groups(s, strip_tiles, rows);
        if (ws_estimate(s) <= (double)STREAM_WS_BYTES || rows == 1) {
            break;
        }
    }
    return plan_engines(s, kind, act_max, act_mean, err);
}

void th_stream_free(th_stream *s)
{
    for (int g = 0; s->groups && g < s->n_groups; g++) {
        th_engine_free(s->groups[g].engine);
        th_free(s->groups[g].layers);
    }
    th_free(s->groups);
    memset(s, 0, sizeof(*s));
}

/* ---------------------------------------------------------------- units */

// Part j of n even parts of [0, len): [len·j/n, len·(j+1)/n).
static int64_t part_start(int64_t len, int64_t n, int64_t j)
{
    return len * j / n;
}

// Which of the n even parts of [0, len) holds x.
static int64_t part_of(int64_t len, int64_t n, int64_t x)
{
    int64_t j = x * n / len;
    while (j + 1 < n && part_start(len, n, j + 1) <= x) {
        j++;
    }
    while (j > 0 && part_start(len, n, j) > x) {
        j--;
    }
    return j;
}

bool th_stream_units(int cols, int n_strips, const int *tile_col, const int *tile_row,
                     int64_t n_tiles, int max_rows, th_stream_unit **units, int64_t *n_units,
                     th_error **err)
{
    *units = NULL;
    *n_units = 0;
    // Each strip's open run of rows, then the runs closed (at most one per tile), then each run
    // cut into even units of at most max_rows rows (at most one per tile too).
    th_stream_unit *open = th_malloc(sizeof(*open) * n_strips, err);
    th_stream_unit *run = th_malloc(sizeof(*run) * TH_MAX(n_tiles, 1), err);
    th_stream_unit *u = th_malloc(sizeof(*u) * TH_MAX(n_tiles, 1), err);
    if (!open || !run || !u) {
        th_free(open);
        th_free(run);
        th_free(u);
        return false;
    }
    for (int j = 0; j < n_strips; j++) {
        open[j] = (th_stream_unit){.col0 = (int)part_start(cols, n_strips, j), .row1 = -1};
        open[j].cols = (int)part_start(cols, n_strips, j + 1) - open[j].col0;
    }
    int64_t n_runs = 0;
    for (int64_t t = 0; t < n_tiles; t++) { // row-major: each strip's rows come in order
        th_stream_unit *o = &open[part_of(cols, n_strips, tile_col[t])];
        int row = tile_row[t];
        if (o->row1 >= 0 && row > o->row1 + 1) {
            run[n_runs++] = *o; // a row without tiles ends the run
            o->row1 = -1;
        }
        if (o->row1 < 0) {
            o->row0 = row;
        }
        o->row1 = row;
    }
    for (int j = 0; j < n_strips; j++) {
        if (open[j].row1 >= 0) {
            run[n_runs++] = open[j];
        }
    }
    int64_t k = 0;
    for (int64_t i = 0; i < n_runs; i++) {
        int64_t rows = run[i].row1 - run[i].row0 + 1, parts = (rows + max_rows - 1) / max_rows;
        for (int64_t p = 0; p < parts; p++) {
            u[k] = run[i];
            u[k].row0 = run[i].row0 + (int)part_start(rows, parts, p);
            u[k++].row1 = run[i].row0 + (int)part_start(rows, parts, p + 1) - 1;
        }
    }
    th_free(open);
    th_free(run);
    *units = u;
    *n_units = k;
    return true;
}

/* ---------------------------------------------------------------- running a unit */

struct th_stream_ws {
    th_engine_ws **ws; // (n_groups)
    uint8_t *band;     // (band_cap, width, 3) pixels of rows [band_y, band_y + band_n)
    int band_cap;
    int64_t band_y;
    int band_n;
    uint8_t *scratch; // resampling source for a read
    double *sums;     // (strip_tiles, feat_c) the current row of tiles' feature sums so far
    float *cams;      // (strip_tiles, n_classes, cam_h, cam_w) their CAMs so far
    float *means;     // (feat_c) a finished tile's feature means
    int n_groups;
    int *fill;       // (n_groups) rows in group g >= 1's window
    int64_t *wanted; // (n_groups) input rows group g >= 1 still needs for the unit's last cell
    double read_sec; // seconds spent reading the slide
    int64_t pixels;  // model pixels group 0 took in (new rows × strip width)
};

double th_stream_ws_read_seconds(const th_stream_ws *ws)
{
    return ws->read_sec;
}

int64_t th_stream_ws_pixels(const th_stream_ws *ws)
{
    return ws->pixels;
}

th_stream_ws *th_stream_ws_new(const th_stream *s, const th_grid *grid, th_error **err)
{
    th_stream_ws *w = th_calloc(1, sizeof(*w), err);
    if (!w) {
        return NULL;
    }
    w->n_groups = s->n_groups;
    const th_stream_group *g0 = &s->groups[0];
    w->band_cap = g0->rows_new + 2 * g0->pad + READ_ROWS;
    size_t scratch = th_grid_rect_scratch_size(grid, s->width, w->band_cap);
    bool ok =
        (w->ws = th_calloc(TH_MAX(s->n_groups, 1), sizeof(*w->ws), err)) &&
        (w->fill = th_calloc(TH_MAX(s->n_groups, 1), sizeof(int), err)) &&
        (w->wanted = th_calloc(TH_MAX(s->n_groups, 1), sizeof(int64_t), err)) &&
        (w->band = th_malloc((size_t)w->band_cap * s->width * 3, err)) &&
        (!scratch || (w->scratch = th_malloc(scratch, err))) &&
        (w->sums = th_malloc(sizeof(double) * s->strip_tiles * s->feat_c, err)) &&
        (w->cams = th_malloc(
             sizeof(float) * s->strip_tiles * s->model->n_classes * s->cam_h * s->cam_w, err)) &&
        (w->means = th_malloc(sizeof(float) * s->feat_c, err));
    for (int g = 0; ok && g < s->n_groups; g++) {
        ok = (w->ws[g] = th_engine_ws_new(s->groups[g].engine, err)) != NULL;
    }
    if (!ok) {
        th_stream_ws_free(w);
        return NULL;
    }
    return w;
}

void th_stream_ws_free(th_stream_ws *w)
{
    if (!w) {
        return;
    }
    for (int g = 0; w->ws && g < w->n_groups; g++) {
        th_engine_ws_free(w->ws[g]);
    }
    th_free(w->ws);
    th_free(w->fill);
    th_free(w->wanted);
    th_free(w->band);
    th_free(w->scratch);
    th_free(w->sums);
    th_free(w->cams);
    th_free(w->means);
    th_free(w);
}

// Have model-pixel rows [y, y + n) of the strip starting at column x in the band; the unit needs
// no row from y_end on.
static bool band_rows(const th_stream *s, th_stream_ws *w, th_slide *slide, const th_grid *grid,
                      int64_t x, int64_t y, int n, int64_t y_end, th_error **err)
{
    if (w->band_n > 0 && y >= w->band_y && y + n <= w->band_y + w->band_n) {
        return true;
    }
    size_t line = (size_t)s->width * 3;
    int keep = 0;
    if (w->band_n > 0 && y >= w->band_y && y < w->band_y + w->band_n) {
        keep = (int)(w->band_y + w->band_n - y);
        memmove(w->band, w->band + (size_t)(y - w->band_y) * line, (size_t)keep * line);
    }
    int64_t want = TH_MAX(TH_MIN((int64_t)w->band_cap, y_end - y), (int64_t)n);
    w->band_y = y;
    w->band_n = keep;
    int more = (int)(want - keep);
    if (more > 0) {
        if (!th_grid_read_rect(grid, slide, x, y + keep, s->width, more,
                               w->band + (size_t)keep * line, w->scratch, err)) {
            return false;
        }
        w->band_n += more;
    }
    return true;
}

// Where a unit's cell rows go: the row of tiles being filled, and the rows still wanted.
typedef struct sink {
    const th_stream_unit *unit;
    int64_t next, last; // the next cell row out of the last group; the last one wanted
    th_stream_tile_fn tile_fn;
    void *user;
} sink;

// The last group's run: its step_rows cell rows are added to the feature sums and written into
// the CAMs of the row of tiles; a finished row of tiles goes to tile_fn. Each tile's sums run
// over its cells in row-major order and each CAM cell over the channels in order, as
// th_kernel_gap and th_cam_compute do on a tile's feature map: the same bits, without copying the
// features out.
static bool emit_rows(const th_stream *s, th_stream_ws *w, sink *k, const float *out,
                      th_error **err)
{
    const th_model *m = s->model;
    const int C = s->feat_c, nc = m->n_classes, ch = s->cam_h, cw = s->cam_w;
    const int off = s->margin / s->cell; // the unit's first tile's first cell column
    const int w_out = s->groups[s->n_groups - 1].w_out;
    const size_t plane = (size_t)s->step_rows * w_out; // a channel of the output: (rows, w_out)
    for (int i = 0; i < s->step_rows && k->next <= k->last; i++, k->next++) {
        int row = (int)(k->next / ch), lr = (int)(k->next - (int64_t)row * ch);
        const float *a = out + (size_t)i * w_out + off; // channel 0's row i, at the tile
        for (int t = 0; t < k->unit->cols; t++, a += cw) {
            double *sum = w->sums + (size_t)t * C;
            for (int c = 0; c < C; c++) {
                const float *x = a + c * plane;
                double v = lr ? sum[c] : 0;
                for (int j = 0; j < cw; j++) {
                    v += x[j];
                }
                sum[c] = v;
            }
            for (int cls = 0; cls < nc; cls++) {
                float *restrict o = w->cams + (((size_t)t * nc + cls) * ch + lr) * cw;
                const float *wrow = m->dense_w + (size_t)cls * C;
                memset(o, 0, sizeof(float) * cw);
                for (int c = 0; c < C; c++) {
                    const float wk = wrow[c];
                    const float *restrict x = a + c * plane;
                    TH_SIMD
                    for (int j = 0; j < cw; j++) {
                        o[j] += wk * x[j];
                    }
                }
            }
        }
        for (int t = 0; lr == ch - 1 && t < k->unit->cols; t++) {
            const double *sum = w->sums + (size_t)t * C;
            for (int c = 0; c < C; c++) {
                w->means[c] = (float)(sum[c] / (double)(ch * cw));
            }
            if (!k->tile_fn(k->user, k->unit->col0 + t, row, w->means,
                            w->cams + (size_t)t * nc * ch * cw, err)) {
                return false;
            }
        }
    }
    return true;
}

/*
 * Hand `rows` rows of group g-1's output (in g's input layout: [blocks][rows][w_in][block]) to
 * group g. Its window, its engine's input, holds 2·pad carried rows and rows_new new ones; the
 * rows go in below those it has; each time it is full the group runs, passes its output on (the
 * last group's to the sink) and carries its last 2·pad rows to the top. A group's first rows are
 * exactly the first its first run reads, so nothing computed is thrown away. Once a group has the
 * last row the unit needs of it, it runs at once on what it has (the rest of its window zero), so
 * that the groups before it compute no rows past the unit's receptive field.
 */
static bool push_rows(const th_stream *s, th_stream_ws *w, sink *k, int g, const void *rows_in,
                      int rows, th_error **err)
{
    const th_stream_group *gr = &s->groups[g];
    int b = gr->engine->in_block, blocks = (gr->c_in + b - 1) / b;
    int cap = gr->rows_new + 2 * gr->pad, carry = 2 * gr->pad;
    // in bytes: a row of a channel block, and a block's plane of the window
    size_t row = (size_t)gr->w_in * b * (gr->int8 ? 1 : sizeof(float)), plane = (size_t)cap * row;
    char *in = th_engine_input(gr->engine, w->ws[g]);
    const char *from = rows_in;
    for (int done = 0; done < rows;) {
        int n = TH_MIN(rows - done, cap - w->fill[g]);
        for (int c = 0; c < blocks; c++) {
            memcpy(in + c * plane + w->fill[g] * row, from + (c * (size_t)rows + done) * row,
                   n * row);
        }
        done += n;
        w->fill[g] += n;
        w->wanted[g] -= n;
        bool last = w->wanted[g] <= 0;
        if (w->fill[g] < cap && !last) {
            break;
        }
        for (int c = 0; c < blocks && w->fill[g] < cap; c++) {
            memset(in + c * plane + w->fill[g] * row, 0, (cap - w->fill[g]) * row);
        }
        const void *out = th_engine_forward_part(gr->engine, w->ws[g], err);
        if (!out || !(g + 1 < s->n_groups ? push_rows(s, w, k, g + 1, out, gr->rows_out, err)
                                          : emit_rows(s, w, k, out, err))) {
            return false;
        }
        if (last) {
            break; // the rest of the rows are past what the unit needs
        }
        for (int c = 0; c < blocks && carry; c++) {
            memmove(in + c * plane, in + c * plane + gr->rows_new * row, carry * row);
        }
        w->fill[g] = carry;
    }
    return true;
}

bool th_stream_run_unit(const th_stream *s, th_stream_ws *w, th_slide *slide, const th_grid *grid,
                        const th_stream_unit *unit, th_stream_tile_fn tile_fn, void *user,
                        const volatile sig_atomic_t *cancel, th_error **err)
{
    const int G = s->n_groups;
    const th_stream_group *g0 = &s->groups[0];
    // The cell rows wanted; back from the first, the first row each group reads (o·pool − pad),
    // which is the first row the group before it gives, down to the first model-pixel row group 0
    // reads; and the row below the last one read.
    int64_t first = (int64_t)unit->row0 * s->cam_h, last = (int64_t)(unit->row1 + 1) * s->cam_h - 1;
    int64_t o = first, end = last + 1;
    for (int g = G - 1; g > 0; g--) {
        o = o * s->groups[g].pool - s->groups[g].pad;
        end = end * s->groups[g].pool + s->groups[g].pad;
        w->wanted[g] = end - o;
        w->fill[g] = 0;
    }
    int64_t y0 = o * g0->pool - g0->pad, y_end = end * g0->pool + g0->pad;
    int64_t x0 = (int64_t)unit->col0 * grid->stride_x - s->margin;
    int n0 = g0->rows_new + 2 * g0->pad;
    sink k = {.unit = unit, .next = first, .last = last, .tile_fn = tile_fn, .user = user};
    w->band_n = 0;
    for (int64_t y = y0; k.next <= k.last; y += g0->rows_new) {
        if (cancel && *cancel) {
            th_error_set(err, "cancelled");
            return false;
        }
        double t0 = th_engine_clock();
        if (!band_rows(s, w, slide, grid, x0, y, n0, y_end, err)) {
            return false;
        }
        w->read_sec += th_engine_clock() - t0;
        th_kernel_input(w->band + (size_t)(y - w->band_y) * s->width * 3, n0, s->width, s->model,
                        th_engine_input(g0->engine, w->ws[0]));
        w->pixels += (int64_t)g0->rows_new * s->width;
        const void *out = th_engine_forward_part(g0->engine, w->ws[0], err);
        if (!out || !(G > 1 ? push_rows(s, w, &k, 1, out, g0->rows_out, err)
                            : emit_rows(s, w, &k, out, err))) {
            return false;
        }
    }
    return true;
}
