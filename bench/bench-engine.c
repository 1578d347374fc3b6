/* SPDX-License-Identifier: MIT */
/* bench-engine: per-layer GFLOP/s and whole-tile rate of the reference, fast and winograd engines
 * on a VGG16-GAP trunk at 224×224 (random weights) or on the trunk of an ONNX model, on 1 thread
 * and on 2 (two tiles at once in one OpenMP loop, as run.c does), next to the FMA peak measured in
 * the same run; and how far the fast engines' outputs lie from the reference's. Prints figures;
 * not a test. Usage: bench-engine --help */
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

enum { MAX_LAYERS = 64, N_CLASSES = 4, N_ACC = 12 };

// The engines measured, in column order.
enum { ENG_REF, ENG_FAST, ENG_WINO, N_ENG };
static const char *const eng_names[N_ENG] = {"ref", "fast", "winograd"};
static const th_engine_kind eng_kinds[N_ENG] = {TH_ENGINE_REF, TH_ENGINE_FAST, TH_ENGINE_WINOGRAD};

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

static th_layer vgg_layers[MAX_LAYERS];
static th_model vgg = {.layers = vgg_layers,
                       .in_c = 3,
                       .n_classes = N_CLASSES,
                       .input_scale = 1 / 255.0f,
                       .input_mean = {0.485f, 0.456f, 0.406f},
                       .input_std = {0.229f, 0.224f, 0.225f}};

// The model benchmarked: VGG16-GAP, or the one --model loaded.
static const th_model *model = &vgg;

// VGG16's trunk: 13 3×3 convs (pad 1, ReLU fused), 2×2 max pools; 0 marks a pool.
static const int vgg16[] = {64, 64,  0,   128, 128, 0,   256, 256, 256,
                            0,  512, 512, 512, 0,   512, 512, 512};

static void build_vgg16(void)
{
    int c = 3;
    for (size_t i = 0; i < sizeof(vgg16) / sizeof(vgg16[0]); i++) {
        th_layer *l = &vgg_layers[vgg.n_layers++];
        *l = (th_layer){.kh = vgg16[i] ? 3 : 2,
                        .kw = vgg16[i] ? 3 : 2,
                        .dh = 1,
                        .dw = 1,
                        .c_in = c,
                        .c_out = vgg16[i] ? vgg16[i] : c};
        if (vgg16[i] == 0) {
            l->kind = TH_LAYER_MAXPOOL;
            l->sh = l->sw = 2;
            snprintf(l->name, sizeof(l->name), "pool%d", vgg.n_layers - 1);
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
    vgg.feat_c = c;
    vgg.dense_w = random_floats((size_t)N_CLASSES * c, -1, 1);
    vgg.dense_b = random_floats(N_CLASSES, -1, 1);
}

// What the table shows of one trunk layer besides the timings.
typedef struct layer_info {
    double flops;   // 2·K·K·Cin·Cout·Hout·Wout for a conv (the direct method's), 0 otherwise
    int in_h, in_w; // input size
    int out_h, out_w; // output size
    char wino[8];     // oneDNN's Winograd kernel for this conv here ("4x3", "2x3"), or ""
} layer_info;

#ifdef HAVE_DNNL
// Which Winograd convolution oneDNN creates for layer l at its input size, as engine-dnnl.c asks
// for one (any layouts, bias, fused ReLU, user scratchpad): into li->wino the part of its
// implementation name after "wino_" ("4x3": F(4×4,3×3), "2x3": F(2×2,3×3)), "" if none.
static void wino_kernel(dnnl_engine_t eng, const th_layer *l, layer_info *li)
{
    const dnnl_dims_t src_dims = {1, l->c_in, li->in_h, li->in_w};
    const dnnl_dims_t wei_dims = {l->c_out, l->c_in, l->kh, l->kw};
    const dnnl_dims_t bias_dims = {l->c_out}, dst_dims = {1, l->c_out, li->out_h, li->out_w};
    const dnnl_dims_t strides = {l->sh, l->sw}, dilates = {l->dh - 1, l->dw - 1};
    const dnnl_dims_t pad_l = {l->pad_t, l->pad_l}, pad_r = {l->pad_b, l->pad_r};
    dnnl_memory_desc_t src, wei, bias, dst;
    dnnl_convolution_desc_t cd;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    bool ok = dnnl_memory_desc_init_by_tag(&src, 4, src_dims, dnnl_f32, dnnl_format_tag_any) == 0 &&
              dnnl_memory_desc_init_by_tag(&wei, 4, wei_dims, dnnl_f32, dnnl_format_tag_any) == 0 &&
              dnnl_memory_desc_init_by_tag(&bias, 1, bias_dims, dnnl_f32, dnnl_x) == 0 &&
              dnnl_memory_desc_init_by_tag(&dst, 4, dst_dims, dnnl_f32, dnnl_format_tag_any) == 0 &&
              dnnl_dilated_convolution_forward_desc_init(
                  &cd, dnnl_forward_inference, dnnl_convolution_winograd, &src, &wei, &bias, &dst,
                  strides, dilates, pad_l, pad_r) == 0 &&
              dnnl_primitive_attr_create(&attr) == 0 &&
              dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == 0;
    if (ok && l->relu) {
        ok = dnnl_post_ops_create(&po) == 0 &&
             dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0, 0) == 0 &&
             dnnl_primitive_attr_set_post_ops(attr, po) == 0;
    }
    const char *impl = NULL;
    ok = ok && dnnl_primitive_desc_create(&pd, &cd, attr, eng, NULL) == 0 &&
         dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == 0 && impl;
    const char *name = ok ? strstr(impl, "wino_") : NULL;
    if (ok) {
        name = name ? name + 5 : impl;
        snprintf(li->wino, sizeof(li->wino), "%.*s", (int)strcspn(name, ":"), name);
    }
    dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
}
#endif

// Shapes and FLOPs of every layer for an in_h×in_w tile; returns the total FLOPs.
static double layer_infos(int in_h, int in_w, layer_info *info)
{
    int h = in_h, w = in_w;
    double total = 0;
#ifdef HAVE_DNNL
    dnnl_engine_t eng = NULL;
    dnnl_engine_create(&eng, dnnl_cpu, 0);
#endif
    for (int i = 0; i < model->n_layers; i++) {
        const th_layer *l = &model->layers[i];
        layer_info *li = &info[i];
        *li = (layer_info){.in_h = h, .in_w = w};
        th_layer_out_size(l, h, w, &h, &w); // checked by th_model_trunk_shape in main
        li->out_h = h;
        li->out_w = w;
        if (l->kind != TH_LAYER_CONV) {
            continue;
        }
        li->flops = 2.0 * l->kh * l->kw * l->c_in * l->c_out * (double)h * w;
        total += li->flops;
#ifdef HAVE_DNNL
        const bool k3s1 = l->kh == 3 && l->kw == 3 && l->sh == 1 && l->sw == 1 && l->dh == 1 &&
                          l->dw == 1; // what engine-dnnl.c offers to Winograd
        if (eng && k3s1) {
            wino_kernel(eng, l, li);
        }
#endif
    }
#ifdef HAVE_DNNL
    dnnl_engine_destroy(eng);
#endif
    return total;
}

/* ---------------------------------------------------------------- FMA peak */

// ISA_VNNI: int8 multiply-adds (vpdpbusd), only for --int8-peak
enum { ISA_AVX2, ISA_AVX512, N_ISA, ISA_VNNI = N_ISA };

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

// The same with u8·s8 dot products of 4 into s32 lanes (AVX-512 VNNI): 128 int8 ops each.
__attribute__((target("avx512f,avx512vnni"))) static float vnni_loop(long iters)
{
    __m512i acc[N_ACC];
    for (int j = 0; j < N_ACC; j++) {
        acc[j] = _mm512_set1_epi32(j);
    }
    const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-1);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < N_ACC; j++) {
            acc[j] = _mm512_dpbusd_epi32(acc[j], a, b);
        }
    }
    for (int j = 1; j < N_ACC; j++) {
        acc[0] = _mm512_add_epi32(acc[0], acc[j]);
    }
    return (float)_mm512_reduce_add_epi32(acc[0]);
}
#endif

static bool isa_supported(int isa)
{
#if defined(__x86_64__) || defined(__i386__)
    return isa == ISA_AVX2     ? __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
           : isa == ISA_VNNI ? __builtin_cpu_supports("avx512vnni")
                             : __builtin_cpu_supports("avx512f");
#else
    (void)isa;
    return false;
#endif
}

/*
 * GFLOP/s of an FMA loop of `isa` on `threads` threads at once; 0 if the CPU lacks the ISA. Each
 * thread warms up inside the parallel region (its own core's clock rises), all pass a barrier,
 * then each times its own loop: the figure is the sum of the threads' own rates, the best of
 * FMA_REPS such runs. Timing the whole region from the calling thread, warmed up alone, counted
 * the other thread's wake-up and an unwarmed core: it showed 1.88x from 1 to 2 threads on a Zen 5
 * that scales 2.00x.
 */
static double fma_peak(int isa, int threads)
{
    if (!isa_supported(isa)) {
        return 0;
    }
#if defined(__x86_64__) || defined(__i386__)
    enum { FMA_REPS = 3 };
    const long iters = 25000000; // 0.05 s at 3 GHz with 2 FMA pipes
    const int ops = isa == ISA_AVX2 ? 8 * 2 : isa == ISA_VNNI ? 16 * 4 * 2 : 16 * 2; // an instruction
    const double flops = (double)iters * N_ACC * ops;
    float (*loop)(long) = isa == ISA_AVX2   ? fma_loop_avx2
                          : isa == ISA_VNNI ? vnni_loop
                                            : fma_loop_avx512;
    double total[FMA_REPS] = {0}; // GFLOP/s of each run, summed over threads
    volatile float sink = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
        float s = loop(iters / 5); // warm up: this core's clock rises
        for (int r = 0; r < FMA_REPS; r++) {
#ifdef _OPENMP
#pragma omp barrier
#endif
            double t0 = th_engine_clock();
            s += loop(iters);
            double rate = flops / (th_engine_clock() - t0) / 1e9;
#ifdef _OPENMP
#pragma omp atomic
#endif
            total[r] += rate;
        }
#ifdef _OPENMP
#pragma omp critical
#endif
        sink += s;
    }
    (void)sink;
    double best = 0;
    for (int r = 0; r < FMA_REPS; r++) {
        best = TH_MAX(best, total[r]);
    }
    return best;
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
                     const layer_info *info)
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
        float *logits = xcalloc((size_t)model->n_classes, sizeof(float));
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
        th_free(logits);
        th_engine_ws_free(ws);
    }
    for (int i = 0; i < model->n_layers; i++) {
        for (int t = 0; t < threads; t++) {
            st.layer_rate[i] += sec[t][i] > 0 ? info[i].flops * done[t] / sec[t][i] / 1e9 : 0;
            st.layer_ms[i] += 1e3 * sec[t][i] / (threads * tiles);
        }
    }
    st.tiles_per_sec = threads * tiles / (t1 - t0);
    return st;
}

// Fold a run into the best so far: the highest tile rate, and per layer its own best round.
static void keep_best(run_stats *best, const run_stats *st)
{
    if (!st->ok) {
        return;
    }
    if (!best->ok) {
        *best = *st;
        return;
    }
    best->tiles_per_sec = TH_MAX(best->tiles_per_sec, st->tiles_per_sec);
    for (int i = 0; i < model->n_layers; i++) {
        best->layer_rate[i] = TH_MAX(best->layer_rate[i], st->layer_rate[i]);
        best->layer_ms[i] = TH_MIN(best->layer_ms[i], st->layer_ms[i]);
    }
}

/*
 * One round of an engine: a run on 1 thread then on 2, each next to a fresh peak measurement, on
 * one line (the machine may be shared: rounds show the noise). best[] keeps the best figures per
 * thread count and peak[] the highest peak.
 */
static void measure(const th_engine *e, const char *name, int round, int tiles, bool warmup,
                    int isa, const uint8_t *rgb, const layer_info *info, double total,
                    run_stats best[2], double peak[2])
{
    double rate[2] = {0};
    printf("%-9s round %d:", name, round);
    for (int t = 0; t < 2; t++) {
        double pk = fma_peak(isa, t + 1);
        run_stats st = run(e, t + 1, tiles, warmup, rgb, info);
        rate[t] = st.ok ? st.tiles_per_sec : 0;
        printf("  %dt %7.3f tiles/s = %5.1f GFLOP/s (peak now %5.1f)", t + 1, rate[t],
               rate[t] * total / 1e9, pk);
        peak[t] = TH_MAX(peak[t], pk);
        keep_best(&best[t], &st);
    }
    printf("  2t/1t %.2fx\n", rate[0] > 0 ? rate[1] / rate[0] : 0);
    fflush(stdout);
}

/*
 * How far the fast engines' logits and feature map lie from the reference's on the benchmark
 * tile: max |difference| / max |reference value|, one forward pass of each engine.
 */
static void check_agreement(th_engine *const eng[N_ENG], const uint8_t *rgb)
{
    const th_engine *ref = eng[ENG_REF];
    const size_t n_feat = (size_t)ref->feat_c * ref->feat_h * ref->feat_w;
    const size_t n_cls = (size_t)model->n_classes;
    float *logits[N_ENG] = {NULL}, *feat[N_ENG] = {NULL};
    printf("agreement with the reference on the benchmark tile, max |diff| / max |ref|:\n");
    for (int k = 0; k < N_ENG; k++) {
        th_error *err = NULL;
        th_engine_ws *ws = eng[k] ? th_engine_ws_new(eng[k], &err) : NULL;
        logits[k] = xcalloc(n_cls, sizeof(float));
        feat[k] = xcalloc(n_feat, sizeof(float));
        bool ok = ws && th_engine_forward(eng[k], ws, rgb, logits[k], NULL, feat[k], &err);
        th_engine_ws_free(ws);
        if (!ok && eng[k]) {
            printf("  %s: %s\n", eng_names[k], th_error_message(err));
        } else if (ok && k == ENG_REF) {
            float top = 0;
            for (size_t i = 0; i < n_cls; i++) {
                top = fmaxf(top, fabsf(logits[k][i]));
            }
            printf("  (reference: max |logit| %.4g)\n", top);
        } else if (ok) {
            printf("  %-9s logits %.2e   feature map (%dx%dx%d) %.2e\n", eng_names[k],
                   tu_max_rel_diff(logits[k], logits[ENG_REF], n_cls), ref->feat_c, ref->feat_h,
                   ref->feat_w, tu_max_rel_diff(feat[k], feat[ENG_REF], n_feat));
        }
        th_error_free(err);
        if (k == ENG_REF && !ok) {
            break;
        }
    }
    for (int k = 0; k < N_ENG; k++) {
        th_free(logits[k]);
        th_free(feat[k]);
    }
    printf("\n");
}

/* ---------------------------------------------------------------- report */

typedef struct bench_opts {
    int size, tiles, ref_tiles, rounds;
    bool size_set, check;
    bool want[N_ENG];
    const char *model_path; // NULL: VGG16-GAP
} bench_opts;

static void print_header(const bench_opts *o, int tile_w, int tile_h, double peak[N_ISA][2],
                         int isa)
{
    int convs = 0;
    for (int i = 0; i < model->n_layers; i++) {
        convs += model->layers[i].kind == TH_LAYER_CONV;
    }
    printf("bench-engine: %s trunk (%d layers, %d convs), %dx%d, %d classes\n",
           o->model_path ? o->model_path : "VGG16-GAP (random weights)", model->n_layers, convs,
           tile_w, tile_h, model->n_classes);
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
    printf("FMA peak 2 threads / 1 thread: AVX2 %.2fx, AVX-512 %.2fx\n",
           peak[ISA_AVX2][0] > 0 ? peak[ISA_AVX2][1] / peak[ISA_AVX2][0] : 0,
           peak[ISA_AVX512][0] > 0 ? peak[ISA_AVX512][1] / peak[ISA_AVX512][0] : 0);
    printf("tiles per thread and round: fast and winograd %d x %d rounds, interleaved (after a "
           "warm-up tile), reference %d x 1\n\n",
           o->tiles, o->rounds, o->want[ENG_REF] ? o->ref_tiles : 0);
}

static double pct(double rate, double peak)
{
    return peak > 0 ? 100 * rate / peak : 0;
}

// One engine's figure for layer i: GFLOP/s (then % of pk if pk >= 0) for a conv, else ms.
static void print_cell(const run_stats *s, const layer_info *li, int i, double pk)
{
    if (!s->ok) {
        printf(pk >= 0 ? " %8s %5s" : " %8s", "-", "");
    } else if (li->flops == 0) {
        printf(pk >= 0 ? " %6.2fms %5s" : " %6.2fms", s->layer_ms[i], "");
    } else {
        printf(" %8.1f", s->layer_rate[i]);
        if (pk >= 0) {
            printf(" %4.0f%%", pct(s->layer_rate[i], pk));
        }
    }
}

// The rate of a over b for a conv layer, else blank.
static void print_ratio(const run_stats *a, const run_stats *b, const layer_info *li, int i)
{
    if (a->ok && b->ok && li->flops > 0 && b->layer_rate[i] > 0) {
        printf(" %5.2fx", a->layer_rate[i] / b->layer_rate[i]);
    } else {
        printf(" %6s", "");
    }
}

/* s: [engine][threads - 1], best figures; p1, p2: peak at 1 and 2 threads. */
static void print_layers(const layer_info *info, run_stats s[N_ENG][2], double p1, double p2)
{
    int nw = 5;
    for (int i = 0; i < model->n_layers; i++) {
        nw = TH_MAX(nw, (int)strlen(model->layers[i].name));
    }
    printf("per layer, best round of each; GFLOP/s summed over threads (2t: two tiles at once); "
           "FLOPs of the direct method (2*K*K*Cin*Cout*Hout*Wout), so Winograd layers show an "
           "effective rate that can exceed 100%% of peak; wino: the Winograd kernel oneDNN has for "
           "the "
           "layer (4x3 = F(4x4,3x3), 2x3 = F(2x2,3x3); the winograd engine uses it if Cin >= "
           "WINO_MIN_C, else direct); pools and ReLUs in ms per tile\n");
    printf("%-*s %-13s %6s %4s | %8s %8s | %8s %5s %8s %5s %6s | %8s %5s %8s %5s | %6s %6s\n", nw,
           "layer", "out CxHxW", "GFLOP", "wino", "ref 1t", "ref 2t", "fast 1t", "%pk", "fast 2t",
           "%pk", "2t/1t", "wino 1t", "%pk", "wino 2t", "%pk", "w/f 1t", "w/f 2t");
    for (int i = 0; i < model->n_layers; i++) {
        const th_layer *l = &model->layers[i];
        const layer_info *li = &info[i];
        char shape[32], gflop[16];
        snprintf(shape, sizeof(shape), "%dx%dx%d", l->c_out, li->out_h, li->out_w);
        snprintf(gflop, sizeof(gflop), li->flops > 0 ? "%.3f" : "-", li->flops / 1e9);
        printf("%-*s %-13s %6s %4s |", nw, l->name, shape, gflop, li->wino[0] ? li->wino : "-");
        print_cell(&s[ENG_REF][0], li, i, -1);
        print_cell(&s[ENG_REF][1], li, i, -1);
        printf(" |");
        print_cell(&s[ENG_FAST][0], li, i, p1);
        print_cell(&s[ENG_FAST][1], li, i, p2);
        print_ratio(&s[ENG_FAST][1], &s[ENG_FAST][0], li, i);
        printf(" |");
        print_cell(&s[ENG_WINO][0], li, i, p1);
        print_cell(&s[ENG_WINO][1], li, i, p2);
        printf(" |");
        print_ratio(&s[ENG_WINO][0], &s[ENG_FAST][0], li, i);
        print_ratio(&s[ENG_WINO][1], &s[ENG_FAST][1], li, i);
        printf("\n");
    }
}

static void print_totals(double total, run_stats s[N_ENG][2], double p1, double p2)
{
    printf("\nwhole tile (input, trunk, feature map out, GAP, dense; %.3f GFLOP of convs, "
           "direct count), best round:\n",
           total / 1e9);
    for (int k = 0; k < N_ENG; k++) {
        for (int t = 0; t < 2; t++) {
            const run_stats *r = &s[k][t];
            if (r->ok) {
                printf("  %-9s %d thread%s %8.3f tiles/s  %6.1f GFLOP/s  %4.0f%% of peak\n",
                       eng_names[k], t + 1, t ? "s" : " ", r->tiles_per_sec,
                       r->tiles_per_sec * total / 1e9,
                       pct(r->tiles_per_sec * total / 1e9, t ? p2 : p1));
            }
        }
    }
    for (int k = ENG_FAST; k < N_ENG; k++) {
        if (s[k][0].ok && s[k][1].ok) {
            printf("  %s 1 -> 2 threads: %.2fx\n", eng_names[k],
                   s[k][1].tiles_per_sec / s[k][0].tiles_per_sec);
        }
    }
    if (s[ENG_FAST][0].ok && s[ENG_WINO][0].ok && s[ENG_FAST][1].ok && s[ENG_WINO][1].ok) {
        printf("  winograd / fast: 1 thread %.2fx, 2 threads %.2fx\n",
               s[ENG_WINO][0].tiles_per_sec / s[ENG_FAST][0].tiles_per_sec,
               s[ENG_WINO][1].tiles_per_sec / s[ENG_FAST][1].tiles_per_sec);
    }
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench-engine [--model FILE.onnx] [--size S] [--engines ref,fast,winograd] "
               "[--no-ref] [--no-check] [--tiles N] [--rounds N] [--ref-tiles N]\n"
               "       bench-engine --int8-peak   (AVX-512 VNNI int8 multiply-add peak only)\n");
}

// A comma-separated list of engine names into want[]; false on an unknown name or none.
static bool parse_engines(const char *list, bool want[N_ENG])
{
    for (int k = 0; k < N_ENG; k++) {
        want[k] = false;
    }
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        int k = 0;
        while (k < N_ENG && (strlen(eng_names[k]) != n || strncmp(p, eng_names[k], n) != 0)) {
            k++;
        }
        if (k == N_ENG) {
            return false;
        }
        want[k] = true;
        p += n + (p[n] == ',');
    }
    return want[ENG_REF] || want[ENG_FAST] || want[ENG_WINO];
}

static bool parse_args(int argc, char **argv, bench_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int *target = NULL;
        bool ok = true;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--no-ref") == 0) {
            o->want[ENG_REF] = false;
        } else if (strcmp(a, "--int8-peak") == 0) {
            // int8 multiply-add peak of AVX-512 VNNI (bench-int8.py's share of peak); AMX tiles,
            // which oneDNN uses where the CPU has them, are not measured
            printf("int8 VNNI peak (vpdpbusd, %d chains): 1 thread %.0f GOP/s, 2 threads %.0f "
                   "GOP/s\n",
                   N_ACC, fma_peak(ISA_VNNI, 1), fma_peak(ISA_VNNI, 2));
            exit(0);
        } else if (strcmp(a, "--no-check") == 0) {
            o->check = false;
        } else if (strcmp(a, "--model") == 0 && i + 1 < argc) {
            o->model_path = argv[++i];
        } else if (strcmp(a, "--engines") == 0 && i + 1 < argc) {
            ok = parse_engines(argv[++i], o->want);
        } else {
            target = strcmp(a, "--tiles") == 0       ? &o->tiles
                     : strcmp(a, "--ref-tiles") == 0 ? &o->ref_tiles
                     : strcmp(a, "--rounds") == 0    ? &o->rounds
                     : strcmp(a, "--size") == 0      ? &o->size
                                                     : NULL;
            ok = target && i + 1 < argc && th_parse_int(argv[++i], target) && *target > 0;
            o->size_set = o->size_set || target == &o->size;
        }
        if (!ok) {
            usage(stderr);
            return false;
        }
    }
    return true;
}

// The model to benchmark and its tile size: --model's (its fixed input size, else --size) or
// VGG16-GAP at --size. Exits on failure.
static void load_model(const bench_opts *o, int *tile_w, int *tile_h)
{
    th_error *err = NULL;
    *tile_w = *tile_h = o->size;
    if (!o->model_path) {
        build_vgg16();
    } else {
        th_model *m = th_model_load(o->model_path, &err);
        if (!m) {
            fprintf(stderr, "bench-engine: %s\n", th_error_message(err));
            exit(1);
        }
        model = m; // freed at exit
        if (m->in_w > 0 && m->in_h > 0) {
            if (o->size_set && (m->in_w != o->size || m->in_h != o->size)) {
                printf("note: --size %d ignored, the model's input is fixed at %dx%d\n", o->size,
                       m->in_w, m->in_h);
            }
            *tile_w = m->in_w;
            *tile_h = m->in_h;
        }
    }
    int c, h, w;
    if (model->n_layers > MAX_LAYERS) {
        fprintf(stderr, "bench-engine: %d layers, at most %d\n", model->n_layers, MAX_LAYERS);
        exit(1);
    }
    if (!th_model_trunk_shape(model, *tile_h, *tile_w, &c, &h, &w, &err)) {
        fprintf(stderr, "bench-engine: %s\n", th_error_message(err));
        exit(1);
    }
}

// Plan engine k (NULL with a message if it cannot be built).
static th_engine *make_engine(int k, int tile_w, int tile_h)
{
    th_error *err = NULL;
    th_engine *e = th_engine_new(model, eng_kinds[k], tile_w, tile_h, &err);
    if (!e) {
        printf("%s engine: %s\n", eng_names[k], th_error_message(err));
    }
    th_error_free(err);
    return e;
}

int main(int argc, char **argv)
{
    bench_opts o = {.size = 224,
                    .tiles = 3,
                    .ref_tiles = 1,
                    .rounds = 3,
                    .check = true,
                    .want = {true, true, true}};
    if (!parse_args(argc, argv, &o)) {
        return 2;
    }
    int tile_w, tile_h;
    load_model(&o, &tile_w, &tile_h);
    layer_info info[MAX_LAYERS];
    double total = layer_infos(tile_h, tile_w, info);
    double peak[N_ISA][2];
    for (int i = 0; i < N_ISA; i++) {
        peak[i][0] = fma_peak(i, 1);
        peak[i][1] = fma_peak(i, 2);
    }
    const int isa = engine_isa();
    print_header(&o, tile_w, tile_h, peak, isa);

    uint8_t *rgb = xcalloc((size_t)tile_w * tile_h * 3, 1); // (tile_h, tile_w, 3)
    for (size_t i = 0; i < (size_t)tile_w * tile_h * 3; i++) {
        rgb[i] = (uint8_t)tu_rng_float(&rng, 0, 256);
    }
    const bool check = o.check && (o.want[ENG_FAST] || o.want[ENG_WINO]);
    th_engine *eng[N_ENG] = {NULL};
    for (int k = 0; k < N_ENG; k++) {
        eng[k] = o.want[k] || (k == ENG_REF && check) ? make_engine(k, tile_w, tile_h) : NULL;
    }
    if (check && eng[ENG_REF]) {
        check_agreement(eng, rgb);
    }
    run_stats s[N_ENG][2] = {{{0}}}; // [engine][threads - 1]
    double best_peak[2] = {peak[isa][0], peak[isa][1]};
    if (o.want[ENG_REF] && eng[ENG_REF]) {
        measure(eng[ENG_REF], "reference", 1, o.ref_tiles, false, isa, rgb, info, total, s[ENG_REF],
                best_peak);
    }
    for (int r = 0; r < o.rounds; r++) {
        for (int k = ENG_FAST; k < N_ENG; k++) {
            if (o.want[k] && eng[k]) {
                measure(eng[k], eng_names[k], r + 1, o.tiles, true, isa, rgb, info, total, s[k],
                        best_peak);
            }
        }
    }
    printf("\n");
    print_layers(info, s, best_peak[0], best_peak[1]);
    print_totals(total, s, best_peak[0], best_peak[1]);
    for (int k = 0; k < N_ENG; k++) {
        th_engine_free(eng[k]);
    }
    th_free(rgb);
    if (model != &vgg) {
        th_model_free((th_model *)model);
    }
    return 0;
}
