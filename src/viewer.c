/* SPDX-License-Identifier: MIT */
/* th_viewer_write: the viewer folder. It is put together in a temporary folder next to its
 * place (the page's files copied from the data folder, OpenSeadragon, the pyramids from
 * viewer-tiles.c, config.js and the per-tile results in data/tiles-N.js) and renamed into place
 * at the end, so a failure leaves no half-written viewer. The page reads everything through
 * <script src> and <img>: a page opened from file:// may not fetch. */
#include <config.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "viewer.h"

#define CHUNK_ROWS 32  // grid rows of tiles per data/tiles-N.js: the page loads them as needed
#define LAYER_FACTOR 2 // layer pixels per CAM cell, along each axis

static const char *const page_files[] = {"index.html", "viewer.js", "viewer.css"};

void th_viewer_options_init(th_viewer_options *opt)
{
    memset(opt, 0, sizeof(*opt));
}

/* ---------------------------------------------------------------- files */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path) == 0 ? 0 : 0; // best effort: go on with the rest
}

static void remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static bool copy_file(const char *from, const char *to, th_error **err)
{
    size_t len = 0;
    uint8_t *buf = th_read_file(from, &len, err);
    if (!buf) {
        return false;
    }
    FILE *fp = th_fopen(to, "wb", err);
    bool ok = fp && fwrite(buf, 1, len, fp) == len;
    if (fp && fclose(fp) != 0) {
        ok = false;
    }
    if (fp && !ok) {
        th_error_set(err, "%s: write error: %s", to, strerror(errno));
    }
    th_free(buf);
    return ok;
}

// OpenSeadragon: openseadragon.min.js and images/*.png, into DIR/openseadragon/.
static bool copy_openseadragon(const char *osd, const char *dir, th_error **err)
{
    char from[4200], to[4200];
    snprintf(to, sizeof(to), "%s/openseadragon", dir);
    if (mkdir(to, 0777) != 0) {
        th_error_set(err, "%s: cannot create: %s", to, strerror(errno));
        return false;
    }
    snprintf(from, sizeof(from), "%s/openseadragon.min.js", osd);
    snprintf(to, sizeof(to), "%s/openseadragon/openseadragon.min.js", dir);
    if (!copy_file(from, to, err)) {
        return false;
    }
    snprintf(from, sizeof(from), "%s/images", osd);
    snprintf(to, sizeof(to), "%s/openseadragon/images", dir);
    DIR *d = opendir(from);
    if (!d || mkdir(to, 0777) != 0) {
        th_error_set(err, "%s: %s", d ? to : from, strerror(errno));
        if (d) {
            closedir(d);
        }
        return false;
    }
    bool ok = true;
    for (struct dirent *de; ok && (de = readdir(d));) {
        size_t n = strlen(de->d_name);
        if (n > 4 && strcmp(de->d_name + n - 4, ".png") == 0) {
            char a[4400], b[4400];
            snprintf(a, sizeof(a), "%s/%s", from, de->d_name);
            snprintf(b, sizeof(b), "%s/%s", to, de->d_name);
            ok = copy_file(a, b, err);
        }
    }
    closedir(d);
    return ok;
}

bool th_viewer_shared(const th_viewer *v, const char *name, const uint8_t *px, int side,
                      th_error **err)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/shared", v->tmp);
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        th_error_set(err, "%s: cannot create: %s", path, strerror(errno));
        return false;
    }
    snprintf(path, sizeof(path), "%s/shared/%s", v->tmp, name);
    return th_dzi_write_image(path, strstr(name, ".png") != NULL, px, side, side, err);
}

/* ---------------------------------------------------------------- the page's data */

static void hex(char out[8], const uint8_t rgb[3])
{
    snprintf(out, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

static const char *class_name(const th_model *model, int c, char *buf, size_t size)
{
    const char *name = model ? th_model_get_class_name(model, c) : NULL;
    if (!name) {
        snprintf(buf, size, "class%d", c);
        name = buf;
    }
    return name;
}

/* Which tiles of each Deep Zoom level (0, the 1-pixel top, first) are the shared image: run
 * lengths over the level's tiles in row-major order, alternating tiles with a file of their own
 * and shared tiles, own first; [] when none is shared. */
static cJSON *shared_runs(const th_dzi *d)
{
    cJSON *levels = cJSON_CreateArray();
    for (int k = d->pyr.n - 1; k >= 0; k--) {
        cJSON *runs = cJSON_CreateArray();
        int64_t n = d->pyr.lv[k].cols * d->pyr.lv[k].rows, run = 0;
        const uint8_t *sh = d->shared + d->first[k];
        bool any = false, cur = false; // cur: whether the run being counted is of shared tiles
        for (int64_t i = 0; i <= n; i++) {
            if (i == n || (sh[i] != 0) != cur) {
                if (i < n || any) {
                    cJSON_AddItemToArray(runs, cJSON_CreateNumber((double)run));
                }
                any = true;
                cur = !cur;
                run = 0;
            }
            run++;
        }
        if (cJSON_GetArraySize(runs) == 1) {
            cJSON_DeleteItemFromArray(runs, 0); // none shared
        }
        cJSON_AddItemToArray(levels, runs);
    }
    return levels;
}

static cJSON *dzi_json(const th_dzi *d, const char *url, double scale, const char *shared)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "url", url);
    cJSON_AddStringToObject(o, "format", d->png ? "png" : "jpg");
    cJSON_AddNumberToObject(o, "width", (double)d->pyr.lv[0].w);
    cJSON_AddNumberToObject(o, "height", (double)d->pyr.lv[0].h);
    cJSON_AddNumberToObject(o, "tileSize", TH_DZI_TILE);
    cJSON_AddNumberToObject(o, "overlap", TH_DZI_OVERLAP);
    cJSON_AddNumberToObject(o, "levels", d->pyr.n);
    cJSON_AddNumberToObject(o, "scale", scale); // level-0 px per pixel
    // the shared tile's file; NULL when no tile is shared (no glass)
    if (shared) {
        cJSON_AddStringToObject(o, "shared", shared);
    }
    cJSON_AddItemToObject(o, "sharedRuns", shared_runs(d));
    return o;
}

static bool write_config(th_viewer *v, const th_model *model, const th_render_options *opt,
                         const th_viewer_options *vo, const bool *chunks, int n_chunks,
                         th_error **err)
{
    const th_result *r = v->res;
    const th_grid *g = &r->grid;
    cJSON *root = cJSON_CreateObject();
    char buf[64], col[8];
    cJSON_AddStringToObject(root, "tileheat", PACKAGE_VERSION);
    cJSON_AddStringToObject(root, "title", vo->title ? vo->title : "tileheat");
    cJSON_AddStringToObject(root, "mode", v->ov.multi ? "multi" : "single");
    const char *source = NULL;
    double mpp = th_result_get_mpp(r, &source);
    cJSON_AddNumberToObject(root, "mpp", mpp > 0 && strcmp(source, "assumed") != 0 ? mpp : 0);
    const char *glass = v->has_glass ? "shared/glass.jpg" : NULL;
    cJSON_AddItemToObject(root, "slide", dzi_json(&v->slide, "slide_files/", 1, glass));
    cJSON_AddNumberToObject(root, "alpha", opt->alpha);
    cJSON *classes = cJSON_AddArrayToObject(root, "classes");
    for (int c = 0; c < r->n_classes; c++) {
        cJSON *o = cJSON_CreateObject();
        uint8_t rgb[3] = {160, 160, 160};
        bool clear = false;
        th_class_color(opt, model, c, rgb, &clear, NULL);
        hex(col, rgb);
        cJSON_AddStringToObject(o, "name", class_name(model, c, buf, sizeof(buf)));
        cJSON_AddStringToObject(o, "color", col);
        cJSON_AddNumberToObject(o, "percent", round(r->percent[c] * 100) / 100);
        cJSON_AddNumberToObject(o, "argmax_percent", round(r->argmax_percent[c] * 100) / 100);
        cJSON_AddItemToArray(classes, o);
    }
    cJSON *layers = cJSON_AddArrayToObject(root, "layers");
    for (int i = 0; i < v->n_layers; i++) {
        int c = v->ov.cls[i];
        char url[32];
        snprintf(url, sizeof(url), "layer%d_files/", i);
        cJSON *o = dzi_json(&v->layer[i], url, v->layer_scale, "shared/clear.png");
        cJSON_AddNumberToObject(o, "class", c);
        if (v->ov.multi) {
            hex(col, v->ov.rgb[i]);
            cJSON_AddStringToObject(o, "color", col);
        } else {
            cJSON_AddStringToObject(o, "colormap", th_colormap_name(v->ov.cmap));
            cJSON *stops = cJSON_AddArrayToObject(o, "stops");
            for (int s = 0; s <= 10; s++) {
                uint8_t rgb[3];
                th_colormap_rgb(v->ov.cmap, s / 10.0f, rgb);
                hex(col, rgb);
                cJSON_AddItemToArray(stops, cJSON_CreateString(col));
            }
        }
        cJSON_AddItemToArray(layers, o);
    }
    cJSON *grid = cJSON_AddObjectToObject(root, "grid");
    cJSON_AddNumberToObject(grid, "x0", (double)g->x0);
    cJSON_AddNumberToObject(grid, "y0", (double)g->y0);
    cJSON_AddNumberToObject(grid, "step_x", g->stride_x * g->scale);
    cJSON_AddNumberToObject(grid, "step_y", g->stride_y * g->scale);
    cJSON_AddNumberToObject(grid, "tile_w", g->tile_w * g->scale);
    cJSON_AddNumberToObject(grid, "tile_h", g->tile_h * g->scale);
    cJSON_AddNumberToObject(grid, "cols", g->cols);
    cJSON_AddNumberToObject(grid, "rows", g->rows);
    cJSON_AddNumberToObject(grid, "chunk_rows", CHUNK_ROWS);
    cJSON *ch = cJSON_AddArrayToObject(grid, "chunks");
    for (int i = 0; i < n_chunks; i++) {
        if (chunks[i]) {
            cJSON_AddItemToArray(ch, cJSON_CreateNumber(i));
        }
    }
    cJSON *links = cJSON_AddArrayToObject(root, "links");
    for (int i = 0; i < vo->n_links; i++) {
        cJSON_AddItemToArray(links, cJSON_CreateString(vo->links[i]));
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    char *path = json ? th_strdup_printf(err, "%s/config.js", v->tmp) : NULL;
    th_outfile out = {0};
    bool ok = path && th_outfile_open(&out, path, err);
    if (ok) {
        th_outfile_printf(&out, "var tileheatConfig = %s;\n", json);
        ok = th_outfile_commit(&out, err);
    } else if (!json) {
        th_error_set(err, "out of memory");
    }
    cJSON_free(json);
    th_free(path);
    return ok;
}

/* The tiles run and their probabilities, CHUNK_ROWS grid rows a file:
 * data/tiles-N.js = tileheatTiles(N, [col, row, p0, p1, ..., col, row, ...]); chunks[N] says
 * which files exist. */
static bool write_tiles(th_viewer *v, bool *chunks, th_error **err)
{
    const th_result *r = v->res;
    char path[4200];
    snprintf(path, sizeof(path), "%s/data", v->tmp);
    if (mkdir(path, 0777) != 0) {
        th_error_set(err, "%s: cannot create: %s", path, strerror(errno));
        return false;
    }
    th_outfile out = {0};
    int open_chunk = -1;
    bool ok = true;
    for (int64_t t = 0; ok && t <= r->n_tiles; t++) {
        int chunk = t < r->n_tiles ? r->tile_row[t] / CHUNK_ROWS : -2;
        if (chunk != open_chunk && open_chunk >= 0) {
            th_outfile_printf(&out, "]);\n");
            ok = th_outfile_commit(&out, err);
            open_chunk = -1;
        }
        if (!ok || t == r->n_tiles) {
            break;
        }
        if (open_chunk < 0) {
            snprintf(path, sizeof(path), "%s/data/tiles-%d.js", v->tmp, chunk);
            if (!th_outfile_open(&out, path, err)) {
                return false;
            }
            th_outfile_printf(&out, "tileheatTiles(%d, [", chunk);
            chunks[chunk] = true;
            open_chunk = chunk;
        } else {
            th_outfile_printf(&out, ",\n");
        }
        th_outfile_printf(&out, "%d,%d", r->tile_col[t], r->tile_row[t]);
        const float *p = r->probs + (size_t)t * r->n_classes;
        for (int c = 0; c < r->n_classes; c++) {
            th_outfile_printf(&out, ",%.4g", p[c]);
        }
    }
    return ok;
}

/* ---------------------------------------------------------------- the whole */

static bool setup(th_viewer *v, th_slide *slide, const th_result *res, const th_model *model,
                  const th_render_options *opt, const th_viewer_options *vo, th_error **err)
{
    v->slide_handle = slide;
    v->res = res;
    v->tissue = res->tissue;
    v->cancel = vo->cancel;
    v->threads = opt->threads;
    if (!th_overlay_init(&v->ov, slide, res, model, opt, err)) {
        return false;
    }
    int64_t w0, h0;
    th_slide_get_level_dimensions(slide, 0, &w0, &h0);
    if (!th_dzi_open(&v->slide, v->tmp, "slide", w0, h0, false, err)) {
        return false;
    }
    v->n_layers = v->ov.multi ? v->ov.n : 1;
    v->layer_scale = TH_MAX(1.0, TH_MIN(v->ov.cell_w0, v->ov.cell_h0) / LAYER_FACTOR);
    int64_t lw = (int64_t)ceil(w0 / v->layer_scale), lh = (int64_t)ceil(h0 / v->layer_scale);
    for (int i = 0; i < v->n_layers; i++) {
        char name[16];
        snprintf(name, sizeof(name), "layer%d", i);
        if (!th_dzi_open(&v->layer[i], v->tmp, name, lw, lh, true, err)) {
            return false;
        }
    }
    int side = TH_DZI_TILE + 2 * TH_DZI_OVERLAP;
    int unit = TH_VIEWER_SIDE(TH_VIEWER_UNIT), box = TH_VIEWER_SIDE(TH_VIEWER_BOX);
    v->n_workers = th_threads(opt->threads);
    v->wk = th_calloc((size_t)v->n_workers, sizeof(*v->wk), err);
    for (int i = 0; v->wk && i < v->n_workers; i++) {
        th_viewer_worker *wk = &v->wk[i];
        wk->unit = th_malloc((size_t)unit * unit * 3, err);
        wk->tile = wk->unit ? th_malloc((size_t)side * side * 3, err) : NULL;
        wk->layers = wk->tile ? th_malloc((size_t)side * side * 4 * v->n_layers, err) : NULL;
        wk->cols = wk->layers ? th_malloc(side * sizeof(*wk->cols), err) : NULL;
        if (!wk->cols || !th_overlay_cache_init(&wk->cache, &v->ov, err) ||
            !th_viewer_reader_init(&wk->rd, box, box, err)) {
            return false;
        }
    }
    return v->wk != NULL;
}

static void teardown(th_viewer *v)
{
    for (int i = 0; v->wk && i < v->n_workers; i++) {
        th_viewer_worker *wk = &v->wk[i];
        TH_FREE(wk->unit);
        TH_FREE(wk->tile);
        TH_FREE(wk->layers);
        TH_FREE(wk->cols);
        th_overlay_cache_free(&wk->cache);
        th_viewer_reader_free(&wk->rd);
        th_dzi_scratch_free(&wk->enc);
    }
    TH_FREE(v->wk);
    th_dzi_close(&v->slide);
    for (int i = 0; i < v->n_layers; i++) {
        th_dzi_close(&v->layer[i]);
    }
}

// The page's own files (index.html, viewer.js, viewer.css) and OpenSeadragon.
static bool copy_assets(const th_viewer *v, const th_viewer_options *vo, th_error **err)
{
    if (!vo->assets || !vo->openseadragon) {
        th_error_set(err, "no folder for the page's files or for OpenSeadragon");
        return false;
    }
    for (size_t i = 0; i < sizeof(page_files) / sizeof(page_files[0]); i++) {
        char from[4200], to[4200];
        snprintf(from, sizeof(from), "%s/%s", vo->assets, page_files[i]);
        snprintf(to, sizeof(to), "%s/%s", v->tmp, page_files[i]);
        if (!copy_file(from, to, err)) {
            return false;
        }
    }
    return copy_openseadragon(vo->openseadragon, v->tmp, err);
}

// thumbnail.jpg (for the cohort page): the slide's first level of at most 256 px, one tile.
static bool thumbnail(const th_viewer *v, th_error **err)
{
    const th_pyramid *p = &v->slide.pyr;
    int k = 0;
    while (k + 1 < p->n && TH_MAX(p->lv[k].w, p->lv[k].h) > TH_DZI_TILE) {
        k++;
    }
    char from[4200], to[4200];
    if (th_dzi_is_shared(&v->slide, k, 0, 0)) {
        snprintf(from, sizeof(from), "%s/shared/glass.jpg", v->tmp);
    } else {
        snprintf(from, sizeof(from), "%s/%d/0_0.jpg", v->slide.files, p->n - 1 - k);
    }
    snprintf(to, sizeof(to), "%s/thumbnail.jpg", v->tmp);
    return link(from, to) == 0 || copy_file(from, to, err);
}

// The temporary folder becomes `dir`; an earlier viewer there is moved aside, then removed.
static bool commit(th_viewer *v, const char *dir, th_error **err)
{
    char *old = th_strdup_printf(err, "%s.old-XXXXXX", dir);
    if (!old) {
        return false;
    }
    bool had = access(dir, F_OK) == 0, ok = true;
    if (had && (!mkdtemp(old) || rename(dir, old) != 0)) {
        th_error_set(err, "%s: cannot move the earlier viewer aside: %s", dir, strerror(errno));
        ok = false;
    }
    if (ok && rename(v->tmp, dir) != 0) {
        th_error_set(err, "%s: cannot move into place: %s", dir, strerror(errno));
        ok = false;
        if (had) {
            rename(old, dir);
        }
    }
    if (ok && had) {
        remove_tree(old);
    }
    th_free(old);
    return ok;
}

bool th_viewer_write(th_slide *slide, const th_result *result, const th_model *model,
                     const th_render_options *opt, const th_viewer_options *vopt, const char *dir,
                     th_error **err)
{
    th_viewer *v = NULL;
    bool *chunks = NULL, ok = false;
    if (!slide || !result || !opt || !vopt || !dir) {
        th_error_set(err, "viewer: no slide, result, options or folder");
        goto out;
    }
    v = th_calloc(1, sizeof(*v), err);
    v = v ? v : NULL;
    if (!v || !(v->tmp = th_strdup_printf(err, "%s.tmp-XXXXXX", dir))) {
        goto out;
    }
    if (!mkdtemp(v->tmp)) {
        th_error_set(err, "cannot create a folder next to it: %s", strerror(errno));
        TH_FREE(v->tmp);
        goto out;
    }
    int rows = result->grid.rows;
    chunks = th_calloc((size_t)rows / CHUNK_ROWS + 1, sizeof(bool), err);
    ok = chunks && copy_assets(v, vopt, err) && setup(v, slide, result, model, opt, vopt, err) &&
         th_viewer_write_slide(v, err) && th_viewer_write_layers(v, err) &&
         write_tiles(v, chunks, err) &&
         write_config(v, model, opt, vopt, chunks, rows / CHUNK_ROWS + 1, err);
    ok = ok && thumbnail(v, err) && commit(v, dir, err);
out:
    if (v) {
        teardown(v);
        if (v->tmp) {
            if (!ok) {
                remove_tree(v->tmp);
            }
            th_free(v->tmp);
        }
    }
    th_free(v);
    th_free(chunks);
    if (!ok) {
        th_error_prefix(err, "%s: ", dir ? dir : "viewer");
    }
    return ok;
}
