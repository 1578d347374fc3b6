/* SPDX-License-Identifier: MIT */
/* bench-engine: per-layer GFLOP/s and whole-tile rate of the reference and fast engines on a
 * VGG16-GAP trunk at 224×224 (random weights), on 1 thread and on 2 (two tiles at once in one
 * OpenMP loop, as run.c does), next to the FMA peak measured in the same run. Prints figures; not
 * a test. Usage: bench-engine [--tiles N] [--ref-tiles N] [--no-ref] [--size S] */
#include <config.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#ifdef HAVE_DNNL
#include <dnnl.h>
#include <dnnl_debug.h>
#endif

#include "engine.h"
#include "testutil.h" // bench/ has no -I for tests/

enum { MAX_LAYERS = 32, N_CLASSES = 4, N_ACC = 12 };

static tu_rng rng = {0x853c49e6748fea9bull}; // splitmix64: the same weights on every machine

static void *xcalloc(size_t n, size_t size)
{
    th_error *err = NULL;
    void *p = th_calloc(n ? n : 1, size, &err);
    if (!p) {
        fprintf(stderr, "bench-engine: %s\n", th_error_message(err));
        exit(1);
    }
    return p;
}

static float *random_floats(size_t n, float lo, float hi)
{
    float *p = xcalloc(n, sizeof(float));
    tu_rng_fill(&rng, p, n, lo, hi);
    return p;
}

/* ---------------------------------------------------------------- the model */

static th_layer layers[MAX_LAYERS];
static th_model model = {.layers = layers,
                         .in_c = 3,
                         .n_classes = N_CLASSES,
                         .input_scale = 1 / 255.0f,
                         .input_mean = {0.485f, 0.456f, 0.406f},
                         .input_std = {0.229f, 0.224f, 0.225f}};

// VGG16's trunk: 13 3×3 convs (pad 1, ReLU fused), 2×2 max pools; 0 marks a pool.
static const int vgg16[] = {64, 64,  0,   128, 128, 0,   256, 256, 256,
                            0,  512, 512, 512, 0,   512, 512, 512};

static void build_vgg16(void)
{
    int c = 3;
    for (size_t i = 0; i < sizeof(vgg16) / sizeof(vgg16[0]); i++) {
        th_layer *l = &layers[model.n_layers++];
        *l = (th_layer){.kh = vgg16[i] ? 3 : 2,
                        .kw = vgg16[i] ? 3 : 2,
                        .dh = 1,
                        .dw = 1,
                        .c_in = c,
                        .c_out = vgg16[i] ? vgg16[i] : c};
        if (vgg16[i] == 0) {
            l->kind = TH_LAYER_MAXPOOL;
            l->sh = l->sw = 2;
            snprintf(l->name, sizeof(l->name), "pool%d", model.n_layers - 1);
            continue;
        }
        l->kind = TH_LAYER_CONV;
        l->sh = l->sw = 1;
        l->pad_t = l->pad_l = l->pad_b = l->pad_r = 1;
        l->relu = true;
        float a = sqrtf(6.0f / (float)(c * 9)); // He-scaled: activations stay finite
        l->weight = random_floats((size_t)vgg16[i] * c * 9, -a, a);
        l->bias = random_floats((size_t)vgg16[i], -0.1f, 0.1f);
        snprintf(l->name, sizeof(l->name), "conv%d_%d", c, vgg16[i]);
        c = vgg16[i];
    }
    model.feat_c = c;
    model.dense_w = random_floats((size_t)N_CLASSES * c, -1, 1);
    model.dense_b = random_floats(N_CLASSES, -1, 1);
}

// FLOPs of each conv layer, 2·K·K·Cin·Cout·Hout·Wout (0 for pools); returns the total.
static double layer_flops(int size, double *flops, int *out_h, int *out_w)
{
    int h = size, w = size;
    double total = 0;
    for (int i = 0; i < model.n_layers; i++) {
        const th_layer *l = &layers[i];
        th_layer_out_size(l, h, w, &h, &w);
        out_h[i] = h;
        out_w[i] = w;
        flops[i] =
            l->kind == TH_LAYER_CONV ? 2.0 * l->kh * l->kw * l->c_in * l->c_out * (double)h * w : 0;
        total += flops[i];
    }
    return total;
}

/* ---------------------------------------------------------------- FMA peak */

enum { ISA_AVX2, ISA_AVX512, N_ISA };

#if defined(__x86_64__) || defined(__i386__)
/*
 * N_ACC independent chains of FMAs: enough to cover 2 pipes × 4-5 cycles of latency (Zen 3-5,
 * Intel). Each returns a sum of the accumulators so that the loop is not optimised away.
 */
__attribute__((target("avx2,fma"))) static float fma_loop_avx2(long iters)
{
    __m256 acc[N_ACC];
    for (int j = 0; j < N_ACC; j++) {
        acc[j] = _mm256_set1_ps((float)j * 1e-3f);
    }
    const __m256 a = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < N_ACC; j++) {
            acc[j] = _mm256_fmadd_ps(acc[j], a, b);
        }
    }
    for (int j = 1; j < N_ACC; j++) {
        acc[0] = _mm256_add_ps(acc[0], acc[j]);
    }
    float out[8];
    _mm256_storeu_ps(out, acc[0]);
    return out[0] + out[7];
}

__attribute__((target("avx512f"))) static float fma_loop_avx512(long iters)
{
    __m512 acc[N_ACC];
    for (int j = 0; j < N_ACC; j++) {
        acc[j] = _mm512_set1_ps((float)j * 1e-3f);
    }
    const __m512 a = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < N_ACC; j++) {
            acc[j] = _mm512_fmadd_ps(acc[j], a, b);
        }
    }
    for (int j = 1; j < N_ACC; j++) {
        acc[0] = _mm512_add_ps(acc[0], acc[j]); // every chain feeds the result: none is dead
    }
    return _mm512_reduce_add_ps(acc[0]);
}
#endif

static bool isa_supported(int isa)
{
#if defined(__x86_64__) || defined(__i386__)
    return isa == ISA_AVX2 ? __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                           : __builtin_cpu_supports("avx512f");
#else
    (void)isa;
    return false;
#endif
}

// GFLOP/s of an FMA loop of `isa` on `threads` threads at once; 0 if the CPU lacks the ISA.
static double fma_peak(int isa, int threads)
{
    if (!isa_supported(isa)) {
        return 0;
    }
#if defined(__x86_64__) || defined(__i386__)
    const long iters = 30000000; // ~0.2 s at 3 GHz
    const int lanes = isa == ISA_AVX2 ? 8 : 16;
    float (*loop)(long) = isa == ISA_AVX2 ? fma_loop_avx2 : fma_loop_avx512;
    volatile float sink = loop(iters / 10); // warm up: clocks up
    double t0 = th_engine_clock();
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
        float s = loop(iters);
#ifdef _OPENMP
#pragma omp critical
#endif
        sink += s;
    }
    double sec = th_engine_clock() - t0;
    (void)sink;
    return (double)threads * iters * N_ACC * lanes * 2 / sec / 1e9;
#else
    return 0;
#endif
}

// The vector width the fast engine's kernels use: oneDNN's ISA, else the widest there is.
static int engine_isa(void)
{
#ifdef HAVE_DNNL
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    unsigned avx512 = (unsigned)dnnl_cpu_isa_avx512_core;
    return (isa & avx512) == avx512 && isa_supported(ISA_AVX512) ? ISA_AVX512 : ISA_AVX2;
#else
    return isa_supported(ISA_AVX512) ? ISA_AVX512 : ISA_AVX2;
#endif
}

/* ---------------------------------------------------------------- engine runs */

// What one run of an engine measured.
typedef struct run_stats {
    bool ok;
    double layer_rate[MAX_LAYERS]; // GFLOP/s of each conv layer, summed over threads
    double layer_ms[MAX_LAYERS];   // mean milliseconds per tile of each layer (per thread)
    double tiles_per_sec;
} run_stats;

static int max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/*
 * threads × tiles tiles shared out by a dynamic OpenMP loop as run.c does, each thread with its
 * own workspace and profile, after a warm-up tile per thread if asked. A layer's rate adds each
 * thread's flops / its own time in that layer: the cores compute side by side.
 */
static run_stats run(const th_engine *e, int threads, int tiles, bool warmup, const uint8_t *rgb,
                     const double *flops)
{
    run_stats st = {.ok = true};
    double sec[2][MAX_LAYERS] = {{0}};
    int done[2] = {0};
    double t0 = 0, t1 = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
        int me = 0;
#ifdef _OPENMP
        me = omp_get_thread_num();
#endif
        th_engine_ws *ws = th_engine_ws_new(e, NULL);
        float logits[N_CLASSES];
        float *feat = xcalloc((size_t)e->feat_c * e->feat_h * e->feat_w, sizeof(float));
        bool good = ws && (!warmup || th_engine_forward(e, ws, rgb, logits, NULL, feat, NULL));
#ifdef _OPENMP
#pragma omp barrier
#pragma omp single
#endif
        t0 = th_engine_clock();
        if (ws) {
            ws->layer_sec = sec[me];
        }
#ifdef _OPENMP
#pragma omp for schedule(dynamic)
#endif
        for (int t = 0; t < threads * tiles; t++) {
            good = good && th_engine_forward(e, ws, rgb, logits, NULL, feat, NULL);
            done[me]++;
        }
#ifdef _OPENMP
#pragma omp single
#endif
        t1 = th_engine_clock(); // after the loop's barrier
        if (!good) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            st.ok = false;
        }
        th_free(feat);
        th_engine_ws_free(ws);
    }
    for (int i = 0; i < model.n_layers; i++) {
        for (int t = 0; t < threads; t++) {
            st.layer_rate[i] += sec[t][i] > 0 ? flops[i] * done[t] / sec[t][i] / 1e9 : 0;
            st.layer_ms[i] += 1e3 * sec[t][i] / (threads * tiles);
        }
    }
    st.tiles_per_sec = threads * tiles / (t1 - t0);
    return st;
}

/* ---------------------------------------------------------------- report */

typedef struct bench_opts {
    int size, tiles, ref_tiles, rounds;
    bool ref;
} bench_opts;

static void print_header(const bench_opts *o, double peak[N_ISA][2], int isa)
{
    printf("bench-engine: VGG16-GAP trunk, %dx%d, %d classes, random weights\n", o->size, o->size,
           N_CLASSES);
#ifdef HAVE_DNNL
    const dnnl_version_t *v = dnnl_version();
    printf("oneDNN %d.%d.%d, CPU runtime %s, ISA %s\n", v->major, v->minor, v->patch,
           dnnl_runtime2str(v->cpu_runtime), dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa()));
#endif
    printf("OpenMP threads available: %d\n", max_threads());
    for (int i = 0; i < N_ISA; i++) {
        printf("FMA peak %-7s (%d accumulators): 1 thread %6.1f GFLOP/s, 2 threads %6.1f "
               "GFLOP/s%s\n",
               i == ISA_AVX2 ? "AVX2" : "AVX-512", N_ACC, peak[i][0], peak[i][1],
               i == isa ? "  <- the engines' ISA: %pk below" : "");
    }
    printf("tiles per thread and round: fast %d x %d rounds (after a warm-up tile), reference "
           "%d x 1\n\n",
           o->tiles, o->rounds, o->ref ? o->ref_tiles : 0);
}

/*
 * `rounds` runs of an engine on 1 then 2 threads, each next to a fresh peak measurement, one
 * line per round (the machine is shared: rounds show the noise). best[] keeps the fastest run
 * per thread count and peak[] the highest peak.
 */
static void measure(const th_engine *e, const char *name, int rounds, int tiles, bool warmup,
                    int isa, const uint8_t *rgb, const double *flops, double total,
                    run_stats best[2], double peak[2])
{
    for (int r = 0; r < rounds; r++) {
        double rate[2] = {0};
        printf("%-9s round %d:", name, r + 1);
        for (int t = 0; t < 2; t++) {
            double pk = fma_peak(isa, t + 1);
            run_stats st = run(e, t + 1, tiles, warmup, rgb, flops);
            rate[t] = st.ok ? st.tiles_per_sec : 0;
            printf("  %dt %6.3f tiles/s = %5.1f GFLOP/s (peak now %5.1f)", t + 1, rate[t],
                   rate[t] * total / 1e9, pk);
            peak[t] = TH_MAX(peak[t], pk);
            if (rate[t] > best[t].tiles_per_sec) {
                best[t] = st;
            }
        }
        printf("  2t/1t %.2fx\n", rate[0] > 0 ? rate[1] / rate[0] : 0);
    }
}

static double pct(double rate, double peak)
{
    return peak > 0 ? 100 * rate / peak : 0;
}

static void print_layers(const double *flops, const int *oh, const int *ow, const run_stats s[4],
                         double p1, double p2)
{
    printf("%-12s %-13s %7s | %8s %8s | %8s %5s %8s %5s %6s\n", "layer", "out (CxHxW)", "GFLOP",
           "ref 1t", "ref 2t", "fast 1t", "%pk", "fast 2t", "%pk", "2t/1t");
    for (int i = 0; i < model.n_layers; i++) {
        const th_layer *l = &layers[i];
        char shape[32];
        snprintf(shape, sizeof(shape), "%dx%dx%d", l->c_out, oh[i], ow[i]);
        if (flops[i] == 0) {
            printf("%-12s %-13s %7s | %6.2fms %6.2fms | %6.2fms %5s %6.2fms %5s\n", l->name, shape,
                   "-", s[0].layer_ms[i], s[1].layer_ms[i], s[2].layer_ms[i], "", s[3].layer_ms[i],
                   "");
            continue;
        }
        printf("%-12s %-13s %7.3f | %8.1f %8.1f | %8.1f %4.0f%% %8.1f %4.0f%% %5.2fx\n", l->name,
               shape, flops[i] / 1e9, s[0].layer_rate[i], s[1].layer_rate[i], s[2].layer_rate[i],
               pct(s[2].layer_rate[i], p1), s[3].layer_rate[i], pct(s[3].layer_rate[i], p2),
               s[2].layer_rate[i] > 0 ? s[3].layer_rate[i] / s[2].layer_rate[i] : 0);
    }
}

static void print_totals(double total, const run_stats s[4], double p1, double p2)
{
    static const char *names[4] = {"reference, 1 thread ", "reference, 2 threads",
                                   "fast, 1 thread      ", "fast, 2 threads     "};
    const double peak[4] = {p1, p2, p1, p2};
    printf("\nwhole tile (input, trunk, feature map out, GAP, dense; %.2f GFLOP of convs), best "
           "round:\n",
           total / 1e9);
    for (int k = 0; k < 4; k++) {
        if (s[k].ok) {
            printf("  %s %7.3f tiles/s  %6.1f GFLOP/s  %4.0f%% of peak\n", names[k],
                   s[k].tiles_per_sec, s[k].tiles_per_sec * total / 1e9,
                   pct(s[k].tiles_per_sec * total / 1e9, peak[k]));
        }
    }
    if (s[2].ok && s[3].ok) {
        printf("  fast 1 -> 2 threads: %.2fx\n", s[3].tiles_per_sec / s[2].tiles_per_sec);
    }
}

static bool parse_args(int argc, char **argv, bench_opts *o)
{
    for (int i = 1; i < argc; i++) {
        int *target = NULL;
        if (strcmp(argv[i], "--no-ref") == 0) {
            o->ref = false;
            continue;
        }
        target = strcmp(argv[i], "--tiles") == 0       ? &o->tiles
                 : strcmp(argv[i], "--ref-tiles") == 0 ? &o->ref_tiles
                 : strcmp(argv[i], "--rounds") == 0    ? &o->rounds
                 : strcmp(argv[i], "--size") == 0      ? &o->size
                                                       : NULL;
        if (!target || i + 1 >= argc || !th_parse_int(argv[++i], target) || *target <= 0) {
            fprintf(stderr, "usage: bench-engine [--tiles N] [--rounds N] [--ref-tiles N] "
                            "[--no-ref] [--size S]\n");
            return false;
        }
    }
    return true;
}

int main(int argc, char **argv)
{
    bench_opts o = {.size = 224, .tiles = 3, .ref_tiles = 1, .rounds = 3, .ref = true};
    if (!parse_args(argc, argv, &o)) {
        return 2;
    }
    build_vgg16();
    double flops[MAX_LAYERS];
    int oh[MAX_LAYERS], ow[MAX_LAYERS];
    double total = layer_flops(o.size, flops, oh, ow);
    double peak[N_ISA][2];
    for (int i = 0; i < N_ISA; i++) {
        peak[i][0] = fma_peak(i, 1);
        peak[i][1] = fma_peak(i, 2);
    }
    const int isa = engine_isa();
    print_header(&o, peak, isa);

    uint8_t *rgb = xcalloc((size_t)o.size * o.size * 3, 1); // (size, size, 3)
    for (size_t i = 0; i < (size_t)o.size * o.size * 3; i++) {
        rgb[i] = (uint8_t)tu_rng_float(&rng, 0, 256);
    }
    run_stats s[4] = {{0}}; // reference 1t, 2t; fast 1t, 2t
    double best_peak[2] = {peak[isa][0], peak[isa][1]};
    for (int k = 0; k < 2; k++) {
        th_error *err = NULL;
        th_engine_kind kind = k ? TH_ENGINE_FAST : TH_ENGINE_REF;
        th_engine *e = k || o.ref ? th_engine_new(&model, kind, o.size, o.size, &err) : NULL;
        if (!e && err) {
            printf("%s\n", th_error_message(err));
        }
        if (e) {
            measure(e, k ? "fast" : "reference", k ? o.rounds : 1, k ? o.tiles : o.ref_tiles,
                    k == 1, isa, rgb, flops, total, s + 2 * k, best_peak);
        }
        th_engine_free(e);
        th_error_free(err);
    }
    printf("\nper layer, best round; GFLOP/s summed over threads (2t: two tiles at once)\n");
    print_layers(flops, oh, ow, s, best_peak[0], best_peak[1]);
    print_totals(total, s, best_peak[0], best_peak[1]);
    th_free(rgb);
    return 0;
}
