/* SPDX-License-Identifier: MIT */
/* gen-demo-slide: what its three files share. gen-demo-slide-render.c synthesises the tissue and
 * renders tiles, gen-demo-slide-tiff.c writes them as a pyramidal TIFF, gen-demo-slide.c is the
 * command line. */
#ifndef GEN_DEMO_SLIDE_H
#define GEN_DEMO_SLIDE_H

#include <stdbool.h>
#include <stdint.h>

#define PROG "gen-demo-slide"
#define TILE 256                     // tile side, pixels
#define TILE_BYTES (TILE * TILE * 3) // one tile's RGB pixels
#define MAX_LEVELS 32
#define ISLAND_FRACTION 0.15 // with --islands: share covered by the islands together
#define MAX_ISLANDS 100

/* ---- the slide's content (gen-demo-slide-render.c) */

typedef struct {
    double x, y, r; // centre and radius of the island's cone, level-0 pixels
} island;

typedef struct {
    uint32_t seed;
    uint32_t seed_mix;    // the seed, hashed
    double width, height; // level-0 size, pixels
    double island_scale;  // size of the tissue blobs, level-0 pixels
    float tissue_thr;     // tissue where the tissue field exceeds tissue_thr
    int islands;          // 0: one large tissue mass (the default); else island[0 .. islands)
    island island[MAX_ISLANDS];
} scene;

bool scene_init(scene *s, uint32_t seed, uint32_t width, uint32_t height, int islands);

/* Scratch for one tile (field grid, memos, pixels), allocated once; opaque outside the renderer. */
typedef struct workspace workspace;

workspace *workspace_array_new(int n); // n workspaces with empty memos; NULL when out of memory
void workspace_array_free(workspace *ws);
workspace *workspace_at(workspace *ws, int i);
uint8_t *workspace_pixels(workspace *w);  // (TILE, TILE, 3) row-major uint8 RGB
bool workspace_glass(const workspace *w); // render_or_mark found the tile all glass

bool tile_is_glass(const scene *s, int level, uint32_t tx, uint32_t ty);
void render_tile(const scene *s, int level, uint32_t tx, uint32_t ty, bool all_glass, workspace *w);
void render_or_mark(const scene *s, int level, uint32_t tx, uint32_t ty, bool cache_glass,
                    workspace *w);

/* ---- the pyramidal TIFF (gen-demo-slide-tiff.c) */

typedef struct {
    int count;
    uint32_t width[MAX_LEVELS], height[MAX_LEVELS]; // level k is level k-1 halved, rounded up
} pyramid;

typedef struct {
    char msg[512];        // first libtiff error
    bool show;            // stderr is a terminal: print progress
    uint64_t done, total; // tiles written, over all levels
    uint64_t glass;       // all-glass tiles written as a copy of the level's first
} status;

void pyramid_plan(pyramid *p, uint32_t width, uint32_t height);
bool write_slide(const char *path, const scene *s, const pyramid *p, int quality, bool cache_glass,
                 status *st);

#endif
